"""The whole accelerator (`SimTop`) in Amaranth's simulator against the functional simulator.

Programs run the way a host runs them: the image goes in through the host port, `start` is
pulsed, the testbench waits for `done`. Memory must match the functional simulator bit for bit
(all of it: stray writes would show), and the counters must be consistent with the program.
"""

import numpy as np
import pytest

from systolab.codegen.gemm import compile_gemm, random_gemm
from systolab.codegen.program import Program
from systolab.hw.counters import COUNTERS
from systolab.hw.simrun import run_program
from systolab.hw.simtop import SimTop
from systolab.hw.testing import rejected, simulate
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
    res = run_program(cfg, hw_program or program)
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
    program = Program(cfg.hash, words, image, insn_addr, {}, ())
    # the hardware also gets a word that is not an instruction (opcode 0), which it drops
    hw_program = Program(cfg.hash, words + [0], image, insn_addr, {}, ())
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
