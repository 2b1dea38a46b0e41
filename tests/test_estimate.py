"""The fast path of the performance model (`codegen.estimate`): a pass's cycles from a sample of
its program, against the full replay of the same program; `--sim model` runs of networks that
compile no instructions."""

import os
import pathlib

import numpy as np
import pytest

from systolab.cache import Recent
from systolab.codegen.builder import EmitLimit, ProgramBuilder
from systolab.codegen.conv import TensorSpec
from systolab.codegen.estimate import PERIODIC_BLOCKS, PERIODS, SAMPLE, estimate_pass, estimate_tiled
from systolab.codegen.gemm import GemmTiling, _layout, schedule_gemm
from systolab.codegen.network import QParams, compile_network, conv_layer, network_reference
from systolab.codegen.onnx_import import generated_inputs
from systolab.codegen.onnx_models import builtin_model
from systolab.config import default_config
from systolab.perf import PerfModel
from systolab.sim.run import run_network, run_onnx

from test_conv import single_layer_net


def test_the_builder_stops_at_its_matmul_limit():
    cfg = default_config()
    b = ProgramBuilder(cfg, matmul_limit=2)
    b.emit("MATMUL", sp_addr=0, acc_addr=0, rows=4, wbuf=0)
    b.emit("MATMUL", sp_addr=0, acc_addr=4, rows=4, wbuf=0)
    with pytest.raises(EmitLimit):
        b.emit("MATMUL", sp_addr=0, acc_addr=8, rows=4, wbuf=0)
    assert [op for op, _ in b.instructions()] == ["MATMUL", "MATMUL"]


def _gemm_pass(cfg, shape, tiling):
    def emit(b):
        schedule_gemm(b, cfg, shape, tiling, _layout(b, cfg, shape, None), relu=False)
    return emit


def _replay(cfg, emit):
    b = ProgramBuilder(cfg)
    emit(b)
    return PerfModel(cfg).predict_insns(b.instructions()).cycles, len(b.instructions())


def test_a_pass_within_the_sample_is_replayed_exactly():
    cfg = default_config()
    shape = (64, 64, 64)
    emit = _gemm_pass(cfg, shape, GemmTiling(64))
    est = estimate_pass(cfg, emit, 64 * 8 * 8)
    assert est.exact
    assert (est.cycles, est.instructions) == _replay(cfg, emit)


@pytest.mark.parametrize("shape, tiling", [((2048, 256, 256), GemmTiling(256)),
                                           ((1024, 512, 128), GemmTiling(128, False, 4))])
