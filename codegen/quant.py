"""Integer requantization: the one numpy definition of what the STORE instruction computes.

The functional simulator, the compiler's numpy references and the RTL tests all use
`requantize`; `isa/spec.yaml` (STORE) states the same rule in words for the hardware.
"""

from __future__ import annotations

import math

import numpy as np

from systolab.errors import CompileError

__all__ = ["requantize", "quantize_multiplier", "wrap_int32"]


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap of integers to int32 (the accumulator's arithmetic)."""
    return (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def requantize(acc, bias, mult, shift, zp, relu: bool, round_even: bool = False) -> np.ndarray:
    """int32 accumulators -> int8, per column: ((acc + bias) * mult, rounded >> shift) + zp.

    `acc` is (rows, cols) int32; `bias`, `mult`, `shift`, `zp` broadcast over the columns.
    The shift rounds to the nearest integer; a half rounds up (adds 2**(shift-1) before an
    arithmetic shift) or, with `round_even`, to the even neighbour (as ONNX Runtime's
    float requantization does). `relu` clamps below at the zero point; the result saturates
    to [-128, 127].
    """
    acc = np.asarray(acc, dtype=np.int32)
    x = wrap_int32(acc.astype(np.int64) + np.asarray(bias, dtype=np.int64)).astype(np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), acc.shape[-1:])
    if np.any((shift < 0) | (shift > 63)):
        raise ValueError("requantization shift must be 0..63")
    # int64 product: |x| <= 2**31 and |mult| <= 2**31 keep it exact (at most 2**62)
    p = x * mult
    # (p + 2**(s-1)) >> s for s >= 1, computed as ((p >> (s-1)) + c) >> 1 with c = 1 (the same
    # value, as the RTL's requantizer does it): p + 2**(s-1) overflows int64 at p = 2**62, s = 63.
    # u = p >> (s-1) is odd on a half or above; a tie when no bit below it is set as well, and
    # half-even then takes c = 0 if u >> 1 is even
    s1 = np.maximum(shift - 1, 0)
    halved = np.right_shift(p, s1)
    c = np.ones_like(halved)
    if round_even:
        sticky = (p & (np.left_shift(np.int64(1), s1) - 1)) != 0
        tie = (shift > 0) & ((halved & 1) == 1) & ~sticky
        c = np.where(tie & ((halved & 2) == 0), 0, 1)
    p = np.where(shift > 0, np.right_shift(halved + c, 1), p)
    y = p + np.asarray(zp, dtype=np.int64)
    if relu:
        y = np.maximum(y, np.asarray(zp, dtype=np.int64))
    return np.clip(y, -128, 127).astype(np.int8)


def quantize_multiplier(scale: float) -> tuple[int, int]:
    """A real `scale` >= 0 as (mult, shift) with scale ~= mult / 2**shift, mult < 2**31 and shift
    0..63: 31 significant bits, so the relative error is below 2**-31 (a scale too small for that
    is flushed towards zero with shift 63)."""
    if not (scale >= 0 and math.isfinite(scale)):
        raise CompileError(f"requantization scale must be a finite number >= 0, not {scale!r}")
    if scale == 0:
        return 0, 0
    frac, exp = math.frexp(scale)          # scale = frac * 2**exp, 0.5 <= frac < 1
    mult, shift = round(frac * 2**31), 31 - exp
    if mult == 2**31:
        mult, shift = mult // 2, shift - 1
    if shift < 0:
        raise CompileError(f"requantization scale {scale!r} is too large (at most 2**31)")
    if shift > 63:
        mult, shift = round(scale * 2**63), 63
    return int(mult), int(shift)
