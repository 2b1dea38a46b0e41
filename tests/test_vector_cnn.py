"""CNN layers on the vector unit (`codegen.vector`): every lowering on the functional simulator
bit-exact with numpy's `network_reference`, the residual add against the real-valued QDQ add,
a user kernel through the framework, the per-layer unit choice, and a small quantized ResNet
against ONNX Runtime."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import systolab.codegen.network as network
from systolab.codegen.conv import TensorSpec
from systolab.codegen.network import (Layer, QParams, add_layer, avgpool_layer, compile_network, maxpool_layer,
                                      network_reference, requant_layer)
from systolab.codegen.quant import ort_add_constants
from systolab.codegen.vector import (RowTile, VectorEmitter, VectorPass, acc, add_weights, vector_fits,
                                     vector_reference)
from systolab.config import config_from_dict
from systolab.errors import UserError
from systolab.perf import PerfModel
from systolab.sim.run import run_network

from conftest import small_config
from test_conv import single_layer_net

CONFIGS = {
    "8x8-v8": config_from_dict({"vector": {"lanes": 8}}, source="<8x8 v8>"),
    "4x4-v2": small_config(4, 4, sp=256, acc=64, vector={"lanes": 2}),
    "8x8-v4-bus8": small_config(8, 8, sp=512, acc=128, bus=8, vector={"lanes": 4}),
}
XQ = QParams(0.05, 7, "int8")
#: the config of the networks run on the RTL (one Verilator build; the memory sized to each run)
RTL_8X8_V8 = small_config(8, 8, sp=1024, acc=256, bus=16, latency=8, mem_kib="auto", vector={"lanes": 8})


def _check(cfg, make, shape=(2, 9, 11, 13), seed=2, vector="vector"):
    net, xv = single_layer_net(TensorSpec("x", *shape), make, seed=seed)
    compiled = compile_network(cfg, net, vector=vector)
    run = run_network(compiled, {}, "func")
    ref, _ = network_reference(compiled.net, {})
    for cl in compiled.layers:
        y = cl.layer.output
        np.testing.assert_array_equal(run.values[y], ref[y], err_msg=cl.name)
    return compiled, run, xv, network_reference(net, {})[0]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("kernel, stride, pads, dil, ceil", [
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), True),
    ((3, 2), (1, 2), (0, 1, 2, 0), (1, 1), False),
    ((1, 3), (3, 1), (0, 0, 0, 0), (1, 1), False),
    ((2, 3), (1, 1), (1, 2, 1, 2), (2, 2), False),
])
def test_maxpool_on_the_vector_unit_is_exact(name, kernel, stride, pads, dil, ceil):
    cfg = CONFIGS[name]
    for yq in (XQ, QParams(0.08, 20, "uint8")):
        def make(net, x):
            yield maxpool_layer("pool", "MaxPool", x, XQ, "y", yq, kernel=kernel, stride=stride, pads=pads,
                                dilation=dil, ceil_mode=ceil, add_tensor=net.add_tensor)
        compiled, run, _, array_ref = _check(cfg, make)
        assert compiled.layers[0].layer.unit == "vector"
        np.testing.assert_array_equal(run.values["y"], array_ref["y"])      # max pooling is exact both ways


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("shape", [(2, 9, 11, 13), (1, 5, 6, 16)], ids=["padded", "dense"])
def test_average_pools_add_and_requant_on_the_vector_unit(name, shape):
    """Dense tensors (channels a multiple of array.cols): the add and the ReLU run flat."""
    cfg = CONFIGS[name]
    yq = QParams(0.02, -5, "int8")

    def make(net, x):
        yield avgpool_layer("gap", "GlobalAveragePool", x, XQ, "g", yq)
        yield avgpool_layer("ap", "AveragePool", x, XQ, "ap", yq, kernel=(2, 3), stride=(1, 2), pads=(1, 0, 0, 1))
        yield add_layer("add", "Add", x, XQ, x, QParams(0.03, -2, "int8"), "a", QParams(0.11, 1, "int8"), relu=True)
        yield requant_layer("rq", "Relu", x, XQ, "r", yq, relu=True)
    compiled, run, xv, array_ref = _check(cfg, make, shape=shape)
    assert all(cl.layer.unit == "vector" for cl in compiled.layers)
    for k in ("g", "ap", "r"):          # the same integer sums and STORE as the array: the same values
        np.testing.assert_array_equal(run.values[k], array_ref[k])
    xf = xv.astype(np.float64)
    exact = (xf - 7) * 0.05 / 0.11 + (xf + 2) * 0.03 / 0.11 + 1
    np.testing.assert_array_equal(run.values["a"], np.clip(np.maximum(np.rint(exact), 1), -128, 127))


def test_global_pool_in_pieces():
    """An image with more pixels than half the scratchpad: CSUM of pieces, accumulated."""
    cfg = CONFIGS["4x4-v2"]

    def make(net, x):
        yield avgpool_layer("gap", "GlobalAveragePool", x, XQ, "g", QParams(0.02, -5, "int8"))
    compiled, run, _, array_ref = _check(cfg, make, shape=(1, 16, 19, 6))
    np.testing.assert_array_equal(run.values["g"], array_ref["g"])


def _ort_add(a, aq, b, bq, yq) -> np.ndarray:
    """ONNX Runtime's int8 add of the two NCHW tensors (a QDQ graph, fused into QLinearAdd)."""
    consts = [numpy_helper.from_array(np.array(v, dtype=t), n) for n, v, t in (
        ("sa", aq.scale, np.float32), ("za", aq.zp, np.int8), ("sb", bq.scale, np.float32), ("zb", bq.zp, np.int8),
        ("sy", yq.scale, np.float32), ("zy", yq.zp, np.int8))]
    nodes = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["af"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bf"]),
             helper.make_node("Add", ["af", "bf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["y"])]
    io = [helper.make_tensor_value_info(n, TensorProto.INT8, a.shape) for n in ("a", "b", "y")]
    model = helper.make_model(helper.make_graph(nodes, "add", io[:2], io[2:], consts),
                              opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": a, "b": b})[0]


#: (sa, za, sb, zb, sy, zy) where the real-valued add and ONNX Runtime end 1 LSB apart on 1-2 of
#: the 65,536 int8 pairs, from the float32 rounding of ORT's ratios and fixed part (found by a
#: search over random scales; on such scales the add with ORT's constants gives ORT's values)
ORT_NEAR_TIES = [(0.16241851449012756, 11, 0.17479337751865387, -2, 0.034464336931705475, 7),
                 (0.17071911692619324, 17, 0.1216975674033165, -8, 0.0686548501253128, -8)]


@pytest.mark.parametrize("scales", [*ORT_NEAR_TIES, "random"])
def test_residual_add_adds_exactly_with_onnx_runtime_s_constants(scales):
    """Every int8 pair: the vector add is y = round_half_even(ra a + rb b + f) with ONNX Runtime's
    float32 ratios and fixed part (`ort_add_constants`), added exactly. ORT also rounds its two
    FMAs to float32 per element, so a near-tie can still end 1 LSB apart (over 26 M random pairs:
    16 elements, against 19 for the real-valued add); on `ORT_NEAR_TIES` the values are ORT's."""
    rng = np.random.default_rng(3)
    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8).reshape(1, 256, 256, 1)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8).reshape(1, 256, 256, 1)
    sa_, sb_ = TensorSpec("a", 1, 256, 256, 1), TensorSpec("b", 1, 256, 256, 1)
    if scales == "random":
        scales = [(*(float(np.float32(v)) for v in rng.uniform(0.01, 0.2, 3)), *(int(z) for z in rng.integers(-20, 20, 3)))
                  for _ in range(4)]
        scales = [(sa, za, sb, zb, sy, zy) for sa, sb, sy, za, zb, zy in scales]
    else:
        scales = [scales]
    for sa, za, sb, zb, sy, zy in scales:
        aq, bq, yq = QParams(sa, za, "int8"), QParams(sb, zb, "int8"), QParams(sy, zy, "int8")
        ra, rb, f = ort_add_constants(sa, za, sb, zb, sy, zy)
        assert add_weights(ra, rb, aq.value_range, bq.value_range)[4] < 1e-6
        layer, _ = add_layer("add", "Add", sa_, aq, sb_, bq, "y", yq)
        vp = replace(layer.on_vector().ops[0], round_even=True)
        y = vector_reference(vp, {"a": a, "b": b}).astype(np.int64)
        # exact in float64: a * ra has 32 significant bits, the three terms span fewer than 53;
        # the int32 weights are within 1e-6 LSB of it, so only an exact tie may round the other way
        exact = a.astype(np.float64) * ra + b.astype(np.float64) * rb + f
        tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-6
        assert np.all((y == np.clip(np.rint(exact), -128, 127)) | tie)
        theirs = _ort_add(a.reshape(1, 1, 256, 256), aq, b.reshape(1, 1, 256, 256), bq, yq).reshape(y.shape)
        np.testing.assert_array_equal(y, theirs)
    assert vector_fits(CONFIGS["8x8-v8"]) is None


def test_a_small_add_takes_the_tile_the_model_predicts_fastest(monkeypatch):
    """A residual add of a few thousand rows: the largest tiles (half the scratchpad) leave the
    port idle while the first tile loads and the last one stores; the compiler predicts 1/2 and
    1/4 of them too and keeps the fastest (on the RTL: 16x16 s4b1_add of ResNet-18, 5,389 ->
    5,080 cycles, benchmarks/RESULTS.md), exact as before."""
    cfg = CONFIGS["8x8-v8"]

    def make(net, x):
        yield add_layer("add", "Add", x, XQ, x, QParams(0.03, -2, "int8"), "a", QParams(0.11, 1, "int8"))
    compiled, run, xv, _ = _check(cfg, make, shape=(1, 14, 14, 64))
    chosen = compiled.layers[0]
    assert chosen.tilings[0]["tile_rows"] in (256, 128)           # of 512-row tiles, 1,568 rows
    monkeypatch.setattr(network, "tile_choices", lambda *a: [None])
    whole = _check(cfg, make, shape=(1, 14, 14, 64))[0]
    largest = whole.layers[0]
    assert largest.tilings[0]["tile_rows"] is None
    model = PerfModel(cfg)
    assert chosen.predicted == model.predict(compiled.program(chosen)).cycles
    assert chosen.predicted < largest.predicted == model.predict(whole.program(largest)).cycles


def test_a_kernel_is_a_function_that_emits_vectors():
    """The framework's API as the docstring shows it: y = requant(3 a + 5 b) with a user kernel."""
    cfg = CONFIGS["4x4-v2"]

    def kernel(v: VectorEmitter, t: RowTile) -> None:
        for cc in t.chunks:
            v("MUL", t.temp(0, cc), t.src(0, cc), 3, rows=t.rows)
            v("MUL", t.out(cc), t.src(1, cc), 5, rows=t.rows)
            v("ADD", t.out(cc), acc(t.out(cc)), acc(t.temp(0, cc)), rows=t.rows)     # in place

    def reference(xs):
        a, b = (x.reshape(-1, x.shape[-1]).astype(np.int64) for x in xs)
        return 3 * a + 5 * b

    def make(net, x):
        c = x.c
        out = TensorSpec("y", x.n, x.h, x.w, c)
        one = np.ones(c, np.int32)
        vp = VectorPass("k", out, (x, x), kernel, reference, 0 * one, one, 0 * one, 0 * one, scratch=1, group=0)
        yield Layer("k", "Custom", [vp], [x.name], "y", 0), out
    compiled, run, xv, _ = _check(cfg, make, shape=(1, 5, 7, 9))
    np.testing.assert_array_equal(run.values["y"], np.clip(8 * xv.astype(np.int64), -128, 127))


def test_configs_without_a_vector_unit_compile_as_before():
    cfg = small_config(4, 4, sp=256, acc=64)
    assert vector_fits(cfg) is not None

    def make(net, x):
        yield maxpool_layer("pool", "MaxPool", x, XQ, "y", XQ, kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
                            add_tensor=net.add_tensor)
        yield add_layer("add", "Add", x, XQ, x, XQ, "a", QParams(0.11, 1, "int8"))
    net, _ = single_layer_net(TensorSpec("x", 1, 6, 6, 5), make)
    auto, array = compile_network(cfg, net), compile_network(cfg, net, vector="array")
    assert [c.words for c in auto.layers] == [c.words for c in array.layers]
    assert all(c.layer.unit == "array" for c in auto.layers) and auto.net is net
    with pytest.raises(UserError, match=r"^vector=vector: <test 4x4> has no vector unit$"):
        compile_network(cfg, net, vector="vector")
    with pytest.raises(UserError, match=r"^vector must be auto, array or vector, not 'gpu'$"):
        compile_network(cfg, net, vector="gpu")


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_tiny_resnet_on_a_vector_config_agrees_with_onnx_runtime(tmp_path, fmt):
    """Pools, the residual add and the global average pool on the vector unit: bit-exact with the
    numpy reference on the functional simulator, within 1 LSB of ONNX Runtime at every layer."""
    from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_resnet
    from systolab.sim.run import run_onnx

    model = tiny_resnet(seed=3, size=20)
    path = quantize(model, tmp_path / f"r_{fmt}.onnx", calibration_inputs(model, 4), fmt=fmt)
    x = {"x": np.random.default_rng(99).standard_normal((1, 3, 20, 20)).astype(np.float32) * 1.3}
    report, _ = run_onnx(CONFIGS["8x8-v8"], path, x, "func", vector="vector")
    assert report.mismatches == 0, report.first_mismatch
    assert report.ort["max_diff_lsb"] <= 1 and report.status == "pass"
    units = {r["op"].removeprefix("QLinear"): r["unit"] for r in report.layers if r["where"] == "accelerator"}
    assert units["MaxPool"] == units["Add"] == units["GlobalAveragePool"] == "vector" and units["Conv"] == "array"
    assert all((r["ort_max_lsb"] or 0) <= 1 for r in report.layers if r["where"] == "accelerator")


@pytest.mark.parametrize("name", ["8x8-v8", "4x4-v2"])
@pytest.mark.parametrize("stride, pads, dil", [((1, 1), (1, 1, 1, 1), (1, 1)), ((2, 2), (0, 1, 1, 0), (1, 2))])
def test_depthwise_conv_on_the_vector_unit(name, stride, pads, dil):
    """A depthwise 3x3 conv (per-channel weights as broadcast scratchpad rows, a MUL with
    accumulate per tap) equals the array's (diagonal weights): the same integer sum and STORE."""
    from systolab.codegen.network import conv_layer
    cfg = CONFIGS[name]
    rng = np.random.default_rng(5)
    c = 11
    w = rng.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8)
    bias = rng.integers(-500, 500, c)

    def make(net, x):
        yield conv_layer("dw", "Conv", x, XQ, w, rng.uniform(0.001, 0.01, c), bias, "y", QParams(0.04, 3, "int8"),
                         stride=stride, pads=pads, dilation=dil, relu=True, group=c)
    compiled, run, _, array_ref = _check(cfg, make, shape=(2, 9, 10, c))
    assert compiled.layers[0].layer.unit == "vector"
    np.testing.assert_array_equal(run.values["y"], array_ref["y"])


@pytest.mark.parametrize("vector", ["array", "vector"])
def test_tiny_mobilenet_depthwise_agrees_with_onnx_runtime(tmp_path, vector):
    """Depthwise convolutions (ONNX group = channels) on the array (diagonal weights) and on the
    vector unit; ReLU6 is the output quantization's saturation (ORT's quantizer drops the Clip)."""
    from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_mobilenet
    from systolab.sim.run import run_onnx

    model = tiny_mobilenet(seed=2)
    path = quantize(model, tmp_path / "m.onnx", calibration_inputs(model, 4))
    x = calibration_inputs(model, 1, seed=9)[0]
    report, _ = run_onnx(CONFIGS["8x8-v8"], path, x, "func", vector=vector)
    assert report.mismatches == 0 and report.ort["max_diff_lsb"] <= 1 and report.status == "pass"
    units = [r["unit"] for r in report.layers if r["where"] == "accelerator" and "depthwise" in r["note"]]
    assert units == [vector] * 2


def test_fused_program_with_vector_layers():
    """Every layer in one program (layers overlap, LOADs wait for the STOREs they read through
    SYNCs): the same tensors as the per-layer programs."""
    from systolab.sim.functional import FunctionalSim
    cfg = CONFIGS["4x4-v2"]

    def make(net, x):
        layer, p = maxpool_layer("pool", "MaxPool", x, XQ, "p", XQ, kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
                                 add_tensor=net.add_tensor)
        yield layer, p
        yield add_layer("add", "Add", p, XQ, p, XQ, "a", QParams(0.11, 1, "int8"), relu=True)
        yield avgpool_layer("gap", "GlobalAveragePool", TensorSpec("a", 2, 5, 6, 13), QParams(0.11, 1, "int8"), "g",
                            QParams(0.02, -5, "int8"))
    compiled, run, _, _ = _check(cfg, make)
    prog = compiled.fused_program({})
    out = FunctionalSim(cfg).run(prog)
    np.testing.assert_array_equal(out.outputs["g"].reshape(run.values["g"].shape), run.values["g"])


@pytest.mark.rtl
def test_tiny_network_with_vector_layers_on_rtl(tmp_path):
    """A tiny ResNet with its pools and add on the vector unit, on the generated RTL (native
    Verilator): bit-exact with the numpy reference (= the functional simulator)."""
    pytest.importorskip("systolab.hw.vector", reason="the RTL has no vector unit yet")
    from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_resnet
    from systolab.sim.run import run_onnx

    cfg = RTL_8X8_V8
    m = tiny_resnet(channels=(13, 21), size=12, classes=5, seed=2)
    path = quantize(m, tmp_path / "tiny.onnx", calibration_inputs(m, 8))
    report, _ = run_onnx(cfg, path, calibration_inputs(m, 1, seed=3)[0], "verilator", vector="vector")
    assert report.mismatches == 0, report.first_mismatch
    assert report.ort["max_diff_lsb"] <= 1
    vector_layers = [r for r in report.layers if r["unit"] == "vector"]
    assert len(vector_layers) == 3 and all(r["cycles"] > 0 for r in vector_layers)


@pytest.mark.rtl
def test_resnet18_at_small_input_on_rtl_matches_onnx_runtime():
    """The real ResNet-18 topology (stem 7x7/2, max pool, 8 basic blocks, projections, global
    average pool, FC) at a quarter of the channels and a 32x32 input, on the RTL of the same
    8x8 + 8-lane config: every layer bit-exact with the numpy reference, the output within 1 LSB
    of ONNX Runtime, each layer's cycles from the hardware counter."""
    from systolab.codegen.onnx_models import builtin_model
    from systolab.sim.run import run_onnx

    model, x = builtin_model("resnet18w16:32")
    report, _ = run_onnx(RTL_8X8_V8, model, {"x": np.load(x)}, "verilator", vector="vector")
    assert report.mismatches == 0, report.first_mismatch
    assert report.ort["max_diff_lsb"] <= 1
    layers = [r for r in report.layers if r["where"] == "accelerator"]
    assert len([r for r in layers if r["op"] == "Conv"]) == 20 and all(r["cycles"] > 0 for r in layers)
    assert report.cycles == sum(r["cycles"] for r in layers)


def test_auto_keeps_the_array_where_vector_passes_do_not_fit():
    """An output row wider than half the accumulator: no window schedule, the array pool stays."""
    cfg = small_config(4, 4, sp=256, acc=16, vector={"lanes": 4})

    def make(net, x):
        yield maxpool_layer("pool", "MaxPool", x, XQ, "y", XQ, kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
                            add_tensor=net.add_tensor)
    compiled, run, _, array_ref = _check(cfg, make, shape=(1, 4, 9, 4), vector="auto")
    assert compiled.layers[0].layer.unit == "array"
    np.testing.assert_array_equal(run.values["y"], array_ref["y"])


def test_clip_as_relu6(tmp_path):
    """A Clip(0, 6) left in a QDQ graph, whose output quantization saturates at 6: the STORE's
    ReLU (and its int8 saturation); a Clip whose max is inside the output range is refused."""
    import onnx
    from onnx import helper, numpy_helper

    from systolab.codegen.onnx_import import ModelError, load_onnx
    from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_mobilenet
    from systolab.sim.run import run_onnx

    model = tiny_mobilenet(seed=2)
    path = quantize(model, tmp_path / "m.onnx", calibration_inputs(model, 4))

    def with_clip(hi: float):
        m = onnx.load(path)
        g = m.graph
        conv = next(n for n in g.node if n.name == "expand")
        q = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == conv.output[0])
        g.initializer.extend([numpy_helper.from_array(np.array(v, np.float32), k) for k, v in
                              (("clip_lo", 0.0), ("clip_hi", hi))])
        g.node.insert(list(g.node).index(q), helper.make_node("Clip", [conv.output[0], "clip_lo", "clip_hi"],
                                                               ["clipped"], name="relu6"))
        q.input[0] = "clipped"
        out = tmp_path / f"clip{hi}.onnx"
        onnx.save(m, out)
        return out

    x = calibration_inputs(model, 1, seed=9)[0]
    report, _ = run_onnx(CONFIGS["8x8-v8"], with_clip(6.0), x, "func")
    assert report.mismatches == 0 and report.ort["max_diff_lsb"] <= 1
    with pytest.raises(ModelError, match=r"node 'relu6' \(Clip\): Clip\(0, 0.5\) with an output range up to "):
        load_onnx(with_clip(0.5))
