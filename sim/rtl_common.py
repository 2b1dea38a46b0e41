"""What both RTL backends share: the run plan, the raw run record, the error type.

Both backends drive `systolab_top` the same way (docs/architecture.md, "Simulation top ports"):
reset two cycles, write the image through the host port, pulse `start`, clock until `done`, read
every `cnt_<name>`, read a byte range back through the host port. `RunPlan` says what to load and
what to read; `BackendRun` is what a backend hands back.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from systolab.errors import UserError

from systolab.cache import cache_root

__all__ = ["RtlError", "RunPlan", "BackendRun", "run_directory", "READBACK_CHOICES", "TOP"]

#: the simulation top's Verilog module (hw/verilog.py: TOP_NAMES["sim"]; a test pins it)
TOP = "systolab_top"
READBACK_CHOICES = ("used", "outputs", "all")


class RtlError(UserError):
    """The RTL could not be built or did not finish; the message is one line (with a log path)."""


@dataclass(frozen=True)
class RunPlan:
    """What to load, where to start and which bytes to read back, in bus words."""

    bus_bytes: int
    mem_bytes: int
    initial: np.ndarray          # the full initial memory (uint8, mem_bytes)
    load: bytes                  # memory[0:len(load)] written through the host port
    insn_addr: int
    insn_count: int
    read: tuple[int, int]        # byte range [start, end) read back, whole words

    @classmethod
    def make(cls, cfg, program, readback="used") -> "RunPlan":
        initial = program.memory(cfg)          # checks the config hash and the size
        bus, size = cfg.memory.bus_bytes, cfg.mem_bytes
        load_end = _round_up(len(program.image), bus)
        for name, value in (("insn_addr", program.insn_addr), ("insn_count", program.insn_count)):
            if not 0 <= value < 2**32:
                raise RtlError(f"program {name} must fit in 32 bits, not {value}")
        regions = list(program.regions.values())
        if isinstance(readback, str):
            if readback == "used":
                end = max([len(program.image), *(r.addr + r.nbytes for r in regions)])
                start = 0
            elif readback == "outputs":
                outs = [program.regions[name] for name in program.outputs]
                if not outs:
                    raise RtlError("readback='outputs' needs a program with output regions; "
                                   "this one has none")
                start = min(r.addr for r in outs)
                end = max(r.addr + r.nbytes for r in outs)
            elif readback == "all":
                start, end = 0, size
            else:
                raise RtlError(f"readback must be one of {', '.join(READBACK_CHOICES)} or a "
                               f"(start, end) byte range, not {readback!r}")
        else:
            try:
                start, end = (int(v) for v in readback)
            except (TypeError, ValueError):
                raise RtlError(f"readback must be one of {', '.join(READBACK_CHOICES)} or a "
                               f"(start, end) byte range, not {readback!r}") from None
            if not 0 <= start <= end <= size:
                raise RtlError(f"readback range ({start}, {end}) must lie within the "
                               f"{size}-byte memory")
        read = (start - start % bus, min(size, _round_up(end, bus)))
        return cls(bus, size, initial, initial[:load_end].tobytes(), program.insn_addr,
                   program.insn_count, read)

    def memory_from(self, read_back: bytes) -> np.ndarray:
        """The full memory: the read-back range from the RTL, the initial image elsewhere."""
        mem = self.initial.copy()
        start, end = self.read
        if len(read_back) != end - start:
            raise RtlError(f"read back {len(read_back)} bytes, expected {end - start}")
        mem[start:end] = np.frombuffer(read_back, dtype=np.uint8)
        return mem


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


@dataclass
class BackendRun:
    """What a backend reports for one run."""

    status: str                  # "done", "timeout" (or "clock_only" for speed runs)
    counters: dict[str, int]
    memory: bytes                # the plan's read range, empty unless status == "done"
    ticks: int                   # clock cycles after the start pulse
    load_s: float                # wall seconds writing the image
    sim_s: float                 # wall seconds from start to done
    read_s: float                # wall seconds reading memory back


@contextmanager
def run_directory(backend: str) -> Iterator[Path]:
    """A fresh directory for one run's files, removed afterwards unless the run failed."""
    root = cache_root() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=root))
    yield path                   # an exception leaves the directory (and its logs) in place
    shutil.rmtree(path, ignore_errors=True)
