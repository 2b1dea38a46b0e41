"""`hw/vector.py` (VectorUnit) inside the compute unit, in Amaranth's simulator, against the
functional simulator (`sim/functional.py`, which computes with `codegen.intops.vector_op`) on
random scratchpad and accumulator contents, and against the timing contract of its docstring and
`hw/timing.py`.

Every operation runs with operands from the accumulator and the scratchpad, strides 0 and 1,
immediates, accumulate on and off, in place, with lanes < cols and lanes == cols, on a 4x8 array
(scratchpad lanes 4..7 read 0) and an 8x4 one (scratchpad lanes 4..7 unused).
"""

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring

from systolab.codegen.intops import INT32_MAX, vector_op
from systolab.hw.buffers import Accumulator, Scratchpad, acc_row_layout
from systolab.hw.compute import ComputeUnit
from systolab.hw.timing import VECTOR_ITERATIONS, vector_acc_reads, vector_cycles, vector_row_cycles
from systolab.hw.vector import VectorUnit
from systolab.isa import ISA, VECTOR_OPS
from systolab.sim.functional import FunctionalSim
from support.amaranth_sim import read_rows, rejected, run_cycles, simulate

from conftest import small_config

FUNCS = list(VECTOR_OPS)
INT32_MIN = -(1 << 31)


def config(rows, cols, lanes, sp=32, acc=128):
    return small_config(rows, cols, sp=sp, acc=acc, bus=16, latency=2, mem_kib=64,
                        vector={"lanes": lanes})


