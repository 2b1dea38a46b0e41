"""MobileNetV2 as a built-in network (`codegen.onnx_models.mobilenet_v2`): the paper's topology and
multiply-accumulates, and a small one on the functional simulator with a vector unit, bit-exact
with the numpy reference and within 1 LSB of ONNX Runtime at every layer."""

import numpy as np
import onnx
import pytest
from onnx import shape_inference

from systolab.codegen.onnx_import import load_onnx
from systolab.codegen.onnx_models import BUILTIN, builtin_model, mobilenet_v2, parse_builtin
from systolab.sim.run import run_onnx

from test_vector_cnn import CONFIGS

#: torchvision's MobileNetV2 (width 1.0, 224 x 224): multiply-accumulates of its convolutions and FC
MACS_224 = 300_774_272


def _attr(node, name, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _conv_gemm_macs(model) -> int:
    """Multiply-accumulates of the float graph's Conv and Gemm nodes, from ONNX's shape inference."""
    m = shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.value_info) + list(m.graph.output)}
    weights = {i.name: i.dims for i in m.graph.initializer}
    macs = 0
    for node in m.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            w, y = weights[node.input[1]], dims[node.output[0]]
            macs += int(np.prod(y)) * int(np.prod(w[1:]))       # Gemm: y (1, N), w (N, K)
    return macs


def test_mobilenet_v2_topology():
    """17 inverted residual blocks: 17 depthwise 3x3 convs (4 of them strided), 10 identity adds,
    16 expansions (not in the first block), ReLU6 as Clip(0, 6) after every conv but the projections."""
    model = mobilenet_v2()
    nodes = model.graph.node
    weights = {i.name: i.dims for i in model.graph.initializer}
    convs = [n for n in nodes if n.op_type == "Conv"]
    depthwise = [n for n in convs if _attr(n, "group", 1) == weights[n.input[1]][0] > 1]
    assert len(convs) == 52 and len(depthwise) == 17
    assert [_attr(n, "strides", [1, 1])[0] for n in depthwise].count(2) == 4
    assert sum(n.op_type == "Add" for n in nodes) == 10
    assert sum(n.name.endswith("_expand") for n in convs) == 16
    clips = [n for n in nodes if n.op_type == "Clip"]
    assert len(clips) == 52 - 17 and all(len(n.input) == 3 for n in clips)
    assert [weights[n.input[1]][0] for n in convs[:1] + convs[-1:]] == [32, 1280]
    assert list(weights["fc_w"]) == [1000, 1280]
    assert _conv_gemm_macs(model) == MACS_224
    # width 0.35 as Keras and torchvision round it: a 16-channel stem, blocks 8 .. 112, the head 1280
    narrow = mobilenet_v2(size=32, width_mult=0.35)
    outs = [i.dims[0] for i in narrow.graph.initializer if i.name.endswith("_project_w")]
    assert outs == [8, 8, 8, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 56, 56, 56, 112]
    assert [i.dims[0] for i in narrow.graph.initializer if i.name in ("stem_w", "head_w")] == [16, 1280]


def test_builtin_mobilenet_imports_at_224():
    """`mobilenetv2` by name: the quantized model imports with every ReLU6 fused into its conv's
    STORE, and counts the paper's MACs plus the adds and the global average pool."""
    assert parse_builtin("mobilenetv2") == ("mobilenetv2", 224) and "mobilenetv2w35" in BUILTIN
    path, x = builtin_model("mobilenetv2:224")
    net = load_onnx(path)
    ops = [layer.op for layer in net.layers]
    assert ops.count("Conv") == 52 and ops.count("Add") == 10 and "Clip" not in ops
    assert sum("depthwise" in layer.note for layer in net.layers) == 17
    others = sum(layer.macs for layer in net.layers if layer.op in ("Add", "GlobalAveragePool"))
    assert net.macs == MACS_224 + others == 301_053_376
    assert np.load(x).shape == (1, 3, 224, 224)


@pytest.mark.parametrize("spec", ["mobilenetv2:32", "mobilenetv2w35:32"])
def test_small_mobilenet_on_the_functional_simulator(spec):
    """Depthwise convs, the residual adds and the global pool on the vector unit, the rest on the
    array: bit-exact with the numpy reference, every layer within 1 LSB of ONNX Runtime."""
    path, x = builtin_model(spec)
    report, _ = run_onnx(CONFIGS["8x8-v8"], path, {"x": np.load(x)}, "func")
    assert report.mismatches == 0, report.first_mismatch
    assert report.ort["max_diff_lsb"] <= 1 and report.status == "pass"
    layers = [r for r in report.layers if r["where"] == "accelerator"]
    assert all(r["ort_max_lsb"] <= 1 for r in layers)
    units = {r["name"]: r["unit"] for r in layers}
    assert units["s1b1_dw"] == units["s2b2_add"] == units["gap"] == "vector" and units["head"] == "array"
