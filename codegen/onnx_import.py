"""ONNX import: quantized models (ONNX Runtime's static quantizer, QDQ or QOperator format) to a
`codegen.network.Network` (the run flow, `systolab.sim.run.run_onnx`, compiles and runs it), the
ONNX Runtime reference outputs, and generated inputs for sweeps.

Accepted:

- QDQ format: float operators between DequantizeLinear and QuantizeLinear nodes, weights and
  biases as DequantizeLinear of int8/uint8/int32 initializers (per-tensor or per-channel), and the
  fusions the quantizer makes (a Relu folded into the output quantization of a Conv or Add is just
  a quantization range; a Conv -> Relu -> QuantizeLinear chain fuses the ReLU into the STORE; a
  Clip(0, max) is a ReLU when the output quantization saturates at max, ReLU6 as quantized). Conv
  with group = channels is a depthwise convolution, with another group a grouped one.
- QOperator format: QLinearConv, QLinearMatMul, QGemm, QLinearAdd, QLinearGlobalAveragePool,
  QLinearAveragePool, MaxPool / Flatten / Reshape on quantized tensors.
- A float model input is quantized by the host (its QuantizeLinear); a model output that is a
  DequantizeLinear is dequantized by the host, so `--output` holds what ONNX Runtime returns.

Everything is checked while the graph is read, before anything is compiled: an unsupported
operator, dtype or attribute raises `UserError` naming the node, the operator and what is supported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from systolab.errors import UserError

from .conv import TensorSpec
from .network import (HostStep, Layer, Network, QParams, add_layer, avgpool_layer, conv_layer,
                      maxpool_layer, requant_layer)
from .transformer import SUPPORTED_TRANSFORMER, TransformerOps

__all__ = ["ModelError", "load_onnx", "ort_reference", "ort_tensors", "model_macs", "generated_inputs", "SUPPORTED_QDQ", "SUPPORTED_QOPERATOR"]


class ModelError(UserError):
    pass


#: float operators accepted between DequantizeLinear and QuantizeLinear nodes
SUPPORTED_QDQ = ("Conv", "Gemm", "MatMul", "Add", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
                 "Flatten", "Reshape") + SUPPORTED_TRANSFORMER
#: quantized operators of the QOperator format
SUPPORTED_QOPERATOR = ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearGlobalAveragePool",
                       "QLinearAveragePool", "MaxPool", "Flatten", "Reshape")
_BOUNDARY = ("QuantizeLinear", "DequantizeLinear", "Constant", "Identity")
_DOMAINS = ("", "ai.onnx", "com.microsoft")
_SUPPORTED_TEXT = (f"{', '.join(SUPPORTED_QDQ)} between QuantizeLinear/DequantizeLinear (QDQ), "
                   f"{', '.join(SUPPORTED_QOPERATOR)} (QOperator)")

_QTYPES = {2: "uint8", 3: "int8"}          # onnx.TensorProto.UINT8, INT8


@dataclass
class _QT:
    """A quantized activation of the model."""

    spec: TensorSpec
    q: QParams
    shape: tuple[int, ...]                 # the ONNX shape (NCHW or 2-D)
    view: tuple[int, int, int] | None = None   # (C, H, W) when a 2-D tensor is a flattened NHWC one


@dataclass
class _Weight:
    """A constant operand: integer values, scale and zero point (per channel along `axis`)."""

    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    def channel(self, n: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero point) broadcast to `n` channels along `axis` of the values."""
        s, z = np.asarray(self.scale, np.float64).reshape(-1), np.asarray(self.zero_point, np.int64).reshape(-1)
        if s.size == 1:
            return np.full(n, s[0]), np.full(n, z[0] if z.size else 0)
        if s.size != n or self.axis % self.values.ndim != axis:
            raise ValueError("per-channel quantization along an axis that is not the output channels")
        return s, (z if z.size == n else np.zeros(n, np.int64))


