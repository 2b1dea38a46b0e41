"""The ISA as an MLIR dialect, `systolab`, generated from `isa/spec.yaml` with xDSL's IRDL-style
Python API, and the MLIR text of compiled programs.

One operation per instruction of the spec (`systolab.load`, `systolab.preload`, `systolab.matmul`,
`systolab.store`, `systolab.sync`), each instruction field a property typed as an unsigned integer
of the field's width for the config (`rows = 8 : ui13`), so the dialect follows the config the way
the encoder does. Dependency tokens are SSA values of type `!systolab.token<load, compute>`: an
instruction that pushes a token towards a neighbouring queue defines one, the instruction that pops
it (the k-th pop on a link takes the k-th push, as the hardware counters do) uses it:

    %t0 = systolab.load {dram_addr = 0 : ui32, dram_stride = 8 : ui24, rows = 8 : ui13, sp_addr = 0 : ui12} push_next
    systolab.preload pop_prev(%t0) {sp_addr = 0 : ui12, wbuf = 0 : ui1}

A program is a `builtin.module` holding its instructions in program order, with the config hash
and source as module attributes. `program_to_mlir` prints one, `mlir_to_words` parses it back
(checked against the config it was compiled for) into the same instruction words.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Iterable, Sequence

from xdsl.dialects.builtin import IntegerAttr, IntegerType, ModuleOp, Signedness, StringAttr
from xdsl.ir import Block, Dialect, ParametrizedAttribute, Region, TypeAttribute
from xdsl.irdl import (AttrSizedOperandSegments, AttrSizedResultSegments, IRDLOperation, irdl_attr_definition,
                       irdl_op_definition, opt_operand_def, opt_result_def, prop_def)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError, VerifyException

from systolab.errors import UserError

from . import QUEUES, TOKEN_FLAGS, EncodeError, isa_for

__all__ = ["MlirProgramError", "new_context", "fresh_builtin", "systolab_dialect", "TokenType",
           "program_to_mlir", "programs_to_mlir", "insns_to_mlir", "mlir_to_words", "mlir_to_programs", "parse_module", "LINKS", "render_dialect"]


class MlirProgramError(UserError):
    """MLIR text that is not a systolab program for this config."""


#: the four token links, (from queue, to queue), and the header flags that move a token over each
LINKS: dict[tuple[str, str], tuple[str, str]] = {}
for _i, _q in enumerate(QUEUES):
    if _i + 1 < len(QUEUES):
        LINKS[(_q, QUEUES[_i + 1])] = ("push_next", "pop_prev")
        LINKS[(QUEUES[_i + 1], _q)] = ("push_prev", "pop_next")


def _neighbour(queue: str, flag: str) -> str:
    i = QUEUES.index(queue)
    return QUEUES[i - 1] if flag.endswith("prev") else QUEUES[i + 1]


# -- xDSL context ----------------------------------------------------------------------------------
def fresh_builtin():
    """The builtin dialect with its own resource store.

    xDSL keeps `dense_resource` blobs in the builtin dialect's interface object, which every
    context shares; a second parse of a file then renames its resources and finds no data. A
    context built by `new_context` gets this copy instead.
    """
    from xdsl.dialect_interfaces.op_asm import OpAsmDialectInterface
    from xdsl.dialects.builtin import Builtin
    from xdsl.ir import Dialect

    return Dialect("builtin", list(Builtin.operations), list(Builtin.attributes), [OpAsmDialectInterface()])


def new_context(*dialects):
    """An xDSL context with every dialect xDSL ships (loaded lazily), a fresh builtin dialect and
    `dialects` (replacing xDSL's dialect of the same name)."""
    from xdsl.context import Context
    from xdsl.dialects import get_all_dialects

    ctx = Context()
    own = {d.name: d for d in (fresh_builtin(), *dialects)}
    for name, make in get_all_dialects().items():
        if name not in own:
            ctx.register_dialect(name, make)
    for name, d in own.items():
        ctx.register_dialect(name, lambda d=d: d)
    return ctx


# -- the dialect -----------------------------------------------------------------------------------
@irdl_attr_definition
class TokenType(ParametrizedAttribute, TypeAttribute):
    """A dependency token passed from queue `src` to its neighbour `dst`."""

    name = "systolab.token"
    src: StringAttr
    dst: StringAttr

    @classmethod
    def parse_parameters(cls, parser: AttrParser):
        with parser.in_angle_brackets():
            src = parser.parse_identifier()
            parser.parse_punctuation(",")
            dst = parser.parse_identifier()
        return (StringAttr(src), StringAttr(dst))

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.src.data}, {self.dst.data}>")

    def verify(self) -> None:
        if (self.src.data, self.dst.data) not in LINKS:
            raise VerifyException(f"no token link from {self.src.data} to {self.dst.data}; links: "
                                  + ", ".join(f"{a}->{b}" for a, b in LINKS))


