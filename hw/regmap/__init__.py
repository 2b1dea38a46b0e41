"""The control/status register map, generated from `hw/regmap/registers.yaml`.

One spec, four artifacts, like the ISA: `REGMAP` (a `RegisterMap`) gives

* `RegisterBlock`: the Amaranth CSR block (32-bit registers) behind a `CSRBusSignature` bus;
* `render_c_header` -> ``include/systolab_regs.h`` and `render_markdown` -> ``docs/registers.md``
  (`write_repo_docs`, run by ``make docs``; ``tests/test_regmap.py`` fails when they are stale);
* the offsets and fields the Python driver (`systolab.app.driver.Driver`) uses.

Widths are never retyped: a field width in the spec is an integer or a name from `WIDTHS`, which
imports the hardware's own constants (`BYTE_ADDR_BITS`, `INSN_COUNT_BITS`, `COUNTER_BITS`). The
performance counters are generated from `hw.counters.COUNTERS` as ``CNT_<NAME>_LO`` (bits 31..0)
and ``CNT_<NAME>_HI`` (bits COUNTER_BITS-1..32) pairs from ``counters.offset`` on.

The register map itself does not depend on the config (offsets and widths are fixed); only the
values of the ``const`` fields (array shape, depths, config hash) do.

CSR bus (`CSRBusSignature`, the requester's view; word addresses)
-----------------------------------------------------------------

==========  ====  =================================================================
``addr``    out   word address (byte offset / 4), `RegisterMap.word_addr_bits` bits
``w_stb``   out   write ``w_data`` to ``addr`` at this clock edge
``w_data``  out   32 bits
``r_stb``   out   read ``addr`` at this clock edge
``r_data``  in    the word read, valid in the cycle after ``r_stb`` (only then)
==========  ====  =================================================================

A requester raises at most one of ``r_stb`` / ``w_stb`` per cycle. Reads have no side effects;
unmapped offsets read 0 and ignore writes. The AXI4-Lite subordinate (`hw.axi`) drives this bus,
and so can a UART bridge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import yaml
from amaranth.utils import ceil_log2

from ..counters import COUNTER_BITS, COUNTERS
from ..fetch import INSN_COUNT_BITS
from ..memport import BYTE_ADDR_BITS

__all__ = ["WIDTHS", "REG_BITS", "Field", "Register", "RegisterMap", "REGMAP", "load_regmap",
           "config_hash_lo"]

#: every register is this wide
REG_BITS = 32
#: width names a spec may use, bound to the hardware's own constants
WIDTHS: dict[str, int] = {
    "BYTE_ADDR_BITS": BYTE_ADDR_BITS,
    "INSN_COUNT_BITS": INSN_COUNT_BITS,
    "COUNTER_BITS": COUNTER_BITS,
}
KINDS = ("const", "status", "rw", "pulse", "w1c")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def config_hash_lo(config_hash: str) -> int:
    """The low 32 bits of a config hash (12 hex digits), as the CONFIG_HASH register holds it."""
    return int(config_hash, 16) & 0xFFFF_FFFF


@dataclass(frozen=True)
class Field:
    name: str
    kind: str            # one of KINDS
    lsb: int
    width: int
    doc: str
    width_spec: str      # as written in the spec (an int or a WIDTHS name)
    port: str | None = None
    port_lsb: int = 0
    value: str | None = None     # const fields
    set_on: str | None = None    # w1c fields

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    @property
    def bits(self) -> str:
        msb = self.lsb + self.width - 1
        return f"{msb}:{self.lsb}" if self.width > 1 else str(self.lsb)

    @property
    def writable(self) -> bool:
        return self.kind in ("rw", "pulse", "w1c")


@dataclass(frozen=True)
class Register:
    name: str
    offset: int          # byte offset
    doc: str
    fields: tuple[Field, ...]

    @property
    def access(self) -> str:
        kinds = {f.kind for f in self.fields}
        if kinds <= {"const", "status"}:
            return "RO"
        if kinds == {"pulse"}:
            return "WO"
        if kinds == {"w1c"}:
            return "W1C"
        return "RW"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}; it has "
                       f"{', '.join(f.name for f in self.fields)}")


class RegisterMap:
    """The register map of a spec (see `hw/regmap/registers.yaml`), checked when it is built."""

    def __init__(self, spec: dict, *, source: str = "registers.yaml"):
        self.source = source
        self.version = self._int(spec, "version")
        self.id = self._int(spec, "id")
        regs: list[Register] = []
        offset = 0
        for raw in spec["registers"]:
            offset = raw.get("offset", offset)
            regs.append(self._register(raw["name"], offset, raw.get("doc", ""), raw["fields"]))
            offset += REG_BITS // 8
        cnt = spec["counters"]
        offset = cnt["offset"]
        self.counter_doc = cnt["doc"]
        for name, what in COUNTERS.items():
            for part, lsb, width in (("LO", 0, min(REG_BITS, COUNTER_BITS)),
                                     ("HI", REG_BITS, COUNTER_BITS - REG_BITS)):
                if width <= 0:
                    continue
                doc = cnt["doc"].format(name=name, what=what) + f" Bits {lsb + width - 1}..{lsb}."
                field = {"name": "value", "kind": "status", "width": width, "port": f"cnt_{name}",
                         "port_lsb": lsb, "doc": f"counter bits {lsb + width - 1}..{lsb}"}
                regs.append(self._register(f"CNT_{name.upper()}_{part}", offset, doc, [field]))
                offset += REG_BITS // 8
        self.registers: dict[str, Register] = {}
        for r in regs:
            if r.name in self.registers:
                raise ValueError(f"{source}: register {r.name} is defined twice")
            if r.offset % 4:
                raise ValueError(f"{source}: register {r.name} offset {r.offset:#x} must be a multiple of 4")
            clash = [o.name for o in self.registers.values() if o.offset == r.offset]
            if clash:
                raise ValueError(f"{source}: registers {clash[0]} and {r.name} share offset {r.offset:#x}")
            self.registers[r.name] = r
        irq = spec["interrupt"]
        self.irq_status, self.irq_enable = self[irq["status"]], self[irq["enable"]]
        if [f.name for f in self.irq_status.fields] != [f.name for f in self.irq_enable.fields]:
            raise ValueError(f"{source}: interrupt status and enable registers must have the same fields")
        self._check_ports()

    # -- building ---------------------------------------------------------------------------------
    def _int(self, spec, key) -> int:
        value = spec.get(key)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{self.source}: {key} must be a non-negative integer, not {value!r}")
        return value

    def _register(self, name, offset, doc, raw_fields) -> Register:
        where = f"{self.source}: register {name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{self.source}: register name {name!r} must be an identifier")
        fields, lsb = [], 0
        for raw in raw_fields:
            fname, kind = raw["name"], raw["kind"]
            if kind not in KINDS:
                raise ValueError(f"{where}: field {fname} kind must be one of {', '.join(KINDS)}, not {kind!r}")
            spec_width = raw["width"]
            if isinstance(spec_width, str):
                if spec_width not in WIDTHS:
                    raise ValueError(f"{where}: field {fname} width must be an integer or one of "
                                     f"{', '.join(WIDTHS)}, not {spec_width!r}")
                width = WIDTHS[spec_width]
            else:
                width = spec_width
            lsb = raw.get("lsb", lsb)
            if not isinstance(width, int) or width < 1 or lsb + width > REG_BITS:
                raise ValueError(f"{where}: field {fname} (bit {lsb}, width {width}) must fit in {REG_BITS} bits")
            if kind in ("status", "pulse") and not raw.get("port"):
                raise ValueError(f"{where}: {kind} field {fname} needs a port")
            if kind == "const" and raw.get("value") is None:
                raise ValueError(f"{where}: const field {fname} needs a value")
            if kind == "w1c" and not raw.get("set_on"):
                raise ValueError(f"{where}: w1c field {fname} needs set_on")
            fields.append(Field(fname, kind, lsb, width, str(raw.get("doc", "")), str(spec_width),
                                raw.get("port"), raw.get("port_lsb", 0), raw.get("value"),
                                raw.get("set_on")))
            lsb += width
        masks = 0
        for f in fields:
            if masks & f.mask:
                raise ValueError(f"{where}: field {f.name} overlaps another field")
            masks |= f.mask
        return Register(name, offset, doc, tuple(fields))

    def _check_ports(self) -> None:
        for name, (direction, _width) in self.ports.items():
            if name == "interrupt":
                raise ValueError(f"{self.source}: port name 'interrupt' is reserved")
        inputs = {n for n, (d, _) in self.ports.items() if d == "in"}
        for f in self.fields_of_kind("w1c"):
            if f.set_on not in inputs:
                raise ValueError(f"{self.source}: w1c field {f.name} sets on {f.set_on!r}, which is "
                                 f"not a status port ({', '.join(sorted(inputs))})")

    # -- queries ----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(f"no register {name!r}") from None

    def fields_of_kind(self, kind: str) -> list[Field]:
        return [f for r in self.registers.values() for f in r.fields if f.kind == kind]

    @cached_property
    def ports(self) -> dict[str, tuple[str, int]]:
        """Port name -> ("in" | "out", width) of the CSR block towards the core, in spec order."""
        ports: dict[str, tuple[str, int]] = {}
        for r in self.registers.values():
            for f in r.fields:
                if f.port is None:
                    continue
                direction = "in" if f.kind == "status" else "out"
                width = f.port_lsb + f.width
                old = ports.get(f.port)
                if old is not None and old[0] != direction:
                    raise ValueError(f"{self.source}: port {f.port} is both read and driven")
                ports[f.port] = (direction, max(width, old[1] if old else 0))
        return ports

    @property
    def counters(self) -> dict[str, tuple[Register, Register | None]]:
        """Counter name (as `hw.counters.COUNTERS`) -> (LO register, HI register or None)."""
        return {name: (self[f"CNT_{name.upper()}_LO"], self.registers.get(f"CNT_{name.upper()}_HI"))
                for name in COUNTERS}

    @property
    def size(self) -> int:
        """Bytes of address space the block decodes (a power of two)."""
        end = max(r.offset for r in self.registers.values()) + REG_BITS // 8
        return 1 << ceil_log2(end)

    @property
    def addr_bits(self) -> int:
        """Byte address bits of the register window (AXI4-Lite ``s_axi_awaddr`` width)."""
        return ceil_log2(self.size)

    @property
    def word_addr_bits(self) -> int:
        return self.addr_bits - 2

    def const_value(self, field: Field, cfg) -> int:
        """The value a const field reads for `cfg`."""
        v = field.value
        if v == "id":
            value = self.id
        elif v == "version":
            value = self.version
        elif v == "config_hash_lo":
            value = config_hash_lo(cfg.compile_hash)
        elif v == "counter_count":
            value = len(COUNTERS)
        elif v in WIDTHS:
            value = WIDTHS[v]
        else:
            try:
                value = cfg.get(v)
            except AttributeError:
                raise ValueError(f"{self.source}: const field {field.name} value {v!r} is not a "
                                 f"config key") from None
        if value >> field.width:
            raise ValueError(f"{self.source}: const field {field.name} = {value} does not fit in "
                             f"{field.width} bits")
        return value


def load_regmap() -> RegisterMap:
    text = resources.files(__package__).joinpath("registers.yaml").read_text()
    return RegisterMap(yaml.safe_load(text), source="hw/regmap/registers.yaml")


#: the register map of hw/regmap/registers.yaml
REGMAP: RegisterMap = load_regmap()
