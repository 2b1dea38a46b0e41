"""The vector unit's operations on int32 lanes, in numpy: their executable semantics.

`isa/spec.yaml` (`vector_ops`) says in words what each `VECTOR.func` computes; this module is the
same in code, used by the functional simulator (`sim/functional.py`) and by the compiler's integer
kernels (`codegen/kernels.py`) for their numpy references, so the RTL, the simulator and the
reference agree by construction. Everything is int64 inside and wraps to int32 on the way out.

    >>> vector_op("MUL", np.array([3, -3]), np.array([5, 5]), shift=1, round=1)
    array([ 8, -7], dtype=int32)
"""

from __future__ import annotations

import numpy as np

from systolab.isa import VECTOR_OPS

__all__ = ["vector_op", "combine", "sra", "wrap32", "INT32_MAX", "ROW_REDUCTIONS", "COLUMN_REDUCTIONS",
           "isqrt", "recip"]

INT32_MAX = (1 << 31) - 1
#: reductions along a row (every lane gets the result) and down the rows (one row out)
ROW_REDUCTIONS = frozenset({"RSUM", "RMAX"})
COLUMN_REDUCTIONS = frozenset({"CSUM", "CMAX"})


def wrap32(x) -> np.ndarray:
    """Two's-complement wrap of integers to int32."""
    return np.asarray(x, dtype=np.int64).astype(np.uint64).astype(np.uint32).view(np.int32)


def sra(x, s, round: int) -> np.ndarray:
    """Arithmetic right shift by `s` (array or int, 0..63), a half rounded up when `round`."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if round:
        bias = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
        # x + bias cannot overflow int64 for the int32 x 32-bit products the unit forms
        return np.right_shift(x + bias, s)
    return np.right_shift(x, s)


def isqrt(a) -> np.ndarray:
    """floor(sqrt(a)) for a >= 0, 0 for a < 0 (exact: integer Newton from above)."""
    a = np.maximum(np.asarray(a, dtype=np.int64), 0)
    x = np.floor(np.sqrt(a.astype(np.float64))).astype(np.int64)
    # correct the float estimate by at most a step either way (exact for a < 2**31)
    x = np.where(x * x > a, x - 1, x)
    x = np.where((x + 1) * (x + 1) <= a, x + 1, x)
    return x


def recip(a, shift: int) -> np.ndarray:
    """min(2**31 - 1, floor(2**shift / a)) for a >= 1; 2**31 - 1 for a <= 0."""
    a = np.asarray(a, dtype=np.int64)
    safe = np.maximum(a, 1)
    if shift < 63:
        q = np.floor_divide(np.int64(1) << np.int64(shift), safe)
    else:                                   # 2**63 does not fit int64: the quotient saturates anyway
        q = np.full_like(safe, INT32_MAX)
    return np.where(a >= 1, np.minimum(q, INT32_MAX), INT32_MAX)


def vector_op(func: str, a, b, *, shift: int = 0, round: int = 0) -> np.ndarray:
    """The result of `VECTOR.func` on operand rows `a` and `b` (int arrays of the same shape,
    rows x lanes; for the column reductions the rows are reduced into one row)."""
    if func not in VECTOR_OPS:
        raise ValueError(f"unknown vector operation {func!r}; valid: {', '.join(VECTOR_OPS)}")
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if func == "ADD":
        y = a + b
    elif func == "SUB":
        y = a - b
    elif func == "MUL":
        y = sra(a * b, shift, round)
    elif func == "MAX":
        y = np.maximum(a, b)
    elif func == "MIN":
        y = np.minimum(a, b)
    elif func == "CLAMP":
        b32 = b.astype(np.uint64).astype(np.uint32)
        lo = (b32 & 0xFFFF).astype(np.uint16).view(np.int16).astype(np.int64)
        hi = (b32 >> np.uint32(16)).astype(np.uint16).view(np.int16).astype(np.int64)
        y = np.minimum(np.maximum(a, lo), hi)
    elif func == "SHL":
        y = np.left_shift(a, b & 31)
    elif func == "SHR":
        y = sra(a, b & 31, round)
    elif func == "ABS":
        y = np.abs(a)
    elif func == "NEGSEL":
        y = np.where(a < 0, -b, b)
    elif func == "RSUM":
        y = np.broadcast_to(wrap32(a.sum(axis=-1, keepdims=True)).astype(np.int64), a.shape)
    elif func == "RMAX":
        y = np.broadcast_to(a.max(axis=-1, keepdims=True), a.shape)
    elif func == "CSUM":
        y = a.sum(axis=0, keepdims=True)
    elif func == "CMAX":
        y = a.max(axis=0, keepdims=True)
    elif func == "RECIP":
        y = recip(a, shift)
    elif func == "ISQRT":
        y = isqrt(a)
    else:                                   # pragma: no cover - every spec operation is above
        raise NotImplementedError(func)
    return wrap32(y)


def combine(func: str, old, y) -> np.ndarray:
    """`accumulate`: the new destination row from the old one and the result `y`."""
    old = np.asarray(old, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if func in ("MAX", "CMAX", "RMAX"):
        return wrap32(np.maximum(old, y))
    if func == "MIN":
        return wrap32(np.minimum(old, y))
    return wrap32(old + y)
