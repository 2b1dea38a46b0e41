"""How fast the RTL simulates: build seconds and simulated cycles per second, per backend.

For each array size it compiles one GEMM, runs it on

- `cocotb-all`: cocotb + Verilator through `cocotb_tools.runner` as the runner builds by default
  (`--public-flat-rw`: every signal visible through VPI), the testbench sleeping until `done`;
- `cocotb`: the same testbench, built the way `run_rtl(backend="cocotb")` does: only the top-level
  ports visible, so Verilator optimizes the rest;
- `verilator`: the native C++ harness (`sim/harness.cpp`), no Python while it runs;
- `clock only`: the native model clocked for the same number of cycles with nothing else in the
  loop: the speed limit of this Verilog under Verilator;

checks the outputs against numpy and that all backends report the same counters, and prints a
table. Each build runs in its own empty cache unless `--cache shared`, so build seconds are cold
builds (Verilator's runtime library included). Simulation seconds are the best of `--repeat` runs.

    .venv/bin/python benchmarks/sim_speed.py                   # 8x8 and 16x16, GEMM 256x256x256
    .venv/bin/python benchmarks/sim_speed.py --sizes 8 --gemm 64x64x64 --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile

import numpy as np

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm
from systolab.config import default_config
from systolab.errors import UserError
from systolab.sim.run import parse_gemm
from systolab.cache import CACHE_ENV
from systolab.sim.rtl import clock_only_seconds, run_rtl, sim_verilog
from systolab.sim.verilator_env import verilator_info

#: benchmark row -> (run_rtl backend, cocotb visibility)
BACKENDS = {"cocotb-all": ("cocotb", "all"), "cocotb": ("cocotb", "top"), "verilator": ("verilator", "top")}


@contextlib.contextmanager
def build_cache(mode: str):
    """A fresh, empty build cache for the block (mode "fresh"), or the usual one ("shared")."""
    if mode == "shared":
        yield
        return
    saved = os.environ.get(CACHE_ENV)
    path = tempfile.mkdtemp(prefix="systolab-bench-cache-")
    os.environ[CACHE_ENV] = path
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = saved
        shutil.rmtree(path, ignore_errors=True)


def config_for(size: int, shape: tuple[int, int, int]):
    """The default config with a `size` x `size` array and the smallest memory that holds the
    GEMM (a smaller memory model is a smaller Verilog file and a faster build)."""
    big = default_config().replace({"array.rows": size, "array.cols": size}, source=f"<{size}x{size}>")
    image_bytes = len(compile_gemm(big, random_gemm(*shape, seed=0)).image)
    kib = 64
    while kib * 1024 < image_bytes:
        kib *= 2
    return big.replace({"memory.size_kib": kib})


def measure(size: int, shape, backends, cache: str, repeat: int) -> list[dict]:
    cfg = config_for(size, shape)
    g = random_gemm(*shape, seed=0)
    program = compile_gemm(cfg, g)
    expected = gemm_reference(g)
    sim_verilog(cfg)                  # generate once, outside the timings
    design = f"{size}x{size}"
    rows, counters = [], {}
    for name in backends:
        backend, visibility = BACKENDS[name]
        with build_cache(cache):
            runs = [run_rtl(cfg, program, backend=backend, cocotb_visibility=visibility,
                            readback="outputs") for _ in range(repeat)]
            res = runs[0]
            got = program.read_outputs(res.memory)["C"]
            if not np.array_equal(got, expected):
                raise SystemExit(f"{design} {name}: {np.count_nonzero(got != expected)} output "
                                 f"elements differ from numpy")
            counters[name] = res.counters
            rows.append({"design": design, "backend": name, "build_s": res.build_s,
                         "cycles": res.cycles, "sim_s": min(r.sim_s for r in runs)})
            if backend == "verilator":
                sim_s = min(clock_only_seconds(cfg, program, res.cycles) for _ in range(repeat))
                rows.append({"design": design, "backend": "clock only", "build_s": None,
                             "cycles": res.cycles, "sim_s": sim_s})
    if len({tuple(sorted(c.items())) for c in counters.values()}) > 1:
        raise SystemExit(f"{design}: counters differ between backends: {counters}")
    first_rate = rows[0]["cycles"] / rows[0]["sim_s"]
    for r in rows:
        r["rate"] = r["cycles"] / r["sim_s"] if r["sim_s"] > 0 else float("inf")
        r["speedup"] = r["rate"] / first_rate
    return rows


def render(rows: list[dict], markdown: bool) -> str:
    head = ["design", "backend", "build s", "cycles", "sim s", "cycles/s", "speedup"]
    body = []
    for r in rows:
        body.append([r["design"], r["backend"],
                     "-" if r["build_s"] is None else f"{r['build_s']:.1f}",
                     f"{r['cycles']:,}", f"{r['sim_s']:.3f}", f"{r['rate']:,.0f}",
                     f"{r['speedup']:.1f}x"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda row: "  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16], help="array sizes (rows = cols)")
    p.add_argument("--gemm", default="256x256x256", help="MxKxN or N for NxNxN (default 256x256x256)")
    p.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS),
                   help="speedups are relative to the first one")
    p.add_argument("--repeat", type=int, default=3, help="runs per backend; the fastest counts")
    p.add_argument("--cache", choices=("fresh", "shared"), default="fresh",
                   help="fresh: every build in an empty cache (cold build times); shared: the usual cache")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)
    spec = args.gemm if "x" in args.gemm else f"{args.gemm}x{args.gemm}x{args.gemm}"
    try:
        shape = parse_gemm(f"gemm:{spec}")
        info = verilator_info()
        print(f"# GEMM {'x'.join(map(str, shape))}, {info.describe()}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, cache {args.cache}", flush=True)
        rows = []
        for size in args.sizes:
            rows += measure(size, shape, args.backends, args.cache, args.repeat)
            print(f"# {size}x{size} done", file=sys.stderr, flush=True)
    except UserError as e:
        print(f"sim_speed: {e}", file=sys.stderr)
        return 2
    print(render(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
