"""Transformer layers on the accelerator: strided views for Reshape and Transpose, passes for the
vector kernels (`codegen.kernels`), GEMMs of two activations batched over heads, transposes
through the array, and the ONNX lowering of the operators of an encoder layer.

Tensors are 2-D int8 matrices in external memory (a `TensorSpec` whose m rows are `pixel_bytes`
apart). An ONNX tensor is a strided view over one (`SView`): every logical dimension has a stride
of (storage rows, storage columns), so Reshape and Transpose only change strides and never move
data; an operand is read through DMA addressing (a LOAD's address and stride per row group).

- Q.K^T: the rows of K (features contiguous) are what PRELOAD needs: the head's K rows are read
  in place. P.V needs the rows of V^T: `TransposePass` makes V^T through the array (PRELOAD a
  tile of V, stream the identity, STORE the int32 rows unchanged).
- `MatMulPass`: out[g] = requant((A[g] - za) (B[g] - zb)) for every group (head). The zero points:
  sum (a - za)(b - zb) = sum a b - zb rowsum(a) - za colsum(b) + K za zb. colsum(b) rides along
  each MATMUL as one extra row of ones; rowsum(a) is a MATMUL with a tile of ones once per row
  block; both are added by VECTOR multiply-accumulates; K za zb is the STORE bias.
- The output of a batched MatMul is stored with the heads side by side in the columns
  ([M, heads * N]), so the Transpose + Reshape that merge the heads are free.
- `KernelPass`: an int8 -> int8 kernel over rows of one or two views, tiles of tokens in the
  accumulator (double buffered), STORE through the requantizer.

Constraints (checked when a pass is emitted, `CompileError`): a square array with a vector unit,
feature counts (head size, sequence length, hidden size) multiples of array.cols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from systolab.errors import CompileError
from systolab.isa import VECTOR_OPS

from .conv import TensorSpec, accop_reference
from .kernels import (VectorKernel, add_kernel, emit_ir, erf_kernel, gelu_kernel, kernel_reference, layernorm_kernel,
                      mul_kernel, scale_kernel, softmax_kernel)
from .network import HostStep, Layer, QParams
from .quant import quantize_multiplier, requantize, wrap_int32

__all__ = ["SView", "RowsView", "KernelPass", "MatMulPass", "TransposePass", "TransformerOps",
           "SUPPORTED_TRANSFORMER", "layer_agreement"]

#: float operators of the QDQ format this module lowers (besides the GEMMs with constant weights)
SUPPORTED_TRANSFORMER = ("Transpose", "Softmax", "LayerNormalization", "Gelu", "Erf", "Mul", "Div")

Pair = tuple[int, int]       # (storage rows, storage columns)


def _add(a: Pair, b: Pair, k: int = 1) -> Pair:
    return (a[0] + k * b[0], a[1] + k * b[1])


# -- views ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SView:
    """An ONNX tensor as a strided view of a storage matrix `spec` (m rows, c columns)."""

    spec: TensorSpec
    shape: tuple[int, ...]
    strides: tuple[Pair, ...]
    offset: Pair = (0, 0)

    @classmethod
    def plain(cls, spec: TensorSpec, shape) -> "SView":
        shape = tuple(int(d) for d in shape)
        if int(np.prod(shape[:-1])) != spec.m or shape[-1] != spec.c:
            raise ValueError(f"shape {shape} is not the {spec.m} x {spec.c} storage")
        strides, rows = [], 1
        for i in range(len(shape) - 1, -1, -1):
            if i == len(shape) - 1:
                strides.append((0, 1))
            else:
                strides.append((rows, 0))
                rows *= shape[i]
        return cls(spec, shape, tuple(reversed(strides)))

    def is_plain(self) -> bool:
        try:
            return self == SView.plain(self.spec, self.shape)
        except ValueError:
            return False

    def transpose(self, perm) -> "SView":
        return SView(self.spec, tuple(self.shape[p] for p in perm), tuple(self.strides[p] for p in perm), self.offset)

    def reshape(self, shape) -> "SView | None":
        """The same elements in row-major order of `shape`, or None when strides cannot express it."""
        dims = [(d, s) for d, s in zip(self.shape, self.strides) if d != 1]
        new = [int(d) for d in shape]
        out: list[Pair] = []
        i = 0
        for d in new:
            if d == 1:
                out.append((0, 0))
                continue
            if i >= len(dims):
                return None
            size, st = dims[i]
            if size == d:
                out.append(st)
                i += 1
            elif size % d == 0:             # split a dimension
                inner = size // d
                out.append((st[0] * inner, st[1] * inner))
                dims[i] = (inner, st)
            else:                           # merge dimensions
                total, j = size, i
                while total < d and j + 1 < len(dims):
                    nsize, nst = dims[j + 1]
                    if dims[j][1] != (nst[0] * nsize, nst[1] * nsize):
                        return None
                    total *= nsize
                    j += 1
                if total != d:
                    return None
                out.append(dims[j][1])
                i = j + 1
        if i != len(dims):
            return None
        return SView(self.spec, tuple(new), tuple(out), self.offset)

    def rows(self, *, merge: bool = False) -> "RowsView | None":
        """The view as (groups, rows, features) with the features contiguous, or None. With
        `merge`, groups that follow one another in the storage become one run of rows."""
        dims = [(d, s) for d, s in zip(self.shape, self.strides) if d != 1]
        if not dims or dims[-1][1] != (0, 1):
            return None
        feat = dims[-1][0]
        lead = dims[:-1]
        while len(lead) > 2 or (merge and len(lead) == 2 and lead[0][1] == (lead[1][1][0] * lead[1][0],
                                                                          lead[1][1][1] * lead[1][0])):
            (d0, s0), (d1, s1) = lead[0], lead[1]
            if s0 != (s1[0] * d1, s1[1] * d1):
                return None
            lead = [(d0 * d1, s1)] + lead[2:]
        lead = [(1, (0, 0))] * (2 - len(lead)) + lead
        (g, gs), (r, rs) = lead
        return RowsView(self.spec, g, gs, r, rs, feat, self.offset)

    def to_storage(self, value: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """An ONNX value of this view written into a storage matrix (m x c)."""
        out = np.zeros((self.spec.m, self.spec.c), value.dtype) if base is None else base
        idx = np.indices(self.shape).reshape(len(self.shape), -1)
        r = self.offset[0] + sum(idx[i] * s[0] for i, s in enumerate(self.strides))
        c = self.offset[1] + sum(idx[i] * s[1] for i, s in enumerate(self.strides))
        out[r, c] = np.asarray(value).reshape(-1)
        return out


@dataclass(frozen=True)
class RowsView:
    """Rows (groups x rows) of `features` contiguous int8 values in a storage matrix."""

    spec: TensorSpec
    groups: int
    g_stride: Pair
    rows: int
    r_stride: Pair
    features: int
    offset: Pair = (0, 0)

    def at(self, g: int, i: int) -> Pair:
        return _add(_add(self.offset, self.g_stride, g), self.r_stride, i)

    def addr(self, region, g: int, i: int, col: int = 0) -> int:
        r, c = self.at(g, i)
        return region.addr + r * region.row_stride + c + col

    def stride(self, region) -> int:
        return self.r_stride[0] * region.row_stride + self.r_stride[1]

    def gather(self, storage: np.ndarray) -> np.ndarray:
        """(groups * rows, features) from the storage matrix."""
        s = storage.reshape(self.spec.m, self.spec.c)
        out = np.empty((self.groups * self.rows, self.features), s.dtype)
        for g in range(self.groups):
            for i in range(self.rows):
                r, c = self.at(g, i)
                out[g * self.rows + i] = s[r, c:c + self.features]
        return out

    def scatter(self, storage: np.ndarray, value: np.ndarray) -> None:
        s = storage.reshape(self.spec.m, self.spec.c)
        for g in range(self.groups):
            for i in range(self.rows):
                r, c = self.at(g, i)
                s[r, c:c + self.features] = value[g * self.rows + i]


def _check_square(cfg, name: str, *features: int) -> None:
    if cfg.rows != cfg.cols:
        raise CompileError(f"{name}: transformer passes need a square array, not {cfg.rows}x{cfg.cols}")
    for f in features:
        if f % cfg.cols:
            raise CompileError(f"{name}: {f} features are not a multiple of array.cols ({cfg.cols})")


def _params_rows(cfg, bias, mult, shift, zp) -> np.ndarray:
    """STORE parameter blocks (4 rows of cols int32 per column chunk) for per-feature vectors."""
    C = cfg.cols
    H = len(bias)
    nc = -(-H // C)
    out = np.zeros((nc, 4, C), np.int64)
    for q, v in enumerate((bias, mult, shift, zp)):
        v = np.zeros(nc * C, np.int64) + np.pad(np.asarray(v, np.int64), (0, nc * C - H))
        out[:, q, :] = v.reshape(nc, C)
    return out.reshape(-1, C).astype(np.int32)


# -- passes ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class KernelPass:
    """A `VectorKernel` over the rows of `ins` (views), written to `out` (a view)."""

    name: str
    kernel: VectorKernel
    ins: tuple[RowsView, ...]
    view: RowsView
    macs: int = 0
    round_even: bool = True
    kind = "vector"

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """The tensors the pass reads."""
        return tuple(v.spec for v in self.ins)

    @property
    def out(self) -> TensorSpec:
        return self.view.spec

    def reference(self, values: dict) -> np.ndarray:
        xs = [v.gather(values[v.spec.name]) for v in self.ins]
        # integer sums and maxima do not depend on how the features are cut into rows, nor the
        # tokens into tiles: any width gives the simulator's values (the compiled one by default)
        cols = self.kernel.info.get("cols", self.kernel.H)
        y = kernel_reference(self.kernel, xs, cols, self.kernel.info.get("t"))
        out = np.array(values.get(self.out.name, np.zeros(self.out.shape, np.int8)), np.int8)
        self.view.scatter(out, y)
        return out.reshape(self.out.shape)

    def _dense(self, cfg, regions=None) -> bool:
        """Every view is one run of whole rows of its storage (rows r_stride apart, features = the
        storage width, padded rows none): the tile's rows are one LOAD / STORE each."""
        for v in self.ins + (self.view,):
            if v.groups != 1 or v.r_stride != (1, 0) or v.offset[1] != 0 or v.features != v.spec.c or \
                    v.spec.c % max(cfg.rows, cfg.cols):
                return False
        return True

    def _shape(self, cfg) -> tuple[int, int, int]:
        """(H per row as run, groups, rows per group): an elementwise kernel on dense views runs
        as one stream of array.cols-wide rows."""
        if self.kernel.elementwise and self._dense(cfg):
            return cfg.cols, 1, self.view.rows * (self.kernel.H // cfg.cols)
        return self.kernel.H, self.view.groups, self.view.rows

    def _tile(self, cfg, H: int, rows: int) -> int:
        probe = self.kernel.ir(cfg.cols, 1, H=H)
        fixed = {sp: sum(r for n, (s_, r) in probe.bufs.items() if s_ == sp and n in probe.persistent)
                 for sp in ("acc", "sp")}
        per = {sp: sum(r for n, (s_, r) in probe.bufs.items() if s_ == sp and n not in probe.persistent)
               for sp in ("acc", "sp")}
        t = min((cfg.accumulator.depth - fixed["acc"]) // 2 // per["acc"],
                (cfg.scratchpad.depth - fixed["sp"]) // 2 // max(per["sp"], 1), rows,
                cfg.accumulator.depth // max(1, H // cfg.cols))
        if t < 1:
            raise CompileError(f"{self.name}: one token of {self.kernel.H} features does not fit the "
                               f"accumulator ({cfg.accumulator.depth} rows) of {cfg.source}")
        return t

    def alloc(self, b, cfg, prefix: str) -> dict:
        _check_square(cfg, self.name, self.kernel.H)
        if not cfg.has_vector:
            raise CompileError(f"{self.name}: {cfg.source} has no vector unit (add a `vector` section)")
        self.kernel.info["cols"] = cfg.cols
        H, _, rows = self._shape(cfg)
        self.kernel.info["t"] = self._tile(cfg, H, rows) if H == self.kernel.H else None
        p = b.alloc(f"{prefix}.params", (4, cfg.cols), "int32",
                    data=_params_rows(cfg, self.kernel.bias[:cfg.cols], self.kernel.mult[:cfg.cols],
                                      self.kernel.shift[:cfg.cols], self.kernel.zp[:cfg.cols]))
        for q in ("bias", "mult", "shift", "zp"):       # one parameter block serves every chunk
            v = np.asarray(getattr(self.kernel, q))
            if np.any(v != v[0]):
                raise CompileError(f"{self.name}: per-feature STORE {q} (kernels keep them in the vector unit)")
        lay = {"params": p.addr}
        rows = self.kernel.const_rows(cfg.cols)
        if rows:
            blob = np.concatenate(list(rows.values())).astype(np.int8)
            lay["consts"] = b.alloc(f"{prefix}.consts", blob.shape, "int8", data=blob).addr
            lay["const_rows"] = {k: len(v) for k, v in rows.items()}
        return lay

    def emit(self, b, cfg, lay: dict, regions: dict) -> dict:
        C = cfg.cols
        k = self.kernel
        H, groups, nrows = self._shape(cfg)
        nc = H // C
        flat = H != k.H
        t = self._tile(cfg, H, nrows)
        probe = k.ir(C, 1, H=H)
        base0: dict[str, int] = {}
        top = {"acc": 0, "sp": 0}
        for name in probe.bufs:                       # persistent buffers at the bottom, once
            if name in probe.persistent:
                space, r = probe.bufs[name]
                base0[name], top[space] = top[space], top[space] + r
        if "consts" in lay:
            n = sum(lay["const_rows"].values())
            b.emit("LOAD", dram_addr=lay["consts"], dram_stride=cfg.sp_row_bytes, rows=n, sp_addr=0)
            emit_ir(b, probe, base0, prologue=True)
        half = {sp: (getattr(cfg, "accumulator" if sp == "acc" else "scratchpad").depth - top[sp]) // 2
                for sp in ("acc", "sp")}
        out_reg = regions[self.out.name]
        in_regs = [regions[v.spec.name] for v in self.ins]
        dense = flat or self._dense(cfg)
        tile = count = 0

        def runs(view, reg, g, i0, tt):
            """(dram_addr, stride, rows) covering tokens i0 .. i0+tt-1 as token-major rows."""
            if flat:
                return [(reg.addr + i0 * C, C, tt)]
            if dense:
                return [(view.addr(reg, g, i0), C, tt * nc)]
            return [(view.addr(reg, g, i0 + i), C, nc) for i in range(tt)]

        for g in range(groups):
            for i0 in range(0, nrows, t):
                tt = min(t, nrows - i0)
                ir = k.ir(C, tt, H=H)
                base = dict(base0)
                cur = {sp: top[sp] + (tile % 2) * half[sp] for sp in ("acc", "sp")}
                for name, (space, r) in ir.bufs.items():
                    if name not in ir.persistent:
                        base[name], cur[space] = cur[space], cur[space] + r
                for j, (v, reg) in enumerate(zip(self.ins, in_regs)):
                    sp = base[f"IN{j}"]
                    for addr, stride, n in runs(v, reg, g, i0, tt):
                        b.emit("LOAD", dram_addr=addr, dram_stride=stride, rows=n, sp_addr=sp)
                        sp += n
                emit_ir(b, ir, base)
                count += len(ir.ops)
                acc = base[k.out]
                for addr, stride, n in runs(self.view, out_reg, g, i0, tt):
                    b.emit("STORE", dram_addr=addr, dram_stride=stride, rows=n, acc_addr=acc,
                           param_addr=lay["params"], round_even=1)
                    acc += n
                tile += 1
        return {"kind": "vector", "tokens_per_tile": t, "tiles": tile, "vector_insns": count, "flat": flat}


@dataclass(eq=False)
class MatMulPass:
    """Batched GEMM of two activations: out[g] = requant((A[g] - za) @ (B[g] - zb)) with B given by
    the rows of B^T (`bt`: groups x N rows of K features)."""

    name: str
    a: RowsView
    bt: RowsView
    view: RowsView
    za: int
    zb: int
    mult: int
    shift: int
    zy: int
    macs: int = 0
    round_even: bool = True
    kind = "matmul"

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """The tensors the pass reads."""
        return (self.a.spec, self.bt.spec)

    @property
    def out(self) -> TensorSpec:
        return self.view.spec

    @property
    def K(self) -> int:
        return self.a.features

    def reference(self, values: dict) -> np.ndarray:
        A = self.a.gather(values[self.a.spec.name]).astype(np.int64).reshape(self.a.groups, self.a.rows, -1)
        Bt = self.bt.gather(values[self.bt.spec.name]).astype(np.int64).reshape(self.bt.groups, self.bt.rows, -1)
        acc = np.einsum("gmk,gnk->gmn", A - self.za, Bt - self.zb).reshape(-1, self.bt.rows)
        N = self.bt.rows
        y = requantize(wrap_int32(acc), np.zeros(N), np.full(N, self.mult), np.full(N, self.shift),
                       np.full(N, self.zy), False, True)
        out = np.array(values.get(self.out.name, np.zeros(self.out.shape, np.int8)), np.int8)
        self.view.scatter(out, y)
        return out.reshape(self.out.shape)

    def alloc(self, b, cfg, prefix: str) -> dict:
        _check_square(cfg, self.name, self.K, self.bt.rows)
        C = cfg.cols
        K = self.K
        p = b.alloc(f"{prefix}.params", (4, C), "int32",
                    data=_params_rows(cfg, np.full(C, K * self.za * self.zb), np.full(C, self.mult),
                                      np.full(C, self.shift), np.full(C, self.zy)))
        ones = b.alloc(f"{prefix}.ones", (C, cfg.rows), "int8", data=np.ones((C, cfg.rows), np.int8))
        return {"params": p.addr, "ones": ones.addr}

    def emit(self, b, cfg, lay: dict, regions: dict) -> dict:
        R, C = cfg.rows, cfg.cols
        kc = self.K // R
        nt_count = self.bt.rows // C
        M = self.a.rows
        za, zb = self.za, self.zb
        extra = 1 if za else 0
        acc_depth, sp_depth = cfg.accumulator.depth, cfg.scratchpad.depth
        w_slots = 4
        mt = min(M, (acc_depth - 8) // (4 + (2 if zb else 0)) - extra,
                 (sp_depth - (w_slots + 1) * C) // (2 * kc) - extra)
        if mt < 1:
            raise CompileError(f"{self.name}: a tile of {self.K} features does not fit the buffers of {cfg.source}")
        a_slot = kc * (mt + extra)
        w_base = 2 * a_slot
        ones_tile = w_base + w_slots * C
        acc_slot = mt + extra
        rs_base = 4 * acc_slot
        a_reg, b_reg, o_reg = regions[self.a.spec.name], regions[self.bt.spec.name], regions[self.out.name]
        counters = {"w": 0, "acc": 0, "blk": 0}
        if zb:
            b.emit("LOAD", dram_addr=lay["ones"], dram_stride=cfg.sp_row_bytes, rows=C, sp_addr=ones_tile)
        for g in range(self.a.groups):
            for m0 in range(0, M, mt):
                rows = min(mt, M - m0)
                blk = counters["blk"] % 2
                counters["blk"] += 1
                a_base = blk * a_slot
                for k in range(kc):
                    sa = a_base + k * (rows + extra)
                    b.emit("LOAD", dram_addr=self.a.addr(a_reg, g, m0, k * R), dram_stride=self.a.stride(a_reg),
                           rows=rows, sp_addr=sa)
                    if extra:
                        b.emit("LOAD", dram_addr=lay["ones"], dram_stride=0, rows=1, sp_addr=sa + rows)
                rs = rs_base + blk * mt
                if zb:
                    counters["w"] += 1
                    wbuf = counters["w"] % 2
                    b.emit("PRELOAD", sp_addr=ones_tile, wbuf=wbuf)
                    for k in range(kc):
                        b.emit("MATMUL", sp_addr=a_base + k * (rows + extra), acc_addr=rs, rows=rows, wbuf=wbuf,
                               accumulate=int(k > 0))
                for nt in range(nt_count):
                    slot = (counters["acc"] % 4) * acc_slot
                    counters["acc"] += 1
                    for k in range(kc):
                        w_addr = w_base + (counters["w"] % w_slots) * C
                        counters["w"] += 1
                        wbuf = counters["w"] % 2
                        b.emit("LOAD", dram_addr=self.bt.addr(b_reg, g, nt * C, k * R),
                               dram_stride=self.bt.stride(b_reg), rows=C, sp_addr=w_addr)
                        b.emit("PRELOAD", sp_addr=w_addr, wbuf=wbuf)
                        b.emit("MATMUL", sp_addr=a_base + k * (rows + extra), acc_addr=slot, rows=rows + extra,
                               wbuf=wbuf, accumulate=int(k > 0))
                    if za:      # - za * colsum(b): the ones row's result, broadcast
                        b.emit("VECTOR", func=VECTOR_OPS["MUL"], dst=slot, src1=slot + rows, src1_stride=0,
                               src2=(-za) & 0xFFFFFFFF, src2_imm=1, rows=rows, accumulate=1)
                    if zb:      # - zb * rowsum(a)
                        b.emit("VECTOR", func=VECTOR_OPS["MUL"], dst=slot, src1=rs, src1_stride=1,
                               src2=(-zb) & 0xFFFFFFFF, src2_imm=1, rows=rows, accumulate=1)
                    b.emit("STORE", dram_addr=self.view.addr(o_reg, g, m0, nt * C), dram_stride=self.view.stride(o_reg),
                           rows=rows, acc_addr=slot, param_addr=lay["params"], round_even=1)
        return {"kind": "matmul", "mt": mt}


@dataclass(eq=False)
class TransposePass:
    """out rows (g, d) = column d of the rows of `src` (g, s): a transpose through the array."""

    name: str
    src: RowsView
    view: RowsView                 # groups x features rows of src.rows values
    macs: int = 0
    round_even: bool = True
    kind = "transpose"

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """The tensors the pass reads."""
        return (self.src.spec,)

    @property
    def out(self) -> TensorSpec:
        return self.view.spec

    def reference(self, values: dict) -> np.ndarray:
        x = self.src.gather(values[self.src.spec.name]).reshape(self.src.groups, self.src.rows, -1)
        y = x.transpose(0, 2, 1).reshape(-1, self.src.rows)
        out = np.array(values.get(self.out.name, np.zeros(self.out.shape, np.int8)), np.int8)
        self.view.scatter(out, y)
        return out.reshape(self.out.shape)

    def alloc(self, b, cfg, prefix: str) -> dict:
        _check_square(cfg, self.name, self.src.rows, self.src.features)
        C = cfg.cols
        p = b.alloc(f"{prefix}.params", (4, C), "int32",
                    data=_params_rows(cfg, np.zeros(C), np.ones(C), np.zeros(C), np.zeros(C)))
        eye = b.alloc(f"{prefix}.eye", (cfg.rows, cfg.rows), "int8", data=np.eye(cfg.rows, dtype=np.int8))
        return {"params": p.addr, "eye": eye.addr}

    def emit(self, b, cfg, lay: dict, regions: dict) -> dict:
        R, C = cfg.rows, cfg.cols
        src, out = regions[self.src.spec.name], regions[self.out.name]
        b.emit("LOAD", dram_addr=lay["eye"], dram_stride=cfg.sp_row_bytes, rows=R, sp_addr=0)
        n = 0
        for g in range(self.src.groups):
            for s0 in range(0, self.src.rows, C):
                for d0 in range(0, self.src.features, R):
                    w = R + (n % 4) * C
                    acc = (n % 4) * R
                    b.emit("LOAD", dram_addr=self.src.addr(src, g, s0, d0), dram_stride=self.src.stride(src),
                           rows=C, sp_addr=w)
                    b.emit("PRELOAD", sp_addr=w, wbuf=n % 2)
                    b.emit("MATMUL", sp_addr=0, acc_addr=acc, rows=R, wbuf=n % 2, accumulate=0)
                    b.emit("STORE", dram_addr=self.view.addr(out, g, d0, s0), dram_stride=self.view.stride(out),
                           rows=R, acc_addr=acc, param_addr=lay["params"], round_even=1)
                    n += 1
        return {"kind": "transpose", "tiles": n}


# -- ONNX lowering (a mixin of codegen.onnx_import's importer) --------------------------------------------
class TransformerOps:
    """The transformer operators of the QDQ importer. Uses the importer's `fail`, `attrs`, `const`,
    `weight`, `net`, `qt`, `new_qt`, `spec_name`, `_name`; views of tensors in `self.xviews`."""

    def xview(self, qt, node=None) -> SView:
        """The strided view of a quantized activation: plain unless a Reshape/Transpose made it;
        an NCHW map of a convolution is its NHWC storage seen in NCHW order."""
        v = getattr(qt, "xview", None)
        if v is not None:
            return v
        spec, shape = qt.spec, tuple(qt.shape)
        if len(shape) == 4 and (spec.n, spec.c, spec.h, spec.w) == shape:
            return SView(spec, shape, ((spec.h * spec.w, 0), (0, 1), (spec.w, 0), (1, 0)))
        try:
            return SView.plain(spec, shape)
        except ValueError as e:
            self.fail(node, str(e), "tensors stored as rows of their last axis")

    def _emit_xf(self, node, pass_, inputs: list, out: str, q: QParams, view: SView, macs: int = 0,
                 note: str = "") -> None:
        name = self._name(node)
        self.net.steps.append(Layer(name, node.op_type, [pass_], inputs, pass_.out.name, macs, note))
        self._register(out, view, q)

    def _register(self, out: str, view: SView, q: QParams) -> None:
        fresh = view.spec.name not in self.net.tensors
        qt = self.new_qt(out, view.spec, q, tuple(view.shape))
        qt.xview = view
        if fresh and not view.is_plain():       # ONNX Runtime's value of it, as stored
            self.net.to_storage.setdefault(view.spec.name, view.to_storage)

    def _rows_of(self, node, v: SView, what: str) -> RowsView:
        r = v.rows()
        if r is None:
            self.fail(node, f"{what} with shape {list(v.shape)} is not a set of contiguous rows",
                      "strided views of Reshape/Transpose whose last axis is contiguous")
        return r

    def _new_matrix(self, out: str, rows: int, cols: int) -> TensorSpec:
        return TensorSpec(self.spec_name(out), 1, 1, rows, cols)

    def xf_lower(self, node, op: str, ins: list, yq: QParams, *, relu: bool, out: str) -> bool:
        """Lower `node` if it is one of the transformer forms; False to leave it to the CNN lowering."""
        if relu and op in ("Softmax", "LayerNormalization", "Gelu", "Transpose", "Mul", "Div"):
            self.fail(node, "a ReLU after it", "no ReLU after transformer operators")
        x = ins[0] if ins else None
        if op == "Transpose":
            if x is None:
                self.fail(node, "an input that is not a quantized activation", "Transpose of activations")
            self.same_q(node, x, yq)
            perm = self.attrs(node).get("perm", list(range(len(x.shape)))[::-1])
            self._register(out, self.xview(x, node).transpose(perm), yq)
            return True
        if op == "Reshape" and x is not None:
            target = self.const(node.input[1])
            if target is None:
                self.fail(node, "a shape that is not a constant", "a constant shape")
            t = [int(d) for d in target.reshape(-1)]
            t = [x.shape[i] if d == 0 and i < len(x.shape) else d for i, d in enumerate(t)]
            if t.count(-1) == 1:
                t[t.index(-1)] = int(np.prod(x.shape)) // int(-np.prod(t))
            if len(x.shape) == 4:
                return False           # an NCHW map: the CNN lowering (a flatten)
            v = self.xview(x, node)
            if len(t) == 2 and v.is_plain() and t[0] == x.shape[0]:
                return False           # a flatten: the CNN lowering
            nv = v.reshape(t)
            if nv is None:
                self.fail(node, f"shape {t} from a strided view {list(x.shape)}", "reshapes strides can express")
            self.same_q(node, x, yq)
            self._register(out, nv, yq)
            return True
        if op == "MatMul" and len(ins) > 1 and ins[1] is not None:
            self.batched_matmul(node, ins[0], ins[1], yq, out)
            return True
        if op in ("MatMul", "Gemm") and x is not None:
            v = getattr(x, "xview", None)
            if v is not None and not v.is_plain():
                self.fail(node, f"input A is a strided view of shape {list(v.shape)}", "contiguous A")
            return False
        if op == "Softmax":
            a = self.attrs(node)
            axis = a.get("axis", -1)
            if axis not in (-1, len(x.shape) - 1):
                self.fail(node, f"axis={axis}", "Softmax along the last axis")
            self.vector(node, x, [], yq, out, lambda H, qs: softmax_kernel(H, qs[0], yq, name=self._name(node)))
            return True
        if op == "LayerNormalization":
            self.layernorm(node, x, yq, out)
            return True
        if op == "Gelu":
            self.vector(node, x, [], yq, out, lambda H, qs: gelu_kernel(H, qs[0], yq, name=self._name(node)),
                        note=self.attrs(node).get("approximate", b"none"))
            return True
        if op == "Erf":             # erf(x / c): the Div by a constant before it is fused (GELU's pattern)
            src = self.fl.get(node.input[0])
            if x is None and src is not None and src[0] == "pending" and src[1].op_type == "Div":
                div = src[1]
                x = self.act(div, div.input[0])
                c = self._scalar_const(div, div.input[1], "Div")
                self.vector(node, x, [], yq, out, lambda H, qs: erf_kernel(H, qs[0], c, yq, name=self._name(node)))
                return True
            if x is None:
                self.fail(node, "an input that is not a quantized activation", "Erf of an activation or of one divided by a constant")
            self.vector(node, x, [], yq, out, lambda H, qs: erf_kernel(H, qs[0], 1.0, yq, name=self._name(node)))
            return True
        if op in ("Mul", "Div") or (op == "Add" and all(t is None or len(t.shape) != 4 for t in ins[:2])):
            return self.elementwise(node, op, ins, yq, out)
        return False

    def _feeds(self, out: str, op_type: str) -> bool:
        """The quantized tensor `out` is read (through its DequantizeLinear) by an `op_type` node."""
        for node in self.consumers.get(out, []):
            if node is not None and node.op_type == "DequantizeLinear":
                if any(n is not None and n.op_type == op_type for n in self.consumers.get(node.output[0], [])):
                    return True
        return False

    def same_q(self, node, x, yq) -> None:
        if (x.q.scale, x.q.zp) != (yq.scale, yq.zp):
            self.fail(node, "requantizes its input", "Reshape/Transpose with the quantization of their input")

    def vector(self, node, x, others: list, yq: QParams, out: str, make, note="") -> None:
        if x is None:
            self.fail(node, "an input that is not a quantized activation", "quantized activations")
        xs = [x] + others
        vs = [self.xview(t, node) for t in xs]
        if any(v.shape != vs[0].shape for v in vs):
            self.fail(node, f"inputs of shapes {[list(v.shape) for v in vs]}", "inputs of the same shape (no broadcasting)")
        rows = [self._rows_of(node, v, "the input") for v in vs]
        H = rows[0].features
        kernel = make(H, [t.q for t in xs])
        spec = self._new_matrix(out, rows[0].groups * rows[0].rows, H)
        view = SView.plain(spec, (rows[0].groups * rows[0].rows, H)).reshape(vs[0].shape) or \
            SView.plain(spec, (rows[0].groups * rows[0].rows, H))
        merged = [v.rows(merge=True) for v in vs + [view]]
        if len({(r.groups, r.rows) for r in merged}) == 1:     # one run of rows wherever possible
            rows, out_rows = merged[:-1], merged[-1]
        else:
            out_rows = view.rows()
        pass_ = KernelPass(self._name(node), kernel, tuple(rows), out_rows)
        self._emit_xf(node, pass_, [t.spec.name for t in xs], out, yq, view,
                      note=f"vector {kernel.name}" + (f" ({note.decode() if isinstance(note, bytes) else note})" if note else ""))

    def layernorm(self, node, x, yq, out: str) -> None:
        a = self.attrs(node)
        if a.get("axis", -1) not in (-1, len(x.shape) - 1):
            self.fail(node, f"axis={a.get('axis')}", "LayerNormalization over the last axis")
        eps = float(a.get("epsilon", 1e-5))
        g = self.weight(node, node.input[1], "scale")
        H = x.shape[-1]
        gv = np.asarray(g.values)
        gs = np.asarray(g.scale, np.float64).reshape(-1)
        gz = np.asarray(g.zero_point, np.int64).reshape(-1)
        if gv.dtype in (np.int8, np.uint8) and gs.size == 1:
            gq, gscale = gv.astype(np.int64).reshape(-1) - (gz[0] if gz.size else 0), float(gs[0])
        else:                       # a float or per-channel gamma: int8 per tensor here
            real = (gv.astype(np.float64).reshape(-1) - (gz if gz.size == gv.size else 0)) * gs
            gscale = float(np.abs(real).max() / 127) or 1.0
            gq = np.rint(real / gscale)
        if np.abs(gq).max() > 127:
            self.fail(node, "gamma minus its zero point does not fit int8", "symmetric int8 gamma")
        beta = np.zeros(H)
        if len(node.input) > 2 and node.input[2]:
            bw = self.weight(node, node.input[2], "bias")
            bz = np.asarray(bw.zero_point, np.float64).reshape(-1)
            beta = (np.asarray(bw.values, np.float64).reshape(-1) - (bz if bz.size else 0)) * \
                np.asarray(bw.scale, np.float64).reshape(-1)
        self.vector(node, x, [], yq, out,
                    lambda H, qs: layernorm_kernel(H, qs[0], gq, gscale, beta, eps, yq, name=self._name(node)))

    def elementwise(self, node, op: str, ins: list, yq: QParams, out: str) -> bool:
        x, y = (ins + [None, None])[:2]
        if x is not None and y is not None:
            if op == "Div":
                self.fail(node, "a division of two activations", "Div by a constant")
            make = add_kernel if op == "Add" else mul_kernel
            self.vector(node, x, [y], yq, out, lambda H, qs: make(H, qs[0], qs[1], yq, name=self._name(node)))
            return True
        if x is None:
            if op == "Div":
                self.fail(node, "a constant divided by an activation", "Div by a constant")
            x, cname = y, node.input[0]
        else:
            cname = node.input[1]
        v = self._scalar_const(node, cname, op)
        if op == "Div":
            v = 1.0 / v
        if op == "Add":
            make = lambda H, qs: scale_kernel(H, qs[0], 1.0, yq, offset=v, name=self._name(node))  # noqa: E731
        else:
            make = lambda H, qs: scale_kernel(H, qs[0], v, yq, name=self._name(node))  # noqa: E731
        self.vector(node, x, [], yq, out, make)
        return True

    def _scalar_const(self, node, cname: str, op: str) -> float:
        """A constant scalar operand: an initializer or the DequantizeLinear of one."""
        c = self.const(cname)
        if c is None:
            w = self.fl.get(cname)
            if w is not None and w[0] == "w":
                ww = w[1]
                c = (np.asarray(ww.values, np.float64) - np.asarray(ww.zero_point, np.float64)) * \
                    np.asarray(ww.scale, np.float64)
        if c is None or np.asarray(c).size != 1:
            self.fail(node, f"operand {cname!r} is not a constant scalar", f"{op} by a constant scalar")
        return float(np.asarray(c, np.float64).reshape(-1)[0])

    def batched_matmul(self, node, a, bq, yq: QParams, out: str) -> None:
        va = self.xview(a, node)
        vb = self.xview(bq, node)
        if len(va.shape) != len(vb.shape) or len(va.shape) < 2 or va.shape[:-2] != vb.shape[:-2]:
            self.fail(node, f"inputs of shapes {list(va.shape)} and {list(vb.shape)}", "batched MatMul of equal batch dims")
        batch = va.shape[:-2]
        G = int(np.prod(batch)) if batch else 1
        M, K = va.shape[-2:]
        K2, N = vb.shape[-2:]
        if K != K2:
            self.fail(node, f"inner sizes {K} and {K2}", "matching shapes")
        ra = self._rows_of(node, va.reshape((G, M, K)) or va, "input A")
        vb3 = vb.reshape((G, K, N))
        if vb3 is None:
            self.fail(node, f"input B with shape {list(vb.shape)}", "strided B")
        bt_view = vb3.transpose((0, 2, 1))          # (G, N, K): rows of B^T
        rb = bt_view.rows()
        if rb is None or rb.features != K:          # B^T's rows are not contiguous: transpose through the array
            src = self._rows_of(node, vb3, "input B")
            spec = TensorSpec(self.spec_name(f"{out}:Bt"), 1, 1, G * N, K)
            tview = SView.plain(spec, (G, N, K))
            tp = TransposePass(f"{self._name(node)}:transpose", src, tview.rows())
            self.net.add_tensor(spec, bq.q)
            self.net.steps.append(Layer(tp.name, "Transpose", [tp], [bq.spec.name], spec.name, 0,
                                        "transpose through the array"))
            rb = tview.rows()
        mult, shift = quantize_multiplier(a.q.scale * bq.q.scale / yq.scale)
        if G > 1 and self._feeds(out, "Transpose"):
            # heads side by side in the columns: the Transpose + Reshape that merge them are free
            spec = self._new_matrix(out, M, G * N)
            ov = SView(spec, (G, M, N), ((0, N), (1, 0), (0, 1)))
        else:                       # heads one after the other: dense rows for the vector kernels
            spec = self._new_matrix(out, G * M, N)
            ov = SView.plain(spec, (G, M, N))
        view = ov.reshape(tuple(batch) + (M, N)) if len(batch) > 1 else ov
        macs = G * M * K * N
        mp = MatMulPass(self._name(node), ra, rb, ov.rows(), a.q.zp, bq.q.zp, mult, shift, yq.zp, macs)
        self._emit_xf(node, mp, [a.spec.name, bq.spec.name], out, yq, view if batch else
                      SView.plain(spec, (M, N)) if G == 1 else view, macs=macs,
                      note=f"{G} x {M}x{K}x{N} activations")


# -- agreement ---------------------------------------------------------------------------------------------
def layer_agreement(net, theirs: dict[str, np.ndarray]) -> dict[str, int]:
    """Per layer: the max |ours - ONNX Runtime| in output LSB when the layer reads ONNX Runtime's
    values of its inputs (`theirs`: int8 values by tensor name, `onnx_import.ort_tensors`), so
    each operator is judged alone, without the drift of the layers before it."""
    values = dict(theirs)
    out = {}
    for s in net.steps:
        if isinstance(s, HostStep):
            continue
        for op in s.ops:
            y = op.reference(values) if hasattr(op, "reference") else accop_reference(op, values)
            if op.out.name not in theirs:
                values[op.out.name] = y
        if s.output in theirs:
            d = np.abs(y.astype(np.int16) - theirs[s.output].astype(np.int16))
            out[s.name] = int(d.max(initial=0))
    return out
