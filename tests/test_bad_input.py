"""Bad input, everywhere: each reproduction of issue 14 gives one line on stderr and exit status 2
(or the right behaviour), without a traceback, and before the work it would waste.

The commands run as a user runs them (`python -m systolab.app.cli ...` in a subprocess), so the
exit status, stdout and stderr are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_resnet

from conftest import ROOT

DEFAULT = ROOT / "configs" / "default.yaml"


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "systolab.app.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def one_line_error(p, pattern: str) -> str:
    """Exit status 2, nothing on stdout, one line on stderr that matches `pattern`."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small quantized ResNet-style model and a float32 input for it."""
    d = tmp_path_factory.mktemp("model")
    m = tiny_resnet(size=8)
    path = d / "m.onnx"
    quantize(m, path, calibration_inputs(m, 2))
    x = calibration_inputs(m, 1, seed=5)[0]["x"]
    np.save(d / "x.npy", x)
    return path, d / "x.npy"


# -- workloads too big for the memory: refused before any operand exists ------------------------------
@pytest.mark.parametrize("shape", ["2048x2048x2048", "100000x100000x100000", "99999999999999999999x9x9"])
def test_an_oversized_gemm_is_refused_at_once(shape, tmp_path):
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text("memory: {size_kib: 4096}\n")
    t0 = time.perf_counter()
    config = pinned if shape == "2048x2048x2048" else DEFAULT
    p = cli("run", config, "--workload", f"gemm:{shape}", "--sim", "func")
    size = "4096" if shape == "2048x2048x2048" else "auto"
    line = one_line_error(p, rf"^systolab: error: gemm:{shape} needs [\d,]+ bytes of external memory "
                             rf"\(operands and result\); memory.size_kib of .*{config.name} is {size}")
    assert time.perf_counter() - t0 < 20          # the interpreter start is most of it
    if shape == "2048x2048x2048":
        assert line.endswith("set memory.size_kib to at least 16384")
    else:
        assert line.endswith("the largest memory (1048576 KiB) cannot hold it")


def test_auto_memory_sizes_itself_to_the_run():
    from systolab.codegen.builder import ProgramBuilder
    from systolab.config import default_config
    from systolab.sim.run import run_program

    cfg = default_config()
    assert not cfg.memory_pinned and cfg.mem_bytes == 4096 * 1024
    assert cfg.sized_for(100).memory.size_kib == 4096
    assert cfg.sized_for(5 << 20).memory.size_kib == 8192
    assert cfg.sized_for(5 << 20).compile_hash == cfg.compile_hash != cfg.sized_for(5 << 20).hash
    pinned = cfg.replace({"memory.size_kib": 256})
    assert pinned.sized_for(5 << 20) is pinned
    # a program whose data lies past the 4 MiB floor runs on a memory sized for it
    b = ProgramBuilder(cfg)
    b.alloc("pad", (5 << 14, 64), "int8")
    x = np.arange(64, dtype=np.int8).reshape(8, 8)
    src = b.alloc("x", (8, 8), "int8", data=x)
    par = b.alloc("p", (4, 8), "int32", data=np.array([[0] * 8, [1 << 30] * 8, [30] * 8, [0] * 8], np.int32))
    dst = b.alloc("y", (8, 8), "int8")
    assert dst.addr > 4 << 20
    b.emit("LOAD", dram_addr=src.addr, dram_stride=8, rows=8, sp_addr=0)
    b.emit("PRELOAD", sp_addr=0, wbuf=0)                                       # x as the weights
    b.emit("MATMUL", sp_addr=0, acc_addr=0, rows=8, wbuf=0, accumulate=0)
    b.emit("STORE", dram_addr=dst.addr, dram_stride=8, rows=8, acc_addr=0, param_addr=par.addr)
    out = run_program(cfg, b.finish(("y",), {}), "func")
    assert out.memory.size == 8192 * 1024
    expect = np.clip(((x.astype(np.int64) @ x.T.astype(np.int64)) * (1 << 30) + (1 << 29)) >> 30, -128, 127)
    np.testing.assert_array_equal(out.outputs["y"], expect)


