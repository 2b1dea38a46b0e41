"""The cocotb backend: the testbench that runs one program on `systolab_top`, and the functions
that build it and run it through `cocotb_tools.runner` (Verilator).

cocotb runs the testbench inside the simulator, a separate process, so the two sides talk
through files in a run directory:

    job.json      insn_addr, insn_count, max_cycles, read range, counter names   (Python -> tb)
    image.bin     memory[0:n], written through the host port                      (Python -> tb)
    result.json   status, counters, cycles, timings                               (tb -> Python)
    memory.bin    the read range, read back through the host port                 (tb -> Python)

The clock is cocotb's C++ clock (`Clock(..., impl="gpi")`) and the testbench only wakes up for
`done` or the watchdog while the accelerator runs, never once per clock. Loading and reading
back go one word per clock through the host port, as in `sim/harness.cpp`.

Use it through `systolab.sim.rtl.run_rtl(cfg, program, backend="cocotb")`.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from systolab.hw.counters import COUNTERS

from systolab.cache import Build, cached_build, runtime_makeflags, save_runtime
from .rtl_common import TOP, BackendRun, RtlError
from .verilator_env import MODEL_MAKE_VARS, toolchain_id, verilator_os_environ
from .verilog_prep import compact_zero_memory_init

__all__ = ["COCOTB_FLAGS", "VISIBILITY", "build_cocotb", "top_only_vlt", "run_cocotb", "run_accelerator"]

#: environment variable that tells the testbench where its job.json is
JOB_ENV = "SYSTOLAB_RTL_JOB"
#: clock period; only the cycle count matters
PERIOD_NS = 10
#: Verilator options on top of the runner's own (`--vpi --public-flat-rw`, see VISIBILITY)
COCOTB_FLAGS: tuple[str, ...] = (
    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
    "-Wno-fatal", "-Wno-lint", "-Wno-style",
)
#: which signals the testbench can see through VPI:
#: "top": the ports of systolab_top, all this testbench touches. The runner's `--public-flat-rw`
#:        is turned off again (`--no-public-flat-rw`, the last option wins) and a Verilator
#:        control file makes only the top module's signals public, so Verilator optimizes the
#:        rest of the design (on a 16x16 MAC array: 8x faster simulation, 5x faster build).
#: "all": the runner's default, every signal public (for testbenches that peek inside).
VISIBILITY = ("top", "all")


def top_only_vlt(top: str) -> str:
    """The Verilator control file that makes only the ports of module `top` public."""
    return f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n'


# -- the testbench (runs inside the simulator) ------------------------------------------------

@cocotb.test()
async def run_accelerator(dut):
    """Load the image, start, await done (or the watchdog), read counters and memory back."""
    job_path = Path(os.environ[JOB_ENV])
    job = json.loads(job_path.read_text())
    run_dir = job_path.parent
    bus = job["bus_bytes"]

    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start(start_high=False)
    dut.rst.value = 1
    dut.start.value = 0
    dut.host_we.value = 0
    dut.host_addr.value = 0
    dut.host_wdata.value = 0
    dut.insn_addr.value = 0
    dut.insn_count.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    # load: inputs change at falling edges, the memory takes them at the rising edge between
    t0 = time.perf_counter()
    image = (run_dir / "image.bin").read_bytes()
    for w in range(len(image) // bus):
        word = image[w * bus:(w + 1) * bus]
        if not any(word):
            continue                       # the memory model starts zeroed
        dut.host_addr.value = w
        dut.host_wdata.value = int.from_bytes(word, "little")
        dut.host_we.value = 1
        await FallingEdge(dut.clk)
    dut.host_we.value = 0
    load_s = time.perf_counter() - t0

    # start and run: Python sleeps until done rises or the watchdog fires
    dut.insn_addr.value = job["insn_addr"]
    dut.insn_count.value = job["insn_count"]
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0
    t0 = time.perf_counter()
    start_ns = get_sim_time(unit="ns")      # the falling edge that ended the start pulse
    if not dut.done.value:
        await First(RisingEdge(dut.done), Timer(job["max_cycles"] * PERIOD_NS, unit="ns"))
    sim_s = time.perf_counter() - t0
    done = bool(dut.done.value)
    ticks = int(get_sim_time(unit="ns") - start_ns + PERIOD_NS // 2) // PERIOD_NS  # rising edges since
    counters = {name: getattr(dut, f"cnt_{name}").value.to_unsigned() for name in job["counters"]}

    result = {"status": "done" if done else "timeout", "bus_bytes": bus, "ticks": ticks,
              "load_s": load_s, "sim_s": sim_s, "counters": counters}
    if done:
        t0 = time.perf_counter()
        start, end = job["read"]
        out = bytearray()
        await FallingEdge(dut.clk)
        for addr in range(start, end, bus):
            dut.host_addr.value = addr // bus
            await FallingEdge(dut.clk)
            out += dut.host_rdata.value.to_unsigned().to_bytes(bus, "little")
        (run_dir / "memory.bin").write_bytes(bytes(out))
        result["read_s"] = time.perf_counter() - t0
    (run_dir / "result.json").write_text(json.dumps(result) + "\n")
    assert done, f"done did not rise within {job['max_cycles']} cycles"


# -- build and run (the Python side) ----------------------------------------------------------

def build_cocotb(verilog: str, *, trace: tuple[str, ...] | None = None, visibility: str = "top",
                 top: str = TOP) -> Build:
    """The cocotb + Verilator simulator for this Verilog with top module `top` (built once per
    key). Every cocotb testbench of systolab builds through here: the simulation top's
    (`run_accelerator` above), the AXI top's (`tests/support/axi_tb.py`) and the board top's (tests/test_board.py).

    trace:      None, or the Verilator options that compile tracing in (`check_trace_format`)
    visibility: "top" or "all", see `VISIBILITY`
    """
    from cocotb_tools.runner import get_runner

    if visibility not in VISIBILITY:
        raise RtlError(f"visibility must be one of {', '.join(VISIBILITY)}, not {visibility!r}")
    verilog = compact_zero_memory_init(verilog)   # same meaning, a fraction of the build time
    flags = [*COCOTB_FLAGS, *(trace or ()),
             *(["--no-public-flat-rw"] if visibility == "top" else [])]
    vlt = top_only_vlt(top) if visibility == "top" else ""
    flag_text = " ".join([*flags, *MODEL_MAKE_VARS])
    cocotb_main = resources.files("cocotb").joinpath("share/lib/verilator/verilator.cpp").read_text()
    runtime = {"flags": flag_text, "toolchain": toolchain_id(), "cocotb": cocotb.__version__,
               "for": "cocotb"}

    def build(directory: Path) -> None:
        (directory / "top.v").write_text(verilog)
        sources = [directory / "top.v"]
        if vlt:
            (directory / "public.vlt").write_text(vlt)
            sources.insert(0, directory / "public.vlt")
        log = directory / "build.log"
        makeflags = " ".join([*MODEL_MAKE_VARS, runtime_makeflags(runtime)])
        with verilator_os_environ(makeflags=makeflags):
            runner = get_runner("verilator")
            try:
                runner.build(sources=sources, hdl_toplevel=top,
                             build_dir=directory, build_args=flags, waves=trace is not None,
                             always=True, log_file=log)
            except (RuntimeError, SystemExit) as e:
                raise RtlError(f"cocotb Verilator build of {top} failed ({_first_error(log, e)}); "
                               f"log: {log}") from None
        save_runtime(directory, runtime)

    parts = {"verilog": verilog, "flags": flag_text, "vlt": vlt, "cocotb": cocotb.__version__,
             "cocotb_verilator_cpp": cocotb_main, "toolchain": toolchain_id(),
             **({"top": top} if top != TOP else {})}      # (keys of existing builds unchanged)
    return cached_build("cocotb", parts, build)


def _first_error(log: Path, exc: BaseException) -> str:
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if "%Error" in line or "error:" in line:
                return line.strip()[:300]
    return str(exc) or type(exc).__name__


def run_cocotb(build: Build, run_dir: Path, *, image: bytes, insn_addr: int, insn_count: int,
               max_cycles: int, read: tuple[int, int], bus_bytes: int,
               trace: Path | None = None) -> BackendRun:
    """Run the testbench once on the simulator of `build`, with its files in `run_dir`."""
    from cocotb_tools.runner import get_runner

    (run_dir / "image.bin").write_bytes(image)
    job = {"insn_addr": insn_addr, "insn_count": insn_count, "max_cycles": max_cycles,
           "read": list(read), "bus_bytes": bus_bytes, "counters": list(COUNTERS)}
    (run_dir / "job.json").write_text(json.dumps(job) + "\n")
    log = run_dir / "sim.log"
    with verilator_os_environ():
        runner = get_runner("verilator")
        try:
            runner.test(test_module=__name__, hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                        build_dir=build.dir, test_dir=run_dir,
                        test_args=["--trace", "--trace-file", str(trace)] if trace else [],
                        extra_env={JOB_ENV: str(run_dir / "job.json")},
                        results_xml=str(run_dir / "results.xml"), log_file=log)
        except SystemExit:
            pass            # a failed cocotb test under pytest; result.json says what happened
        except RuntimeError as e:
            raise RtlError(f"cocotb simulation failed ({e}); log: {log}") from None
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise RtlError(f"cocotb testbench ended without a result; log: {log}")
    result = json.loads(result_path.read_text())
    memory = (run_dir / "memory.bin").read_bytes() if result["status"] == "done" else b""
    return BackendRun(result["status"], {k: int(v) for k, v in result["counters"].items()},
                      memory, int(result["ticks"]), float(result["load_s"]),
                      float(result["sim_s"]), float(result.get("read_s", 0.0)))
