"""Timing and area in CI: the board top of a small config goes through Yosys synth_ecp5 and
nextpnr-ecp5 (ULX3S 85F, the board's 25 MHz clock) and must meet its clock. The test fails on a
timing violation (Fmax below the clock in nextpnr's report), not only on a crash.

The flow is `systolab.hw.bitstream.build_board` (the one `systolab build` runs) without the final
ecppack; its result is cached by the design's RTLIL and the tool versions, so an unchanged design
is not placed again.
"""

import json

import pytest

from systolab.app.cli import main
from systolab.app.fpga import BoardError
from systolab.hw.bitstream import (DEFAULT_MEM_KIB, TimingError, _summarize, board_summary_text,
                           build_board, check_mem_kib)

from conftest import small_config

CI_CFG = small_config(2, 2, sp=16, acc=16, bus=4, latency=1, mem_kib=64, queues={"depth": 2})


@pytest.mark.rtl
def test_small_board_meets_board_clock(tmp_path):
    summary = build_board(CI_CFG, tmp_path, mem_kib=1, bitstream=False)
    # the verdict, straight from nextpnr's report
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fmax"], "nextpnr reported no clock"
    for name, clock in report["fmax"].items():
        assert clock["constraint"] == pytest.approx(25.0)
        assert clock["achieved"] >= clock["constraint"], f"{name}: timing violation"
    assert summary["timing_met"] and summary["fmax_mhz"] >= summary["clock_mhz"] == 25.0
    area = summary["area"]
    assert area["lut"] > 0 and area["ff"] > 0 and area["bram"] >= 1
    assert (tmp_path / "summary.txt").read_text().count("MET") == 1


def _fake_build(tmp_path, achieved):
    (tmp_path / "stat.json").write_text(json.dumps({"design": {"num_cells_by_type": {
        "LUT4": 100, "TRELLIS_FF": 50, "MULT18X18D": 2, "DP16KD": 3}}}))
    (tmp_path / "report.json").write_text(json.dumps({
        "fmax": {"clk": {"achieved": achieved, "constraint": 25.0}},
        "utilization": {"DP16KD": {"used": 3, "available": 208}}}))
    return _summarize(tmp_path, 25_000_000, CI_CFG, 1024, 115200, "ulx3s-85f")


def test_timing_verdict(tmp_path):
    ok = _fake_build(tmp_path, 25.5)
    assert ok["timing_met"] and ok["slack_ns"] > 0
    bad = _fake_build(tmp_path, 24.9)
    assert not bad["timing_met"] and bad["slack_ns"] < 0
    text = board_summary_text(bad)
    assert "Fmax 24.90 MHz against the 25 MHz board clock: NOT MET" in text
    assert "DP16KD             3   3 / 208" in text
    assert issubclass(TimingError, Exception) and not issubclass(BoardError, TimingError)


def test_mem_kib_checked():
    cfg = small_config(4, 4, bus=16)
    assert check_mem_kib(DEFAULT_MEM_KIB, cfg) == DEFAULT_MEM_KIB * 1024
    with pytest.raises(Exception, match=r"^--mem-kib must be a power of two \(1, 2, 4, ... KiB\), not 100$"):
        check_mem_kib(100, cfg)
    with pytest.raises(Exception, match=r"^--mem-kib 4096 does not fit the ECP5-85F: the memory alone "
                                        r"needs 2048 DP16KD block RAMs, the device has 208; at most "
                                        r"--mem-kib 256 \(less the core's buffers\)$"):
        check_mem_kib(4096, cfg)
    with pytest.raises(Exception, match=r"^--mem-kib 1 is less than 64 words of 32 bytes; use at least 2$"):
        check_mem_kib(1, small_config(4, 4, bus=32))


