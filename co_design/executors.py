"""Where evaluations run: a local process pool (default) or a Dask distributed cluster.

Both take the same picklable task dicts and run `co_design.evaluators.evaluate` on them; the sweep
sees one interface:

    ex = make_executor("local", jobs=4)          # or make_executor("dask", jobs=4, scheduler=ADDR)
    handle = ex.submit(task)
    done = ex.wait(handles, timeout=1.0)         # the handles that finished
    outcome = ex.result(handle)                  # an outcome dict (a lost worker becomes a failure)
    ex.abandon(handle)                           # give up on a hung evaluation
    ex.close()

The local pool uses the "spawn" start method (workers import systolab afresh: no fork of a process
that has threads). A worker that does not come back from a wall-clock limit is killed with the
whole pool, which is restarted and given the other evaluations again. On Dask an abandoned task
is cancelled; a thread running it cannot be stopped, but the sweep goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import socket
from typing import Any, Iterable

from systolab.errors import UserError
from systolab.process import kill_me_with_parent

from .evaluators import evaluate

__all__ = ["make_executor", "LocalExecutor", "DaskExecutor", "EXECUTORS", "default_jobs"]

EXECUTORS = ("local", "dask")
#: a task whose worker dies this many times is recorded as failed
_MAX_CRASHES = 2


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _lost(task, why: str) -> dict:
    return {"status": "failed", "metrics": None, "tool_versions": {}, "host": socket.gethostname(),
            "error": f"{task['evaluator']}: {why}", "wall_s": None}


class LocalExecutor:
    name = "local"

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._ctx = multiprocessing.get_context("spawn")
        self._pool = self._new_pool()
        self._tasks: dict[Any, dict] = {}       # handle -> task
        self._future: dict[Any, cf.Future] = {}  # handle -> current future
        self._crashes: dict[Any, int] = {}
        self._given_up: set = set()
        self._next = 0

    def _new_pool(self):
        # workers die with the sweep: a `kill -9` of it leaves no worker (and so no resource
        # tracker, whose pipe the workers hold) running
        return cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=self._ctx,
                                      initializer=kill_me_with_parent, initargs=(os.getpid(),))

    def describe(self) -> str:
        return f"local process pool, {self.jobs} worker{'s' if self.jobs != 1 else ''}"

    def submit(self, task: dict):
        handle = self._next
        self._next += 1
        self._tasks[handle] = task
        self._future[handle] = self._pool.submit(evaluate, task)
        return handle

    def wait(self, handles: Iterable, timeout: float) -> set:
        handles = list(handles)
        if not handles:
            return set()
        by_future = {self._future[h]: h for h in handles}
        done, _ = cf.wait(by_future, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished, broken = set(), []
        for f in done:
            h = by_future[f]
            if isinstance(f.exception(), cf.process.BrokenProcessPool):
                broken.append(h)
            else:
                finished.add(h)
        if broken:                   # a worker died: every evaluation in flight is lost with it
            for h in broken:
                self._crashes[h] = self._crashes.get(h, 0) + 1
                if self._crashes[h] >= _MAX_CRASHES:
                    self._given_up.add(h)
                    finished.add(h)
            self._restart()
        return finished

    def result(self, handle) -> dict:
        f = self._future.pop(handle)
        task = self._tasks.pop(handle)
        self._given_up.discard(handle)
        exc = f.exception()
        if isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt     # Ctrl-C reached the worker first: not a failed point
        if exc is not None:
            return _lost(task, f"the worker process died while evaluating ({type(exc).__name__})")
        return f.result()

    def abandon(self, handle) -> None:
        """Kill the pool (the hung worker with it) and give the other evaluations to a new one."""
        self._future.pop(handle, None)
        self._tasks.pop(handle, None)
        self._restart(kill=True)

    def _restart(self, kill: bool = False) -> None:
        old = self._pool
        procs = list(getattr(old, "_processes", {}).values())
        self._pool = self._new_pool()
        if kill:
            for p in procs:
                p.kill()
        old.shutdown(wait=False, cancel_futures=True)
        for h, task in self._tasks.items():          # everything not yet collected runs again
            f = self._future.get(h)
            if h in self._given_up or (f is not None and f.done() and not f.cancelled()
                                       and f.exception() is None):
                continue
            self._future[h] = self._pool.submit(evaluate, task)

    def close(self, *, kill: bool = False) -> None:
        procs = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=not kill, cancel_futures=True)
        if kill:
            for p in procs:
                p.kill()
            for p in procs:
                p.join(timeout=5)


class DaskExecutor:
    name = "dask"

    def __init__(self, jobs: int, scheduler: str | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as e:    # pragma: no cover - dask[distributed] is a dependency
            raise UserError(f"--executor dask needs dask[distributed] ({e})") from None
        self._cluster = None
        if scheduler:
            try:
                self._client = Client(scheduler, timeout=30)
            except (OSError, TimeoutError) as e:
                raise UserError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                                f"({type(e).__name__}: {e})") from None
            self._where = f"Dask scheduler {scheduler}"
        else:
            self._cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self._client = Client(self._cluster)
            self._where = f"Dask LocalCluster, {jobs} worker{'s' if jobs != 1 else ''}"
        self.jobs = jobs if not scheduler else max(1, sum(
            w.get("nthreads", 1) for w in self._client.scheduler_info().get("workers", {}).values()))
        self._tasks: dict[Any, dict] = {}

    def describe(self) -> str:
        return self._where

    def submit(self, task: dict):
        f = self._client.submit(evaluate, task, pure=False)
        self._tasks[f] = task
        return f

    def wait(self, handles: Iterable, timeout: float) -> set:
        from distributed import wait
        handles = list(handles)
        if not handles:
            return set()
        try:
            done, _ = wait(handles, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def result(self, handle) -> dict:
        task = self._tasks.pop(handle)
        try:
            return handle.result()
        except Exception as e:      # noqa: BLE001 - e.g. KilledWorker: recorded as a failure
            return _lost(task, f"the Dask task failed ({type(e).__name__}: {e})")

    def abandon(self, handle) -> None:
        self._tasks.pop(handle, None)
        handle.cancel()

    def close(self, *, kill: bool = False) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(kind: str, jobs: int, scheduler: str | None = None):
    if kind not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, not {kind!r}")
    if scheduler and kind != "dask":
        raise UserError("--scheduler needs --executor dask")
    if jobs < 1:
        raise UserError(f"-j must be at least 1, not {jobs}")
    if kind == "dask":
        return DaskExecutor(jobs, scheduler)
    return LocalExecutor(jobs)
