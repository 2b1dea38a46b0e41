"""`hw/requant.py` (Requantizer) against `codegen.quant.requantize` (the numpy definition of
STORE), an exact Python-integer model of isa/spec.yaml, and a table of hand-derived corners.

(`tests/test_hw_store.py` streams random batches back to back; here: a dense sweep of every
small value and shift, the corners one by one, and rows with bubbles.)
"""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from systolab.codegen.quant import requantize
from systolab.hw.requant import Requantizer
from support.amaranth_sim import rejected, run_cycles, simulate

I32_MIN, I32_MAX = -2**31, 2**31 - 1


def rational_round(p: int, shift: int, even: bool) -> int:
    """p / 2**shift to the nearest integer from the exact rational: a half up, or to even."""
    q = Fraction(p, 2**shift)
    lo = math.floor(q)
    if q - lo != Fraction(1, 2):
        return lo + (q - lo > Fraction(1, 2))
    return lo + (lo % 2 if even else 1)


def round24(v: int) -> int:
    """v rounded to 24 significant bits, halves to even, in Python integers."""
    k = max(abs(v).bit_length() - 24, 0)
    return v if k == 0 else rational_round(v, k, True) * 2**k


def spec(acc, bias, mult, shift, zp, relu, even=False, fp32=False):
    """STORE for one column, in Python integers, as isa/spec.yaml words it: the bias add wraps
    to int32, everything after it is exact (but for fp32's roundings to 24 significant bits)."""
    x = (acc + bias - I32_MIN) % 2**32 + I32_MIN
    if fp32:
        x, even = round24(x), True
    p = x * mult
    if fp32:
        p = round24(p)
    if shift > 0:
        p = rational_round(p, shift, even)
    y = p + zp
    if relu:
        y = max(y, zp)
    return max(-128, min(127, y))


def run(cols, params, relu, rows, valid=None, even=False, fp32=False):
    """Stream `rows` (each `cols` int32) through a Requantizer with fixed `params`
    (bias, mult, shift, zp: `cols` each); `valid[t]` says whether a row is offered in cycle t
    (default: back to back). Returns (cycles with out_valid, rows out): the caller checks that
    row k comes out exactly `latency` cycles after it went in."""
    dut = Requantizer(cols=cols)
    assert dut.cols == cols
    rows = [[int(v) for v in r] for r in rows]
    valid = [True] * len(rows) if valid is None else list(valid)
    assert sum(valid) == len(rows)
    issue = [t for t, v in enumerate(valid) if v]
    row_at = dict(zip(issue, rows))
    out = {}

    async def testbench(ctx):
        for name, v in zip(("bias", "mult", "shift", "zp"), params):
            ctx.set(getattr(dut, name), [int(x) for x in v])
        ctx.set(dut.relu, int(relu))
        ctx.set(dut.round_even, int(even))
        ctx.set(dut.fp32, int(fp32))

        def drive(ctx, t):
            ctx.set(dut.in_valid, t < len(valid) and valid[t])
            if t in row_at:
                ctx.set(dut.acc, row_at[t])
            else:
                ctx.set(dut.acc, [0x5A5A5A5A] * cols)     # not valid: must not come out

        def probe(ctx, t):
            if ctx.get(dut.out_valid):
                out[t] = [int(v) for v in ctx.get(dut.out)]

        await run_cycles(ctx, len(valid) + dut.latency + 2, drive=drive, probe=probe)

    simulate(dut, testbench)
    L = Requantizer.LATENCY
    assert dut.latency == L == 10                            # the documented pipeline depth
    assert sorted(out) == [t + L for t in issue]             # row k leaves L cycles after it entered
    return np.array([out[t + L] for t in issue], dtype=np.int64).reshape(len(rows), cols)


def check(cols, params, relu, rows, got, even=False, fp32=False):
    rows = np.asarray(rows, dtype=np.int64)
    ref = requantize(rows.astype(np.int32), *params, relu, round_even=even, fp32=fp32)
    np.testing.assert_array_equal(got, ref)
    exact = [[spec(int(rows[r, j]), *(int(p[j]) for p in params), relu, even, fp32) for j in range(cols)]
             for r in range(len(rows))]
    np.testing.assert_array_equal(got, exact)


