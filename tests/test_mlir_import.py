"""MLIR import: integer linalg-on-tensors programs compiled for the accelerator.

Every program is checked three ways: the accelerator's outputs (functional simulator, RTL) equal
systolab's numpy reference of the imported network bit for bit, and that reference equals the
program's meaning computed directly in numpy (an oracle written from the MLIR, independent of the
importer)."""

import re

import numpy as np
import pytest

from systolab.codegen.mlir_import import SUPPORTED, MlirError, generated_mlir_inputs, load_mlir, load_mlir_text
from systolab.codegen.mlir_models import convnet_mlir, dense, gemm_mlir
from systolab.codegen.network import compile_network, network_reference
from systolab.codegen.quant import requantize, wrap_int32
from systolab.sim.run import run_network
from conftest import small_config

CFG = small_config(4, 4, sp=256, acc=64)


def run_checked(text: str, name: str = "prog.mlir", cfg=CFG, sim: str = "func", inputs=None):
    """Import, compile, run on `sim`; assert bit-exact against the network's numpy reference."""
    net = load_mlir_text(text, name)
    inputs = inputs if inputs is not None else generated_mlir_inputs(net, seed=1)
    compiled = compile_network(cfg, net)
    run = run_network(compiled, inputs, sim)
    _, ref = network_reference(compiled.net, inputs)
    for k in net.outputs:
        assert run.outputs[k].dtype == np.int8
        np.testing.assert_array_equal(run.outputs[k], ref[k])
    return net, inputs, run


@pytest.mark.parametrize("resource", [True, False], ids=["dense_resource", "dense"])
@pytest.mark.parametrize("relu", [False, True])
def test_gemm_linalg_matmul(resource, relu):
    prog = gemm_mlir(13, 20, 7, seed=3, relu=relu, resource=resource)
    net, inputs, run = run_checked(prog.text)
    np.testing.assert_array_equal(run.outputs["result"], prog.reference(inputs)["result"])
    assert net.macs == 13 * 20 * 7
    assert [s.op for s in net.layers] == ["linalg.matmul"]


def test_convnet_two_layers():
    prog = convnet_mlir(seed=1)
    net, inputs, run = run_checked(prog.text)
    np.testing.assert_array_equal(run.outputs["result"], prog.reference(inputs)["result"])
    assert [s.op for s in net.layers] == ["linalg.conv_2d_nchw_fchw_q", "linalg.quantized_matmul"]
    assert net.macs == prog.macs


def test_dense_resource_parsed_twice(tmp_path):
    # xDSL keeps resource blobs in a store every context shares; each import gets its own
    path = tmp_path / "g.mlir"
    gemm_mlir(4, 4, 4).write(path)
    a, b = load_mlir(path), load_mlir(path)
    wa, wb = (n.layers[0].ops[0].terms[0].weight for n in (a, b))
    np.testing.assert_array_equal(wa, wb)


# -- hand-written programs ----------------------------------------------------------------------------
RNG = np.random.default_rng(7)
W_HWCF = RNG.integers(-20, 20, size=(3, 3, 4, 4), dtype=np.int8)
BIAS4 = np.array([100, -50, 0, 7], np.int32)
W_FC = RNG.integers(-2, 3, size=(36, 5), dtype=np.int8)

