"""cocotb testbench of the AXI top (`systolab_axi`, hw/axi.py) against someone else's AXI models:
cocotbext-axi's `AxiRam` as the memory behind ``m_axi_*`` and `AxiLiteMaster` as the host on
``s_axi_*``. The host side is `systolab.app.driver.Driver`, the same code a board runs.

The Python side (`build_axi`, `run_axi`, used by tests/test_axi.py) writes a job into a run
directory and reads the result back, like `sim/cocotb_tb.py`:

    job.json       mem_bytes, watchdog, cases: [{program: p0.npz, expected: e0.npy, pause, irq, seed}]
    result.json    per case: status, counters, AXI burst statistics, interrupt seen, timings
    out<i>.npy     per case: the output region "C" read back from the AxiRam

Every case: load the program image into the AxiRam, `Driver.run` (check the config hash, start,
wait for done by polling STATUS or by the interrupt, read the counters over AXI4-Lite, read the
outputs). With ``pause`` the RAM model's channels (AR, R, AW, W, B) pause at random (seeded).
A monitor counts AR/AW handshakes and beats, so a test can tie them to the core's counters.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from systolab.cache import Build
from systolab.sim.cocotb_tb import build_cocotb
from systolab.sim.rtl_common import RtlError
from systolab.sim.verilator_env import verilator_os_environ

__all__ = ["AXI_TOP", "build_axi", "run_axi", "axi_program"]

#: the AXI top's Verilog module (hw/verilog.py: TOP_NAMES["axi"])
AXI_TOP = "systolab_axi"
JOB_ENV = "SYSTOLAB_AXI_JOB"
PERIOD_NS = 10


def _random_pauses(seed: int, p: float = 0.3):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def _monitor(dut, stats: dict) -> None:
    """Count AR/AW handshakes and beats, and the longest read burst."""
    while True:
        await RisingEdge(dut.aclk)
        await ReadOnly()
        if dut.m_axi_arvalid.value and dut.m_axi_arready.value:
            beats = dut.m_axi_arlen.value.to_unsigned() + 1
            stats["ar_bursts"] += 1
            stats["ar_beats"] += beats
            stats["ar_max_beats"] = max(stats["ar_max_beats"], beats)
        if dut.m_axi_awvalid.value and dut.m_axi_awready.value:
            stats["aw_bursts"] += 1
            stats["aw_beats"] += dut.m_axi_awlen.value.to_unsigned() + 1


@cocotb.test()
async def axi_programs(dut):
    """Run every case of the job through the driver; write what happened to result.json."""
    from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

    from systolab.codegen.program import Program
    from systolab.app.driver import Driver, DriverError

    job_path = Path(os.environ[JOB_ENV])
    job = json.loads(job_path.read_text())
    run_dir = job_path.parent

    Clock(dut.aclk, PERIOD_NS, unit="ns").start(start_high=False)
    dut.aresetn.value = 0
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.aclk, dut.aresetn, reset_active_level=False,
                 size=job["mem_bytes"])
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.aclk, dut.aresetn,
                         reset_active_level=False)
    for model in (ram.write_if, ram.read_if, host.write_if, host.read_if):
        model.log.setLevel(logging.WARNING)          # no line per burst
    for _ in range(4):
        await RisingEdge(dut.aclk)
    dut.aresetn.value = 1
    for _ in range(2):
        await RisingEdge(dut.aclk)

    stats = {"ar_bursts": 0, "ar_beats": 0, "ar_max_beats": 0, "aw_bursts": 0, "aw_beats": 0}
    cocotb.start_soon(_monitor(dut, stats))
    watchdog_ns = job["max_cycles"] * PERIOD_NS
    seen = {"interrupt": False}

    async def wait_irq():
        if not dut.interrupt.value:
            await First(RisingEdge(dut.interrupt), Timer(watchdog_ns, unit="ns"))
        seen["interrupt"] = bool(dut.interrupt.value)
        if not seen["interrupt"]:
            raise DriverError(f"no interrupt within {job['max_cycles']} cycles")

    drv = Driver(host.read_dword, host.write_dword, mem_write=ram.write, mem_read=ram.read,
                 max_polls=job["max_cycles"] // 8)
    info = await drv.info()
    results = {"info": info.__dict__, "cases": []}
    for i, case in enumerate(job["cases"]):
        program = Program.load(run_dir / case["program"])
        channels = (ram.read_if.ar_channel, ram.read_if.r_channel, ram.write_if.aw_channel,
                    ram.write_if.w_channel, ram.write_if.b_channel)
        for k, ch in enumerate(channels):
            ch.set_pause_generator(_random_pauses(case["seed"] * 10 + k) if case["pause"] else None)
            if not case["pause"]:
                ch.pause = False    # clearing a generator leaves the channel as it last set it
        for key in stats:
            stats[key] = 0
        seen["interrupt"] = False
        record = {"status": "error"}
        t0, start_ns = time.perf_counter(), get_sim_time(unit="ns")
        try:
            result = await drv.run(program, irq=wait_irq if case["irq"] else None)
        except DriverError as e:
            record["error"] = str(e)
        else:
            np.save(run_dir / f"out{i}.npy", result.outputs["C"])
            expected = np.load(run_dir / case["expected"])
            record.update(status="done", counters=result.counters,
                          mismatches=int(np.count_nonzero(result.outputs["C"] != expected)),
                          interrupt=seen["interrupt"], interrupt_after=bool(dut.interrupt.value),
                          final_status=await drv.status())
        await RisingEdge(dut.aclk)
        record.update(axi=dict(stats), sim_s=time.perf_counter() - t0,
                      sim_cycles=int(get_sim_time(unit="ns") - start_ns) // PERIOD_NS)
        results["cases"].append(record)
    # a program compiled for another config is refused before anything runs
    if job.get("foreign"):
        try:
            await drv.run(Program.load(run_dir / job["foreign"]))
            results["foreign"] = "accepted"
        except DriverError as e:
            results["foreign"] = str(e)
    (run_dir / "result.json").write_text(json.dumps(results, indent=1) + "\n")
    for case in results["cases"]:
        assert case["status"] == "done", case.get("error")


# -- build and run (the Python side) ----------------------------------------------------------

def build_axi(verilog: str) -> Build:
    """The cocotb + Verilator simulator of this `systolab_axi` Verilog (cached by content)."""
    return build_cocotb(verilog, top=AXI_TOP)


def axi_program(run_dir: Path, i: int, program, expected: np.ndarray, *, pause: bool, irq: bool,
                seed: int = 1) -> dict:
    """Save one case's files in `run_dir`; returns its job entry."""
    program.save(run_dir / f"p{i}.npz")
    np.save(run_dir / f"e{i}.npy", expected)
    return {"program": f"p{i}.npz", "expected": f"e{i}.npy", "pause": pause, "irq": irq, "seed": seed}


def run_axi(build: Build, run_dir: Path, *, cases: list[dict], mem_bytes: int,
            max_cycles: int = 200_000, foreign: str | None = None) -> dict:
    """Run the testbench once on `build` with these cases; returns result.json's content."""
    from cocotb_tools.runner import get_runner

    job = {"cases": cases, "mem_bytes": mem_bytes, "max_cycles": max_cycles, "foreign": foreign}
    (run_dir / "job.json").write_text(json.dumps(job) + "\n")
    log = run_dir / "sim.log"
    with verilator_os_environ():
        try:
            get_runner("verilator").test(
                test_module=__name__, hdl_toplevel=AXI_TOP, hdl_toplevel_lang="verilog",
                build_dir=build.dir, test_dir=run_dir, extra_env={JOB_ENV: str(run_dir / "job.json")},
                results_xml=str(run_dir / "results.xml"), log_file=log)
        except SystemExit:
            pass            # a failed cocotb test; result.json says what happened
        except RuntimeError as e:
            raise RtlError(f"cocotb simulation of {AXI_TOP} failed ({e}); log: {log}") from None
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise RtlError(f"AXI testbench ended without a result; log: {log}")
    return json.loads(result_path.read_text())
