"""Which points a sweep measures: the grid, a random sample of it, or an Optuna search.

With `search.promote` other than `all`, every point is first scored by the model (cheap), and
only the promising ones (the model's Pareto front, or the best N by front rank) go to `rtl` and
`synth`. Objectives the model cannot give are screened through a stand-in that orders points the
same way when Fmax and area grow with the array (`SCREEN_PROXY`): `latency_s` by cycles, `lut` by
the PE count, and so on. Constraints take part in screening only when the model gives their metric.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from systolab.errors import ConfigError

from .derived import ALL, PointInfo, derive
from .pareto import select_promising
from .spec import EXPENSIVE, Point, SweepError, SweepSpec

__all__ = ["SCREEN_PROXY", "MODEL_METRICS", "screening_objectives", "screening_constraints", "random_points",
           "optuna_points", "promote_points", "point_info"]

#: objective -> (the model-side metric that screens it, whether the direction flips); None: skip
SCREEN_PROXY: dict[str, tuple[str, bool] | None] = {
    "latency_s": ("cycles", False),
    "gops": ("cycles", True),
    "gops_per_klut": ("utilization", False),
    "gops_per_dsp": ("utilization", False),
    "rtl_cycles": ("cycles", False),
    "lut": ("pes", False), "ff": ("pes", False), "dsp": ("pes", False), "comb": ("pes", False),
    "bram": ("sram_kib", False),
    "fmax_mhz": None,
}
#: metrics the model (with the config) gives by itself
MODEL_METRICS = ("cycles", "utilization", "model_cycles", "pes", "sram_kib")
_FLIP = {"min": "max", "max": "min"}


def screening_objectives(spec: SweepSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    for metric, direction in spec.objectives.items():
        if metric in MODEL_METRICS:
            proxy, d = metric, direction
        else:
            entry = SCREEN_PROXY.get(metric)
            if entry is None:
                continue
            proxy, flip = entry
            d = _FLIP[direction] if flip else direction
        out.setdefault(proxy, d)
    return out or {"cycles": "min"}


def screening_constraints(spec: SweepSpec) -> dict:
    return {k: v for k, v in spec.constraints.items() if k in MODEL_METRICS}


def point_info(p: Point, role: str) -> PointInfo:
    return PointInfo(p.hash, dict(p.axes), p.config, p.label, role)


def random_points(spec: SweepSpec) -> list[Point]:
    """`search.budget` distinct valid points of the grid, drawn with `search.seed`."""
    keys = list(spec.axes)
    sizes = [len(spec.axes[k]) for k in keys]
    n = spec.grid_size
    rng = random.Random(spec.search.seed)
    seen, points = set(), []
    while len(points) < spec.search.budget and len(seen) < n:
        index = rng.randrange(n)
        if index in seen:
            continue
        seen.add(index)
        values = {}
        for k, size in zip(reversed(keys), reversed(sizes)):
            index, i = divmod(index, size)
            values[k] = spec.axes[k][i]
        try:
            points.append(spec.point({k: values[k] for k in keys}))
        except ConfigError:
            continue                 # a combination that cannot work is not a sample
    if len(points) < spec.search.budget:
        raise SweepError(f"{spec.source}: search.budget must be at most the {len(points)} valid "
                         f"points of the grid, not {spec.search.budget}")
    return points


def _screen_rows(spec: SweepSpec, points: Sequence[Point], results) -> list[dict]:
    rows = derive(spec, [point_info(p, "screened") for p in points], results)
    return [r for r in rows if r["workload"] == ALL]


def promote_points(spec: SweepSpec, points: Sequence[Point], results) -> list[Point]:
    """The points the model rates promising (`search.promote`), in the order given."""
    rows = _screen_rows(spec, points, results)
    chosen = select_promising(rows, screening_objectives(spec), screening_constraints(spec),
                              spec.search.promote)
    hashes = {r["config_hash"] for r in chosen}
    return [p for p in points if p.hash in hashes]


def optuna_points(spec: SweepSpec, run_model: Callable[[list[Point]], dict], slots: int,
                  on_invalid: Callable[[dict, str], None] | None = None) -> list[Point]:
    """Ask Optuna (NSGA-II or TPE over the axes) for points, score each with the model.

    `run_model(points)` measures the points with the cheap evaluators and returns the stored
    results. Stops at `search.budget` distinct points, the whole grid, or 10 x budget trials.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = screening_objectives(spec)
    budget = min(spec.search.budget, spec.grid_size)
    seed = spec.search.seed
    if spec.search.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, budget // 3)))
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, min(50, budget // 4)))
    study = optuna.create_study(directions=["minimize" if d == "min" else "maximize"
                                            for d in objectives.values()], sampler=sampler)
    seen: dict[str, Point] = {}
    trials = 0
    while len(seen) < budget and trials < 10 * budget:
        batch = []
        for _ in range(max(1, min(slots, budget - len(seen)))):
            trial = study.ask()
            trials += 1
            values = {k: trial.suggest_categorical(k, list(v)) for k, v in spec.axes.items()}
            try:
                p = spec.point(values)
            except ConfigError as e:
                study.tell(trial, state=TrialState.FAIL)
                if on_invalid:
                    on_invalid(values, str(e))
                continue
            batch.append((trial, p))
            seen.setdefault(p.hash, p)
        if not batch:
            continue
        results = run_model([p for _, p in batch])
        rows = {r["config_hash"]: r for r in _screen_rows(spec, [p for _, p in batch], results)}
        for trial, p in batch:
            row = rows[p.hash]
            values = [row.get(m) for m in objectives]
            if any(v is None for v in values):
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, values)
    return list(seen.values())


def expensive(spec: SweepSpec) -> list[str]:
    return [e for e in spec.evaluate if e in EXPENSIVE]


def cheap(spec: SweepSpec) -> list[str]:
    return [e for e in spec.evaluate if e not in EXPENSIVE]
