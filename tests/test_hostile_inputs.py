"""A corpus of bad inputs: each gets a clear error naming file, record and field, and no output."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, ProblemsConfig, load_config
from pipeline.sources import ProblemSourceError, load_problems
from stages.answers import extract_final_answer
from stages.grade import grade_answer
from stages.split import split_solution


def jsonl(tmp_path, name: str, lines: list) -> str:
    path = tmp_path / name
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines))
    return str(path)


def problems_from(path: str, source: str = "jsonl", **fields) -> list:
    return load_problems(ProblemsConfig(source=source, path=path, domain="gsm8k", fields=fields or {}))


GOOD = {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}


@pytest.mark.parametrize("records, message", [
    ([GOOD, {"answer": "#### 3"}], "line 2: missing field 'question'"),
    ([GOOD, {"question": ["a list"], "answer": "#### 1"}], "line 2: field 'question' must be text, not list"),
    ([GOOD, {"question": "   ", "answer": "#### 1"}], "line 2: field 'question' is empty"),
    ([GOOD, {"question": "x" * 1_000_001, "answer": "#### 1"}], "line 2: field 'question' has 1000001 characters"),
    ([GOOD, GOOD], "line 2: duplicate problem (same id and question as"),
    ([GOOD, b"\xff\xfe not utf-8"], "line 2: not valid UTF-8"),
    ([GOOD, b"{truncated"], "line 2: not valid JSON"),
    ([GOOD, [1, 2]], "line 2: a record must be a JSON object"),
])
def test_problem_file_errors(tmp_path, records, message):
    path = jsonl(tmp_path, "problems.jsonl", records)
    with pytest.raises(ProblemSourceError) as error:
        problems_from(path)
    assert path in str(error.value) and message in str(error.value)


def test_empty_and_missing_problem_files(tmp_path):
    empty = jsonl(tmp_path, "empty.jsonl", [])
    with pytest.raises(ProblemSourceError, match="no problems read"):
        problems_from(empty)
    with pytest.raises(ProblemSourceError, match="cannot open"):
        problems_from(str(tmp_path / "absent.jsonl"))


def test_truncated_parquet_is_named(tmp_path):
    path = tmp_path / "problems.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "answer": ["1", "2"]}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProblemSourceError, match=f"{path}: cannot read as Parquet"):
        problems_from(str(path), source="parquet")


def test_parquet_wrong_type_names_row_and_field(tmp_path):
    path = tmp_path / "problems.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "answer": [[1], [2]]}), path)
    with pytest.raises(ProblemSourceError, match=r"row 0: field 'answer' must be text, not list"):
        problems_from(str(path), source="parquet")


@pytest.mark.parametrize("text, message", [
    ("policy:\n  engine: tpu\n", "policy.engine"),
    ("sampling:\n  n: -3\n", "sampling.n"),
    ("samplng:\n  n: 3\n", "samplng: unknown key"),
    ("annotators:\n  - type: omegaprm\n    kk: 8\n", "annotators.0.omegaprm.kk: unknown key"),
    ("annotators:\n  - type: oracle\n", "annotators.0"),
    ("problems:\n  source: jsonl\n", "problems.path is required"),
    ("consensus:\n  rule: agreement\n", "agree_with"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("problems: {source: [unclosed\n", "not valid YAML"),
])
def test_config_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("output", [
    "",                                                  # nothing
    "The answer is unknowable.",                         # no answer
    "7 + 7 = 14\n" * 5000,                               # endless repetition
    "\\boxed{" * 20000,                                  # unclosed boxes
    "Answer: " + "9" * 50000,                            # a 50,000-digit answer
    "\x00\ud800 broken unicode \\boxed{4}",              # control and surrogate characters
])
def test_hostile_model_outputs_are_graded_safely(output):
    answer = extract_final_answer(output, "gsm8k")
    result = grade_answer(answer, "4", "gsm8k", timeout_s=2.0)
    assert result.correct in (True, False, None)
    steps, offsets = split_solution(output, "blank_line")
    assert all(output[o["start"]:o["end"]] == step for step, o in zip(steps, offsets))


def test_duplicate_ids_are_named(tmp_path):
    path = jsonl(tmp_path, "problems.jsonl", [{**GOOD, "id": "a"}, {"question": "Other?", "answer": "#### 1", "id": "a"}])
    with pytest.raises(ProblemSourceError, match="line 2: field 'id': duplicate id 'a' \\(first at .*line 1\\)"):
        problems_from(path, id="id")


def test_problem_paths_may_be_uris(tmp_path):
    path = jsonl(tmp_path, "problems.jsonl", [GOOD, {"question": "And 3 + 3?", "answer": "#### 6"}])
    problems = problems_from(f"file://{path}")
    assert [p.reference for p in problems] == ["4", "6"]
    pq.write_table(pa.table({"question": ["q1"], "answer": ["1"]}), tmp_path / "p.parquet")
    assert problems_from(f"file://{tmp_path / 'p.parquet'}", source="parquet")[0].question == "q1"
