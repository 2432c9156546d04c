"""Split a solution into steps, keeping each step's exact character span in the text.

Every strategy returns ``(steps, offsets)`` with ``text[o["start"]:o["end"]] == step`` for each step:
rollouts continue from ``text[:offset]``, so a span must be exact, not re-found by searching.

- ``blank_line``: paragraphs (Qwen2.5-Math and ProcessBench write a step per paragraph);
- ``line``: one non-empty line per step (the toy domain);
- ``step_marker``: a step begins at ``Step 1:``, ``Step 2.``, ``## Step 3:`` ...; no marker: paragraphs;
- ``token_budget``: about ``target_pieces`` pieces of equal token length, cut at token boundaries
  (OmegaPRM's steps), preferring a newline, then a sentence end, then a space near each ideal cut.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from data_schemas.records import Solution

SPLIT_STRATEGIES = ("blank_line", "line", "step_marker", "token_budget")

TokenOffsets = Callable[[str], "list[tuple[int, int]]"]  # text -> char span of each token

_BLANK_LINE_RE = re.compile(r"\n\s*\n")
_LINE_RE = re.compile(r"[^\n]+")
# At a line start: optional spaces, "#"s, "**", a list dash; then "Step <n>" and ":" "." or ")".
_STEP_MARKER_RE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:[-*][ \t]+)?(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[:.)]",
                             re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = ".!?;:"


def _stripped_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without its surrounding whitespace; None when nothing else is left."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    start += len(piece) - len(piece.lstrip())
    return start, start + len(stripped)


def _from_cuts(text: str, cuts: list[int]) -> tuple[list[str], list[dict]]:
    """Steps between consecutive cut positions (0 and len(text) are implied), stripped, empty ones dropped."""
    steps: list[str] = []
    offsets: list[dict] = []
    bounds = [0, *cuts, len(text)]
    for start, end in zip(bounds, bounds[1:]):
        span = _stripped_span(text, start, end)
        if span is not None:
            steps.append(text[span[0]:span[1]])
            offsets.append({"start": span[0], "end": span[1]})
    return steps, offsets


def _split_blank_line(text: str) -> tuple[list[str], list[dict]]:
    return _from_cuts(text, [match.end() for match in _BLANK_LINE_RE.finditer(text)])


def _split_line(text: str) -> tuple[list[str], list[dict]]:
    return _from_cuts(text, [match.end() for match in _LINE_RE.finditer(text)])


def _split_step_marker(text: str) -> tuple[list[str], list[dict]]:
    starts = [match.start() for match in _STEP_MARKER_RE.finditer(text)]
    if not starts:
        return _split_blank_line(text)
    # Text before the first marker joins the first step: the first cut is the second marker.
    return _from_cuts(text, starts[1:])


def _cut_preference(text: str, cut: int) -> int:
    """How good a place ``cut`` (a token start) is to end a step: 3 newline, 2 sentence end, 1 space, 0 inside a word."""
    before = text[cut - 1]
    after = text[cut] if cut < len(text) else " "
    if before == "\n" or after == "\n":
        return 3
    if after.isspace() or before.isspace():
        last = cut - 1
        while last > 0 and text[last].isspace():  # the last visible character before the cut
            last -= 1
        return 2 if text[last] in _SENTENCE_END else 1
    return 0


def _split_token_budget(text: str, token_offsets: TokenOffsets, target_pieces: int) -> tuple[list[str], list[dict]]:
    # Token starts are the only places a cut may go; tokens without characters (special ones) have none.
    starts = sorted({start for start, end in token_offsets(text) if end > start and 0 < start < len(text)})
    tokens = len(starts) + 1  # the first token begins at 0 (or in leading whitespace), not a cut candidate
    pieces = min(target_pieces, tokens)
    if pieces <= 1:
        return _from_cuts(text, [])
    piece_tokens = tokens / pieces
    window = max(1, int(piece_tokens / 4))  # how far (in tokens) a cut may move toward a better place
    cuts: list[int] = []
    previous = -1  # index into starts of the previous cut
    for k in range(1, pieces):
        ideal = round(k * piece_tokens) - 1  # index into starts: cut before token round(k * piece_tokens)
        # Keep cuts increasing and leave at least one candidate for each cut still to make.
        low = max(previous + 1, ideal - window)
        high = min(len(starts) - (pieces - k), ideal + window)
        if low > high:
            low = high = max(previous + 1, min(ideal, len(starts) - (pieces - k)))
        best = max(range(low, high + 1),
                   key=lambda index: (_cut_preference(text, starts[index]), -abs(index - ideal)))
        cuts.append(starts[best])
        previous = best
    return _from_cuts(text, cuts)


def split_solution(text: str, strategy: str, *, token_offsets: TokenOffsets | None = None,
                   target_pieces: int = 16) -> tuple[list[str], list[dict]]:
    """Steps of ``text`` (whitespace-stripped) and their ``{"start", "end"}`` char spans in ``text``."""
    if strategy not in SPLIT_STRATEGIES:
        raise ValueError(f"unknown split strategy {strategy!r}; valid: {', '.join(SPLIT_STRATEGIES)}")
    if strategy == "token_budget":
        if token_offsets is None:
            raise ValueError("split strategy 'token_budget' needs token_offsets: a function text -> [(start, end)] "
                             "of the policy tokenizer's tokens")
        if target_pieces < 1:
            raise ValueError(f"target_pieces must be at least 1, not {target_pieces}")
    if not text.strip():
        return [], []
    if strategy == "blank_line":
        return _split_blank_line(text)
    if strategy == "line":
        return _split_line(text)
    if strategy == "step_marker":
        return _split_step_marker(text)
    return _split_token_budget(text, token_offsets, target_pieces)


def split_solutions(solutions: list[Solution], strategy: str, **options) -> list[Solution]:
    """Fill ``steps`` and ``step_offsets`` of each solution, in place (options as for split_solution)."""
    for solution in solutions:
        solution.steps, solution.step_offsets = split_solution(solution.text, strategy, **options)
    return solutions
