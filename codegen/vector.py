"""Vector passes: layers (or parts of layers) that run on the vector unit instead of the array.

A `VectorPass` reads int8 NHWC tensors from external memory (`TensorSpec`, rows of
`pixel_bytes` bytes), LOADs them into the scratchpad tile by tile, runs a *kernel* of VECTOR
instructions that leaves one int32 accumulator row per output pixel and channel chunk, and STOREs
those rows through the STORE requantizer (per-column bias, multiplier, shift, zero point, ReLU,
rounding) as an int8 NHWC tensor. It is a step of a `codegen.network.Layer` like an `AccOp`: one
program per layer, fused programs, per-layer cycles and the `--json` table work the same.

A kernel is simply a function that emits VECTOR instructions over accumulator row ranges:

    def add_kernel(v: VectorEmitter, t: RowTile) -> None:      # y = a * 3 + b * 5, per chunk
        for cc in t.chunks:
            v("MUL", t.out(cc), t.src(0, cc), 3, rows=t.rows)
            v("MUL", t.out(cc), t.src(1, cc), 5, rows=t.rows, accumulate=True)

`v(func, dst, a, b, rows=..., accumulate=..., shift=..., round=...)` emits one VECTOR (func a name
of `isa/spec.yaml: vector_ops`); `dst` is an accumulator row; an operand is `Rows` (`sp(addr)`,
`acc(addr)`, `broadcast=True` for one row read by every row) or an int (an immediate in every
lane). The builder adds the dependency tokens. Every chunk is `array.cols` channels: scratchpad
rows read as `cols` int8 lanes, accumulator rows are `cols` int32 lanes (configs with
`array.rows >= array.cols`, see `vector_fits`).

Schedules (`VectorPass.schedule`), i.e. what a tile is and how its operands are loaded:

- "rows" (`RowTile`): `t.rows` consecutive pixels x `t.chunks` (one chunk, or with `group=0`
  every chunk of the pixels, for row-wise kernels such as softmax over channels). Input i of
  chunk cc is at scratchpad rows `t.src(i, cc)` (one row per pixel, stride 1); the output of
  chunk cc goes to accumulator rows `t.out(cc)` .. + t.rows; `t.temp(k, cc)` are `scratch`
  more blocks of t.rows accumulator rows per chunk for intermediate values. All inputs have the
  output's pixel grid (N*H*W pixels); channels may differ (a chunk past an input's channels reads
  its padding lanes). With `elementwise=True` (the kernel treats every row alike) over dense
  tensors with the same STORE parameters in every channel, the rows are simply the tensors'
  bytes, `cols` at a time (one chunk; LOADs then fill whole port words).
- "window" (`WindowTile`): pooling-like windows over the one input (kernel, stride, padding,
  dilation: `Window`). Each input image row is loaded once per chunk into a ring of scratchpad
  slots, its columns split by phase (column mod stride), so tap (kh, kw) of a run of output
  columns is a stride-1 run of scratchpad rows: `t.tap(r, kh, kw)` for output row r of the tile
  (a broadcast pad row when the tap's input row is padding); output row r goes to accumulator rows
  `t.out(r)` .. + t.ow. Loads read each input row once per chunk, one scratchpad row per cycle.
- "reduce" (`ReduceTile`): one output pixel per image, all its input pixels reduced (global
  pooling): `t.src` are `t.rows` consecutive input pixels of one chunk (stride 1), `t.out` the one
  accumulator row; `t.first` tells whether this is the image's first piece (accumulate after).

Tiles are double-buffered (two halves of the scratchpad and of the accumulator), so the LOADs of
the next tile and the STOREs of the last overlap the kernel. The numpy reference of a pass
(`VectorPass.reference`: its inputs as int8 NHWC arrays -> the int32 accumulator rows, (M, C)) is
written with `codegen.intops` (the functional simulator's semantics), so `vector_reference`
(reference + `codegen.quant.requantize`) is bit-exact with the simulator by construction.

Constant vectors (`VectorPass.consts`, K x C int8, e.g. per-channel weights) are LOADed once into
the top of the scratchpad; a kernel reads vector k of chunk cc as `t.const(k, cc)` (window tiles:
`t.const(k)`), one row broadcast to every row of a VECTOR.

Lowerings here: `add_pass` (residual add with exact int32 weights), `pool_pass` (max and average
pooling), `depthwise_pass` (depthwise convolution), `global_pool_pass` (global average pooling),
`requant_pass` (ReLU / requantization).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import numpy as np

from systolab.errors import CompileError
from systolab.isa import VECTOR_OPS

from .builder import ProgramBuilder
from .conv import TensorSpec, check_store_params
from .intops import combine, vector_op, wrap32
from .quant import quantize_multiplier, requantize

__all__ = ["Rows", "sp", "acc", "VectorEmitter", "RowTile", "WindowTile", "ReduceTile", "Window",
           "VectorPass", "VectorLayout", "vector_fits", "vector_reference", "alloc_vector", "emit_vector",
           "add_pass", "add_weights", "pool_pass", "depthwise_pass", "global_pool_pass", "requant_pass"]


# -- the kernel API -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rows:
    """Operand rows of a VECTOR: from `addr` in the scratchpad (int8 lanes) or the accumulator
    (int32); row r reads addr + r, or addr for every r when `broadcast`."""

    addr: int
    in_sp: bool = False
    broadcast: bool = False

    def __add__(self, k: int) -> "Rows":
        return Rows(self.addr + k, self.in_sp, self.broadcast)


def sp(addr: int, *, broadcast: bool = False) -> Rows:
    """Scratchpad rows from `addr`."""
    return Rows(addr, True, broadcast)


def acc(addr: int, *, broadcast: bool = False) -> Rows:
    """Accumulator rows from `addr`."""
    return Rows(addr, False, broadcast)


class VectorEmitter:
    """Emits VECTOR instructions into a `ProgramBuilder` (which adds the tokens)."""

    def __init__(self, b: ProgramBuilder):
        self.b = b
        self.rows = 0                   # vector rows emitted (cols / lanes cycles each)

    def __call__(self, func: str, dst: int, a: Rows, b: Rows | int | None = None, *, rows: int,
                 accumulate: bool = False, shift: int = 0, round: bool = False) -> None:
        """acc[dst + r] = func(a[r], b[r]) (combined with the old row when `accumulate`) for r < rows;
        `b` an int is an immediate (int32, every lane), None an unused operand."""
        if func not in VECTOR_OPS:
            raise CompileError(f"vector operation must be one of {', '.join(VECTOR_OPS)}, not {func!r}")
        if rows < 1:
            raise CompileError(f"a VECTOR needs at least one row, not {rows}")
        f = dict(func=VECTOR_OPS[func], dst=dst, src1=a.addr, src1_sp=int(a.in_sp),
                 src1_stride=int(not a.broadcast), rows=rows, accumulate=int(accumulate), shift=shift,
                 round=int(round))
        if b is None:
            b = 0
        if isinstance(b, Rows):
            f.update(src2=b.addr, src2_sp=int(b.in_sp), src2_stride=int(not b.broadcast))
        else:
            b = int(b)
            if not -(1 << 31) <= b < 1 << 31:
                raise CompileError(f"a VECTOR immediate must be int32, not {b}")
            f.update(src2=b & 0xFFFFFFFF, src2_imm=1)
        self.b.emit("VECTOR", **f)
        self.rows += rows


@dataclass(frozen=True)
class RowTile:
    """A "rows" tile: `rows` pixels from pixel `m0`, channel chunks `chunks`."""

    m0: int
    rows: int
    chunks: range
    n_inputs: int
    sp_base: int
    acc_base: int
    scratch: int
    const_base: int = -1
    n_consts: int = 0

    def const(self, k: int, cc: int) -> Rows:
        """Constant vector k (`VectorPass.consts`) of chunk cc, one scratchpad row read by every row."""
        return _const(self.const_base, self.n_consts, k, cc)

    def _k(self, cc: int) -> int:
        if cc not in self.chunks:
            raise CompileError(f"chunk {cc} is not in this tile ({self.chunks.start}..{self.chunks.stop - 1})")
        return cc - self.chunks.start

    def src(self, i: int, cc: int) -> Rows:
        """Scratchpad rows of input i, chunk cc (one per pixel)."""
        return sp(self.sp_base + (i * len(self.chunks) + self._k(cc)) * self.rows)

    def out(self, cc: int) -> int:
        """First accumulator row of the output of chunk cc (one per pixel)."""
        return self.acc_base + self._k(cc) * self.rows

    def temp(self, k: int, cc: int) -> int:
        """First accumulator row of scratch block k (< `scratch`) of chunk cc."""
        if not 0 <= k < self.scratch:
            raise CompileError(f"scratch block {k} of {self.scratch}")
        return self.acc_base + ((1 + k) * len(self.chunks) + self._k(cc)) * self.rows


@dataclass(frozen=True)
class Window:
    """The taps of a pooling window: output (oy, ox) reads input (oy*sh + kh*dh - pt, ox*sw + kw*dw - pl)."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)      # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    pad_value: int = 0

    @property
    def taps(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    def padded(self, x: np.ndarray, oh: int, ow: int) -> np.ndarray:
        """x (N, H, W, C) in its padding, large enough for every tap of an oh x ow output."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        pt, pl, pb, pr = self.pads
        n, h, w, c = x.shape
        hp = max(h + pt + pb, (oh - 1) * sh + (kh - 1) * dh + 1)
        wp = max(w + pl + pr, (ow - 1) * sw + (kw - 1) * dw + 1)
        xp = np.full((n, hp, wp, c), self.pad_value, dtype=np.int64)
        xp[:, pt:pt + h, pl:pl + w, :] = x
        return xp

    def tap_values(self, x: np.ndarray, oh: int, ow: int):
        """Per tap (kh, kw): the (N, oh, ow, C) input values it reads (int64)."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        xp = self.padded(x, oh, ow)
        for i, j in self.taps:
            yield xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]


