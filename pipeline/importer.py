"""Import a public PRM dataset into our layers: problems, solutions with steps, and its labels as an
annotator layer named after its source (``human:processbench``, ``human:prm800k``, ``source:math-shepherd``,
``source:trl``).

The input is a file (JSON array, JSON lines, Parquet), a `datasets` folder, or a Hub id (online only).
All records are read and checked before anything is written: a malformed record stops the import with
its name, unless ``skip_invalid``, which counts and reports what was skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

from data_schemas.formats import ImportResult, read_records
from data_schemas.layers import table
from pipeline.config import build_config, config_hash
from pipeline.store import DatasetStore, split_into_shards

FORMATS = ("processbench", "prm800k", "math-shepherd", "trl")
SKIPPED_FILE = "import_skipped.json"


def read_input(path: str, split: str = "train") -> list[dict]:
    """Records from a local file, or from a `datasets` folder / Hub id."""
    local = Path(path)
    if local.is_file():
        return read_records(local)
    import datasets

    try:
        dataset = datasets.load_dataset(path, split=split)
    except Exception as error:
        raise ValueError(f"{path}: not a file, and `datasets` cannot load it ({error})") from None
    return list(dataset)


def convert(fmt: str, records: list[dict], source: str, skip_invalid: bool) -> ImportResult:
    from data_schemas.formats import math_shepherd, processbench, prm800k, trl

    converters = {"processbench": processbench.records_from_processbench, "prm800k": prm800k.records_from_prm800k,
                  "math-shepherd": math_shepherd.records_from_math_shepherd, "trl": trl.records_from_trl}
    if fmt not in converters:
        raise ValueError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return converters[fmt](records, source=source, skip_invalid=skip_invalid)


def import_dataset(fmt: str, source: str, out: str, *, skip_invalid: bool = False, overwrite: bool = False,
                   split: str = "train", shard_size: int = 1000) -> dict:
    """Convert and write; returns counts (and what was skipped)."""
    from pipeline.card import dataset_card
    from stages.write import prm_rows

    result = convert(fmt, read_input(source, split), source, skip_invalid)
    if not result.solutions:
        raise ValueError(f"{source}: no record could be imported ({len(result.skipped)} skipped)")
    domain = result.problems[0].domain if result.problems else "plain"
    # a valid job config, so that a relabel can start from an imported dataset
    config = build_config({"name": f"import-{fmt}", "problems": {"source": "jsonl", "path": source, "domain": domain},
                           "output": {"shard_size": shard_size}})
    store = DatasetStore(out, overwrite=overwrite)
    store.begin(config.model_dump(mode="json"), config_hash(config) + f"-import-{fmt}")
    labels_by_solution = {row.solution_id: row for row in result.labels}
    annotator = result.labels[0].annotator
    by_problem = {p.problem_id: p for p in result.problems}
    for shard_id, problems in split_into_shards(result.problems, shard_size):
        ids = {p.problem_id for p in problems}
        solutions = [s for s in result.solutions if s.problem_id in ids]
        labels = [labels_by_solution[s.solution_id] for s in solutions]
        store.write_shard(shard_id, {
            "problems": table("problems", [p.to_row() for p in problems]),
            "solutions": table("solutions", [s.to_row() for s in solutions]),
            f"labels/{annotator}": table("labels", [row.to_row() for row in labels]),
            "prm": table("prm", prm_rows(by_problem, solutions, labels_by_solution, [annotator])),
        })
    summary = {"format": fmt, "input": source, "problems": len(result.problems), "solutions": len(result.solutions),
               "annotator": annotator, "skipped": len(result.skipped)}
    manifest = store.finish(summary)
    store.write_card(dataset_card(manifest, store.layers(), title=f"{Path(source).name} ({fmt}, imported)"))
    if result.skipped:
        (Path(out) / SKIPPED_FILE).write_text(json.dumps([{"where": w, "why": y} for w, y in result.skipped], indent=2) + "\n")
    summary["skipped_records"] = result.skipped
    return summary
