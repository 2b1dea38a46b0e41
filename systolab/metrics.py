"""Metric names and formulas, the same everywhere (CLI, benchmarks, sweeps, reports).

- `cycles`: start to done, from the hardware counter (RTL) or predicted (model)
- `macs`: useful multiply-accumulates of the workload (M*K*N for a GEMM)
- `ideal_cycles = ceil(macs / (rows*cols))`
- `utilization = macs / (rows*cols*cycles)`, at most 1.0
- `latency_s = cycles / fmax_hz`, `gops = 2*macs / latency_s / 1e9`
"""

from __future__ import annotations

import math

__all__ = ["ideal_cycles", "utilization", "cycle_metrics", "latency_s", "gops", "scalesim_ws_cycles"]


def ideal_cycles(macs: int, config) -> int:
    return math.ceil(macs / (config.rows * config.cols))


def utilization(macs: int, config, cycles: int | None) -> float | None:
    if not cycles:
        return None
    return macs / (config.rows * config.cols * cycles)


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
