"""Building blocks shared by every compiled workload: a memory-image planner and an instruction
emitter that works out the dependency tokens.

The compiler says which scratchpad and accumulator rows each instruction reads and writes; the
builder tracks the last writer and the last readers of every row and sets the token flags
(`pop_*` / `push_*`) that order the load, compute and store queues. Tokens pass in order: the
k-th pop on a link takes the k-th push, so a push is only added when a consumer needs one that
no earlier pop already covers. Instructions in one queue push in program order (the hardware
guarantees it), which is what makes one token stand for everything before it.
"""

from __future__ import annotations

import bisect

import numpy as np

from systolab.isa import TOKEN_FLAGS, VECTOR_OPS, isa_for

from .program import Program, Region, pack_words

__all__ = ["ProgramBuilder", "EmitLimit", "round_up", "standalone"]


#: per token link, the producer's push flag and the consumer's pop flag
_LINK_FLAGS = {"l2c": ("push_next", "pop_prev"), "c2l": ("push_prev", "pop_next"),
               "c2s": ("push_next", "pop_prev"), "s2c": ("push_prev", "pop_next")}


class EmitLimit(Exception):
    """Raised by `ProgramBuilder.emit` at a MATMUL once `matmul_limit` MATMULs or `insn_limit`
    instructions are emitted: a sample of a program's first instructions is all that was asked
    for (`codegen.estimate`)."""


_COLUMN_REDUCTION_CODES = frozenset(VECTOR_OPS[n] for n in ("CSUM", "CMAX"))


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


