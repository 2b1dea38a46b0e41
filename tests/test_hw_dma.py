"""The memory port pieces: memory model timing, arbiter routing, row reader and row writer."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from systolab.hw.dma import RowReader, RowWriter
from systolab.hw.memmodel import MemoryModel
from systolab.hw.memport import MemArbiter
from support.amaranth_sim import rejected, simulate, stream_put

WORDS = 512


def word(img, w, B):
    return int.from_bytes(img[w * B:(w + 1) * B].tobytes(), "little")


def fill(ctx, mm, img, B):
    for w in range(len(img) // B):
        ctx.set(mm.data[w], word(img, w, B))


def read_all(ctx, mm, B):
    raw = b"".join(ctx.get(mm.data[w]).to_bytes(B, "little") for w in range(mm.words))
    return np.frombuffer(raw, dtype=np.uint8).copy()


# -- memory model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("latency", [1, 2, 5])
def test_memory_model_latency_streaming_and_back_pressure(latency):
    B = 8
    mm = MemoryModel(words=64, bus_bytes=B, latency=latency)
    rng = np.random.default_rng(latency)
    img = rng.integers(0, 256, 64 * B, dtype=np.uint8)
    req, resp = mm.port.req, mm.port.resp

    async def testbench(ctx):
        fill(ctx, mm, img, B)
        # back-to-back reads: response k exactly `latency` cycles after request k is accepted
        got = {}
        for t in range(10 + latency):
            if t < 10:
                ctx.set(req.payload, {"addr": 3 * t, "we": 0, "wdata": 0, "wstrb": 0})
            ctx.set(req.valid, t < 10)
            ctx.set(resp.ready, 1)
            if t < 10:
                assert ctx.get(req.ready)
            if ctx.get(resp.valid):
                got[t] = ctx.get(resp.payload.rdata)
            await ctx.tick()
        assert got == {t + latency: word(img, 3 * t, B) for t in range(10)}
        ctx.set(req.valid, 0)
        # back-pressure: responses wait, nothing is lost or reordered, requests stall meanwhile
        ctx.set(resp.ready, 0)
        sent, received = 0, []
        for t in range(60):
            ctx.set(req.payload, {"addr": sent, "we": 0, "wdata": 0, "wstrb": 0})
            ctx.set(req.valid, sent < 12)
            ctx.set(resp.ready, t > 20 and t % 3 != 0)
            if ctx.get(req.valid) and ctx.get(req.ready):
                sent += 1
            if ctx.get(resp.valid) and ctx.get(resp.ready):
                received.append(ctx.get(resp.payload.rdata))
            await ctx.tick()
        assert received == [word(img, w, B) for w in range(12)]
        # a write with byte enables, then a read of the same word sees it
        ctx.set(req.payload, {"addr": 5, "we": 1, "wdata": int("ab" * B, 16), "wstrb": 0b10000001})
        ctx.set(req.valid, 1)
        ctx.set(resp.ready, 1)
        await ctx.tick()
        ctx.set(req.valid, 0)
        expect = bytearray(img[5 * B:6 * B].tobytes())
        expect[0] = expect[7] = 0xAB
        assert ctx.get(mm.data[5]) == int.from_bytes(expect, "little")
        # host port: write, then the word at the previous cycle's address
        ctx.set(mm.host_addr, 9)
        ctx.set(mm.host_wdata, 0x1234)
        ctx.set(mm.host_we, 1)
        await ctx.tick()
        ctx.set(mm.host_we, 0)
        await ctx.tick()
        assert ctx.get(mm.host_rdata) == 0x1234

    simulate(mm, testbench)


# -- reader and writer through the arbiter ---------------------------------------------------------

def harness(R, B, L, count_width=16):
    m = Module()
    mm = m.submodules.mm = MemoryModel(words=WORDS, bus_bytes=B, latency=L)
    arb = m.submodules.arb = MemArbiter(bus_bytes=B, n=3, max_outstanding=L + 2)
    rd = m.submodules.rd = RowReader(row_bytes=R, bus_bytes=B, count_width=count_width,
                                     buffer_words=L + 4)
    rd2 = m.submodules.rd2 = RowReader(row_bytes=B, bus_bytes=B, count_width=count_width,
                                       buffer_words=L + 4)
    wr = m.submodules.wr = RowWriter(row_bytes=R, bus_bytes=B, count_width=count_width)
    wiring.connect(m, arb.mem, mm.port)
    wiring.connect(m, rd.mem, arb.ports[0])
    wiring.connect(m, wr.mem, arb.ports[1])
    wiring.connect(m, rd2.mem, arb.ports[2])
    return m, mm, rd, rd2, wr


CASES = [  # R, B, L, addr, stride, count
    (8, 16, 5, 64, 8, 40),        # two rows per word: one read serves both
    (8, 16, 5, 64, 16, 30),       # lane 0 of every word
    (8, 16, 3, 72, 24, 20),       # alternating lanes
    (4, 16, 3, 4, 0, 10),         # stride 0 repeats a row (one read)
    (16, 16, 1, 0, 32, 30),       # one word per row
    (32, 16, 4, 64, 64, 20),      # two words per row
    (16, 4, 7, 32, 48, 15),       # four words per row on a narrow bus
    (8, 4, 2, 64, 24, 20),
]


@pytest.mark.parametrize("R, B, L, addr, stride, count", CASES)
def test_reader_and_writer_copy_strided_rows(R, B, L, addr, stride, count):
    """Copy rows with the reader into the writer (both on the port, a second reader competing),
    the consumer of the reader stalling every third cycle."""
    m, mm, rd, rd2, wr = harness(R, B, L)
    rng = np.random.default_rng(R * B + L)
    img = rng.integers(0, 256, WORDS * B, dtype=np.uint8)
    waddr = WORDS * B // 2
    wstride = max(R, B) if stride % max(R, B) else stride
    got, side = [], []

    async def testbench(ctx):
        fill(ctx, mm, img, B)
        await stream_put(ctx, rd.cmd, {"addr": addr, "stride": stride, "count": count, "user": 1})
        await stream_put(ctx, rd2.cmd, {"addr": 0, "stride": B, "count": 25, "user": 0})
        await stream_put(ctx, wr.cmd, {"addr": waddr, "stride": wstride, "count": count, "notify": 1})
        queue, written, notified = [], 0, 0
        ctx.set(rd2.rows.ready, 1)
        for cyc in range(3000):
            ready = cyc % 3 != 0
            ctx.set(rd.rows.ready, ready)
            ctx.set(wr.rows.valid, bool(queue))
            if queue:
                ctx.set(wr.rows.payload, queue[0])
            take_w = bool(queue) and bool(ctx.get(wr.rows.ready))
            if ctx.get(rd.rows.valid) and ready:
                row = ctx.get(rd.rows.payload)
                assert (row.first, row.last, row.user) == (len(got) == 0, len(got) == count - 1, 1)
                got.append(row.data)
                queue.append(row.data)
            if ctx.get(rd2.rows.valid):
                side.append(ctx.get(rd2.rows.payload.data))
            notified += ctx.get(wr.notified)
            if take_w:
                queue.pop(0)
                written += 1
            await ctx.tick()
            if written == count and not (ctx.get(wr.busy) or ctx.get(rd.busy) or ctx.get(rd2.busy)):
                break
        else:
            raise AssertionError("copy did not finish")
        assert notified == 1
        mem = read_all(ctx, mm, B)
        expect = img.copy()
        for r in range(count):
            a = addr + r * stride
            assert got[r] == int.from_bytes(img[a:a + R].tobytes(), "little"), f"row {r}"
            expect[waddr + r * wstride:waddr + r * wstride + R] = img[a:a + R]
        np.testing.assert_array_equal(mem, expect)
        assert side == [word(img, w, B) for w in range(25)]

    simulate(m, testbench)


@pytest.mark.parametrize("R, B, L", [(16, 16, 8), (8, 16, 8), (8, 8, 20), (32, 16, 6)])
def test_reader_hides_latency(R, B, L):
    """Alone on the port with a consumer that is always ready, the reader delivers one word per
    cycle: the first word L + 3 cycles after the command is accepted (so the first row of W words
    at L + 2 + W), then no gaps."""
    m, mm, rd, rd2, wr = harness(R, B, L)
    count = 40
    words_per_row = max(1, R // B)
    arrivals = []

    async def testbench(ctx):
        await stream_put(ctx, rd.cmd, {"addr": 0, "stride": max(R, B), "count": count, "user": 0})
        ctx.set(rd.rows.ready, 1)
        for cyc in range(1, 400):
            if ctx.get(rd.rows.valid):
                arrivals.append(cyc)
            await ctx.tick()
        assert not ctx.get(rd.busy)

    simulate(m, testbench)
    assert arrivals == [L + 2 + words_per_row * (k + 1) for k in range(count)]


def test_back_to_back_commands_have_no_gap():
    """A second command's reads are issued while the first command's rows are still arriving."""
    L = 10
    m, mm, rd, rd2, wr = harness(16, 16, L)
    arrivals = []

    async def producer(ctx):
        await stream_put(ctx, rd.cmd, {"addr": 0, "stride": 16, "count": 20, "user": 0})
        await stream_put(ctx, rd.cmd, {"addr": 1024, "stride": 16, "count": 20, "user": 1})

    async def consumer(ctx):
        ctx.set(rd.rows.ready, 1)
        for cyc in range(200):
            if ctx.get(rd.rows.valid):
                arrivals.append((cyc, ctx.get(rd.rows.payload.user)))
            await ctx.tick()

    simulate(m, producer, consumer)
    cycles = [c for c, _ in arrivals]
    assert [u for _, u in arrivals] == [0] * 20 + [1] * 20
    assert np.all(np.diff(cycles) == 1)


def test_dma_arguments_are_checked():
    with rejected(ValueError, r"^row_bytes must be a power of two >= 1, not 12$"):
        RowReader(row_bytes=12, bus_bytes=16, count_width=8)
    with rejected(ValueError, r"^bus_bytes must be a power of two >= 1, not 3$"):
        RowWriter(row_bytes=8, bus_bytes=3, count_width=8)
    with rejected(ValueError, r"^buffer_words must be an integer >= 3, not 2$"):
        RowReader(row_bytes=8, bus_bytes=16, count_width=8, buffer_words=2)
    with rejected(ValueError, r"^latency must be an integer >= 1, not 0$"):
        MemoryModel(words=16, bus_bytes=4, latency=0)
    with rejected(ValueError, r"^max_outstanding must be a positive integer, not 0$"):
        MemArbiter(bus_bytes=4, n=2, max_outstanding=0)
