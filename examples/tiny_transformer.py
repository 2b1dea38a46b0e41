"""Build a small transformer encoder layer, quantize it with ONNX Runtime, run it on the
accelerator's simulators and print how well it agrees.

    python examples/tiny_transformer.py                  # writes examples/out/..., runs func + model
    python examples/tiny_transformer.py --verilator      # and the generated RTL (native Verilator)
    systolab run configs/transformer_8x8.yaml --model examples/out/tiny_transformer.onnx \\
        --input examples/out/tiny_transformer_x.npy --sim func

The float layer (codegen/onnx_models.py `bert_layer`: Q/K/V projections, heads split by Reshape
and Transpose, Q.K^T / sqrt(d), Softmax, P.V, output projection, residual Add, LayerNorm, FFN with
GELU, residual Add, LayerNorm) is built in code with random weights and quantized by
`onnxruntime.quantization.quantize_static` (QDQ, int8 per-channel weights). Everything runs on the
accelerator: the GEMMs on the array, the rest on the vector unit (codegen/kernels.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from systolab.codegen.onnx_import import ort_reference
from systolab.codegen.onnx_models import bert_layer, calibration_inputs, quantize
from systolab.config import load_config
from systolab.sim.run import run_onnx


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main(argv=None) -> int:
    here = Path(__file__).parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(here / "out"), help="output directory (default examples/out)")
    p.add_argument("--config", default=str(here.parent / "configs" / "transformer_8x8.yaml"))
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="weights and data (default 0)")
    p.add_argument("--verilator", action="store_true", help="also run the generated RTL (native Verilator)")
    args = p.parse_args(argv)

    import onnxruntime as ort

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config)
    model = bert_layer(args.seq, args.hidden, args.heads, args.ffn, seed=args.seed)
    onnx.save(model, out / "tiny_transformer_float.onnx")
    path = quantize(model, out / "tiny_transformer.onnx", calibration_inputs(model, 8, seed=args.seed + 1))
    x = calibration_inputs(model, 1, seed=args.seed + 1000)[0]["x"]
    np.save(out / "tiny_transformer_x.npy", x)
    fl = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    theirs = ort_reference(path, {"x": x})["y"]
    print(f"model {path} (seq {args.seq}, hidden {args.hidden}, {args.heads} heads, FFN {args.ffn}) on {cfg.describe()}")
    print(f"  ONNX Runtime int8 vs float: cosine {_cos(theirs, fl):.6f}")
    outputs = {}
    for sim in ("func", "model") + (("verilator",) if args.verilator else ()):
        report, outs = run_onnx(cfg, path, {"x": x}, sim)
        outputs[sim] = outs["y"]
        cyc = f", {report.cycles:,} cycles, utilization {report.utilization:.3f}" if report.cycles else ""
        print(f"  {sim:9s}: cosine {_cos(outs['y'], fl):.6f} vs float, max {report.ort['max_diff_lsb']} LSB vs "
              f"ONNX Runtime, {report.mismatches} mismatches vs systolab's reference{cyc}")
    same = all(np.array_equal(v, outputs["func"]) for v in outputs.values())
    print(f"  simulators agree bit for bit: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
