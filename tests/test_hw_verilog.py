"""Verilog generation: module names and port names exactly as docs/architecture.md, deterministic."""

import re

import pytest

from systolab.hw.counters import COUNTER_BITS, COUNTERS
from systolab.hw.verilog import generate_verilog

from conftest import small_config

CFG = small_config(2, 2, sp=16, acc=16, bus=4, latency=2, mem_kib=64, queues={"depth": 2})


def module_ports(text, name):
    """{port: (direction, width)} of module `name`."""
    body = text[text.index(f"module {name}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for direction, width, port in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports[port] = (direction, int(width) + 1 if width else 1)
    return ports


def expected_ports(extra):
    ports = {"clk": ("input", 1), "rst": ("input", 1), "start": ("input", 1),
             "insn_addr": ("input", 32), "insn_count": ("input", 32),
             "busy": ("output", 1), "done": ("output", 1)}
    ports.update(extra)
    ports.update({f"cnt_{n}": ("output", COUNTER_BITS) for n in COUNTERS})
    return ports


def test_sim_top_ports():
    text = generate_verilog(CFG, top="sim")
    words = CFG.mem_words
    assert module_ports(text, "systolab_top") == expected_ports({
        "host_addr": ("input", words.bit_length() - 1), "host_we": ("input", 1),
        "host_wdata": ("input", 32), "host_rdata": ("output", 32)})
    assert "module systolab_ram" in text          # the memory model's storage comes along
    assert text == generate_verilog(CFG, top="sim")


def test_core_ports():
    text = generate_verilog(CFG, top="core")
    assert module_ports(text, "systolab_core") == expected_ports({
        "mem_req_valid": ("output", 1), "mem_req_ready": ("input", 1),
        "mem_req_addr": ("output", 30), "mem_req_we": ("output", 1),
        "mem_req_wdata": ("output", 32), "mem_req_wstrb": ("output", 4),
        "mem_resp_valid": ("input", 1), "mem_resp_ready": ("output", 1),
        "mem_resp_rdata": ("input", 32)})
    assert "systolab_ram" not in text
    assert text == generate_verilog(CFG, top="core")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^top must be one of 'sim', 'core', 'axi', not 'fpga'$"):
        generate_verilog(CFG, top="fpga")
    with pytest.raises(TypeError, match=r"^cfg must be a HardwareConfig, not \{\}$"):
        generate_verilog({})
