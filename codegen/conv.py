"""Convolutions on the accelerator: one operation that covers conv2d, fully connected layers,
residual adds, average and max pooling.

An `AccOp` computes, for every output pixel p and output channel o,

    y[p, o] = requant( sum over terms t, taps (kh, kw), input channels i of
                       x_t[pixel_t(p, kh, kw), i] * W_t[o, i, kh, kw]  + bias[o] )

where each term t reads its own int8 NHWC tensor `x_t` through its own kernel, stride, padding and
dilation (all terms land on the same output grid), and `requant` is the STORE path
(`codegen.quant.requantize`: per-output-channel bias, multiplier, shift, zero point, optional
ReLU, int8 saturation). A convolution is one term; a residual add is two 1x1 terms with diagonal
weights; global average pooling is one term whose kernel covers the whole image; a pairwise max is
two passes (see `codegen.network`).

Lowering to the ISA (the GEMM of `codegen.gemm` with a gathered A operand):

- M = output pixels (n, oy, ox), N = output channels, K = a list of *chunks*: (term, kh, kw, c0),
  each `array.rows` input channels of one tap. The A rows of a chunk are not stored anywhere as a
  matrix (no im2col in memory): for each output image row they are one 2-D strided LOAD straight
  from the NHWC tensor (`dram_stride` = stride_w x pixel bytes). Taps that fall into the zero
  padding read a constant row with `dram_stride` 0 (a row of the pad value, the input's zero
  point, or -128 for max pooling). Runs that happen to be contiguous merge into one LOAD.
- Activations live in external memory as dense NHWC rows of `pixel_bytes(C)` bytes (C rounded up
  to max(array.rows, array.cols)); the padding lanes are never read with a non-zero weight.
- Weight tiles (`array.cols` x `array.rows`, already in the PRELOAD layout) are stored once per
  distinct tile; tiles that are all zero are skipped (a diagonal weight costs one tile per output
  column tile, not one per chunk).
- The schedule is `codegen.gemm.emit_tiles`, the one `schedule_gemm` uses (tiles of `mt` output
  pixels, resident or streamed A chunks, double-buffered weights, four accumulator slots), with
  the same tilings (`candidate_tilings`) ranked by the performance model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple, dataclass, field

import numpy as np

from systolab.cache import Memo, Recent, source_digest
from systolab.errors import CompileError
from systolab.perf import PerfModel

from .builder import ProgramBuilder, round_up
from .estimate import (EXACT, EXACT_INSNS, KEEP, PERIODS, SAMPLE, SCREEN, SCREEN_EXACT, SCREEN_EXACT_INSNS,
                       SCREEN_PERIODS, Estimate, estimate_tiled)
from .gemm import GemmTiling, candidate_tilings, emit_tiles, loop_bodies
from .quant import quantize_multiplier, requantize, wrap_int32

__all__ = ["TensorSpec", "Term", "AccOp", "OpLayout", "pixel_bytes", "padded_input",
           "requant_params", "accop_reference", "accop_rows", "alloc_accop", "emit_accop", "choose_accop_tiling",
           ]




def pixel_bytes(cfg, channels: int) -> int:
    """Bytes per pixel (one external-memory row) of an NHWC int8 tensor with `channels` channels:
    a LOAD reads `rows` lanes and a STORE writes `cols` lanes at any channel chunk."""
    return round_up(max(channels, 1), max(cfg.rows, cfg.cols))


@dataclass(frozen=True)
class TensorSpec:
    """An int8 NHWC activation tensor in external memory."""

    name: str
    n: int
    h: int
    w: int
    c: int

    @property
    def m(self) -> int:
        """Pixels (rows in external memory)."""
        return self.n * self.h * self.w

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.h, self.w, self.c)


@dataclass(frozen=True, eq=False)
class Term:
    """One convolution summed into an `AccOp`: `weight` is (out channels, src.c, KH, KW) int8."""

    src: TensorSpec
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)       # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    pad_value: int = 0                                    # int8 value of padded pixels

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[2], self.weight.shape[3]

    def out_hw(self) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        pt, pl, pb, pr = self.pads
        return ((self.src.h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
                (self.src.w + pl + pr - dw * (kw - 1) - 1) // sw + 1)


@dataclass(frozen=True, eq=False)
class AccOp:
    """One accelerator pass: a sum of convolutions, requantized per output channel."""

    name: str
    out: TensorSpec
    terms: tuple[Term, ...]
    bias: np.ndarray            # (C_out,) int32, added to the accumulator
    mult: np.ndarray            # (C_out,) int32
    shift: np.ndarray           # (C_out,) int32, 0..63
    zp: np.ndarray              # (C_out,) int32, output zero point (int8 domain)
    relu: bool = False
    macs: int = 0               # useful multiply-accumulates this pass stands for (metrics)
    info: dict = field(default_factory=dict)
    round_even: bool = False    # the STORE rounds halves to even (ONNX), else up
    fp32: bool = False          # the STORE's float32 rounding (ONNX Runtime's; mult a float32 significand)

    def __post_init__(self):
        oc = self.out.c
        check_store_params(self, oc)
        for t in self.terms:
            if t.weight.dtype != np.int8 or t.weight.ndim != 4 or t.weight.shape[:2] != (oc, t.src.c):
                raise ValueError(f"{self.name}: a term's weight must be int8 ({oc}, {t.src.c}, KH, KW), "
                                 f"not {t.weight.dtype} {t.weight.shape}")
            if t.out_hw() != (self.out.h, self.out.w) or t.src.n != self.out.n:
                raise ValueError(f"{self.name}: term on {t.src.name} gives a {t.out_hw()} grid, "
                                 f"the output is {(self.out.h, self.out.w)}")
        if not self.terms:
            raise ValueError(f"{self.name}: an AccOp needs at least one term")


# -- requantization parameters ---------------------------------------------------------------------
def check_store_params(op, channels: int) -> None:
    """A pass's STORE parameters (`op.bias`, `.mult`, `.shift`, `.zp`) are one value per output
    channel; a `ValueError` naming the pass otherwise (AccOp, VectorPass)."""
    for what in ("bias", "mult", "shift", "zp"):
        v = np.asarray(getattr(op, what))
        if v.shape != (channels,):
            raise ValueError(f"{op.name}: {what} must have shape ({channels},), not {v.shape}")


def requant_params(scales) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mult, shift) arrays for real `scales`."""
    ms = [quantize_multiplier(float(s)) for s in np.atleast_1d(scales)]
    return (np.array([m for m, _ in ms], dtype=np.int64).astype(np.int32),
            np.array([s for _, s in ms], dtype=np.int32))


