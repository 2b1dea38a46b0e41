"""`hw/fetch.py` (FetchUnit) on a `MemoryModel`: reads `insn_count` words from `insn_addr`,
dispatches each to the queue of its opcode (isa/spec.yaml) in program order, holds when a queue
is full (``stall``), and the timing of its docstring.

The testbench is the three queues: it sets their ``ready`` each cycle and records what each takes.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from systolab.hw.common import read_buffer_words
from systolab.hw.fetch import FetchUnit
from systolab.hw.memmodel import MemoryModel
from systolab.isa import ISA, QUEUES
from support.amaranth_sim import rejected, run_cycles, simulate

from conftest import small_config

INSN_BYTES = 16


class Bench:
    def __init__(self, cfg, words=1024):
        self.cfg = cfg
        self.isa = ISA(cfg)
        self.B = cfg.memory.bus_bytes
        m = self.m = Module()
        self.fetch = m.submodules.fetch = FetchUnit(cfg)
        self.mm = m.submodules.mm = MemoryModel(words=words, bus_bytes=self.B, latency=cfg.memory.latency)
        wiring.connect(m, self.fetch.mem, self.mm.port)

    def run(self, program, insn_addr, cycles, *, count=None, ready=lambda t, q: True, extra=None):
        """Write `program` (instruction words) at `insn_addr`, pulse start in cycle 0 and run.
        Returns the per-cycle trace: requests (word address) and takes (queue index, word)."""
        fetch, mm, B = self.fetch, self.mm, self.B
        image = bytearray(mm.words * B)
        for k, w in enumerate(program):
            image[insn_addr + INSN_BYTES * k:insn_addr + INSN_BYTES * (k + 1)] = w.to_bytes(INSN_BYTES, "little")
        out = {}

        def drive(ctx, t):
            ctx.set(fetch.start, t == 0 or (extra is not None and t == extra[0]))
            ctx.set(fetch.insn_addr, insn_addr if t == 0 else (extra[1] if extra else 0))
            ctx.set(fetch.insn_count, (len(program) if count is None else count) if t == 0 else 7)
            for i, q in enumerate(fetch.queues):
                ctx.set(q.ready, ready(t, i))

        def probe(ctx, t):
            req = fetch.mem.req
            return {
                "req": ctx.get(req.payload.addr) if ctx.get(req.valid) and ctx.get(req.ready) else None,
                "take": [(i, ctx.get(q.payload)) for i, q in enumerate(fetch.queues)
                         if ctx.get(q.valid) and ctx.get(q.ready)],
                "valid": [ctx.get(q.valid) for q in fetch.queues],
                "stall": ctx.get(fetch.stall), "busy": ctx.get(fetch.busy),
            }

        async def testbench(ctx):
            for w in range(mm.words):
                ctx.set(mm.data[w], int.from_bytes(image[w * B:(w + 1) * B], "little"))
            out["trace"], _ = await run_cycles(ctx, cycles, drive=drive, probe=probe)

        simulate(self.m, testbench)
        return out["trace"]


def random_program(isa, n, seed, *, junk=0):
    """`n` random instructions (every opcode, random fields and token flags) and `junk` words
    whose opcode is not an instruction, shuffled in."""
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(n):
        op = rng.choice(list(isa.formats))
        fmt = isa.formats[op]
        values = {f.name: int(rng.integers(0, f.mask + 1)) for f in fmt.fields}
        if "rows" in values:
            values["rows"] = max(1, values["rows"])
        for flag in fmt.allowed_tokens:
            values[flag] = int(rng.integers(2))
        words.append(isa.encode(str(op), **values))
    valid = {f.opcode for f in isa.formats.values()}
    bad = [o for o in range(8) if o not in valid]
    for _ in range(junk):
        words.insert(int(rng.integers(0, len(words) + 1)),
                     int.from_bytes(rng.bytes(15), "little") << 8 | int(rng.choice(bad)))
    return words


def expected_queues(isa, words):
    """What each queue must receive: the words of its opcodes, in program order."""
    per = [[] for _ in QUEUES]
    for w in words:
        fmt = isa.by_opcode.get(w & 7)
        if fmt is not None:
            per[QUEUES.index(fmt.queue)].append(w)
    return per


def taken(trace):
    return [(t, q, w) for t, r in enumerate(trace) for q, w in r["take"]]


@pytest.mark.parametrize("bus, latency, insn_addr", [(16, 1, 0), (16, 5, 0x40), (4, 3, 0x20), (8, 2, 0x30)])
def test_fetch_timing(bus, latency, insn_addr):
    """start in cycle 0: word i of the program is requested at 2 + i, back to back; with
    W = 16 / bus_bytes words per instruction, instruction k reaches its queue at
    3 + L + W (k + 1) (4 + k + L for a 16-byte bus, as the docstring says)."""
    cfg = small_config(4, 4, bus=bus, latency=latency, mem_kib=64)
    b = Bench(cfg, words=512)
    W = max(1, INSN_BYTES // bus)
    program = random_program(b.isa, 12, seed=bus + latency)
    trace = b.run(program, insn_addr, 3 + latency + W * 12 + 6)
    reqs = [(t, r["req"]) for t, r in enumerate(trace) if r["req"] is not None]
    assert reqs == [(2 + i, insn_addr // bus + i) for i in range(W * 12)]
    got = taken(trace)
    assert [t for t, _, _ in got] == [3 + latency + W * (k + 1) for k in range(12)]
    assert [w for _, _, w in got] == program
    busy = [t for t, r in enumerate(trace) if r["busy"]]
    assert busy == list(range(1, got[-1][0] + 1))            # from the cycle after start to the last one
    assert not any(r["stall"] for r in trace)


@pytest.mark.parametrize("bus", [4, 16, 32])
def test_dispatch_by_opcode_in_order(bus):
    """Every instruction goes to the queue of its opcode (from the spec), in program order;
    words whose opcode is not an instruction are dropped. A 32-byte bus holds two instructions
    per word (insn_addr in the upper half of a word)."""
    cfg = small_config(4, 4, bus=bus, latency=3, mem_kib=64)
    b = Bench(cfg, words=256)
    program = random_program(b.isa, 30, seed=bus, junk=5)
    trace = b.run(program, 0x50, 200)
    got = taken(trace)
    per = [[w for _, q, w in got if q == i] for i in range(len(QUEUES))]
    assert per == expected_queues(b.isa, program)
    assert [w for _, _, w in got] == [w for w in program if (w & 7) in b.isa.by_opcode]
    assert all(len(set(t for t, _, _ in got if t == c)) <= 1 for c, _, _ in got)   # one per cycle
    assert sum(r["req"] is not None for r in trace) == -(-len(program) * INSN_BYTES // bus)
    assert not trace[-1]["busy"]


def test_full_queue_holds_everything_behind_it():
    """While the compute queue is full (ready low), the instruction for it is offered and held
    (``stall``), nothing behind it reaches any other queue, and the reader stops after filling
    its prefetch buffer (at most buffer_words - 1 words requested and not yet dispatched).
    Released, the program continues in order with nothing lost or fetched twice."""
    cfg = small_config(4, 4, bus=16, latency=4, mem_kib=64)
    b = Bench(cfg, words=256)
    isa = b.isa
    program = ([isa.encode("LOAD", dram_addr=0, dram_stride=4, rows=1, sp_addr=k) for k in range(2)] +
               [isa.encode("MATMUL", sp_addr=0, acc_addr=0, rows=1, wbuf=0)] +
               [isa.encode("LOAD", dram_addr=0, dram_stride=4, rows=1, sp_addr=k) for k in range(20)] +
               [isa.encode("STORE", dram_addr=0, dram_stride=4, rows=1, acc_addr=0, param_addr=0)])
    compute = QUEUES.index("compute")
    hold = range(0, 60)
    trace = b.run(program, 0, 120, ready=lambda t, q: not (q == compute and t in hold))
    got = taken(trace)
    assert [w for _, _, w in got] == program
    t_mm = got[2][0]
    assert t_mm == hold.stop                                 # taken the first cycle it may be
    first_offer = 4 + cfg.memory.latency + 2                 # instruction 2 arrives
    stalled = [t for t, r in enumerate(trace) if r["stall"]]
    assert stalled == list(range(first_offer, t_mm))
    assert all(trace[t]["valid"][compute] for t in stalled)
    assert all(not trace[t]["take"] for t in stalled)
    # the prefetch buffer bounds the reads ahead of the held instruction
    requested_by = np.cumsum([r["req"] is not None for r in trace])
    assert requested_by[t_mm - 1] - 2 <= read_buffer_words(cfg) - 1
    assert requested_by[t_mm - 1] - 2 >= cfg.memory.latency        # it did prefetch
    assert requested_by[-1] == len(program)
    assert [t for t, _, _ in got[3:]] == list(range(t_mm + 1, t_mm + 1 + len(program) - 3))


def test_zero_instructions_and_start_while_busy():
    """insn_count 0: no read, never busy. A start while busy is ignored (the latched address and
    count stay)."""
    cfg = small_config(4, 4, bus=16, latency=2, mem_kib=64)
    b = Bench(cfg, words=256)
    trace = b.run([], 0, 20, count=0)
    assert not any(r["busy"] or r["req"] is not None or r["take"] for r in trace)
    program = random_program(b.isa, 6, seed=1)
    trace = Bench(cfg, words=256).run(program, 0x100, 40, extra=(3, 0x0))        # second start in cycle 3, at 0, count 7
    assert [w for _, _, w in taken(trace)] == program
    assert [r["req"] for r in trace if r["req"] is not None] == [0x100 // 16 + i for i in range(6)]


def test_fetch_arguments_are_checked():
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not 'x'$"):
        FetchUnit("x")
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not \{\}$"):
        FetchUnit({})
