"""The math-verify worker process behind ``stages.grade`` (started by path: ``python grade_worker.py``).

math-verify bounds its own time with ``signal.alarm``, which works only in a main thread and cannot
interrupt a long computation inside C (``9**9**9**9``).  So the grader runs every comparison here, in
a process of its own that the parent kills when a call runs past its time.  Its internal timeouts are
off: a timeout must reach the parent as "timeout", not as math-verify's silent ``False``.

Protocol, one JSON object per line: the worker writes ``{"ready": true}`` (or ``{"ready": false,
"error": ...}``) once, then for each request ``{"reference": latex, "answer": latex}`` on stdin one
reply ``{"correct": true|false|null, "detail": str}`` on stdout.

It imports nothing from the project (it may run where the project is not on ``sys.path``).  Model
output reaches sympy's ``parse_expr`` (an ``eval``) through math-verify's plain-expression path, so
the worker also refuses, by an audit hook, to start processes, write files or open sockets.
"""
from __future__ import annotations

import json
import os
import sys
from functools import lru_cache

MEMORY_LIMIT_BYTES = 4 * 1024**3  # a runaway big-integer computation fails here, not in the machine
MAX_DETAIL_CHARS = 300

_FORBIDDEN_EVENTS = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile",
    "subprocess.Popen", "pty.spawn", "socket.connect", "socket.bind", "socket.sendto",
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate",
    "os.chmod", "os.chown", "os.kill", "os.killpg", "shutil.rmtree", "shutil.move", "ctypes.dlopen",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class ForbiddenInGrader(PermissionError):
    """An action no answer comparison needs, attempted inside the grader."""


def _deny_side_effects(event: str, args: tuple) -> None:
    if event in _FORBIDDEN_EVENTS:
        raise ForbiddenInGrader(f"{event} is not allowed in the grader")
    if event == "open":
        mode, flags = (args[1], args[2]) if len(args) >= 3 else (None, 0)
        writes = any(letter in mode for letter in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        if writes:
            raise ForbiddenInGrader("writing files is not allowed in the grader")


def _limit_memory() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # not on every platform; the parent's kill still bounds time
        pass


def main() -> None:
    # Replies go to the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    try:
        from math_verify import parse, verify
    except Exception as error:  # the parent turns this into a loud error
        replies.write(json.dumps({"ready": False, "error": f"cannot import math_verify: {error}"}) + "\n")
        replies.flush()
        return
    _limit_memory()

    @lru_cache(maxsize=1024)
    def parse_reference(latex: str):
        # Rollouts grade many answers against one reference: parse it once.
        return parse(latex, parsing_timeout=None)

    def compare(reference: str, answer: str) -> dict:
        gold = parse_reference(reference)
        prediction = parse(answer, parsing_timeout=None)
        if gold and prediction and verify(gold, prediction, timeout_seconds=None):
            return {"correct": True, "detail": "math-verify: equivalent"}
        # parse() falls back to the raw matched string when sympy cannot read it: a side that is only
        # strings did not parse, and "not equal as strings" is no evidence that the answer is wrong.
        if not any(not isinstance(item, str) for item in gold):
            return {"correct": None, "detail": "reference does not parse"}
        if not any(not isinstance(item, str) for item in prediction):
            return {"correct": None, "detail": "answer does not parse"}
        return {"correct": False, "detail": "math-verify: not equivalent"}

    # Imports are done (sympy loads lazily in places: warm it up before the gate closes).
    compare("$1$", "$\\frac{1}{2}$")
    sys.addaudithook(_deny_side_effects)
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = compare(request["reference"], request["answer"])
        except MemoryError:
            reply = {"correct": None, "detail": "out of memory"}
        except Exception as error:  # a comparison that fails is ungradable, not a crash of the grader
            reply = {"correct": None, "detail": f"error: {type(error).__name__}: {error}"[:MAX_DETAIL_CHARS]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
