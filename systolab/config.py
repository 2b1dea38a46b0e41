"""The accelerator configuration: one YAML file, loaded into a frozen, validated `HardwareConfig`.

The same object drives the RTL generator, the ISA field widths, the compiler's tiling and the
simulators. Every default and every allowed range lives here, once, in the field metadata.

    >>> cfg = load_config("configs/default.yaml")
    >>> cfg.array.rows, cfg.scratchpad.depth
    (8, 4096)

A config that cannot work is rejected when it is loaded, with one line naming the file, the key
path and what is allowed (`ConfigError`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from systolab.isa import WORD_BITS
from systolab.isa import check_fits as check_isa_fits

from .errors import ConfigError, read_yaml

__all__ = [
    "ArrayConfig", "ScratchpadConfig", "AccumulatorConfig", "MemoryConfig", "QueueConfig", "VectorConfig",
    "HardwareConfig", "load_config", "config_from_dict", "default_config", "ConfigError",
    "known_keys", "short_key",
]


def _param(default: int, lo: int, hi: int, *, short: str, pow2: bool = False, doc: str = "",
           auto: bool = False):
    """A config field: its default, allowed range, short name (sweep point labels) and doc;
    `auto`: the field may also be `auto` (stored as 0), meaning "chosen per run"."""
    return field(default=default, metadata={"range": (lo, hi), "pow2": pow2, "doc": doc, "short": short,
                                            "auto": auto})


#: `memory.size_kib: auto`: the simulated memory is sized to each run, and never smaller than this
AUTO_MEMORY_FLOOR_KIB = 4096


@dataclass(frozen=True)
class ArrayConfig:
    rows: int = _param(8, 1, 64, short="rows", pow2=True, doc="PE rows; the K extent of a weight tile and the int8 lanes of a scratchpad row")
    cols: int = _param(8, 1, 64, short="cols", pow2=True, doc="PE columns; the N extent of a weight tile and the int32 lanes of an accumulator row")


@dataclass(frozen=True)
class ScratchpadConfig:
    depth: int = _param(4096, 16, 1 << 20, short="sp", pow2=True, doc="scratchpad rows (each `array.rows` int8)")


@dataclass(frozen=True)
class AccumulatorConfig:
    depth: int = _param(1024, 16, 1 << 20, short="acc", pow2=True, doc="accumulator rows (each `array.cols` int32)")


@dataclass(frozen=True)
class MemoryConfig:
    bus_bytes: int = _param(16, 4, 128, short="bus", pow2=True, doc="bytes per cycle on the external memory port")
    latency: int = _param(32, 1, 1024, short="lat", doc="cycles from a read request to its data")
    size_kib: int = _param(0, 64, 1 << 20, short="mem", pow2=True, auto=True,
                           doc="external memory modelled in simulation (KiB); `auto` (the default): "
                               f"sized to each run, at least {AUTO_MEMORY_FLOOR_KIB} KiB; a number pins it")


@dataclass(frozen=True)
class QueueConfig:
    depth: int = _param(8, 2, 256, short="q", pow2=True, doc="entries in each of the load / compute / store instruction queues")


@dataclass(frozen=True)
class VectorConfig:
    lanes: int = _param(8, 1, 64, short="vl", pow2=True, doc="int32 lanes the vector unit works on per cycle (at most array.cols; a row of array.cols lanes takes cols / lanes cycles)")


#: sections a config may leave out: without one, the accelerator has no such unit
OPTIONAL_SECTIONS = ("vector",)

_SECTIONS = {
    "array": ArrayConfig,
    "scratchpad": ScratchpadConfig,
    "accumulator": AccumulatorConfig,
    "memory": MemoryConfig,
    "queues": QueueConfig,
    "vector": VectorConfig,
}


@dataclass(frozen=True)
class HardwareConfig:
    """A complete, validated accelerator configuration (build it with `load_config`)."""

    array: ArrayConfig = field(default_factory=ArrayConfig)
    scratchpad: ScratchpadConfig = field(default_factory=ScratchpadConfig)
    accumulator: AccumulatorConfig = field(default_factory=AccumulatorConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    queues: QueueConfig = field(default_factory=QueueConfig)
    #: the vector unit beside the array; None (the section left out): no vector unit
    vector: VectorConfig | None = None
    #: where the config came from, for error messages; not part of the hash
    source: str = field(default="<config>", compare=False, repr=False)

    # -- derived sizes (the only place they are computed) -------------------------------------
    @property
    def rows(self) -> int:
        return self.array.rows

    @property
    def pes(self) -> int:
        """Processing elements in the array (`rows * cols`)."""
        return self.array.rows * self.array.cols

    @property
    def label(self) -> str:
        """The array shape as people write it: `8x8`."""
        return f"{self.array.rows}x{self.array.cols}"

    @property
    def cols(self) -> int:
        return self.array.cols

    @property
    def sp_row_bytes(self) -> int:
        """Bytes of one scratchpad row in external memory: `rows` int8."""
        return self.array.rows

    @property
    def acc_row_bytes(self) -> int:
        """Bytes of one accumulator row (int32 x cols): the requantization parameter rows."""
        return 4 * self.array.cols

    @property
    def out_row_bytes(self) -> int:
        """Bytes written to external memory per stored row: `cols` int8 after requantization."""
        return self.array.cols

    @property
    def insn_bytes(self) -> int:
        return WORD_BITS // 8

    @property
    def memory_pinned(self) -> bool:
        """`memory.size_kib` is a number (not `auto`): runs must fit it."""
        return self.memory.size_kib != 0

    @property
    def mem_bytes(self) -> int:
        """Bytes of the simulated external memory (with `auto`, the smallest size a run gets)."""
        return (self.memory.size_kib or AUTO_MEMORY_FLOOR_KIB) * 1024

    @property
    def mem_limit(self) -> int:
        """The most external memory a workload may need: the pinned size, or with `auto` the
        largest `memory.size_kib`."""
        return self.mem_bytes if self.memory_pinned else _SIZE_KIB_RANGE[1] * 1024

    def sized_for(self, needed: int) -> "HardwareConfig":
        """The config a run that needs `needed` bytes of external memory runs on: itself when the
        size is pinned, else with `memory.size_kib` the smallest power of two that holds the run
        (at least AUTO_MEMORY_FLOOR_KIB). Programs compiled for one run on the other
        (`compile_hash` leaves the memory size out)."""
        if self.memory_pinned:
            return self
        kib = max(AUTO_MEMORY_FLOOR_KIB, 1 << max(0, (-(-needed // 1024) - 1).bit_length()))
        kib = min(kib, _SIZE_KIB_RANGE[1])
        return dataclasses.replace(self, memory=dataclasses.replace(self.memory, size_kib=kib))

    @property
    def mem_words(self) -> int:
        return self.mem_bytes // self.memory.bus_bytes

    # -- identity -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, int]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in _SECTIONS
                if getattr(self, name) is not None}

    @property
    def has_vector(self) -> bool:
        """The config has a vector unit (a `vector` section)."""
        return self.vector is not None

    @property
    def hash(self) -> str:
        """12 hex digits identifying the hardware: RTL builds are keyed by it."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def compile_hash(self) -> str:
        """12 hex digits identifying what a compiled program depends on: the hardware without the
        simulated memory's size (a program runs on any memory that holds it). Program bundles and
        the CONFIG_HASH register carry it."""
        d = self.to_dict()
        d["memory"] = {k: v for k, v in d["memory"].items() if k != "size_kib"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def get(self, dotted: str) -> int | None:
        """The value of a dotted key; None for a key of a section the config leaves out."""
        section, _, key = dotted.partition(".")
        part = getattr(self, section)
        return None if part is None else getattr(part, key)

    def replace(self, values: Mapping[str, Any], *, source: str | None = None) -> "HardwareConfig":
        """A new config with dotted keys (`{"array.rows": 16}`) changed, validated like a file."""
        raw = self.to_dict()
        for dotted, value in values.items():
            section, _, key = dotted.partition(".")
            raw.setdefault(section, {})[key] = value
        return config_from_dict(raw, source=source or self.source)

    def memory_shortfall(self, what: str, needed: int, parts: str) -> str:
        """The one-line message for a workload whose `needed` bytes do not fit the external
        memory: names the config, its size and the `memory.size_kib` that would fit (if any)."""
        lo, hi = _SIZE_KIB_RANGE
        if not self.memory_pinned:
            return (f"{what} needs {needed:,} bytes of external memory ({parts}); memory.size_kib of "
                    f"{self.source} is auto, and the largest memory ({hi} KiB) cannot hold it")
        kib = max(lo, 1 << (-(-needed // 1024) - 1).bit_length())
        advice = (f"set memory.size_kib to at least {kib}" if kib <= hi else
                  f"more than the largest memory.size_kib ({hi}) holds")
        return (f"{what} needs {needed:,} bytes of external memory ({parts}); memory.size_kib of "
                f"{self.source} is {self.memory.size_kib} ({self.mem_bytes:,} bytes); {advice}")

    def describe(self) -> str:
        return (f"{self.label} array, scratchpad {self.scratchpad.depth} rows, "
                f"accumulator {self.accumulator.depth} rows, bus {self.memory.bus_bytes} B/cycle, "
                f"latency {self.memory.latency}"
                + (f", memory {self.memory.size_kib} KiB" if self.memory_pinned else "")
                + (f", vector unit {self.vector.lanes} lanes" if self.vector else ""))


_SIZE_KIB_RANGE = {f.name: f for f in dataclasses.fields(MemoryConfig)}["size_kib"].metadata["range"]


def known_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]


def short_key(dotted: str) -> str:
    """The short name of a dotted config key (`scratchpad.depth` -> `sp`); other keys unchanged."""
    section, _, key = dotted.partition(".")
    cls = _SECTIONS.get(section)
    for f in dataclasses.fields(cls) if cls else ():
        if f.name == key:
            return f.metadata["short"]
    return dotted


def _check_value(source: str, path: str, f: dataclasses.Field, value: Any) -> int:
    lo, hi = f.metadata["range"]
    pow2 = f.metadata["pow2"]
    allowed = (f"a power of two from {lo} to {hi}" if pow2 else f"an integer from {lo} to {hi}")
    if f.metadata["auto"]:
        if value == "auto" or (value == 0 and not isinstance(value, bool)):
            return 0
        allowed += " or auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}: {path} must be {allowed}, not {value!r}")
    if not lo <= value <= hi or (pow2 and value & (value - 1)):
        raise ConfigError(f"{source}: {path} must be {allowed}, not {value!r}")
    return value


def config_from_dict(raw: Any, *, source: str = "<config>") -> HardwareConfig:
    """Validate a plain mapping (as read from YAML) into a `HardwareConfig`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections "
                          f"({', '.join(_SECTIONS)}), not {type(raw).__name__}")
    sections = {}
    for name, value in raw.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{source}: unknown key {name!r}; valid sections are {', '.join(_SECTIONS)}")
        cls = _SECTIONS[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {name} must be a mapping with keys {', '.join(fields)}, "
                              f"not {value!r}")
        kwargs = {}
        for key, v in value.items():
            if key not in fields:
                raise ConfigError(f"{source}: unknown key {name}.{key}; valid keys in {name} are "
                                  f"{', '.join(fields)}")
            kwargs[key] = _check_value(source, f"{name}.{key}", fields[key], v)
        sections[name] = cls(**kwargs)
    cfg = HardwareConfig(**sections, source=source)
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: HardwareConfig) -> None:
    src = cfg.source
    check_isa_fits(cfg)
    if cfg.memory_pinned and cfg.mem_bytes < 16 * cfg.memory.bus_bytes:
        raise ConfigError(f"{src}: memory.size_kib is too small for memory.bus_bytes")
    if cfg.vector is not None and cfg.vector.lanes > cfg.cols:
        raise ConfigError(f"{src}: vector.lanes must be at most array.cols ({cfg.cols}), "
                          f"not {cfg.vector.lanes}")


def load_config(path: str | Path) -> HardwareConfig:
    """Read and validate a YAML config; any problem raises `ConfigError` with one line."""
    source = str(path)
    raw = read_yaml(path, ConfigError, "config")
    return config_from_dict(raw, source=source)


def default_config() -> HardwareConfig:
    return config_from_dict({}, source="<defaults>")
