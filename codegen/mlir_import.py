"""MLIR import: integer `linalg`-on-tensors programs to a `codegen.network.Network`, the same
accelerator-level network the ONNX importer builds, lowered with the same helpers.

The text is parsed by xDSL (the linalg named ops it lacks are defined below with its Python API).
Accepted, in one `func.func` (the only one, or `@main` / `@forward`):

- `linalg.matmul`, `linalg.quantized_matmul`, `linalg.batch_matmul` (the same weights for every
  batch): an i8 activation times a constant i8 matrix into i32;
- `linalg.conv_2d_nchw_fchw`, `linalg.conv_2d_nhwc_hwcf`, `linalg.conv_2d_nhwc_fhwc` and their
  `_q` forms (input and weight zero points): strides, dilations, any kernel;
- `linalg.pooling_{nchw,nhwc}_max` on i8 (init -128) and `linalg.pooling_{nchw,nhwc}_sum` into i32;
- `linalg.generic`, all loops parallel, whose body is one of (with `acc` an i32 accumulator above,
  `x`, `a`, `b` i8 activations, constants scalar or per output channel):
  * requantization `trunci(clamp(((extsi(acc [+ bias]) * m + r) >> s) [+ zp], lo, 127))` in i64,
    with `r = 2**(s-1)` (0 when s = 0) and lo = -128, or lo = zp (ReLU): exactly the STORE path,
    `codegen.quant.requantize`; `maxsi(acc + bias, 0)` before it is the same ReLU (m >= 0); the
    saturation alone `trunci(clamp(acc, -128, 127))` in i32 is m = 1, s = 0;
  * the same with `acc` an i8 activation `extsi(x) [- zx]` or a residual add
    `(extsi(a) [- za]) + (extsi(b) [- zb])`, in one body or as an i8 -> i32 generic first;
  * `acc + bias` (i32 -> i32) and `maxsi(acc, 0)` (i32 -> i32, ReLU before requantization);
  * `maxsi(x, c)` on i8 (ReLU at c);
- `tensor.pad` (constant value: the convolution's input zero point, 0 for sum pooling, -128 for
  max pooling), `tensor.collapse_shape` / `tensor.expand_shape` (a flatten before a matmul, batch
  dimensions), `tensor.cast`, `tensor.empty`, `linalg.fill`, `arith.constant` weights (`dense` or
  `dense_resource` with its blob in the file), `func.return` of i8 tensors.

Function arguments and results are i8 tensors with static shapes. Anything else is refused while
the program is read, before anything is compiled, with one line naming the file, the position
(line:col, and the op's own `loc(...)` when it has one), the op and what is supported.

Rounding is the accelerator's by construction: a requantization is accepted only when its integer
semantics are those of the STORE path, so systolab's numpy reference of the network and the
accelerator compute the same function as the MLIR program.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from xdsl.builder import Builder
from xdsl.dialects import arith
from xdsl.dialects.builtin import (DenseIntOrFPElementsAttr, DenseResourceAttr, FileLineColLoc, IntegerAttr,
                                   IntegerType, TensorType)
from xdsl.dialects.linalg import Linalg
from xdsl.dialects.linalg.abstract_ops import ConvOperation, NamedOperation, PoolingOperation
from xdsl.dialects.linalg.ops import YieldOp
from xdsl.ir import BlockArgument, Dialect, OpResult, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineMap
from xdsl.irdl import irdl_op_definition
from xdsl.dialect_interfaces.op_asm import OpAsmDialectInterface
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from systolab.errors import UserError
from systolab.isa.mlir import new_context

from .conv import TensorSpec
from .network import (HostStep, Network, QParams, add_layer, conv_layer, maxpool_layer, requant_layer)

__all__ = ["MlirError", "load_mlir", "parse_mlir", "mlir_context", "mlir_macs", "generated_mlir_inputs",
           "SUPPORTED", "EXTRA_LINALG_OPS"]


class MlirError(UserError):
    pass


SUPPORTED = ("linalg.matmul, linalg.quantized_matmul, linalg.batch_matmul, linalg.conv_2d_nchw_fchw[_q], "
             "linalg.conv_2d_nhwc_hwcf[_q], linalg.conv_2d_nhwc_fhwc[_q], linalg.pooling_{nchw,nhwc}_{max,sum}, "
             "linalg.generic (requantization, ReLU, bias add, residual add), linalg.fill, tensor.empty, "
             "tensor.pad, tensor.expand_shape, tensor.collapse_shape, tensor.cast, arith.constant, func.return")
_GENERIC_SUPPORTED = ("requantization trunci(clamp(((extsi(acc + bias) * m + 2**(s-1)) >> s) + zp, lo, 127)) "
                      "in i64 with lo = -128 or zp, saturation trunci(clamp(acc, -128, 127)), acc + bias, "
                      "maxsi(acc, 0), maxsi(x, c), residual add (extsi(a) - za) + (extsi(b) - zb)")


# -- linalg named ops that xDSL does not define ----------------------------------------------------
def _int_body(arg_types, acc_type, *, zero_points: bool):
    """The hidden region of an integer convolution / matmul: acc + (ext(x) - zx) * (ext(w) - zw)."""
    @Builder.implicit_region(arg_types)
    def body(args):
        x, w = args[0], args[1]
        if x.type != acc_type:
            x = arith.ExtSIOp(x, acc_type).result
        if w.type != acc_type:
            w = arith.ExtSIOp(w, acc_type).result
        if zero_points:
            x = arith.SubiOp(x, args[2]).result
            w = arith.SubiOp(w, args[3]).result
        YieldOp(arith.AddiOp(args[-1], arith.MuliOp(x, w)).result)
    return body


def _named(name: str, base, maps, *, zero_points: bool = False, body=None, iterators=None):
    """A linalg named op class: `maps(op)` gives its indexing maps, `body(arg_types)` its region."""
    ns = {"name": name, "__doc__": f"`{name}` (defined by systolab: xDSL 0.75 lacks it or builds its "
                                   f"integer body wrongly)"}

    def get_hidden_region(cls, inputs, outputs):
        arg_types = NamedOperation.body_arg_types((*inputs, *outputs))
        if body is not None:
            return body(arg_types)
        return _int_body(arg_types, arg_types[-1], zero_points=zero_points)

    ns["get_hidden_region"] = classmethod(get_hidden_region)
    ns["get_default_indexing_maps"] = lambda self: maps(self)
    if iterators is not None:
        ns["get_iterator_types"] = lambda self: iterators(self)
    if base is NamedOperation:
        ns["PRINT_ATTRS_IN_FRONT"] = True
        ns["__annotations__"] = {"PRINT_ATTRS_IN_FRONT": ClassVar[bool]}
    return irdl_op_definition(type(name.split(".")[1].title().replace("_", "") + "Op", (base,), ns))


def _conv_maps(layout: str, quantized: bool):
    def maps(op):
        (sh, sw), (dh, dw) = op.strides.get_values(), op.dilations.get_values()
        if layout == "nchw_fchw":
            n, f, oh, ow, c, kh, kw = (AffineDimExpr(i) for i in range(7))
            x = (n, c, oh * sh + kh * dh, ow * sw + kw * dw)
            w, y = (f, c, kh, kw), (n, f, oh, ow)
        else:
            n, oh, ow, f, kh, kw, c = (AffineDimExpr(i) for i in range(7))
            x = (n, oh * sh + kh * dh, ow * sw + kw * dw, c)
            w = (kh, kw, c, f) if layout == "nhwc_hwcf" else (f, kh, kw, c)
            y = (n, oh, ow, f)
        scalars = (AffineMap(7, 0, ()),) * 2 if quantized else ()
        return (AffineMap(7, 0, x), AffineMap(7, 0, w), *scalars, AffineMap(7, 0, y))
    return maps


def _pool_maps(layout: str):
    def maps(op):
        (sh, sw), (dh, dw) = op.strides.get_values(), op.dilations.get_values()
        if layout == "nchw":
            n, c, oh, ow, kh, kw = (AffineDimExpr(i) for i in range(6))
            x, y = (n, c, oh * sh + kh * dh, ow * sw + kw * dw), (n, c, oh, ow)
        else:
            n, oh, ow, c, kh, kw = (AffineDimExpr(i) for i in range(6))
            x, y = (n, oh * sh + kh * dh, ow * sw + kw * dw, c), (n, oh, ow, c)
        return (AffineMap(6, 0, x), AffineMap(6, 0, (kh, kw)), AffineMap(6, 0, y))
    return maps


def _pool_body(kind: str):
    def body(arg_types):
        @Builder.implicit_region(arg_types)
        def region(args):
            x = args[0]
            if kind == "max":
                YieldOp(arith.MaxSIOp(args[-1], x).result)
            else:
                if x.type != arg_types[-1]:
                    x = arith.ExtSIOp(x, arg_types[-1]).result
                YieldOp(arith.AddiOp(args[-1], x).result)
        return region
    return body


def _batch_maps(op):
    b, i, j, k = (AffineDimExpr(d) for d in range(4))
    return (AffineMap(4, 0, (b, i, k)), AffineMap(4, 0, (b, k, j)), AffineMap(4, 0, (b, i, j)))


def _batch_iterators(op):
    from xdsl.dialects.builtin import ArrayAttr
    from xdsl.dialects.linalg.attrs import IteratorTypeAttr
    return ArrayAttr([IteratorTypeAttr.parallel()] * 3 + [IteratorTypeAttr.reduction()])


def _matmul_maps(op):
    i, j, k = (AffineDimExpr(d) for d in range(3))
    return (AffineMap(3, 0, (i, k)), AffineMap(3, 0, (k, j)), AffineMap(3, 0, (i, j)))


def _matmul_iterators(op):
    from xdsl.dialects.builtin import ArrayAttr
    from xdsl.dialects.linalg.attrs import IteratorTypeAttr
    return ArrayAttr([IteratorTypeAttr.parallel()] * 2 + [IteratorTypeAttr.reduction()])


def _matmul_body(arg_types):
    """Integer operands sign-extended to the accumulator (xDSL 0.75's `linalg.matmul` builds
    `muli` of the i8 operands, which does not verify for i8 x i8 -> i32); floats as xDSL does."""
    if all(isinstance(t, IntegerType) for t in arg_types):
        return _int_body(arg_types, arg_types[-1], zero_points=False)

    @Builder.implicit_region(arg_types)
    def body(args):
        YieldOp(arith.AddfOp(args[2], arith.MulfOp(args[0], args[1])).result)
    return body


EXTRA_LINALG_OPS = (
    _named("linalg.matmul", NamedOperation, _matmul_maps, body=_matmul_body, iterators=_matmul_iterators),
    _named("linalg.batch_matmul", NamedOperation, _batch_maps, iterators=_batch_iterators),
    *(_named(f"linalg.conv_2d_{lay}_q", ConvOperation, _conv_maps(lay, True), zero_points=True)
      for lay in ("nchw_fchw", "nhwc_hwcf", "nhwc_fhwc")),
    _named("linalg.pooling_nhwc_max", PoolingOperation, _pool_maps("nhwc"), body=_pool_body("max")),
    _named("linalg.pooling_nchw_sum", PoolingOperation, _pool_maps("nchw"), body=_pool_body("sum")),
    _named("linalg.pooling_nhwc_sum", PoolingOperation, _pool_maps("nhwc"), body=_pool_body("sum")),
)


def mlir_context():
    """An xDSL context for linalg-on-tensors programs: xDSL's dialects, its linalg extended with
    `EXTRA_LINALG_OPS` (which replace xDSL's op of the same name), a builtin dialect with its own resource store."""
    own = {op.name for op in EXTRA_LINALG_OPS}
    linalg = Dialect("linalg", [*(op for op in Linalg.operations if op.name not in own), *EXTRA_LINALG_OPS],
                     list(Linalg.attributes))
    return new_context(linalg)


class _LocatingParser(Parser):
    """xDSL's parser, remembering where each operation starts; an operation xDSL does not know is
    refused like one the importer cannot map."""

    def __init__(self, ctx, text: str, name: str):
        super().__init__(ctx, text, name=name)
        self.path = name
        self.positions: dict[int, tuple[int, int]] = {}

    def parse_operation(self):
        loc = self._current_token.span.get_location()
        self._start = loc
        op = super().parse_operation()
        self.positions[id(op)] = (loc.line, loc.col)
        return op

    def _get_op_by_name(self, name: str):
        op_type = self.ctx.get_optional_op(name, dialect_stack=self._parser_state.dialect_stack)
        if op_type is None:
            loc = self._start
            raise MlirError(f"{self.path}:{loc.line}:{loc.col}: {name}: operation not supported; "
                            f"supported: {SUPPORTED}")
        return op_type


def parse_mlir(text: str, name: str = "<mlir>"):
    """Parse MLIR text: (module, positions by op id, the builtin resource store)."""
    ctx = mlir_context()
    p = _LocatingParser(ctx, text, name)
    try:
        module = p.parse_module()
    except ParseError as e:
        loc = e.span.get_location()
        raise MlirError(f"{name}:{loc.line}:{loc.col}: not valid MLIR: {e.msg}") from None
    except MlirError:
        raise
    except Exception as e:  # noqa: BLE001 - xDSL fails with other errors on forms it does not know
        loc = p._current_token.span.get_location()      # e.g. linalg.matmul with indexing_maps
        raise MlirError(f"{name}:{loc.line}:{loc.col}: xDSL cannot read this form ({type(e).__name__}); "
                        f"supported: {SUPPORTED} in their default form") from None
    for op in module.walk():                  # the first op that does not verify, with its position
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as e:
            while id(op) not in p.positions and op.parent_op() is not None:
                op = op.parent_op()                # an op of a named op's hidden body: name the named op
            line, col = p.positions.get(id(op), (0, 0))
            msg = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
            raise MlirError(f"{name}:{line}:{col}: {op.name}: not valid MLIR: {msg}") from None
    resources = ctx.get_optional_dialect("builtin").get_interface(OpAsmDialectInterface)
    return module, p.positions, resources


# -- values of the program -------------------------------------------------------------------------
#: where the channel dimension is, by layout
_CHANNEL_DIM = {"nchw": 1, "nhwc": 3, "mat": 1, "bmat": 2}


@dataclass
class _Act:
    """An i8 activation: a tensor of the network in one of the layouts the accelerator stores NHWC."""

    spec: TensorSpec
    shape: tuple[int, ...]              # the MLIR shape
    layout: str                         # nchw, nhwc, mat (rows, features), bmat (batch, rows, features)
    view: tuple[str, tuple[int, int, int]] | None = None   # a flattened 4-D tensor: (its layout, (C, H, W))

    @property
    def channel_dim(self) -> int:
        return _CHANNEL_DIM[self.layout]


@dataclass
class _Padded:
    act: _Act
    pads: tuple[int, int, int, int]     # top, left, bottom, right
    value: int


@dataclass
class _Fill:
    shape: tuple[int, ...]
    value: int
    bits: int


@dataclass
class _Empty:
    shape: tuple[int, ...]
    bits: int


@dataclass
class _Acc:
    """An i32 accumulator not yet requantized: a sum of convolutions of i8 activations."""

    op_name: str                        # the linalg op that made it
    name: str
    kind: str                           # conv (one term) or add (two activations)
    shape: tuple[int, ...]
    layout: str
    channels: int
    srcs: tuple[_Act, ...]
    zps: tuple[int, ...]                # the input zero points subtracted
    weight: np.ndarray | None = None    # conv: (OC, IC, KH, KW) int8, zero point subtracted
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    relu: bool = False                  # maxsi(acc, 0) applied (only requantization may follow)
    macs: int | None = None


# -- the body matcher of linalg.generic ------------------------------------------------------------
class _NoMatch(Exception):
    pass


@dataclass(frozen=True)
class _Node:
    op: str                             # arith op name, "arg" or "const"
    args: tuple = ()
    bits: int = 0                       # integer width of the value
    value: object = None                # arg: block argument index; const: int


class _Body:
    """A linalg.generic body as an expression tree over its block arguments and constants."""

    OPS = {"arith.addi", "arith.subi", "arith.muli", "arith.shrsi", "arith.maxsi", "arith.minsi", "arith.extsi",
           "arith.trunci", "arith.constant"}

    def __init__(self, imp: "_Importer", op):
        self.imp, self.op = imp, op
        block = op.body.block
        self.args = {id(a): i for i, a in enumerate(block.args)}
        ops = list(block.ops)
        for o in ops[:-1]:
            if o.name not in self.OPS:
                imp.fail(o, "not supported in a linalg.generic body", _GENERIC_SUPPORTED, at=op)
        self.root = self.node(ops[-1].operands[0])

    def node(self, v: SSAValue) -> _Node:
        bits = v.type.width.data if isinstance(v.type, IntegerType) else 0
        if isinstance(v, BlockArgument) and id(v) in self.args:
            return _Node("arg", (), bits, self.args[id(v)])
        if isinstance(v, OpResult):
            o = v.op
            if o.name == "arith.constant":
                if not isinstance(o.value, IntegerAttr):
                    self.imp.fail(o, "a constant that is not an integer", "integer constants", at=self.op)
                return _Node("const", (), bits, o.value.value.data)
            if o.name not in self.OPS:
                self.imp.fail(o, "not supported in a linalg.generic body", _GENERIC_SUPPORTED, at=self.op)
            return _Node(o.name, tuple(self.node(a) for a in o.operands), bits)
        self.imp.fail(self.op, "a body that uses a value from outside that is not a constant", _GENERIC_SUPPORTED)


def _is(n: _Node, op: str, bits: int | None = None) -> bool:
    return n.op == op and (bits is None or n.bits == bits)


def _commuted(n: _Node, pred):
    """(a, b) of a commutative binary node with pred(b) true, trying both orders."""
    a, b = n.args
    if pred(b):
        return a, b
    if pred(a):
        return b, a
    raise _NoMatch


def _leaf(n: _Node) -> bool:
    return n.op in ("const", "arg")


@dataclass
class _Requant:
    inner: _Node                        # the i32 accumulator expression
    bias: _Node | None
    mult: _Node | None
    round: _Node | None
    shift: _Node | None
    zp: _Node | None
    lo: _Node
    hi: _Node
    pre_relu: bool


def _match_clamp(n: _Node, is_param):
    """clamp(t, lo, hi) as maxsi/minsi in either order: (t, lo, hi)."""
    if _is(n, "arith.minsi"):
        t, hi = _commuted(n, is_param)
        if _is(t, "arith.maxsi", n.bits):
            t, lo = _commuted(t, is_param)
            return t, lo, hi
    if _is(n, "arith.maxsi"):
        t, lo = _commuted(n, is_param)
        if _is(t, "arith.minsi", n.bits):
            t, hi = _commuted(t, is_param)
            return t, lo, hi
    raise _NoMatch


def _match_requant(root: _Node, is_param) -> _Requant:
    """The STORE path's requantization written in arith ops; `is_param(node)` tells constants
    (scalars, constant tensor inputs) from activations."""
    if not (_is(root, "arith.trunci") and root.bits == 8):
        raise _NoMatch
    t, lo, hi = _match_clamp(root.args[0], is_param)
    wide = t.bits
    if wide == 32:                       # saturation only: trunci(clamp(acc, -128, 127)) in i32
        inner, pre_relu, bias = _peel_acc(t, is_param)
        return _Requant(inner, bias, None, None, None, None, lo, hi, pre_relu)
    if wide != 64:
        raise _NoMatch
    zp = None
    if _is(t, "arith.addi", 64) and any(is_param(a) for a in t.args):
        t, zp = _commuted(t, is_param)
    shift = rnd = None
    if _is(t, "arith.shrsi", 64):
        t, shift = t.args
        if not is_param(shift):
            raise _NoMatch
        if _is(t, "arith.addi", 64):
            t, rnd = _commuted(t, is_param)
    mult = None
    if _is(t, "arith.muli", 64):
        t, mult = _commuted(t, is_param)
    if not (_is(t, "arith.extsi", 64) and t.args[0].bits == 32):
        raise _NoMatch
    inner, pre_relu, bias = _peel_acc(t.args[0], is_param)
    return _Requant(inner, bias, mult, rnd, shift, zp, lo, hi, pre_relu)


def _peel_acc(x: _Node, is_param):
    """x = [maxsi(y, 0)], y = [addi(acc, bias)] in i32: (acc, relu, bias)."""
    relu = False
    if _is(x, "arith.maxsi", 32):
        y, z = _commuted(x, lambda n: n.op == "const" and n.value == 0)
        x, relu = y, True
    bias = None
    if _is(x, "arith.addi", 32) and any(is_param(a) for a in x.args):
        x, bias = _commuted(x, is_param)
    return x, relu, bias


def _match_source(n: _Node):
    """The i32 accumulator expression: ("arg", i) of an accumulator input, ("act", i, zp) for
    extsi(x) [- zx] of an activation input, ("add", (i, za), (j, zb)) for a residual add."""
    if n.op == "arg" and n.bits == 32:
        return ("arg", n.value)
    if _is(n, "arith.addi", 32) and not any(_leaf(a) and a.op == "const" for a in n.args):
        a, b = (_match_act(x) for x in n.args)
        return ("add", a, b)
    return ("act", *_match_act(n))


def _match_act(n: _Node):
    zp = None
    if _is(n, "arith.subi", 32) and n.args[1].op == "const":
        n, zp = n.args
    if _is(n, "arith.extsi", 32) and n.args[0].op == "arg" and n.args[0].bits == 8:
        return n.args[0].value, zp
    raise _NoMatch


# -- the importer ----------------------------------------------------------------------------------
class _Importer:
    def __init__(self, path: str, text: str, input_shapes: dict | None):
        self.path = path
        self.module, self.positions, self.resources = parse_mlir(text, path)
        self.input_shapes = input_shapes or {}
        self.net = Network(Path(path).stem, {}, {})
        self.vals: dict[int, object] = {}
        self.count = 0

    # -- errors -------------------------------------------------------------------------------
    def where(self, op) -> str:
        line, col = self.positions.get(id(op), (0, 0))
        loc = op.location if hasattr(op, "location") else None
        extra = f" (loc {loc.filename.data}:{loc.line.data}:{loc.column.data})" if isinstance(loc, FileLineColLoc) else ""
        return f"{self.path}:{line}:{col}{extra}"

    def fail(self, op, what: str, supported: str = SUPPORTED, *, at=None) -> None:
        """One line: file:line:col, the op, what is wrong, what is supported."""
        if at is not None and id(op) not in self.positions:
            op = at
        raise MlirError(f"{self.where(op)}: {op.name}: {what}; supported: {supported}")

    # -- values -------------------------------------------------------------------------------
    def get(self, op, v: SSAValue, kinds=None, what: str = "operand"):
        x = self.vals.get(id(v))
        if x is None:
            self.fail(op, f"{what} is not a value systolab can map")
        if kinds is not None and not isinstance(x, kinds):
            self.fail(op, f"{what} must be {_kind_text(kinds)}, not {_kind_text(type(x))}")
        return x

    def shape(self, op, t) -> tuple[int, ...]:
        if not isinstance(t, TensorType):
            self.fail(op, f"a value of type {t}", "ranked tensors")
        shape = tuple(t.get_shape())
        if any(d < 0 for d in shape):
            self.fail(op, f"a dynamic shape {_type_text(t)}", "static shapes")
        return shape

    @staticmethod
    def bits(t) -> int:
        e = t.get_element_type() if isinstance(t, TensorType) else t
        return e.width.data if isinstance(e, IntegerType) else 0

    def elem_bits(self, op, t, allowed: Sequence[int], what: str) -> int:
        b = self.bits(t)
        if b not in allowed:
            self.fail(op, f"{what} of type {_type_text(t)}",
                      " or ".join(f"i{a}" for a in allowed) + f" {what}s")
        return b

    def name_for(self, v: SSAValue, op) -> str:
        base = v.name_hint or op.name.split(".")[-1]
        name = base
        while name in self.net.tensors:
            self.count += 1
            name = f"{base}_{self.count}"
        return name

    def constant(self, op) -> object:
        a = op.value
        if isinstance(a, IntegerAttr):
            return int(a.value.data)
        t = a.get_type() if isinstance(a, DenseResourceAttr) else a.type
        if not isinstance(t, TensorType) or not isinstance(t.get_element_type(), IntegerType):
            self.fail(op, f"a constant of type {t}", "integer scalars and tensors (dense, dense_resource)")
        shape = tuple(t.get_shape())
        bits = t.get_element_type().width.data
        dtype = {8: np.int8, 32: np.int32, 64: np.int64, 16: np.int16}.get(bits)
        if dtype is None:
            self.fail(op, f"a constant of type {_type_text(t)}", "i8, i16, i32, i64 constants")
        if isinstance(a, DenseResourceAttr):
            blob = self.resources.lookup(a.resource_handle.data)
            if not blob:
                self.fail(op, f"dense_resource<{a.resource_handle.data}> has no blob in the file",
                          "dense_resource with its data in the file's dialect_resources")
            raw = bytes.fromhex(blob[2:])[4:]           # the first 4 bytes hold the alignment
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            if arr.size == 1 and int(np.prod(shape)) != 1:
                arr = np.broadcast_to(arr, shape)
            if arr.size != int(np.prod(shape)):
                self.fail(op, f"dense_resource<{a.resource_handle.data}> holds {arr.size} values for "
                          f"{_type_text(t)}", "blobs of the tensor's size")
            return np.asarray(arr, dtype=dtype).reshape(shape).copy()
        if not isinstance(a, DenseIntOrFPElementsAttr):
            self.fail(op, f"a constant {type(a).__name__}", "dense and dense_resource tensors")
        return np.array(a.get_values(), dtype=np.int64).astype(dtype).reshape(shape)

    def act_from_tensor(self, name: str, shape, layout: str, view=None) -> _Act:
        if layout == "nchw":
            n, c, h, w = shape
        elif layout == "nhwc":
            n, h, w, c = shape
        elif layout == "mat":
            (n, c), h, w = shape, 1, 1
        else:
            n, h, w, c = shape[0] * shape[1], 1, 1, shape[2]
        spec = self.net.add_tensor(TensorSpec(name, n, h, w, c), QParams(1.0, 0, "int8"))
        return _Act(spec, tuple(shape), layout, view)

    # -- the program --------------------------------------------------------------------------
    def run(self) -> Network:
        funcs = [o for o in self.module.walk() if o.name == "func.func"]
        if not funcs:
            raise MlirError(f"{self.path}: no func.func; supported: one function (or @main / @forward)")
        if len(funcs) > 1:
            named = [f for f in funcs if f.sym_name.data in ("main", "forward")]
            if len(named) != 1:
                raise MlirError(f"{self.path}: {len(funcs)} functions ({', '.join('@' + f.sym_name.data for f in funcs)}); "
                                f"supported: one function, or one named @main or @forward")
            funcs = named
        func = funcs[0]
        self.net.name = f"{self.net.name}:{func.sym_name.data}"
        block = func.body.block
        for i, arg in enumerate(block.args):
            self.argument(func, i, arg)
        for op in block.ops:
            self.operation(op)
        return self.net

    def argument(self, func, i: int, arg) -> None:
        shape = self.shape(func, arg.type)
        name = arg.name_hint or f"arg{i}"
        if self.bits(arg.type) != 8:
            self.fail(func, f"argument %{name} of type {_type_text(arg.type)}", "i8 tensor arguments")
        given = self.input_shapes.get(name)
        if given is not None and tuple(given) != shape:
            raise MlirError(f"{self.path}: input {name!r} has shape {list(given)}; the function expects {list(shape)}")
        layout = {2: "mat", 3: "bmat", 4: self.arg_layout(arg)}.get(len(shape))
        if layout is None:
            self.fail(func, f"argument %{name} of rank {len(shape)}", "2-D, 3-D or 4-D i8 tensor arguments")
        act = self.act_from_tensor(self.spec_name(name), shape, layout)
        self.vals[id(arg)] = act
        self.net.inputs.append(name)
        self.net.steps.append(HostStep(f"{name}:input", "Input", _input_fn(name, act), [], [act.spec.name],
                                       f"i8 {'x'.join(map(str, shape))} {layout}"))

    def spec_name(self, base: str) -> str:
        name = base
        while name in self.net.tensors:
            name += "'"
        return name

    def arg_layout(self, arg) -> str:
        """NCHW or NHWC for a 4-D argument, from the first convolution or pooling that reads it."""
        todo, seen = [arg], set()
        while todo:
            v = todo.pop()
            for use in v.uses:
                o = use.operation
                if id(o) in seen:
                    continue
                seen.add(id(o))
                if "nhwc" in o.name:
                    return "nhwc"
                if "nchw" in o.name:
                    return "nchw"
                if o.name in ("tensor.pad", "tensor.cast"):
                    todo.extend(o.results)
        return "nchw"

    def operation(self, op) -> None:
        n = op.name
        handler = {
            "arith.constant": self.op_constant, "tensor.empty": self.op_empty, "linalg.fill": self.op_fill,
            "tensor.pad": self.op_pad, "tensor.cast": self.op_cast, "tensor.collapse_shape": self.op_reshape,
            "tensor.expand_shape": self.op_reshape, "linalg.generic": self.op_generic, "func.return": self.op_return,
            "linalg.matmul": self.op_matmul, "linalg.quantized_matmul": self.op_matmul,
            "linalg.batch_matmul": self.op_matmul,
        }.get(n)
        if handler is None and n.startswith("linalg.conv_2d_") and n.split("conv_2d_")[1].removesuffix("_q") in (
                "nchw_fchw", "nhwc_hwcf", "nhwc_fhwc"):
            handler = self.op_conv
        if handler is None and n in ("linalg.pooling_nchw_max", "linalg.pooling_nhwc_max",
                                     "linalg.pooling_nchw_sum", "linalg.pooling_nhwc_sum"):
            handler = self.op_pool
        if handler is None:
            self.fail(op, "operation not supported")
        handler(op)

    # -- tensors --------------------------------------------------------------------------------
    def op_constant(self, op) -> None:
        self.vals[id(op.result)] = self.constant(op)

    def op_empty(self, op) -> None:
        self.vals[id(op.tensor)] = _Empty(self.shape(op, op.tensor.type), self.bits(op.tensor.type))

    def op_fill(self, op) -> None:
        value = self.get(op, op.inputs[0], int, "the fill value")
        out = self.get(op, op.outputs[0], (_Empty, _Fill), "the filled tensor")
        self.vals[id(op.res[0])] = _Fill(out.shape, value, out.bits)

    def op_cast(self, op) -> None:
        src = self.get(op, op.source)
        if self.shape(op, op.source.type) != self.shape(op, op.dest.type):
            self.fail(op, "a cast that changes the shape", "casts between equal static shapes")
        self.vals[id(op.dest)] = src

    def op_pad(self, op) -> None:
        x = self.get(op, op.source, _Act, "the padded tensor")
        if len(op.low) or len(op.high):
            self.fail(op, "dynamic padding", "static low/high padding")
        lo, hi = op.static_low.get_values(), op.static_high.get_values()
        if x.layout not in ("nchw", "nhwc"):
            self.fail(op, f"padding a {len(x.shape)}-D tensor", "padding the spatial dimensions of 4-D tensors")
        hd, wd = (2, 3) if x.layout == "nchw" else (1, 2)
        if any(v for d, v in enumerate(lo) if d not in (hd, wd)) or any(v for d, v in enumerate(hi) if d not in (hd, wd)):
            self.fail(op, f"padding low{list(lo)} high{list(hi)} outside the spatial dimensions",
                      "padding of H and W only")
        yld = list(op.region.block.ops)[-1]
        v = yld.operands[0]
        c = v.op if isinstance(v, OpResult) and v.op.name == "arith.constant" else None
        if c is None or not isinstance(c.value, IntegerAttr):
            self.fail(op, "a padding value that is not an integer constant", "tensor.pad with a constant value")
        self.vals[id(op.result)] = _Padded(x, (lo[hd], lo[wd], hi[hd], hi[wd]), int(c.value.value.data))

    def op_reshape(self, op) -> None:
        x = self.get(op, op.src, _Act, "the reshaped tensor")
        out = self.shape(op, op.result.type)
        reassoc = [[int(i.value.data) for i in group] for group in op.reassociation.data]
        new = None
        if x.layout in ("nchw", "nhwc") and len(out) == 2 and reassoc == [[0], [1, 2, 3]]:
            c, h, w = x.spec.c, x.spec.h, x.spec.w
            new = _Act(x.spec, out, "mat", (x.layout, (c, h, w)) if h * w > 1 else None)
        elif x.layout == "mat" and x.view is not None and len(out) == 4 and reassoc == [[0], [1, 2, 3]] \
                and out == _logical(x.view[0], x.spec.n, x.view[1]):
            new = _Act(x.spec, out, x.view[0])
        elif x.layout == "mat" and x.view is None and len(out) == 4 and reassoc == [[0], [1, 2, 3]] \
                and out[2] == out[3] == 1 and out[1] == x.spec.c:
            new = _Act(x.spec, out, "nchw")
        elif x.layout == "mat" and len(out) == 3 and reassoc == [[0, 1], [2]] and out[0] == 1:
            new = _Act(x.spec, out, "bmat", x.view)
        elif x.layout == "bmat" and len(out) == 2 and reassoc == [[0, 1], [2]]:
            new = _Act(x.spec, out, "mat", x.view if x.shape[0] == 1 else None)
        if new is None:
            self.fail(op, f"{_shape_text(x.shape)} to {_shape_text(out)} with {reassoc}",
                      "flattening N x C x H x W (or N x H x W x C) to N x features and back, "
                      "adding or dropping a batch dimension of a matrix")
        self.vals[id(op.result)] = new

    # -- structured ops ------------------------------------------------------------------------
    def init_bias(self, op, v: SSAValue, channels: int, bits: int) -> np.ndarray:
        init = self.get(op, v, (_Fill,), "the output (outs)")
        if init.bits != bits:
            self.fail(op, f"an i{init.bits} output", f"i{bits} outputs")
        return np.full(channels, init.value, np.int64)

    def zero_point(self, op, v: SSAValue, what: str) -> int:
        z = self.get(op, v, int, what)
        return int(z)

    def op_matmul(self, op) -> None:
        q = op.name == "linalg.quantized_matmul"
        ins = list(op.inputs)
        a = self.get(op, ins[0], _Act, "the left operand (an i8 activation)")
        b = self.get(op, ins[1], np.ndarray, "the right operand (constant weights)")
        self.elem_bits(op, ins[0].type, (8,), "operand")
        self.elem_bits(op, ins[1].type, (8,), "operand")
        za, zb = (self.zero_point(op, ins[2], "the zero point of A"), self.zero_point(op, ins[3], "the zero point of B")) \
            if q else (0, 0)
        out_shape = self.shape(op, op.outputs[0].type)
        if op.name == "linalg.batch_matmul":
            if a.layout != "bmat":
                self.fail(op, f"a {len(a.shape)}-D left operand", "3-D batch x rows x features")
            if any(not np.array_equal(b[0], b[i]) for i in range(1, b.shape[0])):
                self.fail(op, "different weights for each batch", "the same constant weights for every batch")
            b = b[0]
        elif a.layout != "mat":
            self.fail(op, f"a {len(a.shape)}-D left operand", "2-D rows x features (flatten first)")
        k, n = b.shape
        wi = b.astype(np.int64) - zb
        if wi.min(initial=0) < -128 or wi.max(initial=0) > 127:
            self.fail(op, "weights minus their zero point do not fit i8", "weights - zero point in [-128, 127]")
        wt = wi.T.astype(np.int8)                       # (N, K)
        if a.view is not None:                          # a flattened 4-D tensor: a conv over the whole map
            lay, (c, h, w) = a.view
            w4 = wt.reshape(n, c, h, w) if lay == "nchw" else wt.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        else:
            w4 = wt.reshape(n, k, 1, 1)
        if k != a.spec.c * a.spec.h * a.spec.w:
            self.fail(op, f"B has {k} rows for {a.spec.c * a.spec.h * a.spec.w} features", "matching shapes")
        bias = self.init_bias(op, op.outputs[0], n, 32)
        self.vals[id(op.res[0])] = _Acc(op.name, self.name_for(op.res[0], op), "conv", out_shape,
                                        "bmat" if op.name == "linalg.batch_matmul" else "mat", n, (a,), (za,),
                                        np.ascontiguousarray(w4), bias=bias)

    def conv_input(self, op, v: SSAValue, layout: str):
        x = self.get(op, v, (_Act, _Padded), "the input (an i8 activation)")
        pads, pad_value = (0, 0, 0, 0), None
        if isinstance(x, _Padded):
            x, pads, pad_value = x.act, x.pads, x.value
        if x.layout != layout:
            self.fail(op, f"an input in {x.layout.upper()} layout", f"an input in {layout.upper()} layout")
        return x, pads, pad_value

    def op_conv(self, op) -> None:
        lay = op.name.split("conv_2d_")[1].removesuffix("_q")
        q = op.name.endswith("_q")
        ins = list(op.inputs)
        x, pads, pad_value = self.conv_input(op, ins[0], lay[:4])
        w = self.get(op, ins[1], np.ndarray, "the filter (constant weights)")
        self.elem_bits(op, ins[0].type, (8,), "input")
        self.elem_bits(op, ins[1].type, (8,), "filter")
        self.elem_bits(op, op.outputs[0].type, (32,), "output")
        zx, zw = (self.zero_point(op, ins[2], "the input zero point"),
                  self.zero_point(op, ins[3], "the filter zero point")) if q else (0, 0)
        if pad_value is not None and pad_value != zx:
            self.fail(op, f"an input padded with {pad_value} while its zero point is {zx}",
                      "tensor.pad with the convolution's input zero point (0 without _q)")
        oihw = {"nchw_fchw": w, "nhwc_hwcf": w.transpose(3, 2, 0, 1), "nhwc_fhwc": w.transpose(0, 3, 1, 2)}[lay]
        wi = oihw.astype(np.int64) - zw
        if wi.min(initial=0) < -128 or wi.max(initial=0) > 127:
            self.fail(op, "weights minus their zero point do not fit i8", "filter - zero point in [-128, 127]")
        out_shape = self.shape(op, op.outputs[0].type)
        oc = oihw.shape[0]
        bias = self.init_bias(op, op.outputs[0], oc, 32)
        self.vals[id(op.res[0])] = _Acc(
            op.name, self.name_for(op.res[0], op), "conv", out_shape, lay[:4], oc, (x,), (zx,),
            np.ascontiguousarray(wi.astype(np.int8)), tuple(op.strides.get_values()), pads,
            tuple(op.dilations.get_values()), bias)

    def op_pool(self, op) -> None:
        lay, kind = op.name.split("_")[1], op.name.split("_")[2]
        ins = list(op.inputs)
        x, pads, pad_value = self.conv_input(op, ins[0], lay)
        win = self.shape(op, ins[1].type)
        stride, dil = tuple(op.strides.get_values()), tuple(op.dilations.get_values())
        out_shape = self.shape(op, op.outputs[0].type)
        self.elem_bits(op, ins[0].type, (8,), "input")
        if kind == "max":
            self.elem_bits(op, op.outputs[0].type, (8,), "output")
            init = self.get(op, op.outputs[0], _Fill, "the output (outs)")
            if init.value != -128:
                self.fail(op, f"an output filled with {init.value}", "max pooling into a tensor filled with -128")
            if pad_value is not None and pad_value != -128:
                self.fail(op, f"an input padded with {pad_value}", "max pooling of an input padded with -128")
            q = QParams(1.0, 0, "int8")
            name = self.name_for(op.res[0], op)
            layer, spec = maxpool_layer(name, op.name, x.spec, q, self.spec_name(name), q, kernel=tuple(win),
                                        stride=stride, pads=pads, dilation=dil, add_tensor=self.net.add_tensor)
            self.emit(op, layer, spec, out_shape, lay)
            return
        self.elem_bits(op, op.outputs[0].type, (32,), "output")
        if pad_value not in (None, 0):
            self.fail(op, f"an input padded with {pad_value}", "sum pooling of an input padded with 0")
        c = x.spec.c
        w = np.zeros((c, c, *win), np.int8)
        w[np.arange(c), np.arange(c)] = 1
        bias = self.init_bias(op, op.outputs[0], c, 32)
        acc = _Acc(op.name, self.name_for(op.res[0], op), "conv", out_shape, lay, c, (x,), (0,), w, stride,
                   pads, dil, bias)
        oh, ow = (out_shape[2], out_shape[3]) if lay == "nchw" else (out_shape[1], out_shape[2])
        acc.macs = x.spec.n * oh * ow * c * win[0] * win[1]
        self.vals[id(op.res[0])] = acc

    def emit(self, op, layer, spec: TensorSpec, shape, layout: str, view=None) -> None:
        self.net.steps.append(layer)
        if spec.name not in self.net.tensors:
            self.net.add_tensor(spec, QParams(1.0, 0, "int8"))
        if layout in ("nchw", "nhwc") and _logical(layout, spec.n, (spec.c, spec.h, spec.w)) != tuple(shape):
            self.fail(op, f"a result of shape {_shape_text(shape)}; the op computes "
                      f"{_shape_text(_logical(layout, spec.n, (spec.c, spec.h, spec.w)))}", "consistent shapes")
        act = _Act(spec, tuple(shape), layout, view)
        self.vals[id(op.res[0])] = act

    # -- linalg.generic -------------------------------------------------------------------------
    def op_generic(self, op) -> None:
        from xdsl.dialects.linalg.attrs import IteratorType

        if any(it.data != IteratorType.PARALLEL for it in op.iterator_types.data):
            self.fail(op, "reduction loops", "elementwise linalg.generic (all loops parallel); "
                      "linalg.matmul, linalg.conv_2d_*, linalg.pooling_* for reductions")
        if len(op.outputs) != 1:
            self.fail(op, f"{len(op.outputs)} outputs", "one output")
        out_t = op.outputs[0].type
        out_shape = self.shape(op, out_t)
        out_bits = self.elem_bits(op, out_t, (8, 32), "output")
        maps = [m.data for m in op.indexing_maps.data]
        n_in = len(op.inputs)
        ins = [self.get(op, v, (_Act, _Acc, np.ndarray), f"input {i}") for i, v in enumerate(op.inputs)]
        identity = AffineMap.identity(len(out_shape))
        tensors = [i for i, x in enumerate(ins) if isinstance(x, (_Act, _Acc))]
        for i in tensors:
            if maps[i] != identity or self.shape(op, op.inputs[i].type) != out_shape:
                self.fail(op, f"input {i} read through {maps[i]}", "activations read elementwise (identity map)")
        if maps[n_in] != identity:
            self.fail(op, f"an output written through {maps[n_in]}", "the identity map")
        body = _Body(self, op)
        if any(n.op == "arg" and n.value == n_in for n in _walk(body.root)):
            self.fail(op, "a body that reads the output's initial value", _GENERIC_SUPPORTED)
        first = next((ins[i] for i in tensors), None)
        if first is None:
            self.fail(op, "no activation input", _GENERIC_SUPPORTED)
        layout = first.layout
        channels = first.channels if isinstance(first, _Acc) else first.spec.c

        def param(node: _Node | None, default: int | None = None) -> np.ndarray:
            """A scalar or per-output-channel constant as an int64 array of `channels`."""
            if node is None:
                return np.full(channels, default, np.int64)
            if node.op == "const":
                return np.full(channels, node.value, np.int64)
            x = ins[node.value] if node.op == "arg" and node.value < n_in else None
            if not isinstance(x, np.ndarray):
                raise _NoMatch
            m = maps[node.value]
            if x.size == 1:
                return np.full(channels, int(x.reshape(-1)[0]), np.int64)
            ch = _CHANNEL_DIM[layout]
            if x.ndim != 1 or len(m.results) != 1 or m.results[0] != AffineDimExpr(ch) or x.shape[0] != channels:
                self.fail(op, f"a constant input of shape {list(x.shape)} read through {m}",
                          "scalar or per-channel (channel dimension) constants")
            return x.astype(np.int64)

        def is_param(node: _Node) -> bool:
            return node.op == "const" or (node.op == "arg" and node.value < n_in
                                          and isinstance(ins[node.value], np.ndarray))

        try:
            if out_bits == 32:
                self.generic_acc(op, body.root, ins, param, out_shape, is_param)
            else:
                self.generic_i8(op, body.root, ins, param, out_shape, layout, is_param)
        except _NoMatch:
            self.fail(op, "a body systolab cannot map to the accelerator", _GENERIC_SUPPORTED)

    def generic_acc(self, op, root: _Node, ins, param, out_shape, is_param) -> None:
        """i32 -> i32: acc + bias, maxsi(acc, 0); i8 -> i32: an activation or a residual add."""
        inner, relu, bias = _peel_acc(root, is_param)
        src = self.source(op, inner, ins, out_shape)
        if src.relu and (bias is not None or relu):
            raise _NoMatch
        acc = replace(src, bias=src.bias + (param(bias) if bias is not None else 0), relu=src.relu or relu,
                      name=self.name_for(op.res[0], op))
        self.vals[id(op.res[0])] = acc

    def source(self, op, inner: _Node, ins, out_shape) -> _Acc:
        s = _match_source(inner)
        if s[0] == "arg":
            x = ins[s[1]]
            if not isinstance(x, _Acc):
                raise _NoMatch
            return x
        if s[0] == "act":
            x = ins[s[1]]
            if not isinstance(x, _Act):
                raise _NoMatch
            c = x.spec.c
            w = np.zeros((c, c, 1, 1), np.int8)
            w[np.arange(c), np.arange(c)] = 1
            return _Acc(op.name, self.name_for(op.res[0], op), "conv", out_shape, x.layout, c, (x,),
                        (s[2].value if s[2] is not None else 0,), w, macs=0,
                        bias=np.zeros(c, np.int64))
        (i, za), (j, zb) = s[1], s[2]
        a, b = ins[i], ins[j]
        if not (isinstance(a, _Act) and isinstance(b, _Act)):
            raise _NoMatch
        return _Acc(op.name, self.name_for(op.res[0], op), "add", out_shape, a.layout, a.spec.c, (a, b),
                    (za.value if za is not None else 0, zb.value if zb is not None else 0),
                    bias=np.zeros(a.spec.c, np.int64))

    def generic_i8(self, op, root: _Node, ins, param, out_shape, layout: str, is_param) -> None:
        """-> i8: requantization of an accumulator (or of an activation / residual add), or a ReLU
        maxsi(x, c) of an i8 activation."""
        if _is(root, "arith.maxsi", 8):
            x, c = _commuted(root, lambda n: n.op == "const")
            if x.op != "arg" or not isinstance(ins[x.value], _Act):
                raise _NoMatch
            act = ins[x.value]
            q = QParams(1.0, int(c.value), "int8")
            name = self.name_for(op.res[0], op)
            layer, spec = requant_layer(name, "linalg.generic", act.spec, q, self.spec_name(name), q, relu=True)
            self.emit(op, layer, spec, out_shape, act.layout, act.view)
            return
        r = _match_requant(root, is_param)
        acc = self.source(op, r.inner, ins, out_shape)
        if acc.relu and (r.bias is not None or r.pre_relu):
            raise _NoMatch
        bias = acc.bias + (param(r.bias) if r.bias is not None else 0)
        mult, shift, rnd = param(r.mult, 1), param(r.shift, 0), param(r.round, 0)
        zp, lo, hi = param(r.zp, 0), param(r.lo), param(r.hi)
        why = None
        if np.any(shift < 0) or np.any(shift > 63):
            why = "a shift outside 0..63"
        elif np.any(np.abs(mult) >= 2**31):
            why = "a multiplier that does not fit i32"
        elif np.any(rnd != np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)):
            why = "rounding other than adding 2**(shift-1) before the shift (round half up, as the STORE path)"
        elif np.any(hi != 127):
            why = f"an upper clamp of {sorted(set(hi.tolist()))}"
        elif len(set(zp.tolist())) != 1:
            why = "per-channel output zero points"
        elif np.any(np.abs(bias) >= 2**31):
            why = "a bias that does not fit i32"
        relu = acc.relu or r.pre_relu
        if why is None:
            if relu and np.any(mult < 0):
                why = "a ReLU before a negative multiplier"
            elif np.all(lo == zp) and np.any(zp != -128):
                relu = True
            elif not np.all(lo == -128):
                why = f"a lower clamp of {sorted(set(lo.tolist()))} with zero point {int(zp[0])}"
        if why is not None:
            self.fail(op, f"a requantization with {why}", _GENERIC_SUPPORTED)
        self.close(op, acc, bias, mult, shift, int(zp[0]), relu, out_shape)

    def close(self, op, acc: _Acc, bias, mult, shift, zp: int, relu: bool, out_shape) -> None:
        """The accelerator layer of a requantized accumulator."""
        yq = QParams(1.0, zp, "int8")
        name = acc.name
        out = self.spec_name(op.res[0].name_hint or name)
        if acc.kind == "add":
            if len(set(mult.tolist())) != 1 or len(set(shift.tolist())) != 1 or np.any(bias != bias[0]):
                self.fail(op, "a residual add with per-channel parameters", "per-tensor multiplier, shift and bias")
            a, b = acc.srcs
            aq, bq = QParams(1.0, acc.zps[0], "int8"), QParams(1.0, acc.zps[1] - int(bias[0]), "int8")
            if a.layout != b.layout or a.spec.shape != b.spec.shape:
                self.fail(op, "inputs of different shapes", "a residual add of two tensors of the same shape")
            layer, spec = add_layer(name, acc.op_name, a.spec, aq, b.spec, bq, out, yq, relu=relu,
                                    requant=(int(mult[0]), int(shift[0])))
            self.emit(op, layer, spec, out_shape, a.layout, a.view)
            return
        x = acc.srcs[0]
        xq = QParams(1.0, acc.zps[0], "int8")
        layer, spec = conv_layer(name, acc.op_name, x.spec, xq, acc.weight, 1.0, bias, out, yq, stride=acc.stride,
                                 pads=acc.pads, dilation=acc.dilation, relu=relu, macs=acc.macs,
                                 requant=(mult, shift))
        view = x.view if acc.macs == 0 else None        # an elementwise requantization keeps the view
        self.emit(op, layer, spec, out_shape, acc.layout, view)

    # -- results ---------------------------------------------------------------------------------
    def op_return(self, op) -> None:
        for i, v in enumerate(op.operands):
            x = self.get(op, v, _Act, f"result {i} (an i8 tensor)")
            name = f"result{i}" if len(op.operands) > 1 else "result"
            self.net.steps.append(HostStep(f"{name}:output", "Output", _output_fn(x, name), [x.spec.name], [],
                                           f"i8 {'x'.join(map(str, x.shape))}"))
            self.net.outputs.append(name)
            self.net.output_tensors[name] = (x.spec.name, False)


