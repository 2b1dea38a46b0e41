"""The store path's requantizer: int32 accumulator rows -> int8, one row per cycle, pipelined.

Per column j, exactly as `STORE` in isa/spec.yaml::

    x = acc + bias[j]                      (int32, wraps)
    if fp32: x = round24(x)                (24 significant bits, halves to even)
    p = x * mult[j]                        (exact, fits int64)
    if fp32: p = round24(p)
    if shift[j] > 0: p = round(p / 2**shift[j])   (a half rounds up, or to even with round_even or fp32)
    y = p + zp[j]
    if relu: y = max(y, zp[j])
    out = saturate(y, -128, 127)

How the pipeline computes it (all steps exact, no intermediate wraps):

* the 32 x 32 multiply is split into four 17 x 17 signed partial products (DSP sized) that are
  registered before they are summed (the high and low ones are concatenated, not added);
* rounding shift: with ``u = (2p) >> shift`` (arithmetic), ``(p + 2**(s-1)) >> s ==
  (u + 1) >> 1`` for s >= 1, and for s == 0 ``(u + 1) >> 1 == p``, so one shifter serves both;
  adding the zero point in the same adder: ``y = (u + 2*zp + c) >> 1`` with carry ``c = 1``;
* round half to even: ``p / 2**s`` is a tie when ``u`` is odd and the bits of ``2p`` below
  ``2**s`` are all zero (``sticky`` clear, from a mask shifted beside ``u``); on a tie with
  ``u >> 1`` even the carry is 0, so the half goes down to the even neighbour (s == 0 never
  ties: ``u = 2p`` is even);
* saturation is monotonic, so ``sat(max(y, zp)) == max(sat(y), sat(zp))``: ReLU is an 8-bit max;
* ``round24`` (ONNX Runtime's float32 rounding, ``fp32``): the bits of |v| more than 23 below
  its top bit are ``smear(|v|) >> 24`` (smear: every bit at or below the top one set, a log-depth
  OR); the highest of them is the half, the one above it the unit of the last kept bit; |v| with
  them cleared, plus a unit when the rest is above the half (or equal to it with the kept bit
  odd), is |v| rounded, halves to even, and the sign goes back on. A first version with a
  priority encoder and barrel shifters took the demo's 4x8 core from 80.7 to 24.5 MHz and
  doubled its LUTs; this one over two stages each (latency 12) gave 57.8 MHz and 14,333 LUT4,
  but the model's STORE timing is fitted at latency 10, so it is one stage each: 42.7 MHz, 14,470 LUT4. x = 2**31 - 1 becomes 2**31,
  so the rounded x has 33 bits (its upper multiplier half 17, as before).

Only bits 5..0 of ``shift`` are used (the spec allows 0..63).

Stages (``latency`` = 10): 1 bias add, 2 round24 of x, 3 partial products, 4 middle partial
sum, 5 product, 6 round24 of the product, 7 shift, 8 round and add zero point, 9 saturate,
10 ReLU. A row presented with ``in_valid`` at cycle t leaves at ``out``/``out_valid`` at t + 10. The pipeline never stalls; the parameters must be held constant
while rows are in flight.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .timing import REQUANT_LATENCY

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """Requantizes one row of `cols` int32 to int8 per cycle (see the module docstring).

    Members
    -------
    in_valid : In(1)
    acc : In(ArrayLayout(signed(32), cols))
    bias, mult, shift, zp : In(ArrayLayout(signed(32), cols))
        Per-column parameters, constant while rows are in flight.
    relu : In(1)
    round_even : In(1)
        Round halves to even instead of up; constant while rows are in flight, like the
        parameters.
    fp32 : In(1)
        ONNX Runtime's float32 rounding (round24 of x and of the product, halves to even);
        constant while rows are in flight.
    out_valid : Out(1)
    out : Out(ArrayLayout(signed(8), cols))
    """

    LATENCY = REQUANT_LATENCY

    def __init__(self, *, cols: int):
        if not isinstance(cols, int) or cols < 1:
            raise ValueError(f"cols must be a positive integer, not {cols!r}")
        self._cols = cols
        vec = data.ArrayLayout(signed(32), cols)
        super().__init__({
            "in_valid": In(1),
            "acc": In(vec),
            "bias": In(vec),
            "mult": In(vec),
            "shift": In(vec),
            "zp": In(vec),
            "relu": In(1),
            "round_even": In(1),
            "fp32": In(1),
            "out_valid": Out(1),
            "out": Out(data.ArrayLayout(signed(8), cols)),
        })

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()

        valid = [Signal(name=f"valid_{k}") for k in range(1, self.LATENCY + 1)]
        m.d.sync += valid[0].eq(self.in_valid)
        for k in range(1, self.LATENCY):
            m.d.sync += valid[k].eq(valid[k - 1])
        m.d.comb += self.out_valid.eq(valid[-1])

        for j in range(self._cols):
            m.d.comb += self.out[j].eq(self._column(m, j))
        return m

    def _column(self, m, j):
        def reg(shape, name):
            return Signal(shape, name=f"c{j}_{name}")

        bias, mult, shift, zp = self.bias[j], self.mult[j], self.shift[j], self.zp[j]

        # 1: x = acc + bias, int32 wrap
        x0 = reg(signed(32), "x0")
        m.d.sync += x0.eq(self.acc[j] + bias)

        # 2: with fp32, x rounded to 24 significant bits (it may become 2**31: 33 bits)
        x = reg(signed(33), "x")
        m.d.sync += x.eq(Mux(self.fp32, self._round24(m, x0, f"c{j}_rx"), x0))

        # 3: four 17x17 signed partial products of x * mult
        def halves(v):
            return Cat(v[:16], Const(0, 1)).as_signed(), v[16:].as_signed()
        xl, xh = halves(x)
        ml, mh = halves(mult)
        ll, lh, hl, hh = (reg(signed(34), n) for n in ("ll", "lh", "hl", "hh"))
        m.d.sync += [ll.eq(xl * ml), lh.eq(xl * mh), hl.eq(xh * ml), hh.eq(xh * mh)]

        # 4: the middle partial products summed; hh * 2**32 + ll is a concatenation (0 <= ll < 2**32)
        mid = reg(signed(35), "mid")
        base = reg(signed(64), "base")
        m.d.sync += [mid.eq(lh + hl), base.eq(Cat(ll[:32], hh[:32]))]

        # 5: p = x * mult (|p| <= 2**62)
        p0 = reg(signed(64), "p0")
        m.d.sync += p0.eq(base + (mid << 16))

        # 6: with fp32, the product rounded to 24 significant bits
        p = reg(signed(64), "p")
        m.d.sync += p.eq(Mux(self.fp32, self._round24(m, p0, f"c{j}_rp"), p0))

        # 7: u = (2p) >> shift, arithmetic; sticky: a bit of 2p below 2**shift is set
        u = reg(signed(65), "u")
        sticky = reg(1, "sticky")
        below = ~(Const(-1, signed(65)) << shift[:6])
        m.d.sync += [u.eq((p << 1) >> shift[:6]), sticky.eq(((p << 1) & below).any())]

        # 8: y = (u + 2*zp + c) >> 1 == round(p, shift) + zp; c = 0 only for a tie (u odd,
        # sticky clear) rounded to even (u >> 1 even)
        y = reg(signed(66), "y")
        carry = ~((self.round_even | self.fp32) & u[0] & ~sticky & ~u[1])
        m.d.sync += y.eq((u + Cat(carry, zp).as_signed()) >> 1)

        # 9: saturate to int8: y fits iff bits 7 and up are all equal (a sign extension)
        def sat(v):
            top = v[7:]
            fits = (top == 0) | (top == (1 << len(top)) - 1)
            return Mux(fits, v[:8], Mux(v[-1], 0x80, 0x7F)).as_signed()
        y8 = reg(signed(8), "y8")
        zp8 = reg(signed(8), "zp8")            # the parameter is constant: a register for timing
        m.d.sync += [y8.eq(sat(y)), zp8.eq(sat(zp))]

        # 10: ReLU as max with the saturated zero point
        q = reg(signed(8), "q")
        m.d.sync += q.eq(Mux(self.relu & (y8 < zp8), zp8, y8))
        return q

    @staticmethod
    def _round24(m, v, name):
        """`v` (signed) rounded to 24 significant bits, halves to even (combinational): the
        mask of the bits below the 24 significant ones is an OR-smear of |v| from its top bit
        down, shifted right by 24 (no priority encoder, no barrel shifter), then plain W-bit
        compares and one add."""
        W = len(v)
        a = Signal(W, name=f"{name}_mag")               # |v|; -2**(W-1) is 2**(W-1) unsigned
        m.d.comb += a.eq(Mux(v[-1], -v, v)[:W])
        smear = a
        step = 1
        while step < W:
            smear = smear | (smear >> step)
            step *= 2
        low = Signal(W, name=f"{name}_low")             # ones on the bits to round off
        m.d.comb += low.eq(smear >> 24)
        half = low ^ (low >> 1)                         # bit k-1 alone (0 when nothing rounds off)
        unit = (half << 1)[:W + 1]                      # bit k, one unit of the last kept bit
        rest = a & low
        up = (rest > half) | ((rest == half) & (half != 0) & ((a & unit[:W]) != 0))
        r = Signal(W + 1, name=f"{name}_r")
        m.d.comb += r.eq((a & ~low) + Mux(up, unit, 0))
        return Mux(v[-1], -r, r)