@dataclass(frozen=True)
class WindowTile:
    """A "window" tile: output rows oy0 .. oy0 + n_rows - 1 of image n, chunk cc."""

    n: int
    oy0: int
    n_rows: int
    cc: int
    ow: int
    acc_base: int
    _taps: dict                 # (r, kh, kw) -> Rows
    const_base: int = -1
    n_consts: int = 0

    def const(self, k: int) -> Rows:
        """Constant vector k (`VectorPass.consts`) of this tile's chunk, read by every row."""
        return _const(self.const_base, self.n_consts, k, self.cc)

    def tap(self, r: int, kh: int, kw: int) -> Rows:
        """Scratchpad rows of tap (kh, kw) for the ow outputs of row r of the tile."""
        return self._taps[(r, kh, kw)]

    def padding(self, r: int, kh: int) -> bool:
        """Tap row kh of output row r reads the padding (a broadcast pad row)."""
        return self._taps[(r, kh, 0)].broadcast

    def out(self, r: int) -> int:
        return self.acc_base + r * self.ow


def _const(base: int, n: int, k: int, cc: int) -> Rows:
    if not 0 <= k < n:
        raise CompileError(f"constant vector {k} of {n} (VectorPass.consts)")
    return sp(base + cc * n + k, broadcast=True)


