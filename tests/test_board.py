"""The board top (hw/board.py) through its UART: the bridge protocol, the register block and the
on-chip memory, driven by the host's own `UARTTransport` and `Driver`.

* Amaranth's simulator: the protocol corners (information block, registers, unaligned memory
  access, bad commands and addresses, resynchronization after a broken command).
* cocotb + Verilator (`@pytest.mark.rtl`): the Verilog of the board top (without the platform's
  clock glue) over a simulated UART (cocotbext-uart): a GEMM is loaded, run and read back
  bit-exact through the bridge, with the cycle counter read through it too.
"""

import json
import logging
import os
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm
from systolab.app.fpga import BoardError, UARTTransport, run_on_board
from systolab.hw.board import BoardCore
from systolab.hw.bridge import INFO_WORDS, MAGIC, Command
from systolab.hw.regmap import REGMAP, config_hash_lo
from support.amaranth_sim import rejected

from conftest import small_config

CFG = small_config(2, 2, sp=32, acc=16, bus=8, latency=2, mem_kib=64, queues={"depth": 2})
DIVISOR = 4


class AmaranthLink:
    """A `UARTTransport` link inside an Amaranth testbench: writes drive ``uart_rx`` bit by
    bit, a background monitor decodes ``uart_tx`` into `received`."""

    def __init__(self, ctx, board, divisor, received):
        self.ctx, self.board, self.divisor, self.received = ctx, board, divisor, received

    async def write(self, data):
        for byte in data:
            for level in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.ctx.set(self.board.uart_rx, level)
                await self.ctx.tick().repeat(self.divisor)

    async def read(self, n, max_cycles=20_000):
        for _ in range(max_cycles):
            if len(self.received) >= n:
                break
            await self.ctx.tick()
        k = min(n, len(self.received))
        return bytes(self.received.popleft() for _ in range(k))


