"""Pareto fronts under objectives (`{metric: "min" | "max"}`) and constraints (`{metric: {min, max}}`).

A row is *eligible* when it has a value for every objective and every constraint metric and meets
every constraint; the front is the eligible rows no other eligible row dominates (at least as good
in every objective and better in one). Rows with equal objective values are all on the front.
"""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["meets", "eligible", "dominates", "pareto_front", "nondominated_ranks", "select_promising"]


def meets(row: Mapping, constraints: Mapping[str, Mapping[str, float]]) -> bool | None:
    """True/False whether `row` meets every constraint; None if a constrained metric is missing."""
    for metric, bounds in constraints.items():
        v = row.get(metric)
        if v is None:
            return None
        if "min" in bounds and v < bounds["min"]:
            return False
        if "max" in bounds and v > bounds["max"]:
            return False
    return True


def eligible(row: Mapping, objectives: Mapping[str, str], constraints: Mapping | None = None) -> bool:
    return all(row.get(k) is not None for k in objectives) and meets(row, constraints or {}) is True


def _key(row: Mapping, objectives: Mapping[str, str]) -> tuple[float, ...]:
    """Objective values turned so that smaller is better in every position."""
    return tuple(row[k] if d == "min" else -row[k] for k, d in objectives.items())


def dominates(a: Mapping, b: Mapping, objectives: Mapping[str, str]) -> bool:
    ka, kb = _key(a, objectives), _key(b, objectives)
    return all(x <= y for x, y in zip(ka, kb)) and any(x < y for x, y in zip(ka, kb))


def pareto_front(rows: Sequence[Mapping], objectives: Mapping[str, str],
                 constraints: Mapping | None = None) -> list[Mapping]:
    """The non-dominated eligible rows, in their input order."""
    pool = [r for r in rows if eligible(r, objectives, constraints)]
    keys = [_key(r, objectives) for r in pool]
    front = []
    for i, ki in enumerate(keys):
        if not any(all(x <= y for x, y in zip(kj, ki)) and any(x < y for x, y in zip(kj, ki))
                   for j, kj in enumerate(keys) if j != i):
            front.append(pool[i])
    return front


def nondominated_ranks(rows: Sequence[Mapping], objectives: Mapping[str, str]) -> list[int]:
    """Non-dominated sorting: 0 for the front, 1 for the front of the rest, and so on."""
    keys = [_key(r, objectives) for r in rows]
    ranks = [-1] * len(rows)
    left = set(range(len(rows)))
    rank = 0
    while left:
        layer = {i for i in left
                 if not any(all(x <= y for x, y in zip(keys[j], keys[i]))
                            and any(x < y for x, y in zip(keys[j], keys[i])) for j in left if j != i)}
        for i in layer:
            ranks[i] = rank
        left -= layer
        rank += 1
    return ranks


def select_promising(rows: Sequence[Mapping], objectives: Mapping[str, str],
                     constraints: Mapping | None, promote: str | int) -> list[Mapping]:
    """The rows to measure further: `"all"` eligible rows, the `"front"`, or the best `promote`
    by front rank (ties inside a rank broken by the first objective, then input order)."""
    pool = [r for r in rows if eligible(r, objectives, constraints)]
    if promote == "all":
        return pool
    ranks = nondominated_ranks(pool, objectives)
    if promote == "front":
        return [r for r, k in zip(pool, ranks) if k == 0]
    first = next(iter(objectives))
    sign = 1 if objectives[first] == "min" else -1
    order = sorted(range(len(pool)), key=lambda i: (ranks[i], sign * pool[i][first], i))
    return [pool[i] for i in order[:promote]]