def _walk(n: _Node):
    yield n
    for a in n.args:
        yield from _walk(a)


def _logical(layout: str, n: int, chw) -> tuple[int, ...]:
    c, h, w = chw
    return (n, c, h, w) if layout == "nchw" else (n, h, w, c)


def _kind_text(k) -> str:
    names = {_Act: "an i8 activation", _Acc: "an i32 accumulator", np.ndarray: "a constant tensor",
             int: "an integer constant", _Fill: "a linalg.fill", _Empty: "a tensor.empty", _Padded: "a tensor.pad"}
    if isinstance(k, tuple):
        return " or ".join(names.get(x, x.__name__) for x in k)
    return names.get(k, k.__name__)


def _type_text(t) -> str:
    from io import StringIO
    from xdsl.printer import Printer
    s = StringIO()
    Printer(stream=s).print_attribute(t)
    return s.getvalue()


def _shape_text(shape) -> str:
    return "x".join(map(str, shape))


def _to_nhwc(act: _Act, v: np.ndarray) -> np.ndarray:
    if act.layout == "nchw":
        return v.transpose(0, 2, 3, 1)
    return v.reshape(act.spec.shape)


def _from_nhwc(act: _Act, v: np.ndarray) -> np.ndarray:
    if act.layout == "nchw":
        return v.transpose(0, 3, 1, 2)
    if act.view is not None:
        lay, _ = act.view
        return (v.transpose(0, 3, 1, 2) if lay == "nchw" else v).reshape(act.shape)
    return v.reshape(act.shape)


