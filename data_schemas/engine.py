"""The engine contract: what every stage may ask of a language model, and nothing more.

Stages depend on this interface, never on vLLM or HTTP: a batch of requests in, for each request
``n`` completions out.  Engines live in ``pipeline/engines``; tests may script one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (raw text, or chat messages rendered by the engine's chat template) and how to sample it."""

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...) for chat models
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a request needs exactly one of prompt or messages")
        if self.n < 1:
            raise ValueError("n must be at least 1")


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int  # generated tokens
    finish_reason: str  # "stop", "length", or the engine's word for it


@dataclass
class GenerationResult:
    """The outcome of one request: its completions, or the reason it failed after retries."""

    completions: list[Completion] = field(default_factory=list)
    prompt_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Engine(Protocol):
    """Anything that turns requests into completions, one result per request, in order."""

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]: ...


class EngineError(RuntimeError):
    """The engine could not serve a request after its retries."""
