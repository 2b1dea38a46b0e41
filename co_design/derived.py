"""Derived metrics: from stored measurements to one row per (point, workload) and per point.

The formulas are `systolab.metrics` (cycles, utilization, latency_s, gops); this module only
chooses which measurement feeds them and adds the per-area figures:

- `cycles`: the RTL's hardware counter where the RTL was run, else the performance model
  (`cycles_source` says which); `model_cycles` and `rtl_cycles` keep both.
- area and Fmax from `synth` (Yosys `synth_ecp5` cells, nextpnr-ecp5 Fmax), one per config.
- `latency_s = cycles / fmax`, `gops = 2 * macs / latency_s / 1e9`, `gops_per_klut`, `gops_per_dsp`.
- the row with `workload == "all"` sums cycles and MACs over the sweep's workloads (the same
  source for every workload, or none): the figure a Pareto front of configs is built on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from systolab import metrics as m

__all__ = ["METRICS", "metric_needs", "SYNTH_KEYS", "ALL", "PointInfo", "derive", "row_ok"]

#: metric -> (evaluators it needs: each entry "a|b" means a or b; what it is)
METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "cycles": (("model|rtl",), "start to done (RTL counter where run, else the model)"),
    "utilization": (("model|rtl",), "macs / (rows * cols * cycles)"),
    "latency_s": (("model|rtl", "synth"), "cycles / Fmax"),
    "gops": (("model|rtl", "synth"), "2 * macs / latency_s / 1e9"),
    "gops_per_klut": (("model|rtl", "synth"), "gops per 1000 LUT4"),
    "gops_per_dsp": (("model|rtl", "synth"), "gops per MULT18X18D"),
    "model_cycles": (("model",), "cycles predicted by the performance model"),
    "rtl_cycles": (("rtl",), "cycles counted by the RTL"),
    "lut": (("synth",), "LUT4 cells (Yosys synth_ecp5)"),
    "ff": (("synth",), "TRELLIS_FF cells"),
    "dsp": (("synth",), "MULT18X18D cells"),
    "bram": (("synth",), "DP16KD cells"),
    "comb": (("synth",), "TRELLIS_COMB used by nextpnr (LUT4 + carry halves; the 85k has 83,640)"),
    "fmax_mhz": (("synth",), "Fmax from nextpnr-ecp5 (ECP5 85k)"),
    "pes": ((), "rows * cols"),
    "sram_kib": ((), "scratchpad + accumulator KiB"),
}

#: what `synth` contributes to a row (hw/synth.py)
SYNTH_KEYS = ("lut", "ff", "dsp", "bram", "comb", "fmax_mhz")
#: the workload name of the per-point row that aggregates all workloads
ALL = "all"


def metric_needs(metric: str) -> tuple[str, ...]:
    return METRICS[metric][0]


@dataclass(frozen=True)
class PointInfo:
    """A point as the report sees it: hash, axis values, config, role in the sweep."""

    hash: str
    axes: Mapping[str, Any]
    config: Any                   # HardwareConfig
    label: str
    role: str = "measured"        # "measured" (all evaluators) or "screened" (model only)


def row_ok(row: Mapping | None) -> bool:
    return row is not None and row.get("status") == "ok"


def _metric(row: Mapping | None, key: str):
    if not row_ok(row):
        return None
    return (row.get("metrics") or {}).get(key)


def derive(spec, points: Sequence[PointInfo], results: Mapping[tuple, Mapping]) -> list[dict]:
    """One row per (point, workload) plus one per point with workload `all`.

    `results` maps (config_hash, workload key, evaluator) to a stored row (status, metrics, error).
    """
    rows = []
    for p in points:
        cfg = p.config
        # a screened point was only scored by the cheap evaluators (search.promote)
        evaluators = [ev for ev in spec.evaluate if p.role == "measured" or ev not in ("rtl", "synth")]
        synth = results.get((p.hash, "-", "synth")) if "synth" in evaluators else None
        area = {k: _metric(synth, k) for k in SYNTH_KEYS}
        fixed = {"pes": cfg.pes,
                 "sram_kib": (cfg.scratchpad.depth * cfg.sp_row_bytes
                              + cfg.accumulator.depth * cfg.acc_row_bytes) / 1024}
        per_wl = []
        for w in spec.workloads:
            got = {ev: results.get((p.hash, w.key, ev)) for ev in evaluators if ev != "synth"}
            model_cycles = _metric(got.get("model"), "cycles")
            rtl_cycles = _metric(got.get("rtl"), "cycles")
            per_wl.append((w, got, model_cycles, rtl_cycles))
            row = _row(p, w.name, w.spec, w.macs, model_cycles, rtl_cycles, area, fixed)
            row.update(_status({**got, "synth": synth} if "synth" in evaluators else got))
            rows.append(row)

        macs = sum(w.macs for w, *_ in per_wl)
        model_total = _sum_all([mc for _, _, mc, _ in per_wl])
        rtl_total = _sum_all([rc for _, _, _, rc in per_wl])
        row = _row(p, ALL, "+".join(w.spec for w in spec.workloads), macs, model_total, rtl_total,
                   area, fixed)
        everything = {f"{ev}:{w.key}": r for w, got, *_ in per_wl for ev, r in got.items()}
        if "synth" in evaluators:
            everything["synth"] = synth
        row.update(_status(everything))
        rows.append(row)
    return rows


def _sum_all(values):
    return sum(values) if values and all(v is not None for v in values) else None


def _row(p: PointInfo, workload: str, gemm: str, macs: int, model_cycles, rtl_cycles, area, fixed) -> dict:
    cfg = p.config
    cycles, source = (rtl_cycles, "rtl") if rtl_cycles is not None else (model_cycles, "model")
    if cycles is None:
        source = None
    row = {"config_hash": p.hash, "label": p.label, "role": p.role, **{k: v for k, v in p.axes.items()},
           "workload": workload, "gemm": gemm, "macs": macs,
           "ideal_cycles": m.ideal_cycles(macs, cfg), "model_cycles": model_cycles,
           "rtl_cycles": rtl_cycles, "cycles": cycles, "cycles_source": source,
           "utilization": m.utilization(macs, cfg, cycles), **area}
    fmax = area.get("fmax_mhz")
    lat = gops = None
    if cycles and fmax:
        lat = m.latency_s(cycles, fmax * 1e6)
        gops = m.gops(macs, cycles, fmax * 1e6)
    row["latency_s"], row["gops"] = lat, gops
    row["gops_per_klut"] = gops / (area["lut"] / 1000) if gops is not None and area.get("lut") else None
    row["gops_per_dsp"] = gops / area["dsp"] if gops is not None and area.get("dsp") else None
    row.update(fixed)
    return row


def _status(got: Mapping[str, Mapping | None]) -> dict:
    """`ok` when every evaluation is stored and passed, `failed` if one failed, else `pending`."""
    errors = []
    status = "ok"
    for name, r in got.items():
        if r is None:
            if status == "ok":
                status = "pending"
            continue
        if r.get("status") != "ok":
            status = "failed"
            text = f"{name.split(':')[0]}: {r.get('error') or r.get('status')}"
            if text not in errors:
                errors.append(text)
    return {"status": status, "errors": "; ".join(errors)}
