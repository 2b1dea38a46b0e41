"""Integer-only kernels of transformer layers as sequences of VECTOR instructions.

Each kernel maps int8 rows to int8 rows through the vector unit and the STORE requantizer:
LOAD the input rows (int8) into the scratchpad, VECTOR operations on int32 accumulator rows, STORE
through the requantizer (per-column bias, multiplier, shift, zero point; ONNX's round half to
even). Constants are derived at compile time from the QDQ scales and zero points.

Layout: tokens along accumulator rows, features along the `array.cols` lanes. A feature vector of
H values spans nc = H / cols rows; a tile of t tokens keeps each full-size buffer token-major
(rows i * nc .. i * nc + nc - 1 hold token i), so an elementwise operation over the whole tile is
one instruction, and a reduction along the features is a column reduction (CSUM / CMAX) of each
token's nc rows into a per-token row, then one row reduction (RSUM / RMAX) of those t rows; the
per-token value goes back to the token's rows as src2 with stride 0 (one instruction per token).

A kernel is written once as an `IR` (a list of `VOp` over named row buffers) built for a tile
size; `run_ir` executes it in numpy with `codegen.intops` (the functional simulator's own
semantics, so the reference is bit-exact with the simulator by construction) and `emit_ir`
turns it into VECTOR instructions at buffer addresses.

The kernels (I-BERT, Kim et al. 2021, adapted to this instruction set):

- `softmax`: d = x - max(x) <= 0; u = -d * s / ln2 in 2^-F fixed point, clamped; the quotient
  q = u >> F and remainder r = u - (q << F); 2^(-r / 2^F) by a second-order polynomial in 2^P
  fixed point, shifted right by q (so exp(d) = 2^-q * 2^(-r/2^F)); the row sum, its integer
  reciprocal (RECIP), the product; the STORE scales to the output quantization.
- `layernorm`: Y = H * x - sum(x) (exact, = H (x - mean) in input LSB); V = sum(Y^2 >> k) with
  k chosen from the int8 range so V fits int32; V += eps; ISQRT, RECIP; Y * 1/std; times the int8
  gamma (ORT quantizes it per tensor), beta in the STORE bias.
- `gelu`: x (1 + erf(x / sqrt2)) / 2 = (x + |x| erf(|x| / sqrt2)) / 2 with I-BERT's clipped
  second-order erf(|z|) = 1 + a (min(|z|, c) - c)^2 (refit), so no sign select is needed.
- `erf` (the Div -> Erf of an exported GELU): a clipped cubic, the sign by NEGSEL.
- `scale` (Mul/Div by a constant, Add of a constant), `add` and `mul` of two tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from systolab.errors import CompileError
from systolab.isa import VECTOR_OPS

from .intops import combine, vector_op, wrap32
from .quant import quantize_multiplier, requantize

__all__ = ["VOp", "IR", "run_ir", "emit_ir", "VectorKernel", "softmax_kernel", "layernorm_kernel",
           "gelu_kernel", "scale_kernel", "add_kernel", "mul_kernel", "erf_kernel", "kernel_reference",
           "EXP_POLY", "ERF_POLY", "ERF_CUBIC"]

LN2 = math.log(2.0)

#: 2^-f ~ c2 f^2 + c1 f + c0 on [0, 1) (least squares on the relative error)
_f = np.linspace(0.0, 1.0, 4097)
EXP_POLY = tuple(float(c) for c in np.polyfit(_f, 2.0 ** -_f, 2, w=2.0 ** _f))
#: GELU's erf(z) ~ 1 + a (min(z, c) - c)^2 for z >= 0: I-BERT's form (a = -0.2888, c = 1.769
#: there), refit for the least max |z (erf - approximation)|, the error GELU sees: 0.0205 (I-BERT 0.0257)
ERF_POLY = (-0.258, 1.83)
#: erf alone (Erf after a Div): 1 - (1 - t/c)^2 (1 + b t/c), t = min(z, c): max error 0.0134
#: (I-BERT's form is 0.096 off at z = 0)
ERF_CUBIC = (1.84, -0.35)


# -- the IR ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VOp:
    """One VECTOR instruction over named buffers: operands are (buffer, first row, stride)."""

    func: str
    dst: tuple[str, int]
    rows: int
    a: tuple[str, int, int]
    b: tuple[str, int, int] | int | None = None      # an int: the immediate
    shift: int = 0
    round: int = 0
    accumulate: int = 0


@dataclass
class IR:
    """A kernel body for one tile of t tokens: buffers (name -> (space "acc" or "sp", rows)) and
    ops. Full buffers are token-major: row i * nc + c holds features c*cols .. of token i.
    `prologue` ops run once per pass (they build the `persistent` buffers: constant rows)."""

    nc: int
    t: int
    bufs: dict[str, tuple[str, int]] = field(default_factory=dict)
    ops: list[VOp] = field(default_factory=list)
    prologue: list[VOp] = field(default_factory=list)
    persistent: set = field(default_factory=set)

    # buffers
    def full(self, name: str, space: str = "acc") -> str:
        self.bufs.setdefault(name, (space, self.nc * self.t))
        return name

    def tok(self, name: str) -> str:
        self.bufs.setdefault(name, ("acc", self.t))
        return name

    def all(self, name: str):
        return (name, 0, 1)

    def token(self, name: str, i: int):
        return (name, i * self.nc, 1)

    def op(self, func, dst, a, b=None, *, rows, shift=0, round=0, accumulate=0, prologue=False) -> None:
        if func not in VECTOR_OPS:
            raise ValueError(func)
        (self.prologue if prologue else self.ops).append(
            VOp(func, (dst[0], dst[1]), rows, a, b, shift, round, accumulate))

    def ew(self, func, dst: str, a, b=None, **kw) -> None:
        """Elementwise over every row of the tile (a, b: buffer names or an immediate b)."""
        self.op(func, (dst, 0), self.all(a), self.all(b) if isinstance(b, str) else b,
                rows=self.nc * self.t, **kw)

    def reduce_tokens(self, col_func: str, row_func: str, dst: str, src: str) -> None:
        """dst row i = the reduction of token i's features of src in every lane: a column
        reduction (CSUM / CMAX) of the token's nc rows, then one row reduction of all t rows."""
        for i in range(self.t):
            self.op(col_func, (dst, i), self.token(src, i), rows=self.nc)
        self.op(row_func, (dst, 0), (dst, 0, 1), rows=self.t)

    def per_token(self, func: str, dst: str, a: str, tokbuf: str, **kw) -> None:
        """dst token i = func(a token i, tokbuf row i): a per-token value to every feature."""
        for i in range(self.t):
            self.op(func, (dst, i * self.nc), self.token(a, i), (tokbuf, i, 0), rows=self.nc, **kw)

    def per_feature(self, func: str, dst: str, a: str, const: str, **kw) -> None:
        """dst token i = func(a token i, const) with const the nc rows of one feature vector."""
        for i in range(self.t):
            self.op(func, (dst, i * self.nc), self.token(a, i), (const, 0, 1), rows=self.nc, **kw)


