"""The store unit: executes STORE (accumulator -> requantize -> external memory).

For each STORE at the head of the store queue:

1. wait for a compute->store token if ``pop_prev`` and take it; hand the output rows' address
   pattern to the `RowWriter` and the parameter read to a `RowReader`;
2. receive the four parameter rows (bias, multiplier, shift, zero point: ``cols`` int32 each,
   at ``param_addr + q * 4 * cols``). They replace the requantizer's parameters only once the
   previous STORE's rows have left the requantizer, so this step overlaps the previous drain;
3. stream: read one accumulator row per cycle (``acc_addr + r``) into the `Requantizer`, whose
   int8 rows go through an output FIFO to the `RowWriter` (one write of ``cols`` bytes with byte
   enables per row, or cols/bus_bytes full words). Reads are throttled by credits so the FIFO
   never overflows when the memory port is busy;
4. with ``push_prev``, a store->compute token is given in the cycle the memory accepts the
   STORE's last write (docs/architecture.md: the accumulator rows are read by then, and a later
   LOAD ordered through a SYNC reads what the STORE wrote).

A STAMP at the head waits until the unit is idle (every write of the STOREs before it accepted),
then offers one write of the low 32 bits of ``cycle`` (the cycle counter) at ``dram_addr``; it
leaves the queue, and gives its ``push_prev`` token, in the cycle the memory accepts it.

Timing, memory latency L, no contention (the parameter rows are P words in all, requested one
per cycle from d + 1 when the STORE is dispatched at d): the last parameter row is taken L + 2
cycles after its last word was requested, and the accumulator reads start in the next cycle, one
row per cycle; a row read at s is registered at s + 1, enters the requantizer at s + 2, leaves it
at s + 2 + R (R = `Requantizer.LATENCY`, 10), is at the head of the output FIFO at s + 4 + R and
its write is offered (and, if the port is free, accepted) in that cycle. R = cols <= bus_bytes: one write per row, so one row per cycle in steady state.
The next STORE can be dispatched in the cycle after the last accumulator read; its parameter rows
are taken once the previous rows have left the requantizer.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.enum import Enum
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolab.isa import Opcode

from .buffers import acc_row_layout
from .common import as_config, field_width, isa_for_hw
from .dma import RowReader, RowWriter
from .memport import MemPortSignature
from .requant import Requantizer
from .timing import STORE_FIFO_ROWS

__all__ = ["StoreUnit"]


class _State(Enum, shape=2):
    IDLE = 0
    PARAMS = 1
    STREAM = 2


class StoreUnit(wiring.Component):
    """Executes the store queue (see the module docstring).

    Members
    -------
    insn : In(stream.Signature(ISA(cfg).word_layout))
        The store queue.
    mem_params : Out(MemPortSignature(bus_bytes))
        Parameter reads.
    mem_write : Out(MemPortSignature(bus_bytes))
        Output row writes.
    acc : In(ReadPort.Signature(...))
        Accumulator read port.
    pop_ok : In(1)
        The compute->store counter is non-zero.
    pop, push : Out(1)
        Take a compute->store token / give a store->compute token.
    cycle : In(32)
        The low bits of the cycle counter, written by STAMP.
    busy, wait : Out(1)
    """

    def __init__(self, cfg):
        self._cfg = as_config(cfg)
        self._isa = isa_for_hw(cfg)
        B = cfg.memory.bus_bytes
        super().__init__({
            "insn": In(stream.Signature(self._isa.word_layout)),
            "mem_params": Out(MemPortSignature(B)),
            "mem_write": Out(MemPortSignature(B)),
            "acc": In(ReadPort.Signature(addr_width=ceil_log2(cfg.accumulator.depth),
                                         shape=acc_row_layout(cfg.cols))),
            "pop_ok": In(1),
            "pop": Out(1),
            "push": Out(1),
            "cycle": In(32),
            "busy": Out(1),
            "wait": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def fifo_depth(self) -> int:
        """Output FIFO rows (`hw.timing.STORE_FIFO_ROWS`)."""
        return STORE_FIFO_ROWS

    def elaborate(self, platform):
        m = Module()
        cfg, isa = self._cfg, self._isa
        cols, B, L = cfg.cols, cfg.memory.bus_bytes, cfg.memory.latency
        param_bytes = cfg.acc_row_bytes
        param_words = 4 * max(1, param_bytes // B)

        preader = m.submodules.param_reader = RowReader(
            row_bytes=param_bytes, bus_bytes=B, count_width=3,
            stride_width=param_bytes.bit_length(),
            buffer_words=max(3, min(L + 4, param_words + 1)))
        writer = m.submodules.writer = RowWriter(
            row_bytes=cfg.out_row_bytes, bus_bytes=B,
            count_width=field_width(isa, "STORE", "rows"),
            stride_width=field_width(isa, "STORE", "dram_stride"))
        rq = m.submodules.requant = Requantizer(cols=cols)
        F = self.fifo_depth
        fifo = m.submodules.fifo = SyncFIFOBuffered(width=8 * cols, depth=F)
        wiring.connect(m, wiring.flipped(self.mem_params), preader.mem)
        # the writer owns the write port but for a STAMP's one write, offered only while the
        # writer is idle (`stamp`, below)
        stamp = Signal()
        wreq = self.mem_write.req
        lanes, log_b = B // 4, ceil_log2(B)
        with m.If(stamp):
            m.d.comb += [
                wreq.valid.eq(1),
                wreq.payload.addr.eq(self.insn.payload.STAMP.dram_addr[log_b:]),
                wreq.payload.we.eq(1),
                wreq.payload.wdata.eq(self.cycle.replicate(lanes)),
                # the 4 byte enables of the stamp's lane (byte 4 * lane on)
                wreq.payload.wstrb.eq(0b1111 << Cat(Const(0, 2), self.insn.payload.STAMP.dram_addr[2:log_b])
                                      if lanes > 1 else 0b1111),
            ]
        with m.Else():
            m.d.comb += [wreq.valid.eq(writer.mem.req.valid), wreq.payload.eq(writer.mem.req.payload)]
        m.d.comb += [writer.mem.req.ready.eq(wreq.ready & ~stamp),
                     writer.mem.resp.valid.eq(self.mem_write.resp.valid),
                     writer.mem.resp.payload.eq(self.mem_write.resp.payload),
                     self.mem_write.resp.ready.eq(writer.mem.resp.ready)]

        state = Signal(_State)
        acc_aw = field_width(isa, "STORE", "acc_addr")
        cur = Signal(acc_aw)
        left = Signal(field_width(isa, "STORE", "rows"))
        relu_next = Signal()
        even_next = Signal()
        fp32_next = Signal()
        q = Signal(2)
        params = [Signal(acc_row_layout(cols), name=n) for n in ("bias", "mult", "shift", "zp")]
        relu = Signal()
        even = Signal()
        fp32 = Signal()
        credits = Signal(range(F), init=F - 1)
        inflight = Signal(range(F + 1))      # rows read, not yet out of the requantizer

        # ---- dispatch ----------------------------------------------------------------------
        head = self.insn.payload
        hdr, st = head.header, head.STORE
        tokens_ok = Signal()
        stamp_push = Signal()
        m.d.comb += self.push.eq(writer.notified | stamp_push)
        m.d.comb += [
            tokens_ok.eq(~hdr.pop_prev | self.pop_ok),
            preader.cmd.payload.addr.eq(st.param_addr),
            preader.cmd.payload.stride.eq(param_bytes),
            preader.cmd.payload.count.eq(4),
            writer.cmd.payload.addr.eq(st.dram_addr),
            writer.cmd.payload.stride.eq(st.dram_stride),
            writer.cmd.payload.count.eq(st.rows),
            writer.cmd.payload.notify.eq(hdr.push_prev),
        ]
        with m.If(state == _State.IDLE):
            with m.If(hdr.opcode == Opcode.STORE):
                go = self.insn.valid & tokens_ok
                m.d.comb += [
                    preader.cmd.valid.eq(go & writer.cmd.ready),
                    writer.cmd.valid.eq(go & preader.cmd.ready),
                    self.insn.ready.eq(tokens_ok & preader.cmd.ready & writer.cmd.ready),
                    self.wait.eq(self.insn.valid & ~tokens_ok),
                ]
                with m.If(self.insn.valid & self.insn.ready):
                    m.d.comb += self.pop.eq(hdr.pop_prev)
                    m.d.sync += [
                        state.eq(_State.PARAMS),
                        q.eq(0),
                        cur.eq(st.acc_addr),
                        left.eq(st.rows),
                        relu_next.eq(st.relu),
                        even_next.eq(st.round_even),
                        fp32_next.eq(st.fp32),
                    ]
            with m.Elif(hdr.opcode == Opcode.STAMP):
                pipe_idle = ~writer.busy & (inflight == 0) & (fifo.level == 0)
                m.d.comb += [
                    stamp.eq(self.insn.valid & tokens_ok & pipe_idle),
                    self.insn.ready.eq(stamp & wreq.ready),
                    self.wait.eq(self.insn.valid & ~tokens_ok),
                ]
                with m.If(self.insn.valid & self.insn.ready):
                    m.d.comb += [self.pop.eq(hdr.pop_prev), stamp_push.eq(hdr.push_prev)]
            with m.Else():
                m.d.comb += self.insn.ready.eq(1)     # not a STORE or STAMP: drop it

        # ---- parameters (only once the previous STORE's rows left the requantizer) -------------
        prow = preader.rows
        m.d.comb += prow.ready.eq((state == _State.PARAMS) & (inflight == 0))
        with m.If(prow.valid & prow.ready):
            m.d.sync += q.eq(q + 1)
            for k, p in enumerate(params):
                with m.If(q == k):
                    m.d.sync += p.eq(prow.payload.data)
            with m.If(prow.payload.last):
                m.d.sync += [state.eq(_State.STREAM), relu.eq(relu_next), even.eq(even_next),
                             fp32.eq(fp32_next)]

        # ---- stream accumulator rows -----------------------------------------------------------
        issue = Signal()
        m.d.comb += [
            issue.eq((state == _State.STREAM) & (credits != 0)),
            self.acc.addr.eq(cur),
            self.acc.en.eq(1),
        ]
        with m.If(issue):
            m.d.sync += [cur.eq(cur + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += state.eq(_State.IDLE)

        # the row is out of the accumulator at s + 1 and registered (off the block RAM output)
        # before it enters the requantizer at s + 2
        s1_valid = Signal()
        s2_valid = Signal()
        acc_row = Signal(acc_row_layout(cols))
        m.d.sync += [s1_valid.eq(issue), s2_valid.eq(s1_valid), acc_row.eq(self.acc.data)]
        m.d.comb += [
            rq.in_valid.eq(s2_valid),
            rq.acc.eq(acc_row),
            rq.bias.eq(params[0]),
            rq.mult.eq(params[1]),
            rq.shift.eq(params[2]),
            rq.zp.eq(params[3]),
            rq.relu.eq(relu),
            rq.round_even.eq(even),
            rq.fp32.eq(fp32),
            fifo.w_en.eq(rq.out_valid),
            fifo.w_data.eq(rq.out),
        ]
        wiring.connect(m, fifo.r_stream, writer.rows)
        pop = Signal()
        m.d.comb += pop.eq(fifo.r_rdy & fifo.r_en)
        m.d.sync += [credits.eq(credits - issue + pop), inflight.eq(inflight + issue - rq.out_valid)]

        m.d.comb += self.busy.eq((state != _State.IDLE) | writer.busy | (inflight != 0) |
                                 (fifo.level != 0))
        return m