def uart_monitor(line, divisor, received):
    """Background testbench: decode the frames on `line` into `received` (plain ticks only, so
    that the simulator can stop it anywhere)."""
    async def monitor(ctx):
        while True:
            await ctx.tick()
            if ctx.get(line):
                continue
            bits = []                   # the start bit began at this edge (or the one before)
            middles = {divisor // 2 + (i + 1) * divisor for i in range(9)}
            for k in range(1, max(middles) + 1):
                await ctx.tick()
                if k in middles:
                    bits.append(ctx.get(line))
            assert bits[8] == 1, "stop bit"
            received.append(sum(b << i for i, b in enumerate(bits[:8])))
    return monitor


def run_board_tb(board, body):
    received = deque()
    sim = Simulator(board)
    sim.add_clock(1e-8)
    sim.add_testbench(uart_monitor(board.uart_tx, board.divisor, received), background=True)

    async def tb(ctx):
        await ctx.tick().repeat(4)
        await body(ctx, UARTTransport(AmaranthLink(ctx, board, board.divisor, received),
                                      chunk_words=8))

    sim.add_testbench(tb)
    sim.run()


def test_protocol_info_registers_memory():
    board = BoardCore(CFG, mem_bytes=4096, clock_hz=100_000_000, divisor=DIVISOR, timeout=400)
    words = board.memory.data

    async def body(ctx, t):
        info = await t.info()
        assert (info.mem_bytes, info.bus_bytes, info.clock_hz, info.timeout) == (4096, 8, 100_000_000, 400)
        assert info.reg_bytes == REGMAP.size
        # registers, through the driver
        hw = await t.driver().info()
        assert (hw.rows, hw.cols, hw.bus_bytes) == (2, 2, 8)
        assert hw.config_hash_lo == config_hash_lo(CFG.compile_hash)
        await t.write_reg(REGMAP["INSN_ADDR"].offset, 0x1234)
        assert await t.read_reg(REGMAP["INSN_ADDR"].offset) == 0x1234
        # memory: aligned and unaligned writes; 20 words cross chunks of 8
        data = bytes((7 * i + 3) & 0xFF for i in range(80))
        await t.mem_write(64, data)
        await t.mem_write(64 + 5, b"\xAA\xBB\xCC")       # inside one word, odd start
        expect = bytearray(data)
        expect[5:8] = b"\xAA\xBB\xCC"
        assert await t.mem_read(64, 80) == bytes(expect)
        assert await t.mem_read(64 + 3, 6) == bytes(expect[3:9])
        raw = b"".join(ctx.get(words[i]).to_bytes(8, "little") for i in range(8, 18))
        assert raw == bytes(expect)
        assert await t.mem_read(0, 8) == bytes(8)

    run_board_tb(board, body)


def test_protocol_errors_and_resync():
    board = BoardCore(CFG, mem_bytes=1024, clock_hz=50_000_000, divisor=DIVISOR, timeout=300)

    async def body(ctx, t):
        with pytest.raises(BoardError, match=r"^the board refused command 0x33 at 0x0 \(1 words\): status BAD_COMMAND$"):
            await t.command(0x33, 0, 1)
        with pytest.raises(BoardError, match=r"status BAD_ADDRESS$"):
            await t.command(Command.MEM_READ, 1020, 2)              # runs past the end
        with pytest.raises(BoardError, match=r"status BAD_ADDRESS$"):
            await t.command(Command.MEM_WRITE, 2048, 1, b"\x01\x02\x03\x04")
        with pytest.raises(BoardError, match=r"status BAD_ADDRESS$"):
            await t.command(Command.REG_READ, REGMAP.size, 1)
        with pytest.raises(BoardError, match=r"status BAD_ADDRESS$"):
            await t.command(Command.INFO_READ, 0, len(INFO_WORDS) + 1)
        # the refused write took its data and wrote nothing (memory wraps: 2048 would be 0)
        assert await t.mem_read(0, 4) == bytes(4)
        # a command cut short is dropped after the timeout; the next one works
        link = t._link
        await link.write(bytes([Command.MEM_WRITE, 0, 0, 0, 0, 1]))
        await ctx.tick().repeat(400)
        assert (await t.info()).mem_bytes == 1024
        # a zero-word read answers with its status only; a zero-word write too
        assert await t.command(Command.MEM_READ, 0, 0) == b""
        assert await t.command(Command.MEM_WRITE, 0, 0) == b""
        raw = await t.command(Command.INFO_READ, 0, 1)
        assert int.from_bytes(raw, "little") == MAGIC

    run_board_tb(board, body)


def test_board_parameters_checked():
    with rejected(ValueError, r"^mem_bytes must be a power of two >= 512 \(64 bus words\), not 1000$"):
        BoardCore(CFG, mem_bytes=1000, clock_hz=25_000_000, divisor=217)


# -- cocotb + Verilator: a GEMM through the simulated UART -------------------------------------------

RTL_CFG = small_config(4, 4, sp=64, acc=32, bus=16, latency=4, mem_kib=64, queues={"depth": 4})
RTL_MEM_BYTES = 8192
RTL_DIVISOR = 8
PERIOD_NS = 10
JOB_ENV = "SYSTOLAB_BOARD_JOB"


class CocotbLink:
    """A `UARTTransport` link over cocotbext-uart: `UartSource` drives ``uart_rx``, `UartSink`
    collects ``uart_tx``."""

    def __init__(self, source, sink, timeout_ns):
        self.source, self.sink, self.timeout_ns = source, sink, timeout_ns

    async def write(self, data):
        await self.source.write(data)
        await self.source.wait()          # sent (write only queues), so read timeouts start now

    async def read(self, n):
        from cocotb.triggers import with_timeout
        out = bytearray()
        try:
            while len(out) < n:
                if self.sink.count():
                    out += self.sink.read_nowait(min(n - len(out), self.sink.count()))
                else:     # read(k) fails when fewer than k bytes are queued: wait for one
                    out += await with_timeout(self.sink.read(1), self.timeout_ns, "ns")
        except TimeoutError:
            pass
        return bytes(out)


def _cocotb_test():
    import cocotb

    @cocotb.test()
    async def board_gemm(dut):
        """Load a GEMM through the UART bridge, run it, read the result and the counters."""
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles
        from cocotb.utils import get_sim_time
        from cocotbext.uart import UartSink, UartSource

        from systolab.codegen.program import Program
        job = json.loads(Path(os.environ[JOB_ENV]).read_text())
        program = Program.load(job["program"])
        Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start(start_high=False)
        baud = round(1e9 / (PERIOD_NS * job["divisor"]))
        source = UartSource(dut.uart_rx, baud=baud, bits=8, stop_bits=1)
        sink = UartSink(dut.uart_tx, baud=baud, bits=8, stop_bits=1)
        for end in (source, sink):
            end.log.setLevel(logging.WARNING)      # they log every byte at INFO
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 4)

        transport = UARTTransport(CocotbLink(source, sink, 200 * 10 * job["divisor"] * PERIOD_NS))
        result, info = await run_on_board(transport, program)
        # the cycle counter once more, through the bridge and the register map
        lo = await transport.read_reg(REGMAP["CNT_CYCLES_LO"].offset)
        hi = await transport.read_reg(REGMAP["CNT_CYCLES_HI"].offset)
        out = {"C": result.outputs["C"].tolist(), "counters": result.counters,
               "cycles_lo_hi": [lo, hi], "mem_bytes": info.mem_bytes,
               "sim_ns": int(get_sim_time(unit="ns"))}
        (Path(os.environ[JOB_ENV]).parent / "result.json").write_text(json.dumps(out))

    return board_gemm


if os.environ.get(JOB_ENV):          # imported by cocotb inside the simulator
    board_gemm = _cocotb_test()


