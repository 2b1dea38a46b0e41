"""A sweep's results read back from a store: calibration, Spearman rank correlation, RTL time, fmt."""

import numpy as np
import pytest

from support.sweep_store import fabricate
from systolab.co_design.results import calibration, fmt, load_sweep_data, rtl_time, spearman


def test_calibration_numbers(tmp_path):
    spec, store, points, truth = fabricate(tmp_path / "r.sqlite")
    data = load_sweep_data(store)
    cal = data.calibration
    pairs = [(m, r) for (h, wl), v in truth.items() if wl != "synth" for m, r in [v] if r is not None]
    errors = [(m - r) / r for m, r in pairs]
    assert cal["n"] == len(pairs) == len(points) * 2 - 1
    assert cal["mean_abs_error"] == pytest.approx(np.mean(np.abs(errors)))
    assert abs(cal["worst_error"]) == pytest.approx(max(abs(e) for e in errors))
    assert cal["spearman"] == pytest.approx(spearman([m for m, _ in pairs], [r for _, r in pairs]))
    assert [f["evaluator"] for f in data.failures] == ["rtl"] and data.failures[0]["status"] == "timeout"
    store.close()


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: Pearson of [1.5, 1.5, 3, 4] and [1, 2, 3, 4]
    a, b = np.array([1.5, 1.5, 3, 4]), np.array([1, 2, 3, 4])
    assert spearman([7, 7, 8, 9], [1, 2, 3, 4]) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert spearman([1], [2]) is None and spearman([1, 1], [2, 3]) is None
    assert calibration([])["n"] == 0


def test_rtl_time_split():
    def row(evaluator_status, build, sim, wall):
        return {"status": evaluator_status, "wall_s": wall,
                "metrics": {"timings": {"compile_s": 0.1, "build_s": build, "sim_s": sim}}}

    results = {
        ("a", "fc", "rtl"): row("ok", 30.0, 0.5, 34.0),       # first run: builds
        ("a", "odd", "rtl"): row("ok", 0.0, 0.25, 2.25),      # cached build
        ("b", "fc", "rtl"): row("failed", 20.0, 9.0, 40.0),   # failures do not count
        ("a", "fc", "model"): row("ok", 0.0, 7.0, 7.5),       # nor other evaluators
    }
    t = rtl_time(results)
    assert t == {"runs": 2, "build_s": 30.0, "sim_s": 0.75, "other_s": 3.5 + 2.0}


@pytest.mark.parametrize("value, key, shown", [
    (None, "", "–"), ("", "", "–"), (True, "", "True"), (1234567, "", "1,234,567"), ("ecp5", "", "ecp5"),
    (2.5e-6, "latency_s", "2.5 µs"), (0.0123, "latency_s", "12.3 ms"), (3.0, "latency_s", "3 s"),
    (0.0234, "error", "+2.3%"), (-0.05, "worst error", "-5.0%"), (0.0234, "mean |error|", "2.3%"),
    (0.98765, "Spearman rank correlation", "0.988"), (0.5, "utilization", "0.500"),
    (1234.5678, "", "1235"), (2.5e7, "", "2.5e+07"), (0.0, "", "0"),
])
def test_fmt(value, key, shown):
    assert fmt(value, key) == shown
