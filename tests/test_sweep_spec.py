"""Sweep files: what is accepted, and the one-line errors for what is not (pinned)."""

import re

import pytest
import yaml

from systolab.codegen.onnx_models import BUILTIN

from systolab.app.cli import main
from systolab.co_design.spec import SweepError, load_sweep
from systolab.errors import UserError

BASE = {
    "name": "t",
    "base": "acc.yaml",
    "axes": {"array.rows": [4, 8], "scratchpad.depth": [256, 1024]},
    "workloads": [{"name": "fc", "gemm": [16, 32, 8]}],
    "evaluate": ["model"],
    "objectives": {"cycles": "min"},
}


def write(tmp_path, changes=None, *, drop=(), name="sweep.yaml"):
    (tmp_path / "acc.yaml").write_text("array: {rows: 8, cols: 8}\n")
    raw = {**BASE, **(changes or {})}
    for k in drop:
        raw.pop(k)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def test_valid_file(tmp_path, root):
    spec = load_sweep(write(tmp_path, {"constraints": {"cycles": {"max": 10_000}},
                                       "set": {"memory.size_kib": 256, "array.cols": 4},
                                       "search": {"method": "random", "budget": 3, "seed": 7}}))
    assert spec.name == "t" and spec.grid_size == 4
    assert spec.base.rows == 8 and spec.base.cols == 4 and spec.base.memory.size_kib == 256
    assert [p.config.scratchpad.depth for p in spec.grid()] == [256, 1024, 256, 1024]
    assert spec.workloads[0].spec == "gemm:16x32x8" and spec.workloads[0].macs == 16 * 32 * 8
    assert spec.search.promote == "front" and spec.search.budget == 3
    assert spec.limits.timeout_s == 3600


def test_shipped_sweeps_load(root):
    files = sorted((root / "configs" / "sweeps").glob("*.yaml"))
    assert any(f.name == "demo.yaml" for f in files)
    for f in files:
        spec = load_sweep(f)
        assert spec.workloads and spec.objectives


def test_demo_screens_a_network_with_the_model_and_measures_the_best(root):
    spec = load_sweep(root / "configs" / "sweeps" / "demo.yaml")
    assert set(spec.evaluate) == {"model", "rtl", "synth"}
    assert spec.search.method == "grid" and spec.search.screens and spec.search.promote == 3
    assert {"array.rows", "scratchpad.depth"} <= set(spec.axes)
    assert len(list(spec.grid())) > 4
    assert any(w.onnx for w in spec.workloads) and any(not w.onnx for w in spec.workloads)
    assert any(w.name == "resnet18" and w.onnx_macs > 2_000_000 for w in spec.workloads)   # a real ResNet-18


