"""Smoke tests of the benchmarks: shapes, keys and invariants, never timings.

``bench engine`` needs the vLLM engine twice (minutes on 2 cores): it is run by hand, not here.
``bench labelers`` runs on the session engine with a tiny workload.
"""
from __future__ import annotations

import json

import pytest

from benchmarks import labelers, scaling
from data_schemas.layers import table
from data_schemas.records import StepLabels
from pipeline.config import build_config, config_hash
from pipeline.runner import build_annotators
from pipeline.store import DatasetStore


def test_solution_set_mixes_toy_and_gsm8k_and_replicates_to_n():
    problems, solutions = scaling.solution_set(101)
    by_id = {problem.problem_id: problem for problem in problems}
    domains = [by_id[solution.problem_id].domain for solution in solutions]
    assert len(solutions) == 101
    assert domains.count("toy") == 50 and domains.count("gsm8k") == 51
    assert len({solution.solution_id for solution in solutions}) == 101  # copies are distinct solutions


def test_run_stages_reports_every_stage_per_domain_and_grades_references_correct():
    problems, solutions = scaling.solution_set(20)
    report = scaling.run_stages([p.to_row() for p in problems], [s.to_row() for s in solutions])
    assert set(report) == {"toy", "gsm8k"}
    for part in report.values():
        assert part["solutions"] == 10
        assert part["correct"] == 10  # reference solutions: the workload grades as it should
        assert part["steps"] >= part["solutions"]
        assert set(part["seconds"]) == set(scaling.STAGES)


def test_stage_throughput_on_one_and_two_ray_workers(ray_local):
    report = scaling.stage_throughput(40, (1, 2), chunks=4)
    for key in ("solutions_per_s_1_worker", "solutions_per_s_2_workers", "speedup"):
        assert report[key] > 0
    assert report["solutions"] == 40
    assert set(report["cpu_ms_per_solution"]) == {"toy", "gsm8k"}
    assert set(report["cpu_ms_per_solution"]["toy"]) == {*scaling.STAGES, "total", "steps_per_solution"}


def _write_dataset(folder, config_data: dict) -> dict[str, str]:
    """A one-shard prmforge output with known rollouts and tokens; returns annotator type -> id."""
    config = build_config(config_data)
    ids = {entry.type: annotator.id for entry, (annotator, _) in zip(config.annotators, build_annotators(config)[0])}
    problems, solutions = scaling.solution_set(4)
    used = {solution.problem_id for solution in solutions}
    for solution in solutions:
        solution.generated_tokens = 10
    costs = {"mc_exhaustive": (8, 40), "llm_judge": (0, 100), "symbolic": (0, 0)}  # rollouts, tokens per row
    tables = {
        "problems": table("problems", [p.to_row() for p in problems if p.problem_id in used]),
        "solutions": table("solutions", [s.to_row() for s in solutions]),
    }
    for kind, (rollouts, tokens) in costs.items():
        rows = [StepLabels(s.solution_id, s.problem_id, ids[kind], [1], [1.0], [0], [0], -1,
                           rollouts=rollouts, generated_tokens=tokens).to_row() for s in solutions]
        tables[f"labels/{ids[kind]}"] = table("labels", rows)
    store = DatasetStore(str(folder))
    store.begin(config.model_dump(mode="json"), config_hash(config))
    store.write_shard("00000", tables)
    store.finish({})
    return ids


def test_dataset_costs_per_annotator_and_sizing(tmp_path):
    judge_model = {"engine": "openai", "model": "a-judge"}
    ids = _write_dataset(tmp_path / "data", {
        "problems": {"source": "toy", "domain": "toy"},
        "annotators": [{"type": "mc_exhaustive", "k": 8}, {"type": "llm_judge", "model": judge_model},
                       {"type": "symbolic"}]})
    costs = scaling.dataset_costs(str(tmp_path / "data"))
    assert costs["solutions"] == 4 and costs["solution_tokens_per_solution"] == 10
    mc, judge, symbolic = (costs["annotators"][ids[kind]] for kind in ("mc_exhaustive", "llm_judge", "symbolic"))
    assert (mc["rollouts_per_solution"], mc["generated_tokens_per_solution"], mc["policy_tokens_per_solution"]) == (8, 40, 50)
    assert mc["engine"] == "policy" and judge["engine"] == "own model" and symbolic["engine"] == "none"
    assert judge["policy_tokens_per_solution"] == 10  # the judge generates on a model of its own
    assert symbolic["policy_tokens_per_solution"] == 10
    assert costs["job_policy_tokens_per_solution"] == 50
    sized = scaling.sizing(costs, tokens_per_s=1000.0, cpu_ms_per_solution=1.0)
    assert set(sized["engine_hours"]) == {*costs["annotators"], "job"}
    assert sized["engine_hours"][ids["mc_exhaustive"]] > sized["engine_hours"][ids["symbolic"]]
    assert "cpu_core_hours" in sized and "formula" in sized
    json.dumps(sized)  # the CLI writes it with --json


def test_dataset_costs_of_a_folder_that_is_not_an_output(tmp_path):
    with pytest.raises(ValueError, match="manifest"):
        scaling.dataset_costs(str(tmp_path))


def test_bench_labelers_scores_both_annotators_on_real_solutions(policy_engine):
    report = labelers.benchmark(n_problems=3, samples=2, k=2, engine=policy_engine)
    json.dumps(report)  # the CLI writes it with --json
    assert report["solutions"] == 6 and report["k"] == 2
    for name in ("omegaprm", "mc_exhaustive"):
        part = report[name]
        assert {"rollouts", "generated_tokens", "wall_s", "first_error_accuracy", "step_accuracy"} <= set(part)
        assert 0.0 <= part["first_error_accuracy"] <= 1.0
        assert part["generated_tokens"] >= part["rollouts"]
    # exhaustive MC rolls out k times from every proper prefix (identical prefixes share their rollouts);
    # OmegaPRM only binary-searches the wrong solutions, so it can never spend more
    assert 0 < report["mc_exhaustive"]["rollouts"] <= 2 * (report["steps"] - report["solutions"])
    assert report["omegaprm"]["rollouts"] <= report["mc_exhaustive"]["rollouts"]
