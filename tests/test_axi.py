"""The AXI top (hw/axi.py): unit tests of its adapters in Amaranth's simulator, and compiled GEMMs
on the generated Verilog under cocotb + Verilator, driven by cocotbext-axi's models (`AxiRam`
memory, `AxiLiteMaster` host) through `systolab.app.driver.Driver` (testbench: tests/support/axi_tb.py)."""

import numpy as np
import pytest

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm
from systolab.config import default_config
from systolab.hw.counters import COUNTERS
from systolab.hw.verilog import generate_verilog
from systolab.sim.functional import FunctionalSim

from conftest import small_config

CFG = small_config()           # 4x4, bus 16 bytes


# -- cocotb + Verilator with cocotbext-axi -----------------------------------------------------------

@pytest.fixture(scope="module")
def axi_run(tmp_path_factory):
    from support.axi_tb import axi_program, build_axi, run_axi

    build = build_axi(generate_verilog(CFG, top="axi"))
    run_dir = tmp_path_factory.mktemp("axi")
    small = random_gemm(12, 20, 8, seed=2, relu=True)
    gemms = [("plain", random_gemm(16, 16, 16, seed=1), False, False),
             ("backpressure+irq", small, True, True),
             ("no backpressure", small, False, False)]
    cases, expect = [], []
    for i, (name, g, pause, irq) in enumerate(gemms):
        program = compile_gemm(CFG, g)
        cases.append(axi_program(run_dir, i, program, gemm_reference(g), pause=pause, irq=irq, seed=i + 1))
        expect.append({"name": name, "reference": gemm_reference(g),
                       "array_busy": FunctionalSim(CFG).run(program).matmul_rows})
    foreign = compile_gemm(default_config(), random_gemm(8, 8, 8))
    foreign.save(run_dir / "foreign.npz")
    result = run_axi(build, run_dir, cases=cases, mem_bytes=CFG.mem_bytes, foreign="foreign.npz")
    return run_dir, result, expect


@pytest.mark.rtl
def test_axi_gemms_bit_exact(axi_run):
    run_dir, result, expect = axi_run
    assert result["info"]["rows"] == CFG.rows and result["info"]["bus_bytes"] == CFG.memory.bus_bytes
    for i, (case, exp) in enumerate(zip(result["cases"], expect)):
        assert case["status"] == "done", (exp["name"], case.get("error"))
        np.testing.assert_array_equal(np.load(run_dir / f"out{i}.npy"), exp["reference"],
                                      err_msg=exp["name"])
        assert case["mismatches"] == 0
        assert case["final_status"] == {"busy": 0, "done": 1, "bus_error": 0}


@pytest.mark.rtl
def test_axi_counters_match_the_bus(axi_run):
    """Counters read over AXI4-Lite: array_busy is the rows the program streams through the array;
    every core read is one R beat, every core write one AW."""
    _, result, expect = axi_run
    for case, exp in zip(result["cases"], expect):
        c, axi = case["counters"], case["axi"]
        assert list(c) == list(COUNTERS)
        assert c["array_busy"] == exp["array_busy"], exp["name"]
        assert 0 < c["array_busy"] < c["cycles"]
        assert axi["ar_beats"] == c["mem_reads"], exp["name"]
        assert axi["aw_beats"] == axi["aw_bursts"] == c["mem_writes"], exp["name"]
        assert axi["ar_max_beats"] > 1, f"{exp['name']}: no read was coalesced into a burst"
        assert axi["ar_bursts"] < c["mem_reads"]
    paused, unpaused = result["cases"][1:]
    assert paused["counters"]["cycles"] > unpaused["counters"]["cycles"], "the RAM did not pause"
    for name in ("mem_reads", "mem_writes", "array_busy"):
        assert paused["counters"][name] == unpaused["counters"][name]


@pytest.mark.rtl
def test_axi_interrupt_and_refusal(axi_run):
    _, result, expect = axi_run
    plain, irq, _ = result["cases"]
    assert not plain["interrupt"] and not plain["interrupt_after"]
    assert irq["interrupt"], "the interrupt did not rise at done"
    assert not irq["interrupt_after"], "the driver did not clear the interrupt"
    assert result["foreign"].startswith("program was compiled for config ")


# -- the adapters in Amaranth's simulator ------------------------------------------------------------

