"""`systolab serve`'s HTTP API through the framework's test client: every endpoint, the bad inputs
(one-line 4xx, never a traceback), the path, token, upload and job-limit checks."""

import io
import json
import os
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from systolab.app.cli import main as cli
from systolab.app.web import Settings, create_app
from systolab.app.web.vcd import busy_intervals
from systolab.codegen.gemm import candidate_tilings, compile_gemm, random_gemm
from systolab.codegen.program import Program
from systolab.config import config_from_dict, load_config
from systolab.isa import ISA, isa_for
from systolab.isa.docs import render_markdown
from systolab.perf import PerfModel, Timing

from conftest import ROOT

SMALL = "array: {rows: 2, cols: 2}\nscratchpad: {depth: 256}\naccumulator: {depth: 64}\nmemory: {size_kib: 64}\n"
DEFAULT = (ROOT / "configs/default.yaml").read_text()
TINY_SWEEP = """name: tiny
base: ../default.yaml
set: {memory.size_kib: 256}
axes: {array.rows: [2, 4]}
workloads: [{name: g, gemm: [16, 16, 16]}]
evaluate: [model]
objectives: {cycles: min, pes: min}
"""


def client_for(store, **settings) -> TestClient:
    app = create_app(Settings(store=Path(store), **settings))
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path):
    with client_for(tmp_path / "store", max_upload=64 << 10) as c:
        yield c


def cli_run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def wait(c, job_id, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = c.get(f"/api/jobs/{job_id}").json()
        if j["state"] != "running":
            return j
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout} s: {j}")


def one_line_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


# -- pages and docs ----------------------------------------------------------------------------------
def test_pages_are_linked_from_the_start_page_and_use_nothing_from_outside(client):
    start = client.get("/")
    assert start.status_code == 200
    for page in ("config", "compile", "timeline", "run", "sweeps"):
        assert f'href="/{page}"' in start.text
        r = client.get(f"/{page}")
        assert r.status_code == 200 and "<nav>" in r.text
        assert "http://" not in r.text and "https://" not in r.text, page
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    js = client.get("/static/docs/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


def test_plotly_is_served_from_the_installed_package(client):
    from importlib import resources
    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200
    assert r.content == (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()


def test_openapi_documents_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/config/check", "/api/compile", "/api/programs/{cid}/listing", "/api/programs/{cid}/timeline",
              "/api/runs", "/api/jobs/{jid}", "/api/jobs/{jid}/cancel", "/api/sweeps", "/api/stores/sweep",
              "/api/stores/report", "/api/stores/compare", "/api/uploads/{name}",
              "/api/configs/{config_hash}/files/{name}"):
        assert p in paths, p


# -- configs -------------------------------------------------------------------------------------------
def test_config_facts(client):
    r = client.post("/api/config/check", json={"yaml": SMALL, "source": "small.yaml"})
    assert r.status_code == 200
    f = r.json()
    cfg = config_from_dict({"array": {"rows": 2, "cols": 2}, "scratchpad": {"depth": 256},
                            "accumulator": {"depth": 64}, "memory": {"size_kib": 64}})
    assert f["hash"] == cfg.hash and f["pes"] == 4
    assert f["scratchpad_bytes"] == 256 * 2 and f["accumulator_bytes"] == 64 * 4 * 2
    assert f["widths"] == isa_for(cfg).widths
    matmul = next(i for i in f["instructions"] if i["name"] == "MATMUL")
    assert matmul["queue"] == "compute"
    assert {x["name"]: x["width"] for x in matmul["fields"]} == \
        {x.name: x.width for x in isa_for(cfg).formats["MATMUL"].fields}


@pytest.mark.parametrize("text", [
    "array: {rows: 3}\n",
    "array: {rows: 8, colz: 8}\n",
    "arrays: {rows: 8}\n",
    "array: {rows: [8\n",
    "scratchpad: {depth: 1048576}\naccumulator: {depth: 1048576}\n",
    "- just a list\n",
])
def test_bad_config_is_a_400_with_the_clis_message(client, tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, err = cli_run("run", path, "--workload", "gemm:4x4x4")
    assert code == 2
    msg = one_line_error(client.post("/api/config/check", json={"yaml": text, "source": str(path)}), 400)
    assert err == f"systolab: error: {msg}\n"
    # the same line from every endpoint that takes a config
    assert one_line_error(client.post("/api/compile", json={"yaml": text, "source": str(path),
                                                            "workload": "gemm:4x4x4"}), 400) == msg
    assert one_line_error(client.post("/api/runs", json={"yaml": text, "source": str(path),
                                                         "workload": "gemm:4x4x4", "sim": "func"}), 400) == msg


def test_templates_and_saving_configs(client):
    t = client.get("/api/templates").json()
    assert "configs/default.yaml" in t["configs"] and "configs/sweeps/model_grid.yaml" in t["sweeps"]
    r = client.get("/api/file", params={"path": "configs/default.yaml"})
    assert r.status_code == 200 and r.json()["text"] == DEFAULT
    r = client.post("/api/config/save", json={"yaml": SMALL, "name": "small.yaml"})
    assert r.status_code == 200 and r.json()["path"] == "user-configs/small.yaml"
    assert client.get("/api/file", params={"path": "user-configs/small.yaml"}).json()["text"] == SMALL
    assert "user-configs/small.yaml" in client.get("/api/templates").json()["saved"]
    one_line_error(client.post("/api/config/save", json={"yaml": SMALL, "name": "../small.yaml"}), 400)
    one_line_error(client.post("/api/config/save", json={"yaml": SMALL, "name": "small.txt"}), 400)
    one_line_error(client.post("/api/config/save", json={"yaml": "array: {rows: 3}", "name": "x.yaml"}), 400)


# -- paths ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,status", [
    ("../etc/passwd", 403), ("uploads/../../outside.yaml", 403), ("/etc/passwd", 403),
    ("configs/../../../etc/passwd", 403), ("configs/../pyproject.toml", 403), ("~/x.yaml", 403),
    ("uploads/missing.yaml", 404), ("configs/missing.yaml", 404), ("", 400),
])
def test_paths_outside_the_store_are_refused(client, path, status):
    one_line_error(client.get("/api/file", params={"path": path}), status)


