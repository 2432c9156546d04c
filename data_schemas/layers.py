"""The pyarrow schema of every layer of an output dataset (DESIGN.md §1).

These schemas are the contract between stages, the writer, importers and exporters.  A change that
removes or retypes a column bumps ``SCHEMA_VERSION``; adding a nullable column does not.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

STEP_OFFSET = pa.struct([("start", pa.int32()), ("end", pa.int32())])

PROBLEMS = pa.schema([
    ("problem_id", pa.string()),
    ("source", pa.string()),  # where the problem came from: "toy", a file path, a Hub id
    ("source_id", pa.string()),  # the record's own id in its source, if any
    ("domain", pa.string()),  # toy | gsm8k | math | plain: how answers are extracted and graded
    ("question", pa.string()),
    ("reference", pa.string()),  # the reference final answer, as text
])

SOLUTIONS = pa.schema([
    ("solution_id", pa.string()),
    ("problem_id", pa.string()),
    ("policy_key", pa.string()),  # model + sampling + prompt template; the rollout cache's key too
    ("sample_index", pa.int32()),
    ("prompt", pa.string()),
    ("text", pa.string()),
    ("steps", pa.list_(pa.string())),
    ("step_offsets", pa.list_(STEP_OFFSET)),  # char span of each step in text
    ("final_answer", pa.string()),  # extracted, null when none could be found
    ("outcome_correct", pa.bool_()),  # final answer vs reference; null when ungradable
    ("grade_detail", pa.string()),
    ("finish_reason", pa.string()),
    ("generated_tokens", pa.int32()),
    ("failed_reason", pa.string()),  # null unless generation failed after retries
])

ROLLOUTS = pa.schema([
    ("solution_id", pa.string()),
    ("problem_id", pa.string()),
    ("prefix_steps", pa.int32()),  # how many steps of the solution the rollout continued from
    ("prefix_hash", pa.string()),
    ("sample_index", pa.int32()),
    ("completion", pa.string()),
    ("answer", pa.string()),
    ("correct", pa.bool_()),
    ("tokens", pa.int32()),
])

LABELS = pa.schema([
    ("solution_id", pa.string()),
    ("problem_id", pa.string()),
    ("annotator", pa.string()),
    ("step_labels", pa.list_(pa.int8())),  # 1 good, 0 bad, -1 not labelled (abstained / after first error)
    ("step_values", pa.list_(pa.float32())),  # MC value or confidence; null element where not estimated
    ("step_n_correct", pa.list_(pa.int32())),
    ("step_n_rollouts", pa.list_(pa.int32())),
    ("first_error_step", pa.int32()),  # -1: none found
    ("abstained", pa.bool_()),  # the annotator gave no verdict for this solution
    ("rollouts", pa.int32()),  # new rollouts sampled for this solution
    ("generated_tokens", pa.int64()),
    ("detail", pa.string()),  # JSON: annotator-specific evidence (judge text, reasons, ...)
])

PRM = pa.schema([
    ("problem_id", pa.string()),
    ("solution_id", pa.string()),
    ("question", pa.string()),
    ("steps", pa.list_(pa.string())),
    ("labels", pa.list_(pa.int8())),  # 1 good, 0 bad, -1 not labelled
    ("soft_labels", pa.list_(pa.float32())),  # MC values; null element where not estimated
    ("first_error_step", pa.int32()),  # -1: none
    ("outcome_correct", pa.bool_()),
    ("annotators", pa.list_(pa.string())),
    ("reference", pa.string()),
    ("final_answer", pa.string()),
    ("policy_key", pa.string()),
])

LAYERS: dict[str, pa.Schema] = {
    "problems": PROBLEMS,
    "solutions": SOLUTIONS,
    "rollouts": ROLLOUTS,
    "labels": LABELS,
    "prm": PRM,
}


def table(layer: str, rows: list[dict]) -> pa.Table:
    """Rows (dicts) as a table of the layer's schema; a missing or mistyped field fails here, loudly."""
    schema = LAYERS[layer]
    return pa.Table.from_pylist(rows, schema=schema)
