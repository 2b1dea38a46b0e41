"""Interrupt sweeps with Ctrl-C at random moments and check each one stops cleanly.

    .venv/bin/python benchmarks/ctrl_c_stress.py [RUNS]        # default 100

Each run starts a small sweep (the cheap `func` evaluator, 2 workers) in its own session, waits
until 2 to 6 results are stored, sends SIGINT to the whole process group (what Ctrl-C in a
terminal does) and checks: exit status 130, stderr ending in "systolab: interrupted", no claims
left in the store, and no failed result recorded. Load the machine (e.g. two `yes > /dev/null`)
to make the races likelier. Prints the failures and a count.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SWEEP = {"name": "s", "axes": {"array.rows": [1, 2, 4, 8], "array.cols": [1, 2, 4, 8],
                               "scratchpad.depth": [64, 256]},
         "workloads": [{"name": "tiny", "gemm": [8, 8, 8]}], "evaluate": ["func"],
         "objectives": {"pes": "min"}, "limits": {"timeout_s": 120}}


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:        # the schema is not there yet
        return 0
    finally:
        con.close()


def one_run(tmp: Path, after: int) -> str | None:
    """None if the sweep stopped cleanly, else what went wrong."""
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    db = tmp / "r.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "systolab.app.cli", "sweep", str(path), "--db", str(db),
                             "--out", str(tmp / "out"), "-j", "2", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _count(db, "SELECT COUNT(*) FROM results") < after and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "hung for 60 s after SIGINT"
    if proc.returncode != 130 or not err.endswith("systolab: interrupted\n"):
        return f"exit status {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    if _count(db, "SELECT COUNT(*) FROM claims"):
        return "claims left in the store"
    if _count(db, "SELECT COUNT(*) FROM results WHERE status != 'ok'"):
        return "a failed result was recorded"
    return None


def main(argv=None) -> int:
    runs = int((argv or sys.argv[1:] or ["100"])[0])
    rng = random.Random(0)
    bad = 0
    for i in range(runs):
        after = rng.choice([2, 3, 4, 6])
        with tempfile.TemporaryDirectory() as tmp:
            why = one_run(Path(tmp), after)
        if why:
            bad += 1
            print(f"run {i} (SIGINT after {after} results): {why}", flush=True)
    print(f"{runs - bad} of {runs} interrupted sweeps stopped cleanly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
