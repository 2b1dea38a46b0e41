"""`hw/compute.py` (ComputeUnit) with a scratchpad and an accumulator, against a numpy model of
PRELOAD / MATMUL (isa/spec.yaml) and the cycle timing of its docstring and `hw/timing.py`.

The testbench is the compute queue and the token counters: it offers instruction words on
``insn`` and drives ``pop_prev_ok`` / ``pop_next_ok``; it records, cycle by cycle, dispatches,
row issues, accumulator writes and token pushes/pops. Cycle numbers are those of `run_cycles`.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from systolab.hw.buffers import Accumulator, Scratchpad
from systolab.hw.compute import ComputeUnit
from systolab.hw.timing import array_latency, compute_pipeline_depth, preload_read_cycles, wbuf_reuse_delay
from systolab.isa import ISA
from support.amaranth_sim import read_rows, rejected, run_cycles, simulate

from conftest import small_config


def config(rows, cols, sp=32, acc=16):
    return small_config(rows, cols, sp=sp, acc=acc, bus=16, latency=2, mem_kib=64)


class Bench:
    """ComputeUnit + Scratchpad + Accumulator; `run` executes instruction words on a scratchpad
    image and returns the per-cycle trace, the dispatch cycles and the accumulator."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.isa = ISA(cfg)
        m = self.m = Module()
        cu = self.cu = m.submodules.cu = ComputeUnit(cfg)
        sp = self.sp = m.submodules.sp = Scratchpad(rows=cfg.rows, depth=cfg.scratchpad.depth)
        acc = self.acc = m.submodules.acc = Accumulator(cols=cfg.cols, depth=cfg.accumulator.depth)
        wiring.connect(m, cu.sp_preload, sp.read_preload)
        wiring.connect(m, cu.sp_matmul, sp.read_matmul)
        wiring.connect(m, cu.acc_read, acc.read_acc)
        wiring.connect(m, cu.acc_write, acc.write)

    def words(self, asm):
        return [self.isa.encode(op, **f) for op, f in asm]

    def run(self, asm, sp_image, *, cycles=None, prev_ok=lambda t: 1, next_ok=lambda t: 1):
        cu, sp, acc, cfg = self.cu, self.sp, self.acc, self.cfg
        words = self.words(asm)
        if cycles is None:
            rows = sum(f.get("rows", 0) for _, f in asm)
            cycles = rows + len(asm) * (cfg.cols + cfg.rows + 2) + 2 * cu.pipeline_depth + 8
        out = {}

        def drive(ctx, t):
            ctx.set(cu.pop_prev_ok, prev_ok(t))
            ctx.set(cu.pop_next_ok, next_ok(t))

        def probe(ctx, t):
            return {
                "valid": ctx.get(cu.insn.valid), "ready": ctx.get(cu.insn.ready),
                "row": ctx.get(cu.row_issue), "sp_mm": ctx.get(cu.sp_matmul.addr),
                "sp_pl": ctx.get(cu.sp_preload.addr),
                "we": ctx.get(cu.acc_write.en), "acc": ctx.get(cu.acc_write.addr),
                "push_prev": ctx.get(cu.push_prev), "push_next": ctx.get(cu.push_next),
                "pop_prev": ctx.get(cu.pop_prev), "pop_next": ctx.get(cu.pop_next),
                "busy": ctx.get(cu.busy), "wait": ctx.get(cu.wait),
            }

        async def testbench(ctx):
            ctx.set(sp.write.en, 1)
            for a, row in enumerate(sp_image):
                ctx.set(sp.write.addr, a)
                ctx.set(sp.write.data, [int(v) for v in row])
                await ctx.tick()
            ctx.set(sp.write.en, 0)
            out["trace"], out["fired"] = await run_cycles(ctx, cycles, feed=(cu.insn, words),
                                                          drive=drive, probe=probe)
            assert len(out["fired"]) == len(words), "not every instruction was dispatched"
            assert not out["trace"][-1]["busy"], "still busy at the end of the run"
            out["acc"] = np.array(await read_rows(ctx, acc.read_store, cfg.accumulator.depth), dtype=np.int64)

        simulate(self.m, testbench)
        return out["trace"], out["fired"], out["acc"]


