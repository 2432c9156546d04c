"""Measure the embedded model through the vLLM engine: policy accuracy, step errors, and the judge.

Problems come from a held-out seed (training never sees seed-0..N problems); the policy samples at
its default temperature 1.0, the judge decodes greedily, as the pipeline uses them.
"""
from __future__ import annotations

import time

from data_schemas.engine import GenerationRequest
from toy import domain


def evaluate_model(model_dir: str, n: int = 200, seed: int = 0, engine=None) -> dict:
    """Run ``n`` held-out problems; returns the report (keys documented in the README)."""
    if engine is None:
        from pipeline.engines.vllm_engine import VLLMEngine

        engine = VLLMEngine(model_dir)
    problems = domain.generate_problems(n, seed=seed)
    requests = [GenerationRequest(prompt=domain.policy_prompt(p.expression), n=1, temperature=1.0,
                                  max_tokens=64, seed=1000 + index) for index, p in enumerate(problems)]
    started = time.time()
    results = engine.generate(requests)
    elapsed = time.time() - started
    tokens = sum(c.tokens for r in results for c in r.completions)
    texts = [r.completions[0].text if r.ok else "" for r in results]
    checks = [domain.check_solution(p.expression, text) for p, text in zip(problems, texts)]

    wrong = [c for c in checks if not c.answer_correct]
    total_steps = sum(len(c.step_correct) for c in checks)
    judge_requests = [GenerationRequest(prompt=domain.judge_prompt(p.expression, domain.split_lines(text)),
                                        n=1, temperature=0.0, max_tokens=320)
                      for p, text in zip(problems, texts)]
    verdicts = [domain.parse_verdict(r.completions[0].text) if r.ok else None
                for r in engine.generate(judge_requests)]
    truths = [c.first_error_step for c in checks]
    return {
        "n": n,
        "seed": seed,
        "final_answer_accuracy": round(sum(c.answer_correct for c in checks) / n, 4),
        "step_error_rate": round(sum(not ok for c in checks for ok in c.step_correct) / max(1, total_steps), 4),
        "locatable_first_error_share": round(sum(c.first_error_step >= 0 for c in wrong) / max(1, len(wrong)), 4),
        "judge_first_error_accuracy": round(sum(v == t for v, t in zip(verdicts, truths)) / n, 4),
        "judge_trivial_baseline": round(sum(t == -1 for t in truths) / n, 4),
        "judge_abstentions": sum(v is None for v in verdicts),
        "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else None,
        "generated_tokens": tokens,
    }


def print_report(report: dict) -> None:
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
