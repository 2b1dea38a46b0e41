"""`systolab sweep` and `systolab report`: the co-design loop on the command line.

    systolab sweep FILE [--db PATH] [--out DIR] [-j N] [--executor local|dask] [--scheduler ADDR]
                        [--retry-failed] [--no-progress]
    systolab report DB [--out DIR] [--sweep NAME]

`app/cli.py` adds both with `add_sweep_parser(sub)` / `add_report_parser(sub)`. A bad sweep file or argument is one line
on stderr and exit status 2 (before any work starts); the sweep's last line of output is the path
of `report.html`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .files import check_output_dir

__all__ = ["add_sweep_parser", "add_report_parser", "cmd_sweep", "cmd_report"]


def _jobs(text: str) -> int:
    import argparse
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return n


def add_sweep_parser(subparsers) -> None:
    from systolab.co_design.executors import EXECUTORS
    p = subparsers.add_parser(
        "sweep", help="evaluate a space of accelerator configs (model, RTL, FPGA) and find the Pareto front",
        description="Evaluate every point of a sweep file (configs/sweeps/*.yaml) that the results "
                    "store does not hold yet, then write results.csv, pareto.csv, plots and report.html.")
    p.add_argument("file", help="sweep file (YAML)")
    p.add_argument("--db", metavar="PATH", help="results store (SQLite; default <out>/results.sqlite)")
    p.add_argument("--out", metavar="DIR", help="output directory (default sweeps/<name>/)")
    p.add_argument("-j", "--jobs", type=_jobs, metavar="N", help="parallel evaluations (default: the number of cores)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local process pool (default) or a Dask distributed cluster")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="Dask scheduler address (with --executor dask; default: a LocalCluster)")
    p.add_argument("--retry-failed", action="store_true",
                   help="measure again the evaluations stored as failed or timed out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def add_report_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="rebuild a sweep's CSVs, plots and report.html from its results store",
                              description="Rebuild results.csv, pareto.csv, the plots and report.html "
                                          "from a results store alone.")
    p.add_argument("db", help="results store (SQLite) written by systolab sweep")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the store's directory)")
    p.add_argument("--sweep", metavar="NAME", help="which sweep of the store (default: the last one run)")
    p.set_defaults(func=cmd_report)


def _console():
    from rich.console import Console
    return Console(stderr=True)


def cmd_sweep(args) -> int:
    from systolab.co_design.executors import default_jobs
    from systolab.co_design.store import ResultStore
    from systolab.co_design.spec import load_sweep
    from systolab.co_design.sweep import run_sweep

    spec = load_sweep(args.file)            # every problem with the file shows up here
    if args.scheduler and args.executor != "dask":
        from systolab.errors import UserError
        raise UserError("--scheduler needs --executor dask")
    out = check_output_dir(args.out, option="--out") if args.out else Path("sweeps") / spec.name
    db = Path(args.db) if args.db else out / "results.sqlite"
    ResultStore.refuse_foreign(db)          # before anything is printed or measured
    jobs = args.jobs or default_jobs()
    err = _console()
    how = spec.search.method + (f" (budget {spec.search.budget})" if spec.search.budget else "")
    err.print(f"sweep [bold]{spec.name}[/]: {how}, {len(spec.workloads)} workload"
              f"{'s' if len(spec.workloads) != 1 else ''}, evaluate {', '.join(spec.evaluate)}; "
              f"store {db}", highlight=False, soft_wrap=True)
    summary = run_sweep(spec, db=db, out=out, jobs=jobs, executor=args.executor,
                        scheduler=args.scheduler, retry_failed=args.retry_failed, console=err,
                        progress=not args.no_progress)
    failed = _finish(db, spec.name, summary.outputs, summary=summary)
    if failed:
        print(f"systolab sweep: {failed} evaluation{'s' if failed != 1 else ''} failed (listed above "
              f"and in report.html)", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from systolab.co_design.report import write_outputs
    from systolab.co_design.store import ResultStore

    db = Path(args.db)
    out = Path(args.out) if args.out else db.parent
    if args.out:
        check_output_dir(args.out, option="--out")
    with ResultStore(db, readonly=True) as store:
        files = write_outputs(store, args.sweep, out)
    _finish(db, args.sweep, files)
    return 0


def _finish(db: Path, name, files, summary=None) -> int:
    """Print the front and the summary lines; returns the number of evaluations that failed in
    this run (all the sweep's stored failures when there is no run summary)."""
    from rich.console import Console

    from systolab.co_design.report import front_table
    from systolab.co_design.results import load_sweep_data, rtl_time
    from systolab.co_design.store import ResultStore

    with ResultStore(db, readonly=True) as store:
        data = load_sweep_data(store, name)
    out = Console()
    if data.front:
        out.print(front_table(data))
    else:
        out.print("[red]no Pareto front[/]: no point has every objective and meets the constraints",
                  highlight=False)
    lines = []
    if summary is not None:
        parts = []
        for ev in data.spec.evaluate:
            c = summary.counts.get(ev, {})
            bad = c.get("failed", 0) + c.get("timeout", 0)
            parts.append(f"{ev} {c.get('measured', 0)} measured"
                         + (f" ({bad} failed)" if bad else "")
                         + (f", {c.get('stored', 0) + c.get('by_other', 0)} already stored"
                            if c.get("stored", 0) + c.get("by_other", 0) else ""))
        measured_on = "/".join(e for e in data.spec.evaluate if e in ("rtl", "synth"))
        lines.append(f"points: {summary.points}"
                     + (f" ({summary.promoted} promoted to {measured_on})"
                        if summary.promoted != summary.points else ""))
        lines.append("evaluations: " + "; ".join(parts))
        lines.append(f"executor: {summary.executor}; wall time {summary.wall_s:.1f} s")
        if summary.invalid:
            lines.append(f"{len(summary.invalid)} trials proposed a config that cannot work (skipped)")
    cal = data.calibration
    if cal["n"]:
        rho = cal["spearman"]
        lines.append(f"model vs RTL over {cal['n']} runs: mean |error| {cal['mean_abs_error']:.1%}, "
                     f"worst {cal['worst_error']:+.1%} ({cal['worst']})"
                     + (f", Spearman rank correlation {rho:.3f}" if rho is not None else ""))
    t = rtl_time(data.results)
    if t["runs"]:
        lines.append(f"RTL time over {t['runs']} runs: {t['build_s']:.1f} s building, {t['sim_s']:.1f} s "
                     f"simulating, {t['other_s']:.1f} s other")
    if data.failures:
        lines.append(f"failures: {len(data.failures)} (listed in report.html), e.g. "
                     f"{data.failures[0]['evaluator']} {data.failures[0]['label']}: {data.failures[0]['error']}")
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)
    print("report:", files["report.html"], flush=True)
    if summary is None:
        return len(data.failures)
    return sum(c.get("failed", 0) + c.get("timeout", 0) for c in summary.counts.values())
