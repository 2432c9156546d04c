"""Final answers: the reference of a dataset record, and the answer a solution commits to.

Model output is untrusted and may be endless, so every scan here looks at a bounded tail of the text
and uses only linear-time matching (a brace counter, regexes without nested quantifiers).  Grading the
extracted answer against the reference lives in ``stages.grade``.
"""
from __future__ import annotations

import re

from toy import domain as toy_domain

ANSWER_DOMAINS = ("gsm8k", "math", "plain", "toy")
# A final answer sits at the end of a solution; the tail bounds the work done on huge outputs.
MAX_SCAN_CHARS = 20_000
# "The answer is ..." and "#### ..." take the rest of their line, up to this many characters.
MAX_ANSWER_LINE_CHARS = 500

# One pass over the text: box commands, escaped characters (so "\\{" is no brace) and braces.
_BOX_SCAN_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])|\\.|[{}]", re.DOTALL)
_UNBRACED_ARGUMENT_RE = re.compile(r" +([^\s$]{1,%d})" % MAX_ANSWER_LINE_CHARS)
_GSM8K_MARKER_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_PHRASE_RE = re.compile(r"(?:answer\s+is|answer\s*:)[ \t]*:?[ \t]*([^\n]*)", re.IGNORECASE)
# Thousands separators only in their proper places, so "1,2" stays two numbers.
_NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


def _boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces, in the order
    they close; also ``\\boxed 5`` (no braces), which some MATH solutions write.

    A single pass with a stack of open boxes: linear in the text, however many boxes never close."""
    contents: list[str] = []
    open_boxes: list[tuple[int, int]] = []  # (brace depth inside the box, where its content starts)
    depth = 0
    box_brace_at = -1  # position of the "{" that opens the box command just seen
    for match in _BOX_SCAN_RE.finditer(text):
        token = match.group()
        if token == "{":
            depth += 1
            if match.start() == box_brace_at:
                open_boxes.append((depth, match.end()))
        elif token == "}":
            if open_boxes and open_boxes[-1][0] == depth:
                contents.append(text[open_boxes.pop()[1]:match.start()].strip())
            depth -= 1
        elif token in ("\\boxed", "\\fbox"):
            box_brace_at = match.end()
            if text.startswith(" ", match.end()):
                argument = _UNBRACED_ARGUMENT_RE.match(text, match.end())
                if argument:
                    contents.append(argument.group(1))
    return contents


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{}`` (or ``\\fbox{}``) in the tail of ``text``."""
    contents = _boxed_contents(text[-MAX_SCAN_CHARS:])
    return contents[-1] if contents else None


def _clean_answer_line(answer: str) -> str | None:
    """Trim what surrounds an answer written in prose: "$\\frac{1}{2}$." -> "\\frac{1}{2}"."""
    answer = answer[:MAX_ANSWER_LINE_CHARS].strip().rstrip(".").strip()
    for opener, closer in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if len(answer) > len(opener) + len(closer) and answer.startswith(opener) and answer.endswith(closer):
            answer = answer[len(opener):-len(closer)].strip()
    return answer or None


def reference_from_gsm8k(answer_field: str) -> str:
    """The reference of a GSM8K record: the text after ``####``, as written (commas kept)."""
    if "####" not in answer_field:
        raise ValueError("a GSM8K answer field must end with '#### <answer>'")
    return answer_field.rsplit("####", 1)[1].strip()


def reference_from_math(solution: str) -> str | None:
    """The reference of a MATH record: the content of the last ``\\boxed{}`` of its solution."""
    contents = _boxed_contents(solution)  # a dataset's own text: no tail bound, a reference may be early
    return contents[-1] if contents else None


def extract_final_answer(text: str, domain: str) -> str | None:
    """The final answer a solution commits to, or None when it commits to none.

    In order: the last ``\\boxed{}``; for gsm8k and plain, ``#### x``; "The answer is x" / "Answer: x";
    for gsm8k and plain, the last number in the text.  The toy domain reads its ``Answer: N`` line."""
    if domain not in ANSWER_DOMAINS:
        raise ValueError(f"unknown answer domain {domain!r}; known: {', '.join(ANSWER_DOMAINS)}")
    tail = text[-MAX_SCAN_CHARS:]
    if domain == "toy":
        value = toy_domain.extract_answer(tail)
        return None if value is None else str(value)
    boxed = last_boxed(tail)
    if boxed:
        return boxed
    numeric = domain in ("gsm8k", "plain")
    if numeric:
        markers = _GSM8K_MARKER_RE.findall(tail)
        if markers and (answer := _clean_answer_line(markers[-1])):
            return answer
    phrases = _ANSWER_PHRASE_RE.findall(tail)
    if phrases and (answer := _clean_answer_line(phrases[-1])):
        return answer
    if numeric:
        numbers = _NUMBER_RE.findall(tail)
        if numbers:
            return numbers[-1]
    return None