def _operand(state: dict, spec, rows: int, cols: int) -> np.ndarray:
    name, r0, stride = spec
    buf = state[name]
    n = rows if stride else 1
    v = buf[r0:r0 + n].astype(np.int64)
    if v.shape[0] != n:
        raise ValueError(f"operand {spec} reads past buffer {name} ({buf.shape[0]} rows)")
    return v if stride else np.broadcast_to(v, (rows, cols))


def run_ir(ir: IR, state: dict[str, np.ndarray], cols: int) -> None:
    """Execute `ir` on `state` (buffer name -> (rows, cols) int array; sp buffers hold int8 values):
    exactly what the functional simulator computes for the emitted instructions."""
    for op in ir.prologue + ir.ops:
        a = _operand(state, op.a, op.rows, cols)
        if op.b is None:
            b = np.zeros_like(a)
        elif isinstance(op.b, (int, np.integer)):
            b = np.full_like(a, int(op.b))
        else:
            b = _operand(state, op.b, op.rows, cols)
        y = vector_op(op.func, a, b, shift=op.shift, round=op.round)
        name, r0 = op.dst
        out_rows = 1 if op.func in ("CSUM", "CMAX") else op.rows
        dst = state[name]
        if op.accumulate:
            y = combine(op.func, dst[r0:r0 + out_rows], y)
        dst[r0:r0 + out_rows] = y


