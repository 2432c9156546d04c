"""A scripted engine for unit tests of search logic: MC(prefix) follows a rule the test sets.

Prompts look like ``Q\\n`` + the first p steps, one per line; the engine counts p and answers a
request for n rollouts with round(rule(p) * n) completions ending in RIGHT, the rest in WRONG.
Never the only test of a feature: integration tests use the real vLLM engine.
"""
from __future__ import annotations

from typing import Callable

from data_schemas.engine import Completion, GenerationRequest, GenerationResult
from data_schemas.records import Problem, Solution, problem_id_for, solution_id_for


class ScriptedEngine:
    def __init__(self, rule: Callable[[str, int], float]) -> None:
        self.rule = rule  # (question, prefix steps) -> MC value
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(list(requests))
        results = []
        for request in requests:
            question, _, rest = request.prompt.partition("\n")
            prefix_steps = rest.count("\n")
            right = round(self.rule(question, prefix_steps) * request.n)
            completions = [Completion("step\nRIGHT" if i < right else "step\nsome more\nWRONG", 3 + i, "stop")
                           for i in range(request.n)]
            results.append(GenerationResult(completions=completions))
        return results

    @property
    def rollouts(self) -> int:
        return sum(request.n for call in self.calls for request in call)


def grade_text(problem: Problem, text: str) -> tuple[str | None, bool]:
    answer = text.strip().split("\n")[-1]
    return answer, answer == "RIGHT"


def make_problem(question: str = "Q") -> Problem:
    return Problem(problem_id_for("", question), question, "RIGHT", domain="plain")


def make_solution(problem: Problem, n_steps: int, correct: bool, sample_index: int = 0) -> Solution:
    steps = [f"s{index}" for index in range(n_steps - 1)] + ["RIGHT" if correct else "WRONG"]
    text = "\n".join(steps)
    offsets, position = [], 0
    for step in steps:
        offsets.append({"start": position, "end": position + len(step)})
        position += len(step) + 1
    return Solution(solution_id_for(problem.problem_id, "pk", sample_index, text), problem.problem_id, "pk",
                    sample_index, problem.question + "\n", text, steps, offsets, steps[-1], correct)


def prepare(solution: Solution) -> Solution:
    """Split on lines and grade on the last line, as the scripted domain does."""
    steps = [line for line in solution.text.split("\n")]
    offsets, position = [], 0
    for step in steps:
        offsets.append({"start": position, "end": position + len(step)})
        position += len(step) + 1
    solution.steps, solution.step_offsets = steps, offsets
    solution.final_answer = steps[-1]
    solution.outcome_correct = steps[-1] == "RIGHT"
    return solution
