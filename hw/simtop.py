"""`SimTop`: the accelerator with a memory model behind its port (Verilog module ``systolab_top``).

Ports are exactly those of the table in docs/architecture.md ("Simulation top ports"): the control
and counter ports of `Accelerator`, and the host port of the `MemoryModel`
(``host_addr``/``host_we``/``host_wdata``/``host_rdata``, for loading a program image and reading
results while the accelerator is not busy). The memory holds ``cfg.mem_words`` words of
``memory.bus_bytes`` bytes and answers reads ``memory.latency`` cycles after accepting them.
``storage`` chooses how the memory model stores the words (see `MemoryModel`): "amaranth" for the
Python simulator, "verilog" for generated Verilog.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .common import as_config
from .memmodel import MemoryModel
from .top import Accelerator, control_members, counter_members

__all__ = ["SimTop"]


class SimTop(wiring.Component):
    """Accelerator + memory model + host port.

    Members
    -------
    start, insn_addr, insn_count, busy, done, cnt_<name> : as `Accelerator`
    host_addr : In(log2(mem_words))
    host_we : In(1)
    host_wdata : In(bus_bytes * 8)
    host_rdata : Out(bus_bytes * 8)
        The word at the ``host_addr`` of the previous cycle.
    """

    def __init__(self, cfg, *, storage: str = "amaranth"):
        self._cfg = as_config(cfg)
        B = cfg.memory.bus_bytes
        self._core = Accelerator(cfg)
        self._memory = MemoryModel(words=cfg.mem_words, bus_bytes=B, latency=cfg.memory.latency,
                                   storage=storage)
        super().__init__({
            **control_members(),
            "host_addr": In(ceil_log2(cfg.mem_words)),
            "host_we": In(1),
            "host_wdata": In(8 * B),
            "host_rdata": Out(8 * B),
            **counter_members(),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def core(self) -> Accelerator:
        return self._core

    @property
    def memory(self) -> MemoryModel:
        """The memory model (its `data` can be read and written directly by a testbench)."""
        return self._memory

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self._core
        mem = m.submodules.memory = self._memory
        wiring.connect(m, core.mem, mem.port)
        for name in (*control_members(), *counter_members()):
            ours, theirs = getattr(self, name), getattr(core, name)
            if self.signature.members[name].flow == In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        m.d.comb += [
            mem.host_addr.eq(self.host_addr),
            mem.host_we.eq(self.host_we),
            mem.host_wdata.eq(self.host_wdata),
            self.host_rdata.eq(mem.host_rdata),
        ]
        return m
