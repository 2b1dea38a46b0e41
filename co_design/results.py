"""A sweep's results as the report reads them, rebuilt from the results store alone: the points,
the derived rows per (point, workload) and per point (`all`), the Pareto front, the failures, the
model-vs-RTL calibration (mean and worst error, Spearman rank correlation), where RTL time went, and
`fmt`, how a value is shown in a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from systolab.config import config_from_dict
from systolab.errors import UserError

from .derived import ALL, SYNTH_KEYS, PointInfo, derive
from .evaluators import SYNTH_WORKLOAD
from .pareto import pareto_front
from .spec import EXPENSIVE, SweepSpec, point_label, spec_from_dict
from .store import ResultStore

__all__ = ["COLUMNS", "SweepData", "load_sweep_data", "task_keys", "rtl_time", "spearman", "calibration",
           "fmt"]

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
def task_keys(spec: SweepSpec, p: PointInfo):
    """The store keys (hash, workload, evaluator) the sweep evaluates for point `p`."""
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
    keys = [k for p in points for k in task_keys(spec, p)]
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
