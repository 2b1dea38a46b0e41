"""Render the ISA reference (`docs/isa.md`) and the C header from `ISA(config)`.

Both are generated, never edited: `tests/test_isa.py` fails when the committed copies are stale.
Regenerate them with `systolab generate configs/default.yaml -o out` or `make docs`.
"""

from __future__ import annotations

from . import ENUMS, QUEUES, SPEC, WORD_BITS, ISA

__all__ = ["render_markdown", "render_c_header"]


def render_markdown(isa: ISA) -> str:
    cfg = isa.config
    out = [
        "# systolab ISA reference",
        "",
        "<!-- generated from isa/spec.yaml by systolab.isa.docs; do not edit -->",
        "",
        f"Instruction words are {WORD_BITS} bits, little-endian in memory, fields packed LSB first. "
        f"Bit positions below are for `{cfg.source}` ({cfg.describe()}, config hash `{cfg.hash}`); "
        "address and count widths follow the buffer depths of the config in use.",
        "",
        "## Field widths that follow the config",
        "",
        "| width | rule | bits here |",
        "|---|---|---|",
    ]
    for name, rule in SPEC["widths"].items():
        (kind, keys), = rule.items()
        keys = keys if isinstance(keys, list) else [keys]
        args = ", ".join(f"`{k}` = {cfg.get(k)}" for k in keys)
        out.append(f"| `{name}` | {kind}({args}) | {isa.widths[name]} |")
    out += ["", "## Opcodes", "", "| opcode | instruction | queue | bits used |", "|---|---|---|---|"]
    for fmt in isa.formats.values():
        out.append(f"| {fmt.opcode} | [`{fmt.name}`](#{fmt.name.lower()}) | {fmt.queue} | {fmt.used_bits} |")
    out += ["", "## Header (every instruction)", "", "| bits | field | meaning |", "|---|---|---|"]
    for f in next(iter(isa.formats.values())).header:
        out.append(f"| {f.bits} | `{f.name}` | {f.doc} |")
    out += ["", f"Queues, in order: {', '.join(QUEUES)}. Dependency tokens pass between neighbours; "
            "see `docs/architecture.md`."]
    for fmt in isa.formats.values():
        out += ["", f"## {fmt.name}", "", f"Opcode {fmt.opcode}, {fmt.queue} queue. Token flags allowed: "
                f"{', '.join(f'`{t}`' for t in fmt.allowed_tokens) or 'none'}.", "", fmt.doc, "",
                "```python", fmt.semantics, "```", ""]
        if fmt.fields:
            out += ["| bits | field | width | meaning |", "|---|---|---|---|"]
            for f in fmt.fields:
                out.append(f"| {f.bits} | `{f.name}` | {f.width_spec} | {f.doc} |")
        example = {f.name: min(1, f.mask) for f in fmt.fields}
        out += ["", f"Assembly: `{isa.disassemble_one(isa.encode(fmt.name, **example))}`"]
        for f in fmt.fields:
            if f.enum:
                out += ["", f"### {fmt.name}.{f.name}: {f.enum.replace('_', ' ')}", "",
                        "| code | name | result |", "|---|---|---|"]
                out += [f"| {e['code']} | `{e['name']}` | {e['doc']} |" for e in SPEC[f.enum]]
    out.append("")
    return "\n".join(out)


def render_c_header(isa: ISA) -> str:
    cfg = isa.config
    words = WORD_BITS // 32
    out = [
        "/* systolab ISA: generated from isa/spec.yaml by systolab.isa.docs; do not edit. */",
        f"/* config {cfg.source}: {cfg.describe()}; hash {cfg.hash} */",
        "#ifndef SYSTOLAB_ISA_H",
        "#define SYSTOLAB_ISA_H",
        "",
        "#include <stdint.h>",
        "",
        f'#define SYSTOLAB_CONFIG_HASH "{cfg.hash}"',
        f"#define SYSTOLAB_ARRAY_ROWS {cfg.rows}",
        f"#define SYSTOLAB_ARRAY_COLS {cfg.cols}",
        f"#define SYSTOLAB_SCRATCHPAD_DEPTH {cfg.scratchpad.depth}",
        f"#define SYSTOLAB_ACCUMULATOR_DEPTH {cfg.accumulator.depth}",
        f"#define SYSTOLAB_BUS_BYTES {cfg.memory.bus_bytes}",
        f"#define SYSTOLAB_INSN_BITS {WORD_BITS}",
        f"#define SYSTOLAB_INSN_WORDS32 {words}",
        "",
        "/* An instruction: 32-bit words, word 0 holds bits 31..0. */",
        f"typedef struct {{ uint32_t w[{words}]; }} systolab_insn_t;",
        "",
        "/* Set `width` bits at bit `lsb` (fields may straddle 32-bit words). */",
        "static inline void systolab_set_field(systolab_insn_t *insn, unsigned lsb, unsigned width, uint64_t value) {",
        "    for (unsigned i = 0; i < width; i++) {",
        "        unsigned bit = lsb + i;",
        "        uint32_t mask = 1u << (bit % 32);",
        "        if ((value >> i) & 1) insn->w[bit / 32] |= mask; else insn->w[bit / 32] &= ~mask;",
        "    }",
        "}",
        "",
        "static inline uint64_t systolab_get_field(const systolab_insn_t *insn, unsigned lsb, unsigned width) {",
        "    uint64_t value = 0;",
        "    for (unsigned i = 0; i < width; i++) {",
        "        unsigned bit = lsb + i;",
        "        value |= (uint64_t)((insn->w[bit / 32] >> (bit % 32)) & 1) << i;",
        "    }",
        "    return value;",
        "}",
        "",
    ]
    for f in next(iter(isa.formats.values())).header:
        out.append(f"#define SYSTOLAB_{f.name.upper()}_LSB {f.offset}")
        out.append(f"#define SYSTOLAB_{f.name.upper()}_WIDTH {f.width}")
    for fmt in isa.formats.values():
        out += ["", f"/* {fmt.name}: {fmt.queue} queue */", f"#define SYSTOLAB_OP_{fmt.name} {fmt.opcode}"]
        for f in fmt.fields:
            out.append(f"#define SYSTOLAB_{fmt.name}_{f.name.upper()}_LSB {f.offset}")
            out.append(f"#define SYSTOLAB_{fmt.name}_{f.name.upper()}_WIDTH {f.width}")
            for name, code in ENUMS.get(f.enum, {}).items():
                out.append(f"#define SYSTOLAB_{fmt.name}_{f.name.upper()}_{name} {code}")
    out += ["", "#endif /* SYSTOLAB_ISA_H */", ""]
    return "\n".join(out)


def write_repo_docs(root=None) -> list:
    """Write docs/isa.md and include/systolab_isa.h for configs/default.yaml (`make docs`)."""
    import dataclasses
    from pathlib import Path

    from systolab.config import load_config

    root = Path(root) if root else Path(__file__).resolve().parent.parent
    cfg = dataclasses.replace(load_config(root / "configs" / "default.yaml"), source="configs/default.yaml")
    isa = ISA(cfg)
    targets = {root / "docs" / "isa.md": render_markdown(isa),
               root / "include" / "systolab_isa.h": render_c_header(isa)}
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(targets)


if __name__ == "__main__":
    for p in write_repo_docs():
        print(f"wrote {p}")
