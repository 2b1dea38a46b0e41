"""int8 GEMM for one accelerator config: `C = requant(A @ B + bias)` for any M, K, N >= 1.

Memory layout (all row-major, zero padded; R = array.rows, C = array.cols):

- `A`:  M x Kp int8, Kp = K rounded up to R. A K-chunk of rows is one 2-D strided LOAD.
- `Bt`: Np x Kp int8, B transposed (N x K, like ONNX `transB` or conv weights), Np = N rounded
  up to C. A weight tile (C rows of R) is one LOAD, already in the PRELOAD layout.
- `params`: per column tile, four rows of C int32 (bias, multiplier, shift, zero point).
- `C`:  M x Np int8; the region exposes the M x N part.

Schedule (`emit_tiles`, shared with the convolutions of `codegen.conv`): the scratchpad holds A
chunks (one per step, or every chunk of a block of Mt rows when A is resident) and a few weight
tiles, the accumulator up to four output tiles, all used round-robin. For each output tile (Mt rows
x C columns) the K chunks are streamed: LOAD the A chunk and the weight tile, PRELOAD the weights
into one of the two weight buffers, MATMUL into the tile's accumulator slot (accumulating after
the first chunk), and after the last chunk STORE the tile. Dependency tokens make the load,
compute and store queues overlap: loads of the next chunk run while the current one computes, the
PRELOAD of the next chunk while the current MATMUL streams, and the STORE of a tile while the next
tile computes. The tiling (Mt, resident A or not) is chosen by the performance model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from systolab.errors import CompileError
from systolab.perf import PerfModel

from .builder import ProgramBuilder, round_up
from .program import Program
from .quant import quantize_multiplier, requantize, wrap_int32

__all__ = ["Gemm", "GemmTiling", "candidate_tilings", "schedule_gemm", "emit_tiles", "loop_bodies", "choose_tiling", "tiling_cycles", "compile_gemm", "gemm_reference", "random_gemm",
           "gemm_data_bytes", "check_gemm_fits"]


@dataclass(frozen=True)
class Gemm:
    """A quantized GEMM problem with its data."""

    A: np.ndarray          # (M, K) int8
    B: np.ndarray          # (K, N) int8
    bias: np.ndarray       # (N,) int32
    mult: np.ndarray       # (N,) int32, requantization multiplier per output column
    shift: np.ndarray      # (N,) int32, 0..63
    zp: np.ndarray         # (N,) int32, output zero point
    relu: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        (M, K), (_, N) = self.A.shape, self.B.shape
        return M, K, N

    @property
    def macs(self) -> int:
        M, K, N = self.shape
        return M * K * N


#: chunks per K-block of a grouped tiling at most, however deep the scratchpad: the performance
#: model's whole ResNet-18 (224) on 4x4 .. 32x32 arrays was fastest with 4 (measured 2, 3, 4, 8,
#: 16 and as many as fit; as many as fit made a 4x4 array with a 16,384-row scratchpad 13 % slower
#: than with 1,024 rows), and a capped K-block makes the plans of configs that differ only in
#: their buffer depths alike, so they share the model's estimates
KBLOCK_MAX = 4


@dataclass(frozen=True)
class GemmTiling:
    """How a GEMM is cut for the buffers.

    `mt`: rows of A (and of C) per output tile; one MATMUL streams `mt` rows.
    `a_resident`: keep all K chunks of an `mt`-row block of A in the scratchpad while every column
    tile of the output is computed (A is read from memory once), prefetching the next block's
    chunks between column tiles; otherwise each (column tile, K chunk) step loads its A chunk.
    `group` > 0 (with `a_resident` False): compute `group` column tiles together, their partial
    sums held in the accumulator, over K-blocks of as many chunks as half the scratchpad holds:
    each A chunk is read once per group instead of once per column tile, which is what a layer
    with many K chunks and few rows (a late convolution) needs when all of A does not fit.
    """

    mt: int
    a_resident: bool = False
    group: int = 0

    def to_json(self) -> dict:
        return {"mt": self.mt, "a_resident": self.a_resident, "group": self.group}

    @classmethod
    def from_json(cls, d) -> "GemmTiling":
        return cls(d["mt"], d["a_resident"], d.get("group", 0))

    def plan(self, config, shape: tuple[int, int, int]) -> "BufferPlan | None":
        """Where everything goes in the scratchpad and accumulator, or None if it does not fit."""
        M, K, N = shape
        R, C = config.rows, config.cols
        sp, acc = config.scratchpad.depth, config.accumulator.depth
        kt_count = -(-K // R)
        mt = self.mt
        if not 1 <= mt <= min(M, acc):
            return None
        blocks = -(-M // mt)
        acc_slots = min(4, acc // mt)
        if self.group:
            w_slots = 8
            kb = (sp - w_slots * C) // (2 * mt)          # chunks per K-block, two A regions
            if self.a_resident or self.group < 2 or 2 * self.group * mt > acc or kb < 1:
                return None
            return BufferPlan(2, min(kb, kt_count, KBLOCK_MAX) * mt, w_slots, 2)
        if self.a_resident:
            a_block = kt_count * mt
            a_slots = 2 if blocks > 1 else 1
            w_slots = min(8, (sp - a_slots * a_block) // C)
            if w_slots < 1:
                return None
            return BufferPlan(a_slots, a_block, w_slots, acc_slots)
        slots = min(4, sp // (mt + C))
        if slots < 1 or acc_slots < 1:
            return None
        return BufferPlan(slots, mt, slots, acc_slots)


@dataclass(frozen=True)
class BufferPlan:
    a_slots: int          # A regions at the bottom of the scratchpad
    a_slot_rows: int      # rows per A region
    w_slots: int          # weight tiles (C rows each) after them
    acc_slots: int        # output tiles (mt rows each) in the accumulator


def candidate_tilings(config, shape: tuple[int, int, int]) -> list[GemmTiling]:
    """Every tiling worth trying: tile heights that split M evenly (and powers of two), resident A
    or not, that fit the buffers.

    Tiles shorter than `min_rows` are not tried: a MATMUL that short cannot hide the next PRELOAD.
    The rule does not depend on the buffer depths, so a bigger buffer only adds candidates.
    """
    M = shape[0]
    min_rows = min(M, max(32, 4 * config.cols))
    heights = {-(-M // blocks) for blocks in range(1, 25)}
    heights |= {2 ** i for i in range(0, 16) if 2 ** i < M}
    n_tiles = -(-shape[2] // config.cols)
    fits = []
    for mt in sorted(heights, reverse=True):
        most = min(n_tiles, config.accumulator.depth // (2 * mt))
        # groups of equal size: a last, smaller group would cost more per row than the others
        even = [g for g in range(2, most + 1) if n_tiles % g == 0]
        sizes = {max(even, default=0), max((g for g in even if g <= -(-most // 2)), default=0)}
        for t in (GemmTiling(mt, True), GemmTiling(mt, False),
                  *(GemmTiling(mt, False, g) for g in sorted(sizes, reverse=True) if g >= 2)):
            if t.plan(config, shape) is not None:
                fits.append(t)
    return [t for t in fits if t.mt >= min_rows] or fits


def gemm_data_bytes(config, shape: tuple[int, int, int]) -> int:
    """Bytes of external memory a GEMM's operands, parameters and result take (its layout, with
    no data: cheap for any shape)."""
    b = ProgramBuilder(config)
    _layout(b, config, shape, None)
    return b.data_bytes


def check_gemm_fits(config, shape: tuple[int, int, int], *, what: str = "the GEMM") -> None:
    """Refuse a GEMM whose data cannot fit the external memory, before anything is generated."""
    need = gemm_data_bytes(config, shape)
    if need > config.mem_limit:
        raise CompileError(config.memory_shortfall(what, need, "operands and result"))


def gemm_reference(g: Gemm) -> np.ndarray:
    """numpy reference: int32 matmul (wrapping), then the STORE requantization."""
    acc = wrap_int32(g.A.astype(np.int64) @ g.B.astype(np.int64))
    return requantize(acc, g.bias, g.mult, g.shift, g.zp, g.relu)


def random_gemm(M: int, K: int, N: int, *, seed: int = 0, relu: bool = False) -> Gemm:
    """Random int8 operands with a requantization scale that spreads the outputs over int8."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-128, 128, size=(M, K), dtype=np.int8)
    B = rng.integers(-128, 128, size=(K, N), dtype=np.int8)
    bias = rng.integers(-2**14, 2**14, size=N, dtype=np.int32)
    # an int8 x int8 product has a standard deviation of ~74*74; aim the outputs at std ~40
    scale = 40.0 / (74.0 * 74.0 * np.sqrt(K))
    mult, shift = quantize_multiplier(min(scale, 0.5))
    zp = rng.integers(-8, 8, size=N, dtype=np.int32)
    return Gemm(A, B, bias, np.full(N, mult, np.int32), np.full(N, shift, np.int32), zp, relu)


