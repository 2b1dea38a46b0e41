"""Run a sweep: pick the points, measure what the store does not hold yet, write the outputs.

    spec = load_sweep("configs/sweeps/demo.yaml")
    summary = run_sweep(spec, db="sweeps/demo/results.sqlite", out="sweeps/demo", jobs=2)

Every evaluation is claimed in the store before it is sent to a worker and recorded as soon as
it comes back, so a sweep that is interrupted (Ctrl-C or `kill -9`) and run again measures only
what is missing, and two sweeps on one store share the work (see `co_design/store.py`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .evaluators import WARM_UPS, make_task, task_affinity, task_key, warm_up_task
from .executors import default_jobs, make_executor
from .search import cheap, expensive, optuna_points, promote_points, random_points
from .spec import Point, SweepSpec
from .store import ResultStore

__all__ = ["run_sweep", "SweepSummary", "Runner"]

#: extra seconds the sweep waits past `limits.timeout_s` before it gives up on a worker
_GRACE_S = 30.0
_HEARTBEAT_S = 30.0
#: order of evaluators in a phase: the long ones first, so they overlap the short ones
_ORDER = {"synth": 0, "rtl": 1, "model": 2, "func": 3}


@dataclass
class SweepSummary:
    name: str
    db: Path
    out: Path
    wall_s: float = 0.0
    #: evaluator -> {"measured": n, "stored": n, "by_other": n, "failed": n, "timeout": n}
    counts: dict = field(default_factory=lambda: defaultdict(Counter))
    points: int = 0
    promoted: int = 0
    invalid: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    executor: str = ""


class CtrlC:
    """Takes Ctrl-C while a sweep measures and lets the sweep stop at a safe point.

    A KeyboardInterrupt raised wherever the main thread happens to be can land inside a SQLite
    transaction or while a `concurrent.futures` lock is held (the process then hangs at exit
    waiting for that lock). Inside this context the first SIGINT only sets `requested`; the
    `Runner` calls `check()` between its steps, before it records anything, so an outcome that
    arrives after Ctrl-C (perhaps failed because the tool it ran was interrupted too) is not
    stored. A second Ctrl-C raises at once. SIGTERM is taken the same way (a service manager or
    `kill` stops a sweep as cleanly as Ctrl-C: claims released, nothing measured lost). Outside
    the main thread this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


class _NoProgress:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass


