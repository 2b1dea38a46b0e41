"""Verilog generation for one config.

``generate_verilog(cfg, top="sim")`` gives module ``systolab_top`` (`SimTop`: the accelerator with
its memory model and the host port), ``top="core"`` module ``systolab_core`` (`Accelerator`, the
synthesizable core with the external memory port). Ports are listed explicitly, so the names are
exactly those of docs/architecture.md: ``clk``, ``rst`` (synchronous, active high), ``start``,
``insn_addr``, ``insn_count``, ``busy``, ``done``, ``cnt_<name>`` and, for the sim top,
``host_addr``, ``host_we``, ``host_wdata``, ``host_rdata``. The core's memory port is

==================  ====  ====================================================
``mem_req_valid``   out   a request is offered
``mem_req_ready``   in    the memory takes it at this clock edge
``mem_req_addr``    out   word address (32 - log2(bus_bytes) bits)
``mem_req_we``      out   1: write, 0: read
``mem_req_wdata``   out   bus_bytes * 8 bits, byte 0 in bits 7..0
``mem_req_wstrb``   out   byte enables
``mem_resp_valid``  in    a read response word is offered (in request order)
``mem_resp_ready``  out   the core takes it at this clock edge
``mem_resp_rdata``  in    the word
==================  ====  ====================================================

``top="axi"`` gives module ``systolab_axi`` (`hw.axi.AxiTop`: the core behind an AXI4 manager and an
AXI4-Lite register block); its ports follow Vivado's conventions instead: ``aclk``, ``aresetn``
(synchronous, active low), ``s_axi_*``, ``m_axi_*``, ``interrupt`` (see `hw.axi`).

The sim top's memory is the Verilog module ``systolab_ram`` (appended to the text, see
`hw.memmodel.RAM_VERILOG`), so the output stays small for a memory of many megabytes.

The output is deterministic (no source locations, a fixed port order): the same config always
gives the same text, so it can be cached by config hash.
"""

import gc
from contextlib import contextmanager

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal, Signal

from .common import as_config
from .counters import COUNTERS
from .memmodel import RAM_VERILOG
from .pe import DspBudget
from .simtop import SimTop
from .top import Accelerator

__all__ = ["generate_verilog", "convert", "fewer_gc_passes", "TOP_NAMES"]

#: `top` argument -> Verilog module name
TOP_NAMES = {"sim": "systolab_top", "core": "systolab_core", "axi": "systolab_axi"}


def _port_map(design, kind):
    """Verilog port name -> (the design's value, is an input), in port order."""
    ports = {name: (getattr(design, name), True) for name in ("start", "insn_addr", "insn_count")}
    ports.update({name: (getattr(design, name), False) for name in ("busy", "done")})
    if kind == "sim":
        ports.update({
            "host_addr": (design.host_addr, True),
            "host_we": (design.host_we, True),
            "host_wdata": (design.host_wdata, True),
            "host_rdata": (design.host_rdata, False),
        })
    else:
        req, resp = design.mem.req, design.mem.resp
        ports.update({
            "mem_req_valid": (req.valid, False),
            "mem_req_ready": (req.ready, True),
            "mem_req_addr": (req.payload.addr, False),
            "mem_req_we": (req.payload.we, False),
            "mem_req_wdata": (req.payload.wdata, False),
            "mem_req_wstrb": (req.payload.wstrb, False),
            "mem_resp_valid": (resp.valid, True),
            "mem_resp_ready": (resp.ready, False),
            "mem_resp_rdata": (resp.payload.rdata, True),
        })
    ports.update({f"cnt_{name}": (getattr(design, f"cnt_{name}"), False) for name in COUNTERS})
    return ports


@contextmanager
def fewer_gc_passes():
    """Elaborating a big design allocates millions of objects that live until it is written out;
    with Python's default thresholds the collector rescans them all the time (a third of the
    time Verilog generation takes for a 16x16 array)."""
    old = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def convert(m, *, name: str, ports, platform=None) -> str:
    """`amaranth.back.verilog.convert` as every systolab top is converted: reproducible output
    (`emit_src=False`) and fewer garbage-collector passes while elaborating."""
    with fewer_gc_passes():
        return verilog.convert(m, name=name, ports=ports, platform=platform, emit_src=False)


def generate_verilog(cfg, top: str = "sim", *, dsp_pes: int | None = None) -> str:
    """Verilog text of the simulation top (``top="sim"``), the core (``top="core"``) or the AXI
    top (``top="axi"``). `dsp_pes`: how many PE multipliers may use DSP blocks (`hw.pe.DspBudget`;
    default all), for an FPGA with fewer DSPs than the array has PEs."""
    as_config(cfg)
    if top not in TOP_NAMES:
        raise ValueError(f"top must be one of {', '.join(map(repr, TOP_NAMES))}, not {top!r}")

    # A wrapper with one plain signal per port (named as in the contract) and an explicit clock
    # domain, so the clock and reset are ports with exactly these names.
    m = Module()
    m.domains.sync = ClockDomain("sync")
    if top == "axi":
        from .axi import AxiTop

        design = AxiTop(cfg)
        clk, rst = Signal(name="aclk"), Signal(name="aresetn")
        m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(~rst)]
        port_map = design.verilog_ports()
    else:
        design = SimTop(cfg, storage="verilog") if top == "sim" else Accelerator(cfg)
        clk, rst = Signal(name="clk"), Signal(name="rst")
        m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(rst)]
        port_map = _port_map(design, top)
    m.submodules.core = design
    ports = [clk, rst]
    for name, (value, is_input) in port_map.items():
        port = Signal(len(value), name=name)
        m.d.comb += value.eq(port) if is_input else port.eq(value)
        ports.append(port)
    text = convert(m, name=TOP_NAMES[top], ports=ports,
                   platform=None if dsp_pes is None else DspBudget(dsp_pes))
    if top == "sim":
        text += "\n" + RAM_VERILOG
    return text
