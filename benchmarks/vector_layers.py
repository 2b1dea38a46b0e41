"""CNN layers alone on the array and on the vector unit: the ResNet-18 stem max pool
(112x112x64 -> 56x56, 3x3/2 pad 1), a stage-1 residual add (56x56x64, + ReLU) and a MobileNetV2
depthwise 3x3 conv (56x56x144), compiled
with `compile_network(cfg, net, vector="array" | "vector")` for 8x8 with `vector: {lanes: 8}`,
run on each simulator given, checked bit-exact against the numpy reference.

    .venv/bin/python benchmarks/vector_layers.py                 # the performance model
    .venv/bin/python benchmarks/vector_layers.py model verilator # and the native RTL
"""

from __future__ import annotations

import sys
import time
import numpy as np

from systolab.codegen.conv import TensorSpec
from systolab.codegen.network import (HostStep, Network, QParams, add_layer, compile_network, conv_layer,
                                      maxpool_layer, network_reference)
from systolab.config import default_config
from systolab.sim.run import SIMS, run_network


def one_layer(x: TensorSpec, make) -> Network:
    net = Network("layer", {}, {})
    net.add_tensor(x)
    value = np.random.default_rng(0).integers(-128, 128, x.shape).astype(np.int8)
    net.steps.append(HostStep("input", "Input", lambda values, io: values.update({x.name: value}), [], [x.name]))
    layer, y = make(net, x)
    net.add_tensor(y)
    net.steps.append(layer)
    return net


def main(argv=None) -> int:
    sims = (argv if argv is not None else sys.argv[1:]) or ["model"]
    for s in sims:
        if s not in SIMS:
            raise SystemExit(f"simulators must be of {', '.join(SIMS)}, not {s!r}")
    cfg = default_config().replace({"array.rows": 8, "array.cols": 8, "memory.size_kib": 131072, "vector.lanes": 8},
                                   source="8x8+v8 (memory.size_kib 131072)")
    xq = QParams(0.05, -128, "int8")
    dw_weight = np.random.default_rng(1).integers(-127, 128, (144, 1, 3, 3)).astype(np.int8)
    layers = {
        "stem max pool 112x112x64 3x3/2": (TensorSpec("x", 1, 112, 112, 64), lambda net, x: maxpool_layer(
            "pool", "MaxPool", x, xq, "y", xq, kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
            add_tensor=net.add_tensor)),
        "residual add 56x56x64": (TensorSpec("x", 1, 56, 56, 64), lambda net, x: add_layer(
            "add", "Add", x, xq, x, QParams(0.03, -2, "int8"), "y", QParams(0.11, 1, "int8"), relu=True)),
        "depthwise conv 56x56x144 3x3 (MobileNetV2)": (TensorSpec("x", 1, 56, 56, 144), lambda net, x: conv_layer(
            "dw", "Conv", x, xq, dw_weight, 0.01, None, "y", QParams(0.04, 3, "int8"), pads=(1, 1, 1, 1), relu=True,
            group=144)),
    }
    print("| layer | unit | sim | cycles | bit-exact | instructions |\n|---|---|---|---|---|---|")
    for what, (x, make) in layers.items():
        net = one_layer(x, make)
        for unit in ("array", "vector"):
            comp = compile_network(cfg, net, vector=unit)
            ref, _ = network_reference(comp.net, {})
            for sim in sims:
                t0 = time.perf_counter()
                run = run_network(comp, {}, sim)
                ok = np.array_equal(run.values["y"], ref["y"])
                print(f"| {what} | {unit} | {sim} | {run.cycles:,} | {'yes' if ok else 'NO'} | "
                      f"{len(comp.layers[0].words):,} |", flush=True)
                print(f"{what} {unit} {sim}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
