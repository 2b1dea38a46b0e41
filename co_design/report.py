"""Sweep outputs, rebuilt from the results store alone (`systolab report DB`):

- `results.csv`: one row per (point, workload), plus one per point with workload `all` (the sums
  over the sweep's workloads that the Pareto front is built on)
- `pareto.csv`: the non-dominated `all` rows under the objectives and constraints
- `pareto_<x>_vs_<y>.png` (objective against objective, front marked), `utilization.png`
  (utilization over rows x cols, one panel per scratchpad depth), `calibration.png` (model
  against RTL cycles) when there is something to show
- `report.html`: one self-contained page (images embedded as base64): the front, the plots, the
  model-vs-RTL calibration (mean and worst error, Spearman rank correlation), the details of each
  Pareto point, the failures, every result
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from systolab.config import config_from_dict
from systolab.errors import UserError

from .derived import ALL, METRICS, SYNTH_KEYS, PointInfo, derive
from .evaluators import SYNTH_WORKLOAD
from .pareto import meets, pareto_front
from .spec import EXPENSIVE, SweepSpec, point_label, spec_from_dict
from .store import ResultStore

__all__ = ["SweepData", "load_sweep_data", "write_outputs", "calibration", "rtl_time", "spearman",
           "front_table", "COLUMNS"]

#: results.csv / pareto.csv columns (the axes of the sweep go after `role`)
COLUMNS = ("config_hash", "label", "role", "workload", "gemm", "macs", "ideal_cycles",
           "model_cycles", "rtl_cycles", "cycles", "cycles_source", "utilization",
           *SYNTH_KEYS, "latency_s", "gops", "gops_per_klut", "gops_per_dsp", "pes", "sram_kib",
           "status", "errors")


@dataclass
class SweepData:
    spec: SweepSpec
    db: Path
    points: list[PointInfo]
    results: dict                   # key -> stored row (only this sweep's keys)
    rows: list[dict]                # derived, per (point, workload) and per point (`all`)
    front: list[dict]               # `all` rows on the Pareto front
    failures: list[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)

    @property
    def point_rows(self) -> list[dict]:
        return [r for r in self.rows if r["workload"] == ALL]

    @property
    def columns(self) -> list[str]:
        i = COLUMNS.index("role") + 1
        return [*COLUMNS[:i], *self.spec.axes, *COLUMNS[i:]]


# -- loading --------------------------------------------------------------------------------------------
def _keys(spec: SweepSpec, p: PointInfo):
    for ev in spec.evaluate:
        if p.role != "measured" and ev in EXPENSIVE:
            continue
        if ev == "synth":
            yield (p.hash, SYNTH_WORKLOAD, ev)
        else:
            for w in spec.workloads:
                yield (p.hash, w.key, ev)


def load_sweep_data(store: ResultStore, name: str | None = None) -> SweepData:
    sweeps = store.sweeps()
    if not sweeps:
        raise UserError(f"{store.path}: the results store holds no sweep")
    if name is None:
        entry = sweeps[0]
    else:
        entry = next((s for s in sweeps if s["name"] == name), None)
        if entry is None:
            raise UserError(f"{store.path}: no sweep named {name!r}; the store holds "
                            f"{', '.join(s['name'] for s in sweeps)}")
    spec = spec_from_dict(entry["spec"])
    points = []
    for p in store.points(spec.name):
        cfg = config_from_dict(p["config"], source=f"<point {p['hash']}>")
        points.append(PointInfo(p["hash"], p["axes"], cfg, point_label(p["axes"], cfg), p["role"]))
    keys = [k for p in points for k in _keys(spec, p)]
    results = store.results(keys)
    rows = derive(spec, points, results)
    all_rows = [r for r in rows if r["workload"] == ALL]
    front = pareto_front(all_rows, spec.objectives, spec.constraints)
    first, direction = next(iter(spec.objectives.items()))
    front.sort(key=lambda r: r[first] if direction == "min" else -r[first])
    labels = {p.hash: p.label for p in points}
    wl_names = {w.key: f"{w.name} ({w.key})" for w in spec.workloads}
    failures = [{"label": labels[k[0]], "config_hash": k[0], "workload": wl_names.get(k[1], k[1]),
                 "evaluator": k[2],
                 "status": r["status"], "error": r["error"] or ""}
                for k, r in results.items() if r["status"] != "ok"]
    failures.sort(key=lambda f: (f["evaluator"], f["label"], f["workload"]))
    return SweepData(spec, store.path, points, results, rows, front, failures,
                     calibration([r for r in rows if r["workload"] != ALL]))


# -- where RTL time goes ------------------------------------------------------------------------------
def rtl_time(results: Mapping) -> dict:
    """Seconds the stored RTL evaluations spent building simulators (first use of each build),
    simulating (start to done) and on everything else (Verilog, compiling the workload, memory
    image I/O, checking), summed over the successful runs."""
    out = {"runs": 0, "build_s": 0.0, "sim_s": 0.0, "other_s": 0.0}
    for (_, _, evaluator), r in results.items():
        timings = (r.get("metrics") or {}).get("timings") or {}
        if evaluator != "rtl" or r.get("status") != "ok" or "sim_s" not in timings:
            continue
        build, sim = timings.get("build_s", 0.0), timings["sim_s"]
        out["runs"] += 1
        out["build_s"] += build
        out["sim_s"] += sim
        out["other_s"] += max(0.0, (r.get("wall_s") or 0.0) - build - sim)
    return out


# -- calibration ----------------------------------------------------------------------------------------
def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None when undefined."""
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def calibration(rows: Sequence[Mapping]) -> dict:
    """Model against RTL cycles over every (point, workload) that has both."""
    pairs = [r for r in rows if r.get("model_cycles") is not None and r.get("rtl_cycles")]
    table = [{"label": r["label"], "workload": r["workload"], "model_cycles": r["model_cycles"],
              "rtl_cycles": r["rtl_cycles"],
              "error": (r["model_cycles"] - r["rtl_cycles"]) / r["rtl_cycles"]} for r in pairs]
    if not table:
        return {"n": 0, "table": [], "mean_abs_error": None, "worst_error": None, "spearman": None}
    worst = max(table, key=lambda t: abs(t["error"]))
    return {"n": len(table), "table": table,
            "mean_abs_error": sum(abs(t["error"]) for t in table) / len(table),
            "worst_error": worst["error"], "worst": f"{worst['label']} {worst['workload']}",
            "spearman": spearman([t["model_cycles"] for t in table], [t["rtl_cycles"] for t in table])}


