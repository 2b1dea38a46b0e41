"""The requantizer against `codegen.quant.requantize` (the numpy definition of STORE) and the
exact integer rule of isa/spec.yaml, one row per cycle."""

import numpy as np
import pytest

from systolab.codegen.quant import requantize
from systolab.hw.requant import Requantizer
from support.amaranth_sim import rejected, simulate

INT32 = (-2**31, 2**31 - 1)


def exact(acc, bias, mult, shift, zp, relu):
    """STORE for one column with Python integers (no intermediate wrap but the int32 bias add)."""
    x = (acc + bias + 2**31) % 2**32 - 2**31
    p = x * mult
    if shift > 0:
        p = (p + (1 << (shift - 1))) >> shift
    y = p + zp
    if relu:
        y = max(y, zp)
    return max(-128, min(127, y))


def run_rows(cols, batches):
    """Feed each batch (params, relu, acc rows) back to back, one row per cycle; returns the
    outputs per batch. Parameters change only once the previous batch has left the pipeline."""
    dut = Requantizer(cols=cols)
    outs = []

    async def testbench(ctx):
        for (bias, mult, shift, zp), relu, rows in batches:
            for name, v in (("bias", bias), ("mult", mult), ("shift", shift), ("zp", zp)):
                ctx.set(getattr(dut, name), [int(x) for x in v])
            ctx.set(dut.relu, int(relu))
            got = []
            for t in range(len(rows) + dut.latency):
                ctx.set(dut.in_valid, t < len(rows))
                if t < len(rows):
                    ctx.set(dut.acc, [int(x) for x in rows[t]])
                await ctx.tick()
                if ctx.get(dut.out_valid):
                    assert t + 1 - dut.latency == len(got)      # row k out exactly `latency` later
                    got.append(list(ctx.get(dut.out)))
            outs.append(np.array(got, dtype=np.int64))

    simulate(dut, testbench)
    return outs


def random_batch(rng, cols, rows, *, relu, shift=None):
    """Parameters that keep a good share of outputs inside int8 (and some saturating)."""
    acc = rng.integers(-2**20, 2**20, (rows, cols))
    acc[rng.random((rows, cols)) < 0.1] = rng.choice(INT32, 1)[0]
    bias = rng.integers(-2**14, 2**14, cols)
    mult = rng.integers(2**29, 2**31, cols) * rng.choice([1, -1], cols)
    if shift is None:
        shift = rng.integers(36, 48, cols)
    zp = rng.integers(-20, 20, cols)
    return (bias, mult, np.broadcast_to(shift, (cols,)).copy(), zp), relu, acc


@pytest.mark.parametrize("cols", [4, 8])
def test_requantizer_matches_numpy(cols):
    rng = np.random.default_rng(cols)
    batches = [random_batch(rng, cols, 30, relu=relu) for relu in (False, True, False, True)]
    batches.append(random_batch(rng, cols, 10, relu=False, shift=0))         # shift 0: no rounding
    batches.append(random_batch(rng, cols, 10, relu=True, shift=1))          # rounds half up
    outs = run_rows(cols, batches)
    inside = 0
    for ((bias, mult, shift, zp), relu, acc), got in zip(batches, outs):
        expect = requantize(acc.astype(np.int32), bias, mult, shift, zp, relu)
        np.testing.assert_array_equal(got, expect)
        inside += np.count_nonzero((expect > -128) & (expect < 127))
    saturated = sum(np.count_nonzero(np.abs(o) >= 127) for o in outs)
    assert inside > 100 and saturated > 20          # both regimes are covered


def test_requantizer_extremes_are_exact():
    """int32 corners, shifts 0..63, zero points outside int8: exact integer arithmetic."""
    rng = np.random.default_rng(11)
    cols = 4
    corners = [-2**31, -2**31 + 1, -1, 0, 1, 2**31 - 1]
    batches = []
    for shift in (0, 1, 2, 31, 32, 33, 62, 63):
        for relu in (False, True):
            bias = rng.choice(corners, cols)
            mult = rng.choice(corners, cols)
            zp = rng.choice([-2**31, -200, -128, 0, 5, 127, 300, 2**31 - 1], cols)
            acc = rng.choice(corners, (6, cols))
            batches.append(((bias, mult, np.full(cols, shift), zp), relu, acc))
    outs = run_rows(cols, batches)
    for ((bias, mult, shift, zp), relu, acc), got in zip(batches, outs):
        for r in range(len(acc)):
            expect = [exact(int(acc[r, j]), int(bias[j]), int(mult[j]), int(shift[j]),
                            int(zp[j]), relu) for j in range(cols)]
            assert list(got[r]) == expect, (acc[r], bias, mult, shift, zp, relu)


def test_requantizer_arguments_are_checked():
    with rejected(ValueError, r"^cols must be a positive integer, not 0$"):
        Requantizer(cols=0)