def emit_ir(b, ir: IR, base: dict[str, int], *, prologue: bool = False) -> None:
    """VECTOR instructions of `ir` (its prologue with `prologue`) into the ProgramBuilder `b`,
    buffer `name` at row `base[name]` of its space (scratchpad or accumulator)."""
    for op in (ir.prologue if prologue else ir.ops):
        f = {"func": VECTOR_OPS[op.func], "dst": base[op.dst[0]] + op.dst[1], "rows": op.rows,
             "shift": op.shift, "round": op.round, "accumulate": op.accumulate}
        name, r0, stride = op.a
        f.update(src1=base[name] + r0, src1_sp=int(ir.bufs[name][0] == "sp"), src1_stride=stride)
        if op.b is None:
            f.update(src2=0, src2_imm=1)
        elif isinstance(op.b, (int, np.integer)):
            v = int(op.b)
            if not -2**31 <= v < 2**31:
                raise CompileError(f"vector immediate {v} does not fit 32 bits")
            f.update(src2=v & 0xFFFFFFFF, src2_imm=1)
        else:
            name, r0, stride = op.b
            f.update(src2=base[name] + r0, src2_sp=int(ir.bufs[name][0] == "sp"), src2_stride=stride)
        b.emit("VECTOR", **f)


# -- kernels -------------------------------------------------------------------------------------------
def _fixed(x: float, bits: int = 24) -> tuple[int, int]:
    """x ~ m / 2**s with |m| < 2**bits, s >= 0 (an immediate multiplier and its shift)."""
    if x == 0:
        return 0, 0
    s = max(0, bits - 1 - math.frexp(abs(x))[1])
    s = min(s, 62)
    return int(round(x * 2 ** s)), s


@dataclass
class VectorKernel:
    """An int8 -> int8 kernel: `inputs` int8 operands (each H features per row), a body (the IR
    for a tile of t tokens), constant rows it reads from the scratchpad (int8, nc rows each) and
    the STORE parameters per feature."""

    name: str
    H: int
    n_inputs: int
    body: callable                       # body(ir) fills the IR; inputs are sp buffers IN0, IN1
    out: str                             # the accumulator buffer the STORE reads
    bias: np.ndarray                     # (H,) int32
    mult: np.ndarray                     # (H,) int32
    shift: np.ndarray                    # (H,) int32
    zp: np.ndarray                       # (H,) int32
    consts: dict[str, np.ndarray] = field(default_factory=dict)   # name -> (H,) int8 row values
    #: name -> (H,) int32 values: accumulator rows built once per pass from four int8 digit rows
    wide: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def elementwise(self) -> bool:
        """No reduction over the features and the same STORE parameters for every feature: the
        rows may be cut any way (a dense tensor runs as one stream of rows)."""
        return bool(self.info.get("elementwise"))

    def ir(self, cols: int, t: int, *, H: int | None = None) -> IR:
        H = H or self.H
        if H % cols:
            raise CompileError(f"{self.name}: {H} features are not a multiple of array.cols ({cols}); "
                               f"the vector kernels need whole accumulator rows")
        nc = H // cols
        ir = IR(nc, t)
        for i in range(self.n_inputs):
            ir.full(f"IN{i}", "sp")
        for name in list(self.consts) + [f"{w}.d{k}" for w in self.wide for k in range(4)]:
            ir.bufs[name] = ("sp", nc)
            ir.persistent.add(name)
        for name in self.wide:
            ir.bufs[name] = ("acc", nc)
            ir.persistent.add(name)
            for k, scale in ((3, 1 << 24), (2, 1 << 16), (1, 1 << 8), (0, 1)):
                ir.op("MUL", (name, 0), (f"{name}.d{k}", 0, 1), scale, rows=nc, accumulate=int(k < 3),
                      prologue=True)
        self.body(ir)
        return ir

    def const_rows(self, cols: int) -> dict[str, np.ndarray]:
        """The scratchpad constant rows (int8 values) by buffer name, wide constants as digits."""
        out = {k: np.asarray(v, np.int64).reshape(-1, cols) for k, v in self.consts.items()}
        for name, v in self.wide.items():
            for k, d in enumerate(_digits(v)):
                out[f"{name}.d{k}"] = d.reshape(-1, cols)
        return out


