"""Quantized ONNX models built in code, quantized by ONNX Runtime over generated calibration data,
run on the functional simulator and the performance model: bit-exact against systolab's numpy
reference and within 1 LSB of ONNX Runtime on every element."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from systolab.codegen.network import compile_network, network_reference
from systolab.codegen.onnx_import import ModelError, load_onnx, ort_reference
from systolab.sim.run import run_network, run_onnx
from systolab.codegen.onnx_models import calibration_inputs, float_model, op_zoo, quantize, tiny_resnet
from systolab.config import default_config
from systolab.metrics import utilization
from systolab.sim.functional import FunctionalSim

from conftest import small_config

CFG8 = default_config()
CFG16 = default_config().replace({"array.rows": 16, "array.cols": 16}, source="<8x8 as 16x16>")
CFG4x8 = small_config(4, 8, sp=512, acc=128, mem_kib=1024)


def with_intermediate_outputs(model, names, batch=None):
    """The model with more tensors exposed as outputs (so ORT's values are compared too), and a
    symbolic batch when `batch` is set."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in names:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    if batch:
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return m


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Quantized test models by (name, format)."""
    tmp = tmp_path_factory.mktemp("models")
    out = {}
    resnet = with_intermediate_outputs(tiny_resnet(seed=3, size=20), ["r1", "p1", "r2", "r3", "r4", "g"], batch=True)
    cal = [{"x": np.random.default_rng(i).standard_normal((2, 3, 20, 20)).astype(np.float32)} for i in range(6)]
    zoo = with_intermediate_outputs(op_zoo(seed=1), ["c1", "p1", "a2", "ap"])
    for fmt in ("qdq", "qoperator"):
        out["resnet", fmt] = quantize(resnet, tmp / f"resnet_{fmt}.onnx", cal, fmt=fmt)
        out["zoo", fmt] = quantize(zoo, tmp / f"zoo_{fmt}.onnx", calibration_inputs(zoo, 8), fmt=fmt)
    plain = tiny_resnet(seed=5)
    out["resnet-int8-per-tensor", "qdq"] = quantize(plain, tmp / "resnet_s8.onnx", calibration_inputs(plain, 4),
                                                    per_channel=False, activation="int8")
    return out


def resnet_input(seed=99):
    return {"x": np.random.default_rng(seed).standard_normal((2, 3, 20, 20)).astype(np.float32) * 1.3}


def check(result):
    assert result.mismatches == 0, result.first_mismatch
    assert result.ort["max_diff_lsb"] <= 1, result.ort
    assert result.status == "pass"


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("cfg", [CFG8, CFG16, CFG4x8], ids=["8x8", "16x16", "4x8"])
def test_tiny_resnet(models, fmt, cfg):
    result, outputs = run_onnx(cfg, models["resnet", fmt], resnet_input(), "func")
    check(result)
    assert result.ort["elements"] > 4000
    ops = [(layer["op"], layer["where"]) for layer in result.layers]
    assert ("QuantizeLinear", "host") in ops and ("DequantizeLinear", "host") in ops
    assert {op for op, where in ops if where == "accelerator"} >= (
        {"Conv", "MaxPool", "Add", "GlobalAveragePool", "Gemm"} if fmt == "qdq" else
        {"QLinearConv", "MaxPool", "QLinearAdd", "QLinearGlobalAveragePool", "QGemm"})
    # outputs as ONNX Runtime returns them: same names, shapes and dtypes
    theirs = ort_reference(models["resnet", fmt], resnet_input())
    assert outputs.keys() == theirs.keys()
    for k in theirs:
        assert outputs[k].shape == theirs[k].shape and outputs[k].dtype == theirs[k].dtype


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("cfg", [CFG8, small_config(8, 4, sp=256, acc=64, bus=8)], ids=["8x8", "8x4-bus8"])
def test_op_zoo(models, fmt, cfg):
    """SAME padding, dilation, ceil-mode max pool, projection shortcut, padded average pool,
    flatten of a spatial map into MatMul."""
    x = calibration_inputs(op_zoo(seed=1), 1, seed=5)[0]
    result, _ = run_onnx(cfg, models["zoo", fmt], x, "func")
    check(result)


def test_int8_activations_per_tensor_weights(models):
    m = models["resnet-int8-per-tensor", "qdq"]
    x = calibration_inputs(tiny_resnet(seed=5), 1, seed=11)[0]
    result, _ = run_onnx(CFG8, m, x, "func")
    check(result)


@pytest.mark.parametrize("seed", range(3))
def test_more_inputs_stay_within_one_lsb(models, seed):
    result, _ = run_onnx(CFG8, models["resnet", "qdq"], resnet_input(1000 + seed), "func")
    check(result)


def test_per_layer_cycles_on_the_model(models):
    result, _ = run_onnx(CFG8, models["resnet", "qdq"], resnet_input(), "model")
    check(result)
    acc = [layer for layer in result.layers if layer["where"] == "accelerator"]
    host = [layer for layer in result.layers if layer["where"] == "host"]
    assert all(layer["cycles"] > 0 for layer in acc) and all(layer["cycles"] is None for layer in host)
    assert result.cycles == sum(layer["cycles"] for layer in acc)
    assert result.macs == sum(layer["macs"] for layer in acc)
    for layer in acc:
        assert layer["utilization"] == pytest.approx(utilization(layer["macs"], CFG8, layer["cycles"]))
        assert layer["instructions"] > 0 and layer["passes"] >= 1
    conv = next(layer for layer in acc if layer["name"] == "block_conv1")
    assert conv["macs"] == 2 * 5 * 5 * 13 * 13 * 9


def test_fused_program_overlaps_layers(models):
    """All layers in one program (SYNCs between a STORE and the LOADs of its bytes), the run
    flow's default: same output, fewer cycles than the per-layer runs added up, and the layers'
    cycles (from the STAMPs) add up to the program's."""
    from systolab.perf import predict

    x = resnet_input()
    net = load_onnx(models["resnet", "qdq"], input_shapes={"x": x["x"].shape})
    compiled = compile_network(CFG8, net)
    values, _ = network_reference(compiled.net, x)
    prog = compiled.fused_program(x)
    res = FunctionalSim(CFG8).run(prog)
    out = compiled.net.output_tensors["y"][0]
    np.testing.assert_array_equal(res.outputs[out], values[out].reshape(-1, values[out].shape[-1]))
    per_layer = run_network(compiled, x, "model", fused=False)
    assert predict(CFG8, prog).cycles < per_layer.cycles
    run = run_network(compiled, x, "model")
    assert run.fused and run.counters["cycles"] == run.cycles == predict(CFG8, prog).cycles
    layers = [r for r in run.layers if r["where"] == "accelerator"]
    assert all(r["cycles"] > 0 for r in layers)
    assert sum(r["instructions"] for r in layers) == prog.insn_count
    for r, alone in zip(layers, (r for r in per_layer.layers if r["where"] == "accelerator")):
        # overlapped, a layer takes at most what it takes alone (plus the wait for its input)
        assert r["cycles"] <= 1.1 * alone["cycles"], r["name"]
    np.testing.assert_array_equal(run.values[out], per_layer.values[out])
    # joining a layer to the ones before takes two SYNCs at most (`ProgramBuilder.begin_layer`)
    syncs = lambda insns: sum(op == "SYNC" for op, _ in insns)    # noqa: E731
    assert all(syncs(cl.part) - syncs(cl.insns) <= 2 for cl in compiled.layers)
    assert any(syncs(cl.part) > syncs(cl.insns) for cl in compiled.layers)


def test_average_pool_ties(tmp_path):
    """A 2x2 average that keeps its input's quantization makes exact .5 ties: systolab rounds them
    up, ONNX Runtime's float32 path lands on either side. The layer alone is within 1 LSB."""
    m = float_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                     helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                    {"x": [1, 5, 8, 8]}, {"y": [1, 5, 4, 4]}, {"w": np.random.default_rng(0).normal(0, 0.3, (5, 5, 3, 3))})
    path = quantize(m, tmp_path / "avg.onnx", calibration_inputs(m, 4))
    result, _ = run_onnx(CFG8, path, calibration_inputs(m, 1, seed=9)[0], "func")
    check(result)


