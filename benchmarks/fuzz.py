"""Differential fuzzing at scale: N random valid programs over random small configs, each run on
the functional simulator and on the RTL (native Verilator), whole memory and counters compared.

Configs come from `systolab.sim.fuzz.random_config` (seeded by `--seed`); the programs are dealt
round robin over them, so the number of Verilator builds is the number of configs (builds are
cached by Verilog hash, `$SYSTOLAB_CACHE`). Program i has the seed `--seed * 1_000_000 + i`;
every mismatch is printed with its config, seed and disassembly (`FuzzCase.report`), shrunk to a
short program with `--shrink`. The exit status is 1 when any program disagreed.

    .venv/bin/python benchmarks/fuzz.py --count 1000 --seed 1 --markdown
    .venv/bin/python benchmarks/fuzz.py --count 50 --configs 2 --insns 20
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from systolab.isa import isa_for
from systolab.sim.fuzz import DEFAULT_INSNS, FuzzCase, random_config, run_case, shrink
from systolab.sim.rtl import build_rtl


@dataclass
class Summary:
    """What one benchmark run found."""

    command: str
    programs: int = 0
    configs: list = field(default_factory=list)
    instructions: int = 0
    per_op: dict = field(default_factory=dict)
    cycles: int = 0
    build_s: float = 0.0
    wall_s: float = 0.0
    failures: list[FuzzCase] = field(default_factory=list)

    def text(self) -> str:
        ops = ", ".join(f"{k} {v:,}" for k, v in self.per_op.items())
        return (f"{self.programs} programs on {len(self.configs)} configs, "
                f"{self.instructions:,} instructions ({ops}), {self.cycles:,} RTL cycles; "
                f"{len(self.failures)} mismatches; wall {self.wall_s:.1f} s "
                f"({self.build_s:.1f} s of it building)")

    def markdown(self) -> str:
        date = datetime.date.today().isoformat()
        lines = [
            f"## Differential fuzzing: functional simulator vs RTL ({date})",
            "",
            f"`{self.command}` (native Verilator backend, {platform.node() or 'this machine'}): "
            f"random valid programs (`systolab.sim.fuzz`), whole external memory compared byte "
            f"for byte and the counters the functional simulator predicts exactly "
            f"(`array_busy`, `mem_reads`, `mem_writes`).",
            "",
            "| programs | configs | instructions | RTL cycles | mismatches | wall time | of it building |",
            "|---|---|---|---|---|---|---|",
            f"| {self.programs:,} | {len(self.configs)} | {self.instructions:,} | {self.cycles:,} | "
            f"**{len(self.failures)}** | {self.wall_s:.0f} s | {self.build_s:.0f} s |",
            "",
            "Instruction mix: " + ", ".join(f"{k} {v:,}" for k, v in self.per_op.items()) + ".",
            "",
            "| config | programs |",
            "|---|---|",
        ]
        for cfg, n in self.configs:
            lines.append(f"| {cfg.describe()}, queues {cfg.queues.depth} | {n} |")
        if self.failures:
            lines += ["", "Mismatches (seed: what differed):", ""]
            lines += [f"- {c.config.rows}x{c.config.cols} seed {c.seed}: "
                      f"{c.error or c.comparison.summary()}" for c in self.failures]
        return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="programs to run (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the configs and the programs")
    ap.add_argument("--configs", type=int, default=8, help="random configs (default 8)")
    ap.add_argument("--insns", type=int, default=DEFAULT_INSNS,
                    help=f"instructions per program (default {DEFAULT_INSNS})")
    ap.add_argument("--shrink", action="store_true", help="shrink every mismatch before reporting it")
    ap.add_argument("--markdown", action="store_true", help="print a section for benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    for name in ("count", "configs", "insns"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be a positive integer, not {getattr(args, name)}")

    command = ".venv/bin/python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = Summary(command.strip())
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    configs = {}
    while len(configs) < args.configs:        # distinct configs (by hash)
        cfg = random_config(rng)
        configs.setdefault(cfg.hash, cfg)
    configs = list(configs.values())
    counts = [0] * len(configs)
    for i in range(args.count):
        counts[i % len(configs)] += 1
    for k, cfg in enumerate(configs):
        t = time.perf_counter()
        build = build_rtl(cfg, backend="verilator")
        summary.build_s += time.perf_counter() - t
        print(f"config {k + 1}/{len(configs)}: {cfg.describe()}, queues {cfg.queues.depth} "
              f"({'cached build' if build.reused else f'built in {build.build_s:.0f} s'}), "
              f"{counts[k]} programs", flush=True)
        isa = isa_for(cfg)
        for i in range(k, args.count, len(configs)):
            seed = args.seed * 1_000_000 + i
            case = run_case(cfg, seed, args.insns)
            summary.programs += 1
            summary.instructions += case.program.insn_count
            summary.cycles += case.counters.get("cycles", 0)
            for word in case.program.words:
                op = isa.decode(word).op
                summary.per_op[op] = summary.per_op.get(op, 0) + 1
            if not case.ok:
                if args.shrink:
                    small = shrink(cfg, seed, args.insns,
                                   lambda p: not run_case(cfg, seed, program=p).ok)
                    case = run_case(cfg, seed, args.insns, program=small)
                summary.failures.append(case)
                print(case.report(), flush=True)
        summary.configs.append((cfg, counts[k]))
    summary.wall_s = time.perf_counter() - t0
    print(summary.text())
    if args.markdown:
        print()
        print(summary.markdown(), end="")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
