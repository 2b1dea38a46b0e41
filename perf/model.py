"""The performance model: predicts the RTL's cycle count from a program and a config in
milliseconds (`systolab run --sim model`).

It replays the program the way the hardware runs it: the fetch unit dispatching in order into
three bounded queues, the load, compute and store units each executing in order, the dependency
tokens between them, one shared memory port that accepts one request per cycle and answers reads
`memory.latency` cycles later, and the compute unit's overlap of a PRELOAD with the previous
MATMUL. A VECTOR (vector unit) waits until the array pipeline has drained and the preload engine
is idle, and the compute queue's next instruction waits for its last write
(`hw.timing.vector_cycles`).

The units are replayed in time order, the way the RTL's arbiter sees them: each step
dispatches, of the three queues' head instructions that can go, the one that goes first, and
its requests take the port's slots round robin with the bursts already on it (`_Port.steal`):
a burst that a later requester shares ends later, and since nothing placed so far has used its
end (everything waiting for it dispatches later), its tokens, its unit's next dispatch and the
cycle count move with it. So a STORE's writes share the port with exactly the LOADs that run
beside them, whatever their order in the program, and back-to-back STOREs write one after the
other. A valid program only pops tokens pushed by earlier instructions; one that waits for a
token never given is reported as a deadlock.

The fixed pipeline delays of the RTL are in `Timing`, the one place they are written down; they
are checked against the RTL's own cycle counter by `tests/test_rtl_gemm.py` (every RTL case within
5 %), and the model's rules against hand-computed programs by `tests/test_perf_model.py`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from systolab.hw.timing import (REQUANT_LATENCY, STORE_FIFO_ROWS, compute_pipeline_depth, preload_read_cycles, read_requests, vector_acc_reads,
                                vector_cycles, vector_last_read, vector_row_cycles,
                                wbuf_reuse_delay)
from systolab.isa import ENUMS, QUEUES, isa_for

__all__ = ["Timing", "PerfModel", "predict", "predict_cycles"]

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
    """The shared memory port: one request per cycle. `reserve` takes free slots; `steal` is
    the round-robin arbiter's view, a requester served inside the bursts already placed.

    Taken cycles are kept as sorted, disjoint half-open intervals `[starts[i], ends[i])`.
    """

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.stolen: list[tuple[int, int]] = []     # see `steal`

    def reserve_every(self, earliest: int, n: int, every: int) -> tuple[int, int]:
        """Take `n` free slots at least `every` cycles apart, from `earliest` (a requester that
        asks once every `every` cycles). Returns (first, last)."""
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

    def steal(self, t: int, n: int, every: int = 1) -> tuple[int, int]:
        """Take `n` request slots from `t`, at least `every` cycles apart, for a requester that
        the round-robin arbiter serves while a burst placed earlier holds the port: a free slot
        is taken as it is; a taken one is given to this requester and the burst's last request
        moves one slot later (the run holding `t` grows by one at its end), so slots taken from a
        burst alternate with it (one in two). Each slot taken from a run is noted in `stolen` as
        (slot, the run's end before). Returns the last slot and the first this requester may ask
        for next."""
        starts, ends = self.starts, self.ends
        last = t
        while n:
            if not ends or t >= ends[-1]:             # after every taken slot: the rest at once
                last = self.reserve_every(t, n, every)[1]
                return last, last + every
            i = bisect.bisect_right(ends, t)           # the first run ending after t
            s = starts[i]
            if s > t:                                  # a free gap from t: as much of it as needed
                k = -(-(s - t) // every)
                if k > n:
                    k = n
                last = self.reserve_every(t, k, every)[1]
                t = last + every
                n -= k
            elif ends[i] == t + 1:                     # the run's last slot: the next one is free
                t += 1
            else:                                      # taken: the run gives up t, grows by one
                e = ends[i]
                self.stolen.append((t, e))
                ends[i] = e + 1
                if i + 1 < len(starts) and starts[i + 1] == e + 1:
                    ends[i] = ends[i + 1]
                    del starts[i + 1], ends[i + 1]
                last = t
                t += 2 if every < 2 else every
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
        With `record` (a list), appends `(queue, index, op, start, end)` per instruction, in
        program order: its index in the program, the cycle its unit dispatched it and the cycle
        its results were written (when its `push_next` token is given). Off by default (the
        sweeps' hot path).

        The units are replayed in time order: each step dispatches, of the instructions at the
        heads of the three queues that can go, the one that goes first. A burst on the memory
        port that a later one shares (`_Port.steal`) therefore ends later while nothing has yet
        used its end: its tokens, its unit's next dispatch and the cycle count move with it.
        """
        cfg, t = self.cfg, self.t
        depth = cfg.queues.depth
        port = _Port()
        insns = list(insns)
        count = len(insns)
        queue_of = {name: fmt.queue for name, fmt in self.isa.formats.items()}
        nq = len(QUEUES)
        qix = {q: i for i, q in enumerate(QUEUES)}
        qof = [qix[queue_of[op]] for op, _ in insns]
        # token links, numbered: link a * nq + b carries tokens from queue a to queue b. Queue i
        # pops from its previous and next neighbours and pushes to them
        prev_q = [(i - 1) % nq for i in range(nq)]
        next_q = [(i + 1) % nq for i in range(nq)]
        pop_prev = [prev_q[i] * nq + i for i in range(nq)]
        pop_next = [next_q[i] * nq + i for i in range(nq)]
        push_prev = [i * nq + prev_q[i] for i in range(nq)]
        push_next = [i * nq + next_q[i] for i in range(nq)]
        pushes = [[] for _ in range(nq * nq)]
        popped = [0] * (nq * nq)
        fetched = [[] for _ in range(nq)]         # (index, arrival) of each fetched instruction
        disp = [[] for _ in range(nq)]            # dispatch cycle of each dispatched one
        free = [0] * nq                           # earliest dispatch of the unit's next instruction
        last_push = [0] * nq                      # pushes leave a queue in program order
        busy = [0] * nq
        vector_busy = 0
        wbuf_ready = [0, 0]                       # a MATMUL using the buffer may dispatch
        wbuf_free = [0, 0]                        # a PRELOAD into the buffer may dispatch
        stream_free = 0                           # the MATMUL engine can take the next MATMUL
        preload_free = 0                          # the preload engine can take the next PRELOAD
        drained = 0                               # the array pipeline's last write (a VECTOR may go)
        end = 0
        written = 0                               # the last STORE write so far (a STAMP waits for it)
        stamps = []
        rec = [None] * count if record is not None else None
        array_rows = 0
        fetch_t = t.fetch_first
        dispatched = 0
        nf = 0                                    # the next instruction to fetch
        # each queue's head, as the next dispatch it could make: (cycle, index) or None (not
        # fetched yet, or waiting for a token not given yet); recomputed when `stale`
        cand = [None] * nq
        stale = [True] * nq
        # bursts on the port whose end may still move: [last slot, op, queue, index, push refs,
        # floor (LOAD: one row per cycle) or stamp number (STAMP)]
        active = []
        steal, stolen = port.steal, port.stolen
        pstarts, pends = port.starts, port.ends
        insn_beats, to_dispatch = t.insn_beats, t.latency + t.dispatch
        latency, token, sp_beats, load_write = t.latency, t.token, t.sp_beats, t.load_write
        sp_row_bytes, bus_bytes = cfg.sp_row_bytes, cfg.memory.bus_bytes
        has_vector = cfg.has_vector
        # the store unit's next STORE waits for its last accumulator read, which waits for
        # credits: at most F - 1 rows between the accumulator and the accepted writes
        throttle = (STORE_FIFO_ROWS - 1) * t.out_beats - 1

        def shift():
            """Move the active bursts behind the stolen slots one slot later per slot."""
            nonlocal end, written
            for b in active:
                last = b[0]
                k = 0
                for slot, run_end in stolen:
                    if slot <= last < run_end:
                        k += 1
                        last += 1
                if not k:
                    continue
                b[0] = last
                op, q = b[1], b[2]
                if op == "LOAD":
                    done = (last if last > b[5] else b[5]) + latency + load_write
                    if last + 1 > free[q]:
                        free[q] = last + 1
                elif op == "STORE":
                    done = last
                    if done > written:
                        written = done
                    if done - throttle > free[q]:
                        free[q] = done - throttle
                else:  # STAMP
                    done = last
                    stamps[b[5]] = (stamps[b[5]][0], done)
                    if done + 1 > free[q]:
                        free[q] = done + 1
                busy[q] += k
                if done > last_push[q]:
                    last_push[q] = done
                for link, j in b[4]:
                    if pushes[link][j] < done + token:
                        pushes[link][j] = done + token
                if rec is not None:
                    r = rec[b[3]]
                    rec[b[3]] = (r[0], r[1], r[2], r[3], done)
                if done > end:
                    end = done
            stolen.clear()
            stale[:] = [True] * nq

        while True:
            # fetch, in program order, as far as the queues have room
            while nf < count:
                qi = qof[nf]
                fq = fetched[qi]
                k = len(fq)
                if k >= depth:
                    dq = disp[qi]
                    if len(dq) <= k - depth:
                        break                     # the queue is full until that one is dispatched
                    head = dq[k - depth] + 1
                last, fetch_t = steal(fetch_t, insn_beats)
                ready = last + to_dispatch
                # a full queue holds fetch (and everything behind it) until its head is dispatched
                if k >= depth:
                    if head > ready:
                        ready = head
                    if head - latency > fetch_t:
                        fetch_t = head - latency
                if ready > dispatched:
                    dispatched = ready
                if len(disp[qi]) == k:
                    stale[qi] = True              # the queue was empty: a new head
                fq.append((nf, dispatched))
                nf += 1
            stolen.clear()                        # a fetch's slots do not move the bursts
            # the next dispatch: the head that can go first (program order among equals)
            best = None
            for qi in range(nq):
                if stale[qi]:
                    stale[qi] = False
                    fq = fetched[qi]
                    h = len(disp[qi])
                    if h == len(fq):
                        cand[qi] = None
                        continue
                    n, d = fq[h]
                    op, f = insns[n]
                    if free[qi] > d:
                        d = free[qi]
                    if op == "PRELOAD":
                        d = max(d, preload_free, wbuf_free[f["wbuf"]])
                    elif op == "MATMUL":
                        d = max(d, stream_free, wbuf_ready[f["wbuf"]])
                    elif op == "SYNC":
                        d = max(d, stream_free, preload_free)
                    elif op == "VECTOR":
                        d = max(d, stream_free, drained, preload_free)
                    elif op == "STAMP" and written + 1 > d:
                        d = written + 1
                    if "pop_prev" in f and f["pop_prev"]:
                        pl = pushes[pop_prev[qi]]
                        k = popped[pop_prev[qi]]
                        if len(pl) <= k:
                            cand[qi] = None       # its token is not given yet
                            continue
                        if pl[k] > d:
                            d = pl[k]
                    if "pop_next" in f and f["pop_next"]:
                        pl = pushes[pop_next[qi]]
                        k = popped[pop_next[qi]]
                        if len(pl) <= k:
                            cand[qi] = None
                            continue
                        if pl[k] > d:
                            d = pl[k]
                    cand[qi] = (d, n)
                c = cand[qi]
                if c is not None and (best is None or c < best):
                    best = c
                    q = qi
            if best is None:
                if nf == count and all(len(disp[i]) == len(fetched[i]) for i in range(nq)):
                    break
                raise ValueError(f"the program deadlocks at instruction {nf}: a unit waits for a "
                                 "token that no instruction before it gives")
            d, n = best
            op, f = insns[n]
            stale[q] = True
            if "pop_prev" in f and f["pop_prev"]:
                popped[pop_prev[q]] += 1
            if "pop_next" in f and f["pop_next"]:
                popped[pop_next[q]] += 1
            burst = None
            # execute: `read_done` / `done` are when push_prev / push_next tokens are given
            if op == "LOAD":
                rows = f["rows"]
                first = d + 1
                nreq = read_requests(f["dram_addr"], f["dram_stride"], rows, sp_row_bytes, bus_bytes)
                # the request side moves one row per cycle: rows that share a word pace its reads
                last, _ = steal(first, nreq, rows // nreq if nreq and rows > nreq else 1)
                floor = d + rows * sp_beats               # one row (or word) per cycle
                burst = [last, op, q, n, [], floor]
                free[q] = last + 1
                if floor > last:
                    last = floor
                done = read_done = last + latency + load_write
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
                    vector_busy += done - d
            elif op == "STORE":
                plast, _ = steal(d + 1, 4 * t.acc_beats)
                first = plast + latency + t.store_first
                if first <= written:
                    first = written + 1
                last, _ = steal(first, f["rows"] * t.out_beats)
                burst = [last, op, q, n, [], 0]
                read_done = done = last
                if last > written:
                    written = last
                free[q] = max(plast + latency + f["rows"] + t.store_next, last - throttle)
                busy[q] += done - d
            elif op == "STAMP":
                # waits for the store pipeline to empty, then one write of the cycle counter
                done, _ = steal(d, 1)
                read_done = done
                free[q] = done + 1
                burst = [done, op, q, n, [], len(stamps)]
                stamps.append((f["dram_addr"], done))
            else:  # SYNC
                done = read_done = d
                free[q] = d + 1
            disp[q].append(d)
            if rec is not None:
                rec[n] = (QUEUES[q], n, op, d, done)
            if "push_prev" in f and f["push_prev"]:
                if read_done > last_push[q]:
                    last_push[q] = read_done
                link = push_prev[q]
                pushes[link].append(last_push[q] + token)
                stale[prev_q[q]] = True
                if burst is not None:
                    burst[4].append((link, len(pushes[link]) - 1))
            if "push_next" in f and f["push_next"]:
                if done > last_push[q]:
                    last_push[q] = done
                link = push_next[q]
                pushes[link].append(last_push[q] + token)
                stale[next_q[q]] = True
                if burst is not None:
                    burst[4].append((link, len(pushes[link]) - 1))
            if done > end:
                end = done
            if stolen:                            # the slots this instruction took move the others
                if active:
                    shift()
                stolen.clear()
            if burst is not None:
                if len(active) > 3:
                    active = [b for b in active if b[0] >= d]
                active.append(burst)
            if len(pends) > 4096:                 # slots before any request still to come: dropped
                k = bisect.bisect_right(pends, fetch_t if fetch_t < d else d)
                if k > 2048:
                    del pstarts[:k], pends[:k]
            if bound is not None and end + t.finish > bound:     # `end` only grows
                return None
        if record is not None:
            record.extend(rec)
        busy = dict(zip(QUEUES, busy))
        if cfg.has_vector:
            busy["vector"] = vector_busy
        return Prediction(end + t.finish, busy, array_rows, stamps)


def predict(config, program) -> Prediction:
    return PerfModel(config).predict(program)


def predict_cycles(config, program) -> int:
    return predict(config, program).cycles
