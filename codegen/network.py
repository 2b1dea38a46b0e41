"""Quantized networks on the accelerator: layers lowered to `AccOp` passes, compiled into one memory
image and one program per layer, run layer by layer on any simulator.

A `Network` is a list of steps in execution order over int8 NHWC tensors (`TensorSpec`):

- `Layer`: runs on the accelerator as one or more `AccOp` passes (a convolution is one pass, a
  k x k max pool is 2(k-1) passes per axis). Lowerings: `conv_layer` (conv2d, grouped or
  depthwise too, fully connected), `add_layer` (residual add), `maxpool_layer`, `avgpool_layer`
  (incl. global average pooling), `requant_layer` (a ReLU or a change of quantization that is not
  fused into its producer).
- `HostStep`: runs in numpy on the host (quantizing a float model input, dequantizing a model
  output, an im2col of a model input). The report lists them per layer as host-side.

Activations are int8: a uint8 tensor of the model is stored shifted by -128 (its zero point too),
so the array only ever sees int8. Zero points are folded into the bias with the weight sums
(weights are constants), and padded taps read the input's zero point, so
`sum (x - zx) * w = sum x * w - zx * sum w` holds at the borders too.

A network runs as one program (`CompiledNetwork.fused_program`, the run flow's default:
`systolab.sim.run.run_network`): `compile_network` schedules the layers one after the other into
one builder (all layers share one memory image and its addresses), whose dependency tokens then
span layer boundaries, so a layer's weights load while the previous layer computes. A STAMP after each layer writes the hardware's cycle counter to memory:
a layer's cycles are the difference of two stamps, and they add up to the network's. Each
layer's own program (`CompiledNetwork.program`) still exists, for runs layer by layer
(`run_network(..., fused=False)`: each layer from start to done, its own counters) and for
networks with host steps between layers.

Rounding: the STORE path requantizes in exact integer arithmetic (`codegen.quant.requantize`)
with a 31-bit multiplier and rounds halves up, or to even with the AccOp's `round_even` (the STORE
field; every layer of an ONNX model sets it, as ONNX rounds halves to even). A convolution or FC
of an ONNX model (`conv_layer(..., float32_scale=True)`) uses the STORE's `fp32` rounding with
ORT's float32 scale instead, and then equals ONNX Runtime's output bit for bit given the same
inputs. Residual adds rescale both inputs with integer weights (sums of int8 taps) and one
multiplier on the array (`sum_weights`: up to 16 taps, 1e-4 LSB where reachable), with int32
weights on the vector unit (~1e-7 LSB), while ORT's QLinearAdd (float32, fused multiply-adds) is
within ~3e-5 of exact. So an add can differ from ORT by 1 LSB on an element near a tie, and a
deep network amplifies such flips.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from systolab.errors import CompileError, UserError
from systolab.isa import isa_for
from systolab.perf import PerfModel

from .builder import EmitLimit, ProgramBuilder, round_up, standalone
from .conv import (AccOp, TensorSpec, Term, accop_reference, accop_rows, alloc_accop, padded_input,
                   choose_accop_tiling, emit_accop, pixel_bytes)
from .quant import float32_multiplier, ort_add_constants, quantize_multiplier
from .program import Program, pack_words
from .vector import (VectorPass, Window, add_pass, add_weights, alloc_vector, depthwise_pass, emit_vector,
                     global_pool_pass, pool_pass, requant_pass, tile_choices, vector_fits, vector_reference)

#: the region of a fused program's STAMPs (one uint32 per accelerator layer)
STAMP_REGION = "stamps"

__all__ = ["STAMP_REGION", "QParams", "Layer", "HostStep", "Network", "CompiledLayer", "CompiledNetwork", "compile_network",
           "conv_layer", "add_layer", "maxpool_layer", "avgpool_layer", "requant_layer",
           "sum_weights", "network_reference", "im2col_input"]


# -- quantization ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QParams:
    """How a tensor of the model is quantized: real = scale * (q - zero_point), q of `dtype`.

    On the accelerator the values are int8: `zp` is the zero point in that domain (uint8 - 128).
    """

    scale: float
    zero_point: int            # in the model's dtype
    dtype: str                 # "uint8" or "int8"

    @property
    def offset(self) -> int:
        return 128 if self.dtype == "uint8" else 0

    @property
    def zp(self) -> int:
        return self.zero_point - self.offset

    def to_int8(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q).astype(np.int16) - self.offset).astype(np.int8)

    def from_int8(self, v: np.ndarray) -> np.ndarray:
        return (np.asarray(v).astype(np.int16) + self.offset).astype(self.dtype)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """ONNX QuantizeLinear in float32 (round half to even, saturate), to int8."""
        lo, hi = (0, 255) if self.dtype == "uint8" else (-128, 127)
        q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(self.scale)) + np.float32(self.zero_point)
        return self.to_int8(np.clip(q, lo, hi).astype(self.dtype))

    def dequantize(self, v: np.ndarray) -> np.ndarray:
        """ONNX DequantizeLinear of the int8 value `v` (float32)."""
        q = self.from_int8(v).astype(np.int32)
        return ((q - self.zero_point).astype(np.float32) * np.float32(self.scale)).astype(np.float32)

    @property
    def value_range(self) -> int:
        """max |q - zero point| over the dtype."""
        return max(self.zp + 128, 127 - self.zp)


# -- steps -----------------------------------------------------------------------------------------
@dataclass
class Layer:
    """A layer of the model that runs on the accelerator as `ops` (in order): `AccOp` passes of
    the array or `VectorPass`es of the vector unit. `vector`: the same layer as vector passes
    (None: no vector lowering), which `compile_network` takes instead of `ops` on a config with a
    vector unit where the performance model predicts it faster."""

    name: str
    op: str
    ops: list[AccOp | VectorPass]
    inputs: list[str]
    output: str
    macs: int
    note: str = ""
    vector: list[VectorPass] | None = None
    where = "accelerator"

    @property
    def unit(self) -> str:
        """"vector" when every pass runs on the vector unit, else "array"."""
        return "vector" if self.ops and all(isinstance(op, VectorPass) for op in self.ops) else "array"

    def on_vector(self) -> "Layer":
        """This layer lowered to its vector passes (the rounding rule of its array passes kept)."""
        if self.vector is None:
            raise CompileError(f"{self.name}: {self.op} has no vector-unit lowering")
        even = all(op.round_even for op in self.ops)
        fp32 = all(getattr(op, "fp32", False) for op in self.ops)
        ops = [replace(vp, round_even=even, fp32=fp32) for vp in self.vector]
        return replace(self, ops=ops, note=f"{self.note}, vector unit" if self.note else "vector unit")


@dataclass
class HostStep:
    """A step done by the host in numpy: `fn(values, io)` reads and writes `values` (int8 NHWC
    tensors by name) and `io` (the model's inputs and outputs by ONNX name)."""

    name: str
    op: str
    fn: Callable[[dict, dict], None]
    inputs: list[str]
    outputs: list[str]
    note: str = ""
    where = "host"
    macs = 0


@dataclass
class Network:
    """A quantized model in accelerator terms."""

    name: str
    tensors: dict[str, TensorSpec]
    qparams: dict[str, QParams]
    steps: list = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)      # ONNX input names
    outputs: list[str] = field(default_factory=list)     # ONNX output names
    #: ONNX output name -> (tensor name, dequantized to float by the host)
    output_tensors: dict[str, tuple[str, bool]] = field(default_factory=dict)
    #: tensor name -> (ONNX name of the same quantized tensor, its ONNX shape, its (C, H, W) view
    #: when it is a flattened NHWC map): to compare intermediate values with ONNX Runtime's
    onnx_names: dict[str, tuple[str, tuple, tuple | None]] = field(default_factory=dict)
    #: tensor name -> f(ONNX value) -> the value as stored (a strided layout, codegen.transformer)
    to_storage: dict[str, Callable] = field(default_factory=dict)

    def add_tensor(self, spec: TensorSpec, q: QParams | None = None) -> TensorSpec:
        if spec.name in self.tensors:
            raise CompileError(f"tensor {spec.name!r} defined twice")
        self.tensors[spec.name] = spec
        if q is not None:
            self.qparams[spec.name] = q
        return spec

    @property
    def layers(self) -> list[Layer]:
        return [s for s in self.steps if isinstance(s, Layer)]

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)


