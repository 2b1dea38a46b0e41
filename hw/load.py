"""The load unit: executes LOAD (external memory -> scratchpad, 2-D strided).

For each LOAD at the head of the load queue: wait for a compute->load token if ``pop_next``, take
it, and hand the copy to a `RowReader` (rows of ``array.rows`` bytes); each row that comes back is
written to the scratchpad in the cycle it arrives, at ``sp_addr + r``. With ``push_next`` a
load->compute token is pushed in the cycle the last row is written (it can be taken in the next
cycle, when the row is readable).

Timing (memory latency L, no port contention): dispatch at cycle d, first read request at d + 1;
R = array.rows <= bus_bytes: row r written at d + L + 3 + r (rows that share a word share its
read); R > bus_bytes (W = R / bus_bytes words per row): row r written at d + L + 2 + W (r + 1).
The reader accepts the next LOAD while the previous one's rows are still arriving (up to
latency + 4 LOADs ahead of the rows written), so consecutive
LOADs stream without a gap once the reader has run ahead.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolab.isa import Opcode

from .buffers import sp_row_layout
from .common import as_config, field_width, isa_for_hw, read_buffer_words
from .dma import RowReader
from .memport import MemPortSignature

__all__ = ["LoadUnit"]


class LoadUnit(wiring.Component):
    """Executes the load queue.

    Members
    -------
    insn : In(stream.Signature(ISA(cfg).word_layout))
        The load queue.
    mem : Out(MemPortSignature(bus_bytes))
    sp : In(WritePort.Signature(...))
        Scratchpad write port.
    pop_ok : In(1)
        The compute->load counter is non-zero.
    pop : Out(1)
        Take a compute->load token.
    push : Out(1)
        Give a load->compute token.
    busy : Out(1)
        A LOAD is executing (dispatched, not all rows written).
    wait : Out(1)
        The LOAD at the head of the queue waits for a token.
    """

    def __init__(self, cfg):
        self._cfg = as_config(cfg)
        self._isa = isa_for_hw(cfg)
        super().__init__({
            "insn": In(stream.Signature(self._isa.word_layout)),
            "mem": Out(MemPortSignature(cfg.memory.bus_bytes)),
            "sp": In(WritePort.Signature(addr_width=ceil_log2(cfg.scratchpad.depth),
                                         shape=sp_row_layout(cfg.rows))),
            "pop_ok": In(1),
            "pop": Out(1),
            "push": Out(1),
            "busy": Out(1),
            "wait": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg, isa = self._cfg, self._isa
        sp_addr_w = field_width(isa, "LOAD", "sp_addr")
        user = data.StructLayout({"sp_addr": unsigned(sp_addr_w), "push": unsigned(1)})
        reader = m.submodules.reader = RowReader(
            row_bytes=cfg.sp_row_bytes, bus_bytes=cfg.memory.bus_bytes,
            count_width=field_width(isa, "LOAD", "rows"),
            stride_width=field_width(isa, "LOAD", "dram_stride"),
            user_shape=user, buffer_words=read_buffer_words(cfg),
            # LOADs of a few rows each (gathered convolution taps) stream back to back only when
            # the reader may run as many commands ahead as there are words in flight
            cmd_depth=read_buffer_words(cfg))
        wiring.connect(m, wiring.flipped(self.mem), reader.mem)

        # Dispatch.
        head = self.insn.payload
        ld = head.LOAD
        tokens_ok = Signal()
        m.d.comb += [
            tokens_ok.eq(~head.header.pop_next | self.pop_ok),
            reader.cmd.payload.addr.eq(ld.dram_addr),
            reader.cmd.payload.stride.eq(ld.dram_stride),
            reader.cmd.payload.count.eq(ld.rows),
            reader.cmd.payload.user.sp_addr.eq(ld.sp_addr),
            reader.cmd.payload.user.push.eq(head.header.push_next),
        ]
        with m.If(head.header.opcode == Opcode.LOAD):
            m.d.comb += [
                reader.cmd.valid.eq(self.insn.valid & tokens_ok),
                self.insn.ready.eq(tokens_ok & reader.cmd.ready),
                self.pop.eq(self.insn.valid & self.insn.ready & head.header.pop_next),
                self.wait.eq(self.insn.valid & ~tokens_ok),
            ]
        with m.Else():
            m.d.comb += self.insn.ready.eq(1)       # not a LOAD: drop it

        # Rows into the scratchpad.
        rows = reader.rows
        next_addr = Signal(sp_addr_w)
        addr = Signal(sp_addr_w)
        m.d.comb += [
            rows.ready.eq(1),
            addr.eq(Mux(rows.payload.first, rows.payload.user.sp_addr, next_addr)),
            self.sp.addr.eq(addr),
            self.sp.data.eq(rows.payload.data),
            self.sp.en.eq(rows.valid),
            self.push.eq(rows.valid & rows.payload.last & rows.payload.user.push),
        ]
        with m.If(rows.valid):
            m.d.sync += next_addr.eq(addr + 1)
        m.d.comb += self.busy.eq(reader.busy)
        return m
