"""Grade a final answer against the reference: exact integers for the toy domain, math-verify otherwise.

math-verify's own timeouts use ``signal.alarm`` (main thread only) and cannot stop a computation inside
C, while our stages run in worker threads and Ray actors.  So every math-verify comparison runs in a
small pool of persistent worker processes (``stages/grade_worker.py``); a call past its time kills its
worker, starts a replacement and returns ``correct=None`` with detail "timeout".  That bounds the
time of every check from any thread.  Plain numbers on both sides (``$1,000``, ``18 dollars``) are
compared here without a round trip.
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from data_schemas.records import Problem, Solution
from stages.answers import ANSWER_DOMAINS, extract_final_answer

DEFAULT_TIMEOUT_S = 5.0
# Longer answers or references are not worth a math-verify call: no MATH answer is near this long.
MAX_VERIFY_CHARS = 1_000
# A plain number may be long (a hostile 50,000-digit one): comparing decimals is linear, so allow it.
MAX_PLAIN_NUMBER_CHARS = 100_000
POOL_SIZE = 2
WORKER_START_TIMEOUT_S = 120.0  # importing sympy on a busy 2-core machine takes seconds
WORKER_SCRIPT = Path(__file__).with_name("grade_worker.py")


@dataclass
class GradeResult:
    final_answer: str | None
    correct: bool | None  # None: no answer, or it could not be compared (detail says why)
    detail: str


# ---------------------------------------------------------------- plain numbers

_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\.\d+")
_TRAILING_TEXT_UNIT_RE = re.compile(r"\s*\\(?:text|mbox|mathrm)\{[^{}]*\}$")
_TRAILING_UNIT_WORDS_RE = re.compile(r"\s+[A-Za-z][A-Za-z ]{0,40}$")  # "18 dollars", "5 cm": a space first
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def plain_number(text: str, unit_words: bool = True) -> Decimal | None:
    """The value of a plain decimal such as ``$1,000``, ``-3.50`` or ``18 dollars``; None otherwise
    (and for percentages, whose meaning math-verify decides)."""
    if len(text) > MAX_PLAIN_NUMBER_CHARS or "%" in text:
        return None
    text = text.strip().replace("\\$", "").replace("$", "").replace("\\!", "").replace("{,}", ",")
    text = _TRAILING_TEXT_UNIT_RE.sub("", text)
    if unit_words:
        text = _TRAILING_UNIT_WORDS_RE.sub("", text)
    text = text.strip()
    if not _PLAIN_NUMBER_RE.fullmatch(text):
        return None
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def as_latex(text: str) -> str:
    """Text as math-verify reads it best: inside ``$...$`` (a plain-text gold such as ``(3, pi/2)`` does
    not parse otherwise), with a bare ``pi`` written ``\\pi`` where the text has no LaTeX at all."""
    text = _UNESCAPED_DOLLAR_RE.sub("", text).strip()
    if "\\" not in text:
        text = re.sub(r"\bpi\b", r"\\pi", text)
    return f"${text}$"


# ---------------------------------------------------------------- the worker pool

class GraderUnavailable(RuntimeError):
    """The math-verify worker cannot start (math-verify missing or broken): grading cannot go on."""


class _WorkerTimeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


class _Worker:
    """One math-verify process and the line protocol to it (see grade_worker.py)."""

    def __init__(self) -> None:
        if not sys.executable:
            raise GraderUnavailable("no Python executable to start the grader worker with")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.ready = False
        self._buffer = b""

    def _read_line(self, deadline: float) -> dict:
        # select() bounds the wait in any thread; the worker writes whole lines, read until one is here.
        descriptor = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerTimeout()
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                raise _WorkerTimeout()
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise _WorkerDied(f"grader worker exited with status {self.process.poll()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def wait_ready(self) -> None:
        if self.ready:
            return
        try:
            hello = self._read_line(time.monotonic() + WORKER_START_TIMEOUT_S)
        except (_WorkerTimeout, _WorkerDied) as error:
            self.kill()
            raise GraderUnavailable(f"the math-verify worker did not start ({type(error).__name__} {error})") from None
        if not hello.get("ready"):
            self.kill()
            raise GraderUnavailable(hello.get("error", "the math-verify worker did not start"))
        self.ready = True

    def compare(self, reference: str, answer: str, timeout_s: float) -> dict:
        self.wait_ready()  # a fresh worker's start-up is not counted against the call
        request = json.dumps({"reference": reference, "answer": answer}) + "\n"
        try:
            self.process.stdin.write(request.encode("utf-8"))  # small: never fills the pipe
            self.process.stdin.flush()
        except OSError as error:
            raise _WorkerDied(f"cannot write to the grader worker: {error}") from None
        return self._read_line(time.monotonic() + timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _WorkerPool:
    """At most ``size`` workers, started on demand and shared by all threads."""

    def __init__(self, size: int) -> None:
        self.owner_pid = os.getpid()
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()

    def _spawn(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._all.add(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def compare(self, reference: str, answer: str, timeout_s: float) -> dict:
        with self._slots:
            # A worker may have died while idle (killed from outside): one retry on a fresh one.
            for _attempt in range(2):
                try:
                    worker = self._idle.get_nowait()
                except queue.Empty:
                    worker = self._spawn()
                try:
                    reply = worker.compare(reference, answer, timeout_s)
                except _WorkerTimeout:
                    self._discard(worker)
                    self._idle.put(self._spawn())  # the replacement warms up while the caller moves on
                    return {"correct": None, "detail": "timeout"}
                except _WorkerDied as error:
                    self._discard(worker)
                    died = error
                    continue
                except BaseException:
                    self._discard(worker)
                    raise
                self._idle.put(worker)
                return reply
        return {"correct": None, "detail": f"grader worker died: {died}"}

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.kill()


_pool: _WorkerPool | None = None
_pool_lock = threading.Lock()


def _worker_pool() -> _WorkerPool:
    global _pool
    with _pool_lock:
        # A forked child must not share its parent's pipes: it gets a pool of its own.
        if _pool is None or _pool.owner_pid != os.getpid():
            _pool = _WorkerPool(POOL_SIZE)
        return _pool


def shutdown_grader() -> None:
    """Stop the worker processes (they also stop when this process exits)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None and pool.owner_pid == os.getpid():
        pool.close()


