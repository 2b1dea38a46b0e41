"""The results store: SQLite, one row per (config hash, workload, evaluator), written as it is measured.

    store = ResultStore("sweeps/demo/results.sqlite")
    claimed, done, busy = store.claim(keys, limit=2)     # before evaluating
    store.record(key, outcome)                           # as soon as it is measured

- WAL journal, each write its own short `BEGIN IMMEDIATE` transaction, so a `kill -9` loses at
  most the evaluations in flight, and two sweeps (two processes) can share one store.
- A *claim* marks a key as being measured by one sweep process (owner = host, pid and the
  process's start time). Another sweep skips a key with a live claim and waits for its result;
  a claim whose process is gone (killed) is stale and is taken over, so nothing is measured twice
  and nothing is lost.
- Every claim also appends to `attempts`: the number of times each key was sent to an evaluator.
- A stored `ok` row is never replaced; a failed or timed-out row is replaced only when a sweep
  runs with `retry_failed`.
- `sweeps` keeps each sweep's validated spec (so `systolab report DB` needs no files) and
  `sweep_points` which configs (and axis values) belong to it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from systolab.errors import UserError

__all__ = ["ResultStore", "Key", "SCHEMA_VERSION", "LEASE_S"]

Key = tuple[str, str, str]         # (config_hash, workload, evaluator)

SCHEMA_VERSION = "1"
#: a claim from another host counts as live while its heartbeat is younger than this
LEASE_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (hash TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    config_hash TEXT NOT NULL, workload TEXT NOT NULL, evaluator TEXT NOT NULL,
    status TEXT NOT NULL,             -- ok | failed | timeout
    metrics TEXT,                     -- JSON
    error TEXT,                       -- one line, for a failed point
    tool_versions TEXT,               -- JSON
    wall_s REAL, host TEXT, sweep TEXT, finished_at REAL NOT NULL,
    PRIMARY KEY (config_hash, workload, evaluator));
CREATE TABLE IF NOT EXISTS claims (
    config_hash TEXT NOT NULL, workload TEXT NOT NULL, evaluator TEXT NOT NULL,
    owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, heartbeat REAL NOT NULL,
    PRIMARY KEY (config_hash, workload, evaluator));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_hash TEXT NOT NULL, workload TEXT NOT NULL, evaluator TEXT NOT NULL,
    owner TEXT NOT NULL, sweep TEXT, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, source TEXT, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep TEXT NOT NULL, config_hash TEXT NOT NULL, axes TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (sweep, config_hash));
"""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _process_alive(pid: int, started: str) -> bool:
    if Path("/proc/self/stat").exists():
        return _start_time(pid) == started
    try:                                   # no procfs: signal 0 (pid reuse is not detected)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultStore:
    """A results store. `readonly=True` (what `systolab report` uses) opens an existing store
    without writing a byte: no journal-mode switch, no tables created; a file that is not a
    systolab store is refused in one line, and so is a foreign database given to a sweep, before
    anything in it changes."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if (readonly or not create) and not self.path.is_file():
            raise UserError(f"{self.path}: no such results store")
        if create and not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                            timeout=60.0, isolation_level=None)
                self._check_schema(self.conn.cursor())
            else:
                self.refuse_foreign(self.path)
                self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
                self._setup()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a systolab results store ({' '.join(str(e).split())})") from None
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{_start_time(self.pid) or int(time.time())}"

    # -- plumbing -------------------------------------------------------------------------------
    def _check_schema(self, cur: sqlite3.Cursor) -> None:
        tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables or not {"results", "sweeps"} <= tables:
            what = f"it has tables {', '.join(sorted(tables))}" if tables else "it has no tables"
            raise UserError(f"{self.path}: not a systolab results store ({what})")
        row = cur.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise UserError(f"{self.path}: results store schema {row[0] if row else None}, this "
                            f"systolab reads schema {SCHEMA_VERSION}")
        cur.execute("PRAGMA quick_check")          # a damaged page shows up here, not in a report

    @staticmethod
    def refuse_foreign(path: str | Path) -> None:
        """An existing database that is not a systolab store stays as it is (no WAL switch):
        `UserError` before anything in it changes. A missing or empty file is fine."""
        path = Path(path)
        if not path.is_file() or path.stat().st_size == 0:
            return
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60.0)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{path}: not a systolab results store ({' '.join(str(e).split())})") from None
        if tables and "meta" not in tables:
            raise UserError(f"{path}: not a systolab results store (it has tables "
                            f"{', '.join(sorted(tables))}); give --db a new file or a systolab store")

    def _setup(self) -> None:
        c = self.conn
        c.execute("PRAGMA busy_timeout = 60000")
        for _ in range(600):              # switching to WAL needs a moment alone with the file
            try:
                mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.1)
        else:
            raise UserError(f"{self.path}: the store stayed locked for a minute")
        if mode.lower() != "wal":
            raise UserError(f"{self.path}: cannot use WAL journaling here (got {mode})")
        c.execute("PRAGMA synchronous = NORMAL")
        with self._tx() as cur:
            tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                raise UserError(f"{self.path}: not a systolab results store (it has tables "
                                f"{', '.join(sorted(tables))})")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    cur.execute(stmt)
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            version = cur.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise UserError(f"{self.path}: results store schema {version}, this systolab reads "
                                f"schema {SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction. A Ctrl-C can land between any two statements, even just after
        BEGIN returns, so the rollback asks SQLite whether a transaction is open rather than
        assuming it; one left open by an earlier interrupted call is rolled back first."""
        cur = self.conn.cursor()
        if self.conn.in_transaction:
            cur.execute("ROLLBACK")
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sweeps and points ----------------------------------------------------------------------
    def put_sweep(self, spec: Mapping) -> None:
        """Store a sweep's spec; its list of points starts afresh (results stay: they are keyed
        by config hash, so a point that comes back is not measured again)."""
        with self._tx() as cur:
            cur.execute("DELETE FROM sweep_points WHERE sweep=?", (spec["name"],))
            cur.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                        "spec=excluded.spec, source=excluded.source, updated_at=excluded.updated_at",
                        (spec["name"], json.dumps(spec), spec.get("source"), time.time()))

    def sweeps(self) -> list[dict]:
        rows = self.conn.execute("SELECT name, spec, source, updated_at FROM sweeps "
                                 "ORDER BY updated_at DESC").fetchall()
        return [{"name": n, "spec": json.loads(s), "source": src, "updated_at": t}
                for n, s, src, t in rows]

    def add_points(self, sweep: str, points: Iterable[tuple[str, Mapping, Mapping]], role: str) -> None:
        """Record (hash, config dict, axes) as points of `sweep`; "measured" never goes back to
        "screened"."""
        with self._tx() as cur:
            for h, config, axes in points:
                cur.execute("INSERT OR IGNORE INTO configs VALUES (?, ?)",
                            (h, json.dumps(config, sort_keys=True)))
                cur.execute("INSERT INTO sweep_points VALUES (?, ?, ?, ?) ON CONFLICT(sweep, config_hash) "
                            "DO UPDATE SET role = CASE WHEN sweep_points.role = 'measured' "
                            "THEN 'measured' ELSE excluded.role END",
                            (sweep, h, json.dumps(dict(axes)), role))

    def points(self, sweep: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT p.config_hash, p.axes, p.role, c.config FROM sweep_points p "
            "JOIN configs c ON c.hash = p.config_hash WHERE p.sweep = ? ORDER BY p.rowid", (sweep,)).fetchall()
        return [{"hash": h, "axes": json.loads(a), "role": r, "config": json.loads(c)} for h, a, r, c in rows]

    # -- claims and results ---------------------------------------------------------------------
    def _claim_live(self, owner: str, host: str, pid: int, heartbeat: float) -> bool:
        if owner == self.owner:
            return True
        if host == self.host:
            return _process_alive(pid, owner.rsplit(":", 1)[-1])
        return time.time() - heartbeat < LEASE_S

    def claim(self, keys: Sequence[Key], limit: int, *, sweep: str | None = None,
              retry_failed: bool = False) -> tuple[list[Key], set[Key], set[Key]]:
        """Claim up to `limit` of `keys` (in order) that have no result and no live claim.

        Returns (claimed, done, busy): the keys now ours, the keys already stored, and the keys
        another live sweep is measuring. The scan stops at the limit: later keys are in none.
        """
        claimed, done, busy = [], set(), set()
        now = time.time()
        with self._tx() as cur:
            for key in keys:
                if len(claimed) >= limit:
                    break
                row = cur.execute("SELECT status FROM results WHERE config_hash=? AND workload=? "
                                  "AND evaluator=?", key).fetchone()
                if row is not None and (row[0] == "ok" or not retry_failed):
                    done.add(key)
                    continue
                c = cur.execute("SELECT owner, host, pid, heartbeat FROM claims WHERE config_hash=? "
                                "AND workload=? AND evaluator=?", key).fetchone()
                if c is not None and c[0] != self.owner and self._claim_live(*c):
                    busy.add(key)
                    continue
                cur.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (*key, self.owner, self.host, self.pid, now))
                cur.execute("INSERT INTO attempts (config_hash, workload, evaluator, owner, sweep, "
                            "started_at) VALUES (?, ?, ?, ?, ?, ?)", (*key, self.owner, sweep, now))
                claimed.append(key)
        return claimed, done, busy

    def record(self, key: Key, outcome: Mapping, *, sweep: str | None = None) -> None:
        """Store one measurement and drop our claim on it (one transaction)."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(config_hash, workload, evaluator) DO UPDATE SET status=excluded.status, "
                "metrics=excluded.metrics, error=excluded.error, tool_versions=excluded.tool_versions, "
                "wall_s=excluded.wall_s, host=excluded.host, sweep=excluded.sweep, "
                "finished_at=excluded.finished_at WHERE results.status != 'ok'",
                (*key, outcome["status"], json.dumps(outcome.get("metrics")), outcome.get("error"),
                 json.dumps(outcome.get("tool_versions") or {}, sort_keys=True), outcome.get("wall_s"),
                 outcome.get("host"), sweep, time.time()))
            cur.execute("DELETE FROM claims WHERE config_hash=? AND workload=? AND evaluator=? "
                        "AND owner=?", (*key, self.owner))

    def release(self, keys: Iterable[Key] | None = None) -> None:
        """Drop our claims (all of them by default), e.g. when a sweep is interrupted."""
        with self._tx() as cur:
            if keys is None:
                cur.execute("DELETE FROM claims WHERE owner=?", (self.owner,))
            else:
                for key in keys:
                    cur.execute("DELETE FROM claims WHERE config_hash=? AND workload=? AND "
                                "evaluator=? AND owner=?", (*key, self.owner))

    def heartbeat(self) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE claims SET heartbeat=? WHERE owner=?", (time.time(), self.owner))

    def results(self, keys: Iterable[Key] | None = None) -> dict[Key, dict]:
        """Stored rows by key: status, metrics (dict), error, tool_versions (dict), wall_s, ..."""
        cols = ("config_hash, workload, evaluator, status, metrics, error, tool_versions, wall_s, host, "
                "sweep, finished_at")
        if keys is None:
            rows = self.conn.execute(f"SELECT {cols} FROM results").fetchall()
        else:
            rows = []
            for key in keys:
                r = self.conn.execute(f"SELECT {cols} FROM results WHERE config_hash=? AND workload=? "
                                      f"AND evaluator=?", key).fetchone()
                if r is not None:
                    rows.append(r)
        out = {}
        for h, wl, ev, status, mets, err, tv, wall, host, sweep, fin in rows:
            out[(h, wl, ev)] = {"status": status, "metrics": json.loads(mets) if mets else None,
                                "error": err, "tool_versions": json.loads(tv) if tv else {},
                                "wall_s": wall, "host": host, "sweep": sweep, "finished_at": fin}
        return out

    def attempts(self) -> dict[Key, int]:
        """How many times each key was claimed for evaluation."""
        rows = self.conn.execute("SELECT config_hash, workload, evaluator, COUNT(*) FROM attempts "
                                 "GROUP BY config_hash, workload, evaluator").fetchall()
        return {(h, w, e): n for h, w, e, n in rows}
