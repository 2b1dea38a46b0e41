"""Pareto fronts, constraints and promotion on synthetic data, checked against brute force."""

from hypothesis import given, settings
from hypothesis import strategies as st

from systolab.co_design.pareto import (dominates, eligible, meets, nondominated_ranks, pareto_front,
                                       select_promising)


def brute_front(rows, objectives, constraints):
    def better_or_equal(a, b, k):
        return a[k] <= b[k] if objectives[k] == "min" else a[k] >= b[k]

    def strictly(a, b, k):
        return a[k] < b[k] if objectives[k] == "min" else a[k] > b[k]

    pool = [r for r in rows
            if all(r.get(k) is not None for k in objectives)
            and all(r.get(m) is not None and b.get("min", -1e300) <= r[m] <= b.get("max", 1e300)
                    for m, b in constraints.items())]
    return [r for r in pool
            if not any(all(better_or_equal(o, r, k) for k in objectives)
                       and any(strictly(o, r, k) for k in objectives) for o in pool if o is not r)]


value = st.one_of(st.none(), st.integers(0, 6))
row = st.fixed_dictionaries({"a": value, "b": value, "c": value, "id": st.integers()})


@settings(max_examples=300, deadline=None)
@given(st.lists(row, max_size=25), st.sampled_from(["min", "max"]), st.sampled_from(["min", "max"]),
       st.booleans())
def test_front_matches_brute_force(rows, da, db, constrain):
    objectives = {"a": da, "b": db}
    constraints = {"c": {"max": 3}} if constrain else {}
    front = pareto_front(rows, objectives, constraints)
    assert [id(r) for r in front] == [id(r) for r in brute_front(rows, objectives, constraints)]
    # every eligible row off the front is dominated by a row on it
    for r in rows:
        if eligible(r, objectives, constraints) and not any(r is f for f in front):
            assert any(dominates(f, r, objectives) for f in front)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": st.integers(0, 5), "b": st.integers(0, 5), "c": st.integers(0, 5)}),
                max_size=20))
def test_ranks_peel_fronts(rows):
    objectives = {"a": "min", "b": "max", "c": "min"}
    ranks = nondominated_ranks(rows, objectives)
    front0 = [r for r, k in zip(rows, ranks) if k == 0]
    assert [id(r) for r in front0] == [id(r) for r in pareto_front(rows, objectives)]
    for i, r in enumerate(rows):      # a row is only dominated by rows of a lower rank
        for j, o in enumerate(rows):
            if dominates(o, r, objectives):
                assert ranks[j] < ranks[i]


def test_small_example_with_constraint():
    rows = [
        {"name": "a", "latency_s": 1.0, "lut": 900, "comb": 1000},
        {"name": "b", "latency_s": 2.0, "lut": 500, "comb": 600},
        {"name": "c", "latency_s": 2.5, "lut": 600, "comb": 700},     # dominated by b
        {"name": "d", "latency_s": 0.5, "lut": 5000, "comb": 90000},  # best latency, too big
        {"name": "e", "latency_s": 4.0, "lut": 100, "comb": 150},
        {"name": "f", "latency_s": None, "lut": 10, "comb": 20},      # no latency: not eligible
        {"name": "g", "latency_s": 2.0, "lut": 500, "comb": 600},     # ties b: both on the front
    ]
    objectives = {"latency_s": "min", "lut": "min"}
    constraints = {"comb": {"max": 83000}}
    assert [r["name"] for r in pareto_front(rows, objectives, constraints)] == ["a", "b", "e", "g"]
    assert [r["name"] for r in pareto_front(rows, objectives)] == ["a", "b", "d", "e", "g"]
    assert meets(rows[3], constraints) is False and meets({"lut": 1}, constraints) is None


def test_select_promising():
    rows = [{"n": i, "x": x, "y": y} for i, (x, y) in enumerate([(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (6, 6)])]
    objectives = {"x": "min", "y": "min"}
    assert [r["n"] for r in select_promising(rows, objectives, {}, "front")] == [0, 1, 2]
    assert [r["n"] for r in select_promising(rows, objectives, {}, 4)] == [0, 1, 2, 3]
    assert [r["n"] for r in select_promising(rows, objectives, {}, "all")] == [0, 1, 2, 3, 4, 5]
    assert [r["n"] for r in select_promising(rows, objectives, {"y": {"max": 4}}, "front")] == [1, 2]
