"""Sweep outputs, rebuilt from the results store alone (`systolab report DB`):

- `results.csv`: one row per (point, workload), plus one per point with workload `all` (the sums
  over the sweep's workloads that the Pareto front is built on)
- `pareto.csv`: the non-dominated `all` rows under the objectives and constraints
- the PNG plots of `plots` when there is something to show
- `report.html`: one self-contained page (images embedded as base64), rendered from
  `templates/report.html.j2`: the front, the plots, the model-vs-RTL calibration, the details of
  each Pareto point, the failures, every result

The data itself (loading, calibration, RTL time, `fmt`) is in `results`; its public names are
importable from here as well. `front_table` is the front as a rich table for the terminal.
"""

from __future__ import annotations

import base64
import csv
import datetime
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined

from .derived import ALL, METRICS, PointInfo
from .evaluators import SYNTH_WORKLOAD
from .pareto import meets
from .plots import write_plots
from .results import COLUMNS, SweepData, calibration, fmt, load_sweep_data, rtl_time, spearman, task_keys
from .store import ResultStore

__all__ = ["SweepData", "load_sweep_data", "write_outputs", "calibration", "rtl_time", "spearman",
           "front_table", "COLUMNS"]

#: the page's templates (co_design/templates); every {{ value }} is HTML-escaped
_TEMPLATES = Environment(loader=PackageLoader("systolab.co_design", "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
_TEMPLATES.globals["fmt"] = fmt


def write_outputs(store: ResultStore, name: str | None, out: str | Path) -> dict[str, Path]:
    """Write every output of sweep `name` (default: the last one run) into `out`."""
    data = load_sweep_data(store, name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    _write_csv(out / "results.csv", data.rows, data.columns)
    files["results.csv"] = out / "results.csv"
    _write_csv(out / "pareto.csv", data.front, data.columns)
    files["pareto.csv"] = out / "pareto.csv"
    plots = write_plots(data, out)
    for _, p in plots:
        files[p.name] = p
    (out / "report.html").write_text(render_html(data, plots))
    files["report.html"] = out / "report.html"
    return files


def front_table(data: SweepData):
    """A rich Table of the Pareto front for the terminal."""
    from rich.table import Table
    spec = data.spec
    objs = list(spec.objectives)
    extra = [c for c in ("cycles", "utilization", "lut", "fmax_mhz", "latency_s")
             if c not in objs and any(r.get(c) is not None for r in data.front)]
    cols = ["label", *objs, *extra]
    t = Table(title=f"Pareto front of {spec.name} ({', '.join(f'{k} {v}' for k, v in spec.objectives.items())})")
    for c in cols:
        t.add_column(c, justify="left" if c == "label" else "right")
    for r in data.front:
        t.add_row(*(fmt(r.get(c), c) for c in cols))
    return t


# -- CSV ------------------------------------------------------------------------------------------------
def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


def _write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_csv_value(r.get(c)) for c in columns])


# -- report.html ----------------------------------------------------------------------------------------
def render_html(data: SweepData, plots: Sequence[tuple[str, Path]]) -> str:
    """The page, from templates/report.html.j2; `plots` are (title, PNG path), embedded inline."""
    return _TEMPLATES.get_template("report.html.j2").render(_page(data, plots))


def _page(data: SweepData, plots: Sequence[tuple[str, Path]]) -> dict:
    """What the template shows: the sweep's data and the values the page derives from it."""
    spec = data.spec
    objs = list(spec.objectives)
    front_ids = {r["config_hash"] for r in data.front}
    points = {p.hash: p for p in data.points}
    front_cols = ["label", *spec.axes, *objs,
                  *[c for c in ("cycles", "cycles_source", "utilization", "lut", "ff", "dsp", "bram",
                                "fmax_mhz", "latency_s", "gops")
                    if c not in objs and any(r.get(c) is not None for r in data.front)]]
    return {
        "spec": spec, "meta": _meta(data), "front": data.front, "front_cols": front_cols,
        "objectives": ", ".join(f"{k} {v}" for k, v in spec.objectives.items()),
        "why_no_front": _why_no_front(data),
        "plots": [(title, p.name, base64.b64encode(p.read_bytes()).decode()) for title, p in plots],
        "cal": data.calibration, "rtl": rtl_time(data.results),
        "details": [_detail(data, points[fr["config_hash"]]) for fr in data.front],
        "failures": data.failures, "counts": _counts(data), "versions": _versions(data),
        "rows": data.rows, "columns": data.columns,
        "front_row": lambda r: "front" if r["workload"] == ALL and r["config_hash"] in front_ids else "",
        "definitions": {k: v[1] for k, v in METRICS.items()},
    }


def _meta(data: SweepData) -> list[tuple[str, str]]:
    """The table at the top of the page: where the sweep comes from and what it measured."""
    spec = data.spec
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    measured = sum(1 for p in data.points if p.role == "measured")
    search = spec.search
    search_txt = search.method + (f", budget {search.budget}, seed {search.seed}" if search.budget else "") \
        + (f", sampler {search.sampler}" if search.sampler else "") \
        + (f", promote {search.promote}" if search.method != "grid" or search.screens else "")
    return [("sweep file", spec.source), ("results store", str(data.db)), ("generated", now),
            ("base config", spec.base.describe()
             + (f" (set: {', '.join(f'{k} {v}' for k, v in spec.overrides.items())})" if spec.overrides else "")),
            ("axes", "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in spec.axes.items())),
            ("workloads", ", ".join(f"{w.name} ({w.spec}{', seed %d' % w.seed if w.seed else ''})"
                                    for w in spec.workloads)),
            ("evaluate", ", ".join(spec.evaluate)), ("search", search_txt),
            ("objectives", ", ".join(f"{k}: {v}" for k, v in spec.objectives.items())),
            ("constraints", ", ".join(f"{k} " + " ".join(f"{b} {fmt(x)}" for b, x in v.items())
                                      for k, v in spec.constraints.items()) or "none"),
            ("points", f"{len(data.points)} ({measured} measured on every evaluator"
                       + (f", {len(data.points) - measured} scored by the model only"
                          if measured < len(data.points) else "") + ")")]


def _detail(data: SweepData, p: PointInfo) -> dict:
    """One Pareto point in detail: its config, its rows, per-layer cycles of ONNX and MLIR workloads (RTL if
    measured), its synth figures, the tools that measured it."""
    layers = []
    for w in data.spec.workloads:
        if getattr(w, "onnx", None) is None and getattr(w, "mlir", None) is None:
            continue
        for ev in ("rtl", "model"):
            r = data.results.get((p.hash, w.key, ev))
            if r and r["status"] == "ok" and r["metrics"].get("layers"):
                layers.append((w.name, ev, r["metrics"]["layers"]))
                break
    synth = data.results.get((p.hash, SYNTH_WORKLOAD, "synth"))
    versions = {}
    for (h, _, ev), r in data.results.items():
        if h == p.hash:
            versions.update({f"{k}": v for k, v in (r.get("tool_versions") or {}).items()})
    return {"point": p,
            "settings": [(f"{s}.{k}", v) for s, sec in p.config.to_dict().items() for k, v in sec.items()],
            "rows": [r for r in data.rows if r["config_hash"] == p.hash], "layers": layers,
            "synth": synth["metrics"] if synth and synth["status"] == "ok" else None,
            "tools": ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))}