def test_symlinks_out_of_the_store_are_refused(client, tmp_path):
    store = tmp_path / "store"
    outside = tmp_path / "secret.yaml"
    outside.write_text("array: {rows: 8}\n")
    (store / "uploads" / "link.yaml").symlink_to(outside)
    (store / "uploads" / "dir").symlink_to(tmp_path)
    assert "outside the service's store" in one_line_error(
        client.get("/api/file", params={"path": "uploads/link.yaml"}), 403)
    one_line_error(client.get("/api/file", params={"path": "uploads/dir/secret.yaml"}), 403)
    one_line_error(client.post("/api/compile", json={"yaml": SMALL, "model": "uploads/link.yaml"}), 403)
    one_line_error(client.get("/api/stores/sweep", params={"db": "uploads/dir/x.sqlite"}), 403)
    # a sweep may not read a base config outside the store either
    one_line_error(client.post("/api/sweeps", json={"yaml": TINY_SWEEP.replace("../default.yaml", "../../secret.yaml"),
                                                    "name": "evil.yaml"}), 403)
    one_line_error(client.post("/api/sweeps", json={"yaml": TINY_SWEEP.replace("../default.yaml", str(outside)),
                                                    "name": "evil.yaml"}), 403)
    assert outside.read_text() == "array: {rows: 8}\n"


# -- uploads ---------------------------------------------------------------------------------------------
def test_uploads_are_limited_and_stay_in_the_store(client, tmp_path):
    r = client.put("/api/uploads/x.npy", content=b"\x93NUMPY" + b"0" * 1000)
    assert r.status_code == 200 and r.json()["path"] == "uploads/x.npy" and r.json()["bytes"] == 1006
    assert (tmp_path / "store/uploads/x.npy").stat().st_size == 1006
    # too big: refused from Content-Length, and while streaming when there is none
    assert "limit of 65,536 bytes" in one_line_error(client.put("/api/uploads/big.onnx", content=b"0" * (65 << 10)), 413)

    def chunks():
        for _ in range(100):
            yield b"0" * 4096
    one_line_error(client.put("/api/uploads/big.onnx", content=chunks()), 413)
    assert not (tmp_path / "store/uploads/big.onnx").exists()
    assert not list((tmp_path / "store/uploads").glob(".*part"))
    one_line_error(client.put("/api/uploads/..%2Fevil.onnx", content=b"x"), 404)     # no such route
    one_line_error(client.put("/api/uploads/..evil.onnx", content=b"x"), 400)
    one_line_error(client.put("/api/uploads/evil.sh", content=b"x"), 400)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == sorted(
        ["uploads", "user-configs", "configs-by-hash", "programs", "runs", "jobs", "sweep-files", "sweeps"])
    # any JSON body is limited too
    one_line_error(client.post("/api/config/check", content=b"{" + b" " * (5 << 20) + b"}",
                               headers={"content-type": "application/json"}), 413)


