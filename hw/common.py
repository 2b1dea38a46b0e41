"""Small helpers shared by the hardware units: config checks and ISA-derived widths."""

from systolab.config import HardwareConfig
from systolab.isa import ISA

__all__ = ["check_config", "field_width", "read_buffer_words", "isa_for_hw"]


def check_config(cfg) -> HardwareConfig:
    if not isinstance(cfg, HardwareConfig):
        raise TypeError(f"cfg must be a HardwareConfig, not {cfg!r}")
    return cfg


def isa_for_hw(cfg) -> ISA:
    return ISA(check_config(cfg))


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
