"""Search: screening objectives, promotion of the model's best points, Optuna on a made-up model."""

from systolab.co_design.evaluators import make_task, task_key
from systolab.co_design.derived import METRICS
from systolab.co_design.search import (MODEL_METRICS, SCREEN_PROXY, optuna_points, promote_points, random_points,
                                       screening_constraints, screening_objectives)
from systolab.co_design.spec import parse_sweep

SWEEP = {
    "name": "s",
    "axes": {"array.rows": [2, 4, 8, 16], "array.cols": [2, 4, 8, 16], "scratchpad.depth": [256, 1024]},
    "workloads": [{"name": "fc", "gemm": [64, 64, 64]}],
    "evaluate": ["model", "rtl", "synth"],
    "objectives": {"latency_s": "min", "lut": "min"},
}


def spec_with(**changes):
    return parse_sweep({**SWEEP, **changes}, source="s.yaml")


def model_cycles(cfg) -> int:
    """A made-up model: bigger arrays are faster, a deeper scratchpad helps a little."""
    return 64 ** 3 // (cfg.rows * cfg.cols) + 100 * cfg.rows + (50 if cfg.scratchpad.depth == 256 else 0)


def fake_results(spec, points):
    out = {}
    for p in points:
        for w in spec.workloads:
            out[task_key(make_task("model", p.config, w))] = {
                "status": "ok", "metrics": {"cycles": model_cycles(p.config)}, "error": None}
    return out


def test_every_metric_has_a_screening_rule():
    assert set(SCREEN_PROXY) | set(MODEL_METRICS) == set(METRICS)
    assert not set(SCREEN_PROXY) & set(MODEL_METRICS)


def test_screening_objectives_and_constraints():
    spec = spec_with(objectives={"latency_s": "min", "lut": "min", "gops": "max"},
                     constraints={"lut": {"max": 9000}, "utilization": {"min": 0.2}})
    assert screening_objectives(spec) == {"cycles": "min", "pes": "min"}
    assert screening_constraints(spec) == {"utilization": {"min": 0.2}}
    assert screening_objectives(spec_with(objectives={"fmax_mhz": "max"})) == {"cycles": "min"}
    assert screening_objectives(spec_with(objectives={"gops_per_klut": "max", "bram": "min"})) == \
        {"utilization": "max", "sram_kib": "min"}


def test_promote_front_and_count():
    spec = spec_with(search={"method": "random", "budget": 12, "seed": 5, "promote": "front"})
    points = random_points(spec)
    assert len({p.hash for p in points}) == 12
    results = fake_results(spec, points)
    front = promote_points(spec, points, results)
    # brute force on (cycles, pes): nothing in the sample is faster and no bigger
    key = {p.hash: (model_cycles(p.config), p.config.rows * p.config.cols) for p in points}
    expected = [p for p in points if not any(
        c <= key[p.hash][0] and e <= key[p.hash][1] and (c, e) != key[p.hash] for c, e in key.values())]
    assert [p.hash for p in front] == [p.hash for p in expected] and front
    spec2 = spec_with(search={"method": "random", "budget": 12, "seed": 5, "promote": 3})
    assert len(promote_points(spec2, points, results)) == 3
    # a point the model failed on is never promoted
    bad = dict(results)
    first = task_key(make_task("model", front[0].config, spec.workloads[0]))
    bad[first] = {"status": "failed", "metrics": None, "error": "boom"}
    assert front[0].hash not in {p.hash for p in promote_points(spec, points, bad)}


def test_random_points_are_reproducible():
    spec = spec_with(search={"method": "random", "budget": 7, "seed": 9})
    assert [p.hash for p in random_points(spec)] == [p.hash for p in random_points(spec)]
    other = spec_with(search={"method": "random", "budget": 7, "seed": 10})
    assert [p.hash for p in random_points(spec)] != [p.hash for p in random_points(other)]


def test_optuna_searches_with_the_model():
    for sampler in ("nsga2", "tpe"):
        spec = spec_with(search={"method": "optuna", "sampler": sampler, "budget": 12, "seed": 2, "promote": 2})
        calls = []

        def run_model(points):
            calls.append(len(points))
            return fake_results(spec, points)

        points = optuna_points(spec, run_model, slots=3)
        assert len(points) == 12 == len({p.hash for p in points})
        assert all(n <= 3 for n in calls)
        again = optuna_points(spec, lambda pts: fake_results(spec, pts), slots=3)
        assert [p.hash for p in again] == [p.hash for p in points]
        assert len(promote_points(spec, points, fake_results(spec, points))) == 2


def test_optuna_stops_at_the_grid_size():
    spec = spec_with(axes={"array.rows": [4, 8], "array.cols": [4]},
                     search={"method": "optuna", "budget": 50, "seed": 1})
    points = optuna_points(spec, lambda pts: fake_results(spec, pts), slots=2)
    assert len(points) == 2
