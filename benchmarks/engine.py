"""Generated tokens per second: raw ``vllm.LLM.generate`` against the whole pipeline on Ray.

Target: the pipeline keeps at least 90% of the raw engine's throughput (``ratio`` >= 0.9).

One workload for both: toy problems (``pipeline.sources.load_problems``), the policy's prompts and
per-request seeds (``stages.generate``), ``n`` samples each, a fixed ``max_tokens``.  Seeds make the two
sides generate the same text, so their token counts must agree (``same_tokens``).

- raw: one ``vllm.LLM`` in this process, built with the pipeline's own engine arguments
  (``engine_kwargs_for``); every request in one ``generate`` call, the best batching vLLM can get.
  Timed: that call.
- pipeline: ``run_job`` with no annotators, on the default path (a local Ray, the engine in an actor,
  each shard a Ray task that generates, splits and grades, the driver writing Parquet to a temporary
  folder, then the summary and the card).  Timed: the whole ``run_job`` call, except loading the
  model: the engine actor is started first with ``make_engine`` (the function ``run_job`` calls) and
  handed to the job in its place.  Shard tasks pay their workers' imports once per worker, as the
  engine pays its load once; a small untimed warm-up (a few requests on each side, one task that
  imports the runner) keeps both one-time costs out of both figures.  Tokens: the ``generated_tokens``
  the job wrote to ``solutions/``.

Where a gap comes from: before the job, the same actor is also fed the workload one shard's requests per
call, one call at a time, as the job's calls reach it (``actor_shard_batches_tokens_per_s``).  Raw over
that is the cost of smaller batches; that over the pipeline is the cost of the pipeline's own work
(tasks, split, grade, Parquet) while the engine waits.

The raw engine is shut down before the pipeline's starts, so the two never share the CPU.  On a busy
machine the figures are noisy; compare the ratio of one run, not figures of different runs.  Each
shard task sends one shard's requests per call; with several shards in flight the actor runs them all in
one continuous batch (``pipeline.engines.continuous``), so a larger ``output.shard_size`` or
``ray.max_shards_in_flight`` moves the pipeline's batching toward the raw one.
"""
from __future__ import annotations

import gc
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from data_schemas.engine import GenerationRequest
from pipeline.config import JobConfig

WARM_UP_REQUESTS = 4


def workload(n_problems: int, samples: int, max_tokens: int, shard_size: int | None = None, seed: int = 0) -> JobConfig:
    """The job both sides run: toy problems, n samples each, no annotators (generation, split, grade)."""
    from pipeline.config import build_config

    data: dict = {"name": "bench-engine", "seed": seed,
                  "problems": {"source": "toy", "domain": "toy", "toy": {"n": n_problems, "seed": seed}},
                  "sampling": {"n": samples, "max_tokens": max_tokens}, "annotators": []}
    if shard_size:
        data["output"] = {"shard_size": shard_size}
    return build_config(data)


def workload_requests(config: JobConfig) -> list[GenerationRequest]:
    """The requests ``generate_solutions`` sends for the job's problems (same prompts, same seeds)."""
    from pipeline.runner import policy_spec
    from pipeline.sources import load_problems
    from stages.generate import build_request, format_prompt, request_seed

    spec = policy_spec(config)
    return [build_request(format_prompt(problem, spec), spec, config.sampling.n,
                          request_seed(config.seed, "generate", problem.problem_id))
            for problem in load_problems(config.problems)]


def _sampling_params(request: GenerationRequest):
    from vllm import SamplingParams

    return SamplingParams(n=request.n, temperature=request.temperature, top_p=request.top_p,
                          max_tokens=request.max_tokens, stop=list(request.stop) or None, seed=request.seed)


def run_raw(config: JobConfig, requests: list[GenerationRequest]) -> dict:
    """Tokens and seconds of one ``LLM.generate`` over every request (model load and warm-up not timed)."""
    from vllm import LLM

    from pipeline.config import resolve_model_path
    from pipeline.engines.vllm_engine import engine_kwargs_for

    llm = LLM(**engine_kwargs_for(resolve_model_path(config.policy.model), dict(config.policy.engine_kwargs)))
    try:
        warm = requests[:WARM_UP_REQUESTS]
        llm.generate([r.prompt for r in warm], [_sampling_params(r) for r in warm], use_tqdm=False)
        prompts, params = [r.prompt for r in requests], [_sampling_params(r) for r in requests]
        started = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - started
    finally:
        _shut_down(llm)
    tokens = sum(len(completion.token_ids) for output in outputs for completion in output.outputs)
    sequences = sum(len(output.outputs) for output in outputs)
    return {"tokens": tokens, "sequences": sequences, "seconds": round(seconds, 3)}


