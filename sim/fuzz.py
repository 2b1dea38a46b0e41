"""Differential fuzzing: random valid programs on the functional simulator and on the RTL.

A random small config (`random_config`) and a random program for it (`random_program`) run on
the bit-exact functional simulator and on the generated RTL; the whole external memory and every
counter the functional simulator predicts exactly must agree (`run_case`).

    >>> cfg = random_config(np.random.default_rng(1))
    >>> case = run_case(cfg, seed=7)             # functional simulator + RTL (native Verilator)
    >>> case.ok, case.report()

**What a generated program is.** A random mix of every instruction in `isa/spec.yaml`, with
random operands in range (buffer addresses, row counts, external-memory addresses and strides
obeying the alignment rules of the spec, accumulate / ReLU flags, weight buffers), random
requantization parameters and random data in the memory image, and dependency tokens that make it
*valid* in the sense of docs/architecture.md:

1. executed one instruction at a time in program order it never pops an empty token counter;
2. the tokens order every read-after-write, write-after-read and write-after-write between two
   queues on the scratchpad, the accumulator and the external memory, and a STORE reading
   parameters an earlier STORE wrote (memory writes are posted: `_posted_raw`).

Random extra tokens (pushes nobody needs, pops of them) are added on top, so the counters hold
more than one token and tokens pass through instructions that do not need them.

**How hazard coverage is decided** (`check_program`, and the generator uses the same tracker).
A token is the k-th push on a link matched by the k-th pop on it. When the consumer pops it, it
knows that the producer's queue has finished everything up to the producer: *read* its inputs
(a `push_prev` of a middle queue: docs/architecture.md, "push_prev once it has finished reading
its inputs") or *completed* (every `push_next`, and a `push_prev` of the last queue, which
waits for its memory writes too). Pushes leave a queue in program order, so the token stands for
every earlier instruction of that queue. Each instruction starts knowing what the previous
instruction of its queue knew, plus what the tokens it pops carry, which is what the producers
knew when they started plus the producers themselves (a vector clock over the queues). A hazard
between an earlier instruction P and a later instruction C of another queue is covered when C
knows P at least *read* (P only reads what C writes) or *completed* (P writes what C touches).

The generator derives what each instruction touches and every operand range from the ISA object
(`isa_for(cfg).formats`: field widths, queues, token flags); an instruction added to the spec
without a generator here makes `random_program` fail with "sim/fuzz.py has no generator for
instruction X", the way the functional simulator's dispatch does.

A dependency the producer's neighbour cannot give directly (the store queue telling the load
queue, through the compute queue) goes through a relay: an instruction of the middle queue with
no fields (the spec's `SYNC`) that pops the one token and pushes the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

from systolab.codegen.builder import ProgramBuilder
from systolab.codegen.program import Program
from systolab.config import HardwareConfig, config_from_dict
from systolab.errors import UserError
from systolab.hw.timing import read_requests
from systolab.isa import ENUMS, QUEUES, Instruction, isa_for

from .functional import FunctionalSim
from .rtl import RtlError, run_rtl

__all__ = ["random_config", "random_program", "program_for_seed", "check_program", "Hazard",
           "FuzzError", "expected_counters", "compare", "Comparison", "FuzzCase", "run_case",
           "shrink", "replace_words", "footprint", "LINKS", "Link", "DEFAULT_INSNS"]

#: instructions per random program unless told otherwise
DEFAULT_INSNS = 40


class FuzzError(UserError):
    """The generator cannot produce a valid program (an ISA it does not know, an order it cannot
    make with tokens)."""


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------

#: array shapes the fuzzer draws: small, so a Verilator build is quick
ARRAY_SHAPES = ((2, 2), (2, 4), (4, 2), (4, 4), (2, 8), (8, 2))


def random_config(rng: np.random.Generator) -> HardwareConfig:
    """A small random valid config: array shape from `ARRAY_SHAPES`, 16..64 scratchpad rows,
    16..32 accumulator rows, a 4..16-byte memory bus with 1..12 cycles of latency, 64 KiB of
    memory and 2..8-entry queues, and half the time a vector unit of 1..cols lanes (validated by
    `config_from_dict`)."""
    rows, cols = ARRAY_SHAPES[rng.integers(len(ARRAY_SHAPES))]
    raw = {
        "array": {"rows": rows, "cols": cols},
        "scratchpad": {"depth": int(rng.choice([16, 32, 64]))},
        "accumulator": {"depth": int(rng.choice([16, 32]))},
        "memory": {"bus_bytes": int(rng.choice([4, 8, 16])), "latency": int(rng.integers(1, 13)),
                   "size_kib": 64},
        "queues": {"depth": int(rng.choice([2, 4, 8]))},
    }
    if rng.random() < 0.5:          # drawn last: the other keys are those of the seed without it
        raw["vector"] = {"lanes": int(rng.choice([n for n in (1, 2, 4, 8) if n <= cols]))}
    return config_from_dict(raw, source="<fuzz config>")


# ---------------------------------------------------------------------------------------------
# what an instruction touches
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """What one instruction reads and writes: per resource ("sp", "acc", "wbuf", "mem"), the
    scratchpad / accumulator rows, weight buffers or external-memory bytes."""

    reads: Mapping[str, frozenset]
    writes: Mapping[str, frozenset]


def _strided(addr: int, stride: int, rows: int, row_bytes: int) -> frozenset:
    return frozenset(int(b) for b in (addr + np.arange(rows)[:, None] * stride
                                      + np.arange(row_bytes)[None, :]).ravel())


def _fp_LOAD(cfg, v) -> Access:
    return Access({"mem": _strided(v["dram_addr"], v["dram_stride"], v["rows"], cfg.sp_row_bytes)},
                  {"sp": frozenset(range(v["sp_addr"], v["sp_addr"] + v["rows"]))})


def _fp_PRELOAD(cfg, v) -> Access:
    return Access({"sp": frozenset(range(v["sp_addr"], v["sp_addr"] + cfg.cols))},
                  {"wbuf": frozenset([v["wbuf"]])})


def _fp_MATMUL(cfg, v) -> Access:
    acc = frozenset(range(v["acc_addr"], v["acc_addr"] + v["rows"]))
    reads = {"sp": frozenset(range(v["sp_addr"], v["sp_addr"] + v["rows"])),
             "wbuf": frozenset([v["wbuf"]])}
    if v["accumulate"]:
        reads["acc"] = acc
    return Access(reads, {"acc": acc})


def _fp_STORE(cfg, v) -> Access:
    params = frozenset(range(v["param_addr"], v["param_addr"] + 4 * cfg.acc_row_bytes))
    return Access({"acc": frozenset(range(v["acc_addr"], v["acc_addr"] + v["rows"])), "mem": params},
                  {"mem": _strided(v["dram_addr"], v["dram_stride"], v["rows"], cfg.out_row_bytes)})


def _fp_SYNC(cfg, v) -> Access:
    return Access({}, {})


def _fp_STAMP(cfg, v) -> Access:
    return Access({}, {"mem": frozenset(range(v["dram_addr"], v["dram_addr"] + 4))})


#: VECTOR operations that write the one row dst (column reductions)
_COLUMN_REDUCTIONS = frozenset(ENUMS["vector_ops"][n] for n in ("CSUM", "CMAX"))


def _vector_rows(v) -> int:
    return 1 if v["func"] in _COLUMN_REDUCTIONS else v["rows"]


def _fp_VECTOR(cfg, v) -> Access:
    """The operand rows the functional simulator fetches (b too for operations that ignore it,
    unless an immediate), the old destination rows with accumulate, and the destination rows."""
    reads: dict[str, set] = {"sp": set(), "acc": set()}
    for src, in_sp in (("src1", v["src1_sp"]), ("src2", v["src2_sp"])):
        if src == "src2" and v["src2_imm"]:
            continue
        n = v["rows"] if v[f"{src}_stride"] else 1
        reads["sp" if in_sp else "acc"].update(range(v[src], v[src] + n))
    dst = frozenset(range(v["dst"], v["dst"] + _vector_rows(v)))
    if v["accumulate"]:
        reads["acc"].update(dst)
    return Access({k: frozenset(r) for k, r in reads.items() if r}, {"acc": dst})


def footprint(cfg, insn: Instruction) -> Access:
    """The rows and bytes `insn` reads and writes (the same addresses the functional simulator
    touches); an instruction of the spec this module does not know raises `FuzzError`."""
    fn = globals().get(f"_fp_{insn.op}")
    if fn is None:
        raise FuzzError(f"sim/fuzz.py has no footprint for instruction {insn.op}")
    return fn(cfg, insn.values)


# ---------------------------------------------------------------------------------------------
# token links and what a token says
# ---------------------------------------------------------------------------------------------

READ, DONE = 0, 1        # knowledge levels: the producer has read its inputs / has completed


@dataclass(frozen=True)
class Link:
    """A token counter from queue `src` to its neighbour `dst`, and the header flags that use it."""

    src: str
    dst: str
    push: str                   # flag of the producer
    pop: str                    # flag of the consumer
    level: int                  # READ or DONE: what a token on this link says about `src`


def _links() -> tuple[Link, ...]:
    links = []
    last = len(QUEUES) - 1
    for i, (a, b) in enumerate(zip(QUEUES, QUEUES[1:])):
        links.append(Link(a, b, "push_next", "pop_prev", DONE))
        # push_prev: "once it has finished reading its inputs"; the last queue's (STORE) also
        # waits for its memory writes to be accepted (docs/architecture.md)
        links.append(Link(b, a, "push_prev", "pop_next", DONE if i + 1 == last else READ))
    return tuple(links)


LINKS: tuple[Link, ...] = _links()


def _toward(queue: str, other: str) -> str:
    """The neighbour of `queue` on the side of `other`."""
    i, j = QUEUES.index(queue), QUEUES.index(other)
    return QUEUES[i + 1] if j > i else QUEUES[i - 1]


#: knowledge: per queue, the last program index known read / known completed (-1: none)
Know = dict


def _empty_know() -> Know:
    return {q: (-1, -1) for q in QUEUES}


def _join(a: Know, b: Know) -> Know:
    return {q: (max(a[q][0], b[q][0]), max(a[q][1], b[q][1])) for q in QUEUES}


def _covers(know: Know, need: Mapping[str, tuple[int, int]]) -> bool:
    # completed implies read
    return all(max(know[q]) >= r and know[q][1] >= d for q, (r, d) in need.items())


@dataclass(frozen=True)
class Hazard:
    """A pair of instructions of different queues touching the same place that no chain of
    tokens orders (or an access no token can order)."""

    first: int                  # program index of the earlier instruction
    second: int                 # program index of the later one
    resource: str               # "sp", "acc", "mem"
    kind: str                   # "RAW", "WAR", "WAW", or a sentence
    where: int                  # lowest row / byte of the overlap

    def __str__(self) -> str:
        return (f"{self.kind} on {self.resource} (row/byte {self.where}) between instruction "
                f"{self.first} and instruction {self.second} is not ordered by tokens")


class _Tracker:
    """Token matching and vector-clock knowledge for a program built (or read) in order."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.isa = isa_for(cfg)
        self.ops: list[str] = []
        self.flags: list[dict] = []            # token flags of each instruction (mutable)
        self.access: list[Access] = []
        self.know: list[Know] = []             # knowledge when each instruction starts
        self.last_in: dict[str, int] = {q: -1 for q in QUEUES}
        self.pushes: dict[Link, list[int]] = {link: [] for link in LINKS}
        self.pops: dict[Link, int] = {link: 0 for link in LINKS}

    def queue(self, i: int) -> str:
        return self.isa.formats[self.ops[i]].queue

    def base(self, queue: str) -> Know:
        i = self.last_in[queue]
        return dict(self.know[i]) if i >= 0 else _empty_know()

    def token(self, producer: int, link: Link) -> Know:
        """What a token pushed on `link` by `producer` tells its consumer."""
        know = dict(self.know[producer])
        r, d = know[link.src]
        know[link.src] = (max(r, producer), max(d, producer) if link.level == DONE else d)
        return know

    def pending(self, link: Link) -> list[int]:
        return self.pushes[link][self.pops[link]:]

    def last_push(self, link: Link) -> int:
        return self.pushes[link][-1] if self.pushes[link] else -1

    def need(self, queue: str, access: Access) -> dict[str, tuple[int, int]]:
        """What an instruction of `queue` with `access` must know of each other queue."""
        need = {q: (-1, -1) for q in QUEUES}
        for i in range(len(self.ops)):
            q = self.queue(i)
            if q == queue:
                if _posted_raw(self.access[i], access) is not None:
                    need[q] = (need[q][0], i)
                continue
            level = _conflict(self.access[i], access)
            if level is None:
                continue
            r, d = need[q]
            need[q] = (max(r, i), d) if level == READ else (r, max(d, i))
        return need

    def hazards_of(self, idx: int, queue: str, access: Access, know: Know) -> list[Hazard]:
        out = []
        for i in range(idx):
            q = self.queue(i)
            if q == queue:
                where = _posted_raw(self.access[i], access)
                if where is not None and know[q][1] < i:
                    out.append(Hazard(i, idx, "mem", "same-queue RAW", where))
                continue
            for resource, kind, where in _conflicts(self.access[i], access):
                level = READ if kind == "WAR" else DONE
                ok = max(know[q]) >= i if level == READ else know[q][1] >= i
                if not ok:
                    out.append(Hazard(i, idx, resource, kind, where))
        return out

    def append(self, op: str, flags: dict, access: Access, popped: Mapping[Link, int]) -> int:
        """Record an instruction whose pops took the tokens `popped` (link -> producer)."""
        idx = len(self.ops)
        queue = self.isa.formats[op].queue
        know = self.base(queue)
        for link, producer in popped.items():
            know = _join(know, self.token(producer, link))
        self.ops.append(op)
        self.flags.append(flags)
        self.access.append(access)
        self.know.append(know)
        self.last_in[queue] = idx
        return idx


