"""The differential fuzzer (`systolab.sim.fuzz`): generated programs are valid, deterministic and
cover the ISA; the hazard checker and the comparison catch what they are for; and random
programs agree between the functional simulator and the RTL on three small configs."""

import dataclasses
import itertools

import numpy as np
import pytest

from systolab.codegen.quant import requantize
from systolab.isa import ISA, Instruction, isa_for
from systolab.sim import fuzz
from systolab.sim.functional import FunctionalSim, SimError
from systolab.sim.rtl import run_rtl

from conftest import small_config

#: the RTL configs (one Verilator build each): the narrowest bus and shallowest queues; the 4x4
#: of tests/test_rtl_gemm.py (same Verilog, so the build is shared); scratchpad rows wider than
#: the bus (a row is two words) and a long latency; a 4x4 with a vector unit of 2 lanes
RTL_CONFIGS = {
    "2x2-bus4-q2": small_config(2, 2, sp=16, acc=16, bus=4, latency=3, mem_kib=64,
                                queues={"depth": 2}),
    "4x4": small_config(4, 4, sp=64, acc=32, mem_kib=64),
    "8x2-bus4": small_config(8, 2, sp=32, acc=16, bus=4, latency=9, mem_kib=64,
                             queues={"depth": 4}),
    "4x4-v2": small_config(4, 4, sp=64, acc=32, mem_kib=64, vector={"lanes": 2}),
}
RTL_SEEDS = range(12)


def _configs(n):
    return [fuzz.random_config(np.random.default_rng(s)) for s in range(n)]


# -- configs and programs ---------------------------------------------------------------------

def test_random_configs_are_small_and_deterministic():
    cfgs = _configs(40)
    assert [c.hash for c in cfgs] == [c.hash for c in _configs(40)]
    assert len({c.hash for c in cfgs}) > 20
    for c in cfgs:
        assert (c.rows, c.cols) in fuzz.ARRAY_SHAPES
        assert c.scratchpad.depth <= 64 and c.accumulator.depth <= 32
        assert c.mem_bytes == 64 * 1024 and c.memory.bus_bytes <= 16


def test_generated_programs_are_valid():
    """200 programs over random configs: the functional simulator runs them (no token underflow,
    addresses in range, aligned, shifts 0..63) and the checker finds every hazard ordered."""
    for seed, cfg in enumerate(_configs(200)):
        prog = fuzz.program_for_seed(cfg, seed, 30)
        assert prog.insn_count >= 30
        FunctionalSim(cfg).run(prog)
        assert fuzz.check_program(cfg, prog) == [], seed


def test_programs_are_deterministic_for_a_seed():
    cfg = RTL_CONFIGS["4x4"]
    a, b = fuzz.program_for_seed(cfg, 3), fuzz.program_for_seed(cfg, 3)
    assert a.words == b.words and np.array_equal(a.image, b.image)
    c = fuzz.program_for_seed(cfg, 4)
    assert a.words != c.words


def test_a_shorter_generation_is_the_longer_one_stopped_early():
    """What `shrink` relies on: same operands (tokens aside) and each prefix valid by itself."""
    cfg = RTL_CONFIGS["2x2-bus4-q2"]
    isa = isa_for(cfg)

    def strip(word):
        return {k: v for k, v in isa.decode(word).values.items() if not k.startswith(("push", "pop"))}

    full = fuzz.program_for_seed(cfg, 9, 40)
    for k in (1, 7, 20):
        short = fuzz.program_for_seed(cfg, 9, k)
        assert [isa.decode(w).op for w in short.words] == [isa.decode(w).op for w in full.words[:short.insn_count]]
        assert [strip(w) for w in short.words] == [strip(w) for w in full.words[:short.insn_count]]
        assert fuzz.check_program(cfg, short) == []