def cycles_where(trace, key, value=None):
    return [t for t, r in enumerate(trace) if (r[key] if value is None else r[key] == value)]


def pushes(trace, key):
    """{cycle: tokens} of a push output."""
    return {t: r[key] for t, r in enumerate(trace) if r[key]}


def reference(cfg, asm, sp_image):
    """In-order execution of PRELOAD / MATMUL / SYNC (isa/spec.yaml), int32 wrap."""
    R, C = cfg.rows, cfg.cols
    sp = np.asarray(sp_image, dtype=np.int64)
    W = np.zeros((2, R, C), dtype=np.int64)
    acc = np.zeros((cfg.accumulator.depth, C), dtype=np.int64)
    for op, f in asm:
        if op == "PRELOAD":
            W[f["wbuf"]] = sp[f["sp_addr"]:f["sp_addr"] + C].T       # row j = column j of W
        elif op == "MATMUL":
            for r in range(f["rows"]):
                y = sp[f["sp_addr"] + r] @ W[f["wbuf"]]
                a = f["acc_addr"] + r
                acc[a] = y + acc[a] if f.get("accumulate") else y
    return (acc + 2**31) % 2**32 - 2**31


def random_image(cfg, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (cfg.scratchpad.depth, cfg.rows))


SHAPES = [(2, 2), (4, 4), (2, 4), (4, 2)]


@pytest.mark.parametrize("rows, cols", SHAPES)
def test_matmul_timing(rows, cols):
    """One MATMUL of M rows dispatched at d: rows issued at d+1 .. d+M from sp_addr on, row r
    written at d + 2 + r + A (A = rows + cols, the array latency), push_prev when the last row
    is read (d + M), push_next with the last write (d + M + 1 + A); busy until that write."""
    cfg = config(rows, cols)
    b = Bench(cfg)
    A = rows + cols
    assert b.cu.array_latency == array_latency(rows, cols) == A
    assert b.cu.pipeline_depth == compute_pipeline_depth(rows, cols) == A + 1
    M, sp0, acc0 = 5, 3, 6
    asm = [("MATMUL", dict(sp_addr=sp0, acc_addr=acc0, rows=M, wbuf=0, accumulate=0,
                           push_prev=1, push_next=1))]
    trace, (d,), _ = b.run(asm, random_image(cfg, 1))
    assert cycles_where(trace, "row") == list(range(d + 1, d + M + 1))
    assert [trace[t]["sp_mm"] for t in range(d + 1, d + M + 1)] == list(range(sp0, sp0 + M))
    writes = cycles_where(trace, "we")
    assert writes == [d + 2 + r + A for r in range(M)]
    assert [trace[t]["acc"] for t in writes] == list(range(acc0, acc0 + M))
    assert pushes(trace, "push_prev") == {d + M: 1}
    assert pushes(trace, "push_next") == {d + M + 1 + A: 1}
    assert cycles_where(trace, "busy") == list(range(d + 1, d + M + 2 + A))
    assert not cycles_where(trace, "pop_prev") and not cycles_where(trace, "pop_next")


@pytest.mark.parametrize("rows, cols", SHAPES)
def test_preload_then_matmul(rows, cols):
    """A PRELOAD dispatched at d reads weight column j at d + 1 + j; the MATMUL behind it is
    dispatched when the last column is read (d + cols), and uses the new weights. The
    PRELOAD's push_prev comes at d + cols, its push_next down the row pipeline (d + cols +
    pipeline depth)."""
    cfg = config(rows, cols)
    b = Bench(cfg)
    image = random_image(cfg, 2)
    asm = [("PRELOAD", dict(sp_addr=10, wbuf=1, push_prev=1, push_next=1)),
           ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=4, wbuf=1, accumulate=0))]
    trace, (d, d_mm), acc = b.run(asm, image)
    assert [trace[d + 1 + j]["sp_pl"] for j in range(cols)] == list(range(10, 10 + cols))
    assert d_mm == d + preload_read_cycles(cols) == d + cols
    assert cycles_where(trace, "row") == list(range(d_mm + 1, d_mm + 5))
    assert pushes(trace, "push_prev") == {d + cols: 1}
    assert pushes(trace, "push_next") == {d + cols + compute_pipeline_depth(rows, cols): 1}
    np.testing.assert_array_equal(acc, reference(cfg, asm, image))