# Hand-derived corners: (acc, bias, mult, shift, zp, relu) -> out. The rounding adds 2**(s-1)
# and shifts arithmetically: halves round up (towards +inf), so -2.5 -> -2 and 2.5 -> 3.
CORNERS = [
    # shift 0: no rounding at all, the product itself
    ((100, 0, 1, 0, 0, 0), 100),
    ((-100, 0, 1, 0, 0, 0), -100),
    ((7, 0, -3, 0, 1, 0), -20),                   # 7 * -3 + 1
    # ties at shift 1 and 2
    ((5, 0, 1, 1, 0, 0), 3),                      # 2.5 -> 3
    ((-5, 0, 1, 1, 0, 0), -2),                    # -2.5 -> -2
    ((3, 0, 1, 1, 0, 0), 2),                      # 1.5 -> 2
    ((-3, 0, 1, 1, 0, 0), -1),                    # -1.5 -> -1
    ((-1, 0, 1, 1, 0, 0), 0),                     # -0.5 -> 0
    ((1, 0, 1, 1, 0, 0), 1),                      # 0.5 -> 1
    ((-10, 0, 1, 2, 0, 0), -2),                   # -2.5 -> -2
    ((6, 0, 1, 2, 0, 0), 2),                      # 1.5 -> 2
    ((-7, 0, 1, 2, 0, 0), -2),                    # -1.75 -> -2
    ((-9, 0, 1, 2, 0, 0), -2),                    # -2.25 -> -2
    # rounding of a product whose low bits all matter: 3 * 2**20 + 2**19 - 1 just under a half
    ((3 * 2**20 + 2**19 - 1, 0, 1, 20, 0, 0), 3),
    ((3 * 2**20 + 2**19, 0, 1, 20, 0, 0), 4),
    ((-(3 * 2**20 + 2**19), 0, 1, 20, 0, 0), -3),
    # the largest shifts, with the largest products: |x * mult| <= 2**62
    ((I32_MIN, 0, I32_MIN, 63, 0, 0), 1),         # (2**62 + 2**62) >> 63 = 1
    ((I32_MIN, 0, I32_MIN, 62, 0, 0), 1),         # 2**62 / 2**62 = 1 exactly
    ((I32_MIN, 0, I32_MIN, 61, 0, 0), 2),         # (2**62 + 2**60) >> 61 = 2
    ((I32_MAX, 0, I32_MAX, 63, 0, 0), 0),         # (2**62 - 2**32 + 1 + 2**62) < 2**63
    ((I32_MAX, 0, I32_MAX, 62, 0, 0), 1),         # 0.99999... + 0.5 -> 1
    ((I32_MIN, 0, I32_MAX, 62, 0, 0), -1),        # -1 + 2**-31 + 0.5 -> floor(-0.4999) = -1
    ((I32_MIN, 0, I32_MAX, 63, 0, 0), 0),         # -0.5 + 2**-32 + 0.5 -> 0
    ((I32_MIN, 0, 1, 31, 0, 0), -1),              # -2**31 / 2**31 = -1 exactly
    ((I32_MIN, 0, 1, 32, 0, 0), 0),               # -0.5 -> 0
    ((I32_MIN, 0, 1, 33, 0, 0), 0),               # -0.25 -> 0
    # the bias add wraps to int32 before the multiply
    ((I32_MAX, 1, 1, 31, 0, 0), -1),              # x = -2**31: -1, not +1
    ((I32_MIN, -1, 1, 31, 0, 0), 1),              # x = 2**31 - 1: 0.99999... -> 1
    ((I32_MIN, I32_MIN, 1, 0, 0, 0), 0),          # x = 0
    # saturation at both ends, also of an int32-overflowing y = p + zp
    ((127, 0, 1, 0, 0, 0), 127),
    ((128, 0, 1, 0, 0, 0), 127),
    ((-128, 0, 1, 0, 0, 0), -128),
    ((-129, 0, 1, 0, 0, 0), -128),
    ((120, 0, 1, 0, 10, 0), 127),                 # the zero point pushes it over
    ((I32_MAX, 0, I32_MAX, 0, I32_MAX, 0), 127),  # 2**62 + 2**31: far above int32
    ((I32_MIN, 0, I32_MAX, 0, I32_MIN, 0), -128),
    ((0, 0, 0, 0, I32_MIN, 0), -128),
    ((0, 0, 0, 0, I32_MAX, 0), 127),
    # ReLU clamps below at the zero point, before saturating
    ((-50, 0, 1, 0, 3, 1), 3),
    ((-50, 0, 1, 0, 3, 0), -47),
    ((50, 0, 1, 0, 3, 1), 53),
    ((-50, 0, 1, 0, 200, 1), 127),                # max(150, 200) saturates
    ((-150, 0, 1, 0, -200, 1), -128),             # max(-350, -200) = -200 saturates
    ((-5, 0, 1, 1, -2, 1), -2),                   # -2 + -2 = -4 < -2
]