# -- compile ---------------------------------------------------------------------------------------------
def test_compile_gemm(client):
    cfg = load_config(ROOT / "configs/default.yaml")
    r = client.post("/api/compile", json={"yaml": DEFAULT, "source": "configs/default.yaml",
                                          "workload": "gemm:48x40x24", "seed": 3})
    assert r.status_code == 200, r.text
    s = r.json()
    code, out, _ = cli_run("run", ROOT / "configs/default.yaml", "--workload", "gemm:48x40x24", "--seed", 3,
                           "--sim", "model", "--json")
    ref = json.loads(out)
    assert code == 0 and s["cycles"] == ref["cycles"] and s["instructions"] == ref["instructions"]
    assert s["utilization"] == pytest.approx(ref["utilization"]) and s["macs"] == 48 * 40 * 24
    layer, = s["layers"]
    assert len(layer["alternatives"]) == len(candidate_tilings(cfg, (48, 40, 24)))
    chosen = [a for a in layer["alternatives"] if a["chosen"]]
    assert len(chosen) == 1 and chosen[0]["cycles"] == s["cycles"] == min(a["cycles"] for a in layer["alternatives"])
    assert layer["tiling"][0]["mt"] == chosen[0]["mt"]
    names = {m["name"] for m in s["memory_map"]}
    assert {"instructions", "A", "Bt", "params", "C"} <= names
    assert [m["name"] for m in s["memory_map"] if m["output"]] == ["C"]
    assert sum(layer["queues"].values()) == s["instructions"]

    program = compile_gemm(cfg, random_gemm(48, 40, 24, seed=3), name="gemm:48x40x24")
    L = client.get(f"/api/programs/{s['id']}/listing", params={"offset": 5, "limit": 7}).json()
    assert L["total"] == program.insn_count and [i["index"] for i in L["instructions"]] == list(range(5, 12))
    isa = ISA(cfg)
    for i in L["instructions"]:
        w = program.words[i["index"]]
        assert i["text"] == isa.disassemble_one(w) and i["op"] == isa.decode(w).op
        assert i["queue"] == isa.formats[i["op"]].queue
        assert set(i["tokens"]) == {t for t in ("pop_prev", "pop_next", "push_prev", "push_next") if isa.decode(w).values[t]}

    t = client.get(f"/api/programs/{s['id']}/timeline").json()
    assert t["cycles"] == s["cycles"] and len(t["bars"]) == program.insn_count
    assert max(end for *_, end in t["bars"]) + Timing.for_config(cfg).finish == t["cycles"]
    assert all(q in ("load", "compute", "store") and start <= end for q, _, _, start, end in t["bars"])

    b = client.get(f"/api/programs/{s['id']}/bundle")
    assert b.status_code == 200
    bundle = Path(client.app.state.service.store / "dl.npz")
    bundle.write_bytes(b.content)
    assert Program.load(bundle, cfg).words == program.words
    one_line_error(client.get(f"/api/programs/{s['id']}/listing", params={"layer": 1}), 404)
    one_line_error(client.get("/api/programs/nope/listing"), 404)
    one_line_error(client.get("/api/programs/..%2F..%2Fetc/listing"), 404)
    one_line_error(client.get("/api/programs/..etc/listing"), 400)


def test_model_recording_changes_no_prediction():
    """The timeline's per-instruction recording is off by default and changes nothing when on."""
    for raw, shapes in (({}, [(64, 64, 64), (37, 53, 29)]),
                        ({"array": {"rows": 4, "cols": 8}, "memory": {"latency": 7}}, [(100, 300, 50), (1, 9, 1)])):
        cfg = config_from_dict(raw)
        model = PerfModel(cfg)
        for M, K, N in shapes:
            prog = compile_gemm(cfg, random_gemm(M, K, N))
            plain = model.predict(prog)
            record = []
            recorded = model.predict(prog, record=record)
            assert (plain.cycles, plain.busy, plain.array_busy) == \
                   (recorded.cycles, recorded.busy, recorded.array_busy)
            assert [r[1] for r in record] == list(range(prog.insn_count))
            insns = [(i.op, i.values) for i in map(model.isa.decode, prog.words)]
            assert model.predict_insns(insns, bound=plain.cycles - 100, record=[]) is None


