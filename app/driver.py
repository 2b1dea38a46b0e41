"""Host driver for a systolab accelerator, over any register bus.

The driver knows the register map (`systolab.hw.regmap.REGMAP`, from ``hw/regmap/registers.yaml``) and
nothing about the bus: it talks through callbacks, so the same code runs over cocotb in tests
(AXI4-Lite master of cocotbext-axi), over a memory-mapped bus on a board, or over a UART bridge.

    read(offset) -> int                  read the 32-bit register at byte offset `offset`
    write(offset, value) -> None         write it
    mem_write(addr, data: bytes)         optional: write external memory (load a program image)
    mem_read(addr, nbytes) -> bytes      optional: read external memory (program outputs)

Offsets are relative to the register block (the driver adds `base`). Every callback may be plain
or return an awaitable: `Driver`'s methods are coroutines that await a callback's result when it
is awaitable, and `SyncDriver` runs the same coroutines without an event loop for plain callbacks
(it fails if a callback returns an awaitable).

    >>> drv = SyncDriver(bus.read32, bus.write32, mem_write=ddr.write, mem_read=ddr.read)
    >>> result = drv.run(program)                  # load, check, start, wait, counters, outputs
    >>> result.counters["cycles"], result.outputs["C"]

    >>> drv = Driver(axil.read_dword, axil.write_dword, mem_write=ram.write, mem_read=ram.read)
    >>> result = await drv.run(program, irq=wait_for_interrupt)    # under cocotb

`run` refuses a program compiled for another config: CONFIG_HASH holds the low 32 bits of the
config hash the hardware was generated for. Counters come back as a dict with the names of
`hw.counters.COUNTERS`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from systolab.errors import UserError
from systolab.hw.counters import COUNTERS
from systolab.hw.regmap import REG_BITS, REGMAP, RegisterMap, config_hash_lo

__all__ = ["Driver", "SyncDriver", "DriverError", "RunResult", "HardwareInfo"]


class DriverError(UserError):
    """The hardware is not what the driver or the program expects, or a run failed."""


@dataclass(frozen=True)
class HardwareInfo:
    """What the read-only registers say about the hardware."""

    version: int
    rows: int
    cols: int
    scratchpad_depth: int
    accumulator_depth: int
    bus_bytes: int
    config_hash_lo: int
    counters: int
    counter_bits: int


@dataclass(frozen=True)
class RunResult:
    counters: dict[str, int]
    outputs: dict[str, np.ndarray]      # empty without a mem_read callback


async def _call(fn: Callable, *args) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Driver:
    """The driver, with coroutine methods (see the module docstring).

    Parameters
    ----------
    read, write : callables
        Register access at byte offsets (plain or returning awaitables).
    mem_write, mem_read : callables, optional
        External memory access for `load` and `read_outputs`.
    base : int
        Added to every register offset.
    poll : callable, optional
        Called (and awaited if awaitable) between two STATUS polls, e.g. a sleep.
    max_polls : int
        `wait_done` gives up after this many STATUS reads.
    """

    def __init__(self, read: Callable, write: Callable, *, mem_write: Callable | None = None,
                 mem_read: Callable | None = None, base: int = 0, poll: Callable | None = None,
                 max_polls: int = 1_000_000, regmap: RegisterMap = REGMAP):
        self._read, self._write = read, write
        self._mem_write, self._mem_read = mem_write, mem_read
        self._base = base
        self._poll = poll
        self._max_polls = max_polls
        self._rm = regmap

    @property
    def regmap(self) -> RegisterMap:
        return self._rm

    # -- registers --------------------------------------------------------------------------------
    async def read_reg(self, name: str) -> int:
        value = await _call(self._read, self._base + self._rm[name].offset)
        return int(value) & ((1 << REG_BITS) - 1)

    async def write_reg(self, name: str, value: int) -> None:
        if not 0 <= value < 1 << REG_BITS:
            raise DriverError(f"register value must fit in {REG_BITS} bits, not {value!r}")
        await _call(self._write, self._base + self._rm[name].offset, value)

    async def read_fields(self, name: str) -> dict[str, int]:
        """Register `name` split into its fields."""
        word = await self.read_reg(name)
        return {f.name: (word & f.mask) >> f.lsb for f in self._rm[name].fields}

    async def write_fields(self, name: str, **fields: int) -> None:
        """Write register `name` from field values (fields not given are written as 0)."""
        reg, word = self._rm[name], 0
        for fname, value in fields.items():
            f = reg.field(fname)
            if not 0 <= value < 1 << f.width:
                raise DriverError(f"{name}.{fname} must fit in {f.width} bits, not {value!r}")
            word |= value << f.lsb
        await self.write_reg(name, word)

    # -- identity ---------------------------------------------------------------------------------
    async def info(self) -> HardwareInfo:
        """Read and check the identification registers."""
        ident = await self.read_reg("ID")
        if ident != self._rm.id:
            raise DriverError(f"no systolab register block at base {self._base:#x}: ID reads "
                              f"{ident:#010x}, expected {self._rm.id:#010x}")
        version = (await self.read_fields("VERSION"))["version"]
        if version != self._rm.version:
            raise DriverError(f"register map version {version} in the hardware, this driver "
                              f"speaks version {self._rm.version}; regenerate one or the other")
        array = await self.read_fields("ARRAY")
        cinfo = await self.read_fields("COUNTER_INFO")
        if cinfo["count"] != len(COUNTERS):
            raise DriverError(f"the hardware has {cinfo['count']} counters, this driver knows "
                              f"{len(COUNTERS)}; regenerate one or the other")
        return HardwareInfo(
            version=version, rows=array["rows"], cols=array["cols"],
            scratchpad_depth=await self.read_reg("SCRATCHPAD_DEPTH"),
            accumulator_depth=await self.read_reg("ACCUMULATOR_DEPTH"),
            bus_bytes=(await self.read_fields("BUS_BYTES"))["bytes"],
            config_hash_lo=await self.read_reg("CONFIG_HASH"),
            counters=cinfo["count"], counter_bits=cinfo["bits"])

    async def check_program(self, program) -> None:
        """Refuse `program` if it was compiled for another config than the hardware's."""
        info = await self.info()
        want = config_hash_lo(program.config_hash)
        if info.config_hash_lo != want:
            raise DriverError(f"program was compiled for config {program.config_hash} (low 32 bits "
                              f"{want:08x}), the hardware was generated for a config whose hash ends "
                              f"in {info.config_hash_lo:08x}; recompile the program for this hardware")

    # -- memory -----------------------------------------------------------------------------------
    async def load(self, program) -> None:
        """Write the program's memory image (instructions and data) from address 0."""
        if self._mem_write is None:
            raise DriverError("load needs a mem_write callback; or write program.image to the "
                              "accelerator's memory from address 0 yourself")
        await _call(self._mem_write, 0, bytes(np.asarray(program.image, dtype=np.uint8)))

    async def read_outputs(self, program) -> dict[str, np.ndarray]:
        """The program's output regions, read back through mem_read."""
        if self._mem_read is None:
            raise DriverError("read_outputs needs a mem_read callback")
        regions = [program.regions[name] for name in program.outputs]
        if not regions:
            return {}
        end = max(r.addr + r.nbytes for r in regions)
        mem = np.zeros(end, dtype=np.uint8)
        for r in regions:
            data = await _call(self._mem_read, r.addr, r.nbytes)
            mem[r.addr:r.addr + r.nbytes] = np.frombuffer(bytes(data), dtype=np.uint8)
        return program.read_outputs(mem)

    # -- runs -------------------------------------------------------------------------------------
    async def status(self) -> dict[str, int]:
        return await self.read_fields("STATUS")

    async def start(self, insn_addr: int, insn_count: int, *, irq: bool = False) -> None:
        """Start a run of `insn_count` instructions at byte address `insn_addr`.

        With `irq`, the done interrupt is enabled (and a stale one cleared) first; without, it is
        disabled."""
        if (await self.status())["busy"]:
            raise DriverError("the accelerator is busy; wait for the current run to finish")
        await self.write_fields("INSN_ADDR", addr=insn_addr)
        await self.write_fields("INSN_COUNT", count=insn_count)
        await self.write_fields("IRQ_STATUS", done=1)             # write 1 to clear
        await self.write_fields("IRQ_ENABLE", done=int(irq))
        await self.write_fields("CTRL", start=1)

    async def wait_done(self, *, irq: Callable | None = None) -> dict[str, int]:
        """Wait until the run finished: poll STATUS, or with `irq` (a callable that returns, or
        whose awaitable completes, once the interrupt line is high) wait for the interrupt,
        then check and clear IRQ_STATUS. Returns the final STATUS fields."""
        if irq is not None:
            await _call(irq)
            pending = await self.read_fields("IRQ_STATUS")
            if not pending["done"]:
                raise DriverError("interrupt without IRQ_STATUS.done")
            await self.write_fields("IRQ_STATUS", done=1)
        for _ in range(self._max_polls):
            st = await self.status()
            if st["done"] and not st["busy"]:
                if st["bus_error"]:
                    raise DriverError("the run finished with a bus error (a memory response "
                                      "other than OKAY); results are not valid")
                return st
            if self._poll is not None:
                await _call(self._poll)
        raise DriverError(f"the run did not finish within {self._max_polls} status polls")

    async def counters(self) -> dict[str, int]:
        """Every performance counter, named as in `hw.counters.COUNTERS`. While a run is going,
        a counter is read HI, LO, HI (again until HI is stable), so the 2 halves agree."""
        running = (await self.status())["busy"]
        out = {}
        for name, (lo, hi) in self._rm.counters.items():
            if hi is None:
                out[name] = await self.read_reg(lo.name)
                continue
            if not running:
                out[name] = await self.read_reg(lo.name) | await self.read_reg(hi.name) << REG_BITS
                continue
            high = await self.read_reg(hi.name)
            while True:
                low = await self.read_reg(lo.name)
                again = await self.read_reg(hi.name)
                if again == high:
                    break
                high = again
            out[name] = low | high << REG_BITS
        return out

    async def run(self, program, *, irq: Callable | None = None, load: bool = True) -> RunResult:
        """Check the program against the hardware, load it (with `load` and a mem_write
        callback), start it, wait for done (interrupt with `irq`, else polling), read the
        counters and (with a mem_read callback) the outputs."""
        await self.check_program(program)
        if load:
            await self.load(program)
        await self.start(program.insn_addr, program.insn_count, irq=irq is not None)
        await self.wait_done(irq=irq)
        counters = await self.counters()
        outputs = await self.read_outputs(program) if self._mem_read is not None else {}
        return RunResult(counters, outputs)


