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
from pipeline.engines.factory import make_engine, shutdown_engine
from pipeline.store import DatasetStore, split_into_shards
from stages.domains import get_domain
from stages.generate import PolicySpec, generate_solutions
from stages.annotator import AnnotationContext, AnnotationResult
from stages.consensus import Consensus, ConsensusRule, resolve
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
    consensus: Consensus | None = None  # picks prm/'s labels; None: outcomes only
    engines: dict = field(default_factory=dict)  # judges' own engines, by annotator id

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


def build_consensus(config: JobConfig, annotators: list) -> Consensus | None:
    """The rule that picks prm/'s labels, or None when no annotator labels (outcomes only)."""
    settings = config.consensus
    label_ids = [a.id for a, role in annotators if role == "label"]
    all_ids = [a.id for a, _ in annotators]
    primary = settings.primary
    if primary is None:
        if not label_ids:
            return None
        primary = label_ids[0]
    for name in [primary, *settings.agree_with]:
        if resolve(name, all_ids) is None:
            raise ConfigError(f"consensus: no annotator in the job matches {name!r} (annotators: {', '.join(all_ids) or 'none'})")
    if settings.symbolic_veto and resolve("symbolic", all_ids) is None:
        raise ConfigError("consensus.symbolic_veto: the job has no symbolic annotator")
    return Consensus(ConsensusRule(primary=resolve(primary, all_ids), agree_with=tuple(settings.agree_with),
                                   symbolic_veto=settings.symbolic_veto, min_mc=settings.min_mc))


def build_annotators(config: JobConfig) -> tuple[list, Consensus | None]:
    """The configured annotators, in order, with their roles; and the consensus rule."""
    annotators = [(build_annotator(entry.model_dump()), entry.role) for entry in config.annotators]
    return annotators, build_consensus(config, annotators)


def judge_engines(config: JobConfig, annotators: list) -> dict[str, Engine]:
    """An engine for every judge that has a model of its own (the others use the policy's)."""
    engines = {}
    for entry, (annotator, _role) in zip(config.annotators, annotators):
        if entry.type == "llm_judge" and entry.model is not None:
            engines[annotator.id] = make_engine(entry.model, actor_restarts=config.ray.actor_restarts)
    return engines


def process_shard(problems: list[Problem], work: ShardWork) -> dict:
    """Generate, split and grade one shard's solutions, then label them; returns the layer tables."""
    by_id = {problem.problem_id: problem for problem in problems}
    solutions = generate_solutions(problems, work.policy, work.spec, work.config.sampling.n, work.config.seed)
    work.prepare([s for s in solutions if not s.failed_reason], by_id)
    return label_shard(problems, solutions, work)


@dataclass
class Reuse:
    """What a relabel takes from its parent: rollouts, and the labels of annotators it keeps."""

    rollouts: list[dict] = field(default_factory=list)
    labels: dict[str, dict[str, StepLabels]] = field(default_factory=dict)  # annotator id -> solution id -> row
    solutions: dict[str, list[Solution]] = field(default_factory=dict)  # annotator id -> solutions it made


