"""The integer vector kernels (codegen/kernels.py) against ONNX Runtime's QDQ result of each single
operator on random inputs, on the functional simulator: at most 2 output LSB for Softmax,
LayerNormalization and GELU (the targets), exact or 1 LSB for the linear ones; the cosine
similarity with the float operator is reported next to ONNX Runtime's own."""

from pathlib import Path

import numpy as np
import pytest

from systolab.codegen.kernels import IR, emit_ir, kernel_reference, run_ir, softmax_kernel
from systolab.codegen.network import QParams
from systolab.codegen.onnx_import import ort_reference
from systolab.codegen.onnx_models import calibration_inputs, quantize, single_op
from systolab.config import config_from_dict
from systolab.sim.run import run_onnx

CFG = config_from_dict({"array": {"rows": 8, "cols": 8}, "vector": {"lanes": 8}}, source="v8.yaml")

#: operator -> (max LSB against ONNX Runtime, input gain, extra operators to quantize)
CASES = {
    "Softmax": (2, 3.0, ()),
    "LayerNormalization": (2, 1.0, ()),
    "Gelu": (2, 2.0, ("Gelu",)),
    "Div": (1, 1.0, ("Div",)),
    "Mul": (1, 1.0, ()),
}


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("op", list(CASES))
def test_single_operator_against_onnxruntime(op, tmp_path: Path):
    import onnxruntime as ort

    lsb, gain, extra = CASES[op]
    model = single_op(op, (24, 64), seed=1)
    cal = [{"x": v["x"] * gain} for v in calibration_inputs(model, 8, seed=2)]
    path = quantize(model, tmp_path / f"{op}.onnx", cal, extra_ops=extra)
    x = calibration_inputs(model, 1, seed=3)[0]["x"] * gain
    report, outs = run_onnx(CFG, path, {"x": x}, "func")
    assert report.mismatches == 0                     # the simulator equals the kernel reference
    assert report.ort["max_diff_lsb"] <= lsb, report.ort
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ours, theirs = _cos(outs["y"], ref), _cos(ort_reference(path, {"x": x})["y"], ref)
    print(f"{op}: max {report.ort['max_diff_lsb']} LSB vs ORT, cosine {ours:.6f} (ORT {theirs:.6f})")
    assert ours > theirs - 2e-4


def test_reference_is_the_simulator():
    """`run_ir` on numpy and the emitted VECTOR instructions on the functional simulator agree."""
    from systolab.codegen.builder import ProgramBuilder
    from systolab.sim.functional import FunctionalSim

    rng = np.random.default_rng(0)
    k = softmax_kernel(16, QParams(0.05, 0, "int8"), QParams(1 / 256, -128, "int8"))
    ir = k.ir(8, 3)
    x = rng.integers(-128, 128, (ir.bufs["IN0"][1], 8))
    state = {n: np.zeros((r, 8), np.int64) for n, (_, r) in ir.bufs.items()}
    state["IN0"] = x.copy()
    run_ir(ir, state, 8)
    b = ProgramBuilder(CFG)
    base, top = {}, {"acc": 0, "sp": 0}
    for name, (space, r) in ir.bufs.items():
        base[name], top[space] = top[space], top[space] + r
    sim = FunctionalSim(CFG)
    sim.reset(np.zeros(CFG.mem_bytes, np.uint8))
    sim.sp[base["IN0"]:base["IN0"] + len(x)] = x
    emit_ir(b, ir, base)
    for op, fields in b.instructions():
        sim.step(sim.isa.decode(sim.isa.encode(op, **fields)))
    for name, (space, r) in ir.bufs.items():
        if space == "acc":
            np.testing.assert_array_equal(sim.acc[base[name]:base[name] + r], state[name], err_msg=name)
    y = kernel_reference(k, [x.reshape(2, 3, 8).transpose(1, 0, 2).reshape(3, 16)], 8)
    assert y.shape == (3, 16)


def test_kernels_need_whole_rows():
    from systolab.errors import CompileError
    k = softmax_kernel(12, QParams(0.05, 0, "int8"), QParams(1 / 256, -128, "int8"))
    with pytest.raises(CompileError, match=r"^softmax: 12 features are not a multiple of array.cols \(8\)"):
        k.ir(8, 1)
    assert isinstance(IR(1, 1), IR)
