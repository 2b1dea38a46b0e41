"""Float ONNX models built in code, and ONNX Runtime's static quantizer over generated calibration
data: the small models of the tests and of `examples/tiny_resnet.py`, and ImageNet ResNets and
MobileNetV2 with random weights for benchmarks and sweeps (`BUILTIN`). Nothing is downloaded.

    >>> model = tiny_resnet(seed=0)
    >>> quantize(model, "tiny_resnet.onnx", calibration_inputs(model, 8), fmt="qdq")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["tiny_resnet", "tiny_mobilenet", "resnet", "mobilenet_v2", "op_zoo", "float_model", "calibration_inputs",
           "quantize", "input_shape", "BUILTIN", "parse_builtin", "builtin_model", "bert_layer", "small_bert_layer",
           "single_op"]


def _init(name: str, a: np.ndarray):
    from onnx import numpy_helper
    a = np.asarray(a)
    return numpy_helper.from_array(a if a.dtype.kind == "i" else a.astype(np.float32), name)


def float_model(nodes, inputs: dict[str, list[int]], outputs: dict[str, list[int]], inits: dict, name="model"):
    """A float32 opset-17 model from nodes, input/output shapes and initializers."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
                          [_init(k, v) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="systolab")
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def tiny_resnet(*, channels: tuple[int, int] = (13, 21), in_channels: int = 3, size: int = 16,
                classes: int = 10, seed: int = 0):
    """A small ResNet-style float model: conv 3x3/2 -> relu -> maxpool 3x3/2 -> residual block
    (conv 3x3 -> relu -> conv 3x3, + identity, relu) -> conv 3x3/2 (channel change) -> relu ->
    global average pool -> flatten -> fully connected. Odd channel counts on purpose."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    c0, (c1, c2) = in_channels, channels

    def conv_w(o, i, k):
        return rng.normal(0, np.sqrt(2.0 / (i * k * k)), (o, i, k, k))

    inits = {
        "w1": conv_w(c1, c0, 3), "b1": rng.normal(0, 0.1, c1),
        "w2": conv_w(c1, c1, 3), "b2": rng.normal(0, 0.1, c1),
        "w3": conv_w(c1, c1, 3) * 0.5, "b3": rng.normal(0, 0.1, c1),
        "w4": conv_w(c2, c1, 3), "b4": rng.normal(0, 0.1, c2),
        "wf": rng.normal(0, np.sqrt(1.0 / c2), (classes, c2)), "bf": rng.normal(0, 0.1, classes),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Conv", ["p1", "w2", "b2"], ["c2"], name="block_conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"], name="block_relu1"),
        n("Conv", ["r2", "w3", "b3"], ["c3"], name="block_conv2", pads=[1, 1, 1, 1]),
        n("Add", ["c3", "p1"], ["a3"], name="block_add"),
        n("Relu", ["a3"], ["r3"], name="block_relu2"),
        n("Conv", ["r3", "w4", "b4"], ["c4"], name="conv_down", pads=[1, 1, 1, 1], strides=[2, 2]),
        n("Relu", ["c4"], ["r4"], name="relu_down"),
        n("GlobalAveragePool", ["r4"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flatten"),
        n("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return float_model(nodes, {"x": [1, c0, size, size]}, {"y": [1, classes]}, inits, "tiny_resnet")


def tiny_mobilenet(*, width: int = 8, expand: int = 4, in_channels: int = 3, size: int = 16, classes: int = 10,
                   seed: int = 0):
    """A small MobileNetV2-style float model: conv 3x3/2 -> ReLU6 -> inverted residual block
    (1x1 expand -> ReLU6 -> depthwise 3x3 -> ReLU6 -> 1x1 project, + identity) -> depthwise 3x3/2
    -> ReLU6 -> global average pool -> flatten -> fully connected. ReLU6 is Clip(0, 6)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    c, e = width, width * expand

    def w(o, i, k):
        return rng.normal(0, np.sqrt(2.0 / (i * k * k)), (o, i, k, k))

    inits = {
        "w1": w(c, in_channels, 3), "b1": rng.normal(0, 0.1, c),
        "we": w(e, c, 1), "be": rng.normal(0, 0.1, e),
        "wd": w(e, 1, 3), "bd": rng.normal(0, 0.1, e),
        "wp": w(c, e, 1) * 0.5, "bp": rng.normal(0, 0.1, c),
        "wd2": w(c, 1, 3), "bd2": rng.normal(0, 0.1, c),
        "wf": rng.normal(0, np.sqrt(1.0 / c), (classes, c)), "bf": rng.normal(0, 0.1, classes),
        "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        n("Clip", ["c1", "lo", "hi"], ["r1"], name="relu6_1"),
        n("Conv", ["r1", "we", "be"], ["ce"], name="expand"),
        n("Clip", ["ce", "lo", "hi"], ["re"], name="relu6_e"),
        n("Conv", ["re", "wd", "bd"], ["cd"], name="dw", pads=[1, 1, 1, 1], group=e),
        n("Clip", ["cd", "lo", "hi"], ["rd"], name="relu6_d"),
        n("Conv", ["rd", "wp", "bp"], ["cp"], name="project"),
        n("Add", ["cp", "r1"], ["a"], name="block_add"),
        n("Conv", ["a", "wd2", "bd2"], ["cd2"], name="dw_down", pads=[1, 1, 1, 1], strides=[2, 2], group=c),
        n("Clip", ["cd2", "lo", "hi"], ["rd2"], name="relu6_d2"),
        n("GlobalAveragePool", ["rd2"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flatten"),
        n("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return float_model(nodes, {"x": [1, in_channels, size, size]}, {"y": [1, classes]}, inits, "tiny_mobilenet")


def resnet(depth: int = 18, *, size: int = 224, classes: int = 1000, width: int = 64, seed: int = 0):
    """An ImageNet ResNet (He et al. 2016) in float with random weights (batch norms folded into
    the convolutions' weights and biases, as a deployed model has them): depth 18 or 34 (basic
    blocks) or 50 (bottlenecks), input 3 x `size` x `size`. The stem is a 7x7/2 convolution and a
    3x3/2 max pool; each stage halves the map (stride on the first block's 3x3, or 1x1/2 projection
    shortcuts) and doubles the channels from `width`; global average pool and a fully connected
    layer to `classes`."""
    from onnx import helper

    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
    if depth not in blocks:
        raise ValueError(f"depth must be one of {', '.join(map(str, blocks))}, not {depth!r}")
    bottleneck = depth >= 50
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    nodes = []
    n = helper.make_node

    def conv(x, cin, cout, k, stride, name, relu=True, gain=1.0):
        w = rng.normal(0, gain * np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        inits[f"{name}_w"], inits[f"{name}_b"] = w, rng.normal(0, 0.05, cout)
        nodes.append(n("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], name=name, kernel_shape=[k, k],
                       pads=[k // 2] * 4, strides=[stride, stride]))
        if not relu:
            return f"{name}_c"
        nodes.append(n("Relu", [f"{name}_c"], [f"{name}_r"], name=f"{name}_relu"))
        return f"{name}_r"

    x = conv("x", 3, width, 7, 2, "stem")
    nodes.append(n("MaxPool", [x], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = "pool", width
    for stage, count in enumerate(blocks[depth]):
        mid = width * 2 ** stage
        cout = mid * 4 if bottleneck else mid
        for b in range(count):
            stride = 2 if b == 0 and stage > 0 else 1
            name = f"s{stage + 1}b{b + 1}"
            if bottleneck:
                y = conv(x, cin, mid, 1, 1, f"{name}_a")
                y = conv(y, mid, mid, 3, stride, f"{name}_b")
                y = conv(y, mid, cout, 1, 1, f"{name}_c", relu=False, gain=0.5)
            else:
                y = conv(x, cin, mid, 3, stride, f"{name}_a")
                y = conv(y, mid, cout, 3, 1, f"{name}_b", relu=False, gain=0.5)
            short = x if stride == 1 and cin == cout else conv(x, cin, cout, 1, stride, f"{name}_proj", relu=False)
            nodes.append(n("Add", [y, short], [f"{name}_sum"], name=f"{name}_add"))
            nodes.append(n("Relu", [f"{name}_sum"], [f"{name}_out"], name=f"{name}_relu"))
            x, cin = f"{name}_out", cout
    inits["fc_w"], inits["fc_b"] = rng.normal(0, np.sqrt(1.0 / cin), (classes, cin)), rng.normal(0, 0.05, classes)
    nodes += [n("GlobalAveragePool", [x], ["gap"], name="gap"), n("Flatten", ["gap"], ["flat"], name="flatten"),
              n("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1)]
    return float_model(nodes, {"x": [1, 3, size, size]}, {"y": [1, classes]}, inits, f"resnet{depth}")


#: MobileNetV2's inverted-residual stages: (expansion t, output channels c, blocks n, first stride s)
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))


def _make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of `divisor` (at least `divisor`),
    one more step up when rounding down lost over 10 %."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def mobilenet_v2(*, size: int = 224, classes: int = 1000, width_mult: float = 1.0, seed: int = 0):
    """MobileNetV2 (Sandler et al. 2018) in float with random weights (batch norms folded, as a
    deployed model has them), input 3 x `size` x `size`: a 3x3/2 stem convolution to 32 channels,
    the inverted residual blocks of `MOBILENET_V2_STAGES` (1x1 expand by t, skipped when t = 1;
    3x3 depthwise, strided on a stage's first block; 1x1 linear projection; an identity Add when
    the block keeps its shape), a 1x1 convolution to 1280 channels, global average pool, flatten
    and a fully connected layer to `classes`. Channels are `width_mult` times the paper's, rounded
    by `_make_divisible` (the last convolution never narrower than 1280, as torchvision's).
    ReLU6 is `Clip(x, 0, 6)` with min and max inputs, as PyTorch exports it. Weights are He-normal;
    a projection that feeds a residual Add has half the gain, so the sums stay in range."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {"relu6_min": np.array(0.0, np.float32), "relu6_max": np.array(6.0, np.float32)}
    nodes = []
    n = helper.make_node

    def conv(x, cin, cout, k, stride, name, *, group=1, relu6=True, gain=1.0):
        fan_in = cin // group * k * k
        w = rng.normal(0, gain * np.sqrt(2.0 / fan_in), (cout, cin // group, k, k))
        inits[f"{name}_w"], inits[f"{name}_b"] = w, rng.normal(0, 0.05, cout)
        nodes.append(n("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], name=name, kernel_shape=[k, k],
                       pads=[k // 2] * 4, strides=[stride, stride], group=group))
        if not relu6:
            return f"{name}_c"
        nodes.append(n("Clip", [f"{name}_c", "relu6_min", "relu6_max"], [f"{name}_r"], name=f"{name}_relu6"))
        return f"{name}_r"

    cin = _make_divisible(32 * width_mult)
    x = conv("x", 3, cin, 3, 2, "stem")
    for stage, (t, c, count, s) in enumerate(MOBILENET_V2_STAGES):
        cout = _make_divisible(c * width_mult)
        for b in range(count):
            stride = s if b == 0 else 1
            name = f"s{stage + 1}b{b + 1}"
            residual = stride == 1 and cin == cout
            hidden = cin * t
            y = x if t == 1 else conv(x, cin, hidden, 1, 1, f"{name}_expand")
            y = conv(y, hidden, hidden, 3, stride, f"{name}_dw", group=hidden)
            y = conv(y, hidden, cout, 1, 1, f"{name}_project", relu6=False, gain=0.5 if residual else 1.0)
            if residual:
                nodes.append(n("Add", [y, x], [f"{name}_sum"], name=f"{name}_add"))
                y = f"{name}_sum"
            x, cin = y, cout
    last = _make_divisible(1280 * max(1.0, width_mult))
    x = conv(x, cin, last, 1, 1, "head")
    inits["fc_w"], inits["fc_b"] = rng.normal(0, np.sqrt(1.0 / last), (classes, last)), rng.normal(0, 0.05, classes)
    nodes += [n("GlobalAveragePool", [x], ["gap"], name="gap"), n("Flatten", ["gap"], ["flat"], name="flatten"),
              n("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1)]
    return float_model(nodes, {"x": [1, 3, size, size]}, {"y": [1, classes]}, inits, "mobilenet_v2")


def op_zoo(*, seed: int = 0, size: int = 11, in_channels: int = 5, classes: int = 7):
    """A float model with the less common forms the importer accepts: SAME_UPPER padding, a
    dilated conv, max pooling with ceil_mode and a ReLU after it, a 1x1/2 projection shortcut,
    average pooling with padding, a flatten of a spatial map into a MatMul (a conv over the whole
    map). The average pool divides by 9: an odd divisor never makes an exact rounding tie (see
    `codegen.network` on ties)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    c0, c1, c2 = in_channels, 9, 6
    inits = {
        "w1": rng.normal(0, 0.3, (c1, c0, 3, 3)), "b1": rng.normal(0, 0.1, c1),
        "w2": rng.normal(0, 0.2, (c1, c1, 3, 3)), "b2": rng.normal(0, 0.1, c1),
        "wp": rng.normal(0, 0.3, (c1, c1, 1, 1)),
        "w3": rng.normal(0, 0.3, (c2, c1, 1, 1)), "b3": rng.normal(0, 0.1, c2),
        "wm": rng.normal(0, 0.2, (c2 * 3 * 3, classes)),
        "shape": np.array([0, -1], dtype=np.int64),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv_same", auto_pad="SAME_UPPER", strides=[2, 2]),
        n("MaxPool", ["c1"], ["p1"], name="pool_ceil", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        n("Relu", ["p1"], ["r1"], name="relu_after_pool"),
        n("Conv", ["r1", "w2", "b2"], ["c2"], name="conv_dilated", pads=[2, 2, 2, 2], dilations=[2, 2]),
        n("Conv", ["r1", "wp"], ["sc"], name="projection"),
        n("Add", ["c2", "sc"], ["a2"], name="add"),
        n("AveragePool", ["a2"], ["ap"], name="avgpool", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
          count_include_pad=1),
        n("Conv", ["ap", "w3", "b3"], ["c3"], name="conv_1x1"),
        n("Relu", ["c3"], ["r3"], name="relu3"),
        n("Reshape", ["r3", "shape"], ["f"], name="flatten"),
        n("MatMul", ["f", "wm"], ["y"], name="matmul"),
    ]
    return float_model(nodes, {"x": [1, c0, size, size]}, {"y": [1, classes]}, inits, "op_zoo")


def input_shape(model) -> list[int]:
    return [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]


def calibration_inputs(model, count: int = 8, *, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """`count` generated inputs (standard normal) for the model's first input."""
    rng = np.random.default_rng(seed)
    name = model.graph.input[0].name
    shape = input_shape(model)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


def quantize(model, out_path: str | Path, calibration: list[dict], *, fmt: str = "qdq",
             per_channel: bool = True, activation: str = "uint8", extra_ops: tuple[str, ...] = ()) -> Path:
    """ONNX Runtime's static quantizer (`quantize_static`) over `calibration`: QDQ or QOperator.
    `extra_ops`: operator types quantized besides ONNX Runtime's defaults (e.g. Gelu, whose
    output it leaves in float otherwise)."""
    import logging

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            return next(self.it, None)

    out_path = Path(out_path)
    logging.getLogger().setLevel(logging.ERROR)        # the quantizer suggests pre-processing
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "float.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(out_path), Reader(),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        op_types_to_quantize=_default_ops() + list(extra_ops) if extra_ops else None)
    return out_path


# -- networks by name ------------------------------------------------------------------------------
#: networks built in code, by the name sweeps and benchmarks use (`resnet18:32`: NAME[:SIZE]):
#: name -> (builder of the float model for an input size, default size, what it is)
BUILTIN: dict[str, tuple] = {
    "resnet18": (lambda size: resnet(18, size=size), 224, "ImageNet ResNet-18, input 3 x SIZE x SIZE"),
    "resnet34": (lambda size: resnet(34, size=size), 224, "ImageNet ResNet-34, input 3 x SIZE x SIZE"),
    "resnet50": (lambda size: resnet(50, size=size), 224, "ImageNet ResNet-50 (bottlenecks), input 3 x SIZE x SIZE"),
    "resnet18w16": (lambda size: resnet(18, size=size, width=16, classes=100), 32,
                    "ResNet-18 with a quarter of the channels (16..128) and 100 classes"),
    "mobilenetv2": (lambda size: mobilenet_v2(size=size), 224,
                    "ImageNet MobileNetV2 (inverted residuals, depthwise 3x3, ReLU6), input 3 x SIZE x SIZE"),
    "mobilenetv2w35": (lambda size: mobilenet_v2(size=size, width_mult=0.35, classes=100), 32,
                       "MobileNetV2 at width 0.35 (blocks of 8 to 112 channels, head 1280) and 100 classes"),
    "tiny_resnet": (lambda size: tiny_resnet(size=size), 16, "two residual stages, 13 and 21 channels"),
    "op_zoo": (lambda size: op_zoo(size=size), 11, "one of every supported CNN operator"),
    "bert_base": (lambda size: bert_layer(seq=size), 128,
                  "a BERT-base encoder layer (hidden 768, 12 heads, FFN 3072), input SIZE x 768; needs a vector unit"),
    "bert_small": (lambda size: bert_layer(size, 64, 2, 128), 16,
                   "a small encoder layer (hidden 64, 2 heads, FFN 128), input SIZE x 64; needs a vector unit"),
}


def parse_builtin(spec: str) -> tuple[str, int]:
    """`NAME[:SIZE]` -> (name, size); a `ModelError` (one line, the names allowed) otherwise."""
    from .onnx_import import ModelError

    name, colon, size = str(spec).partition(":")
    if name not in BUILTIN:
        raise ModelError(f"network must be NAME[:SIZE] with NAME one of {', '.join(BUILTIN)}, not {spec!r}")
    if not colon:
        return name, BUILTIN[name][1]
    if not size.isdigit() or not 8 <= int(size) <= 1024:
        raise ModelError(f"network must be NAME[:SIZE] with SIZE an integer from 8 to 1024, not {spec!r}")
    return name, int(size)


def builtin_model(spec: str, directory: str | Path | None = None) -> tuple[Path, Path]:
    """The quantized ONNX model (QDQ, int8 per-channel weights, by `quantize_static` over two
    generated calibration inputs) and a generated input (`.npy`) of the network `spec`
    (`resnet18:32`), built once and kept in `directory` (default: the systolab cache), keyed by
    the source of this module so a change to a builder rebuilds them."""
    from systolab.cache import cache_root, source_digest

    name, size = parse_builtin(spec)
    where = Path(directory) if directory is not None else cache_root() / "models"
    where.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{size}_{source_digest('systolab.codegen:onnx_models.py')[:8]}"
    model_path, x_path = where / f"{stem}.onnx", where / f"{stem}_x.npy"
    if not (model_path.is_file() and x_path.is_file()):
        m = BUILTIN[name][0](size)
        # whole files only, under names of this process: a concurrent reader never sees half
        # of one, and two processes building the same model do not write into each other's
        tmp, tmp_x = model_path.with_suffix(f".{os.getpid()}.tmp.onnx"), x_path.with_suffix(f".{os.getpid()}.tmp.npy")
        quantize(m, tmp, calibration_inputs(m, 2))
        np.save(tmp_x, calibration_inputs(m, 1, seed=7)[0][m.graph.input[0].name])
        tmp_x.replace(x_path)
        tmp.replace(model_path)
    return model_path, x_path


def _default_ops() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


def bert_layer(seq: int = 128, hidden: int = 768, heads: int = 12, ffn: int = 3072, *, seed: int = 0,
               gelu: str = "op", eps: float = 1e-12):
    """A float BERT encoder layer (post-LayerNorm, as BERT-base) on a (seq, hidden) input with
    random weights: Q, K, V projections (Gemm), heads split by Reshape + Transpose, Q.K^T / sqrt(d),
    Softmax, P.V, heads merged, output projection, residual Add, LayerNormalization, FFN with GELU
    (`gelu="op"`: the opset-20 Gelu operator), residual Add, LayerNormalization."""
    import onnx
    from onnx import TensorProto, helper

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    rng = np.random.default_rng(seed)
    dh = hidden // heads
    inits: dict[str, np.ndarray] = {}

    def lin(name, i, o):
        inits[f"{name}_w"] = rng.normal(0, 1.0 / np.sqrt(i), (o, i))
        inits[f"{name}_b"] = rng.normal(0, 0.02, o)

    for name in ("q", "k", "v", "o"):
        lin(name, hidden, hidden)
    lin("ff1", hidden, ffn)
    lin("ff2", ffn, hidden)
    for name in ("ln1", "ln2"):
        inits[f"{name}_g"] = rng.normal(1.0, 0.1, hidden)
        inits[f"{name}_b"] = rng.normal(0.0, 0.1, hidden)
    inits["split"] = np.array([seq, heads, dh], np.int64)
    inits["merge"] = np.array([seq, hidden], np.int64)
    inits["sqrt_d"] = np.array(np.sqrt(dh), np.float32)
    n = helper.make_node

    def gemm(x, name, y):
        return n("Gemm", [x, f"{name}_w", f"{name}_b"], [y], name=name, transB=1)

    nodes = [
        gemm("x", "q", "q"), gemm("x", "k", "k"), gemm("x", "v", "v"),
        n("Reshape", ["q", "split"], ["q3"], name="q_split"),
        n("Transpose", ["q3"], ["qh"], name="q_heads", perm=[1, 0, 2]),
        n("Reshape", ["k", "split"], ["k3"], name="k_split"),
        n("Transpose", ["k3"], ["kt"], name="k_heads", perm=[1, 2, 0]),
        n("Reshape", ["v", "split"], ["v3"], name="v_split"),
        n("Transpose", ["v3"], ["vh"], name="v_heads", perm=[1, 0, 2]),
        n("MatMul", ["qh", "kt"], ["scores"], name="qk"),
        n("Div", ["scores", "sqrt_d"], ["scaled"], name="scale"),
        n("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
        n("MatMul", ["probs", "vh"], ["ctx"], name="pv"),
        n("Transpose", ["ctx"], ["ctx3"], name="ctx_merge", perm=[1, 0, 2]),
        n("Reshape", ["ctx3", "merge"], ["ctx2"], name="ctx_flat"),
        gemm("ctx2", "o", "attn"),
        n("Add", ["attn", "x"], ["res1"], name="residual1"),
        n("LayerNormalization", ["res1", "ln1_g", "ln1_b"], ["h1"], name="ln1", axis=-1, epsilon=eps),
        gemm("h1", "ff1", "f1"),
    ]
    if gelu == "op":
        nodes.append(n("Gelu", ["f1"], ["g1"], name="gelu"))
    else:
        inits["sqrt2"], inits["one"], inits["half"] = (np.array(np.sqrt(2.0), np.float32), np.array(1.0, np.float32),
                                                       np.array(0.5, np.float32))
        nodes += [n("Div", ["f1", "sqrt2"], ["g_d"], name="gelu_div"), n("Erf", ["g_d"], ["g_e"], name="gelu_erf"),
                  n("Add", ["g_e", "one"], ["g_a"], name="gelu_add"), n("Mul", ["f1", "g_a"], ["g_m"], name="gelu_mul"),
                  n("Mul", ["g_m", "half"], ["g1"], name="gelu_half")]
    nodes += [
        gemm("g1", "ff2", "f2"),
        n("Add", ["f2", "h1"], ["res2"], name="residual2"),
        n("LayerNormalization", ["res2", "ln2_g", "ln2_b"], ["y"], name="ln2", axis=-1, epsilon=eps),
    ]
    g = helper.make_graph(nodes, "bert_layer",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, hidden])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, hidden])],
                          [_init(k, v) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], producer_name="systolab")
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def small_bert_layer(*, seed: int = 0, gelu: str = "op"):
    """The small encoder layer of the tests: seq 16, hidden 64, 2 heads, FFN 128."""
    return bert_layer(16, 64, 2, 128, seed=seed, gelu=gelu)


def single_op(op: str, shape=(16, 64), *, seed: int = 0, **attrs):
    """A float model of one operator on a (seq, features) input, for per-operator agreement:
    Softmax, LayerNormalization, Gelu, or Mul/Div by a constant."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    ins = ["x"]
    if op == "LayerNormalization":
        inits["g"], inits["b"] = rng.normal(1.0, 0.2, shape[-1]), rng.normal(0.0, 0.2, shape[-1])
        ins += ["g", "b"]
        attrs.setdefault("epsilon", 1e-5)
    elif op in ("Mul", "Div"):
        inits["c"] = np.array(attrs.pop("constant", 0.125), np.float32)
        ins.append("c")
    node = helper.make_node(op, ins, ["y"], name=op.lower(), **attrs)
    g = helper.make_graph([node], op.lower(), [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
                          [_init(k, v) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], producer_name="systolab")
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m
