"""int8 GEMM for one accelerator config: `C = requant(A @ B + bias)` for any M, K, N >= 1.

Memory layout (all row-major, zero padded; R = array.rows, C = array.cols):

- `A`:  M x Kp int8, Kp = K rounded up to R. A K-chunk of rows is one 2-D strided LOAD.
- `Bt`: Np x Kp int8, B transposed (N x K, like ONNX `transB` or conv weights), Np = N rounded
  up to C. A weight tile (C rows of R) is one LOAD, already in the PRELOAD layout.
- `params`: per column tile, four rows of C int32 (bias, multiplier, shift, zero point).
- `C`:  M x Np int8; the region exposes the M x N part.

Schedule: the scratchpad and the accumulator are each split in two halves used alternately
(double buffering). For each output tile (Mt rows x C columns) the K chunks are streamed: LOAD the
A chunk and the weight tile into one scratchpad half, PRELOAD them into one weight buffer, MATMUL
into one accumulator half (accumulating after the first chunk), and after the last chunk STORE the
tile. Dependency tokens make the load, compute and store queues overlap: loads of the next chunk
run while the current one computes, the PRELOAD of the next chunk while the current MATMUL streams,
and the STORE of a tile while the next tile computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from systolab.errors import UserError

from .builder import ProgramBuilder, round_up
from .program import Program
from .quant import quantize_multiplier, requantize, wrap_int32

__all__ = ["GemmTiling", "Gemm", "compile_gemm", "gemm_reference", "random_gemm"]


class CompileError(UserError):
    pass


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


@dataclass(frozen=True)
class GemmTiling:
    """How a GEMM is cut for the buffers: output tiles of `mt` rows."""

    mt: int

    @classmethod
    def default(cls, config, gemm_shape: tuple[int, int, int]) -> "GemmTiling":
        M, _, _ = gemm_shape
        half_sp = config.scratchpad.depth // 2
        half_acc = config.accumulator.depth // 2
        mt = min(M, half_acc, half_sp - config.cols)
        if mt < 1:
            raise CompileError(f"{config.source}: scratchpad.depth {config.scratchpad.depth} cannot hold "
                               f"two weight tiles of {config.cols} rows plus activations")
        return cls(mt)


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


def compile_gemm(config, g: Gemm, tiling: GemmTiling | None = None, *, name: str = "gemm") -> Program:
    cfg = config
    R, C = cfg.rows, cfg.cols
    M, K, N = g.shape
    if min(M, K, N) < 1:
        raise CompileError(f"GEMM dimensions must be at least 1, not {M}x{K}x{N}")
    tiling = tiling or GemmTiling.default(cfg, g.shape)
    Kp, Np = round_up(K, R), round_up(N, C)
    kt_count, nt_count = Kp // R, Np // C
    mt = tiling.mt
    half_sp, half_acc = cfg.scratchpad.depth // 2, cfg.accumulator.depth // 2
    if mt + C > half_sp or mt > half_acc:
        raise CompileError(f"tile of {mt} rows does not fit the buffers of {cfg.source}")

    b = ProgramBuilder(cfg)
    a_reg = b.alloc("A", (M, K), "int8", row_stride=Kp, data=g.A)
    bt_reg = b.alloc("Bt", (N, K), "int8", row_stride=Kp, data=g.B.T)
    params = np.zeros((nt_count, 4, C), dtype=np.int32)
    for nt in range(nt_count):
        cols = slice(nt * C, min(N, (nt + 1) * C))
        n = cols.stop - cols.start
        params[nt, 0, :n], params[nt, 1, :n] = g.bias[cols], g.mult[cols]
        params[nt, 2, :n], params[nt, 3, :n] = g.shift[cols], g.zp[cols]
    p_reg = b.alloc("params", (nt_count * 4, C), "int32", data=params.reshape(-1, C))
    c_reg = b.alloc("C", (M, N), "int8", row_stride=Np)

    step = 0      # K-chunk steps: scratchpad half and weight buffer = step % 2
    tile = 0      # output tiles: accumulator half = tile % 2
    for m0 in range(0, M, mt):
        rows = min(mt, M - m0)
        for nt in range(nt_count):
            acc_base = (tile % 2) * half_acc
            for kt in range(kt_count):
                sp_base = (step % 2) * half_sp
                first_k, last_k = kt == 0, kt == kt_count - 1
                # activations: rows m0.. of the K chunk; weights: C rows of Bt
                b.emit("LOAD", dram_addr=a_reg.addr + m0 * Kp + kt * R, dram_stride=Kp, rows=rows,
                       sp_addr=sp_base, pop_next=int(step >= 2))
                b.emit("LOAD", dram_addr=bt_reg.addr + nt * C * Kp + kt * R, dram_stride=Kp, rows=C,
                       sp_addr=sp_base + mt, push_next=1)
                b.emit("PRELOAD", sp_addr=sp_base + mt, wbuf=step % 2, pop_prev=1)
                b.emit("MATMUL", sp_addr=sp_base, acc_addr=acc_base, rows=rows, wbuf=step % 2,
                       accumulate=int(not first_k), push_prev=1,
                       pop_next=int(first_k and tile >= 2), push_next=int(last_k))
                step += 1
            b.emit("STORE", dram_addr=c_reg.addr + m0 * Np + nt * C, dram_stride=Np, rows=rows,
                   acc_addr=acc_base, param_addr=p_reg.addr + nt * 4 * cfg.acc_row_bytes,
                   relu=int(g.relu), pop_prev=1, push_prev=1)
            tile += 1

    meta = {"workload": name, "kind": "gemm", "M": M, "K": K, "N": N, "macs": g.macs,
            "relu": g.relu, "tiling": {"mt": mt}}
    return b.finish(("C",), meta)
