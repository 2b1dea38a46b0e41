import subprocess
import sys

import pytest

from systolab.config import ConfigError, config_from_dict, default_config, load_config


def write(tmp_path, text, name="acc.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_yaml_loads(root):
    cfg = load_config(root / "configs" / "default.yaml")
    assert (cfg.rows, cfg.cols) == (8, 8)
    assert cfg.memory.bus_bytes == 16 and cfg.memory.latency == 32


def test_non_square_and_hash():
    a = config_from_dict({"array": {"rows": 4, "cols": 8}})
    b = config_from_dict({"array": {"rows": 8, "cols": 4}})
    assert (a.rows, a.cols) == (4, 8)
    assert a.hash != b.hash
    assert a.hash == config_from_dict({"array": {"rows": 4, "cols": 8}}, source="elsewhere").hash


def test_frozen():
    cfg = default_config()
    with pytest.raises(AttributeError):
        cfg.array.rows = 4


def test_replace_validates():
    cfg = default_config().replace({"array.rows": 16, "scratchpad.depth": 256})
    assert cfg.rows == 16 and cfg.scratchpad.depth == 256
    with pytest.raises(ConfigError, match=r"array.rows must be a power of two from 1 to 64, not 12$"):
        default_config().replace({"array.rows": 12})


@pytest.mark.parametrize("text, message", [
    ("array: {rows: 8, colz: 8}\n",
     r"^{f}: unknown key array.colz; valid keys in array are rows, cols$"),
    ("arrays: {rows: 8}\n",
     r"^{f}: unknown key 'arrays'; valid sections are array, scratchpad, accumulator, memory, queues, vector$"),
    ("array: {rows: eight}\n",
     r"^{f}: array.rows must be a power of two from 1 to 64, not 'eight'$"),
    ("array: {rows: 128}\n",
     r"^{f}: array.rows must be a power of two from 1 to 64, not 128$"),
    ("memory: {latency: 0}\n",
     r"^{f}: memory.latency must be an integer from 1 to 1024, not 0$"),
    ("memory: {latency: true}\n",
     r"^{f}: memory.latency must be an integer from 1 to 1024, not True$"),
    ("accumulator: {depth: 32768}\n",
     r"^{f}: accumulator.depth must be at most 16384 for this ISA: with 32768 rows a STORE instruction "
     r"needs 129 bits of the 128-bit instruction word$"),
    ("array: [8, 8]\n",
     r"^{f}: array must be a mapping with keys rows, cols, not \[8, 8\]$"),
    ("array: {rows: 8\n  cols: 8}\n",
     r"^{f}: YAML syntax error at line 2, column 7: .*$"),
])
def test_bad_configs(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("{f}", str(p).replace("/", r"\/"))):
        load_config(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such config file$"):
        load_config(tmp_path / "nope.yaml")


def test_cli_bad_config_one_line_exit_2(tmp_path):
    p = write(tmp_path, "array: {rows: 3}\n")
    proc = subprocess.run([sys.executable, "-m", "systolab.app.cli", "run", str(p), "--workload", "gemm:4x4x4"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"systolab: error: {p}: array.rows must be a power of two from 1 to 64, not 3"
    assert proc.stdout == ""