def test_a_long_gemm_is_estimated_within_2_percent_of_its_replay(shape, tiling):
    cfg = default_config()
    M, K, N = shape
    emit = _gemm_pass(cfg, shape, tiling)
    est = estimate_pass(cfg, emit, M * (K // cfg.rows) * (N // cfg.cols))
    assert not est.exact
    cycles, insns = _replay(cfg, emit)
    assert insns > 4 * SAMPLE                       # the sample saw a small part of it
    assert abs(est.cycles / cycles - 1) < 0.02, (est.cycles, cycles)
    assert abs(est.instructions / insns - 1) < 0.05


def test_many_short_row_blocks_are_estimated_from_a_few_whole_ones():
    """A pass of many row blocks, each a short loop body (a pool, an add, an early conv on tall
    tiles): its first PERIODS blocks replayed, the rest charged per block, within 1 % of the
    replay of every block."""
    cfg = default_config()
    mt, blocks, K, N = 64, 3 * PERIODIC_BLOCKS, 64, 64
    shape, tiling = (mt * blocks - 17, K, N), GemmTiling(mt)          # a shorter last block
    per_block = (K // cfg.rows) * (N // cfg.cols)
    emit = _gemm_pass(cfg, shape, tiling)
    est = estimate_tiled(cfg, emit, tiling, shape[0], shape[0] * per_block, per_block)
    assert not est.exact
    cycles, insns = _replay(cfg, emit)
    b = ProgramBuilder(cfg, matmul_limit=PERIODS * per_block)
    with pytest.raises(EmitLimit):
        emit(b)
    assert len(b.instructions()) < insns / 4                # what was replayed
    assert abs(est.cycles / cycles - 1) < 0.01, (est.cycles, cycles)
    assert abs(est.instructions / insns - 1) < 0.02


def test_a_3x3_conv_is_estimated_within_3_percent_of_its_replay():
    """A stage-3 ResNet convolution at 224 (14x14x256, 3x3): the tiling search's estimate of the
    chosen tiling against the replay of the whole program."""
    cfg = default_config()
    rng = np.random.default_rng(0)
    weight = rng.integers(-128, 128, (256, 256, 3, 3)).astype(np.int8)
    xq, yq = QParams(0.02, 0, "int8"), QParams(0.5, 0, "int8")

    def make(net, x):
        yield conv_layer("conv", "Conv", x, xq, weight, 0.01, None, "y", yq, pads=(1, 1, 1, 1))
    net, _ = single_layer_net(TensorSpec("x", 1, 14, 14, 256), make)
    compiled = compile_network(cfg, net)
    (layer,) = compiled.layers
    replay = PerfModel(cfg).predict_insns(layer.insns).cycles
    assert abs(layer.predicted / replay - 1) < 0.03, (layer.predicted, replay)
    fast = compile_network(cfg, net, programs=False)
    assert not fast.has_programs and fast.layers[0].predicted == layer.predicted
    assert abs(fast.layers[0].n_instructions / len(layer.words) - 1) < 0.05


def test_sim_model_compiles_no_programs_and_reports_the_reference():
    cfg = default_config()
    path, _ = builtin_model("tiny_resnet")
    inputs = generated_inputs(path)
    fast, outputs = run_onnx(cfg, path, inputs, "model")
    assert fast.status == "pass" and fast.ort["max_diff_lsb"] <= 1
    full = compile_network(cfg, _load(path, inputs))
    assert fast.cycles == sum(c.predicted for c in full.layers)
    assert [r["cycles"] for r in fast.layers if r["where"] == "accelerator"] == \
        [c.predicted for c in full.layers]
    # the values are the numpy reference, which the functional simulator equals
    func = run_network(full, inputs, "func")
    for name in outputs:
        np.testing.assert_array_equal(outputs[name], func.outputs[name])
        np.testing.assert_array_equal(outputs[name], network_reference(full.net, inputs)[1][name])
    with pytest.raises(ValueError, match="only --sim model"):
        run_network(compile_network(cfg, full.net, programs=False), inputs, "func")


def _load(path, inputs):
    from systolab.codegen.onnx_import import load_onnx
    return load_onnx(path, input_shapes={k: v.shape for k, v in inputs.items()})


@pytest.fixture
def cold_memos(tmp_path, monkeypatch):
    """The tiling search's memos empty (on disk and in this process)."""
    from systolab.codegen import conv, estimate
    monkeypatch.setenv("SYSTOLAB_CACHE", str(tmp_path))
    for memo in (conv._TILINGS, conv._ESTIMATES):
        monkeypatch.setattr(memo, "_mem", {})
    monkeypatch.setattr(estimate, "SAMPLES", Recent(estimate.SAMPLES.size, estimate.SAMPLES.weight))
    return estimate


def _configs(**changes):
    base = default_config()
    return [base.replace({k: v}, source=f"{k}={v}") for k, vals in changes.items() for v in vals]


def test_configs_that_differ_only_in_the_memory_port_replay_the_same_samples(cold_memos, monkeypatch):
    """A program does not depend on the memory port: a second bus width emits no sample, and
    its predictions are those of a compile that emitted everything itself."""
    net, _ = single_layer_net(TensorSpec("x", 1, 28, 28, 64), _conv3x3(64))
    wide, narrow = _configs(**{"memory.bus_bytes": [32, 8]})
    compile_network(wide, net, programs=False)
    emitted = []
    real = cold_memos._emit_sample
    monkeypatch.setattr(cold_memos, "_emit_sample", lambda *a: emitted.append(1) or real(*a))
    shared = compile_network(narrow, net, programs=False).layers[0].predicted
    assert emitted == []
    monkeypatch.setattr(cold_memos, "SAMPLES", Recent(cold_memos.SAMPLES.size, cold_memos.SAMPLES.weight))
    from systolab.codegen import conv
    monkeypatch.setattr(conv._TILINGS, "_mem", {})
    monkeypatch.setattr(conv._ESTIMATES, "_mem", {})
    monkeypatch.setenv("SYSTOLAB_CACHE", str(pathlib.Path(os.environ["SYSTOLAB_CACHE"]) / "again"))
    alone = compile_network(narrow, net, programs=False).layers[0].predicted
    assert emitted and shared == alone


def test_the_sample_memo_keeps_at_most_its_instructions(cold_memos):
    s = Recent(10, cold_memos.SAMPLES.weight)
    for k in range(5):
        s.get(k, lambda: ([("SYNC", {})] * 4, 0, True))
    assert s.total <= 10 and s.keys() == [3, 4]
    assert s.get(4, lambda: pytest.fail("emitted again"))[0][0][0] == "SYNC"


def test_a_tiling_search_sees_the_estimates_another_process_stored(cold_memos, monkeypatch):
    """Two sweep workers share the candidates' estimates on disk: what one wrote after the other
    read the memo is seen, and neither overwrites the other's entries."""
    from systolab.codegen import conv
    net, _ = single_layer_net(TensorSpec("x", 1, 28, 28, 64), _conv3x3(64))
    compile_network(default_config(), net, programs=False)
    other = conv.Memo("estimates")                  # another process: its own view
    key = next(iter(conv._ESTIMATES._mem))
    theirs = dict(other.get(key))
    other.put(key, {**theirs, "their candidate": [1, 2, False]})
    conv._ESTIMATES.put(key, {**conv._ESTIMATES.get(key), "my candidate": [3, 4, False]}, merge=True)
    on_disk = conv.Memo("estimates").get(key)
    assert {"their candidate", "my candidate"} <= set(on_disk) and set(theirs) <= set(on_disk)
    assert conv._ESTIMATES.get(key, fresh=True) == on_disk


def test_a_network_s_weight_tiles_are_laid_out_once_per_array_shape(cold_memos, monkeypatch):
    """The chunks and weight tiles of a pass depend on the array's shape and the weights only:
    configs that differ in buffers or memory port reuse them, and get the same image."""
    from systolab.codegen import conv
    net, _ = single_layer_net(TensorSpec("x", 1, 14, 14, 64), _conv3x3(64))
    a, b = _configs(**{"accumulator.depth": [1024, 4096]})
    first = compile_network(a, net)
    split = []
    real = conv._chunk_tiles
    monkeypatch.setattr(conv, "_chunk_tiles", lambda *x: split.append(1) or real(*x))
    second = compile_network(b, net)
    assert split == []
    assert np.array_equal(first.image, second.image)
    monkeypatch.setattr(conv, "_TILE_LAYOUTS", Recent(2))
    third = compile_network(b, net)
    assert split and np.array_equal(third.image, second.image)
    assert third.fused_words == second.fused_words


def _conv3x3(c):
    rng = np.random.default_rng(1)
    weight = rng.integers(-128, 128, (c, c, 3, 3)).astype(np.int8)
    xq, yq = QParams(0.02, 0, "int8"), QParams(0.5, 0, "int8")

    def make(net, x):
        yield conv_layer("conv", "Conv", x, xq, weight, 0.01, None, "y", yq, pads=(1, 1, 1, 1))
    return make
