"""Building blocks shared by every compiled workload: a memory-image planner and an instruction
emitter that checks the ISA as it goes."""

from __future__ import annotations

import numpy as np

from systolab.isa import isa_for

from .program import Program, Region

__all__ = ["ProgramBuilder", "round_up"]


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


class ProgramBuilder:
    """Collects regions of the memory image and instructions, then packs them into a `Program`.

    Regions are placed one after another, each aligned to `ALIGN` bytes (at least a bus word),
    so every row the compiler lays out at a multiple of its own size is legal for the DMA.
    """

    ALIGN = 256

    def __init__(self, config):
        self.cfg = config
        self.isa = isa_for(config)
        self.regions: dict[str, Region] = {}
        self._data: list[tuple[int, np.ndarray]] = []
        self._top = 0
        self.words: list[int] = []

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

    # -- instructions ---------------------------------------------------------------------------
    def emit(self, op: str, **fields: int) -> None:
        self.words.append(self.isa.encode(op, **fields))

    def finish(self, outputs: tuple[str, ...], meta: dict) -> Program:
        insn_bytes = self.cfg.insn_bytes
        insn_addr = round_up(self._top, max(self.ALIGN, self.cfg.memory.bus_bytes))
        end = insn_addr + len(self.words) * insn_bytes
        image = np.zeros(round_up(end, self.cfg.memory.bus_bytes), dtype=np.uint8)
        for addr, blob in self._data:
            image[addr:addr + len(blob)] = blob
        for i, w in enumerate(self.words):
            image[insn_addr + i * insn_bytes: insn_addr + (i + 1) * insn_bytes] = \
                np.frombuffer(w.to_bytes(insn_bytes, "little"), dtype=np.uint8)
        return Program(self.cfg.hash, list(self.words), image, insn_addr, dict(self.regions),
                       tuple(outputs), meta)