def _shut_down(llm) -> None:
    """Stop the engine-core process now rather than at garbage collection, to free its cores and memory."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm
    gc.collect()


def _import_runner() -> bool:
    import pipeline.runner  # noqa: F401  (what a shard task imports first)

    return True


@contextmanager
def _job_uses(engine):
    """Hand ``run_job`` an engine already started: its ``make_engine`` call returns this one, and its
    ``shutdown_engine`` leaves it running (the benchmark reads its statistics, then shuts it down)."""
    import pipeline.runner as runner

    originals = runner.make_engine, runner.shutdown_engine
    runner.make_engine = lambda model_config, **_: engine
    runner.shutdown_engine = lambda built: None if built is engine else originals[1](built)
    try:
        yield
    finally:
        runner.make_engine, runner.shutdown_engine = originals


def run_pipeline(config: JobConfig, requests: list[GenerationRequest], out: str) -> dict:
    """Tokens and seconds of ``run_job`` on Ray, the engine actor started (and warmed) beforehand."""
    import ray

    from pipeline.engines.factory import make_engine, shutdown_engine
    from pipeline.ray_runtime import ensure_ray
    from pipeline.runner import run_job
    from pipeline.store import DatasetStore

    ensure_ray(config.ray)
    engine = make_engine(config.policy, actor_restarts=config.ray.actor_restarts)
    try:
        engine.generate(requests[:WARM_UP_REQUESTS])
        ray.get(ray.remote(_import_runner).options(num_cpus=config.ray.shard_cpus).remote())
        batches = time_shard_batches(engine, requests, config.output.shard_size)
        actor = engine.actors[0]
        with _job_uses(engine):
            idle_before = ray.get(actor.stats.remote())["idle_s"]
            started = time.perf_counter()
            summary = run_job(config, out, progress=False)
            seconds = time.perf_counter() - started
            idle = ray.get(actor.stats.remote())["idle_s"] - idle_before
    finally:
        shutdown_engine(engine)
    tokens = sum(sum(part.column(0).to_pylist()) for part in DatasetStore(out).iter_layer("solutions", ["generated_tokens"]))
    return {"tokens": tokens, "sequences": summary.solutions, "failed_solutions": summary.failed_solutions,
            "shards": summary.shards_total, "seconds": round(seconds, 3), "shard_batches": batches,
            "engine_idle_s": round(idle, 3)}


def time_shard_batches(engine, requests: list[GenerationRequest], shard_size: int) -> dict:
    """The actor alone, one shard's requests per call, one call at a time (as the job's calls reach it):
    the part of the gap that is batching, apart from the part that is the pipeline's own work."""
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(requests), shard_size):
        for result in engine.generate(requests[start:start + shard_size]):
            tokens += sum(completion.tokens for completion in result.completions)
    return {"tokens": tokens, "seconds": round(time.perf_counter() - started, 3)}


def benchmark(n_problems: int = 1000, samples: int = 8, max_tokens: int = 64, shard_size: int | None = None,
              seed: int = 0) -> dict:
    """Raw and pipeline tokens/s on the same workload; ``ratio`` is pipeline / raw."""
    from pipeline.engines.vllm_engine import has_cuda

    config = workload(n_problems, samples, max_tokens, shard_size, seed)
    requests = workload_requests(config)
    raw = run_raw(config, requests)
    with tempfile.TemporaryDirectory(prefix="prmforge-bench-engine-") as folder:
        pipeline = run_pipeline(config, requests, str(Path(folder) / "out"))
    raw_rate = raw["tokens"] / raw["seconds"]
    pipeline_rate = pipeline["tokens"] / pipeline["seconds"]
    batches_rate = pipeline["shard_batches"]["tokens"] / pipeline["shard_batches"]["seconds"]
    return {
        "device": "cuda" if has_cuda() else "cpu",
        "workload": {"problems": n_problems, "samples_per_problem": samples, "max_tokens": max_tokens,
                     "shard_size": config.output.shard_size, "seed": seed, "model": config.policy.model},
        "raw_tokens": raw["tokens"],
        "raw_seconds": raw["seconds"],
        "raw_tokens_per_s": round(raw_rate, 1),
        "pipeline_tokens": pipeline["tokens"],
        "pipeline_seconds": pipeline["seconds"],
        "pipeline_tokens_per_s": round(pipeline_rate, 1),
        "pipeline_shards": pipeline["shards"],
        "pipeline_failed_solutions": pipeline["failed_solutions"],
        # seconds of the job during which the engine had nothing to run: the pipeline failing to feed it
        "pipeline_engine_idle_s": pipeline["engine_idle_s"],
        "same_tokens": raw["tokens"] == pipeline["tokens"],
        "ratio": round(pipeline_rate / raw_rate, 3),
        # where the gap is: the engine actor fed shard-sized batches alone, without the pipeline's work
        "actor_shard_batches_tokens_per_s": round(batches_rate, 1),
        "ratio_actor_shard_batches_to_raw": round(batches_rate / raw_rate, 3),
        "ratio_pipeline_to_actor_shard_batches": round(pipeline_rate / batches_rate, 3),
        "target_ratio": 0.9,
    }
