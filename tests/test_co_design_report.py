"""Outputs rebuilt from a results store: CSVs, Pareto front, plots, report.html, calibration."""

import csv
import math

import numpy as np
import pytest

from systolab import metrics
from systolab.app.cli import main
from systolab.co_design.evaluators import make_task, task_key
from systolab.co_design.report import calibration, load_sweep_data, spearman, write_outputs
from systolab.co_design.spec import parse_sweep
from systolab.co_design.store import ResultStore

SWEEP = {
    "name": "synthetic",
    "axes": {"array.rows": [4, 8], "array.cols": [4, 8], "scratchpad.depth": [256, 1024]},
    "workloads": [{"name": "fc", "gemm": [64, 64, 64]}, {"name": "odd", "gemm": [50, 72, 40]}],
    "evaluate": ["model", "rtl", "synth"],
    "objectives": {"latency_s": "min", "lut": "min"},
    "constraints": {"comb": {"max": 3000}},
}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fake_cycles(cfg, w):
    pes = cfg.rows * cfg.cols
    return int(w.macs / pes * (1.3 if cfg.scratchpad.depth == 256 else 1.1)) + 40 * cfg.rows


def fabricate(path):
    """A store as a finished sweep leaves it, with made-up numbers and two failures."""
    spec = parse_sweep(SWEEP, source="synthetic.yaml")
    store = ResultStore(path)
    store.put_sweep(spec.to_dict())
    points = spec.grid()
    store.add_points(spec.name, [(p.hash, p.config.to_dict(), p.axes) for p in points], "measured")
    truth = {}
    for i, p in enumerate(points):
        cfg = p.config
        pes = cfg.rows * cfg.cols
        synth = {"lut": 100 * pes + cfg.scratchpad.depth // 8, "ff": 80 * pes, "dsp": pes, "bram": 2,
                 "comb": 150 * pes, "fmax_mhz": 120.0 - pes / 2, "ccu2c": 0, "lutram": 0,
                 "pnr_mode": "placed", "synth_s": 1.0}
        truth[(p.hash, "synth")] = synth
        ok = {"status": "ok", "error": None, "tool_versions": {"systolab": "test"}, "wall_s": 0.1}
        store.record(task_key(make_task("synth", cfg)), {**ok, "metrics": synth})
        for w in spec.workloads:
            model = fake_cycles(cfg, w)
            rtl = int(model * (1.0 + 0.02 * ((i % 3) - 1)))
            truth[(p.hash, w.key)] = (model, rtl)
            store.record(task_key(make_task("model", cfg, w)), {**ok, "metrics": {"cycles": model, "macs": w.macs}})
            if i == 5 and w.name == "odd":
                store.record(task_key(make_task("rtl", cfg, w)),
                             {"status": "timeout", "metrics": None, "tool_versions": {},
                              "error": "rtl: no result within the wall-clock limit of 900 s (limits.timeout_s)"})
                truth[(p.hash, w.key)] = (model, None)
            else:
                store.record(task_key(make_task("rtl", cfg, w)), {**ok, "metrics": {"cycles": rtl, "macs": w.macs}})
    return spec, store, points, truth


def test_outputs_from_a_store(tmp_path):
    spec, store, points, truth = fabricate(tmp_path / "r.sqlite")
    out = tmp_path / "out"
    files = write_outputs(store, None, out)
    assert {"results.csv", "pareto.csv", "report.html", "utilization.png", "calibration.png",
            "pareto_lut_vs_latency_s.png"} <= set(files)
    for name, p in files.items():
        if name.endswith(".png"):
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # results.csv: one row per (point, workload) and one per point
    rows = read_csv(out / "results.csv")
    assert len(rows) == len(points) * 3
    assert list(rows[0])[:6] == ["config_hash", "label", "role", "array.rows", "array.cols", "scratchpad.depth"]

    # the front, by brute force over the same numbers (RTL cycles where measured, model elsewhere)
    expected = {}
    for p in points:
        s = truth[(p.hash, "synth")]
        if s["comb"] > 3000:
            continue
        rtl = [truth[(p.hash, w.key)][1] for w in spec.workloads]
        model = [truth[(p.hash, w.key)][0] for w in spec.workloads]
        cycles = sum(rtl) if None not in rtl else sum(model)
        expected[p.hash] = (metrics.latency_s(cycles, s["fmax_mhz"] * 1e6), s["lut"])
    front = {h for h, (lat, lut) in expected.items()
             if not any(l2 <= lat and u2 <= lut and (l2, u2) != (lat, lut) for l2, u2 in expected.values())}
    got = read_csv(out / "pareto.csv")
    assert {r["config_hash"] for r in got} == front and front
    for r in got:
        assert r["workload"] == "all"
        assert math.isclose(float(r["latency_s"]), expected[r["config_hash"]][0])
        assert float(r["gops"]) == pytest.approx(2 * sum(w.macs for w in spec.workloads) / float(r["latency_s"]) / 1e9)

    # report.html is self-contained: every image inline, the failure listed, calibration shown
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len([f for f in files if f.endswith(".png")])
    assert "src='http" not in page and "href=" not in page
    assert "no result within the wall-clock limit of 900 s" in page
    assert "Spearman" in page and "Pareto points in detail" in page
    store.close()


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


def test_report_command(tmp_path, capsys):
    fabricate(tmp_path / "r.sqlite")[1].close()
    out = tmp_path / "again"
    assert main(["report", str(tmp_path / "r.sqlite"), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[-1] == f"report: {out / 'report.html'}"
    assert "Pareto front of synthetic" in stdout
    assert (out / "pareto.csv").is_file()
    assert main(["report", str(tmp_path / "r.sqlite"), "--sweep", "other"]) == 2
    assert capsys.readouterr().err.endswith("no sweep named 'other'; the store holds synthetic\n")


def test_rtl_time_split():
    from systolab.co_design.report import rtl_time

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
