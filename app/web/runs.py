"""The one place the web service calls the run flow (`systolab.sim.run`).

Every run the service starts goes through `run_gemm` or `run_model`, and both return the dict of
`systolab run --json` (same keys). When the run flow's result type changes, only this file changes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SIMS", "run_gemm", "run_model", "prebuild"]

from systolab.sim.run import SIMS, run_workload


def _as_json(result) -> dict:
    """The `--json` form of a run result (`RunReport.to_json()`)."""
    return result.to_json()


def run_gemm(cfg, workload: str, sim: str, *, seed: int = 0, trace: str | Path | None = None) -> dict:
    """`systolab run CONFIG --workload gemm:MxKxN --sim SIM --seed SEED --json`."""
    return _as_json(run_workload(cfg, workload, sim, seed=seed,
                                 trace=None if trace is None else str(trace)))


def run_model(cfg, model: str | Path, sim: str, *, seed: int = 0, on_layer=None) -> dict:
    """`systolab run CONFIG --model M.onnx --sim SIM --json` on generated inputs
    (`generated_inputs(model, seed)`, as a sweep runs a model)."""
    from systolab.codegen.onnx_import import generated_inputs
    from systolab.sim.run import run_onnx

    result, _ = run_onnx(cfg, model, generated_inputs(model, seed), sim, on_layer=on_layer)
    return _as_json(result)


def prebuild(cfg, sim: str) -> bool:
    """Build (or find in the cache) the simulator an RTL run of `sim` needs, so a job can say
    "building" while it happens; returns whether the build came from the cache."""
    if sim not in ("rtl", "verilator"):
        return True
    from systolab.sim.rtl import build_rtl

    return build_rtl(cfg, backend="cocotb" if sim == "rtl" else "verilator").reused
