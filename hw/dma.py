"""Row DMA engines: move rows of R bytes between external memory and the accelerator, 2-D strided.

Row ``r`` of a command lives at byte address ``addr + r * stride``. A row of ``R`` bytes is

* ``R <= bus_bytes``: part of one word; ``addr`` and ``stride`` must be multiples of ``R``. The row
  is bytes ``(a % bus_bytes) ...`` of word ``a // bus_bytes`` (lane select by address);
* ``R > bus_bytes``: ``R / bus_bytes`` consecutive words; ``addr`` and ``stride`` must be multiples
  of ``bus_bytes``. Byte 0 of the row is byte 0 of the first word (little-endian).

`RowReader` keeps issuing read requests while earlier ones are outstanding, so a memory with
latency L still delivers one word per cycle; it holds at most ``buffer_words`` words in flight
(requested but not yet handed on) and stops requesting when its response buffer could overflow.
Consecutive rows that fall in the same word (R < bus_bytes, e.g. stride == R or stride == 0)
share one read. `RowWriter` writes rows from a stream with byte enables.
"""

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .common import check_pow2
from .memport import BYTE_ADDR_BITS, MemPortSignature, check_bus_bytes

__all__ = ["RowReader", "RowWriter", "reader_cmd_layout", "reader_row_layout", "writer_cmd_layout"]


def _check_width(name, value):
    if not isinstance(value, int) or not 1 <= value <= BYTE_ADDR_BITS:
        raise ValueError(f"{name} must be an integer from 1 to {BYTE_ADDR_BITS}, not {value!r}")


def reader_cmd_layout(count_width, stride_width, user_shape):
    return data.StructLayout({
        "addr": unsigned(BYTE_ADDR_BITS),
        "stride": unsigned(stride_width),
        "count": unsigned(count_width),
        "user": user_shape,
    })


def reader_row_layout(row_bytes, user_shape):
    return data.StructLayout({
        "data": unsigned(8 * row_bytes),
        "first": unsigned(1),
        "last": unsigned(1),
        "user": user_shape,
    })


def writer_cmd_layout(count_width, stride_width):
    return data.StructLayout({
        "addr": unsigned(BYTE_ADDR_BITS),
        "stride": unsigned(stride_width),
        "count": unsigned(count_width),
        "notify": unsigned(1),
    })