class Bench:
    """ComputeUnit (with its vector unit) + Scratchpad + Accumulator. The testbench fills both
    buffers (the accumulator through a multiplexer on its write port), runs instruction words
    and reads the accumulator back."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.isa = ISA(cfg)
        m = self.m = Module()
        cu = self.cu = m.submodules.cu = ComputeUnit(cfg)
        sp = self.sp = m.submodules.sp = Scratchpad(rows=cfg.rows, depth=cfg.scratchpad.depth)
        acc = self.acc = m.submodules.acc = Accumulator(cols=cfg.cols, depth=cfg.accumulator.depth,
                                                        vector=True)
        wiring.connect(m, cu.sp_preload, sp.read_preload)
        wiring.connect(m, cu.sp_matmul, sp.read_matmul)
        wiring.connect(m, cu.acc_read, acc.read_acc)
        wiring.connect(m, cu.acc_vector, acc.read_vector)
        self.tb_we = Signal()
        self.tb_addr = Signal.like(acc.write.addr)
        self.tb_data = Signal(acc_row_layout(cfg.cols))
        m.d.comb += [
            acc.write.en.eq(self.tb_we | cu.acc_write.en),
            acc.write.addr.eq(Mux(self.tb_we, self.tb_addr, cu.acc_write.addr)),
            acc.write.data.eq(Mux(self.tb_we, self.tb_data, cu.acc_write.data)),
        ]

    def run(self, asm, sp_image, acc_image, *, cycles=None):
        cu, sp, acc, cfg = self.cu, self.sp, self.acc, self.cfg
        words = [self.isa.encode(op, **f) for op, f in asm]
        if cycles is None:
            cycles = 40 + sum(_cycles(cfg, op, f) for op, f in asm)
        out = {}

        def probe(ctx, t):
            return {"we": ctx.get(cu.acc_write.en), "acc": ctx.get(cu.acc_write.addr),
                    "push_prev": ctx.get(cu.push_prev), "push_next": ctx.get(cu.push_next),
                    "busy": ctx.get(cu.busy), "vbusy": ctx.get(cu.vector_busy)}

        async def testbench(ctx):
            ctx.set(sp.write.en, 1)
            for a, row in enumerate(sp_image):
                ctx.set(sp.write.addr, a)
                ctx.set(sp.write.data, [int(v) for v in row])
                await ctx.tick()
            ctx.set(sp.write.en, 0)
            ctx.set(self.tb_we, 1)
            for a, row in enumerate(acc_image):
                ctx.set(self.tb_addr, a)
                ctx.set(self.tb_data, [int(v) for v in row])
                await ctx.tick()
            ctx.set(self.tb_we, 0)
            ctx.set(cu.pop_prev_ok, 1)
            ctx.set(cu.pop_next_ok, 1)
            out["trace"], out["fired"] = await run_cycles(ctx, cycles, feed=(cu.insn, words), probe=probe)
            assert len(out["fired"]) == len(words), "not every instruction was dispatched"
            assert not out["trace"][-1]["busy"], "still busy at the end of the run"
            out["acc"] = np.array(await read_rows(ctx, acc.read_store, cfg.accumulator.depth), dtype=np.int64)

        simulate(self.m, testbench)
        return out["trace"], out["fired"], out["acc"]


def _row_cycles(cfg, f):
    func = FUNCS[f["func"]]
    reads = vector_acc_reads(func, src1_sp=f.get("src1_sp", 0), src2_sp=f.get("src2_sp", 0),
                             src2_imm=f.get("src2_imm", 0), accumulate=f.get("accumulate", 0))
    return vector_row_cycles(cfg.cols, cfg.vector.lanes, func, reads)


def _cycles(cfg, op, f):
    if op == "VECTOR":
        return vector_cycles(f["rows"], _row_cycles(cfg, f))
    return f.get("rows", 0) + cfg.rows + 2 * cfg.cols + 4


def reference(cfg, asm, sp_image, acc_image):
    """The functional simulator on the same buffers."""
    sim = FunctionalSim(cfg)
    sim.reset(np.zeros(cfg.mem_bytes, np.uint8))
    sim.sp[:] = sp_image
    sim.acc[:] = acc_image
    isa = ISA(cfg)
    for op, f in asm:
        sim.step(isa.decode(isa.encode(op, **f)))
    return sim.acc.astype(np.int64)


EDGES = [0, 1, -1, 2, -2, 7, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1, 1 << 30, -(1 << 30),
         46340, 46341, 65535, 65536, 255, -128]


def random_buffers(cfg, seed):
    rng = np.random.default_rng(seed)
    sp = rng.integers(-128, 128, (cfg.scratchpad.depth, cfg.rows))
    acc = rng.integers(INT32_MIN, INT32_MAX + 1, (cfg.accumulator.depth, cfg.cols), dtype=np.int64)
    # small values, edge values, and rows of a few bits (shifts, divisors, square roots)
    acc[1::4] = rng.integers(-300, 300, acc[1::4].shape)
    acc[2::4] = rng.choice(EDGES, acc[2::4].shape)
    acc[3::8] = rng.integers(-(1 << 16), 1 << 16, acc[3::8].shape)
    return sp, acc


def immediate(rng, func):
    if func in ("SHL", "SHR"):
        return int(rng.integers(0, 64))                  # b & 31 is used
    if func == "CLAMP":
        lo, hi = sorted(rng.integers(-(1 << 15), 1 << 15, 2).tolist())
        return (lo & 0xFFFF) | ((hi & 0xFFFF) << 16)
    return int(rng.choice([int(rng.integers(0, 1 << 32)), 0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 5]))


#: operand modes: (name, fields); src rows 0..15 of the accumulator / scratchpad are sources
MODES = {
    "acc_acc": dict(src1=0, src1_stride=1, src2=4, src2_stride=1),
    "acc_bcast_accumulate": dict(src1=8, src1_stride=1, src2=2, src2_stride=0, accumulate=1),
    "sp_imm_accumulate": dict(src1=3, src1_sp=1, src1_stride=1, src2_imm=1, accumulate=1),
    "bcast_sp": dict(src1=6, src1_stride=0, src2=9, src2_sp=1, src2_stride=1),
    "sp_sp": dict(src1=1, src1_sp=1, src1_stride=1, src2=5, src2_sp=1, src2_stride=1),
    "in_place_imm": dict(src2_imm=1, in_place=1),
}
SHAPES = {"4x8_l8": (4, 8, 8), "8x4_l2": (8, 4, 2)}


def program(cfg, mode, seed, rows=3):
    """Every vector operation once in `mode`, each writing its own destination rows."""
    rng = np.random.default_rng(seed)
    asm = []
    for k, func in enumerate(FUNCS):
        f = dict(MODES[mode])
        dst = 16 + 4 * k
        in_place = f.pop("in_place", 0)
        if in_place:               # (a column reduction cannot run in place)
            f.update(src1=dst if func not in ("CSUM", "CMAX") else 0, src1_stride=1)
        if f.get("src2_imm"):
            f["src2"] = immediate(rng, func)
        elif func in ("SHL", "SHR", "CLAMP") and not f.get("src2_sp"):
            f["src2_imm"], f["src2"] = 1, immediate(rng, func)
        shift = int(rng.choice([0, 1, 5, 17, 31, 32, 33, 40, 61, 62, 63])) if func in ("MUL", "RECIP") else 0
        f.update(func=VECTOR_OPS[func], dst=dst, rows=rows, shift=shift, round=int(rng.integers(0, 2)))
        asm.append(("VECTOR", f))
    return asm


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", list(MODES))
def test_every_operation(shape, mode):
    cfg = config(*SHAPES[shape])
    seed = abs(hash((shape, mode))) % 1000
    sp, acc = random_buffers(cfg, seed)
    asm = program(cfg, mode, seed)
    _, _, got = Bench(cfg).run(asm, sp, acc)
    want = reference(cfg, asm, sp, acc)
    for k, (_, f) in enumerate(asm):
        rows = slice(f["dst"], f["dst"] + 4)
        np.testing.assert_array_equal(got[rows], want[rows], err_msg=f"{FUNCS[f['func']]} ({mode}, {f})")
    np.testing.assert_array_equal(got, want)


def test_recip_isqrt_edges():
    """RECIP over zero and negative divisors and every shift; ISQRT over squares and their
    neighbours, against `codegen.intops` directly."""
    cfg = config(4, 4, 4, acc=64)
    a = np.array([0, -1, INT32_MIN, 1, 2, 3, 7, INT32_MAX, 46340 ** 2, 46340 ** 2 - 1, 46341 ** 2 - 1 - 2 ** 31 + 2 ** 31,
                  65535, 65536, 1 << 30, (1 << 30) - 1, 12345678], dtype=np.int64)
    a = np.where(a > INT32_MAX, INT32_MAX, a)
    acc = np.zeros((cfg.accumulator.depth, cfg.cols), dtype=np.int64)
    acc[0:4] = a.reshape(4, 4)
    sp = np.zeros((cfg.scratchpad.depth, cfg.rows), dtype=np.int64)
    shifts = [0, 1, 30, 31, 32, 45, 61, 62, 63]
    asm = [("VECTOR", dict(func=VECTOR_OPS["RECIP"], dst=8 + 4 * i, src1=0, src1_stride=1, rows=4, shift=s))
           for i, s in enumerate(shifts)]
    asm.append(("VECTOR", dict(func=VECTOR_OPS["ISQRT"], dst=48, src1=0, src1_stride=1, rows=4)))
    _, _, got = Bench(cfg).run(asm, sp, acc)
    for i, s in enumerate(shifts):
        np.testing.assert_array_equal(got[8 + 4 * i: 12 + 4 * i], vector_op("RECIP", acc[0:4], 0, shift=s))
    np.testing.assert_array_equal(got[48:52], vector_op("ISQRT", acc[0:4], 0))


@pytest.mark.parametrize("func, lanes, fields", [
    ("ADD", 4, dict(src2=8, src2_stride=1)),                      # 1 cycle a row
    ("ADD", 2, dict(src2=8, src2_stride=1, accumulate=1)),        # three reads: 2 + 1
    ("RSUM", 1, dict(accumulate=1)),
    ("CSUM", 2, dict()),
    ("RECIP", 2, dict(shift=20)),
    ("ISQRT", 4, dict(accumulate=1)),
])
def test_timing(func, lanes, fields):
    """A VECTOR taken at d: row r written at d + 2 + (r + 1) * P (column reductions: the one row
    at the end), push_prev when the last row is read (d + 1 + (rows - 1) * P), push_next with
    the last write (d + vector_cycles), vector_busy from d + 1 to then."""
    cfg = config(4, 4, lanes, acc=64)
    rows = 3
    f = dict(func=VECTOR_OPS[func], dst=20, src1=0, src1_stride=1, rows=rows, push_prev=1, push_next=1,
             **fields)
    P = _row_cycles(cfg, f)
    beats = cfg.cols // lanes
    assert P == beats * VECTOR_ITERATIONS.get(func, 1) + (1 if fields.get("accumulate") and "src2" in fields else 0)
    sp, acc = random_buffers(cfg, 3)
    asm = [("VECTOR", f)]
    trace, (d,), got = Bench(cfg).run(asm, sp, acc)
    writes = [t for t, r in enumerate(trace) if r["we"]]
    if func == "CSUM":
        assert writes == [d + 2 + rows * P]
    else:
        assert writes == [d + 2 + (r + 1) * P for r in range(rows)]
        assert [trace[t]["acc"] for t in writes] == [20, 21, 22]
    assert writes[-1] == d + vector_cycles(rows, P)
    assert {t: r["push_prev"] for t, r in enumerate(trace) if r["push_prev"]} == {d + 1 + (rows - 1) * P: 1}
    assert {t: r["push_next"] for t, r in enumerate(trace) if r["push_next"]} == {writes[-1]: 1}
    assert [t for t, r in enumerate(trace) if r["vbusy"]] == list(range(d + 1, writes[-1] + 1))
    np.testing.assert_array_equal(got, reference(cfg, asm, sp, acc))


def test_after_matmul_and_before_the_next():
    """VECTOR waits for the array to drain into the accumulator (it may go in the cycle of the last
    write), the next MATMUL and VECTOR wait for its last write; results as in program order."""
    cfg = config(4, 4, 2, acc=64)
    sp, acc = random_buffers(cfg, 5)
    M = 5
    asm = [
        ("PRELOAD", dict(sp_addr=0, wbuf=0)),
        ("MATMUL", dict(sp_addr=4, acc_addr=30, rows=M, wbuf=0)),
        ("VECTOR", dict(func=VECTOR_OPS["RMAX"], dst=40, src1=30, src1_stride=1, rows=M, push_next=1)),
        ("MATMUL", dict(sp_addr=10, acc_addr=40, rows=2, wbuf=0, accumulate=1)),
        ("VECTOR", dict(func=VECTOR_OPS["SUB"], dst=30, src1=30, src1_stride=1, src2=40, src2_stride=1,
                        rows=M, accumulate=0)),
    ]
    trace, fired, got = Bench(cfg).run(asm, sp, acc)
    np.testing.assert_array_equal(got, reference(cfg, asm, sp, acc))
    A1 = cfg.rows + cfg.cols + 1
    mm_last_write = fired[1] + M + A1
    assert fired[2] == mm_last_write
    v_end = fired[2] + vector_cycles(M, _row_cycles(cfg, asm[2][1]))
    assert fired[3] == v_end
    assert {t: r["push_next"] for t, r in enumerate(trace) if r["push_next"]} == {v_end: 1}
    assert fired[4] == fired[3] + 2 + A1


def test_no_vector_unit_drops_vector():
    """Without a `vector` section the compute unit has no vector port and drops a VECTOR word."""
    cfg = small_config(4, 4, sp=32, acc=16)
    cu = ComputeUnit(cfg)
    assert "acc_vector" not in cu.signature.members
    m = Module()
    m.submodules.cu = cu
    isa = ISA(cfg)
    word = isa.encode("VECTOR", func=0, dst=0, src1=0, rows=1)

    async def tb(ctx):
        records, taken = await run_cycles(ctx, 4, feed=(cu.insn, [word]),
                                          probe=lambda ctx, t: ctx.get(cu.busy))
        assert taken == [0] and not any(records)
    simulate(m, tb)


def test_bad_arguments():
    with rejected(ValueError, r"^lanes must be at most cols \(4\), not 8$"):
        VectorUnit(rows=4, cols=4, lanes=8, sp_depth=32, acc_depth=32)
    with rejected(ValueError, r"^lanes must be a power of two >= 1, not 3$"):
        VectorUnit(rows=4, cols=4, lanes=3, sp_depth=32, acc_depth=32)
    v = VectorUnit(rows=4, cols=8, lanes=2, sp_depth=32, acc_depth=16)
    assert (v.rows, v.cols, v.lanes, v.beats, v.sp_depth, v.acc_depth) == (4, 8, 2, 4, 32, 16)
    simulate(v)                     # elaborates (so it counts as used)
