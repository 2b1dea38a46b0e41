"""How close systolab's int8 ResNets end to ONNX Runtime: per model and input size, the output's
max LSB difference and count of off-by-one elements, and the first layer whose output tensor
differs from ORT's value of the same tensor (`ort_max_lsb` / `ort_off_by_one` of the per-layer
records). Two rounding rules of the STORE: half to even (what an ONNX model compiles to) and
half up (the rule before `round_even`, on systolab's numpy reference, which the functional
simulator matches bit for bit).

    python benchmarks/ort_agreement.py                       # ResNet-18 and -50 at 64x64, func
    python benchmarks/ort_agreement.py --depth 18 --size 32 96 --no-write

Models: `codegen.onnx_models.resnet(depth, size=size)` quantized by ONNX Runtime's
`quantize_static` (QDQ, per channel) over `calibration_inputs(model, 2)`; the input is
`calibration_inputs(model, 1, seed=7)`. Writes a section to benchmarks/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from systolab.codegen.network import network_reference
from systolab.codegen.onnx_import import load_onnx, ort_tensors
from systolab.codegen.onnx_models import calibration_inputs, quantize, resnet
from systolab.config import default_config
from systolab.sim.run import run_onnx

RESULTS = Path(__file__).with_name("RESULTS.md")


def _out_diff(net, ours: dict, theirs: dict) -> np.ndarray:
    name = net.outputs[0]
    spec, _ = net.output_tensors[name]
    return np.abs(ours[spec].astype(np.int16) - theirs[spec].astype(np.int16))


def measure(depth: int, size: int, sim: str, tmp: Path, lanes: int = 0) -> dict:
    model = resnet(depth, size=size)
    path = quantize(model, tmp / f"resnet{depth}_{size}.onnx", calibration_inputs(model, 2))
    x = calibration_inputs(model, 1, seed=7)[0]
    values = {"memory.size_kib": 65536, **({"vector.lanes": lanes} if lanes else {})}
    cfg = default_config().replace(values)
    t0 = time.perf_counter()
    # with a vector unit every layer that has a vector lowering runs there (the add is exact)
    report, _ = run_onnx(cfg, path, x, sim, vector="vector" if lanes else "auto")
    run_s = time.perf_counter() - t0
    layers = [r for r in report.layers if r["where"] == "accelerator"]
    first = next((r["name"] for r in layers if r["ort_max_lsb"]), "-")
    # half up: the same network with every STORE rounding halves up, on the numpy reference
    net = load_onnx(path, input_shapes={"x": x["x"].shape})
    _, theirs = ort_tensors(path, net, x)
    for layer in net.layers:
        layer.ops = [replace(op, round_even=False) for op in layer.ops]
    up, _ = network_reference(net, x)
    d_up = _out_diff(net, up, theirs)
    return {"model": f"ResNet-{depth}", "size": size, "sim": sim, "elements": report.ort["elements"],
            "max": report.ort["max_diff_lsb"], "off": report.ort["off_by_one"],
            "max_up": int(d_up.max()), "off_up": int(np.count_nonzero(d_up == 1)),
            "first": first, "worst": max(r["ort_max_lsb"] or 0 for r in layers),
            "bit_exact": report.mismatches == 0, "run_s": run_s, "vector": lanes,
            "off_layers": {r["name"]: [r["op"], r["unit"], r["ort_max_lsb"], r["ort_off_by_one"]]
                           for r in layers if r["ort_max_lsb"]}}


def table(rows: list[dict]) -> str:
    out = ["| model | input | sim | vector unit | output max LSB (half even) | off by one | output max LSB (half up) | off by one | "
           "first layer off | worst layer max LSB | func = numpy |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['size']}x{r['size']} | {r['sim']} | "
                   f"{str(r['vector']) + ' lanes' if r['vector'] else 'none'} | {r['max']} | {r['off']} / {r['elements']} | "
                   f"{r['max_up']} | {r['off_up']} / {r['elements']} | {r['first']} | {r['worst']} | "
                   f"{'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, nargs="+", default=[18, 50])
    ap.add_argument("--size", type=int, nargs="+", default=[64])
    ap.add_argument("--sim", default="func")
    ap.add_argument("--vector", type=int, default=0, metavar="LANES",
                    help="a config with a vector unit of LANES lanes (pools and adds on it)")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for depth in args.depth:
            for size in args.size:
                rows.append(measure(depth, size, args.sim, Path(tmp), args.vector))
                print(f"ResNet-{depth} {size}x{size}: {rows[-1]}", file=sys.stderr)
    text = table(rows)
    print(text)
    if not args.no_write:
        cmd = "python benchmarks/ort_agreement.py " + " ".join(argv if argv is not None else sys.argv[1:])
        section = (f"\n## Agreement with ONNX Runtime ({datetime.date.today().isoformat()})\n\n"
                   f"`{cmd.strip()}`\n\n{text}\n")
        with RESULTS.open("a") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