def _conflict(earlier: Access, later: Access) -> int | None:
    """The knowledge of `earlier` that `later` needs (READ, DONE) or None (no conflict)."""
    level = None
    for _, kind, _ in _conflicts(earlier, later):
        if kind != "WAR":
            return DONE
        level = READ
    return level


def _posted_raw(earlier: Access, later: Access) -> int | None:
    """The lowest external-memory byte `later` reads that `earlier`, of the same queue, wrote.

    Memory writes are posted: the store unit reads a STORE's parameters while the previous
    STORE's writes may still be on their way, so such a read is ordered only by a token round
    trip through the neighbouring queue (STORE push_prev, SYNC pop_next push_next, STORE
    pop_prev), like a LOAD after a STORE."""
    written, read = earlier.writes.get("mem"), later.reads.get("mem")
    if written and read and not written.isdisjoint(read):
        return min(written & read)
    return None


def _conflicts(earlier: Access, later: Access) -> Iterable[tuple[str, str, int]]:
    for resource, written in earlier.writes.items():
        for kind, other in (("RAW", later.reads.get(resource)), ("WAW", later.writes.get(resource))):
            if other and not written.isdisjoint(other):
                yield resource, kind, min(written & other)
    for resource, read in earlier.reads.items():
        other = later.writes.get(resource)
        if other and not read.isdisjoint(other):
            yield resource, "WAR", min(read & other)


