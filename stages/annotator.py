"""What every step annotator shares: its id, what it is given, what it returns, and the round driver
that batches many searches into one engine call per round."""
from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Callable

from data_schemas.engine import Engine
from data_schemas.records import Problem, Solution, StepLabels, stable_hash
from stages.rollouts import MCEstimate, PrefixQuery, RolloutSampler


def annotator_id(name: str, version: int, settings: dict) -> str:
    """``name@version:hash``: two datasets labelled under different settings never share an id."""
    return f"{name}@{version}:{stable_hash(settings, length=8)}"


@dataclass
class AnnotationContext:
    """What a shard gives its annotators.  The sampler is shared, so its cache serves them all."""

    problems: dict[str, Problem]
    sampler: RolloutSampler | None = None
    # turns a new solution text into steps and grades it (tree-search annotators make new solutions)
    prepare_solution: Callable[[Solution], Solution] | None = None
    engines: dict[str, Engine] = field(default_factory=dict)  # named engines (judges)
    job_seed: int = 0


@dataclass
class AnnotationResult:
    labels: list[StepLabels]
    new_solutions: list[Solution] = field(default_factory=list)  # e.g. OmegaPRM's searched rollouts


# A search yields lists of prefix queries and is sent back their MC estimates, until it returns.
Search = Generator[list[PrefixQuery], list[MCEstimate], Any]


def lockstep(searches: list[Search]) -> Search:
    """Run several searches as one: each round yields the union of their pending prefixes and hands
    each search its own answers.  Returns the list of their results."""
    results: list[Any] = [None] * len(searches)
    pending: dict[int, list[PrefixQuery]] = {}
    for index, search in enumerate(searches):
        try:
            pending[index] = next(search)
        except StopIteration as stop:
            results[index] = stop.value
    while pending:
        order = list(pending)
        estimates = yield [query for index in order for query in pending[index]]
        position = 0
        next_pending: dict[int, list[PrefixQuery]] = {}
        for index in order:
            count = len(pending[index])
            answer, position = estimates[position:position + count], position + count
            try:
                next_pending[index] = searches[index].send(answer)
            except StopIteration as stop:
                results[index] = stop.value
        pending = next_pending
    return results


def drive(search: Search, sampler: RolloutSampler, k: int) -> Any:
    """Answer a search's queries with the sampler (one engine call per round) until it returns."""
    try:
        queries = next(search)
        while True:
            queries = search.send(sampler.estimate(queries, k))
    except StopIteration as stop:
        return stop.value


def drive_searches(searches: list[Search], sampler: RolloutSampler, k: int) -> list[Any]:
    """Advance every search together: N searches of depth d cost about d engine calls, not N·d."""
    return drive(lockstep(searches), sampler, k)


def spent_since(sampler: RolloutSampler, start: int) -> dict[str, tuple[int, int]]:
    """(rollouts, tokens) sampled since row ``start`` of the sampler, by requesting solution."""
    spent: dict[str, tuple[int, int]] = {}
    for row in sampler.new_rows[start:]:
        count, tokens = spent.get(row["solution_id"], (0, 0))
        spent[row["solution_id"]] = (count + 1, tokens + row["tokens"])
    return spent


def detail_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, default=str)
