"""The fast path of the performance model: a pass's cycles from a sample of its program.

A tiled pass (a convolution, an FC, a GEMM) is one loop body run over and over: LOAD the A
rows of a chunk, LOAD and PRELOAD a weight tile, MATMUL, now and then a STORE. The performance
model (`perf.model`) replays every instruction, which for a full-size network is millions of
them. Here only the first `SAMPLE` MATMULs of the pass are emitted (`ProgramBuilder.matmul_limit`)
and replayed; the cycles the steady state spends per array row, measured between the middle and
the end of the sample, carry it to the pass's whole row count, plus the hand-over of its last
tile to the store unit. A pass that ends within the sample is replayed whole (exact).

What a sample cannot see are the transitions of the outer loops that lie beyond it (the next
K-block or row block); they are rare by construction (the inner loops they follow are long),
and `benchmarks/model_speed.py` measures the estimate against the full replay on every layer
of the benchmark networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from systolab.cache import Recent
from systolab.perf import PerfModel

from .builder import EmitLimit, ProgramBuilder

__all__ = ["SAMPLE", "PERIODIC_BLOCKS", "PERIODS", "EXACT", "EXACT_INSNS", "SCREEN", "SCREEN_EXACT", "SCREEN_EXACT_INSNS", "KEEP", "SCREEN_PERIODS", "Estimate", "estimate_pass", "estimate_tiled"]

#: MATMULs replayed per pass; passes with more are extrapolated from the second half of these
SAMPLE = 256


@dataclass(frozen=True)
class Estimate:
    cycles: int
    instructions: int
    exact: bool            # the whole pass was replayed


#: the samples emitted last (`estimate_pass`'s `key`), a few configs' worth (at most 600 k
#: instructions; an instruction is a tuple and a dict, about 0.5 KB): a program does not depend
#: on the memory port (bus width, latency), so the configs of a sweep that differ only there
#: replay the same samples, emitted once (about half of a candidate's estimate is its emission)
SAMPLES = Recent(600_000, weight=lambda sample: len(sample[0]))


def _emit_sample(cfg, emit, sample: int, insn_limit: int | None) -> tuple[list, int, bool]:
    """The instructions `emit` gives before its `sample`-th MATMUL (or `insn_limit`-th
    instruction), how many MATMULs they hold, and whether that was the whole pass."""
    b = ProgramBuilder(cfg, matmul_limit=sample, insn_limit=insn_limit)
    try:
        emit(b)
    except EmitLimit:
        return b.instructions(), b.matmuls, False
    return b.instructions(), b.matmuls, True


def estimate_pass(cfg, emit, rows: int, *, matmuls: int | None = None, model: PerfModel | None = None,
                  sample: int = SAMPLE, insn_limit: int | None = None, period: int | None = None,
                  tail_stores: int = 1, key=None) -> Estimate:
    """Cycles of the pass `emit(builder)` emits, whose MATMULs stream `rows` rows in all; its
    instructions extrapolated per MATMUL when their number (`matmuls`) is given, else per row.
    The sample is the first `sample` MATMULs, or fewer if `insn_limit` instructions come first.
    The steady state is measured from the middle of the sample, or, with `period` (MATMULs per
    repetition of the program's loop body), from the end of the first period. After the last
    MATMUL come `tail_stores` STOREs (a group of column tiles stores all its tiles at the end).
    With a `key` (hashable: everything `emit`'s instructions depend on, not the memory port),
    the sample is kept in `SAMPLES` and emitted once for every config that shares it."""
    model = model or PerfModel(cfg)
    make = lambda: _emit_sample(cfg, emit, sample, insn_limit)  # noqa: E731
    insns, n_matmuls, whole = SAMPLES.get(None if key is None else (key, sample, insn_limit), make)
    if whole:
        p = model.predict_insns(insns)
        return Estimate(p.cycles, len(insns), True)
    record: list = []
    p = model.predict_insns(insns, record=record)
    t = model.t
    # the state after the first half of the MATMULs: instruction index, rows, last result written
    half, n_mm, r1 = None, 0, 0
    for i, (op, f) in enumerate(insns):
        if op == "MATMUL":
            n_mm += 1
            r1 += f["rows"]
            if n_mm == (min(period, n_matmuls - 1) if period else max(1, n_matmuls // 2)):
                half = i
                break
    end1 = max(done for *_, done in record[:half + 1])
    last_mm = max(done for _, _, op, _, done in record if op == "MATMUL")
    r2 = p.array_busy
    per_row = (last_mm - end1) / max(1, r2 - r1)
    if matmuls is not None:       # each MATMUL comes with its LOADs and PRELOAD, whatever its rows
        more = (len(insns) - (half + 1)) / max(1, n_matmuls - n_mm) * (matmuls - n_matmuls)
    else:
        more = (len(insns) - (half + 1)) / max(1, r2 - r1) * (rows - r2)
    last_rows = next(f["rows"] for op, f in reversed(insns) if op == "MATMUL")
    # the last tile to the store unit: a token, its parameter words, the memory latency, its rows
    drain = t.token + 1 + 4 * t.acc_beats + t.latency + t.store_first + last_rows * t.out_beats
    # and the STOREs before it, one after another in the store unit
    drain += (tail_stores - 1) * (4 * t.acc_beats + t.latency + last_rows + t.store_next)
    cycles = max(p.cycles - t.finish, last_mm + per_row * (rows - r2) + drain) + t.finish
    return Estimate(round(cycles), round(len(insns) + more), False)


#: a pass of at most this many MATMULs and instructions is replayed whole
EXACT, EXACT_INSNS = 4096, 32768

#: a pass whose outermost loop runs at least PERIODIC_BLOCKS times is estimated from (at least)
#: PERIODS runs of it, not replayed whole (`estimate_tiled`)
PERIODIC_BLOCKS, PERIODS = 8, 4

#: a tiling search first screens every candidate on a sample this small (whole up to
#: SCREEN_EXACT MATMULs and SCREEN_EXACT_INSNS instructions) and estimates only the KEEP best of
#: them as above (`benchmarks/model_speed.py --screen` compares it with estimating every candidate)
SCREEN, SCREEN_EXACT, SCREEN_EXACT_INSNS, KEEP = 64, 256, 4096, 3
#: loop bodies a screen's sample holds at least (`estimate_tiled`): two, the second measured
SCREEN_PERIODS = 2


def estimate_tiled(cfg, emit, tiling, M: int, rows: int, matmuls: int, *,
                   model: PerfModel | None = None, sample: int = SAMPLE, exact: int = EXACT,
                   exact_insns: int = EXACT_INSNS, loops: Sequence[float] = (), tail_stores: int = 1,
                   periods: int = PERIODS, key=None) -> Estimate:
    """`estimate_pass` of a pass tiled by `tiling` over M output rows (`emit(builder)`), with
    `matmuls` MATMULs per row block and `loops` the MATMULs of the loop bodies inside one, outer
    to inner (a group of column tiles, a K-block, a column tile); `tail_stores` STOREs follow the
    pass's last MATMUL.

    The sample is whole bodies of the outermost loop of which at least two fit in `exact`
    MATMULs (`periods` of them, or as many as `sample` MATMULs hold if more): the steady state
    measured over whole bodies sees every transition of the loops inside (a sample that ended
    inside one, a group of 25 or 125 one-row column tiles of an FC, was 5-10 % optimistic).
    A pass of at most `exact` MATMULs and `exact_insns` instructions whose outermost loop runs
    fewer than PERIODIC_BLOCKS times is replayed whole, and one with no such loop from its
    first `sample` MATMULs (a pass that gathers many
    LOADs per MATMUL, as a 7x7 convolution on a model input does, from as many as `exact_insns`
    instructions hold when they are more).

    (Charging a last, shorter row block at the rate of a tiling of that height was tried and
    dropped: on ResNet-18 it moved the worst conv from -0.8 % to +3.7 % of the full replay.)"""
    blocks = -(-M // tiling.mt)
    total = blocks * matmuls
    # the sample: `sample` MATMULs in whole bodies, or up to `exact` of them in a pass of a
    # single row block (an FC, a late conv on a small map), whose outer loop is the column tiles
    budget = exact if blocks == 1 else sample
    for body in (matmuls, *loops):
        body = max(1, round(body))
        reps = total // body
        if total <= exact and reps < PERIODIC_BLOCKS:
            break               # a few repetitions, all within `exact`: the whole pass
        n = min(max(periods, sample // body), budget // body)    # whole bodies in the sample
        if reps > n >= 2:
            return estimate_pass(cfg, emit, rows, matmuls=total, model=model, sample=n * body, period=body,
                                 tail_stores=tail_stores, key=key)
    if total <= exact:
        return estimate_pass(cfg, emit, rows, matmuls=total, model=model, sample=exact + 1, insn_limit=exact_insns,
                             key=key)
    return estimate_pass(cfg, emit, rows, matmuls=total, model=model, sample=sample, tail_stores=tail_stores,
                         key=key)