def test_reference_agrees_with_the_hand_table():
    """The numpy reference the functional simulator uses, checked on the corners first."""
    for (acc, bias, mult, shift, zp, relu), want in CORNERS:
        assert spec(acc, bias, mult, shift, zp, relu) == want, (acc, bias, mult, shift, zp, relu)
        got = requantize(np.array([[acc]], np.int32), [bias], [mult], [shift], [zp], bool(relu))
        assert int(got[0, 0]) == want, (acc, bias, mult, shift, zp, relu)


@pytest.mark.parametrize("relu", [0, 1])
def test_hand_table(relu):
    """Each corner in its own column (parameters differ per column), one row of accumulators."""
    corners = [c for c in CORNERS if c[0][5] == relu]
    cols = len(corners)
    params = [[c[0][k] for c in corners] for k in range(1, 5)]
    got = run(cols, params, relu, [[c[0][0] for c in corners]])
    assert list(got[0]) == [want for _, want in corners]


@pytest.mark.parametrize("relu, zp", [(0, 0), (1, -3)])
def test_every_small_value_at_every_small_shift(relu, zp):
    """Exhaustive over x = acc + bias in [-1024, 1024) for shifts 0..8 and multipliers +-1, +-3:
    every tie of those shifts, both signs, and saturation on both sides."""
    combos = list(itertools.product(range(9), (1, -1, 3, -3)))
    cols = len(combos)
    shift = [s for s, _ in combos]
    mult = [m for _, m in combos]
    params = [[-24] * cols, mult, shift, [zp] * cols]
    acc = np.repeat(np.arange(-1000, 1048)[:, None], cols, axis=1)   # x = acc - 24
    got = run(cols, params, relu, acc)
    check(cols, params, relu, acc, got)
    lowest = zp if relu else -128                # ReLU clamps at the zero point
    assert got.min() == lowest and got.max() == 127


# Round half to even, where it differs from half up: (acc, shift) -> out, multiplier 1, no bias.
EVEN_CORNERS = [
    ((5, 1), 2), ((-5, 1), -2), ((3, 1), 2), ((-3, 1), -2), ((1, 1), 0), ((-1, 1), 0),
    ((7, 1), 4), ((-7, 1), -4),                   # 3.5 -> 4, -3.5 -> -4
    ((-10, 2), -2), ((10, 2), 2), ((6, 2), 2), ((-6, 2), -2),
    ((11, 2), 3), ((-11, 2), -3),                 # 2.75, not a tie
    ((3 * 2**20 + 2**19, 20), 4), ((5 * 2**20 + 2**19, 20), 6), ((2 * 2**20 + 2**19, 20), 2),
    ((2 * 2**20 + 2**19 + 1, 20), 3),             # a bit below the half: not a tie
    ((I32_MIN, 32), 0),                           # -0.5 -> 0
    ((I32_MIN + 2**30, 31), 0),                   # -0.5 -> 0
    ((-3 * 2**29, 30), -2),                       # -1.5 -> -2
]


def test_round_half_even_formula_exhaustive():
    """requantize(round_even) against the rational definition for every x in [-4096, 4096) at
    shifts 0..12, and against the integer form (p + 2**(s-1) - 1 + ((p >> s) & 1)) >> s."""
    x = np.arange(-4096, 4096, dtype=np.int64)
    for s in range(13):
        got = requantize(x[:, None].astype(np.int32), 0, 1, s, 0, False, round_even=True)[:, 0]
        want = np.clip([rational_round(int(v), s, True) for v in x], -128, 127)
        np.testing.assert_array_equal(got, want)
        if s:
            alt = (x + 2**(s - 1) - 1 + ((x >> s) & 1)) >> s
            np.testing.assert_array_equal(got, np.clip(alt, -128, 127))
        up = requantize(x[:, None].astype(np.int32), 0, 1, s, 0, False)[:, 0]
        np.testing.assert_array_equal(up, np.clip([rational_round(int(v), s, False) for v in x], -128, 127))
    # the largest products: (-2**31)**2 = 2**62 at shifts 61..63 (2, 1, 0.5 -> 0)
    big = np.array([[I32_MIN]], np.int32)
    assert [int(requantize(big, 0, I32_MIN, s, 0, False, round_even=True)[0, 0]) for s in (61, 62, 63)] == [2, 1, 0]
    assert int(requantize(big, 0, I32_MIN, 63, 0, False)[0, 0]) == 1


def test_even_hand_table():
    """Each half-even corner in its own column, on the RTL."""
    cols = len(EVEN_CORNERS)
    for (acc, s), want in EVEN_CORNERS:
        assert spec(acc, 0, 1, s, 0, 0, even=True) == want, (acc, s)
    params = [[0] * cols, [1] * cols, [s for (_, s), _ in EVEN_CORNERS], [0] * cols]
    got = run(cols, params, 0, [[a for (a, _), _ in EVEN_CORNERS]], even=True)
    assert list(got[0]) == [want for _, want in EVEN_CORNERS]


