"""`hw/load.py` (LoadUnit): LOAD's 2-D strided copy into the scratchpad (isa/spec.yaml) against
a numpy model, the timing of its docstring, tokens, and a memory that stalls and answers late.

The testbench is the load queue and the token counter; it records the scratchpad write port
(the unit drives it) cycle by cycle. Memory is either `MemoryModel` (exact timing) or a Python
memory in the testbench that refuses requests and delays responses at random (back-pressure).
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from systolab.hw.load import LoadUnit
from systolab.hw.memmodel import MemoryModel
from systolab.isa import ISA
from support.amaranth_sim import rejected, run_cycles, simulate

from conftest import small_config

MEM_WORDS = 256


def config(R, B, L):
    return small_config(R, 2, sp=32, acc=16, bus=B, latency=L, mem_kib=64)


def image(B, seed):
    return np.random.default_rng(seed).integers(-128, 128, MEM_WORDS * B).astype(np.int8)


def reference(cfg, img, asm):
    """The scratchpad rows each LOAD writes, in order: (sp address, row bytes)."""
    R = cfg.rows
    rows = []
    for op, f in asm:
        if op == "LOAD":
            for r in range(f["rows"]):
                a = f["dram_addr"] + r * f["dram_stride"]
                rows.append((f["sp_addr"] + r, list(img[a:a + R])))
    return rows


def probe(lu):
    def probe(ctx, t):
        return {
            "we": ctx.get(lu.sp.en), "addr": ctx.get(lu.sp.addr),
            "data": [int(v) for v in ctx.get(lu.sp.data)] if ctx.get(lu.sp.en) else None,
            "req": ctx.get(lu.mem.req.valid) and ctx.get(lu.mem.req.ready),
            "push": ctx.get(lu.push), "pop": ctx.get(lu.pop), "wait": ctx.get(lu.wait),
            "busy": ctx.get(lu.busy), "ready": ctx.get(lu.insn.ready),
        }
    return probe


def run_on_model(cfg, img, asm, cycles, *, pop_ok=lambda t: 1):
    """LoadUnit on a MemoryModel (latency L, one request per cycle)."""
    B = cfg.memory.bus_bytes
    m = Module()
    lu = m.submodules.lu = LoadUnit(cfg)
    mm = m.submodules.mm = MemoryModel(words=MEM_WORDS, bus_bytes=B, latency=cfg.memory.latency)
    wiring.connect(m, lu.mem, mm.port)
    words = [ISA(cfg).encode(op, **f) for op, f in asm]
    raw = img.view(np.uint8).tobytes()
    out = {}

    async def testbench(ctx):
        for w in range(MEM_WORDS):
            ctx.set(mm.data[w], int.from_bytes(raw[w * B:(w + 1) * B], "little"))
        out["trace"], out["fired"] = await run_cycles(
            ctx, cycles, feed=(lu.insn, words), probe=probe(lu),
            drive=lambda ctx, t: ctx.set(lu.pop_ok, pop_ok(t)))

    simulate(m, testbench)
    assert len(out["fired"]) == len(words)
    return out["trace"], out["fired"]


def writes(trace):
    return [(t, r["addr"], r["data"]) for t, r in enumerate(trace) if r["we"]]


# R (array.rows = row bytes), B (bus bytes), L, dram_addr, dram_stride, rows
TIMING = [
    (4, 16, 3, 0x34, 16, 6),      # one row per word, lane 1 (0x34 % 16 = 4)
    (4, 16, 2, 0x08, 4, 9),       # four rows per word: one read serves them
    (4, 16, 4, 0x0C, 0, 5),       # stride 0: one read, the row five times
    (16, 16, 5, 0x40, 48, 7),     # a row is a word
    (8, 4, 3, 0x10, 24, 6),       # a row is two words
    (16, 4, 1, 0x20, 16, 4),      # a row is four consecutive words
]


@pytest.mark.parametrize("R, B, L, addr, stride, n", TIMING)
def test_load_rows_and_timing(R, B, L, addr, stride, n):
    """Dispatch at d, first read request at d + 1; row r written at d + L + 3 + r
    (R <= bus_bytes) or d + L + 2 + W (r + 1) (W = R / bus_bytes words per row); one read per
    distinct word; push in the cycle of the last write; busy until then."""
    cfg = config(R, B, L)
    img = image(B, R + B + L)
    asm = [("LOAD", dict(dram_addr=addr, dram_stride=stride, rows=n, sp_addr=5, push_next=1))]
    trace, (d,) = run_on_model(cfg, img, asm, 40 + L + 4 * n)
    got = writes(trace)
    assert [(a, data) for _, a, data in got] == reference(cfg, img, asm)
    W = R // B
    if R <= B:
        assert [t for t, _, _ in got] == [d + L + 3 + r for r in range(n)]
        words = {(addr + r * stride) // B for r in range(n)}
    else:
        assert [t for t, _, _ in got] == [d + L + 2 + W * (r + 1) for r in range(n)]
        words = {(addr + r * stride) // B + w for r in range(n) for w in range(W)}
    reqs = [t for t, r in enumerate(trace) if r["req"]]
    assert reqs[0] == d + 1 and len(reqs) == len(words)
    last = got[-1][0]
    assert [t for t, r in enumerate(trace) if r["push"]] == [last]
    assert [t for t, r in enumerate(trace) if r["busy"]] == list(range(d + 1, last + 1))


def test_back_to_back_loads_stream_without_a_gap():
    """The next LOAD's reads are issued while the previous one's rows are still arriving: its
    first row is written in the cycle after the previous last row. Only LOADs with push_next
    push."""
    cfg = config(16, 16, 6)
    img = image(16, 1)
    asm = [("LOAD", dict(dram_addr=0x000, dram_stride=16, rows=8, sp_addr=0)),
           ("LOAD", dict(dram_addr=0x400, dram_stride=32, rows=8, sp_addr=16, push_next=1)),
           ("LOAD", dict(dram_addr=0x800, dram_stride=16, rows=3, sp_addr=8))]
    trace, fired = run_on_model(cfg, img, asm, 60)
    got = writes(trace)
    assert [(a, data) for _, a, data in got] == reference(cfg, img, asm)
    cycles = [t for t, _, _ in got]
    assert cycles == list(range(cycles[0], cycles[0] + 19))
    assert [t for t, r in enumerate(trace) if r["push"]] == [cycles[15]]


def test_pop_waits_for_a_token():
    """A LOAD with pop_next waits (``wait`` high, no read) until the counter is non-zero and
    takes one token when it is dispatched; without pop_next a LOAD ignores the counter."""
    cfg = config(4, 16, 2)
    img = image(16, 2)
    asm = [("LOAD", dict(dram_addr=0, dram_stride=4, rows=2, sp_addr=0)),
           ("LOAD", dict(dram_addr=0x40, dram_stride=4, rows=2, sp_addr=2, pop_next=1))]
    trace, fired = run_on_model(cfg, img, asm, 40, pop_ok=lambda t: t >= 12)
    assert fired[0] == 0 and fired[1] == 12
    assert [t for t, r in enumerate(trace) if r["pop"]] == [12]
    assert [t for t, r in enumerate(trace) if r["wait"]] == list(range(1, 12))
    reqs = [t for t, r in enumerate(trace) if r["req"]]
    assert reqs == [1, 13]                       # one word per LOAD, the second after the pop
    assert [(a, data) for _, a, data in writes(trace)] == reference(cfg, img, asm)


def test_other_opcodes_are_dropped():
    cfg = config(4, 16, 2)
    asm = [("MATMUL", dict(sp_addr=0, acc_addr=0, rows=1, wbuf=0, accumulate=0)),
           ("LOAD", dict(dram_addr=0, dram_stride=4, rows=1, sp_addr=3))]
    trace, fired = run_on_model(cfg, image(16, 3), asm, 20)
    assert fired == [0, 1]
    assert [(a, data) for _, a, data in writes(trace)] == reference(cfg, image(16, 3), asm)


def run_on_slow_memory(cfg, img, asm, seed, cycles):
    """LoadUnit on a memory that accepts a request with probability 1/2 and answers each read
    1..8 cycles after accepting it (in order); the queue offers the LOADs when it can."""
    B = cfg.memory.bus_bytes
    rng = np.random.default_rng(seed)
    lu = LoadUnit(cfg)
    words = [ISA(cfg).encode(op, **f) for op, f in asm]
    raw = img.view(np.uint8).tobytes()
    out = {}
    pending = []                                  # [cycle due, word address]
    req, resp = lu.mem.req, lu.mem.resp

    def drive(ctx, t):
        ctx.set(lu.pop_ok, 1)
        ctx.set(req.ready, rng.random() < 0.5)
        due = pending and pending[0][0] <= t
        ctx.set(resp.valid, bool(due))
        if due:
            a = pending[0][1]
            ctx.set(resp.payload.rdata, int.from_bytes(raw[a * B:(a + 1) * B], "little"))

    base = probe(lu)

    def record(ctx, t):
        r = base(ctx, t)
        if ctx.get(resp.valid) and ctx.get(resp.ready):
            pending.pop(0)
        if ctx.get(req.valid) and ctx.get(req.ready):
            assert not ctx.get(req.payload.we)
            prev = pending[-1][0] if pending else t
            pending.append([max(prev + 1, t + int(rng.integers(1, 9))), ctx.get(req.payload.addr)])
        return r

    async def testbench(ctx):
        out["trace"], out["fired"] = await run_cycles(ctx, cycles, feed=(lu.insn, words),
                                                      drive=drive, probe=record)
        assert not pending and not out["trace"][-1]["busy"]

    simulate(lu, testbench)
    assert len(out["fired"]) == len(words)
    return out["trace"]


@pytest.mark.parametrize("R, B, seed", [(4, 16, 0), (16, 16, 1), (8, 4, 2), (4, 4, 3), (16, 32, 4)])
def test_random_loads_under_back_pressure(R, B, seed):
    """Random aligned LOADs (lanes, strides 0 / R / multiples, several words per row) on a memory
    that stalls requests and answers late: every row lands where the spec says, in order, and
    each push_next comes with its LOAD's last row."""
    cfg = config(R, B, 4)
    rng = np.random.default_rng(100 + seed)
    img = image(B, seed)
    align = min(R, B)
    asm = []
    for _ in range(8):
        n = int(rng.integers(1, 7))
        stride = int(rng.choice([0, R, 2 * R, 3 * align, 4 * B])) // align * align
        addr = int(rng.integers(0, (MEM_WORDS * B - R - (n - 1) * stride) // align)) * align
        asm.append(("LOAD", dict(dram_addr=addr, dram_stride=stride, rows=n,
                                 sp_addr=int(rng.integers(0, 32 - n + 1)),
                                 push_next=int(rng.integers(2)))))
    trace = run_on_slow_memory(cfg, img, asm, seed, 500)
    got = writes(trace)
    assert [(a, data) for _, a, data in got] == reference(cfg, img, asm)
    last_rows = np.cumsum([f["rows"] for _, f in asm]) - 1
    expect_push = [got[i][0] for i, (_, f) in zip(last_rows, asm) if f["push_next"]]
    assert [t for t, r in enumerate(trace) if r["push"]] == expect_push


def test_load_arguments_are_checked():
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not 'x'$"):
        LoadUnit("x")
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not 4$"):
        LoadUnit(4)