# -- errors ----------------------------------------------------------------------------------------
def _quantized(tmp_path, nodes, inits, out_shape, name="m"):
    m = float_model(nodes, {"x": [1, 4, 6, 6]}, {"y": out_shape}, inits)
    return quantize(m, tmp_path / f"{name}.onnx", calibration_inputs(m, 2))


SUPPORTED = ("Conv, Gemm, MatMul, Add, Relu, Clip, MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape, "
             "Transpose, Softmax, LayerNormalization, Gelu, Erf, Mul, Div between "
             "QuantizeLinear/DequantizeLinear (QDQ), QLinearConv, QLinearMatMul, QGemm, QLinearAdd, "
             "QLinearGlobalAveragePool, QLinearAveragePool, MaxPool, Flatten, Reshape (QOperator)")


def test_unsupported_operator(tmp_path):
    w = {"w": np.random.default_rng(0).normal(0, 1, (4, 4, 1, 1))}
    path = _quantized(tmp_path, [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                                 helper.make_node("Sigmoid", ["c"], ["y"], name="act")], w, [1, 4, 6, 6])
    with pytest.raises(ModelError) as e:
        load_onnx(path)
    assert str(e.value) == f"{path}: node 'act' (Sigmoid): operator not supported; supported: {SUPPORTED}"


