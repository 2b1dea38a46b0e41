"""Running sweeps: resume after kill -9, two sweeps on one store, Dask = local, search, watchdog.

Only the cheap evaluators run here (func: the functional simulator; model), on tiny GEMMs.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from systolab.co_design import evaluators
from systolab.co_design.evaluators import evaluate, make_task, task_affinity
from systolab.co_design.spec import load_sweep
from systolab.co_design.store import ResultStore
from systolab.co_design.executors import LocalExecutor
from systolab.co_design.sweep import CtrlC, LineProgress, Runner, SweepSummary, _progress, _tasks, run_sweep
from systolab.config import default_config


def write_sweep(tmp_path, name="s", **changes):
    raw = {
        "name": name,
        "axes": {"array.rows": [1, 2, 4, 8], "array.cols": [1, 2, 4, 8], "scratchpad.depth": [64, 256]},
        "workloads": [{"name": "tiny", "gemm": [8, 8, 8]}],
        "evaluate": ["func"],
        "objectives": {"pes": "min"},
        "limits": {"timeout_s": 120},
    }
    raw.update(changes)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def sweep_cmd(path, db, out, jobs=1):
    return [sys.executable, "-m", "systolab.app.cli", "sweep", str(path), "--db", str(db),
            "--out", str(out), "-j", str(jobs), "--no-progress"]


def stored(db) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:     # the schema is not there yet
        return 0
    finally:
        con.close()


def outcomes(db):
    """Stored rows without what differs from run to run (wall times, hosts, timings)."""
    with ResultStore(db, create=False) as store:
        rows = store.results()
    clean = {}
    for key, r in rows.items():
        m = dict(r["metrics"] or {})
        m.pop("timings", None)
        clean[key] = (r["status"], r["error"], m)
    return clean


def test_resume_after_kill_9(tmp_path):
    path = write_sweep(tmp_path)
    spec = load_sweep(path)
    total = spec.grid_size * len(spec.workloads)
    db, out = tmp_path / "r.sqlite", tmp_path / "out"

    proc = subprocess.Popen(sweep_cmd(path, db, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while stored(db) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = outcomes(db)
    assert 4 <= len(before) < total, "the sweep must be killed half-way"

    done = subprocess.run(sweep_cmd(path, db, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"report: {out / 'report.html'}"
    after = outcomes(db)
    assert len(after) == total
    assert all(after[k] == v for k, v in before.items())            # nothing lost or replaced
    with ResultStore(db, create=False) as store:
        attempts = store.attempts()
        assert not store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    assert set(attempts) == set(after)
    assert all(attempts[k] == 1 for k in before)                    # nothing measured twice
    assert sum(n - 1 for n in attempts.values()) <= 1               # only what was in flight
    assert (out / "report.html").is_file() and (out / "results.csv").is_file()

    # a third run measures nothing
    again = subprocess.run(sweep_cmd(path, db, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "func 0 measured" in again.stdout
    with ResultStore(db, create=False) as store:
        assert store.attempts() == attempts


def test_ctrl_c_releases_claims_and_exits_130(tmp_path):
    path = write_sweep(tmp_path)
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    # a new session: SIGINT goes to the sweep and its workers, as Ctrl-C in a terminal does
    proc = subprocess.Popen(sweep_cmd(path, db, out, jobs=2), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while stored(db) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.endswith("systolab: interrupted\n")
    with ResultStore(db, create=False) as store:
        assert not store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        assert all(r["status"] == "ok" for r in store.results().values())


def test_ctrl_c_is_taken_at_a_safe_point():
    # the handler before: Python's default, or SIG_IGN when the tests were started in the
    # background of a non-interactive shell (which ignores SIGINT for such jobs)
    before = signal.getsignal(signal.SIGINT)
    with CtrlC() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)          # the first Ctrl-C only asks the sweep to stop
        assert ctrl_c.requested
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.check()
        with pytest.raises(KeyboardInterrupt):       # a second one stops it at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before                # put back as it was


def test_store_recovers_from_a_transaction_left_open(tmp_path):
    # a Ctrl-C just after BEGIN returned used to leave one open: the next write then failed
    # with "cannot start a transaction within a transaction"
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.put_sweep({"name": "s"})
        store.conn.execute("BEGIN IMMEDIATE")
        store.conn.execute("DELETE FROM sweeps")
        store.release()
        assert not store.conn.in_transaction
        assert [s["name"] for s in store.sweeps()] == ["s"]       # the half-done write is gone


def test_two_concurrent_sweeps_share_one_store(tmp_path):
    path = write_sweep(tmp_path)
    spec = load_sweep(path)
    db = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen(sweep_cmd(path, db, tmp_path / f"out{i}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    with ResultStore(db, create=False) as store:
        rows, attempts = store.results(), store.attempts()
    total = spec.grid_size * len(spec.workloads)
    assert len(rows) == total
    assert sorted(attempts.values()) == [1] * total                  # the work was split, not repeated
    for i in range(2):
        assert (tmp_path / f"out{i}" / "report.html").is_file()


def test_dask_local_cluster_equals_local_pool(tmp_path):
    path = write_sweep(tmp_path, axes={"array.rows": [2, 4], "array.cols": [4], "scratchpad.depth": [64, 256]},
                       workloads=[{"name": "a", "gemm": [8, 8, 8]}, {"name": "b", "gemm": [5, 9, 3], "seed": 2}],
                       evaluate=["model", "func"])
    spec = load_sweep(path)
    run_sweep(spec, db=tmp_path / "local.sqlite", out=tmp_path / "local", jobs=2, progress=False)
    run_sweep(spec, db=tmp_path / "dask.sqlite", out=tmp_path / "dask", jobs=2, executor="dask", progress=False)
    local, dask = outcomes(tmp_path / "local.sqlite"), outcomes(tmp_path / "dask.sqlite")
    assert len(local) == spec.grid_size * len(spec.workloads) * 2
    assert local == dask
    assert (tmp_path / "local" / "results.csv").read_text() == (tmp_path / "dask" / "results.csv").read_text()


def test_random_and_optuna_pick_distinct_points_reproducibly(tmp_path):
    for method in ({"method": "random", "budget": 5, "seed": 4},
                   {"method": "optuna", "sampler": "nsga2", "budget": 5, "seed": 4},
                   {"method": "optuna", "sampler": "tpe", "budget": 4, "seed": 1}):
        path = write_sweep(tmp_path, name=method["method"], evaluate=["model"], search=method,
                           objectives={"cycles": "min", "pes": "min"})
        spec = load_sweep(path)
        picked = []
        for run in range(2):
            db = tmp_path / f"{method['method']}{method.get('sampler', '')}{run}.sqlite"
            summary = run_sweep(spec, db=db, out=tmp_path / f"o{run}", jobs=2, progress=False)
            with ResultStore(db, create=False) as store:
                points = store.points(spec.name)
            picked.append([p["hash"] for p in points])
            assert summary.points == method["budget"] == len(points)
            assert len(outcomes(db)) == method["budget"]
        assert picked[0] == picked[1]


def _slow(cfg, task):
    time.sleep(30)


def test_wall_clock_limit_records_a_timeout(monkeypatch):
    monkeypatch.setitem(evaluators.EVALUATORS, "func", _slow)
    task = make_task("func", default_config(), load_sweep_workload(), limits=None)
    task["timeout_s"] = 0.3
    t0 = time.monotonic()
    out = evaluate(task)
    assert time.monotonic() - t0 < 5
    assert out["status"] == "timeout"
    assert out["error"] == "func: no result within the wall-clock limit of 0.3 s (limits.timeout_s)"


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    # 64 KiB of external memory cannot hold this GEMM's operands: the compiler refuses it
    path = write_sweep(tmp_path, axes={"array.rows": [8], "array.cols": [8], "memory.size_kib": [64, 256]},
                       workloads=[{"name": "long", "gemm": [8, 4096, 8]}])
    spec = load_sweep(path)
    run_sweep(spec, db=tmp_path / "r.sqlite", out=tmp_path / "out", jobs=1, progress=False)
    rows = sorted((status, error) for status, error, _ in outcomes(tmp_path / "r.sqlite").values())
    assert [status for status, _ in rows] == ["failed", "ok"]
    assert "memory.size_kib of sweep point 8x8 mem=64 is 64" in rows[0][1] and rows[1][1] is None
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Failures (1)" in page and "set memory.size_kib to at least 128" in page


def load_sweep_workload():
    from systolab.co_design.spec import Workload
    return Workload("w", 4, 4, 4)


@pytest.mark.parametrize("kind", ["model", "func"])
def test_evaluator_outcome_shape(kind):
    out = evaluate(make_task(kind, default_config().replace({"array.rows": 4, "array.cols": 4}),
                             load_sweep_workload()))
    assert set(out) >= {"status", "metrics", "error", "tool_versions", "wall_s", "host"}
    assert out["tool_versions"]["python"] and out["tool_versions"]["systolab"]
    assert out["status"] == "ok", out["error"]
    assert out["metrics"]["macs"] == 64


class HungExecutor:
    """Never finishes anything: the sweep's backstop must give up on each evaluation."""

    jobs = 1

    def __init__(self):
        self.submitted, self.abandoned = 0, []

    def submit(self, task):
        self.submitted += 1
        return self.submitted

    def wait(self, handles, timeout):
        time.sleep(timeout)
        return set()

    def result(self, handle):
        raise AssertionError("nothing finishes")

    def abandon(self, handle):
        self.abandoned.append(handle)


