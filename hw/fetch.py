"""Instruction fetch and dispatch.

On ``start`` the fetch unit reads ``insn_count`` 16-byte instructions from byte address
``insn_addr`` (a multiple of min(16, bus_bytes)) through a `RowReader`, whose response buffer
doubles as the prefetch buffer: reads keep streaming while instructions wait to be dispatched.

Each instruction is decoded with ``ISA(cfg).word_layout`` and sent, in program order, to the queue
of its opcode (the queue named in isa/spec.yaml). When that queue is full the unit holds the
instruction (``stall``) and nothing behind it moves. A word with an opcode that is not an
instruction is dropped.

Timing (``start`` high in cycle 0, memory latency L, the port free): instruction k is requested
at cycle 2 + k (bus_bytes >= 16; the reader keeps up to L + 3 words in flight), arrives at
2 + k + L, is written into its queue at 4 + k + L, and its unit can start it at 6 + k + L (the
queue FIFO adds 2 cycles when it is empty). With bus_bytes < 16 an instruction takes 16/bus_bytes
words.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from systolab.isa import QUEUES, WORD_BITS, Opcode

from .common import as_config, isa_for_hw, read_buffer_words
from .dma import RowReader
from .memport import BYTE_ADDR_BITS, MemPortSignature

__all__ = ["FetchUnit", "INSN_COUNT_BITS"]

#: width of `insn_count`
INSN_COUNT_BITS = 32


class FetchUnit(wiring.Component):
    """Fetches instructions and dispatches them to the load / compute / store queues.

    Members
    -------
    start : In(1)
        Pulse: latch ``insn_addr``/``insn_count`` and begin (ignored while ``busy``).
    insn_addr, insn_count : In(32)
    mem : Out(MemPortSignature(bus_bytes))
    queues : Out(stream.Signature(unsigned(WORD_BITS))).array(3)
        To the queues, in `systolab.isa.QUEUES` order (load, compute, store).
    busy : Out(1)
        Instructions remain to be fetched or dispatched.
    stall : Out(1)
        An instruction is held because its queue is full.
    """

    def __init__(self, cfg):
        self._cfg = as_config(cfg)
        self._isa = isa_for_hw(cfg)
        super().__init__({
            "start": In(1),
            "insn_addr": In(BYTE_ADDR_BITS),
            "insn_count": In(INSN_COUNT_BITS),
            "mem": Out(MemPortSignature(cfg.memory.bus_bytes)),
            "queues": Out(stream.Signature(unsigned(WORD_BITS))).array(len(QUEUES)),
            "busy": Out(1),
            "stall": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg, isa = self._cfg, self._isa
        reader = m.submodules.reader = RowReader(
            row_bytes=WORD_BITS // 8, bus_bytes=cfg.memory.bus_bytes,
            count_width=INSN_COUNT_BITS, stride_width=8, buffer_words=read_buffer_words(cfg))
        wiring.connect(m, wiring.flipped(self.mem), reader.mem)

        pending = Signal()
        with m.If(self.start & ~self.busy):
            m.d.sync += [
                pending.eq(self.insn_count != 0),
                reader.cmd.payload.addr.eq(self.insn_addr),
                reader.cmd.payload.count.eq(self.insn_count),
            ]
        m.d.comb += [reader.cmd.payload.stride.eq(WORD_BITS // 8), reader.cmd.valid.eq(pending)]
        with m.If(reader.cmd.valid & reader.cmd.ready):
            m.d.sync += pending.eq(0)
        m.d.comb += self.busy.eq(pending | reader.busy)

        # Decode and dispatch in order.
        rows = reader.rows
        insn = isa.word_layout(rows.payload.data)
        for q in self.queues:
            m.d.comb += q.payload.eq(rows.payload.data)
        with m.Switch(insn.header.opcode):
            for op in Opcode:
                q = self.queues[QUEUES.index(isa.formats[op.name].queue)]
                with m.Case(op):
                    m.d.comb += [q.valid.eq(rows.valid), rows.ready.eq(q.ready)]
            with m.Default():
                m.d.comb += rows.ready.eq(1)
        m.d.comb += self.stall.eq(rows.valid & ~rows.ready)
        return m