def test_every_instruction_and_token_flag_is_generated():
    """Over a few programs, every spec instruction occurs with each token flag its queue allows,
    and tokens move on every link between the queues (VECTOR on the config with a vector unit)."""
    cfg = RTL_CONFIGS["4x4"]
    isa = isa_for(cfg)
    seen = set()
    for cfg, seed in itertools.product((RTL_CONFIGS["4x4"], RTL_CONFIGS["4x4-v2"]), range(10)):
        for word in fuzz.program_for_seed(cfg, seed).words:
            insn = isa.decode(word)
            seen.add(insn.op)
            seen.update((insn.op, t) for t in isa.formats[insn.op].allowed_tokens if insn.values[t])
    wanted = {op for op in isa.formats} | {(op, t) for op, f in isa.formats.items() for t in f.allowed_tokens}
    assert wanted - seen == set()


def test_an_instruction_without_a_generator_fails_loudly(monkeypatch):
    cfg = RTL_CONFIGS["4x4"]
    isa = ISA(cfg)
    isa.formats = {**isa.formats, "VADD": dataclasses.replace(isa.formats["SYNC"], name="VADD", opcode=6)}
    monkeypatch.setattr(fuzz, "isa_for", lambda c: isa)
    with pytest.raises(fuzz.FuzzError, match=r"^sim/fuzz.py has no generator for instruction VADD$"):
        fuzz.program_for_seed(cfg, 0)


def test_n_insns_is_checked():
    with pytest.raises(fuzz.FuzzError, match=r"^n_insns must be a positive integer, not 0$"):
        fuzz.program_for_seed(RTL_CONFIGS["4x4"], 0, 0)


# -- the checker catches missing tokens -------------------------------------------------------

def _program(cfg, *insns):
    """A directed program: regions `data` (512 random bytes) and one requantization set."""
    b = fuzz._Builder(cfg)
    b.alloc("data", (1, 512), "int8", data=np.random.default_rng(0).integers(-128, 128, (1, 512)))
    ones = np.ones(cfg.cols, dtype=np.int64)
    b.alloc("params", (4, cfg.cols), "int32", data=np.stack([0 * ones, ones, 0 * ones, 0 * ones]))
    for op, fields in insns:
        b.emit(op, **fields)
    return b.finish(("data",), {})


def _drop(cfg, program, index, *flags):
    isa = isa_for(cfg)
    insns = [isa.decode(w) for w in program.words]
    insns[index] = Instruction(insns[index].op, {**insns[index].values, **{f: 0 for f in flags}})
    return fuzz.replace_words(cfg, program, [isa.encode_insn(i) for i in insns])


def test_checker_flags_a_missing_token_and_a_relay_through_sync():
    cfg = RTL_CONFIGS["4x4"]
    data, params = 0, 512                  # the builder's region addresses (256-aligned)
    prog = _program(
        cfg,
        ("LOAD", dict(dram_addr=data, dram_stride=4, rows=8, sp_addr=0, push_next=1)),
        ("MATMUL", dict(sp_addr=0, acc_addr=0, rows=8, wbuf=0, accumulate=0, pop_prev=1, push_next=1)),
        ("STORE", dict(dram_addr=data + 64, dram_stride=4, rows=8, acc_addr=0, param_addr=params,
                       relu=0, pop_prev=1, push_prev=1)),
        ("SYNC", dict(pop_next=1, push_prev=1)),
        ("LOAD", dict(dram_addr=data + 64, dram_stride=4, rows=8, sp_addr=8, pop_next=1)),
    )
    assert prog.regions["params"].addr == params
    FunctionalSim(cfg).run(prog)
    assert fuzz.check_program(cfg, prog) == []

    # without the MATMUL's pop (and the LOAD's push) the MATMUL may read rows not yet loaded
    hz = fuzz.check_program(cfg, _drop(cfg, _drop(cfg, prog, 1, "pop_prev"), 0, "push_next"))
    assert [str(h) for h in hz] == [
        "RAW on sp (row/byte 0) between instruction 0 and instruction 1 is not ordered by tokens"]
    # without the SYNC's pop, the last LOAD may read bytes before the STORE wrote them
    hz = fuzz.check_program(cfg, _drop(cfg, _drop(cfg, prog, 3, "pop_next"), 2, "push_prev"))
    assert [(h.first, h.second, h.resource, h.kind) for h in hz] == [(2, 4, "mem", "RAW")]
    # a pop with no push is a token underflow for both the checker and the functional simulator
    bad = _drop(cfg, prog, 2, "push_prev")
    with pytest.raises(fuzz.FuzzError, match=r"^instruction 3 \(SYNC pop_next push_prev\): token underflow on store->compute$"):
        fuzz.check_program(cfg, bad)
    with pytest.raises(SimError, match=r"token underflow"):
        FunctionalSim(cfg).run(bad)


