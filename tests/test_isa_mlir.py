"""The ISA as the `systolab` MLIR dialect: programs print as MLIR and parse back to the same words."""

import pytest
from hypothesis import given, settings, strategies as st

from systolab.codegen.gemm import compile_gemm, random_gemm
from systolab.config import config_from_dict, default_config
from systolab.isa import TOKEN_FLAGS, isa_for
from systolab.isa.mlir import (LINKS, MlirProgramError, insns_to_mlir, mlir_to_insns, mlir_to_words, parse_module,
                               print_module, program_to_mlir, write_repo_docs)
from test_isa import CONFIGS, instructions


def valid_tokens(isa, insns):
    """Clear every pop that would take a token no earlier instruction pushed (a valid program)."""
    counters = {link: 0 for link in LINKS}
    out = []
    for op, values in insns:
        fmt = isa.formats[op]
        values = dict(values)
        for t in ("pop_prev", "pop_next"):
            if values.get(t):
                i = isa_queues(fmt.queue, t)
                link = (i, fmt.queue)
                if counters[link]:
                    counters[link] -= 1
                else:
                    values[t] = 0
        for t in ("push_prev", "push_next"):
            if values.get(t):
                counters[(fmt.queue, isa_queues(fmt.queue, t))] += 1
        out.append((op, values))
    return out


def isa_queues(queue, flag):
    from systolab.isa import QUEUES
    i = QUEUES.index(queue)
    return QUEUES[i - 1] if flag.endswith("prev") else QUEUES[i + 1]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "4x8"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(cfg, data):
    isa = isa_for(cfg)
    insns = valid_tokens(isa, data.draw(st.lists(instructions(isa), min_size=1, max_size=12)))
    words = [isa.encode(op, **v) for op, v in insns]
    text = insns_to_mlir(cfg, insns)
    assert mlir_to_words(text, cfg) == words
    assert print_module(parse_module(text, cfg)) == text        # the text itself is stable


def test_compiled_gemm_round_trips():
    cfg = config_from_dict({"array": {"rows": 4, "cols": 4}})
    prog = compile_gemm(cfg, random_gemm(12, 10, 9, seed=1))
    text = program_to_mlir(prog, cfg)
    assert mlir_to_words(text, cfg) == prog.words
    lines = [line.strip() for line in text.splitlines()]
    assert sum(line.startswith(("systolab.matmul", "%")) and "systolab.matmul" in line for line in lines) == \
        sum(isa_for(cfg).decode(w).op == "MATMUL" for w in prog.words)
    # tokens are SSA values: a push defines one, the pop that takes it uses it (the compiler pushes
    # only for a pop that needs it, so every token is used exactly once)
    defined = [line.split(" = ")[0] for line in lines if line.startswith("%")]
    assert defined and all(text.count(f"({name})") == 1 for name in defined)
    assert any("pop_prev(%" in line for line in lines) and any(line.endswith("push_next") for line in lines)
    assert f'systolab.config_hash = "{cfg.compile_hash}"' in text


def test_errors():
    cfg = default_config()
    other = config_from_dict({"array": {"rows": 4, "cols": 4}})
    text = insns_to_mlir(cfg, [("LOAD", {"rows": 1, "push_next": 1}), ("PRELOAD", {"pop_prev": 1})])
    with pytest.raises(MlirProgramError, match=rf"^p\.mlir: program was compiled for config {cfg.compile_hash}, not for "):
        mlir_to_words(text, other, name="p.mlir")
    bad = text.replace("sp_addr = 0 : ui12}", "sp_addr = 0 : ui8}", 1)
    with pytest.raises(MlirProgramError, match=r"^p\.mlir:\d+:\d+: LOAD\.sp_addr must be an integer of type ui12$"):
        mlir_to_words(bad, cfg, name="p.mlir")
    with pytest.raises(MlirProgramError, match=r"^p\.mlir: arith\.constant is not a systolab instruction"):
        mlir_to_words('builtin.module {\n  %0 = arith.constant 0 : i32\n}\n', cfg, name="p.mlir")
    with pytest.raises(MlirProgramError, match=r"^instruction 0 \(PRELOAD\) pops a token from the load queue that no "
                                               r"earlier instruction pushed \(token underflow\)$"):
        insns_to_mlir(cfg, [("PRELOAD", {"pop_prev": 1})])
    big = text.replace("rows = 1 : ui13", "rows = 0 : ui13", 1)
    with pytest.raises(MlirProgramError, match=r"^p\.mlir: instruction 0: LOAD\.rows must be at least 1, not 0$"):
        mlir_to_words(big, cfg, name="p.mlir")


def test_every_flag_is_visible():
    cfg = default_config()
    isa = isa_for(cfg)
    insns = [("LOAD", {"rows": 1, "push_next": 1}), ("MATMUL", {"rows": 1, "pop_prev": 1, "push_next": 1,
                                                                "push_prev": 1}),
             ("STORE", {"rows": 1, "pop_prev": 1, "push_prev": 1}), ("SYNC", {"pop_next": 1}),
             ("LOAD", {"rows": 1, "pop_next": 1})]
    back = mlir_to_insns(insns_to_mlir(cfg, insns), cfg)
    for (op, want), (op2, got) in zip(insns, back):
        assert op == op2
        assert {t: got[t] for t in TOKEN_FLAGS if t in got} == {t: want.get(t, 0) for t in TOKEN_FLAGS
                                                                 if t in isa.formats[op].allowed_tokens}


def test_dialect_doc_is_fresh(root, tmp_path):
    """docs/isa_dialect.mlir is generated from the spec: regenerate with `make docs`."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text((root / "configs" / "default.yaml").read_text())
    for fresh in write_repo_docs(tmp_path):
        committed = root / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run `make docs`"
    text = (root / "docs" / "isa_dialect.mlir").read_text()
    assert mlir_to_words(text, default_config())           # the example program in it parses