def test_unsupported_attribute(tmp_path):
    w = {"w": np.random.default_rng(0).normal(0, 1, (4, 4, 1, 1))}
    path = _quantized(tmp_path, [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                                 helper.make_node("AveragePool", ["c"], ["y"], name="pool", kernel_shape=[2, 2],
                                                  strides=[2, 2], ceil_mode=1)], w, [1, 4, 3, 3])
    with pytest.raises(ModelError, match=r"^.*: node 'pool' \(AveragePool\): ceil_mode=1 or dilations; "
                                         r"supported: ceil_mode=0 without dilation$"):
        load_onnx(path)


@pytest.mark.parametrize("group, out", [(2, 6), (4, 8)], ids=["two-groups", "depthwise-x2"])
def test_grouped_conv(tmp_path, group, out):
    """A grouped conv (and a depthwise one with two filters per channel): block-diagonal weights
    on the array, the same values as ONNX Runtime's."""
    rng = np.random.default_rng(group)
    w = {"w": rng.normal(0, 0.4, (out, 4 // group, 3, 3)), "b": rng.normal(0, 0.1, out)}
    path = _quantized(tmp_path, [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", group=group,
                                                  pads=[1, 1, 1, 1])], w, [1, out, 6, 6])
    report, _ = run_onnx(CFG8, path, calibration_inputs(onnx.load(path), 1, seed=3)[0], "func")
    assert report.mismatches == 0 and report.ort["max_diff_lsb"] <= 1 and report.status == "pass"
    layer = next(r for r in report.layers if r["where"] == "accelerator")
    assert layer["note"].startswith(f"3x3/1, {group} groups") and report.macs == 36 * out * (4 // group) * 9


def test_grouped_conv_channels_must_match(tmp_path):
    w = {"w": np.random.default_rng(0).normal(0, 0.4, (6, 2, 3, 3))}
    path = _quantized(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=2)], w, [1, 6, 4, 4])
    m = onnx.load(path)
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "group").i = 3
    onnx.save(m, path)
    with pytest.raises(ModelError, match=r"^.*: node 'conv' \(Conv\): weight has 2 input channels per group and 6 "
                                         r"outputs, the input 4 channels in 3 group\(s\); supported: input channels = "
                                         r"weight input channels x group, output channels a multiple of group$"):
        load_onnx(path)


def test_float_model_is_rejected(tmp_path):
    m = float_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], {"x": [1, 4, 6, 6]},
                    {"y": [1, 4, 6, 6]}, {"w": np.ones((4, 4, 1, 1))})
    path = tmp_path / "float.onnx"
    onnx.save(m, path)
    with pytest.raises(ModelError, match=r"node 'conv' \(Conv\): its output 'y' is a model output that is not "
                                         r"quantized; supported: quantized models"):
        load_onnx(path)


def test_unsupported_input_dtype(tmp_path):
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 4])])
    path = tmp_path / "i64.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError, match=r"^.*i64.onnx: input 'x' has element type int64; supported: float32 "
                                         r"inputs quantized by a QuantizeLinear$"):
        load_onnx(path)


def test_wrong_input_shape(models):
    with pytest.raises(ModelError, match=r"input 'x' has shape \[1, 3, 8, 8\]; the model expects \['\?', 3, 20, 20\]"):
        run_onnx(CFG8, models["resnet", "qdq"], {"x": np.zeros((1, 3, 8, 8), np.float32)}, "func")


