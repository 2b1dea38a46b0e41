"""One processing element (PE) of the weight-stationary systolic array.

A PE holds two int8 weights (weight buffers 0 and 1). Every cycle it multiplies the activation
that arrives from its left neighbour by the weight of the buffer selected for that activation,
adds the partial sum from the PE above and registers the result for the PE below. The activation
is registered for the PE to the right.

The buffer select travels one cycle *ahead* of its activation (``sel_next``: the buffer of the
activation that arrives in the next cycle), so the PE registers the selected weight in advance
and the multiplier's input is a register, not a multiplexer (that mux was the critical path).

Timing (outputs are registers)::

    a_out[t+1]    = a_in[t]
    w_cur[t+1]    = w[sel_next[t]] as written at the edge ending t (a write in cycle t is seen)
    psum_out[t+1] = psum_in[t] + a_in[t] * w_cur[t]
    sel_out[t]    = sel_next[t-1]     (the buffer of the activation in the PE now, which is the
                                       right neighbour's sel_next)

A weight write (``w_en``, ``w_buf``, ``w_data``) takes effect at the clock edge: a product computed
in the same cycle still uses the old weight, one computed in the next cycle the new one.

The multiplier is ``a * w`` (Yosys maps it to a DSP block) unless the elaboration's platform has a
`DspBudget` that is used up: then it is built from shifted partial products in logic (same
result, no DSP). A 16x16 array needs 256 multipliers, more than an ECP5 85k's 156 DSP blocks.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from .common import check_pow2

__all__ = ["PE", "psum_width", "DspBudget", "logic_product"]


class DspBudget:
    """How many PE multipliers may use DSP blocks; the others are built in logic.

    Pass it as the `platform` of a Verilog conversion (`hw.verilog.generate_verilog(...,
    dsp_pes=N)` does) or give a board platform a ``dsp_budget`` attribute holding one: the first
    `dsp_pes` PEs elaborated get a DSP, the rest `logic_product`. Which PEs those are does not
    matter: every PE computes the same thing either way.
    """

    def __init__(self, dsp_pes: int):
        if not isinstance(dsp_pes, int) or dsp_pes < 0:
            raise ValueError(f"dsp_pes must be an integer >= 0, not {dsp_pes!r}")
        self.left = dsp_pes
        self.in_logic = 0

    @property
    def dsp_budget(self) -> "DspBudget":
        return self

    def take(self) -> bool:
        """True if the next PE may use a DSP block (and counts it)."""
        if self.left > 0:
            self.left -= 1
            return True
        self.in_logic += 1
        return False


def logic_product(m: Module, a, w):
    """``a * w`` for signed 8-bit values, built in logic (no ``$mul`` cell, so no DSP block): the
    partial products of ``w = -w[7]·2^7 + sum(w[i]·2^i for i < 7)`` summed by a balanced tree of
    two-input adders added to `m`.

    Each sum is a kept signal, so Yosys maps every adder to a carry chain (CCU2C) instead of
    merging them all into one multi-operand adder of LUTs. A PE alone through `synth_ecp5`:
    83 LUT4 + 46 CCU2C this way, 443 LUT4 + 10 CCU2C as one expression (about 2.6x the sites).
    """
    terms = [Mux(w[i], a, 0) << i for i in range(7)] + [-(Mux(w[7], a, 0) << 7)]
    level = 0
    while len(terms) > 1:
        pairs = []
        for j in range(0, len(terms) - 1, 2):
            total = Signal(signed(17), name=f"pp{level}_{j // 2}", attrs={"keep": 1})
            m.d.comb += total.eq(terms[j] + terms[j + 1])
            pairs.append(total)
        terms = pairs + terms[len(pairs) * 2:]
        level += 1
    return terms[0]


def psum_width(rows: int) -> int:
    """Bits of a signed partial sum that can hold the sum of `rows` int8 x int8 products exactly.

    A product lies in [-16256, 16384], so `rows` of them need 16 + log2(rows) signed bits; the
    array sign-extends its outputs to int32, which is therefore exact (no int32 wrap can occur
    inside the array for rows <= 64).
    """
    check_pow2("rows", rows)
    return 16 + rows.bit_length() - 1


class PE(wiring.Component):
    """A weight-stationary int8 multiply-accumulate cell with two weight buffers.

    Parameters
    ----------
    width : int
        Width of the signed partial sums (``psum_in``/``psum_out``), at least 16.

    Members
    -------
    a_in : In(signed(8))
        Activation from the left.
    sel_next : In(1)
        Weight buffer of the activation that arrives in the next cycle.
    a_out, sel_out : Out
        Activation (registered) and its buffer select, to the right neighbour's ``a_in`` and
        ``sel_next``.
    psum_in : In(signed(width))
        Partial sum from above (0 for the top row).
    psum_out : Out(signed(width))
        Registered ``psum_in + a_in * weight``.
    w_en, w_buf, w_data : In
        Write ``w_data`` into weight buffer ``w_buf`` at the clock edge when ``w_en``.
    """

    def __init__(self, *, width: int = 32):
        if not isinstance(width, int) or width < 16:
            raise ValueError(f"width must be an integer >= 16, not {width!r}")
        self._width = width
        super().__init__({
            "a_in": In(signed(8)),
            "sel_next": In(1),
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

        # the weight for the next cycle's activation, including a write at this edge
        w_cur = Signal(signed(8))
        with m.If(self.w_en & (self.w_buf == self.sel_next)):
            m.d.sync += w_cur.eq(self.w_data)
        with m.Else():
            m.d.sync += w_cur.eq(Mux(self.sel_next, w1, w0))

        budget = getattr(platform, "dsp_budget", None)
        in_dsp = budget is None or budget.take()
        product = self.a_in * w_cur if in_dsp else logic_product(m, self.a_in, w_cur)
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.sel_out.eq(self.sel_next),
            self.psum_out.eq(self.psum_in + product),
        ]
        return m