# -- numpy reference --------------------------------------------------------------------------------
def padded_input(t: Term, x: np.ndarray, oh: int, ow: int, dtype) -> np.ndarray:
    """`x` (N, H, W, C) inside `t`'s padding, with enough on the far side for every tap of an
    `oh` x `ow` output (ceil-mode style windows included)."""
    (kh_, kw_), (sh, sw), (dh, dw) = t.kernel, t.stride, t.dilation
    pt, pl, pb, pr = t.pads
    n, h, w, c = x.shape
    hp = max(h + pt + pb, (oh - 1) * sh + (kh_ - 1) * dh + 1)
    wp = max(w + pl + pr, (ow - 1) * sw + (kw_ - 1) * dw + 1)
    xp = np.full((n, hp, wp, c), t.pad_value, dtype=dtype)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def _term_sum(t: Term, x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """sum over taps and channels of one term: (N, OH, OW, C_out) int64.

    The products run in float64 (BLAS, many times faster than numpy's integer matmul) and are
    exact: an int8 x int8 product is at most 2**14, so any realistic sum of them stays far below
    2**53."""
    (kh_, kw_), (sh, sw), (dh, dw) = t.kernel, t.stride, t.dilation
    n = x.shape[0]
    if t.weight.dtype != np.int8:
        raise ValueError(f"{t.src.name}: a term's weights must be int8, not {t.weight.dtype}")
    xp = padded_input(t, x, oh, ow, np.float64)
    acc = np.zeros((n, oh, ow, t.weight.shape[0]), dtype=np.float64)
    wt = t.weight.astype(np.float64)
    for i in range(kh_):
        for j in range(kw_):
            if not wt[:, :, i, j].any():
                continue
            patch = xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            acc += (np.ascontiguousarray(patch).reshape(-1, xp.shape[-1]) @ wt[:, :, i, j].T).reshape(acc.shape)
    return acc.astype(np.int64)


def accop_reference(op: AccOp, values: dict[str, np.ndarray]) -> np.ndarray:
    """What the accelerator computes for `op` given its input tensors (NHWC int8): NHWC int8."""
    o = op.out
    acc = np.zeros((o.n, o.h, o.w, o.c), dtype=np.int64)
    for t in op.terms:
        x = np.asarray(values[t.src.name])
        if x.shape != t.src.shape:
            raise ValueError(f"{op.name}: input {t.src.name} has shape {x.shape}, expected {t.src.shape}")
        acc += _term_sum(t, x, o.h, o.w)
    y = requantize(wrap_int32(acc.reshape(-1, o.c)), op.bias, op.mult, op.shift, op.zp, op.relu, op.round_even,
                   op.fp32)
    return y.reshape(o.shape)


# -- layout -------------------------------------------------------------------------------------------
@dataclass
class OpLayout:
    """Where an `AccOp`'s constants are and how its K chunks are read."""

    chunks: list[tuple[int, int, int, int]]     # (term, kh, kw, channel chunk)
    used: list[list[int]]                       # per output column tile: the chunks with non-zero weights
    tile: list[list[int]]                       # [column tile][chunk]: its weight tile in the blob, -1 if zero
    w_base: int                                 # address of the weight blob (distinct tiles, rows x cols int8)
    tile_bytes: int
    params_addr: int                            # 4 rows of cols int32 per column tile
    n_tiles: int
    digest: str                                 # of chunks, used and tile: a pass's geometry (`_geometry`)

    def w_addr(self, nt: int, kt: int) -> int:
        """Address of the weight tile of column tile `nt` and chunk `kt`."""
        return self.w_base + self.tile[nt][kt] * self.tile_bytes

    def shape(self, cfg, op: AccOp) -> tuple[int, int, int]:
        """The GEMM shape the tiling sees: (M, K, N) with K = chunks x rows."""
        return op.out.m, len(self.chunks) * cfg.rows, self.n_tiles * cfg.cols


def _chunk_tiles(cfg, op: AccOp):
    """Every (term, kh, kw, chunk) and its weight tiles: an array [chunk, column tile] of
    cols x rows int8 tiles."""
    R, C = cfg.rows, cfg.cols
    oc = op.out.c
    nt_count = -(-oc // C)
    keys, blocks = [], []
    for ti, t in enumerate(op.terms):
        ic = t.src.c
        kh_n, kw_n = t.kernel
        cc_n = -(-ic // R)
        w = np.zeros((nt_count * C, cc_n * R, kh_n, kw_n), dtype=np.int8)
        w[:oc, :ic] = t.weight
        # [nt, c, cc, r, kh, kw] -> [kh, kw, cc, nt, c, r]: tile (nt, kh, kw, cc) is w[nt*C + c, cc*R + r, kh, kw]
        tiles = w.reshape(nt_count, C, cc_n, R, kh_n, kw_n).transpose(4, 5, 2, 0, 1, 3)
        blocks.append(tiles.reshape(-1, nt_count, C, R))
        keys += [(ti, kh, kw, cc) for kh in range(kh_n) for kw in range(kw_n) for cc in range(cc_n)]
    return keys, np.concatenate(blocks), nt_count


@dataclass(frozen=True)
class _TileLayout:
    """The part of an `OpLayout` that depends only on the array's shape and the weights: kept
    per process (`_tile_layout`), so a sweep over buffer depths and memory ports does not
    split and deduplicate a network's weight tiles again for every config (on 4x4, 744 k tiles
    of ResNet-18: half of a config's model-only compile once its tilings were known)."""

    chunks: list
    used: list
    tile: list
    blob: np.ndarray
    n_tiles: int
    digest: str


#: `_TileLayout`s by array shape (rows, cols), then weights: those of the last two shapes
_TILE_LAYOUTS = Recent(2)


def _weights_key(op: AccOp) -> str:
    h = hashlib.sha1()
    for t in op.terms:
        h.update(f"{t.weight.shape};".encode())
        h.update(np.ascontiguousarray(t.weight).data)
    return f"{op.out.c}:{h.hexdigest()}"


def _tile_layout(cfg, op: AccOp) -> _TileLayout:
    """`op`'s K chunks (those with a non-zero weight for some output channel), which each
    output column tile uses, and its distinct weight tiles in the order of first use (column
    tile by column tile)."""
    shape = (cfg.rows, cfg.cols)
    per = _TILE_LAYOUTS.get(shape, dict)
    wkey = _weights_key(op)
    if wkey in per:
        return per[wkey]
    R, C = shape
    keys, tiles, nt_count = _chunk_tiles(cfg, op)
    nonzero = tiles.reshape(len(keys), nt_count, -1).any(axis=2)          # [chunk, column tile]
    # drop chunks whose weights are zero for every output channel
    keep = nonzero.any(axis=1)
    if not keep.any():
        keep[0] = True
    chunks = [k for k, kept in zip(keys, keep) if kept]
    tiles, nonzero = tiles[keep], nonzero[keep]
    used = [np.flatnonzero(nonzero[:, nt]).tolist() or [0] for nt in range(nt_count)]
    # each distinct tile once, in the order of first use (column tile by column tile)
    order_nt = np.repeat(np.arange(nt_count), [len(u) for u in used])
    order_k = np.concatenate([np.asarray(u, dtype=np.int64) for u in used])
    flat = tiles[order_k, order_nt].reshape(len(order_k), C * R)
    # a dict of each tile's bytes (several times faster than np.unique's sort of the rows)
    index: dict[bytes, int] = {}
    firsts: list[int] = []
    ids = []
    for i, key in enumerate(np.ascontiguousarray(flat).view(np.dtype((np.void, C * R))).ravel().tolist()):
        j = index.setdefault(key, len(index))
        if j == len(firsts):
            firsts.append(i)
        ids.append(j)
    tile = np.full((nt_count, len(chunks)), -1, dtype=np.int64)
    tile[order_nt, order_k] = ids
    blob = flat[firsts].reshape(-1, R)
    # chunks with the same weight tile next to each other: they share one PRELOAD (the sum is the same)
    used = [sorted(ks, key=lambda k, row=tile[nt]: (row[k], k)) for nt, ks in enumerate(used)]
    digest = hashlib.sha1(json.dumps([chunks, used]).encode() + tile.tobytes()).hexdigest()
    per[wkey] = _TileLayout(chunks, used, tile.tolist(), blob, nt_count, digest)
    return per[wkey]


def alloc_accop(b: ProgramBuilder, cfg, op: AccOp, prefix: str | None = None) -> OpLayout:
    """Place `op`'s weight tiles and requantization parameters in `b`'s memory image."""
    prefix = prefix or op.name
    R, C = cfg.rows, cfg.cols
    tl = _tile_layout(cfg, op)
    w_reg = b.alloc(f"{prefix}.W", tl.blob.shape, "int8", data=tl.blob)
    nt_count = tl.n_tiles
    params = np.zeros((4, nt_count * C), dtype=np.int64)       # [bias, mult, shift, zp] per channel
    for q, v in enumerate((op.bias, op.mult, op.shift, op.zp)):
        params[q, :op.out.c] = np.asarray(v, dtype=np.int64)
    params = params.reshape(4, nt_count, C).transpose(1, 0, 2)
    p_reg = b.alloc(f"{prefix}.params", (nt_count * 4, C), "int32", data=params.reshape(-1, C).astype(np.int32))
    return OpLayout(tl.chunks, tl.used, tl.tile, w_reg.addr, C * R, p_reg.addr, nt_count, tl.digest)


# -- schedule -----------------------------------------------------------------------------------------
class _Gather:
    """The LOADs that bring the A rows of one chunk for a run of output pixels into the scratchpad."""

    def __init__(self, cfg, op: AccOp, layout: OpLayout, regions: dict, pad_rows: dict[int, int]):
        self.cfg, self.op, self.layout = cfg, op, layout
        self.regions, self.pad_rows = regions, pad_rows

    def segments(self, kt: int, m0: int, rows: int) -> list[list[int]]:
        """[dram_addr, dram_stride, rows] runs covering output pixels m0 .. m0+rows-1."""
        R = self.cfg.rows
        ti, kh, kw, cc = self.layout.chunks[kt]
        t = self.op.terms[ti]
        src = t.src
        reg = self.regions[src.name]
        ps = reg.row_stride
        (sh, sw), (dh, dw) = t.stride, t.dilation
        pt, pl = t.pads[0], t.pads[1]
        OH, OW = self.op.out.h, self.op.out.w
        pad = self.pad_rows[t.pad_value]
        segs: list[list[int]] = []

        def add(addr: int, stride: int, n: int) -> None:
            if n <= 0:
                return
            if segs:
                a0, s0, n0 = segs[-1]
                if n0 == 1 and (n == 1 or stride == addr - a0) and 0 <= addr - a0 < 1 << 24:
                    s0 = addr - a0          # a single row takes any stride
                if a0 + n0 * s0 == addr and (n == 1 or stride == s0):
                    segs[-1] = [a0, s0, n0 + n]
                    return
            segs.append([addr, stride, n])

        ix0 = kw * dw - pl                   # input column of output column ox: ox * sw + ix0
        ox_lo = max(0, -(ix0 // sw))         # first ox with ix >= 0
        ox_hi = max(0, (src.w - 1 - ix0) // sw + 1)    # one past the last ox with ix < W
        m, end = m0, m0 + rows
        hw = OH * OW
        while m < end:
            n, rem = divmod(m, hw)
            oy, ox = divmod(rem, OW)
            x1 = min(OW, ox + end - m)
            iy = oy * sh + kh * dh - pt
            if not 0 <= iy < src.h:
                add(pad, 0, x1 - ox)
            else:
                lo, hi = min(max(ox_lo, ox), x1), min(max(ox_hi, ox), x1)
                if hi < lo:
                    hi = lo
                add(pad, 0, lo - ox)
                if hi > lo:
                    add(reg.addr + ((n * src.h + iy) * src.w + lo * sw + ix0) * ps + cc * R, sw * ps, hi - lo)
                add(pad, 0, x1 - hi)
            m += x1 - ox
        return segs


def emit_accop(b: ProgramBuilder, cfg, op: AccOp, layout: OpLayout, tiling: GemmTiling,
               regions: dict, pad_rows: dict[int, int]) -> None:
    """Emit the instructions of `op` into `b` (tokens are added by the builder).

    `regions` maps tensor names to `Region`s (rows of `pixel_bytes` bytes); `pad_rows` maps a pad
    value to the address of a row of `array.rows` bytes holding it.
    """
    R, C = cfg.rows, cfg.cols
    shape = layout.shape(cfg, op)
    plan = tiling.plan(cfg, shape)
    if plan is None:
        raise CompileError(f"{op.name}: {tiling} does not fit the buffers of {cfg.source}")
    out = regions[op.out.name]
    gather = _Gather(cfg, op, layout, regions, pad_rows)

    def load_a(m0: int, rows: int, kt: int, sp_addr: int) -> None:
        for addr, stride, n in gather.segments(kt, m0, rows):
            b.emit("LOAD", dram_addr=addr, dram_stride=stride, rows=n, sp_addr=sp_addr)
            sp_addr += n

    def store(m0: int, rows: int, nt: int, acc_addr: int) -> None:
        b.emit("STORE", dram_addr=out.addr + m0 * out.row_stride + nt * C, dram_stride=out.row_stride,
               rows=rows, acc_addr=acc_addr, param_addr=layout.params_addr + nt * 4 * cfg.acc_row_bytes,
               relu=int(op.relu), round_even=int(op.round_even), fp32=int(op.fp32))

    emit_tiles(b, cfg, shape[0], len(layout.chunks), tiling, plan, layout.used, load_a=load_a,
               weight=lambda nt, kt: (layout.w_addr(nt, kt), R), store=store)


#: tilings chosen before, by `_tiling_key` (in memory and on disk, so sweeps and re-runs reuse them)
_TILINGS = Memo("tilings")

#: the estimates of single candidates of a pass (`_estimate_key`), shared by configs that differ
#: only in their buffer depths: a sweep over the depths estimates a candidate planned the same
#: way once
_ESTIMATES = Memo("estimates")


def _geometry(op: AccOp, layout: OpLayout) -> dict:
    """The geometry of a pass, all a tiling search depends on besides the config: shapes, kernels,
    strides, pads, which chunks each column tile uses, which weight tiles are shared. Not the
    weight values themselves."""
    return {
        "out": [op.out.n, op.out.h, op.out.w, op.out.c],
        "terms": [[[t.src.n, t.src.h, t.src.w, t.src.c], list(t.kernel), list(t.stride), list(t.pads),
                   list(t.dilation), t.pad_value] for t in op.terms],
        "layout": layout.digest,
        "code": _CODE_DIGEST,
    }


def _tiling_key(cfg, geometry: dict, max_candidates: int, keep: int | None) -> str:
    """Everything the tiling search's outcome depends on: the config, the pass's geometry and
    the code of the compiler and the model."""
    return json.dumps({"config": cfg.compile_hash, "max_candidates": max_candidates, "keep": keep,
                       **geometry}, sort_keys=True)


def _estimate_key(cfg, geometry: dict, *, memory: bool = True) -> str:
    """What one candidate's estimate depends on besides the candidate and its `BufferPlan`: the
    config without its buffer depths (the program of a tiling with a given plan does not
    depend on them, and neither does the model's `Timing`), and the pass's geometry. With
    memory=False, what its program depends on: not the memory port either."""
    d = {k: dict(v) for k, v in cfg.to_dict().items()}
    d["memory"].pop("size_kib", None)
    if not memory:
        del d["memory"]
    del d["scratchpad"]["depth"], d["accumulator"]["depth"]
    return json.dumps({"config": d, "insn_bytes": cfg.insn_bytes, **geometry}, sort_keys=True)


_CODE_DIGEST = source_digest("systolab.codegen:gemm.py", "systolab.codegen:conv.py", "systolab.codegen:builder.py",
                             "systolab.codegen:estimate.py",
                             "systolab.perf:model.py", "systolab.hw:timing.py", "systolab.isa:spec.yaml")


def mt_max(cfg) -> int:
    """The tallest output tile a pass's tiling search tries. Taller tiles, which only a deep
    accumulator allows, took the few candidate places of each kind from the shorter ones that
    won, so a deeper accumulator made a network slower (ResNet-18@224, 8x8, scratchpad 1,024:
    +1.5 % with 4,096 accumulator rows instead of 1,024); with this cap and grouped tilings
    ranked by their K-blocks, more buffer costs at most 0.09 % on 4x4, 8x8 and 16x16
    (`benchmarks/RESULTS.md`, session 10), and every network there got a little faster."""
    return max(512, 16 * cfg.cols)


def choose_accop_tiling(cfg, op: AccOp, layout: OpLayout, regions: dict, pad_rows: dict[int, int],
                        *, max_candidates: int = 12, keep: int | None = KEEP) -> tuple[GemmTiling, int, int]:
    """The candidate tiling with the fewest cycles predicted by the performance model (from a
    sample of each candidate's program, `codegen.estimate`), those cycles and its instructions.
    With more than `keep` candidates, only the `keep` best on a small sample (`SCREEN`) are
    estimated on the full one (None: every candidate).

    Decisions are kept (`_TILINGS`): a pass of the same geometry on the same config is not
    searched again, in this process or a later one."""
    geometry = _geometry(op, layout)
    key = _tiling_key(cfg, geometry, max_candidates, keep)
    kept = _TILINGS.get(key)
    if kept is not None:
        return GemmTiling.from_json(kept), kept["cycles"], kept["instructions"]
    shape = layout.shape(cfg, op)
    cands = candidate_tilings(cfg, shape)
    if not cands:
        raise CompileError(f"{op.name}: no tiling of {op.out.m} output pixels x {len(layout.chunks)} "
                           f"chunks fits scratchpad.depth {cfg.scratchpad.depth} and accumulator.depth "
                           f"{cfg.accumulator.depth} of {cfg.source}")
    # the tallest tiles first (fewest instructions), none taller than `mt_max(cfg)`, grouped ones
    # whose scratchpad holds K-blocks of two chunks or more before those it starves to one; a
    # few of each kind is plenty
    cands = [t for t in cands if t.mt <= mt_max(cfg)] or cands
    res = [t for t in cands if t.a_resident][:max_candidates // 3]
    grouped = sorted((t for t in cands if t.group), key=lambda t: t.plan(cfg, shape).a_slot_rows < 2 * t.mt)
    grouped = grouped[:max_candidates // 3]
    stream = [t for t in cands if not t.a_resident and not t.group][:max_candidates - len(res) - len(grouped)]
    model = PerfModel(cfg)
    rows, matmuls = accop_rows(op, layout), sum(map(len, layout.used))
    ekey = _estimate_key(cfg, geometry)
    skey = _estimate_key(cfg, geometry, memory=False)
    known = _ESTIMATES.get(ekey, fresh=True) or {}
    n_known = len(known)

    def estimate(t, sample=SAMPLE, exact=EXACT, exact_insns=EXACT_INSNS, periods=PERIODS) -> Estimate:
        buffers = t.plan(cfg, shape)
        plan = astuple(buffers)
        k = json.dumps([t.mt, t.a_resident, t.group, plan, sample, exact, exact_insns])
        if k not in known:
            loops, tail_stores = loop_bodies(t, buffers, layout.used)
            est = estimate_tiled(cfg, lambda b: emit_accop(b, cfg, op, layout, t, regions, pad_rows),
                                 t, shape[0], rows, matmuls, model=model, sample=sample, exact=exact,
                                 exact_insns=exact_insns, loops=loops, tail_stores=tail_stores,
                                 periods=periods, key=(skey, t.mt, t.a_resident, t.group, plan))
            known[k] = astuple(est)
            if est.exact:       # the whole pass: what the full estimate would replay too
                known[json.dumps([t.mt, t.a_resident, t.group, plan, SAMPLE, EXACT, EXACT_INSNS])] = known[k]
        return Estimate(*known[k])

    cands = res + grouped + stream
    if keep is not None and len(cands) > keep:      # screened on small samples
        ranked = sorted(cands, key=lambda t: estimate(t, sample=SCREEN, exact=SCREEN_EXACT,
                                                      exact_insns=SCREEN_EXACT_INSNS,
                                                      periods=SCREEN_PERIODS).cycles)
        # and the best of each kind (A resident, grouped, streaming): a small sample can rank a
        # kind by its first blocks only (ResNet-18 8x8 stage 3: the streaming tilings screen
        # 0.03 % ahead of the grouped ones and are 26 % slower)
        kind = lambda t: (t.a_resident, bool(t.group))  # noqa: E731
        cands, seen = ranked[:keep], {kind(t) for t in ranked[:keep]}
        for t in ranked[keep:]:
            if kind(t) not in seen:
                cands.append(t)
                seen.add(kind(t))
    best = None
    for t in cands:
        est = estimate(t)
        if best is None or est.cycles < best[1]:
            best = (t, est.cycles, est.instructions)
    if len(known) > n_known:
        _ESTIMATES.put(ekey, known, merge=True)
    _TILINGS.put(key, {**best[0].to_json(), "cycles": best[1], "instructions": best[2]})
    return best


def accop_rows(op: AccOp, layout: OpLayout) -> int:
    """Rows the pass's MATMULs stream in all (any tiling): every output pixel once per chunk
    each column tile sums over."""
    return op.out.m * sum(len(ks) for ks in layout.used)
