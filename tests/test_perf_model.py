"""`perf/model.py`, the performance model: small programs whose cycle counts follow by hand from
the `Timing` delays (and through them `hw/timing.py` and the unit docstrings), bounds every
prediction must respect, monotonicity, `bound=`, and the marginal costs against the RTL.

Expected values are derived here from the fields of `Timing.for_config(cfg)`, written out
once per program in the test's docstring; nothing is copied from a run of the model.
"""

import math

import numpy as np
import pytest

from systolab.codegen.gemm import compile_gemm, random_gemm
from systolab.codegen.program import Program
from systolab.hw.timing import compute_pipeline_depth, preload_read_cycles, wbuf_reuse_delay
from systolab.isa import ISA
from systolab.perf import PerfModel, Prediction, Timing, predict
from systolab.perf.model import _Port
from systolab.sim.functional import FunctionalSim

from conftest import small_config


def cfg_for(rows=4, cols=4, bus=16, latency=4, depth=8):
    return small_config(rows, cols, sp=64, acc=32, bus=bus, latency=latency, mem_kib=64,
                        queues={"depth": depth})


def fetched(t: Timing, k: int) -> int:
    """Last memory slot of instruction k when fetch runs unhindered: reads start at
    `fetch_first`, `insn_beats` words each, back to back."""
    return t.fetch_first + t.insn_beats * (k + 1) - 1


def arrives(t: Timing, k: int) -> int:
    """Earliest dispatch of instruction k: its last word's data plus the queue hand-over."""
    return fetched(t, k) + t.latency + t.dispatch


def LOAD(rows, **flags):
    return ("LOAD", dict(dram_addr=0, dram_stride=16, rows=rows, sp_addr=0, **flags))


def MATMUL(rows, wbuf=0, **flags):
    return ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=rows, wbuf=wbuf, accumulate=0, **flags))


def PRELOAD(wbuf=0, **flags):
    return ("PRELOAD", dict(sp_addr=0, wbuf=wbuf, **flags))


def STORE(rows, **flags):
    return ("STORE", dict(dram_addr=0x800, dram_stride=4, rows=rows, acc_addr=0, param_addr=0x400,
                          relu=0, **flags))


def test_timing_comes_from_the_hardware_formulas():
    cfg = cfg_for(rows=8, cols=4, bus=4, latency=7)
    t = Timing.for_config(cfg)
    assert t.latency == 7
    assert t.preload == preload_read_cycles(4) == 4
    assert t.array == compute_pipeline_depth(8, 4) == 8 + 4 + 1
    assert t.wbuf_hold == wbuf_reuse_delay(8) == 6
    # words per transfer on a 4-byte bus: 8-byte scratchpad rows, 4 x int32 parameter rows,
    # 4-byte output rows, 16-byte instructions
    assert (t.sp_beats, t.acc_beats, t.out_beats, t.insn_beats) == (2, 4, 1, 4)
    wide = Timing.for_config(cfg_for(rows=4, cols=4, bus=32))
    assert (wide.sp_beats, wide.acc_beats, wide.out_beats, wide.insn_beats) == (1, 1, 1, 1)


@pytest.mark.parametrize("rows, bus, latency, n", [(4, 16, 4, 1), (4, 16, 1, 9), (8, 4, 3, 5),
                                                    (16, 4, 2, 3), (4, 32, 10, 16)])