def test_backstop_stops_hung_evaluations_and_goes_on(tmp_path):
    path = write_sweep(tmp_path, axes={"array.rows": [2, 4], "array.cols": [4], "scratchpad.depth": [64]},
                       limits={"timeout_s": 0.2})
    spec = load_sweep(path)
    ex = HungExecutor()
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = SweepSummary(spec.name, store.path, tmp_path)
        Runner(spec, store, ex, summary, poll_s=0.05, grace_s=0.1).run(_tasks(spec, spec.grid(), ["func"]), "x")
        rows = store.results()
    assert ex.abandoned == [1, 2]
    assert [r["status"] for r in rows.values()] == ["timeout", "timeout"]
    assert all(r["error"] == "func: no result within 0.3 s (limits.timeout_s + 0.1 s); the worker was stopped"
               for r in rows.values())


def test_local_executor_abandon_keeps_the_others():
    cfg = default_config().replace({"array.rows": 4, "array.cols": 4})
    ex = LocalExecutor(2)
    try:
        a = ex.submit(make_task("func", cfg, load_sweep_workload()))
        b = ex.submit(make_task("func", cfg.replace({"array.rows": 2}), load_sweep_workload()))
        ex.abandon(a)                       # kills the pool; b goes to the new one
        done = set()
        deadline = time.monotonic() + 120
        while b not in done and time.monotonic() < deadline:
            done |= ex.wait([b], timeout=1.0)
        assert ex.result(b)["status"] == "ok"
    finally:
        ex.close()