def _digits(v) -> list[np.ndarray]:
    """int32 values as four balanced base-256 digits (each int8): v = sum d_k 256^k."""
    v = np.asarray(v, np.int64).copy()
    out = []
    for _ in range(4):
        d = ((v + 128) % 256) - 128
        out.append(d)
        v = (v - d) // 256
    if np.any(v != 0):
        raise CompileError("a constant does not fit four int8 digits")
    return out


def _store_params(H: int, bias=0, mult=0, shift=0, zp=0) -> tuple:
    col = lambda v: np.broadcast_to(np.asarray(v, np.int64), (H,)).astype(np.int32)  # noqa: E731
    return col(bias), col(mult), col(shift), col(zp)


def kernel_reference(k: VectorKernel, xs: list[np.ndarray], cols: int, t: int | None = None) -> np.ndarray:
    """The kernel on int8 inputs (each (rows, H)) in numpy: tiles of `t` tokens through `run_ir`,
    then the STORE requantization. Bit-exact with the functional simulator."""
    M = xs[0].shape[0]
    t = t or M
    nc = k.H // cols
    out = np.zeros((M, k.H), np.int8)
    consts = k.const_rows(cols)
    for t0 in range(0, M, t):
        tt = min(t, M - t0)
        ir = k.ir(cols, tt)
        state = {n: np.zeros((r, cols), np.int64) for n, (_, r) in ir.bufs.items()}
        for i, x in enumerate(xs):
            state[f"IN{i}"] = np.asarray(x[t0:t0 + tt], np.int64).reshape(nc * tt, cols)
        state.update(consts)
        run_ir(ir, state, cols)
        acc = wrap32(state[k.out]).reshape(tt, k.H)
        out[t0:t0 + tt] = requantize(acc, k.bias, k.mult, k.shift, k.zp, False, True)
    return out


