"""A deterministic pairwise covering set under constraints (greedy, AETG-style), for the combination test.

Parameters are named lists of values; a row gives each parameter one value. ``allowed(row)`` says whether a
(possibly partial) row breaks no constraint. Every pair of values of two parameters that some complete allowed
row holds is covered by at least one generated row, and every generated row is allowed::

    rows = covering_rows({"a": [0, 1], "b": ["x", "y"], "c": [True, False]}, allowed=lambda row: True, seed=0)
    assert not uncovered_pairs(params, rows, allowed)
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Callable

Row = dict[str, object]
Pair = tuple[tuple[str, object], tuple[str, object]]


def all_pairs(params: dict[str, list]) -> set[Pair]:
    """Every pair of values of two different parameters, parameters in declaration order."""
    names = list(params)
    return {((a, x), (b, y)) for i, a in enumerate(names) for b in names[i + 1:]
            for x in params[a] for y in params[b]}


def row_pairs(params: dict[str, list], row: Row) -> set[Pair]:
    """The pairs a (possibly partial) row holds."""
    names = [n for n in params if n in row]
    return {((a, row[a]), (b, row[b])) for a, b in itertools.combinations(names, 2)}


def _complete(params: dict[str, list], row: Row, allowed: Callable[[Row], bool], uncovered: set[Pair],
              rng: random.Random) -> Row | None:
    """``row`` extended to every parameter, each value chosen (in a random parameter order) to cover the most
    uncovered pairs with the values already set, among those that keep the row allowed and completable; None when
    no allowed completion exists."""
    rest = [n for n in params if n not in row]
    rng.shuffle(rest)

    def extend(partial: Row, todo: list[str]) -> Row | None:
        if not todo:
            return partial
        name, later = todo[0], todo[1:]
        gains = []
        for value in params[name]:
            candidate = {**partial, name: value}
            if allowed(candidate):
                gain = sum(((k, partial[k]), (name, value)) in uncovered or ((name, value), (k, partial[k]))
                           in uncovered for k in partial)
                gains.append((-gain, rng.random(), value))
        for _, _, value in sorted(gains, key=lambda g: g[:2]):
            done = extend({**partial, name: value}, later)
            if done is not None:
                return done
        return None

    return extend(dict(row), rest)


def covering_rows(params: dict[str, list], *, allowed: Callable[[Row], bool], seed: int,
                  candidates: int = 20) -> list[Row]:
    """A list of allowed rows covering every pair that some allowed row holds.

    Greedy: each new row is the best of ``candidates`` tries, each seeded with one still uncovered pair and
    completed value by value to cover the most uncovered pairs (:func:`_complete`). Pairs no allowed row can hold are
    dropped from the goal. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    order = {n: i for i, n in enumerate(params)}
    uncovered = set(sorted(all_pairs(params), key=repr))
    rows: list[Row] = []
    while uncovered:
        best, best_gain = None, 0
        pool = sorted(uncovered, key=repr)
        for _ in range(candidates):
            (a, x), (b, y) = rng.choice(pool)
            row = _complete(params, {a: x, b: y}, allowed, uncovered, rng) if allowed({a: x, b: y}) else None
            if row is None:  # no allowed row holds this pair: not a goal
                uncovered.discard(((a, x), (b, y)))
                continue
            gain = len(row_pairs(params, row) & uncovered)
            if gain > best_gain:
                best, best_gain = row, gain
        if best is not None:
            rows.append({n: best[n] for n in sorted(best, key=order.get)})
            uncovered -= row_pairs(params, best)
    return rows


def uncovered_pairs(params: dict[str, list], rows: list[Row], allowed: Callable[[Row], bool]) -> set[Pair]:
    """The pairs some complete allowed row holds that none of ``rows`` does (found by exhaustive search over each
    pair's completions, so only for small parameter spaces or with a cheap ``allowed``)."""
    covered = set().union(*(row_pairs(params, r) for r in rows)) if rows else set()
    missing = set()
    for pair in all_pairs(params) - covered:
        (a, x), (b, y) = pair
        if _complete(params, {a: x, b: y}, allowed, set(), random.Random(0)) is not None and allowed({a: x, b: y}):
            missing.add(pair)
    return missing
