"""The ``openai`` engine: any OpenAI-compatible server (``vllm serve``, SGLang, a hosted API) over HTTP.

Prompt requests go to ``/v1/completions``, chat requests to ``/v1/chat/completions``.  Requests run on a
bounded thread pool sharing one ``httpx.Client``; connection errors, timeouts, 429 and 5xx are retried with
exponential backoff, other 4xx are not.  A request that still fails becomes a ``GenerationResult`` with
``error`` set, so one bad request never sinks its batch.

Per-choice token counts: vLLM returns each choice's generated ``token_ids`` when the request carries its
``return_token_ids`` extension, and ``len(token_ids)`` is the exact count (the same number vLLM sums into
``usage.completion_tokens``).  A server that rejects the field (a hosted API answers 400 naming it) is asked
again without it, and from then on the engine splits ``usage.completion_tokens`` over the choices instead
(exact for n=1, an even split otherwise).

Servers cap stop sequences per request (OpenAI and vLLM: 4; vLLM's ``VLLM_MAX_STOP_STRINGS``): a request
with more comes back as a 400 error result.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from data_schemas.engine import Completion, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

TOKEN_IDS_FIELD = "return_token_ids"  # vLLM extension: each choice carries its generated token ids
MAX_RETRY_AFTER_S = 60.0  # never sleep longer than this on a server's Retry-After
MAX_ERROR_CHARS = 500


class RetryableError(Exception):
    """A failure worth another attempt: connection trouble, a timeout, 429 or 5xx."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class RequestRejected(Exception):
    """A 4xx other than 429: asking again would get the same answer."""


class OpenAIEngine:
    """Implements ``data_schemas.engine.Engine`` against an OpenAI-compatible HTTP server.

    ``base_url`` is the server root, with or without a trailing ``/v1`` (``http://host:8000`` and
    ``https://api.example.com/v1`` both work).
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 1.0) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        root = base_url.rstrip("/")
        self.api_root = root if root.endswith("/v1") else root + "/v1"
        self.model = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # the key lives only in the client's headers: never in attributes, logs or error messages
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency))
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="openai-engine")
        self._send_token_ids = True  # cleared once the server rejects the vLLM extension
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.api_root!r}, {self.model!r}, max_concurrency={self.max_concurrency})"

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; failures are results with ``error`` set, never exceptions."""
        return list(self._pool.map(self._generate_one, requests))

    # -- one request -------------------------------------------------------------------------------

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        try:
            return self._with_retries(request)
        except Exception as error:  # anything unexpected belongs to this request alone
            log.exception("request failed unexpectedly")
            return GenerationResult(error=f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])

    def _with_retries(self, request: GenerationRequest) -> GenerationResult:
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(request)
            except RequestRejected as rejected:
                return GenerationResult(error=str(rejected))
            except RetryableError as failure:
                if attempt == self.max_retries:
                    return GenerationResult(error=f"{failure} (gave up after {attempt + 1} attempts)")
                delay = self.backoff_s * 2 ** attempt
                delay += random.uniform(0, 0.1 * delay)  # jitter, so parallel retries do not arrive together
                if failure.retry_after_s is not None:
                    delay = max(delay, min(failure.retry_after_s, MAX_RETRY_AFTER_S))
                log.warning("%s; retry %d/%d in %.2fs", failure, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, request: GenerationRequest) -> GenerationResult:
        is_chat = request.messages is not None
        url = f"{self.api_root}/{'chat/completions' if is_chat else 'completions'}"
        body = self._body(request)
        with_token_ids = self._send_token_ids
        if with_token_ids:
            body[TOKEN_IDS_FIELD] = True
        response = self._post(url, body)
        if with_token_ids and response.status_code in (400, 422) and TOKEN_IDS_FIELD in response.text:
            # not a vLLM server: stop sending the extension and ask again at once
            log.info("%s does not accept %s; counting tokens from usage instead", self.api_root, TOKEN_IDS_FIELD)
            with self._lock:
                self._send_token_ids = False
            del body[TOKEN_IDS_FIELD]
            response = self._post(url, body)
        self._raise_for_status(response)
        return self._parse(response.json(), request, is_chat)

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "n": request.n, "temperature": request.temperature, "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.messages is not None:
            body["messages"] = [{"role": role, "content": content} for role, content in request.messages]
        else:
            body["prompt"] = request.prompt
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._client.post(url, json=body)
        except httpx.TimeoutException as error:
            raise RetryableError(f"timeout ({type(error).__name__}) from {url}") from error
        except httpx.TransportError as error:  # refused, reset, DNS, protocol errors
            raise RetryableError(f"connection error ({type(error).__name__}: {error}) to {url}") from error

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        reason = f"HTTP {status} from {response.request.url}: {_error_message(response)}"
        if status == 429 or status >= 500:
            raise RetryableError(reason, _retry_after_s(response))
        raise RequestRejected(reason)

    @staticmethod
    def _parse(payload: dict[str, Any], request: GenerationRequest, is_chat: bool) -> GenerationResult:
        choices = sorted(payload.get("choices") or [], key=lambda choice: choice.get("index", 0))
        if len(choices) != request.n:
            return GenerationResult(error=f"server returned {len(choices)} choices for n={request.n}")
        usage = payload.get("usage") or {}
        texts = [((choice.get("message") or {}).get("content") if is_chat else choice.get("text")) or ""
                 for choice in choices]
        token_ids = [choice.get("token_ids") for choice in choices]
        if all(ids is not None for ids in token_ids):
            counts = [len(ids) for ids in token_ids]
        else:
            counts = _split_evenly(int(usage.get("completion_tokens") or 0), len(choices))
        completions = [Completion(text, count, choice.get("finish_reason") or "")
                       for text, count, choice in zip(texts, counts, choices)]
        return GenerationResult(completions=completions, prompt_tokens=int(usage.get("prompt_tokens") or 0))


def _split_evenly(total: int, parts: int) -> list[int]:
    """``total`` over ``parts`` as evenly as integers allow, summing to ``total``."""
    share, extra = divmod(total, parts)
    return [share + (1 if index < extra else 0) for index in range(parts)]


def _error_message(response: httpx.Response) -> str:
    """The server's own message where it gives one (OpenAI style ``{"error": {"message": ...}}``)."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except Exception:
        message = None
    return str(message or response.text or response.reason_phrase)[:MAX_ERROR_CHARS]


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: plain backoff is good enough
