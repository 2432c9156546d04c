"""Conversions between our layers and the public PRM data formats (DESIGN.md §6).

One module per format.  Each importer is ``records_from_<format>(records, *, source, skip_invalid=False)``
and returns an ``ImportResult`` (problems, solutions, one annotator's labels, skipped records); each exporter
``to_<format>(prm_rows)`` turns rows of the ``prm`` layer into that format's rows, and the module's
``FEATURES`` are the ``datasets.Features`` those rows are written with.  Everything here is pure: the only
file access is ``read_records`` (and the ``read_<format>`` wrappers), which reads the one path it is given.

Label conventions (``data_schemas.layers``): 1 good, 0 bad, -1 not labelled.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_schemas.records import Problem, Solution, StepLabels, problem_id_for, solution_id_for

STEP_SEPARATOR = "\n\n"  # a solution's text is its steps joined by this; step_offsets index into it


class FormatError(ValueError):
    """A source record that does not follow its format.  ``where`` names source and record, ``why`` the field."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)  # one per distinct problem_id
    solutions: list[Solution] = field(default_factory=list)
    labels: list[StepLabels] = field(default_factory=list)  # one per solution, same order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why) of each record not imported


@dataclass
class LabelledSolution:
    """What a format module reads from one record; ``import_records`` makes the typed rows from it."""

    question: str
    reference: str
    domain: str
    source_id: str
    policy_key: str
    annotator: str
    steps: list[str]
    step_labels: list[int]
    step_values: list[float | None] | None = None  # None: the source gives no soft values
    outcome_correct: bool | None = None
    final_answer: str | None = None
    detail: dict = field(default_factory=dict)


class SkipRecord(Exception):
    """A well-formed record with nothing to import (e.g. a labelling session that ended before its first step)."""


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
               dict: "an object"}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_kind(value: Any, kind: type) -> bool:
    # bool is an int in Python, but a label of True is a type error in every format here
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


class RecordFields:
    """Typed access to one source record; every failure names the source, the record and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def error(self, name: str, why: str) -> FormatError:
        return FormatError(self.where, f"field {name!r}: {why}")

    def take(self, container: Mapping, key: str, kind: type, *, at: str = "", nullable: bool = False,
             optional: bool = False) -> Any:
        """``container[key]`` checked to be a ``kind`` (or None when nullable; absent → None when optional)."""
        name = at + key
        if key not in container:
            if optional:
                return None
            raise self.error(name, "missing")
        value = container[key]
        if value is None and nullable:
            return None
        if not _is_kind(value, kind):
            raise self.error(name, f"expected {_TYPE_NAMES[kind]}, got {_type_name(value)}")
        return value

    def take_list(self, container: Mapping, key: str, item_kind: type, *, at: str = "", nullable: bool = False,
                  nullable_items: bool = False, optional: bool = False, non_empty: bool = False) -> list | None:
        """A list whose every element is an ``item_kind`` (or None when nullable_items)."""
        values = self.take(container, key, list, at=at, nullable=nullable, optional=optional)
        if values is None:
            return None
        if non_empty and not values:
            raise self.error(at + key, "empty list")
        for index, value in enumerate(values):
            if value is None and nullable_items:
                continue
            if not _is_kind(value, item_kind):
                raise self.error(f"{at}{key}[{index}]", f"expected {_TYPE_NAMES[item_kind]}, got {_type_name(value)}")
        return values

    def check_same_length(self, name: str, values: list, steps_name: str, steps: list) -> None:
        if len(values) != len(steps):
            raise self.error(name, f"{len(values)} entries for {len(steps)} {steps_name}")


def excerpt(text: object, length: int = 40) -> str:
    """A short quote of a record's text, to name records that have no id."""
    if not isinstance(text, str):
        return "?"
    text = " ".join(text.split())
    return repr(text if len(text) <= length else text[:length - 1] + "…")


def join_steps(steps: list[str]) -> tuple[str, list[dict]]:
    """The solution text (steps joined by STEP_SEPARATOR) and each step's char span in it."""
    offsets = []
    position = 0
    for step in steps:
        offsets.append({"start": position, "end": position + len(step)})
        position += len(step) + len(STEP_SEPARATOR)
    return STEP_SEPARATOR.join(steps), offsets