@lru_cache(maxsize=256)
def choose_tiling(config, shape: tuple[int, int, int]) -> GemmTiling:
    """The candidate tiling with the fewest cycles predicted by the performance model.

    The candidates of a bigger scratchpad include those of a smaller one, so more memory never
    makes a workload slower.
    """
    cands = candidate_tilings(config, shape)
    if not cands:
        raise CompileError(f"{config.source}: no tiling of a {'x'.join(map(str, shape))} GEMM fits "
                           f"scratchpad.depth {config.scratchpad.depth} and accumulator.depth "
                           f"{config.accumulator.depth}")
    model = PerfModel(config)
    best = None
    for t in cands:
        cycles = tiling_cycles(config, shape, t, model=model, bound=None if best is None else best[0])
        if cycles is not None and (best is None or cycles < best[0]):
            best = (cycles, t)
    return best[1]


def tiling_cycles(config, shape: tuple[int, int, int], tiling: GemmTiling, *, model=None,
                  bound: int | None = None) -> int | None:
    """Cycles the performance model predicts for a GEMM of `shape` cut by `tiling` (how
    `choose_tiling` scores a candidate); None once it is sure to take longer than `bound`."""
    b = ProgramBuilder(config)
    schedule_gemm(b, config, shape, tiling, _layout(b, config, shape, None), relu=False)
    pred = (model or PerfModel(config)).predict_insns(b.instructions(), bound=bound)
    return None if pred is None else pred.cycles


