"""VECTOR in the functional simulator: operand fetch (scratchpad int8 / accumulator int32,
strides, immediates), accumulate, column reductions, and the errors the hardware cannot report."""

import numpy as np
import pytest

from systolab.codegen.builder import ProgramBuilder
from systolab.codegen.intops import isqrt, recip, vector_op
from systolab.config import config_from_dict
from systolab.isa import isa_for
from systolab.sim.functional import FunctionalSim, SimError

CFG = config_from_dict({"array": {"rows": 4, "cols": 4}, "vector": {"lanes": 2}}, source="v.yaml")


def _sim(cfg=CFG):
    sim = FunctionalSim(cfg)
    sim.reset(np.zeros(cfg.mem_bytes, np.uint8))
    return sim


def _run(sim, text):
    isa = isa_for(sim.cfg)
    for word in isa.assemble(text):
        sim.step(isa.decode(word))


def test_operands_strides_immediates_and_accumulate():
    sim = _sim()
    sim.sp[0:3] = [[1, -2, 3, -4], [5, 6, -7, 8], [0, 0, 0, 1]]
    sim.acc[10] = [100, -100, 7, 0]
    _run(sim, "VECTOR func=ADD dst=0 src1=0 src1_sp=1 src1_stride=1 src2=0xfffffff6 src2_imm=1 rows=3\n"
              "VECTOR func=MUL dst=4 src1=0 src1_stride=1 src2=10 rows=3 shift=1 round=1\n"
              "VECTOR func=MAX dst=4 src1=0 src1_sp=1 src1_stride=1 src2=0 src2_imm=1 rows=3 accumulate=1")
    a = np.array([[1, -2, 3, -4], [5, 6, -7, 8], [0, 0, 0, 1]])
    np.testing.assert_array_equal(sim.acc[0:3], a - 10)
    mul = np.floor(((a - 10) * np.array([100, -100, 7, 0])) / 2 + 0.5).astype(np.int64)
    np.testing.assert_array_equal(sim.acc[4:7], np.maximum(mul, np.maximum(a, 0)))


def test_reductions():
    sim = _sim()
    sim.acc[0:3] = [[1, 9, -3, 4], [2, -8, 6, 0], [7, 1, 1, 1]]
    _run(sim, "VECTOR func=RMAX dst=4 src1=0 src1_stride=1 rows=3\n"
              "VECTOR func=CSUM dst=8 src1=0 src1_stride=1 rows=3\n"
              "VECTOR func=CMAX dst=9 src1=0 src1_stride=1 rows=3")
    np.testing.assert_array_equal(sim.acc[4:7], [[9] * 4, [6] * 4, [7] * 4])
    np.testing.assert_array_equal(sim.acc[8], [10, 2, 4, 5])
    np.testing.assert_array_equal(sim.acc[9], [7, 9, 6, 4])


def test_clamp_negsel_shifts():
    lo_hi = ((-3) & 0xFFFF) | (5 << 16)
    a = np.array([[-9, -3, 0, 9]])
    np.testing.assert_array_equal(vector_op("CLAMP", a, np.full_like(a, lo_hi)), [[-3, -3, 0, 5]])
    np.testing.assert_array_equal(vector_op("NEGSEL", a, np.full_like(a, 4)), [[-4, -4, 4, 4]])
    np.testing.assert_array_equal(vector_op("SHR", np.array([[-5, 5]]), np.array([[1, 1]]), round=1), [[-2, 3]])
    np.testing.assert_array_equal(vector_op("SHL", np.array([[3]]), np.array([[33]])), [[6]])


def test_isqrt_and_recip_are_exact():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(0, 2**31, 10000), [0, 1, 2, 3, 4, 2**31 - 1, (1 << 30), 46340**2]])
    r = isqrt(a)
    assert np.all(r * r <= a) and np.all((r + 1) * (r + 1) > a)
    d = rng.integers(1, 2**31, 1000)
    np.testing.assert_array_equal(recip(d, 40), np.minimum((1 << 40) // d, 2**31 - 1))
    assert recip(np.array([0, -5]), 10).tolist() == [2**31 - 1] * 2


def test_errors():
    sim = _sim()
    with pytest.raises(SimError, match="overlap src1"):
        _run(sim, "VECTOR func=ADD dst=1 src1=0 src1_stride=1 src2=0 src2_imm=1 rows=3")
    _run(sim, "VECTOR func=ADD dst=0 src1=0 src1_stride=1 src2=1 src2_imm=1 rows=3")   # in place is fine
    plain = config_from_dict({"array": {"rows": 4, "cols": 4}}, source="p.yaml")
    with pytest.raises(SimError, match="^p.yaml has no vector unit"):
        _run(_sim(plain), "VECTOR func=ADD dst=0 src1=0 rows=1")


def test_config_lanes_checked():
    from systolab.errors import ConfigError
    with pytest.raises(ConfigError, match=r"^x.yaml: vector.lanes must be at most array.cols \(4\), not 8$"):
        config_from_dict({"array": {"rows": 4, "cols": 4}, "vector": {"lanes": 8}}, source="x.yaml")
    assert "vector" not in config_from_dict({}).to_dict()     # no section: today's accelerator, same hash


def test_builder_tokens_for_vector():
    b = ProgramBuilder(CFG)
    b.emit("LOAD", dram_addr=0, dram_stride=4, rows=2, sp_addr=0)
    v = b.emit("VECTOR", func=0, dst=0, src1=0, src1_sp=1, src1_stride=1, src2=0, src2_imm=1, rows=2)
    b.emit("STORE", dram_addr=256, dram_stride=4, rows=2, acc_addr=0, param_addr=512)
    ops = b.instructions()
    assert ops[0][1].get("push_next") and ops[v][1].get("pop_prev") and ops[v][1].get("push_next")
    assert ops[2][1].get("pop_prev")
