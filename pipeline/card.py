"""The dataset card (README.md) of an output folder: Hugging Face YAML front matter plus a Markdown body.

The ``configs:`` header makes ``datasets.load_dataset(path)`` load ``prm/`` as the default config and
every other layer as a named config, on a local folder and on the Hub alike.
"""
from __future__ import annotations

import hashlib
import json

import yaml

from data_schemas.layers import PRM
from pipeline.store import layer_sort_key

PRM_COLUMN_MEANINGS = {
    "problem_id": "stable id of the problem (hash of its text and source id)",
    "solution_id": "stable id of the solution (hash of its text and policy key)",
    "question": "the problem statement",
    "steps": "the model-written solution, split into steps",
    "labels": "one per step: 1 good, 0 bad, -1 unlabelled (after the first error, or no verdict)",
    "soft_labels": "one per step: the Monte-Carlo value, the fraction of rollouts from that step's prefix "
                   "that reach the reference answer; null where not estimated",
    "first_error_step": "0-based index of the first bad step; -1 when none",
    "outcome_correct": "whether the final answer matches the reference; null when it could not be graded",
    "annotators": "ids of the annotators whose verdicts made the labels",
    "reference": "the reference final answer",
    "final_answer": "the answer extracted from the solution; null when none was found",
    "policy_key": "the model, sampling settings and prompt that produced the solution",
}
BASE_TAGS = ["process-reward-model", "prm", "step-level-supervision", "synthetic", "prmforge"]
MATH_DOMAINS = {"toy", "gsm8k", "math"}


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell (policy keys may hold '|')."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_name(layer: str, folder: str) -> str:
    """'prm' → 'default'; 'labels/omegaprm@1-3f2a' (folder labels/omegaprm_1-3f2a-…) → 'labels-omegaprm_1-3f2a-…'."""
    if layer == "prm":
        return "default"
    return folder.replace("/", "-")


