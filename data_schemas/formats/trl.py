"""TRL's stepwise supervision format, what ``trl.PRMTrainer`` trains on.

Record: ``{prompt, completions: [str], labels: [bool]}``, one boolean per completion (step), optionally with a
``soft_labels`` column of MC values, which TRL's boolean labels cannot carry (DESIGN.md §6).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from datasets import Features, Sequence, Value

from data_schemas.formats import (
    ImportResult,
    LabelledSolution,
    RecordFields,
    excerpt,
    import_records,
    labelled_prefix_length,
    read_records,
)

ANNOTATOR = "source:trl"
POLICY_KEY = "trl"

FEATURES = Features({
    "prompt": Value("string"),
    "completions": Sequence(Value("string")),
    "labels": Sequence(Value("bool")),
    "soft_labels": Sequence(Value("float32")),  # null element where not estimated
    "problem_id": Value("string"),
    "solution_id": Value("string"),
})


def _record_id(record: Mapping) -> str:
    return str(record["id"]) if "id" in record else excerpt(record.get("prompt"))


def _convert(record: Mapping, fields: RecordFields) -> LabelledSolution:
    prompt = fields.take(record, "prompt", str)
    completions = fields.take_list(record, "completions", str, non_empty=True)
    labels = fields.take_list(record, "labels", bool)
    fields.check_same_length("labels", labels, "completions", completions)
    soft_labels = fields.take_list(record, "soft_labels", float, nullable=True, nullable_items=True, optional=True)
    if soft_labels is not None:
        fields.check_same_length("soft_labels", soft_labels, "completions", completions)
        for index, value in enumerate(soft_labels):
            if value is not None and not 0.0 <= value <= 1.0:
                raise fields.error(f"soft_labels[{index}]", f"{value} is not in [0, 1]")
    source_id = record.get("id")
    return LabelledSolution(
        question=prompt, reference="", domain="plain", source_id=source_id if isinstance(source_id, str) else "",
        policy_key=POLICY_KEY, annotator=ANNOTATOR, steps=completions,
        step_labels=[1 if label else 0 for label in labels],
        step_values=[None if value is None else float(value) for value in soft_labels] if soft_labels is not None else None)


def records_from_trl(records: Iterable[dict], *, source: str, skip_invalid: bool = False) -> ImportResult:
    """Problems, solutions and ``source:trl`` labels (every step labelled, as given) from TRL records."""
    return import_records(records, source=source, skip_invalid=skip_invalid, record_id=_record_id, convert=_convert)


def read_trl(path: str | Path, *, skip_invalid: bool = False) -> ImportResult:
    """``records_from_trl`` over a Parquet or JSON-lines file."""
    return records_from_trl(read_records(path), source=str(path), skip_invalid=skip_invalid)


def to_trl(rows: Iterable[Mapping]) -> list[dict]:
    """TRL stepwise-supervision records from ``prm`` rows, with our ids and the soft labels beside them.

    PRMTrainer needs a boolean for every completion, and an unlabelled step (-1) has none; writing it as
    True or False would invent a verdict.  So a row is cut at its first unlabelled step: for our annotators'
    rows (unlabelled after the first error) it ends at the first error, labelled False; rows labelled
    throughout (Math-Shepherd's) keep every step.  Rows whose first step is unlabelled are left out.
    """
    exported = []
    for row in rows:
        labels = list(row["labels"])
        kept = labelled_prefix_length(labels)
        if kept == 0:
            continue
        soft_labels = row.get("soft_labels")
        exported.append({
            "prompt": row["question"],
            "completions": list(row["steps"][:kept]),
            "labels": [label == 1 for label in labels[:kept]],
            "soft_labels": list(soft_labels[:kept]) if soft_labels is not None else [None] * kept,
            "problem_id": row["problem_id"],
            "solution_id": row["solution_id"],
        })
    return exported