class Runner:
    """Gets every task of a phase into the store: claims, dispatches, records, waits for others."""

    def __init__(self, spec: SweepSpec, store: ResultStore, executor, summary: SweepSummary, *,
                 progress=None, retry_failed: bool = False, poll_s: float = 0.25,
                 grace_s: float = _GRACE_S, ctrl_c: CtrlC | None = None):
        self.spec, self.store, self.ex, self.summary = spec, store, executor, summary
        self.ctrl_c = ctrl_c or CtrlC()
        self.progress = progress or _NoProgress()
        self.retry_failed = retry_failed
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.slots = max(1, executor.jobs)
        self._warm: set[str] = set()         # evaluators whose tools are warmed up
        self._warming: dict = {}              # handle -> (evaluator, started)
        self._bars: dict = {}                 # label -> progress bar
        self._totals: dict = {}
        self._failed: dict = {}
        self._last_heartbeat = time.monotonic()
        self._affinity: dict = {}             # key -> task_affinity of its task
        self._worker_affinity: dict = {}      # worker pid -> affinity of the last task it ran
        self._freed: list = []                # pids of the workers that came free since the last claims
        self._steering = False

    def run(self, tasks: Sequence[dict], label: str) -> None:
        by_key = {}
        for t in tasks:
            by_key.setdefault(task_key(t), t)
        self._affinity.update({k: task_affinity(t) for k, t in by_key.items()})
        # steered only where every task has an affinity (a phase of model evaluations): the
        # order of the others (synthesis biggest first, `_tasks`) is kept
        self._steering = all(self._affinity[k] is not None for k in by_key)
        pending = list(by_key)
        if label in self._bars:           # e.g. Optuna's batches: one bar for the whole phase
            bar = self._bars[label]
            self._totals[label] += len(pending)
            self.progress.update(bar, total=self._totals[label])
        else:
            bar = self._bars[label] = self.progress.add_task(label, total=len(pending), failed=0)
            self._totals[label] = len(pending)
        failed = self._failed.get(label, 0)
        inflight: dict = {}                   # handle -> (key, started)
        limit = self.spec.limits.timeout_s + self.grace_s
        counts = self.summary.counts
        while pending or inflight:
            self.ctrl_c.check()
            free = self.slots - len(inflight) - len(self._warming)
            if pending and free > 0:
                free -= self._start_warm_ups(pending, free)
            while pending and free > 0:          # one at a time: each steered (`_steer`)
                claimed, done, _busy = self.store.claim(self._steer(self._ready(pending), inflight), 1,
                                                        sweep=self.spec.name, retry_failed=self.retry_failed)
                for k in done:
                    pending.remove(k)
                    counts[k[2]]["stored"] += 1
                    self.progress.advance(bar)
                for k in claimed:
                    pending.remove(k)
                    inflight[self.ex.submit(by_key[k])] = (k, time.monotonic())
                    free -= 1
                if not claimed:
                    break
            self._freed.clear()
            if inflight or self._warming:
                finished = self.ex.wait([*inflight, *self._warming], timeout=self.poll_s)
                self.ctrl_c.check()
                for h in finished:
                    if h in self._warming:
                        self.ex.result(h)
                        self._warm.add(self._warming.pop(h)[0])
                        continue
                    k, _ = inflight.pop(h)
                    outcome = self.ex.result(h)
                    if outcome.get("pid") is not None:
                        self._worker_affinity[outcome["pid"]] = self._affinity.get(k)
                        self._freed.append(outcome["pid"])
                    self._record(k, outcome)
                    if outcome["status"] != "ok":
                        failed += 1
                    self.progress.advance(bar)
                    self.progress.update(bar, failed=failed)
                now = time.monotonic()
                for h, (ev, started) in list(self._warming.items()):
                    if now - started > limit:
                        self.ex.abandon(h)
                        del self._warming[h]
                        self._warm.add(ev)          # the evaluations will report what is wrong
                for h, (k, started) in list(inflight.items()):
                    if now - started > limit:
                        self.ex.abandon(h)
                        del inflight[h]
                        self._record(k, {"status": "timeout", "metrics": None, "tool_versions": {},
                                         "error": f"{k[2]}: no result within {limit:g} s "
                                                  f"(limits.timeout_s + {self.grace_s:g} s); the "
                                                  f"worker was stopped"})
                        failed += 1
                        self.progress.advance(bar)
                        self.progress.update(bar, failed=failed)
            elif pending:
                # what is left is being measured by another sweep
                self._settle_others(pending, bar)
                time.sleep(self.poll_s)
            if time.monotonic() - self._last_heartbeat > _HEARTBEAT_S:
                self.store.heartbeat()
                self._last_heartbeat = time.monotonic()
        self._failed[label] = failed

    def _steer(self, keys: list, inflight: dict) -> list:
        """`keys` in the order to claim them: first those that share what the worker that just
        came free holds in memory (`task_affinity`; the next task submitted goes to it), then
        those no other worker is on or was last on, then the rest; each group in its own
        order. A model sweep over memory ports: 4 bus widths of one config in one worker emit
        their samples once instead of once per worker that gets one. Only a heuristic (the
        pool gives a task to whichever worker is idle); results do not depend on it."""
        if not self._steering:
            return keys
        prefer = {self._worker_affinity.get(pid) for pid in self._freed} - {None}
        taken = {self._affinity.get(k) for k, _ in inflight.values()} | set(self._worker_affinity.values())
        taken -= prefer
        first, second, rest = [], [], []
        for k in keys:
            a = self._affinity.get(k)
            (first if a is not None and a in prefer else rest if a in taken else second).append(k)
        return first + second + rest

    def _start_warm_ups(self, pending, free: int) -> int:
        """Warm up the tools of an evaluator (one worker) before its first evaluation."""
        started = 0
        warming = {ev for ev, _ in self._warming.values()}
        for ev in dict.fromkeys(k[2] for k in pending):
            if started < free and ev in WARM_UPS and ev not in self._warm and ev not in warming:
                self._warming[self.ex.submit(warm_up_task(ev))] = (ev, time.monotonic())
                started += 1
        return started

    def _ready(self, pending) -> list:
        """Pending keys that may start now: not those whose tools are still warming up."""
        warming = {ev for ev, _ in self._warming.values()}
        return [k for k in pending if k[2] not in warming]

    def _settle_others(self, pending, bar) -> None:
        got = self.store.results(pending)
        for k in list(pending):
            row = got.get(k)
            if row is not None and (row["status"] == "ok" or not self.retry_failed):
                pending.remove(k)
                self.summary.counts[k[2]]["by_other"] += 1
                self.progress.advance(bar)

    def _record(self, key, outcome: dict) -> None:
        self.store.record(key, outcome, sweep=self.spec.name)
        c = self.summary.counts[key[2]]
        c["measured"] += 1
        if outcome["status"] != "ok":
            c[outcome["status"]] += 1


def _tasks(spec: SweepSpec, points: Sequence[Point], evaluators: Sequence[str]) -> list[dict]:
    tasks = []
    for ev in sorted(evaluators, key=lambda e: _ORDER.get(e, 9)):
        if ev == "synth":
            # the biggest arrays first: their place and route is the longest job, and started
            # last it ran alone at the end (`make demo`: 4x8 after 4x4 and 2x4, 16 min 48 s)
            tasks += [make_task("synth", p.config, limits=spec.limits, label=p.label)
                      for p in sorted(points, key=lambda p: -p.config.rows * p.config.cols)]
        else:
            tasks += [make_task(ev, p.config, w, limits=spec.limits, label=p.label)
                      for w in spec.workloads for p in points]
    return tasks