def _run_sync(coro):
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise DriverError("a callback returned an awaitable: use Driver (async), not SyncDriver")


def _plain(fn: Callable | None, what: str) -> Callable | None:
    """`fn`, checked to return a plain value (an awaitable is an error, not a silent no-op)."""
    if fn is None:
        return None

    def call(*args):
        result = fn(*args)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise DriverError(f"the {what} callback returned an awaitable: use Driver (async), "
                              f"not SyncDriver")
        return result
    return call


class SyncDriver:
    """`Driver` for plain (blocking) callbacks: the same methods, called without `await`."""

    def __init__(self, read: Callable, write: Callable, **kwargs):
        for what in ("mem_write", "mem_read", "poll"):
            kwargs[what] = _plain(kwargs.get(what), what)
        self._driver = Driver(_plain(read, "read"), _plain(write, "write"), **kwargs)

    @property
    def driver(self) -> Driver:
        return self._driver

    @property
    def regmap(self) -> RegisterMap:
        return self._driver.regmap

    def __getattr__(self, name):
        method = getattr(self._driver, name)
        if not inspect.iscoroutinefunction(method):
            return method

        def call(*args, **kwargs):
            if kwargs.get("irq") is not None:
                kwargs["irq"] = _plain(kwargs["irq"], "irq")
            return _run_sync(method(*args, **kwargs))
        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
