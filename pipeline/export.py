"""Export a dataset's prm/ rows to the formats trainers use, with a train/test split by problem.

Formats: ``trl`` (stepwise supervision for trl's PRMTrainer; soft labels in their own column),
``math-shepherd`` (``ки`` tags → ``+``/``-``), ``processbench`` (earliest error index), ``parquet`` (our
prm/ rows as they are).  The split is by problem, never by step or by solution: every solution of a
problem lands on the same side, so no test question leaks into training.  Files are written with
`datasets`, so the features travel in the Parquet metadata and ``load_dataset(DIR)`` restores them.
"""
from __future__ import annotations

import random
from pathlib import Path

from pipeline.store import DatasetStore

FORMATS = ("trl", "math-shepherd", "processbench", "parquet")


def _converter(fmt: str):
    from datasets import Features

    from data_schemas.formats import math_shepherd, processbench, trl
    from data_schemas.layers import PRM

    if fmt == "trl":
        return trl.to_trl, trl.FEATURES
    if fmt == "math-shepherd":
        return math_shepherd.to_math_shepherd, math_shepherd.FEATURES
    if fmt == "processbench":
        return processbench.to_processbench, processbench.FEATURES
    if fmt == "parquet":
        return (lambda rows: [dict(row) for row in rows]), Features.from_arrow_schema(PRM)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def split_problems(problem_ids: list[str], test_size: float, seed: int) -> set[str]:
    """The problems that go to the test split: a seeded shuffle of the distinct ids, the first share."""
    if not 0 < test_size < 1:
        raise ValueError(f"--test-size must be between 0 and 1, not {test_size}")
    distinct = sorted(set(problem_ids))
    random.Random(seed).shuffle(distinct)
    count = max(1, round(len(distinct) * test_size)) if len(distinct) > 1 else 0
    return set(distinct[:count])


def export_dataset(source: str, fmt: str, out: str, *, test_size: float | None = None, seed: int = 0) -> dict:
    """Write ``fmt`` files of ``source``'s prm/ rows under ``out``; returns rows per split."""
    from datasets import Dataset

    convert, features = _converter(fmt)
    rows = DatasetStore(source).read_layer("prm").to_pylist()
    if not rows:
        raise ValueError(f"{source} has no prm/ rows to export")
    splits = {"train": rows}
    if test_size:
        test_ids = split_problems([row["problem_id"] for row in rows], test_size, seed)
        splits = {"train": [r for r in rows if r["problem_id"] not in test_ids],
                  "test": [r for r in rows if r["problem_id"] in test_ids]}
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.glob("*.parquet")):
        raise ValueError(f"{out} already holds Parquet files: choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"format": fmt, "source": source, "rows_in": len(rows), "splits": {}}
    for split, split_rows in splits.items():
        converted = convert(split_rows)
        report["splits"][split] = len(converted)
        dataset = Dataset.from_list(converted, features=features)
        dataset.to_parquet(str(out_dir / f"{split}-00000-of-00001.parquet"))
    report["rows"] = sum(report["splits"].values())
    return report
