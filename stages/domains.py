"""What differs between problem domains: how a policy is prompted and how its solutions are split.

Answer extraction and grading per domain live in ``stages.answers`` and ``stages.grade``.
"""
from __future__ import annotations

from dataclasses import dataclass

from toy import domain as toy_domain

STEP_BY_STEP = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Domain:
    name: str
    prompt_template: str  # "{question}" is replaced
    split_strategy: str
    system_prompt: str | None = None


DOMAINS: dict[str, Domain] = {
    # The embedded model was trained on exactly this raw format (toy/domain.py).
    "toy": Domain("toy", toy_domain.QUESTION_PREFIX + "{question}\n", "line"),
    # Qwen2.5-Math-Instruct's recommended prompt; steps are paragraphs.
    "gsm8k": Domain("gsm8k", "{question}\n" + STEP_BY_STEP, "blank_line"),
    "math": Domain("math", "{question}\n" + STEP_BY_STEP, "blank_line"),
    "plain": Domain("plain", "{question}\n" + STEP_BY_STEP, "blank_line"),
}


def get_domain(name: str) -> Domain:
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}") from None