def label_shard(problems: list[Problem], solutions: list[Solution], work: ShardWork, reuse: Reuse = Reuse()) -> dict:
    """Run the annotators and the consensus over prepared solutions; returns the layer tables."""
    config = work.config
    by_id = {problem.problem_id: problem for problem in problems}
    solutions = list(solutions)
    sampler = RolloutSampler(work.policy, work.spec, by_id, work.grade_text, config.seed,
                             max_tokens=config.rollouts.max_tokens)
    sampler.load(reuse.rollouts)
    context = AnnotationContext(by_id, sampler, lambda s: work.prepare([s], by_id)[0],
                                engines={"policy": work.policy, **work.engines}, job_seed=config.seed)
    tables: dict = {}
    labels_by_annotator: dict[str, dict[str, StepLabels]] = {}
    for annotator, _role in work.annotators:
        if annotator.id in reuse.labels:  # same annotator, same settings: its labels stand
            result = AnnotationResult(list(reuse.labels[annotator.id].values()), reuse.solutions.get(annotator.id, []))
        else:
            result = annotator.annotate(solutions, context)
        solutions.extend(result.new_solutions)  # later annotators label the searched rollouts too
        labels_by_annotator[annotator.id] = {row.solution_id: row for row in result.labels}
        tables[f"labels/{annotator.id}"] = table("labels", [row.to_row() for row in result.labels])
    rollout_rows = list(reuse.rollouts) + sampler.new_rows
    if rollout_rows:
        tables[f"rollouts/{work.spec.key}"] = table("rollouts", rollout_rows)
    final, names = None, []
    if work.consensus is not None:
        final, decisions = work.consensus.apply(solutions, labels_by_annotator)
        rule = work.consensus.rule
        names = [rule.primary] + [resolve(m, list(labels_by_annotator)) or m for m in rule.agree_with]
        if rule.agree_with or rule.symbolic_veto or rule.min_mc is not None:
            tables[f"labels/{work.consensus.id}"] = table("labels", [row.to_row() for row in decisions])
            names.append(work.consensus.id)
    tables.update({
        "problems": table("problems", [p.to_row() for p in problems]),
        "solutions": table("solutions", [s.to_row() for s in solutions]),
        "prm": table("prm", prm_rows(by_id, solutions, final, names)),
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
    """Counts over the whole output, read one shard at a time (memory bounded by the shard size)."""
    def total(layer: str, columns: list[str], count) -> int:
        return sum(count(part) for part in store.iter_layer(layer, columns))

    summary.problems = total("problems", ["problem_id"], lambda t: t.num_rows)
    summary.solutions = total("solutions", ["solution_id"], lambda t: t.num_rows)
    summary.failed_solutions = total("solutions", ["failed_reason"], lambda t: t.num_rows - t.column(0).null_count)
    summary.correct_solutions = total("solutions", ["outcome_correct"],
                                      lambda t: sum(1 for ok in t.column(0).to_pylist() if ok))
    summary.steps = total("solutions", ["steps"], lambda t: sum(len(s) for s in t.column(0).to_pylist()))
    summary.prm_rows = total("prm", ["solution_id"], lambda t: t.num_rows)
    summary.labelled_steps = total("prm", ["labels"], lambda t: sum(sum(1 for l in ls if l >= 0) for ls in t.column(0).to_pylist()))
    annotators = {}
    for layer in store.layers():
        if layer.startswith("labels/"):
            columns = ["abstained", "rollouts", "generated_tokens"]
            stats = {"rows": 0, "abstained_or_dropped": 0, "rollouts": 0, "generated_tokens": 0}
            for part in store.iter_layer(layer, columns):
                data = part.to_pydict()
                stats["rows"] += part.num_rows
                stats["abstained_or_dropped"] += sum(data["abstained"])
                stats["rollouts"] += sum(data["rollouts"])
                stats["generated_tokens"] += sum(data["generated_tokens"])
            annotators[layer[len("labels/"):]] = stats
    summary.extra["annotators"] = annotators
    return summary


def build_work(config: JobConfig, policy: Engine, judges: dict[str, Engine]) -> ShardWork:
    annotators, consensus = build_annotators(config)
    strategy = config.split.strategy or get_domain(config.problems.domain).split_strategy
    return ShardWork(config, policy_spec(config), policy, strategy,
                     token_offsets_for(config.policy.model) if strategy == "token_budget" else None,
                     annotators, consensus, judges)


def shard_task(config_data: dict, problem_rows: list[dict], policy_handle, judge_handles: dict) -> dict:
    """One shard as a Ray task: the unit of work and of retry (a task whose worker dies runs again, and
    per-request seeds make the rerun write the same rows)."""
    from pipeline.engines.factory import RayEngine, engine_from_handle

    config = JobConfig.model_validate(config_data)
    policy = engine_from_handle(policy_handle)
    judges = {annotator: engine_from_handle(handle) for annotator, handle in judge_handles.items()}
    try:
        return process_shard([Problem.from_row(row) for row in problem_rows], build_work(config, policy, judges))
    finally:
        for built in [policy, *judges.values()]:
            if not isinstance(built, RayEngine):  # HTTP clients made here; actors belong to the driver
                shutdown_engine(built)


def _run_in_process(pending: list, store: DatasetStore, work: ShardWork, progress: bool) -> None:
    from tqdm import tqdm

    for shard_id, shard in tqdm(pending, desc="shards", unit="shard", disable=not progress):
        store.write_shard(shard_id, process_shard(shard, work))


def _run_as_tasks(pending: list, store: DatasetStore, config: JobConfig, policy_handle, judge_handles: dict,
                  progress: bool) -> None:
    """Shards as Ray tasks, a bounded number in flight; each is written as soon as it returns."""
    import ray
    from tqdm import tqdm

    remote = ray.remote(shard_task).options(num_cpus=config.ray.shard_cpus, max_retries=config.ray.task_retries)
    limit = config.ray.max_shards_in_flight or 4 * config.policy.replicas
    config_data = config.model_dump(mode="json")
    queue = list(pending)
    in_flight: dict = {}
    with tqdm(total=len(pending), desc="shards", unit="shard", disable=not progress) as bar:
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                shard_id, shard = queue.pop(0)
                ref = remote.remote(config_data, [p.to_row() for p in shard], policy_handle, judge_handles)
                in_flight[ref] = shard_id
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                store.write_shard(in_flight.pop(ref), ray.get(ref))
                bar.update()


def run_job(config: JobConfig, out: str, *, overwrite: bool = False, progress: bool = True,
            engine: Engine | None = None) -> JobSummary:
    """Label ``config``'s problems into ``out``.

    By default Ray runs it: engine actors are started once, and each shard is a task.  ``engine``
    (any Engine: tests, library use) runs every shard in this process with that policy engine instead.
    """
    from pipeline.card import dataset_card
    from pipeline.engines.factory import task_handle
    from pipeline.ray_runtime import check_local_capacity, ensure_ray

    started = time.time()
    problems = load_problems(config.problems)  # read everything first: a bad record writes nothing
    annotators, _ = build_annotators(config)  # a bad annotator or rule fails before any output
    store = DatasetStore(out, overwrite=overwrite)
    store.begin(config.model_dump(mode="json"), config_hash(config))
    shards = split_into_shards(problems, config.output.shard_size)
    pending = [(shard_id, shard) for shard_id, shard in shards if not store.is_complete(shard_id)]
    summary = JobSummary(out=out, shards_total=len(shards), shards_skipped=len(shards) - len(pending))
    if pending:
        owned: list[Engine] = []
        try:
            if engine is not None:
                judges = judge_engines(config, annotators)
                owned.extend(judges.values())
                _run_in_process(pending, store, build_work(config, engine, judges), progress)
            else:
                ensure_ray(config.ray)
                check_local_capacity(config)
                policy = make_engine(config.policy, actor_restarts=config.ray.actor_restarts)
                owned.append(policy)
                judges = judge_engines(config, annotators)
                owned.extend(judges.values())
                models = {id(a): entry.model for entry, (a, _) in zip(config.annotators, annotators)
                          if getattr(entry, "model", None) is not None}
                judge_handles = {a.id: task_handle(judges[a.id], models[id(a)]) for a, _ in annotators if a.id in judges}
                _run_as_tasks(pending, store, config, task_handle(policy, config.policy), judge_handles, progress)
        finally:
            for owned_engine in owned:
                shutdown_engine(owned_engine)
    summary = summarize(store, summary)
    summary.wall_s = round(time.time() - started, 1)
    manifest = store.finish(summary.as_dict())
    store.write_card(dataset_card(manifest, store.layers(), title=config.name))
    return summary


def needs_ray(config: JobConfig) -> bool:
    models = [config.policy] + [a.model for a in config.annotators if getattr(a, "model", None) is not None]
    return any(model.engine == "vllm" for model in models)
