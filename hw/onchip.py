"""`OnChipMemory`: block RAM behind a memory port, for the board top (`hw.board`).

One `lib.memory.Memory` of ``words`` words of ``bus_bytes * 8`` bits with one write port (byte
enables) and one read port, so Yosys maps it onto DP16KD block RAMs without copies. The request
side (`MemPortSignature`, memory side) behaves like `hw.memmodel.MemoryModel` with
``latency=1``, which is what the core and its arbiter expect:

* one request per cycle is accepted; a write is done at the clock edge that accepts it
  (``wstrb`` selects the bytes); a read returns its word in the next cycle (``resp.valid``), in
  request order, and back-to-back reads stream one word per cycle;
* a response that is not taken (``resp.ready`` low) stays on the port, and no request is
  accepted until it is taken (the read port is not enabled, so the word it holds stays put).

Word addresses wrap modulo ``words``.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2

from .memport import MemPortSignature, check_bus_bytes
from .common import check_pow2

__all__ = ["OnChipMemory"]


class OnChipMemory(wiring.Component):
    """Block RAM with a one-cycle memory port (see the module docstring).

    Members
    -------
    port : In(MemPortSignature(bus_bytes))
    """

    def __init__(self, *, words: int, bus_bytes: int):
        check_pow2("words", words, 2)
        check_bus_bytes(bus_bytes)
        self._words = words
        self._bus_bytes = bus_bytes
        self._mem = Memory(shape=unsigned(8 * bus_bytes), depth=words, init=[])
        super().__init__({"port": In(MemPortSignature(bus_bytes))})

    @property
    def words(self) -> int:
        return self._words

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def data(self):
        """The `MemoryData` (for `ctx.get`/`ctx.set` of whole words in a testbench)."""
        return self._mem.data

    def elaborate(self, platform):
        m = Module()
        aw = ceil_log2(self._words)
        req, resp = self.port.req, self.port.resp
        m.submodules.mem = mem = self._mem
        wp = mem.write_port(granularity=8)
        rp = mem.read_port()

        valid = Signal()
        advance = Signal()
        fire = Signal()
        m.d.comb += [
            advance.eq(~valid | resp.ready),
            req.ready.eq(advance),
            fire.eq(req.valid & advance),
            rp.addr.eq(req.payload.addr[:aw]),
            rp.en.eq(advance),
            resp.valid.eq(valid),
            resp.payload.rdata.eq(rp.data),
            wp.addr.eq(req.payload.addr[:aw]),
            wp.data.eq(req.payload.wdata),
            wp.en.eq(Mux(fire & req.payload.we, req.payload.wstrb, 0)),
        ]
        with m.If(advance):
            m.d.sync += valid.eq(fire & ~req.payload.we)
        return m
