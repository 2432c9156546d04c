"""The LLM judge: prompts on real ProcessBench records, robust verdict parsing, votes, abstentions,
and the embedded judge through the real engine."""
from __future__ import annotations

import json

import pytest

from data_schemas.engine import Completion, GenerationResult
from data_schemas.records import Problem, Solution, problem_id_for
from stages.annotator import AnnotationContext
from stages.judge import JudgeSettings, LLMJudge, judge_prompt, majority, parse_verdict
from tests.conftest import FIXTURES

PROCESSBENCH = json.loads((FIXTURES / "formats" / "processbench_gsm8k_sample24.json").read_text())


def as_records(record: dict) -> tuple[Problem, Solution]:
    problem = Problem(problem_id_for(record["id"], record["problem"]), record["problem"], "", "gsm8k")
    solution = Solution("s-" + record["id"], problem.problem_id, "pb", 0, "", "\n\n".join(record["steps"]),
                        steps=record["steps"])
    return problem, solution


def test_processbench_prompt_tags_every_paragraph_of_real_records():
    for record in PROCESSBENCH:
        problem, solution = as_records(record)
        prompt = judge_prompt(JudgeSettings(style="processbench"), problem, solution.steps)
        assert prompt.count("<paragraph_") == len(record["steps"]) == prompt.count("</paragraph_")
        assert record["problem"] in prompt and "\\boxed{}" in prompt
        qwen = judge_prompt(JudgeSettings(style="qwen"), problem, solution.steps)
        assert "Paragraph i:" in qwen and "\\boxed{-1}" in qwen


@pytest.mark.parametrize("text, steps, verdict", [
    ("The earliest error is in paragraph 2.\n\n**Final answer**: \\boxed{2}", 5, 2),
    ("All paragraphs are correct. \\boxed{-1}", 5, -1),
    ("first \\boxed{1} then, on reflection, \\boxed{ 3 }", 5, 3),             # the last box counts
    ("Paragraph 0: fine, correct.\nParagraph 1: 3*4=13, incorrect.", 5, 1),  # Qwen style, no box
    ("\\boxed{7}", 5, None),                                                 # no such paragraph
    ("\\boxed{-2}", 5, None),
    ("I cannot decide.", 5, None),
    ("", 3, None),
    ("\\boxed{" * 5000, 3, None),                                            # hostile: unclosed boxes
    ("x" * 1_000_000 + "\\boxed{0}", 3, 0),                                  # a rambling judge
])
def test_parse_verdict(text, steps, verdict):
    assert parse_verdict(text, steps) == verdict


def test_majority_and_ties():
    assert majority([2, 2, -1]) == 2
    assert majority([None, None, -1]) == -1
    assert majority([None, None]) is None
    assert majority([3, -1]) == 3        # a tie goes to the earliest error named
    assert majority([4, 1, -1]) == 1


class CannedEngine:
    """Answers each request with the given texts (one per vote)."""

    def __init__(self, texts_for):
        self.texts_for = texts_for
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [GenerationResult([Completion(t, 5, "stop") for t in self.texts_for(r)]) for r in requests]


def test_votes_soft_values_and_abstentions_on_processbench_records():
    records = PROCESSBENCH[:4]
    pairs = [as_records(r) for r in records]
    problems = {p.problem_id: p for p, _ in pairs}
    answers = iter([["\\boxed{1}", "\\boxed{1}", "\\boxed{-1}"], ["no idea", "???", "\\boxed{99}"],
                    ["\\boxed{-1}"] * 3, ["\\boxed{0}", "\\boxed{2}", "\\boxed{0}"]])
    engine = CannedEngine(lambda request: next(answers))
    judge = LLMJudge(JudgeSettings(style="processbench", votes=3, temperature=0.7))
    rows = judge.annotate([s for _, s in pairs], AnnotationContext(problems, engines={"policy": engine})).labels
    assert all(request.n == 3 for request in engine.requests)
    assert rows[0].first_error_step == 1 and rows[0].step_labels[:3] == [1, 0, -1]
    assert rows[0].step_values[0] == 1.0 and rows[0].step_values[1] == pytest.approx(1 / 3)
    assert rows[1].abstained and rows[1].step_labels == [-1] * len(pairs[1][1].steps)
    assert rows[2].first_error_step == -1 and set(rows[2].step_labels) == {1}
    assert rows[3].first_error_step == 0


def test_engine_failure_is_an_abstention_with_its_reason():
    problem, solution = as_records(PROCESSBENCH[0])

    class Failing:
        def generate(self, requests):
            return [GenerationResult(error="HTTP 503 (gave up after 4 attempts)") for _ in requests]

    [row] = LLMJudge().annotate([solution], AnnotationContext({problem.problem_id: problem},
                                                              engines={"policy": Failing()})).labels
    assert row.abstained and "gave up" in row.detail


def test_embedded_judge_through_the_real_engine(policy_engine):
    """The shipped model judges toy solutions in its own format: its verdicts parse, and it finds
    planted slips more often than chance."""
    import random

    from toy import domain

    rng = random.Random(0)
    problems, solutions, truths = {}, [], []
    for index, toy in enumerate(domain.generate_problems(40, seed=21)):
        steps = domain.corrupt_solution(rng, toy.expression) if index % 2 else domain.solution_steps(toy.expression)
        problem = Problem(problem_id_for("", toy.expression), toy.expression, str(toy.answer), "toy")
        problems[problem.problem_id] = problem
        solutions.append(Solution(f"s{index}", problem.problem_id, "pk", 0, "", "\n".join(steps), steps=steps))
        truths.append(domain.check_steps(toy.expression, steps).first_error_step)
    judge = LLMJudge(JudgeSettings(style="toy", max_tokens=320))
    rows = judge.annotate(solutions, AnnotationContext(problems, engines={"policy": policy_engine})).labels
    assert sum(row.abstained for row in rows) <= 4
    hits = sum(row.first_error_step == truth for row, truth in zip(rows, truths))
    assert hits > 20  # always answering "no error" would score 20 of 40
