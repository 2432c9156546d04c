"""Assemble the rows of the final ``prm/`` layer from problems, solutions and the final step labels."""
from __future__ import annotations

from data_schemas.records import Problem, Solution, StepLabels


def prm_row(problem: Problem, solution: Solution, final: StepLabels | None, annotators: list[str]) -> dict:
    """One training row.  Without a final label, steps are unlabelled (-1) and only the outcome is known."""
    steps = list(solution.steps)
    if final is None:
        labels = [-1] * len(steps)
        soft: list[float | None] = [None] * len(steps)
        first_error = -1
    else:
        labels = list(final.step_labels)
        soft = list(final.step_values)
        first_error = final.first_error_step
    return {
        "problem_id": problem.problem_id,
        "solution_id": solution.solution_id,
        "question": problem.question,
        "steps": steps,
        "labels": labels,
        "soft_labels": soft,
        "first_error_step": first_error,
        "outcome_correct": solution.outcome_correct,
        "annotators": annotators,
        "reference": problem.reference,
        "final_answer": solution.final_answer,
        "policy_key": solution.policy_key,
    }


def prm_rows(problems: dict[str, Problem], solutions: list[Solution],
             final_labels: dict[str, StepLabels] | None, annotators: list[str]) -> list[dict]:
    """Rows for every usable solution; with final labels, only the solutions that carry one (kept)."""
    rows = []
    for solution in solutions:
        if solution.failed_reason or not solution.steps:
            continue
        final = None
        if final_labels is not None:
            final = final_labels.get(solution.solution_id)
            if final is None:
                continue  # dropped by consensus
        rows.append(prm_row(problems[solution.problem_id], solution, final, annotators))
    return rows