def test_an_oversized_network_is_refused_before_its_layers_are_scheduled(model, tmp_path, monkeypatch):
    from systolab.codegen import network
    from systolab.codegen.onnx_import import load_onnx
    from systolab.config import default_config
    from systolab.errors import CompileError

    cfg = default_config().replace({"memory.size_kib": 64}, source="small.yaml")
    m = tiny_resnet(size=96)
    quantize(m, tmp_path / "big.onnx", calibration_inputs(m, 1))
    net = load_onnx(tmp_path / "big.onnx")
    scheduled = []
    monkeypatch.setattr(network, "_schedule", lambda *a, **k: scheduled.append(a) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(CompileError, match=r"^big needs [\d,]+ bytes of external memory \(tensors and "
                                           r"weights\); memory.size_kib of small.yaml is 64 \(65,536 bytes\); "
                                           r"set memory.size_kib to at least \d+$"):
        network.compile_network(cfg, net, im2col="dma")
    assert scheduled == []


# -- files the user gave ------------------------------------------------------------------------------
def test_output_equal_to_input_is_refused_and_the_input_kept(model):
    path, x = model
    before = digest(x)
    p = cli("run", DEFAULT, "--model", path, "--input", x, "--output", x)
    one_line_error(p, r"^systolab: error: --output .*x.npy: is also an input of this run \(.*x.npy\); it "
                      r"would be overwritten, choose another file$")
    assert digest(x) == before


@pytest.mark.parametrize("where, pattern", [
    ("missing/y.npy", r"--output missing/y.npy: folder 'missing' does not exist$"),
    ("adir.npy", r"--output adir.npy: is a folder; give a file name$"),
    ("y.txt", r"--output must end in .npy or .npz, not 'y.txt'$"),
])
def test_output_checked_before_the_run(model, tmp_path, where, pattern):
    (tmp_path / "adir.npy").mkdir()
    path, x = model
    t0 = time.perf_counter()
    p = cli("run", DEFAULT, "--model", path, "--input", x, "--output", where, "--sim", "rtl", cwd=tmp_path)
    one_line_error(p, pattern)
    assert time.perf_counter() - t0 < 30              # no Verilator build happened


@pytest.mark.parametrize("value, pattern", [
    (np.zeros((1, 3, 8, 8), np.int64), r"input 'x' has dtype int64; the model takes float32"),
    (np.array(["a"]), r"input 'x' has dtype <U1; the model takes float32"),
    (np.zeros((1, 3, 8), np.float32), r"input 'x' has shape \[1, 3, 8\]; the model expects \[1, 3, 8, 8\]"),
])
def test_a_bad_input_array_is_refused_before_compiling(model, tmp_path, value, pattern):
    path, _ = model
    np.save(tmp_path / "bad.npy", value)
    one_line_error(cli("run", DEFAULT, "--model", path, "--input", tmp_path / "bad.npy"), pattern)


@pytest.mark.parametrize("kind", ["config", "sweep", "base"])
def test_a_non_utf8_yaml_file_is_one_line(tmp_path, kind):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"array:\n  rows: \xff\n")
    if kind == "config":
        p = cli("run", bad, "--workload", "gemm:8x8x8")
    elif kind == "sweep":
        p = cli("sweep", bad, "--out", tmp_path / "o")
    else:
        sweep = tmp_path / "s.yaml"
        sweep.write_text(yaml.safe_dump({"name": "s", "base": "bad.yaml", "axes": {"array.rows": [2]},
                                         "workloads": [{"gemm": [8, 8, 8]}], "evaluate": ["func"],
                                         "objectives": {"pes": "min"}}))
        p = cli("sweep", sweep, "--out", tmp_path / "o")
    one_line_error(p, r"bad.yaml: not a text file: byte 15 is not UTF-8 \(a (config|sweep) file is YAML text\)$")


def test_seed_must_be_in_range():
    one_line_error(cli("run", DEFAULT, "--workload", "gemm:8x8x8", "--seed", "-1"),
                   r"^systolab run: argument --seed: must be an integer from 0 to 4294967295, not '-1'$")


@pytest.mark.parametrize("what", ["missing", "truncated"])
def test_a_sweep_onnx_workload_that_is_not_there(tmp_path, model, what):
    m = tmp_path / "m.onnx"
    if what == "truncated":
        m.write_bytes(model[0].read_bytes()[:200])
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "axes": {"array.rows": [2]}, "workloads": [{"onnx": "m.onnx"}],
                                     "evaluate": ["func"], "objectives": {"pes": "min"}}))
    p = cli("sweep", sweep, "--out", tmp_path / "o")
    one_line_error(p, r"s.yaml: workloads\[0\].onnx .*m.onnx: (no such model file|not an ONNX model)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["generate", "sweep", "report"])
def test_an_output_folder_that_is_a_file(tmp_path, command):
    target = tmp_path / "taken"
    target.write_text("mine")
    if command == "generate":
        p = cli("generate", DEFAULT, "-o", target)
        option = "-o"
    elif command == "sweep":
        p = cli("sweep", ROOT / "configs/sweeps/model_grid.yaml", "--out", target)
        option = "--out"
    else:
        db = _a_store(tmp_path)
        p = cli("report", db, "--out", target)
        option = "--out"
    one_line_error(p, rf"{option} .*taken: is an existing file, not a folder$")
    assert target.read_text() == "mine"


# -- results stores: report only reads ----------------------------------------------------------------
def _a_store(tmp_path) -> Path:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({"name": "tiny", "axes": {"array.rows": [2, 4]},
                                     "workloads": [{"gemm": [8, 8, 8]}], "evaluate": ["func"],
                                     "objectives": {"pes": "min"}}))
    p = cli("sweep", sweep, "--out", tmp_path / "store", "--no-progress", "-j", "1")
    assert p.returncode == 0, p.stderr
    return tmp_path / "store" / "results.sqlite"


