"""The AXI top (hw/axi.py): unit tests of its adapters in Amaranth's simulator, and compiled GEMMs
on the generated Verilog under cocotb + Verilator, driven by cocotbext-axi's models (`AxiRam`
memory, `AxiLiteMaster` host) through `systolab.driver.Driver` (testbench: sim/axi_tb.py)."""

import numpy as np
import pytest

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm
from systolab.config import default_config
from systolab.hw.counters import COUNTERS
from systolab.hw.verilog import generate_verilog
from systolab.sim.functional import FunctionalSim

from conftest import small_config

CFG = small_config()           # 4x4, bus 16 bytes


# -- cocotb + Verilator with cocotbext-axi -----------------------------------------------------------

@pytest.fixture(scope="module")
def axi_run(tmp_path_factory):
    from systolab.sim.axi_tb import axi_program, build_axi, run_axi

    build = build_axi(generate_verilog(CFG, top="axi"))
    run_dir = tmp_path_factory.mktemp("axi")
    small = random_gemm(12, 20, 8, seed=2, relu=True)
    gemms = [("plain", random_gemm(16, 16, 16, seed=1), False, False),
             ("backpressure+irq", small, True, True),
             ("no backpressure", small, False, False)]
    cases, expect = [], []
    for i, (name, g, pause, irq) in enumerate(gemms):
        program = compile_gemm(CFG, g)
        cases.append(axi_program(run_dir, i, program, gemm_reference(g), pause=pause, irq=irq, seed=i + 1))
        expect.append({"name": name, "reference": gemm_reference(g),
                       "array_busy": FunctionalSim(CFG).run(program).matmul_rows})
    foreign = compile_gemm(default_config(), random_gemm(8, 8, 8))
    foreign.save(run_dir / "foreign.npz")
    result = run_axi(build, run_dir, cases=cases, mem_bytes=CFG.mem_bytes, foreign="foreign.npz")
    return run_dir, result, expect


@pytest.mark.rtl
def test_axi_gemms_bit_exact(axi_run):
    run_dir, result, expect = axi_run
    assert result["info"]["rows"] == CFG.rows and result["info"]["bus_bytes"] == CFG.memory.bus_bytes
    for i, (case, exp) in enumerate(zip(result["cases"], expect)):
        assert case["status"] == "done", (exp["name"], case.get("error"))
        np.testing.assert_array_equal(np.load(run_dir / f"out{i}.npy"), exp["reference"],
                                      err_msg=exp["name"])
        assert case["mismatches"] == 0
        assert case["final_status"] == {"busy": 0, "done": 1, "bus_error": 0}


@pytest.mark.rtl
def test_axi_counters_match_the_bus(axi_run):
    """Counters read over AXI4-Lite: array_busy is the rows the program streams through the array;
    every core read is one R beat, every core write one AW."""
    _, result, expect = axi_run
    for case, exp in zip(result["cases"], expect):
        c, axi = case["counters"], case["axi"]
        assert list(c) == list(COUNTERS)
        assert c["array_busy"] == exp["array_busy"], exp["name"]
        assert 0 < c["array_busy"] < c["cycles"]
        assert axi["ar_beats"] == c["mem_reads"], exp["name"]
        assert axi["aw_beats"] == axi["aw_bursts"] == c["mem_writes"], exp["name"]
        assert axi["ar_max_beats"] > 1, f"{exp['name']}: no read was coalesced into a burst"
        assert axi["ar_bursts"] < c["mem_reads"]
    paused, unpaused = result["cases"][1:]
    assert paused["counters"]["cycles"] > unpaused["counters"]["cycles"], "the RAM did not pause"
    for name in ("mem_reads", "mem_writes", "array_busy"):
        assert paused["counters"][name] == unpaused["counters"][name]


@pytest.mark.rtl
def test_axi_interrupt_and_refusal(axi_run):
    _, result, expect = axi_run
    plain, irq, _ = result["cases"]
    assert not plain["interrupt"] and not plain["interrupt_after"]
    assert irq["interrupt"], "the interrupt did not rise at done"
    assert not irq["interrupt_after"], "the driver did not clear the interrupt"
    assert result["foreign"].startswith("program was compiled for config ")