B_DELAY = 6       # cycles from a write to its B response in the model below


def _axi_model(dut, mem, events):
    """A background testbench: an AXI4 subordinate over `mem` (word address -> int), always ready,
    R beats in order one cycle after AR, B responses B_DELAY cycles after the write."""
    axi = dut.axi

    async def model(ctx):
        for name in ("arready", "awready", "wready"):
            ctx.set(getattr(axi, name), 1)
        beats, bs, aws, ws, cycle = [], [], [], [], 0
        while True:
            ctx.set(axi.rvalid, bool(beats))
            if beats:
                ctx.set(axi.rdata, beats[0][0])
                ctx.set(axi.rlast, beats[0][1])
            b_ready_now = bool(bs) and bs[0] <= cycle
            ctx.set(axi.bvalid, b_ready_now)
            (_, _, arvalid, araddr, arlen, arsize, arburst, awvalid, awaddr, awlen, wvalid, wdata,
             wstrb, wlast, rready, bready) = await ctx.tick().sample(
                axi.arvalid, axi.araddr, axi.arlen, axi.arsize, axi.arburst, axi.awvalid,
                axi.awaddr, axi.awlen, axi.wvalid, axi.wdata, axi.wstrb, axi.wlast, axi.rready,
                axi.bready)
            cycle += 1
            if beats and rready:
                beats.pop(0)
            if b_ready_now and bready:
                bs.pop(0)
                events.append(("B", cycle))
            if arvalid:
                assert arburst == 1 and arsize == 2
                events.append(("AR", araddr, arlen + 1, cycle))
                for i in range(arlen + 1):
                    beats.append((mem[araddr // 4 + i], i == arlen))
            if awvalid:
                assert awlen == 0
                aws.append(awaddr)
            if wvalid:
                assert wlast
                ws.append((wdata, wstrb))
            while aws and ws:
                addr, (data, strb) = aws.pop(0), ws.pop(0)
                old = mem[addr // 4]
                mask = sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)
                mem[addr // 4] = (old & ~mask) | (data & mask)
                events.append(("W", addr, cycle))
                bs.append(cycle + B_DELAY)

    return model


def test_manager_bursts_and_ordering():
    from amaranth.sim import Simulator

    from systolab.hw.axi import AxiManager
    from support.amaranth_sim import stream_put

    dut = AxiManager(bus_bytes=4, max_burst=4)
    mem = {a: (a * 2654435761) & 0xFFFF_FFFF for a in range(2048)}
    expected = dict(mem)
    events, got = [], []
    reads = [*range(6), 1022, 1023, 1024, 1025]      # 1024 words = 4 KiB: a burst stops there
    requests = [{"addr": a, "we": 0} for a in reads]
    requests += [{"addr": 7, "we": 1, "wdata": 0x11223344, "wstrb": 0b0101},
                 {"addr": 7, "we": 0}]                # must see the write
    expected[7] = (mem[7] & 0xFF00FF00) | 0x00220044
    n_reads = len(reads) + 1

    async def producer(ctx):
        for req in requests:
            await stream_put(ctx, dut.mem.req, {"wdata": 0, "wstrb": 0, **req})

    async def consumer(ctx):
        ctx.set(dut.mem.resp.ready, 1)
        pending_seen = False
        while len(got) < n_reads:
            _, _, valid, data, pending = await ctx.tick().sample(
                dut.mem.resp.valid, dut.mem.resp.payload.rdata, dut.writes_pending)
            pending_seen |= bool(pending)
            if valid:
                got.append(data)
        assert pending_seen
        for _ in range(B_DELAY + 4):
            await ctx.tick()
        assert not ctx.get(dut.writes_pending)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(_axi_model(dut, mem, events), background=True)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()

    assert got == [expected[a] for a in reads] + [expected[7]]
    ars = [(e[1] // 4, e[2]) for e in events if e[0] == "AR"]
    assert ars == [(0, 4), (4, 2), (1022, 2), (1024, 2), (7, 1)]
    b_cycle = next(e[1] for e in events if e[0] == "B")
    ar7_cycle = next(e[3] for e in events if e[0] == "AR" and e[1] == 28)
    assert ar7_cycle > b_cycle, "a read overtook an outstanding write"


def test_axi_lite_to_registers():
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.sim import Simulator

    from systolab.hw.axi import AxiLiteSubordinate
    from systolab.hw.regmap import REGMAP
    from systolab.hw.regmap.gateware import RegisterBlock

    m = Module()
    lite = m.submodules.lite = AxiLiteSubordinate(REGMAP.addr_bits)
    regs = m.submodules.regs = RegisterBlock(CFG)
    wiring.connect(m, lite.csr, regs.bus)
    axi = lite.axi

    async def write(ctx, addr, data, aw_first=True):
        order = [("aw", addr), ("w", data)] if aw_first else [("w", data), ("aw", addr)]
        for ch, value in order:
            ctx.set(getattr(axi, f"{ch}valid"), 1)
            ctx.set(axi.awaddr if ch == "aw" else axi.wdata, value)
            await ctx.tick().until(getattr(axi, f"{ch}ready"))
            ctx.set(getattr(axi, f"{ch}valid"), 0)
        ctx.set(axi.bready, 1)
        resp, = await ctx.tick().sample(axi.bresp).until(axi.bvalid)
        ctx.set(axi.bready, 0)
        assert resp == 0

    async def read(ctx, addr):
        ctx.set(axi.arvalid, 1)
        ctx.set(axi.araddr, addr)
        await ctx.tick().until(axi.arready)
        ctx.set(axi.arvalid, 0)
        ctx.set(axi.rready, 1)
        data, resp = await ctx.tick().sample(axi.rdata, axi.rresp).until(axi.rvalid)
        ctx.set(axi.rready, 0)
        assert resp == 0
        return data

    async def tb(ctx):
        assert await read(ctx, REGMAP["ID"].offset) == REGMAP.id
        await write(ctx, REGMAP["INSN_ADDR"].offset, 0x1234_5670)
        await write(ctx, REGMAP["INSN_COUNT"].offset, 99, aw_first=False)
        assert ctx.get(regs.insn_addr) == 0x1234_5670 and ctx.get(regs.insn_count) == 99
        assert await read(ctx, REGMAP["INSN_COUNT"].offset) == 99
        lo, hi = REGMAP.counters["mem_reads"]
        ctx.set(regs.cnt_mem_reads, 0xABCD_0123_4567)
        assert await read(ctx, lo.offset) == 0x0123_4567
        assert await read(ctx, hi.offset) == 0xABCD

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


# -- systolab generate --top axi ---------------------------------------------------------------------

def test_generate_axi_top(root, tmp_path, capsys):
    import re

    from systolab.app.cli import build_parser, main
    from systolab.hw.regmap import REGMAP
    from systolab.hw.verilog import TOP_NAMES

    top_arg = next(a for a in build_parser()._subparsers._group_actions[0].choices["generate"]._actions
                   if a.dest == "top")
    assert tuple(top_arg.choices) == tuple(TOP_NAMES)

    cfg_file = tmp_path / "acc.yaml"
    cfg_file.write_text("array: {rows: 4, cols: 4}\nscratchpad: {depth: 64}\naccumulator: {depth: 32}\n"
                        "memory: {bus_bytes: 8}\n")
    assert main(["generate", str(cfg_file), "--top", "axi", "-o", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["isa.md", "registers.md", "systolab_axi.v",
                                                      "systolab_isa.h", "systolab_regs.h"]
    text = (out / "systolab_axi.v").read_text()
    header = re.search(r"module systolab_axi\(([^)]*)\)", text).group(1)
    ports = {p.strip() for p in header.split(",")}
    for name in ("aclk", "aresetn", "interrupt", "m_axi_awaddr", "m_axi_awlen", "m_axi_wlast",
                 "m_axi_rready", "s_axi_awaddr", "s_axi_rdata", "s_axi_bresp"):
        assert name in ports
    assert re.search(r"output \[63:0\] m_axi_wdata;", text)          # 8 * bus_bytes
    assert re.search(rf"input \[{REGMAP.addr_bits - 1}:0\] s_axi_araddr;", text)
    assert (out / "registers.md").read_text() == (root / "docs" / "registers.md").read_text()
    assert (out / "systolab_regs.h").read_text() == (root / "include" / "systolab_regs.h").read_text()

    assert main(["generate", str(cfg_file), "--top", "fpga", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("systolab generate: argument --top: invalid choice: 'fpga'")
