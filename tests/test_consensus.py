"""Consensus rules and the evaluate metrics, on hand-made labels."""
from __future__ import annotations

import pytest

from data_schemas.records import Solution, StepLabels
from pipeline.evaluate import cohen_kappa, compare
from stages.consensus import Consensus, ConsensusRule, apply_min_mc


def solution(sid: str, steps: int = 4) -> Solution:
    return Solution(sid, "p", "pk", 0, "", "x", steps=["s"] * steps)


def labels(annotator: str, sid: str, step_labels: list[int], values=None, abstained=False) -> StepLabels:
    first = next((i for i, label in enumerate(step_labels) if label == 0), -1)
    return StepLabels(sid, "p", annotator, step_labels, values or [None] * len(step_labels), [0] * len(step_labels),
                      [0] * len(step_labels), first, abstained=abstained)


MC, JUDGE, SYMBOLIC = "omegaprm@1:aa", "llm_judge@1:bb", "symbolic@1:cc"


def test_qwen_rule_keeps_agreement_and_says_why_it_drops():
    solutions = [solution("agree"), solution("disagree"), solution("abstain"), solution("both-clean")]
    layers = {
        MC: {"agree": labels(MC, "agree", [1, 0, -1, -1]), "disagree": labels(MC, "disagree", [1, 1, 0, -1]),
             "abstain": labels(MC, "abstain", [1, 0, -1, -1]), "both-clean": labels(MC, "both-clean", [1, 1, 1, 1])},
        JUDGE: {"agree": labels(JUDGE, "agree", [1, 0, -1, -1]), "disagree": labels(JUDGE, "disagree", [0, -1, -1, -1]),
                "abstain": labels(JUDGE, "abstain", [-1] * 4, abstained=True),
                "both-clean": labels(JUDGE, "both-clean", [1, 1, 1, 1])},
    }
    consensus = Consensus(ConsensusRule(primary=MC, agree_with=("llm_judge",)))
    kept, rows = consensus.apply(solutions, layers)
    assert set(kept) == {"agree", "both-clean"}
    reasons = {row.solution_id: row.detail for row in rows}
    assert "disagreement on the first error" in reasons["disagree"] and "says 2" in reasons["disagree"]
    assert "abstained" in reasons["abstain"]
    assert all(row.annotator == consensus.id for row in rows) and len(rows) == 4


def test_symbolic_veto_and_min_mc():
    solutions = [solution("vetoed"), solution("fine")]
    layers = {
        MC: {"vetoed": labels(MC, "vetoed", [1, 1, 0, -1], [0.9, 0.5, 0.0, None]),
             "fine": labels(MC, "fine", [1, 1, 1, 0], [0.9, 0.2, 0.1, 0.0])},
        SYMBOLIC: {"vetoed": labels(SYMBOLIC, "vetoed", [1, 0, -1, -1]), "fine": labels(SYMBOLIC, "fine", [1, -1, 1, 0])},
    }
    kept, rows = Consensus(ConsensusRule(primary=MC, symbolic_veto=True)).apply(solutions, layers)
    assert set(kept) == {"fine"}
    assert "symbolic veto: step 1" in rows[0].detail
    rethresholded = apply_min_mc(layers[MC]["fine"], 0.25)
    assert rethresholded.step_labels == [1, 0, -1, -1] and rethresholded.first_error_step == 1
    kept, _ = Consensus(ConsensusRule(primary=MC, min_mc=0.25)).apply(solutions, layers)
    assert kept["fine"].first_error_step == 1


def test_compare_and_kappa():
    gold = {"a": {"abstained": False, "first_error_step": 1, "step_labels": [1, 0, 0]},
            "b": {"abstained": False, "first_error_step": -1, "step_labels": [1, 1, 1]},
            "c": {"abstained": False, "first_error_step": 0, "step_labels": [0, 0, 0]}}
    other = {"a": {"abstained": False, "first_error_step": 1, "step_labels": [1, 0, -1]},
             "b": {"abstained": False, "first_error_step": 2, "step_labels": [1, 1, 0]},
             "c": {"abstained": True, "first_error_step": -1, "step_labels": [-1, -1, -1]}}
    metrics = compare(gold, other)
    assert metrics["error_accuracy"] == 0.5 and metrics["correct_accuracy"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["abstained"] == 1 and metrics["n"] == 3 and metrics["steps_compared"] == 5
    assert metrics["step_agreement"] == 0.8
    # over the labelled rows only: "c" (an error, abstained) leaves the denominators
    assert metrics["coverage"] == pytest.approx(2 / 3, abs=1e-4)
    assert metrics["error_accuracy_labelled"] == 1.0 and metrics["correct_accuracy_labelled"] == 0.0
    assert metrics["f1_labelled"] == 0.0
    assert cohen_kappa([(1, 1), (0, 0), (1, 0), (0, 1)]) == pytest.approx(0.0)
    assert cohen_kappa([(1, 1), (0, 0)]) == pytest.approx(1.0)
    assert cohen_kappa([(1, 1), (1, 1)]) is None  # chance agreement is 1: undefined