def _instruction_op(fmt, field_types: dict):
    """The xDSL operation class of one instruction format: a property per field, optional token
    operands (pops) and results (pushes), custom syntax `[pop_*(%t)] {fields} [push_*]`."""
    pops = [t for t in TOKEN_FLAGS if t.startswith("pop") and t in fmt.allowed_tokens]
    pushes = [t for t in TOKEN_FLAGS if t.startswith("push") and t in fmt.allowed_tokens]
    queue = fmt.queue
    names = [f.name for f in fmt.fields]

    def in_type(flag):
        return TokenType(StringAttr(_neighbour(queue, flag)), StringAttr(queue))

    def out_type(flag):
        return TokenType(StringAttr(queue), StringAttr(_neighbour(queue, flag)))

    body = {"name": f"systolab.{fmt.name.lower()}", "__doc__": f"{fmt.name} ({queue} queue): {fmt.doc}",
            "irdl_options": (AttrSizedOperandSegments(as_property=True), AttrSizedResultSegments(as_property=True)),
            "FORMAT": fmt, "__annotations__": {"FORMAT": ClassVar[object]}}
    for f in fmt.fields:
        body[f.name] = prop_def(IntegerAttr)
    for t in pops:
        body[t] = opt_operand_def(TokenType)
    for t in pushes:
        body[t] = opt_result_def(TokenType)

    def build(cls, values: dict, popped: dict, pushed: Sequence[str]):
        props = {n: IntegerAttr(int(values.get(n, 0)), field_types[n]) for n in names}
        return cls(operands=[[popped[t]] if t in popped else [] for t in pops],
                   result_types=[[out_type(t)] if t in pushed else [] for t in pushes],
                   properties=props)

    def flags(self) -> dict:
        """The instruction's fields and token flags as the encoder takes them."""
        out = {n: self.properties[n].value.data for n in names}
        for t in pops:
            out[t] = int(getattr(self, t) is not None)
        for t in pushes:
            out[t] = int(getattr(self, t) is not None)
        return out

    def verify_(self) -> None:
        for n in names:
            a = self.properties[n]
            if a.type != field_types[n]:
                raise VerifyException(f"{self.name}: {n} must be of type {field_types[n]}, not {a.type}")
        for t in pops:
            v = getattr(self, t)
            if v is not None and v.type != in_type(t):
                raise VerifyException(f"{self.name}: {t} takes a {in_type(t)}, not {v.type}")

    def parse(cls, parser: Parser):
        popped = {}
        while (kw := next((t for t in pops if parser.parse_optional_keyword(t) is not None), None)) is not None:
            parser.parse_punctuation("(")
            popped[kw] = parser.parse_operand(in_type(kw))
            parser.parse_punctuation(")")
        pos = parser.pos
        attrs = parser.parse_optional_attr_dict()
        unknown = sorted(set(attrs) - set(names))
        if unknown:
            parser.raise_error(f"{fmt.name} has no field {unknown[0]!r}; its fields are "
                               f"{', '.join(names) or '(none)'}", pos, parser.pos)
        pushed = [t for t in pushes if parser.parse_optional_keyword(t) is not None]
        values = {}
        for n in names:
            a = attrs.get(n)
            if a is None:
                parser.raise_error(f"{fmt.name} needs field {n}", pos, parser.pos)
            if not isinstance(a, IntegerAttr) or a.type != field_types[n]:
                parser.raise_error(f"{fmt.name}.{n} must be an integer of type {field_types[n]}", pos, parser.pos)
            values[n] = a.value.data
        return cls.build_insn(values, popped, pushed)

    def print(self, printer: Printer) -> None:
        for t in pops:
            v = getattr(self, t)
            if v is not None:
                printer.print_string(f" {t}(")
                printer.print_ssa_value(v)
                printer.print_string(")")
        if names:
            printer.print_string(" ")
            printer.print_attr_dict({n: self.properties[n] for n in names})
        for t in pushes:
            if getattr(self, t) is not None:
                printer.print_string(f" {t}")

    body.update(build_insn=classmethod(build), fields=flags, verify_=verify_, parse=classmethod(parse),
                print=print)
    return irdl_op_definition(type(fmt.name.title().replace("_", "") + "Op", (IRDLOperation,), body))