@pytest.mark.rtl
def test_rtl_evaluator_one_small_point():
    """The one RTL point of these tests: the 4x4 config of tests/test_rtl_gemm.py (shared build)."""
    from conftest import small_config
    from systolab.co_design.spec import Workload

    cfg = small_config(4, 4, sp=64, acc=32, mem_kib=64)
    out = evaluate(make_task("rtl", cfg, Workload("w", 16, 24, 8), label="4x4"))
    assert out["status"] == "ok", out["error"]
    m = out["metrics"]
    assert m["sim"] == evaluators.rtl_sim() and m["mismatches"] == 0
    assert m["cycles"] >= m["ideal_cycles"] == 16 * 24 * 8 // 16
    assert out["tool_versions"]["verilator"] and out["tool_versions"]["sim"] == m["sim"]


def test_progress_in_a_log_is_plain_lines(monkeypatch):
    import io
    from rich.console import Console

    log = io.StringIO()
    console = Console(file=log, width=200)              # not a terminal: no live bar
    clock = iter([0.0, 0.0, 1.0, 20.0, 21.0, 40.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    prog = _progress(console)                           # t = 0
    assert isinstance(prog, LineProgress)
    with prog:
        bar = prog.add_task("rtl", total=4, failed=0)   # t0 = 0
        prog.advance(bar)                               # 1 s: too soon for a line
        prog.update(bar, failed=1)
        prog.advance(bar)                               # 20 s: a line
        prog.advance(bar)                               # 21 s: too soon again
        prog.advance(bar)                               # 40 s: the phase is done, a line
    assert log.getvalue().splitlines() == [
        "rtl: 2/4 done, 1 failed, 20s elapsed, about 20s left",
        "rtl: 4/4 done, 1 failed, 40s elapsed",
    ]


def test_the_vector_lane_count_is_a_sweep_axis(tmp_path, monkeypatch):
    """A base without a vector unit; the axis gives every point one. The performance model scores
    a small ResNet built in code whose pools and adds run on the vector unit: fewer lanes, more
    cycles, the same (checked) outputs."""
    monkeypatch.setenv("SYSTOLAB_CACHE", str(tmp_path / "cache"))
    path = write_sweep(tmp_path, axes={"array.rows": [4], "array.cols": [4], "vector.lanes": [1, 4]},
                       workloads=[{"name": "net", "network": "tiny_resnet:12"}],
                       evaluate=["model"], objectives={"cycles": "min"})
    spec = load_sweep(path)
    assert [p.config.vector.lanes for p in spec.grid()] == [1, 4]
    run_sweep(spec, db=tmp_path / "r.sqlite", out=tmp_path / "out", jobs=1, progress=False)
    rows = outcomes(tmp_path / "r.sqlite")
    lanes = {p.hash: p.config.vector.lanes for p in spec.grid()}
    cycles = {}
    for key, (status, error, m) in rows.items():
        assert status == "ok", error
        assert m["counters"]["vector_busy"] > 0
        cycles[lanes[key[0]]] = m["cycles"]
    assert cycles[1] > cycles[4]


def test_synthesis_of_the_biggest_arrays_is_dispatched_first(tmp_path):
    """Place and route takes longer the bigger the array: the largest goes out first, so it is not
    the last job running alone while the other workers idle (`make demo` lost 4 minutes that way)."""
    spec = load_sweep(write_sweep(tmp_path, evaluate=["func", "synth"]))
    points = spec.grid()
    tasks = _tasks(spec, points, ["synth", "func"])
    synth = [t for t in tasks if t["evaluator"] == "synth"]
    assert len(synth) == len(points) and tasks[:len(synth)] == synth          # synthesis before the rest
    pes = [t["config"]["array"]["rows"] * t["config"]["array"]["cols"] for t in synth]
    assert pes == sorted(pes, reverse=True) and pes[0] == 64


class TwoWorkers:
    """Two workers (pids 1 and 2); a task goes to the idle one, evaluations finish in the order
    they started. Records which worker ran what."""

    jobs = 2

    def __init__(self):
        self.idle, self.running, self.ran, self._next = [1, 2], {}, [], 0

    def submit(self, task):
        self._next += 1
        pid = self.idle.pop(0)
        self.running[self._next] = (pid, task)
        self.ran.append((pid, task))
        return self._next

    def wait(self, handles, timeout):
        return {min(handles)}

    def result(self, handle):
        pid, _ = self.running.pop(handle)
        self.idle.append(pid)
        return {"status": "ok", "metrics": {"cycles": 1}, "pid": pid, "wall_s": 0.0}

    def abandon(self, handle):
        raise AssertionError("nothing hangs")


def test_model_evaluations_that_differ_only_in_the_memory_port_go_to_one_worker(tmp_path):
    """A worker keeps the samples of the configs it evaluated on the model
    (`codegen.estimate.SAMPLES`), which do not depend on the memory port: the sweep gives the
    bus widths of one config to one worker where it can."""
    path = write_sweep(tmp_path, axes={"array.rows": [4, 8], "scratchpad.depth": [64, 256],
                                       "memory.bus_bytes": [8, 16, 32, 64]}, evaluate=["model"])
    spec = load_sweep(path)
    ex = TwoWorkers()
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = SweepSummary(spec.name, store.path, tmp_path)
        tasks = _tasks(spec, spec.grid(), ["model"])
        Runner(spec, store, ex, summary, poll_s=0.01).run(tasks, "x")
        assert len(store.results()) == 16
    groups = {}
    for pid, task in ex.ran:
        groups.setdefault(task_affinity(task), set()).add(pid)
    assert len(groups) == 4 and all(len(p) == 1 for p in groups.values()), groups
    assert len({p for ps in groups.values() for p in ps}) == 2          # both workers worked
    # without steering the grid order alternates between the workers
    assert [t["config"]["memory"]["bus_bytes"] for t in tasks[:4]] == [8, 16, 32, 64]


def test_tasks_of_other_evaluators_keep_their_order(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, evaluate=["func"]))
    ex = TwoWorkers()
    with ResultStore(tmp_path / "r.sqlite") as store:
        tasks = _tasks(spec, spec.grid(), ["func"])
        Runner(spec, store, ex, SweepSummary(spec.name, store.path, tmp_path), poll_s=0.01).run(tasks, "x")
    assert [t["config_hash"] for _, t in ex.ran] == [t["config_hash"] for t in tasks]
