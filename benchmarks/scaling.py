"""What a cluster needs: CPU-stage throughput on 1 and 2 Ray workers, and measured per-solution costs.

Stages.  Split, grade and the symbolic checker (what a shard does besides waiting on an engine) run
over a fixed set of real solutions: half the toy domain's correct solutions (``toy.domain.solution_text``)
of distinct toy problems, half the GSM8K fixture's reference solutions, replicated to N.  Both are
split one line per step (GSM8K references write one calculation per line, and the symbolic checker's
cost is per step).  The set is cut into the same chunks for both runs; each chunk is a Ray task
(``num_cpus=1``) and the driver keeps 1, then 2, tasks in flight.  Each worker first runs an untimed
warm-up chunk (imports, a grader process if an answer needs one).  Solutions/s is N over the driver's
wall time from the first submission to the last result.  A task returns its own per-stage seconds,
not the labelled rows, so the per-solution CPU cost (``cpu_ms_per_solution``) is measured apart from
the scheduling.  On a machine whose cores are busy the speedup says little: read it on idle cores.

Costs.  ``--from DIR`` reads a finished prmforge output and reports, per annotator layer, rollouts,
generated tokens and policy tokens per labelled solution.  Policy tokens: the solution's own tokens
plus those the annotator generated on the policy engine (a judge with a model of its own adds none;
a layer the config does not name, such as the consensus, counts what it generated).  ``job`` adds
every annotator.  With an engine's measured tokens/s (``bench engine``) the sizing turns these into
engine hours per 10,000 problems, and the stage cost into CPU core-hours.  Both count generated
tokens only (prompts are prefilled, mostly from the prefix cache) and the stages measured here only
(an annotator's search logic and the Parquet writes come on top).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from data_schemas.records import Problem, Solution, problem_id_for, solution_id_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GSM8K_FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "gsm8k_sample.jsonl"
SPLIT_STRATEGY = "line"
STAGES = ("split", "grade", "symbolic")
SIZING_PROBLEMS = 10_000
MAX_DISTINCT_TOY = 1000  # the default toy difficulty has a few thousand distinct problems


# ---------------------------------------------------------------- the solution set

def gsm8k_reference_solutions(path: Path = GSM8K_FIXTURE) -> list[tuple[Problem, Solution]]:
    """Each GSM8K record as a problem and its reference solution (the answer field) as a solution."""
    from stages.answers import reference_from_gsm8k

    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        record = json.loads(line)
        problem = Problem(problem_id_for(f"gsm8k-{number}", record["question"]), record["question"],
                          reference_from_gsm8k(record["answer"]), domain="gsm8k", source="gsm8k")
        pairs.append((problem, _solution(problem, record["answer"], 0)))
    return pairs


def toy_reference_solutions(n: int, seed: int = 0) -> list[tuple[Problem, Solution]]:
    """``n`` distinct toy problems with their correct step-by-step solutions."""
    from toy import domain as toy_domain

    pairs = []
    for toy in toy_domain.generate_problems(n, seed):
        problem = Problem(problem_id_for(toy.problem_id, toy.expression), toy.expression, str(toy.answer),
                          domain="toy", source="toy", source_id=toy.problem_id)
        pairs.append((problem, _solution(problem, toy_domain.solution_text(toy.expression), 0)))
    return pairs


def _solution(problem: Problem, text: str, index: int) -> Solution:
    return Solution(solution_id_for(problem.problem_id, "reference", index, text), problem.problem_id,
                    "reference", index, problem.question, text)


def solution_set(n_solutions: int, seed: int = 0) -> tuple[list[Problem], list[Solution]]:
    """Half toy solutions, half GSM8K references; replicated (each copy its own sample index) past the
    distinct ones there are."""
    gsm8k = gsm8k_reference_solutions()
    toy = toy_reference_solutions(min(n_solutions // 2, MAX_DISTINCT_TOY), seed) if n_solutions >= 2 else []
    problems = [problem for problem, _ in gsm8k + toy]
    solutions = []
    for pool, count in ((toy, n_solutions // 2), (gsm8k, n_solutions - n_solutions // 2)):
        for copy in range(count):
            problem, solution = pool[copy % len(pool)]
            solutions.append(_solution(problem, solution.text, copy // len(pool)))
    return problems, solutions


# ---------------------------------------------------------------- the stages, timed

def run_stages(problem_rows: list[dict], solution_rows: list[dict]) -> dict:
    """Split, grade and symbolic-check one chunk; seconds per stage and per domain (no rows returned)."""
    from stages.annotator import AnnotationContext
    from stages.grade import grade_solutions
    from stages.split import split_solutions
    from stages.symbolic import SymbolicChecker

    problems = {row["problem_id"]: Problem.from_row(row) for row in problem_rows}
    by_domain: dict[str, list[Solution]] = {}
    for row in solution_rows:
        solution = Solution.from_row(row)
        by_domain.setdefault(problems[solution.problem_id].domain, []).append(solution)
    checker = SymbolicChecker()
    report: dict = {}
    for domain, solutions in by_domain.items():
        seconds = {}
        started = time.perf_counter()
        split_solutions(solutions, SPLIT_STRATEGY)
        seconds["split"] = time.perf_counter() - started
        started = time.perf_counter()
        grade_solutions(solutions, problems)
        seconds["grade"] = time.perf_counter() - started
        started = time.perf_counter()
        labels = checker.annotate(solutions, AnnotationContext(problems)).labels
        seconds["symbolic"] = time.perf_counter() - started
        report[domain] = {"solutions": len(solutions), "steps": sum(len(s.steps) for s in solutions),
                          "correct": sum(1 for s in solutions if s.outcome_correct),
                          "symbolic_wrong_steps": sum(row.step_labels.count(0) for row in labels),
                          "seconds": seconds}
    return report


def _warm_up(problem_rows: list[dict], solution_rows: list[dict], hold_s: float) -> None:
    run_stages(problem_rows, solution_rows)
    time.sleep(hold_s)  # hold the worker so that each warm-up task lands on a worker of its own


def _chunks(items: list, count: int) -> list[list]:
    size = -(-len(items) // count)
    return [items[start:start + size] for start in range(0, len(items), size)]


def _merge(reports: list[dict]) -> dict:
    merged: dict = {}
    for report in reports:
        for domain, part in report.items():
            into = merged.setdefault(domain, {"solutions": 0, "steps": 0, "correct": 0, "symbolic_wrong_steps": 0,
                                              "seconds": dict.fromkeys(STAGES, 0.0)})
            for key in ("solutions", "steps", "correct", "symbolic_wrong_steps"):
                into[key] += part[key]
            for stage in STAGES:
                into["seconds"][stage] += part["seconds"][stage]
    return merged


def time_workers(problems: list[Problem], solutions: list[Solution], workers: int, chunks: int) -> dict:
    """Run the stages over ``solutions`` as Ray tasks, at most ``workers`` in flight."""
    import ray

    remote = ray.remote(run_stages).options(num_cpus=1)
    problem_rows = ray.put([problem.to_row() for problem in problems])  # shared by every chunk
    pending = _chunks([solution.to_row() for solution in solutions], chunks)
    in_flight, reports = [], []
    started = time.perf_counter()
    while pending or in_flight:
        while pending and len(in_flight) < workers:
            in_flight.append(remote.remote(problem_rows, pending.pop(0)))
        done, in_flight = ray.wait(in_flight, num_returns=1)
        reports.extend(ray.get(done))
    wall = time.perf_counter() - started
    merged = _merge(reports)
    return {"workers": workers, "wall_s": round(wall, 3), "solutions_per_s": round(len(solutions) / wall, 1),
            "by_domain": merged}


def stage_throughput(n_solutions: int = 4000, worker_counts: tuple[int, ...] = (1, 2), chunks: int = 8,
                     seed: int = 0) -> dict:
    """Solutions/s of split + grade + symbolic with 1 and 2 Ray workers (Ray started here if needed)."""
    import ray

    from pipeline.config import RayConfig
    from pipeline.ray_runtime import ensure_ray

    ensure_ray(RayConfig(num_cpus=max(worker_counts)))
    problems, solutions = solution_set(n_solutions, seed)
    # Warm-up: the base set once per worker (imports, a grader process where an answer needs one).
    base_problems, base_solutions = solution_set(min(n_solutions, 2 * len(gsm8k_reference_solutions())), seed)
    warm = ray.remote(_warm_up).options(num_cpus=1)
    problem_rows = [p.to_row() for p in base_problems]
    solution_rows = [s.to_row() for s in base_solutions]
    ray.get([warm.remote(problem_rows, solution_rows, 1.0) for _ in range(max(worker_counts))])
    runs = {workers: time_workers(problems, solutions, workers, chunks) for workers in worker_counts}
    report: dict = {"solutions": len(solutions), "chunks": chunks, "split_strategy": SPLIT_STRATEGY,
                    "ray_cpus": int(ray.cluster_resources().get("CPU", 0))}
    for workers, run in runs.items():
        label = f"{workers}_worker" + ("s" if workers > 1 else "")
        report[f"solutions_per_s_{label}"] = run["solutions_per_s"]
        report[f"wall_s_{label}"] = run["wall_s"]
    if 1 in runs and 2 in runs:
        report["speedup"] = round(runs[1]["wall_s"] / runs[2]["wall_s"], 3)
    report["cpu_ms_per_solution"] = _cpu_costs(runs[min(runs)]["by_domain"])
    return report


def _cpu_costs(by_domain: dict) -> dict:
    """Milliseconds of one core per solution, per domain and stage (from the tasks' own timings)."""
    costs = {}
    for domain, part in by_domain.items():
        per = {stage: round(1000 * part["seconds"][stage] / part["solutions"], 3) for stage in STAGES}
        per["total"] = round(sum(per[stage] for stage in STAGES), 3)
        per["steps_per_solution"] = round(part["steps"] / part["solutions"], 2)
        costs[domain] = per
    return costs


# ---------------------------------------------------------------- costs of a finished dataset

def _annotator_engines(manifest: dict, annotator_ids: list[str]) -> dict[str, str]:
    """Annotator id -> the engine it generates on: "policy", "own model", "none", or "unknown" (a layer
    the job's config does not name: the consensus, or an imported dataset's)."""
    from pipeline.config import build_config
    from pipeline.runner import build_annotators

    engines = dict.fromkeys(annotator_ids, "unknown")
    try:
        config = build_config(manifest.get("config") or {})
        built = build_annotators(config)[0]
    except Exception:  # an imported dataset, or a config of another version: engines unknown
        return engines
    for entry, (annotator, _role) in zip(config.annotators, built):
        if annotator.id not in engines:
            continue
        if entry.type in ("omegaprm", "mc_exhaustive"):
            engines[annotator.id] = "policy"
        elif entry.type == "llm_judge":
            engines[annotator.id] = "policy" if entry.model is None else "own model"
        else:
            engines[annotator.id] = "none"
    return engines


def dataset_costs(folder: str) -> dict:
    """Per annotator layer of a prmforge output: rollouts, generated and policy tokens per labelled solution."""
    from pipeline.store import DatasetStore

    store = DatasetStore(folder)
    try:
        manifest = store.manifest
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    layers = store.layers()
    problems = sum(part.num_rows for part in store.iter_layer("problems", ["problem_id"])) if "problems" in layers else 0
    solutions = tokens = 0
    if "solutions" in layers:
        for part in store.iter_layer("solutions", ["generated_tokens"]):
            solutions += part.num_rows
            tokens += sum(part.column(0).to_pylist())
    solution_tokens = tokens / solutions if solutions else 0.0
    label_layers = [layer for layer in layers if layer.startswith("labels/")]
    engines = _annotator_engines(manifest, [layer[len("labels/"):] for layer in label_layers])
    annotators = {}
    all_policy_tokens = solution_tokens
    for layer in label_layers:
        rows = rollouts = generated = 0
        for part in store.iter_layer(layer, ["rollouts", "generated_tokens"]):
            data = part.to_pydict()
            rows += part.num_rows
            rollouts += sum(data["rollouts"])
            generated += sum(data["generated_tokens"])
        annotator = layer[len("labels/"):]
        per_generated = generated / rows if rows else 0.0
        # tokens an unknown layer generated are counted as the policy's: the sizing errs high
        on_policy = per_generated if engines[annotator] in ("policy", "unknown") else 0.0
        all_policy_tokens += on_policy
        annotators[annotator] = {
            "engine": engines[annotator],
            "labelled_solutions": rows,
            "rollouts_per_solution": round(rollouts / rows if rows else 0.0, 2),
            "generated_tokens_per_solution": round(per_generated, 1),
            "policy_tokens_per_solution": round(solution_tokens + on_policy, 1),
        }
    domain = ((manifest.get("config") or {}).get("problems") or {}).get("domain")
    return {"dataset": folder, "domain": domain, "problems": problems, "solutions": solutions,
            "solutions_per_problem": round(solutions / problems, 2) if problems else None,
            "solution_tokens_per_solution": round(solution_tokens, 1),
            "job_policy_tokens_per_solution": round(all_policy_tokens, 1), "annotators": annotators}


def sizing(costs: dict, tokens_per_s: float | None, cpu_ms_per_solution: float | None,
           problems: int = SIZING_PROBLEMS) -> dict:
    """Engine hours and CPU core-hours for ``problems`` problems, per annotator."""
    formula = (f"engine_hours = {problems} * solutions_per_problem * policy_tokens_per_solution / tokens_per_s / 3600; "
               f"cpu_core_hours = {problems} * solutions_per_problem * cpu_ms_per_solution / 1000 / 3600")
    result: dict = {"problems": problems, "formula": formula, "tokens_per_s": tokens_per_s,
                    "cpu_ms_per_solution": cpu_ms_per_solution}
    per_problem = costs.get("solutions_per_problem") or 0.0
    if cpu_ms_per_solution is not None:
        result["cpu_core_hours"] = round(problems * per_problem * cpu_ms_per_solution / 1000 / 3600, 3)
    if tokens_per_s:
        def hours(tokens_per_solution: float) -> float:
            return round(problems * per_problem * tokens_per_solution / tokens_per_s / 3600, 3)

        # per annotator: the policy's solutions plus that annotator alone; job: with every annotator
        result["engine_hours"] = {annotator: hours(figures["policy_tokens_per_solution"])
                                  for annotator, figures in costs["annotators"].items()}
        result["engine_hours"]["job"] = hours(costs["job_policy_tokens_per_solution"])
    return result


def benchmark(n_solutions: int = 4000, source: str | None = None, tokens_per_s: float | None = None,
              worker_counts: tuple[int, ...] = (1, 2), seed: int = 0) -> dict:
    """Stage throughput; with ``source`` also that dataset's per-solution costs and a sizing."""
    costs = dataset_costs(source) if source else None  # a bad folder fails before Ray starts
    report = stage_throughput(n_solutions, worker_counts, seed=seed)
    if costs is not None:
        report["dataset_costs"] = costs
        # the stages' CPU cost of the dataset's kind of text: toy, or GSM8K-like (any other domain)
        per_domain = report["cpu_ms_per_solution"]
        kind = "toy" if costs["domain"] == "toy" else "gsm8k"
        cpu_ms = per_domain[kind]["total"] if kind in per_domain else None
        report["sizing"] = sizing(costs, tokens_per_s, cpu_ms)
    return report
