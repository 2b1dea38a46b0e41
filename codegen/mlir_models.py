"""Small integer linalg-on-tensors programs written in code: the MLIR of the tests and of
`examples/mlir_models.py`, in the form torch-mlir and IREE emit for int8 networks (named linalg
ops, `linalg.generic` requantization built from `arith` ops, `tensor.pad`, `collapse_shape`).

    >>> text = gemm_mlir(64, 64, 64, seed=0)
    >>> text = convnet_mlir(seed=0)      # conv 3x3 + ReLU, flatten, matmul: two quantized layers

Requantization bodies follow the STORE path exactly (`codegen.quant.requantize`): bias added in
i32, then in i64 `(x * m + 2**(s-1)) >> s`, the zero point, a clamp and a truncation to i8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import count

import numpy as np

from .quant import quantize_multiplier, requantize, wrap_int32

__all__ = ["MlirWriter", "MlirProgram", "dense", "gemm_mlir", "convnet_mlir"]


@dataclass
class MlirProgram:
    """MLIR text and its meaning computed directly in numpy from the same constants (an oracle
    independent of the importer): `reference(inputs) -> outputs` by the names `load_mlir` uses."""

    text: str
    reference: object
    macs: int

    def write(self, path) -> None:
        from pathlib import Path
        Path(path).write_text(self.text)


def dense(a: np.ndarray) -> str:
    """An MLIR `dense<...>` literal of an integer array."""
    a = np.asarray(a)
    return f"dense<{json.dumps(a.tolist())}>"


def _ttype(shape, bits: int) -> str:
    return f"tensor<{'x'.join(map(str, shape))}xi{bits}>"


def _maps(rank: int, *results: tuple[int, ...] | None) -> str:
    dims = ", ".join(f"d{i}" for i in range(rank))
    out = []
    for r in results:
        r = tuple(range(rank)) if r is None else r
        out.append(f"affine_map<({dims}) -> ({', '.join(f'd{i}' for i in r)})>")
    return "[" + ", ".join(out) + "]"


@dataclass
class MlirWriter:
    """Writes one `func.func` in linalg-on-tensors form, line by line."""

    name: str = "main"
    lines: list[str] = field(default_factory=list)
    resources: dict[str, np.ndarray] = field(default_factory=dict)
    _ids: count = field(default_factory=count)

    def fresh(self, base: str) -> str:
        return f"{base}{next(self._ids)}"

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)

    def constant(self, a: np.ndarray, bits: int, *, name: str | None = None, resource: bool = False) -> str:
        v = name or self.fresh("cst")
        t = _ttype(a.shape, bits)
        if resource:
            self.resources[v] = np.asarray(a)
            self.emit(f"%{v} = arith.constant dense_resource<{v}> : {t}")
        else:
            self.emit(f"%{v} = arith.constant {dense(a)} : {t}")
        return v

    def scalar(self, value: int, bits: int) -> str:
        v = self.fresh("c")
        self.emit(f"%{v} = arith.constant {int(value)} : i{bits}")
        return v

    def filled(self, shape, value: int, bits: int) -> str:
        e, z, f = self.fresh("empty"), self.scalar(value, bits), self.fresh("init")
        t = _ttype(shape, bits)
        self.emit(f"%{e} = tensor.empty() : {t}")
        self.emit(f"%{f} = linalg.fill ins(%{z} : i{bits}) outs(%{e} : {t}) -> {t}")
        return f

    def pad(self, x: str, shape, low, high, value: int) -> tuple[str, tuple]:
        out = tuple(s + lo + hi for s, lo, hi in zip(shape, low, high))
        v, c = self.fresh("padded"), self.scalar(value, 8)
        idx = ", ".join(f"%i{k}: index" for k in range(len(shape)))
        self.emit(f"%{v} = tensor.pad %{x} low{list(low)} high{list(high)} {{")
        self.emit(f"^bb0({idx}):")
        self.emit(f"  tensor.yield %{c} : i8")
        self.emit(f"}} : {_ttype(shape, 8)} to {_ttype(out, 8)}")
        return v, out

    def requant(self, acc: str, shape, *, channel_dim: int, bias: str | None, channels: int, mult: int,
                shift: int, zp: int, relu: bool, name: str | None = None) -> str:
        """An i32 -> i8 `linalg.generic` doing exactly the STORE path's requantization."""
        rank = len(shape)
        e, v, p = self.fresh("empty"), name or self.fresh("q"), self.fresh("r")
        t32, t8 = _ttype(shape, 32), _ttype(shape, 8)
        self.emit(f"%{e} = tensor.empty() : {t8}")
        ins = f"%{acc}" + (f", %{bias}" if bias else "")
        types = t32 + (f", {_ttype((channels,), 32)}" if bias else "")
        maps = _maps(rank, None, *(((channel_dim,),) if bias else ()), None)
        its = ", ".join(['"parallel"'] * rank)
        self.emit(f"%{v} = linalg.generic {{indexing_maps = {maps}, iterator_types = [{its}]}} "
                  f"ins({ins} : {types}) outs(%{e} : {t8}) {{")
        args = f"%{p}a: i32" + (f", %{p}b: i32" if bias else "") + f", %{p}o: i8"
        body = [f"^bb0({args}):"]
        x = f"%{p}a"
        if bias:
            body.append(f"  %{p}0 = arith.addi %{p}a, %{p}b : i32")
            x = f"%{p}0"
        rnd = 1 << (shift - 1) if shift > 0 else 0
        body += [f"  %{p}1 = arith.extsi {x} : i32 to i64",
                 f"  %{p}m = arith.constant {mult} : i64",
                 f"  %{p}2 = arith.muli %{p}1, %{p}m : i64",
                 f"  %{p}h = arith.constant {rnd} : i64",
                 f"  %{p}3 = arith.addi %{p}2, %{p}h : i64",
                 f"  %{p}s = arith.constant {shift} : i64",
                 f"  %{p}4 = arith.shrsi %{p}3, %{p}s : i64",
                 f"  %{p}z = arith.constant {zp} : i64",
                 f"  %{p}5 = arith.addi %{p}4, %{p}z : i64",
                 f"  %{p}lo = arith.constant {zp if relu else -128} : i64",
                 f"  %{p}hi = arith.constant 127 : i64",
                 f"  %{p}6 = arith.maxsi %{p}5, %{p}lo : i64",
                 f"  %{p}7 = arith.minsi %{p}6, %{p}hi : i64",
                 f"  %{p}8 = arith.trunci %{p}7 : i64 to i8",
                 f"  linalg.yield %{p}8 : i8",
                 f"}} -> {t8}"]
        for line in body:
            self.emit(line)
        return v

    def text(self, args: list[tuple[str, tuple]], results: list[tuple[str, tuple]]) -> str:
        sig = ", ".join(f"%{n}: {_ttype(s, 8)}" for n, s in args)
        res = ", ".join(_ttype(s, 8) for _, s in results)
        out = ["module {", f"  func.func @{self.name}({sig}) -> {res if len(results) == 1 else f'({res})'} {{",
               *self.lines, "    return " + ", ".join(f"%{n}" for n, _ in results) + " : " + res, "  }", "}"]
        if self.resources:
            blobs = ",\n".join(f"      {k}: \"0x04000000{_blob(v)}\"" for k, v in self.resources.items())
            out += ["{-#", "  dialect_resources: {", "    builtin: {", blobs, "    }", "  }", "#-}"]
        return "\n".join(out) + "\n"


