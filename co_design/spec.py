"""Sweep files (`configs/sweeps/*.yaml`): parsed and validated into a frozen `SweepSpec`.

    name: demo
    base: ../default.yaml            # a HardwareConfig; path relative to this file
    set: {memory.size_kib: 256}      # optional: fixed changes to the base, for every point
    axes:                            # dotted config keys -> values; the grid is their product
      array.rows: [4, 8]
      scratchpad.depth: [256, 1024]
    workloads:
      - {name: fc, gemm: [128, 256, 256]}       # M, K, N (optional: seed)
    evaluate: [model, rtl, synth]    # any subset (and func: functional simulator, no cycles)
    objectives: {latency_s: min, lut: min}
    constraints: {lut: {max: 83000}}
    search: {method: grid}           # {method: random, budget: N, seed: S, promote: front}
                                     # {method: optuna, sampler: nsga2, budget: N, seed: S, promote: 4}
    limits: {timeout_s: 3600, max_cycles: 20000000}

Everything is checked before any work starts: a problem raises `SweepError` (a `UserError`, so the
CLI prints one line and exits 2) naming the file, the key path and what is allowed. A grid is
checked point by point, so a combination the ISA cannot address fails here too.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping


from systolab.config import HardwareConfig, config_from_dict, default_config, known_keys, load_config, short_key
from systolab.errors import ConfigError, UserError, read_yaml

from .derived import METRICS, metric_needs

__all__ = ["SweepError", "SweepSpec", "Workload", "Search", "Limits", "Point", "load_sweep",
           "spec_from_dict", "EVALUATOR_NAMES", "EXPENSIVE", "SEARCH_METHODS", "SAMPLERS",
           "MAX_GRID"]

#: evaluators a sweep may list in `evaluate` (implemented in `co_design/evaluators.py`)
EVALUATOR_NAMES = ("model", "rtl", "synth", "func")
#: evaluators that only promising points reach when a search screens with the model
EXPENSIVE = ("rtl", "synth")
SEARCH_METHODS = ("grid", "random", "optuna")
SAMPLERS = ("nsga2", "tpe")
#: a grid is enumerated and checked up front; a bigger space needs random or optuna search
MAX_GRID = 100_000

_TOP_KEYS = ("name", "description", "base", "set", "axes", "workloads", "evaluate", "objectives",
             "constraints", "search", "limits")
_WORKLOAD_KEYS = ("name", "gemm", "onnx", "mlir", "network", "seed")
_SEARCH_KEYS = {"grid": ("method", "promote"),
                "random": ("method", "budget", "seed", "promote"),
                "optuna": ("method", "sampler", "budget", "seed", "promote")}
_LIMIT_KEYS = ("timeout_s", "max_cycles")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEFAULT_TIMEOUT_S = 3600.0


class SweepError(UserError):
    """A sweep file that cannot run; the message is one line: file, key path, what is allowed."""


@dataclass(frozen=True)
class Workload:
    name: str
    M: int = 0
    K: int = 0
    N: int = 0
    seed: int = 0
    onnx: str | None = None         # a quantized ONNX model (absolute path) instead of a GEMM
    onnx_macs: int = 0              # the model's MACs (ONNX or MLIR)
    mlir: str | None = None         # an integer linalg MLIR program (absolute path) instead of a GEMM

    @property
    def spec(self) -> str:
        """The workload as `flow.run_workload` takes it."""
        if self.onnx is not None:
            return f"onnx:{self.onnx}"
        if self.mlir is not None:
            return f"mlir:{self.mlir}"
        return f"gemm:{self.M}x{self.K}x{self.N}"

    @property
    def key(self) -> str:
        """The workload's key in the results store (the operands depend on the seed)."""
        return self.spec if self.seed == 0 else f"{self.spec}:seed={self.seed}"

    @property
    def macs(self) -> int:
        return self.onnx_macs if self.onnx is not None or self.mlir is not None else self.M * self.K * self.N

    def to_dict(self) -> dict:
        if self.onnx is not None:
            return {"name": self.name, "onnx": self.onnx, "macs": self.onnx_macs, "seed": self.seed}
        if self.mlir is not None:
            return {"name": self.name, "mlir": self.mlir, "macs": self.onnx_macs, "seed": self.seed}
        return {"name": self.name, "gemm": [self.M, self.K, self.N], "seed": self.seed}

    @classmethod
    def from_dict(cls, w: Mapping) -> "Workload":
        if "onnx" in w:
            return cls(w["name"], seed=w.get("seed", 0), onnx=w["onnx"], onnx_macs=w["macs"])
        if "mlir" in w:
            return cls(w["name"], seed=w.get("seed", 0), mlir=w["mlir"], onnx_macs=w["macs"])
        return cls(w["name"], *w["gemm"], seed=w.get("seed", 0))


