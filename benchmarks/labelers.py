"""Label quality and cost of OmegaPRM and exhaustive MC against the toy domain's exact checker.

Both annotators label the same solutions of the embedded model, each with its own empty rollout
cache, so each pays its full price.  OmegaPRM runs its binary search on every solution (no question
filter, no pool: the pool makes new solutions, which exhaustive MC would not see); the figures of a
full OmegaPRM run with its pool are in the demo's summary.
"""
from __future__ import annotations

import time

from data_schemas.records import Problem, Solution, StepLabels
from stages.annotator import AnnotationContext
from stages.exact import ExactChecker
from stages.mc_exhaustive import MCExhaustive, MCExhaustiveSettings
from stages.omegaprm import OmegaPRM, OmegaPRMSettings
from stages.rollouts import RolloutSampler


def score(labels: list[StepLabels], gold: dict[str, StepLabels]) -> dict:
    """first_error_accuracy over all solutions (abstentions miss); step_accuracy over labelled steps."""
    hits = steps_right = steps_labelled = steps_total = 0
    for row in labels:
        truth = gold[row.solution_id]
        hits += (not row.abstained) and row.first_error_step == truth.first_error_step
        for mine, theirs in zip(row.step_labels, truth.step_labels):
            steps_total += 1
            if mine >= 0:
                steps_labelled += 1
                steps_right += mine == theirs
    return {
        "first_error_accuracy": round(hits / len(labels), 4) if labels else None,
        "step_accuracy": round(steps_right / steps_labelled, 4) if steps_labelled else None,
        "labelled_step_share": round(steps_labelled / steps_total, 4) if steps_total else None,
    }


def run_labelers(engine, spec, problems: list[Problem], solutions: list[Solution], grade_text, k: int = 8,
                 seed: int = 0) -> dict:
    by_id = {p.problem_id: p for p in problems}
    usable = [s for s in solutions if not s.failed_reason and s.steps]
    gold = {row.solution_id: row for row in ExactChecker().annotate(usable, AnnotationContext(by_id)).labels}
    annotators = {
        "omegaprm": OmegaPRM(OmegaPRMSettings(k=k, search_limit=0, initial_rollouts=0, filter_questions=False)),
        "mc_exhaustive": MCExhaustive(MCExhaustiveSettings(k=k)),
    }
    report = {"solutions": len(usable), "steps": sum(len(s.steps) for s in usable),
              "wrong_solutions": sum(1 for s in usable if s.outcome_correct is False), "k": k}
    for name, annotator in annotators.items():
        sampler = RolloutSampler(engine, spec, by_id, grade_text, seed)
        started = time.time()
        labels = annotator.annotate(usable, AnnotationContext(by_id, sampler, job_seed=seed)).labels
        report[name] = {
            "annotator": annotator.id,
            "rollouts": sampler.sampled_rollouts,
            "generated_tokens": sampler.sampled_tokens,
            "engine_calls": sampler.engine_calls,
            "wall_s": round(time.time() - started, 2),
            # a failed engine call makes abstentions, not an error: a benchmark with any is not a measurement
            "abstained": sum(1 for row in labels if row.abstained),
            **score(labels, gold),
        }
    mc = report["mc_exhaustive"]["rollouts"]
    report["rollout_ratio_omegaprm_to_mc"] = round(report["omegaprm"]["rollouts"] / mc, 4) if mc else None
    return report


def benchmark(n_problems: int = 24, samples: int = 4, k: int = 8, max_ops: int | None = None, seed: int = 0,
              engine=None) -> dict:
    """Generate solutions of the embedded model on toy problems, then label them both ways."""
    from pipeline.config import build_config
    from pipeline.runner import ShardWork, policy_spec
    from pipeline.sources import load_problems
    from stages.generate import generate_solutions

    toy = {"n": n_problems, "seed": seed}
    if max_ops:
        toy["max_ops"] = max_ops
    config = build_config({"problems": {"source": "toy", "domain": "toy", "toy": toy},
                           "sampling": {"n": samples, "max_tokens": 64}, "seed": seed})
    if engine is None:
        from pipeline.engines.vllm_engine import VLLMEngine
        from pipeline.config import resolve_model_path

        engine = VLLMEngine(resolve_model_path("embedded"))
    spec = policy_spec(config)
    work = ShardWork(config, spec, engine, "line")
    problems = load_problems(config.problems)
    by_id = {p.problem_id: p for p in problems}
    started = time.time()
    solutions = generate_solutions(problems, engine, spec, samples, seed)
    work.prepare([s for s in solutions if not s.failed_reason], by_id)
    report = {"problems": n_problems, "samples_per_problem": samples, "max_ops": config.problems.toy.max_ops,
              "generate_wall_s": round(time.time() - started, 2)}
    report.update(run_labelers(engine, spec, problems, solutions, work.grade_text, k=k, seed=seed))
    return report
