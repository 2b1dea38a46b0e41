"""The register map (hw/regmap/registers.yaml), its CSR block and the driver.

The driver runs against the `RegisterBlock` in Amaranth's simulator, with a small fake core behind
it, through async bus callbacks: the same `Driver` code the AXI tests (tests/test_axi.py) and a
board run.
"""

import copy

import numpy as np
import pytest
import yaml
from amaranth.sim import Simulator

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm
from systolab.config import default_config
from systolab.app.driver import Driver, DriverError, SyncDriver
from systolab.hw.counters import COUNTER_BITS, COUNTERS
from systolab.hw.fetch import INSN_COUNT_BITS
from systolab.hw.memport import BYTE_ADDR_BITS
from systolab.sim.functional import FunctionalSim
from systolab.hw.regmap import REGMAP, RegisterMap, config_hash_lo
from systolab.hw.regmap.docs import render_c_header, render_markdown, write_repo_docs
from systolab.hw.regmap.gateware import RegisterBlock

from conftest import small_config

CFG = small_config()


def _spec():
    from importlib import resources
    return yaml.safe_load(resources.files("systolab.hw.regmap").joinpath("registers.yaml").read_text())


# -- the map ------------------------------------------------------------------------------------------

def test_generated_docs_are_fresh(root, tmp_path):
    """docs/registers.md and include/systolab_regs.h come from hw/regmap/registers.yaml: `make docs`."""
    for fresh in write_repo_docs(tmp_path):
        committed = root / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run `make docs`"


def test_widths_come_from_the_hardware():
    assert REGMAP["INSN_ADDR"].field("addr").width == BYTE_ADDR_BITS
    assert REGMAP["INSN_COUNT"].field("count").width == INSN_COUNT_BITS
    assert REGMAP.ports["insn_addr"] == ("out", BYTE_ADDR_BITS)
    for name in COUNTERS:
        assert REGMAP.ports[f"cnt_{name}"] == ("in", COUNTER_BITS)


def test_every_counter_has_a_lo_hi_pair():
    assert list(REGMAP.counters) == list(COUNTERS)
    for name, (lo, hi) in REGMAP.counters.items():
        assert lo.name == f"CNT_{name.upper()}_LO" and hi.name == f"CNT_{name.upper()}_HI"
        assert hi.offset == lo.offset + 4
        assert lo.field("value").width + hi.field("value").width == COUNTER_BITS
    offsets = [r.offset for r in REGMAP.registers.values()]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 for o in offsets)
    assert max(offsets) < REGMAP.size == 1 << REGMAP.addr_bits


def test_docs_and_header_mention_every_register():
    md, h = render_markdown(), render_c_header()
    for r in REGMAP.registers.values():
        assert f"### {r.name}" in md
        assert f"#define SYSTOLAB_REG_{r.name} 0x{r.offset:03X}u" in h
    for name in COUNTERS:
        assert f'"{name}"' in h


@pytest.mark.parametrize("change, match", [
    (lambda s: s["registers"][0]["fields"][0].update(width="WIDE_BITS"),
     r"^x.yaml: register ID: field id width must be an integer or one of BYTE_ADDR_BITS, "),
    (lambda s: s["registers"][3]["fields"][1].update(width=17),
     r"^x.yaml: register ARRAY: field cols \(bit 16, width 17\) must fit in 32 bits$"),
    (lambda s: s["registers"][8]["fields"][0].update(kind="rwx"),
     r"^x.yaml: register CTRL: field start kind must be one of const, status, rw, pulse, w1c, not 'rwx'$"),
    (lambda s: s["registers"][1].update(offset=0),
     r"^x.yaml: registers ID and VERSION share offset 0x0$"),
    (lambda s: s["registers"][11]["fields"][0].update(set_on="nothing"),
     r"^x.yaml: w1c field done sets on 'nothing', which is not a status port"),
])
def test_spec_errors(change, match):
    spec = copy.deepcopy(_spec())
    change(spec)
    with pytest.raises(ValueError, match=match):
        RegisterMap(spec, source="x.yaml")


# -- the CSR block and the driver in Amaranth's simulator ----------------------------------------------

RUN_CYCLES = 37


