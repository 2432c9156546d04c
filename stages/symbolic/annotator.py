"""The symbolic annotator: per-step verdicts and the final-answer check, as ``StepLabels`` rows.

What it checks and refuses is described in the package docstring (``stages.symbolic``).  Its id hashes
``SETTINGS``, every bound and tolerance, so rows labelled under other bounds never share an id.
"""
from __future__ import annotations

from data_schemas.records import Problem, Solution, StepLabels
from stages.annotator import AnnotationContext, AnnotationResult, annotator_id, detail_json
from stages.symbolic.arithmetic import (
    MAX_DEPTH, MAX_EXPONENT, MAX_EXPRESSION_CHARS, MAX_FACTORIAL, MAX_NUMBER_DIGITS, MAX_OPERATIONS,
    MAX_RESULT_BITS, MAX_STEP_CHARS, STEP_TIME_BUDGET_S, _Budget,
)
from stages.symbolic.final_answers import compare_answers, stated_answer
from stages.symbolic.relations import UNKNOWN, WRONG, _bare_expression_value, _check_step
from stages.symbolic.sides import APPROX_REL_TOL, REL_TOL

SETTINGS = {
    "max_step_chars": MAX_STEP_CHARS, "max_expression_chars": MAX_EXPRESSION_CHARS,
    "max_number_digits": MAX_NUMBER_DIGITS, "max_exponent": MAX_EXPONENT, "max_result_bits": MAX_RESULT_BITS,
    "max_factorial": MAX_FACTORIAL, "max_depth": MAX_DEPTH, "max_operations": MAX_OPERATIONS,
    "step_time_budget_s": STEP_TIME_BUDGET_S, "rel_tol": str(REL_TOL), "approx_rel_tol": str(APPROX_REL_TOL),
}

TOY_RULE = ("toy: a step that is a bare expression must keep the problem's value, so a step that "
            "faithfully continues an earlier slip is wrong too (as in the exact checker); "
            "'Answer: N' must equal it; the one-operation-per-step format is not checked")


class SymbolicChecker:
    """Deterministic per-step arithmetic checks (see the package docstring); no engine, no rollouts."""

    name = "symbolic"
    version = 1

    def __init__(self) -> None:
        self.id = annotator_id(self.name, self.version, SETTINGS)

    def label(self, solution: Solution, problem: Problem | None) -> StepLabels:
        toy_value = None
        if problem is not None and problem.domain == "toy":
            toy_side = _bare_expression_value(problem.question, _Budget())
            toy_value = toy_side.value if toy_side is not None else None
        checks = [_check_step(step, toy_value, _Budget()) for step in solution.steps]
        final: dict = {}
        answer_step = next((index for index in range(len(solution.steps) - 1, -1, -1)
                            if stated_answer(solution.steps[index]) is not None), None)
        if answer_step is not None and problem is not None and problem.reference:
            stated = stated_answer(solution.steps[answer_step]) or ""
            outcome, reason = compare_answers(stated, problem.reference)
            checks[answer_step].add(outcome, reason)
            final = {"step": answer_step, "stated": stated[:200], "reference": problem.reference[:200],
                     "outcome": outcome}
        verdicts = [check.verdict for check in checks]
        steps = len(verdicts)
        detail: dict = {"steps": [{"verdict": check.verdict, "reasons": check.reasons} for check in checks],
                        "final_answer": final}
        if toy_value is not None:
            detail["rule"] = TOY_RULE
        return StepLabels(
            solution.solution_id, solution.problem_id, self.id, verdicts,
            [None if verdict == UNKNOWN else float(verdict) for verdict in verdicts],
            [0] * steps, [0] * steps, next((i for i, verdict in enumerate(verdicts) if verdict == WRONG), -1),
            abstained=all(verdict == UNKNOWN for verdict in verdicts), detail=detail_json(detail))

    def annotate(self, solutions: list[Solution], context: AnnotationContext) -> AnnotationResult:
        rows = [self.label(solution, context.problems.get(solution.problem_id))
                for solution in solutions if not solution.failed_reason and solution.steps]
        return AnnotationResult(rows)
