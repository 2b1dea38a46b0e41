"""The register map's documents: ``docs/registers.md`` and ``include/systolab_regs.h``.

    python -m systolab.hw.regmap.docs      # `make docs`
"""

from __future__ import annotations

from ..counters import COUNTER_BITS, COUNTERS
from . import REG_BITS, REGMAP, RegisterMap

__all__ = ["render_markdown", "render_c_header", "write_repo_docs"]


def _hex(v: int) -> str:
    return f"0x{v:03X}"


def render_markdown(rm: RegisterMap = REGMAP) -> str:
    out = [
        "# systolab register map",
        "",
        "<!-- generated from hw/regmap/registers.yaml by systolab.hw.regmap; do not edit -->",
        "",
        f"Register map version {rm.version}. {len(rm.registers)} registers of {REG_BITS} bits at "
        f"byte offsets from the block's base; the block decodes {rm.size} bytes "
        f"(AXI4-Lite address width {rm.addr_bits}). Access them as whole 32-bit words. Reads have "
        "no side effects; unmapped offsets read 0 and ignore writes. The map is the same for "
        "every config; the `const` fields read the values of the config the RTL was generated for.",
        "",
        "Field kinds: `const` (fixed when the RTL is generated), `status` (reads the hardware), "
        "`rw` (read/write, resets to 0), `pulse` (write 1 to act, reads 0), `w1c` (sticky, "
        "write 1 to clear).",
        "",
        f"The `interrupt` output is high while a bit of `{rm.irq_status.name}` is set together with "
        f"the same bit of `{rm.irq_enable.name}`.",
        "",
        "## Summary",
        "",
        "| offset | register | access | description |",
        "|---|---|---|---|",
    ]
    for r in rm.registers.values():
        out.append(f"| {_hex(r.offset)} | [`{r.name}`](#{r.name.lower()}) | {r.access} | {r.doc} |")
    out += ["", "## Registers"]
    for r in rm.registers.values():
        out += ["", f"### {r.name}", "", f"Offset {_hex(r.offset)}, {r.access}. {r.doc}", "",
                "| bits | field | kind | width | description |", "|---|---|---|---|---|"]
        for f in r.fields:
            extra = ""
            if f.kind == "const":
                extra = f" (value: `{f.value}`)"
            elif f.port:
                lsb = f" bits {f.port_lsb + f.width - 1}..{f.port_lsb}" if f.port_lsb else ""
                extra = f" (port `{f.port}`{lsb})"
            elif f.kind == "w1c":
                extra = f" (set when `{f.set_on}` rises)"
            out.append(f"| {f.bits} | `{f.name}` | {f.kind} | {f.width_spec} | {f.doc}{extra} |")
    out.append("")
    return "\n".join(out)


def render_c_header(rm: RegisterMap = REGMAP) -> str:
    n = len(COUNTERS)
    out = [
        "/* systolab registers: generated from hw/regmap/registers.yaml by systolab.hw.regmap; do not edit. */",
        "#ifndef SYSTOLAB_REGS_H",
        "#define SYSTOLAB_REGS_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define SYSTOLAB_REGMAP_VERSION {rm.version}",
        f"#define SYSTOLAB_REGMAP_ID 0x{rm.id:08X}u",
        f"#define SYSTOLAB_REGMAP_SIZE 0x{rm.size:X}u",
        f"#define SYSTOLAB_REGMAP_COUNTERS {n}",
        f"#define SYSTOLAB_REGMAP_COUNTER_BITS {COUNTER_BITS}",
        "",
        "/* The 32-bit register at byte offset `off` from the block base `base`. */",
        "#define SYSTOLAB_REG(base, off) (*(volatile uint32_t *)((uintptr_t)(base) + (off)))",
        "",
        "/* Registers: SYSTOLAB_REG_<NAME> is the byte offset; a field is (value & MASK) >> LSB. */",
    ]
    for r in rm.registers.values():
        out += ["", f"/* {r.name} ({r.access}): {r.doc} */",
                f"#define SYSTOLAB_REG_{r.name} 0x{r.offset:03X}u"]
        for f in r.fields:
            stem = f"SYSTOLAB_REG_{r.name}_{f.name.upper()}"
            out += [f"#define {stem}_LSB {f.lsb}", f"#define {stem}_WIDTH {f.width}",
                    f"#define {stem}_MASK 0x{f.mask:08X}u"]
    out += ["", "/* The counters in hw/counters.py order: name, offset of LO, offset of HI (0: none). */",
            f"static const char *const systolab_counter_names[{n}] = {{"]
    out += [f'    "{name}",' for name in COUNTERS]
    out += ["};", f"static const uint32_t systolab_counter_offsets[{n}][2] = {{"]
    for name, (lo, hi) in rm.counters.items():
        out.append(f"    {{0x{lo.offset:03X}u, 0x{(hi.offset if hi else 0):03X}u}},")
    out += ["};", "", "#endif /* SYSTOLAB_REGS_H */", ""]
    return "\n".join(out)


def write_repo_docs(root=None) -> list:
    """Write docs/registers.md and include/systolab_regs.h (`make docs`)."""
    from pathlib import Path

    root = Path(root) if root else Path(__file__).resolve().parents[2]
    targets = {root / "docs" / "registers.md": render_markdown(REGMAP),
               root / "include" / "systolab_regs.h": render_c_header(REGMAP)}
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(targets)


if __name__ == "__main__":
    for p in write_repo_docs():
        print(f"wrote {p}")