def compile_gemm(config, g: Gemm, tiling: GemmTiling | None = None, *, name: str = "gemm") -> Program:
    """Compile `g` for `config`; the tiling is searched with the performance model unless given."""
    M, K, N = g.shape
    if min(M, K, N) < 1:
        raise CompileError(f"GEMM dimensions must be at least 1, not {M}x{K}x{N}")
    if tiling is None:
        tiling = choose_tiling(config, g.shape)
    b = ProgramBuilder(config)
    schedule_gemm(b, config, g.shape, tiling, _layout(b, config, g.shape, g), relu=g.relu)
    meta = {"workload": name, "kind": "gemm", "M": M, "K": K, "N": N, "macs": g.macs,
            "relu": g.relu, "tiling": tiling.to_json()}
    return b.finish(("C",), meta)


def _layout(b: ProgramBuilder, cfg, shape, g: Gemm | None) -> dict:
    """Place A, Bt, the requantization parameters and C in the memory image."""
    M, K, N = shape
    R, C = cfg.rows, cfg.cols
    Kp, Np = round_up(K, R), round_up(N, C)
    nt_count = Np // C
    params = None
    if g is not None:
        params = np.zeros((nt_count, 4, C), dtype=np.int32)
        for nt in range(nt_count):
            cols = slice(nt * C, min(N, (nt + 1) * C))
            n = cols.stop - cols.start
            params[nt, 0, :n], params[nt, 1, :n] = g.bias[cols], g.mult[cols]
            params[nt, 2, :n], params[nt, 3, :n] = g.shift[cols], g.zp[cols]
        params = params.reshape(-1, C)
    return {
        "A": b.alloc("A", (M, K), "int8", row_stride=Kp, data=None if g is None else g.A),
        "Bt": b.alloc("Bt", (N, K), "int8", row_stride=Kp, data=None if g is None else g.B.T),
        "params": b.alloc("params", (nt_count * 4, C), "int32", data=params),
        "C": b.alloc("C", (M, N), "int8", row_stride=Np),
    }


