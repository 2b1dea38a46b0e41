"""The FPGA board top: the core with on-chip memory, its register block and a UART bridge.

::

    uart_rx ─► UARTRx ─► UARTBridge ─► UARTTx ─► uart_tx
                            │   │
               reg (32 bit) │   │ mem (bus_bytes)
                            ▼   ▼
                  RegisterBlock  MemArbiter ◄── Accelerator.mem
                   (hw.regmap)      │             ▲  start, insn_addr, insn_count,
                        │           ▼             │  busy, done, cnt_<name>
                        │     OnChipMemory        │
                        └─────────────────────────┘

* `BoardCore` is everything above with plain ports (``uart_rx``, ``uart_tx``, ``leds``,
  ``interrupt``); `generate_board_verilog` turns it into the Verilog module ``systolab_board``
  (ports ``clk``, ``rst`` and those) for simulation.
* `ULX3SBoard` puts a `BoardCore` on a ULX3S: ``clk25`` is the clock (the platform's default
  clock domain, with its power-on reset), ``uart`` 0 (the FTDI USB serial port) the UART, and
  the LEDs show busy (0), done (1), interrupt (2) and a sticky UART framing error (7).

The host reaches the register block (hw/regmap/registers.yaml, docs/registers.md) and the on-chip memory
through the bridge protocol of `hw.bridge`. The core and the bridge share the memory through a
`MemArbiter`, so the host may read memory during a run. The on-chip memory answers in one cycle;
the core needs nothing more than in-order responses (``memory.latency`` in the config only
sizes the core's read tracking). Memory addresses wrap modulo ``mem_bytes``.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from .bridge import UARTBridge
from .common import as_config
from .memport import MemArbiter, MemPortSignature
from .onchip import OnChipMemory
from .regmap import REGMAP
from .regmap.gateware import CSRBusSignature, RegisterBlock
from .top import Accelerator
from .uart import UARTRx, UARTTx

__all__ = ["BoardCore", "ULX3SBoard", "CSRAdapter", "generate_board_verilog", "BOARD_TOP",
           "LEDS"]

#: Verilog module name of `generate_board_verilog`
BOARD_TOP = "systolab_board"
#: LED index -> what it shows
LEDS = {0: "busy", 1: "done", 2: "interrupt", 7: "UART framing error (sticky)"}


class CSRAdapter(wiring.Component):
    """A 32-bit `MemPortSignature` (memory side) onto the register block's `CSRBusSignature`.

    A request is taken when no read response is waiting; a read drives ``r_stb`` and its
    response (the block's ``r_data`` of the next cycle, which it holds until the next read) is
    offered until taken. Writes drive ``w_stb`` and have no response.
    """

    def __init__(self, addr_bits: int):
        super().__init__({
            "port": In(MemPortSignature(4)),
            "bus": Out(CSRBusSignature(addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        req, resp, bus = self.port.req, self.port.resp, self.bus
        pending = Signal()
        m.d.comb += [
            req.ready.eq(~pending),
            bus.addr.eq(req.payload.addr),
            bus.w_data.eq(req.payload.wdata),
            bus.w_stb.eq(req.valid & req.ready & req.payload.we),
            bus.r_stb.eq(req.valid & req.ready & ~req.payload.we),
            resp.valid.eq(pending),
            resp.payload.rdata.eq(bus.r_data),
        ]
        with m.If(bus.r_stb):
            m.d.sync += pending.eq(1)
        with m.Elif(resp.ready):
            m.d.sync += pending.eq(0)
        return m


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi and value > hi):
        allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an integer {allowed}, not {value!r}")
    return value


class BoardCore(wiring.Component):
    """Core + on-chip memory + register block + UART bridge (see the module docstring).

    Parameters
    ----------
    cfg : HardwareConfig
    mem_bytes : int
        On-chip memory size (a power of two, at least 64 bus words).
    clock_hz : int
        The clock frequency (reported to the host in the bridge's information block).
    divisor : int
        UART bit time in clock cycles (`hw.uart.uart_divisor`).
    timeout : int or None
        Bridge resynchronization timeout in cycles; default: 64 bit times or 50 ms, the longer.

    Members
    -------
    uart_rx : In(1, init=1)
    uart_tx : Out(1, init=1)
    leds : Out(8)
    interrupt : Out(1)
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    leds: Out(8)
    interrupt: Out(1)

    def __init__(self, cfg, *, mem_bytes: int, clock_hz: int, divisor: int, timeout: int | None = None):
        self._cfg = as_config(cfg)
        B = cfg.memory.bus_bytes
        _check_int("clock_hz", clock_hz, 1, 2**32 - 1)
        _check_int("divisor", divisor, 4)
        if timeout is None:
            timeout = max(64 * 10 * divisor, clock_hz // 20)
        if (isinstance(mem_bytes, bool) or not isinstance(mem_bytes, int)
                or mem_bytes < 64 * B or mem_bytes & (mem_bytes - 1)):
            raise ValueError(f"mem_bytes must be a power of two >= {64 * B} (64 bus words), "
                             f"not {mem_bytes!r}")
        self._mem_bytes = mem_bytes
        self._clock_hz = clock_hz
        self._divisor = divisor
        self._core = Accelerator(cfg)
        self._memory = OnChipMemory(words=mem_bytes // B, bus_bytes=B)
        self._regs = RegisterBlock(cfg)
        self._bridge = UARTBridge(mem_bytes=mem_bytes, bus_bytes=B, reg_bytes=REGMAP.size,
                                  clock_hz=clock_hz, timeout=timeout)
        super().__init__()

    @property
    def cfg(self):
        return self._cfg

    @property
    def mem_bytes(self) -> int:
        return self._mem_bytes

    @property
    def clock_hz(self) -> int:
        return self._clock_hz

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def core(self) -> Accelerator:
        return self._core

    @property
    def memory(self) -> OnChipMemory:
        return self._memory

    @property
    def bridge(self) -> UARTBridge:
        return self._bridge

    def elaborate(self, platform):
        m = Module()
        B = self._cfg.memory.bus_bytes
        core = m.submodules.core = self._core
        mem = m.submodules.memory = self._memory
        regs = m.submodules.regs = self._regs
        bridge = m.submodules.bridge = self._bridge
        rx = m.submodules.uart_rx = UARTRx(divisor=self._divisor)
        tx = m.submodules.uart_tx = UARTTx(divisor=self._divisor)
        csr = m.submodules.csr_adapter = CSRAdapter(REGMAP.word_addr_bits)
        # port 0: the core, port 1: the bridge; the bridge has one read in flight at most
        arb = m.submodules.mem_arbiter = MemArbiter(bus_bytes=B, n=2,
                                                    max_outstanding=self._cfg.memory.latency + 2)

        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, rx.o, bridge.rx)
        wiring.connect(m, bridge.tx, tx.i)
        wiring.connect(m, bridge.reg, csr.port)
        wiring.connect(m, csr.bus, regs.bus)
        wiring.connect(m, core.mem, arb.ports[0])
        wiring.connect(m, bridge.mem, arb.ports[1])
        wiring.connect(m, arb.mem, mem.port)

        # register block <-> core, by port name (hw/regmap/registers.yaml)
        for name, (direction, _) in REGMAP.ports.items():
            theirs = getattr(regs, name)
            if hasattr(core, name):
                ours = getattr(core, name)
                m.d.comb += (ours.eq(theirs) if direction == "out" else theirs.eq(ours))
            elif direction == "in":
                m.d.comb += theirs.eq(0)     # bus_error: the on-chip memory always answers
            else:
                raise ValueError(f"register block port {name} has no counterpart in the core")

        framing = Signal()
        with m.If(rx.error):
            m.d.sync += framing.eq(1)
        m.d.comb += [
            self.interrupt.eq(regs.interrupt),
            self.leds[0].eq(core.busy),
            self.leds[1].eq(core.done),
            self.leds[2].eq(regs.interrupt),
            self.leds[7].eq(framing),
        ]
        return m


class ULX3SBoard(Elaboratable):
    """A `BoardCore` on a ULX3S (amaranth-boards `ULX3S_*_Platform`): clock ``clk25``, UART
    ``uart`` 0, LEDs ``led`` 0..7 (see `LEDS`)."""

    def __init__(self, cfg, *, mem_bytes: int, baud: int, clock_hz: int = 25_000_000):
        from .uart import uart_divisor
        self._board = BoardCore(cfg, mem_bytes=mem_bytes, clock_hz=clock_hz,
                                divisor=uart_divisor(clock_hz, baud))

    @property
    def board(self) -> BoardCore:
        return self._board

    def elaborate(self, platform):
        m = Module()
        board = m.submodules.board = self._board
        clk = platform.lookup(platform.default_clk).clock.frequency
        if round(clk) != board.clock_hz:
            raise ValueError(f"the platform's clock is {clk / 1e6:g} MHz, the board was built "
                             f"for {board.clock_hz / 1e6:g} MHz")
        uart = platform.request("uart", 0, dir="-")
        rx = m.submodules.uart_rx_buffer = io.Buffer("i", uart.rx)
        tx = m.submodules.uart_tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [board.uart_rx.eq(rx.i), tx.o.eq(board.uart_tx)]
        for i in range(8):
            led = m.submodules[f"led_{i}"] = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(board.leds[i])
        return m


def generate_board_verilog(board: BoardCore) -> str:
    """Verilog module ``systolab_board`` of `board`: ports ``clk``, ``rst`` (synchronous, active
    high), ``uart_rx``, ``uart_tx``, ``leds``, ``interrupt``."""
    m = Module()
    m.domains.sync = ClockDomain("sync")
    clk, rst = Signal(name="clk"), Signal(name="rst")
    m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(rst)]
    m.submodules.board = board
    ports = [clk, rst]
    for name, is_input in (("uart_rx", True), ("uart_tx", False), ("leds", False),
                           ("interrupt", False)):
        value = getattr(board, name)
        port = Signal(len(value), name=name, init=1 if name == "uart_rx" else 0)
        m.d.comb += value.eq(port) if is_input else port.eq(value)
        ports.append(port)
    from .verilog import convert
    return convert(m, name=BOARD_TOP, ports=ports)
