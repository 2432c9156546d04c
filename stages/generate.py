"""Sample N solutions per problem from the policy: one request per problem with n = N.

Each request carries its own seed, derived from the job seed and the problem id, so a solution does
not depend on which other problems share its batch or shard: a resumed run reproduces an
uninterrupted one.  (Small consecutive seeds correlate in vLLM's per-request sampling, so seeds are
hashed apart.)
"""
from __future__ import annotations

from dataclasses import dataclass

from data_schemas.engine import Engine, GenerationRequest
from data_schemas.records import Problem, Solution, solution_id_for, stable_hash


@dataclass(frozen=True)
class PolicySpec:
    """Everything that determines what the policy writes for a problem (and the rollout cache key)."""

    model: str
    prompt_template: str
    chat: bool = False
    system_prompt: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Readable and unique: the model's last path part, then a hash of every setting."""
        name = self.model.rstrip("/").split("/")[-1] or "model"
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:40]
        return f"{safe}-{stable_hash(self.model, self.prompt_template, self.chat, self.system_prompt, self.temperature, self.top_p, self.max_tokens, list(self.stop), length=10)}"


def request_seed(job_seed: int, *parts: object) -> int:
    return int(stable_hash(job_seed, *parts), 16) % (2**31 - 1)


def build_request(prompt_text: str, spec: PolicySpec, n: int, seed: int, max_tokens: int | None = None) -> GenerationRequest:
    """A request for ``prompt_text`` (already formatted) under the policy's settings."""
    common = dict(n=n, temperature=spec.temperature, top_p=spec.top_p,
                  max_tokens=max_tokens or spec.max_tokens, stop=spec.stop, seed=seed)
    if not spec.chat:
        return GenerationRequest(prompt=prompt_text, **common)
    messages = ((("system", spec.system_prompt),) if spec.system_prompt else ()) + (("user", prompt_text),)
    return GenerationRequest(messages=messages, **common)


def format_prompt(problem: Problem, spec: PolicySpec) -> str:
    return spec.prompt_template.replace("{question}", problem.question)


def generate_solutions(problems: list[Problem], engine: Engine, spec: PolicySpec, n: int, job_seed: int) -> list[Solution]:
    """n solutions per problem (failed requests give n rows with ``failed_reason`` set)."""
    prompts = [format_prompt(problem, spec) for problem in problems]
    requests = [build_request(prompt, spec, n, request_seed(job_seed, "generate", problem.problem_id))
                for problem, prompt in zip(problems, prompts)]
    results = engine.generate(requests)
    key = spec.key
    solutions: list[Solution] = []
    for problem, prompt, result in zip(problems, prompts, results):
        if not result.ok:
            for index in range(n):
                solutions.append(Solution(solution_id_for(problem.problem_id, key, index, ""), problem.problem_id,
                                          key, index, prompt, "", failed_reason=result.error))
            continue
        for index, completion in enumerate(result.completions):
            solutions.append(Solution(
                solution_id=solution_id_for(problem.problem_id, key, index, completion.text),
                problem_id=problem.problem_id, policy_key=key, sample_index=index, prompt=prompt,
                text=completion.text, finish_reason=completion.finish_reason,
                generated_tokens=completion.tokens))
    return solutions
