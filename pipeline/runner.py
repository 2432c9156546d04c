"""Run a labelling job: problems → shards → stages → sharded Parquet, resumable.

A shard (``output.shard_size`` problems) is the unit of work, retry and resume: its layers are
written together and recorded in the manifest only when complete, so a re-run of the same command
skips finished shards and redoes the rest.  Engines are created once and reused for every shard.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from data_schemas.engine import Engine
from data_schemas.layers import table
from data_schemas.records import Problem, Solution, StepLabels
from pipeline.config import ConfigError, JobConfig, config_hash, resolve_model_path
from pipeline.sources import load_problems
from pipeline.store import DatasetStore
from stages.domains import get_domain
from stages.generate import PolicySpec, generate_solutions
from stages.annotator import AnnotationContext
from stages.answers import extract_final_answer
from stages.grade import grade_answer, grade_solutions
from stages.registry import build_annotator
from stages.rollouts import RolloutSampler
from stages.split import split_solutions
from stages.write import prm_rows


def policy_spec(config: JobConfig) -> PolicySpec:
    domain = get_domain(config.problems.domain)
    policy = config.policy
    return PolicySpec(
        model=policy.model,
        prompt_template=policy.prompt_template or domain.prompt_template,
        chat=policy.chat,
        system_prompt=policy.system_prompt if policy.system_prompt is not None else (domain.system_prompt if policy.chat else None),
        temperature=config.sampling.temperature,
        top_p=config.sampling.top_p,
        max_tokens=config.sampling.max_tokens,
        stop=tuple(config.sampling.stop),
    )


def token_offsets_for(model: str) -> Callable[[str], list[tuple[int, int]]]:
    """Char spans of the policy tokenizer's tokens, for token-budget splitting."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model), local_files_only=True)
    except Exception as error:
        raise ValueError(f"split.strategy token_budget needs the policy tokenizer locally; loading {model!r} failed: {error}") from None

    def offsets(text: str) -> list[tuple[int, int]]:
        return [tuple(span) for span in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]

    return offsets


@dataclass
class ShardWork:
    """Everything a shard needs besides its problems; built once per job."""

    config: JobConfig
    spec: PolicySpec
    policy: Engine
    split_strategy: str
    token_offsets: Callable | None = None
    annotators: list = field(default_factory=list)  # (annotator, role) pairs, in config order
    final_annotator: str | None = None  # the id whose labels reach prm/

    def prepare(self, solutions: list[Solution], problems: dict[str, Problem]) -> list[Solution]:
        """Split and grade solutions (the policy's, or new ones an annotator's search wrote)."""
        split_solutions(solutions, self.split_strategy, token_offsets=self.token_offsets,
                        target_pieces=self.config.split.target_pieces)
        grade_solutions(solutions, problems, timeout_s=self.config.grade.timeout_s)
        return solutions

    def grade_text(self, problem: Problem, text: str) -> tuple[str | None, bool]:
        answer = extract_final_answer(text, problem.domain)
        return answer, bool(grade_answer(answer, problem.reference, problem.domain,
                                         timeout_s=self.config.grade.timeout_s).correct)


def build_annotators(config: JobConfig) -> tuple[list, str | None]:
    """The configured annotators and the id whose labels reach prm/."""
    annotators = [(build_annotator(entry.model_dump()), entry.role) for entry in config.annotators]
    wanted = config.labels.final
    final = None
    for annotator, role in annotators:
        if wanted is None and role == "label" or wanted is not None and annotator.id.startswith(wanted):
            final = annotator.id
            break
    if wanted is not None and final is None:
        raise ConfigError(f"labels.final: no annotator matches {wanted!r}")
    return annotators, final