class _RowDma(wiring.Component):
    """What `RowReader` and `RowWriter` share: rows of `row_bytes` moved over a `bus_bytes` port."""

    def __init__(self, streams: dict, *, row_bytes: int, bus_bytes: int, count_width: int,
                 stride_width: int, more: dict | None = None):
        check_pow2("row_bytes", row_bytes)
        check_bus_bytes(bus_bytes)
        _check_width("count_width", count_width)
        _check_width("stride_width", stride_width)
        self._row_bytes = row_bytes
        self._bus_bytes = bus_bytes
        self._count_width = count_width
        self._stride_width = stride_width
        super().__init__({**streams, "mem": Out(MemPortSignature(bus_bytes)), "busy": Out(1), **(more or {})})

    @property
    def row_bytes(self) -> int:
        return self._row_bytes

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def words_per_row(self) -> int:
        return max(1, self._row_bytes // self._bus_bytes)


class RowReader(_RowDma):
    """Reads ``count`` rows of ``row_bytes`` bytes from external memory, 2-D strided.

    A command (``cmd`` stream: ``addr``, ``stride``, ``count`` >= 1, and an opaque ``user`` value)
    is accepted unless one is already waiting; the rows come out of ``rows`` in order, each with
    ``first``/``last`` flags and the command's ``user`` value. The request side starts a waiting
    command in the cycle after it issued the previous command's last request, and the row side
    runs independently (a ``cmd_depth``-entry command FIFO between them), so back-to-back commands
    stream with no gap. The request side can run at most ``cmd_depth`` commands ahead of the row
    side: to keep the port busy with commands of a few rows each (a convolution's gathered taps),
    ``cmd_depth`` must cover the memory latency (one command per word in flight in the worst
    case); a 2-entry FIFO caps such a stream at about 3 commands per latency.

    Timing, memory latency L (a read accepted at cycle t returns its word at t + L):
    the first read is requested the cycle after the command is accepted; the word is in the
    response FIFO at t + L + 1 and its row leaves ``rows`` at t + L + 2 at the earliest. After
    that, one word per cycle (R <= bus_bytes: one row per cycle; R > bus_bytes: one row per
    R/bus_bytes cycles) as long as ``buffer_words >= L + 3`` and the memory keeps up.

    Parameters
    ----------
    row_bytes, bus_bytes : int
        Powers of two.
    count_width, stride_width : int
        Widths of the command's row count and byte stride.
    user_shape : shape
        Shape of the opaque per-command value passed to the rows (default: 1 bit).
    buffer_words : int
        Response FIFO depth; the reader never has more words requested-but-unconsumed than
        ``buffer_words - 1``.
    cmd_depth : int
        Commands the request side may run ahead of the row side (>= 2).

    Members
    -------
    cmd : In(stream.Signature(reader_cmd_layout(...)))
    rows : Out(stream.Signature(reader_row_layout(...)))
    mem : Out(MemPortSignature(bus_bytes)) (``mem.req``, ``mem.resp``)
    busy : Out(1)
        A command is in progress (accepted and not all of its rows taken from ``rows``).
    """

    def __init__(self, *, row_bytes: int, bus_bytes: int, count_width: int, stride_width: int = 24,
                 user_shape=unsigned(1), buffer_words: int = 8, cmd_depth: int = 2):
        if not isinstance(buffer_words, int) or buffer_words < 3:
            raise ValueError(f"buffer_words must be an integer >= 3, not {buffer_words!r}")
        if isinstance(cmd_depth, bool) or not isinstance(cmd_depth, int) or cmd_depth < 2:
            raise ValueError(f"cmd_depth must be an integer >= 2, not {cmd_depth!r}")
        self._user_shape = user_shape
        self._buffer_words = buffer_words
        self._cmd_depth = cmd_depth
        super().__init__({
            "cmd": In(stream.Signature(reader_cmd_layout(count_width, stride_width, user_shape))),
            "rows": Out(stream.Signature(reader_row_layout(row_bytes, user_shape))),
        }, row_bytes=row_bytes, bus_bytes=bus_bytes, count_width=count_width, stride_width=stride_width)

    @property
    def buffer_words(self) -> int:
        return self._buffer_words

    @property
    def cmd_depth(self) -> int:
        return self._cmd_depth

    def elaborate(self, platform):
        m = Module()
        R, B = self._row_bytes, self._bus_bytes
        W = self.words_per_row
        lanes = max(1, B // R)
        log_b, log_r = exact_log2(B), exact_log2(R)
        cmd_layout = reader_cmd_layout(self._count_width, self._stride_width, self._user_shape)

        # Commands for the row side, queued when the request side accepts them.
        ccmd = m.submodules.ccmd = SyncFIFO(width=cmd_layout.size, depth=self._cmd_depth)
        fifo = m.submodules.fifo = SyncFIFOBuffered(width=8 * B, depth=self._buffer_words)

        # -- request side ----------------------------------------------------------------------
        r_active = Signal()
        r_addr = Signal(BYTE_ADDR_BITS)         # byte address of the current row
        r_stride = Signal(self._stride_width)
        r_left = Signal(self._count_width)      # rows left, current included
        credits = Signal(range(self._buffer_words), init=self._buffer_words - 1)
        # a command accepted while the request side is busy waits here
        p_valid = Signal()
        p_cmd = Signal(cmd_layout)
        cmd_fire = Signal()

        m.d.comb += [
            self.cmd.ready.eq(~p_valid & ccmd.w_rdy),
            cmd_fire.eq(self.cmd.valid & self.cmd.ready),
            ccmd.w_data.eq(self.cmd.payload),
            ccmd.w_en.eq(cmd_fire),
        ]

        req = self.mem.req
        req_fire = Signal()
        m.d.comb += [req.payload.we.eq(0), req_fire.eq(req.valid & req.ready)]
        r_word = Signal(BYTE_ADDR_BITS - log_b)
        m.d.comb += r_word.eq(r_addr[log_b:])
        row_adv = Signal()                      # the request side moves to the next row

        if W == 1:
            # `need`: the current row is in a different word than the previous one (registered:
            # computed when the request side moves to the row, so `req.valid` is a register AND)
            need = Signal()
            n_word = Signal(BYTE_ADDR_BITS - log_b)
            m.d.comb += [
                n_word.eq((r_addr + r_stride)[log_b:]),
                req.payload.addr.eq(r_word),
                req.valid.eq(r_active & need & (credits != 0)),
                row_adv.eq(r_active & (~need | req_fire)),
            ]
            with m.If(row_adv):
                m.d.sync += need.eq(n_word != r_word)
        else:
            r_k = Signal(range(W))
            m.d.comb += [
                req.payload.addr.eq(r_word + r_k),
                req.valid.eq(r_active & (credits != 0)),
                row_adv.eq(req_fire & (r_k == W - 1)),
            ]
            with m.If(req_fire):
                m.d.sync += r_k.eq(r_k + 1)
        with m.If(row_adv):
            m.d.sync += [r_addr.eq(r_addr + r_stride), r_left.eq(r_left - 1)]
            with m.If(r_left == 1):
                m.d.sync += r_active.eq(0)

        # Start the next command as the current one issues its last request (no gap between
        # commands), from the pending register or straight from `cmd`.
        r_free = Signal()
        m.d.comb += r_free.eq(~r_active | (row_adv & (r_left == 1)))

        def start(c):
            stmts = [r_active.eq(1), r_addr.eq(c.addr), r_stride.eq(c.stride), r_left.eq(c.count)]
            stmts.append(need.eq(1) if W == 1 else r_k.eq(0))
            return stmts
        with m.If(p_valid & r_free):
            m.d.sync += [*start(p_cmd), p_valid.eq(0)]
        with m.Elif(cmd_fire & r_free):
            m.d.sync += start(self.cmd.payload)
        with m.Elif(cmd_fire):
            m.d.sync += [p_cmd.eq(self.cmd.payload), p_valid.eq(1)]

        # -- response side ---------------------------------------------------------------------
        m.d.comb += [
            fifo.w_data.eq(self.mem.resp.payload.rdata),
            fifo.w_en.eq(self.mem.resp.valid),
            self.mem.resp.ready.eq(fifo.w_rdy),
        ]
        pop = Signal()
        m.d.comb += pop.eq(fifo.r_en & fifo.r_rdy)
        m.d.sync += credits.eq(credits - req_fire + pop)

        # -- row side --------------------------------------------------------------------------
        c = cmd_layout(ccmd.r_data)
        c_active = Signal()
        c_addr = Signal(BYTE_ADDR_BITS)
        c_stride = Signal(self._stride_width)
        c_left = Signal(self._count_width)
        c_first = Signal()
        c_user = Signal(self._user_shape)
        rows = self.rows
        last_row = Signal()                     # registered: c_left == 1
        fire = Signal()
        m.d.comb += [
            rows.payload.first.eq(c_first),
            rows.payload.last.eq(last_row),
            rows.payload.user.eq(c_user),
            fire.eq(rows.valid & rows.ready),
        ]
        if W == 1:
            # `c_same`: the next row is in the same word as this one (registered, computed from
            # the next row's address `c_next` one row ahead: no adder before the FIFO pop)
            c_next = Signal(BYTE_ADDR_BITS)
            c_same = Signal()
            word_done = Signal()
            m.d.comb += [
                word_done.eq(last_row | ~c_same),
                rows.valid.eq(c_active & fifo.r_rdy),
                fifo.r_en.eq(fire & word_done),
            ]
            after_next = Signal(BYTE_ADDR_BITS)
            m.d.comb += after_next.eq(c_next + c_stride)
            with m.If(fire):
                m.d.sync += [c_next.eq(after_next),
                             c_same.eq(after_next[log_b:] == c_next[log_b:])]
            if lanes > 1:
                lane = c_addr[log_r:log_b]
                m.d.comb += rows.payload.data.eq(fifo.r_data.word_select(lane, 8 * R))
            else:
                m.d.comb += rows.payload.data.eq(fifo.r_data)
        else:
            c_k = Signal(range(W))
            buf = [Signal(8 * B, name=f"buf{k}") for k in range(W - 1)]
            m.d.comb += [
                rows.valid.eq(c_active & (c_k == W - 1) & fifo.r_rdy),
                rows.payload.data.eq(Cat(*buf, fifo.r_data)),
                fifo.r_en.eq(c_active & ((c_k != W - 1) | rows.ready)),
            ]
            with m.If(pop):
                with m.If(c_k == W - 1):
                    m.d.sync += c_k.eq(0)
                with m.Else():
                    m.d.sync += c_k.eq(c_k + 1)
                    for k in range(W - 1):
                        with m.If(c_k == k):
                            m.d.sync += buf[k].eq(fifo.r_data)
        with m.If(fire):
            m.d.sync += [c_addr.eq(c_addr + c_stride), c_left.eq(c_left - 1), c_first.eq(0),
                         last_row.eq(c_left == 2)]
            with m.If(last_row):
                m.d.sync += c_active.eq(0)
        with m.If((~c_active | (fire & last_row)) & ccmd.r_rdy):
            m.d.comb += ccmd.r_en.eq(1)
            m.d.sync += [
                c_active.eq(1),
                c_addr.eq(c.addr),
                c_stride.eq(c.stride),
                c_left.eq(c.count),
                c_first.eq(1),
                c_user.eq(c.user),
                last_row.eq(c.count == 1),
            ]
            if W == 1:
                second = Signal(BYTE_ADDR_BITS)
                m.d.comb += second.eq(c.addr + c.stride)
                m.d.sync += [c_next.eq(second), c_same.eq(second[log_b:] == c.addr[log_b:])]

        m.d.comb += self.busy.eq(p_valid | r_active | c_active | ccmd.r_rdy)
        return m


class RowWriter(_RowDma):
    """Writes ``count`` rows of ``row_bytes`` bytes from the ``rows`` stream to external memory.

    A command (``cmd``: ``addr``, ``stride``, ``count`` >= 1, ``notify``) goes into a 2-entry FIFO;
    the writer
    then takes ``count`` rows from ``rows`` and issues one write per row (R <= bus_bytes: the row
    is replicated across the lanes and ``wstrb`` enables the R bytes at ``addr % bus_bytes``) or
    R/bus_bytes full-word writes per row. A write request is offered in the same cycle as its row
    (combinational from ``rows``), so the writer sustains one word per cycle.

    Members
    -------
    cmd : In(stream.Signature(writer_cmd_layout(...)))
    rows : In(stream.Signature(unsigned(8 * row_bytes)))
    mem : Out(MemPortSignature(bus_bytes)) (only ``mem.req`` is used)
    busy : Out(1)
        A command is queued or in progress.
    notified : Out(1)
        The last write of a command with ``notify`` set is accepted in this cycle.
    """

    def __init__(self, *, row_bytes: int, bus_bytes: int, count_width: int, stride_width: int = 24):
        super().__init__({
            "cmd": In(stream.Signature(writer_cmd_layout(count_width, stride_width))),
            "rows": In(stream.Signature(unsigned(8 * row_bytes))),
        }, row_bytes=row_bytes, bus_bytes=bus_bytes, count_width=count_width, stride_width=stride_width,
            more={"notified": Out(1)})

    def elaborate(self, platform):
        m = Module()
        R, B = self._row_bytes, self._bus_bytes
        W = self.words_per_row
        lanes = max(1, B // R)
        log_b, log_r = exact_log2(B), exact_log2(R)
        layout = writer_cmd_layout(self._count_width, self._stride_width)

        cfifo = m.submodules.cfifo = SyncFIFO(width=layout.size, depth=2)
        m.d.comb += [
            cfifo.w_data.eq(self.cmd.payload),
            cfifo.w_en.eq(self.cmd.valid),
            self.cmd.ready.eq(cfifo.w_rdy),
        ]
        c = layout(cfifo.r_data)

        active = Signal()
        addr = Signal(BYTE_ADDR_BITS)
        stride = Signal(self._stride_width)
        left = Signal(self._count_width)
        notify = Signal()
        req, rows = self.mem.req, self.rows
        req_fire = Signal()
        row_done = Signal()
        m.d.comb += [
            req.payload.we.eq(1),
            req_fire.eq(req.valid & req.ready),
            self.mem.resp.ready.eq(1),
        ]
        if W == 1:
            m.d.comb += [
                req.valid.eq(active & rows.valid),
                req.payload.addr.eq(addr[log_b:]),
                req.payload.wdata.eq(Cat(*([rows.payload] * lanes))),
                rows.ready.eq(active & req.ready),
                row_done.eq(req_fire),
            ]
            mask = Const((1 << R) - 1, B)
            if lanes > 1:
                m.d.comb += req.payload.wstrb.eq(mask << (addr[log_r:log_b] * R))
            else:
                m.d.comb += req.payload.wstrb.eq(mask)
        else:
            k = Signal(range(W))
            m.d.comb += [
                req.valid.eq(active & rows.valid),
                req.payload.addr.eq(addr[log_b:] + k),
                req.payload.wdata.eq(rows.payload.word_select(k, 8 * B)),
                req.payload.wstrb.eq(Const((1 << B) - 1, B)),
                rows.ready.eq(active & req.ready & (k == W - 1)),
                row_done.eq(req_fire & (k == W - 1)),
            ]
            with m.If(req_fire):
                m.d.sync += k.eq(k + 1)

        with m.If(row_done):
            m.d.sync += [addr.eq(addr + stride), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += active.eq(0)
                m.d.comb += self.notified.eq(notify)
        with m.If((~active | (row_done & (left == 1))) & cfifo.r_rdy):
            m.d.comb += cfifo.r_en.eq(1)
            m.d.sync += [active.eq(1), addr.eq(c.addr), stride.eq(c.stride), left.eq(c.count),
                         notify.eq(c.notify)]

        m.d.comb += self.busy.eq(active | cfifo.r_rdy)
        return m
