"""The systolab ISA, generated from `isa/spec.yaml` for a given accelerator config.

One spec, many artifacts: `ISA(config)` gives the field layouts (Python and Amaranth), the
encoder/decoder and the text assembler/disassembler; `docs.py` renders `docs/isa.md` and the C
header from the same object. Nothing here re-types a field width.

    >>> isa = ISA(cfg)
    >>> word = isa.encode("MATMUL", sp_addr=0, acc_addr=0, rows=64, wbuf=0, accumulate=0)
    >>> isa.disassemble([word])
    'MATMUL sp_addr=0 acc_addr=0 rows=64 wbuf=0 accumulate=0'
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from typing import Iterable, Mapping

import yaml

from systolab.errors import ConfigError, UserError

__all__ = ["SPEC", "WORD_BITS", "QUEUES", "TOKEN_FLAGS", "Field", "Format", "Instruction", "ISA",
           "AsmError", "EncodeError", "check_fits", "Opcode", "VECTOR_OPS", "VectorOp", "ENUMS"]


def _load_spec() -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath("spec.yaml").read_text())


SPEC: dict = _load_spec()
WORD_BITS: int = SPEC["word_bits"]
QUEUES: tuple[str, ...] = tuple(SPEC["queues"])
#: header flags that move dependency tokens, in spec order
TOKEN_FLAGS: tuple[str, ...] = tuple(f["name"] for f in SPEC["header"] if f["name"] != "opcode")
_OPCODE_WIDTH: int = next(f["width"] for f in SPEC["header"] if f["name"] == "opcode")


def _amaranth_opcode_enum():
    from amaranth.lib.enum import Enum

    def body(ns):
        for insn in SPEC["instructions"]:
            ns[insn["name"]] = insn["opcode"]
    return types.new_class("Opcode", (Enum,), {"shape": _OPCODE_WIDTH}, body)


#: the opcodes as an Amaranth enum (`lib.enum.Enum`), for `with m.Switch(insn.header.opcode)`
Opcode = _amaranth_opcode_enum()

#: enumerated fields: spec table name -> {member name: code} (`VECTOR.func` uses `vector_ops`)
ENUMS: dict[str, dict[str, int]] = {
    f["enum"]: {e["name"]: e["code"] for e in SPEC[f["enum"]]}
    for insn in SPEC["instructions"] for f in insn["fields"] if "enum" in f}
#: the vector unit's operations, name -> code (`VECTOR.func`)
VECTOR_OPS: dict[str, int] = ENUMS["vector_ops"]


def _amaranth_enum(name: str, table: str, width: int):
    from amaranth.lib.enum import Enum
    members = ENUMS[table]
    return types.new_class(name, (Enum,), {"shape": width}, lambda ns: ns.update(members))


#: `VECTOR.func` as an Amaranth enum, for `with m.Switch(insn.VECTOR.func)`
VectorOp = _amaranth_enum("VectorOp", "vector_ops",
                          next(f["width"] for i in SPEC["instructions"] for f in i["fields"]
                               if f.get("enum") == "vector_ops"))


class EncodeError(UserError):
    """A field value that does not fit, an unknown field, or a token flag a queue cannot use."""


class AsmError(UserError):
    """A line of assembly that does not parse."""


@dataclass(frozen=True)
class Field:
    name: str
    width: int
    offset: int
    doc: str
    #: how the width was chosen, as written in the spec (an int or a width name)
    width_spec: str
    #: the spec table of an enumerated field (`vector_ops`), else None
    enum: str | None = None

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    @property
    def bits(self) -> str:
        hi = self.offset + self.width - 1
        return f"[{hi}]" if self.width == 1 else f"[{hi}:{self.offset}]"


@dataclass(frozen=True)
class Format:
    """One instruction's layout for one config: header fields then its own, LSB first."""

    name: str
    opcode: int
    queue: str
    doc: str
    semantics: str
    header: tuple[Field, ...]
    fields: tuple[Field, ...]          # the instruction's own fields (no header)

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return self.header + self.fields

    @property
    def used_bits(self) -> int:
        last = self.all_fields[-1]
        return last.offset + last.width

    @property
    def allowed_tokens(self) -> tuple[str, ...]:
        """The token flags this instruction's queue can use (no neighbour, no token)."""
        i = QUEUES.index(self.queue)
        allowed = []
        if i > 0:
            allowed += ["pop_prev", "push_prev"]
        if i < len(QUEUES) - 1:
            allowed += ["pop_next", "push_next"]
        return tuple(t for t in TOKEN_FLAGS if t in allowed)


