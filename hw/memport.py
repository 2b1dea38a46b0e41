"""The external memory port (docs/architecture.md, "Memory port") and the arbiter that shares it.

One request stream and one response stream, both `amaranth.lib.stream`, ``bus_bytes`` wide:

* request payload (`request_layout`): ``addr`` (word address = byte address / bus_bytes, 32 minus
  log2(bus_bytes) bits), ``we``, ``wdata`` (bus_bytes * 8 bits, byte 0 in bits 0..7), ``wstrb``
  (one byte enable per byte);
* response payload (`response_layout`): ``rdata``. A read returns one response word, a write none;
  responses come back in request order.

`MemPortSignature` is the requester's view (``req`` out, ``resp`` in); the memory side uses
``MemPortSignature(...).flip()``.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2
from .common import check_pow2

__all__ = ["BYTE_ADDR_BITS", "word_addr_bits", "request_layout", "response_layout",
           "MemPortSignature", "MemArbiter", "check_bus_bytes"]

#: width of a byte address (instruction fields, `insn_addr`)
BYTE_ADDR_BITS = 32


def check_bus_bytes(bus_bytes) -> None:
    check_pow2("bus_bytes", bus_bytes)


def word_addr_bits(bus_bytes: int) -> int:
    """Width of a word address on a bus of `bus_bytes` bytes."""
    check_bus_bytes(bus_bytes)
    return BYTE_ADDR_BITS - exact_log2(bus_bytes)


def request_layout(bus_bytes: int) -> data.StructLayout:
    return data.StructLayout({
        "addr": unsigned(word_addr_bits(bus_bytes)),
        "we": unsigned(1),
        "wdata": unsigned(8 * bus_bytes),
        "wstrb": unsigned(bus_bytes),
    })


def response_layout(bus_bytes: int) -> data.StructLayout:
    check_bus_bytes(bus_bytes)
    return data.StructLayout({"rdata": unsigned(8 * bus_bytes)})


class MemPortSignature(wiring.Signature):
    """A memory port as seen by a requester: ``req`` (out) and ``resp`` (in) streams."""

    def __init__(self, bus_bytes: int):
        check_bus_bytes(bus_bytes)
        self._bus_bytes = bus_bytes
        super().__init__({
            "req": Out(stream.Signature(request_layout(bus_bytes))),
            "resp": In(stream.Signature(response_layout(bus_bytes))),
        })

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    def __eq__(self, other):
        return isinstance(other, MemPortSignature) and other.bus_bytes == self.bus_bytes

    def __hash__(self):
        return hash((MemPortSignature, self._bus_bytes))

    def __repr__(self):
        return f"MemPortSignature({self._bus_bytes})"


class MemArbiter(wiring.Component):
    """Shares one memory port between `n` requesters, routing read responses back in order.

    Requests: round robin over the requesters with a valid request (the one after the last granted
    first). The choice is combinational (a granted request reaches the memory in the same cycle)
    and is held while the memory is not ready, so the output stream is stable. A read is granted
    only while the tag FIFO has room; its requester index is pushed into the tag FIFO when the
    memory accepts it. Writes need no tag.

    Responses: the memory answers reads in order, so the tag at the head of the FIFO names the
    requester of each response word; the response is passed combinationally to that requester
    (``resp.ready`` is that requester's ready) and the tag is popped when it is taken.

    Parameters
    ----------
    bus_bytes : int
        Width of the port.
    n : int
        Number of requesters (member ``ports[i]`` is requester i).
    max_outstanding : int
        Reads that may be in the memory at once (tag FIFO depth). With a memory latency L this must
        be at least L + 1 for the port to stream one read per cycle.

    Members
    -------
    mem : Out(MemPortSignature)
        To the memory.
    ports : In(MemPortSignature).array(n)
        From the requesters.
    reads, writes : Out(1)
        A read / write request was accepted by the memory this cycle (for the counters).
    idle : Out(1)
        No read is outstanding.
    """

    def __init__(self, *, bus_bytes: int, n: int, max_outstanding: int):
        check_bus_bytes(bus_bytes)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, not {n!r}")
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            raise ValueError(f"max_outstanding must be a positive integer, not {max_outstanding!r}")
        self._bus_bytes = bus_bytes
        self._n = n
        self._max_outstanding = max_outstanding
        super().__init__({
            "mem": Out(MemPortSignature(bus_bytes)),
            "ports": In(MemPortSignature(bus_bytes)).array(n),
            "reads": Out(1),
            "writes": Out(1),
            "idle": Out(1),
        })

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def n(self) -> int:
        return self._n

    @property
    def max_outstanding(self) -> int:
        return self._max_outstanding

    def elaborate(self, platform):
        m = Module()
        n = self._n
        tags = m.submodules.tags = SyncFIFO(width=max(1, (n - 1).bit_length()),
                                            depth=self._max_outstanding)

        # -- request side ----------------------------------------------------------------------
        eligible = Signal(n)
        for i, p in enumerate(self.ports):
            m.d.comb += eligible[i].eq(p.req.valid & (p.req.payload.we | tags.w_rdy))

        last = Signal(range(n), init=n - 1)       # last granted requester
        locked = Signal()                         # hold the grant: offered but not taken
        locked_idx = Signal(range(n))
        choice = Signal(range(n))
        # Round robin: the first eligible requester after `last` (highest priority last).
        for off in reversed(range(1, n + 1)):
            for k in range(n):
                with m.If(last == k):
                    idx = (k + off) % n
                    with m.If(eligible[idx]):
                        m.d.comb += choice.eq(idx)
        grant = Signal(range(n))
        with m.If(locked):
            m.d.comb += grant.eq(locked_idx)
        with m.Else():
            m.d.comb += grant.eq(choice)

        any_valid = eligible.any()
        m.d.comb += self.mem.req.valid.eq(any_valid)
        with m.Switch(grant):
            for i, p in enumerate(self.ports):
                with m.Case(i):
                    m.d.comb += [
                        self.mem.req.payload.eq(p.req.payload),
                        p.req.ready.eq(self.mem.req.ready & eligible[i]),
                    ]
        fire = Signal()
        m.d.comb += fire.eq(self.mem.req.valid & self.mem.req.ready)
        with m.If(fire):
            m.d.sync += [last.eq(grant), locked.eq(0)]
        with m.Elif(self.mem.req.valid):
            m.d.sync += [locked.eq(1), locked_idx.eq(grant)]

        m.d.comb += [
            tags.w_data.eq(grant),
            tags.w_en.eq(fire & ~self.mem.req.payload.we),
            self.reads.eq(fire & ~self.mem.req.payload.we),
            self.writes.eq(fire & self.mem.req.payload.we),
            self.idle.eq(tags.level == 0),
        ]

        # -- response side ---------------------------------------------------------------------
        for i, p in enumerate(self.ports):
            m.d.comb += [
                p.resp.payload.eq(self.mem.resp.payload),
                p.resp.valid.eq(self.mem.resp.valid & tags.r_rdy & (tags.r_data == i)),
            ]
            with m.If(tags.r_data == i):
                m.d.comb += self.mem.resp.ready.eq(tags.r_rdy & p.resp.ready)
        m.d.comb += tags.r_en.eq(self.mem.resp.valid & self.mem.resp.ready)
        return m