NHWC = f"""
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d3)>
module {{
  func.func @main(%x: tensor<1x6x6x4xi8>) -> tensor<1x5xi8> {{
    %w = arith.constant {dense(W_HWCF)} : tensor<3x3x4x4xi8>
    %bias = arith.constant {dense(BIAS4)} : tensor<4xi32>
    %wfc = arith.constant {dense(W_FC)} : tensor<36x5xi8>
    %c0 = arith.constant 0 : i8
    %padded = tensor.pad %x low[0, 1, 1, 0] high[0, 1, 1, 0] {{
    ^bb0(%i: index, %j: index, %k: index, %l: index):
      tensor.yield %c0 : i8
    }} : tensor<1x6x6x4xi8> to tensor<1x8x8x4xi8>
    %zero = arith.constant 0 : i32
    %e0 = tensor.empty() : tensor<1x6x6x4xi32>
    %f0 = linalg.fill ins(%zero : i32) outs(%e0 : tensor<1x6x6x4xi32>) -> tensor<1x6x6x4xi32>
    %conv = linalg.conv_2d_nhwc_hwcf {{dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}} ins(%padded, %w : tensor<1x8x8x4xi8>, tensor<3x3x4x4xi8>) outs(%f0 : tensor<1x6x6x4xi32>) -> tensor<1x6x6x4xi32>
    %biased = linalg.generic {{indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}} ins(%conv, %bias : tensor<1x6x6x4xi32>, tensor<4xi32>) outs(%e0 : tensor<1x6x6x4xi32>) {{
    ^bb0(%a: i32, %b: i32, %o: i32):
      %s = arith.addi %b, %a : i32
      linalg.yield %s : i32
    }} -> tensor<1x6x6x4xi32>
    %e1 = tensor.empty() : tensor<1x6x6x4xi8>
    %q = linalg.generic {{indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}} ins(%biased : tensor<1x6x6x4xi32>) outs(%e1 : tensor<1x6x6x4xi8>) {{
    ^bb0(%a: i32, %o: i8):
      %m = arith.constant 1518500250 : i64
      %h = arith.constant 1073741824 : i64
      %sh = arith.constant 31 : i64
      %zp = arith.constant 5 : i64
      %lo = arith.constant -128 : i64
      %hi = arith.constant 127 : i64
      %0 = arith.extsi %a : i32 to i64
      %1 = arith.muli %m, %0 : i64
      %2 = arith.addi %1, %h : i64
      %3 = arith.shrsi %2, %sh : i64
      %4 = arith.addi %zp, %3 : i64
      %5 = arith.minsi %4, %hi : i64
      %6 = arith.maxsi %5, %lo : i64
      %7 = arith.trunci %6 : i64 to i8
      linalg.yield %7 : i8
    }} -> tensor<1x6x6x4xi8>
    %c5 = arith.constant 5 : i8
    %relu = linalg.generic {{indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}} ins(%q : tensor<1x6x6x4xi8>) outs(%e1 : tensor<1x6x6x4xi8>) {{
    ^bb0(%a: i8, %o: i8):
      %r = arith.maxsi %a, %c5 : i8
      linalg.yield %r : i8
    }} -> tensor<1x6x6x4xi8>
    %cmin = arith.constant -128 : i8
    %e2 = tensor.empty() : tensor<1x3x3x4xi8>
    %f2 = linalg.fill ins(%cmin : i8) outs(%e2 : tensor<1x3x3x4xi8>) -> tensor<1x3x3x4xi8>
    %win = tensor.empty() : tensor<2x2xi8>
    %pool = linalg.pooling_nhwc_max {{dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>}} ins(%relu, %win : tensor<1x6x6x4xi8>, tensor<2x2xi8>) outs(%f2 : tensor<1x3x3x4xi8>) -> tensor<1x3x3x4xi8>
    %flat = tensor.collapse_shape %pool [[0], [1, 2, 3]] : tensor<1x3x3x4xi8> into tensor<1x36xi8>
    %seven = arith.constant 7 : i32
    %e3 = tensor.empty() : tensor<1x5xi32>
    %f3 = linalg.fill ins(%seven : i32) outs(%e3 : tensor<1x5xi32>) -> tensor<1x5xi32>
    %fc = linalg.matmul ins(%flat, %wfc : tensor<1x36xi8>, tensor<36x5xi8>) outs(%f3 : tensor<1x5xi32>) -> tensor<1x5xi32>
    %e4 = tensor.empty() : tensor<1x5xi8>
    %out = linalg.generic {{indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}} ins(%fc : tensor<1x5xi32>) outs(%e4 : tensor<1x5xi8>) {{
    ^bb0(%a: i32, %o: i8):
      %lo = arith.constant -128 : i32
      %hi = arith.constant 127 : i32
      %0 = arith.maxsi %a, %lo : i32
      %1 = arith.minsi %0, %hi : i32
      %2 = arith.trunci %1 : i32 to i8
      linalg.yield %2 : i8
    }} -> tensor<1x5xi8>
    return %out : tensor<1x5xi8>
  }}
}}
"""