# ---------------------------------------------------------------------------------------------
# the checker: validity and hazard coverage of any program
# ---------------------------------------------------------------------------------------------

def check_program(cfg, program: Program) -> list[Hazard]:
    """Every hazard of `program` that its tokens leave unordered (empty: the program is valid).

    Raises `FuzzError` on a token underflow (a pop with no earlier push on its link, in program
    order). Besides the hazards between queues it reports a read of external memory that an
    earlier instruction of the same queue wrote without a token round trip between them (a
    STORE's parameters: `_posted_raw`) and any write into the instruction words, which no
    token orders against the fetch.
    """
    isa = isa_for(cfg)
    tr = _Tracker(cfg)
    insn_lo = program.insn_addr
    insn_hi = insn_lo + program.insn_count * cfg.insn_bytes
    hazards: list[Hazard] = []
    for pc, word in enumerate(program.words):
        insn = isa.decode(word)
        fmt = isa.formats[insn.op]
        access = footprint(cfg, insn)
        popped = {}
        for link in LINKS:
            if link.dst == fmt.queue and insn.values[link.pop]:
                pending = tr.pending(link)
                if not pending:
                    raise FuzzError(f"instruction {pc} ({isa.disassemble_one(word)}): token "
                                    f"underflow on {link.src}->{link.dst}")
                popped[link] = pending[0]
                tr.pops[link] += 1
        know = tr.base(fmt.queue)
        for link, producer in popped.items():
            know = _join(know, tr.token(producer, link))
        hazards += tr.hazards_of(pc, fmt.queue, access, know)
        written = access.writes.get("mem", frozenset())
        if written and any(insn_lo <= b < insn_hi for b in written):
            hazards.append(Hazard(pc, pc, "mem", "write into the instruction words",
                                  min(b for b in written if insn_lo <= b < insn_hi)))
        tr.append(insn.op, {t: insn.values[t] for t in fmt.allowed_tokens}, access, popped)
        for link in LINKS:
            if link.src == fmt.queue and insn.values[link.push]:
                tr.pushes[link].append(pc)
    return hazards


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------