class LineProgress:
    """Progress for a log file or a pipe (`make demo | tee demo.log`, CI): rich draws its bar only
    on a terminal, so here a phase prints a plain line at most every `every_s` seconds and when
    it completes, e.g. ``measure: 13/20 done, 1 failed, 2m10s elapsed, about 1m05s left``."""

    def __init__(self, console, every_s: float = 15.0):
        self.console, self.every_s = console, every_s
        self._tasks: list[dict] = []
        self._last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def add_task(self, label, total, failed=0):
        self._tasks.append({"label": label, "total": total, "done": 0, "failed": failed,
                            "t0": time.monotonic(), "said": None})
        return len(self._tasks) - 1

    def update(self, task, total=None, failed=None):
        t = self._tasks[task]
        if total is not None:
            t["total"] = total
        if failed is not None:
            t["failed"] = failed

    def advance(self, task):
        t = self._tasks[task]
        t["done"] += 1
        now = time.monotonic()
        if t["done"] >= t["total"] or now - self._last >= self.every_s:
            self._say(t, now)

    def _say(self, t, now):
        state = (t["done"], t["total"], t["failed"])
        if state == t["said"]:
            return
        t["said"], self._last = state, now
        elapsed = now - t["t0"]
        line = f"{t['label']}: {t['done']}/{t['total']} done, {t['failed']} failed, {_hms(elapsed)} elapsed"
        if 0 < t["done"] < t["total"]:
            line += f", about {_hms(elapsed / t['done'] * (t['total'] - t['done']))} left"
        self.console.print(line, highlight=False, soft_wrap=True)


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _progress(console):
    from rich.console import Console
    console = console or Console(stderr=True)
    if not console.is_terminal:
        return LineProgress(console)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[red]{task.fields[failed]} failed[/]"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)


def run_sweep(spec: SweepSpec, *, db: str | Path | None = None, out: str | Path | None = None,
              jobs: int | None = None, executor: str = "local", scheduler: str | None = None,
              retry_failed: bool = False, console=None, progress: bool = True,
              write: bool = True) -> SweepSummary:
    """Measure the sweep (what the store lacks), then write results.csv, pareto.csv, plots and
    report.html to `out` (default `sweeps/<name>/`; the store defaults to `<out>/results.sqlite`)."""
    from .report import write_outputs

    t0 = time.perf_counter()
    out = Path(out) if out is not None else Path("sweeps") / spec.name
    db = Path(db) if db is not None else out / "results.sqlite"
    summary = SweepSummary(spec.name, db, out)
    ex = make_executor(executor, jobs or default_jobs(), scheduler)    # fails before any writing
    summary.executor = ex.describe()
    try:
        store = ResultStore(db)
        store.put_sweep(spec.to_dict())
    except BaseException:
        ex.close(kill=True)
        raise
    prog_cm = _progress(console) if progress else None
    try:
        bars = prog_cm.__enter__() if prog_cm else None
        with CtrlC() as ctrl_c:
            runner = Runner(spec, store, ex, summary, progress=bars, retry_failed=retry_failed,
                            ctrl_c=ctrl_c)
            _measure(spec, store, runner, summary)
    except BaseException:
        ex.close(kill=True)
        store.release()
        raise
    else:
        ex.close()
    finally:
        if prog_cm:
            prog_cm.__exit__(None, None, None)
    if write:
        summary.outputs = write_outputs(store, spec.name, out)
    store.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def _add(store, spec, points, role):
    store.add_points(spec.name, [(p.hash, p.config.to_dict(), p.axes) for p in points], role)


def _measure(spec: SweepSpec, store: ResultStore, runner: Runner, summary: SweepSummary) -> None:
    method = spec.search.method
    screening = spec.search.screens and expensive(spec)
    if method == "optuna":
        def run_model(points):
            _add(store, spec, points, "screened" if screening else "measured")
            tasks = _tasks(spec, points, cheap(spec))
            runner.run(tasks, "model (optuna)")
            return store.results([task_key(t) for t in tasks])

        points = optuna_points(spec, run_model, runner.slots,
                               on_invalid=lambda v, e: summary.invalid.append((v, e)))
    else:
        points = spec.grid() if method == "grid" else random_points(spec)
    summary.points = len(points)

    if not screening:
        _add(store, spec, points, "measured")
        summary.promoted = len(points)
        runner.run(_tasks(spec, points, spec.evaluate), "measure")
        return
    if method != "optuna":
        _add(store, spec, points, "screened")
        model_tasks = _tasks(spec, points, cheap(spec))
        runner.run(model_tasks, "model (screening)")
    results = store.results([task_key(t) for t in _tasks(spec, points, cheap(spec))])
    chosen = promote_points(spec, points, results)
    summary.promoted = len(chosen)
    _add(store, spec, chosen, "measured")
    runner.run(_tasks(spec, chosen, expensive(spec)), "/".join(expensive(spec)))