# -- lowerings ---------------------------------------------------------------------------------------
def _diag(c: int, value: int, kernel=(1, 1), at=(0, 0)) -> np.ndarray:
    w = np.zeros((c, c) + tuple(kernel), dtype=np.int8)
    w[np.arange(c), np.arange(c), at[0], at[1]] = value
    return w


def _col(v, c: int, dtype=np.int32) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.int64), (c,)).astype(dtype)


def _fold_bias(name: str, bias: np.ndarray) -> np.ndarray:
    if np.any(np.abs(bias) >= 2**31):
        raise CompileError(f"{name}: the bias with the zero points folded in does not fit int32")
    return bias.astype(np.int32)


def conv_layer(name: str, op: str, x: TensorSpec, xq: QParams, weight: np.ndarray, w_scale,
               bias: np.ndarray | None, y: str, yq: QParams, *, stride=(1, 1), pads=(0, 0, 0, 0),
               dilation=(1, 1), relu: bool = False, macs: int | None = None,
               requant: tuple | None = None, group: int = 1, float32_scale: bool = False
               ) -> tuple[Layer, TensorSpec]:
    """A quantized conv2d (a fully connected layer is a conv whose kernel covers its input).

    `weight` is (OC, IC / group, KH, KW) int8 with the weight zero point already subtracted, `w_scale`
    its per-channel (or scalar) scale, `bias` int32 in units of x.scale * w_scale (or None).
    `group`: as ONNX's, output channel o reads only the IC / group input channels of its group; on
    the array the weights are block-diagonal (the chunks of zeros are never multiplied). A
    depthwise conv (group = IC = OC, one filter per channel) also has a lowering onto the vector
    unit (`Layer.vector`), a MUL per tap.
    `requant`: the exact per-channel (multiplier, shift) of the STORE (an integer-only model,
    `codegen.mlir_import`) instead of the ones derived from the scales (`w_scale` is then unused).
    `float32_scale`: requantize as ONNX Runtime does (an imported ONNX model): the scale is
    `x.scale * w_scale / y.scale` in float32 arithmetic, as ORT's QLinearConv computes it, and
    the STORE multiplies in float32 (`fp32`), so the layer's output is ORT's bit for bit.
    """
    oc = weight.shape[0]
    if group < 1 or x.c % group or oc % group or weight.shape[1] != x.c // group:
        raise CompileError(f"{name}: a weight of shape {weight.shape} does not fit {x.c} input channels "
                           f"in {group} group(s)")
    depthwise = group == x.c == oc > 1
    grouped = weight
    if group > 1:
        og, ig = oc // group, x.c // group
        weight = np.zeros((oc, x.c) + grouped.shape[2:], np.int8)
        blocks = weight.reshape(group, og, group, ig, *grouped.shape[2:])
        blocks[np.arange(group), :, np.arange(group)] = grouped.reshape(group, og, ig, *grouped.shape[2:])
    term = Term(x, weight, tuple(stride), tuple(pads), tuple(dilation), pad_value=xq.zp)
    oh, ow = term.out_hw()
    if oh < 1 or ow < 1:
        raise CompileError(f"{name}: the output would be {oh}x{ow}")
    out = TensorSpec(y, x.n, oh, ow, oc)
    b = np.zeros(oc, np.int64) if bias is None else np.asarray(bias, np.int64)
    b = b - xq.zp * weight.astype(np.int64).sum(axis=(1, 2, 3))
    fp32 = False
    if requant is None:
        scales = np.broadcast_to(np.asarray(w_scale, np.float64), (oc,)) * xq.scale / yq.scale
        mult, shift = zip(*(quantize_multiplier(float(s)) for s in scales))
        if float32_scale:
            s32 = (np.float32(xq.scale) * np.broadcast_to(np.asarray(w_scale, np.float32), (oc,))
                   / np.float32(yq.scale))
            exact = [float32_multiplier(s) for s in s32]
            if all(e is not None for e in exact):
                (mult, shift), fp32 = zip(*exact), True
    else:
        mult, shift = (np.broadcast_to(np.asarray(v, np.int64), (oc,)) for v in requant)
    kh, kw = weight.shape[2:]
    if macs is None:
        macs = out.m * oc * (x.c // group) * kh * kw
    acc = AccOp(name, out, (term,), _fold_bias(name, b), np.array(mult, np.int32),
                np.array(shift, np.int32), _col(yq.zp, oc), relu, macs, fp32=fp32)
    vector = None
    if depthwise:
        window = Window((kh, kw), tuple(stride), tuple(pads), tuple(dilation), xq.zp)
        vector = [depthwise_pass(name, x, out, grouped[:, 0], window, bias=acc.bias, mult=acc.mult,
                                 shift=acc.shift, zp=acc.zp, relu=relu, fp32=fp32)]
    note = f"{kh}x{kw}/{stride[0]}" + (" depthwise" if depthwise else f", {group} groups" if group > 1 else "")
    return Layer(name, op, [acc], [x.name], y, macs, note, vector=vector), out


def sum_weights(ratios, ranges, *, max_taps: int = 16, tol: float = 1e-4) -> tuple[list[int], float]:
    """Integer weights (Wa, Wb) and one scale f with W * f ~= ratios, for `ra * a + rb * b`
    computed as `f * (Wa * a + Wb * b)`; a weight above 127 takes several int8 taps (each tap is
    one more pass of that input through the array), at most `max_taps` for both together.

    f is ra / Wa (a exact) with Wb the integer nearest rb / f, or rb / Wb with Wa likewise, for
    every Wa (Wb) the taps allow; the error is the worst case before rounding,
    `sum ranges[i] * |r_i - W_i f|` in output LSBs (|a| <= ranges[0], ...). Returns the fewest
    taps whose error is below `tol`, else the most accurate choice. The defaults (16 taps,
    1e-4 LSB, near ONNX Runtime's own float32 error of ~3e-5) keep ResNet-18's array adds off a
    tie's other side on its generated inputs: 6 taps and 2e-3 flipped an element of the first
    add and the network ended 3 LSB from ORT (resnet18w16:32, 4x4; now 0 LSB, the adds 1.7x the
    cycles, the network 1.7 %). A ratio close to a simple fraction but not one (4.001) is still
    only as good as that fraction: no integer pair of 16 taps does better.
    """
    r = np.asarray(ratios, np.float64)
    e = np.asarray(ranges, np.float64)
    if r.shape != (2,) or not np.all(r > 0):
        raise ValueError("sum_weights takes two positive ratios")
    top = 127 * (max_taps - 1)
    w = np.arange(1, top + 1, dtype=np.float64)
    cands = []
    for exact in (0, 1):                     # which input's weight sets f
        other = 1 - exact
        f = r[exact] / w
        wo = np.clip(np.rint(r[other] / f), 1, top)
        err = e[other] * np.abs(r[other] - wo * f)
        pair = (w, wo) if exact == 0 else (wo, w)
        taps = np.ceil(pair[0] / 127) + np.ceil(pair[1] / 127)
        cands.append((err, taps, pair[0], pair[1], f))
    err, taps, wa, wb, f = (np.concatenate(x) for x in zip(*cands))
    err = np.where(taps <= max_taps, err, np.inf)
    ok = err < tol
    if ok.any():
        key = np.where(ok, taps * 1e9 + err / tol, np.inf)     # fewest taps, then least error
    else:
        key = err
    i = int(np.argmin(key))
    return [int(wa[i]), int(wb[i])], float(f[i])


def _taps(w: int) -> list[int]:
    """`w` as int8 values that sum to it."""
    sign = 1 if w >= 0 else -1
    w = abs(w)
    out = [127] * (w // 127) + ([w % 127] if w % 127 else [])
    return [sign * v for v in out]


def add_layer(name: str, op: str, a: TensorSpec, aq: QParams, b: TensorSpec, bq: QParams, y: str,
              yq: QParams, *, relu: bool = False, requant: tuple[int, int] | None = None
              ) -> tuple[Layer, TensorSpec]:
    """Residual add: y = round(sa/sy (a - za) + sb/sy (b - zb)) + zy as one pass of 1x1 diagonal
    terms (each input weighted by an integer, see `sum_weights`); its vector lowering adds
    exactly with ONNX Runtime's float32 constants, y = round(ra a + rb b + f) (`ort_add_constants`).
    `requant`: an exact integer add, y = requant((a - za) + (b - zb)) with this (multiplier,
    shift), the scales unused."""
    if a.shape != b.shape:
        raise CompileError(f"{name}: inputs of shapes {a.shape} and {b.shape} (no broadcasting)")
    c = a.c
    if requant is None:
        (wa, wb), f = sum_weights([aq.scale / yq.scale, bq.scale / yq.scale], [aq.value_range, bq.value_range])
        mult, shift = quantize_multiplier(f)
    else:
        (wa, wb), (mult, shift) = (1, 1), requant
    terms = tuple(Term(src, _diag(c, v)) for src, w in ((a, wa), (b, wb)) for v in _taps(w))
    out = TensorSpec(y, a.n, a.h, a.w, c)
    bias = np.full(c, -(wa * aq.zp + wb * bq.zp), np.int64)
    acc = AccOp(name, out, terms, _fold_bias(name, bias), _col(mult, c), _col(shift, c), _col(yq.zp, c),
                relu, out.m * c, info={"weights": [wa, wb]})
    # on the vector unit: int32 weights, so the sum is exact within ~1e-7 LSB, with ONNX Runtime's
    # float32 ratios and fixed part (`ort_add_constants`)
    fixed = None
    if requant is None:
        ra, rb, fixed = ort_add_constants(aq.scale, aq.zp, bq.scale, bq.zp, yq.scale, yq.zp)
        vwa, vwb, vmult, vshift, _ = add_weights(ra, rb, aq.value_range, bq.value_range)
    else:
        vwa, vwb, (vmult, vshift) = 1, 1, requant
    vp = add_pass(name, a, aq.zp, b, bq.zp, out, yq.zp, weights=(vwa, vwb), mult=vmult, shift=vshift, relu=relu,
                  fixed=fixed)
    return Layer(name, op, [acc], [a.name, b.name], y, out.m * c, f"weights {wa}, {wb}", vector=[vp]), out


def _copy_op(name: str, src: TensorSpec, out: TensorSpec, kernel, at, stride, pads, pad_value,
             *, bias=0, scale=1.0, zp=0, relu=False) -> AccOp:
    mult, shift = quantize_multiplier(scale)
    c = src.c
    return AccOp(name, out, (Term(src, _diag(c, 1, kernel, at), stride, pads, pad_value=pad_value),),
                 _col(bias, c), _col(mult, c), _col(shift, c), _col(zp, c), relu)


def maxpool_layer(name: str, op: str, x: TensorSpec, xq: QParams, y: str, yq: QParams, *, kernel,
                  stride, pads=(0, 0, 0, 0), dilation=(1, 1), ceil_mode: bool = False,
                  add_tensor: Callable[[TensorSpec], TensorSpec]) -> tuple[Layer, TensorSpec]:
    """Max pooling as pairwise maxima on the accelerator, one axis after the other.

    Along one axis with taps t_0 .. t_k-1: the running maximum m_j = max(t_0 .. t_j-1) is
    t_0 + sum_{i<j} (u_i + 128) with u_i = max(t_i - m_i, 0) - 128 (a pass with +1/-1 diagonal
    weights, zero point -128 and ReLU; t - m <= 255, so u fits int8). Each u pass reads t_j, t_0
    and the earlier u's; one last pass adds them up. All exact; padded taps read -128, which never
    wins. A k x k pool is k passes per axis; the last pass also requantizes when the output is
    quantized differently from the input.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pl, pb, pr = pads

    def out_len(n, k, s, d, p0, p1):
        span = n + p0 + p1 - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + p0:
            o -= 1          # the last window must start inside the input or the leading padding
        return o, max(p1, (o - 1) * s + d * (k - 1) + 1 - n - p0)

    oh, pb = out_len(x.h, kh, sh, dh, pt, pb)
    ow, pr = out_len(x.w, kw, sw, dw, pl, pr)
    same_q = (xq.scale, xq.zp) == (yq.scale, yq.zp)
    ops: list[AccOp] = []

    def stage(src: TensorSpec, axis: str, last: bool) -> TensorSpec:
        k, s, d = (kw, sw, dw) if axis == "w" else (kh, sh, dh)
        if axis == "w":
            kern, stride_, pads_ = (1, k), (1, s), (0, pl, 0, pr)
            grid = (src.h, ow)
            tap = lambda j: (0, j)  # noqa: E731
        else:
            kern, stride_, pads_ = (k, 1), (s, 1), (pt, 0, pb, 0)
            grid = (oh, src.w)
            tap = lambda j: (j, 0)  # noqa: E731

        def tensor(tag: str, final: bool = False) -> TensorSpec:
            spec = TensorSpec(y if final else f"{name}:{axis}{tag}", src.n, *grid, src.c)
            if not final:
                add_tensor(spec)
            return spec

        requant = dict(bias=-xq.zp, scale=xq.scale / yq.scale, zp=yq.zp) if last and not same_q else {}
        if k == 1:
            out = tensor("copy", final=last)
            ops.append(_copy_op(f"{name}:{axis}copy", src, out, kern, (0, 0), stride_, pads_, -128,
                                **requant))
            return out
        # m_j = max(t_0 .. t_j-1) = t_0 + sum_{i<j} (u_i + 128) is linear in t_0 and the u's, so
        # only the u's are materialized: u_j = max(t_j - m_j, 0) - 128 reads t_j, t_0, u_1..u_j-1
        c = src.c
        us: list[TensorSpec] = []
        for j in range(1, k):
            w_t = _diag(c, 1, kern, tap(j))
            w_t[np.arange(c), np.arange(c), tap(0)[0], tap(0)[1]] = -1
            terms = (Term(src, w_t, stride_, pads_, dilation=_dil(axis, d), pad_value=-128),
                     *(Term(u, _diag(c, -1)) for u in us))
            u = tensor(f"u{j}")
            ops.append(AccOp(f"{name}:{axis}u{j}", u, terms, _col(-128 * (j - 1), c), _col(1, c), _col(0, c),
                             _col(-128, c), True))
            us.append(u)
        m = tensor("max", final=last)
        terms = (Term(src, _diag(c, 1, kern, tap(0)), stride_, pads_, dilation=_dil(axis, d), pad_value=-128),
                 *(Term(u, _diag(c, 1)) for u in us))
        bias, scale, zp = 128 * (k - 1), 1.0, 0
        if last and not same_q:
            bias, scale, zp = bias - xq.zp, xq.scale / yq.scale, yq.zp
        mult, shift = quantize_multiplier(scale)
        ops.append(AccOp(f"{name}:{axis}max", m, terms, _col(bias, c), _col(mult, c), _col(shift, c),
                         _col(zp, c), False))
        return m

    need_w = (kw, sw, pl, pr) != (1, 1, 0, 0)
    need_h = (kh, sh, pt, pb) != (1, 1, 0, 0) or not need_w
    out = stage(x, "w", last=not need_h) if need_w else x
    if need_h:
        out = stage(out, "h", last=True)
    assert out.name == y and out.shape == (x.n, oh, ow, x.c)
    # on the vector unit: one pass, MAX over the taps, the STORE requantizes
    if same_q:
        (mult, shift), bias, zp = quantize_multiplier(1.0), 0, 0
    else:
        (mult, shift), bias, zp = quantize_multiplier(xq.scale / yq.scale), -xq.zp, yq.zp
    vp = pool_pass(name, "max", x, out, Window((kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw), -128),
                   bias=bias, mult=mult, shift=shift, zp=zp)
    return Layer(name, op, ops, [x.name], y, 0, f"{kh}x{kw}/{sh}, {len(ops)} passes", vector=[vp]), out


def _dil(axis: str, d: int) -> tuple[int, int]:
    return (1, d) if axis == "w" else (d, 1)


def avgpool_layer(name: str, op: str, x: TensorSpec, xq: QParams, y: str, yq: QParams, *,
                  kernel=None, stride=(1, 1), pads=(0, 0, 0, 0)) -> tuple[Layer, TensorSpec]:
    """Average pooling (global when `kernel` is None) as one pass: diagonal weights 1 on every
    tap, bias -taps * zx, multiplier sx / (taps * sy). Padded taps count (count_include_pad)."""
    kh, kw = (x.h, x.w) if kernel is None else kernel
    n_taps = kh * kw
    c = x.c
    w = np.zeros((c, c, kh, kw), np.int8)
    w[np.arange(c), np.arange(c)] = 1
    term = Term(x, w, tuple(stride), tuple(pads), pad_value=xq.zp)
    oh, ow = term.out_hw()
    out = TensorSpec(y, x.n, oh, ow, c)
    mult, shift = quantize_multiplier(xq.scale / (n_taps * yq.scale))
    acc = AccOp(name, out, (term,), _col(-n_taps * xq.zp, c), _col(mult, c), _col(shift, c),
                _col(yq.zp, c), False, out.m * c * n_taps)
    # on the vector unit: the same sum (CSUM of whole images, or pairs of taps), the same STORE
    params = dict(bias=-n_taps * xq.zp, mult=mult, shift=shift, zp=yq.zp)
    if (oh, ow) == (1, 1) and (kh, kw) == (x.h, x.w) and not any(pads):
        vp = global_pool_pass(name, x, out, **params)
    else:
        vp = pool_pass(name, "sum", x, out, Window((kh, kw), tuple(stride), tuple(pads), (1, 1), xq.zp), **params)
    return Layer(name, op, [acc], [x.name], y, acc.macs, f"{kh}x{kw}", vector=[vp]), out


def requant_layer(name: str, op: str, x: TensorSpec, xq: QParams, y: str, yq: QParams, *,
                  relu: bool = False) -> tuple[Layer, TensorSpec]:
    """y = Q_y(f(DQ_x(x))) with f = ReLU or identity, as one pass of identity weights."""
    out = TensorSpec(y, x.n, x.h, x.w, x.c)
    acc = _copy_op(name, x, out, (1, 1), (0, 0), (1, 1), (0, 0, 0, 0), 0, bias=-xq.zp,
                   scale=xq.scale / yq.scale, zp=yq.zp, relu=relu)
    vp = requant_pass(name, x, out, bias=-xq.zp, mult=int(acc.mult[0]), shift=int(acc.shift[0]), zp=yq.zp,
                      relu=relu)
    return Layer(name, op, [acc], [x.name], y, 0, "ReLU" if relu else "requantize", vector=[vp]), out


def im2col_input(net: Network, layer: Layer) -> tuple[HostStep, Layer] | None:
    """The same convolution with its input im2col'ed by the host in the memory image (K packed:
    KH*KW*IC channels, padding filled with the zero point): one 1x1 term instead of KH*KW taps.
    None when the layer is not a single-term convolution."""
    if len(layer.ops) != 1 or not isinstance(layer.ops[0], AccOp) or len(layer.ops[0].terms) != 1:
        return None
    acc = layer.ops[0]
    t = acc.terms[0]
    kh, kw = t.kernel
    x = t.src
    cols = TensorSpec(f"{layer.name}:im2col", x.n, acc.out.h, acc.out.w, kh * kw * x.c)
    w = t.weight.transpose(0, 2, 3, 1).reshape(acc.out.c, kh * kw * x.c, 1, 1)
    new_term = Term(cols, np.ascontiguousarray(w), pad_value=t.pad_value)
    new_acc = replace(acc, terms=(new_term,))
    oh, ow = acc.out.h, acc.out.w

    def fn(values, io):
        values[cols.name] = _im2col(t, values[x.name], oh, ow)

    step = HostStep(f"{layer.name}:im2col", "Im2col", fn, [x.name], [cols.name],
                    f"im2col for {layer.name} ({cols.c} channels)")
    new_layer = Layer(layer.name, layer.op, [new_acc], [cols.name], layer.output, layer.macs,
                      layer.note + ", im2col in memory")
    return step, new_layer


def _im2col(t: Term, x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    (kh_, kw_), (sh, sw), (dh, dw) = t.kernel, t.stride, t.dilation
    xp = padded_input(t, x, oh, ow, np.int8)
    taps = [xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            for i in range(kh_) for j in range(kw_)]
    return np.concatenate(taps, axis=-1)


# -- reference ---------------------------------------------------------------------------------------
def network_reference(net: Network, inputs: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """systolab's numpy reference: every step in order; returns (int8 tensors, model outputs)."""
    values: dict[str, np.ndarray] = {}
    io = dict(inputs)
    for s in net.steps:
        if isinstance(s, HostStep):
            s.fn(values, io)
        else:
            for op in s.ops:        # AccOps, vector passes, passes with their own reference (codegen.transformer)
                values[op.out.name] = (vector_reference(op, values) if isinstance(op, VectorPass)
                                       else op.reference(values) if hasattr(op, "reference")
                                       else accop_reference(op, values))
    return values, {k: io[k] for k in net.outputs}


# -- compile ------------------------------------------------------------------------------------------
@dataclass
class CompiledLayer:
    """One accelerator layer: its tilings, the model's cycles, and its own program (`words`,
    `insns`). In a network compiled as one program (`CompiledNetwork.fused`) the layer's own
    program is made from its part of the network's on first use (`part`)."""

    layer: Layer
    _words: list[int] | None           # None without programs (`programs=False`), or until made from `part`
    _insns: list[tuple[str, dict]] | None
    tilings: list[dict]
    predicted: int                     # cycles predicted by the performance model (sum over passes)
    n_instructions: int | None = None  # estimated by the model when there is no program
    #: busy cycles per unit the model knows without a program (its vector passes, replayed whole)
    counters: dict[str, int] = field(default_factory=dict)
    #: the layer's instructions in the network's one program (their tokens that program's, its
    #: SYNCs and STAMP included), and the config, when compiled as one program
    part: list[tuple[str, dict]] | None = None
    cfg: object = None

    def __post_init__(self):
        if self.n_instructions is None:
            self.n_instructions = len(self.part if self.part is not None else self._words or ())

    where = "accelerator"

    @property
    def insns(self) -> list[tuple[str, dict]] | None:
        """The layer's own program as `(op, fields)`, its token flags found for it alone."""
        if self._insns is None and self.part is not None:
            self._insns = standalone(self.cfg, self.part)
        return self._insns

    @property
    def words(self) -> list[int] | None:
        if self._words is None and self.insns is not None:
            self._words = isa_for(self.cfg).encode_many(self.insns)
        return self._words

    @property
    def has_program(self) -> bool:
        return self._words is not None or self.part is not None

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def op(self) -> str:
        return self.layer.op


class CompiledNetwork:
    """One memory image for the whole network; its one program (`fused_program`) when it can
    run as one, and each accelerator layer's own program (`program`)."""

    def __init__(self, cfg, net: Network, steps: list, image: np.ndarray, regions: dict, insn_addr: int,
                 pad_rows: dict[int, int], compile_s: float, mem_needed: int | None = None,
                 fused_words: list[int] | None = None):
        self.cfg, self.net, self.steps = cfg, net, steps
        self.image, self.regions, self.insn_addr = image, regions, insn_addr
        self.pad_rows = pad_rows
        self.compile_s = compile_s
        #: bytes of external memory a run needs (data and the largest program's instructions)
        self.mem_needed = mem_needed if mem_needed is not None else len(image)
        #: the instructions of the network as one program (None when it cannot run as one)
        self.fused_words = fused_words

    @property
    def has_programs(self) -> bool:
        """False when compiled with `programs=False` (the model's cycles, no instructions)."""
        return all(c.has_program for c in self.layers)

    @property
    def can_fuse(self) -> bool:
        """The network runs as one program (`fused_program`)."""
        return self.fused_words is not None

    @property
    def layers(self) -> list[CompiledLayer]:
        return [s for s in self.steps if isinstance(s, CompiledLayer)]

    def program(self, cl: CompiledLayer, memory: np.ndarray | None = None) -> Program:
        """The program of one layer, its image being `memory` (the data part) and its instructions."""
        data = self.image if memory is None else memory
        insn_bytes = self.cfg.insn_bytes
        bus = self.cfg.memory.bus_bytes
        end = self.insn_addr + len(cl.words) * insn_bytes
        image = np.zeros(-(-end // bus) * bus, dtype=np.uint8)
        image[:self.insn_addr] = data[:self.insn_addr]
        image[self.insn_addr:end] = pack_words(cl.words, insn_bytes)
        macs = cl.layer.macs
        return Program(self.cfg.compile_hash, list(cl.words), image, self.insn_addr, dict(self.regions),
                       (cl.layer.output,), {"workload": f"{self.net.name}:{cl.name}", "kind": "layer",
                                            "op": cl.layer.op, "macs": macs, "tilings": cl.tilings})

    def fused_program(self, inputs: dict[str, np.ndarray] | None = None, *,
                      memory: np.ndarray | None = None) -> Program:
        """The network as one program (`compile_network`): layers overlap, and the STAMP after
        each layer writes the cycle counter into region `STAMP_REGION` (uint32 per layer, in
        order; `layer_cycles` turns them into cycles per layer). The data part of the image is
        `memory` (the tensors the host steps before the first layer wrote) or, with `inputs`
        (the model's inputs), made here by running those host steps."""
        if self.fused_words is None:
            raise CompileError(f"{self.net.name}: compiled without programs, or with a host step "
                               f"writing a tensor between two layers: it runs layer by layer")
        if memory is None:
            values: dict[str, np.ndarray] = {}
            io = dict(inputs or {})
            memory = self.image.copy()
            first = next(i for i, s in enumerate(self.steps) if isinstance(s, CompiledLayer))
            for s in self.steps[:first]:
                s.fn(values, io)
            for name, v in values.items():
                if name in self.regions:
                    self.regions[name].write(memory, v.reshape(-1, v.shape[-1]))
        words, cfg = self.fused_words, self.cfg
        end = self.insn_addr + len(words) * cfg.insn_bytes
        image = np.zeros(round_up(end, cfg.memory.bus_bytes), dtype=np.uint8)
        image[:self.insn_addr] = memory[:self.insn_addr]
        image[self.insn_addr:end] = pack_words(words, cfg.insn_bytes)
        outs = tuple(dict.fromkeys(t for t, _ in self.net.output_tensors.values()))
        return Program(cfg.compile_hash, list(words), image, self.insn_addr, dict(self.regions),
                       outs or (self.layers[-1].layer.output,),
                       {"workload": self.net.name, "kind": "network", "macs": self.net.macs})

    def layer_cycles(self, memory: np.ndarray, total: int) -> list[int]:
        """Cycles per layer of a fused run from its stamps in `memory` (differences, modulo
        2**32, of consecutive stamps; the last layer also gets the cycles after its stamp, up to
        the run's `total`): they add up to `total`."""
        stamps = self.regions[STAMP_REGION].read(memory)[0].view(np.uint32).astype(np.int64)
        marks = np.concatenate([[0], stamps])
        cyc = (np.diff(marks) % (1 << 32)).tolist()
        cyc[-1] += max(0, total - int(marks[-1]))
        return [int(c) for c in cyc]


#: a layer of at most JUNCTION_INSNS instructions and JUNCTION_CYCLES cycles gets its
#: junction with the next layer replayed (`_add_junctions`; a junction moves a few thousand
#: cycles at most), and so does one of at most JUNCTION_BEFORE_SHORT instructions with a layer
#: that short reading its output (a residual add after a conv); the next layer's first
#: JUNCTION_HEAD instructions run beside its tail
JUNCTION_INSNS, JUNCTION_CYCLES, JUNCTION_BEFORE_SHORT, JUNCTION_HEAD = 2048, 50_000, 8192, 512


def _add_junctions(cfg, layers: list[tuple[CompiledLayer, Layer]], layouts, regions, pad_rows) -> None:
    """The layers' cycles as parts of one program: each is predicted alone, but in the network's
    program the next layer starts under its tail, and the STAMP after it (the hardware's
    per-layer cycles) moves. For each short layer (JUNCTION_INSNS, JUNCTION_CYCLES) the
    model replays it alone, the head of the next layer alone, and both as one program; the
    layer gets the cycles its STAMP moved by, the next one loses what its head gained.

    (ResNet-18@224 on 32x32: a 1x1 projection whose writes the next conv's loads share the port
    with takes 11 % longer in the network than alone on the RTL.)"""
    model = PerfModel(cfg)
    short = lambda c: c.n_instructions <= JUNCTION_INSNS and c.predicted <= JUNCTION_CYCLES  # noqa: E731
    for (a, la), (b, lb) in zip(layers, layers[1:]):
        if not short(a) and not (short(b) and a.n_instructions <= JUNCTION_BEFORE_SHORT
                                 and la.output in lb.inputs):
            continue
        pb = ProgramBuilder(cfg)
        _schedule(cfg, la, layouts, regions, pad_rows, into=pb, tile_rows=_tile_rows(a))
        k = len(pb.instructions())
        pb.emit("STAMP", dram_addr=0)
        pb.begin_layer()
        pb.insn_limit = k + 1 + JUNCTION_HEAD
        try:
            _schedule(cfg, lb, layouts, regions, pad_rows, into=pb, tile_rows=_tile_rows(b))
        except EmitLimit:
            pass
        insns = pb.instructions()
        pair = model.predict_insns(insns)
        alone = model.predict_insns(standalone(cfg, insns[:k]) + [("STAMP", {"dram_addr": 0})])
        head = model.predict_insns(standalone(cfg, insns[k + 1:]))
        moved = pair.stamps[0][1] - alone.stamps[0][1]
        gained = head.cycles - (pair.cycles - pair.stamps[0][1])
        a.predicted += moved
        b.predicted -= gained


def _tile_rows(c: CompiledLayer) -> dict[str, int]:
    return {t["pass"]: t["tile_rows"] for t in c.tilings if "tile_rows" in t}


def _layout(cfg, tensors: dict[str, TensorSpec], steps: list, b: ProgramBuilder):
    regions = {}
    for spec in tensors.values():
        regions[spec.name] = b.alloc(spec.name, (spec.m, spec.c), "int8", row_stride=pixel_bytes(cfg, spec.c))
    values = sorted({v for s in steps if isinstance(s, Layer) for op in s.ops for v in _pad_values(op)})
    pad_rows = {}
    for v in values:
        pad_rows[v] = b.alloc(f"pad{v}", (1, cfg.rows), "int8", data=np.full((1, cfg.rows), v, np.int8)).addr
    layouts = {}
    for s in steps:
        if isinstance(s, Layer):
            for i, op in enumerate(s.ops):
                prefix = f"{s.name}#{i}"
                while f"{prefix}.W" in b.regions:       # a layer name used twice
                    prefix += "'"
                if hasattr(op, "emit"):     # a pass that schedules itself (codegen.transformer)
                    layouts[id(op)] = op.alloc(b, cfg, prefix)
                elif isinstance(op, VectorPass):
                    while f"{prefix}.params" in b.regions:
                        prefix += "'"
                    layouts[id(op)] = alloc_vector(b, cfg, op, prefix)
                else:
                    layouts[id(op)] = alloc_accop(b, cfg, op, prefix)
    return regions, pad_rows, layouts


def _pad_values(op) -> tuple[int, ...]:
    return op.pad_values if isinstance(op, VectorPass) else tuple(t.pad_value for t in getattr(op, "terms", ()))


def _op_tensors(op) -> list[TensorSpec]:
    """The tensors a pass reads and writes."""
    if hasattr(op, "emit"):             # codegen.transformer's passes
        return list(op.tensors) + [op.out]
    srcs = list(op.inputs) if isinstance(op, VectorPass) else [t.src for t in op.terms]
    return srcs + [op.out]


def _schedule(cfg, layer: Layer, layouts, regions, pad_rows, *, emit: bool = True,
              into: ProgramBuilder | None = None, tile_rows: dict[str, int] | None = None):
    """The layer's program in a builder (`into`, which may hold the layers before it, or a new
    one; None when `emit` is False: the tilings and the model's cycles only, which is all
    `--sim model` needs), its tilings, the cycles the performance model predicts (summed over
    its passes), its instruction count (estimated when not emitted) and the busy counters of
    its vector passes. `tile_rows` (pass name -> rows, from an earlier call's tilings) skips
    the vector passes' search: only the program is wanted."""
    selfish = any(hasattr(op, "emit") for op in layer.ops)
    b = (into if into is not None else ProgramBuilder(cfg)) if emit or selfish else None
    start = len(b.instructions()) if b is not None else 0
    tilings, predicted, n_insns, counters = [], 0, 0, {}
    for op in layer.ops:
        lay = layouts[id(op)]
        if hasattr(op, "emit"):         # a pass that schedules itself (kernels, activation GEMMs)
            tilings.append({"pass": op.name, **op.emit(b, cfg, lay, regions)})
            continue
        if isinstance(op, VectorPass) and tile_rows is not None and b is not None:
            emit_vector(b, cfg, op, lay, regions, pad_rows, tile_rows=tile_rows[op.name])
            continue
        if isinstance(op, VectorPass):
            # the pass alone for each tile size worth trying (the model's cycles), the fastest
            # (the largest tile of equal ones) then into the layer's program
            best, model = None, PerfModel(cfg)
            for tile_rows in tile_choices(cfg, op, lay, regions, pad_rows):
                alone = ProgramBuilder(cfg)
                vrows = emit_vector(alone, cfg, op, lay, regions, pad_rows, tile_rows=tile_rows)
                pred = model.predict_insns(alone.instructions())
                if best is None or pred.cycles < best[0].cycles:
                    best = pred, tile_rows, vrows, len(alone.instructions())
            pred, tile_rows, vrows, alone_insns = best
            if b is not None:
                emit_vector(b, cfg, op, lay, regions, pad_rows, tile_rows=tile_rows)
            tilings.append({"pass": op.name, "unit": "vector", "schedule": op.schedule, "vector_rows": vrows,
                            "tile_rows": tile_rows})
            for q, v in pred.busy.items():
                counters[f"{q}_busy"] = counters.get(f"{q}_busy", 0) + v
            predicted += pred.cycles
            n_insns += alone_insns
            continue
        tiling, cycles, insns = choose_accop_tiling(cfg, op, lay, regions, pad_rows)
        if b is not None:
            emit_accop(b, cfg, op, lay, tiling, regions, pad_rows)
        tilings.append({"pass": op.name, **tiling.to_json(),
                        "chunks": len(lay.chunks)})
        predicted += cycles
        n_insns += insns
    if selfish:                         # passes of their own: the model on the layer alone
        own = b.instructions()[start:]
        predicted = PerfModel(cfg).predict_insns(standalone(cfg, own) if start else own).cycles
    if b is not None:
        n_insns = len(b.instructions()) - start
    return (b if emit else None), tilings, predicted, n_insns, counters


def _choose_units(cfg, net: Network, *, force: bool) -> Network:
    """`net` with each layer that has a vector lowering on the unit the model predicts faster;
    a residual add on the vector unit whenever its passes fit, faster or not: there it is exact,
    on the array its integer weights approximate the scale ratio (and deep networks drift)."""
    steps = []
    for s in net.steps:
        if isinstance(s, Layer) and s.vector is not None:
            alt = s.on_vector()
            if force:
                s = alt
            else:
                exact_add = s.op.removeprefix("QLinear") == "Add"
                try:
                    on_vector = _predict_layer(cfg, alt)    # also checks that its passes fit
                except CompileError:        # the vector passes do not fit this config's buffers
                    on_vector = None
                if on_vector is not None and (exact_add or on_vector < _predict_layer(cfg, s, beat=on_vector)):
                    s = alt
        steps.append(s)
    return replace(net, steps=steps)


def _predict_layer(cfg, layer: Layer, *, beat: int | None = None) -> float:
    """Cycles the performance model predicts for `layer` alone (its best tilings). With `beat`:
    infinity, without a tiling search, when the rows its passes stream through the array (a
    cycle each, whatever the tiling) are already more than `beat` cycles."""
    b = ProgramBuilder(cfg)
    tensors = {t.name: t for op in layer.ops for t in _op_tensors(op)}
    regions, pad_rows, layouts = _layout(cfg, tensors, [layer], b)
    if beat is not None and sum(accop_rows(op, layouts[id(op)]) for op in layer.ops
                                if isinstance(op, AccOp)) > beat:
        return float("inf")
    return _schedule(cfg, layer, layouts, regions, pad_rows, emit=False)[2]


@contextmanager
def _cyclic_gc_paused():
    """Python's cyclic garbage collector paused (reference counting still frees everything):
    a network's compile makes millions of small dicts, tuples and lists, none in a cycle, and
    the collector's passes over them were 18 % of ResNet-18's full compile (10.1 s -> 8.3 s)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def compile_network(cfg, net: Network, *, im2col: str = "auto", vector: str = "auto",
                    programs: bool = True) -> CompiledNetwork:
    """Compile every layer of `net` for `cfg` (tilings searched with the performance model).

    im2col: for convolutions that read a model input, "dma" gathers the taps with strided LOADs,
    "memory" has the host write the im2col'ed input into the memory image (K packed, fewer
    chunks), "auto" picks the one the performance model predicts faster.

    vector: on a config with a vector unit, "auto" runs a layer that has a vector lowering
    (`Layer.vector`: pools, residual adds, requantizations) on the vector unit where the
    performance model predicts it faster than on the array, "vector" wherever it has one, "array"
    never. A config without a vector unit compiles every layer to the array, as before.
    `CompiledNetwork.net` is the network with the lowerings chosen (its reference is theirs).

    programs: False compiles the tilings and the performance model's cycles of every layer but
    not its instructions (`CompiledLayer.words` is None, its instruction count an estimate):
    what `--sim model` and the sweeps' model evaluations need, in a fraction of the time.
    """
    with _cyclic_gc_paused():
        return _compile_network(cfg, net, im2col=im2col, vector=vector, programs=programs)


def _compile_network(cfg, net: Network, *, im2col: str = "auto", vector: str = "auto",
                     programs: bool = True) -> CompiledNetwork:
    if im2col not in ("auto", "dma", "memory"):
        raise UserError(f"im2col must be auto, dma or memory, not {im2col!r}")
    if vector not in ("auto", "array", "vector"):
        raise UserError(f"vector must be auto, array or vector, not {vector!r}")
    why = vector_fits(cfg)
    if vector == "vector" and why is not None:
        raise UserError(f"vector=vector: {why}")
    if vector != "array" and why is None:
        net = _choose_units(cfg, net, force=vector == "vector")
    t0 = time.perf_counter()
    host_made = {o for s in net.steps if isinstance(s, HostStep) for o in s.outputs}
    tensors = dict(net.tensors)
    steps = []
    for s in net.steps:
        if isinstance(s, Layer) and im2col != "dma" and set(s.inputs) <= host_made:
            alt = im2col_input(net, s)
            t = s.ops[0].terms[0] if alt is not None else None
            trivial = t is not None and t.kernel == (1, 1) and t.stride == (1, 1) and not any(t.pads)
            if alt is not None and not trivial:
                step, layer = alt
                if im2col == "memory" or _predict_layer(cfg, layer) < _predict_layer(cfg, s):
                    spec = layer.ops[0].terms[0].src
                    tensors[spec.name] = spec
                    steps += [step, layer]
                    continue
        steps.append(s)
    b = ProgramBuilder(cfg)
    regions, pad_rows, layouts = _layout(cfg, tensors, steps, b)
    layer_idx = [i for i, s in enumerate(steps) if isinstance(s, Layer)]
    # one program (the layers emitted into `b`, one after the other, a STAMP after each) unless
    # a host step makes a tensor between two layers
    one_program = bool(layer_idx) and not any(
        isinstance(s, HostStep) and s.outputs for s in steps[layer_idx[0]:layer_idx[-1]])
    fuse = programs and one_program
    stamps = b.alloc(STAMP_REGION, (1, len(layer_idx)), "int32") if fuse else None
    if b.data_bytes > cfg.mem_limit:        # before any layer is scheduled
        raise CompileError(cfg.memory_shortfall(net.name, b.data_bytes, "tensors and weights"))
    compiled = []
    n_layers = 0
    for s in steps:
        if isinstance(s, HostStep):
            compiled.append(s)
            continue
        start = len(b.instructions())
        if fuse:
            b.begin_layer()
        lb, tilings, predicted, n_insns, counters = _schedule(cfg, s, layouts, regions, pad_rows, emit=programs,
                                                              into=b if fuse else None)
        if lb is None:
            compiled.append(CompiledLayer(s, None, None, tilings, predicted, n_insns, counters))
        elif fuse:
            b.emit("STAMP", dram_addr=stamps.addr + 4 * n_layers)
            compiled.append(CompiledLayer(s, None, None, tilings, predicted, part=b.instructions()[start:], cfg=cfg))
        else:
            insns = lb.instructions()
            compiled.append(CompiledLayer(s, lb.isa.encode_many(insns), insns, tilings, predicted))
        n_layers += 1
    if one_program:
        _add_junctions(cfg, [(c, s) for c, s in zip(compiled, steps) if isinstance(s, Layer)],
                       layouts, regions, pad_rows)
    base = b.finish((), {})
    if fuse:
        mem_needed = len(base.image)
    else:
        mem_needed = base.insn_addr + max((c.n_instructions for c in compiled if isinstance(c, CompiledLayer)),
                                          default=0) * cfg.insn_bytes
    if mem_needed > cfg.mem_limit:
        raise CompileError(cfg.memory_shortfall(net.name, mem_needed, "data and instructions"))
    return CompiledNetwork(cfg, net, compiled, base.image[:base.insn_addr].copy(), base.regions,
                           base.insn_addr, pad_rows, time.perf_counter() - t0, mem_needed,
                           fused_words=base.words if fuse else None)
