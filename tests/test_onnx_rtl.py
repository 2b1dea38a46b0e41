"""A small quantized ResNet-style model on the generated RTL, layer by layer, on two configs:
bit-exact against systolab's numpy reference, within 1 LSB of ONNX Runtime, cycles from the
hardware counter of each layer's run, and the performance model close to them.

The first run per config generates and builds the Verilog (cached by its hash, systolab.cache)."""

import pytest

from systolab.sim.run import run_onnx
from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_resnet
from conftest import small_config

pytestmark = pytest.mark.rtl

#: two array shapes with buffers and memory small enough to build quickly
CONFIGS = {
    "8x8": small_config(8, 8, sp=1024, acc=256, bus=16, latency=8, mem_kib=256),
    "16x16": small_config(16, 16, sp=512, acc=128, bus=16, latency=8, mem_kib=256),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = tiny_resnet(channels=(13, 21), size=12, classes=5, seed=2)
    path = tmp_path_factory.mktemp("rtl") / "tiny.onnx"
    quantize(m, path, calibration_inputs(m, 8), fmt="qdq")
    return path, calibration_inputs(m, 1, seed=3)[0]


@pytest.mark.parametrize("sim", ["rtl", "verilator"])
@pytest.mark.parametrize("name", CONFIGS)
def test_model_on_rtl(model, name, sim):
    cfg = CONFIGS[name]
    path, x = model
    result, _ = run_onnx(cfg, path, x, sim)
    assert result.mismatches == 0, result.first_mismatch
    assert result.ort["max_diff_lsb"] <= 1
    layers = [layer for layer in result.layers if layer["where"] == "accelerator"]
    assert all(layer["cycles"] > 0 for layer in layers)
    assert result.cycles == sum(layer["cycles"] for layer in layers)
    # the performance model (perf/model.py) tells the layers apart like the hardware counter does
    # (a sanity bound: its accuracy is tested with the model itself)
    predicted, _ = run_onnx(cfg, path, x, "model", compare_ort=False)
    for got, want in zip(layers, [layer for layer in predicted.layers if layer["where"] == "accelerator"]):
        assert got["cycles"] / 2 <= want["cycles"] <= got["cycles"] * 2, got["name"]
    assert predicted.cycles == pytest.approx(result.cycles, rel=0.25)


@pytest.mark.parametrize("sim", ["verilator"])
def test_rounding_ties_on_rtl(tmp_path, sim):
    """A 2x2 average pool that keeps its scale makes exact ties on about a quarter of its outputs:
    the RTL's STORE rounds them to even (round_even, set for ONNX models) bit for bit as the
    functional simulator does."""
    import numpy as np
    from onnx import helper

    from systolab.codegen.onnx_models import float_model

    rng = np.random.default_rng(0)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), n("Relu", ["c"], ["r"]),
             n("AveragePool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    m = float_model(nodes, {"x": [1, 4, 8, 8]}, {"y": [1, 8, 4, 4]},
                    {"w": rng.normal(0, .3, (8, 4, 3, 3)), "b": rng.normal(0, .1, 8)})
    path = quantize(m, tmp_path / "avg.onnx", calibration_inputs(m, 4))
    x = calibration_inputs(m, 1, seed=10)[0]
    result, _ = run_onnx(CONFIGS["8x8"], path, x, sim)
    assert result.mismatches == 0, result.first_mismatch
    assert result.ort["max_diff_lsb"] <= 1
    pool = next(layer for layer in result.layers if layer["op"] == "AveragePool")
    assert pool["ort_max_lsb"] <= 1