def nhwc_oracle(x: np.ndarray) -> np.ndarray:
    xp = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    acc = np.zeros((1, 6, 6, 4), np.int64)
    for i in range(3):
        for j in range(3):
            acc += xp[:, i:i + 6, j:j + 6, :] @ W_HWCF[i, j].astype(np.int64)
    q = requantize(wrap_int32(acc).reshape(-1, 4), BIAS4, 1518500250, 31, 5, False).reshape(1, 6, 6, 4)
    r = np.maximum(q, 5)
    pool = r.reshape(1, 3, 2, 3, 2, 4).max(axis=(2, 4))
    fc = pool.reshape(1, 36).astype(np.int64) @ W_FC.astype(np.int64) + 7
    return np.clip(fc, -128, 127).astype(np.int8)


def test_nhwc_conv_pad_bias_relu_maxpool_flatten_fc():
    net, inputs, run = run_checked(NHWC)
    np.testing.assert_array_equal(run.outputs["result"], nhwc_oracle(inputs["x"]))
    assert [s.op for s in net.layers] == ["linalg.conv_2d_nhwc_hwcf", "linalg.generic", "linalg.pooling_nhwc_max",
                                          "linalg.matmul"]


W_B = RNG.integers(-30, 30, size=(1, 32, 6), dtype=np.int8)

RESIDUAL = f"""
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
module {{
  func.func @forward(%a: tensor<1x8x4x4xi8>, %b: tensor<1x8x4x4xi8>) -> tensor<1x6xi8> {{
    %e = tensor.empty() : tensor<1x8x4x4xi8>
    %sum = linalg.generic {{indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}} ins(%a, %b : tensor<1x8x4x4xi8>, tensor<1x8x4x4xi8>) outs(%e : tensor<1x8x4x4xi8>) {{
    ^bb0(%x: i8, %y: i8, %o: i8):
      %za = arith.constant 3 : i32
      %zb = arith.constant -2 : i32
      %0 = arith.extsi %x : i8 to i32
      %1 = arith.subi %0, %za : i32
      %2 = arith.extsi %y : i8 to i32
      %3 = arith.subi %2, %zb : i32
      %4 = arith.addi %1, %3 : i32
      %5 = arith.extsi %4 : i32 to i64
      %m = arith.constant 1288490189 : i64
      %6 = arith.muli %5, %m : i64
      %h = arith.constant 1073741824 : i64
      %7 = arith.addi %6, %h : i64
      %s = arith.constant 31 : i64
      %8 = arith.shrsi %7, %s : i64
      %z = arith.constant -4 : i64
      %9 = arith.addi %8, %z : i64
      %hi = arith.constant 127 : i64
      %10 = arith.minsi %9, %hi : i64
      %11 = arith.maxsi %10, %z : i64
      %12 = arith.trunci %11 : i64 to i8
      linalg.yield %12 : i8
    }} -> tensor<1x8x4x4xi8>
    %zero = arith.constant 0 : i32
    %ep = tensor.empty() : tensor<1x8x2x2xi32>
    %fp = linalg.fill ins(%zero : i32) outs(%ep : tensor<1x8x2x2xi32>) -> tensor<1x8x2x2xi32>
    %win = tensor.empty() : tensor<2x2xi8>
    %pool = linalg.pooling_nchw_sum {{dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>}} ins(%sum, %win : tensor<1x8x4x4xi8>, tensor<2x2xi8>) outs(%fp : tensor<1x8x2x2xi32>) -> tensor<1x8x2x2xi32>
    %eq = tensor.empty() : tensor<1x8x2x2xi8>
    %avg = linalg.generic {{indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}} ins(%pool : tensor<1x8x2x2xi32>) outs(%eq : tensor<1x8x2x2xi8>) {{
    ^bb0(%x: i32, %o: i8):
      %0 = arith.extsi %x : i32 to i64
      %h = arith.constant 2 : i64
      %1 = arith.addi %0, %h : i64
      %s = arith.constant 2 : i64
      %2 = arith.shrsi %1, %s : i64
      %lo = arith.constant -128 : i64
      %hi = arith.constant 127 : i64
      %3 = arith.maxsi %2, %lo : i64
      %4 = arith.minsi %3, %hi : i64
      %5 = arith.trunci %4 : i64 to i8
      linalg.yield %5 : i8
    }} -> tensor<1x8x2x2xi8>
    %flat = tensor.collapse_shape %avg [[0], [1, 2, 3]] : tensor<1x8x2x2xi8> into tensor<1x32xi8>
    %batched = tensor.expand_shape %flat [[0, 1], [2]] output_shape [1, 1, 32] : tensor<1x32xi8> into tensor<1x1x32xi8>
    %w = arith.constant {dense(W_B)} : tensor<1x32x6xi8>
    %eb = tensor.empty() : tensor<1x1x6xi32>
    %fb = linalg.fill ins(%zero : i32) outs(%eb : tensor<1x1x6xi32>) -> tensor<1x1x6xi32>
    %bm = linalg.batch_matmul ins(%batched, %w : tensor<1x1x32xi8>, tensor<1x32x6xi8>) outs(%fb : tensor<1x1x6xi32>) -> tensor<1x1x6xi32>
    %eo = tensor.empty() : tensor<1x1x6xi8>
    %q = linalg.generic {{indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}} ins(%bm : tensor<1x1x6xi32>) outs(%eo : tensor<1x1x6xi8>) {{
    ^bb0(%x: i32, %o: i8):
      %0 = arith.extsi %x : i32 to i64
      %m = arith.constant 1073741824 : i64
      %1 = arith.muli %0, %m : i64
      %h = arith.constant 8388608 : i64
      %2 = arith.addi %1, %h : i64
      %s = arith.constant 24 : i64
      %3 = arith.shrsi %2, %s : i64
      %lo = arith.constant -128 : i64
      %hi = arith.constant 127 : i64
      %4 = arith.maxsi %3, %lo : i64
      %5 = arith.minsi %4, %hi : i64
      %6 = arith.trunci %5 : i64 to i8
      linalg.yield %6 : i8
    }} -> tensor<1x1x6xi8>
    %out = tensor.collapse_shape %q [[0, 1], [2]] : tensor<1x1x6xi8> into tensor<1x6xi8>
    return %out : tensor<1x6xi8>
  }}
}}
"""