@pytest.mark.parametrize("rows, cols", [(2, 2), (4, 4), (4, 2)])
def test_back_to_back_tiles_have_no_bubble(rows, cols):
    """MATMUL(b0), PRELOAD(b1) hidden behind it, MATMUL(b1), ...: the second MATMUL's first row
    follows the first one's last row in the next cycle. The hidden PRELOAD holds its tokens until
    the older MATMUL has issued its last row, so both push_prev come in that cycle (2 tokens),
    and both push_next in the cycle of the MATMUL's last write."""
    cfg = config(rows, cols)
    b = Bench(cfg)
    image = random_image(cfg, 3)
    M = cols + 3                      # long enough to hide the PRELOAD (>= cols + 1 rows)
    asm = [("PRELOAD", dict(sp_addr=16, wbuf=0)),
           ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=M, wbuf=0, accumulate=0,
                           push_prev=1, push_next=1)),
           ("PRELOAD", dict(sp_addr=16 + cols, wbuf=1, push_prev=1, push_next=1)),
           ("MATMUL", dict(sp_addr=1, acc_addr=M, rows=M, wbuf=1, accumulate=0)),
           ("PRELOAD", dict(sp_addr=20, wbuf=0)),
           ("MATMUL", dict(sp_addr=2, acc_addr=1, rows=3, wbuf=0, accumulate=1))]
    trace, fired, acc = b.run(asm, image)
    d1, d_pl = fired[1], fired[2]
    assert d_pl == d1 + 1                                      # not blocked: the other buffer
    assert fired[3] == d1 + M                                  # dispatched on the last row
    assert cycles_where(trace, "row") == list(range(d1 + 1, d1 + 2 * M + 3 + 1))
    A = array_latency(rows, cols)
    assert pushes(trace, "push_prev") == {d1 + M: 2}
    assert pushes(trace, "push_next") == {d1 + M + 1 + A: 2}
    np.testing.assert_array_equal(acc, reference(cfg, asm, image))


@pytest.mark.parametrize("rows, cols", [(2, 2), (4, 4), (8, 2)])
@pytest.mark.parametrize("M", [1, 3])
def test_weight_buffer_interlock(rows, cols, M):
    """A PRELOAD into the buffer the MATMUL before it streams from is dispatched exactly
    `wbuf_reuse_delay(rows)` cycles after that MATMUL's last row is issued (never before the
    cycle after the MATMUL: one dispatch per cycle), and the MATMUL still sees the old weights."""
    cfg = config(rows, cols)
    b = Bench(cfg)
    image = random_image(cfg, 4 + M)
    asm = [("PRELOAD", dict(sp_addr=16, wbuf=0)),
           ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=M, wbuf=0, accumulate=0)),
           ("PRELOAD", dict(sp_addr=24, wbuf=0)),
           ("MATMUL", dict(sp_addr=4, acc_addr=8, rows=2, wbuf=0, accumulate=0))]
    trace, fired, acc = b.run(asm, image)
    last_row = fired[1] + M
    assert fired[2] == max(fired[1] + 1, last_row + wbuf_reuse_delay(rows))
    assert wbuf_reuse_delay(rows) == max(0, rows - 2)
    np.testing.assert_array_equal(acc, reference(cfg, asm, image))


