import pytest
from amaranth.lib import data
from hypothesis import given, settings, strategies as st

from systolab.config import config_from_dict, default_config
from systolab.isa import ISA, WORD_BITS, AsmError, EncodeError, Opcode, isa_for
from systolab.isa.docs import render_c_header, render_markdown, write_repo_docs

CONFIGS = [default_config(),
           config_from_dict({"array": {"rows": 4, "cols": 8}, "scratchpad": {"depth": 64},
                             "accumulator": {"depth": 16384}})]


@st.composite
def instructions(draw, isa):
    op = draw(st.sampled_from(sorted(isa.formats)))
    fmt = isa.formats[op]
    values = {}
    for f in fmt.fields:
        lo = 1 if f.name == "rows" else 0
        values[f.name] = draw(st.integers(lo, f.mask))
    for t in fmt.allowed_tokens:
        values[t] = draw(st.integers(0, 1))
    return op, values


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "4x8"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_round_trip(cfg, data):
    isa = isa_for(cfg)
    op, values = data.draw(instructions(isa))
    word = isa.encode(op, **values)
    assert 0 <= word < 2**WORD_BITS
    insn = isa.decode(word)
    assert insn.op == op
    assert {k: v for k, v in insn.values.items() if k in values} == values
    text = isa.disassemble([word])
    assert isa.assemble(text) == [word]
    assert isa.disassemble(isa.assemble(text)) == text


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "4x8"])
def test_amaranth_layout_agrees_with_encoder(cfg):
    isa = isa_for(cfg)
    word = isa.encode("STORE", dram_addr=0x1234560, dram_stride=4096, rows=7, acc_addr=3,
                      param_addr=0xABC00, relu=1, pop_prev=1, push_prev=1)
    view = data.Const(isa.word_layout, word)
    assert view.header.opcode == Opcode.STORE
    assert view.STORE.dram_addr == 0x1234560
    assert view.STORE.param_addr == 0xABC00
    assert view.STORE.rows == 7 and view.STORE.relu == 1
    assert view.header.pop_prev == 1 and view.header.pop_next == 0
    assert isa.word_layout.size == WORD_BITS


def test_widths_follow_config():
    small = ISA(config_from_dict({"scratchpad": {"depth": 64}}))
    big = ISA(config_from_dict({"scratchpad": {"depth": 65536}}))
    assert small.widths["sp_addr"] == 6 and big.widths["sp_addr"] == 16
    assert small.formats["LOAD"].used_bits < big.formats["LOAD"].used_bits


def test_encode_errors():
    isa = isa_for(default_config())
    with pytest.raises(EncodeError, match=r"^MATMUL.sp_addr must be an integer from 0 to 4095 \(12 bits\), not 4096$"):
        isa.encode("MATMUL", sp_addr=4096, acc_addr=0, rows=1)
    with pytest.raises(EncodeError, match=r"^LOAD runs on the load queue, which has no previous queue: pop_prev must be 0$"):
        isa.encode("LOAD", rows=1, pop_prev=1)
    with pytest.raises(EncodeError, match=r"^PRELOAD has no field 'rows'"):
        isa.encode("PRELOAD", rows=1)
    with pytest.raises(EncodeError, match=r"^STORE.rows must be at least 1, not 0$"):
        isa.encode("STORE", rows=0)
    with pytest.raises(EncodeError, match=r"opcode 0, which is not an instruction"):
        isa.decode(0)


def test_assembler_errors():
    isa = isa_for(default_config())
    with pytest.raises(AsmError, match=r"^prog.s:2: expected field=integer"):
        isa.assemble("SYNC\nMATMUL rows=x\n", source="prog.s")
    with pytest.raises(AsmError, match=r"^prog.s:1: unknown instruction 'FOO'"):
        isa.assemble("FOO # comment\n", source="prog.s")
    assert isa.assemble("# only a comment\n\n") == []


def test_generated_docs_are_fresh(root, tmp_path):
    """docs/isa.md and include/systolab_isa.h are generated from the spec: regenerate with `make docs`."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text((root / "configs" / "default.yaml").read_text())
    for fresh in write_repo_docs(tmp_path):
        committed = root / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run `make docs`"


def test_docs_mention_every_instruction():
    isa = isa_for(default_config())
    md, h = render_markdown(isa), render_c_header(isa)
    for name, fmt in isa.formats.items():
        assert f"## {name}" in md
        assert f"#define SYSTOLAB_OP_{name} {fmt.opcode}" in h