@dataclass(frozen=True)
class Search:
    method: str = "grid"
    budget: int | None = None
    seed: int = 0
    sampler: str | None = None
    #: which screened points go to rtl/synth: "all", "front" (the model's Pareto front) or a count
    promote: str | int = "all"

    @property
    def screens(self) -> bool:
        return self.promote != "all"

    def to_dict(self) -> dict:
        return {"method": self.method, "budget": self.budget, "seed": self.seed,
                "sampler": self.sampler, "promote": self.promote}


@dataclass(frozen=True)
class Limits:
    #: wall-clock limit of one evaluation (a hung run is recorded as a timeout)
    timeout_s: float = _DEFAULT_TIMEOUT_S
    #: cycle watchdog of one simulation, passed to the simulator when it takes one
    max_cycles: int | None = None

    def to_dict(self) -> dict:
        return {"timeout_s": self.timeout_s, "max_cycles": self.max_cycles}


@dataclass(frozen=True)
class Point:
    """One hardware configuration of the space: the axis values and the validated config."""

    axes: Mapping[str, Any]
    config: HardwareConfig

    @property
    def hash(self) -> str:
        return self.config.hash

    @property
    def label(self) -> str:
        return point_label(self.axes, self.config)


def point_label(axes: Mapping[str, Any], config: HardwareConfig | None = None) -> str:
    """A short name for a point: `8x8 sp=1024` (the array shape, then the other axes)."""
    rest = dict(axes)
    parts = []
    if config is not None:
        parts.append(config.label)
        rest.pop("array.rows", None)
        rest.pop("array.cols", None)
    elif "array.rows" in rest and "array.cols" in rest:
        parts.append(f"{rest.pop('array.rows')}x{rest.pop('array.cols')}")
    for key, value in rest.items():
        parts.append(f"{short_key(key)}={value}")
    return " ".join(parts) or "base"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    source: str
    base: HardwareConfig
    axes: Mapping[str, tuple]
    workloads: tuple[Workload, ...]
    evaluate: tuple[str, ...]
    objectives: Mapping[str, str]
    constraints: Mapping[str, Mapping[str, float]]
    search: Search = field(default_factory=Search)
    limits: Limits = field(default_factory=Limits)
    description: str = ""
    #: the `set` changes already applied to `base` (kept to show them)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def point(self, values: Mapping[str, Any], *, where: str | None = None) -> Point:
        """The point with these axis values (raises `ConfigError` if the config cannot work)."""
        axes = {key: values[key] for key in self.axes}
        source = where or f"{self.source}: point {point_label(axes)}"
        cfg = self.base.replace(axes, source=source) if axes else self.base
        return Point(axes, cfg)

    def iter_grid(self) -> Iterator[dict]:
        keys = list(self.axes)
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            yield dict(zip(keys, combo))

    def grid(self) -> list[Point]:
        return [self.point(v) for v in self.iter_grid()]

    def to_dict(self) -> dict:
        """A JSON-able form, stored with the results so `systolab report` needs no files."""
        return {"name": self.name, "source": self.source, "description": self.description,
                "base": self.base.to_dict(), "axes": {k: list(v) for k, v in self.axes.items()},
                "workloads": [w.to_dict() for w in self.workloads], "evaluate": list(self.evaluate),
                "objectives": dict(self.objectives),
                "constraints": {k: dict(v) for k, v in self.constraints.items()},
                "search": self.search.to_dict(), "limits": self.limits.to_dict(),
                "set": dict(self.overrides)}


