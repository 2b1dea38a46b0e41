"""Real networks on the accelerator: ResNets and MobileNetV2 built in code (random weights,
quantized by ONNX Runtime's `quantize_static`), run on the performance model and on the native RTL.

    .venv/bin/python benchmarks/networks.py                                  # ResNet-18 at 224, 8x8 and 16x16
    .venv/bin/python benchmarks/networks.py --net resnet18:64 --config 8x8 --markdown
    .venv/bin/python benchmarks/networks.py --net resnet50:224 --config 16x16 --no-rtl
    .venv/bin/python benchmarks/networks.py --net mobilenetv2:224 --config 8x8 --no-rtl --vector 8

`--net` takes any built-in network (`codegen.onnx_models.BUILTIN`) as NAME:SIZE. For each network
x config it prints: cycles on the model and on the RTL (the hardware counter of the network run
as one program; per layer, the differences of the STAMPs after the layers), utilization (all MACs over PEs x cycles, pool/add/FC included), the SCALE-Sim stall-free
weight-stationary cycles of the same convolution and FC layers (no memory stalls, convs only; a
depthwise conv is one GEMM per channel), compile / model / RTL wall seconds, instructions, the
external memory the network needs, the model's error against the RTL (network and worst layer)
and the agreement with ONNX Runtime (max LSB). `--markdown` appends the table to
benchmarks/RESULTS.md with the date and the command. Nothing is downloaded; the models are cached
under the output folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def build(net: str, out: Path) -> tuple[Path, Path]:
    """The quantized model and an input for `name:size` (e.g. resnet18:224), built once."""
    from systolab.codegen.onnx_models import builtin_model

    return builtin_model(net, out)


def gemm_shapes(model_path: Path) -> dict[str, tuple[int, int, int, int]]:
    """(M, K, N, G) of every Conv and Gemm node of the float graph behind the quantized model: G
    independent GEMMs of M x K by K x N. A grouped conv is one GEMM per group over its channels
    (a depthwise 3x3: C GEMMs of pixels x 9 by 9 x 1), a dense conv or a Gemm G = 1."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(str(model_path)))
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    inits = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}

    def weight_shape(name):
        while name not in inits and name in producer:        # through DequantizeLinear
            name = producer[name].input[0]
        return inits.get(name)

    out = {}
    for node in m.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        w = weight_shape(node.input[1])
        y = dims.get(node.output[0])
        if w is None or not y:
            continue
        if node.op_type == "Conv":
            group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
            out[node.name] = (int(np.prod(y[2:])) * y[0], int(np.prod(w[1:])), w[0] // group, group)
        else:
            out[node.name] = (y[0], w[1], w[0], 1)
    return out


def bench_config(label: str, vector: int | str = 0):
    """configs/default.yaml with the array `RxC` of `label` (and `vector` lanes when not 0;
    "cols": as many lanes as the array has columns), and the label the tables print for it."""
    from systolab.config import default_config

    rows, cols = map(int, label.split("x"))
    values = {"array.rows": rows, "array.cols": cols}
    vector = cols if vector == "cols" else int(vector)
    if vector:
        values["vector.lanes"] = vector
        label = f"{label}+v{vector}"
    return default_config().replace(values, source=label), label


def run_one(net: str, label: str, *, rtl: bool, out: Path, vector: int = 0) -> dict:
    from systolab.metrics import scalesim_ws_cycles
    from systolab.sim.run import run_onnx

    cfg, label = bench_config(label, vector)
    rows, cols = cfg.rows, cfg.cols
    model_path, x_path = build(net, out)
    x = {"x": np.load(x_path)}
    shapes = gemm_shapes(model_path)
    scalesim = sum(G * scalesim_ws_cycles(M, K, N, rows, cols) for M, K, N, G in shapes.values())
    t0 = time.perf_counter()
    model, _ = run_onnx(cfg, model_path, x, "model", compare_ort=False)
    model_wall = time.perf_counter() - t0
    row = {"net": net, "config": label, "macs": model.macs, "model_cycles": model.cycles,
           "model_util": model.utilization, "scalesim_cycles": scalesim,
           "scalesim_util": sum(G * M * K * N for M, K, N, G in shapes.values()) / (rows * cols * scalesim),
           "compile_s": None, "model_s": model_wall,
           "model_wall_s": model_wall, "instructions": model.instructions,
           "memory_bytes": model.extra["memory_bytes"],
           "by_op": _by_op(model.layers)}
    if rtl:
        t0 = time.perf_counter()
        r, _ = run_onnx(cfg, model_path, x, "verilator", compare_ort=True)
        by_name = {layer["name"]: layer for layer in model.layers}
        errors = [(layer["cycles"] and (by_name[layer["name"]]["cycles"] - layer["cycles"]) / layer["cycles"],
                   layer["name"]) for layer in r.layers if layer["where"] == "accelerator"]
        worst = max(errors, key=lambda e: abs(e[0]))
        row.update(rtl_cycles=r.cycles, rtl_util=r.utilization, rtl_s=r.timings["sim_s"],
                   compile_s=r.timings["compile_s"], instructions=r.instructions,
                   rtl_wall_s=time.perf_counter() - t0, status=r.status, mismatches=r.mismatches,
                   model_error=(model.cycles - r.cycles) / r.cycles, worst_layer_error=worst[0],
                   worst_layer=worst[1], ort_max_lsb=r.ort["max_diff_lsb"],
                   counters={k: r.counters[k] for k in ("load_busy", "mem_reads", "compute_wait")},
                   layers=[{"name": layer["name"], "op": layer["op"], "unit": layer["unit"],
                            "rtl": layer["cycles"], "model": by_name[layer["name"]]["cycles"]}
                           for layer in r.layers if layer["where"] == "accelerator"])
    return row


def _by_op(layers: list[dict]) -> dict:
    """Model cycles per ONNX operator (and on which unit: "+vector" when on the vector unit)."""
    out: dict[str, int] = {}
    for layer in layers:
        if layer["where"] == "accelerator":
            key = layer["op"] + ("+vector" if layer.get("unit") == "vector" else "")
            out[key] = out.get(key, 0) + layer["cycles"]
    return out


def table(rows: list[dict]) -> str:
    head = ("| network | config | MACs | RTL cycles | RTL util | model cycles | model err | worst layer err | "
            "SCALE-Sim WS cycles | SCALE-Sim util | compile s | model s | RTL s | instructions | memory MB | "
            "max LSB vs ORT |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        rtl = "rtl_cycles" in r
        lines.append("| " + " | ".join([
            r["net"], r["config"], f"{r['macs']:,}",
            f"{r['rtl_cycles']:,}" if rtl else "-", f"**{r['rtl_util']:.3f}**" if rtl else "-",
            f"{r['model_cycles']:,}", f"{r['model_error']:+.1%}" if rtl else "-",
            f"{r['worst_layer_error']:+.1%} ({r['worst_layer']})" if rtl else "-",
            f"{r['scalesim_cycles']:,}", f"{r['scalesim_util']:.3f}", f"{r['compile_s']:.1f}" if r["compile_s"] is not None else "-",
            f"{r['model_s']:.1f}", f"{r['rtl_s']:.1f}" if rtl else "-", f"{r['instructions']:,}",
            f"{r['memory_bytes'] / 1e6:.1f}" if "memory_bytes" in r else "-",
            str(r["ort_max_lsb"]) if rtl else "-"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", action="append", help="network:input size (default resnet18:224)")
    p.add_argument("--config", action="append", help="array RxC (default 8x8 and 16x16)")
    p.add_argument("--no-rtl", action="store_true", help="the performance model only")
    p.add_argument("--vector", default="0", metavar="LANES",
                   help="give the configs a vector unit of LANES lanes (pools, adds on it where faster); "
                        "'cols': as many lanes as each array has columns")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"), help="where models are cached")
    p.add_argument("--markdown", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for net in args.net or ["resnet18:224"]:
        for label in args.config or ["8x8", "16x16"]:
            t0 = time.perf_counter()
            row = run_one(net, label, rtl=not args.no_rtl, out=out, vector=args.vector)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            print(f"{net} on {label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.markdown:
        cmd = "benchmarks/networks.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n## Networks on RTL and the model ({datetime.date.today()})\n\n`.venv/bin/python {cmd}` "
                    f"(configs/default.yaml with the array given; "
                    f"native Verilator, the network as one program, cycles from the hardware counter, per layer "
                    f"from the STAMPs after the layers; "
                    f"model s: the whole `--sim model` run, cold tiling cache not guaranteed; compile s: the "
                    f"full compile of every instruction for the RTL run)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
