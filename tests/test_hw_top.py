"""The whole accelerator (`SimTop`) in Amaranth's simulator against the functional simulator.

Programs run the way a host runs them: the image goes in through the host port, `start` is
pulsed, the testbench waits for `done`. Memory must match the functional simulator bit for bit
(all of it: stray writes would show), and the counters must be consistent with the program.
"""

import numpy as np
import pytest

from systolab.codegen.gemm import compile_gemm, random_gemm
from systolab.codegen.program import Program, Region, pack_words
from systolab.perf import predict
from systolab.sim import fuzz
from systolab.hw.counters import COUNTERS
from support.simrun import simulate_program
from systolab.hw.simtop import SimTop
from support.amaranth_sim import rejected, simulate
from systolab.isa import ISA
from systolab.sim.functional import FunctionalSim

from conftest import small_config

CONFIGS = {
    "4x4": small_config(4, 4, sp=64, acc=32, bus=16, latency=4, mem_kib=64, queues={"depth": 4}),
    "4x8": small_config(4, 8, sp=64, acc=32, bus=16, latency=3, mem_kib=64, queues={"depth": 2}),
    "8x4-bus8": small_config(8, 4, sp=64, acc=16, bus=8, latency=6, mem_kib=64),
    "2x4-bus4": small_config(2, 4, sp=32, acc=16, bus=4, latency=1, mem_kib=64, queues={"depth": 2}),
}

GEMMS = [("4x4", (8, 12, 8), False), ("4x8", (13, 20, 11), True), ("8x4-bus8", (10, 16, 9), False),
         ("2x4-bus4", (5, 6, 7), True), ("4x8", (40, 8, 16), False)]


def check_run(cfg, program, hw_program=None):
    ref = FunctionalSim(cfg).run(program)
    res = simulate_program(cfg, hw_program or program)
    np.testing.assert_array_equal(res.memory, ref.memory)
    c = res.counters
    assert set(c) == set(COUNTERS)
    assert 0 < c["cycles"] <= res.cycles_to_done
    assert c["array_busy"] == ref.matmul_rows
    assert c["compute_busy"] >= c["array_busy"]
    assert all(c[name] <= c["cycles"] for name in COUNTERS)
    return ref, res


@pytest.mark.parametrize("name, shape, relu", GEMMS)
def test_gemm_matches_functional_sim(name, shape, relu):
    cfg = CONFIGS[name]
    g = random_gemm(*shape, seed=sum(shape), relu=relu)
    program = compile_gemm(cfg, g)
    ref, res = check_run(cfg, program)
    c = res.counters
    out_rows = shape[0] * -(-shape[2] // cfg.cols)
    assert c["mem_writes"] == out_rows * max(1, cfg.out_row_bytes // cfg.memory.bus_bytes)
    assert c["mem_reads"] > 0


def hand_program(cfg):
    """A program the compiler would not write, for the corners of the compute and store units
    (4x8 config): a PRELOAD into the buffer the previous 1-row MATMUL just used (interlock),
    1-row MATMULs accumulating back to back into the same accumulator row (transparent read),
    a PRELOAD hidden behind a long MATMUL, a STORE whose output is LOADed back through a SYNC
    (store -> compute -> load tokens), and a second STORE with ReLU."""
    isa = ISA(cfg)
    rows, cols = cfg.rows, cfg.cols
    rng = np.random.default_rng(5)
    image = np.zeros(0x1000, dtype=np.uint8)
    A = rng.integers(-128, 128, (16, rows), dtype=np.int8)
    W = rng.integers(-128, 128, (4, cols, rows), dtype=np.int8)      # 4 tiles, stored transposed
    image[0x000:0x040] = A.view(np.uint8).reshape(-1)
    image[0x100:0x100 + W.size] = W.view(np.uint8).reshape(-1)
    params = np.stack([rng.integers(-2000, 2000, cols),                  # bias
                       np.full(cols, 1 << 24), np.full(cols, 31),        # mult, shift: / 128
                       rng.integers(-5, 5, cols)]).astype("<i4")         # zero point
    image[0x400:0x400 + params.nbytes] = params.view(np.uint8).reshape(-1)
    asm = [
        ("LOAD", dict(dram_addr=0x000, dram_stride=rows, rows=16, sp_addr=0)),
        ("LOAD", dict(dram_addr=0x100, dram_stride=rows, rows=4 * cols, sp_addr=16, push_next=1)),
        ("PRELOAD", dict(sp_addr=16, wbuf=0, pop_prev=1)),
        ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=1, wbuf=0, accumulate=0)),
        ("PRELOAD", dict(sp_addr=16 + cols, wbuf=0)),                         # interlock
        ("MATMUL", dict(sp_addr=1, acc_addr=0, rows=1, wbuf=0, accumulate=1)),
        ("MATMUL", dict(sp_addr=2, acc_addr=0, rows=1, wbuf=0, accumulate=1)),  # same row, back to back
        ("MATMUL", dict(sp_addr=3, acc_addr=0, rows=1, wbuf=0, accumulate=1)),
        ("PRELOAD", dict(sp_addr=16 + 2 * cols, wbuf=1)),
        ("MATMUL", dict(sp_addr=0, acc_addr=1, rows=16, wbuf=1, accumulate=0)),
        ("PRELOAD", dict(sp_addr=16 + 3 * cols, wbuf=0)),                     # behind the MATMUL
        ("MATMUL", dict(sp_addr=0, acc_addr=1, rows=16, wbuf=0, accumulate=1, push_next=1)),
        ("STORE", dict(dram_addr=0x800, dram_stride=cols, rows=17, acc_addr=0, param_addr=0x400,
                       relu=0, pop_prev=1, push_prev=1)),
        ("SYNC", dict(pop_next=1, push_prev=1)),
        ("LOAD", dict(dram_addr=0x800, dram_stride=rows, rows=cols, sp_addr=48, pop_next=1,
                      push_next=1)),
        ("PRELOAD", dict(sp_addr=48, wbuf=1, pop_prev=1)),
        ("MATMUL", dict(sp_addr=4, acc_addr=20, rows=4, wbuf=1, accumulate=0, push_next=1)),
        ("STORE", dict(dram_addr=0x900, dram_stride=2 * cols, rows=4, acc_addr=20,
                       param_addr=0x400, relu=1, pop_prev=1)),
    ]
    words = [isa.encode(op, **fields) for op, fields in asm]
    insn_addr = 0xA00
    for i, w in enumerate(words):
        image[insn_addr + 16 * i:insn_addr + 16 * (i + 1)] = np.frombuffer(w.to_bytes(16, "little"), np.uint8)
    program = Program(cfg.compile_hash, words, image, insn_addr, {}, ())
    # the hardware also gets a word that is not an instruction (opcode 0), which it drops
    hw_program = Program(cfg.compile_hash, words + [0], image, insn_addr, {}, ())
    return program, hw_program


