"""One side of a relation, evaluated, and what "equal" means for two values.

A side is evaluated strictly and also under the other readings its literals allow: with scale words
applied (``7 dozen`` as 84), ``100%`` as 100, ``28 / 1/5`` as ``28 / (1/5)``.  Readings that count as
holding are kept apart from the loose ones, which only excuse a mismatch (see ``relations``).  Two
values are equal within ``REL_TOL``; ``APPROX_REL_TOL`` is the looser "close" allowed when an operand
was itself rounded, which excuses a relation but never makes it hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from stages.symbolic.arithmetic import (
    MAX_EXPRESSION_CHARS, Unevaluable, _Budget, _Evaluator, _OutOfTime, _Reading, _STRICT, _Tok,
)
from stages.symbolic.latex import CURRENCY

REL_TOL = Fraction(1, 10**6)   # relative tolerance of "equal"
APPROX_REL_TOL = Fraction(1, 10**3)  # "close" when an operand was itself rounded: not judged


@dataclass
class _Side:
    """One side of a relation, evaluated."""

    value: Fraction                 # the strict reading
    text: str
    first: bool                     # the leftmost side of its run
    literal_decimals: int | None    # a bare literal (optional sign): the decimals it shows; else None
    percent: bool                   # a bare percent literal
    units: frozenset[str]
    rounded_operand: bool           # some literal shows 2+ decimals (probably rounded earlier)
    leading_literal: Fraction | None  # the literal a compound side starts with ("1.50" of "1.50 + 3.00")
    readings: list[Fraction]        # readings that count as holding: strict, scale words applied
    loose_readings: list[Fraction]  # readings that only excuse a mismatch ("100%" as 100, "28 / 1/5")

    @property
    def bare(self) -> bool:
        return self.literal_decimals is not None

    @property
    def half_unit(self) -> Fraction | None:
        """Half a unit in the last shown decimal place of a bare literal (its rounding tolerance)."""
        if not self.literal_decimals:
            return None
        return Fraction(1, 2 * 10 ** self.literal_decimals) / (100 if self.percent else 1)


def _balance(tokens: list[_Tok], first: bool, last: bool) -> list[_Tok]:
    """Drop the parenthesis a relation sits in: "(3 + 4 = 7)" splits into "(3 + 4" and "7)"."""
    depth = sum(1 if t.kind == "lp" else -1 if t.kind == "rp" else 0 for t in tokens)
    while first and depth > 0 and tokens and tokens[0].kind == "lp":
        tokens, depth = tokens[1:], depth - 1
    while last and depth < 0 and tokens and tokens[-1].kind == "rp":
        tokens, depth = tokens[:-1], depth + 1
    return tokens


def _grouped_fractions(tokens: list[_Tok]) -> list[_Tok] | None:
    """The tokens with every glued ``a/b`` in parentheses ("28 / 1/5" → "28 / (1/5)"), or None."""
    grouped: list[_Tok] = []
    index, changed = 0, False
    while index < len(tokens):
        window = tokens[index:index + 3]
        if len(window) == 3 and [t.kind for t in window] == ["num", "op", "num"] and window[1].text == "/" \
                and window[0].end == window[1].start and window[1].end == window[2].start:
            grouped += [_Tok("lp", "(", window[0].start, window[0].start), *window,
                        _Tok("rp", ")", window[2].end, window[2].end)]
            index, changed = index + 3, True
        else:
            grouped.append(tokens[index])
            index += 1
    return grouped if changed else None


def _alternative(tokens: list[_Tok], budget: _Budget, reading: _Reading) -> list[Fraction]:
    try:
        return [_Evaluator(tokens, budget, reading).evaluate()]
    except _OutOfTime:
        raise
    except Unevaluable:
        return []


def _side(tokens: list[_Tok], text: str, budget: _Budget, first: bool = True) -> _Side:
    if not tokens:
        raise Unevaluable("empty side")
    for token in tokens:
        if token.kind == "poison":
            raise Unevaluable(token.why)
    source = text[tokens[0].start:tokens[-1].end].strip().replace(CURRENCY, "$")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise Unevaluable(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    value = _Evaluator(tokens, budget).evaluate()
    numbers = [token for token in tokens if token.kind == "num"]
    signs = [token for token in tokens if token.kind == "op"]
    bare = len(numbers) == 1 and len(tokens) == 1 + len(signs) and all(t.text in "+-" for t in signs) \
        and tokens[-1].kind == "num"
    literal = numbers[0] if bare else None
    readings = [value]
    if any(token.scale != 1 for token in numbers):
        readings += _alternative(tokens, budget, _Reading(scaled=True))
    loose = list(readings)
    if any(token.percent for token in numbers):
        loose += _alternative(tokens, budget, _Reading(percent_plain=True))
    grouped = _grouped_fractions(tokens)
    if grouped is not None:
        loose += _alternative(grouped, budget, _STRICT)
    leading = tokens[0].value if not bare and tokens[0].kind == "num" and not tokens[0].percent else None
    return _Side(value, source, first, literal.decimals if literal else None, bool(literal and literal.percent),
                 frozenset(unit for token in numbers for unit in token.units),
                 any(token.decimals >= 2 for token in numbers), leading, readings, loose)


def _close_enough(a: Fraction, b: Fraction, tolerance: Fraction) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _equal(a: Fraction, b: Fraction) -> bool:
    return a == b or _close_enough(a, b, REL_TOL)


def _show(value: Fraction) -> str:
    if value.denominator == 1 and value.numerator.bit_length() < 100:
        return str(value.numerator)
    if value.numerator.bit_length() < 1000 and value.denominator.bit_length() < 1000:
        return f"{float(value):.6g}"
    return "a very large number"