def test_token_pops_happen_at_dispatch():
    """A MATMUL with pop_prev waits (``wait`` high, not ready) while the counter is empty and
    takes one token in its dispatch cycle; a SYNC with pop_next likewise. SYNC pushes push_prev
    at dispatch and push_next one pipeline depth later."""
    cfg = config(4, 4)
    b = Bench(cfg)
    asm = [("MATMUL", dict(sp_addr=0, acc_addr=0, rows=2, wbuf=0, accumulate=0, pop_prev=1)),
           ("SYNC", dict(pop_next=1, push_prev=1, push_next=1))]
    trace, (d_mm, d_sync), _ = b.run(asm, random_image(cfg, 5), prev_ok=lambda t: t >= 7,
                                     next_ok=lambda t: t >= 20)
    assert d_mm == 7
    assert cycles_where(trace, "wait") == list(range(d_mm)) + list(range(d_mm + 1, 20))
    assert cycles_where(trace, "pop_prev") == [7]
    assert d_sync == 20 and cycles_where(trace, "pop_next") == [20]
    assert not any(trace[t]["ready"] for t in range(7))
    assert pushes(trace, "push_prev") == {20: 1}
    assert pushes(trace, "push_next") == {20 + compute_pipeline_depth(4, 4): 1}


def test_sync_waits_for_both_engines():
    """SYNC is dispatched when the MATMUL engine issues its last row and the preload engine is
    idle: behind a PRELOAD it waits until the PRELOAD has read its last column."""
    cfg = config(2, 4)
    b = Bench(cfg)
    asm = [("MATMUL", dict(sp_addr=0, acc_addr=0, rows=2, wbuf=0, accumulate=0)),
           ("PRELOAD", dict(sp_addr=8, wbuf=1)),
           ("SYNC", dict(push_prev=1))]
    trace, (d_mm, d_pl, d_sync), _ = b.run(asm, random_image(cfg, 6))
    assert d_pl == d_mm + 1
    # the preload engine reads columns d_pl + 1 .. d_pl + cols and is idle from the next cycle
    assert d_sync == d_pl + cfg.cols + 1
    assert pushes(trace, "push_prev") == {d_sync: 1}


@pytest.mark.parametrize("rows, cols, seed", [(2, 2, 0), (4, 4, 1), (2, 4, 2), (4, 2, 3), (4, 4, 4)])
def test_random_compute_programs_match_numpy(rows, cols, seed):
    """Random PRELOAD / MATMUL mixes (either buffer, 1..6 rows, accumulate or overwrite,
    overlapping accumulator ranges, 1-row MATMULs into the row just written) give exactly the
    in-order result: every interlock and forwarding path is exact."""
    cfg = config(rows, cols)
    rng = np.random.default_rng(seed)
    sp_depth, acc_depth = cfg.scratchpad.depth, cfg.accumulator.depth
    asm = [("PRELOAD", dict(sp_addr=int(rng.integers(0, sp_depth - cols + 1)), wbuf=0)),
           ("PRELOAD", dict(sp_addr=int(rng.integers(0, sp_depth - cols + 1)), wbuf=1))]
    for _ in range(28):
        if rng.random() < 0.3:
            asm.append(("PRELOAD", dict(sp_addr=int(rng.integers(0, sp_depth - cols + 1)),
                                        wbuf=int(rng.integers(2)))))
        else:
            n = int(rng.choice([1, 1, 2, 3, 6]))
            acc_addr = int(rng.integers(0, 4)) if rng.random() < 0.5 else int(rng.integers(0, acc_depth - n + 1))
            asm.append(("MATMUL", dict(sp_addr=int(rng.integers(0, sp_depth - n + 1)), acc_addr=acc_addr,
                                       rows=n, wbuf=int(rng.integers(2)),
                                       accumulate=int(rng.random() < 0.6))))
    image = random_image(cfg, 10 + seed)
    trace, fired, acc = Bench(cfg).run(asm, image)
    np.testing.assert_array_equal(acc, reference(cfg, asm, image))
    assert len(cycles_where(trace, "row")) == sum(f["rows"] for op, f in asm if op == "MATMUL")


def test_non_compute_word_is_dropped():
    """A word with another queue's opcode is taken at once and does nothing."""
    cfg = config(2, 2)
    b = Bench(cfg)
    asm = [("LOAD", dict(dram_addr=0, dram_stride=2, rows=1, sp_addr=0)),
           ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=1, wbuf=0, accumulate=0))]
    trace, fired, _ = b.run(asm, random_image(cfg, 7))
    assert fired == [0, 1]
    assert cycles_where(trace, "row") == [2]


def test_compute_arguments_are_checked():
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not 'x'$"):
        ComputeUnit("x")
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not None$"):
        ComputeUnit(None)