class Instruction:
    """A decoded instruction: `op`, the token flags and the fields, as attributes."""

    __slots__ = ("op", "values")

    def __init__(self, op: str, values: Mapping[str, int]):
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "values", dict(values))

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("Instruction is immutable")

    def __eq__(self, other):
        return isinstance(other, Instruction) and (self.op, self.values) == (other.op, other.values)

    def __hash__(self):
        return hash((self.op, tuple(sorted(self.values.items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"Instruction({self.op}, {args})"


def _width_from_config(spec: Mapping, config) -> int:
    (kind, key), = spec.items()
    if kind == "clog2_max":
        return max(1, math.ceil(math.log2(max(config.get(k) for k in key))))
    value = config.get(key)
    if kind == "clog2":
        return max(1, math.ceil(math.log2(value)))
    if kind == "clog2_plus1":
        return math.ceil(math.log2(value + 1))
    raise ValueError(f"isa/spec.yaml: unknown width rule {kind!r}")


class ISA:
    """The instruction set laid out for one `HardwareConfig`."""

    def __init__(self, config):
        self.config = config
        self.widths = {name: _width_from_config(rule, config) for name, rule in SPEC["widths"].items()}
        self.formats: dict[str, Format] = {}
        for insn in SPEC["instructions"]:
            offset = 0
            header = []
            for f in SPEC["header"]:
                header.append(Field(f["name"], f["width"], offset, f["doc"], str(f["width"])))
                offset += f["width"]
            fields = []
            for f in insn["fields"]:
                w = f["width"] if isinstance(f["width"], int) else self.widths[f["width"]]
                fields.append(Field(f["name"], w, offset, f["doc"], str(f["width"]), f.get("enum")))
                offset += w
            self.formats[insn["name"]] = Format(insn["name"], insn["opcode"], insn["queue"],
                                                insn["doc"].strip(), insn["semantics"].rstrip(),
                                                tuple(header), tuple(fields))
        self.by_opcode = {fmt.opcode: fmt for fmt in self.formats.values()}
        #: per instruction, for `encode`: (opcode, field names, [(name, offset, max value)], the
        #: token flags it has but may not set)
        self._encoding = {name: (fmt.opcode, frozenset(f.name for f in fmt.all_fields[1:]),
                                 tuple((f.name, f.offset, f.mask) for f in fmt.all_fields[1:]),
                                 tuple(f.name for f in fmt.all_fields if f.name in TOKEN_FLAGS
                                       and f.name not in fmt.allowed_tokens))
                          for name, fmt in self.formats.items()}

    # -- checks ---------------------------------------------------------------------------------
    def overflows(self) -> list[Format]:
        return [fmt for fmt in self.formats.values() if fmt.used_bits > WORD_BITS]

    # -- encode / decode ------------------------------------------------------------------------
    def encode(self, op: str, **values: int) -> int:
        """The instruction word of `op` with `values` (missing fields are 0); an `EncodeError`
        naming the instruction, the field and its range for anything that does not fit."""
        enc = self._encoding.get(op)
        if enc is None:
            raise EncodeError(f"unknown instruction {op!r}; valid instructions are {', '.join(self.formats)}")
        opcode, known, fields, disallowed = enc
        if not known.issuperset(values):
            self._encode_error(op, values)
        word = opcode
        for name, offset, top in fields:       # the hot path of the compiler: checks stay cheap
            v = values.get(name, 0)
            if v.__class__ is not int or not 0 <= v <= top:
                if isinstance(v, bool):
                    v = int(v)
                else:
                    self._encode_error(op, values)
            word |= v << offset
        if not values.get("rows", 1) or any(values.get(t) for t in disallowed):
            self._encode_error(op, values)
        return word

    def encode_many(self, insns) -> list[int]:
        """The words of `(op, fields)` pairs: `encode` of each, with the same checks and errors,
        in a loop made for the millions of instructions of a network."""
        tables = {op: (opcode, {name: (offset, top) for name, offset, top in fields}, frozenset(disallowed))
                  for op, (opcode, _, fields, disallowed) in self._encoding.items()}
        words = []
        append = words.append
        for op, values in insns:
            try:
                word, fields, disallowed = tables[op]
                for name, v in values.items():
                    offset, top = fields[name]
                    if v.__class__ is not int or not 0 <= v <= top:
                        raise ValueError
                    word |= v << offset
                # a disallowed token flag is rarely even present: the set test first
                if not values.get("rows", 1) or (not disallowed.isdisjoint(values)
                                                 and any(values.get(t) for t in disallowed)):
                    raise ValueError
            except (KeyError, ValueError):
                append(self.encode(op, **values))      # the exact error (or a bool field: fine)
                continue
            append(word)
        return words

    def _encode_error(self, op: str, values: Mapping) -> None:
        """Raise the `EncodeError` that says what is wrong with `values` (the slow, exact path)."""
        fmt = self.formats[op]
        known = {f.name for f in fmt.all_fields} - {"opcode"}
        for name in values:
            if name not in known:
                raise EncodeError(f"{op} has no field {name!r}; its fields are "
                                  f"{', '.join(f.name for f in fmt.fields)} and the token flags "
                                  f"{', '.join(fmt.allowed_tokens) or '(none)'}")
        for f in fmt.all_fields[1:]:
            v = values.get(f.name, 0)
            if isinstance(v, bool):
                v = int(v)
            if not isinstance(v, int) or not 0 <= v <= f.mask:
                raise EncodeError(f"{op}.{f.name} must be an integer from 0 to {f.mask} "
                                  f"({f.width} bits), not {v!r}")
            if f.name in TOKEN_FLAGS and v and f.name not in fmt.allowed_tokens:
                raise EncodeError(f"{op} runs on the {fmt.queue} queue, which has no "
                                  f"{'previous' if f.name.endswith('prev') else 'next'} queue: "
                                  f"{f.name} must be 0")
            if f.name == "rows" and v == 0:
                raise EncodeError(f"{op}.rows must be at least 1, not 0")
        raise AssertionError(f"no error found in {op} {dict(values)}")

    def decode(self, word: int) -> Instruction:
        opcode = word & ((1 << _OPCODE_WIDTH) - 1)
        fmt = self.by_opcode.get(opcode)
        if fmt is None:
            raise EncodeError(f"word {word:#034x} has opcode {opcode}, which is not an instruction "
                              f"(valid opcodes: {', '.join(f'{f.opcode}={f.name}' for f in self.formats.values())})")
        return Instruction(fmt.name, {f.name: (word >> f.offset) & f.mask for f in fmt.all_fields[1:]})

    def encode_insn(self, insn: Instruction) -> int:
        return self.encode(insn.op, **insn.values)

    # -- text assembly --------------------------------------------------------------------------
    def disassemble_one(self, word: int) -> str:
        insn = self.decode(word)
        fmt = self.formats[insn.op]
        parts = [insn.op]
        for f in fmt.fields:
            v = insn.values[f.name]
            if f.enum:
                names = {code: n for n, code in ENUMS[f.enum].items()}
                parts.append(f"{f.name}={names.get(v, v)}")
            else:
                parts.append(f"{f.name}={v:#x}" if f.width >= 24 and f.name.endswith("addr") else f"{f.name}={v}")
        parts += [t for t in TOKEN_FLAGS if insn.values[t]]
        return " ".join(parts)

    def disassemble(self, words: Iterable[int]) -> str:
        return "\n".join(self.disassemble_one(w) for w in words)

    _INT = re.compile(r"^(0x[0-9a-fA-F_]+|0b[01_]+|[0-9_]+)$")

    def assemble(self, text: str, *, source: str = "<asm>") -> list[int]:
        """Assemble text (one instruction per line, `#` comments) into instruction words.

        A line is `OP field=value ... [pop_prev] [pop_next] [push_prev] [push_next]`; fields left
        out are 0. Errors name the source and line.
        """
        words = []
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            op, *args = line.split()
            values = {}
            for arg in args:
                if arg in TOKEN_FLAGS:
                    values[arg] = 1
                    continue
                key, eq, val = arg.partition("=")
                members = self._enum_members(op, key)
                if eq and val in members:
                    values[key] = members[val]
                    continue
                if not eq or not self._INT.match(val):
                    raise AsmError(f"{source}:{lineno}: expected field=integer or a token flag "
                                   f"({', '.join(TOKEN_FLAGS)}), not {arg!r}")
                values[key] = int(val, 0)
            try:
                words.append(self.encode(op, **values))
            except EncodeError as e:
                raise AsmError(f"{source}:{lineno}: {e}") from None
        return words

    def _enum_members(self, op: str, field: str) -> dict[str, int]:
        fmt = self.formats.get(op)
        f = next((f for f in fmt.fields if f.name == field), None) if fmt else None
        return ENUMS[f.enum] if f is not None and f.enum else {}

    # -- Amaranth layouts (for the hardware decoder) --------------------------------------------
    @cached_property
    def header_layout(self):
        return self._flexible(next(iter(self.formats.values())).header)

    def layout(self, op: str):
        """The `data.FlexibleLayout` (WORD_BITS wide) of one instruction, header included."""
        return self._flexible(self.formats[op].all_fields)

    @cached_property
    def word_layout(self):
        """A `data.UnionLayout`: `.header` and one view per instruction over the same word."""
        from amaranth.lib import data
        return data.UnionLayout({"header": self.header_layout,
                                 **{op: self.layout(op) for op in self.formats}})

    def _flexible(self, fields):
        from amaranth.lib import data
        return data.FlexibleLayout(WORD_BITS, {
            f.name: data.Field(Opcode if f.name == "opcode" else _AMARANTH_ENUMS.get(f.enum, f.width), f.offset)
            for f in fields})


_AMARANTH_ENUMS = {"vector_ops": VectorOp}


@lru_cache(maxsize=64)
def isa_for(config) -> ISA:
    return ISA(config)


def check_fits(config) -> None:
    """Reject a config whose buffers the instruction word cannot address."""
    isa = ISA(config)
    bad = isa.overflows()
    if not bad:
        return
    fmt = bad[0]
    used = {f.width_spec for f in fmt.fields}
    for key in ("accumulator.depth", "scratchpad.depth"):
        rules = {name for name, rule in SPEC["widths"].items()
                 if any(key == v or (isinstance(v, list) and key in v) for v in rule.values())}
        if not used & rules:
            continue
        section, field = key.split(".")
        limit = config.get(key)
        while limit > 1:
            smaller = dataclasses.replace(getattr(config, section), **{field: limit})
            if ISA(dataclasses.replace(config, **{section: smaller})).formats[fmt.name].used_bits <= WORD_BITS:
                break
            limit //= 2
        raise ConfigError(f"{config.source}: {key} must be at most {limit} for this ISA: with "
                          f"{config.get(key)} rows a {fmt.name} instruction needs {fmt.used_bits} bits "
                          f"of the {WORD_BITS}-bit instruction word")
    raise ConfigError(f"{config.source}: a {fmt.name} instruction needs {fmt.used_bits} bits, more "
                      f"than the {WORD_BITS}-bit instruction word")
