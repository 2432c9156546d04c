"""Continuous batching across callers: every caller's requests join the engine's running batch at once.

An engine actor serves several shard tasks at once.  If each call ran as one ``LLM.generate`` of its
own, the engine would wait at the end of every call for that call's slowest sequence, with fewer and
fewer sequences running, before the next call's requests could start: on 2 CPU cores that costs a
third of the throughput.  A ``ContinuousBatcher`` owns the engine in one thread that adds each call's
requests between two engine steps and hands each finished request back to its caller, so the engine
keeps as many sequences running as calls provide, as a server does.

The engine is anything with the three methods of ``StepEngine`` (vLLM's offline engine, through
``pipeline.engines.vllm_engine``).  Requests carry their own seeds, so the output does not depend on
which requests ran beside them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from data_schemas.engine import GenerationResult

log = logging.getLogger(__name__)


class StepEngine(Protocol):
    def add(self, prompt: str, params: Any) -> str:
        """Queue one request; return its id.  Raises for a request the engine refuses."""

    def step(self) -> list[tuple[str, GenerationResult]]:
        """Run one engine step; return the requests it finished, with their results."""

    def abort(self, request_ids: list[str]) -> None:
        """Drop requests nobody waits for any more."""


@dataclass
class _Call:
    prepared: list[tuple[int, str, Any]]  # (position in the caller's list, prompt, sampling params)
    results: list[GenerationResult | None]
    remaining: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class ContinuousBatcher:
    """Thread-safe ``run``: many callers at once, one engine thread."""

    def __init__(self, engine: StepEngine, name: str = "engine") -> None:
        self.engine = engine
        self._lock = threading.Condition()
        self._incoming: list[_Call] = []
        self._owners: dict[str, tuple[_Call, int]] = {}  # request id -> (call, position)
        self.calls = 0  # statistics for benchmarks and tests
        self.steps = 0
        self.peak_calls_in_flight = 0
        self.idle_s = 0.0  # time the engine had nothing to run (benchmarks: is the pipeline keeping it fed?)
        self._thread = threading.Thread(target=self._loop, name=f"{name}-loop", daemon=True)
        self._thread.start()

    def run(self, prepared: list[tuple[int, str, Any]], results: list[GenerationResult | None]) -> None:
        """Generate for every prepared request and fill ``results`` at its position; return when done."""
        if not prepared:
            return
        call = _Call(prepared, results, remaining=len(prepared))
        with self._lock:
            self.calls += 1
            self._incoming.append(call)
            self._lock.notify()
        call.done.wait()

    def stats(self) -> dict[str, float]:
        return {"caller_calls": self.calls, "engine_steps": self.steps,
                "peak_calls_in_flight": self.peak_calls_in_flight, "idle_s": round(self.idle_s, 3)}

    # ---------------------------------------------------------------- the engine thread

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._incoming and not self._owners:
                    idle_since = time.perf_counter()
                    while not self._incoming and not self._owners:
                        self._lock.wait()
                    self.idle_s += time.perf_counter() - idle_since
                incoming, self._incoming = self._incoming, []
            if incoming:  # calls in flight only grow here: the peak is measured on admission, not per step
                for call in incoming:
                    self._admit(call)
                in_flight = {id(call) for call, _ in self._owners.values()}
                self.peak_calls_in_flight = max(self.peak_calls_in_flight, len(in_flight))
            if not self._owners:
                continue
            try:
                finished = self.engine.step()
                self.steps += 1
            except Exception as error:  # the engine broke: nothing in flight can finish
                log.error("engine step failed: %s", error)
                self._fail_in_flight(f"{type(error).__name__}: {error}")
                continue
            for request_id, result in finished:
                self._finish(request_id, result)

    def _admit(self, call: _Call) -> None:
        """Queue a call's requests; one the engine refuses fails alone."""
        for position, prompt, params in call.prepared:
            try:
                request_id = self.engine.add(prompt, params)
            except Exception as error:
                self._settle(call, position, GenerationResult(error=f"{type(error).__name__}: {error}"))
                continue
            self._owners[request_id] = (call, position)

    def _finish(self, request_id: str, result: GenerationResult) -> None:
        owner = self._owners.pop(request_id, None)
        if owner is not None:
            self._settle(owner[0], owner[1], result)

    def _settle(self, call: _Call, position: int, result: GenerationResult) -> None:
        call.results[position] = result
        call.remaining -= 1
        if call.remaining == 0:
            call.done.set()

    def _fail_in_flight(self, reason: str) -> None:
        owners, self._owners = self._owners, {}
        try:
            self.engine.abort(list(owners))
        except Exception:  # noqa: BLE001 - a broken engine may refuse this too
            pass
        for call, position in owners.values():
            self._settle(call, position, GenerationResult(error=reason))