def test_per_layer_agreement_with_onnx_runtime(models):
    """Every layer record carries how its output tensor compares with ONNX Runtime's value of the
    same tensor; the last layer's figures are the output's, and the layers before the first
    residual add agree exactly (convolutions and pools requantize as ORT does)."""
    result, _ = run_onnx(CFG8, models["resnet", "qdq"], resnet_input(), "func")
    check(result)
    for layer in result.layers:
        if layer["where"] == "host":
            assert layer["ort_max_lsb"] is None and layer["ort_off_by_one"] is None
        else:
            assert isinstance(layer["ort_max_lsb"], int) and isinstance(layer["ort_off_by_one"], int)
    acc = {layer["name"]: layer for layer in result.layers if layer["where"] == "accelerator"}
    for name in ("conv1", "pool1", "block_conv1", "block_conv2"):
        assert (acc[name]["ort_max_lsb"], acc[name]["ort_off_by_one"]) == (0, 0), name
    assert acc["fc"]["ort_max_lsb"] == result.ort["max_diff_lsb"]
    assert acc["fc"]["ort_off_by_one"] == result.ort["off_by_one"]
    assert all("ort_off_by_one" in layer for layer in result.to_json()["layers"])     # --json


def test_average_pool_ties_round_half_to_even(tmp_path):
    """A 2x2 average pool that keeps its input's scale makes exact ties (sum/4 = k + 0.5) on about
    one output in four. ONNX rounds them to even; so does the STORE of an imported ONNX model
    (round_even): most of them agree with ORT, where rounding halves up would miss half of them."""
    from dataclasses import replace

    from systolab.codegen.onnx_import import ort_tensors

    rng = np.random.default_rng(0)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), n("Relu", ["c"], ["r"]),
             n("AveragePool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    m = float_model(nodes, {"x": [1, 4, 16, 16]}, {"y": [1, 8, 8, 8]},
                    {"w": rng.normal(0, .3, (8, 4, 3, 3)), "b": rng.normal(0, .1, 8)})
    path = quantize(m, tmp_path / "avg.onnx", calibration_inputs(m, 4))
    x = calibration_inputs(m, 1, seed=10)[0]
    net = load_onnx(path)
    pool = next(layer for layer in net.layers if layer.op == "AveragePool")
    assert net.qparams[pool.inputs[0]] == net.qparams[pool.output]          # the scale is kept
    assert all(op.round_even for layer in net.layers for op in layer.ops)
    stores = [fields for cl in compile_network(CFG8, net).layers for op, fields in cl.insns if op == "STORE"]
    assert stores and all(f["round_even"] == 1 for f in stores)
    _, theirs = ort_tensors(path, net, x)
    ours, _ = network_reference(net, x)
    for layer in net.layers:
        layer.ops = [replace(op, round_even=False) for op in layer.ops]
    half_up, _ = network_reference(net, x)
    assert np.array_equal(ours[pool.inputs[0]], theirs[pool.inputs[0]])      # the conv agrees exactly
    size = ours[pool.output].size
    even_off = int(np.count_nonzero(ours[pool.output] != theirs[pool.output]))
    up_off = int(np.count_nonzero(half_up[pool.output] != theirs[pool.output]))
    assert up_off > 0.08 * size and even_off < 0.03 * size, (even_off, up_off, size)
    result, _ = run_onnx(CFG8, path, x, "func")
    check(result)
    assert result.ort["off_by_one"] == even_off


def test_the_fast_models_layers_follow_the_network_program(models, monkeypatch):
    """`--sim model` predicts each layer from its own program, and a short layer's junction
    with the next one from both as one program (`network._add_junctions`): the per-layer cycles
    then follow the model's replay of the whole network program (its STAMPs) more closely than
    without, and the network's total as well. (On this 20x20 network, all of whose layers are
    short: the worst layer 18 % off without the junctions, 11 % with them; the total 5.6 % and
    3.5 %. `benchmarks/networks.py` measures the ImageNet-size ones against the RTL.)"""
    import systolab.codegen.network as network
    from systolab.perf import PerfModel

    x = resnet_input()
    net = load_onnx(models["resnet", "qdq"], input_shapes={"x": x["x"].shape})
    whole = compile_network(CFG8, net)
    model = PerfModel(CFG8)
    stamps = model.predict_insns([(i.op, i.values) for i in map(model.isa.decode, whole.fused_words)]).stamps
    marks = [0] + [c for _, c in stamps]
    replay = [b - a for a, b in zip(marks, marks[1:])]

    def errors():
        fast = compile_network(CFG8, net, programs=False)
        per_layer = [abs(cl.predicted - r) / r for cl, r in zip(fast.layers, replay)]
        return per_layer, abs(sum(cl.predicted for cl in fast.layers) - sum(replay)) / sum(replay)

    layers, total = errors()
    monkeypatch.setattr(network, "JUNCTION_INSNS", -1)
    alone, alone_total = errors()
    assert max(layers) < max(alone) and total < alone_total
