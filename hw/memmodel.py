"""Memory model for simulation: the external memory behind the accelerator's memory port.

`MemoryModel` is a `lib.memory` of ``words`` words of ``bus_bytes * 8`` bits with

* a request port (`MemPortSignature`, memory side): accepts one request per cycle; a write is done
  at the clock edge that accepts it (byte enables ``wstrb``); a read returns its word exactly
  ``latency`` cycles after the cycle it was accepted in (accepted at t: ``resp.valid`` at t +
  latency), in request order, and back-to-back reads stream one word per cycle;
* response back-pressure: the read pipeline (``latency`` stages) advances only when its last stage
  is empty or taken (``resp.ready``); while it is stalled no request is accepted;
* a host port: ``host_rdata`` is the word at ``host_addr`` of the previous cycle, and
  ``host_we`` writes ``host_wdata`` at ``host_addr`` at the clock edge (it has priority over a
  write request in the same cycle; use it only while the accelerator is idle).

Word addresses wrap modulo ``words``.

Storage: ``storage="amaranth"`` (default) keeps the words in a `lib.memory.Memory`, which the
Python simulator can run and a testbench can read and write directly (`data`).
``storage="verilog"`` instantiates the Verilog module `RAM_VERILOG` (``systolab_ram``) instead:
same ports and timing, but no per-word initializer in the generated Verilog (a 4 MiB memory
would otherwise be tens of megabytes of Verilog and take Amaranth and Yosys many minutes); it
is what `hw.verilog` uses for the simulation top. Its words start at zero.
"""

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .memport import MemPortSignature, check_bus_bytes
from .common import check_pow2

__all__ = ["MemoryModel", "RAM_VERILOG"]

#: The Verilog storage of ``storage="verilog"``: one write port with byte enables and two
#: synchronous read ports that return the old word when it is written in the same cycle (like a
#: non-transparent `lib.memory` read port).
RAM_VERILOG = """\
module systolab_ram #(parameter WORDS = 2, parameter AW = 1, parameter BYTES = 1) (
  input clk,
  input [AW-1:0] waddr, input [8*BYTES-1:0] wdata, input [BYTES-1:0] wen,
  input [AW-1:0] raddr, input ren, output reg [8*BYTES-1:0] rdata,
  input [AW-1:0] haddr, output reg [8*BYTES-1:0] hdata
);
  reg [8*BYTES-1:0] mem [0:WORDS-1];
  integer i;
  initial begin
    for (i = 0; i < WORDS; i = i + 1) mem[i] = 0;
    rdata = 0;
    hdata = 0;
  end
  always @(posedge clk) begin
    for (i = 0; i < BYTES; i = i + 1)
      if (wen[i]) mem[waddr][8*i +: 8] <= wdata[8*i +: 8];
    if (ren) rdata <= mem[raddr];
    hdata <= mem[haddr];
  end
endmodule
"""


class MemoryModel(wiring.Component):
    """Word-addressed memory with a fixed read latency and a host port (see module docstring).

    Members
    -------
    port : In(MemPortSignature(bus_bytes))
        Request and response streams (memory side).
    host_addr, host_we, host_wdata : In
    host_rdata : Out
    """

    def __init__(self, *, words: int, bus_bytes: int, latency: int, storage: str = "amaranth"):
        check_pow2("words", words, 2)
        check_bus_bytes(bus_bytes)
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"latency must be an integer >= 1, not {latency!r}")
        if storage not in ("amaranth", "verilog"):
            raise ValueError(f"storage must be 'amaranth' or 'verilog', not {storage!r}")
        self._words = words
        self._bus_bytes = bus_bytes
        self._latency = latency
        self._storage = storage
        self._mem = (Memory(shape=unsigned(8 * bus_bytes), depth=words, init=[])
                     if storage == "amaranth" else None)
        super().__init__({
            "port": In(MemPortSignature(bus_bytes)),
            "host_addr": In(ceil_log2(words)),
            "host_we": In(1),
            "host_wdata": In(8 * bus_bytes),
            "host_rdata": Out(8 * bus_bytes),
        })

    @property
    def words(self) -> int:
        return self._words

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def latency(self) -> int:
        return self._latency

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def data(self):
        """The `MemoryData` (for `ctx.get`/`ctx.set` of whole words in a testbench)."""
        if self._mem is None:
            raise AttributeError("a MemoryModel with storage='verilog' has no simulator data")
        return self._mem.data

    def elaborate(self, platform):
        m = Module()
        aw = ceil_log2(self._words)
        B, L = self._bus_bytes, self._latency
        req, resp = self.port.req, self.port.resp

        if self._mem is not None:
            m.submodules.mem = mem = self._mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            hp = mem.read_port()
        else:
            wp = _Port(addr=Signal(aw, name="w_addr"), data=Signal(8 * B, name="w_data"),
                       en=Signal(B, name="w_en"))
            rp = _Port(addr=Signal(aw, name="r_addr"), data=Signal(8 * B, name="r_data"),
                       en=Signal(name="r_en"))
            hp = _Port(addr=Signal(aw, name="h_addr"), data=Signal(8 * B, name="h_data"), en=None)
            m.submodules.ram = Instance(
                "systolab_ram", p_WORDS=self._words, p_AW=aw, p_BYTES=B,
                i_clk=ClockSignal(), i_waddr=wp.addr, i_wdata=wp.data, i_wen=wp.en,
                i_raddr=rp.addr, i_ren=rp.en, o_rdata=rp.data, i_haddr=hp.addr, o_hdata=hp.data)

        valid = [Signal(name=f"valid_{k}") for k in range(L)]
        words = [rp.data] + [Signal(8 * B, name=f"data_{k}") for k in range(1, L)]
        advance = Signal()
        fire = Signal()
        m.d.comb += [
            advance.eq(~valid[L - 1] | resp.ready),
            req.ready.eq(advance),
            fire.eq(req.valid & advance),
            rp.addr.eq(req.payload.addr[:aw]),
            rp.en.eq(advance),
            resp.valid.eq(valid[L - 1]),
            resp.payload.rdata.eq(words[L - 1]),
        ]
        with m.If(advance):
            m.d.sync += valid[0].eq(fire & ~req.payload.we)
            for k in range(1, L):
                m.d.sync += [valid[k].eq(valid[k - 1]), words[k].eq(words[k - 1])]

        with m.If(self.host_we):
            m.d.comb += [wp.addr.eq(self.host_addr), wp.data.eq(self.host_wdata),
                         wp.en.eq((1 << B) - 1)]
        with m.Else():
            m.d.comb += [wp.addr.eq(req.payload.addr[:aw]), wp.data.eq(req.payload.wdata),
                         wp.en.eq(Mux(fire & req.payload.we, req.payload.wstrb, 0))]

        m.d.comb += [hp.addr.eq(self.host_addr), self.host_rdata.eq(hp.data)]
        return m


class _Port:
    def __init__(self, *, addr, data, en):
        self.addr, self.data, self.en = addr, data, en