def test_one_load(rows, bus, latency, n):
    """LOAD of n rows: dispatched at d = arrives(0); its reads take the port from d + 1 for
    n * sp_beats slots; the last row is written `latency + load_write` after the last request
    (hw/load.py: row r at d + L + 3 + r, or d + L + 2 + W (r + 1)); the run ends `finish` later."""
    cfg = cfg_for(rows=rows, cols=4, bus=bus, latency=latency)
    t = Timing.for_config(cfg)
    d = arrives(t, 0)
    done = d + n * t.sp_beats + t.latency + t.load_write
    p = PerfModel(cfg).predict_insns([LOAD(n)])
    assert p == Prediction(done + t.finish, {"load": done - d, "compute": 0, "store": 0}, 0)
    W = max(1, rows // bus)
    hw_last_write = d + latency + 3 + (n - 1) if rows <= bus else d + latency + 2 + W * n
    assert done == hw_last_write


@pytest.mark.parametrize("rows, cols, latency", [(4, 4, 4), (2, 8, 1), (8, 2, 6)])
def test_tokens_serialize(rows, cols, latency):
    """LOAD(push_next) -> PRELOAD(pop_prev) -> MATMUL: the PRELOAD waits for the LOAD's token
    (done + token), the MATMUL for the PRELOAD (d + preload), and the run ends with the MATMUL's
    last accumulator write (+ array) and `finish`. Without the token the PRELOAD goes at once."""
    cfg = cfg_for(rows=rows, cols=cols, latency=latency)
    t = Timing.for_config(cfg)
    n, M = 6, 5
    d0 = arrives(t, 0)
    load_done = d0 + n * t.sp_beats + t.latency + t.load_write
    d1 = max(arrives(t, 1), load_done + t.token)
    d2 = max(arrives(t, 2), d1 + 1, d1 + t.preload)
    p = PerfModel(cfg).predict_insns([LOAD(n, push_next=1), PRELOAD(pop_prev=1), MATMUL(M)])
    assert p.cycles == max(load_done, d2 + M + t.array) + t.finish
    assert p.busy == {"load": load_done - d0, "compute": t.preload + M, "store": 0}
    assert p.array_busy == M
    free = PerfModel(cfg).predict_insns([LOAD(n), PRELOAD(), MATMUL(M)])
    d2_free = max(arrives(t, 2), arrives(t, 1) + t.preload)
    assert free.cycles == max(load_done, d2_free + M + t.array) + t.finish
    assert free.cycles < p.cycles


@pytest.mark.parametrize("cols, bus", [(4, 16), (8, 16), (4, 4), (16, 32)])
def test_store_after_matmul(cols, bus):
    """MATMUL(push_next) -> STORE(pop_prev): the STORE is dispatched a token after the last
    accumulator write, reads its four parameter rows (4 * acc_beats slots from d + 1), and
    writes its rows from `latency + store_first` after the last parameter request."""
    cfg = cfg_for(rows=4, cols=cols, bus=bus, latency=3)
    t = Timing.for_config(cfg)
    M, n = 4, 3
    d_mm = arrives(t, 0)
    mm_done = d_mm + M + t.array
    d_st = max(arrives(t, 1), mm_done + t.token)
    plast = d_st + 4 * t.acc_beats
    last_write = plast + t.latency + t.store_first + n * t.out_beats - 1
    p = PerfModel(cfg).predict_insns([MATMUL(M, push_next=1), STORE(n, pop_prev=1)])
    assert p.cycles == last_write + t.finish
    assert p.busy["store"] == last_write - d_st


def test_store_writes_share_the_port_with_the_loads_beside_them():
    """The arbiter is round robin between the requesters that want the port in the same cycles.
    A LOAD after a STORE in the program that has run before the STORE's writes start leaves them
    alone. A LOAD whose burst spans the STORE's parameter reads and writes alternates with them:
    the STORE's requests take every other slot while the LOAD's last ones move later, one per
    slot given up (the run holding them grows at its end)."""
    cfg = cfg_for(rows=4, cols=4, bus=16, latency=3)
    t = Timing.for_config(cfg)
    M, n = 4, 6
    d_mm = arrives(t, 0)
    d_st = max(arrives(t, 1), d_mm + M + t.array + t.token)
    first_write = d_st + 4 * t.acc_beats + t.latency + t.store_first
    alone = PerfModel(cfg).predict_insns([MATMUL(M, push_next=1), STORE(n, pop_prev=1)])
    assert alone.cycles == first_write + n * t.out_beats - 1 + t.finish
    before = PerfModel(cfg).predict_insns([MATMUL(M, push_next=1), STORE(n, pop_prev=1), LOAD(1)])
    assert before.busy["store"] == alone.busy["store"] == first_write + n - 1 - d_st

    assert t.sp_beats == t.out_beats == t.acc_beats == 1       # one slot a row, four parameter words
    plast = d_st + 2 * 4 - 1              # the four parameter reads alternate with the LOAD ...
    fw = plast + t.latency + t.store_first
    last_write = fw + 2 * (n - 1)         # ... and so do the writes
    d_ld = arrives(t, 2)                  # the LOAD's requests: one a row from d_ld + 1 ...
    R = fw + 2 * n - d_ld                 # ... still running after the STORE's last write
    load_last = d_ld + R + 4 + n          # the LOAD gave up 4 + n slots
    rec = []
    beside = PerfModel(cfg).predict_insns([MATMUL(M, push_next=1), STORE(n, pop_prev=1), LOAD(R)], record=rec)
    assert beside.busy["store"] == last_write - d_st
    assert rec[2][3:] == (d_ld, load_last + t.latency + t.load_write)
    assert beside.cycles == load_last + t.latency + t.load_write + t.finish


def test_back_to_back_stores_write_one_after_the_other():
    """The store unit's writer takes the STOREs' rows in order: a second STORE, dispatched once
    the first has read its accumulator rows (`latency + rows + store_next` after its last
    parameter request, or, when its writes lag, `STORE_FIFO_ROWS - 1` rows before its last
    write: the credits of the output FIFO), writes after the first's last write; its parameter
    reads, a requester of their own, share the port with the first's writes."""
    from systolab.hw.timing import STORE_FIFO_ROWS

    cfg = cfg_for(rows=4, cols=4, bus=16, latency=3)
    t = Timing.for_config(cfg)
    M, n1, n2 = 4, 40, 5
    d_mm = arrives(t, 0)
    d1 = max(arrives(t, 1), d_mm + M + t.array + t.token)
    plast1 = d1 + 4 * t.acc_beats
    last1 = plast1 + t.latency + t.store_first + n1 * t.out_beats - 1
    d2 = max(arrives(t, 2), plast1 + t.latency + n1 + t.store_next,
             last1 - (STORE_FIFO_ROWS - 1) * t.out_beats + 1)
    # the second's parameter reads (a requester of their own) alternate with the first's writes
    assert d2 + 2 * 4 * t.acc_beats < last1
    plast2 = d2 + 2 * 4 * t.acc_beats - 1
    last1 += 4 * t.acc_beats
    first2 = max(plast2 + t.latency + t.store_first, last1 + 1)
    rec = []
    p = PerfModel(cfg).predict_insns([MATMUL(M, push_next=1), STORE(n1, pop_prev=1), STORE(n2)], record=rec)
    assert rec[1][4] == last1
    assert rec[2][3] == d2
    assert p.cycles == first2 + n2 * t.out_beats - 1 + t.finish


def test_a_program_that_waits_for_a_token_never_given_is_reported():
    with pytest.raises(ValueError, match="deadlocks"):
        PerfModel(cfg_for()).predict_insns([LOAD(4, pop_next=1), MATMUL(4)])


@pytest.mark.parametrize("rows", [2, 4, 8])
def test_weight_buffer_interlock_and_hidden_preload(rows):
    """MATMUL(M, buffer 0) then PRELOAD into buffer 0 waits until the MATMUL's last row + wbuf_hold,
    and the next MATMUL until that PRELOAD has read its columns. Into buffer 1 the PRELOAD is hidden
    behind the MATMUL (M > preload + 1): the next MATMUL follows the last row directly."""
    cfg = cfg_for(rows=rows, cols=4, latency=2)
    t = Timing.for_config(cfg)
    M, M2 = 12, 3
    d_mm = arrives(t, 0)
    d_pl = max(arrives(t, 1), d_mm + 1, d_mm + M + t.wbuf_hold)
    d2 = max(arrives(t, 2), d_pl + 1, d_mm + M, d_pl + t.preload)
    same = PerfModel(cfg).predict_insns([MATMUL(M), PRELOAD(0), MATMUL(M2)])
    assert same.cycles == d2 + M2 + t.array + t.finish
    other = PerfModel(cfg).predict_insns([MATMUL(M), PRELOAD(1), MATMUL(M2, wbuf=1)])
    assert other.cycles == d_mm + M + M2 + t.array + t.finish
    assert other.array_busy == same.array_busy == M + M2


def test_a_requester_is_served_inside_an_earlier_burst():
    """`_Port.steal`: the round-robin arbiter serves a requester while a burst placed before it
    holds the port. A taken slot is given to it and the run holding it ends one slot later (noted
    in `stolen`); its next request goes one slot after (the burst's turn); free slots are taken as
    they are, and a run's last slot is left to it (the slot after is free). With `every`, the
    requests are that many cycles apart (a LOAD whose rows share a word)."""
    port = _Port()
    port.reserve(10, 10)                              # a burst: slots 10..19
    assert port.steal(12, 1) == (12, 14)
    assert (port.starts, port.ends, port.stolen) == ([10], [21], [(12, 20)])
    port.stolen.clear()
    assert port.steal(30, 2) == (31, 32)              # free: back to back
    assert (port.starts, port.ends) == ([10, 30], [21, 32])
    assert port.steal(19, 3) == (23, 24)              # 19 from the burst; 21, the burst's last
    assert (port.starts, port.ends, port.stolen) == ([10, 30], [24, 32], [(19, 21)])   # now: 22, 23
    assert port.steal(23, 1) == (24, 25)              # the run's last slot: the next one
    assert (port.starts, port.ends) == ([10, 30], [25, 32])
    port.reserve(26, 3)                               # 26..28: one free slot before the next run
    port.stolen.clear()
    assert port.steal(27, 1) == (27, 29)              # the run grows into the next: merged
    assert (port.starts, port.ends, port.stolen) == ([10, 26], [25, 32], [(27, 29)])
    paced = _Port()
    paced.reserve(10, 4)                              # a burst: 10..13
    assert paced.steal(8, 4, every=2) == (14, 16)     # 8 free; 10, 12 and 14 from the burst
    assert (paced.starts, paced.ends) == ([8, 10], [9, 17])   # which ends three slots later


def test_full_queue_stalls_fetch():
    """Compute queue of depth 2: LOAD(n, push_next), SYNC(pop_prev), SYNC, SYNC, LOAD(1).
    The first SYNC dispatches at T (the LOAD's token), the second at T + 1; the third finds the
    queue full until the first has left (T + 1), and fetch, stalled behind it, requests the last
    LOAD's word at T + 1 - latency, so that LOAD is dispatched at T + insn_beats + dispatch.
    With deep queues the last LOAD follows the first one at once."""
    n = 20
    prog = [LOAD(n, push_next=1), ("SYNC", dict(pop_prev=1)), ("SYNC", {}), ("SYNC", {}), LOAD(1)]
    cfg = cfg_for(latency=3, depth=2)
    t = Timing.for_config(cfg)
    d0 = arrives(t, 0)
    T = d0 + n * t.sp_beats + t.latency + t.load_write + t.token
    d4 = T + t.insn_beats + t.dispatch
    assert PerfModel(cfg).predict_insns(prog).cycles == d4 + t.sp_beats + t.latency + t.load_write + t.finish
    deep = cfg_for(latency=3, depth=8)
    d4_deep = d0 + n * t.sp_beats + 1                   # the port is free after the first LOAD
    end_deep = max(d4_deep + t.sp_beats + t.latency + t.load_write, T + 2)   # or the last SYNC
    assert PerfModel(deep).predict_insns(prog).cycles == end_deep + t.finish


def test_array_busy_counts_matmul_rows_only():
    cfg = cfg_for()
    t = Timing.for_config(cfg)
    prog = [LOAD(8, push_next=1), PRELOAD(pop_prev=1), MATMUL(7), PRELOAD(1), MATMUL(3, wbuf=1),
            MATMUL(5, push_next=1), STORE(15, pop_prev=1), ("SYNC", {})]
    p = PerfModel(cfg).predict_insns(prog)
    assert p.array_busy == 7 + 3 + 5
    assert p.busy["compute"] == 2 * t.preload + 7 + 3 + 5


GEMMS = [((4, 4), (8, 12, 8)), ((4, 4), (33, 17, 9)), ((2, 4), (16, 6, 12)),
         ((8, 4), (20, 24, 8)), ((4, 8), (40, 8, 16))]


def gemm_programs():
    for (r, c), shape in GEMMS:
        cfg = cfg_for(rows=r, cols=c, latency=5)
        yield cfg, shape, compile_gemm(cfg, random_gemm(*shape, seed=sum(shape)))


def port_beats(cfg, program):
    """Memory words the program moves: each takes a request slot of the one port."""
    t = Timing.for_config(cfg)
    isa = ISA(cfg)
    total = 0
    for insn in map(isa.decode, program.words):
        total += t.insn_beats
        if insn.op == "LOAD":
            total += insn.rows * t.sp_beats
        elif insn.op == "STORE":
            total += 4 * t.acc_beats + insn.rows * t.out_beats
    return total


def test_gemm_never_beats_the_ideal():
    """A GEMM's prediction is at least its MATMUL rows (each row is an array cycle; the count is
    exactly the functional simulator's), which are at least M*K*N / (rows*cols), and at least
    the memory words it moves (one per cycle)."""
    for cfg, (M, K, N), program in gemm_programs():
        p = predict(cfg, program)
        rows = FunctionalSim(cfg).run(program).matmul_rows
        assert p.array_busy == rows
        assert rows >= M * math.ceil(K / cfg.rows) * math.ceil(N / cfg.cols) >= M * K * N / (cfg.rows * cfg.cols)
        assert p.cycles >= rows + Timing.for_config(cfg).array
        assert p.cycles >= port_beats(cfg, program)


def insns_of(cfg, program):
    isa = ISA(cfg)
    return [(i.op, i.values) for i in map(isa.decode, program.words)]


def test_bound_gives_up_exactly_past_the_bound():
    """predict_insns(..., bound=b) is None when the run takes more than b cycles and the same
    Prediction otherwise."""
    for cfg, _, program in gemm_programs():
        insns = insns_of(cfg, program)
        model = PerfModel(cfg)
        full = model.predict_insns(insns)
        t = Timing.for_config(cfg)
        for bound in range(full.cycles - t.finish - 2, full.cycles + 3):
            got = model.predict_insns(insns, bound=bound)
            if full.cycles > bound:
                assert got is None, (bound, full.cycles)
            else:
                assert got == full
        assert model.predict_insns(insns, bound=full.cycles // 2) is None


def random_program(cfg, seed, n=40):
    """Random valid programs: the builder adds the tokens (and SYNCs) they need."""
    from systolab.codegen.builder import ProgramBuilder

    rng = np.random.default_rng(seed)
    R, C = cfg.rows, cfg.cols
    b = ProgramBuilder(cfg)
    data = b.alloc("data", (64, 4 * R), "int8", data=rng.integers(-128, 128, (64, 4 * R)))
    par = b.alloc("params", (4, C), "int32", data=np.ones((4, C), np.int32))
    out = b.alloc("out", (64, C), "int8")
    sp, acc = cfg.scratchpad.depth, cfg.accumulator.depth
    for _ in range(n):
        op = rng.choice(["LOAD", "PRELOAD", "MATMUL", "MATMUL", "STORE"])
        rows = int(rng.integers(1, 17))
        if op == "LOAD":
            b.emit("LOAD", dram_addr=data.addr + int(rng.integers(0, 64 - rows + 1)) * data.row_stride,
                   dram_stride=data.row_stride, rows=rows, sp_addr=int(rng.integers(0, sp - rows + 1)))
        elif op == "PRELOAD":
            b.emit("PRELOAD", sp_addr=int(rng.integers(0, sp - C + 1)), wbuf=int(rng.integers(2)))
        elif op == "MATMUL":
            b.emit("MATMUL", sp_addr=int(rng.integers(0, sp - rows + 1)),
                   acc_addr=int(rng.integers(0, acc - rows + 1)), rows=rows,
                   wbuf=int(rng.integers(2)), accumulate=int(rng.integers(2)))
        else:
            b.emit("STORE", dram_addr=out.addr + int(rng.integers(0, 64 - rows + 1)) * out.row_stride,
                   dram_stride=out.row_stride, rows=rows, acc_addr=int(rng.integers(0, acc - rows + 1)),
                   param_addr=par.addr, relu=0)
    return b.finish(("out",), {})


PROGRAMS = ([f"gemm-{r}x{c}-{'x'.join(map(str, shape))}" for (r, c), shape in GEMMS] +
            [f"random-{seed}" for seed in range(6)])


def program_named(name):
    kind, *rest = name.split("-")
    if kind == "gemm":
        r, c = map(int, rest[0].split("x"))
        shape = tuple(map(int, rest[1].split("x")))
        cfg = cfg_for(rows=r, cols=c, latency=5)
        return cfg, compile_gemm(cfg, random_gemm(*shape, seed=sum(shape)))
    cfg = cfg_for(rows=4, cols=4)
    return cfg, random_program(cfg, int(rest[0]))


@pytest.mark.parametrize("name", PROGRAMS)
def test_more_latency_never_helps(name):
    """The same instructions on a memory with more latency never take fewer cycles.

    (Deeper queues are not always faster, on the RTL either: with 64 entries the fetch runs
    ahead and takes port slots from the first LOADs. Measured on the native RTL: `random-0` 410
    cycles with 2-entry queues, 418 with 64; `random-2` 447 and 459; the 8x12x8 GEMM on 4x4 154
    and 147.)"""
    cfg, program = program_named(name)
    insns = insns_of(cfg, program)
    by_latency = [PerfModel(cfg.replace({"memory.latency": L})).predict_insns(insns).cycles
                  for L in (1, 2, 3, 5, 8, 13, 32)]
    assert by_latency == sorted(by_latency), by_latency


def test_latency_costs_a_load_twice():
    """A LOAD-only program pays exactly 2 cycles per cycle of latency (once for the instruction
    fetch, once for its data)."""
    cfg = cfg_for()
    loads = [PerfModel(cfg.replace({"memory.latency": L})).predict_insns([LOAD(5)]).cycles
             for L in range(1, 6)]
    assert np.all(np.diff(loads) == 2)


# -- against the RTL: what one more row or one more cycle of latency costs -----------------------

def rtl_cycles(cfg, asm):
    from support.simrun import simulate_program

    isa = ISA(cfg)
    image = np.zeros(0x1000, dtype=np.uint8)
    words = [isa.encode(op, **f) for op, f in asm]
    insn_addr = 0xA00
    for i, w in enumerate(words):
        image[insn_addr + 16 * i:insn_addr + 16 * (i + 1)] = np.frombuffer(w.to_bytes(16, "little"), np.uint8)
    program = Program(cfg.compile_hash, words, image, insn_addr, {}, ())
    return simulate_program(cfg, program).counters["cycles"], PerfModel(cfg).predict(program).cycles


@pytest.mark.parametrize("a, b", [
    ([LOAD(2)], [LOAD(9)]),
    ([MATMUL(3)], [MATMUL(10)]),
    ([LOAD(4, push_next=1), PRELOAD(pop_prev=1), MATMUL(4)],
     [LOAD(11, push_next=1), PRELOAD(pop_prev=1), MATMUL(4)]),
])
def test_marginal_costs_match_the_rtl(a, b):
    """The difference between two programs (more rows) is the same in the model and in the RTL's
    cycle counter (Amaranth simulation of the whole core, 4x4)."""
    cfg = small_config(4, 4, sp=64, acc=32, bus=16, latency=3, mem_kib=64)
    (rtl_a, model_a), (rtl_b, model_b) = rtl_cycles(cfg, a), rtl_cycles(cfg, b)
    assert model_b - model_a == rtl_b - rtl_a


def test_latency_cost_matches_the_rtl():
    prog = [LOAD(3, push_next=1), PRELOAD(pop_prev=1), MATMUL(5)]
    runs = [rtl_cycles(small_config(4, 4, sp=64, acc=32, bus=16, latency=L, mem_kib=64), prog)
            for L in (2, 6)]
    (rtl_a, model_a), (rtl_b, model_b) = runs
    assert model_b - model_a == rtl_b - rtl_a


def VECTOR(func, rows, **fields):
    from systolab.isa import VECTOR_OPS
    return ("VECTOR", dict(func=VECTOR_OPS[func], dst=16, src1=0, src1_stride=1, rows=rows, **fields))


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_vector_after_matmul_and_before_the_next(lanes):
    """MATMUL(M) -> VECTOR -> MATMUL: the VECTOR waits for the MATMUL's last accumulator write
    (d_mm + M + array; hw/compute.py lets it go in that cycle), takes
    vector_cycles(rows, P) = 2 + rows * P with P = vector_row_cycles(...) (RECIP: 32 cycles a beat
    of `lanes` lanes), and the next MATMUL waits for its last write. The vector unit's busy
    cycles are the same span; a config without a vector unit drops the VECTOR."""
    from systolab.hw.timing import vector_cycles, vector_row_cycles

    cfg = small_config(4, 4, sp=64, acc=32, mem_kib=64, vector={"lanes": lanes})
    t = Timing.for_config(cfg)
    M, n = 5, 3
    d_mm = arrives(t, 0)
    d_v = max(arrives(t, 1), d_mm + M + t.array)
    P = vector_row_cycles(4, lanes, "RECIP", 1)
    assert P == 4 // lanes * 32
    v_done = d_v + vector_cycles(n, P)
    assert v_done == d_v + 2 + n * P
    d2 = max(arrives(t, 2), v_done)
    rec = []
    p = PerfModel(cfg).predict_insns([MATMUL(M), VECTOR("RECIP", n, shift=20, push_next=1), MATMUL(M2 := 2)],
                                     record=rec)
    assert [r[3] for r in rec] == [d_mm, d_v, d2]
    assert rec[1][4] == v_done
    assert p.cycles == d2 + M2 + t.array + t.finish
    assert p.busy["vector"] == v_done - d_v
    # three accumulator reads a row (a, b and the old destination) take one cycle more
    assert PerfModel(cfg).vector_row_cycles(dict(func=0, src2=8, src2_stride=1, accumulate=1)) == 4 // lanes + 1
    assert PerfModel(cfg).vector_row_cycles(dict(func=0, src2=8, src2_imm=1, accumulate=1)) == 4 // lanes
    none = PerfModel(cfg_for()).predict_insns([MATMUL(M), VECTOR("RECIP", n), MATMUL(M2)])
    assert "vector" not in none.busy
    assert none.cycles < p.cycles
