"""`Accelerator`: the synthesizable systolab core (Verilog module ``systolab_core``).

Blocks (docs/architecture.md): `FetchUnit` -> three instruction queues (`lib.fifo`, depth
``queues.depth``) -> `LoadUnit`, `ComputeUnit`, `StoreUnit`; four `TokenCounter` s between them;
`Scratchpad` and `Accumulator`; a `MemArbiter` sharing the external memory port between fetch,
load, the store unit's parameter reads and its writes (round robin).

Control: ``start`` (one-cycle pulse, ignored while ``busy``) latches ``insn_addr``/``insn_count``,
clears the token counters and the performance counters and raises ``busy`` in the next cycle.
``busy`` falls (and ``done`` rises, held until the next ``start``) in the first cycle in which
every instruction has been fetched and dispatched, the queues are empty, every unit is idle (the
array pipeline drained, every store write accepted by the memory port) and no read is
outstanding. Counters count the cycles in which ``busy`` is high (see `hw.counters.COUNTERS`).

The memory port is ``mem`` (`MemPortSignature`): ``mem.req`` and ``mem.resp`` streams; the Verilog
names are given in `hw.verilog`.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from systolab.isa import QUEUES, WORD_BITS

from .buffers import Accumulator, Scratchpad
from .common import as_config
from .compute import ComputeUnit
from .counters import COUNTER_BITS, COUNTERS
from .fetch import INSN_COUNT_BITS, FetchUnit
from .load import LoadUnit
from .memport import BYTE_ADDR_BITS, MemArbiter, MemPortSignature
from .store import StoreUnit
from .tokens import TokenCounter

__all__ = ["Accelerator", "control_members", "counter_members"]


def control_members() -> dict:
    return {
        "start": In(1),
        "insn_addr": In(BYTE_ADDR_BITS),
        "insn_count": In(INSN_COUNT_BITS),
        "busy": Out(1),
        "done": Out(1),
    }


def counter_members() -> dict:
    return {f"cnt_{name}": Out(COUNTER_BITS) for name in COUNTERS}


class Accelerator(wiring.Component):
    """The systolab core for one `HardwareConfig` (see the module docstring).

    Members
    -------
    start, insn_addr, insn_count : In
    busy, done : Out(1)
    mem : Out(MemPortSignature(memory.bus_bytes))
    cnt_<name> : Out(COUNTER_BITS), one per `hw.counters.COUNTERS` entry
    """

    def __init__(self, cfg):
        self._cfg = as_config(cfg)
        self._fetch = FetchUnit(cfg)
        self._load = LoadUnit(cfg)
        self._compute = ComputeUnit(cfg)
        self._store = StoreUnit(cfg)
        self._arbiter = MemArbiter(bus_bytes=cfg.memory.bus_bytes, n=4,
                                   max_outstanding=cfg.memory.latency + 2)
        super().__init__({
            **control_members(),
            "mem": Out(MemPortSignature(cfg.memory.bus_bytes)),
            **counter_members(),
        })

    @property
    def cfg(self):
        return self._cfg

    # the units, for testbenches that watch their ports
    @property
    def fetch(self) -> FetchUnit:
        return self._fetch

    @property
    def load(self) -> LoadUnit:
        return self._load

    @property
    def compute(self) -> ComputeUnit:
        return self._compute

    @property
    def store(self) -> StoreUnit:
        return self._store

    @property
    def arbiter(self) -> MemArbiter:
        return self._arbiter

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg

        fetch = m.submodules.fetch = self._fetch
        load = m.submodules.load = self._load
        compute = m.submodules.compute = self._compute
        store = m.submodules.store = self._store
        sp = m.submodules.scratchpad = Scratchpad(rows=cfg.rows, depth=cfg.scratchpad.depth)
        acc = m.submodules.accumulator = Accumulator(cols=cfg.cols, depth=cfg.accumulator.depth,
                                                     vector=cfg.has_vector)
        arb = m.submodules.arbiter = self._arbiter

        # memory port: fetch, load, store parameters, store writes
        wiring.connect(m, wiring.flipped(self.mem), arb.mem)
        for i, port in enumerate((fetch.mem, load.mem, store.mem_params, store.mem_write)):
            wiring.connect(m, port, arb.ports[i])

        # queues
        units = {"load": load, "compute": compute, "store": store}
        queues = {}
        for i, name in enumerate(QUEUES):
            fifo = m.submodules[f"{name}_queue"] = SyncFIFOBuffered(width=WORD_BITS,
                                                                     depth=cfg.queues.depth)
            queues[name] = fifo
            wiring.connect(m, fetch.queues[i], fifo.w_stream)
            unit = units[name]
            m.d.comb += [unit.insn.valid.eq(fifo.r_rdy), unit.insn.payload.eq(fifo.r_data),
                         fifo.r_en.eq(unit.insn.ready)]

        # buffers
        wiring.connect(m, load.sp, sp.write)
        wiring.connect(m, compute.sp_preload, sp.read_preload)
        wiring.connect(m, compute.sp_matmul, sp.read_matmul)
        wiring.connect(m, compute.acc_read, acc.read_acc)
        wiring.connect(m, compute.acc_write, acc.write)
        wiring.connect(m, store.acc, acc.read_store)
        if cfg.has_vector:
            wiring.connect(m, compute.acc_vector, acc.read_vector)

        # run control
        busy = Signal()
        start = Signal()
        m.d.comb += [start.eq(self.start & ~busy), self.busy.eq(busy)]
        m.d.comb += [fetch.start.eq(start), fetch.insn_addr.eq(self.insn_addr),
                     fetch.insn_count.eq(self.insn_count)]
        idle = Signal()
        m.d.comb += idle.eq(~fetch.busy & ~load.busy & ~compute.busy & ~store.busy & arb.idle &
                            (queues["load"].level == 0) & (queues["compute"].level == 0) &
                            (queues["store"].level == 0))
        with m.If(start):
            m.d.sync += [busy.eq(1), self.done.eq(0)]
        with m.Elif(busy & idle):
            m.d.sync += [busy.eq(0), self.done.eq(1)]

        # dependency tokens
        l2c = m.submodules.tok_load_compute = TokenCounter(max_inc=1)
        c2l = m.submodules.tok_compute_load = TokenCounter(max_inc=2)
        c2s = m.submodules.tok_compute_store = TokenCounter(max_inc=2)
        s2c = m.submodules.tok_store_compute = TokenCounter(max_inc=1)
        m.d.comb += [
            l2c.clear.eq(start), c2l.clear.eq(start), c2s.clear.eq(start), s2c.clear.eq(start),
            l2c.inc.eq(load.push), compute.pop_prev_ok.eq(l2c.nonzero), l2c.dec.eq(compute.pop_prev),
            c2l.inc.eq(compute.push_prev), load.pop_ok.eq(c2l.nonzero), c2l.dec.eq(load.pop),
            c2s.inc.eq(compute.push_next), store.pop_ok.eq(c2s.nonzero), c2s.dec.eq(store.pop),
            s2c.inc.eq(store.push), compute.pop_next_ok.eq(s2c.nonzero), s2c.dec.eq(compute.pop_next),
        ]

        # performance counters (STAMP writes the cycle counter)
        m.d.comb += store.cycle.eq(self.cnt_cycles)
        events = {
            "cycles": 1,
            "array_busy": compute.row_issue,
            "load_busy": load.busy,
            "compute_busy": compute.busy,
            "vector_busy": compute.vector_busy,
            "store_busy": store.busy,
            "load_wait": load.wait,
            "compute_wait": compute.wait,
            "store_wait": store.wait,
            "fetch_stall": fetch.stall,
            "mem_reads": arb.reads,
            "mem_writes": arb.writes,
        }
        missing = set(COUNTERS) - set(events)
        assert not missing, f"counters without an event: {sorted(missing)}"
        for name in COUNTERS:
            cnt = getattr(self, f"cnt_{name}")
            with m.If(start):
                m.d.sync += cnt.eq(0)
            with m.Elif(busy & events[name]):
                m.d.sync += cnt.eq(cnt + 1)
        return m
