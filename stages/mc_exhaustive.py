"""Math-Shepherd (Wang et al. 2024): exhaustive Monte-Carlo labels for every step.

For each step prefix, k completions to a final answer; soft label = the fraction that reach the
reference, hard label = 1 if any does.  ``steps: up_to_first_error`` walks prefixes in rounds and
stops a solution at its first zero-MC step (steps after it unlabelled): cheaper, same first error.
The last prefix is the whole solution, whose own answer decides its MC without rollouts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from data_schemas.records import Solution, StepLabels
from stages.annotator import (AnnotationContext, AnnotationResult, Search, annotator_id, detail_json, drive, lockstep,
                              spent_since)
from stages.rollouts import MCEstimate, PrefixQuery


@dataclass(frozen=True)
class MCExhaustiveSettings:
    k: int = 8
    steps: Literal["all", "up_to_first_error"] = "all"


def _labels_from_estimates(solution: Solution, estimates: list[MCEstimate | None], annotator: str) -> StepLabels:
    labels, values, n_correct, n_rollouts = [], [], [], []
    for estimate in estimates:
        if estimate is None:
            labels.append(-1)
            values.append(None)
            n_correct.append(0)
            n_rollouts.append(0)
        else:
            labels.append(1 if estimate.n_correct > 0 else 0)
            values.append(estimate.value)
            n_correct.append(estimate.n_correct)
            n_rollouts.append(estimate.n_rollouts)
    first_error = next((index for index, label in enumerate(labels) if label == 0), -1)
    return StepLabels(solution.solution_id, solution.problem_id, annotator, labels, values, n_correct, n_rollouts,
                      first_error)


class MCExhaustive:
    name = "mc_exhaustive"
    version = 1

    def __init__(self, settings: MCExhaustiveSettings = MCExhaustiveSettings()) -> None:
        self.settings = settings
        self.id = annotator_id(self.name, self.version, asdict(settings))

    def _all_prefixes(self, solution: Solution) -> Search:
        estimates = yield [PrefixQuery(solution, prefix) for prefix in range(1, len(solution.steps) + 1)]
        return list(estimates)

    def _until_first_error(self, solution: Solution) -> Search:
        estimates: list[MCEstimate | None] = [None] * len(solution.steps)
        for prefix in range(1, len(solution.steps) + 1):
            [estimate] = yield [PrefixQuery(solution, prefix)]
            estimates[prefix - 1] = estimate
            if estimate.error or estimate.n_correct == 0:
                break
        return estimates

    def annotate(self, solutions: list[Solution], context: AnnotationContext) -> AnnotationResult:
        if context.sampler is None:
            raise ValueError("mc_exhaustive needs a rollout sampler (a policy engine)")
        usable = [s for s in solutions if not s.failed_reason and s.steps]
        make = self._all_prefixes if self.settings.steps == "all" else self._until_first_error
        start = len(context.sampler.new_rows)
        results = drive(lockstep([make(s) for s in usable]), context.sampler, self.settings.k)
        spent = spent_since(context.sampler, start)
        labels = []
        for solution, estimates in zip(usable, results):
            failed = next((e.error for e in estimates if e is not None and e.error), None)
            if failed:
                steps = len(solution.steps)
                row = StepLabels(solution.solution_id, solution.problem_id, self.id, [-1] * steps, [None] * steps,
                                 [0] * steps, [0] * steps, -1, abstained=True, detail=detail_json({"reason": failed}))
            else:
                row = _labels_from_estimates(solution, estimates, self.id)
            row.rollouts, row.generated_tokens = spent.get(solution.solution_id, (0, 0))
            labels.append(row)
        return AnnotationResult(labels)
