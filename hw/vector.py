"""The vector unit: executes VECTOR (isa/spec.yaml, ``vector_ops``) for the compute unit.

It works on ``lanes`` int32 lanes per cycle: a row of ``cols`` lanes is ``B = cols / lanes``
beats. A beat of a pipelined operation takes one cycle; RECIP (restoring division, one quotient
bit per cycle) and ISQRT (digit-by-digit square root, one root bit per cycle) take
``D = hw.timing.VECTOR_ITERATIONS[func]`` cycles (32 and 16) per beat. Operands are whole rows
read through four read ports, which the compute unit lends the vector unit while it runs:

* ``sp_a`` / ``sp_b``: scratchpad rows of operand a / b (int8, sign-extended; lanes >= ``rows``
  read 0);
* ``acc_a`` / ``acc_b``: accumulator rows of operand a / b, and the old destination row (for
  accumulate) on whichever of the two the operands leave free.

The unit has no operand registers: a port's ``data`` holds the row it read until the port is
enabled again, and a row's ports are enabled only in the cycle its read is issued (the old
destination row is registered when the row is done, for the write a cycle later).

Timing contract, for a command taken (``cmd.valid & cmd.ready``) in cycle d, with the row period
``P = hw.timing.vector_row_cycles(...) = B * D`` (``+ 1`` when a row reads three accumulator
rows)::

    d + 1 + r*P          row r's operand rows (and the old destination row) are read
    d + 2 + r*P ...      its beats: beat k in cycles d + 2 + r*P + k*D ... + (k + 1)*D - 1;
                         each beat's results go into the row register ``res`` (row reductions:
                         the running value ``red``)
    d + 1 + (r + 1)*P    row r is done: the old destination row is taken from its port into a
                         register; row r + 1 is read
    d + 2 + (r + 1)*P    row r is written: ``res`` combined lane-wise with the old row, all from
                         registers (no arithmetic between the block RAM outputs and the write
                         but the operation itself)

MUL registers its 64-bit products (``prod``) and does the rounding shift a cycle later, so the
multiplier and the shifter are in different cycles; the last beat of a MUL row is shifted in the
write cycle.

With three accumulator reads (a and b in the accumulator, accumulate) the old destination row
is read on ``acc_a`` in the last beat cycle of the row (after a's last use), so the row is done one
cycle later (P has the ``+ 1``). Column reductions (CSUM, CMAX) reduce every row into ``res`` and
write the one row ``dst`` after the last row. So the last write is at
``d + hw.timing.vector_cycles(rows, P)``; ``push_prev`` is given in the cycle the last row is read
(``d + hw.timing.vector_last_read(rows, P)``),
``push_next`` in the cycle of the last write, and ``cmd.ready`` (``free``) is high when the unit is
idle or in its last write, so the compute unit's next instruction may start in that cycle (its
reads see the write: the memories are written at the clock edge).

Reads and writes of the accumulator are never in conflict inside one command: a destination row
overlaps an accumulator source only in place (the functional simulator rejects other overlaps), and
row r is written after it was read, while row r + 1 is being processed.

``active`` is high from d + 1 to the last write: the cycles the unit drives its ports (and the
``vector_busy`` counter).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolab.isa import VectorOp

from .buffers import acc_row_layout, sp_row_layout
from .common import check_pow2
from .timing import VECTOR_ITERATIONS, VECTOR_UNARY

__all__ = ["VectorUnit", "vector_cmd_layout"]

INT32_MAX = (1 << 31) - 1


def vector_cmd_layout(*, sp_depth: int, acc_depth: int) -> data.StructLayout:
    """A VECTOR as the unit takes it: the instruction's fields (addresses cut to the buffers'
    address widths) and its token pushes."""
    aw = ceil_log2(max(sp_depth, acc_depth))
    return data.StructLayout({
        "func": VectorOp,
        "accumulate": unsigned(1),
        "dst": unsigned(ceil_log2(acc_depth)),
        "src1": unsigned(aw),
        "src1_sp": unsigned(1),
        "src1_stride": unsigned(1),
        "src2": unsigned(32),
        "src2_sp": unsigned(1),
        "src2_stride": unsigned(1),
        "src2_imm": unsigned(1),
        "rows": unsigned(ceil_log2(acc_depth + 1)),
        "shift": unsigned(6),
        "round": unsigned(1),
        "push_prev": unsigned(1),
        "push_next": unsigned(1),
    })


def _is(func, *names):
    return Cat(*(func == VectorOp[n] for n in names)).any()


class VectorUnit(wiring.Component):
    """Executes VECTOR commands (see the module docstring for the timing contract).

    Parameters
    ----------
    rows, cols : int
        The array shape: int8 lanes of a scratchpad row, int32 lanes of an accumulator row.
    lanes : int
        Lanes per beat, a power of two up to ``cols``.
    sp_depth, acc_depth : int
        Scratchpad / accumulator rows (address widths).

    Members
    -------
    cmd : In(stream.Signature(vector_cmd_layout(...)))
    sp_a, sp_b : In(ReadPort.Signature(...))
        Scratchpad read ports (operands a, b).
    acc_a, acc_b : In(ReadPort.Signature(...))
        Accumulator read ports (operands a, b; the old destination row).
    acc_write : In(WritePort.Signature(...))
    active : Out(1)
        The unit works (and drives its ports) this cycle.
    push_prev, push_next : Out(1)
    """

    def __init__(self, *, rows: int, cols: int, lanes: int, sp_depth: int, acc_depth: int):
        check_pow2("rows", rows)
        check_pow2("cols", cols)
        check_pow2("lanes", lanes)
        if lanes > cols:
            raise ValueError(f"lanes must be at most cols ({cols}), not {lanes!r}")
        check_pow2("sp_depth", sp_depth, 2)
        check_pow2("acc_depth", acc_depth, 2)
        self._rows, self._cols, self._lanes = rows, cols, lanes
        self._sp_depth, self._acc_depth = sp_depth, acc_depth
        sp_aw, acc_aw = ceil_log2(sp_depth), ceil_log2(acc_depth)
        sp_sig = ReadPort.Signature(addr_width=sp_aw, shape=sp_row_layout(rows))
        acc_sig = ReadPort.Signature(addr_width=acc_aw, shape=acc_row_layout(cols))
        super().__init__({
            "cmd": In(stream.Signature(vector_cmd_layout(sp_depth=sp_depth, acc_depth=acc_depth))),
            "sp_a": In(sp_sig),
            "sp_b": In(sp_sig),
            "acc_a": In(acc_sig),
            "acc_b": In(acc_sig),
            "acc_write": In(WritePort.Signature(addr_width=acc_aw, shape=acc_row_layout(cols))),
            "active": Out(1),
            "push_prev": Out(1),
            "push_next": Out(1),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def beats(self) -> int:
        """Beats per row (`hw.timing.vector_beats`)."""
        return self._cols // self._lanes

    @property
    def sp_depth(self) -> int:
        return self._sp_depth

    @property
    def acc_depth(self) -> int:
        return self._acc_depth

    # -- datapath pieces ----------------------------------------------------------------------------
    @staticmethod
    def _sra(m, x, sh, rnd, width, name):
        """int32 of sra(x, sh, rnd): (x + 2**(sh-1)) >> sh (arithmetic), floored without rnd."""
        bias = Mux(rnd, (Const(1, width) << sh) >> 1, 0)
        t = Signal(signed(width + 1), name=f"{name}_t")
        m.d.comb += t.eq(x + bias)
        return (t >> sh)[:32]

    def _elementwise(self, m, func, a, b, lane):
        """The result of a one-cycle elementwise operation on one lane (int32, wrapped), but for
        the shifts (MUL, SHL, SHR share one shifter, see `elaborate`)."""
        y = Signal(signed(32), name=f"ew_{lane}")
        lo = b[:16].as_signed()
        hi = b[16:].as_signed()
        clamped = Signal(signed(32), name=f"clamp_{lane}")
        m.d.comb += clamped.eq(Mux(a < lo, lo, a))
        with m.Switch(func):
            with m.Case(VectorOp.ADD):
                m.d.comb += y.eq(a + b)
            with m.Case(VectorOp.SUB):
                m.d.comb += y.eq(a - b)
            with m.Case(VectorOp.MAX):
                m.d.comb += y.eq(Mux(a > b, a, b))
            with m.Case(VectorOp.MIN):
                m.d.comb += y.eq(Mux(a < b, a, b))
            with m.Case(VectorOp.CLAMP):
                m.d.comb += y.eq(Mux(clamped > hi, hi, clamped))
            with m.Case(VectorOp.ABS):
                m.d.comb += y.eq(Mux(a < 0, -a, a)[:32])
            with m.Case(VectorOp.NEGSEL):
                m.d.comb += y.eq(Mux(a < 0, -b, b)[:32])
        return y

    def elaborate(self, platform):
        m = Module()
        rows, cols, L, B = self._rows, self._cols, self._lanes, self.beats
        sp_aw, acc_aw = ceil_log2(self._sp_depth), ceil_log2(self._acc_depth)
        cmd = self.cmd.payload
        row = acc_row_layout(cols)

        # ---- the command ----------------------------------------------------------------------
        c = Signal(vector_cmd_layout(sp_depth=self._sp_depth, acc_depth=self._acc_depth))
        b_acc = Signal()             # operand b is an accumulator row
        three = Signal()             # a row reads three accumulator rows (one cycle more)
        col_red = Signal()
        m.d.comb += [
            b_acc.eq(~c.src2_sp & ~c.src2_imm & ~_is(c.func, *sorted(VECTOR_UNARY))),
            three.eq(~c.src1_sp & b_acc & c.accumulate),
            col_red.eq(_is(c.func, "CSUM", "CMAX")),
        ]
        d_last = Signal(range(max(VECTOR_ITERATIONS.values())))   # iterations per beat - 1
        d_of = Mux(cmd.func == VectorOp.RECIP, VECTOR_ITERATIONS["RECIP"] - 1,
                   Mux(cmd.func == VectorOp.ISQRT, VECTOR_ITERATIONS["ISQRT"] - 1, 0))

        # ---- sequencing -----------------------------------------------------------------------
        active = Signal()
        first = Signal()             # the cycle after the command: read row 0
        beating = Signal()           # in a beat cycle
        extra = Signal()             # the cycle after the last beat of a three-read row
        beat = Signal(range(B))
        it = Signal(range(max(VECTOR_ITERATIONS.values())))
        left = Signal(range(self._acc_depth + 1))     # rows still to read
        first_row = Signal()         # the row being processed is row 0 (column reductions)
        nxt_a = Signal(len(c.src1))
        nxt_b = Signal(32)
        nxt_dst = Signal(acc_aw)     # destination of the next row read
        cur_dst = Signal(acc_aw)     # destination of the row being processed

        beat_done = Signal()         # last cycle of a beat
        row_beats_done = Signal()    # last cycle of the row's last beat
        row_end = Signal()           # the row being processed is done (written in the next cycle)
        last_row = Signal()
        read = Signal()              # the next row's operands are read this cycle
        old_read = Signal()          # three reads: the old destination row is read this cycle
        write = Signal()             # row_end of a row that is written
        wr = Signal()                # the write cycle (registered from `write`)
        wr_last = Signal()           # ... of the command's last row
        wr_addr = Signal(acc_aw)
        m.d.comb += [
            beat_done.eq(beating & (it == d_last)),
            row_beats_done.eq(beat_done & (beat == B - 1)),
            row_end.eq((row_beats_done & ~three) | extra),
            last_row.eq(left == 0),
            read.eq((first | row_end) & ~last_row),
            old_read.eq(row_beats_done & three),
            write.eq(row_end & (~col_red | last_row)),
            self.active.eq(active),
            self.cmd.ready.eq(~active | (wr & wr_last)),
            self.push_prev.eq(read & (left == 1) & c.push_prev),
            self.push_next.eq(wr & wr_last & c.push_next),
        ]
        with m.If(beating):
            m.d.sync += it.eq(it + 1)
            with m.If(it == d_last):
                m.d.sync += [it.eq(0), beat.eq(beat + 1)]
                with m.If(beat == B - 1):
                    m.d.sync += [beat.eq(0), beating.eq(0), extra.eq(three)]
        with m.If(extra):
            m.d.sync += extra.eq(0)
        m.d.sync += [wr.eq(write), wr_last.eq(row_end & last_row), wr_addr.eq(cur_dst)]
        with m.If(row_end):
            m.d.sync += first_row.eq(0)
        with m.If(wr & wr_last):
            m.d.sync += active.eq(0)
        with m.If(first):
            m.d.sync += first.eq(0)
            with m.If(last_row):                  # rows = 0: nothing to do
                m.d.sync += active.eq(0)
        with m.If(read):
            m.d.sync += [
                beating.eq(1), beat.eq(0), it.eq(0), left.eq(left - 1),
                nxt_a.eq(nxt_a + c.src1_stride),
                nxt_b.eq(nxt_b + c.src2_stride),
                nxt_dst.eq(nxt_dst + ~col_red),
                cur_dst.eq(nxt_dst),
            ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                c.eq(cmd), active.eq(1), first.eq(1), first_row.eq(1), left.eq(cmd.rows),
                nxt_a.eq(cmd.src1), nxt_b.eq(cmd.src2), nxt_dst.eq(cmd.dst), d_last.eq(d_of),
                beating.eq(0), extra.eq(0),
            ]

        # ---- reads ------------------------------------------------------------------------------
        m.d.comb += [
            self.sp_a.addr.eq(nxt_a[:sp_aw]), self.sp_a.en.eq(read),
            self.sp_b.addr.eq(nxt_b[:sp_aw]), self.sp_b.en.eq(read),
            self.acc_a.addr.eq(Mux(old_read, cur_dst, Mux(c.src1_sp, nxt_dst, nxt_a[:acc_aw]))),
            self.acc_a.en.eq(read | old_read),
            self.acc_b.addr.eq(Mux(b_acc, nxt_b[:acc_aw], nxt_dst)),
            self.acc_b.en.eq(read),
        ]
        a_row = Signal(row)
        b_row = Signal(row)
        imm = c.src2.as_signed()
        for i in range(cols):
            sp_a = self.sp_a.data[i] if i < rows else 0
            sp_b = self.sp_b.data[i] if i < rows else 0
            m.d.comb += [
                a_row[i].eq(Mux(c.src1_sp, sp_a, self.acc_a.data[i])),
                b_row[i].eq(Mux(c.src2_imm, imm, Mux(c.src2_sp, sp_b, self.acc_b.data[i]))),
            ]
        old = Signal(row)            # the old destination row, taken when the row is done
        with m.If(row_end):
            m.d.sync += old.eq(Mux(c.src1_sp | three, self.acc_a.data, self.acc_b.data))

        # the lanes of the current beat
        res = Signal(row)            # results of the row's earlier beats (column reductions: the sums)
        a_l = [Signal(signed(32), name=f"a_{l}") for l in range(L)]
        b_l = [Signal(signed(32), name=f"b_{l}") for l in range(L)]
        r_l = [Signal(signed(32), name=f"res_{l}") for l in range(L)]
        with m.Switch(beat):
            for k in range(B):
                with m.Case(k):
                    for l in range(L):
                        m.d.comb += [a_l[l].eq(a_row[k * L + l]), b_l[l].eq(b_row[k * L + l]),
                                     r_l[l].eq(res[k * L + l])]

        # ---- per-lane results of the beat -----------------------------------------------------------
        func = c.func
        y_l = [Signal(signed(32), name=f"y_{l}") for l in range(L)]
        prod_q = [Signal(signed(64), name=f"prod_{l}") for l in range(L)]
        is_mul = Signal()
        is_shl = Signal()
        m.d.comb += [is_mul.eq(func == VectorOp.MUL), is_shl.eq(func == VectorOp.SHL)]
        mul_y = [Signal(signed(32), name=f"mul_y_{l}") for l in range(L)]
        # iterative state, one register pair per lane: RECIP remainder / quotient, ISQRT
        # remainder / root
        rem = [Signal(33, name=f"rem_{l}") for l in range(L)]
        quo = [Signal(32, name=f"quo_{l}") for l in range(L)]
        s = c.shift
        bit = Signal(5)              # RECIP: dividend bit of this iteration; ISQRT: pair index
        m.d.comb += bit.eq(Mux(func == VectorOp.RECIP, 31 - it, 15 - it))
        for l in range(L):
            a, b = a_l[l], b_l[l]
            ew = self._elementwise(m, func, a, b, l)
            # MUL: the 64-bit product is registered; its rounding shift is done in the next cycle.
            # One arithmetic right shifter serves MUL (the product), SHR (a) and SHL (a << 32
            # shifted right by 32 - k: its low 32 bits are a << k)
            m.d.sync += prod_q[l].eq(a * b)
            sh_in = Signal(signed(64), name=f"sh_in_{l}")
            sh_by = Signal(6, name=f"sh_by_{l}")
            with m.If(is_mul):
                m.d.comb += [sh_in.eq(prod_q[l]), sh_by.eq(c.shift)]
            with m.Elif(is_shl):
                m.d.comb += [sh_in.eq(Cat(Const(0, 32), a)), sh_by.eq(32 - b[:5])]
            with m.Else():
                m.d.comb += [sh_in.eq(a), sh_by.eq(b[:5])]
            shifted = self._sra(m, sh_in, sh_by, c.round & ~is_shl, 64, f"sh_{l}")
            m.d.comb += mul_y[l].eq(shifted)
            # RECIP: restoring division of 2**s by a, one quotient bit per cycle, from bit 31; it
            # starts with floor(2**s / 2**32) < a whenever the quotient does not saturate
            sat = Signal(name=f"sat_{l}")
            m.d.comb += sat.eq((a <= 0) | ((s >= 31) & ((s >= 62) | (a <= (Const(1, 32) << (s - 31)[:5])))))
            r_in = Signal(33, name=f"rin_{l}")
            q_in = Signal(32, name=f"qin_{l}")
            init = Mux(s >= 32, Const(1, 33) << (s - 32)[:5], 0)
            m.d.comb += [r_in.eq(Mux(it == 0, init, rem[l])), q_in.eq(Mux(it == 0, 0, quo[l]))]
            t = Signal(34, name=f"rt_{l}")
            m.d.comb += t.eq(Cat(s == bit, r_in))
            rc_ge = Signal(name=f"rge_{l}")
            m.d.comb += rc_ge.eq(t >= a.as_unsigned())
            rec_r = Mux(rc_ge, t - a.as_unsigned(), t)
            rec_q = Cat(rc_ge, q_in)[:32]
            # ISQRT: digit by digit, one root bit per cycle from pair 15
            x = Mux(a < 0, 0, a).as_unsigned()[:31]
            sr_in = Signal(20, name=f"sin_{l}")
            sq_in = Signal(16, name=f"sqin_{l}")
            m.d.comb += [sr_in.eq(Mux(it == 0, 0, rem[l][:20])), sq_in.eq(Mux(it == 0, 0, quo[l][:16]))]
            cur = Signal(22, name=f"scur_{l}")
            m.d.comb += cur.eq(Cat((x >> (bit << 1)[:5])[:2], sr_in))
            trial = Signal(18, name=f"strial_{l}")
            m.d.comb += trial.eq(Cat(Const(1, 2), sq_in))
            sq_ge = Signal(name=f"sge_{l}")
            m.d.comb += sq_ge.eq(cur >= trial)
            sq_r = Mux(sq_ge, cur - trial, cur)
            sq_q = Cat(sq_ge, sq_in)[:16]
            with m.If(func == VectorOp.RECIP):
                m.d.sync += [rem[l].eq(rec_r), quo[l].eq(rec_q)]
            with m.Else():
                m.d.sync += [rem[l].eq(sq_r), quo[l].eq(sq_q)]
            with m.Switch(func):
                with m.Case(VectorOp.RECIP):
                    m.d.comb += y_l[l].eq(Mux(sat, INT32_MAX, rec_q[:31]))
                with m.Case(VectorOp.ISQRT):
                    m.d.comb += y_l[l].eq(sq_q)
                with m.Case(VectorOp.SHL, VectorOp.SHR):
                    m.d.comb += y_l[l].eq(shifted)
                with m.Case(VectorOp.CSUM):
                    m.d.comb += y_l[l].eq(Mux(first_row, a, r_l[l] + a))
                with m.Case(VectorOp.CMAX):
                    m.d.comb += y_l[l].eq(Mux(first_row | (a > r_l[l]), a, r_l[l]))
                with m.Default():
                    m.d.comb += y_l[l].eq(ew)

        # row reductions: the beat's lanes folded, then into the running value `red`
        def tree(vals, op):
            while len(vals) > 1:
                vals = [op(vals[i], vals[i + 1]) for i in range(0, len(vals) - 1, 2)] + \
                       ([vals[-1]] if len(vals) % 2 else [])
            return vals[0]
        beat_sum = Signal(signed(32))
        beat_max = Signal(signed(32))
        m.d.comb += [beat_sum.eq(tree(list(a_l), lambda p, q: (p + q)[:32].as_signed())),
                     beat_max.eq(tree(list(a_l), lambda p, q: Mux(p > q, p, q)))]
        red = Signal(signed(32))
        red_next = Signal(signed(32))
        with m.If(func == VectorOp.RMAX):
            m.d.comb += red_next.eq(Mux((beat == 0) | (beat_max > red), beat_max, red))
        with m.Else():
            m.d.comb += red_next.eq(Mux(beat == 0, beat_sum, red + beat_sum))

        mul_done = Signal()          # the MUL results of the previous cycle's beat are ready
        beat_q = Signal.like(beat)
        m.d.sync += [mul_done.eq(beat_done & is_mul), beat_q.eq(beat)]
        with m.If(beat_done):
            m.d.sync += red.eq(red_next)
        for when, k_of, vals in ((beat_done & ~is_mul, beat, y_l), (mul_done, beat_q, mul_y)):
            with m.If(when):
                with m.Switch(k_of):
                    for k in range(B):
                        with m.Case(k):
                            m.d.sync += [res[k * L + l].eq(vals[l]) for l in range(L)]

        # ---- the write: from registers (the row's results, the old row) --------------------------------
        y_row = Signal(row)          # the row's results before accumulate
        row_red = _is(func, "RSUM", "RMAX")
        for i in range(cols):
            k, l = divmod(i, L)
            # a MUL row's last beat is shifted in the write cycle (from the product register)
            lane = Mux(mul_done, mul_y[l], res[i]) if k == B - 1 else res[i]
            m.d.comb += y_row[i].eq(Mux(row_red, red, lane))
        m.d.comb += [self.acc_write.addr.eq(wr_addr), self.acc_write.en.eq(wr)]
        for i in range(cols):
            o, y = old[i], y_row[i]
            with m.If(~c.accumulate):
                m.d.comb += self.acc_write.data[i].eq(y)
            with m.Elif(_is(func, "MAX", "RMAX", "CMAX")):
                m.d.comb += self.acc_write.data[i].eq(Mux(o > y, o, y))
            with m.Elif(func == VectorOp.MIN):
                m.d.comb += self.acc_write.data[i].eq(Mux(o < y, o, y))
            with m.Else():
                m.d.comb += self.acc_write.data[i].eq(o + y)
        return m