def _blob(a: np.ndarray) -> str:
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("<")).tobytes().hex().upper()


def _scale_for(k: int) -> tuple[int, int]:
    """A multiplier and shift that spread a sum of k int8 x int8 products over int8."""
    return quantize_multiplier(min(40.0 / (74.0 * 74.0 * np.sqrt(k)), 0.5))


def gemm_mlir(M: int, K: int, N: int, *, seed: int = 0, relu: bool = False, resource: bool = True) -> MlirProgram:
    """`C = requant(A @ B + bias)`: `linalg.matmul` on i8 tensors with i32 accumulation (B and the
    bias as `dense_resource` blobs unless `resource` is False), then the requantization generic."""
    rng = np.random.default_rng(seed)
    w = MlirWriter("gemm")
    B = rng.integers(-128, 128, size=(K, N), dtype=np.int8)
    bias = rng.integers(-2**14, 2**14, size=N, dtype=np.int32)
    b = w.constant(B, 8, name="B", resource=resource)
    bi = w.constant(bias, 32, name="bias", resource=resource)
    init = w.filled((M, N), 0, 32)
    w.emit(f"%acc = linalg.matmul ins(%A, %{b} : {_ttype((M, K), 8)}, {_ttype((K, N), 8)}) "
           f"outs(%{init} : {_ttype((M, N), 32)}) -> {_ttype((M, N), 32)}")
    mult, shift = _scale_for(K)
    zp = int(rng.integers(-8, 8))
    out = w.requant("acc", (M, N), channel_dim=1, bias=bi, channels=N, mult=mult, shift=shift,
                    zp=zp, relu=relu, name="C")

    def reference(inputs):
        acc = wrap_int32(inputs["A"].astype(np.int64) @ B.astype(np.int64))
        return {"result": requantize(acc, bias, mult, shift, zp, relu)}
    return MlirProgram(w.text([("A", (M, K))], [(out, (M, N))]), reference, M * K * N)


