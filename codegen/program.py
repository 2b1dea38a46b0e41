"""The program bundle: what the compiler emits and every simulator runs.

A `Program` is self-describing: the instruction words, a memory image holding them and the data
(inputs, weights, requantization parameters), named regions that say where each tensor lives and
how it is laid out, which regions are outputs, and the hash of the config it was compiled for.
Running or loading a bundle on a different config is an error, not a wrong answer.

On disk a bundle is one `.npz` file (`Program.save` / `Program.load`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from systolab.errors import UserError

__all__ = ["Region", "Program", "BundleError", "pack_words"]

_FORMAT = "systolab-program/1"


class BundleError(UserError):
    pass


@dataclass(frozen=True)
class Region:
    """A 2-D tensor in external memory: `shape[0]` rows, `row_stride` bytes apart."""

    name: str
    addr: int
    shape: tuple[int, int]
    dtype: str            # "int8" or "int32" (little-endian)
    row_stride: int

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes from the first byte of the region to the last."""
        rows, cols = self.shape
        return (rows - 1) * self.row_stride + cols * self.itemsize if rows else 0

    def read(self, mem: np.ndarray) -> np.ndarray:
        rows, cols = self.shape
        out = np.empty(self.shape, dtype=self.dtype)
        for r in range(rows):
            start = self.addr + r * self.row_stride
            out[r] = mem[start:start + cols * self.itemsize].view(f"<{np.dtype(self.dtype).str[1:]}")
        return out

    def write(self, mem: np.ndarray, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != self.shape:
            raise BundleError(f"region {self.name} has shape {self.shape}, not {value.shape}")
        raw = value.astype(np.dtype(self.dtype).newbyteorder("<"))
        for r in range(self.shape[0]):
            start = self.addr + r * self.row_stride
            mem[start:start + raw[r].nbytes] = raw[r].view(np.uint8)

    def to_json(self) -> dict:
        return {"name": self.name, "addr": self.addr, "shape": list(self.shape),
                "dtype": self.dtype, "row_stride": self.row_stride}

    @classmethod
    def from_json(cls, d: dict) -> "Region":
        return cls(d["name"], d["addr"], tuple(d["shape"]), d["dtype"], d["row_stride"])


def pack_words(words: list[int], insn_bytes: int) -> np.ndarray:
    """Instruction words as they lie in memory: `insn_bytes` little-endian bytes each (uint8)."""
    return np.frombuffer(b"".join(w.to_bytes(insn_bytes, "little") for w in words), dtype=np.uint8)


@dataclass
class Program:
    """A compiled program for one accelerator config."""

    config_hash: str
    words: list[int]                 # instruction words, WORD_BITS each
    image: np.ndarray                # uint8 memory image from address 0 (instructions included)
    insn_addr: int                   # byte address of the first instruction in the image
    regions: dict[str, Region]
    outputs: tuple[str, ...]         # names of the regions that hold results
    meta: dict = field(default_factory=dict)   # workload description, macs, tiling, ...

    @property
    def insn_count(self) -> int:
        return len(self.words)

    @property
    def macs(self) -> int:
        return int(self.meta.get("macs", 0))

    def check_compiled_for(self, config) -> None:
        if config.compile_hash != self.config_hash:
            raise BundleError(f"program was compiled for config {self.config_hash}, not for "
                              f"{config.source} ({config.compile_hash}); recompile it for this config")

    def memory(self, config) -> np.ndarray:
        """A full external-memory array for `config` holding the image (zeros elsewhere)."""
        self.check_compiled_for(config)
        config = config.sized_for(len(self.image))
        if len(self.image) > config.mem_bytes:
            raise BundleError(f"program needs {len(self.image)} bytes of external memory; "
                              f"memory.size_kib is {config.memory.size_kib} ({config.mem_bytes} bytes)")
        mem = np.zeros(config.mem_bytes, dtype=np.uint8)
        mem[:len(self.image)] = self.image
        return mem

    def read_outputs(self, mem: np.ndarray) -> dict[str, np.ndarray]:
        return {name: self.regions[name].read(mem) for name in self.outputs}

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        header = {"format": _FORMAT, "config_hash": self.config_hash, "insn_addr": self.insn_addr,
                  "regions": [r.to_json() for r in self.regions.values()],
                  "outputs": list(self.outputs), "meta": self.meta}
        words = np.array([[(w >> (64 * i)) & (2**64 - 1) for i in range(2)] for w in self.words],
                         dtype=np.uint64).reshape(-1, 2)
        with open(path, "wb") as f:
            np.savez_compressed(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                                words=words, image=self.image)

    @classmethod
    def load(cls, path: str | Path, config=None) -> "Program":
        try:
            with np.load(path) as z:
                header = json.loads(bytes(z["header"]).decode())
                words = [int(lo) | (int(hi) << 64) for lo, hi in z["words"]]
                image = z["image"].copy()
        except (OSError, KeyError, ValueError) as e:
            raise BundleError(f"{path}: not a systolab program bundle ({e})") from None
        if header.get("format") != _FORMAT:
            raise BundleError(f"{path}: bundle format {header.get('format')!r}, expected {_FORMAT!r}")
        prog = cls(header["config_hash"], words, image, header["insn_addr"],
                   {r["name"]: Region.from_json(r) for r in header["regions"]},
                   tuple(header["outputs"]), header["meta"])
        if config is not None:
            try:
                prog.check_compiled_for(config)
            except BundleError as e:
                raise BundleError(f"{path}: {e}") from None
        return prog
