"""Build the engine a model config asks for.

A ``vllm`` model runs inside Ray actors (loaded once each, reused for every shard); requests of a
batch are spread over the replicas.  An ``openai`` model is a plain HTTP client in the driver: the
server is somebody else's process.
"""
from __future__ import annotations

import os
from typing import Any

from data_schemas.engine import Engine, GenerationRequest, GenerationResult
from pipeline.config import ModelConfig, resolve_model_path


# Calls one engine actor serves at once (threads): concurrent shard tasks' requests run in one
# continuous batch (see continuous.py), so this bounds how many shards feed one engine.
ACTOR_MAX_CONCURRENCY = 16


class EngineActorBody:
    """What runs inside one Ray actor: a vLLM engine, created when the actor starts, whose running
    batch every concurrent caller's requests join."""

    def __init__(self, model: str, engine_kwargs: dict[str, Any]) -> None:
        from pipeline.engines.vllm_engine import VLLMEngine

        self.engine = VLLMEngine(model, **engine_kwargs)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return self.engine.generate(requests)

    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, float]:
        """Calls served, engine steps run, the most calls that shared the running batch at once, and the
        seconds the engine sat with nothing to run."""
        return self.engine.stats()


class RayEngine:
    """Client side of a pool of engine actors; implements the Engine protocol."""

    def __init__(self, actors: list) -> None:
        self.actors = actors

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import ray

        if not requests:
            return []
        chunk = -(-len(requests) // len(self.actors))
        futures = [actor.generate.remote(requests[start:start + chunk])
                   for actor, start in zip(self.actors, range(0, len(requests), chunk))]
        results: list[GenerationResult] = []
        for part in ray.get(futures):
            results.extend(part)
        return results

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def make_engine(model_config: ModelConfig, *, actor_restarts: int = 3) -> Engine:
    if model_config.engine == "openai":
        from pipeline.engines.openai_engine import OpenAIEngine

        settings = model_config.openai
        return OpenAIEngine(settings.base_url, model_config.model,
                            api_key=os.environ.get(settings.api_key_env),
                            max_concurrency=settings.max_concurrency, timeout_s=settings.timeout_s,
                            max_retries=settings.max_retries)
    import ray

    # A dead actor is restarted (the model loads again) and the calls in flight are retried on it:
    # per-request seeds make the retried output the same.
    actor_class = ray.remote(EngineActorBody).options(num_cpus=model_config.num_cpus, num_gpus=model_config.num_gpus,
                                                       max_restarts=actor_restarts, max_task_retries=actor_restarts,
                                                       max_concurrency=ACTOR_MAX_CONCURRENCY)
    model = resolve_model_path(model_config.model)
    actors = [actor_class.remote(model, dict(model_config.engine_kwargs)) for _ in range(model_config.replicas)]
    ray.get([actor.ready.remote() for actor in actors])  # surface load errors now, not mid-shard
    return RayEngine(actors)


def task_handle(engine: Engine, model_config: ModelConfig):
    """What a Ray task is given to reach an engine: actor handles travel, HTTP clients do not (the task
    builds its own from the config, reading the API key from its own environment)."""
    return engine if isinstance(engine, RayEngine) else model_config


def engine_from_handle(handle) -> Engine:
    return make_engine(handle) if isinstance(handle, ModelConfig) else handle


def shutdown_engine(engine: Engine) -> None:
    close = getattr(engine, "shutdown", None) or getattr(engine, "close", None)
    if close:
        close()
