"""A content-addressed cache of Verilator builds, shared by processes.

A build is keyed by everything that changes the binary: the Verilog text, the harness source, the
flags, the Verilator version and the backend. Its directory is `<cache>/<backend>-<key>/`, where
`<cache>` is `$SYSTOLAB_CACHE` or the user cache folder (`cache_root`). A file lock
(`fcntl.flock`) makes two processes that ask for the same build at the same time build it once:
the second waits and then reuses it. A build is complete when its `build.json` exists (written
last); a directory without it is left over from an interrupted build and is built again.

    >>> build = cached_build("native", {"verilog": text, "flags": "..."}, make_binary)
    >>> build.dir, build.build_s, build.reused
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import platformdirs

__all__ = ["cache_root", "build_key", "cached_build", "find_build", "Build", "CACHE_ENV", "Memo", "source_digest",
           "runtime_makeflags", "save_runtime"]

#: environment variable that moves the cache
CACHE_ENV = "SYSTOLAB_CACHE"

_MARKER = "build.json"


def cache_root() -> Path:
    """`$SYSTOLAB_CACHE`, else the platform's user cache folder for systolab (`platformdirs`:
    `~/.cache/systolab` on Linux, following `$XDG_CACHE_HOME`), wherever systolab is run from."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("systolab", appauthor=False))


