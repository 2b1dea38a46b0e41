"""Run a compiled program on `SimTop` in Amaranth's Python simulator (small configs, tests).

This is the slow, dependency-free way to execute the RTL: good for a few thousand cycles on a
small config. Long runs belong to the Verilator flows in `sim/`.

    >>> result = simulate_program(cfg, program)
    >>> result.memory          # external memory after the run (uint8)
    >>> result.counters["cycles"]

The testbench does what a host does through the ports of docs/architecture.md: writes the
program image word by word through the host port, sets ``insn_addr``/``insn_count``, pulses
``start``, waits for ``done`` and reads the counters. The whole memory is then read back directly
from the simulated memory (so stray writes outside the program's regions are visible too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from systolab.hw.counters import COUNTERS
from systolab.hw.simtop import SimTop

__all__ = ["SimRunResult", "SimTimeout", "simulate_program"]


class SimTimeout(RuntimeError):
    pass


@dataclass
class SimRunResult:
    memory: np.ndarray               # uint8, cfg.mem_bytes
    counters: dict[str, int]         # COUNTERS name -> value
    cycles_to_done: int              # cycles from the start pulse to `done` seen high


def _words(image: np.ndarray, bus_bytes: int) -> list[int]:
    pad = (-len(image)) % bus_bytes
    raw = np.concatenate([image.astype(np.uint8), np.zeros(pad, np.uint8)])
    return [int.from_bytes(raw[i:i + bus_bytes].tobytes(), "little")
            for i in range(0, len(raw), bus_bytes)]


def simulate_program(cfg, program, *, max_cycles: int = 100_000, vcd: str | None = None) -> SimRunResult:
    """Execute `program` (a `codegen.Program` for `cfg`) on `SimTop(cfg)`."""
    program.check_compiled_for(cfg)
    B = cfg.memory.bus_bytes
    top = SimTop(cfg)
    words = _words(program.memory(cfg)[:len(program.image)], B)
    out: dict = {}

    async def testbench(ctx):
        for addr, word in enumerate(words):
            ctx.set(top.host_addr, addr)
            ctx.set(top.host_wdata, word)
            ctx.set(top.host_we, 1)
            await ctx.tick()
        ctx.set(top.host_we, 0)
        ctx.set(top.insn_addr, program.insn_addr)
        ctx.set(top.insn_count, program.insn_count)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        for cycle in range(1, max_cycles + 1):
            await ctx.tick()
            if ctx.get(top.done):
                break
        else:
            raise SimTimeout(f"no done after {max_cycles} cycles")
        out["cycles"] = cycle
        out["counters"] = {name: ctx.get(getattr(top, f"cnt_{name}")) for name in COUNTERS}
        data = top.memory.data
        raw = b"".join(ctx.get(data[i]).to_bytes(B, "little") for i in range(cfg.mem_words))
        out["memory"] = np.frombuffer(raw, dtype=np.uint8).copy()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return SimRunResult(out["memory"], out["counters"], out["cycles"])
