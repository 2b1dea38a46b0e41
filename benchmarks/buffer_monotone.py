"""Does more buffer ever cost a network cycles? The performance model's ResNet-18@224 over
scratchpad x accumulator depths, per array: every pair of configs where one has at least the
other's buffers and more predicted cycles.

    .venv/bin/python benchmarks/buffer_monotone.py 4x4 8x8 16x16

A cold start (an empty tiling cache); about 30 s per array on this machine.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time

SCRATCHPAD, ACCUMULATOR = [1024, 4096, 16384], [256, 1024, 4096]


def main(argv: list[str]) -> int:
    os.environ["SYSTOLAB_CACHE"] = tempfile.mkdtemp(prefix="systolab-monotone-")
    from systolab.codegen.network import compile_network
    from systolab.codegen.onnx_import import load_onnx
    from systolab.codegen.onnx_models import builtin_model
    from systolab.config import default_config

    net = load_onnx(builtin_model("resnet18:224")[0])
    t0 = time.perf_counter()
    for arr in argv or ["8x8"]:
        r, c = map(int, arr.split("x"))
        res = {}
        for sp, ac in itertools.product(SCRATCHPAD, ACCUMULATOR):
            cfg = default_config().replace({"array.rows": r, "array.cols": c, "scratchpad.depth": sp,
                                            "accumulator.depth": ac}, source=f"{arr} sp={sp} acc={ac}")
            res[sp, ac] = sum(l.predicted for l in compile_network(cfg, net, programs=False).layers)
        worse = [(res[b] / res[a] - 1, a, b) for a in res for b in res
                 if a != b and b[0] >= a[0] and b[1] >= a[1] and res[b] > res[a]]
        top = max(worse, default=None)
        print(f"{arr}: best {min(res.values()):,} cycles; more buffer, more cycles: {len(worse)} pairs"
              + (f", worst {top[0]:+.2%} (sp, acc) {top[1]} -> {top[2]}" if top else ""), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
