"""Background jobs of the web service: RTL runs and sweeps, each in its own worker process.

- At most `max_jobs` run at once; one more is refused (`TooManyJobs`, HTTP 429) rather than queued
  behind work the user cannot see.
- A job is a process of its own process group, so cancelling it (SIGTERM, then SIGKILL) also ends
  what it started (the Verilator build, a sweep's worker pool); it dies with the server too
  (PR_SET_PDEATHSIG on Linux).
- The worker reports through a pipe: log lines, progress (`stage`, `done`, `total`) and at the
  end the result or a one-line error; the server keeps the job's state for the pages to poll.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from systolab.errors import UserError

from .safety import WebError
from .work import TARGETS

__all__ = ["JobManager", "Job", "TooManyJobs"]

_CTX = multiprocessing.get_context("spawn")


class TooManyJobs(WebError):
    def __init__(self, limit: int):
        super().__init__(429, f"{limit} jobs are running, the limit of this service; wait for one "
                              f"to finish or cancel it")


@dataclass
class Job:
    id: str
    kind: str                        # run | sweep
    title: str
    params: dict
    dir: Path
    state: str = "running"           # running | done | failed | cancelled
    started: float = field(default_factory=time.time)
    finished: float | None = None
    progress: dict = field(default_factory=lambda: {"stage": "starting"})
    log: list = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    cached: bool = False
    cache_file: Path | None = None
    process: object = None
    cancel_requested: bool = False

    def to_json(self) -> dict:
        end = self.finished or time.time()
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                "started": self.started, "finished": self.finished,
                "elapsed_s": round(end - self.started, 2), "progress": self.progress,
                "log": self.log[-50:], "result": self.result, "error": self.error,
                "cached": self.cached,
                "params": {k: v for k, v in self.params.items() if k not in ("config", "paths")}}


def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(target: str, params: dict, conn) -> None:
    """Entry point of a job process: runs `work.TARGETS[target](params, report)`."""
    os.setpgrp()
    _die_with_parent()

    def report(kind: str, value) -> None:
        conn.send((kind, value))

    try:
        result = TARGETS[target](params, report)
        report("result", result)
    except UserError as e:
        report("error", str(e).splitlines()[0] if str(e) else type(e).__name__)
    except Exception as e:  # noqa: BLE001 - reported as one line; the traceback goes to the job's log file
        Path(params["job_dir"], "error.log").write_text(traceback.format_exc())
        first = str(e).splitlines()[0] if str(e) else ""
        report("error", f"internal error: {type(e).__name__}: {first}"[:500])
    finally:
        conn.close()


class JobManager:
    def __init__(self, root: Path, *, max_jobs: int = 2):
        self.root = Path(root)
        self.max_jobs = max_jobs
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    # -- starting ---------------------------------------------------------------------------------
    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == "running"]

    def cached(self, kind: str, title: str, params: dict, result: dict) -> Job:
        """A job that is done already: its result came from the cache."""
        job = self._new(kind, title, params)
        job.state, job.finished, job.result, job.cached = "done", time.time(), result, True
        job.progress = {"stage": "from the cache"}
        return job

    def _new(self, kind: str, title: str, params: dict) -> Job:
        jid = uuid.uuid4().hex[:12]
        d = self.root / jid
        d.mkdir(parents=True, exist_ok=True)
        job = Job(jid, kind, title, dict(params, job_dir=str(d)), d)
        self.jobs[jid] = job
        return job

    def start(self, kind: str, title: str, target: str, params: dict, *,
              cache_file: Path | None = None) -> Job:
        with self._lock:
            if len(self.running()) >= self.max_jobs:
                raise TooManyJobs(self.max_jobs)
            job = self._new(kind, title, params)
            job.cache_file = cache_file
            parent, child = _CTX.Pipe(duplex=False)
            p = _CTX.Process(target=_worker, args=(target, job.params, child), daemon=False,
                             name=f"systolab-job-{job.id}")
            p.start()
            child.close()
            job.process = p
        threading.Thread(target=self._follow, args=(job, parent), daemon=True,
                         name=f"follow-{job.id}").start()
        return job

    def _follow(self, job: Job, conn) -> None:
        try:
            while True:
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "log":
                    job.log.append(str(value))
                    del job.log[:-500]
                elif kind == "progress":
                    job.progress = dict(value)
                elif kind == "result":
                    job.result = value
                elif kind == "error":
                    job.error = value
        finally:
            conn.close()
            job.process.join()
            job.finished = time.time()
            if job.cancel_requested:
                job.state, job.error = "cancelled", "cancelled"
            elif job.result is not None:
                job.state = "done"
                (job.dir / "result.json").write_text(json.dumps(job.result))
                if job.cache_file is not None:
                    job.cache_file.parent.mkdir(parents=True, exist_ok=True)
                    job.cache_file.write_text(json.dumps(job.result))
            else:
                job.state = "failed"
                job.error = job.error or f"the job's process ended with exit status {job.process.exitcode}"
            job.progress = {**job.progress, "stage": job.state}

    # -- looking and cancelling --------------------------------------------------------------------
    def get(self, jid: str) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise WebError(404, f"no job {jid!r}")
        return job

    def cancel(self, jid: str) -> Job:
        job = self.get(jid)
        if job.state != "running":
            return job
        job.cancel_requested = True
        _kill(job.process)
        return job

    def shutdown(self) -> None:
        for job in self.running():
            job.cancel_requested = True
            _kill(job.process)


def _kill(p, grace_s: float = 3.0) -> None:
    """End a job process and its process group: SIGTERM, then SIGKILL after `grace_s`."""
    pid = p.pid
    if pid is None:
        return

    def signal_group(sig):
        try:
            if os.getpgid(pid) == pid:          # the worker made its own group: end all of it
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    signal_group(signal.SIGTERM)

    def later():
        p.join(grace_s)
        if p.exitcode is None:
            signal_group(signal.SIGKILL)
    threading.Thread(target=later, daemon=True).start()