def test_hand_written_program_corners():
    cfg = CONFIGS["4x8"]
    program, hw_program = hand_program(cfg)
    ref, res = check_run(cfg, program, hw_program)
    assert res.counters["mem_writes"] == 17 + 4
    # the LOAD after the SYNC read what the STORE wrote: its rows reached the output
    assert np.any(ref.memory[0x900:0x900 + 4 * 2 * cfg.cols] != 0)


def test_restart_zero_instructions_and_counters():
    """Two runs of the same program give the same counters (reset by start); busy/done follow
    the contract; a run of zero instructions finishes at once; start while busy is ignored."""
    cfg = CONFIGS["4x4"]
    program = compile_gemm(cfg, random_gemm(4, 8, 4, seed=1))
    top = SimTop(cfg)
    B = cfg.memory.bus_bytes
    image = program.memory(cfg)[:len(program.image)]
    runs = []

    async def run(ctx, count, *, poke_start=False):
        ctx.set(top.insn_addr, program.insn_addr)
        ctx.set(top.insn_count, count)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        assert ctx.get(top.busy) and not ctx.get(top.done)
        cycles = 0
        while not ctx.get(top.done):
            if poke_start and cycles == 10:
                ctx.set(top.start, 1)            # ignored: a run is in progress
                ctx.set(top.insn_count, 0)
            elif poke_start and cycles == 11:
                ctx.set(top.start, 0)
            assert ctx.get(top.busy)
            await ctx.tick()
            cycles += 1
            assert cycles < 5000
        assert not ctx.get(top.busy)
        runs.append((cycles, {n: ctx.get(getattr(top, f"cnt_{n}")) for n in COUNTERS}))

    async def testbench(ctx):
        for w in range(-(-len(image) // B)):
            ctx.set(top.host_addr, w)
            ctx.set(top.host_wdata, int.from_bytes(image[w * B:(w + 1) * B].tobytes(), "little"))
            ctx.set(top.host_we, 1)
            await ctx.tick()
        ctx.set(top.host_we, 0)
        await run(ctx, program.insn_count)
        await ctx.tick()
        assert ctx.get(top.done)                 # held until the next start
        await run(ctx, program.insn_count, poke_start=True)
        await run(ctx, 0)
        # host read port: the word at the previous cycle's address
        ctx.set(top.host_addr, program.insn_addr // B)
        await ctx.tick()
        assert ctx.get(top.host_rdata) == int.from_bytes(
            image[program.insn_addr:program.insn_addr + B].tobytes(), "little")

    simulate(top, testbench)
    (c1, n1), (c2, n2), (c3, n3) = runs
    assert n1 == n2 and c1 == c2 == n1["cycles"]
    assert n1["array_busy"] == FunctionalSim(cfg).run(program).matmul_rows
    assert n3["cycles"] <= 2 and n3["array_busy"] == 0


def test_top_arguments_are_checked():
    with rejected(TypeError, r"^cfg must be a HardwareConfig, not 'x'$"):
        SimTop("x")


def random_program(cfg, seed, n_insns=40):
    """Random LOAD / PRELOAD / MATMUL / STORE mixes; `ProgramBuilder` adds the dependency tokens
    (and a SYNC when a LOAD reads bytes a STORE wrote), so every overlap the hardware allows
    between the queues and inside the compute unit gets exercised."""
    from systolab.codegen.builder import ProgramBuilder

    rng = np.random.default_rng(seed)
    R, C, B = cfg.rows, cfg.cols, cfg.memory.bus_bytes
    sp, acc = cfg.scratchpad.depth, cfg.accumulator.depth
    b = ProgramBuilder(cfg)
    data = b.alloc("data", (64, 4 * R), "int8", data=rng.integers(-128, 128, (64, 4 * R)))
    nparams = 3
    params = np.zeros((4 * nparams, C), dtype=np.int32)
    for k in range(nparams):
        params[4 * k] = rng.integers(-3000, 3000, C)                     # bias
        params[4 * k + 1] = rng.integers(1 << 20, 1 << 24, C)            # multiplier
        params[4 * k + 2] = rng.integers(24, 33, C) if k else 0          # shift (0 for one set)
        params[4 * k + 3] = rng.integers(-10, 10, C)                     # zero point
    par = b.alloc("params", (4 * nparams, C), "int32", data=params)
    out = b.alloc("out", (64, 2 * C), "int8")

    def strided(region, rows, row_bytes):
        """(addr, stride) of `rows` rows of `row_bytes` inside `region`, legally aligned."""
        align = min(row_bytes, B)
        span = region.shape[0] * region.row_stride
        stride = int(rng.choice([0, row_bytes, 2 * row_bytes, region.row_stride]))
        stride = -(-stride // align) * align
        last = span - row_bytes - (rows - 1) * stride
        addr = region.addr + int(rng.integers(0, last // align + 1)) * align
        return addr, stride

    for _ in range(n_insns):
        op = rng.choice(["LOAD", "PRELOAD", "MATMUL", "MATMUL", "STORE"])
        rows = int(rng.integers(1, 9))
        if op == "LOAD":
            src = data if rng.random() < 0.8 else out
            addr, stride = strided(src, rows, R)
            b.emit("LOAD", dram_addr=addr, dram_stride=stride, rows=rows,
                   sp_addr=int(rng.integers(0, sp - rows + 1)))
        elif op == "PRELOAD":
            b.emit("PRELOAD", sp_addr=int(rng.integers(0, sp - C + 1)), wbuf=int(rng.integers(2)))
        elif op == "MATMUL":
            b.emit("MATMUL", sp_addr=int(rng.integers(0, sp - rows + 1)),
                   acc_addr=int(rng.integers(0, acc - rows + 1)), rows=rows,
                   wbuf=int(rng.integers(2)), accumulate=int(rng.integers(2)))
        else:
            addr, stride = strided(out, rows, C)
            b.emit("STORE", dram_addr=addr, dram_stride=stride, rows=rows,
                   acc_addr=int(rng.integers(0, acc - rows + 1)),
                   param_addr=par.addr + int(rng.integers(nparams)) * 4 * par.row_stride,
                   relu=int(rng.integers(2)))
    return b.finish(("out",), {})


@pytest.mark.parametrize("name", ["4x8", "8x4-bus8", "2x4-bus4"])
@pytest.mark.parametrize("seed", range(3))
def test_random_programs(name, seed):
    cfg = CONFIGS[name]
    program = random_program(cfg, seed)
    ref, res = check_run(cfg, program)
    assert ref.insn_counts["STORE"] > 0 and ref.matmul_rows > 0


def test_preload_pushes_wait_for_the_older_matmul():
    """A PRELOAD that overlaps a long MATMUL finishes reading first, but its compute->load token
    stands for the MATMUL too (pushes leave a queue in program order): the LOAD that takes it
    must not overwrite rows the MATMUL has yet to read."""
    cfg = CONFIGS["4x8"]
    isa = ISA(cfg)
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(9)
    image = np.zeros(0x1000, dtype=np.uint8)
    image[0x000:0x080] = rng.integers(0, 256, 0x80, dtype=np.uint8)      # A: 32 rows
    image[0x100:0x140] = rng.integers(0, 256, 0x40, dtype=np.uint8)      # two weight tiles
    image[0x200:0x220] = rng.integers(0, 256, 0x20, dtype=np.uint8)      # new rows for sp 24..31
    params = np.stack([np.zeros(C), np.full(C, 1 << 20), np.full(C, 28), np.zeros(C)]).astype("<i4")
    image[0x400:0x400 + params.nbytes] = params.view(np.uint8).reshape(-1)
    asm = [
        ("LOAD", dict(dram_addr=0x000, dram_stride=R, rows=32, sp_addr=0)),
        ("LOAD", dict(dram_addr=0x100, dram_stride=R, rows=2 * C, sp_addr=32, push_next=1)),
        ("PRELOAD", dict(sp_addr=32, wbuf=0, pop_prev=1)),
        ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=32, wbuf=0, accumulate=0, push_next=1)),
        ("PRELOAD", dict(sp_addr=32 + C, wbuf=1, push_prev=1)),
        ("LOAD", dict(dram_addr=0x200, dram_stride=R, rows=8, sp_addr=24, pop_next=1)),
        ("STORE", dict(dram_addr=0x800, dram_stride=C, rows=32, acc_addr=0, param_addr=0x400,
                       pop_prev=1)),
    ]
    words = [isa.encode(op, **fields) for op, fields in asm]
    insn_addr = 0xA00
    for i, w in enumerate(words):
        image[insn_addr + 16 * i:insn_addr + 16 * (i + 1)] = np.frombuffer(w.to_bytes(16, "little"), np.uint8)
    check_run(cfg, Program(cfg.compile_hash, words, image, insn_addr, {}, ()))


def with_stamps(cfg, program, after: list[int]) -> tuple[Program, Region]:
    """`program` with a STAMP after each instruction index in `after` (-1: before the first),
    its slots in a region `stamps` where the instructions were, the instructions after it."""
    isa = ISA(cfg)
    words = []
    slots = Region("stamps", program.insn_addr, (1, len(after)), "int32", 4 * len(after))
    marks = {i: [k for k, a in enumerate(after) if a == i] for i in set(after)}
    for i in range(-1, len(program.words)):
        if i >= 0:
            words.append(program.words[i])
        words += [isa.encode("STAMP", dram_addr=slots.addr + 4 * k) for k in marks.get(i, ())]
    insn_addr = program.insn_addr + 16 * -(-4 * len(after) // 16)
    image = np.zeros(insn_addr + 16 * len(words), dtype=np.uint8)
    image[:program.insn_addr] = program.image[:program.insn_addr]
    image[insn_addr:] = pack_words(words, 16)
    regions = {**program.regions, "stamps": slots}
    return Program(cfg.compile_hash, words, image, insn_addr, regions, program.outputs), slots


@pytest.mark.parametrize("name", ["4x8", "8x4-bus8", "2x4-bus4"])
def test_stamps_write_the_cycle_counter_after_the_stores(name):
    """STAMP (store queue) writes the cycle counter once the STOREs before it have written:
    stamps before anything, after the first STORE and at the end rise in that order, end within
    a few cycles of the run's counter, land in their own 4 bytes of the bus word (buses of 16,
    8 and 4 bytes), and agree with the performance model's; the rest of memory is the
    functional simulator's (which writes 0 there)."""
    cfg = CONFIGS[name]
    base = compile_gemm(cfg, random_gemm(9, 2 * cfg.rows, 2 * cfg.cols, seed=3))
    isa = ISA(cfg)
    first_store = next(i for i, w in enumerate(base.words) if isa.decode(w).op == "STORE")
    program, slots = with_stamps(cfg, base, [-1, first_store, len(base.words) - 1])
    ref = FunctionalSim(cfg).run(program)
    res = simulate_program(cfg, program)
    lo, hi = slots.addr, slots.addr + slots.nbytes
    np.testing.assert_array_equal(np.delete(res.memory, np.s_[lo:hi]), np.delete(ref.memory, np.s_[lo:hi]))
    assert not ref.memory[lo:hi].any()
    stamps = slots.read(res.memory)[0].astype(np.int64)
    c = res.counters
    assert 0 < stamps[0] < stamps[1] < stamps[2] <= c["cycles"] <= stamps[2] + 4
    assert c["mem_writes"] == fuzz.expected_counters(cfg, program, ref)["mem_writes"]
    pred = predict(cfg, program)
    stamped = np.array([cycle for _, cycle in pred.stamps])
    # as close as the model's cycles of the whole run are to the counter's
    assert np.all(np.abs(stamped - stamps) <= abs(pred.cycles - c["cycles"]) + 6), (stamped, stamps, pred.cycles, c)
