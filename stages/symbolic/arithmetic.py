"""Exact, bounded arithmetic on untrusted text: the bounds, the lexer, the tokens and the evaluator.

Nothing here calls ``eval``/``exec`` or sympy's parsers: a restricted regex lexer cuts plain text (see
``latex``) into lexemes, and a recursive-descent parser evaluates arithmetic tokens with exact
``Fraction`` arithmetic.  Every step of that is bounded (digits per number, exponent and result size,
nesting depth, factorial, operations and wall-clock time per step of a solution); whatever is refused
raises ``Unevaluable``, which the callers turn into "unchecked", never "correct".
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from fractions import Fraction

from stages.symbolic.latex import CURRENCY


# ---------------------------------------------------------------- bounds (every refusal → unchecked)
MAX_STEP_CHARS = 20_000        # a longer step is not read at all
MAX_EXPRESSION_CHARS = 500     # one side of a relation
MAX_NUMBER_DIGITS = 100        # digits in one literal (refused before int() sees it)
MAX_EXPONENT = 1000            # |n| in a ** n
MAX_RESULT_BITS = 3400         # ~1000 decimal digits, numerator or denominator, after every operation
MAX_FACTORIAL = 300            # n! for n <= 300 (~615 digits); n!! is refused
MAX_DEPTH = 60                 # parentheses, unary signs and exponents nested
MAX_OPERATIONS = 20_000        # evaluation steps per step of a solution
STEP_TIME_BUDGET_S = 0.5       # wall clock per step, checked inside the parse loops


class Unevaluable(ValueError):
    """The expression is not arithmetic this module evaluates (or it would cost too much)."""


class _OutOfTime(Unevaluable):
    """The step's budget is spent: stop checking it (what was checked so far stands)."""


class _Budget:
    """Operations and wall-clock time left for one step."""

    def __init__(self, seconds: float = STEP_TIME_BUDGET_S) -> None:
        self.deadline = time.monotonic() + seconds
        self.operations = 0

    def tick(self) -> None:
        self.operations += 1
        if self.operations > MAX_OPERATIONS:
            raise _OutOfTime("too many operations")
        if time.monotonic() > self.deadline:
            raise _OutOfTime("time budget exceeded")


# ---------------------------------------------------------------- lexer

_LEX_RE = re.compile(r"""
  (?P<num>%s?(?:(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|(?<![0-9A-Za-z.])\.[0-9]+))
| (?P<pow>\*\*)
| (?P<rel><=|>=|=>|!=|==|=)
| (?P<op>[-+*/^])
| (?P<pct>%%)
| (?P<bang>!)
| (?P<lp>\()
| (?P<rp>\))
| (?P<cmd>\\[A-Za-z]+)
| (?P<word>[^\W\d]\w*)
| (?P<space>\s+)
| (?P<other>.)
""" % CURRENCY, re.VERBOSE | re.DOTALL)


@dataclass(slots=True)
class _Lex:
    kind: str
    text: str
    start: int
    end: int
    spaced: bool = False   # whitespace before it
    newline: bool = False  # a line break in that whitespace


def _lex(text: str) -> list[_Lex]:
    lexes: list[_Lex] = []
    spaced = newline = False
    for match in _LEX_RE.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            spaced, newline = True, newline or "\n" in match.group()
            continue
        lexes.append(_Lex(kind, match.group(), match.start(), match.end(), spaced, newline))
        spaced = newline = False
    return lexes


# ---------------------------------------------------------------- arithmetic tokens and evaluation

@dataclass(slots=True)
class _Tok:
    kind: str  # num | op | lp | rp | eq | fact | poison
    text: str
    start: int
    end: int
    value: Fraction | None = None  # a number as written: before its "%" and its scale word
    decimals: int = 0              # digits shown after the point
    percent: bool = False
    scale: int = 1                 # "3 million" → 1_000_000, "7 dozen" → 12 (read both ways)
    units: tuple[str, ...] = ()
    why: str = ""                  # poison: why this side cannot be read


@dataclass(frozen=True)
class _Reading:
    """How to read the ambiguous parts of a side's literals."""

    scaled: bool = False         # apply "dozen", "million": "7 dozen" is 84 (else 7, a unit)
    percent_plain: bool = False  # "100%" as 100, not 1


_STRICT = _Reading()


def _number_token(lex: _Lex) -> _Tok:
    currency = lex.text.startswith(CURRENCY)
    text = lex.text.lstrip(CURRENCY)
    whole, _, fraction = text.replace(",", "").partition(".")
    shown = ("$" if currency else "") + text
    if len(whole) + len(fraction) > MAX_NUMBER_DIGITS:
        return _Tok("poison", shown[:20] + "…", lex.start, lex.end, why=f"number longer than {MAX_NUMBER_DIGITS} digits")
    if len(whole) > 1 and whole.startswith("0"):
        return _Tok("poison", shown, lex.start, lex.end, why="leading zero (a time or a code?)")
    value = Fraction(int(whole or "0"))
    if fraction:
        value += Fraction(int(fraction), 10 ** len(fraction))
    return _Tok("num", shown, lex.start, lex.end, value=value, decimals=len(fraction), units=("$",) if currency else ())


