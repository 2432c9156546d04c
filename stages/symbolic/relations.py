"""Relations in a step: find every ``a = b``, judge it, and give the step its verdict.

``check_step`` reads GSM8K calculator annotations (``<<16-3-4=9>>``, each one) and then the prose
around them, splits every run of arithmetic at its ``=`` into sides and compares adjacent sides (a
chain ``a = b = c`` is two relations).  A relation that fails is called wrong only when no common loose
usage explains it (``_excuse``): a false "wrong" poisons a veto, a lost check only costs coverage.  A
step that is nothing but an expression (the toy domain) is checked against the value it must keep.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from stages.symbolic.arithmetic import MAX_EXPRESSION_CHARS, MAX_STEP_CHARS, Unevaluable, _Budget, _lex, _OutOfTime, _Tok
from stages.symbolic.final_answers import answer_side
from stages.symbolic.latex import normalize_latex
from stages.symbolic.runs import _SCALE_WORDS, _RunBuilder, _runs
from stages.symbolic.sides import APPROX_REL_TOL, _balance, _close_enough, _equal, _show, _Side, _side

CORRECT, WRONG, UNKNOWN = 1, 0, -1
MAX_REASONS = 20               # reasons kept per step in the detail


def _holds(left: _Side, right: _Side) -> str | None:
    """How ``left = right`` holds ("" plainly, or a note), or None."""
    if _equal(left.value, right.value):
        return ""
    for literal, other in ((right, left.value), (left, right.value)):
        if literal.half_unit is not None and abs(other - literal.value) <= literal.half_unit:
            return " (rounded)"
    if any(_equal(a, b) for a in left.readings for b in right.readings):
        return " (counting the scale word)"
    return None


def _excuse(left: _Side, right: _Side) -> str | None:
    """A loose but common way of writing that explains a failed ``left = right``, or None."""
    a, b = left.value, right.value
    if left.bare and right.bare:
        return "two different bare numbers (prose, not arithmetic?)"
    if left.bare and left.first:
        return "a bare number before '=' may label the line, not equal it"
    for literal, other in ((right, a), (left, b)):
        if literal.literal_decimals == 0 and abs(other - literal.value) < 1:
            return "equal after rounding to an integer?"
        if literal.half_unit is not None and 0 <= abs(other) - abs(literal.value) < 2 * literal.half_unit:
            return "equal after truncating?"
    if any(_equal(x, y) or _close_enough(x, y, APPROX_REL_TOL)
           for x in left.loose_readings for y in right.loose_readings if (x, y) != (a, b)):
        return "equal when a percent or a fraction is read loosely"
    if left.percent or right.percent:
        return "percent used loosely?"
    if (left.rounded_operand or right.rounded_operand) and _close_enough(a, b, APPROX_REL_TOL):
        return "approximately, from rounded operands"
    if right.leading_literal is not None and right.leading_literal == a:
        return "a running total written as a chain"
    return None


_NOT_UNITS = {"$", *_SCALE_WORDS}


def _compare(left: _Side, right: _Side) -> tuple[str, str]:
    """("holds" | "fails" | "skipped", reason) for ``left = right``."""
    relation = f"{left.text} = {right.text}"
    if left.units and right.units and not (left.units & right.units):
        return "skipped", f"{relation}: different units"
    if left.bare and right.bare and left.units != right.units:
        return "skipped", f"{relation}: a unit conversion?"
    if len(left.units - _NOT_UNITS) > 1 or len(right.units - _NOT_UNITS) > 1:
        return "skipped", f"{relation}: mixed units"
    note = _holds(left, right)
    if note is not None:
        return "holds", relation + note
    excuse = _excuse(left, right)
    if excuse is not None:
        return "skipped", f"{relation}: {excuse}"
    return "fails", f"{relation}: left is {_show(left.value)}, right is {_show(right.value)}"


@dataclass
class StepCheck:
    """What was checked in one step."""

    holds: int = 0
    fails: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> int:
        return WRONG if self.fails else CORRECT if self.holds else UNKNOWN

    def add(self, outcome: str, reason: str) -> None:
        if outcome == "holds":
            self.holds += 1
        elif outcome == "fails":
            self.fails += 1
        prefix = {"holds": "ok", "fails": "WRONG", "skipped": "unchecked"}.get(outcome, outcome)
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{prefix}: {reason[:300]}")

    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "nothing checkable"


def _check_relations(text: str, budget: _Budget, check: StepCheck) -> int:
    """Check every ``a = b`` (adjacent pairs of chains) of plain text; returns how many it saw."""
    seen = 0
    for run in _runs(text, budget):
        if not any(token.kind == "eq" for token in run):
            continue
        parts: list[list[_Tok]] = [[]]
        for token in run:
            if token.kind == "eq":
                parts.append([])
            else:
                parts[-1].append(token)
        sides: list[_Side | str] = []
        for position, tokens in enumerate(parts):
            tokens = _balance(tokens, first=position == 0, last=position == len(parts) - 1)
            try:
                sides.append(_side(tokens, text, budget, first=position == 0))
            except _OutOfTime:
                raise
            except Unevaluable as error:
                sides.append(str(error))
        for left, right in zip(sides, sides[1:]):
            seen += 1
            if isinstance(left, _Side) and isinstance(right, _Side):
                check.add(*_compare(left, right))
            elif isinstance(left, _Side) or isinstance(right, _Side):
                readable, problem = (left, right) if isinstance(left, _Side) else (right, left)
                if problem != "empty side":
                    check.add("skipped", f"beside {readable.text!r}: {problem}")
    return seen


_ANNOTATION_RE = re.compile(r"<<([^<>\n]{0,500})>>")
_ANSWER_PREFIX_RE = re.compile(r"^\s*answer\s*:", re.IGNORECASE)
_ARITHMETIC_LEXES = ("num", "op", "pow", "pct", "bang", "lp", "rp")


def _bare_expression_value(text: str, budget: _Budget) -> _Side | None:
    """The value of a step that is nothing but one expression (the toy domain's steps)."""
    text = _ANSWER_PREFIX_RE.sub("", text, count=1).strip()
    if not text or len(text) > MAX_EXPRESSION_CHARS:
        return None
    plain = normalize_latex(text)
    lexes = _lex(plain)
    if not all(lex.kind in _ARITHMETIC_LEXES for lex in lexes):
        return None
    runs = _RunBuilder(lexes, budget).build()
    if len(runs) != 1 or any(token.kind == "eq" for token in runs[0]):
        return None
    try:
        return _side(runs[0], plain, budget)
    except _OutOfTime:
        raise
    except Unevaluable:
        return None


def _check_step(text: str, previous_value: Fraction | None, budget: _Budget) -> StepCheck:
    check = StepCheck()
    if len(text) > MAX_STEP_CHARS:
        check.reasons.append(f"unchecked: step longer than {MAX_STEP_CHARS} characters")
        return check
    try:
        seen = 0
        for match in _ANNOTATION_RE.finditer(text):
            seen += _check_relations(normalize_latex(match.group(1)), budget, check)
        plain = _ANNOTATION_RE.sub("", text)
        rewritten = normalize_latex(plain)
        if len(rewritten) > 2 * MAX_STEP_CHARS:  # "½" grows six-fold: bound what the lexer reads
            raise _OutOfTime("step too long after rewriting")
        seen += _check_relations(rewritten, budget, check)
        if seen == 0 and previous_value is not None:
            side = _bare_expression_value(plain, budget)
            if side is not None:
                if _equal(side.value, previous_value):
                    check.add("holds", f"{side.text} keeps the value {_show(previous_value)}")
                else:
                    check.add("fails", f"{side.text} is {_show(side.value)}, not {_show(previous_value)}")
    except _OutOfTime as error:  # what was checked before the budget ran out stands
        check.reasons.append(f"unchecked: {error}")
    except (ArithmeticError, ValueError, IndexError, RecursionError) as error:
        # untrusted text must never stop a shard; no known input gets here (see the fuzz test)
        check.reasons.append(f"unchecked: could not read the step ({type(error).__name__})")
    return check


def _as_fraction(value: object) -> Fraction | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        side = answer_side(value)
        return side.value if side is not None else None
    raise TypeError(f"previous_value must be a number or a string, not {type(value).__name__}")


def check_step(text: str, previous_value: int | float | Fraction | str | None = None) -> tuple[int, str]:
    """(verdict, reason) for one step: 1 correct, 0 wrong, -1 unknown.

    ``previous_value``: the value a step that is a bare expression (no ``=``) must keep, as in the
    toy domain (``7*2-5`` after ``(3+4)*2-5``); without it such a step is not checkable."""
    check = _check_step(text, _as_fraction(previous_value), _Budget())
    return check.verdict, check.summary()