ERRORS = [
    ({"serach": {"method": "grid"}},
     "unknown key 'serach'; valid keys are name, description, base, set, axes, workloads, evaluate, "
     "objectives, constraints, search, limits"),
    ({"set": {"memory.size": 64}},
     "set: unknown config key 'memory.size'; valid keys are array.rows, array.cols, scratchpad.depth, "
     "accumulator.depth, memory.bus_bytes, memory.latency, memory.size_kib, queues.depth, vector.lanes"),
    ({"set": {"memory.size_kib": 100}}, "set: memory.size_kib must be a power of two from 64 to 1048576 or auto, not 100"),
    ({"axes": {"array.row": [4]}},
     "axes: unknown config key 'array.row'; valid keys are array.rows, array.cols, scratchpad.depth, "
     "accumulator.depth, memory.bus_bytes, memory.latency, memory.size_kib, queues.depth, vector.lanes"),
    ({"axes": {"array.rows": [4, 12]}}, "axes: array.rows must be a power of two from 1 to 64, not 12"),
    ({"axes": {"array.rows": []}}, "axes.array.rows must be a non-empty list of values, not []"),
    ({"axes": {"array.rows": [4, 4]}}, "axes.array.rows must not repeat a value: [4, 4]"),
    ({"workloads": [{"name": "fc", "gemm": [16, 32]}]},
     "workloads[0].gemm must be [M, K, N] with integers >= 1, not [16, 32]"),
    ({"workloads": [{"name": "fc", "gemm": [16, 32, 8], "relu": True}]},
     "unknown key 'workloads[0].relu'; valid keys in workloads[0] are name, gemm, onnx, mlir, network, seed"),
    ({"workloads": [{"name": "a", "gemm": [1, 2, 3]}, {"name": "a", "gemm": [4, 5, 6]}]},
     "workloads[1].name must be unique, 'a' is used twice"),
    ({"evaluate": ["model", "gpu"]}, "evaluate entries must be model, rtl, synth, func, not 'gpu'"),
    ({"objectives": {"latency": "min"}},
     "objectives: unknown metric 'latency'; valid metrics are cycles, utilization, latency_s, gops, "
     "gops_per_klut, gops_per_dsp, model_cycles, rtl_cycles, lut, ff, dsp, bram, comb, fmax_mhz, pes, "
     "sram_kib"),
    ({"objectives": {"lut": "min"}}, "objectives.lut needs synth in evaluate (evaluate is model)"),
    ({"objectives": {"latency_s": "min"}, "evaluate": ["synth"]},
     "objectives.latency_s needs model or rtl in evaluate (evaluate is synth)"),
    ({"objectives": {"cycles": "smallest"}}, "objectives.cycles must be min or max, not 'smallest'"),
    ({"constraints": {"lut": {"max": 83000}}}, "constraints.lut needs synth in evaluate (evaluate is model)"),
    ({"constraints": {"cycles": {"maximum": 5}}},
     "unknown key 'constraints.cycles.maximum'; valid keys in constraints.cycles are min, max"),
    ({"constraints": {"cycles": {"min": 9, "max": 5}}}, "constraints.cycles min must not exceed max (9 > 5)"),
    ({"search": {"method": "annealing"}},
     "search.method must be one of grid, random, optuna, not 'annealing'"),
    ({"search": {"method": "random"}},
     "search needs budget (the number of points to evaluate) for method random"),
    ({"search": {"method": "random", "budget": 5}}, "search.budget must be at most the 4 points of the grid, not 5"),
    ({"search": {"method": "grid", "budget": 5}}, "unknown key 'search.budget'; valid keys in search are method, promote"),
    ({"search": {"method": "optuna", "budget": 5, "sampler": "cmaes"}},
     "search.sampler must be one of nsga2, tpe, not 'cmaes'"),
    ({"search": {"method": "optuna", "budget": 5}, "evaluate": ["synth"], "objectives": {"lut": "min"}},
     "evaluate must include model for search.method optuna (it scores every trial with the performance model)"),
    ({"search": {"method": "random", "budget": 2, "promote": 1}, "evaluate": ["rtl"]},
     "evaluate must include model for search.promote 1 (the model picks the points that go to rtl)"),
    ({"search": {"method": "grid", "promote": 0}}, "search.promote must be all, front or an integer >= 1, not 0"),
    ({"limits": {"timeout_s": 0}}, "limits.timeout_s must be a number of seconds > 0, not 0"),
    ({"limits": {"max_cycles": 1.5}}, "limits.max_cycles must be an integer >= 1, not 1.5"),
    ({"name": "my sweep"}, "name must be a name of letters, digits, '_', '.' and '-', not 'my sweep'"),
    ({"base": "missing.yaml"}, "base names no config file: 'missing.yaml' (looked for {dir}/missing.yaml)"),
    ({"workloads": [{"network": "resnet19:32"}]},
     f"workloads[0].network must be NAME[:SIZE] with NAME one of {', '.join(BUILTIN)}, not 'resnet19:32'"),
    ({"workloads": [{"network": "tiny_resnet:4"}]},
     "workloads[0].network must be NAME[:SIZE] with SIZE an integer from 8 to 1024, not 'tiny_resnet:4'"),
    ({"workloads": [{"network": "tiny_resnet", "gemm": [1, 2, 3]}]},
     "workloads[0] has network and gemm; give one"),
]


@pytest.mark.parametrize("changes, message", ERRORS, ids=[m.split(" ")[0] for _, m in ERRORS])
def test_errors_are_one_line(tmp_path, changes, message):
    path = write(tmp_path, changes)
    expected = f"{path}: " + message.format(dir=tmp_path)
    with pytest.raises(SweepError, match=f"^{re.escape(expected)}$"):
        load_sweep(path)


def test_a_network_built_in_code_is_a_workload(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSTOLAB_CACHE", str(tmp_path / "cache"))
    spec = load_sweep(write(tmp_path, {"workloads": [{"network": "tiny_resnet:12"}]}))
    w, = spec.workloads
    assert w.name == "tiny_resnet_12" and w.onnx.startswith(str(tmp_path / "cache" / "models"))
    assert w.macs > 0 and w.spec == f"onnx:{w.onnx}"


def test_missing_required_key(tmp_path):
    path = write(tmp_path, drop=("objectives",))
    with pytest.raises(SweepError, match=f"^{re.escape(str(path))}: missing key 'objectives'$"):
        load_sweep(path)


def test_yaml_syntax_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\naxes: {array.rows: [4, 8}\n")
    with pytest.raises(SweepError, match=rf"^{re.escape(str(p))}: YAML syntax error at line 2, column \d+: "):
        load_sweep(p)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(SweepError, match=f"^{re.escape(str(p))}: no such sweep file$"):
        load_sweep(p)


def test_bad_base_config_names_its_file(tmp_path):
    path = write(tmp_path)
    (tmp_path / "acc.yaml").write_text("array: {rows: 3}\n")
    with pytest.raises(UserError, match=r"acc.yaml: array.rows must be a power of two"):
        load_sweep(path)


def test_cli_bad_file_exits_2_with_one_line_and_no_work(tmp_path, capsys):
    path = write(tmp_path, {"evaluate": ["model", "gpu"]})
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"systolab: error: {path}: evaluate entries must be model, rtl, synth, func, not 'gpu'\n"
    assert not out.exists()          # nothing ran, no store was created


def test_cli_bad_arguments_exit_2(tmp_path, capsys):
    path = write(tmp_path)
    assert main(["sweep", str(path), "-j", "0"]) == 2
    assert "-j/--jobs: must be a positive integer, not '0'" in capsys.readouterr().err
    assert main(["sweep", str(path), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == "systolab: error: --scheduler needs --executor dask\n"
    assert main(["report", str(tmp_path / "none.sqlite")]) == 2
    assert capsys.readouterr().err == f"systolab: error: {tmp_path / 'none.sqlite'}: no such results store\n"