def process_shard(problems: list[Problem], work: ShardWork, cached_rollouts: list[dict] = ()) -> dict:
    """Run the stages over one shard's problems; returns the layer tables to write."""
    config = work.config
    by_id = {problem.problem_id: problem for problem in problems}
    solutions: list[Solution] = generate_solutions(problems, work.policy, work.spec, config.sampling.n, config.seed)
    work.prepare([s for s in solutions if not s.failed_reason], by_id)

    sampler = RolloutSampler(work.policy, work.spec, by_id, work.grade_text, config.seed,
                             max_tokens=config.rollouts.max_tokens)
    sampler.load(list(cached_rollouts))
    context = AnnotationContext(by_id, sampler, lambda s: work.prepare([s], by_id)[0], job_seed=config.seed)
    tables: dict = {}
    labels_by_annotator: dict[str, dict[str, StepLabels]] = {}
    for annotator, _role in work.annotators:
        result = annotator.annotate(solutions, context)
        solutions.extend(result.new_solutions)  # later annotators label the searched rollouts too
        labels_by_annotator[annotator.id] = {row.solution_id: row for row in result.labels}
        tables[f"labels/{annotator.id}"] = table("labels", [row.to_row() for row in result.labels])
    if sampler.new_rows:
        tables[f"rollouts/{work.spec.key}"] = table("rollouts", sampler.new_rows)
    final = labels_by_annotator.get(work.final_annotator) if work.final_annotator else None
    if final is not None:
        final = {sid: row for sid, row in final.items() if not row.abstained}
    tables.update({
        "problems": table("problems", [p.to_row() for p in problems]),
        "solutions": table("solutions", [s.to_row() for s in solutions]),
        "prm": table("prm", prm_rows(by_id, solutions, final, [work.final_annotator] if work.final_annotator else [])),
    })
    return tables


@dataclass
class JobSummary:
    out: str
    problems: int = 0
    solutions: int = 0
    failed_solutions: int = 0
    steps: int = 0
    labelled_steps: int = 0
    prm_rows: int = 0
    correct_solutions: int = 0
    shards_total: int = 0
    shards_skipped: int = 0
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "extra"}
        data.update(self.extra)
        return data


def summarize(store: DatasetStore, summary: JobSummary) -> JobSummary:
    solutions = store.read_layer("solutions")
    prm = store.read_layer("prm")
    summary.problems = store.read_layer("problems").num_rows
    summary.solutions = solutions.num_rows
    summary.failed_solutions = sum(1 for reason in solutions.column("failed_reason").to_pylist() if reason)
    summary.correct_solutions = sum(1 for ok in solutions.column("outcome_correct").to_pylist() if ok)
    summary.steps = sum(len(steps) for steps in solutions.column("steps").to_pylist())
    summary.labelled_steps = sum(sum(1 for label in labels if label >= 0) for labels in prm.column("labels").to_pylist())
    summary.prm_rows = prm.num_rows
    return summary


def shard_problems(problems: list[Problem], shard_size: int) -> list[tuple[str, list[Problem]]]:
    return [(f"{index // shard_size:05d}", problems[index:index + shard_size])
            for index in range(0, len(problems), shard_size)]


def run_job(config: JobConfig, out: str, *, overwrite: bool = False, progress: bool = True,
            engine: Engine | None = None) -> JobSummary:
    """Label ``config``'s problems into ``out``.  ``engine`` replaces the policy engine (tests, library use)."""
    from tqdm import tqdm

    from pipeline.card import dataset_card
    from pipeline.engines.factory import make_engine, shutdown_engine
    from pipeline.ray_runtime import ensure_ray

    started = time.time()
    problems = load_problems(config.problems)  # read everything first: a bad record writes nothing
    store = DatasetStore(out, overwrite=overwrite)
    store.begin(config.model_dump(mode="json"), config_hash(config))
    shards = shard_problems(problems, config.output.shard_size)
    pending = [(shard_id, shard) for shard_id, shard in shards if not store.is_complete(shard_id)]
    summary = JobSummary(out=out, shards_total=len(shards), shards_skipped=len(shards) - len(pending))
    if pending:
        owns_engine = engine is None
        if owns_engine:
            if config.policy.engine == "vllm":
                ensure_ray(config.ray)
            engine = make_engine(config.policy)
        strategy = config.split.strategy or get_domain(config.problems.domain).split_strategy
        annotators, final = build_annotators(config)
        work = ShardWork(config, policy_spec(config), engine, strategy,
                         token_offsets_for(config.policy.model) if strategy == "token_budget" else None,
                         annotators, final)
        try:
            for shard_id, shard in tqdm(pending, desc="shards", unit="shard", disable=not progress):
                store.write_shard(shard_id, process_shard(shard, work))
        finally:
            if owns_engine:
                shutdown_engine(engine)
    summary = summarize(store, summary)
    summary.wall_s = round(time.time() - started, 1)
    manifest = store.finish(summary.as_dict(), "")
    store.write_card(dataset_card(manifest, store.layers(), title=config.name)) if hasattr(store, "write_card") else None
    return summary