class ProgramBuilder:
    """Collects regions of the memory image and instructions, then packs them into a `Program`.

    Regions are placed one after another, each aligned to `ALIGN` bytes (at least a bus word),
    so every row the compiler lays out at a multiple of its own size is legal for the DMA.
    """

    ALIGN = 256

    def __init__(self, config, *, matmul_limit: int | None = None, insn_limit: int | None = None):
        self.cfg = config
        #: emit raises `EmitLimit` instead of appending the MATMUL after this many, or after this
        #: many instructions
        self.matmul_limit = matmul_limit
        self.insn_limit = insn_limit
        self.matmuls = 0
        self.isa = isa_for(config)
        self.regions: dict[str, Region] = {}
        self._data: list[tuple[int, np.ndarray]] = []
        self._top = 0
        self._starts: list[int] = []          # region addresses, increasing (`_buckets`)
        self.words: list[int] = []
        self._init_deps()

    # -- memory image ---------------------------------------------------------------------------
    def alloc(self, name: str, shape: tuple[int, int], dtype: str, *, row_stride: int | None = None,
              data: np.ndarray | None = None) -> Region:
        """Reserve a 2-D region (optionally initialised with `data`, zero padded)."""
        if name in self.regions:
            raise ValueError(f"region {name!r} allocated twice")
        rows, cols = shape
        itemsize = np.dtype(dtype).itemsize
        row_stride = row_stride or cols * itemsize
        addr = round_up(self._top, max(self.ALIGN, self.cfg.memory.bus_bytes))
        region = Region(name, addr, (rows, cols), dtype, row_stride)
        self._top = addr + rows * row_stride
        self.regions[name] = region
        self._starts.append(addr)
        if data is not None:
            self._data.append((addr, self._padded(region, data)))
        return region

    @staticmethod
    def _padded(region: Region, data: np.ndarray) -> np.ndarray:
        rows, cols = region.shape
        data = np.asarray(data, dtype=region.dtype)
        itemsize = region.itemsize
        block = np.zeros((rows, region.row_stride // itemsize), dtype=np.dtype(region.dtype).newbyteorder("<"))
        block[:data.shape[0], :data.shape[1]] = data
        return block.view(np.uint8).reshape(-1)

    @property
    def data_bytes(self) -> int:
        """Bytes of the memory image the regions allocated so far take (instructions not included)."""
        return self._top

    # -- instructions ---------------------------------------------------------------------------
    def _init_deps(self) -> None:
        cfg = self.cfg
        # the config's sizes emit needs, read once (properties of a frozen config)
        self._cols, self._sp_row_bytes, self._out_row_bytes = cfg.cols, cfg.sp_row_bytes, cfg.out_row_bytes
        self._insns: list[tuple[str, dict]] = []
        # per buffer row, the index of its last writer and last reader (plain lists: the slices
        # are a few rows long, where a list's max is several times faster than numpy's). Three
        # depths long: an address (< depth) plus a row count (< 2 x depth) never slices past the end.
        self._sp_writer = [-1] * (3 * cfg.scratchpad.depth)
        self._sp_reader = [-1] * (3 * cfg.scratchpad.depth)
        self._acc_writer = [-1] * (3 * cfg.accumulator.depth)
        self._acc_reader = [-1] * (3 * cfg.accumulator.depth)
        self._last_push = {"l2c": -1, "c2l": -1, "c2s": -1, "s2c": -1}
        self._last_store = -1                                  # index of the newest STORE
        self._dram_written = (0, 0)                            # a byte range holding every STORE's bytes
        # (first byte, end, STORE index) of the STOREs into each region (`_buckets`)
        self._writes_in: dict[int, list[tuple[int, int, int]]] = {}
        self._syncs: list[tuple[int, int]] = []                # (last STORE covered, SYNC index)
        self._sync_covered: list[int] = []                     # the first of each, for bisect
        self._boundary_store = -1                              # the last STORE before `begin_layer`
        self._boundary_synced, self._boundary_first = False, -1  # the layer's first wait on it

    def _depend(self, link: str, producer: int, consumer_fields: dict) -> None:
        """Make the instruction being emitted wait for `producer` over `link`, if still needed."""
        if producer <= self._last_push[link]:
            return          # an earlier pop on this link already ordered us after `producer`
        push, pop = _LINK_FLAGS[link]
        self._insns[producer][1][push] = 1
        consumer_fields[pop] = 1
        self._last_push[link] = producer

    def _buckets(self, lo: int, hi: int) -> range:
        """The regions (indices in allocation order; -1 before the first) bytes lo..hi-1 touch."""
        return range(bisect.bisect_right(self._starts, lo) - 1, bisect.bisect_right(self._starts, hi - 1))

    def _last_write(self, lo: int, hi: int) -> int:
        """The newest STORE that wrote any of bytes lo..hi-1, or -1: found among the STOREs
        into the same regions, newest first (a LOAD of a layer's input does not walk past the
        STOREs of the layer's output)."""
        best = -1
        for r in self._buckets(lo, hi):
            for a, b, s in reversed(self._writes_in.get(r, ())):
                if s <= best:
                    break
                if a < hi and lo < b:
                    best = s
                    break
        return best

    def begin_layer(self) -> None:
        """What follows is a new layer of one program: the first LOAD of bytes that an earlier
        layer stored waits for the newest STORE it reads, any later LOAD that needs a newer one
        for every STORE so far (two SYNCs for the layer at most). Waiting for the newest STORE
        each LOAD reads made a SYNC every time a LOAD reached a later part of the previous
        layer's output, and each such SYNC held the load queue until the compute queue got to
        it: no LOAD ahead of compute there (ResNet-18 16x16, stage 1: 25 SYNCs in a conv, 1.7 %
        slower than the layer alone)."""
        self._boundary_store = self._last_store
        self._boundary_synced, self._boundary_first = False, -1

    def emit(self, op: str, **fields: int) -> int:
        """Append an instruction; token flags are added from the buffer rows it touches."""
        idx = len(self._insns)
        if op == "LOAD":
            lo = fields["dram_addr"]
            hi = lo + (fields["rows"] - 1) * fields["dram_stride"] + self._sp_row_bytes
            w_lo, w_hi = self._dram_written
            store = -1 if hi <= w_lo or w_hi <= lo else self._last_write(lo, hi)
            if 0 <= store <= self._boundary_store:
                # written before the current layer (`begin_layer`): the first such LOAD waits
                # for the STORE it needs (the layer starts under the previous one's tail), a
                # later one that needs more for every STORE so far: one more SYNC at most
                if self._boundary_synced:
                    if store > self._boundary_first:
                        store = self._boundary_store
                else:
                    self._boundary_synced, self._boundary_first = True, store
            if store >= 0:
                # external memory written by an earlier STORE: the store queue tells the load queue
                # through a SYNC in the compute queue (the first SYNC that covers it: the SYNCs
                # cover strictly increasing STOREs, as one is added only past the last one)
                k = bisect.bisect_left(self._sync_covered, store)
                sync = self._syncs[k][1] if k < len(self._syncs) else None
                if sync is None:
                    sync_fields: dict = {}
                    self._depend("s2c", store, sync_fields)
                    sync = len(self._insns)
                    self._insns.append(("SYNC", sync_fields))
                    self._syncs.append((store, sync))
                    self._sync_covered.append(store)
                    idx = len(self._insns)
                self._depend("c2l", sync, fields)
            a, n = fields["sp_addr"], fields["rows"]
            self._depend("c2l", max(self._sp_reader[a:a + n]), fields)
            self._sp_writer[a:a + n], self._sp_reader[a:a + n] = [idx] * n, [-1] * n
        elif op in ("PRELOAD", "MATMUL"):
            if op == "MATMUL":
                if self.matmuls == self.matmul_limit or (self.insn_limit is not None
                                                         and idx >= self.insn_limit):
                    raise EmitLimit(self.matmuls)
                self.matmuls += 1
            n = self._cols if op == "PRELOAD" else fields["rows"]
            a = fields["sp_addr"]
            self._depend("l2c", max(self._sp_writer[a:a + n]), fields)
            self._sp_reader[a:a + n] = [idx] * n
            if op == "MATMUL":
                a = fields["acc_addr"]
                self._depend("s2c", max(self._acc_reader[a:a + n]), fields)
                self._acc_writer[a:a + n], self._acc_reader[a:a + n] = [idx] * n, [-1] * n
        elif op == "VECTOR":
            n = fields.get("rows", 1)
            for src in ("src1", "src2"):
                if src == "src2" and fields.get("src2_imm"):
                    continue
                base = fields.get(src, 0)
                span = n if fields.get(f"{src}_stride") else 1
                if fields.get(f"{src}_sp"):
                    self._depend("l2c", max(self._sp_writer[base:base + span]), fields)
                    self._sp_reader[base:base + span] = [idx] * span
                # accumulator sources: the compute queue runs in order, no token needed
            func = fields.get("func", 0)
            out = 1 if func in _COLUMN_REDUCTION_CODES else n
            a = fields["dst"]
            self._depend("s2c", max(self._acc_reader[a:a + out]), fields)
            self._acc_writer[a:a + out], self._acc_reader[a:a + out] = [idx] * out, [-1] * out
        elif op == "STORE":
            a, n = fields["acc_addr"], fields["rows"]
            self._depend("c2s", max(self._acc_writer[a:a + n]), fields)
            self._acc_reader[a:a + n] = [idx] * n
            lo = fields["dram_addr"]
            hi = lo + (fields["rows"] - 1) * fields["dram_stride"] + self._out_row_bytes
            self._last_store = idx
            for r in self._buckets(lo, hi):
                self._writes_in.setdefault(r, []).append((lo, hi, idx))
            w_lo, w_hi = self._dram_written
            self._dram_written = (lo, hi) if w_lo == w_hi else (min(w_lo, lo), max(w_hi, hi))
        self._insns.append((op, fields))
        return idx

    def instructions(self) -> list[tuple[str, dict]]:
        """The instructions emitted so far as `(op, fields)`, token flags included (perf model input)."""
        return self._insns

    def finish(self, outputs: tuple[str, ...], meta: dict) -> Program:
        self.words = self.isa.encode_many(self._insns)
        insn_bytes = self.cfg.insn_bytes
        insn_addr = round_up(self._top, max(self.ALIGN, self.cfg.memory.bus_bytes))
        end = insn_addr + len(self.words) * insn_bytes
        image = np.zeros(round_up(end, self.cfg.memory.bus_bytes), dtype=np.uint8)
        for addr, blob in self._data:
            image[addr:addr + len(blob)] = blob
        image[insn_addr:end] = pack_words(self.words, insn_bytes)
        return Program(self.cfg.compile_hash, list(self.words), image, insn_addr, dict(self.regions),
                       tuple(outputs), meta)


def standalone(cfg, insns) -> list[tuple[str, dict]]:
    """`insns` (part of a longer program) as a program of their own: the token flags found
    again for them alone, their SYNCs and STAMPs left to that (the builder adds the SYNCs they
    need; a STAMP times a place in the longer program)."""
    b = ProgramBuilder(cfg)
    for op, fields in insns:
        if op not in ("SYNC", "STAMP"):
            b.emit(op, **{k: v for k, v in fields.items() if k not in TOKEN_FLAGS})
    return b.instructions()