def schedule_gemm(b: ProgramBuilder, cfg, shape, tiling: GemmTiling, regions: dict, *, relu: bool) -> None:
    """Emit the instructions of one GEMM into `b` (tokens are added by the builder).

    `regions` maps "A" (M x K int8, rows `Kp` apart), "Bt" (N x K int8, rows `Kp` apart),
    "params" (4 rows of C int32 per column tile) and "C" (M x N int8, rows `Np` apart) to
    `Region`s of the builder; a layer of a network passes the previous layer's "C" as its "A".
    """
    R, C = cfg.rows, cfg.cols
    M, K, N = shape
    plan = tiling.plan(cfg, shape)
    if plan is None:
        raise CompileError(f"{tiling} does not fit the buffers of {cfg.source}")
    Kp, Np = round_up(K, R), round_up(N, C)
    kt_count, nt_count = Kp // R, Np // C
    a_reg, bt_reg, p_reg, c_reg = (regions[k] for k in ("A", "Bt", "params", "C"))

    def load_a(m0: int, rows: int, kt: int, sp_addr: int) -> None:
        b.emit("LOAD", dram_addr=a_reg.addr + m0 * Kp + kt * R, dram_stride=Kp, rows=rows, sp_addr=sp_addr)

    def store(m0: int, rows: int, nt: int, acc_addr: int) -> None:
        b.emit("STORE", dram_addr=c_reg.addr + m0 * Np + nt * C, dram_stride=Np, rows=rows,
               acc_addr=acc_addr, param_addr=p_reg.addr + nt * 4 * cfg.acc_row_bytes, relu=int(relu))

    emit_tiles(b, cfg, M, kt_count, tiling, plan, [range(kt_count)] * nt_count, load_a=load_a,
               weight=lambda nt, kt: (bt_reg.addr + nt * C * Kp + kt * R, Kp), store=store)


