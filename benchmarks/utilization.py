"""Utilization on the RTL against the performance model and SCALE-Sim's stall-free model.

    .venv/bin/python benchmarks/utilization.py [--backend verilator|cocotb] [--quick]

For each config (8x8 and 16x16, memory.bus_bytes 16, memory.latency 32) and GEMM shape it
compiles the GEMM, runs it on the generated RTL (cycles from the hardware counter, output checked
bit-exact against numpy), predicts it with the performance model, and prints: RTL cycles, ideal
cycles, utilization, the model's prediction and error, and SCALE-Sim's stall-free WS cycles
(`systolab.metrics.scalesim_ws_cycles`). Also the simulated cycles per second of each RTL run.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm
from systolab.config import config_from_dict
from systolab.metrics import ideal_cycles, scalesim_ws_cycles
from systolab.perf import predict_cycles
from systolab.sim.rtl import run_rtl

SHAPES = [(64, 64, 64), (256, 256, 256), (512, 512, 256), (3136, 576, 64), (128, 768, 3072), (784, 1152, 128)]
ARRAYS = [(8, 8), (16, 16)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("verilator", "cocotb"), default="verilator")
    ap.add_argument("--quick", action="store_true", help="only 64^3 and 256^3")
    args = ap.parse_args(argv)
    shapes = SHAPES[:2] if args.quick else SHAPES
    table = Table(title=f"GEMM utilization on RTL ({args.backend}), bus 16 B/cycle, latency 32")
    for col in ("config", "M x K x N", "RTL cycles", "ideal", "util", "model", "model err",
                "SCALE-Sim WS", "SCALE-Sim util", "sim cycles/s", "ok"):
        table.add_column(col, justify="right")
    worst = 0.0
    for rows, cols in ARRAYS:
        cfg = config_from_dict({"array": {"rows": rows, "cols": cols}, "scratchpad": {"depth": 4096},
                                "accumulator": {"depth": 1024},
                                "memory": {"bus_bytes": 16, "latency": 32, "size_kib": 32768}},
                               source=f"{rows}x{cols}")
        for M, K, N in shapes:
            g = random_gemm(M, K, N, seed=1)
            prog = compile_gemm(cfg, g)
            model = predict_cycles(cfg, prog)
            t0 = time.perf_counter()
            res = run_rtl(cfg, prog, backend=args.backend)
            ok = np.array_equal(prog.read_outputs(res.memory)["C"], gemm_reference(g))
            cycles = res.counters["cycles"]
            err = (model - cycles) / cycles
            worst = max(worst, abs(err))
            ss = scalesim_ws_cycles(M, K, N, rows, cols)
            ideal = ideal_cycles(g.macs, cfg)
            table.add_row(f"{rows}x{cols}", f"{M}x{K}x{N}", f"{cycles:,}", f"{ideal:,}", f"{ideal / cycles:.3f}",
                          f"{model:,}", f"{err:+.2%}", f"{ss:,}", f"{ideal / ss:.3f}",
                          f"{cycles / res.sim_s:,.0f}", "yes" if ok else "NO")
            print(f"  {rows}x{cols} {M}x{K}x{N}: {cycles} cycles in {res.sim_s:.1f}s "
                  f"(wall {time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    Console(width=160).print(table)
    print(f"worst model error: {worst:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