def residual_oracle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = (a.astype(np.int64) - 3) + (b.astype(np.int64) + 2)
    y = np.clip(((s * 1288490189 + 2**30) >> 31) - 4, -4, 127)            # ReLU at the zero point -4
    pool = y.reshape(1, 8, 2, 2, 2, 2).sum(axis=(3, 5))
    avg = np.clip((pool + 2) >> 2, -128, 127)
    bm = avg.reshape(1, 32) @ W_B[0].astype(np.int64)
    return np.clip((bm * 2**30 + 2**23) >> 24, -128, 127).astype(np.int8)


def test_residual_add_sum_pool_batch_matmul():
    net, inputs, run = run_checked(RESIDUAL)
    np.testing.assert_array_equal(run.outputs["result"], residual_oracle(inputs["a"], inputs["b"]))
    assert net.inputs == ["a", "b"]
    assert [s.op for s in net.layers] == ["linalg.generic", "linalg.pooling_nchw_sum", "linalg.batch_matmul"]


# -- errors ---------------------------------------------------------------------------------------
def _line_of(text: str, needle: str) -> tuple[int, int]:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i, line.index(needle) + 1
    raise AssertionError(needle)


def test_unsupported_op_is_one_line():
    text = gemm_mlir(4, 8, 4, resource=False).text.replace(
        "    return %C", "    %sm = linalg.softmax dimension(1) ins(%C : tensor<4x4xi8>) outs(%C : tensor<4x4xi8>) "
                        "-> tensor<4x4xi8>\n    return %C")
    line, col = _line_of(text, "%sm = linalg.softmax")
    with pytest.raises(MlirError, match=rf"^net\.mlir:{line}:{col}: linalg\.softmax: operation not supported; "
                                        rf"supported: {re.escape(SUPPORTED)}$"):
        load_mlir_text(text, "net.mlir")


def test_registered_but_unmapped_op():
    text = gemm_mlir(4, 8, 4, resource=False).text.replace(
        "    return %C", "    %sl = tensor.extract_slice %C[0, 0] [2, 4] [1, 1] : tensor<4x4xi8> to tensor<2x4xi8>\n"
                        "    return %C")
    line, col = _line_of(text, "%sl = tensor.extract_slice")
    with pytest.raises(MlirError, match=rf"^net\.mlir:{line}:{col}: tensor\.extract_slice: operation not supported; "
                                        r"supported: linalg\.matmul, "):
        load_mlir_text(text, "net.mlir")


