"""The toy domain's exact checker as an annotator (id prefix ``exact``): ground truth for every step.

Only toy problems can be checked exactly; solutions of other domains are abstained on.
"""
from __future__ import annotations

from data_schemas.records import Solution, StepLabels
from stages.annotator import AnnotationContext, AnnotationResult, annotator_id, detail_json
from toy import domain as toy_domain


class ExactChecker:
    name = "exact"
    version = 1

    def __init__(self) -> None:
        self.id = annotator_id(self.name, self.version, {})

    def label(self, solution: Solution, expression: str) -> StepLabels:
        check = toy_domain.check_steps(expression, solution.steps)
        steps = len(solution.steps)
        return StepLabels(solution.solution_id, solution.problem_id, self.id, [int(ok) for ok in check.labels],
                          [float(ok) for ok in check.labels], [0] * steps, [0] * steps, check.first_error_step,
                          detail=detail_json({"reasons": check.reasons, "final_answer": check.final_answer}))

    def annotate(self, solutions: list[Solution], context: AnnotationContext) -> AnnotationResult:
        rows = []
        for solution in solutions:
            if solution.failed_reason or not solution.steps:
                continue
            problem = context.problems[solution.problem_id]
            if problem.domain != "toy":
                steps = len(solution.steps)
                rows.append(StepLabels(solution.solution_id, solution.problem_id, self.id, [-1] * steps,
                                       [None] * steps, [0] * steps, [0] * steps, -1, abstained=True,
                                       detail=detail_json({"reason": f"no exact checker for domain {problem.domain}"})))
                continue
            rows.append(self.label(solution, problem.question))
        return AnnotationResult(rows)
