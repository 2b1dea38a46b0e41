"""Make generated Verilog cheaper to Verilate, without changing what it means.

Amaranth (through Yosys) writes the initial contents of every `lib.memory.Memory` (the
scratchpad, the accumulator, the queues) as one assignment per word:

    reg [63:0] mem [4095:0];
    initial begin
      mem[0] = 64'h0000000000000000;
      mem[1] = 64'h0000000000000000;
      ...

Verilator turns that into one C++ statement per 32-bit chunk of every word, which the C++
compiler then chews through: a 1 MiB memory written this way was 20 MB of C++ and three quarters
of the build time. When every word of an `initial` block is zero (the same literal) and the block
covers the whole array, in order, it is replaced by the equivalent loop

    initial begin : systolab_zero_init_0
      integer i;
      for (i = 0; i < 4096; i = i + 1) mem[i] = 64'h0000000000000000;
    end

Anything else (non-zero contents, partial blocks, other statements) is left exactly as it was.
"""

from __future__ import annotations

import re

__all__ = ["compact_zero_memory_init"]

_ARRAY = re.compile(r"^\s*reg\s+(\[\d+:\d+\])\s+(\S+)\s+\[(\d+):0\];\s*$")
#: `name[index] = <zero literal>;` as Yosys writes it: 32'd0 up to 32 bits, 128'h000...0 above
_ZERO_WORD = re.compile(r"^\s*(\S+)\[(\d+)\]\s*=\s*(\d+'[dhb]0+);\s*$")


def compact_zero_memory_init(verilog: str) -> str:
    """`verilog` with every all-zero, whole-array memory `initial` block written as a loop."""
    lines = verilog.split("\n")
    arrays: dict[str, tuple[str, int]] = {}       # name -> (packed range, depth)
    out: list[str] = []
    loops = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _ARRAY.match(line)
        if m:
            arrays[m.group(2)] = (m.group(1), int(m.group(3)) + 1)
        if line.strip() == "initial begin" and i + 1 < len(lines):
            end = _zero_block_end(lines, i + 1, arrays)
            if end is not None:
                first = _ZERO_WORD.match(lines[i + 1])
                name, zero = first.group(1), first.group(3)
                depth = arrays[name][1]
                indent = line[:len(line) - len(line.lstrip())]
                label = f"systolab_zero_init_{loops}"
                loops += 1
                out += [f"{indent}initial begin : {label}",
                        f"{indent}  integer i;",
                        f"{indent}  for (i = 0; i < {depth}; i = i + 1) {name}[i] = {zero};",
                        f"{indent}end"]
                i = end + 1
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _width(packed: str) -> int:
    hi, lo = (int(x) for x in packed.strip("[]").split(":"))
    return abs(hi - lo) + 1


def _literal_width(literal: str) -> int:
    return int(literal.split("'")[0])


def _zero_block_end(lines: list[str], first: int, arrays: dict[str, tuple[str, int]]) -> int | None:
    """Index of the `end` closing an initial block that zeroes array words 0..depth-1 in
    order, all with the same literal of the array's width, and does nothing else; None if the
    block is anything else."""
    m = _ZERO_WORD.match(lines[first])
    if not m or m.group(1) not in arrays:
        return None
    name, zero = m.group(1), m.group(3)
    width, depth = arrays[name]
    if _literal_width(zero) != _width(width):
        return None
    expected = 0
    i = first
    while i < len(lines):
        m = _ZERO_WORD.match(lines[i])
        if not m:
            break
        if m.group(1) != name or int(m.group(2)) != expected or m.group(3) != zero:
            return None
        expected += 1
        i += 1
    if expected != depth or i >= len(lines) or lines[i].strip() != "end":
        return None
    return i
