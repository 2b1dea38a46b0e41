"""The command line: exit codes, one-line errors, the JSON contract."""

import json
import subprocess
import sys

import pytest

from systolab.app import cli
from systolab.sim import run as flow

KEYS = {"status", "sim", "cycles", "ideal_cycles", "macs", "utilization", "config_hash"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "systolab.app.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("sim", ["func", "model"])
def test_run_json(root, sim):
    p = run("run", str(root / "configs/default.yaml"), "--workload", "gemm:37x53x29", "--sim", sim, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert KEYS <= r.keys()
    assert r["status"] == "pass" and r["sim"] == sim
    assert r["macs"] == 37 * 53 * 29 and r["ideal_cycles"] == -(-37 * 53 * 29 // 64)
    if sim == "model":
        assert r["cycles"] >= r["ideal_cycles"]
        assert r["utilization"] == pytest.approx(r["macs"] / (64 * r["cycles"]))


def test_mismatch_exits_1(root, monkeypatch, capsys):
    # a wrong reference stands in for a wrong accelerator: the comparison must catch it
    real = flow.gemm_reference
    monkeypatch.setattr(flow, "gemm_reference", lambda g: real(g) ^ 1)
    code = cli.main(["run", str(root / "configs/default.yaml"), "--workload", "gemm:5x6x7", "--json"])
    assert code == 1
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "fail" and r["mismatches"] == 35


@pytest.mark.parametrize("args, message", [
    (["run", "{cfg}", "--workload", "gemm:4x0x4"],
     "systolab: error: --workload must be gemm:MxKxN with M, K, N >= 1 (e.g. gemm:64x64x64), not 'gemm:4x0x4'"),
    (["run", "{cfg}", "--workload", "gemm:4x4x4", "--sim", "spice"],
     "systolab run: argument --sim: invalid choice: 'spice' (choose from 'func', 'model', 'rtl', 'verilator')"),
    (["run", "{cfg}"], "systolab run: one of the arguments --workload --model is required"),
    (["run", "nope.yaml", "--workload", "gemm:4x4x4"], "systolab: error: nope.yaml: no such config file"),
])
def test_bad_arguments(root, args, message):
    p = run(*[a.replace("{cfg}", str(root / "configs/default.yaml")) for a in args])
    assert p.returncode == 2
    assert p.stderr.strip() == message
    assert "Traceback" not in p.stderr


def test_parse_gemm():
    assert flow.parse_gemm("gemm:1x2x3") == (1, 2, 3)
