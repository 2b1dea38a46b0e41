"""The compute unit: executes PRELOAD, MATMUL, SYNC and (with a vector unit) VECTOR from the compute
queue.

Two engines run side by side, fed in program order from the queue head (at most one instruction
is dispatched per cycle, in the cycle its tokens are taken):

* the **preload engine** reads the ``cols`` weight rows of a PRELOAD from the scratchpad (read
  port ``sp_preload``), one per cycle, and writes them into weight buffer ``wbuf`` of the array;
* the **MATMUL engine** issues one activation row per cycle from the scratchpad (read port
  ``sp_matmul``) into the array, and the results are written (or accumulated) into the
  accumulator. The pipeline never stalls.

Pipeline of a MATMUL row issued (scratchpad address presented) at cycle s, with the array latency
``A = rows + cols`` (see `SystolicArray`, which registers its input)::

    s          scratchpad read (sp_matmul.addr)
    s + 1      row data out of the scratchpad, presented to the array (act, sel)
    s + 2      row enters PE row 0 (PE (i, j) multiplies it at s + 2 + i + j)
    s + A - 1  accumulator read of the destination row (only used with accumulate)
    s + A      its data registered (or forwarded from the write in this cycle)
    s + 1 + A  result row out of the array; accumulator write (data = result, or old + result,
               old forwarded from the previous cycle's write if that was the same row)

so a MATMUL of M rows dispatched at cycle d issues rows at d + 1 ... d + M and writes its last
accumulator row at d + M + 1 + A = d + M + rows + cols + 1. A PRELOAD dispatched at d reads weight
column j at d + 1 + j and writes it into the array at the edge ending d + 3 + j; it is done
reading at d + cols.

Dispatch rules (they make back-to-back tiles bubble-free and every overlap exact):

* MATMUL: when the MATMUL engine is idle or issuing its last row (the next MATMUL's first row
  follows the previous last row in the very next cycle) and the preload engine is not reading or
  is reading its last column. The weights would be in time earlier: a row issued at s' reads
  column j (PE row 0) at s' + 2 + j, after the edge ending d + 3 + j that wrote it, as soon as
  s' >= d + 2. The wait keeps the pushes in program order (a MATMUL's push_prev must not come
  before an older PRELOAD has read its rows); it costs nothing when the PRELOAD overlaps the
  previous MATMUL, the usual case.
* PRELOAD into buffer b: when the preload engine is free and no row that uses buffer b is still
  to read a weight it would overwrite (interlock). Column j of a row issued at s is read at
  s + 2 + i + j for PE row i, and column j is overwritten at the edge ending d + 3 + j, so the
  PRELOAD may be dispatched at d >= s_last + rows - 2, where s_last is the last row issued with
  buffer b. Typical GEMM code preloads the *other* buffer while a MATMUL streams, which is never
  blocked: a PRELOAD is hidden behind any MATMUL of at least ``cols`` rows.
* SYNC: when the MATMUL engine is idle or issuing its last row and the preload engine is idle.
* Token pops happen at dispatch.

Token pushes (compute->load on ``push_prev``, compute->store on ``push_next``):

* MATMUL push_prev in the cycle its last row is read; push_next when its last accumulator row is
  written (carried down the pipeline with that row).
* PRELOAD: a PRELOAD can finish while an older MATMUL is still streaming, so its tokens are held
  until that MATMUL has issued its last row; push_prev then, and push_next travels down the same
  pipeline as the rows (so it arrives after the older MATMUL's last write).
* SYNC: push_prev at dispatch, push_next down the pipeline like a PRELOAD's.

VECTOR (only with a ``vector`` config section; without one a VECTOR word is dropped like any
unknown compute instruction and no vector logic is generated) runs on the `VectorUnit`, in program
order with the engines:

* it is dispatched when the MATMUL engine is idle, the preload engine is idle and the array
  pipeline has drained (the cycle of the last accumulator write is allowed: the vector unit's
  first read comes a cycle later and sees it), so its accumulator reads see every older MATMUL;
* while it runs it drives the scratchpad ports (``sp_matmul`` for operand a, ``sp_preload`` for
  b), ``acc_read`` (operand a / the old destination row) and ``acc_write``, and reads operand b
  on its own accumulator port ``acc_vector``; nothing else uses them then;
* every later compute instruction waits until it is free (in its last write cycle), so the pushes
  leave in program order: push_prev when its last source row is read, push_next with its last
  write (see `hw/vector.py` for the cycle-level contract and `hw.timing.vector_cycles`).

``busy`` is high while either engine or the vector unit works or anything is in the pipeline
(draining); ``vector_busy`` while the vector unit works; ``row_issue`` marks cycles in which an
activation row enters the array pipeline.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.enum import Enum
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolab.isa import Opcode

from .array import SystolicArray
from .buffers import acc_row_layout, sp_row_layout
from .common import as_config, field_width, isa_for_hw
from .timing import array_latency, compute_pipeline_depth, wbuf_reuse_delay
from .vector import VectorUnit, vector_cmd_layout

__all__ = ["ComputeUnit"]


class _PreloadState(Enum, shape=2):
    IDLE = 0
    READ = 1     # reading weight columns
    HOLD = 2     # done reading, tokens held until the older MATMUL has issued its last row


class ComputeUnit(wiring.Component):
    """Executes the compute queue (see the module docstring for timing and dispatch rules).

    Members
    -------
    insn : In(stream.Signature(ISA(cfg).word_layout))
        The compute queue.
    sp_preload, sp_matmul : In(ReadPort.Signature(...))
        Scratchpad read ports.
    acc_read : In(ReadPort.Signature(...))
        Accumulator read port (for accumulate; need not be transparent for ``acc_write``).
    acc_write : In(WritePort.Signature(...))
    acc_vector : In(ReadPort.Signature(...))
        Accumulator read port of the vector unit (operand b); only with a vector unit.
    pop_prev_ok, pop_next_ok : In(1)
        The load->compute / store->compute counters are non-zero.
    pop_prev, pop_next : Out(1)
        Take a load->compute / store->compute token.
    push_prev, push_next : Out(range(3))
        Tokens given to the compute->load / compute->store counters this cycle.
    busy, wait, row_issue, vector_busy : Out(1)
    """

    def __init__(self, cfg):
        self._cfg = as_config(cfg)
        self._isa = isa_for_hw(cfg)
        sp_aw = ceil_log2(cfg.scratchpad.depth)
        acc_aw = ceil_log2(cfg.accumulator.depth)
        acc_port = ReadPort.Signature(addr_width=acc_aw, shape=acc_row_layout(cfg.cols))
        vector = {"acc_vector": In(acc_port)} if cfg.has_vector else {}
        super().__init__({
            "insn": In(stream.Signature(self._isa.word_layout)),
            "sp_preload": In(ReadPort.Signature(addr_width=sp_aw, shape=sp_row_layout(cfg.rows))),
            "sp_matmul": In(ReadPort.Signature(addr_width=sp_aw, shape=sp_row_layout(cfg.rows))),
            "acc_read": In(acc_port),
            "acc_write": In(WritePort.Signature(addr_width=acc_aw, shape=acc_row_layout(cfg.cols))),
            "pop_prev_ok": In(1),
            "pop_next_ok": In(1),
            "pop_prev": Out(1),
            "pop_next": Out(1),
            "push_prev": Out(range(3)),
            "push_next": Out(range(3)),
            "busy": Out(1),
            "wait": Out(1),
            "row_issue": Out(1),
            "vector_busy": Out(1),
            **vector,
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def array_latency(self) -> int:
        """`SystolicArray.latency`: rows + cols (`hw.timing`)."""
        return array_latency(self._cfg.rows, self._cfg.cols)

    @property
    def pipeline_depth(self) -> int:
        """Cycles from a row's scratchpad read to its accumulator write: array latency + 1."""
        return compute_pipeline_depth(self._cfg.rows, self._cfg.cols)

    def elaborate(self, platform):
        m = Module()
        cfg, isa = self._cfg, self._isa
        rows, cols = cfg.rows, cfg.cols
        array = m.submodules.array = SystolicArray(rows=rows, cols=cols)
        depth = self.pipeline_depth

        sp_aw = field_width(isa, "MATMUL", "sp_addr")
        acc_aw = field_width(isa, "MATMUL", "acc_addr")
        rows_w = field_width(isa, "MATMUL", "rows")

        head = self.insn.payload
        hdr = head.header

        # ---- MATMUL engine ---------------------------------------------------------------------
        mm_active = Signal()
        mm_sp = Signal(sp_aw)
        mm_acc = Signal(acc_aw)
        mm_left = Signal(rows_w)
        mm_buf = Signal()
        mm_accum = Signal()
        mm_push_prev = Signal()
        mm_push_next = Signal()
        mm_last = Signal()
        mm_free = Signal()           # a MATMUL or SYNC may be dispatched this cycle
        m.d.comb += [
            mm_last.eq(mm_active & (mm_left == 1)),
            mm_free.eq(~mm_active | mm_last),
            self.row_issue.eq(mm_active),
            self.sp_matmul.addr.eq(mm_sp),
            self.sp_matmul.en.eq(1),
        ]
        with m.If(mm_active):
            m.d.sync += [mm_sp.eq(mm_sp + 1), mm_acc.eq(mm_acc + 1), mm_left.eq(mm_left - 1)]
            with m.If(mm_last):
                m.d.sync += mm_active.eq(0)

        # ---- preload engine --------------------------------------------------------------------
        pl_state = Signal(_PreloadState)
        pl_addr = Signal(sp_aw)
        pl_col = Signal(range(cols))
        pl_buf = Signal()
        pl_push_prev = Signal()
        pl_push_next = Signal()
        pl_last = Signal()           # reading the last column this cycle
        pl_release = Signal()        # the PRELOAD's tokens are pushed this cycle
        pl_free = Signal()           # a new PRELOAD may be dispatched this cycle
        pl_lets_mm = Signal()        # a MATMUL may be dispatched this cycle
        pl_reading = Signal()
        m.d.comb += [
            pl_reading.eq(pl_state == _PreloadState.READ),
            pl_last.eq(pl_reading & (pl_col == cols - 1)),
            pl_release.eq((pl_last | (pl_state == _PreloadState.HOLD)) & mm_free),
            pl_free.eq((pl_state == _PreloadState.IDLE) |
                       (pl_last & (~(pl_push_prev | pl_push_next) | mm_free)) |
                       ((pl_state == _PreloadState.HOLD) & mm_free)),
            pl_lets_mm.eq(~pl_reading | pl_last),
            self.sp_preload.addr.eq(pl_addr),
            self.sp_preload.en.eq(1),
        ]
        with m.If(pl_reading):
            m.d.sync += [pl_addr.eq(pl_addr + 1), pl_col.eq(pl_col + 1)]
        with m.If(pl_last):
            with m.If((pl_push_prev | pl_push_next) & ~mm_free):
                m.d.sync += pl_state.eq(_PreloadState.HOLD)
            with m.Else():
                m.d.sync += pl_state.eq(_PreloadState.IDLE)
        with m.If((pl_state == _PreloadState.HOLD) & mm_free):
            m.d.sync += pl_state.eq(_PreloadState.IDLE)

        # weight write pipeline: read at x, data at x + 1 (registered into w_*), write at x + 2
        p1_valid = Signal()
        p1_col = Signal(range(cols))
        p1_buf = Signal()
        w_en = Signal()
        w_col = Signal(range(cols))
        w_buf = Signal()
        w_data = Signal(sp_row_layout(rows))
        m.d.sync += [
            p1_valid.eq(pl_reading), p1_col.eq(pl_col), p1_buf.eq(pl_buf),
            w_en.eq(p1_valid), w_col.eq(p1_col), w_buf.eq(p1_buf), w_data.eq(self.sp_preload.data),
        ]
        m.d.comb += [array.w_en.eq(w_en), array.w_col.eq(w_col), array.w_buf.eq(w_buf),
                     array.w_data.eq(w_data)]

        # interlock: cycles until a PRELOAD into buffer b may be dispatched
        hold = wbuf_reuse_delay(rows)
        drain = max(0, hold - 1)        # loaded in the last cycle that uses b, so hold cycles in all
        blocked = Signal(2)
        for b in range(2):
            wait_b = Signal(range(drain + 1), name=f"drain_{b}")
            uses_b = Signal(name=f"uses_{b}")
            m.d.comb += uses_b.eq(mm_active & (mm_buf == b))
            with m.If(uses_b):
                m.d.sync += wait_b.eq(drain)
            with m.Elif(wait_b != 0):
                m.d.sync += wait_b.eq(wait_b - 1)
            still = ~mm_last if hold == 0 else 1   # hold 0: free again in that last cycle
            m.d.comb += blocked[b].eq((wait_b != 0) | (uses_b & still))

        # ---- vector unit -------------------------------------------------------------------------
        vec = None
        vec_free = Signal(init=1)    # the vector unit is idle or in its last write
        if cfg.has_vector:
            vec = m.submodules.vector = VectorUnit(
                rows=rows, cols=cols, lanes=cfg.vector.lanes, sp_depth=cfg.scratchpad.depth,
                acc_depth=cfg.accumulator.depth)
            m.d.comb += vec_free.eq(vec.cmd.ready)

        # ---- dispatch ----------------------------------------------------------------------------
        tokens_ok = Signal()
        drained = Signal()
        can = Signal()
        fire = Signal()
        aux_next = Signal()          # a push_next entering the pipeline without a row
        m.d.comb += [
            tokens_ok.eq((~hdr.pop_prev | self.pop_prev_ok) & (~hdr.pop_next | self.pop_next_ok)),
            fire.eq(self.insn.valid & tokens_ok & can),
            self.insn.ready.eq(tokens_ok & can),
            self.pop_prev.eq(fire & hdr.pop_prev),
            self.pop_next.eq(fire & hdr.pop_next),
            self.wait.eq(self.insn.valid & ~tokens_ok),
        ]
        sync_prev = Signal()
        with m.Switch(hdr.opcode):
            with m.Case(Opcode.PRELOAD):
                m.d.comb += can.eq(pl_free & ~blocked.bit_select(head.PRELOAD.wbuf, 1) & vec_free)
                with m.If(fire):
                    m.d.sync += [
                        pl_state.eq(_PreloadState.READ),
                        pl_addr.eq(head.PRELOAD.sp_addr),
                        pl_col.eq(0),
                        pl_buf.eq(head.PRELOAD.wbuf),
                        pl_push_prev.eq(hdr.push_prev),
                        pl_push_next.eq(hdr.push_next),
                    ]
            with m.Case(Opcode.MATMUL):
                m.d.comb += can.eq(mm_free & pl_lets_mm & vec_free)
                mm = head.MATMUL
                with m.If(fire):
                    m.d.sync += [
                        mm_active.eq(1),
                        mm_sp.eq(mm.sp_addr),
                        mm_acc.eq(mm.acc_addr),
                        mm_left.eq(mm.rows),
                        mm_buf.eq(mm.wbuf),
                        mm_accum.eq(mm.accumulate),
                        mm_push_prev.eq(hdr.push_prev),
                        mm_push_next.eq(hdr.push_next),
                    ]
            with m.Case(Opcode.SYNC):
                m.d.comb += [
                    can.eq(mm_free & (pl_state == _PreloadState.IDLE) & vec_free),
                    sync_prev.eq(fire & hdr.push_prev),
                    aux_next.eq(fire & hdr.push_next),
                ]
            if vec is not None:
                with m.Case(Opcode.VECTOR):
                    # the array pipeline drains into the accumulator first (`drained` below)
                    m.d.comb += [can.eq(~mm_active & (pl_state == _PreloadState.IDLE) & drained &
                                        vec.cmd.ready),
                                 vec.cmd.valid.eq(fire)]
            with m.Default():
                m.d.comb += can.eq(1)          # not a compute instruction: drop it
        with m.If(pl_release & pl_push_next):
            m.d.comb += aux_next.eq(1)

        vec_prev = vec.push_prev if vec is not None else 0
        m.d.comb += self.push_prev.eq((mm_last & mm_push_prev) +
                                      (pl_release & pl_push_prev) + sync_prev + vec_prev)

        # ---- row pipeline ------------------------------------------------------------------------
        meta_layout = data.StructLayout({
            "valid": unsigned(1),
            "buf": unsigned(1),
            "acc": unsigned(acc_aw),
            "accum": unsigned(1),
            "push": unsigned(1),     # the MATMUL's push_next, on its last row
            "aux": unsigned(1),      # a PRELOAD's or SYNC's push_next
        })
        stage = [Signal(meta_layout, name=f"stage_{k}") for k in range(depth + 1)]
        m.d.comb += [
            stage[0].valid.eq(mm_active),
            stage[0].buf.eq(mm_buf),
            stage[0].acc.eq(mm_acc),
            stage[0].accum.eq(mm_accum),
            stage[0].push.eq(mm_last & mm_push_next),
            stage[0].aux.eq(aux_next),
        ]
        for k in range(1, depth + 1):
            m.d.sync += stage[k].eq(stage[k - 1])

        # the row comes out of the scratchpad at s + 1 and the array registers it
        m.d.comb += [array.act.eq(self.sp_matmul.data), array.sel.eq(stage[1].buf)]

        # Accumulate: the destination row is read two cycles before it is written (at s + A - 1;
        # a plain block RAM read, not transparent), its data registered at the next
        # edge and old + result written at s + A + 1. A row written in either cycle in between is
        # forwarded from `prev` (the previous cycle's write), so back-to-back accumulation into
        # one row is exact and no adder sits behind the RAM output.
        rd, mid, wr = stage[depth - 2], stage[depth - 1], stage[depth]
        row = acc_row_layout(cols)
        prev_data = Signal(row)
        old = Signal(row)
        # the forwarding decisions, compared a cycle early so the wide muxes get a register
        fwd_mid = Signal()           # prev is the row at `mid`
        fwd_wr = Signal()            # prev is the row at `wr`
        m.d.sync += [fwd_mid.eq(wr.valid & (wr.acc == rd.acc)),
                     fwd_wr.eq(wr.valid & (wr.acc == mid.acc))]
        m.d.comb += [self.acc_read.addr.eq(rd.acc), self.acc_read.en.eq(1)]
        with m.If(fwd_mid):
            m.d.sync += old.eq(prev_data)
        with m.Else():
            m.d.sync += old.eq(self.acc_read.data)
        base = Signal(row)
        with m.If(fwd_wr):
            m.d.comb += base.eq(prev_data)
        with m.Else():
            m.d.comb += base.eq(old)
        m.d.comb += [self.acc_write.addr.eq(wr.acc), self.acc_write.en.eq(wr.valid)]
        for j in range(cols):
            m.d.comb += self.acc_write.data[j].eq(
                Mux(wr.accum, base[j] + array.out[j], array.out[j]))
        m.d.sync += prev_data.eq(self.acc_write.data)
        vec_next = vec.push_next if vec is not None else 0
        m.d.comb += self.push_next.eq((wr.valid & wr.push) + wr.aux + vec_next)

        in_flight = Signal()
        m.d.comb += in_flight.eq(Cat(*(st.valid | st.aux for st in stage[1:])).any())
        # drained: only the last stage (written this cycle) may still hold a row
        m.d.comb += drained.eq(~Cat(*(st.valid | st.aux for st in stage[1:depth])).any())
        vec_active = vec.active if vec is not None else 0
        m.d.comb += [
            self.busy.eq((pl_state != _PreloadState.IDLE) | p1_valid | w_en | mm_active | in_flight |
                         vec_active),
            self.vector_busy.eq(vec_active),
        ]

        if vec is not None:
            # the vector unit's command: the VECTOR fields (cut to the port widths) and its pushes
            for name in vector_cmd_layout(sp_depth=cfg.scratchpad.depth,
                                          acc_depth=cfg.accumulator.depth).members:
                src = getattr(hdr, name) if name in ("push_prev", "push_next") else getattr(head.VECTOR, name)
                m.d.comb += getattr(vec.cmd.payload, name).eq(src)
            # its ports: lent while it runs (nothing else uses them then), data always connected
            m.d.comb += [vec.sp_a.data.eq(self.sp_matmul.data), vec.sp_b.data.eq(self.sp_preload.data),
                         vec.acc_a.data.eq(self.acc_read.data)]
            wiring.connect(m, wiring.flipped(self.acc_vector), vec.acc_b)
            with m.If(vec.active):
                m.d.comb += [
                    self.sp_matmul.addr.eq(vec.sp_a.addr), self.sp_matmul.en.eq(vec.sp_a.en),
                    self.sp_preload.addr.eq(vec.sp_b.addr), self.sp_preload.en.eq(vec.sp_b.en),
                    self.acc_read.addr.eq(vec.acc_a.addr), self.acc_read.en.eq(vec.acc_a.en),
                    self.acc_write.addr.eq(vec.acc_write.addr), self.acc_write.en.eq(vec.acc_write.en),
                    self.acc_write.data.eq(vec.acc_write.data),
                ]
        return m