def build_key(backend: str, parts: Mapping[str, str | bytes]) -> str:
    """A hex digest over the backend and every named part (order does not matter)."""
    h = hashlib.sha256(f"backend={backend}\n".encode())
    for name in sorted(parts):
        value = parts[name]
        data = value.encode() if isinstance(value, str) else bytes(value)
        h.update(f"{name}={len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class Build:
    backend: str
    key: str
    dir: Path
    build_s: float      # seconds the build took when it was made
    reused: bool        # True when this call found it in the cache

    def describe(self) -> str:
        how = "reused" if self.reused else "built"
        return f"{self.backend} build {self.key[:12]} {how} ({self.build_s:.1f} s to build) in {self.dir}"


def _entry(root: Path, backend: str, key: str) -> Path:
    return root / f"{backend}-{key[:16]}"


def find_build(backend: str, parts: Mapping[str, str | bytes], *, root: Path | None = None) -> Path | None:
    """The directory of a finished build for (`backend`, `parts`), or None; never builds."""
    directory = _entry(cache_root() if root is None else root, backend, build_key(backend, parts))
    return directory if (directory / _MARKER).is_file() else None


def cached_build(backend: str, parts: Mapping[str, str | bytes],
                 build: Callable[[Path], None], *, root: Path | None = None) -> Build:
    """Return the build for (`backend`, `parts`), calling `build(directory)` if it is not cached.

    `build` gets an empty directory and must leave the finished build in it; if it raises, the
    directory is removed and the exception goes to the caller.
    """
    root = cache_root() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    key = build_key(backend, parts)
    directory = _entry(root, backend, key)
    with open(directory.with_name(directory.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # released when the file is closed
        marker = directory / _MARKER
        if marker.is_file():
            return Build(backend, key, directory, json.loads(marker.read_text())["build_s"], True)
        if directory.exists():
            shutil.rmtree(directory)         # an interrupted build
        directory.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            build(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        build_s = time.perf_counter() - t0
        record = {"backend": backend, "key": key, "build_s": round(build_s, 3),
                  "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "parts": {name: hashlib.sha256(v.encode() if isinstance(v, str) else bytes(v)).hexdigest()[:16]
                            for name, v in sorted(parts.items())}}
        tmp = directory / (_MARKER + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(marker)
        return Build(backend, key, directory, build_s, False)


# -- Verilator's runtime library, shared between builds ----------------------------------------
#
# Every Verilator build compiles the same runtime files (verilated.cpp, verilated_threads.cpp,
# verilated_vpi.cpp under cocotb, verilated_fst_c.cpp with tracing): about ten seconds that do not
# depend on the design. After the first build with a given runtime key (everything that changes
# how they are compiled), their objects are linked into one relocatable `runtime.o` and kept.
# Later builds with that key tell make not to compile them (`VM_GLOBAL_FAST=` `VM_GLOBAL_SLOW=`,
# the lists verilated.mk builds them from) and to link `runtime.o` instead (`LOADLIBES`, which
# verilated.mk puts on the link line and leaves empty).

def runtime_makeflags(parts: Mapping[str, str | bytes]) -> str:
    """Make variables that reuse a cached runtime for `parts`; "" when there is none yet."""
    cached = find_build("runtime", parts)
    if cached is None or any(c.isspace() for c in str(cached)):   # make variables split on spaces
        return ""
    return f"VM_GLOBAL_FAST= VM_GLOBAL_SLOW= LOADLIBES={cached / 'runtime.o'}"


def save_runtime(obj_dir: Path, parts: Mapping[str, str | bytes]) -> None:
    """Keep the runtime objects a finished build compiled in `obj_dir` (if it compiled them)."""
    objects = sorted(obj_dir.glob("verilated*.o"))
    if not objects or find_build("runtime", parts) is not None:
        return

    def link(directory: Path) -> None:
        subprocess.run(["ld", "-r", "-o", str(directory / "runtime.o"), *map(str, objects)],
                       check=True, capture_output=True)

    cached_build("runtime", parts, link)


# -- small decisions worth keeping (tilings) ------------------------------------------------------
def source_digest(*packages_and_files: str) -> str:
    """A digest of source files given as `package:file` (`"systolab.codegen:gemm.py"`): what a
    kept decision depends on, so changing the code makes old entries unreachable."""
    from importlib import resources

    h = hashlib.sha256()
    for item in packages_and_files:
        pkg, _, name = item.partition(":")
        h.update(item.encode() + b"\0" + resources.files(pkg).joinpath(name).read_bytes())
    return h.hexdigest()[:16]


class Recent:
    """The values of the keys asked for last, made by `make` on a miss, in this process only:
    at most `size` of them, or with `weight` (a function of a value) at most `size` in all,
    the least recently used dropped first (one value is always kept). For what does not belong
    on disk: a network's numpy reference, emitted program samples, weight-tile layouts."""

    def __init__(self, size: int, weight: Callable[[object], int] | None = None):
        self.size, self.weight = size, weight or (lambda value: 1)
        self.total = 0
        self._items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable[[], object]):
        """The value of `key` (a hashable; None: nothing is kept, `make()` every time)."""
        if key is None:
            return make()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = make()
        self.total += self.weight(value)
        while self.total > self.size and len(self._items) > 1:
            self.total -= self.weight(self._items.popitem(last=False)[1])
        return value

    def keys(self) -> list:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.total = 0


class Memo:
    """A JSON-valued memo kept in memory and on disk under `<cache>/<kind>/`, keyed by a string
    (hashed). Shared by processes: entries are written to a temporary file and renamed, so a
    reader sees a whole entry or none. A damaged entry counts as missing."""

    def __init__(self, kind: str):
        self.kind = kind
        self._mem: dict[str, object] = {}

    def _path(self, key: str) -> Path:
        return cache_root() / self.kind / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def get(self, key: str, *, fresh: bool = False):
        """The entry of `key`, or None. fresh: as on disk now (another process may have
        written it since this one read it), if it is there."""
        if key in self._mem and not fresh:
            return self._mem[key]
        try:
            value = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return self._mem.get(key)
        self._mem[key] = value
        return value

    def put(self, key: str, value, *, merge: bool = False) -> None:
        """Keep `value` for `key`. merge (dict values): with the entries another process wrote
        on disk meanwhile, which this one has not seen."""
        path = self._path(key)
        if merge:
            try:
                value = {**json.loads(path.read_text()), **value}
            except (OSError, ValueError, TypeError):
                pass
        self._mem[key] = value
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(value))
            tmp.replace(path)
        except OSError:          # a read-only cache folder: the memo still works in memory
            pass