def _store_params_program(cfg, round_trip: bool):
    """STORE 0 writes 3s into the zero-point row of parameter set 1, which STORE 1 then reads
    (acc is 0, so STORE 1 writes saturate(zp)); with `round_trip`, ordered by tokens through a
    SYNC."""
    C = cfg.cols
    b = fuzz._Builder(cfg)
    one, zero = np.ones(C, np.int64), np.zeros(C, np.int64)
    params = b.alloc("params", (8, C), "int32", data=np.stack([zero, one, zero, 3 * one, zero, one, zero, zero]))
    out = b.alloc("out", (1, 16), "int8")
    set1 = params.addr + 4 * params.row_stride
    rt = int(round_trip)
    b.emit("STORE", dram_addr=set1 + 3 * params.row_stride, dram_stride=C, rows=1, acc_addr=0,
           param_addr=params.addr, relu=0, push_prev=rt)
    b.emit("SYNC", pop_next=rt, push_next=rt)
    b.emit("STORE", dram_addr=out.addr, dram_stride=C, rows=1, acc_addr=0, param_addr=set1,
           relu=0, pop_prev=rt)
    return b.finish(("out",), {})


def test_a_store_reading_parameters_an_earlier_store_wrote_needs_a_round_trip():
    cfg = RTL_CONFIGS["4x4"]
    assert [str(h) for h in fuzz.check_program(cfg, _store_params_program(cfg, False))] == [
        "same-queue RAW on mem (row/byte 112) between instruction 0 and instruction 2 is not "
        "ordered by tokens"]
    assert fuzz.check_program(cfg, _store_params_program(cfg, True)) == []
    # and the generator makes such pairs (and orders them)
    isa = isa_for(cfg)
    pairs = 0
    for seed in range(20):
        prog = fuzz.program_for_seed(cfg, seed)
        stores = [fuzz.footprint(cfg, i) for i in map(isa.decode, prog.words) if i.op == "STORE"]
        pairs += sum(fuzz._posted_raw(a, b) is not None for a, b in itertools.combinations(stores, 2))
    assert pairs >= 5


def _matched_tokens(cfg, program):
    """(link, push index, pop index) of every token the program passes."""
    isa = isa_for(cfg)
    insns = [isa.decode(w) for w in program.words]
    for link in fuzz.LINKS:
        pushes = [i for i, x in enumerate(insns) if isa.formats[x.op].queue == link.src and x.values[link.push]]
        pops = [i for i, x in enumerate(insns) if isa.formats[x.op].queue == link.dst and x.values[link.pop]]
        yield from ((link, pu, po) for pu, po in zip(pushes, pops))


def _without_token(cfg, program, link, push, pop):
    """Drop one matched token; later pops take later pushes, so there is no underflow."""
    return _drop(cfg, _drop(cfg, program, pop, link.pop), push, link.push)