class _Importer(TransformerOps):
    def __init__(self, path: str, model, input_shapes: dict | None):
        self.path = path
        self.model = model
        self.g = model.graph
        self.input_shapes = input_shapes or {}
        name = Path(path).stem
        self.net = Network(name, {}, {})
        self.consts: dict[str, np.ndarray] = {}
        self.qt: dict[str, _QT] = {}          # quantized activations by ONNX name
        self.fl: dict[str, tuple] = {}        # float values by ONNX name: ("dq", qname) / ("w", _Weight) / ("pending", node, relu)
        self.consumers: dict[str, list] = {}
        self.graph_outputs = [o.name for o in self.g.output]

    # -- errors -------------------------------------------------------------------------------------
    def fail(self, node, what: str, supported: str) -> None:
        raise ModelError(f"{self.path}: node {self._name(node)!r} ({node.op_type}): {what}; supported: {supported}")

    @staticmethod
    def _name(node) -> str:
        return node.name or (node.output[0] if node.output else node.op_type)

    # -- helpers ------------------------------------------------------------------------------------
    def attrs(self, node) -> dict:
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str):
        return self.consts.get(name)

    def scalar(self, node, name: str, what: str, *, integer: bool = False):
        v = self.const(name)
        if v is None or v.size != 1:
            self.fail(node, f"{what} must be a constant scalar", "per-tensor activation quantization")
        return int(v.reshape(-1)[0]) if integer else float(v.reshape(-1)[0])

    def qparams(self, node, scale: str, zp: str | None, dtype_hint: str | None = None) -> QParams:
        s = self.scalar(node, scale, f"scale {scale!r}")
        if zp is None or zp == "":
            if dtype_hint is None:
                self.fail(node, "a zero point is required", "uint8 or int8 zero points")
            return QParams(s, 0, dtype_hint)
        z = self.const(zp)
        if z is None or z.size != 1:
            self.fail(node, f"zero point {zp!r} must be a constant scalar", "per-tensor activation quantization")
        if z.dtype not in (np.uint8, np.int8):
            self.fail(node, f"activations of type {z.dtype}", "uint8 and int8 activations")
        if not s > 0:
            self.fail(node, f"scale {s!r}", "scales > 0")
        return QParams(s, int(z.reshape(-1)[0]), str(z.dtype))

    def new_qt(self, onnx_name: str, spec: TensorSpec, q: QParams, shape, view=None) -> _QT:
        if spec.name not in self.net.tensors:
            self.net.add_tensor(spec, q)
        self.net.qparams[spec.name] = q
        t = _QT(spec, q, tuple(shape), view)
        self.qt[onnx_name] = t
        return t

    def spec_name(self, onnx_name: str) -> str:
        name = onnx_name
        while name in self.net.tensors:
            name += "'"
        return name

    def act(self, node, name: str) -> _QT:
        """The quantized activation behind input `name` of a float (QDQ) or QOperator node."""
        if name in self.qt:
            return self.qt[name]
        v = self.fl.get(name)
        if v is not None and v[0] == "dq":
            return self.qt[v[1]]
        if v is not None and v[0] == "pending":
            self.fail(node, f"input {name!r} is not quantized (a float operator feeds it without a "
                      f"QuantizeLinear in between)", _SUPPORTED_TEXT)
        self.fail(node, f"input {name!r} must be a quantized activation", _SUPPORTED_TEXT)

    def weight(self, node, name: str, what: str) -> _Weight:
        v = self.fl.get(name)
        if v is not None and v[0] == "w":
            return v[1]
        c = self.const(name)
        if c is not None and c.dtype == np.float32 and what == "bias":
            return _Weight(c.astype(np.float64), np.ones(1), np.zeros(1, np.int64))
        self.fail(node, f"{what} {name!r} must be a quantized constant (DequantizeLinear of an int8 "
                  f"initializer)", "int8/uint8 weights, int32 or float biases")

    def int8_weight(self, node, w: _Weight, n_out: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """(w - zero point) as int8 and the per-output-channel scale."""
        if w.values.dtype not in (np.int8, np.uint8):
            self.fail(node, f"weights of type {w.values.dtype}", "int8 or uint8 weights")
        try:
            s, z = w.channel(n_out, axis)
        except ValueError as e:
            self.fail(node, str(e), "per-tensor or per-output-channel weight scales")
        shape = [1] * w.values.ndim
        shape[axis] = n_out
        v = w.values.astype(np.int64) - z.reshape(shape)
        if v.min() < -128 or v.max() > 127:
            self.fail(node, "weight minus its zero point does not fit int8",
                      "symmetric int8 weights, or uint8 weights with zero point 128")
        return v.astype(np.int8), s

    def bias_int(self, node, name: str | None, xq: QParams, w_scale: np.ndarray) -> np.ndarray | None:
        if not name:
            return None
        b = self.weight(node, name, "bias")
        n = w_scale.size
        try:
            bs, bz = b.channel(n, 0)
        except ValueError:
            self.fail(node, "bias scale does not match the output channels", "per-channel or per-tensor bias")
        real = (b.values.astype(np.float64).reshape(-1) - bz) * bs
        if real.size != n:
            self.fail(node, f"bias has {real.size} values for {n} output channels", "one bias per output channel")
        return np.rint(real / (xq.scale * w_scale)).astype(np.int64)

    # -- graph --------------------------------------------------------------------------------------
    def run(self) -> Network:
        from onnx import numpy_helper
        for opset in self.model.opset_import:
            if opset.domain not in _DOMAINS:
                raise ModelError(f"{self.path}: operator set domain {opset.domain!r} is not supported; "
                                 f"supported: the default domain and com.microsoft")
        for init in self.g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        for node in self.g.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        for o in self.graph_outputs:
            self.consumers.setdefault(o, []).append(None)
        # check every operator first: an unsupported one fails before anything else is done
        for node in self.g.node:
            if node.domain not in _DOMAINS or node.op_type not in (SUPPORTED_QDQ + SUPPORTED_QOPERATOR + _BOUNDARY):
                self.fail(node, "operator not supported", _SUPPORTED_TEXT)
        for inp in self.g.input:
            if inp.name in self.consts:
                continue
            self.graph_input(inp)
        for node in self.g.node:
            self.node(node)
        for o in self.graph_outputs:
            self.graph_output(o)
        # ONNX rounds halves to even (QuantizeLinear; ONNX Runtime's requantization with nearbyint)
        for layer in self.net.layers:
            layer.ops = [replace(op, round_even=True) for op in layer.ops]
        for name, qt in self.qt.items():
            self.net.onnx_names.setdefault(qt.spec.name, (name, qt.shape, qt.view))
        return self.net

    def graph_input(self, inp) -> None:
        t = inp.type.tensor_type
        if t.elem_type != 1:      # FLOAT
            raise ModelError(f"{self.path}: input {inp.name!r} has element type "
                             f"{_type_name(t.elem_type)}; supported: float32 inputs quantized by a QuantizeLinear")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        given = self.input_shapes.get(inp.name)
        if given is not None:
            if len(given) != len(dims) or any(d is not None and d != g for d, g in zip(dims, given)):
                raise ModelError(f"{self.path}: input {inp.name!r} has shape {list(given)}; the model "
                                 f"expects {[d if d is not None else '?' for d in dims]}")
            dims = list(given)
        if any(d is None for d in dims[1:]) or len(dims) not in (2, 4):
            raise ModelError(f"{self.path}: input {inp.name!r} has shape "
                             f"{[d if d is not None else '?' for d in dims]}; supported: NCHW or (N, features) "
                             f"with fixed sizes (the batch may be symbolic)")
        dims[0] = dims[0] or 1
        self.fl[inp.name] = ("input", tuple(dims))
        self.net.inputs.append(inp.name)

    def graph_output(self, name: str) -> None:
        if name in self.qt:                 # a quantized tensor: returned in its own dtype
            qt = self.qt[name]
            self.net.steps.append(HostStep(f"{name}:output", "Output", _output_fn(qt, name, False),
                                           [qt.spec.name], [], f"{qt.q.dtype} output"))
            self.net.output_tensors[name] = (qt.spec.name, False)
        elif name not in self.net.outputs:
            src = self.fl.get(name)
            if src is not None and src[0] == "pending":
                self.fail(src[1], f"its output {name!r} is a model output that is not quantized",
                          "quantized models (onnxruntime.quantization.quantize_static, QDQ or QOperator format)")
            raise ModelError(f"{self.path}: output {name!r} is not quantized; supported: outputs that are "
                             f"DequantizeLinear of a quantized tensor, or quantized tensors")
        if name not in self.net.outputs:
            self.net.outputs.append(name)

    # -- nodes --------------------------------------------------------------------------------------
    def node(self, node) -> None:
        op = node.op_type
        if op == "Constant":
            from onnx import numpy_helper
            a = self.attrs(node)
            if "value" not in a:
                self.fail(node, "a Constant without a tensor value", "Constant with value")
            self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
        elif op == "Identity":
            src = node.input[0]
            for table in (self.consts, self.qt, self.fl):
                if src in table:
                    table[node.output[0]] = table[src]
        elif op == "DequantizeLinear":
            self.dequantize(node)
        elif op == "QuantizeLinear":
            self.quantize(node)
        elif op.startswith("Q") and op in SUPPORTED_QOPERATOR:
            self.qoperator(node)
        elif node.input and node.input[0] in self.qt and op in ("MaxPool", "Flatten", "Reshape"):
            x = self.qt[node.input[0]]
            self.lower(node, op, [x], x.q, relu=False)
        else:
            # a float operator of the QDQ format: lowered when its QuantizeLinear is reached
            self.fl[node.output[0]] = ("pending", node, False)
            if op in ("Relu", "Clip"):
                src = self.fl.get(node.input[0])
                if src is not None and src[0] == "pending" and len(self.consumers.get(node.input[0], [])) == 1:
                    # a Clip is a ReLU when its output's quantization saturates at its max (checked
                    # when the QuantizeLinear is reached)
                    self.fl[node.output[0]] = ("pending", src[1], True if op == "Relu" else node)
            for extra in node.output[1:]:
                if extra and self.consumers.get(extra):
                    self.fail(node, f"output {extra!r} is used", "the first output only")

    def dequantize(self, node) -> None:
        x, out = node.input[0], node.output[0]
        a = self.attrs(node)
        if x in self.consts:                 # a constant: weights or bias
            scale = self.const(node.input[1])
            zp = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int64)
            if scale is None or zp is None:
                self.fail(node, "scale and zero point must be constants", "constant quantization parameters")
            self.fl[out] = ("w", _Weight(self.consts[x], scale, zp, a.get("axis", 1)))
            return
        if x not in self.qt:
            self.fail(node, f"input {x!r} is not a quantized tensor", "DequantizeLinear of QuantizeLinear outputs")
        qt = self.qt[x]
        q = self.qparams(node, node.input[1], node.input[2] if len(node.input) > 2 else None, qt.q.dtype)
        if (q.scale, q.zero_point, q.dtype) != (qt.q.scale, qt.q.zero_point, qt.q.dtype):
            self.fail(node, "dequantizes with other parameters than its tensor was quantized with",
                      "matching QuantizeLinear/DequantizeLinear pairs")
        self.fl[out] = ("dq", x)
        if out in self.graph_outputs:
            self.net.steps.append(HostStep(f"{self._name(node)}", "DequantizeLinear",
                                           _output_fn(qt, out, True), [qt.spec.name], [],
                                           "dequantize to float32"))
            self.net.outputs.append(out)
            self.net.output_tensors[out] = (qt.spec.name, True)

    def quantize(self, node) -> None:
        x, out = node.input[0], node.output[0]
        a = self.attrs(node)
        if a.get("saturate", 1) != 1 or a.get("output_dtype", 0) not in (0, 2, 3):
            self.fail(node, "non-default saturate/output_dtype", "uint8 and int8 outputs")
        q = self.qparams(node, node.input[1], node.input[2] if len(node.input) > 2 else None, "uint8")
        src = self.fl.get(x)
        if src is None:
            self.fail(node, f"input {x!r} is not a float tensor of the graph", _SUPPORTED_TEXT)
        kind = src[0]
        if kind == "input":                  # the host quantizes a model input
            dims = src[1]
            spec = TensorSpec(self.spec_name(out), dims[0], *(dims[2:] if len(dims) == 4 else (1, 1)),
                              dims[1])
            qt = self.new_qt(out, spec, q, dims)
            self.net.steps.append(HostStep(self._name(node), "QuantizeLinear", _input_fn(x, qt), [],
                                           [spec.name], f"quantize {x}"))
        elif kind == "dq":                   # DequantizeLinear -> QuantizeLinear: a requantization
            xq = self.qt[src[1]]
            if (xq.q.scale, xq.q.zp) == (q.scale, q.zp):
                self.qt[out] = _QT(xq.spec, q, xq.shape, xq.view)
                self.qt[out].xview = getattr(xq, "xview", None)
            else:
                self.lower_requant(node, xq, out, q, relu=False)
        elif kind == "pending":
            fnode, relu = src[1], src[2]
            if not isinstance(relu, bool):
                relu = self.clip_as_relu(relu, q)
            ins = [self.act(fnode, i) if i in self.qt or (self.fl.get(i) or ("",))[0] == "dq" else None
                   for i in fnode.input]
            self.lower(fnode, fnode.op_type, ins, q, relu=relu, out=out)
        else:
            self.fail(node, f"input {x!r} is a constant", "QuantizeLinear of activations")

    def lower_requant(self, node, x: _QT, out: str, q: QParams, relu: bool) -> None:
        spec_name = self.spec_name(out)
        layer, spec = requant_layer(self._name(node), node.op_type, x.spec, x.q, spec_name, q, relu=relu)
        self.net.steps.append(layer)
        self.new_qt(out, spec, q, x.shape, x.view)

    def qoperator(self, node) -> None:
        op, i = node.op_type, list(node.input) + [""] * 9
        if op == "QLinearConv":
            x = self.act(node, i[0])
            self.check_q(node, x, i[1], i[2])
            w = _Weight(self.const_or_fail(node, i[3], "weight"), self.const_or_fail(node, i[4], "w_scale"),
                        self.const_or_fail(node, i[5], "w_zero_point"), 0)
            yq = self.qparams(node, i[6], i[7], x.q.dtype)
            self.conv(node, x, w, i[8] or None, yq, relu=False, out=node.output[0], bias_is_int=True)
        elif op == "QLinearMatMul":
            a = self.act(node, i[0])
            self.check_q(node, a, i[1], i[2])
            w = _Weight(self.const_or_fail(node, i[3], "B"), self.const_or_fail(node, i[4], "b_scale"),
                        self.const_or_fail(node, i[5], "b_zero_point"), 1)
            yq = self.qparams(node, i[6], i[7], a.q.dtype)
            self.fc(node, a, w, None, yq, trans_b=False, out=node.output[0])
        elif op == "QGemm":
            a = self.act(node, i[0])
            self.check_q(node, a, i[1], i[2])
            attrs = self.attrs(node)
            self.check_gemm_attrs(node, attrs)
            tb = attrs.get("transB", 0)
            w = _Weight(self.const_or_fail(node, i[3], "B"), self.const_or_fail(node, i[4], "b_scale"),
                        self.const_or_fail(node, i[5], "b_zero_point"), 0 if tb else 1)
            if not i[7]:
                self.fail(node, "a float output (no y_scale)", "QGemm with a quantized output")
            yq = self.qparams(node, i[7], i[8], a.q.dtype)
            self.fc(node, a, w, i[6] or None, yq, trans_b=bool(tb), out=node.output[0], bias_is_int=True)
        elif op == "QLinearAdd":
            a, b = self.act(node, i[0]), self.act(node, i[3])
            self.check_q(node, a, i[1], i[2])
            self.check_q(node, b, i[4], i[5])
            yq = self.qparams(node, i[6], i[7], a.q.dtype)
            self.lower(node, "Add", [a, b], yq, relu=False, out=node.output[0])
        elif op in ("QLinearGlobalAveragePool", "QLinearAveragePool"):
            x = self.act(node, i[0])
            self.check_q(node, x, i[1], i[2])
            yq = self.qparams(node, i[3], i[4], x.q.dtype)
            if self.attrs(node).get("channels_last", 0):
                self.fail(node, "channels_last=1", "channels_last=0 (NCHW)")
            self.lower(node, op[len("QLinear"):], [x], yq, relu=False, out=node.output[0])

    def const_or_fail(self, node, name: str, what: str) -> np.ndarray:
        v = self.const(name)
        if v is None:
            self.fail(node, f"{what} {name!r} is not a constant", "constant weights and quantization parameters")
        return v

    def check_q(self, node, x: _QT, scale: str, zp: str) -> None:
        q = self.qparams(node, scale, zp, x.q.dtype)
        if (abs(q.scale - x.q.scale) > 1e-12 * x.q.scale) or q.zp != x.q.zp:
            self.fail(node, "reads a tensor with other quantization parameters than it was written with",
                      "matching parameters")

    def check_gemm_attrs(self, node, a: dict) -> None:
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            self.fail(node, f"transA={a.get('transA', 0)}, alpha={a.get('alpha', 1.0)}, beta={a.get('beta', 1.0)}",
                      "transA=0, alpha=1, beta=1")

    # -- lowering -----------------------------------------------------------------------------------
    def lower(self, node, op: str, ins: list, yq: QParams, *, relu: bool, out: str | None = None) -> None:
        out = out or node.output[0]
        a = self.attrs(node)
        if self.xf_lower(node, op, ins, yq, relu=relu, out=out):     # codegen.transformer
            return
        if op == "Conv":
            w = self.weight(node, node.input[1], "weight")
            self.conv(node, ins[0], w, node.input[2] if len(node.input) > 2 else None, yq, relu=relu, out=out)
        elif op in ("Gemm", "MatMul"):
            if op == "Gemm":
                self.check_gemm_attrs(node, a)
            tb = bool(a.get("transB", 0))
            w = self.weight(node, node.input[1], "B")
            self.fc(node, ins[0], w, node.input[2] if len(node.input) > 2 else None, yq, trans_b=tb,
                    out=out, relu=relu)
        elif op == "Add":
            if len(ins) != 2 or ins[0] is None or ins[1] is None:
                self.fail(node, "an input that is not a quantized activation", "Add of two quantized activations")
            x, y = ins
            if x.shape != y.shape or x.view != y.view:
                self.fail(node, f"inputs of shapes {list(x.shape)} and {list(y.shape)}", "inputs of the same shape")
            layer, spec = add_layer(self._name(node), node.op_type, x.spec, x.q, y.spec, y.q, self.spec_name(out),
                                    yq, relu=relu)
            self.emit(layer, spec, out, yq, x.shape, x.view)
        elif op in ("Relu", "Clip"):
            x = self.need4(node, ins[0], allow2=True)
            self.lower_requant(node, x, out, yq, relu=op == "Relu" or self.clip_as_relu(node, yq))
        elif op == "MaxPool":
            x = self.need4(node, ins[0])
            self.maxpool(node, x, yq, a, out, relu)
        elif op in ("AveragePool", "GlobalAveragePool"):
            x = self.need4(node, ins[0])
            self.avgpool(node, x, yq, a, out, relu, glob=op == "GlobalAveragePool")
        elif op in ("Flatten", "Reshape"):
            self.flatten(node, ins[0], yq, a, out, relu)
        else:   # pragma: no cover - the operator check rejects everything else first
            self.fail(node, "operator not supported", _SUPPORTED_TEXT)

    def clip_as_relu(self, node, q: QParams) -> bool:
        """A Clip(min 0 or none, max) whose output quantization `q` cannot exceed max (ReLU6 with
        the output range [0, 6]): a ReLU (True) or nothing (False, no min). Others fail."""
        a = self.attrs(node)
        bounds = []
        for i, key, default in ((1, "min", -np.inf), (2, "max", np.inf)):
            name = node.input[i] if len(node.input) > i else ""
            v = self.const(name) if name else a.get(key, default)
            if v is None:
                self.fail(node, f"{key} {name!r} is not a constant", "Clip with constant bounds")
            bounds.append(float(np.asarray(v).reshape(-1)[0]))
        lo, hi = bounds
        top = q.scale * (127 - q.zp)            # the largest value the output can hold
        if lo not in (0.0, -np.inf) or hi < top * (1 - 1e-6):
            self.fail(node, f"Clip({lo:g}, {hi:g}) with an output range up to {top:g}",
                      "Clip(0, max) whose output quantization saturates at max (ReLU6), or Clip(-inf, max) likewise")
        return lo == 0.0

    def emit(self, layer: Layer, spec: TensorSpec, out: str, q: QParams, shape, view=None) -> None:
        self.net.steps.append(layer)
        self.new_qt(out, spec, q, shape, view)

    def need4(self, node, x: _QT | None, *, allow2: bool = False) -> _QT:
        if x is None:
            self.fail(node, "an input that is not a quantized activation", _SUPPORTED_TEXT)
        if len(x.shape) != 4 and not (allow2 and x.view is None):
            self.fail(node, f"a {len(x.shape)}-D input", "4-D NCHW inputs")
        return x

    def conv(self, node, x: _QT, w: _Weight, bias: str | None, yq: QParams, *, relu: bool, out: str,
             bias_is_int: bool = False) -> None:
        x = self.need4(node, x)
        a = self.attrs(node)
        if w.values.ndim != 4:
            self.fail(node, f"a {w.values.ndim - 2}-D convolution", "2-D convolutions (NCHW)")
        oc, ic, kh, kw = w.values.shape
        group = a.get("group", 1)
        if group < 1 or oc % group or ic * group != x.spec.c:
            self.fail(node, f"weight has {ic} input channels per group and {oc} outputs, the input {x.spec.c} "
                      f"channels in {group} group(s)", "input channels = weight input channels x group, "
                      "output channels a multiple of group")
        if list(a.get("kernel_shape", [kh, kw])) != [kh, kw]:
            self.fail(node, f"kernel_shape {a['kernel_shape']} differs from the weight", "kernel_shape of the weight")
        wi, ws = self.int8_weight(node, w, oc, 0)
        stride = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        pads = self.pads(node, a, (x.spec.h, x.spec.w), (kh, kw), stride, dil)
        if bias and bias_is_int:
            b = self.const_or_fail(node, bias, "bias").astype(np.int64).reshape(-1)
        else:
            b = self.bias_int(node, bias, x.q, ws)
        layer, spec = conv_layer(self._name(node), node.op_type, x.spec, x.q, wi, ws, b, self.spec_name(out), yq,
                                 stride=stride, pads=pads, dilation=dil, relu=relu, group=group,
                                 float32_scale=True)
        self.emit(layer, spec, out, yq, (spec.n, oc, spec.h, spec.w))

    def fc(self, node, x: _QT, w: _Weight, bias: str | None, yq: QParams, *, trans_b: bool, out: str,
           relu: bool = False, bias_is_int: bool = False) -> None:
        if x is None:
            self.fail(node, "input A is not a quantized activation", "quantized A, constant B")
        if len(x.shape) != 2:
            self.fail(node, f"a {len(x.shape)}-D input A", "2-D A (flatten first)")
        if w.values.ndim != 2:
            self.fail(node, f"a {w.values.ndim}-D B", "2-D constant B")
        # weight as (N, K)
        if trans_b:
            n_out, k = w.values.shape
            wi, ws = self.int8_weight(node, w, n_out, 0)
        else:
            k, n_out = w.values.shape
            wi, ws = self.int8_weight(node, w, n_out, 1)
            wi = wi.T
        if k != x.shape[1]:
            self.fail(node, f"B has {k} rows for {x.shape[1]} input features", "matching shapes")
        if x.view is not None:             # a flattened NCHW tensor: a conv over the whole image
            c, h, wd = x.view
            w4 = wi.reshape(n_out, c, h, wd)
        else:
            w4 = wi.reshape(n_out, k, 1, 1)
        if bias and bias_is_int:
            b = self.const_or_fail(node, bias, "bias").astype(np.int64).reshape(-1)
        else:
            b = self.bias_int(node, bias, x.q, ws)
        layer, spec = conv_layer(self._name(node), node.op_type, x.spec, x.q, np.ascontiguousarray(w4), ws, b,
                                 self.spec_name(out), yq, relu=relu, float32_scale=True)
        self.emit(layer, spec, out, yq, (x.shape[0], n_out))

    def pads(self, node, a: dict, hw, kernel, stride, dil) -> tuple[int, int, int, int]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = list(a.get("pads", [0, 0, 0, 0]))
            if len(p) != 4:
                self.fail(node, f"pads {p}", "4 pads (2-D)")
            return p[0], p[1], p[2], p[3]
        if auto == "VALID":
            return 0, 0, 0, 0
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for n, k, s, d in zip(hw, kernel, stride, dil):
                o = -(-n // s)
                total = max(0, (o - 1) * s + (k - 1) * d + 1 - n)
                small, big = total // 2, total - total // 2
                out.append((small, big) if auto == "SAME_UPPER" else (big, small))
            return out[0][0], out[1][0], out[0][1], out[1][1]
        self.fail(node, f"auto_pad={auto}", "NOTSET, VALID, SAME_UPPER, SAME_LOWER")

    def maxpool(self, node, x: _QT, yq: QParams, a: dict, out: str, relu: bool) -> None:
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            self.fail(node, "the Indices output", "MaxPool without indices")
        if a.get("storage_order", 0):
            self.fail(node, "storage_order=1", "storage_order=0")
        kernel = tuple(a["kernel_shape"])
        if len(kernel) != 2:
            self.fail(node, f"a {len(kernel)}-D kernel", "2-D pooling")
        stride = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        pads = self.pads(node, a, (x.spec.h, x.spec.w), kernel, stride, dil)
        if relu:
            self.fail(node, "a ReLU after the pooling", "MaxPool without ReLU")
        layer, spec = maxpool_layer(self._name(node), node.op_type, x.spec, x.q, self.spec_name(out), yq,
                                    kernel=kernel, stride=stride, pads=pads, dilation=dil,
                                    ceil_mode=bool(a.get("ceil_mode", 0)), add_tensor=self.net.add_tensor)
        self.emit(layer, spec, out, yq, (spec.n, spec.c, spec.h, spec.w))

    def avgpool(self, node, x: _QT, yq: QParams, a: dict, out: str, relu: bool, glob: bool) -> None:
        if relu:
            self.fail(node, "a ReLU after the pooling", "pooling without ReLU")
        if glob:
            layer, spec = avgpool_layer(self._name(node), node.op_type, x.spec, x.q, self.spec_name(out), yq)
        else:
            kernel = tuple(a["kernel_shape"])
            stride = tuple(a.get("strides", [1, 1]))
            if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
                self.fail(node, "ceil_mode=1 or dilations", "ceil_mode=0 without dilation")
            pads = self.pads(node, a, (x.spec.h, x.spec.w), kernel, stride, (1, 1))
            if any(pads) and not a.get("count_include_pad", 0):
                self.fail(node, "padding with count_include_pad=0 (the divisor changes at the border)",
                          "no padding, or count_include_pad=1")
            layer, spec = avgpool_layer(self._name(node), node.op_type, x.spec, x.q, self.spec_name(out), yq,
                                        kernel=kernel, stride=stride, pads=pads)
        self.emit(layer, spec, out, yq, (spec.n, spec.c, spec.h, spec.w))

    def flatten(self, node, x: _QT | None, yq: QParams, a: dict, out: str, relu: bool) -> None:
        if x is None:
            self.fail(node, "an input that is not a quantized activation", _SUPPORTED_TEXT)
        n = x.shape[0]
        feat = int(np.prod(x.shape[1:]))
        if node.op_type == "Flatten":
            if a.get("axis", 1) != 1:
                self.fail(node, f"axis={a.get('axis')}", "axis=1")
        else:
            target = self.const(node.input[1])
            if target is None:
                self.fail(node, "a shape that is not a constant", "a constant shape")
            t = [int(v) for v in target.reshape(-1)]
            t = [x.shape[i] if v == 0 and i < len(x.shape) else v for i, v in enumerate(t)]
            if not (len(t) == 2 and t[0] in (n, -1) and t[1] in (feat, -1) and t != [-1, -1]):
                self.fail(node, f"shape {t} from {list(x.shape)}", "reshapes to (N, features) (a flatten)")
        if relu:
            self.fail(node, "a ReLU after the flatten", "Flatten without ReLU")
        view = None
        if len(x.shape) == 4 and x.spec.h * x.spec.w > 1:
            view = (x.spec.c, x.spec.h, x.spec.w)
        elif len(x.shape) == 2:
            view = x.view
        shape = (n, feat)
        if (yq.scale, yq.zp) == (x.q.scale, x.q.zp):
            self.qt[out] = _QT(x.spec, yq, shape, view)
        else:
            layer, spec = requant_layer(self._name(node), node.op_type, x.spec, x.q, self.spec_name(out), yq)
            self.emit(layer, spec, out, yq, shape, view)


def _type_name(t: int) -> str:
    from onnx import TensorProto
    return TensorProto.DataType.Name(t).lower()


def _input_fn(onnx_name: str, qt: _QT):
    def fn(values, io):
        x = np.asarray(io[onnx_name], dtype=np.float32)
        if tuple(x.shape) != qt.shape:
            raise ModelError(f"input {onnx_name!r} has shape {list(x.shape)}, the model expects {list(qt.shape)}")
        q = qt.q.quantize(x)
        values[qt.spec.name] = q.transpose(0, 2, 3, 1) if q.ndim == 4 else q.reshape(qt.spec.shape)
    return fn


def _to_onnx_layout(qt: _QT, v: np.ndarray) -> np.ndarray:
    if len(qt.shape) == 4:
        return v.transpose(0, 3, 1, 2)
    if qt.view is not None:                  # flattened NCHW order
        return v.transpose(0, 3, 1, 2).reshape(qt.shape)
    return v.reshape(qt.shape)


def _output_fn(qt: _QT, onnx_name: str, dequantize: bool):
    def fn(values, io):
        v = _to_onnx_layout(qt, values[qt.spec.name])
        io[onnx_name] = qt.q.dequantize(v) if dequantize else qt.q.from_int8(v)
    return fn


# -- public API ---------------------------------------------------------------------------------------
def load_onnx(path: str | Path, *, input_shapes: dict[str, tuple] | None = None) -> Network:
    """Read a quantized ONNX model into a `Network` (checked, not compiled)."""
    return _Importer(str(path), read_model(path), input_shapes).run()


def read_model(path: str | Path, *, load_external_data: bool = True):
    """The ONNX `ModelProto` in `path`; a missing, unreadable or truncated file is a `ModelError`."""
    import onnx

    path = str(path)
    if not Path(path).is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        model = onnx.load(path, load_external_data=load_external_data)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types
        raise ModelError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    if not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no graph nodes; truncated or empty file?)")
    return model