@pytest.mark.parametrize("relu, zp", [(0, 0), (1, -3)])
def test_every_small_value_at_every_small_shift_half_even(relu, zp):
    """The exhaustive sweep of `test_every_small_value_at_every_small_shift` with round_even."""
    combos = list(itertools.product(range(9), (1, -1, 3, -3)))
    cols = len(combos)
    params = [[-24] * cols, [m for _, m in combos], [s for s, _ in combos], [zp] * cols]
    acc = np.repeat(np.arange(-1000, 1048)[:, None], cols, axis=1)
    got = run(cols, params, relu, acc, even=True)
    check(cols, params, relu, acc, got, even=True)
    up = requantize(acc.astype(np.int32), *params, relu)
    assert np.count_nonzero(got != up) > 100          # the ties really went the other way


@pytest.mark.parametrize("seed", range(2))
def test_random_full_range_with_bubbles(seed):
    """Random int32 accumulators and parameters over their whole ranges, every shift 0..63,
    rows offered with random gaps: the gaps come out as gaps and every row is exact."""
    rng = np.random.default_rng(seed)
    cols, n = 8, 160
    for relu in (0, 1):
        bias = rng.integers(I32_MIN, I32_MAX, cols, endpoint=True)
        mult = rng.integers(I32_MIN, I32_MAX, cols, endpoint=True)
        shift = rng.permutation(64)[:cols]
        zp = rng.integers(-300, 300, cols)
        params = [bias, mult, shift, zp]
        # magnitudes spread over all bit lengths, so some outputs land inside int8
        acc = rng.integers(-2**31, 2**31, (n, cols)) >> rng.integers(0, 32, (n, cols))
        acc[rng.random((n, cols)) < 0.05] = I32_MIN
        acc[rng.random((n, cols)) < 0.05] = I32_MAX
        valid = [True] * n + [False] * (n // 2)
        rng.shuffle(valid)
        valid[0] = True
        for even in (False, True):
            got = run(cols, params, relu, acc, valid, even=even)
            check(cols, params, relu, acc, got, even=even)


def test_requantizer_arguments_are_checked():
    for bad in (0, -1, 2.0, "4"):
        with rejected(ValueError, rf"^cols must be a positive integer, not {bad!r}$"):
            Requantizer(cols=bad)


def test_fp32_is_onnx_runtimes_float32_requantization():
    """fp32 with float32 scales as (significand, shift): the hardware equals numpy's float32
    arithmetic (float(x) * scale, rounded half to even: MLAS's requantization) and the exact
    integer model, on random accumulators of every magnitude and on the corners of a
    significand's rounding (x = 2**31 - 1 becomes 2**31, ties at the 24th bit)."""
    from systolab.codegen.quant import float32_multiplier

    rng = np.random.default_rng(32)
    cols = 4
    scales = np.array([3.0517578e-05, 0.0123456, 0.73, 1.9e-7], np.float32)
    mult, shift = (np.array(v, np.int64) for v in zip(*(float32_multiplier(s) for s in scales)))
    assert np.all(mult < 2**24) and np.all(mult * np.exp2(-shift.astype(float)) == scales)
    zp = np.array([0, -3, 5, 127], np.int64)
    bias = np.array([0, 1000, -7, 2**30], np.int64)
    corners = [I32_MAX, I32_MIN, 2**24 + 1, 2**24 + 3, -(2**24 + 1), 2**25 + 2, 2**25 + 6, 2**24 - 1, 0, 1, -1]
    rows = [[c] * cols for c in corners]
    rows += [list(rng.integers(-2**e, 2**e, cols)) for e in (8, 16, 24, 28, 31) for _ in range(12)]
    params = (bias, mult, shift, zp)
    got = run(cols, params, False, rows, fp32=True)
    check(cols, params, False, rows, got, fp32=True)
    x = (np.asarray(rows, np.int64) + bias).astype(np.int32)       # wraps, as the STORE does
    f = x.astype(np.float32) * scales
    ort = np.clip(np.rint(np.clip(f, -128 - zp, 127 - zp)) + zp, -128, 127)
    np.testing.assert_array_equal(got, ort)
    # where they differ: float32(2**25 + 2) is 2**25 (a tie at the 24th bit, to even), and
    # 2**25 / 2**26 is a tie to 0; the exact (2**25 + 2) / 2**26 rounds to 1
    one = ([0], [1], [26], [0])
    assert run(1, one, False, [[2**25 + 2]], fp32=True).tolist() == [[0]]
    assert run(1, one, False, [[2**25 + 2]], even=True).tolist() == [[1]]
