"""Metric names and formulas, the same everywhere (CLI, benchmarks, sweeps, reports).

- `cycles`: start to done, from the hardware counter (RTL) or predicted (model)
- `macs`: useful multiply-accumulates of the workload (M*K*N for a GEMM)
- `ideal_cycles = ceil(macs / (rows*cols))`
- `utilization = macs / (rows*cols*cycles)`, at most 1.0
- `latency_s = cycles / fmax_hz`, `gops = 2*macs / latency_s / 1e9`
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ideal_cycles", "utilization", "cycle_metrics", "latency_s", "gops", "scalesim_ws_cycles", "RunReport"]


def ideal_cycles(macs: int, config) -> int:
    return math.ceil(macs / (config.pes))


def utilization(macs: int, config, cycles: int | None) -> float | None:
    if not cycles:
        return None
    return macs / (config.pes * cycles)


def cycle_metrics(macs: int, config, cycles: int | None) -> dict:
    """The cycle-related metrics of one run, with their public names."""
    return {"cycles": cycles, "ideal_cycles": ideal_cycles(macs, config), "macs": macs,
            "utilization": utilization(macs, config, cycles)}


def latency_s(cycles: int, fmax_hz: float) -> float:
    return cycles / fmax_hz


def gops(macs: int, cycles: int, fmax_hz: float) -> float:
    return 2 * macs / latency_s(cycles, fmax_hz) / 1e9


def scalesim_ws_cycles(M: int, K: int, N: int, rows: int, cols: int) -> int:
    """SCALE-Sim's stall-free weight-stationary estimate, the reference point we compare with:
    `ceil(K/rows) * ceil(N/cols)` folds run back to back, each `M + 2*rows + cols - 2` cycles."""
    return math.ceil(K / rows) * math.ceil(N / cols) * (M + 2 * rows + cols - 2)


# -- the result of one run ------------------------------------------------------------------------
@dataclass
class RunReport:
    """The result of one run of a workload, whatever ran it: `systolab run` (GEMM or model, on any
    simulator), a sweep evaluation, a board run. `to_json()` is `systolab run --json`.

    Build one with `RunReport.of(config, ...)`, which derives `ideal_cycles` and `utilization`
    from the config, so no caller computes them.
    """

    status: str                           # "pass": the outputs match the reference(s); else "fail"
    sim: str                              # func, model, rtl, verilator, fpga
    workload: str                         # gemm:MxKxN or onnx:<file> / mlir:<file>
    cycles: int | None                    # hardware counter (rtl, verilator, fpga) or predicted (model)
    ideal_cycles: int
    macs: int
    utilization: float | None
    config_hash: str
    config: str                           # where the config came from (its file name)
    mismatches: int                       # elements that differ from the numpy reference
    instructions: int
    counters: dict[str, int]
    timings: dict[str, float]
    model: str | None = None              # a model run: the model file
    first_mismatch: str | None = None     # a model run: the first layer that differs
    ort: dict | None = None               # an ONNX run: agreement with ONNX Runtime
    layers: list[dict] | None = None      # a model run: one record per layer
    extra: dict = field(default_factory=dict)   # run-specific facts (a board's clock, ...)

    #: keys that only a model run has (left out of a GEMM run's JSON)
    _MODEL_KEYS = ("model", "first_mismatch", "ort", "layers")

    @classmethod
    def of(cls, config, *, macs: int, cycles: int | None, mismatches: int, ok: bool | None = None,
           **fields) -> "RunReport":
        """A report of a run on `config`: status "pass" when `ok` (default: no mismatches)."""
        ok = mismatches == 0 if ok is None else ok
        return cls(status="pass" if ok else "fail", ideal_cycles=ideal_cycles(macs, config), macs=macs,
                   cycles=cycles, utilization=utilization(macs, config, cycles),
                   config_hash=config.hash, config=config.source, mismatches=mismatches, **fields)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def failure(self) -> str | None:
        """Why the run failed, in a few words (None when it passed)."""
        if self.passed:
            return None
        if self.mismatches:
            where = f" (first in {self.first_mismatch})" if self.first_mismatch else ""
            return f"output differs from numpy in {self.mismatches} elements{where}"
        if self.ort is not None:
            per_op = self.ort.get("layer_max_lsb")
            return (f"output is {self.ort['max_diff_lsb']} LSB from ONNX Runtime (allowed 1"
                    + (f"; {per_op} LSB per operator, allowed 2" if per_op is not None else "") + ")")
        return "output does not match the reference"

    def to_json(self) -> dict:
        """The `--json` object: public keys in a fixed order (model-only keys only on model runs)."""
        order = ("status", "sim", "model", "workload", "cycles", "ideal_cycles", "macs", "utilization",
                 "config_hash", "config", "mismatches", "first_mismatch", "ort", "instructions",
                 "counters", "layers", "timings")
        out = {}
        for k in order:
            v = getattr(self, k)
            if k in self._MODEL_KEYS and self.model is None:
                continue
            out[k] = v
        out.update(self.extra)
        return out