def _field_types(fmt) -> dict:
    return {f.name: IntegerType(f.width, Signedness.UNSIGNED) for f in fmt.fields}


@lru_cache(maxsize=32)
def systolab_dialect(config):
    """The `systolab` dialect for `config`: one operation per instruction of the spec (fields typed
    by their widths for this config) and the token type."""
    isa = isa_for(config)
    ops = [_instruction_op(fmt, _field_types(fmt)) for fmt in isa.formats.values()]
    return Dialect("systolab", ops, [TokenType])


def _op_class(config, name: str):
    return next(op for op in systolab_dialect(config).operations if op.name == f"systolab.{name.lower()}")


# -- programs -------------------------------------------------------------------------------------
def insns_to_module(config, insns: Iterable[tuple[str, dict]], *, attrs: dict | None = None):
    """A `builtin.module` of the instructions `(op, fields)` in program order, tokens as SSA values.

    The k-th pop of a link uses the value of the k-th push (a pop with no push before it in
    program order is a token underflow: the program is not valid and is refused).
    """
    isa = isa_for(config)
    pending: dict[tuple[str, str], list] = {link: [] for link in LINKS}
    ops = []
    for i, (op, fields) in enumerate(insns):
        fmt = isa.formats[op]
        popped = {}
        for t in TOKEN_FLAGS:
            if t.startswith("pop") and fields.get(t):
                link = (_neighbour(fmt.queue, t), fmt.queue)
                if not pending[link]:
                    raise MlirProgramError(f"instruction {i} ({op}) pops a token from the {link[0]} queue "
                                           f"that no earlier instruction pushed (token underflow)")
                popped[t] = pending[link].pop(0)
        pushed = [t for t in TOKEN_FLAGS if t.startswith("push") and fields.get(t)]
        values = {f.name: fields.get(f.name, 0) for f in fmt.fields}
        o = _op_class(config, op).build_insn(values, popped, pushed)
        for t in pushed:
            v = getattr(o, t)
            v.name_hint = f"{fmt.queue[0]}{_neighbour(fmt.queue, t)[0]}{i}"
            pending[(fmt.queue, _neighbour(fmt.queue, t))].append(v)
        ops.append(o)
    module = ModuleOp(Region(Block(ops)))
    module.attributes["systolab.config_hash"] = StringAttr(config.compile_hash)
    module.attributes["systolab.config"] = StringAttr(str(config.source))
    for k, v in (attrs or {}).items():
        module.attributes[k] = v if not isinstance(v, str) else StringAttr(v)
    return module


def print_module(module) -> str:
    from io import StringIO
    from xdsl.printer import Printer

    out = StringIO()
    Printer(stream=out).print_op(module)
    return out.getvalue().rstrip("\n") + "\n"


def insns_to_mlir(config, insns: Iterable[tuple[str, dict]], *, comment: str | None = None) -> str:
    """MLIR text of the instructions `(op, fields)` (the compiler's list, token flags included)."""
    head = f"// {comment}\n" if comment else ""
    return head + print_module(insns_to_module(config, insns))


def program_to_mlir(program, config) -> str:
    """MLIR text of a compiled `Program` (its instruction words) for `config`."""
    program.check_compiled_for(config)
    isa = isa_for(config)
    insns = []
    for w in program.words:
        d = isa.decode(w)
        insns.append((d.op, dict(d.values)))
    what = program.meta.get("workload", "program")
    return insns_to_mlir(config, insns, comment=f"systolab program {what}: {len(insns)} instructions for "
                                                  f"{config.source} ({config.describe()}, config {config.hash})")


def programs_to_mlir(compiled) -> str:
    """The programs a `CompiledNetwork` runs: the network's one program (`fused_program`) when its
    layers run as one, else the program of every accelerator layer, one module each, separated
    by `// -----` (`mlir_to_programs` reads them back)."""
    cfg = compiled.cfg
    if compiled.fused_words is not None:
        return program_to_mlir(compiled.fused_program(memory=compiled.image), cfg)
    parts = [program_to_mlir(compiled.program(cl), cfg) for cl in compiled.layers]
    return "\n// -----\n".join(parts)


def mlir_to_programs(text: str, config, *, name: str = "<mlir>") -> list[list[int]]:
    """The instruction words of every module in `text` (modules separated by `// -----`)."""
    return [mlir_to_words(part, config, name=name) for part in text.split("\n// -----\n")]


