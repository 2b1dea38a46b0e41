"""Integer requantization: the one numpy definition of what the STORE instruction computes.

The functional simulator, the compiler's numpy references and the RTL tests all use
`requantize`; `isa/spec.yaml` (STORE) states the same rule in words for the hardware.
"""

from __future__ import annotations

import math

import numpy as np

from systolab.errors import CompileError

__all__ = ["requantize", "quantize_multiplier", "float32_multiplier", "round_significant", "wrap_int32",
           "FLOAT32_BITS"]

#: significant bits of a float32 (the STORE's `fp32` rounding keeps this many)
FLOAT32_BITS = 24


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap of integers to int32 (the accumulator's arithmetic)."""
    return (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def round_significant(v, bits: int = FLOAT32_BITS) -> np.ndarray:
    """Integers (int64) rounded to `bits` significant bits, halves to even: what converting
    them to a float with a `bits`-bit significand does (float32: 24), as integers. |v| < 2**63."""
    v = np.asarray(v, dtype=np.int64)
    a = np.abs(v).astype(np.uint64)
    # bit length of |v|, exactly: the count of shifts that leave it non-zero
    msb = sum((np.right_shift(a, np.uint64(i)) != 0).astype(np.int64) for i in range(64)) - 1
    k = np.maximum(msb - (bits - 1), 0).astype(np.uint64)
    one = np.uint64(1)
    keep = np.right_shift(a, k) & one
    half = np.where(k > 0, np.left_shift(one, np.maximum(k, one) - one), np.uint64(0))
    r = np.where(k > 0, np.left_shift(np.right_shift(a + half - (k > 0) + keep, k), k), a)
    r = r.astype(np.int64)
    return np.where(v < 0, -r, r)


def requantize(acc, bias, mult, shift, zp, relu: bool, round_even: bool = False,
               fp32: bool = False) -> np.ndarray:
    """int32 accumulators -> int8, per column: ((acc + bias) * mult, rounded >> shift) + zp.

    `acc` is (rows, cols) int32; `bias`, `mult`, `shift`, `zp` broadcast over the columns.
    The shift rounds to the nearest integer; a half rounds up (adds 2**(shift-1) before an
    arithmetic shift) or, with `round_even`, to the even neighbour. `fp32` is ONNX Runtime's
    float32 requantization (MLAS: the int32 converted to float, times the float scale, rounded
    half to even): x and then the product are rounded to 24 significant bits (halves to even)
    and the shift rounds halves to even, so with `mult` a float32 significand (< 2**24,
    `float32_multiplier`) the result is ORT's bit for bit. `relu` clamps below at the zero
    point; the result saturates to [-128, 127].
    """
    acc = np.asarray(acc, dtype=np.int32)
    x = wrap_int32(acc.astype(np.int64) + np.asarray(bias, dtype=np.int64)).astype(np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), acc.shape[-1:])
    if np.any((shift < 0) | (shift > 63)):
        raise ValueError("requantization shift must be 0..63")
    if fp32:
        x = round_significant(x)
        round_even = True
    # int64 product: |x| <= 2**31 and |mult| <= 2**31 keep it exact (at most 2**62)
    p = x * mult
    if fp32:
        p = round_significant(p)
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


def float32_multiplier(scale) -> tuple[int, int] | None:
    """A float32 `scale` > 0 as its significand and exponent, scale == mult / 2**shift exactly
    (mult < 2**24, for the STORE's `fp32` rounding); None when the shift would leave 0..63."""
    s = float(np.float32(scale))
    if not (s > 0 and math.isfinite(s)):
        return None
    frac, exp = math.frexp(s)              # s = frac * 2**exp, 0.5 <= frac < 1
    mult, shift = int(frac * 2**FLOAT32_BITS), FLOAT32_BITS - exp
    while mult % 2 == 0 and shift > 0:     # the shortest exact form
        mult, shift = mult // 2, shift - 1
    return (mult, shift) if 0 <= shift <= 63 else None


def ort_add_constants(sa: float, za: int, sb: float, zb: int, sy: float, zy: int) -> tuple[float, float, float]:
    """The constants of ONNX Runtime's int8 QLinearAdd (MLAS, `qladd_avx2.cpp`), float32 values:
    the ratios ``ra = sa / sy`` and ``rb = sb / sy`` and the fixed part
    ``f = zy - (ra * za + rb * zb)`` (the compiler contracts the inner sum into an FMA). ORT
    then computes ``rne(fma(a, ra, fma(b, rb, f)))`` per element, saturated. The fixed part's
    rounding shifts a whole layer's near-ties; `add_layer` uses these constants and adds exactly.
    Checked against ORT over every int8 pair for 30 random scales (0 of 1,966,080 differ with
    the FMA formula)."""
    f32 = np.float32
    ra, rb = f32(sa) / f32(sy), f32(sb) / f32(sy)
    inner = f32(float(ra) * za + float(f32(rb * f32(zb))))      # fma(ra, za, rb * zb)
    return float(ra), float(rb), float(f32(zy) - inner)


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