atexit.register(shutdown_grader)


# ---------------------------------------------------------------- grading

def _grade_toy(final_answer: str, reference: str) -> GradeResult:
    try:
        # extract_final_answer keeps toy answers to 12 digits; the bound guards direct callers
        if len(final_answer) > 20 or len(reference) > 20:
            raise ValueError("too long")
        answer_value, reference_value = int(final_answer), int(reference)
    except ValueError:
        return GradeResult(final_answer, None, "toy: not an integer")
    correct = answer_value == reference_value
    return GradeResult(final_answer, correct, "toy: " + ("equal" if correct else "different"))


def grade_answer(final_answer: str | None, reference: str, domain: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> GradeResult:
    """Compare an extracted final answer with the reference.

    A math-verify comparison that runs past ``timeout_s`` returns ``correct=None`` ("timeout"), from any
    thread; only the start of a fresh worker (a second or two, once per worker) is not counted."""
    if domain not in ANSWER_DOMAINS:
        raise ValueError(f"unknown answer domain {domain!r}; known: {', '.join(ANSWER_DOMAINS)}")
    if final_answer is None or not final_answer.strip():
        return GradeResult(None, None, "no final answer")
    if not reference or not reference.strip():
        return GradeResult(final_answer, None, "no reference")
    if domain == "toy":
        return _grade_toy(final_answer, reference)
    # Unit words only where answers are numbers: in MATH "5 x" is not "5".
    unit_words = domain != "math"
    answer_value, reference_value = plain_number(final_answer, unit_words), plain_number(reference, unit_words)
    if answer_value is not None and reference_value is not None:
        correct = answer_value == reference_value
        return GradeResult(final_answer, correct, "numeric: " + ("equal" if correct else "different"))
    if len(final_answer) > MAX_VERIFY_CHARS:
        return GradeResult(final_answer, None, f"answer too long to verify ({len(final_answer)} characters)")
    if len(reference) > MAX_VERIFY_CHARS:
        return GradeResult(final_answer, None, f"reference too long to verify ({len(reference)} characters)")
    reply = _worker_pool().compare(as_latex(reference), as_latex(final_answer), timeout_s)
    return GradeResult(final_answer, reply["correct"], reply["detail"])


def grade_solutions(solutions: list[Solution], problems: dict[str, Problem],
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Solution]:
    """Fill ``final_answer``, ``outcome_correct`` and ``grade_detail`` of each solution, in place."""
    for solution in solutions:
        if solution.failed_reason:
            solution.final_answer, solution.outcome_correct = None, None
            solution.grade_detail = "not graded: generation failed"
            continue
        problem = problems[solution.problem_id]
        answer = extract_final_answer(solution.text, problem.domain)
        result = grade_answer(answer, problem.reference, problem.domain, timeout_s=timeout_s)
        solution.final_answer, solution.outcome_correct, solution.grade_detail = result.final_answer, result.correct, result.detail
    return solutions