def emit_tiles(b: ProgramBuilder, cfg, M: int, k_chunks: int, tiling: GemmTiling, plan: BufferPlan,
               used: Sequence[Sequence[int]], *, load_a, weight, store) -> None:
    """The tiled schedule of an M-row GEMM-like operation, shared by `schedule_gemm` and
    `codegen.conv.emit_accop`; what differs between them is where the operands are.

    K is cut into `k_chunks` chunks of R rows; `used[nt]` lists the chunks that column tile `nt`
    sums over, in order (a convolution skips chunks whose weights are all zero). `load_a(m0, rows, kt, sp_addr)` emits the LOADs of chunk `kt` of
    rows `m0 .. m0 + rows - 1`; `weight(nt, kt)` is the (address, row stride) of the C x R weight
    tile, consecutive chunks with the same tile share one PRELOAD; `store(m0, rows, nt, acc_addr)`
    emits the STORE of an output tile.

    For every block of `tiling.mt` rows and every column tile: LOAD each chunk's A rows (once per
    block when `tiling.a_resident`, at its first use) and its weight tile into the next of
    `plan`'s scratchpad slots, PRELOAD into the other weight buffer while the previous MATMUL
    streams, MATMUL into the next accumulator slot, and STORE. With resident A, the next block's
    chunks are prefetched into the other A region, spread evenly over the column tiles (loading
    the first block's chunks at their first use, not all up front, lets the first MATMUL start
    early; both choices were measured with the performance model: never slower on GEMMs and
    convolutions, up to 10 % faster on small GEMMs).
    """
    C = cfg.cols
    mt = tiling.mt
    w_base = plan.a_slots * plan.a_slot_rows
    counters = {"w": 0, "a": 0, "acc": 0}

    def next_slot(kind: str, slots: int) -> int:
        i = counters[kind] % slots
        counters[kind] += 1
        return i

    def matmul(nt: int, kt: int, a_addr: int, acc_addr: int, rows: int, accumulate: bool, loaded):
        """MATMUL chunk `kt` of column tile `nt`, after a LOAD and PRELOAD of its weight tile unless
        it is `loaded` (the tile already in the PEs); returns the tile in the PEs then."""
        if weight(nt, kt) != loaded:
            loaded = weight(nt, kt)
            w_addr = w_base + next_slot("w", plan.w_slots) * C
            b.emit("LOAD", dram_addr=loaded[0], dram_stride=loaded[1], rows=C, sp_addr=w_addr)
            b.emit("PRELOAD", sp_addr=w_addr, wbuf=counters["w"] % 2)
        b.emit("MATMUL", sp_addr=a_addr, acc_addr=acc_addr, rows=rows, wbuf=counters["w"] % 2,
               accumulate=int(accumulate))
        return loaded

    if tiling.group:
        _emit_grouped(M, tiling, plan, used, load_a=load_a, store=store, next_slot=next_slot,
                      matmul=matmul)
        return

    blocks = [(m0, min(mt, M - m0)) for m0 in range(0, M, mt)]
    resident: set[int] = set()             # chunks of the current block already in the scratchpad
    for bi, (m0, rows) in enumerate(blocks):
        a_base = (bi % plan.a_slots) * plan.a_slot_rows
        prefetch = []
        if tiling.a_resident and bi + 1 < len(blocks):
            nm0, nrows = blocks[bi + 1]
            nbase = ((bi + 1) % plan.a_slots) * plan.a_slot_rows
            prefetch = [(nm0, nrows, kt, nbase + kt * mt) for kt in range(k_chunks)]
        spread = _Spread(load_a, prefetch, sum(map(len, used)))
        for nt, chunks in enumerate(used):
            acc_addr = next_slot("acc", plan.acc_slots) * mt
            loaded = None                  # the weight tile in the PEs: chunks sharing it skip a PRELOAD
            for j, kt in enumerate(chunks):
                if tiling.a_resident:
                    a_addr = a_base + kt * mt
                    if kt not in resident:
                        load_a(m0, rows, kt, a_addr)
                        resident.add(kt)
                else:
                    a_addr = next_slot("a", plan.a_slots) * plan.a_slot_rows
                    load_a(m0, rows, kt, a_addr)
                loaded = matmul(nt, kt, a_addr, acc_addr, rows, j > 0, loaded)
                spread.step()
            store(m0, rows, nt, acc_addr)
        spread.finish()
        if tiling.a_resident and bi + 1 < len(blocks):
            resident = set(range(k_chunks))