# -- formatting -----------------------------------------------------------------------------------------
def fmt(v, key: str = "") -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return str(v)
    if key == "latency_s" and isinstance(v, (int, float)):
        for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if abs(v) >= scale:
                return f"{v / scale:.4g} {unit}"
        return f"{v:.3g} s"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if "error" in key:
            return f"{v:+.1%}" if key in ("error", "worst error") else f"{v:.1%}"
        if "Spearman" in key:
            return f"{v:.3f}"
        if key == "utilization":
            return f"{v:.3f}"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


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


# -- plots ----------------------------------------------------------------------------------------------
def _figure(w=6.4, h=4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _axis_label(metric: str, direction: str | None = None) -> str:
    unit = {"latency_s": " (s)", "fmax_mhz": " (MHz)", "sram_kib": " (KiB)"}.get(metric, "")
    better = {"min": " ↓ better", "max": " ↑ better"}.get(direction or "", "")
    return f"{metric}{unit}{better}"


def _log_if_wide(ax, which: str, values) -> None:
    vals = [v for v in values if v is not None and v > 0]
    if vals and max(vals) / min(vals) > 20:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")


def plot_pareto(data: SweepData, x: str, y: str, path: Path) -> bool:
    rows = [r for r in data.point_rows if r.get(x) is not None and r.get(y) is not None]
    if not rows:
        return False
    fig = _figure()
    ax = fig.add_subplot()
    spec = data.spec
    ok = [r for r in rows if meets(r, spec.constraints) is True]
    bad = [r for r in rows if meets(r, spec.constraints) is not True]
    front_ids = {r["config_hash"] for r in data.front}
    ax.scatter([r[x] for r in ok], [r[y] for r in ok], s=28, color="#9aa5b1", label="measured points",
               zorder=2)
    if bad:
        ax.scatter([r[x] for r in bad], [r[y] for r in bad], s=36, marker="x", color="#c0392b",
                   label="violates a constraint", zorder=2)
    if len(rows) <= 25:              # few enough to name every point
        for r in rows:
            if r["config_hash"] not in front_ids:
                ax.annotate(r["label"], (r[x], r[y]), textcoords="offset points", xytext=(5, -10),
                            fontsize=7, color="#7f8c8d")
    front = sorted((r for r in rows if r["config_hash"] in front_ids), key=lambda r: r[x])
    if front:
        ax.plot([r[x] for r in front], [r[y] for r in front], "-", color="#e67e22", lw=1.2, zorder=3)
        ax.scatter([r[x] for r in front], [r[y] for r in front], s=70, color="#e67e22",
                   edgecolor="black", label="Pareto front", zorder=4)
        for r in front:
            ax.annotate(r["label"], (r[x], r[y]), textcoords="offset points", xytext=(6, 5), fontsize=8)
    _log_if_wide(ax, "x", [r[x] for r in rows])
    _log_if_wide(ax, "y", [r[y] for r in rows])
    ax.margins(x=0.15, y=0.1)        # room for the labels
    ax.set_xlabel(_axis_label(x, spec.objectives.get(x)))
    ax.set_ylabel(_axis_label(y, spec.objectives.get(y)))
    ax.set_title(f"{spec.name}: {y} vs {x}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return True


def plot_utilization(data: SweepData, path: Path) -> bool:
    """Utilization (all workloads) over rows x cols, one panel per scratchpad depth."""
    cells: dict[int, dict[tuple[int, int], float]] = {}
    configs = {p.hash: p.config for p in data.points}
    for r in data.point_rows:
        if r.get("utilization") is None:
            continue
        c = configs[r["config_hash"]]
        panel = cells.setdefault(c.scratchpad.depth, {})
        key = (c.rows, c.cols)
        panel[key] = max(panel.get(key, 0.0), r["utilization"])   # best over the other axes
    if not cells:
        return False
    depths = sorted(cells)
    rows_v = sorted({k[0] for d in depths for k in cells[d]})
    cols_v = sorted({k[1] for d in depths for k in cells[d]})
    fig = _figure(w=max(4.0, 3.2 * len(depths)) + 1.0, h=3.6)
    axes = fig.subplots(1, len(depths), squeeze=False)[0]
    image = None
    for ax, d in zip(axes, depths):
        grid = [[cells[d].get((r, c), math.nan) for c in cols_v] for r in rows_v]
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(len(cols_v)), [str(c) for c in cols_v])
        ax.set_yticks(range(len(rows_v)), [str(r) for r in rows_v])
        ax.set_xlabel("array.cols")
        ax.set_ylabel("array.rows")
        ax.set_title(f"scratchpad.depth {d}", fontsize=9)
        for i, r in enumerate(rows_v):
            for j, c in enumerate(cols_v):
                v = cells[d].get((r, c))
                if v is not None:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if v < 0.6 else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.9, label="utilization")
    fig.suptitle(f"{data.spec.name}: utilization over rows x cols x depth (all workloads)", fontsize=10)
    fig.savefig(path)
    return True


