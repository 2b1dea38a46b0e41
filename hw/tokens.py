"""Dependency token counters between neighbouring instruction queues (VTA style).

There are four: load->compute, compute->load, compute->store, store->compute. The producer adds
``inc`` tokens per cycle (a unit can finish more than one instruction's worth in one cycle, so
``inc`` is a small count); the consumer looks at ``nonzero`` and takes one with ``dec``. Both take
effect at the clock edge: a token pushed in cycle t can be taken from cycle t + 1 on. ``clear``
(the accelerator's ``start``) empties the counter.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TokenCounter"]


class TokenCounter(wiring.Component):
    """A counter of dependency tokens.

    Parameters
    ----------
    max_inc : int
        Largest number of tokens pushed in one cycle.
    width : int
        Counter width (tokens outstanding at once; a valid program stays far below 2**width).

    Members
    -------
    inc : In(range(max_inc + 1))
    dec : In(1)
        Take one token; only when ``nonzero``.
    clear : In(1)
    nonzero : Out(1)
    count : Out(width)
    """

    def __init__(self, *, max_inc: int = 1, width: int = 16):
        if not isinstance(max_inc, int) or max_inc < 1:
            raise ValueError(f"max_inc must be a positive integer, not {max_inc!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self._max_inc = max_inc
        self._width = width
        super().__init__({
            "inc": In(range(max_inc + 1)),
            "dec": In(1),
            "clear": In(1),
            "nonzero": Out(1),
            "count": Out(width),
        })

    @property
    def max_inc(self) -> int:
        return self._max_inc

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.nonzero.eq(self.count != 0)
        with m.If(self.clear):
            m.d.sync += self.count.eq(0)
        with m.Else():
            m.d.sync += self.count.eq(self.count + self.inc - (self.dec & self.nonzero))
        return m
