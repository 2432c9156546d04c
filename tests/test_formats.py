"""Import and export of the public PRM formats (data_schemas/formats), on real samples of each format."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features

from data_schemas.formats import FormatError, ImportResult, labelled_prefix_length, read_records
from data_schemas.formats import math_shepherd, prm800k, processbench, trl
from stages.write import prm_row

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "formats"
PROCESSBENCH = FIXTURES / "processbench_gsm8k_sample24.json"
PRM800K = FIXTURES / "prm800k_raw_samples_8.jsonl"
MATH_SHEPHERD = FIXTURES / "math_shepherd_samples_7.jsonl"


def prm_rows_of(result: ImportResult) -> list[dict]:
    """The prm-layer rows our writer makes from an import, with its labels as the final labels."""
    problems = {problem.problem_id: problem for problem in result.problems}
    return [prm_row(problems[solution.problem_id], solution, labels, [labels.annotator])
            for solution, labels in zip(result.solutions, result.labels)]


def steps_and_labels(result: ImportResult) -> list[tuple[list[str], list[int]]]:
    return [(solution.steps, labels.step_labels) for solution, labels in zip(result.solutions, result.labels)]


def labelled_prefixes(result: ImportResult) -> list[tuple[list[str], list[int]]]:
    """What survives a one-boolean-per-step format: each solution up to its first unlabelled step."""
    kept = []
    for steps, labels in steps_and_labels(result):
        length = labelled_prefix_length(labels)
        if length:
            kept.append((steps[:length], labels[:length]))
    return kept


@pytest.fixture(scope="module")
def processbench_records() -> list[dict]:
    return read_records(PROCESSBENCH)


@pytest.fixture(scope="module")
def prm800k_records() -> list[dict]:
    return read_records(PRM800K)


@pytest.fixture(scope="module")
def math_shepherd_records() -> list[dict]:
    return read_records(MATH_SHEPHERD)


# ---------------------------------------------------------------------------------------------- import


def test_processbench_import(processbench_records):
    result = processbench.read_processbench(PROCESSBENCH)
    assert (len(result.problems), len(result.solutions), len(result.labels), result.skipped) == (24, 24, 24, [])
    for record, solution, labels in zip(processbench_records, result.solutions, result.labels):
        steps, label = record["steps"], record["label"]
        assert solution.steps == steps
        assert solution.policy_key == "processbench:" + record["generator"]
        assert solution.outcome_correct is record["final_answer_correct"]
        assert [solution.text[span["start"]:span["end"]] for span in solution.step_offsets] == steps
        assert solution.text == "\n\n".join(steps)
        assert labels.annotator == "human:processbench"
        assert labels.first_error_step == label
        if label == -1:
            assert labels.step_labels == [1] * len(steps)
        else:
            assert labels.step_labels == [1] * label + [0] + [-1] * (len(steps) - label - 1)
    problem = result.problems[0]
    assert (problem.source_id, problem.reference, problem.domain) == ("gsm8k-195", "", "gsm8k")


def test_prm800k_follows_the_chosen_trajectory(prm800k_records):
    result = prm800k.read_prm800k(PRM800K)
    assert (len(result.solutions), result.skipped) == (8, [])
    assert all(labels.annotator == "human:prm800k" and solution.policy_key == "prm800k"
               for solution, labels in zip(result.solutions, result.labels))

    # session 0: step 1 was rewritten by the labeller (every completion rated -1); it ends with the answer
    first, first_labels = result.solutions[0], result.labels[0]
    raw_steps = prm800k_records[0]["label"]["steps"]
    assert first.steps[1] == raw_steps[1]["human_completion"]["text"]
    assert first.steps[5] == raw_steps[5]["completions"][raw_steps[5]["chosen_completion"]]["text"]
    assert first_labels.step_labels == [1] * 6
    assert (first.outcome_correct, first.final_answer) == (True, "29")
    assert result.problems[0].reference == "29"
    assert json.loads(first_labels.detail) == {"ratings": [1] * 6, "finish_reason": "solution", "human_steps": [1],
                                               "labeler": prm800k_records[0]["labeler"]}

    # session 1 (phase 2, found_error): a neutral step counts as good; the step rated -1 ends it, labelled bad
    found_error, found_error_labels = result.solutions[1], result.labels[1]
    assert found_error.steps[-1] == prm800k_records[1]["question"]["pre_generated_steps"][6]
    assert found_error_labels.step_labels == [1, 1, 1, 1, 1, 1, 0]
    assert found_error_labels.first_error_step == 6
    assert json.loads(found_error_labels.detail)["ratings"] == [1, 0, 1, 1, 1, 1, -1]
    assert found_error.outcome_correct is None

    # session 4 (give_up): the last step has neither a chosen nor a human completion and is left out
    assert len(result.solutions[4].steps) == len(prm800k_records[4]["label"]["steps"]) - 1
    assert json.loads(result.labels[4].detail)["finish_reason"] == "give_up"
    # a null ground truth answer is an empty reference
    assert result.problems[5].reference == ""


def test_prm800k_neutral_as():
    as_error = prm800k.read_prm800k(PRM800K, neutral_as=0)
    assert as_error.labels[1].step_labels == [1, 0, -1, -1, -1, -1, -1]
    assert as_error.labels[1].first_error_step == 1
    as_unlabelled = prm800k.read_prm800k(PRM800K, neutral_as=-1)
    assert as_unlabelled.labels[1].step_labels == [1, -1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="neutral_as"):
        prm800k.read_prm800k(PRM800K, neutral_as=2)


def test_prm800k_session_without_steps_is_skipped(prm800k_records):
    bad_problem = copy.deepcopy(prm800k_records[0])
    bad_problem["label"] = {"steps": [{"completions": [{"text": "x", "rating": None, "flagged": None}],
                                       "human_completion": None, "chosen_completion": None}],
                            "finish_reason": "bad_problem", "total_time": 1}
    result = prm800k.records_from_prm800k([bad_problem, prm800k_records[0]], source="s")
    assert len(result.solutions) == 1
    assert result.skipped == [(f"s, record 0 (labeler {bad_problem['labeler']} at {bad_problem['timestamp']})",
                               "no step to import (finish_reason 'bad_problem')")]


def test_math_shepherd_import(math_shepherd_records):
    result = math_shepherd.read_math_shepherd(MATH_SHEPHERD)
    assert (len(result.solutions), result.skipped) == (7, [])
    for record, solution, labels in zip(math_shepherd_records, result.solutions, result.labels):
        assert len(solution.steps) == record["input"].count("ки")
        # an independent reading (TRL's script): with the tag as one char, marks sit where the tags are
        one_char_tags = record["input"].replace("ки", "\0")
        marks = [record["label"][index] for index, char in enumerate(one_char_tags) if char == "\0"]
        assert labels.step_labels == [1 if mark == "+" else 0 for mark in marks]
        assert labels.annotator == "source:math-shepherd"
    first, problem = result.solutions[0], result.problems[0]
    assert problem.question.startswith("Janet pays $40/hour") and problem.question.endswith("in a year?")
    assert problem.domain == "gsm8k"
    assert first.steps[0] == "Janet spends 3 hours + 5 hours = <<3+5=8>>8 hours per week on music lessons."
    assert result.labels[0].step_labels == [1, 1, 1, 1, 0]
    assert (first.final_answer, first.outcome_correct) == ("13520", False)


# ------------------------------------------------------------------------------------------ round trips


def test_processbench_round_trip(processbench_records):
    imported = processbench.read_processbench(PROCESSBENCH)
    exported = processbench.to_processbench(prm_rows_of(imported))
    for original, written in zip(processbench_records, exported, strict=True):
        assert {key: written[key] for key in ("generator", "problem", "steps", "final_answer_correct", "label")} == \
               {key: original[key] for key in ("generator", "problem", "steps", "final_answer_correct", "label")}
    again = processbench.records_from_processbench(exported, source="export")
    assert steps_and_labels(again) == steps_and_labels(imported)
    assert [s.policy_key for s in again.solutions] == [s.policy_key for s in imported.solutions]


def test_prm800k_round_trips_through_processbench_and_trl():
    imported = prm800k.read_prm800k(PRM800K)
    rows = prm_rows_of(imported)
    via_processbench = processbench.records_from_processbench(processbench.to_processbench(rows), source="export")
    assert steps_and_labels(via_processbench) == steps_and_labels(imported)
    assert [s.outcome_correct for s in via_processbench.solutions] == [s.outcome_correct for s in imported.solutions]
    via_trl = trl.records_from_trl(trl.to_trl(rows), source="export")
    assert steps_and_labels(via_trl) == labelled_prefixes(imported) == steps_and_labels(imported)


def test_math_shepherd_round_trip_is_exact(math_shepherd_records):
    imported = math_shepherd.read_math_shepherd(MATH_SHEPHERD)
    exported = math_shepherd.to_math_shepherd(prm_rows_of(imported), task="GSM8K")
    assert exported == math_shepherd_records  # every step is labelled, so nothing is cut
    again = math_shepherd.records_from_math_shepherd(exported, source="export")
    assert steps_and_labels(again) == steps_and_labels(imported)


def test_trl_round_trip_ends_rows_at_the_first_error():
    imported = processbench.read_processbench(PROCESSBENCH)
    exported = trl.to_trl(prm_rows_of(imported))
    assert len(exported) == 24
    for row, labels in zip(exported, imported.labels):
        if labels.first_error_step >= 0:
            assert len(row["labels"]) == labels.first_error_step + 1 and row["labels"][-1] is False
    again = trl.records_from_trl(exported, source="export")
    assert steps_and_labels(again) == labelled_prefixes(imported)
    assert all(labels.annotator == "source:trl" for labels in again.labels)


def test_trl_keeps_soft_labels_and_skips_rows_without_a_first_verdict():
    rows = [
        {"problem_id": "p-1", "solution_id": "s-1", "question": "1+1?", "steps": ["1+1=2", "so 2", "done"],
         "labels": [1, 0, -1], "soft_labels": [0.75, 0.0, None]},
        {"problem_id": "p-2", "solution_id": "s-2", "question": "2+2?", "steps": ["2+2=4"], "labels": [-1],
         "soft_labels": [None]},
    ]
    exported = trl.to_trl(rows)
    assert exported == [{"prompt": "1+1?", "completions": ["1+1=2", "so 2"], "labels": [True, False],
                         "soft_labels": [0.75, 0.0], "problem_id": "p-1", "solution_id": "s-1"}]
    again = trl.records_from_trl(exported, source="export")
    assert again.labels[0].step_values == [0.75, 0.0]
    assert math_shepherd.to_math_shepherd(rows)[0]["label"] == "1+1? Step 1: 1+1=2 +\nStep 2: so 2 -"
    # ProcessBench's label -1 would claim that unlabelled steps are right: such rows are left out
    assert [row["id"] for row in processbench.to_processbench(rows)] == ["s-1"]


def test_exported_trl_rows_meet_prmtrainer_expectations(processbench_records):
    rows = (prm_rows_of(processbench.read_processbench(PROCESSBENCH)) + prm_rows_of(prm800k.read_prm800k(PRM800K))
            + prm_rows_of(math_shepherd.read_math_shepherd(MATH_SHEPHERD)))
    exported = trl.to_trl(rows)
    assert len(exported) == 24 + 8 + 7
    for row in exported:
        assert isinstance(row["prompt"], str) and row["completions"]
        assert all(isinstance(step, str) for step in row["completions"])
        assert len(row["completions"]) == len(row["labels"]) == len(row["soft_labels"])
        assert all(type(label) is bool for label in row["labels"])


@pytest.mark.parametrize("module, export", [
    (processbench, processbench.to_processbench),
    (math_shepherd, math_shepherd.to_math_shepherd),
    (trl, trl.to_trl),
])
def test_exports_load_with_their_features(module, export, tmp_path):
    rows = export(prm_rows_of(prm800k.read_prm800k(PRM800K)))
    dataset = Dataset.from_list(rows, features=module.FEATURES)
    assert dataset.features == module.FEATURES and len(dataset) == 8
    path = tmp_path / "part-00000.parquet"
    dataset.to_parquet(str(path))
    # what load_dataset("parquet") reads back: the features stored in the file's schema metadata
    assert Features.from_arrow_schema(pq.read_schema(path)) == module.FEATURES


# ----------------------------------------------------------------------------------------- malformed

def _processbench_record(**changes) -> dict:
    record = {"id": "gsm8k-1", "generator": "g", "problem": "1+1?", "steps": ["1+1=2", "2"],
              "final_answer_correct": True, "label": -1}
    return {key: value for key, value in {**record, **changes}.items() if value is not _MISSING}


def _trl_record(**changes) -> dict:
    record = {"prompt": "1+1?", "completions": ["1+1=2", "2"], "labels": [True, True]}
    return {key: value for key, value in {**record, **changes}.items() if value is not _MISSING}


def _math_shepherd_record(**changes) -> dict:
    record = {"input": "1+1? Step 1: 1+1=2 ки\nStep 2: 2 ки", "label": "1+1? Step 1: 1+1=2 +\nStep 2: 2 +",
              "task": "GSM8K"}
    return {key: value for key, value in {**record, **changes}.items() if value is not _MISSING}


def _prm800k_record(step: dict | None = None, **question_changes) -> dict:
    question = {key: value for key, value in {"problem": "1+1?", "ground_truth_answer": "2",
                                              **question_changes}.items() if value is not _MISSING}
    step = step or {"completions": [{"text": "1+1=2\n\n# Answer\n\n2", "rating": 1, "flagged": False}],
                    "human_completion": None, "chosen_completion": 0}
    return {"labeler": "l", "timestamp": "t", "question": question,
            "label": {"steps": [step], "finish_reason": "solution"}}


_MISSING = object()

MALFORMED = [
    # (importer, a good record, the malformed record, the field named, words of the reason)
    (processbench.records_from_processbench, _processbench_record(), _processbench_record(generator=_MISSING),
     "generator", "missing"),
    (processbench.records_from_processbench, _processbench_record(), _processbench_record(steps="1+1=2"),
     "steps", "expected a list, got str"),
    (processbench.records_from_processbench, _processbench_record(), _processbench_record(steps=["a", 3]),
     "steps[1]", "expected a string, got int"),
    (processbench.records_from_processbench, _processbench_record(), _processbench_record(label=True),
     "label", "expected an integer, got bool"),
    (processbench.records_from_processbench, _processbench_record(), _processbench_record(label=2),
     "label", "2 is not -1 or a step index (0..1)"),
    (trl.records_from_trl, _trl_record(), _trl_record(labels=[True]), "labels", "1 entries for 2 completions"),
    (trl.records_from_trl, _trl_record(), _trl_record(labels=[1, 1]), "labels[0]", "expected a boolean, got int"),
    (trl.records_from_trl, _trl_record(), _trl_record(soft_labels=[0.5]), "soft_labels", "1 entries for 2"),
    (trl.records_from_trl, _trl_record(), _trl_record(completions=_MISSING), "completions", "missing"),
    (math_shepherd.records_from_math_shepherd, _math_shepherd_record(),
     _math_shepherd_record(label="1+1? Step 1: 1+1=2 +\nStep 2: 2 "), "label", "ends before the mark of step 2: 1 marks for 2 steps"),
    (math_shepherd.records_from_math_shepherd, _math_shepherd_record(),
     _math_shepherd_record(label="1+1? Step 1: 1+1=2 +\nStep 2: 2 ?"), "label", "step 2: mark '?'"),
    (math_shepherd.records_from_math_shepherd, _math_shepherd_record(), _math_shepherd_record(task=_MISSING),
     "task", "missing"),
    (math_shepherd.records_from_math_shepherd, _math_shepherd_record(),
     _math_shepherd_record(input="1+1? 1+1=2 ки", label="1+1? 1+1=2 +"), "input", "no 'Step 1:'"),
    (prm800k.records_from_prm800k, _prm800k_record(), _prm800k_record(problem=_MISSING), "question.problem",
     "missing"),
    (prm800k.records_from_prm800k, _prm800k_record(),
     _prm800k_record({"completions": [{"text": "a", "rating": 1}], "human_completion": None, "chosen_completion": 1}),
     "label.steps[0].chosen_completion", "index 1 out of range for 1 completions"),
    (prm800k.records_from_prm800k, _prm800k_record(),
     _prm800k_record({"completions": [{"text": "a", "rating": 2}], "human_completion": None, "chosen_completion": 0}),
     "label.steps[0].completions[0].rating", "2 is not -1, 0 or 1"),
]


@pytest.mark.parametrize("records_from, good, bad, field, reason", MALFORMED,
                         ids=[f"{case[0].__module__.rsplit('.', 1)[1]}-{case[3]}" for case in MALFORMED])
def test_malformed_records(records_from, good, bad, field, reason):
    with pytest.raises(FormatError) as raised:
        records_from([good, bad, good], source="sample.jsonl")
    message = str(raised.value)
    assert message.startswith("sample.jsonl, record 1 (")
    assert f"field {field!r}: " in message and reason in message
    if records_from is processbench.records_from_processbench:
        assert "record 1 (gsm8k-1)" in message

    result = records_from([good, bad, good], source="sample.jsonl", skip_invalid=True)
    assert len(result.solutions) == len(result.labels) == 2
    assert len(result.problems) == 1  # the same problem twice
    assert len({solution.solution_id for solution in result.solutions}) == 2  # same text, distinct samples
    [(where, why)] = result.skipped
    assert where.startswith("sample.jsonl, record 1 (") and why.startswith(f"field {field!r}: ")


def test_a_record_that_is_not_an_object():
    with pytest.raises(FormatError, match=r"^s, record 0: field '<record>': expected an object, got list$"):
        trl.records_from_trl([["a"]], source="s")


def test_read_records_parquet_and_json(tmp_path):
    path = tmp_path / "trl.parquet"
    pq.write_table(pa.Table.from_pylist([_trl_record()]), path)
    assert trl.read_trl(path).labels[0].step_labels == [1, 1]
    not_an_array = tmp_path / "x.json"
    not_an_array.write_text('{"id": 1}')
    with pytest.raises(FormatError, match="expected a JSON array"):
        read_records(not_an_array)