def test_checker_flags_every_needed_token_of_generated_programs():
    """Taking out one token at a time: many are needed (the checker reports a hazard naming an
    instruction at or before the pop), none of the removals underflows."""
    cfg = RTL_CONFIGS["8x2-bus4"]
    needed = 0
    for seed in range(5):
        prog = fuzz.program_for_seed(cfg, seed)
        for link, push, pop in _matched_tokens(cfg, prog):
            hz = fuzz.check_program(cfg, _without_token(cfg, prog, link, push, pop))
            needed += bool(hz)
            assert all(h.first < h.second and h.second >= pop for h in hz)
    assert needed >= 20


# -- the comparison ---------------------------------------------------------------------------

def test_comparison_reports_a_corrupted_byte_and_a_wrong_counter():
    cfg = RTL_CONFIGS["4x4"]
    prog = fuzz.program_for_seed(cfg, 2)
    func = FunctionalSim(cfg).run(prog)
    counters = fuzz.expected_counters(cfg, prog, func) | {"cycles": 1000}
    assert fuzz.compare(cfg, prog, func, func.memory.copy(), counters).ok

    mem = func.memory.copy()
    addr = prog.regions["data"].addr + 0x2a
    mem[addr] ^= 0x10
    mem[prog.insn_addr + 16 * 3 + 5] ^= 1
    c = fuzz.compare(cfg, prog, func, mem, counters | {"mem_writes": counters["mem_writes"] + 1})
    assert not c.ok
    assert (c.diff_bytes, c.first_diff, c.first_region) == (2, addr, "data+0x2a")
    assert c.summary() == (f"2 memory bytes differ, the first at {addr:#x} (data+0x2a); counter "
                           f"mem_writes: functional {counters['mem_writes']}, RTL {counters['mem_writes'] + 1}")
    mem[addr] ^= 0x10
    assert fuzz.compare(cfg, prog, func, mem, counters).first_region == "instruction 3"


def test_expected_counters_count_shared_words_once():
    """A row narrower than the bus is requested once per bus word (stride 0 repeats the word)."""
    cfg = RTL_CONFIGS["2x2-bus4-q2"]         # LOAD rows of 2 bytes, 4-byte bus
    prog = _program(cfg, ("LOAD", dict(dram_addr=0, dram_stride=0, rows=5, sp_addr=0)),
                    ("LOAD", dict(dram_addr=0, dram_stride=2, rows=5, sp_addr=0)),
                    ("STORE", dict(dram_addr=8, dram_stride=2, rows=3, acc_addr=0, param_addr=512)))
    func = FunctionalSim(cfg).run(prog)
    # fetch 3 x 4 words; LOADs 1 + 3 words; STORE parameters 4 rows of 8 bytes = 8 words
    assert fuzz.expected_counters(cfg, prog, func) == {"array_busy": 0, "mem_reads": 12 + 4 + 8,
                                                       "mem_writes": 3}


def test_shrink_keeps_a_valid_failing_program():
    cfg = RTL_CONFIGS["4x4"]

    def fails(prog):
        return FunctionalSim(cfg).run(prog).matmul_rows >= 12

    small = fuzz.shrink(cfg, 5, 40, fails)
    assert fails(small) and fuzz.check_program(cfg, small) == []
    assert small.insn_count < fuzz.program_for_seed(cfg, 5, 40).insn_count // 2
    with pytest.raises(fuzz.FuzzError, match=r"^the program of seed 5 \(40 instructions\) does not fail: nothing to shrink$"):
        fuzz.shrink(cfg, 5, 40, lambda prog: False)


# -- the bug the fuzzer found -----------------------------------------------------------------

def _exact_requant(acc, bias, mult, shift, zp, relu):
    x = (acc + bias + 2**31) % 2**32 - 2**31
    p = x * mult
    if shift > 0:
        p = (p + 2**(shift - 1)) >> shift
    y = p + zp
    if relu:
        y = max(y, zp)
    return min(127, max(-128, y))


