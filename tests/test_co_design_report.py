"""Outputs rebuilt from a results store: CSVs, Pareto front, plots, report.html, calibration."""

import csv
import math

import pytest

from support.sweep_store import fabricate
from systolab import metrics
from systolab.app.cli import main
from systolab.co_design.report import write_outputs


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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


def test_the_page_escapes_what_it_shows(tmp_path):
    spec, store, points, truth = fabricate(tmp_path / "r.sqlite")
    store.put_sweep({**spec.to_dict(), "description": "rows <b>& cols</b>"})
    write_outputs(store, None, tmp_path / "out")
    store.close()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<p>rows &lt;b&gt;&amp; cols&lt;/b&gt;</p>" in page and "<b>" not in page


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