def plot_calibration(data: SweepData, path: Path) -> bool:
    table = data.calibration["table"]
    if not table:
        return False
    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot()
    xs = [t["rtl_cycles"] for t in table]
    ys = [t["model_cycles"] for t in table]
    lo, hi = min(xs + ys), max(xs + ys)
    ax.plot([lo, hi], [lo, hi], "--", color="#7f8c8d", lw=1, label="model = RTL")
    ax.scatter(xs, ys, s=30, color="#2980b9", zorder=3)
    _log_if_wide(ax, "x", xs + ys)
    _log_if_wide(ax, "y", xs + ys)
    ax.set_xlabel("RTL cycles (hardware counter)")
    ax.set_ylabel("model cycles")
    rho = data.calibration["spearman"]
    ax.set_title(f"model vs RTL: mean |error| {data.calibration['mean_abs_error']:.1%}"
                 + (f", Spearman {rho:.3f}" if rho is not None else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return True


# -- outputs --------------------------------------------------------------------------------------------
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

    plots: list[tuple[str, Path]] = []
    objs = list(data.spec.objectives)
    pairs = list(itertools.combinations(objs, 2))[:3] if len(objs) > 1 else [("pes", objs[0])]
    for x, y in pairs:
        p = out / f"pareto_{y}_vs_{x}.png"
        if plot_pareto(data, x, y, p):
            plots.append((f"{y} vs {x}", p))
    for title, fn, fname in (("utilization over rows x cols x depth", plot_utilization, "utilization.png"),
                             ("model vs RTL cycles", plot_calibration, "calibration.png")):
        if fn(data, out / fname):
            plots.append((title, out / fname))
    for _, p in plots:
        files[p.name] = p
    (out / "report.html").write_text(render_html(data, plots))
    files["report.html"] = out / "report.html"
    return files


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #d5d8dc;padding:3px 8px;
text-align:right}th{background:#f2f4f4}td.l,th.l{text-align:left}tr.front td{background:#fdf2e9}
.meta td{text-align:left}.muted{color:#777}.bad{color:#c0392b}img{max-width:100%;border:1px solid #eee;
margin:.4em 0}details{margin:.6em 0}code{background:#f4f6f6;padding:0 3px}
"""


def _table(rows: Sequence[Mapping], cols: Sequence[str], *, left=(), cls=None, row_cls=None) -> str:
    e = html.escape
    head = "".join(f"<th class='l'>{e(c)}</th>" if c in left else f"<th>{e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        rc = f" class='{row_cls(r)}'" if row_cls and row_cls(r) else ""
        tds = "".join(f"<td class='l'>{e(fmt(r.get(c), c))}</td>" if c in left
                      else f"<td>{e(fmt(r.get(c), c))}</td>" for c in cols)
        body.append(f"<tr{rc}>{tds}</tr>")
    c = f" class='{cls}'" if cls else ""
    return f"<table{c}><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='{html.escape(path.name)}' src='data:image/png;base64,{data}'>"


def _counts(data: SweepData) -> list[dict]:
    out = []
    for ev in data.spec.evaluate:
        rows = [r for k, r in data.results.items() if k[2] == ev]
        expected = sum(1 for p in data.points for k in _keys(data.spec, p) if k[2] == ev)
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


def render_html(data: SweepData, plots: Sequence[tuple[str, Path]]) -> str:
    e = html.escape
    spec = data.spec
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    axes = list(spec.axes)
    objs = list(spec.objectives)
    measured = sum(1 for p in data.points if p.role == "measured")
    search = spec.search
    search_txt = search.method + (f", budget {search.budget}, seed {search.seed}" if search.budget else "") \
        + (f", sampler {search.sampler}" if search.sampler else "") \
        + (f", promote {search.promote}" if search.method != "grid" or search.screens else "")
    meta = [("sweep file", spec.source), ("results store", str(data.db)), ("generated", now),
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
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>systolab sweep {e(spec.name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>systolab sweep: {e(spec.name)}</h1>"]
    if spec.description:
        parts.append(f"<p>{e(spec.description)}</p>")
    parts.append("<table class='meta'>" + "".join(f"<tr><th class='l'>{e(k)}</th><td>{e(v)}</td></tr>"
                                                  for k, v in meta) + "</table>")

    # the front
    parts.append("<h2>Pareto front</h2>")
    front_cols = ["label", *axes, *objs, *[c for c in ("cycles", "cycles_source", "utilization",
                                                         "lut", "ff", "dsp", "bram", "fmax_mhz",
                                                         "latency_s", "gops")
                                            if c not in objs and any(r.get(c) is not None for r in data.front)]]
    if data.front:
        objectives = ", ".join(f"{k} {v}" for k, v in spec.objectives.items())
        parts.append(f"<p>{len(data.front)} configuration{'s' if len(data.front) != 1 else ''} no other "
                     f"configuration beats in every objective ({objectives})"
                     f"{' under the constraints' if spec.constraints else ''}; cycles and MACs summed "
                     f"over the {len(spec.workloads)} workload{'s' if len(spec.workloads) != 1 else ''}.</p>")
        parts.append(_table(data.front, front_cols, left=("label", "cycles_source")))
    else:
        parts.append(f"<p class='bad'>No point has every objective and meets the constraints: "
                     f"{e(_why_no_front(data))}.</p>")

    # plots
    if plots:
        parts.append("<h2>Plots</h2>")
        for title, p in plots:
            parts.append(f"<h3>{e(title)}</h3>{_img(p)}")

    # calibration
    cal = data.calibration
    parts.append("<h2>Model calibration (model vs RTL cycles)</h2>")
    if cal["n"]:
        parts.append(_table([{"pairs": cal["n"], "mean |error|": cal["mean_abs_error"],
                              "worst error": cal["worst_error"], "worst at": cal["worst"],
                              "Spearman rank correlation": cal["spearman"]}],
                            ["pairs", "mean |error|", "worst error", "worst at", "Spearman rank correlation"],
                            left=("worst at",)))
        parts.append("<p class='muted'>error = (model − RTL) / RTL per (point, workload); a rank "
                     "correlation near 1 means the model orders configurations as the RTL does.</p>")
        parts.append(_table(cal["table"], ["label", "workload", "model_cycles", "rtl_cycles", "error"],
                            left=("label", "workload")))
    else:
        parts.append("<p class='muted'>No (point, workload) has both a model and an RTL measurement.</p>")
    t = rtl_time(data.results)
    if t["runs"]:
        parts.append(f"<p>RTL time over {t['runs']} runs: {t['build_s']:.1f} s building simulators "
                     f"(cached per hardware config), {t['sim_s']:.1f} s simulating, {t['other_s']:.1f} s "
                     f"on everything else (Verilog, compiling the workload, memory images, checks).</p>")

    # details of each front point
    if data.front:
        parts.append("<h2>Pareto points in detail</h2>")
        points = {p.hash: p for p in data.points}
        for fr in data.front:
            p = points[fr["config_hash"]]
            parts.append(f"<h3>{e(p.label)} <span class='muted'>({e(p.hash)})</span></h3>")
            cfg = p.config.to_dict()
            parts.append("<p>" + "; ".join(f"<code>{e(s)}.{e(k)}</code> {v}" for s, sec in cfg.items()
                                           for k, v in sec.items()) + "</p>")
            wl_rows = [r for r in data.rows if r["config_hash"] == p.hash]
            parts.append(_table(wl_rows, ["workload", "gemm", "macs", "ideal_cycles", "model_cycles",
                                          "rtl_cycles", "cycles", "utilization", "latency_s", "gops"],
                                left=("workload", "gemm")))
            for w in data.spec.workloads:           # ONNX / MLIR models: cycles per layer (RTL if measured)
                if getattr(w, "onnx", None) is None and getattr(w, "mlir", None) is None:
                    continue
                for ev in ("rtl", "model"):
                    r = data.results.get((p.hash, w.key, ev))
                    if r and r["status"] == "ok" and r["metrics"].get("layers"):
                        parts.append(f"<p>{e(w.name)} per layer ({ev}; host steps have no cycles)</p>")
                        parts.append(_table(r["metrics"]["layers"], ["name", "op", "where", "cycles", "macs",
                                                                     "utilization"],
                                            left=("name", "op", "where")))
                        break
            synth = data.results.get((p.hash, SYNTH_WORKLOAD, "synth"))
            if synth and synth["status"] == "ok":
                m = synth["metrics"]
                parts.append(_table([m], ["lut", "ff", "dsp", "bram", "ccu2c", "lutram", "comb",
                                          "fmax_mhz", "pnr_mode", "synth_s"], left=("pnr_mode",)))
            versions = {}
            for (h, _, ev), r in data.results.items():
                if h == p.hash:
                    versions.update({f"{k}": v for k, v in (r.get("tool_versions") or {}).items()})
            parts.append("<p class='muted'>tools: " + e(", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
                         + "</p>")

    # failures
    parts.append(f"<h2>Failures ({len(data.failures)})</h2>")
    if data.failures:
        parts.append(_table(data.failures, ["label", "workload", "evaluator", "status", "error"],
                            left=("label", "workload", "evaluator", "status", "error")))
    else:
        parts.append("<p class='muted'>None.</p>")

    # everything
    parts.append("<h2>Evaluations</h2>")
    parts.append(_table(_counts(data), ["evaluator", "evaluations", "ok", "failed", "timeout", "missing",
                                        "wall s (sum)"], left=("evaluator",)))
    parts.append("<details><summary>tool versions</summary>"
                 + _table(_versions(data), ["evaluator", "tool", "version"], left=("evaluator", "tool", "version"))
                 + "</details>")
    front_ids = {r["config_hash"] for r in data.front}
    parts.append("<details><summary>all results (per point and workload; front rows highlighted)</summary>"
                 + _table(data.rows, data.columns, left=("config_hash", "label", "role", "workload", "gemm",
                                                         "cycles_source", "status", "errors"),
                          row_cls=lambda r: "front" if r["workload"] == ALL and r["config_hash"] in front_ids else "")
                 + "</details>")
    parts.append("<p class='muted'>Metric definitions: "
                 + e("; ".join(f"{k}: {v[1]}" for k, v in METRICS.items())) + ".</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
