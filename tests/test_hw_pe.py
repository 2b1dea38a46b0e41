"""The processing element against a Python model: MAC, pass-through, two weight buffers."""

import numpy as np
import pytest

from systolab.hw.pe import PE, psum_width
from support.amaranth_sim import rejected, simulate as run


def test_pe_mac_and_pass_through():
    """sel_next names the buffer of the next cycle's activation; everything out is registered."""
    dut = PE(width=20)
    rng = np.random.default_rng(0)
    n = 200
    a = rng.integers(-128, 128, n)
    sel = rng.integers(0, 2, n)
    psum = rng.integers(-2**18, 2**18, n)
    w = rng.integers(-128, 128, 2)

    async def testbench(ctx):
        for b in range(2):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_buf, b)
            ctx.set(dut.w_data, int(w[b]))
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        ctx.set(dut.sel_next, int(sel[0]))
        await ctx.tick()
        for t in range(n):
            ctx.set(dut.a_in, int(a[t]))
            ctx.set(dut.sel_next, int(sel[t + 1]) if t + 1 < n else 0)
            ctx.set(dut.psum_in, int(psum[t]))
            assert ctx.get(dut.sel_out) == sel[t]          # the buffer of the activation in the PE
            await ctx.tick()
            assert ctx.get(dut.a_out) == a[t]
            expected = int(psum[t]) + int(a[t]) * int(w[sel[t]])
            wrapped = (expected + 2**19) % 2**20 - 2**19
            assert ctx.get(dut.psum_out) == wrapped

    run(dut, testbench)


def test_pe_weight_write_takes_effect_at_the_edge():
    dut = PE(width=16)
    assert dut.width == 16

    async def testbench(ctx):
        ctx.set(dut.a_in, 3)
        ctx.set(dut.sel_next, 1)
        await ctx.tick()                      # buffer 1 (0) selected for the next cycle
        ctx.set(dut.w_en, 1)
        ctx.set(dut.w_buf, 1)
        ctx.set(dut.w_data, 5)
        await ctx.tick()                      # the product of this cycle used the old weight 0
        assert ctx.get(dut.psum_out) == 0
        ctx.set(dut.w_data, -7)
        await ctx.tick()                      # now buffer 1 holds 5; -7 is written at this edge
        assert ctx.get(dut.psum_out) == 15
        ctx.set(dut.w_en, 0)
        await ctx.tick()
        assert ctx.get(dut.psum_out) == -21
        ctx.set(dut.sel_next, 0)              # buffer 0 was never written
        await ctx.tick()
        assert ctx.get(dut.psum_out) == -21   # this cycle still used buffer 1
        await ctx.tick()
        assert ctx.get(dut.psum_out) == 0
        ctx.set(dut.w_en, 1)                  # a write to the buffer selected next: bypassed
        ctx.set(dut.w_buf, 0)
        ctx.set(dut.w_data, 2)
        await ctx.tick()
        ctx.set(dut.w_en, 0)
        assert ctx.get(dut.psum_out) == 0
        await ctx.tick()
        assert ctx.get(dut.psum_out) == 6

    run(dut, testbench)


@pytest.mark.parametrize("rows, width", [(1, 16), (2, 17), (8, 19), (64, 22)])
def test_psum_width_holds_the_extremes(rows, width):
    assert psum_width(rows) == width
    lo, hi = -2**(width - 1), 2**(width - 1) - 1
    assert lo <= rows * (-128) * 127 and rows * (-128) * (-128) <= hi


def test_pe_arguments_are_checked():
    with rejected(ValueError, r"^width must be an integer >= 16, not 8$"):
        PE(width=8)
    with pytest.raises(ValueError, match=r"^rows must be a power of two >= 1, not 3$"):
        psum_width(3)


def test_logic_product_is_exact_for_every_int8_pair():
    from amaranth.hdl import Module, Signal, signed
    from amaranth.sim import Simulator

    from systolab.hw.pe import logic_product

    a, w = Signal(signed(8)), Signal(signed(8))
    out = Signal(signed(17))
    m = Module()
    m.d.comb += out.eq(logic_product(m, a, w))
    sim = Simulator(m)

    async def testbench(ctx):
        for x in range(-128, 128):
            ctx.set(a, x)
            for y in range(-128, 128):
                ctx.set(w, y)
                assert ctx.get(out) == x * y, (x, y)

    sim.add_testbench(testbench)
    sim.run()


def test_dsp_budget():
    from systolab.hw.pe import DspBudget

    budget = DspBudget(2)
    assert [budget.take() for _ in range(4)] == [True, True, False, False]
    assert budget.in_logic == 2
    with rejected(ValueError, "^dsp_pes must be an integer >= 0, not -1$"):
        DspBudget(-1)