def test_requantize_is_exact_at_the_extremes():
    """Regression: with x = mult = -2**31 the product is 2**62, and adding the rounding 2**62
    for shift 63 overflowed int64 (-1 instead of 1; fuzz seed 5000006 on a 2x8 config)."""
    ends = [-2**31, -2**31 + 1, -1, 0, 1, 2**31 - 1]
    shifts = np.array([0, 1, 31, 32, 62, 63] * 4)
    zps = np.repeat([-2**31, 0, 105, 2**31 - 1], 6)
    for acc, bias, mult in itertools.product(ends, ends, ends):
        for relu in (False, True):
            got = requantize(np.full((1, shifts.size), acc, np.int32), np.full(shifts.size, bias),
                             np.full(shifts.size, mult), shifts, zps, relu)[0]
            want = [_exact_requant(acc, bias, mult, int(s), int(z), relu) for s, z in zip(shifts, zps)]
            assert got.tolist() == want, (acc, bias, mult, relu)


# -- RTL ----------------------------------------------------------------------------------------

@pytest.mark.rtl
@pytest.mark.parametrize("seed", RTL_SEEDS)
@pytest.mark.parametrize("cfg_name", list(RTL_CONFIGS))
def test_random_programs_agree_with_the_rtl(cfg_name, seed):
    case = fuzz.run_case(RTL_CONFIGS[cfg_name], seed)
    assert case.ok, case.report()
    assert case.counters["array_busy"] == FunctionalSim(case.config).run(case.program).matmul_rows


@pytest.mark.rtl
def test_the_rtl_computes_the_requantization_corner():
    cfg = RTL_CONFIGS["2x2-bus4-q2"]
    b = fuzz._Builder(cfg)
    out = b.alloc("out", (1, 16), "int8")
    m = -2**31
    params = b.alloc("params", (4, 2), "int32", data=np.array([[m, m], [m, m], [63, 63], [105, 0]]))
    for relu in (0, 1):
        b.emit("STORE", dram_addr=out.addr + 4 * relu, dram_stride=2, rows=1, acc_addr=0,
               param_addr=params.addr, relu=relu)
    prog = b.finish(("out",), {})
    case = fuzz.run_case(cfg, 0, program=prog)
    assert case.ok, case.report()
    assert prog.read_outputs(FunctionalSim(cfg).run(prog).memory)["out"][0, :6].tolist() == [106, 1, 0, 0, 106, 1]


@pytest.mark.rtl
@pytest.mark.parametrize("cfg_name", list(RTL_CONFIGS))
def test_the_rtl_reads_store_parameters_before_an_earlier_store_lands(cfg_name):
    """Why the round trip is needed: without it the second STORE reads the old zero point (0
    where in-order execution reads 3 x 0x01010101 and saturates to 127)."""
    cfg = RTL_CONFIGS[cfg_name]
    stale = fuzz.run_case(cfg, 0, program=_store_params_program(cfg, False))
    assert (stale.comparison.diff_bytes, stale.comparison.first_region) == (1, "out+0x0")
    ordered = fuzz.run_case(cfg, 0, program=_store_params_program(cfg, True))
    assert ordered.ok, ordered.report()


@pytest.mark.rtl
def test_the_rtl_diverges_when_a_needed_token_is_missing():
    """The comparison sees an ordering error on the hardware: among the first hazardous token
    removals of a few programs, several change the RTL's memory or counters (15 of 73 when
    this was written; the long pipeline and memory latency of this config make races likely)."""
    cfg = RTL_CONFIGS["8x2-bus4"]
    tried = diverged = 0
    for seed in range(4):
        prog = fuzz.program_for_seed(cfg, seed)
        for link, push, pop in _matched_tokens(cfg, prog):
            broken = _without_token(cfg, prog, link, push, pop)
            if not fuzz.check_program(cfg, broken):
                continue
            tried += 1
            func = FunctionalSim(cfg).run(broken)
            rtl = run_rtl(cfg, broken, backend="verilator", readback="all")
            diverged += not fuzz.compare(cfg, broken, func, rtl.memory, rtl.counters).ok
    assert tried >= 40 and diverged >= 5, (tried, diverged)
