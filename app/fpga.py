"""The host side of the accelerator on an FPGA board (the bitstream is `hw.bitstream`).

Host (`systolab fpga run --port DEV --config CONFIG --workload gemm:MxKxN`): `UARTTransport` speaks
the bridge protocol of `hw.bridge` over a byte link (`SerialLink`: pyserial), and gives
`systolab.app.driver.Driver` its register and memory callbacks. The transport's methods are
coroutines that await the link's results when they are awaitable, so the same class runs over a
serial port (plain blocking calls, under `asyncio.run`) and over cocotbext-uart in a cocotb test.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from systolab.codegen.gemm import check_gemm_fits, compile_gemm, gemm_reference, random_gemm
from systolab.errors import UserError
from systolab.metrics import RunReport
from systolab.sim.run import parse_gemm

__all__ = ["BoardError", "UARTTransport", "SerialLink", "BridgeInfo", "run_on_board", "fpga_run"]


class BoardError(UserError):
    """The board did not answer, answered something else than the protocol, or refused a command."""


# -- host side ------------------------------------------------------------------------------------

async def _call(fn: Callable, *args) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(frozen=True)
class BridgeInfo:
    """The bridge's information block (`hw.bridge.INFO_WORDS`)."""

    version: int
    mem_bytes: int
    bus_bytes: int
    reg_bytes: int
    clock_hz: int
    timeout: int