def parse_module(text: str, config, *, name: str = "<mlir>", dialects: Sequence = ()):
    """Parse MLIR text with the systolab dialect of `config` (and `dialects`); one-line errors."""
    ctx = new_context(systolab_dialect(config), *dialects)
    try:
        module = Parser(ctx, text, name=name).parse_module()
        module.verify()
    except ParseError as e:
        loc = e.span.get_location()
        raise MlirProgramError(f"{name}:{loc.line}:{loc.col}: {e.msg}") from None
    except VerifyException as e:
        raise MlirProgramError(f"{name}: {str(e).splitlines()[0]}") from None
    return module


def mlir_to_insns(text: str, config, *, name: str = "<mlir>") -> list[tuple[str, dict]]:
    """The instructions `(op, fields with token flags)` of a systolab program in MLIR text."""
    module = parse_module(text, config, name=name)
    h = module.attributes.get("systolab.config_hash")
    if h is not None and h.data != config.compile_hash:
        raise MlirProgramError(f"{name}: program was compiled for config {h.data}, not for {config.source} "
                               f"({config.compile_hash}); recompile it for this config")
    insns = []
    for op in module.body.block.ops:
        fmt = getattr(type(op), "FORMAT", None)
        if fmt is None or not op.name.startswith("systolab."):
            raise MlirProgramError(f"{name}: {op.name} is not a systolab instruction; a program holds "
                                   f"{', '.join('systolab.' + n.lower() for n in isa_for(config).formats)}")
        insns.append((fmt.name, op.fields()))
    return insns


def mlir_to_words(text: str, config, *, name: str = "<mlir>") -> list[int]:
    """Parse a systolab program in MLIR text back into instruction words for `config`."""
    isa = isa_for(config)
    words = []
    for i, (op, fields) in enumerate(mlir_to_insns(text, config, name=name)):
        try:
            words.append(isa.encode(op, **fields))
        except EncodeError as e:
            raise MlirProgramError(f"{name}: instruction {i}: {e}") from None
    return words


# -- generated reference ------------------------------------------------------------------------------
def render_dialect(config) -> str:
    """The dialect's reference as MLIR comments plus one example of every operation (parses)."""
    isa = isa_for(config)
    out = ["// The systolab dialect: generated from isa/spec.yaml by systolab.isa.mlir; do not edit.",
           f"// Field types are for {config.source} ({config.describe()}, config {config.hash}).",
           "// Tokens: " + ", ".join(f"!systolab.token<{a}, {b}> ({LINKS[(a, b)][0]} on {a}, "
                                     f"{LINKS[(a, b)][1]} on {b})" for a, b in LINKS),
           "//"]
    for fmt in isa.formats.values():
        fields = ", ".join(f"{f.name}: ui{f.width}" for f in fmt.fields) or "(no fields)"
        out.append(f"// systolab.{fmt.name.lower()} ({fmt.queue} queue, opcode {fmt.opcode}): {fields}; "
                   f"tokens: {', '.join(fmt.allowed_tokens)}")
    # an example program: one of each instruction, with every token it may use paired up
    insns = [("LOAD", {"rows": 1, "push_next": 1}), ("PRELOAD", {"pop_prev": 1, "push_prev": 1}),
             ("LOAD", {"rows": 1, "pop_next": 1, "push_next": 1}),
             ("MATMUL", {"rows": 1, "pop_prev": 1, "push_next": 1}),
             ("STORE", {"rows": 1, "pop_prev": 1, "push_prev": 1}),
             ("SYNC", {"pop_next": 1, "push_prev": 1}), ("LOAD", {"rows": 1, "pop_next": 1})]
    insns = [(op, f) for op, f in insns if op in isa.formats]
    return "\n".join(out) + "\n" + print_module(insns_to_module(config, insns))


def write_repo_docs(root=None) -> list:
    """Write docs/isa_dialect.mlir for configs/default.yaml (`make docs`)."""
    import dataclasses
    from pathlib import Path

    from systolab.config import load_config

    root = Path(root) if root else Path(__file__).resolve().parent.parent
    cfg = dataclasses.replace(load_config(root / "configs" / "default.yaml"), source="configs/default.yaml")
    path = root / "docs" / "isa_dialect.mlir"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_dialect(cfg))
    return [path]


if __name__ == "__main__":
    for p in write_repo_docs():
        print(f"wrote {p}")