@dataclass(frozen=True)
class ReduceTile:
    """A "reduce" piece: `rows` input pixels of image n, chunk cc, into one accumulator row."""

    n: int
    cc: int
    rows: int
    first: bool
    src: Rows
    out: int


@dataclass(frozen=True, eq=False)
class VectorPass:
    """One vector-unit pass: out = requant(kernel(inputs)), see the module docstring."""

    name: str
    out: TensorSpec
    inputs: tuple[TensorSpec, ...]
    kernel: Callable
    reference: Callable[[list], np.ndarray]     # inputs (NHWC int8) -> (out.m, out.c) int32 rows
    bias: np.ndarray                            # (C,) int32: the STORE requantizer, per channel
    mult: np.ndarray
    shift: np.ndarray
    zp: np.ndarray
    relu: bool = False
    round_even: bool = False
    fp32: bool = False                          # the STORE's float32 rounding (as `AccOp.fp32`)
    macs: int = 0
    schedule: str = "rows"                      # "rows", "window" or "reduce"
    window: Window | None = None                # "window"
    group: int = 1                              # "rows": chunks per tile, 0 = all of them
    elementwise: bool = False                   # "rows": the kernel treats every row alike
    consts: np.ndarray | None = None            # (K, C) int8: per-channel vectors kept in the scratchpad
    scratch: int = 0                            # "rows": more accumulator blocks per chunk
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        c = self.out.c
        check_store_params(self, c)
        if self.consts is not None:
            k = np.asarray(self.consts)
            if k.ndim != 2 or k.shape[1] != c or k.min(initial=0) < -128 or k.max(initial=0) > 127:
                raise ValueError(f"{self.name}: consts must be (K, {c}) int8 values, not {k.shape}")
        if self.schedule not in ("rows", "window", "reduce"):
            raise ValueError(f"{self.name}: schedule must be rows, window or reduce, not {self.schedule!r}")
        if self.schedule == "rows":
            for t in self.inputs:
                if t.m != self.out.m:
                    raise ValueError(f"{self.name}: input {t.name} has {t.m} pixels, the output {self.out.m}")
        elif len(self.inputs) != 1 or (self.schedule == "window") != (self.window is not None):
            raise ValueError(f"{self.name}: a {self.schedule} pass reads one input"
                             + (" through a Window" if self.schedule == "window" else ""))

    @property
    def pad_values(self) -> tuple[int, ...]:
        return (self.window.pad_value,) if self.window is not None else ()


def vector_reference(vp: VectorPass, values: dict[str, np.ndarray]) -> np.ndarray:
    """What the accelerator computes for `vp` given its input tensors (NHWC int8): NHWC int8."""
    xs = []
    for t in vp.inputs:
        x = np.asarray(values[t.name])
        if x.shape != t.shape:
            raise ValueError(f"{vp.name}: input {t.name} has shape {x.shape}, expected {t.shape}")
        xs.append(x)
    rows = wrap32(vp.reference(xs)).reshape(vp.out.m, vp.out.c)
    y = requantize(rows, vp.bias, vp.mult, vp.shift, vp.zp, vp.relu, vp.round_even, vp.fp32)
    return y.reshape(vp.out.shape)


# -- configs, layout -------------------------------------------------------------------------------------
def vector_fits(cfg) -> str | None:
    """None when vector passes can run on `cfg`, else why not (a phrase)."""
    if not cfg.has_vector:
        return f"{cfg.source} has no vector unit"
    align = min(cfg.rows, cfg.memory.bus_bytes)
    if cfg.rows < cfg.cols or cfg.cols % align:
        return (f"vector passes need array.rows >= array.cols and chunks of array.cols bytes aligned "
                f"for LOAD (array {cfg.rows}x{cfg.cols}, bus {cfg.memory.bus_bytes})")
    return None


@dataclass
class VectorLayout:
    """Where a pass's constants are: the STORE parameters, 4 rows of cols int32 per chunk."""

    params_addr: int
    n_chunks: int
    consts_addr: int = -1       # `VectorPass.consts`: row cc * K + k = vector k of chunk cc
    n_consts: int = 0