@pytest.mark.rtl
def test_board_gemm_over_uart(tmp_path):
    from cocotb_tools.runner import get_runner

    from systolab.hw.board import BOARD_TOP, generate_board_verilog
    from systolab.sim.cocotb_tb import build_cocotb
    from systolab.sim.verilator_env import verilator_os_environ

    g = random_gemm(8, 8, 8, seed=3)
    program = compile_gemm(RTL_CFG, g, name="gemm:8x8x8")
    program.save(tmp_path / "program.npz")
    (tmp_path / "job.json").write_text(json.dumps({"program": str(tmp_path / "program.npz"),
                                                   "divisor": RTL_DIVISOR}))
    board = BoardCore(RTL_CFG, mem_bytes=RTL_MEM_BYTES, clock_hz=100_000_000, divisor=RTL_DIVISOR)
    build = build_cocotb(generate_board_verilog(board), top=BOARD_TOP)
    with verilator_os_environ():
        get_runner("verilator").test(
            test_module=__name__, hdl_toplevel=BOARD_TOP, hdl_toplevel_lang="verilog",
            build_dir=build.dir, test_dir=tmp_path, extra_env={JOB_ENV: str(tmp_path / "job.json")},
            results_xml=str(tmp_path / "results.xml"), log_file=tmp_path / "sim.log")
    result = json.loads((tmp_path / "result.json").read_text())
    np.testing.assert_array_equal(np.array(result["C"], dtype=np.int8), gemm_reference(g))
    cycles = result["counters"]["cycles"]
    assert cycles > 0
    assert result["cycles_lo_hi"] == [cycles & 0xFFFFFFFF, cycles >> 32]
    assert result["counters"]["array_busy"] > 0
    assert result["mem_bytes"] == RTL_MEM_BYTES


def test_onchip_memory_in_order_with_backpressure():
    """Random reads and byte-masked writes, with random response back-pressure: every read
    returns the word as of its request, in request order, one per cycle when not stalled."""
    import random

    from systolab.hw.onchip import OnChipMemory
    from support.amaranth_sim import simulate

    B, words = 8, 16
    mem = OnChipMemory(words=words, bus_bytes=B)
    rng = random.Random(5)
    model = [0] * words
    expected, got = [], []
    n_req = 300

    async def requester(ctx):
        req = mem.port.req
        for _ in range(n_req):
            addr, we = rng.randrange(words), rng.random() < 0.4
            wdata, wstrb = rng.getrandbits(8 * B), rng.getrandbits(B)
            ctx.set(req.valid, 1)
            ctx.set(req.payload, {"addr": addr + words * rng.randrange(4), "we": we,
                                  "wdata": wdata, "wstrb": wstrb})
            await ctx.tick().until(req.ready)
            if we:
                for b in range(B):
                    if wstrb >> b & 1:
                        mask = 0xFF << (8 * b)
                        model[addr] = (model[addr] & ~mask) | (wdata & mask)
            else:
                expected.append(model[addr])
            if rng.random() < 0.2:
                ctx.set(req.valid, 0)
                await ctx.tick()
        ctx.set(req.valid, 0)

    async def responder(ctx):
        resp = mem.port.resp
        for _ in range(6 * n_req):
            ready = rng.random() < 0.6
            ctx.set(resp.ready, ready)
            _, _, valid, data = await ctx.tick().sample(resp.valid, resp.payload.rdata)
            if valid and ready:
                got.append(data)

    simulate(mem, requester, responder)
    assert got == expected and len(expected) > 100


class BridgeModel:
    """A Python model of the bridge's memory and information commands, as a plain (blocking)
    link: the path `systolab fpga run` takes over pyserial."""

    def __init__(self, mem_bytes):
        from systolab.hw.bridge import MAGIC, PROTOCOL_VERSION
        self.mem = bytearray(mem_bytes)
        self.info = [MAGIC, PROTOCOL_VERSION, mem_bytes, 16, REGMAP.size, 25_000_000, 1]
        self.out = bytearray()

    def write(self, data):
        cmd, addr, count = data[0], int.from_bytes(data[1:5], "little"), int.from_bytes(data[5:7], "little")
        if cmd == Command.INFO_READ:
            self.out += b"\0" + b"".join(w.to_bytes(4, "little") for w in self.info[addr // 4:][:count])
        elif cmd == Command.MEM_READ:
            self.out += b"\0" + self.mem[addr:addr + 4 * count]
        elif cmd == Command.MEM_WRITE:
            self.mem[addr:addr + 4 * count] = data[7:]
            self.out += b"\0"

    def read(self, n):
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data


def test_transport_over_a_blocking_link():
    import asyncio

    link = BridgeModel(256)
    t = UARTTransport(link, chunk_words=3)
    assert asyncio.run(t.info()).mem_bytes == 256
    asyncio.run(t.mem_write(6, bytes(range(1, 20))))
    assert link.mem[:28] == bytes(6) + bytes(range(1, 20)) + bytes(3)
    assert asyncio.run(t.mem_read(5, 10)) == bytes(link.mem[5:15])
    link.info[0] = 0x12345678
    with pytest.raises(BoardError, match=r"^the device does not speak the systolab bridge protocol "
                                         r"\(magic 0x12345678, expected 0x424c5953\)$"):
        asyncio.run(t.info())
    link.out.clear()
    link.write = lambda data: None                  # a board that never answers
    with pytest.raises(BoardError, match=r"^no reply from the board: command 0x20 at 0x0 got 0 of 1 bytes"):
        asyncio.run(t.mem_read(0, 4))
