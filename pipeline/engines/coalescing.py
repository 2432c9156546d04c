"""Merge the requests of concurrent callers into one engine call.

An engine actor serves several shard tasks at once.  Handled one call at a time, each shard's small
batch would reach vLLM alone, and vLLM's throughput grows with the batch (on 2 CPU cores one shard's
64 sequences run at about half the tokens/s of a thousand).  So the actor hands every call to a
``CoalescingEngine``: calls that arrive while the engine is busy wait, and the next engine call runs
all of them together; each caller gets back exactly its own results, in its order.

Requests carry their own seeds and sampling parameters, so merging changes no output.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from data_schemas.engine import Engine, GenerationRequest, GenerationResult


@dataclass
class _Call:
    requests: list[GenerationRequest]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[GenerationResult] | None = None
    error: BaseException | None = None


class CoalescingEngine:
    """Thread-safe ``generate``: whoever finds the engine idle runs it for every waiting call."""

    def __init__(self, engine: Engine, max_sequences: int = 4096) -> None:
        self.engine = engine
        # One engine call takes at most this many sequences (sum of n); more waits for the next call.
        self.max_sequences = max_sequences
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._busy = False
        self.engine_calls = 0  # how many engine calls served how many caller calls (for benchmarks)
        self.caller_calls = 0

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        call = _Call(list(requests))
        with self._lock:
            self._waiting.append(call)
            self.caller_calls += 1
            leader = not self._busy
            if leader:
                self._busy = True
        if leader:
            self._serve_until_idle(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.results is not None
        return call.results

    def _serve_until_idle(self, own: _Call) -> None:
        """Run batches until nobody waits; hand leadership back as soon as our own call is answered
        and nobody else waits, so that a leader never serves forever on behalf of others."""
        while True:
            with self._lock:
                batch = self._take_batch()
                if not batch:
                    self._busy = False
                    return
            self._run(batch)
            if own.done.is_set():
                with self._lock:
                    if not self._waiting:
                        self._busy = False
                        return
                # others are waiting and nobody else is leading: keep serving them

    def _take_batch(self) -> list[_Call]:
        batch: list[_Call] = []
        sequences = 0
        while self._waiting:
            size = sum(max(1, r.n) for r in self._waiting[0].requests)
            if batch and sequences + size > self.max_sequences:
                break
            batch.append(self._waiting.pop(0))
            sequences += size
        return batch

    def _run(self, batch: list[_Call]) -> None:
        merged = [request for call in batch for request in call.requests]
        try:
            results = self.engine.generate(merged) if merged else []
            self.engine_calls += 1
        except BaseException as error:  # every caller of the batch sees the engine's failure
            for call in batch:
                call.error = error
                call.done.set()
            return
        start = 0
        for call in batch:
            call.results = list(results[start:start + len(call.requests)])
            start += len(call.requests)
            call.done.set()