def _input_fn(name: str, act: _Act):
    def fn(values, io):
        x = np.asarray(io[name])
        if x.dtype != np.int8 or tuple(x.shape) != act.shape:
            raise MlirError(f"input {name!r} is {x.dtype} {list(x.shape)}; the function takes int8 {list(act.shape)}")
        values[act.spec.name] = np.ascontiguousarray(_to_nhwc(act, x))
    fn.shape = act.shape
    return fn


def _output_fn(act: _Act, name: str):
    def fn(values, io):
        io[name] = np.ascontiguousarray(_from_nhwc(act, values[act.spec.name]))
    return fn


# -- public API ---------------------------------------------------------------------------------------
def load_mlir(path: str | Path, *, input_shapes: dict[str, tuple] | None = None) -> Network:
    """Read an integer linalg-on-tensors MLIR program into a `Network` (checked, not compiled).

    `input_shapes` (by argument name, `arg0` when the text gives none) must agree with the
    function's static shapes."""
    path = str(path)
    if not Path(path).is_file():
        raise MlirError(f"{path}: no such MLIR file")
    return load_mlir_text(Path(path).read_text(), path, input_shapes=input_shapes)


def load_mlir_text(text: str, name: str = "<mlir>", *, input_shapes: dict | None = None) -> Network:
    """`load_mlir` of MLIR text; `name` is the file named in errors."""
    try:
        return _Importer(name, text, input_shapes).run()
    except VerifyException as e:      # pragma: no cover - xDSL verifies while building some ops
        raise MlirError(f"{name}: {str(e).splitlines()[0]}") from None


def generated_mlir_inputs(net: Network, seed: int = 0) -> dict[str, np.ndarray]:
    """Random int8 inputs of the function's shapes (for sweeps and `systolab run` without --input)."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in net.steps:
        if isinstance(s, HostStep) and s.op == "Input":
            out[s.name.removesuffix(":input")] = rng.integers(-128, 128, size=s.fn.shape, dtype=np.int8)
    return out


def mlir_macs(path: str | Path) -> int:
    """Multiply-accumulates of one run of the program, as the network counts them."""
    return load_mlir(path).macs