def _counts(data: SweepData) -> list[dict]:
    out = []
    for ev in data.spec.evaluate:
        rows = [r for k, r in data.results.items() if k[2] == ev]
        expected = sum(1 for p in data.points for k in task_keys(data.spec, p) if k[2] == ev)
        c = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "failed", "timeout")}
        out.append({"evaluator": ev, "evaluations": expected, **c, "missing": expected - len(rows),
                    "wall s (sum)": sum(r["wall_s"] or 0.0 for r in rows)})
    return out


def _versions(data: SweepData) -> list[dict]:
    seen: dict[tuple, set] = {}
    for (_, _, ev), r in data.results.items():
        for tool, v in (r.get("tool_versions") or {}).items():
            seen.setdefault((ev, tool), set()).add(str(v))
    return [{"evaluator": ev, "tool": tool, "version": ", ".join(sorted(vs))}
            for (ev, tool), vs in sorted(seen.items())]


def _why_no_front(data: SweepData) -> str:
    spec = data.spec
    rows = data.point_rows
    missing = Counter()
    for r in rows:
        for k in spec.objectives:
            if r.get(k) is None:
                missing[k] = missing.get(k, 0) + 1
    infeasible = sum(1 for r in rows if all(r.get(k) is not None for k in spec.objectives)
                     and meets(r, spec.constraints) is False)
    parts = [f"{n} of {len(rows)} points have no {k}" for k, n in missing.items()]
    if infeasible:
        parts.append(f"{infeasible} violate a constraint")
    return "; ".join(parts) or "no points"