def test_bad_workloads_are_400s(client):
    body = {"yaml": SMALL, "source": "small.yaml"}
    msg = one_line_error(client.post("/api/compile", json={**body, "workload": "conv:3x3"}), 400)
    code, _, err = cli_run("run", ROOT / "configs/default.yaml", "--workload", "conv:3x3")
    assert code == 2 and err == f"systolab: error: {msg}\n"
    one_line_error(client.post("/api/compile", json={**body, "workload": "gemm:0x4x4"}), 400)
    one_line_error(client.post("/api/compile", json=body), 400)
    one_line_error(client.post("/api/compile", json={**body, "workload": "gemm:4x4x4", "model": "uploads/m.onnx"}), 400)
    one_line_error(client.post("/api/runs", json={**body, "workload": "gemm:4x4x4", "sim": "spice"}), 400)
    one_line_error(client.post("/api/runs", json={**body, "workload": "gemm:4x4", "sim": "func"}), 400)
    one_line_error(client.post("/api/runs", json={**body, "workload": "gemm:4x4x4", "sim": "func", "trace": True}), 400)
    one_line_error(client.post("/api/compile", json={**body, "workload": "gemm:4x4x4", "seed": -1}), 422)
    one_line_error(client.post("/api/compile", json={"workload": "gemm:4x4x4"}), 422)
    one_line_error(client.post("/api/compile", content=b"not json", headers={"content-type": "application/json"}), 422)


def test_onnx_upload_compile_and_a_broken_model(client, tmp_path):
    from onnx import helper

    from systolab.codegen.onnx_models import calibration_inputs, float_model, quantize
    rng = __import__("numpy").random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = float_model(nodes, {"x": [1, 3, 6, 6]}, {"y": [1, 4, 6, 6]},
                        {"w": rng.normal(0, 0.3, (4, 3, 3, 3)), "b": rng.normal(0, 0.1, 4)})
    q = quantize(model, tmp_path / "m.onnx", calibration_inputs(model, 4))
    up = client.put("/api/uploads/m.onnx", content=q.read_bytes()).json()
    s = client.post("/api/compile", json={"yaml": SMALL, "model": up["path"]})
    assert s.status_code == 200, s.text
    s = s.json()
    acc = s["layers"]
    assert s["kind"] == "onnx" and len(acc) >= 1 and all(layer["cycles"] > 0 for layer in acc)
    assert s["cycles"] == sum(layer["cycles"] for layer in acc)
    assert client.get(f"/api/programs/{s['id']}/listing").json()["total"] == acc[0]["instructions"]
    assert client.get(f"/api/programs/{s['id']}/timeline").json()["cycles"] > 0

    client.put("/api/uploads/broken.onnx", content=b"this is not a protobuf")
    msg = one_line_error(client.post("/api/compile", json={"yaml": SMALL, "model": "uploads/broken.onnx"}), 400)
    assert "not an ONNX model" in msg
    assert one_line_error(client.post("/api/runs", json={"yaml": SMALL, "model": "uploads/broken.onnx",
                                                         "sim": "func"}), 400) == msg
    one_line_error(client.post("/api/compile", json={"yaml": SMALL, "model": "uploads/missing.onnx"}), 404)
    client.put("/api/uploads/x.npy", content=b"x")
    one_line_error(client.post("/api/compile", json={"yaml": SMALL, "model": "uploads/x.npy"}), 400)


# -- downloads -----------------------------------------------------------------------------------------
def test_downloads(client):
    h = client.post("/api/config/check", json={"yaml": SMALL, "source": "small.yaml"}).json()["hash"]
    cfg = config_from_dict({"array": {"rows": 2, "cols": 2}, "scratchpad": {"depth": 256},
                            "accumulator": {"depth": 64}, "memory": {"size_kib": 64}}, source="small.yaml")
    r = client.get(f"/api/configs/{h}/files/isa.md")
    assert r.status_code == 200 and r.text == render_markdown(ISA(cfg))
    assert "#define" in client.get(f"/api/configs/{h}/files/systolab_isa.h").text
    v = client.get(f"/api/configs/{h}/files/systolab_top.v")
    assert v.status_code == 200 and "module systolab_top" in v.text
    assert config_from_dict(__import__("yaml").safe_load(client.get(f"/api/configs/{h}/files/config.yaml").text)).hash == h
    one_line_error(client.get(f"/api/configs/{h}/files/passwd"), 404)
    one_line_error(client.get("/api/configs/0123456789ab/files/isa.md"), 404)
    one_line_error(client.get("/api/configs/..%2F..%2Fx/files/isa.md"), 404)
    one_line_error(client.get("/api/configs/....x/files/isa.md"), 400)


