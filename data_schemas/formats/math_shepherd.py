"""Math-Shepherd (Wang et al., arXiv 2312.08935): one solution per record, every step labelled by MC rollouts.

Record: ``{input, label, task}``.  ``input`` is the question followed by "Step 1: ... ки\\nStep 2: ... ки", the
tag ``ки`` closing each step; ``label`` is ``input`` with each tag replaced by ``+`` (some rollout from the step
reached the reference answer) or ``-`` (none did).  These are hard labels for every step, kept as given (a step
after a ``-`` may be ``+``).  The "Step k: " numbering is the format's, not the step's: it is removed on import
and written back on export.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from datasets import Features, Value

from data_schemas.formats import (
    ImportResult,
    LabelledSolution,
    RecordFields,
    excerpt,
    import_records,
    labelled_prefix_length,
    read_records,
)

ANNOTATOR = "source:math-shepherd"
POLICY_KEY = "math-shepherd"
STEP_TAG = "ки"
GOOD, BAD = "+", "-"
FIRST_STEP = "Step 1:"  # where the question ends and the first step begins
_STEP_NUMBER = re.compile(r"Step \d+:\s*")
_FINAL_ANSWER = re.compile(r"The answer is:?\s*(.+?)\s*$", re.DOTALL)
_DOMAINS = {"GSM8K": "gsm8k", "MATH": "math"}

FEATURES = Features({"input": Value("string"), "label": Value("string"), "task": Value("string")})


def _record_id(record: Mapping) -> str:
    return excerpt(record.get("input"))


def _step_marks(segments: list[str], marked: str, fields: RecordFields) -> list[str]:
    """The ``+``/``-`` that ``label`` has in place of each tag of ``input`` (split at its tags into ``segments``)."""
    steps = len(segments) - 1
    marks = []
    position = 0
    for step_number, segment in enumerate(segments, start=1):
        if not marked.startswith(segment, position):
            where = f"before the mark of step {step_number}" if step_number <= steps else "after the last mark"
            raise fields.error("label", f"text differs from 'input' {where}")
        position += len(segment)
        if step_number > steps:
            break
        if position == len(marked):
            raise fields.error("label", f"ends before the mark of step {step_number}: "
                                        f"{step_number - 1} marks for {steps} steps tagged {STEP_TAG!r} in 'input'")
        mark = marked[position]
        if mark not in (GOOD, BAD):
            raise fields.error("label", f"step {step_number}: mark {mark!r} is not {GOOD!r} or {BAD!r}")
        marks.append(mark)
        position += 1
    if position != len(marked):
        raise fields.error("label", "text after the mark of the last step")
    return marks


def _convert(record: Mapping, fields: RecordFields) -> LabelledSolution:
    tagged = fields.take(record, "input", str)
    marked = fields.take(record, "label", str)
    task = fields.take(record, "task", str)
    segments = tagged.split(STEP_TAG)
    if len(segments) < 2:
        raise fields.error("input", f"no step tag {STEP_TAG!r}")
    if segments[-1].strip():
        raise fields.error("input", f"text after the last {STEP_TAG!r}: a step without a label")
    marks = _step_marks(segments, marked, fields)
    first_step_start = segments[0].find(FIRST_STEP)
    if first_step_start < 0:
        raise fields.error("input", f"no {FIRST_STEP!r} before the first {STEP_TAG!r}: the question and the first "
                                    "step cannot be told apart")
    question = segments[0][:first_step_start].strip()
    steps = []
    for step_number, segment in enumerate([segments[0][first_step_start:]] + segments[1:-1], start=1):
        step = segment.strip()
        numbering = _STEP_NUMBER.match(step)
        step = step[numbering.end():] if numbering else step
        if not step:
            raise fields.error("input", f"step {step_number} is empty")
        steps.append(step)
    step_labels = [1 if mark == GOOD else 0 for mark in marks]
    final_answer = _FINAL_ANSWER.search(steps[-1])
    return LabelledSolution(
        question=question, reference="", domain=_DOMAINS.get(task, "plain"), source_id="", policy_key=POLICY_KEY,
        annotator=ANNOTATOR, steps=steps, step_labels=step_labels,
        # the last step's rollouts start from the whole solution, so its label is the final answer's grade
        outcome_correct=step_labels[-1] == 1, final_answer=final_answer.group(1) if final_answer else None,
        detail={"task": task})


def records_from_math_shepherd(records: Iterable[dict], *, source: str, skip_invalid: bool = False) -> ImportResult:
    """Problems, solutions and ``source:math-shepherd`` labels from Math-Shepherd records."""
    return import_records(records, source=source, skip_invalid=skip_invalid, record_id=_record_id, convert=_convert)


def read_math_shepherd(path: str | Path, *, skip_invalid: bool = False) -> ImportResult:
    """``records_from_math_shepherd`` over a JSON-lines (or Parquet) file."""
    return records_from_math_shepherd(read_records(path), source=str(path), skip_invalid=skip_invalid)


def to_math_shepherd(rows: Iterable[Mapping], *, task: str = "") -> list[dict]:
    """Math-Shepherd records from ``prm`` rows (``task``: the dataset's column, GSM8K or MATH there).

    Every tagged step needs a ``+`` or ``-``, so a row is written up to its first unlabelled step: for our
    annotators' rows (unlabelled after the first error) that is up to and including the first error, labelled
    ``-``; rows labelled throughout keep every step.  Rows whose first step is unlabelled are left out.
    """
    exported = []
    for row in rows:
        kept = labelled_prefix_length(list(row["labels"]))
        if kept == 0:
            continue
        steps = list(row["steps"][:kept])
        if any(STEP_TAG in text for text in [row["question"], *steps]):
            raise ValueError(f"solution {row['solution_id']}: its text contains the step tag {STEP_TAG!r}")
        marks = [GOOD if label == 1 else BAD for label in row["labels"][:kept]]
        numbered = [f"Step {number}: {step} " for number, step in enumerate(steps, start=1)]
        exported.append({
            "input": f"{row['question']} " + "\n".join(step + STEP_TAG for step in numbered),
            "label": f"{row['question']} " + "\n".join(step + mark for step, mark in zip(numbered, marks)),
            "task": task,
        })
    return exported
