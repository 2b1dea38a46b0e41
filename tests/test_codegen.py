"""The compiler and the functional simulator against numpy, over random shapes and configs."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from systolab.codegen.builder import ProgramBuilder
from systolab.codegen.gemm import KBLOCK_MAX, GemmTiling, _layout, compile_gemm, gemm_reference, random_gemm, schedule_gemm
from systolab.codegen.program import BundleError, Program
from systolab.codegen.quant import quantize_multiplier, requantize
from systolab.config import default_config
from systolab.isa import isa_for
from systolab.sim.functional import FunctionalSim, SimError

from conftest import small_config

CONFIGS = {
    "8x8": default_config(),
    "4x8-small": small_config(4, 8, sp=64, acc=32),
    "8x4-bus8": small_config(8, 4, sp=128, acc=64, bus=8),
    "2x2-bus64": small_config(2, 2, sp=256, acc=128, bus=64, mem_kib=1024),
}


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=15, deadline=None)
@given(M=st.integers(1, 70), K=st.integers(1, 90), N=st.integers(1, 40), seed=st.integers(0, 2**16),
       relu=st.booleans())
def test_gemm_matches_numpy(name, M, K, N, seed, relu):
    cfg = CONFIGS[name]
    g = random_gemm(M, K, N, seed=seed, relu=relu)
    prog = compile_gemm(cfg, g)
    res = FunctionalSim(cfg).run(prog)
    np.testing.assert_array_equal(res.outputs["C"], gemm_reference(g))
    assert res.matmul_rows * cfg.rows * cfg.cols >= g.macs


def test_k_larger_than_scratchpad():
    cfg = CONFIGS["4x8-small"]
    K = 4 * cfg.scratchpad.depth + 3           # the whole K extent never fits on chip
    g = random_gemm(9, K, 11, seed=3)
    res = FunctionalSim(cfg).run(compile_gemm(cfg, g))
    np.testing.assert_array_equal(res.outputs["C"], gemm_reference(g))


def test_tiling_choice_is_respected():
    cfg = default_config()
    g = random_gemm(50, 16, 16, seed=1)
    a = compile_gemm(cfg, g, GemmTiling(mt=8))
    b = compile_gemm(cfg, g)
    assert a.insn_count > b.insn_count
    np.testing.assert_array_equal(FunctionalSim(cfg).run(a).outputs["C"], gemm_reference(g))


def test_a_grouped_tiling_streams_k_in_blocks_a_deeper_scratchpad_does_not_change():
    """Column tiles in groups over K-blocks of KBLOCK_MAX chunks (the next block's A loads spread
    over the MATMULs of the current one): bit-exact, and the same program on a scratchpad four
    times deeper (the plan does not grow with it, so configs that differ in depth share estimates)."""
    cfg = default_config()
    deep = cfg.replace({"scratchpad.depth": 4 * cfg.scratchpad.depth}, source="deep")
    g = random_gemm(50, 25 * cfg.rows, 8 * cfg.cols, seed=4)       # 25 chunks: 7 K-blocks
    tiling = GemmTiling(16, False, 2)
    shape = g.shape
    assert tiling.plan(cfg, shape) == tiling.plan(deep, shape)
    assert tiling.plan(cfg, shape).a_slot_rows == KBLOCK_MAX * 16
    programs = []
    for c in (cfg, deep):            # the instructions (the encoded words' field widths differ)
        b = ProgramBuilder(c)
        schedule_gemm(b, c, shape, tiling, _layout(b, c, shape, None), relu=False)
        programs.append(b.instructions())
    assert programs[0] == programs[1]
    assert sum(op == "LOAD" for op, _ in programs[0]) > 8 * 7          # weights and A in K-blocks
    np.testing.assert_array_equal(FunctionalSim(cfg).run(compile_gemm(cfg, g, tiling)).outputs["C"], gemm_reference(g))


def test_requantize_rules():
    acc = np.array([[10, -10, 3, 5, 2**31 - 1, -2**31]], dtype=np.int32)
    # shift 1 rounds half up: 5/2 -> 3, -5/2 -> -2 (arithmetic shift of -5+1)
    out = requantize(acc, 0, 1, 1, 0, False)
    assert out.tolist() == [[5, -5, 2, 3, 127, -128]]
    assert requantize(acc, 0, 1, 0, 0, True).tolist() == [[10, 0, 3, 5, 127, 0]]
    assert requantize(acc, 0, 1, 0, -20, True).tolist() == [[-10, -20, -17, -15, 127, -20]]
    # bias wraps in int32
    assert requantize(np.array([[2**31 - 1]], np.int32), 1, 1, 0, 0, False).tolist() == [[-128]]
    mult, shift = quantize_multiplier(0.3)
    assert abs(mult / 2**shift - 0.3) < 1e-9 and 2**30 <= mult < 2**31


def test_token_underflow_is_caught():
    cfg = small_config()
    isa = isa_for(cfg)
    prog = compile_gemm(cfg, random_gemm(4, 4, 4))
    bad = Program(prog.config_hash, [isa.encode("PRELOAD", sp_addr=0, pop_prev=1)] + prog.words,
                  prog.image, prog.insn_addr, prog.regions, prog.outputs, prog.meta)
    with pytest.raises(SimError, match=r"^instruction 0 \(PRELOAD .*\): token underflow: pop_prev with no token from the load queue$"):
        FunctionalSim(cfg).run(bad)


def test_misaligned_load_is_caught():
    cfg = small_config(bus=16)
    isa = isa_for(cfg)
    prog = compile_gemm(cfg, random_gemm(4, 4, 4))
    bad = Program(prog.config_hash, [isa.encode("LOAD", dram_addr=2, dram_stride=4, rows=1, sp_addr=0)],
                  prog.image, prog.insn_addr, prog.regions, prog.outputs, prog.meta)
    with pytest.raises(SimError, match=r"must be multiples of 4$"):
        FunctionalSim(cfg).run(bad)


def test_bundle_round_trip_and_config_check(tmp_path):
    cfg = small_config()
    g = random_gemm(5, 7, 9, seed=2)
    prog = compile_gemm(cfg, g)
    path = tmp_path / "p.npz"
    prog.save(path)
    back = Program.load(path, cfg)
    assert back.words == prog.words and back.insn_addr == prog.insn_addr
    np.testing.assert_array_equal(back.image, prog.image)
    np.testing.assert_array_equal(FunctionalSim(cfg).run(back).outputs["C"], gemm_reference(g))
    other = small_config(rows=8)
    with pytest.raises(BundleError, match=rf"p.npz: program was compiled for config {cfg.compile_hash}, not for"):
        Program.load(path, other)
    with pytest.raises(BundleError, match="recompile it for this config"):
        FunctionalSim(other).run(prog)