def loop_bodies(tiling: GemmTiling, plan: BufferPlan, used: Sequence[Sequence[int]]) -> tuple[list[float], int]:
    """What `codegen.estimate` needs to know of the loops `emit_tiles` runs in a row block:
    the MATMULs of each loop body inside it, outer to inner, on average (a group of column tiles
    and a K-block of it when grouped, else a column tile), and the STOREs after the pass's last
    MATMUL (a group stores all its tiles at its end)."""
    matmuls, tiles = sum(map(len, used)), len(used)
    if tiling.group:
        kb = plan.a_slot_rows // tiling.mt                 # chunks per K-block
        return [matmuls / -(-tiles // tiling.group), kb * min(tiling.group, tiles)], min(tiling.group, tiles)
    return [matmuls / tiles], 1


class _Spread:
    """The LOADs of the next block's A chunks (`prefetch`, `load_a` arguments) spread evenly over
    the `steps` MATMULs of the current one: each `step()` after a MATMUL issues its share, so the
    load queue interleaves them with the weight tiles the next MATMULs wait for (issued a column
    tile's share at a time, a deep K-block queued dozens of A loads ahead of the next weight tile
    and left the array idle)."""

    def __init__(self, load_a, prefetch: list, steps: int):
        self.load_a, self.todo, self.left = load_a, prefetch, max(1, steps)

    def step(self) -> None:
        if self.todo:
            share = -(-len(self.todo) // self.left)
            for args in self.todo[:share]:
                self.load_a(*args)
            del self.todo[:share]
        self.left = max(1, self.left - 1)

    def finish(self) -> None:
        for args in self.todo:
            self.load_a(*args)
        self.todo = []


def _emit_grouped(M: int, tiling: GemmTiling, plan: BufferPlan, used, *, load_a,
                  store, next_slot, matmul) -> None:
    """`emit_tiles` for `tiling.group` > 0: for every block of rows and every group of column
    tiles, the K chunks the group needs in K-blocks of `plan.a_slot_rows // mt` chunks, each
    K-block's A chunks loaded once into one of two A regions (the next K-block's loads spread
    over the MATMULs of the current one, so they overlap them; after a group's last K-block, the
    next group's first), then every column tile of the group sums its chunks of that K-block
    into its own accumulator rows, in the tile's order of `used`; the group's STOREs follow its
    last K-block."""
    mt, G = tiling.mt, tiling.group
    kb = plan.a_slot_rows // mt
    groups = [range(g, min(g + G, len(used))) for g in range(0, len(used), G)]
    kblocks_of = []
    for tiles in groups:
        needed = sorted(set().union(*(used[nt] for nt in tiles)))
        kblocks_of.append([needed[i:i + kb] for i in range(0, len(needed), kb)])
    position: dict[int, dict[int, int]] = {}          # column tile -> chunk -> index in used[nt]
    sums: dict[tuple[int, int], list[list[int]]] = {}

    def chunks_of(gi: int, ki: int) -> list[list[int]]:
        """Per column tile of group gi, its chunks in K-block ki, in the order of `used` (made
        once per K-block, not per row block: a scan of every tile's chunks per K-block was the
        largest part of emitting a late convolution's sample)."""
        got = sums.get((gi, ki))
        if got is None:
            got = []
            for nt in groups[gi]:
                pos = position.get(nt)
                if pos is None:
                    pos = position[nt] = {kt: i for i, kt in enumerate(used[nt])}
                got.append(sorted((kt for kt in kblocks_of[gi][ki] if kt in pos), key=pos.__getitem__))
            sums[gi, ki] = got
        return got
    steps = [(m0, min(mt, M - m0), gi) for m0 in range(0, M, mt) for gi in range(len(groups))]
    a_base = next_slot("a", plan.a_slots) * plan.a_slot_rows
    m0, rows, gi = steps[0]
    for i, kt in enumerate(kblocks_of[gi][0]):
        load_a(m0, rows, kt, a_base + i * mt)
    for si, (m0, rows, gi) in enumerate(steps):
        tiles, kblocks = groups[gi], kblocks_of[gi]
        acc_base = next_slot("acc", plan.acc_slots) * G * mt
        started = set()
        for ki, chunks in enumerate(kblocks):
            where = {kt: a_base + i * mt for i, kt in enumerate(chunks)}
            prefetch = []
            if ki + 1 < len(kblocks):
                nxt = (m0, rows, kblocks[ki + 1])
            elif si + 1 < len(steps):           # the next group's first K-block
                nm0, nrows, ngi = steps[si + 1]
                nxt = (nm0, nrows, kblocks_of[ngi][0])
            else:
                nxt = None
            if nxt is not None:
                a_base = next_slot("a", plan.a_slots) * plan.a_slot_rows
                prefetch = [(nxt[0], nxt[1], kt, a_base + i * mt) for i, kt in enumerate(nxt[2])]
            per_tile = chunks_of(gi, ki)
            spread = _Spread(load_a, prefetch, sum(map(len, per_tile)))
            for nt, own in zip(tiles, per_tile):
                acc_addr = acc_base + (nt - tiles.start) * mt
                loaded = None
                for kt in own:
                    loaded = matmul(nt, kt, where[kt], acc_addr, rows, nt in started, loaded)
                    started.add(nt)
                    spread.step()
            spread.finish()
        for nt in tiles:
            store(m0, rows, nt, acc_base + (nt - tiles.start) * mt)
