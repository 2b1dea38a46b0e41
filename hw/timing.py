"""Pipeline delays of the hardware that software needs (the performance model, `perf/model.py`),
written once. The RTL builds its pipelines from these functions, and the docstrings of the modules
named below derive them cycle by cycle.

Pure Python: no Amaranth objects are built to ask for a delay.
"""

__all__ = ["REQUANT_LATENCY", "STORE_FIFO_ROWS", "array_latency", "compute_pipeline_depth", "preload_read_cycles", "wbuf_reuse_delay", "read_requests",
           "VECTOR_ITERATIONS", "VECTOR_UNARY", "vector_beats", "vector_acc_reads", "vector_row_cycles",
           "vector_last_read", "vector_cycles"]


#: cycles from a row entering the store path's requantizer to its int8 row leaving it
#: (`hw.requant.Requantizer`)
REQUANT_LATENCY = 10

#: rows of the store unit's output FIFO (`hw.store.StoreUnit.fifo_depth`): enough credits
#: (depth - 1) to cover the round trip of a row, read (2 cycles) + requantizer + FIFO (2) + credit
#: return (1), with one to spare. A STORE's accumulator reads run at most depth - 1 rows ahead of
#: its accepted writes
STORE_FIFO_ROWS = REQUANT_LATENCY + 7


def array_latency(rows: int, cols: int) -> int:
    """`SystolicArray`: a row presented at ``act`` in cycle t leaves ``out`` at t + this (input
    register and skew, ``rows`` PE rows down, ``cols`` columns across, de-skew)."""
    return rows + cols


def compute_pipeline_depth(rows: int, cols: int) -> int:
    """`ComputeUnit`: from a MATMUL row's scratchpad read to its accumulator write (the
    scratchpad's registered read port, then the array)."""
    return array_latency(rows, cols) + 1


def preload_read_cycles(cols: int) -> int:
    """`ComputeUnit`: a PRELOAD dispatched at cycle d reads weight column j at d + 1 + j, so it is
    done reading (and a MATMUL may follow) at d + cols."""
    return cols


def wbuf_reuse_delay(rows: int) -> int:
    """`ComputeUnit` interlock: a PRELOAD into weight buffer b may be dispatched this many cycles
    after the last MATMUL row using b was issued (PE row ``rows - 1`` reads column j of a row
    issued at s at s + 1 + rows + j; the PRELOAD overwrites it at the edge ending d + 3 + j)."""
    return max(0, rows - 2)


def read_requests(addr: int, stride: int, rows: int, row_bytes: int, bus_bytes: int) -> int:
    """`RowReader`: memory read requests of one 2-D command of `rows` rows `stride` bytes apart
    from byte `addr`. A row wider than the bus takes row_bytes / bus_bytes words; a narrower row
    one word, which the reader requests only when it differs from the previous row's word (so
    stride 0, or rows packed in one word, share it). The request side still moves one row per
    cycle, so a command takes at least `rows` cycles whatever it requests."""
    if row_bytes > bus_bytes:
        return rows * (row_bytes // bus_bytes)
    if stride == 0 or rows <= 1:
        return 1 if rows else 0
    if stride >= bus_bytes:
        return rows
    # steps shorter than a word visit every word between the first and the last
    return (addr + (rows - 1) * stride) // bus_bytes - addr // bus_bytes + 1


#: VECTOR operations that are iterative, and the cycles one beat of `vector.lanes` lanes takes
#: (`VectorUnit`: restoring division, one quotient bit per cycle; digit-by-digit square root, one
#: root bit per cycle). Every other operation is pipelined at one beat per cycle.
VECTOR_ITERATIONS = {"RECIP": 32, "ISQRT": 16}
#: VECTOR operations that do not read operand b (its port stays free for the old destination row)
VECTOR_UNARY = frozenset({"ABS", "RSUM", "RMAX", "CSUM", "CMAX", "RECIP", "ISQRT"})


def vector_beats(cols: int, lanes: int) -> int:
    """`VectorUnit`: beats of `lanes` lanes in a row of `cols` lanes."""
    return cols // lanes


def vector_acc_reads(func: str, *, src1_sp: int, src2_sp: int, src2_imm: int, accumulate: int) -> int:
    """`VectorUnit`: accumulator rows one VECTOR row reads: operand a unless it is in the
    scratchpad, operand b unless it is in the scratchpad, an immediate or unused, and the old
    destination row with accumulate."""
    b_acc = func not in VECTOR_UNARY and not src2_sp and not src2_imm
    return int(not src1_sp) + int(b_acc) + int(bool(accumulate))


def vector_row_cycles(cols: int, lanes: int, func: str, acc_reads: int) -> int:
    """`VectorUnit`: cycles between the starts of consecutive rows of one VECTOR. A row is
    `cols / lanes` beats of one cycle (`VECTOR_ITERATIONS[func]` for RECIP and ISQRT). The unit
    has two accumulator read ports: a row that reads three accumulator rows (a, b and the old
    destination) reads the old row in its last beat cycle and takes one cycle more."""
    return vector_beats(cols, lanes) * VECTOR_ITERATIONS.get(func, 1) + (1 if acc_reads > 2 else 0)


def vector_last_read(rows: int, row_cycles: int) -> int:
    """`VectorUnit`: a VECTOR of `rows` rows taken at cycle d reads row r at d + 1 + r * row_cycles,
    so its last source rows are read (and its push_prev given) at d + this."""
    return 1 + (rows - 1) * row_cycles


def vector_cycles(rows: int, row_cycles: int) -> int:
    """`VectorUnit`: a VECTOR of `rows` rows taken at cycle d writes row r (column reductions: the
    one row, after the last) at d + 2 + (r + 1) * row_cycles, from registers a cycle after the row
    is done; so its last write (and push_next) is at d + this. The compute unit may dispatch its
    next instruction in that cycle."""
    return 2 + rows * row_cycles