def ort_reference(path: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs from ONNX Runtime (CPU, default optimizations)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {k: np.asarray(v) for k, v in inputs.items()})))


def ort_tensors(path: str | Path, net: Network, inputs: dict[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One ONNX Runtime run of the model with every quantized tensor of `net` exposed as a graph
    output: (the model's outputs, ORT's value of each tensor of `net` as int8 NHWC, as systolab
    stores it, by tensor name)."""
    import onnxruntime as ort
    from onnx import helper

    model = read_model(path)
    have = {o.name for o in model.graph.output}
    extra = [onnx for onnx, _, _ in net.onnx_names.values() if onnx not in have]
    for name in dict.fromkeys(extra):
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, {k: np.asarray(v) for k, v in inputs.items()})))
    values = {}
    for spec_name, (onnx, shape, view) in net.onnx_names.items():
        spec, q = net.tensors[spec_name], net.qparams[spec_name]
        v = np.asarray(got[onnx])
        if spec_name in net.to_storage:          # a strided view (codegen.transformer)
            v = net.to_storage[spec_name](v).reshape(spec.shape)
        elif v.ndim == 4:
            v = v.transpose(0, 2, 3, 1)
        elif view is not None:
            v = v.reshape(v.shape[0], *view).transpose(0, 2, 3, 1)
        values[spec_name] = q.to_int8(v.reshape(spec.shape))
    return {k: got[k] for k in net.outputs}, values


def generated_inputs(model: str | Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float inputs of the model's shapes (a symbolic batch is 1): for sweeps."""
    g = read_model(model, load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    rng = np.random.default_rng(seed)
    out = {}
    for inp in g.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
        out[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return out


def model_macs(model: str | Path) -> int:
    """Multiply-accumulates of one run of the model (batch 1 when symbolic), as the run flow counts them."""
    shapes = {k: v.shape for k, v in generated_inputs(model).items()}
    return load_onnx(model, input_shapes=shapes).macs
