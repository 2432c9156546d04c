"""ProcessBench (Qwen, arXiv 2412.06559): one solution per record, labelled with its earliest wrong step.

Record: ``{id, generator, problem, steps: [str], final_answer_correct, label}``; ``label`` is the 0-based index
of the earliest wrong step, -1 when every step is right.  Steps before the label are good, the label step is
bad, and steps after it were not judged.  ProcessBench carries no reference answer.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from datasets import Features, Sequence, Value

from data_schemas.formats import (
    ImportResult,
    LabelledSolution,
    RecordFields,
    first_error_index,
    import_records,
    read_records,
)

ANNOTATOR = "human:processbench"
POLICY_PREFIX = "processbench:"  # policy_key = POLICY_PREFIX + generator

# As the Hub's Qwen/ProcessBench loads (label int64), so exported sets concatenate with the original.
FEATURES = Features({
    "id": Value("string"),
    "generator": Value("string"),
    "problem": Value("string"),
    "steps": Sequence(Value("string")),
    "final_answer_correct": Value("bool"),  # null where our outcome is unknown
    "label": Value("int64"),
})


def _domain(record_id: str) -> str:
    # ProcessBench ids are "<subset>-<n>"; gsm8k is graded as GSM8K, the other subsets (math, olympiadbench,
    # omnimath) as MATH-style answers.
    return "gsm8k" if record_id.startswith("gsm8k") else "math"


def _record_id(record: Mapping) -> str:
    return str(record.get("id", "?"))


def _convert(record: Mapping, fields: RecordFields) -> LabelledSolution:
    record_id = fields.take(record, "id", str)
    generator = fields.take(record, "generator", str)
    problem = fields.take(record, "problem", str)
    steps = fields.take_list(record, "steps", str, non_empty=True)
    # null is accepted: our own export writes it where the outcome was never graded
    final_answer_correct = fields.take(record, "final_answer_correct", bool, nullable=True)
    label = fields.take(record, "label", int)
    if not -1 <= label < len(steps):
        raise fields.error("label", f"{label} is not -1 or a step index (0..{len(steps) - 1})")
    if label == -1:
        step_labels = [1] * len(steps)
    else:
        step_labels = [1] * label + [0] + [-1] * (len(steps) - label - 1)
    return LabelledSolution(
        question=problem, reference="", domain=_domain(record_id), source_id=record_id,
        policy_key=POLICY_PREFIX + generator, annotator=ANNOTATOR, steps=steps, step_labels=step_labels,
        outcome_correct=final_answer_correct)


def records_from_processbench(records: Iterable[dict], *, source: str, skip_invalid: bool = False) -> ImportResult:
    """Problems, solutions and ``human:processbench`` labels from ProcessBench records."""
    return import_records(records, source=source, skip_invalid=skip_invalid, record_id=_record_id, convert=_convert)


def read_processbench(path: str | Path, *, skip_invalid: bool = False) -> ImportResult:
    """``records_from_processbench`` over a file (ProcessBench ships JSON arrays; JSON lines and Parquet work too)."""
    return records_from_processbench(read_records(path), source=str(path), skip_invalid=skip_invalid)


def to_processbench(rows: Iterable[Mapping]) -> list[dict]:
    """ProcessBench records from ``prm`` rows; ``id`` is the solution id, ``generator`` the policy key.

    ``label`` says "every step before it is right", so a row is written only where that holds: every step
    before its first error (or every step, when it has none) is labelled good.  Rows with unlabelled steps
    there (an abstaining annotator, PRM800K neutral steps kept unlabelled) are left out.
    """
    exported = []
    for row in rows:
        labels = list(row["labels"])
        first_error = first_error_index(labels)
        judged = labels[:first_error] if first_error >= 0 else labels
        if not labels or any(label != 1 for label in judged):
            continue
        policy_key = row.get("policy_key") or ""
        exported.append({
            "id": row["solution_id"],
            "generator": policy_key.removeprefix(POLICY_PREFIX),
            "problem": row["question"],
            "steps": list(row["steps"]),
            "final_answer_correct": row.get("outcome_correct"),
            "label": first_error,
        })
    return exported
