"""The weight-stationary systolic array: `rows` x `cols` PEs with input skew and output de-skew.

PE (i, j) holds weight ``W[b][i][j]`` of each weight buffer b. An activation row ``a`` (``rows``
int8) presented at the input with buffer select ``sel`` yields ``y[j] = sum_i a[i] * W[sel][i][j]``
(``cols`` int32, exact: the partial sums are wide enough never to wrap).

Data flow and timing, for a row presented at cycle ``t``:

* input register and skew: element ``a[i]`` passes through ``1 + i`` registers, so it enters
  PE (i, 0) at ``t + 1 + i``; the row's ``sel`` goes through ``i`` registers only, because a PE
  takes the buffer select one cycle ahead of the activation (see `PE`);
* it moves one PE to the right per cycle: PE (i, j) multiplies it at cycle ``t + 1 + i + j``, by
  the weight of the buffer selected by the ``sel`` that travelled with it (so rows of consecutive
  tiles that use different buffers can follow each other with no gap);
* partial sums move one PE down per cycle; column j's sum leaves the bottom PE at
  ``t + 1 + rows + j``;
* output de-skew: column j passes through ``cols - 1 - j`` registers, so the whole row appears at
  ``out`` at cycle ``t + latency`` with ``latency = rows + cols``.

Weight writes: presenting ``w_en`` with column ``w_col``, buffer ``w_buf`` and ``w_data``
(``rows`` int8, element i for PE (i, w_col)) at cycle ``u`` writes at the clock edge ending cycle
``u``. A row presented at ``t`` uses PE (i, j)'s weight at cycle ``t + 1 + i + j``, and sees the
new weight iff ``t + 1 + i + j > u``. Hence a write of column j at ``u`` is safe for an older row
presented at ``t`` with the same buffer iff ``t + rows + j <= u``, and a newer row presented at
``t'`` uses it iff ``t' + j >= u``.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .common import check_pow2
from .pe import PE, psum_width
from .timing import array_latency

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """`rows` x `cols` weight-stationary array of `PE`, one activation row in and one result row
    out per cycle (see the module docstring for timing).

    Members
    -------
    act : In(ArrayLayout(signed(8), rows))
        Activation row entering the array this cycle (not skewed: all elements at once; the
        array registers it, so it can come straight from a memory read port).
    sel : In(1)
        Weight buffer used by this row.
    w_en, w_buf, w_col, w_data : In
        Weight write: column ``w_col`` of buffer ``w_buf`` gets ``w_data`` at the clock edge.
    out : Out(ArrayLayout(signed(32), cols))
        The result of the row presented ``latency`` cycles ago (garbage when none was).
    """

    def __init__(self, *, rows: int, cols: int):
        check_pow2("rows", rows)
        check_pow2("cols", cols)
        self._rows = rows
        self._cols = cols
        super().__init__({
            "act": In(data.ArrayLayout(signed(8), rows)),
            "sel": In(1),
            "w_en": In(1),
            "w_buf": In(1),
            "w_col": In(range(cols)),
            "w_data": In(data.ArrayLayout(signed(8), rows)),
            "out": Out(data.ArrayLayout(signed(32), cols)),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def latency(self) -> int:
        """Cycles from a row at `act` to its result at `out`: rows + cols (`hw.timing`)."""
        return array_latency(self._rows, self._cols)

    @property
    def psum_width(self) -> int:
        return psum_width(self._rows)

    def elaborate(self, platform):
        m = Module()
        rows, cols, width = self._rows, self._cols, self.psum_width

        pes = [[PE(width=width) for _ in range(cols)] for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]

        # Input register and skew: row i's activation passes through 1 + i registers, its
        # select (wanted one cycle ahead of the activation) through i.
        for i in range(rows):
            a, s = self.act[i], self.sel
            for k in range(i + 1):
                a_reg = Signal(signed(8), name=f"skew_a_{i}_{k}")
                m.d.sync += a_reg.eq(a)
                a = a_reg
            for k in range(i):
                s_reg = Signal(name=f"skew_sel_{i}_{k}")
                m.d.sync += s_reg.eq(s)
                s = s_reg
            m.d.comb += [pes[i][0].a_in.eq(a), pes[i][0].sel_next.eq(s)]

        # Activations flow right, partial sums flow down.
        for i in range(rows):
            for j in range(cols):
                pe = pes[i][j]
                if j + 1 < cols:
                    m.d.comb += [pes[i][j + 1].a_in.eq(pe.a_out),
                                 pes[i][j + 1].sel_next.eq(pe.sel_out)]
                if i == 0:
                    m.d.comb += pe.psum_in.eq(0)
                else:
                    m.d.comb += pe.psum_in.eq(pes[i - 1][j].psum_out)
                m.d.comb += [
                    pe.w_en.eq(self.w_en & (self.w_col == j)),
                    pe.w_buf.eq(self.w_buf),
                    pe.w_data.eq(self.w_data[i]),
                ]

        # Output de-skew: column j passes through cols - 1 - j registers.
        for j in range(cols):
            y = pes[rows - 1][j].psum_out
            for k in range(cols - 1 - j):
                y_reg = Signal(signed(width), name=f"deskew_{j}_{k}")
                m.d.sync += y_reg.eq(y)
                y = y_reg
            m.d.comb += self.out[j].eq(y)
        return m
