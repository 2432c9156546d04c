"""The embedded default: the toy domain's generator and exact checker, and the committed model."""
from __future__ import annotations

import random

import pytest

from toy import domain
from toy.tokenizer import build_tokenizer


def test_generator_is_deterministic_by_seed_and_respects_difficulty():
    first = domain.generate_problems(50, seed=7)
    assert first == domain.generate_problems(50, seed=7)
    assert first != domain.generate_problems(50, seed=8)
    hard = domain.Difficulty(min_ops=4, max_ops=4, max_operand=5, max_value=200)
    for problem in domain.generate_problems(30, seed=1, difficulty=hard):
        assert domain.count_ops(domain.parse(problem.expression)) == 4
        assert all(0 <= value <= 200 for value in domain.canonical_values(problem.expression))
        assert problem.answer == domain.evaluate(problem.expression)
        assert len(domain.solution_steps(problem.expression)) == 4


def test_canonical_solutions_check_correct():
    for problem in domain.generate_problems(200, seed=3):
        result = domain.check_solution(problem.expression, domain.solution_text(problem.expression))
        assert result.first_error_step == -1 and result.answer_correct
        assert all(result.labels)


@pytest.mark.parametrize("solution, first_error, answer_correct", [
    ("7*2-5\n14-5\nAnswer: 9", -1, True),          # correct
    ("8*2-5\n16-5\nAnswer: 11", 0, False),         # wrong first step, consistent afterwards
    ("7*2-5\n14-5\nAnswer: 8", 2, False),          # wrong last step
    ("7*2-5\n14-&\nAnswer: 9", 1, True),           # malformed step; the answer happens to be right
    ("7*2-5\n14-5", -1, False),                    # missing answer line
    ("7*2-5\n9\nAnswer: 9", 1, True),              # skips the answer line format mid-way
    ("14-5\nAnswer: 9", 0, True),                  # two operations in one step
    ("Answer: 9\n14-5", 0, False),                 # answer before the last step
    ("", -1, False),                               # nothing at all
])
def test_exact_checker_hand_made_cases(solution, first_error, answer_correct):
    result = domain.check_solution("(3+4)*2-5", solution)
    assert result.first_error_step == first_error
    assert result.answer_correct is answer_correct
    if first_error >= 0:
        assert result.labels[first_error] is False
        assert all(result.labels[:first_error])


def test_checker_refuses_hostile_steps_quickly():
    for text in ["9" * 5000, "(" * 300 + "1" + ")" * 300, "__import__('os')", "1" + "*9" * 500]:
        result = domain.check_solution("1+2", text + "\nAnswer: 3")
        assert result.step_correct[0] is False


def test_planted_slips_are_located_and_judge_targets_are_consistent():
    rng = random.Random(0)
    for problem in domain.generate_problems(100, seed=5):
        steps = domain.corrupt_solution(rng, problem.expression)
        truth = domain.check_steps(problem.expression, steps).first_error_step
        assert truth >= 0
        target = domain.judge_target(problem.expression, steps)
        assert domain.parse_verdict(target) == truth


def test_tokenizer_round_trips_every_character():
    tokenizer = build_tokenizer()
    text = "Q: (3+4)*2-5\n7*2-5\nAnswer: 9 \\boxed{-1}"
    ids = tokenizer.encode(text).ids
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_committed_model_loads_in_transformers_and_solves():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import EMBEDDED_MODEL

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL)
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_MODEL)
    prompts = [domain.policy_prompt(p.expression) for p in domain.generate_problems(20, seed=0)]
    hits = 0
    for problem, prompt in zip(domain.generate_problems(20, seed=0), prompts):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=48, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)
        hits += domain.check_solution(problem.expression, tokenizer.decode(out[0, ids.shape[1]:],
                                                                         skip_special_tokens=True)).answer_correct
    assert hits >= 5  # greedy decoding solves a good share of held-out problems


def test_committed_model_stays_in_the_accuracy_band(policy_engine):
    """A property of the shipped artefact on a fixed seed, through the real vLLM engine."""
    from toy.evaluate import evaluate_model

    report = evaluate_model("embedded", n=200, seed=0, engine=policy_engine)
    assert 0.30 <= report["final_answer_accuracy"] <= 0.80
    assert report["locatable_first_error_share"] >= 0.8
    assert report["judge_first_error_accuracy"] > report["judge_trivial_baseline"]


def test_judge_target_works_each_operation_before_comparing():
    steps = ["15+4-3*1", "19-3*1", "19-3", "Answer: 26"]
    target = domain.judge_target("8+7+4-3*1", steps)
    assert target.splitlines() == [
        "0: 8+7=15 15+4-3*1 | 15+4-3*1 ok",
        "1: 15+4=19 19-3*1 | 19-3*1 ok",
        "2: 3*1=3 19-3 | 19-3 ok",
        "3: 19-3=16 Answer: 16 | Answer: 26 wrong",
        "Verdict: \\boxed{3}",
    ]
    assert domain.next_operation("4*(8-(2-1+1))") == "2-1=1"
    assert domain.next_operation("(7+(9+2))*4") == "9+2=11"


def test_a_planted_slip_always_changes_the_value():
    # every factor beside a zero keeps the product: the slip must land where it changes the value
    rng = random.Random(0)
    for _ in range(50):
        steps = domain.corrupt_solution(rng, "0*7*3")
        assert domain.check_steps("0*7*3", steps).first_error_step >= 0
