"""Memory model for simulation: the external memory behind the accelerator's memory port.

`MemoryModel` is a `lib.memory` of ``words`` words of ``bus_bytes * 8`` bits with

* a request port (`MemPortSignature`, memory side): accepts one request per cycle; a write is done
  at the clock edge that accepts it (byte enables ``wstrb``); a read returns its word exactly
  ``latency`` cycles after the cycle it was accepted in (accepted at t: ``resp.valid`` at t +
  latency), in request order, and back-to-back reads stream one word per cycle;
* response back-pressure: the read pipeline (``latency`` stages) advances only when its last stage
  is empty or taken (``resp.ready``); while it is stalled no request is accepted;
* a host port: ``host_rdata`` is the word at ``host_addr`` of the previous cycle, and
  ``host_we`` writes ``host_wdata`` at ``host_addr`` at the clock edge (it has priority over a
  write request in the same cycle; use it only while the accelerator is idle).

Word addresses wrap modulo ``words``.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .memport import MemPortSignature, check_bus_bytes

__all__ = ["MemoryModel"]


class MemoryModel(wiring.Component):
    """Word-addressed memory with a fixed read latency and a host port (see module docstring).

    Members
    -------
    port : In(MemPortSignature(bus_bytes))
        Request and response streams (memory side).
    host_addr, host_we, host_wdata : In
    host_rdata : Out
    """

    def __init__(self, *, words: int, bus_bytes: int, latency: int):
        if not isinstance(words, int) or words < 2 or words & (words - 1):
            raise ValueError(f"words must be a power of two >= 2, not {words!r}")
        check_bus_bytes(bus_bytes)
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"latency must be an integer >= 1, not {latency!r}")
        self._words = words
        self._bus_bytes = bus_bytes
        self._latency = latency
        self._mem = Memory(shape=unsigned(8 * bus_bytes), depth=words, init=[])
        super().__init__({
            "port": In(MemPortSignature(bus_bytes)),
            "host_addr": In(ceil_log2(words)),
            "host_we": In(1),
            "host_wdata": In(8 * bus_bytes),
            "host_rdata": Out(8 * bus_bytes),
        })

    @property
    def words(self) -> int:
        return self._words

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def latency(self) -> int:
        return self._latency

    @property
    def data(self):
        """The `MemoryData` (for `ctx.get`/`ctx.set` of whole words in a testbench)."""
        return self._mem.data

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = self._mem
        aw = ceil_log2(self._words)
        B, L = self._bus_bytes, self._latency
        req, resp = self.port.req, self.port.resp

        wp = mem.write_port(granularity=8)
        rp = mem.read_port()
        hp = mem.read_port()

        valid = [Signal(name=f"valid_{k}") for k in range(L)]
        words = [rp.data] + [Signal(8 * B, name=f"data_{k}") for k in range(1, L)]
        advance = Signal()
        fire = Signal()
        m.d.comb += [
            advance.eq(~valid[L - 1] | resp.ready),
            req.ready.eq(advance),
            fire.eq(req.valid & advance),
            rp.addr.eq(req.payload.addr[:aw]),
            rp.en.eq(advance),
            resp.valid.eq(valid[L - 1]),
            resp.payload.rdata.eq(words[L - 1]),
        ]
        with m.If(advance):
            m.d.sync += valid[0].eq(fire & ~req.payload.we)
            for k in range(1, L):
                m.d.sync += [valid[k].eq(valid[k - 1]), words[k].eq(words[k - 1])]

        with m.If(self.host_we):
            m.d.comb += [wp.addr.eq(self.host_addr), wp.data.eq(self.host_wdata),
                         wp.en.eq((1 << B) - 1)]
        with m.Else():
            m.d.comb += [wp.addr.eq(req.payload.addr[:aw]), wp.data.eq(req.payload.wdata),
                         wp.en.eq(Mux(fire & req.payload.we, req.payload.wstrb, 0))]

        m.d.comb += [hp.addr.eq(self.host_addr), self.host_rdata.eq(hp.data)]
        return m