#: relative frequency of each instruction in a random mix (an instruction not listed: 1)
MIX = {"LOAD": 3, "PRELOAD": 2, "MATMUL": 3, "STORE": 2, "SYNC": 1, "STAMP": 0.5}
#: the region of a fuzz program's STAMP slots
STAMP_REGION = "stamps"
#: probability of a token flag nobody needs (an extra push, or a pop of a pending token)
EXTRA_TOKEN_P = 0.15

_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


class _Builder(ProgramBuilder):
    """A `ProgramBuilder` that keeps the token flags the fuzzer chose (no dependency analysis);
    the builder's memory image and instruction packing are reused as they are."""

    def emit(self, op: str, **fields: int) -> int:
        self.isa.encode(op, **fields)
        self._insns.append((op, dict(fields)))
        return len(self._insns) - 1


def _count(rng, hi: int) -> int:
    """A row count from 1 to `hi`: mostly short, sometimes any, sometimes the maximum."""
    u = rng.random()
    if u < 0.55:
        return int(rng.integers(1, min(hi, 4) + 1))
    if u < 0.9:
        return int(rng.integers(1, hi + 1))
    return hi


class _Generator:
    def __init__(self, cfg, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.isa = isa_for(cfg)
        self.gens: dict[str, Callable[[], dict]] = {}
        for name in self.isa.formats:
            gen = getattr(self, f"_gen_{name}", None)
            if gen is None or globals().get(f"_fp_{name}") is None:
                raise FuzzError(f"sim/fuzz.py has no generator for instruction {name}")
            self.gens[name] = gen
        self.noop = {q: next((n for n, f in self.isa.formats.items() if f.queue == q and not f.fields),
                             None) for q in QUEUES}
        self.tr = _Tracker(cfg)
        self.fields: list[dict] = []
        self._layout()

    # -- memory image ---------------------------------------------------------------------------
    def _layout(self) -> None:
        cfg, rng = self.cfg, self.rng
        self.builder = b = _Builder(cfg)
        size = int(rng.choice([256, 512, 1024, 2048]))
        data = rng.integers(-128, 128, size, dtype=np.int64)
        if rng.random() < 0.3:           # a run of extreme bytes
            lo = int(rng.integers(size))
            data[lo:lo + int(rng.integers(1, 64))] = rng.choice([-128, 127, 0])
        self.data = b.alloc("data", (1, size), "int8", data=data[None, :])
        self.n_params = int(rng.integers(1, 5))
        params = np.concatenate([self._param_set() for _ in range(self.n_params)])
        self.params = b.alloc("params", (4 * self.n_params, cfg.cols), "int32", data=params)
        # STAMP slots: nothing else reads or writes them, and `compare` leaves them out (the RTL
        # writes its cycle counter there, the functional simulator 0)
        self.stamps = b.alloc(STAMP_REGION, (1, 8), "int32")

    def _param_set(self) -> np.ndarray:
        """Four rows (bias, multiplier, shift, zero point) of `cols` int32: the sizes a compiler
        emits, with a share of each range's extremes that varies per set (none to all)."""
        rng, C = self.rng, self.cfg.cols
        wildness = float(rng.choice([0.0, 0.2, 0.5, 1.0]))

        def pick(typical, extremes):
            out = typical(C)
            wild = rng.random(C) < wildness
            out[wild] = rng.choice(extremes, int(wild.sum()))
            return out

        bias = pick(lambda n: rng.integers(-2000, 2001, n), [_INT32_MIN, _INT32_MAX, 0, -1, 1])
        mult = pick(lambda n: rng.integers(1, 2 ** 31, n), [_INT32_MIN, _INT32_MAX, 0, -1, 1])
        shift = pick(lambda n: rng.integers(0, 40, n), [0, 1, 31, 32, 62, 63])
        zp = pick(lambda n: rng.integers(-128, 128, n), [_INT32_MIN, _INT32_MAX, -129, 128])
        return np.stack([bias, mult, shift, zp]).astype(np.int64)

    def _strided(self, row_bytes: int, rows: int) -> tuple[int, int, int]:
        """(addr, stride, rows) of a 2-D access inside the data region, aligned as the spec
        asks (multiples of min(row_bytes, bus_bytes)); `rows` may shrink to fit."""
        rng, size = self.rng, self.data.shape[1]
        align = min(row_bytes, self.cfg.memory.bus_bytes)
        u = rng.random()
        if u < 0.15:
            stride = 0                                   # the same row again
        elif u < 0.55:
            stride = row_bytes                           # dense
        else:                                            # gaps, or overlapping rows
            stride = align * int(rng.integers(1, 4 * row_bytes // align + 1))
        if stride:
            rows = max(1, min(rows, (size - row_bytes) // stride + 1))
        span = (rows - 1) * stride + row_bytes
        addr = self.data.addr + align * int(rng.integers((size - span) // align + 1))
        return addr, stride, rows

    # -- operands (one method per spec instruction) ---------------------------------------------
    def _gen_LOAD(self) -> dict:
        depth = self.cfg.scratchpad.depth
        rows = _count(self.rng, depth)
        addr, stride, rows = self._strided(self.cfg.sp_row_bytes, rows)
        return dict(dram_addr=addr, dram_stride=stride, rows=rows,
                    sp_addr=int(self.rng.integers(depth - rows + 1)))

    def _gen_PRELOAD(self) -> dict:
        depth = self.cfg.scratchpad.depth
        return dict(sp_addr=int(self.rng.integers(depth - self.cfg.cols + 1)),
                    wbuf=int(self.rng.integers(2)))

    def _gen_MATMUL(self) -> dict:
        sp, acc = self.cfg.scratchpad.depth, self.cfg.accumulator.depth
        rows = _count(self.rng, min(sp, acc))
        return dict(sp_addr=int(self.rng.integers(sp - rows + 1)),
                    acc_addr=int(self.rng.integers(acc - rows + 1)), rows=rows,
                    wbuf=int(self.rng.integers(2)), accumulate=int(self.rng.random() < 0.4))

    def _gen_STORE(self) -> dict:
        acc = self.cfg.accumulator.depth
        rows = _count(self.rng, acc)
        if self.rng.random() < 0.12:
            # into the bias, multiplier or zero-point row of a parameter set (a shift row would
            # have to stay 0..63), which a later STORE may read: `_posted_raw`
            C, k = self.cfg.out_row_bytes, int(self.rng.integers(4))
            q = int(self.rng.choice([0, 1, 3]))
            addr = (self.params.addr + self.params.row_stride * (4 * int(self.rng.integers(self.n_params)) + q)
                    + k * C)
            stride, rows = C, min(rows, 4 - k)
        else:
            addr, stride, rows = self._strided(self.cfg.out_row_bytes, rows)
        param = self.params.addr + self.params.row_stride * 4 * int(self.rng.integers(self.n_params))
        return dict(dram_addr=addr, dram_stride=stride, rows=rows,
                    acc_addr=int(self.rng.integers(acc - rows + 1)), param_addr=param,
                    relu=int(self.rng.random() < 0.5), round_even=int(self.rng.random() < 0.5),
                    fp32=int(self.rng.random() < 0.3))

    def _gen_SYNC(self) -> dict:
        return {}

    def _gen_STAMP(self) -> dict:
        return dict(dram_addr=self.stamps.addr + 4 * int(self.rng.integers(self.stamps.shape[1])))

    def _gen_VECTOR(self) -> dict:
        """Any operation on scratchpad / accumulator / immediate operands, strides 0 and 1; an
        accumulator source overlaps the destination only in place (as the spec allows)."""
        rng, cfg = self.rng, self.cfg
        sp, acc = cfg.scratchpad.depth, cfg.accumulator.depth
        func = int(rng.choice(list(ENUMS["vector_ops"].values())))
        rows = _count(rng, acc)
        out = 1 if func in _COLUMN_REDUCTIONS else rows
        dst = int(rng.integers(acc - out + 1))
        f = dict(func=func, accumulate=int(rng.random() < 0.3), dst=dst, rows=rows,
                 shift=int(rng.choice([int(rng.integers(64)), 0, 31, 32, 63])),
                 round=int(rng.integers(2)), src2_imm=0)
        for src in ("src1", "src2"):
            stride = int(rng.random() < 0.7)
            n = rows if stride else 1
            u = rng.random()
            if src == "src2" and u < 0.2:
                imm = rng.choice([int(rng.integers(1 << 32)), int(rng.integers(64)), 0, 0xFFFFFFFF,
                                  0x80000000, 0x7FFFFFFF])
                f.update(src2=int(imm), src2_sp=int(rng.integers(2)), src2_stride=stride, src2_imm=1)
                continue
            in_place = out == rows and stride and rng.random() < 0.3
            free = [b for b in range(acc - n + 1) if b + n <= dst or b >= dst + out]
            if u < 0.6 and n <= sp:
                base, in_sp = int(rng.integers(sp - n + 1)), 1
            elif in_place or not free:
                if out != rows:           # a column reduction of a whole-accumulator span
                    stride, n = 0, 1
                    free = [b for b in range(acc) if b != dst]
                    base = int(rng.choice(free))
                else:
                    base, stride = dst, 1
                in_sp = 0
            else:
                base, in_sp = int(rng.choice(free)), 0
            f.update({src: base, f"{src}_sp": in_sp, f"{src}_stride": stride})
        return f

    # -- tokens ---------------------------------------------------------------------------------
    def _check_fields(self, op: str, fields: dict) -> None:
        """Every operand fits its field as the ISA lays it out for this config."""
        fmt = self.isa.formats[op]
        widths = {f.name: f.mask for f in fmt.fields}
        if set(fields) != set(widths):
            raise FuzzError(f"sim/fuzz.py generates fields {sorted(fields)} for {op}; the spec "
                            f"has {sorted(widths)}")
        for name, value in fields.items():
            if not 0 <= value <= widths[name]:
                raise FuzzError(f"sim/fuzz.py generated {op}.{name}={value}, beyond the "
                                f"{widths[name].bit_length()}-bit field")

    def emit(self, op: str, fields: dict, need=None) -> int:
        """Append `op` with tokens that give it what it `need`s (default: its hazards)."""
        tr, rng = self.tr, self.rng
        fmt = self.isa.formats[op]
        queue = fmt.queue
        access = _fp(self.cfg, op, fields)
        if need is None:
            need = tr.need(queue, access)
        flags = {t: 0 for t in fmt.allowed_tokens}
        base = tr.base(queue)
        popped: dict[Link, int] = {}
        incoming = [link for link in LINKS if link.dst == queue]
        for link in incoming:
            # an own-queue need (`_posted_raw`) goes round through the first neighbour
            side = {q: n for q, n in need.items()
                    if (_toward(queue, q) == link.src if q != queue else link is incoming[0])}
            side = {q: n for q, n in side.items() if not _covers(base, {q: n})}
            if side:
                producer = self._token_for(link, side)
            elif tr.pending(link) and rng.random() < EXTRA_TOKEN_P:
                producer = tr.pending(link)[0]               # an extra pop of a pending token
            elif not tr.pending(link) and rng.random() < EXTRA_TOKEN_P / 2:
                producer = self._add_push(link, lambda p: True)   # a balanced extra token
            else:
                producer = None
            if producer is not None:
                popped[link] = producer
                flags[link.pop] = 1
                tr.pops[link] += 1
        idx = tr.append(op, flags, access, popped)
        self.fields.append(fields)
        for link in LINKS:
            if link.src == queue and rng.random() < EXTRA_TOKEN_P:
                self._push(idx, link)                        # an extra push, pending
        return idx

    def _push(self, producer: int, link: Link) -> None:
        self.tr.flags[producer][link.push] = 1
        self.tr.pushes[link].append(producer)

    def _add_push(self, link: Link, good: Callable[[int], bool]) -> int | None:
        """Give a producer after the last push on `link` (none pending) a push; None if no
        producer satisfies `good`."""
        tr = self.tr
        cands = [p for p in range(tr.last_push(link) + 1, len(tr.ops))
                 if tr.queue(p) == link.src and good(p)]
        if not cands:
            return None
        # usually the first producer that will do (the tightest order), sometimes a later one
        p = cands[0] if self.rng.random() < 0.7 else cands[int(self.rng.integers(len(cands)))]
        self._push(p, link)
        return p

    def _token_for(self, link: Link, side: dict) -> int:
        """A token on `link` that carries `side`: a pending one, a new push, or a relay."""
        tr = self.tr
        # pending tokens too old to carry the need were extras nobody popped: drop them
        while tr.pending(link) and not _covers(tr.token(tr.pending(link)[0], link), side):
            stale = tr.pending(link)[0]
            tr.pushes[link].remove(stale)
            tr.flags[stale][link.push] = 0
        if tr.pending(link):
            return tr.pending(link)[0]
        p = self._add_push(link, lambda p: _covers(tr.token(p, link), side))
        if p is not None:
            return p
        relay = self.noop[link.src]
        if relay is None:
            raise FuzzError(f"cannot order {sorted(side)} before a {link.dst} instruction: the "
                            f"{link.src} queue has no instruction without fields to relay a token")
        # the relay must itself know what it passes on (its own queue it knows by position)
        p = self.emit(relay, {}, need={q: n for q, n in side.items() if q != link.src})
        if not tr.flags[p][link.push]:       # unless it already took an extra push
            self._push(p, link)
        return p

    # -- the program ----------------------------------------------------------------------------
    def program(self, n_insns: int, meta: dict) -> Program:
        names = list(self.gens)
        # VECTOR only where there is a vector unit (elsewhere the functional simulator refuses it)
        weights = np.array([0 if n == "VECTOR" and not self.cfg.has_vector else MIX.get(n, 1)
                            for n in names], dtype=float)
        weights /= weights.sum()
        while len(self.tr.ops) < n_insns:
            op = names[int(self.rng.choice(len(names), p=weights))]
            fields = self.gens[op]()
            self._check_fields(op, fields)
            self.emit(op, fields)
        for op, fields, flags in zip(self.tr.ops, self.fields, self.tr.flags):
            self.builder.emit(op, **fields, **flags)
        return self.builder.finish(("data",), meta)


def _fp(cfg, op: str, fields: dict) -> Access:
    fmt = isa_for(cfg).formats[op]
    values = {t: 0 for t in fmt.allowed_tokens} | dict(fields)
    return footprint(cfg, Instruction(op, values))


def random_program(cfg, rng: np.random.Generator, n_insns: int = DEFAULT_INSNS, *,
                   meta: Mapping | None = None) -> Program:
    """A random valid program of about `n_insns` instructions for `cfg` (relays may add a few).

    Deterministic for the state of `rng`. Generated online: the program for `n_insns=k` is the
    longer generation from the same state stopped after its first k instructions (same
    operands; the longer one may have given those instructions pushes later), itself valid,
    which is what `shrink` relies on.
    """
    if isinstance(n_insns, bool) or not isinstance(n_insns, int) or n_insns < 1:
        raise FuzzError(f"n_insns must be a positive integer, not {n_insns!r}")
    return _Generator(cfg, rng).program(n_insns, {"workload": "fuzz", "n_insns": n_insns,
                                                  **(meta or {})})


def program_for_seed(cfg, seed: int, n_insns: int = DEFAULT_INSNS) -> Program:
    """`random_program` from `np.random.default_rng(seed)`: what a report's seed replays."""
    return random_program(cfg, np.random.default_rng(seed), n_insns,
                          meta={"seed": seed})


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------

def expected_counters(cfg, program: Program, func) -> dict[str, int]:
    """The hardware counters a run of the functional simulator predicts exactly: `array_busy`
    (rows streamed through the array) and the memory requests, `mem_reads` (the instruction
    fetch, LOAD rows, the four parameter rows of every STORE) and `mem_writes` (STORE rows)."""
    isa, B = isa_for(cfg), cfg.memory.bus_bytes
    reads = read_requests(program.insn_addr, cfg.insn_bytes, program.insn_count, cfg.insn_bytes, B)
    writes = 0
    for word in program.words:
        insn = isa.decode(word)
        if insn.op == "LOAD":
            reads += read_requests(insn.dram_addr, insn.dram_stride, insn.rows, cfg.sp_row_bytes, B)
        elif insn.op == "STORE":
            reads += read_requests(insn.param_addr, cfg.acc_row_bytes, 4, cfg.acc_row_bytes, B)
            writes += insn.rows * max(1, cfg.out_row_bytes // B)
        elif insn.op == "STAMP":
            writes += 1
    return {"array_busy": func.matmul_rows, "mem_reads": reads, "mem_writes": writes}


@dataclass
class Comparison:
    """Functional simulator vs RTL for one program."""

    diff_bytes: int                          # bytes of external memory that differ
    first_diff: int | None                   # lowest differing byte address
    first_region: str | None                 # the region (or "instructions", "outside") holding it
    counters: dict[str, tuple[int, int]]     # counter -> (expected, rtl), only those that differ

    @property
    def ok(self) -> bool:
        return self.diff_bytes == 0 and not self.counters

    def summary(self) -> str:
        if self.ok:
            return "memory and counters agree"
        parts = []
        if self.diff_bytes:
            parts.append(f"{self.diff_bytes} memory bytes differ, the first at {self.first_diff:#x} "
                         f"({self.first_region})")
        parts += [f"counter {k}: functional {e}, RTL {r}" for k, (e, r) in self.counters.items()]
        return "; ".join(parts)


def _region_of(program: Program, cfg, addr: int) -> str:
    for r in program.regions.values():
        if r.addr <= addr < r.addr + r.nbytes:
            return f"{r.name}+{addr - r.addr:#x}"
    if program.insn_addr <= addr < program.insn_addr + program.insn_count * cfg.insn_bytes:
        return f"instruction {(addr - program.insn_addr) // cfg.insn_bytes}"
    return "outside every region"


def compare(cfg, program: Program, func, rtl_memory: np.ndarray,
            rtl_counters: Mapping[str, int]) -> Comparison:
    """Compare the whole external memory byte for byte, but for the STAMP slots (cycles on the
    RTL, 0 in the functional simulator), and `expected_counters`."""
    func_mem = np.asarray(func.memory, dtype=np.uint8)
    rtl_mem = np.asarray(rtl_memory, dtype=np.uint8)
    if func_mem.shape != rtl_mem.shape:
        raise FuzzError(f"memories differ in size: functional {func_mem.size}, RTL {rtl_mem.size} bytes")
    differs = func_mem != rtl_mem
    if STAMP_REGION in program.regions:
        r = program.regions[STAMP_REGION]
        differs[r.addr:r.addr + r.nbytes] = False
    diff = np.flatnonzero(differs)
    first = int(diff[0]) if diff.size else None
    expected = expected_counters(cfg, program, func)
    counters = {k: (v, int(rtl_counters[k])) for k, v in expected.items() if rtl_counters[k] != v}
    return Comparison(int(diff.size), first, _region_of(program, cfg, first) if diff.size else None,
                      counters)


# ---------------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------------

@dataclass
class FuzzCase:
    """One program run on both simulators; `report()` is what replays it."""

    config: HardwareConfig
    seed: int
    n_insns: int
    program: Program
    comparison: Comparison | None            # None when the RTL did not finish
    error: str | None = None                 # RTL did not finish, or the functional sim refused
    counters: dict[str, int] = field(default_factory=dict)
    rtl_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.comparison is not None and self.comparison.ok

    def report(self) -> str:
        isa = isa_for(self.config)
        status = self.error or self.comparison.summary()
        return "\n".join([
            f"fuzz case: seed {self.seed}, {self.program.insn_count} instructions "
            f"(n_insns={self.n_insns}): {status}",
            f"config: {self.config.to_dict()}",
            f"replay: program_for_seed(config_from_dict({self.config.to_dict()}), {self.seed}, "
            f"{self.n_insns})",
            *(f"{i:3d}  {line}" for i, line in
              enumerate(isa.disassemble(self.program.words).splitlines())),
        ])


def run_case(cfg, seed: int, n_insns: int = DEFAULT_INSNS, *, backend: str = "verilator",
             program: Program | None = None, max_cycles: int = 1_000_000) -> FuzzCase:
    """Generate the program of `seed` (or take `program`, whose meta may say its `n_insns`) and
    run it on both simulators; an RTL run that does not finish is a failed case, not an error."""
    if program is None:
        program = program_for_seed(cfg, seed, n_insns)
    n_insns = program.meta.get("n_insns", n_insns)
    func = FunctionalSim(cfg).run(program)
    t = time.perf_counter()
    try:
        rtl = run_rtl(cfg, program, backend=backend, readback="all", max_cycles=max_cycles)
    except RtlError as e:
        return FuzzCase(cfg, seed, n_insns, program, None, error=f"RTL: {e}",
                        rtl_s=time.perf_counter() - t)
    return FuzzCase(cfg, seed, n_insns, program, compare(cfg, program, func, rtl.memory, rtl.counters),
                    counters=dict(rtl.counters), rtl_s=time.perf_counter() - t)


def shrink(cfg, seed: int, n_insns: int, fails: Callable[[Program], bool]) -> Program:
    """The shortest generated prefix of the program of `seed` for which `fails` holds, then
    with single instructions dropped while the program stays valid (`check_program`) and
    `fails` still holds. `fails(program)` of the full program must be true."""
    if not fails(program_for_seed(cfg, seed, n_insns)):
        raise FuzzError(f"the program of seed {seed} ({n_insns} instructions) does not fail: "
                        f"nothing to shrink")
    lo, hi = 1, n_insns                  # fails(prefix hi) holds; find the smallest such prefix
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(program_for_seed(cfg, seed, mid)):
            hi = mid
        else:
            lo = mid + 1
    prog = program_for_seed(cfg, seed, hi)
    i = 0
    while i < prog.insn_count:
        words = prog.words[:i] + prog.words[i + 1:]
        candidate = replace_words(cfg, prog, words)
        try:
            valid = not check_program(cfg, candidate)
        except FuzzError:
            valid = False
        if valid and fails(candidate):
            prog = candidate
        else:
            i += 1
    return prog


def replace_words(cfg, program: Program, words: list[int]) -> Program:
    """`program` with other instruction words: the same regions and data, packed again by the
    builder (the regions land at the same addresses)."""
    b = _Builder(cfg)
    for r in program.regions.values():
        new = b.alloc(r.name, r.shape, r.dtype, row_stride=r.row_stride, data=r.read(program.image))
        assert new.addr == r.addr, (new, r)
    isa = isa_for(cfg)
    for word in words:
        insn = isa.decode(word)
        b.emit(insn.op, **insn.values)
    return b.finish(program.outputs, dict(program.meta))
