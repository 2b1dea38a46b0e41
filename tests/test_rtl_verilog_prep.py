"""`sim/verilog_prep.py`: zero memory initialisation written as a loop, nothing else touched.
(That the result simulates the same is checked by the backend tests, which build from it.)"""

import re

from systolab.hw.verilog import TOP_NAMES, generate_verilog
from systolab.sim.rtl_common import TOP
from systolab.sim.verilog_prep import compact_zero_memory_init

from conftest import small_config


def _module(body: str) -> str:
    return f"module m(clk);\n  input clk;\n{body}endmodule\n"


ZERO = _module("""  reg [15:0] mem [3:0];
  initial begin
    mem[0] = 16'h0000;
    mem[1] = 16'h0000;
    mem[2] = 16'h0000;
    mem[3] = 16'h0000;
  end
""")


def test_zero_block_becomes_a_loop():
    assert compact_zero_memory_init(ZERO) == _module("""  reg [15:0] mem [3:0];
  initial begin : systolab_zero_init_0
    integer i;
    for (i = 0; i < 4; i = i + 1) mem[i] = 16'h0000;
  end
""")


def test_anything_else_is_left_alone():
    cases = [
        ZERO.replace("mem[2] = 16'h0000;", "mem[2] = 16'h0001;"),          # a non-zero word
        ZERO.replace("    mem[3] = 16'h0000;\n", ""),                      # not the whole array
        ZERO.replace("mem[3] = 16'h0000;", "mem[3] = 16'h0000;\n    x = 1;"),  # another statement
        ZERO.replace("mem[1] = 16'h0000;\n    mem[2]", "mem[2] = 16'h0000;\n    mem[1]"),  # order
        ZERO.replace("mem[0] = 16'h0000;", "mem[0] = 16'd0;"),             # another literal
        ZERO.replace("16'h0000", "8'h00"),                                   # another width
        ZERO.replace("reg [15:0] mem [3:0];", "reg [15:0] mem [7:0];"),    # a bigger array
    ]
    for text in cases:
        assert compact_zero_memory_init(text) == text


def _expand(text: str) -> str:
    """Undo `compact_zero_memory_init`: each loop back to Yosys' one assignment per word."""
    loop = re.compile(r"^(\s*)initial begin : systolab_zero_init_\d+\n\s*integer i;\n"
                      r"\s*for \(i = 0; i < (\d+); i = i \+ 1\) (\S+)\[i\] = (\S+);\n\s*end$", re.M)

    def words(m):
        indent, depth, name, zero = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        body = [f"{indent}  {name}[{k}] = {zero};" for k in range(depth)]
        return "\n".join([f"{indent}initial begin", *body, f"{indent}end"])

    return loop.sub(words, text)


def test_generated_simulation_top():
    cfg = small_config(4, 4, sp=2048, acc=512, mem_kib=64)
    verilog = generate_verilog(cfg, top="sim")
    compact = compact_zero_memory_init(verilog)
    # the scratchpad (2048 rows of 32 bits) is one loop now
    assert "for (i = 0; i < 2048; i = i + 1) mem[i] = 32'd0;" in compact
    assert not re.search(r"^\s*\S+\[\d+\] = \d+'[dh]0+;$", compact, re.M)
    assert len(compact) < len(verilog) - 2048 * len("    mem[0] = 32'd0;\n")
    # and nothing else changed
    assert _expand(compact) == verilog


def test_backends_expect_the_generated_module_name():
    assert TOP == TOP_NAMES["sim"]