def first_error_index(labels: list[int]) -> int:
    """Index of the first step labelled bad (0), -1 when there is none."""
    return next((index for index, label in enumerate(labels) if label == 0), -1)


def unlabel_after_first_error(labels: list[int]) -> list[int]:
    """Steps after the first bad one are not labelled (-1): what follows an error says nothing about the step."""
    first_error = first_error_index(labels)
    if first_error < 0:
        return list(labels)
    return list(labels[:first_error + 1]) + [-1] * (len(labels) - first_error - 1)


def labelled_prefix_length(labels: list[int]) -> int:
    """How many leading steps carry a verdict (1 or 0): formats with one boolean per step can carry only these.

    For our annotators' rows (unlabelled after the first error) this is "up to and including the first error";
    rows whose every step is labelled (Math-Shepherd's, TRL's) keep all their steps.
    """
    return next((index for index, label in enumerate(labels) if label not in (0, 1)), len(labels))


def read_records(path: str | Path) -> list[dict]:
    """The records of one file: a JSON array (``.json``), JSON lines (``.jsonl``) or Parquet (``.parquet``)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with path.open(encoding="utf-8") as handle:
        if path.suffix == ".json":
            records = json.load(handle)
            if not isinstance(records, list):
                raise FormatError(str(path), f"expected a JSON array of records, got {_type_name(records)}")
            return records
        return [json.loads(line) for line in handle if line.strip()]


def import_records(records: Iterable[Any], *, source: str, skip_invalid: bool,
                   record_id: Callable[[Mapping], str],
                   convert: Callable[[Mapping, RecordFields], LabelledSolution]) -> ImportResult:
    """Convert every record with ``convert`` and build the typed rows, the same way for every format.

    A malformed record raises its FormatError, or with ``skip_invalid`` is listed in ``skipped``; a record
    with nothing to import (SkipRecord) is always listed there.
    """
    result = ImportResult()
    known_problems: set[str] = set()
    # several solutions of one problem by one policy may share a text; the index keeps their ids apart
    samples_per_policy: Counter[tuple[str, str]] = Counter()
    for index, record in enumerate(records):
        if isinstance(record, Mapping):
            fields = RecordFields(f"{source}, record {index} ({record_id(record)})")
        else:
            fields = RecordFields(f"{source}, record {index}")
        try:
            if not isinstance(record, Mapping):
                raise fields.error("<record>", f"expected an object, got {_type_name(record)}")
            labelled = convert(record, fields)
        except FormatError as error:
            if not skip_invalid:
                raise
            result.skipped.append((error.where, error.why))
            continue
        except SkipRecord as reason:
            result.skipped.append((fields.where, str(reason)))
            continue
        problem_id = problem_id_for(labelled.source_id, labelled.question)
        if problem_id not in known_problems:
            known_problems.add(problem_id)
            result.problems.append(Problem(problem_id, labelled.question, labelled.reference, labelled.domain,
                                           source, labelled.source_id))
        sample_index = samples_per_policy[problem_id, labelled.policy_key]
        samples_per_policy[problem_id, labelled.policy_key] += 1
        text, offsets = join_steps(labelled.steps)
        solution_id = solution_id_for(problem_id, labelled.policy_key, sample_index, text)
        result.solutions.append(Solution(
            solution_id, problem_id, labelled.policy_key, sample_index, prompt=labelled.question, text=text,
            steps=list(labelled.steps), step_offsets=offsets, final_answer=labelled.final_answer,
            outcome_correct=labelled.outcome_correct))
        step_count = len(labelled.steps)
        values = labelled.step_values if labelled.step_values is not None else [None] * step_count
        result.labels.append(StepLabels(
            solution_id, problem_id, labelled.annotator, list(labelled.step_labels), list(values),
            [0] * step_count, [0] * step_count, first_error_index(labelled.step_labels),
            detail=json.dumps(labelled.detail, sort_keys=True)))
    return result
