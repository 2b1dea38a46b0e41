"""A UART: 8 data bits, no parity, 1 stop bit (8N1), least significant bit first.

The bit time is ``divisor`` clock cycles (``divisor = round(clock_hz / baud)``, see
`uart_divisor`). Both directions move bytes over `amaranth.lib.stream` interfaces:

* `UARTTx`: ``i`` takes a byte when the transmitter is idle and shifts it out on ``tx``
  (start bit, 8 data bits, stop bit; ``tx`` idles high). Back-to-back bytes leave without a gap.
* `UARTRx`: ``rx`` goes through a two-flop synchronizer; a low level in the idle state starts a
  frame, which is checked again half a bit later (a shorter glitch is ignored) and then sampled
  in the middle of every bit. A frame whose stop bit is high offers its byte on ``o``; a frame
  with a low stop bit raises ``error`` for one cycle and is dropped (the receiver waits for the
  line to go high again). The receiver holds one byte: if ``o`` has not taken it when the next
  frame ends, the new byte is dropped and ``overrun`` is high for one cycle.

The receiver returns to the idle state in the middle of the stop bit, so it tolerates a baud
mismatch of a few percent and a sender that starts the next frame right after the stop bit.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTx", "UARTRx", "uart_divisor", "MIN_DIVISOR"]

#: the smallest bit time in clock cycles (the receiver samples in the middle of a bit)
MIN_DIVISOR = 4


def _check_divisor(divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer >= {MIN_DIVISOR}, not {divisor!r}")
    return divisor


def uart_divisor(clock_hz: float, baud: int, *, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for `baud` at `clock_hz`; a `ValueError` if the rate the divisor
    gives is further than `tolerance` (relative) from `baud` or the divisor is below `MIN_DIVISOR`."""
    if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
        raise ValueError(f"baud must be a positive integer, not {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock: at most "
                         f"{int(clock_hz // MIN_DIVISOR)} ({MIN_DIVISOR} cycles per bit)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"baud {baud} is {error:.1%} off at {clock_hz / 1e6:g} MHz "
                         f"({clock_hz / divisor:.0f} with {divisor} cycles per bit); "
                         f"allowed is {tolerance:.0%}")
    return divisor


class UARTTx(wiring.Component):
    """8N1 transmitter (see the module docstring).

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1, init=1)
        The serial line.
    busy : Out(1)
        A frame is being sent.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, *, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        D = self._divisor
        shreg = Signal(10, init=0x3FF)     # stop, data[7..0], start: bit 0 leaves first
        bits = Signal(range(11))          # bits left to send (0: idle)
        timer = Signal(range(D))
        last = Signal()                   # the stop bit's last cycle: the next byte may start
        m.d.comb += [last.eq((bits == 1) & (timer == 0)),
                     self.tx.eq(shreg[0]), self.busy.eq(bits != 0),
                     self.i.ready.eq((bits == 0) | last)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq((1 << 9) | (self.i.payload << 1)), bits.eq(10),
                         timer.eq(D - 1)]
        with m.Elif((bits != 0) & (timer == 0)):
            m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), bits.eq(bits - 1), timer.eq(D - 1)]
        with m.Elif(bits != 0):
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver (see the module docstring).

    Members
    -------
    rx : In(1, init=1)
        The serial line (asynchronous to the clock).
    o : Out(stream.Signature(8))
        Received bytes.
    error : Out(1)
        A frame with a low stop bit ended this cycle (framing error).
    overrun : Out(1)
        A byte was dropped this cycle because ``o`` had not taken the previous one.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    error: Out(1)
    overrun: Out(1)

    def __init__(self, *, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        D = self._divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(D))
        bit = Signal(range(8))
        shreg = Signal(8)
        data = Signal(8)
        full = Signal()
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(data)]
        with m.If(self.o.ready):
            m.d.sync += full.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(D // 2 - 1)
                    m.next = "START"
            with m.State("START"):          # to the middle of the start bit
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"         # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(D - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):           # the middle of each data bit
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq((rx << 7) | (shreg >> 1)), timer.eq(D - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):           # the middle of the stop bit
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(full & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [data.eq(shreg), full.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):          # after a framing error: wait for the idle level
                with m.If(rx):
                    m.next = "IDLE"
        return m
