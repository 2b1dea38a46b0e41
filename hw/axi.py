"""The AXI top (Verilog module ``systolab_axi``): the core with an AXI4 manager on its memory side
and an AXI4-Lite subordinate holding the register map (`hw.regmap`) on its control side.

Blocks
------
`AxiManager`
    The core's memory port (`hw.memport`) as an AXI4 manager, data width ``8 * bus_bytes``,
    address width 32, one ID (0), so every burst returns in order.

    Reads: sequential word reads (consecutive word addresses in consecutive cycles) are coalesced
    into one INCR burst of up to `max_burst` beats that never crosses a 4 KiB boundary
    (AxSIZE = log2(bus_bytes), AxBURST = INCR, ARLEN = beats - 1). A burst being formed is held
    until a cycle brings no request that extends it, so a lone read leaves two cycles after it was
    taken. Many bursts may be outstanding; the R beats go straight to the response stream
    (``rready`` is the core's ``resp.ready``).

    Writes: one single-beat burst per write request (AWLEN = 0, WLAST = 1, WSTRB = the request's
    byte enables); AW and W are offered together, so no W beat waits for an AW that is not yet
    offered (no deadlock behind interconnects that route W by AW).

    Ordering: AXI orders neither reads against writes nor writes against reads. The core's memory
    port promises request order, and the compiler relies on a LOAD after a STORE (through a SYNC)
    seeing the stored bytes, so a read request is not taken while any write is outstanding (taken
    from the core and its B response not yet returned). The other direction (a write overtaking
    an earlier read of the same bytes) cannot happen in a valid program: a LOAD pushes its token
    only after its data returned, so a STORE that depends on it issues later. ``writes_pending``
    is high while any write is outstanding.

    A response other than OKAY (BRESP or RRESP) pulses ``error``.

`AxiLiteSubordinate`
    AXI4-Lite (32-bit data) to the CSR bus of `hw.regmap`: one write and one read at a time, OKAY
    responses, whole-word accesses (WSTRB is ignored). Address width `REGMAP.addr_bits`.

`AxiTop`
    `Accelerator` + `AxiManager` + `AxiLiteSubordinate` + `RegisterBlock`, with the completion
    rule of an AXI system: STATUS.busy is the core's busy or any write outstanding, and
    STATUS.done (and with it IRQ_STATUS.done and ``interrupt``) rises only after the core is done
    *and* every B response has returned, so ``done`` means all results are in memory.
    STATUS.bus_error is sticky from an ``error`` pulse to the next accepted start. The cycle
    counters count while the core is busy (the last B responses may come a few cycles later).

Verilog ports (Vivado interface inference picks them up by these names): ``aclk``, ``aresetn``
(active low, synchronous), ``s_axi_*`` (AXI4-Lite: aw/w/b/ar/r channels), ``m_axi_*`` (AXI4:
``awid awaddr awlen awsize awburst awlock awcache awprot awvalid awready wdata wstrb wlast wvalid
wready bid bresp bvalid bready arid araddr arlen arsize arburst arlock arcache arprot arvalid
arready rid rdata rresp rlast rvalid rready``), ``interrupt`` (level, active high).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .common import as_config
from .memport import BYTE_ADDR_BITS, MemPortSignature, check_bus_bytes, word_addr_bits
from .regmap import REG_BITS, REGMAP
from .regmap.gateware import CSRBusSignature, RegisterBlock
from .top import Accelerator

__all__ = ["AxiLiteSignature", "Axi4Signature", "AxiLiteSubordinate", "AxiManager", "AxiTop",
           "AXI_BURST_INCR", "AXI_CACHE", "MAX_BURST"]

#: AxBURST value of an incrementing burst
AXI_BURST_INCR = 0b01
#: AxCACHE: normal non-cacheable bufferable (what Vivado's IP uses by default)
AXI_CACHE = 0b0011
#: default longest read burst, in beats (AXI4 INCR allows 256)
MAX_BURST = 16


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite as its manager sees it (flip it for the subordinate)."""

    def __init__(self, addr_bits: int, data_bits: int = 32):
        if data_bits not in (32, 64):
            raise ValueError(f"AXI4-Lite data_bits must be 32 or 64, not {data_bits!r}")
        self._addr_bits, self._data_bits = addr_bits, data_bits
        super().__init__({
            "awaddr": Out(addr_bits), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_bits), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (isinstance(other, AxiLiteSignature) and
                (other._addr_bits, other._data_bits) == (self._addr_bits, self._data_bits))

    def __hash__(self):
        return hash((AxiLiteSignature, self._addr_bits, self._data_bits))

    def __repr__(self):
        return f"AxiLiteSignature({self._addr_bits}, {self._data_bits})"


class Axi4Signature(wiring.Signature):
    """AXI4 (the signals a burst-capable manager uses) as its manager sees it."""

    def __init__(self, addr_bits: int, data_bits: int, id_bits: int = 1):
        if data_bits < 8 or data_bits > 1024 or data_bits & (data_bits - 1):
            raise ValueError(f"AXI4 data_bits must be a power of two from 8 to 1024, not {data_bits!r}")
        self._params = (addr_bits, data_bits, id_bits)
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_bits), f"{ch}addr": Out(addr_bits), f"{ch}len": Out(8),
                f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(1), f"{ch}cache": Out(4),
                f"{ch}prot": Out(3), f"{ch}valid": Out(1), f"{ch}ready": In(1),
            })
            if ch == "aw":
                members.update({
                    "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1),
                    "wvalid": Out(1), "wready": In(1),
                    "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
                })
        members.update({"rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1),
                        "rvalid": In(1), "rready": Out(1)})
        super().__init__(members)

    def __eq__(self, other):
        return isinstance(other, Axi4Signature) and other._params == self._params

    def __hash__(self):
        return hash((Axi4Signature, self._params))

    def __repr__(self):
        return f"Axi4Signature{self._params}"


