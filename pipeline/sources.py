"""Read problems from the toy generator, JSONL, Parquet or a `datasets` dataset.

A bad record is an error that names the file, the record and the field; nothing is written before
all problems have been read.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

from data_schemas.records import Problem, problem_id_for
from pipeline.config import ProblemsConfig
from stages.answers import reference_from_gsm8k, reference_from_math
from toy import domain as toy_domain

MAX_QUESTION_CHARS = 100_000


class ProblemSourceError(ValueError):
    """A problem file or record that cannot be used."""


def _open_binary(path: str):
    """A local path, or a URI on any pyarrow filesystem (s3://, gs://, hdfs://, file://)."""
    if "://" not in path:
        try:
            return Path(path).open("rb")
        except OSError as error:
            raise ProblemSourceError(f"{path}: cannot open ({error.strerror})") from None
    from pyarrow import fs

    try:
        filesystem, inner = fs.FileSystem.from_uri(path)
        return io.BufferedReader(filesystem.open_input_file(inner))
    except Exception as error:
        raise ProblemSourceError(f"{path}: cannot open ({error})") from None


def _records_jsonl(path: str) -> Iterator[tuple[str, dict]]:
    handle = _open_binary(path)
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ProblemSourceError(f"{where}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ProblemSourceError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ProblemSourceError(f"{where}: a record must be a JSON object")
            yield where, record


def _records_parquet(path: str) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # truncated or not Parquet at all
        raise ProblemSourceError(f"{path}: cannot read as Parquet ({error})") from None
    for number, record in enumerate(table.to_pylist()):
        yield f"{path}, row {number}", record


def _records_hf(config: ProblemsConfig) -> Iterator[tuple[str, dict]]:
    import datasets

    try:
        dataset = datasets.load_dataset(config.path, config.subset, split=config.split)
    except Exception as error:
        raise ProblemSourceError(f"dataset {config.path} (split {config.split}): cannot load ({error})") from None
    for number, record in enumerate(dataset):
        yield f"{config.path}[{config.split}], row {number}", record


def _reference(record_answer: str, domain: str) -> str:
    if domain == "gsm8k" and "####" in record_answer:
        return reference_from_gsm8k(record_answer)
    if domain == "math" and "\\boxed" in record_answer:
        return reference_from_math(record_answer) or record_answer
    return record_answer.strip()


def _field(record: dict, name: str, where: str) -> str:
    if name not in record:
        raise ProblemSourceError(f"{where}: missing field {name!r} (fields present: {', '.join(sorted(record)) or 'none'})")
    value = record[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ProblemSourceError(f"{where}: field {name!r} must be text, not {type(value).__name__}")
    return value


def _toy_problems(config: ProblemsConfig) -> list[Problem]:
    settings = config.toy
    difficulty = toy_domain.Difficulty(min_ops=settings.min_ops, max_ops=settings.max_ops,
                                       max_operand=settings.max_operand, operators=settings.operators,
                                       paren_prob=settings.paren_prob, max_value=settings.max_value)
    return [Problem(problem_id=problem_id_for(p.problem_id, p.expression), question=p.expression,
                    reference=str(p.answer), domain="toy", source="toy", source_id=p.problem_id)
            for p in toy_domain.generate_problems(settings.n, settings.seed, difficulty)]


def load_problems(config: ProblemsConfig) -> list[Problem]:
    if config.source == "toy":
        problems = _toy_problems(config)
    else:
        if config.source == "jsonl":
            records = _records_jsonl(config.path)
        elif config.source == "parquet":
            records = _records_parquet(config.path)
        else:
            records = _records_hf(config)
        problems = []
        seen: dict[str, str] = {}
        seen_ids: dict[str, str] = {}
        fields = config.fields
        for index, (where, record) in enumerate(records):
            if index < config.offset:
                continue
            if config.limit is not None and len(problems) >= config.limit:
                break
            question = _field(record, fields.question, where)
            if not question.strip():
                raise ProblemSourceError(f"{where}: field {fields.question!r} is empty")
            if len(question) > MAX_QUESTION_CHARS:
                raise ProblemSourceError(f"{where}: field {fields.question!r} has {len(question)} characters (limit {MAX_QUESTION_CHARS})")
            answer = _field(record, fields.answer, where)
            # without an id field a problem is its question: the same question twice is a duplicate
            source_id = _field(record, fields.id, where) if fields.id else ""
            if source_id and source_id in seen_ids:
                raise ProblemSourceError(f"{where}: field {fields.id!r}: duplicate id {source_id!r} (first at {seen_ids[source_id]})")
            seen_ids[source_id] = where
            problem_id = problem_id_for(source_id, question)
            if problem_id in seen:
                raise ProblemSourceError(f"{where}: duplicate problem (same id and question as {seen[problem_id]})")
            seen[problem_id] = where
            problems.append(Problem(problem_id=problem_id, question=question, reference=_reference(answer, config.domain),
                                    domain=config.domain, source=config.path or "", source_id=source_id))
    if config.source == "toy" and config.limit is not None:
        problems = problems[config.offset:config.offset + config.limit]
    if not problems:
        raise ProblemSourceError(f"no problems read from {config.path or config.source}")
    return problems
