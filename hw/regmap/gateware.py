"""The register block: the Amaranth CSR block of the register map (`hw.regmap.REGMAP`).

The CSR bus protocol is described in `hw.regmap`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import REG_BITS, REGMAP, Field, Register, RegisterMap

__all__ = ["CSRBusSignature", "RegisterBlock"]


class CSRBusSignature(wiring.Signature):
    """The CSR bus as its requester sees it (see the module docstring)."""

    def __init__(self, addr_bits: int):
        if not isinstance(addr_bits, int) or addr_bits < 1:
            raise ValueError(f"addr_bits must be a positive integer, not {addr_bits!r}")
        self._addr_bits = addr_bits
        super().__init__({
            "addr": Out(addr_bits),
            "w_stb": Out(1),
            "w_data": Out(REG_BITS),
            "r_stb": Out(1),
            "r_data": In(REG_BITS),
        })

    @property
    def addr_bits(self) -> int:
        return self._addr_bits

    def __eq__(self, other):
        return isinstance(other, CSRBusSignature) and other.addr_bits == self.addr_bits

    def __hash__(self):
        return hash((CSRBusSignature, self._addr_bits))

    def __repr__(self):
        return f"CSRBusSignature({self._addr_bits})"


class RegisterBlock(wiring.Component):
    """The CSR block of `regmap` for one config.

    Members
    -------
    bus : In(CSRBusSignature(regmap.word_addr_bits))
    interrupt : Out(1)
        High while any IRQ_STATUS bit with its IRQ_ENABLE bit set is set.
    <port> : In or Out, one per `regmap.ports` (``start``, ``insn_addr``, ``insn_count`` out;
        ``busy``, ``done``, ``bus_error``, ``cnt_<name>`` in)

    ``rw`` fields reset to 0. A ``pulse`` output is high in the cycle of the bus write (so a
    ``start`` written by the bus reaches the core in the same cycle). A ``w1c`` bit is set in the
    cycle after its input rises; setting wins over a clear written in the same cycle.
    """

    def __init__(self, cfg, regmap: RegisterMap = REGMAP):
        self._cfg = cfg
        self._regmap = regmap
        self._consts = {(r.name, f.name): regmap.const_value(f, cfg)
                        for r in regmap.registers.values() for f in r.fields if f.kind == "const"}
        members = {"bus": In(CSRBusSignature(regmap.word_addr_bits)), "interrupt": Out(1)}
        for name, (direction, width) in regmap.ports.items():
            members[name] = (In if direction == "in" else Out)(width)
        super().__init__(members)

    @property
    def cfg(self):
        return self._cfg

    @property
    def regmap(self) -> RegisterMap:
        return self._regmap

    def elaborate(self, platform):
        m = Module()
        rm = self._regmap
        bus = self.bus
        # storage of rw and w1c fields
        store = {}
        for r in rm.registers.values():
            for f in r.fields:
                if f.kind in ("rw", "w1c"):
                    store[r.name, f.name] = Signal(f.width, name=f"{r.name.lower()}_{f.name}")

        def value_of(r: Register, f: Field):
            if f.kind == "const":
                return Const(self._consts[r.name, f.name], f.width)
            if f.kind == "status":
                return getattr(self, f.port)[f.port_lsb:f.port_lsb + f.width]
            if f.kind == "pulse":
                return Const(0, f.width)
            return store[r.name, f.name]

        # reads: registered, valid in the cycle after r_stb
        words = {}
        for r in rm.registers.values():
            words[r.name] = word = Signal(REG_BITS, name=f"rd_{r.name.lower()}")
            for f in r.fields:
                m.d.comb += word[f.lsb:f.lsb + f.width].eq(value_of(r, f))
        with m.If(bus.r_stb):
            with m.Switch(bus.addr):
                for r in rm.registers.values():
                    with m.Case(r.offset // 4):
                        m.d.sync += bus.r_data.eq(words[r.name])
                with m.Default():
                    m.d.sync += bus.r_data.eq(0)

        # rising edges of the inputs that set w1c bits
        rises = {}
        for port in sorted({f.set_on for f in rm.fields_of_kind("w1c")}):
            prev = Signal(name=f"{port}_prev")
            m.d.sync += prev.eq(getattr(self, port)[0])
            rises[port] = getattr(self, port)[0] & ~prev

        # writes
        for r in rm.registers.values():
            hit = Signal(name=f"wr_{r.name.lower()}")
            m.d.comb += hit.eq(bus.w_stb & (bus.addr == r.offset // 4))
            for f in r.fields:
                data = bus.w_data[f.lsb:f.lsb + f.width]
                if f.kind == "rw":
                    with m.If(hit):
                        m.d.sync += store[r.name, f.name].eq(data)
                    if f.port is not None:
                        m.d.comb += getattr(self, f.port).eq(store[r.name, f.name])
                elif f.kind == "pulse":
                    m.d.comb += getattr(self, f.port).eq(Mux(hit, data, 0))
                elif f.kind == "w1c":
                    bit = store[r.name, f.name]
                    with m.If(rises[f.set_on]):
                        m.d.sync += bit.eq(1)
                    with m.Elif(hit):
                        m.d.sync += bit.eq(bit & ~data)

        # interrupt
        pending = [store[rm.irq_status.name, s.name] & store[rm.irq_enable.name, e.name]
                   for s, e in zip(rm.irq_status.fields, rm.irq_enable.fields)]
        m.d.comb += self.interrupt.eq(Cat(*pending).any())
        return m
