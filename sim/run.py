"""The end-to-end flow behind `systolab run`: workload -> compile -> simulate -> check -> metrics.

Sweeps call the same `run_workload`, so a number in a sweep and a number from `systolab run`
come from the same code.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from systolab.errors import UserError
from systolab.metrics import cycle_metrics

__all__ = ["SIMS", "parse_gemm", "run_program", "run_workload"]

#: simulators `systolab run --sim` accepts: the functional golden model, the performance model
#: (cycles predicted, outputs from the functional simulator), the RTL under cocotb + Verilator,
#: and the RTL under a native Verilator harness (same answers, no Python in the loop)
SIMS = ("func", "model", "rtl", "verilator")

_GEMM = re.compile(r"^gemm:(\d+)x(\d+)x(\d+)$")


def parse_gemm(spec: str) -> tuple[int, int, int]:
    m = _GEMM.match(spec.strip())
    if not m or min(int(x) for x in m.groups()) < 1:
        raise UserError(f"--workload must be gemm:MxKxN with M, K, N >= 1 (e.g. gemm:64x64x64), not {spec!r}")
    return tuple(int(x) for x in m.groups())


@dataclass
class RunOutcome:
    outputs: dict[str, np.ndarray]
    cycles: int | None
    counters: dict[str, int]
    timings: dict[str, float]


def run_program(config, program, sim: str, *, trace: str | None = None) -> RunOutcome:
    """Run a compiled program on one simulator; returns its outputs, cycles and counters."""
    t0 = time.perf_counter()
    if sim == "func":
        from systolab.sim.functional import FunctionalSim
        res = FunctionalSim(config).run(program)
        return RunOutcome(res.outputs, None, {"array_busy": res.matmul_rows},
                          {"sim_s": time.perf_counter() - t0})
    if sim == "model":
        from systolab.sim.functional import FunctionalSim
        from systolab.perf import predict
        pred = predict(config, program)
        model_s = time.perf_counter() - t0
        res = FunctionalSim(config).run(program)
        counters = {"cycles": pred.cycles, "array_busy": pred.array_busy,
                    **{f"{q}_busy": v for q, v in pred.busy.items()}}
        return RunOutcome(res.outputs, pred.cycles, counters,
                          {"model_s": model_s, "sim_s": time.perf_counter() - t0})
    if sim in ("rtl", "verilator"):
        from systolab.sim.rtl import run_rtl
        res = run_rtl(config, program, backend="cocotb" if sim == "rtl" else "verilator", trace=trace)
        return RunOutcome(program.read_outputs(res.memory), res.counters["cycles"], dict(res.counters),
                          {"build_s": 0.0 if res.build_reused else res.build_s, "sim_s": res.sim_s})
    raise UserError(f"--sim must be one of {', '.join(SIMS)}, not {sim!r}")


def run_workload(config, workload: str, sim: str, *, seed: int = 0, relu: bool = False,
                 trace: str | None = None) -> dict:
    """Compile and run a workload, check it against numpy; the result dict of `systolab run --json`."""
    from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm

    if workload.startswith("onnx:"):       # a quantized ONNX model on generated inputs (sweeps)
        from systolab.codegen.onnx_import import run_onnx_workload
        return run_onnx_workload(config, workload[len("onnx:"):], sim, seed=seed)
    M, K, N = parse_gemm(workload)
    g = random_gemm(M, K, N, seed=seed, relu=relu)
    t0 = time.perf_counter()
    program = compile_gemm(config, g, name=workload)
    compile_s = time.perf_counter() - t0
    out = run_program(config, program, sim, trace=trace)
    expected = gemm_reference(g)
    got = out.outputs["C"]
    mismatches = int(np.count_nonzero(got != expected))
    return {
        "status": "pass" if mismatches == 0 else "fail",
        "sim": sim,
        "workload": workload,
        **cycle_metrics(program.macs, config, out.cycles),
        "config_hash": config.hash,
        "config": config.source,
        "mismatches": mismatches,
        "instructions": program.insn_count,
        "counters": out.counters,
        "timings": {"compile_s": compile_s, **out.timings},
    }
