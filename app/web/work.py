"""What a job process does (`jobs._worker` calls these by name): a run, or a sweep.

`report(kind, value)` sends "log" lines, "progress" dicts and is how the job's state reaches the
server; the return value is the job's result.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

__all__ = ["run", "sweep", "TARGETS"]


def run(params: dict, report) -> dict:
    from systolab.config import config_from_dict

    from .runs import prebuild, run_gemm, run_model
    from .vcd import busy_intervals

    cfg = config_from_dict(params["config"], source=params["source"])
    sim = params["sim"]
    job_dir = Path(params["job_dir"])
    trace = job_dir / "trace.vcd" if params.get("trace") else None
    if sim in ("rtl", "verilator") and trace is None:
        report("progress", {"stage": f"building the {sim} simulator of {cfg.hash} "
                                     f"(about a minute the first time, cached after)"})
        reused = prebuild(cfg, sim)
        report("log", f"simulator {'from the build cache' if reused else 'built'}")
    elif trace is not None:
        report("progress", {"stage": f"building the traced {sim} simulator and running (a separate build)"})
    else:
        report("progress", {"stage": f"compiling and running on {sim}"})
    t0 = time.perf_counter()
    if params.get("model"):
        layers_done = {"n": 0}

        def on_layer(rec):
            layers_done["n"] += 1
            report("progress", {"stage": f"layer {rec['name']} ({rec['op']}) done on {sim}",
                                "done": layers_done["n"], "total": params.get("layers")})
        result = run_model(cfg, params["model"], sim, seed=params.get("seed", 0), on_layer=on_layer)
        result["model"] = params["model_display"]
    else:
        report("progress", {"stage": f"running {params['workload']} on {sim}"})
        result = run_gemm(cfg, params["workload"], sim, seed=params.get("seed", 0), trace=trace)
    report("log", f"{result['workload']} on {sim}: {result['status']}, cycles {result['cycles']} "
                  f"({time.perf_counter() - t0:.1f} s)")
    if trace is not None:
        report("progress", {"stage": "reading the waveform"})
        (job_dir / "rtl_timeline.json").write_text(json.dumps(busy_intervals(trace)))
        trace.unlink()                                      # the intervals are what the Gantt needs
        result = {**result, "rtl_timeline": True}
    return result


def sweep(params: dict, report) -> dict:
    from io import StringIO

    from rich.console import Console

    from systolab.co_design.spec import load_sweep, parse_sweep
    from systolab.co_design.store import ResultStore
    from systolab.co_design.sweep import run_sweep

    if params.get("raw") is not None:
        spec = parse_sweep(params["raw"], source=params["source"], directory=Path(params["directory"]))
    else:
        spec = load_sweep(params["path"])
    out = Path(params["out"]) / spec.name
    db = out / "results.sqlite"
    tasks = spec.grid_size if spec.search.method == "grid" else (spec.search.budget or spec.grid_size)
    per_point = sum(len(spec.workloads) if ev != "synth" else 1 for ev in spec.evaluate)
    total = tasks * per_point
    report("progress", {"stage": f"sweep {spec.name}: {spec.search.method}, evaluate "
                                 f"{', '.join(spec.evaluate)}", "done": 0, "total": total})
    stop = threading.Event()

    def watch():
        while not stop.wait(1.0):
            if not db.is_file():
                continue
            try:
                with ResultStore(db, create=False) as store:
                    rows = store.results()
            except Exception:  # noqa: BLE001 - the store is being created; try again
                continue
            failed = sum(1 for r in rows.values() if r["status"] != "ok")
            report("progress", {"stage": f"sweep {spec.name}: measuring", "done": len(rows),
                                "total": total, "failed": failed})
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    console = Console(file=StringIO(), width=120)
    try:
        summary = run_sweep(spec, db=db, out=out, jobs=params.get("jobs", 1), console=console,
                            progress=False)
    finally:
        stop.set()
        watcher.join()
    for line in console.file.getvalue().splitlines():
        report("log", line)
    counts = {ev: dict(c) for ev, c in summary.counts.items()}
    report("progress", {"stage": "sweep done", "done": total, "total": total})
    return {"name": spec.name, "points": summary.points, "counts": counts,
            "wall_s": summary.wall_s, "db": params["display_out"] + f"/{spec.name}/results.sqlite"}


#: what a job can run, by the name `JobManager.start` is given
TARGETS = {"run": run, "sweep": sweep}