def softmax_kernel(H: int, xq, yq, *, name: str = "softmax") -> VectorKernel:
    """Softmax along the H features; xq, yq: QParams (scale, zp in the int8 domain)."""
    s = xq.scale
    # u = -d * s / ln2 * 2^F for d = x - max >= -255: F as fine as int32 allows (at most 16)
    F = int(min(16, math.floor(math.log2((2**30) / (255 * s / LN2 + 1e-30)))))
    if F < 4:
        raise CompileError(f"{name}: input scale {s} is too coarse for the integer exp")
    m, ms = _fixed(s / LN2 * 2**F, 22)
    P = min(22, 30 - max(1, math.ceil(math.log2(H))))      # exp in 2^P fixed point; the row sum fits
    c2, c1, c0 = EXP_POLY
    A, B, C = round(c2 * 2**P), round(c1 * 2**P), round(c0 * 2**P)
    Z = P + 30                                   # RECIP: 2^Z / sum < 2^31 since sum >= ~2^P
    Q = 24                                       # the probabilities in 2^Q fixed point
    qmax = P + 1                                 # 2^-q underflows past this

    def body(ir: IR) -> None:
        ir.full("U"), ir.full("QT"), ir.full("R")
        ir.tok("M"), ir.tok("S"), ir.tok("RC")
        ir.reduce_tokens("CMAX", "RMAX", "M", "IN0")
        ir.per_token("SUB", "U", "IN0", "M")           # d = x - max <= 0
        ir.ew("MUL", "U", "U", -m, shift=ms, round=1)  # u = -d s / ln2 in 2^F
        if 255 * s / LN2 >= qmax:                   # 2^-q would underflow: clamp q
            ir.ew("MIN", "U", "U", qmax << F)
        ir.ew("SHR", "QT", "U", F)                     # q = u >> F
        ir.ew("SHL", "R", "QT", F)
        ir.ew("SUB", "U", "U", "R")                    # r = u - (q << F) in [0, 2^F)
        # 2^(-r / 2^F) * 2^P = ((A r >> F) + B) r >> F + C
        ir.ew("MUL", "R", "U", A, shift=F, round=1)
        ir.ew("ADD", "R", "R", B)
        ir.ew("MUL", "R", "R", "U", shift=F, round=1)
        ir.ew("ADD", "R", "R", C)
        ir.ew("SHR", "R", "R", "QT", round=1)          # exp(d) in 2^P
        ir.reduce_tokens("CSUM", "RSUM", "S", "R")
        ir.op("RECIP", ("RC", 0), ("S", 0, 1), None, rows=ir.t, shift=Z)
        ir.per_token("MUL", "U", "R", "RC", shift=Z - Q, round=1)

    mult, shift = quantize_multiplier(2.0 ** -Q / yq.scale)
    bias, mult, shift, zp = _store_params(H, 0, mult, shift, yq.zp)
    return VectorKernel(name, H, 1, body, "U", bias, mult, shift, zp,
                        info={"F": F, "P": P, "m": m, "ms": ms})


def layernorm_kernel(H: int, xq, gamma_q: np.ndarray, gamma_scale: float, beta: np.ndarray, eps: float,
                     yq, *, name: str = "layernorm") -> VectorKernel:
    """LayerNormalization over the H features; gamma = gamma_scale * gamma_q (int8), beta float (H,)."""
    s = xq.scale
    gamma_q = np.asarray(gamma_q, np.int64).reshape(-1)
    beta = np.asarray(beta, np.float64).reshape(-1)
    if gamma_q.size == 1:
        gamma_q = np.full(H, gamma_q[0])
    if beta.size == 1:
        beta = np.full(H, beta[0])
    if gamma_q.size != H or beta.size != H or np.abs(gamma_q).max() > 127:
        raise CompileError(f"{name}: gamma and beta must have {H} values (gamma int8)")
    # sum over H of (Y^2 >> k) fits int32 for |Y| <= 255 H
    k = max(0, math.ceil(math.log2(H * (255.0 * H) ** 2 / (2**31 - 1))))
    eps_int = max(1, round(eps / s**2 * H**3 / 2**k))
    Z = 30
    z2 = max(0, round(Z + k / 2 - 0.5 * math.log2(H) - 16))
    KN = 2.0 ** (Z + k / 2 - z2) / math.sqrt(H)        # N = xnorm * KN

    def body(ir: IR) -> None:
        ir.full("Y"), ir.full("T")
        ir.tok("S"), ir.tok("V"), ir.tok("RC")
        ir.reduce_tokens("CSUM", "RSUM", "S", "IN0")
        ir.ew("MUL", "Y", "IN0", H)
        ir.per_token("SUB", "Y", "Y", "S")             # Y = H x - sum x
        ir.ew("MUL", "T", "Y", "Y", shift=k, round=1)
        ir.reduce_tokens("CSUM", "RSUM", "V", "T")
        ir.op("ADD", ("V", 0), ("V", 0, 1), eps_int, rows=ir.t)
        ir.op("ISQRT", ("S", 0), ("V", 0, 1), None, rows=ir.t)
        ir.op("RECIP", ("RC", 0), ("S", 0, 1), None, rows=ir.t, shift=Z)
        ir.per_token("MUL", "Y", "Y", "RC", shift=z2, round=1)
        ir.per_feature("MUL", "Y", "Y", "GAMMA")      # times gamma (int8 scratchpad rows)
        ir.per_feature("ADD", "Y", "Y", "BETA")       # plus beta (int32 accumulator rows)

    # out = acc * gamma_scale / KN with acc = gamma_q xnorm KN + beta KN / gamma_scale
    mult, shift = quantize_multiplier(gamma_scale / (KN * yq.scale))
    beta_int = np.rint(beta * KN / gamma_scale)
    if np.abs(beta_int).max() >= 2**30:
        raise CompileError(f"{name}: beta / gamma does not fit int32")
    bias, mult, shift, zp = _store_params(H, 0, mult, shift, yq.zp)
    return VectorKernel(name, H, 1, body, "Y", bias, mult, shift, zp, consts={"GAMMA": gamma_q.astype(np.int8)},
                        wide={"BETA": beta_int.astype(np.int64)}, info={"k": k, "eps_int": eps_int, "z2": z2})


