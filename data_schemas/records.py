"""Typed records that flow between stages, and the stable ids that name them.

Ids are hashes of content, so a re-run, a relabel or a join finds the same row under the same id.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields


def stable_hash(*parts: object, length: int = 16) -> str:
    """A short hex digest of the parts (JSON-encoded, so types and order matter)."""
    encoded = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:length]


def problem_id_for(source_id: str, question: str) -> str:
    return "p-" + stable_hash(source_id, question)


def solution_id_for(problem_id: str, policy_key: str, sample_index: int, text: str) -> str:
    # The sample index is part of the id: two samples may write the same text, and both are rows.
    return "s-" + stable_hash(problem_id, policy_key, sample_index, text)


class _Row:
    """Conversion to and from a layer's row dict."""

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in row.items() if key in names})


@dataclass
class Problem(_Row):
    problem_id: str
    question: str
    reference: str
    domain: str = "plain"
    source: str = ""
    source_id: str = ""


@dataclass
class Solution(_Row):
    solution_id: str
    problem_id: str
    policy_key: str
    sample_index: int
    prompt: str
    text: str
    steps: list[str] = field(default_factory=list)
    step_offsets: list[dict] = field(default_factory=list)  # [{"start": int, "end": int}]
    final_answer: str | None = None
    outcome_correct: bool | None = None
    grade_detail: str = ""
    finish_reason: str = ""
    generated_tokens: int = 0
    failed_reason: str | None = None


@dataclass
class StepLabels(_Row):
    """One annotator's verdict on one solution (a row of labels/<annotator>/)."""

    solution_id: str
    problem_id: str
    annotator: str
    step_labels: list[int]  # 1 good, 0 bad, -1 not labelled
    step_values: list[float | None]
    step_n_correct: list[int]
    step_n_rollouts: list[int]
    first_error_step: int
    abstained: bool = False
    rollouts: int = 0
    generated_tokens: int = 0
    detail: str = "{}"
