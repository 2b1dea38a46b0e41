"""The systolic array against numpy: skew/de-skew latency, weight buffers, back-to-back tiles."""

import numpy as np
import pytest

from systolab.hw.array import SystolicArray
from support.amaranth_sim import rejected, simulate as run


def simulate(dut, schedule, cycles):
    """Drive the array cycle by cycle from `schedule(t) -> dict of inputs`; returns `out` per cycle."""
    outs = []
    assert dut.psum_width == 16 + dut.rows.bit_length() - 1

    async def testbench(ctx):
        for t in range(cycles):
            ctx.set(dut.w_en, 0)
            for name, value in schedule(t).items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            outs.append(np.array(ctx.get(dut.out), dtype=np.int64))   # value at cycle t + 1

    run(dut, testbench)
    return outs


def write_weights(dut, W, buf):
    """Schedule entries writing weight matrix W (rows x cols) into `buf`, one column per cycle."""
    return [{"w_en": 1, "w_buf": buf, "w_col": j, "w_data": [int(x) for x in W[:, j]]}
            for j in range(dut.cols)]


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 2), (4, 4), (4, 8), (8, 4)])
def test_array_matches_numpy(rows, cols):
    dut = SystolicArray(rows=rows, cols=cols)
    assert dut.latency == rows + cols
    rng = np.random.default_rng(rows * 10 + cols)
    W = rng.integers(-128, 128, (2, rows, cols))
    n = 24
    A = rng.integers(-128, 128, (n, rows))
    A[0] = -128                                    # the extreme products
    sel = rng.integers(0, 2, n)
    setup = write_weights(dut, W[0], 0) + write_weights(dut, W[1], 1)

    def schedule(t):
        if t < len(setup):
            return setup[t]
        r = t - len(setup)
        return {"act": [int(x) for x in A[r]], "sel": int(sel[r])} if r < n else {}

    outs = simulate(dut, schedule, len(setup) + n + dut.latency)
    for r in range(n):
        got = outs[len(setup) + r + dut.latency - 1]      # row presented at cycle s -> out at s + latency
        np.testing.assert_array_equal(got, A[r] @ W[sel[r]])


def test_back_to_back_tiles_switch_weight_buffers_exactly():
    """4x8: tiles of a few rows each, tile k using weight buffer k % 2. The weights of tile k are
    written (column j at cycle u + j) into its buffer as early as the array's timing allows:
    after the last row of tile k - 2 (same buffer) has read the old weights (presented at s, it
    reads column j of PE row i at s + 1 + i + j, so the writes are safe iff s + rows <= u), and
    tile k's first row follows as soon as its weights are there (a row at s uses them iff
    s >= u). With tiles of at least `cols` rows this is gapless: rows of different buffers
    follow each other in consecutive cycles."""
    rows, cols = 4, 8
    dut = SystolicArray(rows=rows, cols=cols)
    rng = np.random.default_rng(7)
    tile_rows = [8, 9, 8, 3, 1, 5, 2, 8, 10, 1]
    tiles = len(tile_rows)
    Ws = rng.integers(-128, 128, (tiles, rows, cols))
    acts = [rng.integers(-128, 128, (m, rows)) for m in tile_rows]

    row_at, write_at = {}, {}
    write_free = 0                    # first cycle the weight write port is free
    last_row = {}                     # tile -> cycle of its last row
    next_row = 0                      # first cycle a row may be presented
    gapless = 0
    for k, m in enumerate(tile_rows):
        u = max(write_free, last_row[k - 2] + rows if k >= 2 else 0)
        for j in range(cols):
            write_at[u + j] = (k, j)
        write_free = u + cols
        s = max(next_row, u)
        gapless += k > 0 and s == next_row
        for r in range(m):
            row_at[s + r] = (k, r)
        last_row[k] = s + m - 1
        next_row = s + m
    assert gapless >= 4               # the test does cover back-to-back buffer switches

    def schedule(t):
        inputs = {}
        if t in row_at:
            k, r = row_at[t]
            inputs.update(act=[int(x) for x in acts[k][r]], sel=k % 2)
        if t in write_at:
            k, j = write_at[t]
            inputs.update(w_en=1, w_buf=k % 2, w_col=j, w_data=[int(x) for x in Ws[k][:, j]])
        return inputs

    outs = simulate(dut, schedule, max(row_at) + dut.latency + 1)
    for c, (k, r) in row_at.items():
        np.testing.assert_array_equal(outs[c + dut.latency - 1], acts[k][r] @ Ws[k],
                                      err_msg=f"tile {k} row {r}")


def test_one_cycle_earlier_weight_write_is_caught():
    """The bound used above is tight: writing tile 2's weights one cycle earlier corrupts the last
    row of tile 0 (so the test above would catch an off-by-one in the interlock)."""
    rows, cols = 4, 4
    dut = SystolicArray(rows=rows, cols=cols)
    W0 = np.full((rows, cols), 3)
    W2 = np.full((rows, cols), -5)
    a = np.arange(1, rows + 1)
    setup = write_weights(dut, W0, 0)
    s = len(setup)                                  # the only row of tile 0
    u = s + rows - 1                                # one cycle too early
    sched = {t: e for t, e in enumerate(setup)}
    sched[s] = {"act": [int(x) for x in a], "sel": 0}
    for j in range(cols):
        sched.setdefault(u + j, {}).update(w_en=1, w_buf=0, w_col=j,
                                           w_data=[int(x) for x in W2[:, j]])
    outs = simulate(dut, lambda t: sched.get(t, {}), s + dut.latency + 1)
    got = outs[s + dut.latency - 1]
    assert not np.array_equal(got, a @ W0)


def test_array_arguments_are_checked():
    with rejected(ValueError, r"^rows must be a power of two >= 1, not 3$"):
        SystolicArray(rows=3, cols=4)
    with rejected(ValueError, r"^cols must be a power of two >= 1, not 0$"):
        SystolicArray(rows=4, cols=0)
