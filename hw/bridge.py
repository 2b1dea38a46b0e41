"""`UARTBridge`: a byte-stream bridge from a host to the register block and the on-chip memory.

The protocol (also in docs/fpga.md; `systolab.app.fpga.UARTTransport` is the host side). All
multi-byte fields are little-endian; addresses are byte addresses and must be multiples of 4; data
moves in 32-bit words.

Host to board, one command::

    CMD (1 byte)  ADDR (4 bytes)  COUNT (2 bytes, words)  [DATA (4 * COUNT bytes), writes only]

Board to host, one reply per command::

    STATUS (1 byte)  [DATA (4 * COUNT bytes), reads with STATUS = OK only]

==========  ==============  =============================================================
``CMD``      name            meaning
==========  ==============  =============================================================
``0x00``     INFO_READ       read COUNT words of the bridge's information block (`INFO`)
``0x10``     REG_READ        read COUNT registers from ADDR (the register block's addresses)
``0x11``     REG_WRITE       write COUNT registers from ADDR
``0x20``     MEM_READ        read COUNT words of the on-chip memory from ADDR
``0x21``     MEM_WRITE       write COUNT words of the on-chip memory from ADDR
==========  ==============  =============================================================

``STATUS`` is ``0x00`` (OK), ``0x01`` (unknown command) or ``0x02`` (ADDR not a multiple of 4,
or ADDR + 4 * COUNT beyond the space). A write sends its STATUS after its last word has been
accepted (registers) or written (memory), so a reply means the write has happened; a write with
a bad address still consumes its DATA bytes and writes nothing. A read sends STATUS first, then
its data, one word after another as the register block or memory returns them.

Resynchronization: if a command stops arriving part-way (no byte for ``timeout`` clock cycles),
the bridge drops it and waits for a new command byte. A host that lost track waits longer than
that (`INFO` word 6 says how long) and starts again.

The information block (`INFO`, word index: value): 0: magic ``0x424C5953`` (the bytes "SYLB"),
1: protocol version, 2: on-chip memory bytes, 3: memory bus bytes, 4: register block bytes,
5: clock frequency in Hz, 6: resynchronization timeout in clock cycles.

Ports: ``rx`` and ``tx`` are byte streams (from `hw.uart.UARTRx` / to `UARTTx`); ``reg`` is a
32-bit `MemPortSignature` (word addresses, in-order read responses) to the register block and
``mem`` a `MemPortSignature` of the memory's width to the on-chip memory (shared with the core
through an arbiter in the board top).
"""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .common import check_pow2
from .memport import MemPortSignature, check_bus_bytes

__all__ = ["UARTBridge", "Command", "Status", "MAGIC", "PROTOCOL_VERSION", "INFO_WORDS",
           "HEADER_BYTES"]

MAGIC = 0x424C5953            # b"SYLB" little-endian
PROTOCOL_VERSION = 1
#: names of the information block's words, in order
INFO_WORDS = ("magic", "version", "mem_bytes", "bus_bytes", "reg_bytes", "clock_hz", "timeout")
#: bytes after CMD: ADDR (4) and COUNT (2)
HEADER_BYTES = 6
MAX_COUNT = 0xFFFF


class Command(enum.IntEnum):
    INFO_READ = 0x00
    REG_READ = 0x10
    REG_WRITE = 0x11
    MEM_READ = 0x20
    MEM_WRITE = 0x21


class Status(enum.IntEnum):
    OK = 0x00
    BAD_COMMAND = 0x01
    BAD_ADDRESS = 0x02



