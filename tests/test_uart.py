"""hw/uart.py in Amaranth's simulator: the transmitter's waveform bit by bit, the receiver against
frames driven from the testbench (with baud mismatch, glitches, framing errors, overruns) and the
two back to back."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from support.amaranth_sim import rejected, simulate
from systolab.hw.uart import UARTRx, UARTTx, uart_divisor


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


async def drive_frame(ctx, line, byte, bit_cycles, *, stop=1):
    """Drive one frame on `line`; `bit_cycles` may be fractional (a sender with another clock)."""
    t = 0.0
    for level in frame_bits(byte, stop):
        ctx.set(line, level)
        t += bit_cycles
        await ctx.tick().repeat(max(1, round(t) - round(t - bit_cycles)))
    ctx.set(line, 1)


async def collect(ctx, o, n, max_cycles):
    """Take up to `n` bytes from stream `o` (ready held high) within `max_cycles`."""
    got = []
    ctx.set(o.ready, 1)
    for _ in range(max_cycles):
        _, _, valid, payload = await ctx.tick().sample(o.valid, o.payload)
        if valid:
            got.append(payload)
            if len(got) == n:
                break
    ctx.set(o.ready, 0)
    return got


def test_divisor():
    assert uart_divisor(25e6, 115200) == 217
    assert uart_divisor(25e6, 1_000_000) == 25
    with pytest.raises(ValueError, match=r"^baud 3000000 is 4.2% off at 25 MHz"):
        uart_divisor(25e6, 3_000_000)
    with pytest.raises(ValueError, match=r"^baud 10000000 is too fast for a 25 MHz clock"):
        uart_divisor(25e6, 10_000_000)
    with rejected(ValueError, r"^divisor must be an integer >= 4, not 3$"):
        UARTTx(divisor=3)


def decode_line(line: list[int], divisor: int) -> list[int]:
    """Software receiver: the bytes in a per-cycle recording of a serial line."""
    out, t = [], 0
    while True:
        try:
            t = line.index(0, t)
        except ValueError:
            return out
        mid = [line[t + divisor // 2 + k * divisor] for k in range(10)]
        assert mid[0] == 0 and mid[9] == 1, f"bad frame at cycle {t}"
        out.append(sum(b << i for i, b in enumerate(mid[1:9])))
        t += 10 * divisor - divisor // 2      # the middle of the stop bit


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_tx_back_to_back(divisor):
    dut = UARTTx(divisor=divisor)
    data = [0x55, 0x00, 0xFF, 0xA3, 0x01, 0x80]
    line = []

    async def sender(ctx):
        ctx.set(dut.i.valid, 1)
        for byte in data:
            ctx.set(dut.i.payload, byte)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        for _ in range(10 * divisor * (len(data) + 2)):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    simulate(dut, sender, monitor)
    assert decode_line(line, divisor) == data
    first = line.index(0)
    # no idle time between frames
    assert line[first:first + 10 * divisor * len(data)] == [
        level for b in data for level in frame_bits(b) for _ in range(divisor)]


def test_tx_exact_timing():
    D = 5
    dut = UARTTx(divisor=D)

    async def tb(ctx):
        ctx.set(dut.i.payload, 0b1011_0010)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        samples = []
        for _ in range(11 * D):
            samples.append(ctx.get(dut.tx))
            await ctx.tick()
        assert samples[:10 * D] == [b for b in frame_bits(0b1011_0010) for _ in range(D)]
        assert samples[10 * D:] == [1] * D
        assert not ctx.get(dut.busy)

    simulate(dut, tb)


@pytest.mark.parametrize("divisor, skew", [(8, 1.0), (16, 0.97), (16, 1.03), (217, 1.0)])
def test_rx_frames(divisor, skew):
    dut = UARTRx(divisor=divisor)
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(6 if divisor > 100 else 24)]
    got = []

    async def sender(ctx):
        await ctx.tick().repeat(3)
        for byte in data:                       # back to back: next start right after the stop
            await drive_frame(ctx, dut.rx, byte, divisor * skew)

    async def receiver(ctx):
        got.extend(await collect(ctx, dut.o, len(data), 12 * divisor * (len(data) + 2)))

    simulate(dut, sender, receiver)
    assert got == data


def test_rx_glitch_framing_error_and_overrun():
    D = 8
    dut = UARTRx(divisor=D)
    errors, overruns = [], []

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        await ctx.tick().repeat(3)
        # a glitch shorter than half a bit is not a start bit
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * D)
        assert not ctx.get(dut.o.valid)
        # a frame with a low stop bit: error, no byte; then a line held low (break) until released
        await drive_frame(ctx, dut.rx, 0x5A, D, stop=0)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(3 * D)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * D)
        assert not ctx.get(dut.o.valid)
        # two good frames while nobody takes the bytes: the second is dropped
        await drive_frame(ctx, dut.rx, 0x11, D)
        await drive_frame(ctx, dut.rx, 0x22, D)
        await ctx.tick().repeat(2 * D)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x11
        got = await collect(ctx, dut.o, 1, 4)
        assert got == [0x11]
        # and the receiver still works
        await drive_frame(ctx, dut.rx, 0x33, D)
        assert await collect(ctx, dut.o, 1, 3 * D) == [0x33]

    async def monitor(ctx):
        async for _, _, error, overrun in ctx.tick().sample(dut.error, dut.overrun):
            if error:
                errors.append(1)
            if overrun:
                overruns.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert len(errors) == 1
    assert len(overruns) == 1


class _Loopback(wiring.Component):
    def __init__(self, divisor):
        self.tx = UARTTx(divisor=divisor)
        self.rx = UARTRx(divisor=divisor)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


def test_loopback_all_bytes():
    D = 6
    top = _Loopback(D)
    data = list(range(256))
    got = []

    async def sender(ctx):
        ctx.set(top.tx.i.valid, 1)
        for byte in data:
            ctx.set(top.tx.i.payload, byte)
            await ctx.tick().until(top.tx.i.ready)
        ctx.set(top.tx.i.valid, 0)

    async def receiver(ctx):
        got.extend(await collect(ctx, top.rx.o, len(data), 10 * D * (len(data) + 4)))

    simulate(top, sender, receiver)
    assert got == data