class AxiLiteSubordinate(wiring.Component):
    """AXI4-Lite subordinate driving a CSR bus (see the module docstring).

    Members
    -------
    axi : In(AxiLiteSignature(addr_bits))
    csr : Out(CSRBusSignature(addr_bits - 2))
    """

    def __init__(self, addr_bits: int):
        if not isinstance(addr_bits, int) or addr_bits < 3:
            raise ValueError(f"addr_bits must be an integer >= 3, not {addr_bits!r}")
        self._addr_bits = addr_bits
        super().__init__({
            "axi": In(AxiLiteSignature(addr_bits, REG_BITS)),
            "csr": Out(CSRBusSignature(addr_bits - 2)),
        })

    def elaborate(self, platform):
        m = Module()
        axi, csr = self.axi, self.csr
        aw_full, aw_addr = Signal(), Signal(self._addr_bits)
        w_full, w_data = Signal(), Signal(REG_BITS)
        r_pend = Signal()
        m.d.comb += [axi.awready.eq(~aw_full), axi.wready.eq(~w_full), axi.bresp.eq(0),
                     axi.rresp.eq(0)]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(axi.awaddr)]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(axi.wdata)]

        # a write goes to the CSR bus once address and data are in and the last B was taken
        write = Signal()
        m.d.comb += write.eq(aw_full & w_full & ~axi.bvalid)
        with m.If(write):
            m.d.comb += [csr.w_stb.eq(1), csr.addr.eq(aw_addr[2:]), csr.w_data.eq(w_data)]
            m.d.sync += [aw_full.eq(0), w_full.eq(0), axi.bvalid.eq(1)]
        with m.Elif(axi.bvalid & axi.bready):
            m.d.sync += axi.bvalid.eq(0)

        # a read: strobe in the cycle of the AR handshake, data the cycle after
        m.d.comb += axi.arready.eq(~r_pend & ~axi.rvalid & ~write)
        with m.If(axi.arvalid & axi.arready):
            m.d.comb += [csr.r_stb.eq(1), csr.addr.eq(axi.araddr[2:])]
        m.d.sync += r_pend.eq(axi.arvalid & axi.arready)
        with m.If(r_pend):
            m.d.sync += [axi.rvalid.eq(1), axi.rdata.eq(csr.r_data)]
        with m.Elif(axi.rvalid & axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        return m


class AxiManager(wiring.Component):
    """The memory port as an AXI4 manager (see the module docstring).

    Parameters
    ----------
    bus_bytes : int
        Width of the memory port and of AXI data (8 * bus_bytes bits, 1..128 bytes).
    max_burst : int
        Longest read burst in beats (1..256).
    max_writes : int
        Writes that may be outstanding (taken, B not returned) at once.

    Members
    -------
    mem : In(MemPortSignature(bus_bytes))
    axi : Out(Axi4Signature(32, 8 * bus_bytes, 1))
    writes_pending : Out(1)
    error : Out(1)
        A B or R response other than OKAY was taken this cycle.
    """

    def __init__(self, *, bus_bytes: int, max_burst: int = MAX_BURST, max_writes: int = 15):
        check_bus_bytes(bus_bytes)
        if bus_bytes > 128:
            raise ValueError(f"bus_bytes must be at most 128 for AXI4 (1024-bit data), not {bus_bytes!r}")
        if not isinstance(max_burst, int) or not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst must be an integer from 1 to 256, not {max_burst!r}")
        if not isinstance(max_writes, int) or max_writes < 1:
            raise ValueError(f"max_writes must be a positive integer, not {max_writes!r}")
        self._bus_bytes, self._max_burst, self._max_writes = bus_bytes, max_burst, max_writes
        super().__init__({
            "mem": In(MemPortSignature(bus_bytes)),
            "axi": Out(Axi4Signature(BYTE_ADDR_BITS, 8 * bus_bytes, 1)),
            "writes_pending": Out(1),
            "error": Out(1),
        })

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def max_burst(self) -> int:
        return self._max_burst

    def elaborate(self, platform):
        m = Module()
        B = self._bus_bytes
        shift = exact_log2(B)
        wa_bits = word_addr_bits(B)
        page_lsb = 12 - shift                   # word-address bit of the 4 KiB page
        axi, req, resp = self.axi, self.mem.req, self.mem.resp
        p = req.payload

        for ch in ("aw", "ar"):
            m.d.comb += [getattr(axi, f"{ch}id").eq(0), getattr(axi, f"{ch}size").eq(shift),
                         getattr(axi, f"{ch}burst").eq(AXI_BURST_INCR),
                         getattr(axi, f"{ch}lock").eq(0), getattr(axi, f"{ch}cache").eq(AXI_CACHE),
                         getattr(axi, f"{ch}prot").eq(0)]

        # -- writes: one beat each, AW and W offered together ---------------------------------------
        writes = Signal(range(self._max_writes + 1))
        aw_free = Signal()
        w_free = Signal()
        m.d.comb += [aw_free.eq(~axi.awvalid | axi.awready), w_free.eq(~axi.wvalid | axi.wready),
                     self.writes_pending.eq(writes != 0), axi.bready.eq(1), axi.awlen.eq(0),
                     axi.wlast.eq(1)]
        take_write = Signal()
        m.d.comb += take_write.eq(req.valid & p.we & aw_free & w_free & (writes != self._max_writes))
        with m.If(take_write):
            m.d.sync += [axi.awvalid.eq(1), axi.awaddr.eq(p.addr << shift),
                         axi.wvalid.eq(1), axi.wdata.eq(p.wdata), axi.wstrb.eq(p.wstrb)]
        with m.Else():
            with m.If(axi.awready):
                m.d.sync += axi.awvalid.eq(0)
            with m.If(axi.wready):
                m.d.sync += axi.wvalid.eq(0)
        b_done = Signal()
        m.d.comb += b_done.eq(axi.bvalid & axi.bready)
        with m.If(take_write & ~b_done):
            m.d.sync += writes.eq(writes + 1)
        with m.Elif(~take_write & b_done):
            m.d.sync += writes.eq(writes - 1)

        # -- reads: coalesce consecutive words into bursts -----------------------------------------
        cur_valid = Signal()
        cur_addr = Signal(wa_bits)
        cur_len = Signal(8)                     # beats - 1
        ar_addr = Signal(wa_bits)
        m.d.comb += axi.araddr.eq(ar_addr << shift)
        ar_free = Signal()
        m.d.comb += ar_free.eq(~axi.arvalid | axi.arready)
        read = Signal()
        m.d.comb += read.eq(req.valid & ~p.we & ~self.writes_pending)
        contig = Signal()
        m.d.comb += contig.eq(cur_valid & (p.addr == (cur_addr + cur_len + 1)[:wa_bits]) &
                              (cur_len != self._max_burst - 1))
        if page_lsb < wa_bits:
            with m.If(p.addr[page_lsb:] != cur_addr[page_lsb:]):
                m.d.comb += contig.eq(0)
        take_read, issue = Signal(), Signal()
        with m.If(read & contig):
            m.d.comb += take_read.eq(1)
            m.d.sync += cur_len.eq(cur_len + 1)
        with m.Elif(read & (~cur_valid | ar_free)):
            m.d.comb += [take_read.eq(1), issue.eq(cur_valid)]
            m.d.sync += [cur_valid.eq(1), cur_addr.eq(p.addr), cur_len.eq(0)]
        with m.Elif(cur_valid & ar_free):
            m.d.comb += issue.eq(1)
            m.d.sync += cur_valid.eq(0)
        with m.If(issue):
            m.d.sync += [axi.arvalid.eq(1), ar_addr.eq(cur_addr), axi.arlen.eq(cur_len)]
        with m.Elif(axi.arready):
            m.d.sync += axi.arvalid.eq(0)

        m.d.comb += req.ready.eq(take_write | take_read)

        # -- read data, in order --------------------------------------------------------------------
        m.d.comb += [resp.valid.eq(axi.rvalid), resp.payload.rdata.eq(axi.rdata),
                     axi.rready.eq(resp.ready)]
        m.d.comb += self.error.eq((b_done & (axi.bresp != 0)) |
                                  (axi.rvalid & axi.rready & (axi.rresp != 0)))
        return m


class AxiTop(wiring.Component):
    """The core behind AXI4 (memory) and AXI4-Lite (registers); see the module docstring.

    Members
    -------
    m_axi : Out(Axi4Signature(32, 8 * memory.bus_bytes, 1))
    s_axi : In(AxiLiteSignature(REGMAP.addr_bits))
    interrupt : Out(1)
    """

    def __init__(self, cfg, *, max_burst: int = MAX_BURST):
        self._cfg = as_config(cfg)
        B = cfg.memory.bus_bytes
        self._core = Accelerator(cfg)
        self._manager = AxiManager(bus_bytes=B, max_burst=max_burst)
        self._csr = RegisterBlock(cfg, REGMAP)
        self._lite = AxiLiteSubordinate(REGMAP.addr_bits)
        super().__init__({
            "m_axi": Out(Axi4Signature(BYTE_ADDR_BITS, 8 * B, 1)),
            "s_axi": In(AxiLiteSignature(REGMAP.addr_bits, REG_BITS)),
            "interrupt": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def core(self) -> Accelerator:
        return self._core

    @property
    def manager(self) -> AxiManager:
        return self._manager

    def verilog_ports(self) -> dict:
        """Verilog port name -> (value, is an input), in port order (clock and reset excluded)."""
        ports = {}
        for prefix, iface in (("s_axi", self.s_axi), ("m_axi", self.m_axi)):
            # the interface's own signature (s_axi is flipped): In members are inputs
            for name, member in iface.signature.members.items():
                ports[f"{prefix}_{name}"] = (getattr(iface, name), member.flow == In)
        ports["interrupt"] = (self.interrupt, False)
        return ports

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self._core
        mgr = m.submodules.axi_manager = self._manager
        csr = m.submodules.registers = self._csr
        lite = m.submodules.axil = self._lite
        wiring.connect(m, core.mem, mgr.mem)
        wiring.connect(m, mgr.axi, wiring.flipped(self.m_axi))
        wiring.connect(m, wiring.flipped(self.s_axi), lite.axi)
        wiring.connect(m, lite.csr, csr.bus)

        bus_error = Signal()
        accepted_start = csr.start & ~core.busy
        with m.If(accepted_start):
            m.d.sync += bus_error.eq(0)
        with m.Elif(mgr.error):
            m.d.sync += bus_error.eq(1)
        own = {
            "busy": core.busy | mgr.writes_pending,
            "done": core.done & ~mgr.writes_pending,
            "bus_error": bus_error,
        }
        for name, (direction, _width) in REGMAP.ports.items():
            if name in own:
                m.d.comb += getattr(csr, name).eq(own[name])
            elif direction == "out":
                m.d.comb += getattr(core, name).eq(getattr(csr, name))
            else:
                m.d.comb += getattr(csr, name).eq(getattr(core, name))
        m.d.comb += self.interrupt.eq(csr.interrupt)
        return m
