"""Final answers: the answer a step states, read as one number and compared with the reference.

The last ``\\boxed{...}``, ``#### ...``, ``Answer: ...`` line or "the answer is ..." of a step is read
as a single number (``$1,000``, ``\\frac{14}{3}``, ``x = 5``, ``25\\%``, ``18 dollars``) with the same
lexer and evaluator as the relations; anything else (a variable, a tuple, a clause after the number)
is not judged.  An answer fails only when both it and the reference read as numbers that differ.
"""
from __future__ import annotations

import re

from stages.symbolic.arithmetic import MAX_EXPRESSION_CHARS, MAX_STEP_CHARS, Unevaluable, _Budget, _lex
from stages.symbolic.latex import _brace_pairs, normalize_latex
from stages.symbolic.runs import _RunBuilder
from stages.symbolic.sides import _equal, _show, _Side, _side

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH_ANSWER_RE = re.compile(r"####[ \t]*([^\n]{0,200})")
_ANSWER_LINE_RE = re.compile(r"(?:^|\n)[ \t*#]*Answer\s*:[ \t*]*([^\n]{0,200})", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"\bthe\s++(?:final\s++)?answer\s++is\s*+:?[ \t]*+([^\n]{0,200})", re.IGNORECASE)
# words that start a new clause: "5, then ..." or "5 if ..." is no clean answer
_CLAUSE_WORDS = {"and", "or", "but", "then", "if", "so", "because", "since", "which", "that", "not", "no",
                 "is", "are", "was", "were", "when", "while", "where", "than", "plus", "minus", "times"}


def stated_answer(text: str) -> str | None:
    """The answer a step states last: ``\\boxed{...}``, ``#### ...``, an ``Answer: ...`` line or
    "the answer is ..." (the rest of its line)."""
    text = text[-MAX_STEP_CHARS:]
    found: list[tuple[int, str]] = []
    pairs: dict[int, int] | None = None
    for match in _BOXED_RE.finditer(text):
        pairs = pairs if pairs is not None else _brace_pairs(text)
        close = pairs.get(match.end() - 1)
        if close is not None:
            found.append((match.start(), text[match.end():close]))
    for pattern in (_HASH_ANSWER_RE, _ANSWER_LINE_RE, _ANSWER_IS_RE):
        found += [(match.start(1), match.group(1)) for match in pattern.finditer(text)]
    return max(found)[1].strip() if found else None


def answer_side(text: str) -> _Side | None:
    """A final answer read as one number (``18``, ``$1,000``, ``\\frac{14}{3}``, ``x = 5``, ``25\\%``,
    ``18 dollars``), or None when it is anything else (an expression with variables, a tuple, ...)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        return None
    plain = normalize_latex(text).strip().rstrip(".").strip()
    plain = plain.rsplit("=", 1)[-1]  # "x = 5"
    lexes = _lex(plain)
    # one number or expression, then at most unit words: "18 dollars", not "5 or 6"
    if not lexes or lexes[0].kind == "word":
        return None
    if any(lex.kind in ("cmd", "rel") or (lex.kind == "other" and lex.text not in ".,") for lex in lexes):
        return None
    budget = _Budget()
    try:
        runs = _RunBuilder(lexes, budget).build()
        if len(runs) != 1:
            return None
        trailing = [lex for lex in lexes if lex.start >= runs[0][-1].end and lex.text != "."]
        if any(lex.kind != "word" or lex.text.lower() in _CLAUSE_WORDS for lex in trailing):
            return None
        return _side(runs[0], plain, budget)
    except Unevaluable:
        return None


def compare_answers(stated: str, reference: str) -> tuple[str, str]:
    """("holds" | "fails" | "skipped", reason): fails only when both read as numbers that differ."""
    left, right = answer_side(stated), answer_side(reference)
    if left is None or right is None:
        return "skipped", f"final answer {stated[:80]!r} vs reference {reference[:80]!r}: not both numbers"
    relation = f"final answer {left.text} vs reference {right.text}"
    if any(_equal(a, b) for a in left.readings for b in right.readings):
        return "holds", relation
    # "25%" for a reference of 25 (or the reverse) is the same answer written with its unit
    if (left.percent and _equal(left.value * 100, right.value)) or (right.percent and _equal(right.value * 100, left.value)):
        return "holds", relation + " (percent)"
    for literal, other in ((left, right.value), (right, left.value)):
        if literal.half_unit is not None and abs(other - literal.value) <= literal.half_unit:
            return "skipped", relation + ": equal only after rounding"
    return "fails", f"{relation}: {_show(left.value)} ≠ {_show(right.value)}"
