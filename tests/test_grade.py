"""Answer extraction and grading: real GSM8K and MATH-500 references, equivalent and wrong forms,
hostile answers (bounded in time, never executed), and grading from threads."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from data_schemas.records import Problem, Solution
from stages import grade
from stages.answers import extract_final_answer, reference_from_gsm8k, reference_from_math
from stages.grade import GradeResult, GraderUnavailable, grade_answer, grade_solutions, shutdown_grader

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


GSM8K = load_jsonl("gsm8k_sample.jsonl")  # 25 records of GSM8K test, distinct answers
MATH = load_jsonl("math500_sample.jsonl")  # 27 records of MATH-500, answers of every shape
GSM8K_REFERENCES = [reference_from_gsm8k(record["answer"]) for record in GSM8K]


def other(values: list[str], index: int) -> str:
    """Another record's answer: a wrong answer of a realistic shape (the samples' answers all differ)."""
    return values[(index + 1) % len(values)]


# ---------------------------------------------------------------- extraction

def test_gsm8k_reference_keeps_commas_and_needs_the_marker():
    assert reference_from_gsm8k("She makes 9 * 2 = $<<9*2=18>>18.\n#### 1,450,000") == "1,450,000"
    with pytest.raises(ValueError, match="####"):
        reference_from_gsm8k("no marker here")


def test_math_reference_is_the_last_balanced_box():
    assert reference_from_math("so \\boxed{2} or rather $\\boxed{\\frac{1}{\\sqrt{2}}}$.") == "\\frac{1}{\\sqrt{2}}"
    assert reference_from_math("\\fbox{\\{1, 2\\}} end") == "\\{1, 2\\}"
    assert reference_from_math("the answer is $\\boxed 5$.") == "5"
    assert reference_from_math("unclosed \\boxed{3") is None
    assert reference_from_math("no box") is None


@pytest.mark.parametrize("domain, text, expected", [
    ("math", "We get $x = \\boxed{\\frac{1}{2}}$, or \\boxed{3}.", "3"),
    ("math", "So the answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("math", "Answer: (3, \\pi/2)", "(3, \\pi/2)"),
    ("math", "x = 5 so y = 6", None),  # no last-number guess in MATH
    ("gsm8k", "She makes 18 dollars.\n#### $18", "$18"),
    ("gsm8k", "9 * 2 = 18\nThe answer is 1,000 apples.", "1,000 apples"),
    ("gsm8k", "16 - 3 - 4 = 9 eggs; 9 * 2 = 18 dollars, or 1,234.5 cents", "1,234.5"),
    ("plain", "the total is 42", "42"),
    ("gsm8k", "no numbers at all", None),
    ("toy", "7*2-5\n14-5\nAnswer: 9", "9"),
    ("toy", "7*2-5\nAnswer: 9\n14-5", None),
    ("toy", "Answer: " + "9" * 50, None),
])
def test_extract_final_answer(domain, text, expected):
    assert extract_final_answer(text, domain) == expected


def test_extract_final_answer_rejects_unknown_domains():
    with pytest.raises(ValueError, match="gsm8k, math, plain, toy"):
        extract_final_answer("42", "chemistry")


def test_extraction_is_bounded_on_huge_output():
    started = time.monotonic()
    assert extract_final_answer("\\boxed{" * 200_000, "math") is None
    assert extract_final_answer("1" * 5_000_000 + " so 7", "gsm8k") == "7"
    assert extract_final_answer("x\n" * 1_000_000 + "Answer: 3", "toy") == "3"
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------- GSM8K

@pytest.mark.parametrize("index", range(len(GSM8K)))
def test_gsm8k_reference_graded_against_itself_equivalents_and_wrong_values(index):
    reference = GSM8K_REFERENCES[index]
    assert extract_final_answer(GSM8K[index]["answer"], "gsm8k") == reference
    value = int(reference.replace(",", ""))
    equivalents = [reference, str(value), f"{value:,}", f"${reference}", f"\\${value}", f"{reference} dollars",
                   f"{value}.00", f"{value}\\text{{ dollars}}"]
    for answer in equivalents:
        assert grade_answer(answer, reference, "gsm8k").correct is True, answer
    for answer in [str(value + 1), f"{value}.5", other(GSM8K_REFERENCES, index)]:
        assert grade_answer(answer, reference, "gsm8k").correct is False, answer


@pytest.mark.parametrize("answer, reference, correct", [
    ("0.5", "\\frac{1}{2}", True),
    ("1,000", "1000", True),
    ("$18", "18", True),
    ("10%", "0.1", True),
    ("10%", "0.2", False),
    ("\\frac{3}{4}", "0.75", True),
    ("0.74", "\\frac{3}{4}", False),
])
def test_equivalent_forms_math_verify_agrees_on(answer, reference, correct):
    for domain in ("gsm8k", "plain", "math"):
        assert grade_answer(answer, reference, domain).correct is correct, domain


# ---------------------------------------------------------------- MATH-500

MATH_ANSWERS = [record["answer"] for record in MATH]

# Equivalent forms math-verify accepts, by reference.
MATH_EQUIVALENTS = {
    "\\left( 3, \\frac{\\pi}{2} \\right)": ["(3, \\pi/2)", "(3, pi/2)", "\\left(3,\\dfrac{\\pi}{2}\\right)"],
    "p - q": ["-q + p"],
    "\\frac{14}{3}": ["14/3", "\\dfrac{14}{3}", "4\\frac{2}{3}"],
    "\\text{Evelyn}": ["Evelyn"],
    "90^\\circ": ["90", "90^{\\circ}"],
    "3\\sqrt{13}": ["\\sqrt{117}"],
    "\\frac{3}{56}": ["6/112"],
    "6 - 5i": ["-5i+6"],
    "-50": ["-50.0"],
    "\\pi": ["pi"],
    "x=5": ["5"],
    "1,-2": ["-2, 1"],
    "3, 5, 7": ["7, 5, 3"],
    "70 \\sqrt{2}": ["\\sqrt{9800}"],
    "1.25": ["\\frac{5}{4}"],
    "x^5 - x^4 + x^3 - x^2 + x - 1": ["x^5-x^4+x^3-x^2+x-1"],
    "-\\frac{\\pi}{6}": ["-\\pi/6"],
    "0.15": ["15\\%", "\\frac{3}{20}"],
    "\\frac{3\\sqrt{3}}{4}": ["\\frac{3}{4}\\sqrt{3}"],
    "\\cot x": ["\\frac{\\cos x}{\\sin x}"],
    "(-2,1)": ["\\left(-2, 1\\right)"],
}
# Near misses: a slip a model makes.
MATH_NEAR_MISSES = {
    "\\left( 3, \\frac{\\pi}{2} \\right)": "(3, \\pi)",
    "p - q": "q - p",
    "\\frac{14}{3}": "\\frac{13}{3}",
    "\\text{Evelyn}": "\\text{Alice}",
    "90^\\circ": "91^\\circ",
    "6 - 5i": "6 + 5i",
    "1,-2": "1, 2",
    "(6,31,-1)": "(6,31,1)",
    "\\cot x": "\\tan x",
}


@pytest.mark.parametrize("index", range(len(MATH)))
def test_math_reference_graded_against_itself_and_another_answer(index):
    record = MATH[index]
    reference = record["answer"]
    assert reference_from_math(record["solution"]) == reference
    assert extract_final_answer(record["solution"], "math") == reference
    assert grade_answer(reference, reference, "math").correct is True
    assert grade_answer(other(MATH_ANSWERS, index), reference, "math").correct is False


@pytest.mark.parametrize("reference, answer", [(reference, answer) for reference, answers in MATH_EQUIVALENTS.items()
                                               for answer in answers])
def test_math_equivalent_forms(reference, answer):
    assert reference in MATH_ANSWERS
    result = grade_answer(answer, reference, "math")
    assert result.correct is True, result.detail


@pytest.mark.parametrize("reference, answer", MATH_NEAR_MISSES.items())
def test_math_near_misses_are_wrong(reference, answer):
    assert reference in MATH_ANSWERS
    assert grade_answer(answer, reference, "math").correct is False


# ---------------------------------------------------------------- missing, toy, records

def test_missing_answers_are_ungradable_not_wrong():
    assert grade_answer(None, "5", "math") == GradeResult(None, None, "no final answer")
    assert grade_answer("  ", "5", "gsm8k").correct is None
    assert grade_answer("5", "", "gsm8k").detail == "no reference"
    assert grade_answer("\\frac{", "5", "math").correct is None


def test_toy_answers_compare_as_integers():
    assert grade_answer("9", "9", "toy") == GradeResult("9", True, "toy: equal")
    assert grade_answer("-3", "3", "toy").correct is False
    assert grade_answer("nine", "9", "toy").correct is None
    assert grade_answer("9" * 5000, "9", "toy").correct is None


def test_grade_solutions_fills_records():
    problems = {problem.problem_id: problem for problem in [
        Problem("p-toy", "(3+4)*2-5", "9", domain="toy"),
        Problem("p-gsm", GSM8K[0]["question"], GSM8K_REFERENCES[0], domain="gsm8k"),
        Problem("p-math", MATH[2]["problem"], MATH[2]["answer"], domain="math"),
    ]}
    texts = [("p-toy", "7*2-5\n14-5\nAnswer: 9", None), ("p-toy", "7*2-5\nAnswer: 8", None),
             ("p-gsm", f"So the total is ${GSM8K_REFERENCES[0]}.", None), ("p-math", "Thus $\\boxed{14/3}$.", None),
             ("p-math", "I could not finish", None), ("p-math", "\\boxed{14/3}", "engine error")]
    solutions = [Solution(f"s-{index}", problem_id, "policy", index, "prompt", text, failed_reason=failed)
                 for index, (problem_id, text, failed) in enumerate(texts)]
    assert grade_solutions(solutions, problems) is solutions
    assert [(s.final_answer, s.outcome_correct) for s in solutions] == [
        ("9", True), ("8", False), (GSM8K_REFERENCES[0], True), ("14/3", True), (None, None), (None, None)]
    assert solutions[4].grade_detail == "no final answer"
    assert "generation failed" in solutions[5].grade_detail


# ---------------------------------------------------------------- hostile answers, threads

def warm_grader() -> None:
    """Wait until a worker is ready: a replacement's start-up is not part of a call's time bound."""
    assert grade_answer("\\frac{1}{2}", "0.5", "math").correct is True


HOSTILE_ANSWERS = [
    "9**9**9**9",
    "9^{9^{9^{9}}}",
    "\\frac{1}{0}",
    "7" * 50_000,
    "2^{10000000}",
    "(" * 900,
    "\\sqrt{" * 120 + "2" + "}" * 120,
]


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS, ids=lambda answer: answer[:16])
def test_hostile_answers_return_quickly_and_are_never_correct(answer):
    for domain in ("math", "gsm8k"):
        warm_grader()
        started = time.monotonic()
        result = grade_answer(answer, "5", domain, timeout_s=1.0)
        assert time.monotonic() - started < 2.5, (domain, result.detail)
        assert result.correct is not True
    warm_grader()  # a worker killed at its timeout was replaced


def test_a_call_past_its_time_returns_timeout():
    warm_grader()
    result = grade_answer("9^{9^{9^{9}}}", "5", "math", timeout_s=0.5)
    assert (result.correct, result.detail) == (None, "timeout")


def test_code_in_answers_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    payloads = [f"__import__('os').system('touch {marker}')",
                f"eval(\"__import__('os').system('touch {marker}')\")",
                f"().__class__.__base__.__subclasses__()[0]('touch {marker}')"]
    for payload in payloads:
        for domain in ("math", "gsm8k", "plain"):
            for text in (payload, f"$\\boxed{{{payload}}}$", f"#### {payload}", f"The answer is {payload}"):
                answer = extract_final_answer(text, domain)
                assert grade_answer(answer, "5", domain, timeout_s=2.0).correct is not True
    assert not marker.exists()


def test_worker_refuses_side_effects_even_if_code_runs(tmp_path):
    # Defense in depth: the worker's audit hook blocks processes and file writes.
    marker = tmp_path / "ran"
    probe = ("import os, sys; sys.path.insert(0, 'stages'); import grade_worker; "
             "sys.addaudithook(grade_worker._deny_side_effects); "
             f"os.system('touch {marker}')")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                               cwd=Path(__file__).resolve().parent.parent)
    assert completed.returncode != 0 and "not allowed in the grader" in completed.stderr
    assert not marker.exists()


def test_a_worker_that_died_is_replaced():
    warm_grader()
    for worker in list(grade._worker_pool()._all):
        worker.process.kill()
    assert grade_answer("\\frac{1}{2}", "0.5", "math").correct is True


def test_grading_works_from_worker_threads():
    pairs = [(answer, reference) for reference, answers in MATH_EQUIVALENTS.items() for answer in answers][:12]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda pair: grade_answer(pair[0], pair[1], "math"), pairs))
    assert all(result.correct is True for result in results), [r.detail for r in results if not r.correct]

    outcome: dict[str, GradeResult] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault(
        "result", grade_answer("9^{9^{9^{9}}}", "5", "math", timeout_s=0.5)))
    thread.start()
    thread.join(timeout=30)
    assert outcome["result"].detail == "timeout"


def test_a_grader_that_cannot_start_fails_loudly(tmp_path, monkeypatch):
    broken = tmp_path / "worker.py"
    broken.write_text('print(\'{"ready": false, "error": "cannot import math_verify: test"}\', flush=True)\n')
    shutdown_grader()
    monkeypatch.setattr(grade, "WORKER_SCRIPT", broken)
    try:
        with pytest.raises(GraderUnavailable, match="cannot import math_verify"):
            grade_answer("\\frac{1}{2}", "0.5", "math")
    finally:
        shutdown_grader()  # the next test starts a pool of real workers
