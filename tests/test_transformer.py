"""A small BERT encoder layer (seq 16, hidden 64, 2 heads, FFN 128; codegen/onnx_models.py
`small_bert_layer`, quantized by ONNX Runtime) on the functional simulator: bit-exact with
systolab's reference, each operator within 2 LSB of ONNX Runtime given ONNX Runtime's inputs, the
output as close to the float layer as ONNX Runtime's own int8 result. Strided views, errors."""

from pathlib import Path

import numpy as np
import pytest

from systolab.codegen.conv import TensorSpec
from systolab.codegen.onnx_import import ModelError, load_onnx, ort_reference, ort_tensors
from systolab.codegen.onnx_models import calibration_inputs, quantize, small_bert_layer
from systolab.codegen.transformer import SView, layer_agreement
from systolab.config import load_config
from systolab.sim.run import run_onnx

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CFG = load_config(CONFIGS / "transformer_8x8.yaml")


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xformer")
    model = small_bert_layer(seed=0)
    path = quantize(model, tmp / "layer.onnx", calibration_inputs(model, 8))
    x = calibration_inputs(model, 1, seed=99)[0]["x"]
    return model, path, x


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_small_layer_functional(layer):
    import onnxruntime as ort

    model, path, x = layer
    report, outs = run_onnx(CFG, path, {"x": x}, "func")
    assert report.mismatches == 0
    ops = {r["op"] for r in report.layers if r["where"] == "accelerator"}
    assert {"Softmax", "LayerNormalization", "Gelu", "MatMul", "Gemm", "Add", "Div", "Transpose"} <= ops
    assert not [r for r in report.layers if r["where"] == "host" and r["op"] not in ("QuantizeLinear", "DequantizeLinear")]
    fl = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ours, theirs = _cos(outs["y"], fl), _cos(ort_reference(path, {"x": x})["y"], fl)
    print(f"small layer: cosine {ours:.6f} vs float (ONNX Runtime int8 {theirs:.6f}), max {report.ort['max_diff_lsb']} LSB")
    assert abs(ours - theirs) < 0.002
    assert report.ort["max_diff_lsb"] <= 4


def test_small_layer_per_operator(layer):
    _, path, x = layer
    net = load_onnx(path)
    _, theirs = ort_tensors(path, net, {"x": x})
    agree = layer_agreement(net, theirs)
    print("per operator, max LSB vs ONNX Runtime:", agree)
    assert {"qk", "softmax", "pv", "ln1", "ln2", "gelu", "residual1"} <= set(agree)
    assert max(agree.values()) <= 2, agree


def test_views_reshape_transpose():
    spec = TensorSpec("q", 1, 1, 16, 64)
    v = SView.plain(spec, (16, 64)).reshape((16, 2, 32)).transpose((1, 0, 2))
    r = v.rows()
    assert (r.groups, r.g_stride, r.rows, r.r_stride, r.features) == (2, (0, 32), 16, (1, 0), 32)
    kt = SView.plain(spec, (16, 64)).reshape((16, 2, 32)).transpose((1, 2, 0))
    assert kt.rows() is None                       # K^T: the features are not contiguous
    back = v.transpose((1, 0, 2)).reshape((16, 64))
    assert back.is_plain()
    x = np.arange(16 * 64).reshape(16, 64)
    np.testing.assert_array_equal(v.to_storage(x.reshape(16, 2, 32).transpose(1, 0, 2)), x)


def test_unsupported_node_fails_at_once(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["s"], name="sm", axis=0),
                           helper.make_node("Tanh", ["s"], ["y"], name="tanh")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 16])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = quantize(m, tmp_path / "bad.onnx", [{"x": np.ones((16, 16), np.float32)}])
    with pytest.raises(ModelError, match=r"node 'tanh' \(Tanh\): operator not supported; supported: .*Softmax"):
        load_onnx(path)


def test_gelu_erf_pattern(tmp_path):
    """0.5 x (1 + erf(x / sqrt2)) as exported (Div, Erf, Add, Mul, Mul; ORT quantizes between them):
    the Div is fused into the erf kernel, the rest are vector kernels; every operator within 2 LSB."""
    model = small_bert_layer(seed=0, gelu="erf")
    path = quantize(model, tmp_path / "erf.onnx", calibration_inputs(model, 8))
    x = calibration_inputs(model, 1, seed=99)[0]["x"]
    report, _ = run_onnx(CFG, path, {"x": x}, "func")
    assert report.mismatches == 0 and report.status == "pass"
    assert {"Erf", "Mul"} <= {r["op"] for r in report.layers}
    assert report.ort["layer_max_lsb"] <= 2


@pytest.mark.rtl
def test_small_layer_rtl_bit_exact(layer):
    """The small layer on the generated RTL (native Verilator, 8x8, 8 vector lanes): every layer's
    output bit-exact with the functional simulator; the model's cycles within 5 % of the RTL's."""
    from conftest import small_config

    cfg = small_config(8, 8, sp=512, acc=256, latency=8, mem_kib=512, vector={"lanes": 8})
    _, path, x = layer
    func, fout = run_onnx(cfg, path, {"x": x}, "func")
    rtl, rout = run_onnx(cfg, path, {"x": x}, "verilator")
    assert rtl.mismatches == 0 and rtl.status == "pass"
    np.testing.assert_array_equal(rout["y"], fout["y"])
    model, _ = run_onnx(cfg, path, {"x": x}, "model")
    print(f"small layer on RTL 8x8: {rtl.cycles:,} cycles, model {model.cycles:,}")
    assert abs(model.cycles - rtl.cycles) <= 0.05 * rtl.cycles