def _simulate(cfg, *testbenches):
    """RegisterBlock with a fake core: `start` makes it busy for RUN_CYCLES cycles, counting
    cnt_cycles and (a value above 32 bits) cnt_mem_reads, then done."""
    dut = RegisterBlock(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def core(ctx):
        busy, n = False, 0
        while True:
            _, _, start = await ctx.tick().sample(dut.start)
            if start and not busy:
                busy, n = True, 0
                ctx.set(dut.busy, 1)
                ctx.set(dut.done, 0)
            elif busy:
                n += 1
                ctx.set(dut.cnt_cycles, n)
                ctx.set(dut.cnt_mem_reads, (5 << 32) | n)
                if n == RUN_CYCLES:
                    busy = False
                    ctx.set(dut.busy, 0)
                    ctx.set(dut.done, 1)

    sim.add_testbench(core, background=True)
    for tb in testbenches:
        async def run(ctx, tb=tb):
            await tb(ctx, dut)
        sim.add_testbench(run)
    sim.run()
    return dut


def _bus(ctx, dut):
    bus = dut.bus

    async def read(offset):
        ctx.set(bus.addr, offset >> 2)
        ctx.set(bus.r_stb, 1)
        await ctx.tick()
        ctx.set(bus.r_stb, 0)
        return ctx.get(bus.r_data)

    async def write(offset, value):
        ctx.set(bus.addr, offset >> 2)
        ctx.set(bus.w_data, value)
        ctx.set(bus.w_stb, 1)
        await ctx.tick()
        ctx.set(bus.w_stb, 0)

    return read, write


def test_block_registers():
    cfg = CFG

    async def tb(ctx, dut):
        read, write = _bus(ctx, dut)
        assert await read(REGMAP["ID"].offset) == REGMAP.id
        assert await read(REGMAP["ARRAY"].offset) == cfg.rows | cfg.cols << 16
        assert await read(REGMAP["CONFIG_HASH"].offset) == config_hash_lo(cfg.compile_hash)
        assert await read(REGMAP["BUS_BYTES"].offset) == cfg.memory.bus_bytes
        assert await read(0xFC) == 0                                   # unmapped
        await write(REGMAP["INSN_ADDR"].offset, 0xDEADBEEF)
        await write(REGMAP["INSN_COUNT"].offset, 12345)
        assert ctx.get(dut.insn_addr) == 0xDEADBEEF and ctx.get(dut.insn_count) == 12345
        assert await read(REGMAP["INSN_ADDR"].offset) == 0xDEADBEEF
        await write(REGMAP["ID"].offset, 0)                            # read-only
        assert await read(REGMAP["ID"].offset) == REGMAP.id
        # start is a pulse in the cycle of the write; CTRL reads 0
        ctx.set(dut.bus.addr, REGMAP["CTRL"].offset >> 2)
        ctx.set(dut.bus.w_data, 1)
        ctx.set(dut.bus.w_stb, 1)
        assert ctx.get(dut.start) == 1
        await ctx.tick()
        ctx.set(dut.bus.w_stb, 0)
        assert ctx.get(dut.start) == 0
        assert await read(REGMAP["CTRL"].offset) == 0
        assert await read(REGMAP["STATUS"].offset) == 0b001          # busy
        # interrupt: IRQ_STATUS.done is set when done rises, interrupt only when enabled
        await write(REGMAP["IRQ_ENABLE"].offset, 1)
        await ctx.tick().until(dut.interrupt)
        assert await read(REGMAP["STATUS"].offset) == 0b010          # done
        assert await read(REGMAP["IRQ_STATUS"].offset) == 1
        await write(REGMAP["IRQ_ENABLE"].offset, 0)
        assert not ctx.get(dut.interrupt)
        assert await read(REGMAP["IRQ_STATUS"].offset) == 1          # still pending
        await write(REGMAP["IRQ_STATUS"].offset, 0)                  # writing 0 keeps it
        assert await read(REGMAP["IRQ_STATUS"].offset) == 1
        await write(REGMAP["IRQ_STATUS"].offset, 1)                  # write 1 to clear
        assert await read(REGMAP["IRQ_STATUS"].offset) == 0
        lo, hi = REGMAP.counters["cycles"]
        assert await read(lo.offset) == RUN_CYCLES and await read(hi.offset) == 0

    _simulate(cfg, tb)


def test_driver_over_the_block():
    cfg = CFG
    program = compile_gemm(cfg, random_gemm(8, 8, 8, seed=1))
    other = compile_gemm(default_config(), random_gemm(8, 8, 8, seed=1))
    seen = {}

    async def tb(ctx, dut):
        read, write = _bus(ctx, dut)

        async def irq():
            await ctx.tick().until(dut.interrupt)

        drv = Driver(read, write)
        info = await drv.info()
        assert (info.rows, info.cols, info.bus_bytes) == (cfg.rows, cfg.cols, cfg.memory.bus_bytes)
        assert (info.scratchpad_depth, info.accumulator_depth) == (cfg.scratchpad.depth, cfg.accumulator.depth)
        assert (info.counters, info.counter_bits) == (len(COUNTERS), COUNTER_BITS)
        await drv.check_program(program)
        with pytest.raises(DriverError, match=r"^program was compiled for config [0-9a-f]{12} "):
            await drv.check_program(other)
        # polling
        await drv.start(program.insn_addr, program.insn_count)
        assert ctx.get(dut.insn_count) == program.insn_count
        st = await drv.wait_done()
        assert st == {"busy": 0, "done": 1, "bus_error": 0}
        seen["poll"] = await drv.counters()
        # interrupt
        with pytest.raises(DriverError, match="needs a mem_write callback"):
            await drv.run(program, irq=irq)
        await drv.start(program.insn_addr, program.insn_count, irq=True)
        await drv.wait_done(irq=irq)
        assert not ctx.get(dut.interrupt)                              # cleared by the driver
        seen["irq"] = await drv.counters()

    _simulate(cfg, tb)
    for run in ("poll", "irq"):
        assert list(seen[run]) == list(COUNTERS)
        assert seen[run]["cycles"] == RUN_CYCLES
        assert seen[run]["mem_reads"] == (5 << 32) | RUN_CYCLES


class _FakeBlock:
    """A register file with the constant registers of `cfg` and an accelerator that finishes at
    once and computes with the functional simulator (for the sync driver)."""

    def __init__(self, cfg):
        from systolab.hw.regmap import REG_BITS
        self.cfg, self.regs, self.mem = cfg, {}, np.zeros(cfg.mem_bytes, dtype=np.uint8)
        for r in REGMAP.registers.values():
            word = 0
            for f in r.fields:
                if f.kind == "const":
                    word |= REGMAP.const_value(f, cfg) << f.lsb
            self.regs[r.offset] = word & ((1 << REG_BITS) - 1)

    def read(self, offset):
        return self.regs.get(offset, 0)

    def write(self, offset, value):
        if offset == REGMAP["CTRL"].offset and value & 1:
            assert self.regs[REGMAP["INSN_COUNT"].offset] == self._program.insn_count
            self.mem[:] = FunctionalSim(self.cfg).run(self._program).memory
            self.regs[REGMAP["STATUS"].offset] = 0b010
            self.regs[REGMAP.counters["cycles"][0].offset] = 99
        elif offset != REGMAP["IRQ_STATUS"].offset:
            self.regs[offset] = value

    def mem_write(self, addr, data):
        self.mem[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def mem_read(self, addr, n):
        return self.mem[addr:addr + n].tobytes()


def test_sync_driver():
    cfg = CFG
    g = random_gemm(8, 12, 8, seed=3)
    program = compile_gemm(cfg, g)
    block = _FakeBlock(cfg)
    block._program = program
    drv = SyncDriver(block.read, block.write, mem_write=block.mem_write, mem_read=block.mem_read)
    assert drv.info().rows == cfg.rows
    result = drv.run(program)
    assert result.counters["cycles"] == 99
    np.testing.assert_array_equal(result.outputs["C"], gemm_reference(g))

    async def later(offset):
        return 0

    with pytest.raises(DriverError, match=r"^the read callback returned an awaitable: use Driver \(async\)"):
        SyncDriver(later, block.write).info()
