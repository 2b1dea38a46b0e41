"""The performance model: predicts the RTL's cycle count from a program and a config in
milliseconds (`systolab run --sim model`).

It replays the program the way the hardware runs it: the fetch unit dispatching in order into
three bounded queues, the load, compute and store units each executing in order, the dependency
tokens between them, one shared memory port that accepts one request per cycle and answers reads
`memory.latency` cycles later (its arbiter is round robin: a STORE with LOADs after it writes
in every other request slot, leaving the rest to them, and an instruction fetch is served
between the requests of a LOAD placed before it), and the compute unit's overlap of a
PRELOAD with the previous MATMUL. A VECTOR (vector unit) waits until the array pipeline has drained and the preload engine
is idle, and the compute queue's next instruction waits for its last write
(`hw.timing.vector_cycles`). Every instruction is placed once, in program order: a valid program only pops tokens
pushed by earlier instructions, so everything an instruction waits for is already placed.

The fixed pipeline delays of the RTL are in `Timing`, the one place they are written down; they
are checked against the RTL's own cycle counter by `tests/test_rtl_gemm.py` (every RTL case within
5 %), and the model's rules against hand-computed programs by `tests/test_perf_model.py`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from systolab.hw.timing import (REQUANT_LATENCY, compute_pipeline_depth, preload_read_cycles, read_requests, vector_acc_reads,
                                vector_cycles, vector_last_read, vector_row_cycles,
                                wbuf_reuse_delay)
from systolab.isa import ENUMS, QUEUES, isa_for

__all__ = ["Timing", "PerfModel", "predict", "predict_cycles"]

#: a STORE's writes take one memory request slot in this many when LOADs follow it in the
#: program (see `_Port.reserve_every`; the last STOREs of a program write back to back)
STORE_WRITE_EVERY = 2


@dataclass(frozen=True)
class Timing:
    """Cycle delays of the RTL: the array and compute pipeline and the weight-buffer interlock
    from `hw.timing` (what the RTL is built from), the others from the timing notes in the
    docstrings of `hw/fetch.py`, `hw/load.py`, `hw/compute.py` and `hw/store.py`. An instruction's times are relative to `d`,
    the cycle its unit dispatches it (takes it from its queue, popping its tokens).

    `store_first`, `store_next` and `finish` are fitted to the RTL's cycle counter over the cases of
    `tests/test_rtl_gemm.py` (the STORE pipeline's hand-over between consecutive STOREs is not
    modelled cycle by cycle); the others are the documented delays."""

    latency: int              # memory: read requested at t -> data at t + latency
    fetch_first: int          # start -> first instruction read requested
    dispatch: int             # instruction word returned -> its unit can dispatch it
    load_write: int           # LOAD: last row's read request -> last row written
    preload: int              # PRELOAD: d -> a MATMUL may dispatch (last weight column read)
    array: int                # MATMUL: last row issued -> last accumulator row written
    wbuf_hold: int            # a PRELOAD into buffer b waits until last row using b issued + this
    store_first: int          # STORE: last parameter word requested -> first output write offered
    store_next: int           # STORE: last parameter word requested + rows -> next STORE dispatch
    token: int                # a token pushed at t can be popped at t + token
    finish: int               # last write / last unit done -> cycles counted
    vector_lanes: int         # VECTOR: lanes per beat (0: no vector unit)
    sp_beats: int             # memory words per scratchpad row
    acc_beats: int            # memory words per parameter row (int32 x cols)
    out_beats: int            # memory words per stored row (int8 x cols)
    insn_beats: int           # memory words per instruction

    @classmethod
    def for_config(cls, cfg) -> "Timing":
        bus = cfg.memory.bus_bytes
        beats = lambda n: max(1, math.ceil(n / bus))  # noqa: E731
        return cls(latency=cfg.memory.latency, fetch_first=2, dispatch=2, load_write=2,
                   preload=preload_read_cycles(cfg.cols),
                   array=compute_pipeline_depth(cfg.rows, cfg.cols),
                   wbuf_hold=wbuf_reuse_delay(cfg.rows),
                   store_first=5 + REQUANT_LATENCY, store_next=2, token=1, finish=2,
                   vector_lanes=cfg.vector.lanes if cfg.has_vector else 0,
                   sp_beats=beats(cfg.sp_row_bytes), acc_beats=beats(cfg.acc_row_bytes),
                   out_beats=beats(cfg.out_row_bytes), insn_beats=beats(cfg.insn_bytes))


class _Port:
    """The shared memory port: one request per cycle, slots taken first come first served.

    Taken cycles are kept as sorted, disjoint half-open intervals `[starts[i], ends[i])`.
    """

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []

    def reserve_every(self, earliest: int, n: int, every: int) -> tuple[int, int]:
        """Take `n` free slots at least `every` cycles apart, from `earliest`: a requester that
        shares the round-robin arbiter with another one streaming at the same time gets one
        slot in `every`. Returns (first, last)."""
        if every == 1:
            return self.reserve(earliest, n)
        # each slot is the first free one `every` after the last: within a free gap they are
        # t, t + every, ..., inserted with one slice assignment (merged with a neighbour they touch)
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(ends, earliest)
        t, first, last = earliest, None, None
        while n:
            while i > 0 and ends[i - 1] > t:           # `i`: the first interval ending after t
                i -= 1
            while i < len(ends) and ends[i] <= t:
                i += 1
            if i < len(starts) and starts[i] <= t:     # t is taken
                t = ends[i]
                i += 1
                continue
            k = n if i == len(starts) else min(n, -(-(starts[i] - t) // every))
            slots = range(t, t + k * every, every)
            first = t if first is None else first
            last = slots[-1]
            if i > 0 and ends[i - 1] == t:
                ends[i - 1] = t + 1
                slots = slots[1:]
            if i < len(starts) and starts[i] == last + 1:
                if slots:
                    starts[i] = last
                    slots = slots[:-1]
                else:                                   # the one slot joins two intervals
                    ends[i - 1] = ends[i]
                    del starts[i], ends[i]
            if slots:
                starts[i:i] = slots
                ends[i:i] = range(slots[0] + 1, slots[-1] + 2, every)
                i += len(slots)
            n -= k
            t = last + every
        return first, last

    def steal(self, t: int, n: int) -> tuple[int, int]:
        """Take `n` request slots from `t` for a requester that the round-robin arbiter serves
        while a burst placed earlier holds the port: a free slot is taken as it is; a taken one is
        given to this requester and the burst's last request moves one slot later (the run holding
        `t` grows by one at its end). Slots taken from a burst alternate with it (one in two).
        Returns the last slot and the first this requester may ask for next."""
        starts, ends = self.starts, self.ends
        last = t
        while n:
            if not ends or t >= ends[-1]:             # after every taken slot: the rest at once
                last = self.reserve(t, n)[1]
                return last, last + 1
            i = bisect.bisect_right(ends, t)           # the first run ending after t
            if starts[i] > t:                          # t is free
                last = self.reserve(t, 1)[1]
                t += 1
            else:                                      # taken: the run gives up t, grows by one
                ends[i] += 1
                if i + 1 < len(starts) and starts[i + 1] == ends[i]:
                    ends[i] = ends[i + 1]
                    del starts[i + 1], ends[i + 1]
                last, t = t, t + 2
            n -= 1
        return last, t

    def reserve(self, earliest: int, n: int) -> tuple[int, int]:
        """Take the first `n` free request slots at or after `earliest`; returns (first, last)."""
        starts, ends = self.starts, self.ends
        if not ends or earliest >= ends[-1]:         # after every taken slot
            if ends and ends[-1] == earliest:
                ends[-1] += n
            else:
                starts.append(earliest)
                ends.append(earliest + n)
            return earliest, earliest + n - 1
        # the slots taken are the first n free ones from `earliest`: from the first of them to
        # the last every slot is then taken, so the intervals passed on the way and the new
        # slots become one interval (one slice assignment, however many holes were filled)
        i = bisect.bisect_right(ends, earliest)      # first interval ending after `earliest`
        j, t, first, count = i, earliest, None, len(starts)
        while n:
            if j == count:
                if first is None:
                    first = t
                t += n
                break
            s = starts[j]
            if s <= t:
                t = ends[j]
                j += 1
                continue
            take = s - t
            if take > n:
                take = n
            if first is None:
                first = t
            t += take
            n -= take
        lo = first if i == j else min(first, starts[i])
        if i > 0 and ends[i - 1] == lo:
            i -= 1
            lo = starts[i]
        hi = t
        if j < count and starts[j] == hi:
            hi = ends[j]
            j += 1
        starts[i:j] = (lo,)
        ends[i:j] = (hi,)
        return first, t - 1


@dataclass
class Prediction:
    cycles: int
    busy: dict[str, int]           # cycles each unit spent executing ("vector" with a vector unit)
    array_busy: int                # rows streamed (MAC-active cycles)
    #: (dram_addr, cycle) of each STAMP, in program order: the cycle counter it writes
    stamps: list[tuple[int, int]] = field(default_factory=list)


class PerfModel:
    def __init__(self, config):
        self.cfg = config
        self.isa = isa_for(config)
        self.t = Timing.for_config(config)
        self._vector_funcs = {code: name for name, code in ENUMS["vector_ops"].items()}

    def vector_row_cycles(self, f) -> int:
        """`hw.timing.vector_row_cycles` of one VECTOR's fields."""
        func = self._vector_funcs.get(f.get("func", 0), "")
        reads = vector_acc_reads(func, src1_sp=f.get("src1_sp", 0), src2_sp=f.get("src2_sp", 0),
                                 src2_imm=f.get("src2_imm", 0), accumulate=f.get("accumulate", 0))
        return vector_row_cycles(self.cfg.cols, self.t.vector_lanes, func, reads)

    def predict(self, program, *, record: list | None = None) -> Prediction:
        """Predict a `Program` (its encoded words)."""
        return self.predict_insns(((i.op, i.values) for i in map(self.isa.decode, program.words)),
                                  record=record)

    def predict_insns(self, insns, *, bound: int | None = None,
                      record: list | None = None) -> Prediction | None:
        """Predict a sequence of `(op, fields)` pairs (fields: a dict; missing token flags are 0).

        With `bound`, gives up and returns None as soon as the run is sure to take longer than
        `bound` cycles (`Prediction.cycles > bound`).
        With `record` (a list), appends `(queue, index, op, start, end)` per instruction: its
        index in the program, the cycle its unit dispatched it and the cycle its results were
        written (when its `push_next` token is given). Off by default (the sweeps' hot path).
        """
        cfg, t = self.cfg, self.t
        depth = cfg.queues.depth
        port = _Port()
        pushes = {(a, b): [] for a in QUEUES for b in QUEUES if a != b}
        popped = {k: 0 for k in pushes}
        starts = {q: [] for q in QUEUES}          # dispatch cycle of each instruction per queue
        free = {q: 0 for q in QUEUES}             # earliest dispatch of the unit's next instruction
        last_push = {q: 0 for q in QUEUES}        # pushes leave a queue in program order
        busy = {q: 0 for q in QUEUES}
        if cfg.has_vector:
            busy["vector"] = 0
        wbuf_ready = [0, 0]                       # a MATMUL using the buffer may dispatch
        wbuf_free = [0, 0]                        # a PRELOAD into the buffer may dispatch
        stream_free = 0                           # the MATMUL engine can take the next MATMUL
        preload_free = 0                          # the preload engine can take the next PRELOAD
        drained = 0                               # the array pipeline's last write (a VECTOR may go)
        end = 0
        written = 0                               # the last STORE write so far (a STAMP waits for it)
        stamps = []
        array_rows = 0
        fetch_t = t.fetch_first
        dispatched = 0

        queue_of = {name: fmt.queue for name, fmt in self.isa.formats.items()}
        # the token links of each queue: from its neighbours (pops) and to them (pushes)
        nb = {q: (QUEUES[i - 1], QUEUES[(i + 1) % len(QUEUES)]) for i, q in enumerate(QUEUES)}
        prev_link = {q: (p, q) for q, (p, _) in nb.items()}
        next_link = {q: (n, q) for q, (_, n) in nb.items()}
        to_prev = {q: (q, p) for q, (p, _) in nb.items()}
        to_next = {q: (q, n) for q, (_, n) in nb.items()}
        insns = list(insns)
        last_load = max((n for n, (op, _) in enumerate(insns) if op == "LOAD"), default=-1)
        # the loop below is the sweeps' hot path: constants and methods in locals, comparisons
        # instead of max()
        reserve, reserve_every, steal = port.reserve, port.reserve_every, port.steal
        insn_beats, to_dispatch = t.insn_beats, t.latency + t.dispatch
        latency, token, sp_beats = t.latency, t.token, t.sp_beats
        sp_row_bytes, bus_bytes = cfg.sp_row_bytes, cfg.memory.bus_bytes
        has_vector = cfg.has_vector
        for n, (op, f) in enumerate(insns):
            q = queue_of[op]
            # fetch: reads back to back, served by the round-robin arbiter during the bursts of
            # instructions placed before it (`_Port.steal`); the instruction reaches its unit
            # `dispatch` after its data
            last, fetch_t = steal(fetch_t, insn_beats)
            ready = last + to_dispatch
            # a full queue holds fetch (and everything behind it) until its head is dispatched
            sq = starts[q]
            if len(sq) >= depth:
                head = sq[-depth] + 1
                if head > ready:
                    ready = head
                if head - latency > fetch_t:
                    fetch_t = head - latency
            if ready > dispatched:
                dispatched = ready
            d = free[q]
            if dispatched > d:
                d = dispatched
            if op == "PRELOAD":
                d = max(d, preload_free, wbuf_free[f["wbuf"]])
            elif op == "MATMUL":
                d = max(d, stream_free, wbuf_ready[f["wbuf"]])
            elif op == "SYNC":
                d = max(d, stream_free, preload_free)
            elif op == "VECTOR":
                d = max(d, stream_free, drained, preload_free)
            if "pop_prev" in f and f["pop_prev"]:
                link = prev_link[q]
                v = pushes[link][popped[link]]
                if v > d:
                    d = v
                popped[link] += 1
            if "pop_next" in f and f["pop_next"]:
                link = next_link[q]
                v = pushes[link][popped[link]]
                if v > d:
                    d = v
                popped[link] += 1
            # execute: `read_done` / `done` are when push_prev / push_next tokens are given
            if op == "LOAD":
                rows = f["rows"]
                _, last = reserve(d + 1, read_requests(f["dram_addr"], f["dram_stride"], rows,
                                                       sp_row_bytes, bus_bytes))
                if d + rows * sp_beats > last:               # one row (or word) per cycle
                    last = d + rows * sp_beats
                done = read_done = last + latency + t.load_write
                free[q] = last + 1
                busy[q] += done - d
            elif op == "PRELOAD":
                wbuf_ready[f["wbuf"]] = d + t.preload
                preload_free = d + t.preload + 1
                done = read_done = d + t.preload
                free[q] = d + 1
                busy[q] += t.preload
            elif op == "MATMUL":
                rows = f["rows"]
                stream_free = d + rows
                read_done = stream_free
                done = stream_free + t.array
                wbuf_free[f["wbuf"]] = stream_free + t.wbuf_hold
                free[q] = d + 1           # the next PRELOAD may dispatch while this streams
                busy[q] += rows
                array_rows += rows
                drained = done
            elif op == "VECTOR":
                if not has_vector:                   # the hardware drops it
                    done = read_done = d
                    free[q] = d + 1
                else:
                    rc = self.vector_row_cycles(f)
                    done = d + vector_cycles(f["rows"], rc)
                    read_done = d + vector_last_read(f["rows"], rc)
                    free[q] = done                        # the next compute instruction may go then
                    busy[q] += done - d
                    busy["vector"] += done - d
            elif op == "STORE":
                _, plast = reserve(d + 1, 4 * t.acc_beats)
                # the writes share the port with the LOADs after this STORE in the program, which
                # run meanwhile (round robin): placed before them, they leave every other slot
                first_write = plast + latency + t.store_first
                _, last = reserve_every(first_write, f["rows"] * t.out_beats,
                                        STORE_WRITE_EVERY if n < last_load else 1)
                read_done = done = last
                if last > written:
                    written = last
                free[q] = plast + latency + f["rows"] + t.store_next
                busy[q] += done - d
            elif op == "STAMP":
                # waits for the store pipeline to empty, then one write of the cycle counter
                d = max(d, written + 1)
                done = read_done = reserve(d, 1)[0]
                free[q] = done + 1
                stamps.append((f["dram_addr"], done))
            else:  # SYNC
                done = read_done = d
                free[q] = d + 1
            sq.append(d)
            if record is not None:
                record.append((q, n, op, d, done))
            if "push_prev" in f and f["push_prev"]:
                if read_done > last_push[q]:
                    last_push[q] = read_done
                pushes[to_prev[q]].append(last_push[q] + token)
            if "push_next" in f and f["push_next"]:
                if done > last_push[q]:
                    last_push[q] = done
                pushes[to_next[q]].append(last_push[q] + token)
            if done > end:
                end = done
                if bound is not None and end + t.finish > bound:     # `end` only grows
                    return None
        return Prediction(end + t.finish, busy, array_rows, stamps)


def predict(config, program) -> Prediction:
    return PerfModel(config).predict(program)


def predict_cycles(config, program) -> int:
    return predict(config, program).cycles