# -- runs and jobs -----------------------------------------------------------------------------------------
def test_run_gives_the_cli_result_and_is_cached(client, monkeypatch):
    body = {"yaml": DEFAULT, "source": "configs/default.yaml", "workload": "gemm:20x30x40", "sim": "model"}
    r = client.post("/api/runs", json=body)
    assert r.status_code == 202 and r.json()["state"] == "running"
    j = wait(client, r.json()["id"])
    assert j["state"] == "done", j
    monkeypatch.chdir(ROOT)
    code, out, _ = cli_run("run", "configs/default.yaml", "--workload", "gemm:20x30x40", "--sim", "model", "--json")
    ref = json.loads(out)
    assert j["result"].keys() == ref.keys()
    assert {k: j["result"][k] for k in ref if k != "timings"} == {k: ref[k] for k in ref if k != "timings"}
    again = client.post("/api/runs", json=body).json()
    assert again["state"] == "done" and again["cached"] and again["result"]["cycles"] == ref["cycles"]
    assert any(x["id"] == j["id"] for x in client.get("/api/jobs").json())
    one_line_error(client.get("/api/jobs/nope"), 404)


def test_job_limit_and_cancel(tmp_path):
    with client_for(tmp_path / "store", max_jobs=1) as c:
        slow = {"yaml": SMALL, "workload": "gemm:512x512x512", "sim": "model"}
        j = c.post("/api/runs", json=slow).json()
        assert j["state"] == "running"
        assert "limit" in one_line_error(c.post("/api/runs", json={**slow, "seed": 1}), 429)
        assert "limit" in one_line_error(c.post("/api/sweeps", json={"path": "configs/sweeps/model_grid.yaml"}), 429)
        c.post(f"/api/jobs/{j['id']}/cancel")
        done = wait(c, j["id"], timeout=30)
        assert done["state"] == "cancelled" and done["result"] is None
        proc = c.app.state.service.jobs.get(j["id"]).process
        assert proc.exitcode is not None
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)
        # the slot is free again
        nxt = c.post("/api/runs", json={**slow, "workload": "gemm:4x4x4"})
        assert nxt.status_code == 202 and wait(c, nxt.json()["id"])["state"] == "done"


@pytest.mark.rtl
def test_traced_rtl_run_gives_the_rtl_gantt(client):
    body = {"yaml": SMALL, "source": "small.yaml", "workload": "gemm:8x8x8", "sim": "verilator", "trace": True}
    j = wait(client, client.post("/api/runs", json=body).json()["id"], timeout=600)
    assert j["state"] == "done", j
    t = client.get(f"/api/jobs/{j['id']}/timeline").json()
    counters = j["result"]["counters"]
    assert t["cycles"] == counters["cycles"] == j["result"]["cycles"]
    for name in ("load_busy", "compute_busy", "store_busy", "array_busy", "compute_wait", "store_wait"):
        assert sum(b - a for a, b in t["tracks"][name]) == counters[name], name
        assert all(0 <= a < b <= t["cycles"] for a, b in t["tracks"][name])
    no = client.post("/api/runs", json={**body, "trace": False, "sim": "model"}).json()
    one_line_error(client.get(f"/api/jobs/{wait(client, no['id'])['id']}/timeline"), 404)


def test_vcd_reader_refuses_what_it_cannot_read(tmp_path):
    from systolab.app.web.vcd import TraceError
    (tmp_path / "x.fst").write_bytes(b"")
    with pytest.raises(TraceError, match="reads .vcd"):
        busy_intervals(tmp_path / "x.fst")
    (tmp_path / "x.vcd").write_text("$scope module TOP $end\n$var wire 1 ! clk $end\n$upscope $end\n$enddefinitions $end\n")
    with pytest.raises(TraceError, match="no cnt_cycles"):
        busy_intervals(tmp_path / "x.vcd")


