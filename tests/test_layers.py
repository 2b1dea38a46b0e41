"""The layers of the package: no import cycle, no upward import, anywhere.

Every import statement of the package is read from the source (module level and inside functions
alike, so a function-level import cannot hide a cycle), relative imports resolved. Rooms, lowest
first; a room imports only rooms at or below its own rank:

    base       systolab.{errors, isa, config, metrics, cache}   (ordered among themselves by the
                                                                  cycle check alone)
    hw         systolab.hw
    perf       systolab.perf          the performance model: the compiler's cost model
    codegen    systolab.codegen
    sim        systolab.sim           simulators, RTL runners, the run flow
    co_design  systolab.co_design
    app        systolab.app           CLI, driver, FPGA host side, web service

    python tests/test_layers.py       # prints the room graph and any violation
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: import name of a package -> its folder (pyproject's package-dir)
PACKAGES = {"systolab": "systolab", "systolab.hw": "hw", "systolab.isa": "isa", "systolab.perf": "perf",
            "systolab.codegen": "codegen", "systolab.sim": "sim", "systolab.co_design": "co_design",
            "systolab.app": "app"}
RANK = {"base": 0, "hw": 1, "perf": 2, "codegen": 3, "sim": 4, "co_design": 5, "app": 6}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    out = {}
    for pkg, folder in PACKAGES.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "systolab" and parts and f"systolab.{parts[0]}" in PACKAGES:
                continue
            out[name] = path
    return out


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in RANK and parts[1] != "base":
        return parts[1]
    return "base"


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports (the longest known prefix of each imported name)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({room(a)}) imports {b} ({room(b)})" for a, deps in g.items() for b in deps
                  if RANK[room(b)] > RANK[room(a)])


def test_the_graph_covers_the_package():
    g = graph()
    assert {"systolab.config", "systolab.hw.top", "systolab.perf.model", "systolab.codegen.gemm",
            "systolab.sim.run", "systolab.co_design.sweep", "systolab.app.cli"} <= set(g)
    assert "systolab.sim.run" in g["systolab.app.cli"]          # function-level imports count
    assert "systolab.isa" in g["systolab.config"]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_upward_import():
    assert upward(graph()) == []


def test_the_checks_catch_what_they_are_for():
    g = {"systolab.codegen.a": {"systolab.sim.b"}, "systolab.sim.b": {"systolab.codegen.a"}}
    assert cycles(g) == [["systolab.codegen.a", "systolab.sim.b"]]
    assert upward(g) == ["systolab.codegen.a (codegen) imports systolab.sim.b (sim)"]


if __name__ == "__main__":
    g = graph()
    edges = defaultdict(set)
    for a, deps in g.items():
        for b in deps:
            if room(a) != room(b):
                edges[room(a)].add(room(b))
    for r in sorted(RANK, key=RANK.get):
        print(f"{r:10} -> {', '.join(sorted(edges[r], key=RANK.get)) or '-'}")
    bad = cycles(g) + upward(g)
    print("\n".join(map(str, bad)) if bad else "no cycle, no upward import")
    sys.exit(1 if bad else 0)