def gelu_kernel(H: int, xq, yq, *, name: str = "gelu") -> VectorKernel:
    """GELU with I-BERT's clipped second-order erf, in input LSB: x (1 + erf(x / sqrt2)) =
    x + |x| erf(|x| / sqrt2) (so no sign select is needed) with erf(|z|) = 1 + W,
    W = a (min(|x|, X_c) - X_c)^2 (s^2 / 2), X_c = c sqrt2 / s the clip point in input LSB."""
    F, G = 16, 4
    a, c = ERF_POLY
    clip = max(1, round(c * math.sqrt(2.0) / xq.scale))
    aw, sw = _fixed(a * xq.scale**2 / 2 * 2**F, 22)

    def body(ir: IR) -> None:
        ir.full("X"), ir.full("A"), ir.full("T")
        ir.ew("ADD", "X", "IN0", -xq.zp)                 # x (int32, input LSB)
        ir.ew("ABS", "A", "X")
        ir.ew("ADD", "T", "A", -clip)
        ir.ew("MIN", "T", "T", 0)                      # min(|x|, X_c) - X_c <= 0
        ir.ew("MUL", "T", "T", "T")                    # squared (exact: |T| <= 255)
        ir.ew("MUL", "T", "T", aw, shift=sw, round=1)  # W in 2^F
        ir.ew("ADD", "T", "T", 1 << F)                 # erf(|z|) in 2^F
        ir.ew("MUL", "T", "T", "A", shift=F - G, round=1)   # |x| erf(|z|) in 2^-G LSB
        ir.ew("MUL", "T", "X", 1 << G, accumulate=1)   # + x

    mult, shift = quantize_multiplier(0.5 * xq.scale * 2.0 ** -G / yq.scale)
    bias, mult, shift, zp = _store_params(H, 0, mult, shift, yq.zp)
    return VectorKernel(name, H, 1, body, "T", bias, mult, shift, zp, info={"elementwise": True})


