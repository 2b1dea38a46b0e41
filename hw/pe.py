"""One processing element (PE) of the weight-stationary systolic array.

A PE holds two int8 weights (weight buffers 0 and 1). Every cycle it multiplies the activation
that arrives from its left neighbour by the weight in the buffer named by the select bit that
travels with that activation, adds the partial sum from the PE above and registers the result for
the PE below. The activation and its select bit are registered for the PE to the right.

Timing (all outputs are registers, one cycle after the inputs they are computed from)::

    a_out[t+1]    = a_in[t]
    sel_out[t+1]  = sel_in[t]
    psum_out[t+1] = psum_in[t] + a_in[t] * w[sel_in[t]][t]

A weight write (``w_en``, ``w_buf``, ``w_data``) takes effect at the clock edge: a product computed
in the same cycle still uses the old weight, one computed in the next cycle the new one.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PE", "psum_width"]


def psum_width(rows: int) -> int:
    """Bits of a signed partial sum that can hold the sum of `rows` int8 x int8 products exactly.

    A product lies in [-16256, 16384], so `rows` of them need 16 + log2(rows) signed bits; the
    array sign-extends its outputs to int32, which is therefore exact (no int32 wrap can occur
    inside the array for rows <= 64).
    """
    if not isinstance(rows, int) or rows < 1 or rows & (rows - 1):
        raise ValueError(f"rows must be a power of two >= 1, not {rows!r}")
    return 16 + rows.bit_length() - 1


class PE(wiring.Component):
    """A weight-stationary int8 multiply-accumulate cell with two weight buffers.

    Parameters
    ----------
    width : int
        Width of the signed partial sums (``psum_in``/``psum_out``), at least 16.

    Members
    -------
    a_in, sel_in : In
        Activation (int8) and weight-buffer select from the left.
    a_out, sel_out : Out
        The same, registered, to the right.
    psum_in : In(signed(width))
        Partial sum from above (0 for the top row).
    psum_out : Out(signed(width))
        Registered ``psum_in + a_in * w[sel_in]``.
    w_en, w_buf, w_data : In
        Write ``w_data`` into weight buffer ``w_buf`` at the clock edge when ``w_en``.
    """

    def __init__(self, *, width: int = 32):
        if not isinstance(width, int) or width < 16:
            raise ValueError(f"width must be an integer >= 16, not {width!r}")
        self._width = width
        super().__init__({
            "a_in": In(signed(8)),
            "sel_in": In(1),
            "psum_in": In(signed(width)),
            "a_out": Out(signed(8)),
            "sel_out": Out(1),
            "psum_out": Out(signed(width)),
            "w_en": In(1),
            "w_buf": In(1),
            "w_data": In(signed(8)),
        })

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        w0 = Signal(signed(8))
        w1 = Signal(signed(8))
        with m.If(self.w_en):
            with m.If(self.w_buf):
                m.d.sync += w1.eq(self.w_data)
            with m.Else():
                m.d.sync += w0.eq(self.w_data)

        weight = Signal(signed(8))
        m.d.comb += weight.eq(Mux(self.sel_in, w1, w0))
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.sel_out.eq(self.sel_in),
            self.psum_out.eq(self.psum_in + self.a_in * weight),
        ]
        return m