class UARTBridge(wiring.Component):
    """The bridge (protocol in the module docstring).

    Parameters
    ----------
    mem_bytes : int
        Size of the on-chip memory (a power of two).
    bus_bytes : int
        Width of the memory port (a power of two >= 4).
    reg_bytes : int
        Size of the register block's address space (a power of two >= 4).
    clock_hz : int
        Reported in the information block.
    timeout : int
        Clock cycles without a byte after which a half-received command is dropped.

    Members
    -------
    rx : In(stream.Signature(8))
    tx : Out(stream.Signature(8))
    reg : Out(MemPortSignature(4))
    mem : Out(MemPortSignature(bus_bytes))
    """

    def __init__(self, *, mem_bytes: int, bus_bytes: int, reg_bytes: int, clock_hz: int,
                 timeout: int):
        check_bus_bytes(bus_bytes)
        check_pow2("bus_bytes", bus_bytes, 4)
        check_pow2("mem_bytes", mem_bytes, bus_bytes)
        check_pow2("reg_bytes", reg_bytes, 4)
        if isinstance(clock_hz, bool) or not isinstance(clock_hz, int) or not 0 < clock_hz < 2**32:
            raise ValueError(f"clock_hz must be an integer in 1..2**32-1, not {clock_hz!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout < 2**32:
            raise ValueError(f"timeout must be an integer in 1..2**32-1, not {timeout!r}")
        self._mem_bytes = mem_bytes
        self._bus_bytes = bus_bytes
        self._reg_bytes = reg_bytes
        self._clock_hz = clock_hz
        self._timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "reg": Out(MemPortSignature(4)),
            "mem": Out(MemPortSignature(bus_bytes)),
        })

    @property
    def mem_bytes(self) -> int:
        return self._mem_bytes

    @property
    def bus_bytes(self) -> int:
        return self._bus_bytes

    @property
    def reg_bytes(self) -> int:
        return self._reg_bytes

    @property
    def clock_hz(self) -> int:
        return self._clock_hz

    @property
    def timeout(self) -> int:
        return self._timeout

    def info(self) -> list[int]:
        """The information block's words (`INFO_WORDS`)."""
        return [MAGIC, PROTOCOL_VERSION, self._mem_bytes, self._bus_bytes, self._reg_bytes,
                self._clock_hz, self._timeout]

    def elaborate(self, platform):
        m = Module()
        B = self._bus_bytes
        lanes = B // 4
        info = self.info()

        cmd = Signal(8)
        header = Signal(8 * HEADER_BYTES)
        addr = Signal(32)                      # byte address of the current word
        count = Signal(16)                     # words left
        n_hdr = Signal(range(HEADER_BYTES + 1))
        word = Signal(32)
        n_byte = Signal(range(4))
        status = Signal(8)
        ok = Signal()
        is_write = Signal()

        # -- resynchronization timer: runs while a command is half received -----------------
        idle_timer = Signal(range(self._timeout + 1))
        expired = Signal()
        m.d.comb += expired.eq(idle_timer == self._timeout)
        receiving = Signal()

        with m.If(self.rx.valid & self.rx.ready | ~receiving):
            m.d.sync += idle_timer.eq(0)
        with m.Elif(~expired):
            m.d.sync += idle_timer.eq(idle_timer + 1)

        # -- address checks (in CHECK) -------------------------------------------------------
        hdr_addr = header[:32]
        hdr_count = header[32:48]
        end = Signal(34)
        m.d.comb += end.eq(hdr_addr + (hdr_count << 2))
        aligned = hdr_addr[:2] == 0

        def in_space(size):
            return aligned & (end <= size)

        known = Signal()
        in_range = Signal()
        with m.Switch(cmd):
            with m.Case(Command.INFO_READ):
                m.d.comb += [known.eq(1), in_range.eq(in_space(4 * len(info)))]
            with m.Case(Command.REG_READ, Command.REG_WRITE):
                m.d.comb += [known.eq(1), in_range.eq(in_space(self._reg_bytes))]
            with m.Case(Command.MEM_READ, Command.MEM_WRITE):
                m.d.comb += [known.eq(1), in_range.eq(in_space(self._mem_bytes))]

        # -- requests ------------------------------------------------------------------------
        space_mem = cmd[5]                     # 0x2x: memory, 0x1x: registers
        lane = Signal(range(max(2, lanes)))
        if lanes > 1:
            m.d.comb += lane.eq(addr[2:2 + exact_log2(lanes)])
        m.d.comb += [
            self.reg.req.payload.addr.eq(addr[2:]),
            self.reg.req.payload.we.eq(is_write),
            self.reg.req.payload.wdata.eq(word),
            self.reg.req.payload.wstrb.eq(0xF),
            self.mem.req.payload.addr.eq(addr[exact_log2(B):]),
            self.mem.req.payload.we.eq(is_write),
            self.mem.req.payload.wdata.eq(Cat(word for _ in range(lanes))),
            self.mem.req.payload.wstrb.eq(Const(0xF, B) << (lane * 4)),
        ]
        info_word = Signal(32)
        with m.Switch(addr[2:2 + max(1, (len(info) - 1).bit_length())]):
            for i, value in enumerate(info):
                with m.Case(i):
                    m.d.comb += info_word.eq(value)

        with m.FSM():
            with m.State("CMD"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [cmd.eq(self.rx.payload), n_hdr.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(self.rx.valid):
                    m.d.sync += [header.eq(Cat(header[8:], self.rx.payload)), n_hdr.eq(n_hdr + 1)]
                    with m.If(n_hdr == HEADER_BYTES - 1):
                        m.next = "CHECK"
                with m.Elif(expired):
                    m.next = "CMD"
            with m.State("CHECK"):
                m.d.sync += [addr.eq(hdr_addr), count.eq(hdr_count), ok.eq(known & in_range),
                             is_write.eq(cmd[0] & (cmd != Command.INFO_READ)), n_byte.eq(0),
                             status.eq(Mux(~known, Status.BAD_COMMAND,
                                                Mux(~in_range, Status.BAD_ADDRESS, Status.OK)))]
                with m.If(known & cmd[0] & (hdr_count != 0)):
                    m.next = "WDATA"            # a write: take its data (even when not ok)
                with m.Else():
                    m.next = "STATUS"
            with m.State("WDATA"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(self.rx.valid):
                    m.d.sync += [word.eq(Cat(word[8:], self.rx.payload)), n_byte.eq(n_byte + 1)]
                    with m.If(n_byte == 3):
                        m.next = "WREQ"
                with m.Elif(expired):
                    m.next = "CMD"
            with m.State("WREQ"):
                with m.If(ok & space_mem):
                    m.d.comb += self.mem.req.valid.eq(1)
                with m.If(ok & ~space_mem):
                    m.d.comb += self.reg.req.valid.eq(1)
                with m.If(~ok | (space_mem & self.mem.req.ready) | (~space_mem & self.reg.req.ready)):
                    m.d.sync += [addr.eq(addr + 4), count.eq(count - 1)]
                    with m.If(count == 1):
                        m.next = "STATUS"
                    with m.Else():
                        m.next = "WDATA"
            with m.State("STATUS"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(status)]
                with m.If(self.tx.ready):
                    with m.If(ok & ~is_write & (count != 0)):
                        m.next = "RREQ"
                    with m.Else():
                        m.next = "CMD"
            with m.State("RREQ"):
                with m.If(cmd == Command.INFO_READ):
                    m.d.sync += [word.eq(info_word), n_byte.eq(0)]
                    m.next = "SEND"
                with m.Elif(space_mem):
                    m.d.comb += self.mem.req.valid.eq(1)
                    with m.If(self.mem.req.ready):
                        m.next = "RRESP"
                with m.Else():
                    m.d.comb += self.reg.req.valid.eq(1)
                    with m.If(self.reg.req.ready):
                        m.next = "RRESP"
            with m.State("RRESP"):
                with m.If(space_mem):
                    m.d.comb += self.mem.resp.ready.eq(1)
                    with m.If(self.mem.resp.valid):
                        m.d.sync += [word.eq(self.mem.resp.payload.rdata.word_select(lane, 32)),
                                     n_byte.eq(0)]
                        m.next = "SEND"
                with m.Else():
                    m.d.comb += self.reg.resp.ready.eq(1)
                    with m.If(self.reg.resp.valid):
                        m.d.sync += [word.eq(self.reg.resp.payload.rdata), n_byte.eq(0)]
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(word[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [word.eq(word >> 8), n_byte.eq(n_byte + 1)]
                    with m.If(n_byte == 3):
                        m.d.sync += [addr.eq(addr + 4), count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "CMD"
                        with m.Else():
                            m.next = "RREQ"
        return m