def test_block_ram_hint():
    from systolab.config import default_config
    from systolab.hw.bitstream import _mem_hint

    cfg = default_config()           # 16-byte bus: 256 KiB of memory is 128 DP16KD
    assert _mem_hint({"bram": 250}, cfg, 256) == (
        "; the on-chip memory (256 KiB) takes 128 of them, the core 122: use --mem-kib 128")
    assert _mem_hint({"bram": 200}, cfg, 256) == ""
    assert _mem_hint({"bram": 400}, cfg, 1).startswith("; the core alone needs")


def test_build_cli_errors(capsys, root, tmp_path):
    cfg = str(root / "configs" / "default.yaml")
    assert main(["build", cfg, "--board", "ulx3s-85f", "-o", str(tmp_path), "--mem-kib", "4096"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("systolab: error: --mem-kib 4096 does not fit the ECP5-85F") and err.count("\n") == 1
    assert main(["build", cfg, "--board", "ulx3s-12f", "-o", str(tmp_path)]) == 2
    assert "invalid choice: 'ulx3s-12f' (choose from 'ulx3s-85f')" in capsys.readouterr().err
    assert main(["build", cfg, "--board", "ulx3s-85f", "-o", str(tmp_path), "--baud", "3000000"]) == 2
    assert capsys.readouterr().err == ("systolab: error: --baud: baud 3000000 is 4.2% off at 25 MHz "
                                       "(3125000 with 8 cycles per bit); allowed is 2%\n")
    assert main(["fpga", "run", "--port", str(tmp_path / "nope"), "--config", cfg,
                 "--workload", "gemm:8x8x8"]) == 2
    assert capsys.readouterr().err.startswith(f"systolab: error: cannot open serial port {tmp_path / 'nope'}")


def test_a_dsp_shortfall_builds_pe_multipliers_in_logic(tmp_path, monkeypatch):
    """16x16 on the ECP5 85k: 320 MULT18X18D needed, 156 there; the second attempt puts 164 of
    the 256 PE multipliers in logic, and the board's PEs read that budget from the platform."""
    from systolab.hw import bitstream as fpga
    from systolab.hw.synth import DoesNotFit

    cfg = small_config(16, 16)
    budgets = []

    def build_once(cfg, platform, *, dsp_pes=None, **kw):
        budgets.append((dsp_pes, getattr(platform, "dsp_budget", None)))
        if dsp_pes is None:
            raise DoesNotFit("does not fit", {"lut": 18224, "ff": 32086, "dsp": 320, "bram": 182,
                                              "ccu2c": 0, "lutram": 0, "port_bits": 8})
        (tmp_path / "build").mkdir()
        return {"board": "ulx3s-85f", "config": "x", "config_hash": cfg.hash, "array": "16x16",
                "mem_bytes": 1024, "baud": 115200, "dsp": True, "clock_mhz": 25.0, "fmax_mhz": 40.0,
                "timing_met": True, "slack_ns": 15.0, "pe_in_logic": 256 - dsp_pes,
                "area": {"lut": 1, "ff": 1, "dsp": 156, "bram": 1, "ccu2c": 0, "lutram": 0},
                "utilization": {}, "_dir": str(tmp_path / "build")}

    monkeypatch.setattr(fpga, "_build_once", build_once)
    said = []
    summary = build_board(cfg, tmp_path / "out", mem_kib=1, bitstream=False, log=said.append)
    assert [b for b, _ in budgets] == [None, 92] and budgets[0][1] is None
    assert said == ["320 MULT18X18D needed: building 164 of the 256 PE multipliers in logic"]
    assert summary["pe_in_logic"] == 164
    assert "164 PE multipliers in logic" in (tmp_path / "out" / "summary.txt").read_text()
    # --no-dsp: no second attempt, the shortfall is the answer
    budgets.clear()
    with pytest.raises(DoesNotFit):
        build_board(cfg, tmp_path / "out2", mem_kib=1, dsp=False, bitstream=False)
    assert [b for b, _ in budgets] == [None]