def _check_size(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_RESULT_BITS:
        raise Unevaluable("result too large")
    return value


class _Evaluator:
    """Recursive descent over arithmetic tokens, exact Fractions, every step bounded::

        expression := term (("+" | "-") term)*
        term       := unary (("*" | "/") unary)*
        unary      := ("+" | "-") unary | power
        power      := postfix ("^" unary)?        (right-associative; -2^2 = -4, 2^-1 = 1/2)
        postfix    := primary "!"?                (n!! is refused, not guessed)
        primary    := number | "(" expression ")"
    """

    def __init__(self, tokens: list[_Tok], budget: _Budget, reading: _Reading = _STRICT) -> None:
        self.tokens = tokens
        self.position = 0
        self.budget = budget
        self.reading = reading

    def evaluate(self) -> Fraction:
        if not self.tokens:
            raise Unevaluable("empty")
        value = self._expression(0)
        if self.position != len(self.tokens):
            raise Unevaluable(f"unexpected {self.tokens[self.position].text!r}")
        return value

    def _peek(self) -> _Tok | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _peek_op(self, ops: str) -> str | None:
        token = self._peek()
        return token.text if token is not None and token.kind == "op" and token.text in ops else None

    def _take(self) -> _Tok:
        token = self._peek()
        if token is None:
            raise Unevaluable("expression ends early")
        self.position += 1
        return token

    def _descend(self, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise Unevaluable("nested too deeply")
        self.budget.tick()
        return depth + 1

    def _expression(self, depth: int) -> Fraction:
        depth = self._descend(depth)
        value = self._term(depth)
        while (op := self._peek_op("+-")) is not None:
            self._take()
            right = self._term(depth)
            self.budget.tick()
            value = _check_size(value + right if op == "+" else value - right)
        return value

    def _term(self, depth: int) -> Fraction:
        value = self._unary(depth)
        while (op := self._peek_op("*/")) is not None:
            self._take()
            right = self._unary(depth)
            self.budget.tick()
            if op == "/" and right == 0:
                raise Unevaluable("division by zero")
            value = _check_size(value * right if op == "*" else value / right)
        return value

    def _unary(self, depth: int) -> Fraction:
        op = self._peek_op("+-")
        if op is not None:
            self._take()
            value = self._unary(self._descend(depth))
            return -value if op == "-" else value
        return self._power(depth)

    def _power(self, depth: int) -> Fraction:
        base = self._postfix(depth)
        if self._peek_op("^") is None:
            return base
        self._take()
        exponent = self._unary(self._descend(depth))
        self.budget.tick()
        return _bounded_power(base, exponent)

    def _postfix(self, depth: int) -> Fraction:
        value = self._primary(depth)
        token = self._peek()
        if token is not None and token.kind == "fact":
            self._take()
            following = self._peek()
            if following is not None and following.kind == "fact":
                raise Unevaluable("repeated factorial refused")
            self.budget.tick()
            if value.denominator != 1 or not 0 <= value <= MAX_FACTORIAL:
                raise Unevaluable(f"factorial only of integers 0..{MAX_FACTORIAL}")
            value = Fraction(math.factorial(int(value)))
        return value

    def _primary(self, depth: int) -> Fraction:
        token = self._take()
        if token.kind == "num":
            return self._literal(token)
        if token.kind == "lp":
            value = self._expression(self._descend(depth))
            closing = self._peek()
            if closing is None or closing.kind != "rp":
                raise Unevaluable("missing ')'")
            self._take()
            return value
        if token.kind == "poison":
            raise Unevaluable(token.why)
        raise Unevaluable(f"unexpected {token.text!r}")

    def _literal(self, token: _Tok) -> Fraction:
        assert token.value is not None
        value = token.value
        if token.percent and not self.reading.percent_plain:
            value /= 100
        if self.reading.scaled:
            value *= token.scale
        return value


def _bounded_power(base: Fraction, exponent: Fraction) -> Fraction:
    """``base ** exponent`` only when the exponent is a small integer and the result's size, estimated
    before computing it, stays bounded: ``9**9**9**9`` is refused at ``9**387420489``."""
    if exponent.denominator != 1:
        raise Unevaluable("non-integer exponent")
    power = int(exponent)
    if abs(power) > MAX_EXPONENT:
        raise Unevaluable(f"exponent beyond ±{MAX_EXPONENT}")
    if base == 0 and power < 0:
        raise Unevaluable("division by zero")
    bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if bits * abs(power) > MAX_RESULT_BITS + bits:  # bit_length(b**n) <= n * bit_length(b)
        raise Unevaluable("power too large")
    return _check_size(base ** power)
