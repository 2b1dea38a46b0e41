"""`systolab run --model M.mlir`, `--emit-mlir`, `--emit-mlir-steps` and `{mlir: ...}` sweep workloads."""

import json
import subprocess
import sys

import numpy as np
import pytest

from systolab.codegen.mlir_import import EXTRA_LINALG_OPS, load_mlir
from systolab.codegen.mlir_lower import SPLIT
from systolab.codegen.mlir_models import convnet_mlir, gemm_mlir
from systolab.codegen.network import compile_network
from systolab.co_design.spec import parse_sweep
from systolab.config import load_config
from systolab.isa.mlir import mlir_to_programs, mlir_to_words, new_context, systolab_dialect


def run(*args):
    return subprocess.run([sys.executable, "-m", "systolab.app.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlir") / "convnet.mlir"
    convnet_mlir(seed=0).write(path)
    return path


def test_run_mlir_model_and_emit(root, convnet, tmp_path):
    out, emitted = tmp_path / "y.npy", tmp_path / "prog.mlir"
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 3, 8, 8), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    p = run("run", root / "configs/default.yaml", "--model", convnet, "--input", tmp_path / "x.npy", "--output", out,
            "--sim", "model", "--json", "--emit-mlir", emitted)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["status"] == "pass" and r["mismatches"] == 0 and r["cycles"] > 0
    assert r["workload"] == "mlir:convnet.mlir" and r["macs"] == convnet_mlir().macs
    np.testing.assert_array_equal(np.load(out), convnet_mlir(seed=0).reference({"x": x})["result"])
    # the emitted program parses back to the words of the one program the network runs
    cfg = load_config(root / "configs/default.yaml")
    compiled = compile_network(cfg, load_mlir(convnet))
    assert compiled.fused_words is not None and len(compiled.layers) > 1
    assert mlir_to_programs(emitted.read_text(), cfg) == [compiled.fused_words]


def test_emit_mlir_steps(root, convnet, tmp_path):
    emitted = tmp_path / "steps.mlir"
    p = run("run", root / "configs/default.yaml", "--model", convnet, "--sim", "func", "--emit-mlir", emitted,
            "--emit-mlir-steps")
    assert p.returncode == 0, p.stderr
    parts = emitted.read_text().split(SPLIT)
    heads = [part.strip().splitlines()[0] for part in parts]
    assert heads[0].startswith("// step 1: input")
    for step in ("step 2: tiling of conv1", "step 3: buffer assignment of layer conv1",
                 "step 4: scheduling of layer conv1", "step 2: tiling of fc", "step 4: scheduling of layer fc"):
        assert any(h.startswith(f"// {step}") for h in heads), step
    from xdsl.dialects.linalg import Linalg
    from xdsl.ir import Dialect
    from xdsl.parser import Parser
    cfg = load_config(root / "configs/default.yaml")
    own = {op.name for op in EXTRA_LINALG_OPS}
    linalg = Dialect("linalg", [*(o for o in Linalg.operations if o.name not in own), *EXTRA_LINALG_OPS], [])
    for part in parts:                               # every step is MLIR that parses and verifies
        Parser(new_context(linalg, systolab_dialect(cfg)), part).parse_module().verify()
    # the scheduled step is the program that runs
    compiled = compile_network(cfg, load_mlir(convnet))
    scheduled = [part for part, h in zip(parts, heads) if h.startswith("// step 4")]
    assert [mlir_to_words(s, cfg) for s in scheduled] == [cl.words for cl in compiled.layers]


def test_emit_gemm_workload(root, tmp_path):
    emitted = tmp_path / "g.mlir"
    p = run("run", root / "configs/default.yaml", "--workload", "gemm:20x16x12", "--emit-mlir", emitted, "--json")
    assert p.returncode == 0, p.stderr
    cfg = load_config(root / "configs/default.yaml")
    from systolab.codegen.gemm import compile_gemm, random_gemm
    assert mlir_to_words(emitted.read_text(), cfg) == compile_gemm(cfg, random_gemm(20, 16, 12)).words


@pytest.mark.parametrize("op, message", [
    ("%e = linalg.transpose ins(%C : tensor<4x4xi8>) outs(%C : tensor<4x4xi8>) permutation = [1, 0]",
     "linalg.transpose: operation not supported; supported: linalg.matmul, linalg.quantized_matmul,"),
    ("%e = linalg.exp ins(%C : tensor<4x4xi8>) outs(%C : tensor<4x4xi8>) -> tensor<4x4xi8>",
     "linalg.exp: not valid MLIR: "),
])
def test_cli_unsupported_op(root, tmp_path, op, message):
    path = tmp_path / "bad.mlir"
    path.write_text(gemm_mlir(4, 8, 4, resource=False).text.replace("    return %C", f"    {op}\n    return %C"))
    p = run("run", root / "configs/default.yaml", "--model", path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith(f"systolab: error: {path}:29:5: {message}")


def test_emit_checks_first(root, convnet, tmp_path):
    p = run("run", root / "configs/default.yaml", "--model", convnet, "--emit-mlir", tmp_path / "p.txt")
    assert p.returncode == 2 and p.stderr.strip() == f"systolab: error: --emit-mlir must end in .mlir, not '{tmp_path / 'p.txt'}'"
    p = run("run", root / "configs/default.yaml", "--workload", "gemm:4x4x4", "--emit-mlir-steps")
    assert p.returncode == 2 and "--emit-mlir-steps needs --emit-mlir FILE.mlir" in p.stderr


def test_sweep_mlir_workload(tmp_path, convnet):
    spec = parse_sweep({"name": "s", "axes": {"array.rows": [4]}, "workloads": [{"name": "net", "mlir": str(convnet)}],
                        "evaluate": ["model"], "objectives": {"cycles": "min"}}, directory=tmp_path)
    (w,) = spec.workloads
    assert w.spec == f"mlir:{convnet.resolve()}" and w.macs == convnet_mlir().macs
    from systolab.sim.run import run_workload
    r = run_workload(spec.base, w.spec, "model")
    assert r.passed and r.cycles > 0 and r.layers
