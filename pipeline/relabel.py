"""Relabel an existing dataset under new annotators or a new consensus rule, reusing what was paid for.

The new dataset keeps the parent's problems and solutions.  An annotator whose id (name, version,
settings hash) the parent already has, and which follows only such annotators in the new list, keeps
its labels as they are; any other annotator runs again over the solutions with the parent's rollouts
preloaded, so a prefix already rolled out k times costs nothing for k or fewer rollouts and only the
difference for more.  The policy engine is started only if some rollout is really missing.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data_schemas.engine import Engine, GenerationRequest, GenerationResult
from data_schemas.records import Problem, Solution, StepLabels
from pipeline.config import ConfigError, JobConfig, build_config, config_hash
from pipeline.evaluate import cohen_kappa
from pipeline.store import DatasetStore

RELABEL_KEYS = {"annotators", "consensus", "rollouts", "grade"}
REPORT_FILE = "relabel_report.json"


class LazyEngine:
    """Starts the real engine on first use: a relabel that needs no new rollout never loads a model."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.engine: Engine | None = None
        self.samples = 0

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self.engine is None:
            self.engine = self.factory()
        self.samples += sum(request.n for request in requests)
        return self.engine.generate(requests)

    def shutdown(self) -> None:
        if self.engine is not None:
            from pipeline.engines.factory import shutdown_engine

            shutdown_engine(self.engine)


