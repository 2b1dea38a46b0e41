"""Helpers for testing the hardware in Amaranth's simulator (used by tests/test_hw_*.py).

* `simulate(dut, *testbenches)`: run async testbenches on one clock;
* `stream_put` / `stream_get`: move one payload through an `amaranth.lib.stream` interface;
* `rejected(exc, match)`: like `pytest.raises` for a component constructor, without the
  "created but never used" warning of the half-built component (warnings are errors in tests).
"""

import contextlib
import gc
import re
import traceback
import warnings

from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

__all__ = ["simulate", "stream_put", "stream_get", "rejected"]


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


async def stream_put(ctx, stream, payload) -> None:
    """Offer `payload` on `stream` (valid high) until it is taken; returns after that edge."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from `stream` (ready high) and return it."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


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