class UARTTransport:
    """The bridge protocol (`hw.bridge`) over a byte link.

    link: an object with ``write(data: bytes)`` and ``read(n) -> bytes`` (which returns the `n`
    bytes, or fewer on a timeout); each may return an awaitable.
    chunk_words: the most words one command moves (a long transfer is split).

    Register callbacks for `Driver`: `read_reg` / `write_reg` (byte offsets); memory callbacks:
    `mem_read` / `mem_write` (any byte address and length: partial words at the ends are
    read, merged and written back).
    """

    def __init__(self, link, *, chunk_words: int = 1024):
        from systolab.hw.bridge import MAX_COUNT
        if not 1 <= chunk_words <= MAX_COUNT:
            raise ValueError(f"chunk_words must be in 1..{MAX_COUNT}, not {chunk_words!r}")
        self._link = link
        self._chunk = chunk_words

    async def _read_exact(self, n: int, what: str) -> bytes:
        data = bytes(await _call(self._link.read, n))
        if len(data) != n:
            raise BoardError(f"no reply from the board: {what} got {len(data)} of {n} bytes "
                             f"(is the bitstream loaded, and the baud rate the one it was built for?)")
        return data

    async def command(self, cmd: int, addr: int, count: int, data: bytes = b"") -> bytes:
        """Send one command; return its read data (empty for writes). Raises `BoardError` on
        a status other than OK."""
        from systolab.hw.bridge import Command, Status
        if addr % 4 or not 0 <= addr < 2**32 or not 0 <= count <= 0xFFFF:
            raise ValueError(f"bridge command needs an aligned 32-bit address and a 16-bit count, "
                             f"not {addr:#x}, {count}")
        is_write = cmd in (Command.REG_WRITE, Command.MEM_WRITE)
        if is_write and len(data) != 4 * count:
            raise ValueError(f"a write of {count} words needs {4 * count} bytes, not {len(data)}")
        await _call(self._link.write, bytes([cmd]) + addr.to_bytes(4, "little")
                    + count.to_bytes(2, "little") + (data if is_write else b""))
        status = (await self._read_exact(1, f"command {cmd:#04x} at {addr:#x}"))[0]
        if status != Status.OK:
            name = Status(status).name if status in iter(Status) else f"{status:#04x}"
            raise BoardError(f"the board refused command {cmd:#04x} at {addr:#x} ({count} words): "
                             f"status {name}")
        if is_write or count == 0:
            return b""
        return await self._read_exact(4 * count, f"read of {count} words at {addr:#x}")

    async def _read_words(self, cmd: int, addr: int, count: int) -> bytes:
        out = bytearray()
        while count:
            n = min(count, self._chunk)
            out += await self.command(cmd, addr, n)
            addr, count = addr + 4 * n, count - n
        return bytes(out)

    async def _write_words(self, cmd: int, addr: int, data: bytes) -> None:
        for start in range(0, len(data), 4 * self._chunk):
            part = data[start:start + 4 * self._chunk]
            await self.command(cmd, addr + start, len(part) // 4, part)

    # -- information block -------------------------------------------------------------------------
    async def info(self) -> BridgeInfo:
        """Read and check the bridge's information block."""
        from systolab.hw.bridge import INFO_WORDS, MAGIC, PROTOCOL_VERSION, Command
        raw = await self._read_words(Command.INFO_READ, 0, len(INFO_WORDS))
        words = dict(zip(INFO_WORDS, (int.from_bytes(raw[i:i + 4], "little")
                                      for i in range(0, len(raw), 4))))
        if words["magic"] != MAGIC:
            raise BoardError(f"the device does not speak the systolab bridge protocol "
                             f"(magic {words['magic']:#010x}, expected {MAGIC:#010x})")
        if words["version"] != PROTOCOL_VERSION:
            raise BoardError(f"bridge protocol version {words['version']} on the board, this host "
                             f"speaks {PROTOCOL_VERSION}; rebuild the bitstream or update systolab")
        return BridgeInfo(**{k: v for k, v in words.items() if k != "magic"})

    # -- registers ---------------------------------------------------------------------------------
    async def read_reg(self, offset: int) -> int:
        from systolab.hw.bridge import Command
        return int.from_bytes(await self.command(Command.REG_READ, offset, 1), "little")

    async def write_reg(self, offset: int, value: int) -> None:
        from systolab.hw.bridge import Command
        await self.command(Command.REG_WRITE, offset, 1, int(value).to_bytes(4, "little"))

    # -- memory ------------------------------------------------------------------------------------
    async def mem_read(self, addr: int, nbytes: int) -> bytes:
        from systolab.hw.bridge import Command
        start, end = addr - addr % 4, -(-(addr + nbytes) // 4) * 4
        raw = await self._read_words(Command.MEM_READ, start, (end - start) // 4)
        return raw[addr - start:addr - start + nbytes]

    async def mem_write(self, addr: int, data: bytes) -> None:
        from systolab.hw.bridge import Command
        data = bytes(data)
        if not data:
            return
        start, end = addr - addr % 4, -(-(addr + len(data)) // 4) * 4
        buf = bytearray(end - start)
        if addr != start or len(data) % 4 or (addr + len(data)) != end:
            head = await self.mem_read(start, 4)
            tail = await self.mem_read(end - 4, 4)
            buf[:4], buf[-4:] = head, tail
        buf[addr - start:addr - start + len(data)] = data
        await self._write_words(Command.MEM_WRITE, start, bytes(buf))

    def driver(self, **kwargs):
        """A `systolab.app.driver.Driver` over this transport (registers and memory)."""
        from systolab.app.driver import Driver
        return Driver(self.read_reg, self.write_reg, mem_write=self.mem_write,
                      mem_read=self.mem_read, **kwargs)


class SerialLink:
    """A serial port (pyserial) as a `UARTTransport` link: 8N1 at `baud`, `timeout` seconds per read."""

    def __init__(self, port: str, baud: int, *, timeout: float = 2.0):
        try:
            import serial
        except ImportError:
            raise BoardError("systolab fpga needs pyserial (pip install pyserial)") from None
        try:
            self._serial = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                         timeout=timeout)
        except (serial.SerialException, ValueError) as e:
            raise BoardError(f"cannot open serial port {port}: {e}") from None
        # a command an earlier session left half-sent is dropped by the bridge after its
        # timeout (at most 50 ms at 25 MHz and 115200 baud); then start from a clean line
        time.sleep(0.1)
        self._serial.reset_input_buffer()

    def write(self, data: bytes) -> None:
        self._serial.write(data)

    def read(self, n: int) -> bytes:
        return self._serial.read(n)

    def close(self) -> None:
        self._serial.close()


async def run_on_board(transport: UARTTransport, program):
    """Check that the board holds `program`, then load, run and read it back through the driver.
    Returns (`systolab.app.driver.RunResult`, `BridgeInfo`)."""
    info = await transport.info()
    need = max([len(program.image), *(r.addr + r.nbytes for r in program.regions.values())])
    if need > info.mem_bytes:
        raise BoardError(f"the program needs {need} bytes of memory; the board's on-chip memory "
                         f"has {info.mem_bytes} (choose a smaller workload, or rebuild with a "
                         f"larger --mem-kib)")
    driver = transport.driver()
    result = await driver.run(program)
    return result, info


def fpga_run(port: str, config, workload: str, *, baud: int, seed: int = 0, relu: bool = False,
             link=None) -> RunReport:
    """`systolab fpga run`: compile `workload` for `config`, run it on the board at `port`,
    compare with numpy. Returns the run's report (`systolab run --json` plus the board clock)."""
    shape = parse_gemm(workload)
    check_gemm_fits(config, shape, what=workload)
    g = random_gemm(*shape, seed=seed, relu=relu)
    t0 = time.perf_counter()
    program = compile_gemm(config, g, name=workload)
    compile_s = time.perf_counter() - t0
    own = link is None
    if own:
        link = SerialLink(port, baud)
    try:
        t0 = time.perf_counter()
        result, info = asyncio.run(run_on_board(UARTTransport(link), program))
        board_s = time.perf_counter() - t0
    finally:
        if own:
            link.close()
    got = result.outputs["C"]
    mismatches = int(np.count_nonzero(got != gemm_reference(g)))
    cycles = result.counters["cycles"]
    return RunReport.of(config, macs=program.macs, cycles=cycles, mismatches=mismatches, sim="fpga",
                        workload=workload, instructions=program.insn_count, counters=result.counters,
                        timings={"compile_s": compile_s, "board_s": board_s},
                        extra={"clock_hz": info.clock_hz, "run_s_at_clock": cycles / info.clock_hz})
