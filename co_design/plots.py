"""The sweep's plots as PNG files (matplotlib, Agg canvas, no display needed):

- `pareto_<y>_vs_<x>.png`: objective against objective (the first three pairs; with one objective,
  against `pes`), the front marked
- `utilization.png`: utilization over rows x cols, one panel per scratchpad depth
- `calibration.png`: model against RTL cycles

Each `plot_*` returns False, and writes nothing, when there is nothing to show.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from .pareto import meets
from .results import SweepData

__all__ = ["plot_pareto", "plot_utilization", "plot_calibration", "write_plots"]


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


def write_plots(data: SweepData, out: Path) -> list[tuple[str, Path]]:
    """Every plot there is something to show for, written into `out`: (title, path) each."""
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
    return plots
