"""A BERT-base encoder layer (seq 128, hidden 768, 12 heads, FFN 3072; random weights, quantized by
ONNX Runtime's `quantize_static`, QDQ, int8 per-channel weights) on the accelerator: GEMMs on the
array, Softmax / LayerNorm / GELU / residual adds / the 1/sqrt(d) scale on the vector unit.

    .venv/bin/python benchmarks/transformer.py                        # 8x8 and 16x16, performance model
    .venv/bin/python benchmarks/transformer.py --config 16x16 --markdown
    .venv/bin/python benchmarks/transformer.py --seq 16 --hidden 64 --heads 2 --ffn 128 --sim verilator

Per config: cycles, utilization (GEMM MACs / (PEs x cycles)), the share of cycles in the non-GEMM
operators (and per operator type), instructions, the output's cosine similarity with the float
layer next to ONNX Runtime's own int8 result, the max LSB against ONNX Runtime (output, and per
operator on ONNX Runtime's inputs). `--markdown` appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GEMM_OPS = ("Gemm", "MatMul")


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def build(out: Path, seq, hidden, heads, ffn):
    from systolab.codegen.onnx_models import bert_layer, calibration_inputs, quantize

    stem = f"bert_{seq}_{hidden}_{heads}_{ffn}"
    path, xp = out / f"{stem}.onnx", out / f"{stem}_x.npy"
    model = bert_layer(seq, hidden, heads, ffn)
    if not path.is_file():
        quantize(model, path, calibration_inputs(model, 8))
        np.save(xp, calibration_inputs(model, 1, seed=99)[0]["x"])
    return model, path, np.load(xp)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", nargs="+", default=["8x8", "16x16"], help="RxC arrays (lanes = cols)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--ffn", type=int, default=3072)
    p.add_argument("--acc", type=int, default=1024, help="accumulator depth (default 1024)")
    p.add_argument("--sim", default="model", choices=("model", "verilator"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    p.add_argument("--markdown", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    import onnxruntime as ort

    from systolab.codegen.onnx_import import ort_reference
    from systolab.config import config_from_dict
    from systolab.sim.run import run_onnx

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, path, x = build(out, args.seq, args.hidden, args.heads, args.ffn)
    fl = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ort_cos = _cos(ort_reference(path, {"x": x})["y"], fl)
    rows = []
    for c in args.config:
        r, cc = (int(v) for v in c.split("x"))
        cfg = config_from_dict({"array": {"rows": r, "cols": cc}, "vector": {"lanes": cc},
                                "accumulator": {"depth": args.acc}}, source=f"{c}+vector{cc}")
        t0 = time.perf_counter()
        report, outs = run_onnx(cfg, path, {"x": x}, args.sim)
        wall = time.perf_counter() - t0
        acc = [rec for rec in report.layers if rec["where"] == "accelerator"]
        gemm_macs = sum(rec["macs"] for rec in acc if rec["op"] in GEMM_OPS)
        per_op: dict[str, int] = {}
        for rec in acc:
            per_op[rec["op"]] = per_op.get(rec["op"], 0) + (rec["cycles"] or 0)
        non_gemm = sum(v for k, v in per_op.items() if k not in GEMM_OPS)
        cycles = report.cycles
        row = {"config": c, "cycles": cycles, "util": gemm_macs / (r * cc * cycles),
               "ideal": -(-gemm_macs // (r * cc)), "non_gemm": non_gemm / cycles,
               "per_op": {k: v / cycles for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])},
               "insns": report.instructions, "cos": _cos(outs["y"], fl), "ort_cos": ort_cos,
               "lsb": report.ort["max_diff_lsb"], "layer_lsb": report.ort.get("layer_max_lsb"),
               "mismatches": report.mismatches, "wall": wall}
        rows.append(row)
        print(f"{c}: {cycles:,} cycles (GEMM ideal {row['ideal']:,}), utilization {row['util']:.3f}, "
              f"non-GEMM {row['non_gemm']:.3f} of the cycles, {row['insns']:,} instructions, cosine "
              f"{row['cos']:.6f} (ORT int8 {ort_cos:.6f}), max {row['lsb']} LSB vs ORT at the output, "
              f"{row['layer_lsb']} per operator, {row['mismatches']} mismatches, {wall:.0f} s", flush=True)
        print("   share of cycles: " + ", ".join(f"{k} {v:.3f}" for k, v in row["per_op"].items()))
    if args.markdown:
        cmd = "python benchmarks/transformer.py " + " ".join(sys.argv[1:] if argv is None else argv)
        lines = [f"\n## Transformer layer: seq {args.seq}, hidden {args.hidden}, {args.heads} heads, FFN "
                 f"{args.ffn} ({datetime.date.today().isoformat()})\n", f"`{cmd.strip()}` ({args.sim}; "
                 f"accumulator depth {args.acc}, vector lanes = array.cols)\n",
                 "| config | cycles | GEMM ideal | utilization | non-GEMM share | Softmax | LayerNorm | GELU | "
                 "Add | instructions | cosine vs float | ORT int8 cosine | max LSB vs ORT (output / per op) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            po = row["per_op"]
            lines.append(f"| {row['config']} | {row['cycles']:,} | {row['ideal']:,} | {row['util']:.3f} | "
                         f"{row['non_gemm']:.3f} | {po.get('Softmax', 0):.3f} | {po.get('LayerNormalization', 0):.3f} | "
                         f"{po.get('Gelu', 0):.3f} | {po.get('Add', 0):.3f} | {row['insns']:,} | {row['cos']:.6f} | "
                         f"{row['ort_cos']:.6f} | {row['lsb']} / {row['layer_lsb']} |")
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
