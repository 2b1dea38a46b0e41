"""On-chip buffers: the scratchpad (int8 rows) and the accumulator (int32 rows), on `lib.memory`.

Both are plain synchronous memories: a write is done at the clock edge, a read port's ``data`` is
the row at the ``addr`` of the previous cycle (registered output, block RAM friendly).

* `Scratchpad`: ``scratchpad.depth`` rows of ``rows`` int8 (element i = K index i). One write port
  (load unit) and two independent read ports, ``read_preload`` and ``read_matmul``, so a PRELOAD
  can read weights while a MATMUL streams activations.
* `Accumulator`: ``accumulator.depth`` rows of ``cols`` int32. One write port (compute unit), a read
  port ``read_acc`` for the compute unit's read-modify-write (not transparent: the compute unit
  forwards rows it has just written itself, which keeps a bypass multiplexer off the block RAM
  output) and a read port ``read_store`` for the store unit; with ``vector=True`` a third read
  port ``read_vector`` for the vector unit's operand b (each read port is one more copy of the
  block RAM on an FPGA).

The ports are exposed as members with the `lib.memory` port signatures, so a unit holds
``In(ReadPort.Signature(...))`` and is connected with `wiring.connect`.
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2
from .common import check_pow2

__all__ = ["Scratchpad", "Accumulator", "sp_row_layout", "acc_row_layout"]


def sp_row_layout(rows: int) -> data.ArrayLayout:
    """A scratchpad row: `rows` int8."""
    return data.ArrayLayout(signed(8), rows)


def acc_row_layout(cols: int) -> data.ArrayLayout:
    """An accumulator row: `cols` int32."""
    return data.ArrayLayout(signed(32), cols)


def _check_depth(depth):
    check_pow2("depth", depth, 2)


def _check_lanes(name, value):
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


class Scratchpad(wiring.Component):
    """`depth` rows of `rows` int8; write port ``write``, read ports ``read_preload`` and
    ``read_matmul`` (not transparent: the dependency tokens keep reads and writes of one row
    apart)."""

    def __init__(self, *, rows: int, depth: int):
        _check_lanes("rows", rows)
        _check_depth(depth)
        self._rows = rows
        self._depth = depth
        layout = sp_row_layout(rows)
        aw = ceil_log2(depth)
        super().__init__({
            "write": Out(WritePort.Signature(addr_width=aw, shape=layout)),
            "read_preload": Out(ReadPort.Signature(addr_width=aw, shape=layout)),
            "read_matmul": Out(ReadPort.Signature(addr_width=aw, shape=layout)),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=sp_row_layout(self._rows), depth=self._depth, init=[])
        wiring.connect(m, wiring.flipped(self.write), mem.write_port())
        wiring.connect(m, wiring.flipped(self.read_preload), mem.read_port())
        wiring.connect(m, wiring.flipped(self.read_matmul), mem.read_port())
        return m


class Accumulator(wiring.Component):
    """`depth` rows of `cols` int32; write port ``write``, read ports ``read_acc`` and
    ``read_store`` and, with `vector`, ``read_vector`` (none transparent)."""

    def __init__(self, *, cols: int, depth: int, vector: bool = False):
        _check_lanes("cols", cols)
        _check_depth(depth)
        if not isinstance(vector, bool):
            raise TypeError(f"vector must be a bool, not {vector!r}")
        self._cols = cols
        self._depth = depth
        self._vector = vector
        layout = acc_row_layout(cols)
        aw = ceil_log2(depth)
        read = Out(ReadPort.Signature(addr_width=aw, shape=layout))
        super().__init__({
            "write": Out(WritePort.Signature(addr_width=aw, shape=layout)),
            "read_acc": read,
            "read_store": read,
            **({"read_vector": read} if vector else {}),
        })

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def vector(self) -> bool:
        """The accumulator has the vector unit's read port ``read_vector``."""
        return self._vector

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=acc_row_layout(self._cols), depth=self._depth, init=[])
        wiring.connect(m, wiring.flipped(self.write), mem.write_port())
        wiring.connect(m, wiring.flipped(self.read_acc), mem.read_port())
        wiring.connect(m, wiring.flipped(self.read_store), mem.read_port())
        if self._vector:
            wiring.connect(m, wiring.flipped(self.read_vector), mem.read_port())
        return m
