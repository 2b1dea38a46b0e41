"""VECTOR on the generated RTL (native Verilator, through `sim.run.run_program`): a program of
LOADs, vector operations on scratchpad and accumulator rows (RECIP, ISQRT, reductions, in place,
broadcasts, accumulate), a MATMUL whose results the vector unit then reduces and normalizes, and
STOREs: bit-exact against the functional simulator, cycles from the hardware counter, the
performance model within 5 % (and its vector_busy exact)."""

import numpy as np
import pytest

from systolab.codegen.builder import ProgramBuilder
from systolab.isa import VECTOR_OPS
from systolab.perf import predict
from systolab.sim.run import run_program

from conftest import small_config

CONFIGS = {
    "4x4-l2": small_config(4, 4, sp=64, acc=64, latency=4, mem_kib=64, vector={"lanes": 2}),
    "8x8-l8": small_config(8, 8, sp=64, acc=64, latency=8, mem_kib=64, vector={"lanes": 8}),
}


def vector_program(cfg, seed, n=6):
    """LOAD x (n rows) and a weight tile; vector work on them; MATMUL x @ W then vector work on
    its results; each result STOREd (requantized with a shift that keeps most of it) after its
    last writer, so the STOREs overlap the vector work as a compiler would place them."""
    rng = np.random.default_rng(seed)
    R, C = cfg.rows, cfg.cols
    b = ProgramBuilder(cfg)
    x = b.alloc("x", (n, R), "int8", data=rng.integers(-128, 128, (n, R)))
    w = b.alloc("w", (C, R), "int8", data=rng.integers(-128, 128, (C, R)))
    shifts = [0, 4, 8, 12, 16]
    params = np.zeros((4 * len(shifts), C), dtype=np.int32)
    for k, s in enumerate(shifts):
        params[4 * k + 1] = 1
        params[4 * k + 2] = s
    par = b.alloc("params", (4 * len(shifts), C), "int32", data=params)
    outs = []

    def store(acc_addr, shift, rows=n):
        o = b.alloc(f"out{len(outs)}", (rows, C), "int8")
        b.emit("STORE", dram_addr=o.addr, dram_stride=o.row_stride, rows=rows, acc_addr=acc_addr,
               param_addr=par.addr + shifts.index(shift) * 4 * par.row_stride)
        outs.append(o.name)

    V = VECTOR_OPS
    b.emit("LOAD", dram_addr=x.addr, dram_stride=x.row_stride, rows=n, sp_addr=0)
    b.emit("LOAD", dram_addr=w.addr, dram_stride=w.row_stride, rows=C, sp_addr=16)
    # operands from the scratchpad, immediates, in place, broadcasts, accumulate
    b.emit("VECTOR", func=V["MUL"], dst=0, src1=0, src1_sp=1, src1_stride=1, src2=0, src2_sp=1,
           src2_stride=1, rows=n, shift=0)                                  # x * x
    b.emit("VECTOR", func=V["ADD"], dst=0, src1=0, src1_stride=1, src2=3, src2_imm=1, rows=n)  # in place
    store(0, 8)
    b.emit("VECTOR", func=V["ISQRT"], dst=8, src1=0, src1_stride=1, rows=n)
    store(8, 0)
    b.emit("VECTOR", func=V["RECIP"], dst=16, src1=0, src1_stride=1, rows=n, shift=24)
    store(16, 16)
    b.emit("VECTOR", func=V["RSUM"], dst=24, src1=0, src1_stride=1, rows=n)
    b.emit("VECTOR", func=V["CMAX"], dst=31, src1=8, src1_stride=1, rows=n)
    b.emit("VECTOR", func=V["CSUM"], dst=31, src1=16, src1_stride=1, rows=n, accumulate=1)
    store(31, 16, rows=1)
    b.emit("VECTOR", func=V["SUB"], dst=24, src1=8, src1_stride=1, src2=31, src2_stride=0, rows=n,
           accumulate=1)                                                     # three reads a row
    store(24, 12)
    # MATMUL, then the vector unit on its results (it waits for the array to drain)
    b.emit("PRELOAD", sp_addr=16, wbuf=0)
    b.emit("MATMUL", sp_addr=0, acc_addr=32, rows=n, wbuf=0)
    b.emit("VECTOR", func=V["RMAX"], dst=40, src1=32, src1_stride=1, rows=n)
    store(40, 8)
    b.emit("VECTOR", func=V["SUB"], dst=32, src1=32, src1_stride=1, src2=40, src2_stride=1, rows=n)
    b.emit("VECTOR", func=V["SHR"], dst=32, src1=32, src1_stride=1, src2=4, src2_imm=1, rows=n, round=1)
    store(32, 0)
    b.emit("VECTOR", func=V["CLAMP"], dst=48, src1=32, src1_stride=1,
           src2=((-200) & 0xFFFF) | (150 << 16), src2_imm=1, rows=n)
    b.emit("VECTOR", func=V["MAX"], dst=48, src1=0, src1_sp=1, src1_stride=1, src2=0, src2_imm=1,
           rows=n, accumulate=1)
    b.emit("MATMUL", sp_addr=0, acc_addr=48, rows=n, wbuf=0, accumulate=1)   # after the VECTOR
    store(48, 4)
    b.emit("VECTOR", func=V["NEGSEL"], dst=56, src1=48, src1_stride=1, src2=5, src2_sp=1, src2_stride=0,
           rows=n)
    store(56, 0)
    return b.finish(tuple(outs), {"workload": "vector-test"})


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_vector_program_on_verilator(cfg_name):
    cfg = CONFIGS[cfg_name]
    prog = vector_program(cfg, seed=len(cfg_name))
    func = run_program(cfg, prog, "func")
    rtl = run_program(cfg, prog, "verilator")
    for name in prog.outputs:
        np.testing.assert_array_equal(rtl.outputs[name], func.outputs[name], err_msg=name)
    model = predict(cfg, prog)
    cycles = rtl.cycles
    assert rtl.counters["cycles"] == cycles
    assert model.busy["vector"] == rtl.counters["vector_busy"] > 0
    assert model.array_busy == rtl.counters["array_busy"]
    assert abs(model.cycles - cycles) / cycles <= 0.05, (model.cycles, cycles)
