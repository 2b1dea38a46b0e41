"""The fast performance model against the full replay, layer by layer, and how fast each is.

    .venv/bin/python benchmarks/model_speed.py                                # ResNet-18 at 224 on 8x8
    .venv/bin/python benchmarks/model_speed.py --net resnet50:224 --config 16x16 --vector 16
    .venv/bin/python benchmarks/model_speed.py --net resnet18:224 resnet50:224 --config 8x8 16x16 --markdown

For each network x config: the seconds `--sim model` takes to compile the network without
programs (tilings searched and cycles estimated from samples, `codegen.estimate`; the tiling cache
cleared first, so this is a cold start), then the full compile (every instruction) and the full
replay of every layer's program by `perf.model`; the worst layer's and the whole network's gap
between the estimate and the replay. `--screen` also runs the tiling search without screening
(every candidate estimated on the full sample) and prints what screening saved and cost.
`--markdown` appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_one(net_spec: str, model_path, label: str, vector: int, full: bool, screen: bool = False) -> dict:
    from systolab.codegen import conv, network
    from systolab.codegen.network import compile_network
    from systolab.codegen.onnx_import import load_onnx
    from systolab.perf import PerfModel

    from networks import bench_config

    cfg, label = bench_config(label, vector)
    net = load_onnx(model_path)
    t0 = time.perf_counter()
    fast = compile_network(cfg, net, programs=False)
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = compile_network(cfg, net, programs=False)
    warm_s = time.perf_counter() - t0
    assert [c.predicted for c in warm.layers] == [c.predicted for c in fast.layers]
    row = {"net": net_spec, "config": label, "fast_cycles": sum(c.predicted for c in fast.layers),
           "fast_s": fast_s, "warm_s": warm_s}
    if screen:      # the same search with every candidate estimated on the full sample
        network.choose_accop_tiling = functools.partial(conv.choose_accop_tiling, keep=None)
        try:
            t0 = time.perf_counter()
            every = compile_network(cfg, net, programs=False)
            row["every_s"] = time.perf_counter() - t0
        finally:
            network.choose_accop_tiling = conv.choose_accop_tiling
        row["every_cycles"] = sum(c.predicted for c in every.layers)
        row["screen_losses"] = [(f.name, f.predicted / e.predicted - 1) for f, e in zip(fast.layers, every.layers)
                                if f.predicted != e.predicted]
    if full:
        t0 = time.perf_counter()
        comp = compile_network(cfg, net)
        row["compile_s"] = time.perf_counter() - t0
        model = PerfModel(cfg)
        t0 = time.perf_counter()
        replay = [model.predict_insns(c.insns).cycles for c in comp.layers]
        row["replay_s"] = time.perf_counter() - t0
        row["replay_cycles"] = sum(replay)
        row["instructions"] = sum(len(c.words) for c in comp.layers)
        errs = [(f.predicted / r - 1, f.name) for f, r in zip(fast.layers, replay)]
        row["worst"] = max(errs, key=lambda e: abs(e[0]))
        row["network_err"] = row["fast_cycles"] / row["replay_cycles"] - 1
        row["layers"] = [(f.name, f.predicted, r) for f, r in zip(fast.layers, replay)]
    return row


def markdown(rows: list[dict]) -> str:
    out = ["| network | config | estimate cycles | replay cycles | network gap | worst layer gap | "
           "model s (cold) | model s (warm) | full compile s | replay s | instructions |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        worst = f"{r['worst'][0]:+.1%} ({r['worst'][1]})" if "worst" in r else "-"
        out.append(f"| {r['net']} | {r['config']} | {r['fast_cycles']:,} | {r.get('replay_cycles', 0):,} | "
                   f"{r.get('network_err', 0):+.2%} | {worst} | {r['fast_s']:.1f} | {r['warm_s']:.2f} | "
                   f"{r.get('compile_s', 0):.1f} | {r.get('replay_s', 0):.1f} | {r.get('instructions', 0):,} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", nargs="+", default=["resnet18:224"])
    ap.add_argument("--config", nargs="+", default=["8x8"])
    ap.add_argument("--vector", type=int, default=0, help="vector lanes (0: no vector unit)")
    ap.add_argument("--no-replay", action="store_true", help="only the fast model's times")
    ap.add_argument("--layers", action="store_true", help="print every layer's estimate and replay")
    ap.add_argument("--screen", action="store_true",
                    help="also search with every tiling candidate estimated in full (no screening): "
                         "its cold seconds and the layers where screening chose differently")
    ap.add_argument("--markdown", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    from systolab.codegen.onnx_models import builtin_model

    models = {net: builtin_model(net)[0] for net in args.net}
    # a cold start: the tiling decisions of earlier runs are not reused
    os.environ["SYSTOLAB_CACHE"] = tempfile.mkdtemp(prefix="systolab-model-speed-")
    rows = []
    for net in args.net:
        for label in args.config:
            r = run_one(net, models[net], label, args.vector, not args.no_replay, args.screen)
            rows.append(r)
            if args.screen:
                print(f"  every candidate in full: {r['every_s']:.1f} s cold against {r['fast_s']:.1f} s screened; "
                      f"network {r['fast_cycles'] / r['every_cycles'] - 1:+.2%}; layers chosen differently: "
                      + (", ".join(f"{n} {e:+.2%}" for n, e in r["screen_losses"]) or "none"))
            if args.layers:
                for name, est, rep in r.get("layers", ()):
                    print(f"  {name:12s} {est:>11,} {rep:>11,} {est / rep - 1:+.2%}")
            print(markdown([r]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print(table)
    if args.markdown:
        cmd = "python benchmarks/model_speed.py " + " ".join(sys.argv[1:])
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n## The fast performance model against the full replay "
                    f"({datetime.date.today().isoformat()})\n\n`{cmd}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
