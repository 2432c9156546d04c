"""Monte-Carlo rollouts from solution prefixes, batched into one engine call per round, and cached.

MC(prefix) is the fraction of k completions of ``prompt + prefix`` whose final answer equals the
reference.  Rollouts are the expensive part of a PRM dataset, so every one is kept: the sampler
first takes what the cache already holds for a prefix and samples only the difference.  The cache
key is a hash of the policy key (model, sampling settings, prompt template) and the exact prompt and
prefix text, so identical prefixes of different solutions share their rollouts.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from data_schemas.engine import Engine
from data_schemas.records import Problem, Solution, stable_hash
from stages.generate import PolicySpec, build_request, request_seed

# Answer checker for a rollout: (problem, full solution text) -> (extracted answer, correct?)
GradeText = Callable[[Problem, str], "tuple[str | None, bool]"]


def prefix_text(solution: Solution, prefix_steps: int) -> str:
    """The solution text through ``prefix_steps`` steps, with the separator that followed the last one,
    so a rollout continues exactly where the policy would."""
    if prefix_steps <= 0:
        return ""
    offsets = solution.step_offsets
    end = offsets[prefix_steps - 1]["end"]
    if prefix_steps < len(offsets):
        end = offsets[prefix_steps]["start"]  # keep the separator ("\n", "\n\n", ...) before the next step
    else:
        end = len(solution.text)
    return solution.text[:end]


def prefix_hash(policy_key: str, prompt: str, prefix: str) -> str:
    return stable_hash(policy_key, prompt, prefix)


@dataclass
class Rollout:
    completion: str
    correct: bool
    tokens: int


@dataclass
class MCEstimate:
    """MC value of one prefix from its first ``n_rollouts`` rollouts (cached ones first)."""

    value: float
    n_correct: int
    n_rollouts: int
    rollouts: list[Rollout]
    error: str | None = None  # the engine failed for this prefix: no estimate, annotators abstain


@dataclass(frozen=True)
class PrefixQuery:
    solution: Solution
    prefix_steps: int
    k: int | None = None  # rollouts wanted; None: the caller's default


@dataclass
class RolloutSampler:
    """Estimates MC values for batches of prefixes; remembers every rollout it sampled."""

    engine: Engine
    spec: PolicySpec
    problems: dict[str, Problem]
    grade_text: GradeText
    job_seed: int = 0
    max_tokens: int | None = None  # rollout length limit; None: the policy's
    cache: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    new_rows: list[dict] = field(default_factory=list)  # rollouts-layer rows sampled by this sampler
    failures: dict[str, str] = field(default_factory=dict)  # prefix hash -> why its rollouts failed
    engine_calls: int = 0

    def load(self, rows: list[dict]) -> None:
        """Seed the cache with rollouts-layer rows (from an earlier run or a parent dataset)."""
        for row in rows:
            self.cache[row["prefix_hash"]].append(row)

    @property
    def sampled_rollouts(self) -> int:
        return len(self.new_rows)

    @property
    def sampled_tokens(self) -> int:
        return sum(row["tokens"] for row in self.new_rows)

    def estimate(self, queries: list[PrefixQuery], k: int) -> list[MCEstimate]:
        """MC estimates of many prefixes with one engine call for whatever the cache lacks."""
        keys, prompts, missing = [], [], {}
        for query in queries:
            wanted = query.k or k
            solution = query.solution
            prompt = solution.prompt + prefix_text(solution, query.prefix_steps)
            # keyed by the policy that rolls out (not the one that wrote the solution: imports differ)
            key = prefix_hash(self.spec.key, solution.prompt, prefix_text(solution, query.prefix_steps))
            keys.append(key)
            prompts.append(prompt)
            full = query.prefix_steps >= len(solution.steps)
            if not full:
                lacking = wanted - len(self.cache[key]) - missing.get(key, (0, None, None))[0]
                if lacking > 0:
                    previous = missing.get(key, (0, None, None))[0]
                    missing[key] = (previous + lacking, query, prompt)
        missing = {key: value for key, value in missing.items() if key not in self.failures}
        if missing:
            self._sample(missing)
        estimates = []
        for query, key in zip(queries, keys):
            if query.prefix_steps >= len(query.solution.steps):
                # the whole solution: its own answer decides, no rollout needed
                correct = bool(query.solution.outcome_correct)
                estimates.append(MCEstimate(1.0 if correct else 0.0, int(correct), 0, []))
                continue
            if key in self.failures and len(self.cache[key]) < (query.k or k):
                estimates.append(MCEstimate(0.0, 0, 0, [], error=self.failures[key]))
                continue
            rows = self.cache[key][:query.k or k]
            rollouts = [Rollout(r["completion"], bool(r["correct"]), int(r["tokens"])) for r in rows]
            n_correct = sum(r.correct for r in rollouts)
            estimates.append(MCEstimate(n_correct / len(rollouts), n_correct, len(rollouts), rollouts))
        return estimates

    def _sample(self, missing: dict[str, tuple[int, PrefixQuery, str]]) -> None:
        keys = list(missing)
        requests = []
        for key in keys:
            count, _query, prompt = missing[key]
            have = len(self.cache[key])
            # the seed names the prefix and how many rollouts it already had: a resumed or larger-k
            # run samples the same continuation of the sequence
            requests.append(build_request(prompt, self.spec, count, request_seed(self.job_seed, "rollout", key, have),
                                          max_tokens=self.max_tokens))
        results = self.engine.generate(requests)
        self.engine_calls += 1
        for key, request, result in zip(keys, requests, results):
            count, query, prompt = missing[key]
            if not result.ok:  # the engine gave up on it (after its own retries): one prefix, not the job
                self.failures[key] = f"rollouts from prefix {query.prefix_steps} failed: {result.error}"
                continue
            problem = self.problems[query.solution.problem_id]
            prefix = prefix_text(query.solution, query.prefix_steps)
            start = len(self.cache[key])
            for index, completion in enumerate(result.completions):
                answer, correct = self.grade_text(problem, prefix + completion.text)
                row = {
                    "solution_id": query.solution.solution_id,
                    "problem_id": query.solution.problem_id,
                    "prefix_steps": query.prefix_steps,
                    "prefix_hash": key,
                    "sample_index": start + index,
                    "completion": completion.text,
                    "answer": answer,
                    "correct": bool(correct),
                    "tokens": completion.tokens,
                }
                self.new_rows.append(row)
                self.cache[key].append(row)
