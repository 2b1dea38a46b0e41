"""Helpers for testing the hardware in Amaranth's simulator (used by tests/test_hw_*.py).

* `simulate(dut, *testbenches)`: run async testbenches on one clock;
* `stream_put` / `stream_get`: move one payload through an `amaranth.lib.stream` interface;
* `run_cycles`: step a unit cycle by cycle, offering items on a stream, setting inputs and
  recording what it does in each cycle (for tests that pin a timing contract to the cycle);
* `rejected(exc, match)`: like `pytest.raises` for a component constructor, without the
  "created but never used" warning of the half-built component (warnings are errors in tests).
"""

import contextlib
import gc
import re
import traceback
import warnings

from amaranth.hdl import UnusedElaboratable
from amaranth.lib import data
from amaranth.sim import Simulator

__all__ = ["simulate", "stream_put", "stream_get", "run_cycles", "read_rows", "rejected"]


def simulate(dut, *testbenches, vcd: str | None = None, period: float = 1e-8) -> None:
    sim = Simulator(dut)
    sim.add_clock(period)
    for tb in testbenches:
        sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def _set_payload(ctx, stream, payload) -> None:
    target = stream.payload
    if isinstance(payload, int) and isinstance(target, data.View):
        target = target.as_value()       # a raw word (an encoded instruction) into a view
    ctx.set(target, payload)


async def stream_put(ctx, stream, payload) -> None:
    """Offer `payload` on `stream` (valid high) until it is taken; returns after that edge.
    `payload` may be an int for a stream whose payload is a view (an instruction word)."""
    _set_payload(ctx, stream, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from `stream` (ready high) and return it."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def run_cycles(ctx, cycles, *, feed=None, drive=None, probe=None):
    """Run `cycles` clock cycles, numbered from 0 (the current one).

    In each cycle, in this order: `drive(ctx, cycle)` sets the inputs; the first item left of
    `feed = (stream, items)` is offered (``valid`` high while items are left); `probe(ctx, cycle)`
    reads the settled values of the cycle and returns a record; an offered item is taken when
    ``ready`` is high; then the clock ticks. Returns ``(records, taken)``: the records in cycle
    order and, for each item, the cycle in which it was taken.
    """
    stream, items = feed if feed is not None else (None, [])
    items = list(items)
    records, taken = [], []
    for cycle in range(cycles):
        if drive is not None:
            drive(ctx, cycle)
        if stream is not None:
            if items:
                _set_payload(ctx, stream, items[0])
            ctx.set(stream.valid, bool(items))
        if probe is not None:
            records.append(probe(ctx, cycle))
        if items and ctx.get(stream.ready):
            items.pop(0)
            taken.append(cycle)
        await ctx.tick()
    if stream is not None:
        ctx.set(stream.valid, 0)
    return records, taken


async def read_rows(ctx, port, depth: int) -> list[list[int]]:
    """Every row 0 .. depth-1 of a memory through a synchronous read `port`, one a cycle."""
    rows = []
    for a in range(depth):
        ctx.set(port.addr, a)
        await ctx.tick()
        rows.append([int(v) for v in ctx.get(port.data)])
    return rows


@contextlib.contextmanager
def rejected(exc_type, match: str):
    """Expect `exc_type` with a message matching `match` (re.search) from the body."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            yield
        except exc_type as e:
            message = str(e)
            # drop the half-built component now, while its warning is ignored
            traceback.clear_frames(e.__traceback__)
            del e
            gc.collect()
            if not re.search(match, message):
                raise AssertionError(f"{message!r} does not match {match!r}") from None
        else:
            raise AssertionError(f"{exc_type.__name__} not raised")