def alloc_vector(b: ProgramBuilder, cfg, vp: VectorPass, prefix: str | None = None) -> VectorLayout:
    """Place `vp`'s requantization parameters in `b`'s memory image."""
    prefix = prefix or vp.name
    C = cfg.cols
    c = vp.out.c
    n_chunks = -(-c // C)
    params = np.zeros((n_chunks, 4, C), dtype=np.int64)
    for nt in range(n_chunks):
        cols = slice(nt * C, min(c, (nt + 1) * C))
        for q, v in enumerate((vp.bias, vp.mult, vp.shift, vp.zp)):
            params[nt, q, :cols.stop - cols.start] = np.asarray(v, dtype=np.int64)[cols]
    reg = b.alloc(f"{prefix}.params", (n_chunks * 4, C), "int32", data=params.reshape(-1, C).astype(np.int32))
    if vp.consts is None:
        return VectorLayout(reg.addr, n_chunks)
    k = np.asarray(vp.consts, dtype=np.int64)
    rows = np.zeros((n_chunks, k.shape[0], cfg.rows), dtype=np.int8)
    for nt in range(n_chunks):
        part = k[:, nt * C:(nt + 1) * C]
        rows[nt, :, :part.shape[1]] = part
    creg = b.alloc(f"{prefix}.consts", (n_chunks * k.shape[0], cfg.rows), "int8", data=rows.reshape(-1, cfg.rows))
    return VectorLayout(reg.addr, n_chunks, creg.addr, k.shape[0])


# -- schedules -----------------------------------------------------------------------------------------
class _Emit:
    """What every schedule shares: the regions, LOAD and STORE helpers, the pad rows."""

    def __init__(self, b: ProgramBuilder, cfg, vp: VectorPass, layout: VectorLayout, regions: dict,
                 pad_rows: dict[int, int]):
        why = vector_fits(cfg)
        if why is not None:
            raise CompileError(f"{vp.name}: {why}")
        self.b, self.cfg, self.vp, self.layout = b, cfg, vp, layout
        self.regions, self.pad_rows = regions, pad_rows
        self.v = VectorEmitter(b)
        self.L = cfg.cols
        self.out = regions[vp.out.name]
        self.sp_depth, self.acc_depth = cfg.scratchpad.depth, cfg.accumulator.depth
        self.lookahead = 1              # units whose loads are emitted before the next unit's kernel
        # constant vectors at the top of the scratchpad, loaded once
        n_const_rows = layout.n_consts * layout.n_chunks
        self.const_base = self.sp_depth - n_const_rows
        if n_const_rows:
            if n_const_rows > self.sp_depth // 2:
                raise CompileError(f"{vp.name}: {n_const_rows} constant rows take more than half of "
                                   f"scratchpad.depth {self.sp_depth} of {cfg.source}")
            self.sp_depth = self.const_base
            self.load(layout.consts_addr, cfg.sp_row_bytes, n_const_rows, self.const_base)
        self.consts = dict(const_base=self.const_base, n_consts=layout.n_consts)

    def load(self, addr: int, stride: int, rows: int, sp_addr: int) -> None:
        while rows > 0:
            n = min(rows, self.sp_depth)
            self.b.emit("LOAD", dram_addr=addr, dram_stride=stride, rows=n, sp_addr=sp_addr)
            addr, rows, sp_addr = addr + n * stride, rows - n, sp_addr + n

    def pixel(self, spec: TensorSpec, m: int, cc: int) -> int:
        reg = self.regions[spec.name]
        return reg.addr + m * reg.row_stride + cc * self.L

    def store(self, m0: int, rows: int, cc: int, acc_addr: int, stride: int | None = None) -> None:
        """Rows from pixel m0, chunk cc (or with `stride`, rows `stride` bytes apart from byte m0 * stride)."""
        cfg, out = self.cfg, self.out
        addr = out.addr + m0 * stride if stride else out.addr + m0 * out.row_stride + cc * self.L
        self.b.emit("STORE", dram_addr=addr, dram_stride=stride or out.row_stride,
                    rows=rows, acc_addr=acc_addr,
                    param_addr=self.layout.params_addr + cc * 4 * cfg.acc_row_bytes,
                    relu=int(self.vp.relu), round_even=int(self.vp.round_even), fp32=int(self.vp.fp32))


def _flat(e: _Emit) -> bool:
    """An elementwise pass over dense tensors (no pixel padding) whose STORE parameters are the
    same for every channel: its rows can be the tensors' bytes in order, `array.cols` at a time
    (stride cols bytes, so a LOAD fills whole port words)."""
    vp = e.vp
    c = vp.out.c
    if not vp.elementwise or c % e.L or vp.consts is not None:
        return False
    dense = all(e.regions[t.name].row_stride == c and t.c == c for t in (*vp.inputs, vp.out))
    return dense and all(np.all(np.asarray(v) == np.asarray(v)[0]) for v in (vp.bias, vp.mult, vp.shift, vp.zp))


def _rows_plan(e: _Emit) -> tuple[int, int | None, int, int, int]:
    """(rows in all, LOAD/STORE stride or None for pixel rows, chunks, chunks per tile, the most
    rows a tile may have) of a "rows" schedule: a tile's inputs fit half the scratchpad and its
    outputs half the accumulator (the other halves hold the next tile)."""
    vp = e.vp
    n_chunks = e.layout.n_chunks
    g = n_chunks if vp.group == 0 else min(vp.group, n_chunks)
    n_in = len(vp.inputs)
    m_total, stride = vp.out.m, None
    if _flat(e):
        m_total, stride, n_chunks, g = vp.out.m * n_chunks, e.L, 1, 1
    half_sp, half_acc = e.sp_depth // 2, e.acc_depth // 2
    t_max = min(half_sp // max(1, n_in * g), half_acc // ((1 + vp.scratch) * g), m_total)
    if t_max < 1:
        raise CompileError(f"{vp.name}: {g} chunks x {n_in} inputs do not fit half of scratchpad.depth "
                           f"{e.sp_depth} / accumulator.depth {e.acc_depth} of {e.cfg.source}")
    return m_total, stride, n_chunks, g, t_max


#: a "rows" pass tries tiles of its most rows and of 1/2 and 1/4 of that, down to this many
#: (`tile_choices`): on a small tensor the largest tiles leave the port idle while the first
#: tile loads and the last one stores
MIN_TILE_ROWS = 64


def tile_choices(cfg, vp: VectorPass, layout: VectorLayout, regions: dict, pad_rows: dict[int, int]) -> list[int | None]:
    """The `tile_rows` values worth predicting for `vp` (None: the largest tile), largest first.
    A "rows" pass: its largest tile and 1/2 and 1/4 of it, none shorter than `MIN_TILE_ROWS`
    rows or than one tile per 32 rows of the pass; the other schedules: None."""
    if vp.schedule != "rows":
        return [None]
    e = _Emit(ProgramBuilder(cfg), cfg, vp, layout, regions, pad_rows)
    m_total, _, _, _, t_max = _rows_plan(e)
    out: list[int | None] = [None]
    for d in (2, 4):
        t = t_max // d
        if t < MIN_TILE_ROWS or t * 32 < m_total:
            break
        out.append(t)
    return out


def _rows_schedule(e: _Emit, tile_rows: int | None) -> None:
    vp = e.vp
    n_in = len(vp.inputs)
    m_total, stride, n_chunks, g, t_max = _rows_plan(e)
    half_sp, half_acc = e.sp_depth // 2, e.acc_depth // 2
    T = min(t_max, tile_rows) if tile_rows else t_max
    k = 0
    for c0 in range(0, n_chunks, g):
        chunks = range(c0, min(n_chunks, c0 + g))
        for m0 in range(0, m_total, T):
            rows = min(T, m_total - m0)
            tile = RowTile(m0, rows, chunks, n_in, (k % 2) * half_sp, (k % 2) * half_acc, vp.scratch, **e.consts)
            k += 1

            def load(tile=tile):
                for i, spec in enumerate(vp.inputs):
                    reg = e.regions[spec.name]
                    for cc in tile.chunks:
                        addr = reg.addr + tile.m0 * stride if stride else e.pixel(spec, tile.m0, cc)
                        e.load(addr, stride or reg.row_stride, tile.rows, tile.src(i, cc).addr)

            def run(tile=tile):
                vp.kernel(e.v, tile)
                for cc in tile.chunks:
                    e.store(tile.m0, tile.rows, cc, tile.out(cc), stride)
            yield load, run


def _window_geometry(vp: VectorPass):
    """Per phase r of the column stride: (offset in a slot, first j, length) of its run; per kw:
    (phase, j offset) so that tap kw of output column ox is element ox + offset of the run."""
    win, x = vp.window, vp.inputs[0]
    (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.stride, win.dilation
    pl = win.pads[1]
    ow = vp.out.w
    by_kw = {}
    phases: dict[int, list[int]] = {}
    for j in range(kw):
        q = j * dw - pl
        r, a = q % sw, q // sw
        by_kw[j] = (r, a)
        phases.setdefault(r, []).append(a)
    runs, off = {}, 0
    for r in sorted(phases):
        j0 = min(phases[r])
        n = max(phases[r]) - j0 + ow
        runs[r] = (off, j0, n)
        off += n
    return runs, by_kw, off


def _window_schedule(e: _Emit, tile_rows: int | None):
    """Units of one output row (its new input rows loaded `lookahead` rows ahead of its
    VECTORs); the accumulator holds a tile of output rows per half, stored together."""
    vp, cfg = e.vp, e.cfg
    win, x = vp.window, vp.inputs[0]
    (kh, _), (sh, sw), (dh, _) = win.kernel, win.stride, win.dilation
    pt = win.pads[0]
    oh, ow = vp.out.h, vp.out.w
    runs, by_kw, slot = _window_geometry(vp)
    pad_sp = 0                                  # one broadcast row of the pad value
    n_slots = (e.sp_depth - 1) // slot
    span = (kh - 1) * dh + 1
    if n_slots < span + sh or 2 * ow > e.acc_depth:
        raise CompileError(f"{vp.name}: {span + sh} input rows of {slot} scratchpad rows (or two output rows "
                           f"of {ow}) do not fit scratchpad.depth {e.sp_depth} / accumulator.depth "
                           f"{e.acc_depth} of {cfg.source}")
    # output rows per tile: half the accumulator; loads run up to 6 output rows ahead
    t = max(1, min(e.acc_depth // 2 // ow, oh, tile_rows or oh))
    ahead = max(1, min(6, (n_slots - span) // sh))
    n_slots = min(n_slots, ahead * sh + span + sh)
    e.lookahead = ahead
    in_reg = e.regions[x.name]
    ps = in_reg.row_stride
    pad_addr = e.pad_rows[win.pad_value]
    e.load(pad_addr, 0, 1, pad_sp)
    # the padding columns of every slot (the same in each slot; data LOADs never write them)
    for s in range(n_slots):
        base = 1 + s * slot
        for r, (off, j0, n) in runs.items():
            valid = [j for j in range(j0, j0 + n) if 0 <= sw * j + r < x.w]
            lo, hi = (valid[0], valid[-1] + 1) if valid else (j0, j0)
            if lo > j0:
                e.load(pad_addr, 0, lo - j0, base + off)
            if j0 + n > hi:
                e.load(pad_addr, 0, j0 + n - hi, base + off + (hi - j0))
    ring = [0]
    k = 0
    for cc in range(e.layout.n_chunks):
        for n in range(x.n):
            where: dict[int, int] = {}          # input row -> slot
            for oy0 in range(0, oh, t):
                rows = min(t, oh - oy0)
                acc_base = (k % 2) * (e.acc_depth // 2)
                k += 1
                for r in range(rows):
                    yield _window_row(e, runs, by_kw, slot, n_slots, n, oy0, rows, r, cc, acc_base, where, ring)


def _window_row(e: _Emit, runs, by_kw, slot, n_slots, n, oy0, rows, r, cc, acc_base, where, ring):
    """(load, run) of output row oy0 + r of a tile; `where` (input row -> slot) and `ring` (the
    next slot, a one-element list) are the ring's state, updated when the row's loads are emitted."""
    vp = e.vp
    win, x = vp.window, vp.inputs[0]
    (kh, kw), (sh, sw), (dh, _) = win.kernel, win.stride, win.dilation
    oh, ow = vp.out.h, vp.out.w
    in_reg = e.regions[x.name]
    ps = in_reg.row_stride
    oy = oy0 + r
    state = {}

    def load():
        iys = [oy * sh + i * dh - win.pads[0] for i in range(kh)]
        for iy in sorted(set(iys) & set(range(x.h))):
            if iy in where:
                continue
            s = ring[0] % n_slots
            ring[0] += 1
            for old in [q for q, v in where.items() if v == s]:
                del where[old]
            where[iy] = s
            base = 1 + s * slot
            for ph, (off, j0, cnt) in runs.items():
                valid = [j for j in range(j0, j0 + cnt) if 0 <= sw * j + ph < x.w]
                if valid:
                    m = (n * x.h + iy) * x.w + sw * valid[0] + ph
                    e.load(in_reg.addr + m * ps + cc * e.L, sw * ps, len(valid), base + off + valid[0] - j0)
        taps = {}
        for i, iy in enumerate(iys):
            for j in range(kw):
                if iy not in where:
                    taps[(0, i, j)] = sp(0, broadcast=True)
                    continue
                ph, a = by_kw[j]
                off, j0, _ = runs[ph]
                taps[(0, i, j)] = sp(1 + where[iy] * slot + off + a - j0)
        state["tile"] = WindowTile(n, oy, 1, cc, ow, acc_base + r * ow, taps, **e.consts)

    def run():
        vp.kernel(e.v, state["tile"])
        if r == rows - 1:
            e.store((n * oh + oy0) * ow, rows * ow, cc, acc_base)
    return load, run


def _reduce_schedule(e: _Emit, tile_rows: int | None) -> None:
    vp = e.vp
    x = vp.inputs[0]
    hw = x.h * x.w
    half_sp = e.sp_depth // 2
    piece = min(half_sp, e.acc_depth, hw, tile_rows or hw)      # CSUM rows fit the rows field
    ps = e.regions[x.name].row_stride
    k = 0
    outs = 0
    for cc in range(e.layout.n_chunks):
        # output rows of one chunk gather in the accumulator, stored together
        n0 = 0
        while n0 < x.n:
            batch = min(x.n - n0, e.acc_depth // 2)
            acc_base = (outs % 2) * (e.acc_depth // 2)
            outs += 1
            for n in range(n0, n0 + batch):
                for p0 in range(0, hw, piece):
                    tile = ReduceTile(n, cc, min(piece, hw - p0), p0 == 0, sp((k % 2) * half_sp), acc_base + n - n0)
                    k += 1
                    last = n == n0 + batch - 1 and p0 + piece >= hw

                    def load(tile=tile, p0=p0):
                        e.load(e.pixel(x, tile.n * hw + p0, tile.cc), ps, tile.rows, tile.src.addr)

                    def run(tile=tile, last=last, n0=n0, batch=batch, acc_base=acc_base):
                        vp.kernel(e.v, tile)
                        if last:
                            e.store(n0, batch, tile.cc, acc_base)
                    yield load, run
            n0 += batch


_SCHEDULES = {"rows": _rows_schedule, "window": _window_schedule, "reduce": _reduce_schedule}


def emit_vector(b: ProgramBuilder, cfg, vp: VectorPass, layout: VectorLayout, regions: dict,
                pad_rows: dict[int, int], *, tile_rows: int | None = None) -> int:
    """Emit the instructions of `vp` into `b`; returns the vector rows emitted. `tile_rows` caps
    the tile (pixels for "rows", output rows for "window", input pixels for "reduce").

    Software-pipelined in program order: the LOADs of tile k+1 come before the kernel of tile k
    (the queues are in order, so this is what lets the load unit run a tile ahead)."""
    e = _Emit(b, cfg, vp, layout, regions, pad_rows)
    pending: list = []
    for load, run in _SCHEDULES[vp.schedule](e, tile_rows):
        load()
        pending.append(run)
        if len(pending) > e.lookahead:
            pending.pop(0)()
    for run in pending:
        run()
    return e.v.rows


# -- lowerings -----------------------------------------------------------------------------------------
def _col(v, c: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.int64), (c,)).astype(np.int32)


def add_weights(ra: float, rb: float, va: int, vb: int) -> tuple[int, int, int, int, float]:
    """int32 weights (Wa, Wb) and a STORE multiplier (mult, shift) with Wa*f ~= ra, Wb*f ~= rb,
    f = mult / 2**shift, such that va*Wa + vb*Wb < 2**31 (|a - za| <= va, |b - zb| <= vb, so the
    weighted sum fits int32). Wa / Wb is the best rational approximation of ra / rb with that
    bound (exact when the ratio is a fraction that small), f the better of ra / Wa and rb / Wb.
    Returns (Wa, Wb, mult, shift, worst error before rounding in output LSBs)."""
    if not (ra > 0 and rb > 0):
        raise CompileError(f"residual add scale ratios must be positive, not {ra!r}, {rb!r}")
    limit = (1 << 31) - 1
    rho = Fraction(ra) / Fraction(rb)
    big = limit // (va + vb)
    best = None
    while big >= 1:
        fr = rho.limit_denominator(big) if rho <= 1 else 1 / (1 / rho).limit_denominator(big)
        wa, wb = fr.numerator, fr.denominator
        if wa >= 1 and va * wa + vb * wb <= limit:
            for f in (ra / wa, rb / wb):
                mult, shift = quantize_multiplier(f)
                fq = mult / 2.0 ** shift
                err = va * abs(ra - wa * fq) + vb * abs(rb - wb * fq)
                if best is None or err < best[4]:
                    best = (wa, wb, mult, shift, err)
            break
        big //= 2
    if best is None:
        raise CompileError(f"no int32 weights for a residual add with ratios {ra!r}, {rb!r}")
    return best


def add_pass(name: str, a: TensorSpec, za: int, b: TensorSpec, zb: int, out: TensorSpec, zy: int, *,
             weights: tuple[int, int], mult: int, shift: int, relu: bool = False,
             fixed: float | None = None) -> VectorPass:
    """Residual add on the vector unit: acc = a*Wa + b*Wb (two MULs, int32), then the STORE:
    y = round((acc - za*Wa - zb*Wb) * mult / 2**shift) + zy (exact integer arithmetic). With
    `fixed` (the constant term of y = ra a + rb b + fixed, zy included) the bias is
    round((fixed - zy) * 2**shift / mult) instead of -(za*Wa + zb*Wb)."""
    wa, wb = weights
    c = out.c

    def kernel(v: VectorEmitter, t: RowTile) -> None:
        for cc in t.chunks:
            v("MUL", t.out(cc), t.src(0, cc), wa, rows=t.rows)
            v("MUL", t.out(cc), t.src(1, cc), wb, rows=t.rows, accumulate=True)

    def reference(xs):
        xa, xb = (x.reshape(-1, x.shape[-1]) for x in xs)
        y = vector_op("MUL", xa, np.full(xa.shape, wa))
        return combine("MUL", y, vector_op("MUL", xb, np.full(xb.shape, wb)))

    bias = -(za * wa + zb * wb) if fixed is None else round((Fraction(fixed) - zy) * 2**shift / mult)
    if not -(1 << 31) <= bias < 1 << 31:
        raise CompileError(f"{name}: the zero points times the weights do not fit int32")
    return VectorPass(name, out, (a, b), kernel, reference, _col(bias, c), _col(mult, c), _col(shift, c),
                      _col(zy, c), relu, macs=out.m * c, elementwise=True, info={"weights": [wa, wb]})


def pool_pass(name: str, kind: str, x: TensorSpec, out: TensorSpec, window: Window, *, bias: int, mult: int,
              shift: int, zp: int, relu: bool = False) -> VectorPass:
    """Max ("max") or sum ("sum", for average pooling) over the taps of `window`, on the vector
    unit: pairs of taps per VECTOR (d = op(d, op(a, b)) with accumulate), then the STORE with
    these parameters. Padded taps read `window.pad_value`; a max skips taps in padded rows."""
    if kind not in ("max", "sum"):
        raise ValueError(f"pool kind must be max or sum, not {kind!r}")
    func = "MAX" if kind == "max" else "ADD"
    kw_ = window.kernel[1]

    def kernel(v: VectorEmitter, t: WindowTile) -> None:
        for r in range(t.n_rows):
            rows = [i for i in range(window.kernel[0]) if not (kind == "max" and t.padding(r, i))] or [0]
            taps = [t.tap(r, i, j) for i in rows for j in range(kw_)]
            dst = t.out(r)
            for p in range(0, len(taps), 2):
                a = taps[p]
                b = taps[p + 1] if p + 1 < len(taps) else (a if kind == "max" else 0)
                v(func, dst, a, b, rows=t.ow, accumulate=p > 0)

    def reference(xs):
        y = None
        for tv in window.tap_values(xs[0], out.h, out.w):
            y = tv if y is None else combine(func, y, tv)
        return y.reshape(-1, out.c)

    c = out.c
    return VectorPass(name, out, (x,), kernel, reference, _col(bias, c), _col(mult, c), _col(shift, c), _col(zp, c),
                      relu, schedule="window", window=window,
                      macs=out.m * c * len(window.taps) if kind == "sum" else 0)


def depthwise_pass(name: str, x: TensorSpec, out: TensorSpec, weight: np.ndarray, window: Window, *,
                   bias, mult, shift, zp, relu: bool = False, fp32: bool = False) -> VectorPass:
    """Depthwise convolution on the vector unit: per tap one MUL with accumulate of the tap's
    rows by that tap's per-channel weights (a broadcast scratchpad row, `VectorPass.consts`),
    then the STORE (per-channel bias with the zero point folded in, multiplier, shift).
    `weight` is (C, KH, KW) int8; padded taps read `window.pad_value` (the input's zero point)."""
    c = out.c
    w = np.asarray(weight)
    if w.shape != (c,) + tuple(window.kernel) or x.c != c:
        raise ValueError(f"{name}: a depthwise weight must be ({c}, {window.kernel[0]}, {window.kernel[1]}), "
                         f"not {w.shape}")
    taps = window.taps
    consts = np.stack([w[:, i, j] for i, j in taps])

    def kernel(v: VectorEmitter, t: WindowTile) -> None:
        for k, (i, j) in enumerate(taps):
            v("MUL", t.out(0), t.tap(0, i, j), t.const(k), rows=t.ow, accumulate=k > 0)

    def reference(xs):
        y = None
        for k, tv in enumerate(window.tap_values(xs[0], out.h, out.w)):
            p = vector_op("MUL", tv.reshape(-1, c), np.broadcast_to(consts[k], (tv.size // c, c)))
            y = p if y is None else combine("MUL", y, p)
        return y

    def cols(v):
        return np.broadcast_to(np.asarray(v, dtype=np.int64), (c,)).astype(np.int32)
    return VectorPass(name, out, (x,), kernel, reference, cols(bias), cols(mult), cols(shift), cols(zp), relu,
                      fp32=fp32, schedule="window", window=window, consts=consts, macs=out.m * c * len(taps))


def global_pool_pass(name: str, x: TensorSpec, out: TensorSpec, *, bias: int, mult: int, shift: int,
                     zp: int) -> VectorPass:
    """Global average pooling on the vector unit: CSUM of every pixel of an image (in pieces, the
    later ones accumulated), then the STORE (bias -taps*zx, multiplier sx / (taps*sy))."""

    def kernel(v: VectorEmitter, t: ReduceTile) -> None:
        v("CSUM", t.out, t.src, rows=t.rows, accumulate=not t.first)

    def reference(xs):
        x4 = xs[0].astype(np.int64)
        return wrap32(x4.sum(axis=(1, 2))).reshape(-1, out.c)

    c = out.c
    return VectorPass(name, out, (x,), kernel, reference, _col(bias, c), _col(mult, c), _col(shift, c), _col(zp, c),
                      schedule="reduce", macs=x.m * c)


def requant_pass(name: str, x: TensorSpec, out: TensorSpec, *, bias: int, mult: int, shift: int, zp: int,
                 relu: bool = False) -> VectorPass:
    """A ReLU or a change of quantization on the vector unit: the rows copied (ADD of 0), the
    STORE requantizes."""

    def kernel(v: VectorEmitter, t: RowTile) -> None:
        for cc in t.chunks:
            v("ADD", t.out(cc), t.src(0, cc), 0, rows=t.rows)

    def reference(xs):
        x2 = xs[0].reshape(-1, xs[0].shape[-1])
        return vector_op("ADD", x2, np.zeros_like(x2))

    c = out.c
    return VectorPass(name, out, (x,), kernel, reference, _col(bias, c), _col(mult, c), _col(shift, c), _col(zp, c),
                      relu, elementwise=True)
