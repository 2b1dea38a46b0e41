"""Small helpers shared by the hardware units: config checks and ISA-derived widths."""

from systolab.config import HardwareConfig
from systolab.isa import ISA

__all__ = ["as_config", "check_pow2", "field_width", "read_buffer_words", "isa_for_hw"]


def as_config(cfg) -> HardwareConfig:
    if not isinstance(cfg, HardwareConfig):
        raise TypeError(f"cfg must be a HardwareConfig, not {cfg!r}")
    return cfg


def check_pow2(name: str, value, lo: int = 1) -> int:
    """The one check of a power-of-two component argument (array shape, depths, bus width):
    `ValueError` "name must be a power of two >= lo, not value" otherwise. (Config files are
    checked earlier and with their own ranges by `systolab.config`; this guards direct use.)"""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {lo}, not {value!r}")
    return value


def isa_for_hw(cfg) -> ISA:
    return ISA(as_config(cfg))


def field_width(isa: ISA, op: str, name: str) -> int:
    """Width of field `name` of instruction `op`, as the ISA lays it out for this config."""
    for f in isa.formats[op].all_fields:
        if f.name == name:
            return f.width
    raise KeyError(f"{op} has no field {name!r}")


def read_buffer_words(cfg) -> int:
    """Response buffer of a streaming `RowReader`: latency + 4 words lets it keep one read per
    cycle in flight (a credit comes back latency + 3 cycles after its request)."""
    return cfg.memory.latency + 4