def erf_kernel(H: int, xq, divisor: float, yq, *, name: str = "erf") -> VectorKernel:
    """erf(x / divisor) (the Div -> Erf of an exported GELU): sign(x) (1 - u^2 (1 + b + b u)),
    u = min(|z|, c) / c - 1 in [-1, 0] (`ERF_CUBIC`)."""
    F = 16
    c, bb = ERF_CUBIC
    mt, st = _fixed(xq.scale / divisor / c * 2**F, 22)

    def body(ir: IR) -> None:
        ir.full("X"), ir.full("U"), ir.full("V")
        ir.ew("ADD", "X", "IN0", -xq.zp)
        ir.ew("ABS", "U", "X")
        ir.ew("MUL", "U", "U", mt, shift=st, round=1)   # |z| / c in 2^F
        ir.ew("MIN", "U", "U", 1 << F)
        ir.ew("ADD", "U", "U", -(1 << F))               # u in [-1, 0]
        ir.ew("MUL", "V", "U", round(-bb * 2**F), shift=F, round=1)
        ir.ew("ADD", "V", "V", round(-(1 + bb) * 2**F))  # -(1 + b + b u)
        ir.ew("MUL", "U", "U", "U", shift=F, round=1)    # u^2
        ir.ew("MUL", "U", "U", "V", shift=F, round=1)    # -u^2 (1 + b + b u)
        ir.ew("ADD", "U", "U", 1 << F)                  # erf(|z|)
        ir.op("NEGSEL", ("X", 0), ("X", 0, 1), ("U", 0, 1), rows=ir.nc * ir.t)

    mult, shift = quantize_multiplier(2.0 ** -F / yq.scale)
    bias, mult, shift, zp = _store_params(H, 0, mult, shift, yq.zp)
    return VectorKernel(name, H, 1, body, "X", bias, mult, shift, zp, info={"elementwise": True})


def scale_kernel(H: int, xq, factor: float, yq, *, offset: float = 0.0, name: str = "scale") -> VectorKernel:
    """y = factor * x + offset (Mul or Div by a constant, Add of a constant scalar)."""
    sign = -1 if factor < 0 else 1
    S = 12

    def body(ir: IR) -> None:
        ir.full("X")
        ir.ew("ADD", "X", "IN0", -xq.zp)
        ir.ew("MUL", "X", "X", sign << S)

    # out = (acc + bias) * |factor| s_x / (2^S s_y): offset / (|factor| s_x) * 2^S in the bias
    scale = abs(factor) * xq.scale
    bias = 0 if offset == 0 else round(offset / scale * 2**S) if scale else 0
    mult, shift = quantize_multiplier(scale / 2**S / yq.scale)
    if scale == 0:
        mult, shift = quantize_multiplier(1.0)
        bias = 0
    b, mult, shift, zp = _store_params(H, bias, mult, shift, yq.zp + (round(offset / yq.scale) if scale == 0 else 0))
    return VectorKernel(name, H, 1, body, "X", b, mult, shift, zp, info={"elementwise": True})


def add_kernel(H: int, aq, bq, yq, *, name: str = "add") -> VectorKernel:
    """y = a + b of two int8 tensors: wa (a - za) + wb (b - zb) with 2^20-precise integer weights."""
    big = max(aq.scale, bq.scale)
    wa, wb = round(aq.scale / big * 2**20), round(bq.scale / big * 2**20)

    def body(ir: IR) -> None:
        ir.full("X")
        ir.ew("MUL", "X", "IN0", wa)
        ir.ew("MUL", "X", "IN1", wb, accumulate=1)

    mult, shift = quantize_multiplier(big / 2**20 / yq.scale)
    bias, mult, shift, zp = _store_params(H, -(wa * aq.zp + wb * bq.zp), mult, shift, yq.zp)
    return VectorKernel(name, H, 2, body, "X", bias, mult, shift, zp, info={"elementwise": True})


def mul_kernel(H: int, aq, bq, yq, *, name: str = "mul") -> VectorKernel:
    """y = a * b of two int8 tensors."""
    def body(ir: IR) -> None:
        ir.full("X"), ir.full("T")
        ir.ew("ADD", "X", "IN0", -aq.zp)
        ir.ew("ADD", "T", "IN1", -bq.zp)
        ir.ew("MUL", "X", "X", "T")

    mult, shift = quantize_multiplier(aq.scale * bq.scale / yq.scale)
    bias, mult, shift, zp = _store_params(H, 0, mult, shift, yq.zp)
    return VectorKernel(name, H, 2, body, "X", bias, mult, shift, zp, info={"elementwise": True})