def load_changes(path: str) -> dict:
    """The annotators file: any of annotators, consensus, rollouts, grade."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"annotators file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"annotators file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"annotators file {path}: the top level must be a mapping")
    unknown = sorted(set(data) - RELABEL_KEYS)
    if unknown:
        raise ConfigError(f"annotators file {path}: {', '.join(unknown)}: unknown key (a relabel may change "
                          f"{', '.join(sorted(RELABEL_KEYS))})")
    return data


@dataclass
class RelabelSummary:
    out: str
    parent: str
    shards_total: int = 0
    shards_skipped: int = 0
    reused_annotators: list[str] = field(default_factory=list)
    rerun_annotators: list[str] = field(default_factory=list)
    rollouts_reused: int = 0
    rollouts_new: int = 0
    prm_rows: int = 0
    wall_s: float = 0.0
    agreement: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def agreement_report(old_rows, new_rows) -> dict:
    """Old prm/ labels against new: who kept what, and how far the labels agree where both kept.
    Only ids and labels are kept in memory."""
    def slim(rows) -> dict:
        return {row["solution_id"]: {"labels": row["labels"], "first_error_step": row["first_error_step"]} for row in rows}

    old, new = slim(old_rows), slim(new_rows)
    both = old.keys() & new.keys()
    pairs = [(int(a), int(b)) for sid in both for a, b in zip(old[sid]["labels"], new[sid]["labels"]) if a >= 0 and b >= 0]
    first_error_same = sum(old[sid]["first_error_step"] == new[sid]["first_error_step"] for sid in both)
    kappa = cohen_kappa(pairs)
    return {
        "kept_old": len(old), "kept_new": len(new), "kept_both": len(both),
        "only_old": len(old.keys() - new.keys()), "only_new": len(new.keys() - old.keys()),
        "first_error_agreement": round(first_error_same / len(both), 4) if both else None,
        "step_agreement": round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None,
        "kappa": None if kappa is None else round(kappa, 4),
        "steps_compared": len(pairs),
    }


def relabel(source: str, annotators_file: str, out: str, *, overwrite: bool = False, progress: bool = True,
            engine: Engine | None = None) -> RelabelSummary:
    from tqdm import tqdm

    from pipeline.card import dataset_card
    from pipeline.engines.factory import make_engine, shutdown_engine
    from pipeline.ray_runtime import ensure_ray
    from pipeline.runner import (Reuse, ShardWork, build_annotators, judge_engines, label_shard, needs_ray,
                                 policy_spec, token_offsets_for)
    from stages.generate import format_prompt
    from stages.domains import get_domain

    started = time.time()
    parent = DatasetStore(source)
    manifest = parent.manifest
    if not manifest.get("config"):
        raise ConfigError(f"{source} is not a prmforge dataset (no manifest.json with a config)")
    changes = load_changes(annotators_file)
    parent_config = dict(manifest["config"])
    config = build_config({**parent_config, **changes}, source=annotators_file)
    annotators, consensus = build_annotators(config)

    parent_labels = {layer[len("labels/"):] for layer in parent.layers() if layer.startswith("labels/")}
    reused_ids: list[str] = []
    for annotator, _role in annotators:  # reuse a prefix of the list: the solutions it saw are the same
        if annotator.id not in parent_labels:
            break
        reused_ids.append(annotator.id)

    store = DatasetStore(out, overwrite=overwrite)
    store.begin(config.model_dump(mode="json"), config_hash(config) + "-" + parent.manifest_hash()[:12], parent={
        "path": source, "manifest_hash": parent.manifest_hash(), "config_hash": manifest.get("config_hash"),
        "changed": {key: changes[key] for key in sorted(changes)},
    })

    spec = policy_spec(config)
    rollout_layer = f"rollouts/{spec.key}"
    summary = RelabelSummary(out=out, parent=source, reused_annotators=reused_ids,
                             rerun_annotators=[a.id for a, _ in annotators if a.id not in reused_ids])
    # the parent's shards, one at a time: memory is bounded by a shard, not by the dataset
    shard_ids = sorted(parent.completed_shards())
    pending = [shard_id for shard_id in shard_ids if not store.is_complete(shard_id)]
    summary.shards_total, summary.shards_skipped = len(shard_ids), len(shard_ids) - len(pending)

    def start_engine() -> Engine:
        if needs_ray(config):
            ensure_ray(config.ray)
        return make_engine(config.policy)

    policy = engine if engine is not None else LazyEngine(start_engine)
    strategy = config.split.strategy or get_domain(config.problems.domain).split_strategy
    if summary.rerun_annotators and needs_ray(config):
        ensure_ray(config.ray)
    engines = judge_engines(config, annotators) if summary.rerun_annotators else {}
    work = ShardWork(config, spec, policy, strategy,
                     token_offsets_for(config.policy.model) if strategy == "token_budget" else None,
                     annotators, consensus, engines)
    try:
        for shard_id in tqdm(pending, desc="shards", unit="shard", disable=not progress):
            problems = [Problem.from_row(row) for row in parent.read_part("problems", shard_id).to_pylist()]
            solutions = [Solution.from_row(row) for row in parent.read_part("solutions", shard_id).to_pylist()]
            by_id = {p.problem_id: p for p in problems}
            for solution in solutions:
                if solution.policy_key != spec.key:
                    # written by another model (an imported dataset): roll it out under our policy's prompt
                    solution.prompt = format_prompt(by_id[solution.problem_id], spec)
            labels = {a: {row["solution_id"]: StepLabels.from_row(row)
                          for row in parent.read_part(f"labels/{a}", shard_id).to_pylist()} for a in reused_ids}
            # the policy's solutions, and the searched rollouts of annotators whose labels are kept
            policy_solutions = [s for s in solutions if s.finish_reason != "tree"]
            made = {a: [s for s in solutions if s.finish_reason == "tree" and s.solution_id in labels[a]
                        and all(s.solution_id not in labels[b] for b in reused_ids[:reused_ids.index(a)])]
                    for a in reused_ids}
            reuse = Reuse(rollouts=parent.read_part(rollout_layer, shard_id).to_pylist(), labels=labels, solutions=made)
            summary.rollouts_reused += len(reuse.rollouts)
            tables = label_shard(problems, policy_solutions, work, reuse)
            summary.rollouts_new += tables[rollout_layer].num_rows - len(reuse.rollouts) if rollout_layer in tables else 0
            store.write_shard(shard_id, tables)
    finally:
        if isinstance(policy, LazyEngine):
            policy.shutdown()
        for judge in engines.values():
            shutdown_engine(judge)

    summary.prm_rows = sum(part.num_rows for part in store.iter_layer("prm", ["solution_id"]))
    summary.agreement = agreement_report(
        (row for shard_id in shard_ids for row in parent.read_part("prm", shard_id).to_pylist()),
        (row for shard_id in shard_ids for row in store.read_part("prm", shard_id).to_pylist()))
    summary.wall_s = round(time.time() - started, 1)
    final_manifest = store.finish(summary.as_dict())
    store.write_card(dataset_card(final_manifest, store.layers(), title=f"{config.name} (relabelled)"))
    _write_report(out, summary)
    return summary


def _write_report(out: str, summary: RelabelSummary) -> None:
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(out) if "://" in out else (fs.LocalFileSystem(), str(Path(out).resolve()))
    with filesystem.open_output_stream(f"{root}/{REPORT_FILE}") as handle:
        handle.write((json.dumps(summary.as_dict(), indent=2) + "\n").encode())