# -- sweeps and results stores -------------------------------------------------------------------------
def test_sweep_store_table_compare_and_report(client):
    r = client.post("/api/sweeps", json={"yaml": TINY_SWEEP, "name": "tiny.yaml"})
    assert r.status_code == 202, r.text
    j = wait(client, r.json()["id"])
    assert j["state"] == "done", j
    assert j["result"]["db"] == "sweeps/tiny/results.sqlite" and j["result"]["points"] == 2
    assert j["progress"]["done"] == j["progress"]["total"] == 2
    stores = client.get("/api/stores").json()
    assert {"db": "sweeps/tiny/results.sqlite", "sweeps": ["tiny"]} in stores
    d = client.get("/api/stores/sweep", params={"db": "sweeps/tiny/results.sqlite"}).json()
    assert d["name"] == "tiny" and len(d["rows"]) == 2
    assert all(row["status"] == "ok" and row["cycles"] > 0 for row in d["rows"]), d["rows"]
    assert d["front"] and set(d["front"]) <= {row["config_hash"] for row in d["rows"]}
    a, b = (row["config_hash"] for row in d["rows"])
    cmp = client.get("/api/stores/compare", params={"db": "sweeps/tiny/results.sqlite", "a": a, "b": b}).json()
    assert {cmp["a"]["config"]["array"]["rows"], cmp["b"]["config"]["array"]["rows"]} == {2, 4}
    one_line_error(client.get("/api/stores/compare", params={"db": "sweeps/tiny/results.sqlite", "a": a, "b": "x"}), 404)
    rep = client.get("/api/stores/report", params={"db": "sweeps/tiny/results.sqlite"})
    assert rep.status_code == 200 and "<html" in rep.text and "Pareto" in rep.text
    one_line_error(client.get("/api/stores/sweep", params={"db": "sweeps/tiny/results.sqlite", "sweep": "other"}), 400)
    one_line_error(client.get("/api/stores/sweep", params={"db": "sweeps/tiny/report.html"}), 400)


def test_bad_sweeps_are_400s(client):
    msg = one_line_error(client.post("/api/sweeps", json={"yaml": TINY_SWEEP.replace("model]", "modle]"),
                                                          "name": "bad.yaml"}), 400)
    assert msg.startswith("sweep-files/bad.yaml: evaluate")
    one_line_error(client.post("/api/sweeps", json={"path": "configs/sweeps/nope.yaml"}), 404)
    one_line_error(client.post("/api/sweeps", json={}), 400)
    one_line_error(client.post("/api/sweeps", json={"yaml": "name: [", "name": "x.yaml"}), 400)


# -- token, host, origin, errors ---------------------------------------------------------------------
def test_token_is_required_on_every_request(tmp_path):
    with client_for(tmp_path / "store", token="s3cret") as c:
        for url in ("/", "/api/health", "/docs", "/openapi.json", "/static/plotly.min.js"):
            assert one_line_error(c.get(url), 401).startswith("this service needs a token")
        one_line_error(c.post("/api/config/check", json={"yaml": SMALL}), 401)
        one_line_error(c.get("/api/health", headers={"Authorization": "Bearer wrong"}), 403)
        one_line_error(c.get("/api/health", params={"token": "wrong"}), 403)
        assert c.get("/api/health", headers={"Authorization": "Bearer s3cret"}).json()["token"] is True
        assert c.get("/api/health", headers={"X-Systolab-Token": "s3cret"}).status_code == 200
        r = c.get("/", params={"token": "s3cret"})
        assert r.status_code == 200 and "systolab_token=s3cret" in r.headers["set-cookie"]
        assert c.get("/api/health").status_code == 200          # the cookie now carries it


def test_loopback_host_and_same_origin(client):
    one_line_error(client.get("/api/health", headers={"host": "evil.example"}), 403)
    one_line_error(client.post("/api/config/check", json={"yaml": SMALL}, headers={"origin": "http://evil.example"}), 403)
    assert client.post("/api/config/check", json={"yaml": SMALL}, headers={"origin": "http://127.0.0.1:8000"}).status_code == 200


def test_serve_refuses_another_address_without_a_token(monkeypatch):
    monkeypatch.delenv("SYSTOLAB_TOKEN", raising=False)
    code, out, err = cli_run("serve", "--host", "0.0.0.0")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("systolab serve: --host 0.0.0.0 would open the service")


def test_an_internal_error_is_a_500_without_a_traceback(client, monkeypatch):
    import systolab.app.web.api as api

    def boom(*a, **k):
        raise RuntimeError("secret detail\nmore")
    monkeypatch.setattr(api, "config_facts", boom)
    msg = one_line_error(client.post("/api/config/check", json={"yaml": SMALL}), 500)
    assert "RuntimeError" in msg and "secret" not in msg