def test_report_does_not_write_to_a_foreign_database(tmp_path):
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (x)")
    before = digest(db)
    one_line_error(cli("report", db, "--out", tmp_path / "r"),
                   r"other.sqlite: not a systolab results store \(it has tables t\)$")
    assert digest(db) == before and not Path(f"{db}-wal").exists()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_report_does_not_create_tables_in_an_empty_file(tmp_path):
    db = tmp_path / "empty.sqlite"
    db.write_bytes(b"")
    one_line_error(cli("report", db), r"empty.sqlite: not a systolab results store \(it has no tables\)$")
    assert db.read_bytes() == b""


def test_report_on_a_damaged_store_is_one_line(tmp_path):
    db = _a_store(tmp_path)
    raw = bytearray(db.read_bytes())
    page = 4096
    raw[2 * page: 3 * page] = b"\xa5" * page         # scribble over a b-tree page
    db.write_bytes(bytes(raw))
    p = cli("report", db, "--out", tmp_path / "r")
    one_line_error(p, r"results.sqlite: not a systolab results store \(.*(malformed|corrupt|not a database).*\)$")


def test_report_leaves_the_store_unchanged(tmp_path):
    db = _a_store(tmp_path)
    before = digest(db)
    p = cli("report", db, "--out", tmp_path / "again")
    assert p.returncode == 0, p.stderr
    assert digest(db) == before


def test_sweep_refuses_a_foreign_database_before_touching_it(tmp_path):
    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE users (name)")
    before = digest(db)
    p = cli("sweep", ROOT / "configs/sweeps/model_grid.yaml", "--db", db, "--out", tmp_path / "o")
    one_line_error(p, r"app.sqlite: not a systolab results store \(it has tables users\); give --db a new file")
    assert digest(db) == before
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


# -- sweeps: limits, failures, signals ----------------------------------------------------------------
def test_limits_max_cycles_reaches_the_simulator(tmp_path):
    from systolab.co_design.store import ResultStore

    sweep = tmp_path / "lim.yaml"
    sweep.write_text(yaml.safe_dump({"name": "lim", "axes": {"array.rows": [4]},
                                     "workloads": [{"gemm": [64, 64, 64]}], "evaluate": ["model"],
                                     "objectives": {"cycles": "min"}, "limits": {"max_cycles": 100}}))
    p = cli("sweep", sweep, "--out", tmp_path / "o", "--no-progress", "-j", "1")
    assert p.returncode == 1, p.stderr                 # every evaluation failed: not a success
    assert "systolab sweep: 1 evaluation failed" in p.stderr
    with ResultStore(tmp_path / "o" / "results.sqlite", readonly=True) as store:
        (row,) = store.results().values()
    assert row["status"] == "failed"
    assert "more than max_cycles (100)" in row["error"]


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _sweep_with_workers(tmp_path, stderr=subprocess.DEVNULL):
    sweep = tmp_path / "slow.yaml"
    sweep.write_text(yaml.safe_dump({"name": "slow", "axes": {"array.rows": [2, 4, 8], "array.cols": [2, 4]},
                                     "workloads": [{"gemm": [256, 256, 256]}], "evaluate": ["func"],
                                     "objectives": {"pes": "min"}}))
    proc = subprocess.Popen([sys.executable, "-m", "systolab.app.cli", "sweep", str(sweep), "--out",
                             str(tmp_path / "o"), "-j", "2", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:   # 2 workers + the tracker
        time.sleep(0.05)
    kids = _children(proc.pid)
    assert len(kids) >= 2, kids
    return proc, kids


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


def _left_behind(kids) -> list[int]:
    """The children still alive 30 s after their parent ended (they get SIGKILL from the kernel
    when it dies, or exit when their pipe closes: a moment, not at once)."""
    deadline = time.monotonic() + 30
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [k for k in kids if _alive(k)]


def test_kill_9_of_a_sweep_leaves_no_process(tmp_path):
    proc, kids = _sweep_with_workers(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _left_behind(kids) == []


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    from systolab.co_design.store import ResultStore

    proc, kids = _sweep_with_workers(tmp_path, stderr=subprocess.PIPE)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().endswith("systolab: interrupted"), err
    assert _left_behind(kids) == []
    with ResultStore(tmp_path / "o" / "results.sqlite", readonly=True) as store:
        assert store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