def test_generic_body_op_not_supported():
    text = gemm_mlir(4, 8, 4, resource=False).text
    p = next(m for m in re.findall(r"(%r\d+)4 = arith\.shrsi", text))
    text = text.replace(f"{p}4 = arith.shrsi", f"{p}4 = arith.divsi")
    line, col = _line_of(text, f"{p}4 = arith.divsi")
    with pytest.raises(MlirError, match=rf"^net\.mlir:{line}:{col}: arith\.divsi: not supported in a linalg\.generic "
                                        r"body; supported: requantization trunci\(clamp"):
        load_mlir_text(text, "net.mlir")


def test_requantization_without_rounding_is_refused():
    # a floor shift is not the STORE path's round-half-up: refused, not silently changed
    text = gemm_mlir(4, 8, 4, resource=False).text
    text = re.sub(r"(%r\d+h) = arith.constant \d+ : i64", r"\1 = arith.constant 0 : i64", text)
    line, col = _line_of(text, "%C = linalg.generic")
    with pytest.raises(MlirError, match=rf"^net\.mlir:{line}:{col}: linalg\.generic: a requantization with rounding "
                                        r"other than adding 2\*\*\(shift-1\) before the shift"):
        load_mlir_text(text, "net.mlir")


def test_pad_value_must_be_the_zero_point():
    text = convnet_mlir().text
    text = text.replace("tensor.yield %c", "tensor.yield %c", 1)
    pad_const = re.search(r"(%c\d+) = arith.constant -3 : i8", text).group(1)
    text = text.replace(f"{pad_const} = arith.constant -3 : i8", f"{pad_const} = arith.constant 0 : i8")
    line, col = _line_of(text, "%conv1 = linalg.conv_2d_nchw_fchw_q")
    with pytest.raises(MlirError, match=rf"^net\.mlir:{line}:{col}: linalg\.conv_2d_nchw_fchw_q: an input padded with 0 "
                                        r"while its zero point is -3; supported: tensor\.pad with"):
        load_mlir_text(text, "net.mlir")


def test_float_arguments_refused():
    text = gemm_mlir(4, 8, 4, resource=False).text.replace("%A: tensor<4x8xi8>", "%A: tensor<4x8xf32>")
    with pytest.raises(MlirError, match=r"^net\.mlir:\d+:\d+: "):
        load_mlir_text(text, "net.mlir")


def test_syntax_error_is_one_line():
    with pytest.raises(MlirError, match=r"^bad\.mlir:1:\d+: not valid MLIR: "):
        load_mlir_text("module { func.func @main( }", "bad.mlir")


def test_missing_file():
    with pytest.raises(MlirError, match=r"^nope\.mlir: no such MLIR file$"):
        load_mlir("nope.mlir")


# -- RTL ---------------------------------------------------------------------------------------------
@pytest.mark.rtl
def test_convnet_on_verilator(root):
    from systolab.config import load_config
    prog = convnet_mlir(seed=2, channels=4, hw=6, classes=5)
    cfg = load_config(root / "configs" / "small.yaml")           # the config of the README's commands
    net, inputs, run = run_checked(prog.text, cfg=cfg, sim="verilator")
    np.testing.assert_array_equal(run.outputs["result"], prog.reference(inputs)["result"])
    assert run.cycles > 0 and all(r["cycles"] > 0 for r in run.layers if r["where"] == "accelerator")


def test_a_matmul_with_its_own_indexing_maps_is_refused_not_miscomputed():
    """A transposed `linalg.matmul` (explicit indexing_maps) must not run as the default one."""
    text = gemm_mlir(8, 16, 8, resource=False).text
    old = "linalg.matmul ins("
    assert old in text
    text = text.replace(old, "linalg.matmul indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, "
                             "affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d1, d0)>] ins(")
    with pytest.raises(MlirError, match=r"^t\.mlir:\d+:\d+: xDSL cannot read this form \(\w+\); supported: "
                                        r"linalg\.matmul.* in their default form$"):
        load_mlir_text(text, "t.mlir")