def spec_from_dict(d: Mapping) -> SweepSpec:
    """Rebuild a spec from `SweepSpec.to_dict()` (trusted: it was validated when stored)."""
    return SweepSpec(
        name=d["name"], source=d["source"], description=d.get("description", ""),
        base=config_from_dict(d["base"], source=f"{d['source']}: base"),
        axes={k: tuple(v) for k, v in d["axes"].items()},
        workloads=tuple(Workload.from_dict(w) for w in d["workloads"]),
        evaluate=tuple(d["evaluate"]), objectives=dict(d["objectives"]),
        constraints={k: dict(v) for k, v in d["constraints"].items()},
        search=Search(**d["search"]), limits=Limits(**d["limits"]), overrides=d.get("set", {}))


# -- validation -------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, msg: str):
        raise SweepError(f"{self.source}: {path} {msg}" if path else f"{self.source}: {msg}")

    def mapping(self, value, path: str, what: str) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of {what}, not {value!r}")
        return value

    def keys(self, value: Mapping, allowed, path: str) -> None:
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                scope = f" in {path}" if path else ""
                raise SweepError(f"{self.source}: unknown key {where!r}; valid keys{scope} are "
                                 f"{', '.join(allowed)}")

    def int_at_least(self, value, path: str, lo: int) -> int:
        if not _is_int(value) or value < lo:
            self.fail(path, f"must be an integer >= {lo}, not {value!r}")
        return value

    def name(self, value, path: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(path, f"must be a name of letters, digits, '_', '.' and '-', not {value!r}")
        return value


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; any problem raises `SweepError` with one line."""
    source = str(path)
    raw = read_yaml(path, SweepError, "sweep")
    return parse_sweep(raw, source=source, directory=Path(path).parent)


def parse_sweep(raw: Any, *, source: str = "<sweep>", directory: Path | None = None) -> SweepSpec:
    """Validate a sweep mapping (as read from YAML); `base` is relative to `directory`."""
    c = _Checker(source)
    if not isinstance(raw, Mapping):
        c.fail("", f"the top level must be a mapping with keys {', '.join(_TOP_KEYS)}, "
                   f"not {type(raw).__name__}")
    c.keys(raw, _TOP_KEYS, "")
    for required in ("axes", "workloads", "objectives"):
        if required not in raw:
            c.fail("", f"missing key {required!r}")

    name = c.name(raw.get("name", Path(source).stem), "name")
    description = raw.get("description", "")
    if not isinstance(description, str):
        c.fail("description", f"must be a string, not {description!r}")

    base = _parse_base(c, raw.get("base"), directory)
    base = _parse_set(c, raw.get("set", {}), base)
    axes = _parse_axes(c, raw["axes"], base)
    workloads = _parse_workloads(c, raw["workloads"], directory)
    evaluate = _parse_evaluate(c, raw.get("evaluate", ["model"]))
    objectives = _parse_objectives(c, raw["objectives"], evaluate)
    constraints = _parse_constraints(c, raw.get("constraints", {}), evaluate)
    search = _parse_search(c, raw.get("search", {"method": "grid"}), evaluate, axes)
    limits = _parse_limits(c, raw.get("limits", {}))

    spec = SweepSpec(name=name, source=source, base=base, axes=axes, workloads=workloads,
                     evaluate=evaluate, objectives=objectives, constraints=constraints,
                     search=search, limits=limits, description=description,
                     overrides=dict(raw.get("set") or {}))
    if search.method == "grid":
        if spec.grid_size > MAX_GRID:
            c.fail("axes", f"make a grid of {spec.grid_size:,} points, more than {MAX_GRID:,}: use "
                           f"search.method random or optuna")
        for values in spec.iter_grid():
            spec.point(values)          # every grid point must be a config that can work
    elif search.method == "random" and search.budget > spec.grid_size:
        c.fail("search.budget", f"must be at most the {spec.grid_size} points of the grid, "
                                f"not {search.budget}")
    return spec


def _parse_base(c: _Checker, value, directory: Path | None) -> HardwareConfig:
    if value is None:
        return default_config()
    if not isinstance(value, str) or not value:
        c.fail("base", f"must be the path of an accelerator config (YAML), not {value!r}")
    path = Path(value)
    if not path.is_absolute() and directory is not None:
        path = directory / path
    if not path.is_file():
        c.fail("base", f"names no config file: {value!r} (looked for {path})")
    return load_config(path)


def _parse_set(c: _Checker, value, base: HardwareConfig) -> HardwareConfig:
    c.mapping(value, "set", "dotted config keys to values")
    valid = known_keys()
    for key in value:
        if key not in valid:
            raise SweepError(f"{c.source}: set: unknown config key {key!r}; valid keys are "
                             f"{', '.join(valid)}")
    if not value:
        return base
    try:
        return base.replace(dict(value), source=f"{c.source}: set")
    except ConfigError as e:
        raise SweepError(str(e)) from None


def _parse_axes(c: _Checker, value, base: HardwareConfig) -> dict[str, tuple]:
    c.mapping(value, "axes", "dotted config keys to lists of values")
    valid = known_keys()
    axes = {}
    for key, values in value.items():
        if key not in valid:
            raise SweepError(f"{c.source}: axes: unknown config key {key!r}; valid keys are "
                             f"{', '.join(valid)}")
        path = f"axes.{key}"
        if not isinstance(values, list) or not values:
            c.fail(path, f"must be a non-empty list of values, not {values!r}")
        if len(set(map(repr, values))) != len(values):
            c.fail(path, f"must not repeat a value: {values!r}")
        for v in values:
            try:        # each value on its own, so the message names the key and its range
                base.replace({key: v}, source=f"{c.source}: axes")
            except ConfigError as e:
                if not str(e).startswith(f"{c.source}: axes: {key} "):
                    raise   # a limit that involves other keys: the message names them
                raise SweepError(str(e)) from None
        axes[key] = tuple(values)
    return axes


def _parse_workloads(c: _Checker, value, directory: Path | None = None) -> tuple[Workload, ...]:
    if not isinstance(value, list) or not value:
        c.fail("workloads", f"must be a non-empty list of {{name: ..., gemm: [M, K, N]}} or "
                            f"{{name: ..., onnx: model.onnx}} or {{name: ..., mlir: model.mlir}}, not {value!r}")
    out, names = [], set()
    for i, w in enumerate(value):
        path = f"workloads[{i}]"
        c.mapping(w, path, "name, gemm, onnx, mlir or network, and seed")
        c.keys(w, _WORKLOAD_KEYS, path)
        if "network" in w:
            w = _built_network(c, w, path)
        if "onnx" in w or "mlir" in w:
            out.append(_parse_model_workload(c, w, path, directory, names))
            continue
        if "gemm" not in w:
            c.fail(path, "needs gemm: [M, K, N], onnx: model.onnx, mlir: model.mlir or network: NAME[:SIZE]")
        gemm = w["gemm"]
        if not isinstance(gemm, list) or len(gemm) != 3 or not all(_is_int(x) and x >= 1 for x in gemm):
            c.fail(f"{path}.gemm", f"must be [M, K, N] with integers >= 1, not {gemm!r}")
        name = c.name(w.get("name", f"gemm{'x'.join(map(str, gemm))}"), f"{path}.name")
        if name in names:
            c.fail(f"{path}.name", f"must be unique, {name!r} is used twice")
        names.add(name)
        seed = w.get("seed", 0)
        if not _is_int(seed) or seed < 0:
            c.fail(f"{path}.seed", f"must be an integer >= 0, not {seed!r}")
        out.append(Workload(name, *gemm, seed=seed))
    keys = [w.key for w in out]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        c.fail("workloads", f"must not list the same GEMM and seed twice ({dup})")
    return tuple(out)


def _built_network(c: _Checker, w: Mapping, path: str) -> dict:
    """{name: ..., network: resnet18:32}: a network built in code (`codegen.onnx_models.BUILTIN`),
    quantized once into the systolab cache; it then runs like {onnx: that file}."""
    from systolab.codegen.onnx_models import builtin_model

    others = [k for k in ("gemm", "onnx", "mlir") if k in w]
    if others:
        c.fail(path, f"has network and {' and '.join(others)}; give one")
    spec = w["network"]
    if not isinstance(spec, str):
        c.fail(f"{path}.network", f"must be NAME[:SIZE] (e.g. resnet18:32), not {spec!r}")
    try:
        model, _ = builtin_model(spec)
    except UserError as e:
        c.fail(f"{path}.network", str(e).removeprefix("network "))
    out = {k: v for k, v in w.items() if k != "network"}
    out.setdefault("name", spec.replace(":", "_"))
    out["onnx"] = str(model)
    return out


def _parse_model_workload(c: _Checker, w: Mapping, path: str, directory: Path | None, names: set) -> Workload:
    """{name: ..., onnx: model.onnx | mlir: model.mlir (relative to the sweep file), seed: S}: the
    model is imported and checked here, so an unsupported operator fails before any work starts."""
    from systolab.codegen.mlir_import import mlir_macs
    from systolab.codegen.onnx_import import model_macs

    kind = "onnx" if "onnx" in w else "mlir"
    if "gemm" in w or ("onnx" in w and "mlir" in w):
        c.fail(path, f"has {' and '.join(k for k in ('gemm', 'onnx', 'mlir') if k in w)}; give one")
    model = w[kind]
    what = "a quantized ONNX model" if kind == "onnx" else "an integer linalg MLIR program"
    if not isinstance(model, str) or not model:
        c.fail(f"{path}.{kind}", f"must be the path of {what}, not {model!r}")
    full = Path(model) if Path(model).is_absolute() or directory is None else Path(directory) / model
    try:
        macs = model_macs(full) if kind == "onnx" else mlir_macs(full)
    except UserError as e:
        c.fail(f"{path}.{kind}", str(e))
    name = c.name(w.get("name", Path(model).stem), f"{path}.name")
    if name in names:
        c.fail(f"{path}.name", f"must be unique, {name!r} is used twice")
    names.add(name)
    seed = w.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        c.fail(f"{path}.seed", f"must be an integer >= 0, not {seed!r}")
    return Workload(name, seed=seed, onnx_macs=macs, **{kind: str(full.resolve())})


def _parse_evaluate(c: _Checker, value) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        c.fail("evaluate", f"must be a non-empty list of {', '.join(EVALUATOR_NAMES)}, not {value!r}")
    for v in value:
        if v not in EVALUATOR_NAMES:
            c.fail("evaluate", f"entries must be {', '.join(EVALUATOR_NAMES)}, not {v!r}")
    if len(set(value)) != len(value):
        c.fail("evaluate", f"must not repeat an evaluator: {value!r}")
    return tuple(value)


def _check_metric(c: _Checker, metric, path_root: str, evaluate) -> None:
    if metric not in METRICS:
        raise SweepError(f"{c.source}: {path_root}: unknown metric {metric!r}; valid metrics are "
                         f"{', '.join(METRICS)}")
    for need in metric_needs(metric):
        options = need.split("|")
        if not any(o in evaluate for o in options):
            c.fail(f"{path_root}.{metric}", f"needs {' or '.join(options)} in evaluate "
                                            f"(evaluate is {', '.join(evaluate)})")


def _parse_objectives(c: _Checker, value, evaluate) -> dict[str, str]:
    c.mapping(value, "objectives", "metric: min|max")
    if not value:
        c.fail("objectives", "must name at least one metric, e.g. {latency_s: min}")
    out = {}
    for metric, direction in value.items():
        _check_metric(c, metric, "objectives", evaluate)
        if direction not in ("min", "max"):
            c.fail(f"objectives.{metric}", f"must be min or max, not {direction!r}")
        out[metric] = direction
    return out


def _parse_constraints(c: _Checker, value, evaluate) -> dict[str, dict[str, float]]:
    if value is None:
        return {}
    c.mapping(value, "constraints", "metric: {min: x, max: y}")
    out = {}
    for metric, bounds in value.items():
        _check_metric(c, metric, "constraints", evaluate)
        path = f"constraints.{metric}"
        c.mapping(bounds, path, "min and/or max")
        c.keys(bounds, ("min", "max"), path)
        if not bounds:
            c.fail(path, "must give min, max or both")
        for k, v in bounds.items():
            if not _is_number(v):
                c.fail(f"{path}.{k}", f"must be a number, not {v!r}")
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            c.fail(path, f"min must not exceed max ({bounds['min']} > {bounds['max']})")
        out[metric] = dict(bounds)
    return out


def _parse_search(c: _Checker, value, evaluate, axes) -> Search:
    c.mapping(value, "search", "method and its options")
    method = value.get("method")
    if method not in SEARCH_METHODS:
        c.fail("search.method", f"must be one of {', '.join(SEARCH_METHODS)}, not {method!r}")
    c.keys(value, _SEARCH_KEYS[method], "search")
    budget = None
    if method != "grid":
        if "budget" not in value:
            c.fail("search", f"needs budget (the number of points to evaluate) for method {method}")
        budget = c.int_at_least(value["budget"], "search.budget", 1)
        if not axes:
            c.fail("axes", f"must not be empty for search.method {method}")
    seed = value.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        c.fail("search.seed", f"must be an integer >= 0, not {seed!r}")
    sampler = None
    if method == "optuna":
        sampler = value.get("sampler", "nsga2")
        if sampler not in SAMPLERS:
            c.fail("search.sampler", f"must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
    promote = value.get("promote", "all" if method == "grid" else "front")
    if not (promote in ("all", "front") or (_is_int(promote) and promote >= 1)):
        c.fail("search.promote", f"must be all, front or an integer >= 1, not {promote!r}")
    search = Search(method=method, budget=budget, seed=seed, sampler=sampler, promote=promote)
    if method == "optuna" and "model" not in evaluate:
        c.fail("evaluate", "must include model for search.method optuna (it scores every trial "
                           "with the performance model)")
    if search.screens and "model" not in evaluate and any(e in evaluate for e in EXPENSIVE):
        c.fail("evaluate", f"must include model for search.promote {promote} (the model picks the "
                           f"points that go to {', '.join(e for e in EXPENSIVE if e in evaluate)})")
    return search


def _parse_limits(c: _Checker, value) -> Limits:
    c.mapping(value, "limits", "timeout_s and max_cycles")
    c.keys(value, _LIMIT_KEYS, "limits")
    timeout = value.get("timeout_s", _DEFAULT_TIMEOUT_S)
    if not _is_number(timeout) or timeout <= 0:
        c.fail("limits.timeout_s", f"must be a number of seconds > 0, not {timeout!r}")
    max_cycles = value.get("max_cycles")
    if max_cycles is not None:
        c.int_at_least(max_cycles, "limits.max_cycles", 1)
    return Limits(timeout_s=float(timeout), max_cycles=max_cycles)