def size_category(rows: int) -> str:
    """The Hub's size_categories bucket for a row count."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if rows < limit:
            return name
    return "n>10M"


def layer_row_counts(manifest: dict) -> dict[str, int]:
    """Rows per layer over the completed shards."""
    counts: dict[str, int] = {}
    for rows in manifest.get("shards", {}).values():
        for layer, count in rows.items():
            counts[layer] = counts.get(layer, 0) + count
    return counts


def content_fingerprint(manifest: dict, extra: object = None) -> str:
    """A short hash that changes whenever the folder's data can have changed (new run, resumed shards,
    overwrite, relabel), for the card's config descriptions: see ``front_matter``."""
    keys = ("config_hash", "created_at", "shards", "layer_dirs", "parent")
    material = json.dumps({key: manifest.get(key) for key in keys} | {"extra": extra}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def config_description(layer: str, fingerprint: str) -> str:
    """Why every config carries one: ``datasets`` caches a local folder's YAML configs under a hash of the
    config patterns and parameters only (not the files), so two runs written to the same path, or to two
    folders of the same name, would load each other's cached rows.  The description is a config
    parameter, so the fingerprint in it keys the cache to the folder's content."""
    return f"prmforge layer {layer} (content {fingerprint})"


def front_matter(manifest: dict, layers: list[str], *, license: str) -> dict:
    folders = manifest.get("layer_dirs", {})
    ordered = ["prm"] + [layer for layer in sorted(layers, key=layer_sort_key) if layer != "prm"]
    fingerprint = content_fingerprint(manifest)
    configs = [{"config_name": config_name(layer, folders.get(layer, layer)),
                "data_files": [{"split": "train", "path": f"{folders.get(layer, layer)}/*.parquet"}],
                "description": config_description(layer, fingerprint)}
               for layer in ordered]
    domain = (manifest.get("config") or {}).get("problems", {}).get("domain")
    tags = BASE_TAGS + (["math"] if domain in MATH_DOMAINS else [])
    return {
        "license": license,
        "task_categories": ["text-classification"],  # per-step good/bad classification
        "tags": tags,
        "size_categories": [size_category(layer_row_counts(manifest).get("prm", 0))],
        "configs": configs,
    }


def dataset_card(manifest: dict, layer_dirs: list[str], *, title: str, description: str = "",
                 license: str = "other") -> str:
    """The README.md of a dataset: ``layer_dirs`` are the layer paths present (``DatasetStore.layers()``)."""
    header = yaml.safe_dump(front_matter(manifest, layer_dirs, license=license), sort_keys=False, allow_unicode=True)
    folders = manifest.get("layer_dirs", {})
    counts = layer_row_counts(manifest)
    sections = [
        f"# {title}",
        description,
        f"Process-reward-model (PRM) training data made by prmforge {manifest.get('prmforge_version', '')}: model-written solutions to "
        "problems, split into steps, with a label for every step saying whether it is still on a path to the "
        "correct answer. The `prm/` folder is what PRMs train on; the other folders keep every intermediate "
        "layer (problems, sampled solutions, Monte-Carlo rollouts, each annotator's verdicts) so any step can "
        "be re-run or relabelled without redoing the ones before it.",
        _loading_section(layer_dirs, folders),
        _prm_schema_section(),
        _counts_section(manifest, layer_dirs, folders, counts),
        _annotators_section(layer_dirs, folders, counts),
        _provenance_section(manifest),
    ]
    body = "\n\n".join(section.strip() for section in sections if section and section.strip())
    return f"---\n{header}---\n\n{body}\n"


def _loading_section(layers: list[str], folders: dict) -> str:
    others = [layer for layer in sorted(layers, key=layer_sort_key) if layer != "prm"]
    example = config_name(others[0], folders.get(others[0], others[0])) if others else "solutions"
    return f"""## Loading

```python
from datasets import load_dataset

path = "path/to/this/dataset"  # a local folder, or the Hub repo id
prm = load_dataset(path)["train"]  # the default config: prm/
other_layer = load_dataset(path, "{example}")["train"]

import pyarrow.parquet as pq
table = pq.read_table(path + "/prm")  # local folder; on the Hub: "hf://datasets/<repo id>/prm"
```

TRL's `PRMTrainer` wants boolean `labels`: keep `soft_labels` in their own column, as here, if you need the
Monte-Carlo values."""


def _prm_schema_section() -> str:
    rows = [f"| `{field.name}` | `{field.type}` | {PRM_COLUMN_MEANINGS.get(field.name, '')} |" for field in PRM]
    return "\n".join(["## The `prm/` rows", "", "| column | type | meaning |", "|---|---|---|", *rows])


def _counts_section(manifest: dict, layers: list[str], folders: dict, counts: dict[str, int]) -> str:
    lines = ["## Counts", "", "| layer | folder | rows |", "|---|---|---|"]
    lines += [f"| {_cell(layer)} | `{folders.get(layer, layer)}/` | {counts.get(layer, 0)} |"
              for layer in sorted(layers, key=layer_sort_key)]
    summary = manifest.get("summary") or {}
    if summary:
        lines += ["", "Job summary:", ""]
        lines += [f"- {key}: {value}" for key, value in summary.items() if not isinstance(value, (dict, list))]
    return "\n".join(lines)


def _annotators_section(layers: list[str], folders: dict, counts: dict[str, int]) -> str:
    annotators = [layer for layer in sorted(layers, key=layer_sort_key) if layer.startswith("labels/")]
    if not annotators:
        return ("## Annotators\n\nNo step annotator has run on this dataset: every step label is -1 "
                "(unlabelled) and only the outcome (`outcome_correct`) is known.")
    lines = ["## Annotators", "", "| annotator id | folder | solutions labelled |", "|---|---|---|"]
    lines += [f"| `{_cell(layer.partition('/')[2])}` | `{folders.get(layer, layer)}/` | {counts.get(layer, 0)} |"
              for layer in annotators]
    return "\n".join(lines)


def _provenance_section(manifest: dict) -> str:
    lines = ["## Provenance", ""]
    for key in ("config_hash", "schema_version", "prmforge_version", "created_at", "finished_at"):
        if manifest.get(key) is not None:
            lines.append(f"- {key}: `{manifest[key]}`")
    parent = manifest.get("parent")
    if parent:
        lines.append(f"- relabelled from: `{parent.get('path', parent)}`"
                     + (f" (manifest sha256 `{parent['manifest_hash']}`)" if parent.get("manifest_hash") else ""))
    if manifest.get("config"):
        config_yaml = yaml.safe_dump(manifest["config"], sort_keys=False, allow_unicode=True)
        lines += ["", "<details><summary>job config</summary>", "", "```yaml", config_yaml.rstrip(), "```", "",
                  "</details>"]
    return "\n".join(lines)
