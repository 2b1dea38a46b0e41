"""The performance model: predicts the RTL's cycle count from a program and a config in
milliseconds (`systolab run --sim model`).

It replays the program the way the hardware runs it: the fetch unit dispatching in order into
three bounded queues, the load, compute and store units each executing in order, the dependency
tokens between them, one shared memory port that accepts one request per cycle and answers reads
`memory.latency` cycles later, and the compute unit's overlap of a PRELOAD with the previous
MATMUL. Every instruction is placed once, in program order: a valid program only pops tokens
pushed by earlier instructions, so everything an instruction waits for is already placed.

The fixed pipeline delays of the RTL are in `Timing`, the one place they are written down; they
are checked against the RTL's own cycle counter by `tests/test_perf_model.py`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from systolab.isa import QUEUES, isa_for

__all__ = ["Timing", "PerfModel", "predict", "predict_cycles"]


@dataclass(frozen=True)
class Timing:
    """Cycle delays of the RTL (see docs/architecture.md), derived from the config."""

    latency: int              # memory read latency
    array: int                # MATMUL: last row in -> last accumulator row written
    preload: int              # PRELOAD: start -> weights usable
    load_done: int            # LOAD: last response -> last scratchpad row written (token pushed)
    store_param: int          # STORE: extra cycles between the parameter rows and the first row
    store_done: int           # STORE: last write request -> done
    dispatch: int             # fetch response -> instruction can start in its unit
    start: int                # start pulse -> first fetch request
    finish: int               # last unit done -> `done`
    sp_beats: int             # memory words per scratchpad row
    acc_beats: int            # memory words per parameter row (int32 x cols)
    out_beats: int            # memory words per stored row (int8 x cols)
    insn_beats: int           # memory words per instruction

    @classmethod
    def for_config(cls, cfg) -> "Timing":
        bus = cfg.memory.bus_bytes
        beats = lambda n: max(1, math.ceil(n / bus))  # noqa: E731
        return cls(latency=cfg.memory.latency, array=cfg.rows + cfg.cols + 3, preload=cfg.cols + 1,
                   load_done=2, store_param=2, store_done=2, dispatch=2, start=1, finish=2,
                   sp_beats=beats(cfg.sp_row_bytes), acc_beats=beats(cfg.acc_row_bytes),
                   out_beats=beats(cfg.out_row_bytes), insn_beats=beats(cfg.insn_bytes))


class _Port:
    """The shared memory port: one request per cycle, slots taken first come first served.

    Taken cycles are kept as sorted, disjoint half-open intervals `[starts[i], ends[i])`.
    """

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []

    def reserve(self, earliest: int, n: int) -> tuple[int, int]:
        """Take the first `n` free request slots at or after `earliest`; returns (first, last)."""
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(ends, earliest)      # first interval ending after `earliest`
        t = earliest
        first = None
        while n:
            if i < len(starts) and starts[i] <= t:
                t = ends[i]
                i += 1
                continue
            gap_end = starts[i] if i < len(starts) else t + n
            take = min(n, gap_end - t)
            first = t if first is None else first
            # insert [t, t+take) and merge with neighbours
            if i > 0 and ends[i - 1] == t:
                ends[i - 1] = t + take
                if i < len(starts) and starts[i] == ends[i - 1]:
                    ends[i - 1] = ends[i]
                    del starts[i], ends[i]
                i -= 1
            elif i < len(starts) and starts[i] == t + take:
                starts[i] = t
            else:
                starts.insert(i, t)
                ends.insert(i, t + take)
            t += take
            n -= take
        return first, t - 1


@dataclass
class Prediction:
    cycles: int
    busy: dict[str, int]           # cycles each unit spent executing
    array_busy: int                # rows streamed (MAC-active cycles)


class PerfModel:
    def __init__(self, config):
        self.cfg = config
        self.isa = isa_for(config)
        self.t = Timing.for_config(config)

    def predict(self, program) -> Prediction:
        """Predict a `Program` (its encoded words)."""
        return self.predict_insns((i.op, i.values) for i in map(self.isa.decode, program.words))

    def predict_insns(self, insns, *, bound: int | None = None) -> Prediction | None:
        """Predict a sequence of `(op, fields)` pairs (fields: a dict; missing token flags are 0).

        With `bound`, gives up and returns None as soon as the run is sure to take longer.
        """
        cfg, t = self.cfg, self.t
        depth = cfg.queues.depth
        port = _Port()
        pushes = {(a, b): [] for a in QUEUES for b in QUEUES if a != b}
        popped = {k: 0 for k in pushes}
        starts = {q: [] for q in QUEUES}          # start cycle of each instruction per queue
        free = {q: 0 for q in QUEUES}             # when the unit can start its next instruction
        last_push = {q: 0 for q in QUEUES}        # pushes leave a queue in program order
        busy = {q: 0 for q in QUEUES}
        wbuf_ready = [0, 0]                       # PRELOAD done per weight buffer
        wbuf_free = [0, 0]                        # last row using the buffer left the array
        stream_free = 0
        end = 0
        array_rows = 0
        fetch_t = t.start
        dispatched = 0

        queue_of = {name: (fmt.queue, QUEUES.index(fmt.queue)) for name, fmt in self.isa.formats.items()}
        for op, f in insns:
            q, qi = queue_of[op]
            # fetch: requests back to back, the instruction is usable `dispatch` after its data
            _, last = port.reserve(fetch_t, t.insn_beats)
            fetch_t = last + 1
            ready = last + t.latency + t.dispatch
            # a full queue holds fetch (and everything behind it) until its head starts
            if len(starts[q]) >= depth:
                ready = max(ready, starts[q][-depth] + 1)
                fetch_t = max(fetch_t, starts[q][-depth] + 1 - t.latency)
            dispatched = max(dispatched, ready)
            s = max(dispatched, free[q])
            # tokens
            for flag, other in (("pop_prev", qi - 1), ("pop_next", qi + 1)):
                if f.get(flag):
                    link = (QUEUES[other], q)
                    s = max(s, pushes[link][popped[link]])
                    popped[link] += 1
            # execute
            if op == "LOAD":
                first, last = port.reserve(s, f["rows"] * t.sp_beats)
                done = last + t.latency + t.load_done
                read_done = done
                free[q] = last + 1
            elif op == "PRELOAD":
                s = max(s, wbuf_free[f["wbuf"]])
                done = s + t.preload
                wbuf_ready[f["wbuf"]] = done
                read_done = done
                free[q] = s + 1
            elif op == "MATMUL":
                s = max(s, stream_free, wbuf_ready[f["wbuf"]])
                stream_free = s + f["rows"]
                read_done = stream_free
                done = stream_free + t.array
                wbuf_free[f["wbuf"]] = done
                free[q] = s + 1           # the next PRELOAD may start while this streams
                array_rows += f["rows"]
            elif op == "STORE":
                _, plast = port.reserve(s, 4 * t.acc_beats)
                first = plast + t.latency + t.store_param
                _, last = port.reserve(first, f["rows"] * t.out_beats)
                read_done = last
                done = last + t.store_done
                free[q] = done
            else:  # SYNC
                done = read_done = s + 1
                free[q] = s + 1
            starts[q].append(s)
            busy[q] += max(0, (stream_free if op == "MATMUL" else free[q]) - s)
            for flag, other, when in (("push_prev", qi - 1, read_done), ("push_next", qi + 1, done)):
                if f.get(flag):
                    last_push[q] = max(last_push[q], when)
                    pushes[(q, QUEUES[other])].append(last_push[q])
            end = max(end, done)
            if bound is not None and end > bound:
                return None
        return Prediction(end + t.finish, busy, array_rows)


def predict(config, program) -> Prediction:
    return PerfModel(config).predict(program)


def predict_cycles(config, program) -> int:
    return predict(config, program).cycles