def convnet_mlir(*, seed: int = 0, channels: int = 8, hw: int = 8, classes: int = 10) -> MlirProgram:
    """A two-layer quantized network: `linalg.conv_2d_nchw_fchw_q` 3x3 (input zero point -3,
    `tensor.pad` with it) + bias + ReLU requantization, `tensor.collapse_shape` to 1 x features,
    `linalg.matmul` + bias + requantization to `classes` int8 logits. Input 1 x 3 x hw x hw i8."""
    rng = np.random.default_rng(seed)
    w = MlirWriter("main")
    zx = -3
    W1 = rng.integers(-100, 100, size=(channels, 3, 3, 3), dtype=np.int8)
    b1 = rng.integers(-2000, 2000, size=channels, dtype=np.int32)
    W2 = rng.integers(-100, 100, size=(channels * hw * hw, classes), dtype=np.int8)
    b2 = rng.integers(-2000, 2000, size=classes, dtype=np.int32)
    w1, bb1 = w.constant(W1, 8, name="conv1_w"), w.constant(b1, 32, name="conv1_b", resource=True)
    w2, bb2 = w.constant(W2, 8, name="fc_w", resource=True), w.constant(b2, 32, name="fc_b")
    zxs, zws = w.scalar(zx, 32), w.scalar(0, 32)
    xp, pshape = w.pad("x", (1, 3, hw, hw), (0, 0, 1, 1), (0, 0, 1, 1), zx)
    init = w.filled((1, channels, hw, hw), 0, 32)
    t_out = _ttype((1, channels, hw, hw), 32)
    w.emit(f"%conv1 = linalg.conv_2d_nchw_fchw_q {{dilations = dense<1> : vector<2xi64>, strides = dense<1> : "
           f"vector<2xi64>}} ins(%{xp}, %{w1}, %{zxs}, %{zws} : {_ttype(pshape, 8)}, {_ttype(W1.shape, 8)}, i32, i32) "
           f"outs(%{init} : {t_out}) -> {t_out}")
    m1, s1 = _scale_for(27)
    h = w.requant("conv1", (1, channels, hw, hw), channel_dim=1, bias=bb1, channels=channels, mult=m1, shift=s1,
                  zp=-10, relu=True, name="relu1")
    feat = channels * hw * hw
    w.emit(f"%flat = tensor.collapse_shape %{h} [[0], [1, 2, 3]] : {_ttype((1, channels, hw, hw), 8)} "
           f"into {_ttype((1, feat), 8)}")
    # the second layer reads the first's output with its zero point: quantized_matmul subtracts it
    init2 = w.filled((1, classes), 0, 32)
    za, zb = w.scalar(-10, 32), w.scalar(0, 32)
    w.emit(f"%fc = linalg.quantized_matmul ins(%flat, %{w2}, %{za}, %{zb} : {_ttype((1, feat), 8)}, "
           f"{_ttype(W2.shape, 8)}, i32, i32) outs(%{init2} : {_ttype((1, classes), 32)}) -> {_ttype((1, classes), 32)}")
    m2, s2 = _scale_for(feat)
    out = w.requant("fc", (1, classes), channel_dim=1, bias=bb2, channels=classes, mult=m2, shift=s2, zp=0,
                    relu=False, name="logits")

    def reference(inputs):
        x = inputs["x"].astype(np.int64) - zx                      # NCHW
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))            # padded with zx: 0 after the subtraction
        acc = np.zeros((1, channels, hw, hw), np.int64)
        for i in range(3):
            for j in range(3):
                acc += np.einsum("nchw,fc->nfhw", xp[:, :, i:i + hw, j:j + hw], W1[:, :, i, j].astype(np.int64))
        acc = wrap_int32(acc).transpose(0, 2, 3, 1).reshape(-1, channels)          # rows x channels
        h1 = requantize(acc, b1, m1, s1, -10, True).reshape(1, hw, hw, channels).transpose(0, 3, 1, 2)
        flat = h1.reshape(1, feat).astype(np.int64) + 10
        acc2 = wrap_int32(flat @ W2.astype(np.int64))
        return {"result": requantize(acc2, b2, m2, s2, 0, False)}
    macs = hw * hw * channels * 27 + feat * classes
    return MlirProgram(w.text([("x", (1, 3, hw, hw))], [(out, (1, classes))]), reference, macs)
