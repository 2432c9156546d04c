"""OpenAIEngine against a real vLLM OpenAI server (the toy model) and against scripted local HTTP servers."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from data_schemas.engine import Engine, GenerationRequest
from pipeline.engines.openai_engine import OpenAIEngine
from tests.vllm_server import free_port, model_dir_for_tests, serve_vllm

# A plain template for the toy tokenizer, which ships none; every character is in its vocabulary.
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


# -- a real vLLM server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    scratch = tmp_path_factory.mktemp("vllm")
    model_dir = model_dir_for_tests(scratch / "model")
    template = scratch / "chat_template.jinja"
    template.write_text(CHAT_TEMPLATE)
    with serve_vllm(model_dir, extra_args=["--chat-template", str(template)],
                    log_path=scratch / "server.log") as base_url:
        yield base_url, str(model_dir)


@pytest.fixture(scope="module")
def engine(vllm_server) -> Iterator[OpenAIEngine]:
    base_url, model = vllm_server
    with OpenAIEngine(base_url, model, max_concurrency=4, timeout_s=60, backoff_s=0.1) as engine:
        yield engine


def test_is_an_engine(engine):
    assert isinstance(engine, Engine)
    assert engine.generate([]) == []


def test_seeded_samples_reproducible_across_calls_and_distinct_within_one(engine):
    request = GenerationRequest(prompt="12+7=", n=4, temperature=1.0, max_tokens=24, seed=11)
    first, second = engine.generate([request, request])
    third, = engine.generate([request])
    assert first.ok and second.ok and third.ok
    texts = [c.text for c in first.completions]
    assert len(texts) == 4 and len(set(texts)) == 4
    assert [c.text for c in second.completions] == texts
    assert [c.text for c in third.completions] == texts


def test_token_counts_and_finish_reasons(engine):
    result, = engine.generate([GenerationRequest(prompt="3*4=", n=3, temperature=1.0, max_tokens=16, seed=1)])
    assert result.ok and result.prompt_tokens == 4
    for completion in result.completions:
        assert completion.finish_reason in ("length", "stop")
        if completion.finish_reason == "length":
            assert completion.tokens == 16  # exact: counted from the choice's token_ids
        else:
            assert 1 <= completion.tokens <= 16


def test_stop_sequences_are_honoured(engine):
    # an untrained model emits near-uniform characters: in 64 tokens most samples meet one of these
    # (vLLM, like OpenAI, accepts at most 4 stop sequences)
    stops = ("e", "1", "5", "x")
    request = GenerationRequest(prompt="x=", n=6, temperature=1.0, max_tokens=64, stop=stops, seed=3)
    result, = engine.generate([request])
    assert result.ok
    stopped = [c for c in result.completions if c.finish_reason == "stop"]
    assert stopped, [c.finish_reason for c in result.completions]
    for completion in result.completions:
        assert not any(stop in completion.text for stop in stops)
        assert completion.tokens >= 1


def test_chat_messages_use_the_chat_endpoint(engine):
    request = GenerationRequest(messages=(("system", "be brief"), ("user", "2+2?")), n=2, max_tokens=8, seed=5)
    result, = engine.generate([request])
    assert result.ok, result.error
    assert len(result.completions) == 2
    # the server rendered CHAT_TEMPLATE: one token per character (whitespace may be dropped by the tokenizer)
    rendered = "system: be brief\nuser: 2+2?\nassistant: "
    assert len("".join(rendered.split())) <= result.prompt_tokens <= len(rendered)
    assert all(c.finish_reason in ("length", "stop") and c.tokens >= 1 for c in result.completions)


def test_overlong_prompt_fails_alone(engine):
    overlong = GenerationRequest(prompt="1" * 400, max_tokens=8)
    fine = GenerationRequest(prompt="5-2=", n=2, max_tokens=8, seed=2)
    started = time.monotonic()
    results = engine.generate([fine, overlong, fine])
    assert time.monotonic() - started < 30  # a 400 is not retried
    assert results[0].ok and results[2].ok and len(results[0].completions) == 2
    assert not results[1].ok and "400" in results[1].error and "context length" in results[1].error


# -- scripted servers: retries, errors, concurrency, other OpenAI-compatible servers -----------------------

def completions_payload(body: dict, with_token_ids: bool = True) -> dict:
    n = body.get("n", 1)
    choices = [{"index": i, "text": f"sample {i}", "finish_reason": "length" if i else "stop",
                **({"token_ids": list(range(i + 2))} if with_token_ids and body.get("return_token_ids") else {})}
               for i in reversed(range(n))]  # out of order on purpose: the engine sorts by index
    return {"choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 7 * n + 1}}


class ScriptedServer:
    """A local HTTP server answering each POST with ``respond(server, body) -> (status, payload[, headers])``."""

    def __init__(self, respond: Callable[["ScriptedServer", dict], tuple]) -> None:
        self.respond = respond
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            self.bodies.append(body)
            self.paths.append(handler.path)
            self.headers.append(dict(handler.headers))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, payload, *extra = self.respond(self, body)
        finally:
            with self.lock:
                self.in_flight -= 1
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (extra[0] if extra else {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout tests): nothing to answer

    @property
    def calls(self) -> int:
        return len(self.bodies)


@contextmanager
def scripted_server(respond: Callable[[ScriptedServer, dict], tuple]) -> Iterator[tuple[str, ScriptedServer]]:
    script = ScriptedServer(respond)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            script.handle(self)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True  # a handler still sleeping after the test must not hold up its end
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_retries_503_then_succeeds():
    def respond(server, body):
        if server.calls <= 2:
            return 503, {"error": {"message": "warming up"}}
        return 200, completions_payload(body)

    with scripted_server(respond) as (url, server), OpenAIEngine(url, "m", backoff_s=0.01) as engine:
        result, = engine.generate([GenerationRequest(prompt="p", n=3, max_tokens=9, stop=("\n",), seed=4)])
    assert result.ok, result.error
    assert server.calls == 3
    assert [c.text for c in result.completions] == ["sample 0", "sample 1", "sample 2"]
    assert [c.tokens for c in result.completions] == [2, 3, 4]  # from token_ids, not from usage
    assert [c.finish_reason for c in result.completions] == ["stop", "length", "length"]
    assert result.prompt_tokens == 5
    assert server.paths == ["/v1/completions"] * 3
    assert server.bodies[-1] == {"model": "m", "prompt": "p", "n": 3, "temperature": 1.0, "top_p": 1.0,
                                 "max_tokens": 9, "stop": ["\n"], "seed": 4, "return_token_ids": True}


def test_retries_429_and_gives_up_after_max_retries_in_bounded_time():
    def respond(server, body):
        return (429, {"error": {"message": "slow down"}}) if server.calls % 2 else (500, "boom")

    started = time.monotonic()
    with scripted_server(respond) as (url, server), OpenAIEngine(url, "m", max_retries=3, backoff_s=0.02) as engine:
        result, = engine.generate([GenerationRequest(prompt="p")])
    assert time.monotonic() - started < 5
    assert server.calls == 4
    assert not result.ok and "HTTP 500" in result.error and "4 attempts" in result.error


def test_client_errors_are_not_retried():
    with scripted_server(lambda server, body: (400, {"error": {"message": "bad prompt"}})) as (url, server), \
            OpenAIEngine(url, "m", backoff_s=0.01) as engine:
        results = engine.generate([GenerationRequest(prompt="p"), GenerationRequest(prompt="q")])
    assert server.calls == 2
    assert all(not r.ok and "HTTP 400" in r.error and "bad prompt" in r.error for r in results)


def test_connection_refused_and_timeouts_become_error_results():
    started = time.monotonic()
    with OpenAIEngine(f"http://127.0.0.1:{free_port()}", "m", max_retries=2, backoff_s=0.01) as engine:
        refused, = engine.generate([GenerationRequest(prompt="p")])
    assert not refused.ok and "connection error" in refused.error

    def respond(server, body):
        time.sleep(0.5)
        return 200, completions_payload(body)

    with scripted_server(respond) as (url, server), \
            OpenAIEngine(url, "m", timeout_s=0.1, max_retries=1, backoff_s=0.01) as engine:
        timed_out, = engine.generate([GenerationRequest(prompt="p")])
    assert not timed_out.ok and "timeout" in timed_out.error and server.calls == 2
    assert time.monotonic() - started < 5


def test_concurrency_is_bounded():
    def respond(server, body):
        time.sleep(0.1)
        return 200, completions_payload(body)

    with scripted_server(respond) as (url, server), OpenAIEngine(url, "m", max_concurrency=3) as engine:
        results = engine.generate([GenerationRequest(prompt=f"p{i}") for i in range(12)])
    assert all(r.ok for r in results)
    assert server.calls == 12
    assert server.max_in_flight == 3


def test_results_keep_request_order():
    def respond(server, body):
        time.sleep(0.05 * (5 - int(body["prompt"])))  # later requests answer first
        return 200, {"choices": [{"index": 0, "text": body["prompt"], "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    with scripted_server(respond) as (url, server), OpenAIEngine(url, "m", max_concurrency=5) as engine:
        results = engine.generate([GenerationRequest(prompt=str(i)) for i in range(5)])
    assert [r.completions[0].text for r in results] == ["0", "1", "2", "3", "4"]


def test_server_without_token_ids_extension_falls_back_to_usage(monkeypatch):
    """A hosted API rejects vLLM's field: the engine drops it for good and splits usage over the choices."""
    def respond(server, body):
        if "return_token_ids" in body:
            return 400, {"error": {"message": "Unrecognized request argument supplied: return_token_ids"}}
        return 200, completions_payload(body, with_token_ids=False)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    with scripted_server(respond) as (url, server), OpenAIEngine(url + "/v1", "m") as engine:
        first, = engine.generate([GenerationRequest(prompt="p", n=2)])
        second, = engine.generate([GenerationRequest(prompt="p", n=2)])
        assert "sk-test" not in repr(engine)
    assert first.ok and second.ok, (first.error, second.error)
    assert [c.tokens for c in first.completions] == [8, 7]  # 15 completion tokens over 2 choices
    assert server.calls == 3  # rejected once, then never sent again
    assert all(h["Authorization"] == "Bearer sk-test-secret" for h in server.headers)


def test_chat_request_body_and_wrong_choice_count():
    def respond(server, body):
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                  "finish_reason": "stop", "token_ids": [1, 2]}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    with scripted_server(respond) as (url, server), OpenAIEngine(url, "m", api_key="k") as engine:
        one, two = engine.generate([GenerationRequest(messages=(("user", "hey"),)),
                                    GenerationRequest(messages=(("user", "hey"),), n=2)])
    assert one.ok and one.completions[0].text == "hi" and one.completions[0].tokens == 2
    assert server.paths == ["/v1/chat/completions"] * 2
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "hey"}]
    assert "prompt" not in server.bodies[0] and "seed" not in server.bodies[0] and "stop" not in server.bodies[0]
    assert not two.ok and "1 choices for n=2" in two.error
