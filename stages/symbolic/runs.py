"""Finding arithmetic in prose: cut a step's lexemes into runs of arithmetic tokens.

A step mixes words and arithmetic (``She has 3 + 4 = 7 apples``).  ``_RunBuilder`` keeps what reads
as arithmetic (numbers with their percent, scale and unit words, operators and operator words such as
``times`` or ``25% of``, and ``=``) and cuts a run where the prose starts.  Prose is ambiguous, so the
cut is conservative: an edge of a run that touches text it cannot read (``x + 3 = 7``, ``2x``,
``3:2``, ``\\sqrt``) gets a poison token, and the side of a relation at that edge is left unchecked
rather than guessed.
"""
from __future__ import annotations

import time
from fractions import Fraction

from stages.symbolic.arithmetic import _Budget, _lex, _Lex, _number_token, _OutOfTime, _Tok

_MATH_SYMBOLS = set("√∛∜∑∏∫π∞±∓|")  # math we do not evaluate: its neighbours are not plain numbers
_POISON_EDGE = "touches text that is not arithmetic"
_SCALE_WORDS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12, "dozen": 12}
# Units glued to a number ("5cm"); other glued letters are a variable or an ordinal ("2x", "2nd").
_GLUED_UNITS = {"cm", "mm", "km", "kg", "mg", "lb", "lbs", "oz", "ml", "hr", "hrs", "min", "mins", "sec",
                "secs", "ft", "mph", "kph", "am", "pm"}
_OPERATOR_WORDS = {"times": "*", "plus": "+", "minus": "-"}
_BY_OPERATORS = {"divided": "/", "multiplied": "*"}
# Words that are not units: they end the number ("9 every day", "3 so total = 4").
_STOP_WORDS = set("""
a an the and or but so then than that this these those which who whom whose what when where while
is are was were be been being am do does did has have had will would can could should may might must
to of for in on at by with from into onto over under per as if each every all any both some no not
we he she it they you i me him her us them its his their our your my there here now also too very
thus hence therefore since because after before total altogether remaining left more less about only
plus minus times equals gives makes means leaves already up down out away just still yet even again
back off right
""".split())
# A run right after these words may be the tail of a longer expression ("half of 80 * 2 = 80").
_CONTINUATION_WORDS = {"of", "and", "plus", "minus", "times", "by", "than", "over", "per", "into", "twice",
                       "half", "double", "triple", "thrice", "quarter", "third", "fourth", "fifth", "square",
                       "cube", "root", "sqrt", "one", "two", "three", "four", "five", "six", "seven", "eight",
                       "nine", "ten", "eleven", "twelve", "hundred", "thousand", "million"}
_UNIT_ALIASES = {"dollar": "$", "usd": "$"}
# A number right after these words is a label, not a value: "on day 1 * 2 = 20", "Weeks 1-2 = 96 - 70".
_LABEL_WORDS = {"day", "days", "week", "weeks", "month", "months", "year", "years", "step", "steps", "page",
                "pages", "chapter", "part", "case", "round", "level", "grade", "game", "line", "row", "number",
                "no", "item", "section", "stage", "phase", "option", "floor", "room", "question", "problem",
                "equation", "figure", "table", "paragraph", "version", "type", "group", "team", "player"}


def _operand_end(token: _Tok | None) -> bool:
    return token is not None and token.kind in ("num", "rp", "fact")


def _starts_operand(lex: _Lex | None) -> bool:
    return lex is not None and (lex.kind in ("num", "lp") or (lex.kind == "op" and lex.text == "-"))


def _plain_integer(lex: _Lex | None) -> bool:
    return lex is not None and lex.kind == "num" and lex.text.isdigit()


def _unit_name(word: str) -> str:
    word = word.lower()
    word = word[:-1] if len(word) > 3 and word.endswith("s") else word
    return _UNIT_ALIASES.get(word, word)


class _RunBuilder:
    """Cut a lexed text into runs of arithmetic tokens.  An edge of a run that touches text it cannot
    read gets a poison token, so the side of a relation at that edge is unchecked, not misread."""

    def __init__(self, lexes: list[_Lex], budget: _Budget) -> None:
        self.lexes = lexes
        self.budget = budget
        self.runs: list[list[_Tok]] = []
        self.current: list[_Tok] = []
        self.taint_next = False  # the next run starts poisoned

    def build(self) -> list[list[_Tok]]:
        index = 0
        while index < len(self.lexes):
            if index % 256 == 0 and time.monotonic() > self.budget.deadline:
                raise _OutOfTime("time budget exceeded")
            index = self._step(index)
        self._close()
        return self.runs

    # -- helpers
    def _lex_at(self, index: int) -> _Lex | None:
        return self.lexes[index] if 0 <= index < len(self.lexes) else None

    @staticmethod
    def _poison(lex: _Lex, why: str = _POISON_EDGE) -> _Tok:
        return _Tok("poison", lex.text, lex.start, lex.end, why=why)

    def _push(self, token: _Tok) -> None:
        if not self.current and self.taint_next:
            self.current.append(_Tok("poison", "", token.start, token.start, why=_POISON_EDGE))
        self.taint_next = False
        self.current.append(token)

    def _close(self, taint: bool = False, at: _Lex | None = None) -> None:
        if self.current:
            if self.current[-1].kind == "fact":
                self.current.pop()  # "= 7!" ends a sentence: a trailing "!" is punctuation
            if taint and at is not None:
                self.current.append(self._poison(at))
            self.runs.append(self.current)
        self.current = []

    def _break(self, lex: _Lex, taint_before: bool, taint_after: bool) -> None:
        # a run cut right after an operator continues past the cut: "... + . 84" ("+ ." typo)
        dangling = bool(self.current) and self.current[-1].kind == "op"
        self._close(taint_before or dangling, lex)
        self.taint_next = taint_after or dangling

    # -- one lexeme
    def _step(self, index: int) -> int:
        lex = self.lexes[index]
        previous, following = self._lex_at(index - 1), self._lex_at(index + 1)
        last = self.current[-1] if self.current else None
        kind = lex.kind
        if kind == "num":
            if _operand_end(last):
                # two numbers with no operator: "$350 000", "8 5% increases", "(3)2"; a new line is a clean cut
                self._close(taint=not lex.newline, at=lex)
                self.taint_next = not lex.newline
            self._push(_number_token(lex))
            return self._number_suffixes(index + 1)
        if kind == "pow":
            if _operand_end(last) and _starts_operand(following):
                self._push(_Tok("op", "^", lex.start, lex.end))
            else:  # markdown bold
                self._break(lex, False, False)
            return index + 1
        if kind == "op":
            return self._operator(lex, index, previous, following, last)
        if kind == "rel":
            if lex.text in ("=", "=="):
                self._push(_Tok("eq", "=", lex.start, lex.end))
            else:
                self._break(lex, False, False)
            return index + 1
        if kind == "bang":
            if _operand_end(last) and not lex.spaced:
                self._push(_Tok("fact", "!", lex.start, lex.end))
            else:
                self._break(lex, False, False)
            return index + 1
        if kind == "lp":
            if _operand_end(last):
                if lex.spaced:  # "= 7 (since ...)" is an aside; "7 (3 + 4)" a product in LaTeX
                    ambiguous = not self._prose_group_at(index)
                    self._close(taint=ambiguous, at=lex)
                    self.taint_next = ambiguous
                else:
                    self._push(_Tok("op", "*", lex.start, lex.start))
            self._push(_Tok("lp", "(", lex.start, lex.end))
            return index + 1
        if kind == "rp":
            self._push(_Tok("rp", ")", lex.start, lex.end))
            return index + 1
        if kind == "word":
            return self._word(lex, index, following, last)
        if kind in ("cmd", "pct") or lex.text in _MATH_SYMBOLS:  # \sqrt, \pi, √, a stray "%"
            self._break(lex, True, True)
            return index + 1
        # other punctuation: glued on both sides it is an infix we do not know ("3:2", "1,2");
        # "14, 400" is a thousands separator typed with a space, or a list: either way not readable
        glued_both = previous is not None and following is not None and not lex.spaced and not following.spaced
        split_number = lex.text == "," and not lex.spaced and previous is not None and previous.kind == "num" \
            and _plain_integer(following) and len(following.text) == 3
        self._break(lex, glued_both or split_number, glued_both or split_number)
        return index + 1

    def _prose_group_at(self, index: int) -> bool:
        """Whether the parenthesis at ``index`` holds prose (a word of 2+ letters, no variable)."""
        depth, prose = 0, False
        for lex in self.lexes[index:index + 60]:
            depth += 1 if lex.kind == "lp" else -1 if lex.kind == "rp" else 0
            if lex.kind in ("word", "cmd"):
                if len(lex.text) == 1 or lex.kind == "cmd":
                    return False
                prose = True
            if depth == 0:
                break
        return prose

    def _operator(self, lex: _Lex, index: int, previous: _Lex | None, following: _Lex | None,
                  last: _Tok | None) -> int:
        if last is not None and last.kind != "eq":
            self._push(_Tok("op", lex.text, lex.start, lex.end))
            return index + 1
        # an operator that opens a side of a relation
        if lex.text in "+-" and following is not None and not following.spaced and _starts_operand(following):
            self._push(_Tok("op", lex.text, lex.start, lex.end))  # a sign: "-21", "-(3)"
            return index + 1
        at_line_start = previous is None or lex.newline or previous.kind == "other"
        if not self.current and at_line_start and lex.text in "*-+":
            return index + 1  # a markdown bullet or emphasis
        # "x + 3 = 7": the left operand is text we cannot read
        if not self.current:
            self._push(self._poison(lex))
        else:
            self.current.append(self._poison(lex))
        self.current.append(_Tok("op", lex.text, lex.start, lex.end))
        return index + 1

    def _word(self, lex: _Lex, index: int, following: _Lex | None, last: _Tok | None) -> int:
        word = lex.text.lower()
        if _operand_end(last) and lex.spaced and following is not None:
            operator = self._operator_word(word, index, following, last)
            if operator is not None:
                symbol, consumed = operator
                self._push(_Tok("op", symbol, lex.start, self.lexes[index + consumed - 1].end))
                return index + consumed
        if word == "equals" and self.current:
            self._push(_Tok("eq", "=", lex.start, lex.end))
            return index + 1
        variable = len(word) == 1 and word not in ("a", "i")
        glued_before = bool(self.current) and not lex.spaced
        glued_after = following is not None and not following.spaced and following.kind != "other"
        self._break(lex, taint_before=glued_before or (variable and bool(self.current)),
                    taint_after=glued_after or variable or word in _CONTINUATION_WORDS or word in _LABEL_WORDS)
        return index + 1

    def _operator_word(self, word: str, index: int, following: _Lex, last: _Tok) -> tuple[str, int] | None:
        """("*", lexemes consumed) for "times", "plus", "minus", "x", "divided by", "25% of", "3/4 of"."""
        if word in _OPERATOR_WORDS and _starts_operand(following):
            return _OPERATOR_WORDS[word], 1
        if word == "x" and following.spaced and _starts_operand(following):
            return "*", 1
        if word in _BY_OPERATORS and following.kind == "word" and following.text.lower() == "by" \
                and _starts_operand(self._lex_at(index + 2)):
            return _BY_OPERATORS[word], 2
        # "25% of 80 = 20"; but "= 1/3 of $150" names a share, it does not multiply
        if word == "of" and _starts_operand(following) and (last.percent or self._ends_with_fraction()) \
                and not any(token.kind == "eq" for token in self.current):
            return "*", 1
        return None

    def _ends_with_fraction(self) -> bool:
        tail = self.current[-3:]
        return len(tail) == 3 and [t.kind for t in tail] == ["num", "op", "num"] and tail[1].text == "/" \
            and tail[0].end == tail[1].start and tail[1].end == tail[2].start

    def _mixed_fraction(self, index: int) -> tuple[Fraction, int, int] | None:
        """"3 1/2" or "1 and 1/3" after a whole number: (the fraction, where it ends, next index)."""
        lex = self._lex_at(index)
        if lex is not None and lex.kind == "word" and lex.text.lower() == "and":
            index += 1
        numerator, slash, denominator = self._lex_at(index), self._lex_at(index + 1), self._lex_at(index + 2)
        if not (_plain_integer(numerator) and numerator.spaced and slash is not None and slash.text == "/"
                and not slash.spaced and _plain_integer(denominator) and not denominator.spaced):
            return None
        after = self._lex_at(index + 3)
        if after is not None and not after.spaced and after.kind in ("op", "num", "pow"):
            return None  # "1 1/2/3" is no mixed number
        top, bottom = int(numerator.text), int(denominator.text)
        if bottom == 0 or top >= bottom:
            return None
        return Fraction(top, bottom), denominator.end, index + 3

    def _number_suffixes(self, index: int) -> int:
        """What may follow a number: a mixed fraction, "%", "percent", a scale word, unit words."""
        number = self.current[-1]
        if number.kind != "num":
            return index
        if number.decimals == 0 and not number.units:
            mixed = self._mixed_fraction(index)
            if mixed is not None:
                fraction, end, index = mixed
                number.value += fraction
                number.text, number.end = number.text + " " + str(fraction), end
        lex = self._lex_at(index)
        if lex is not None and (lex.kind == "pct" or (lex.kind == "word" and lex.spaced and lex.text.lower() == "percent")):
            number.percent, number.end = True, lex.end
            index += 1
        lex = self._lex_at(index)
        if lex is not None and lex.kind == "word" and lex.spaced and lex.text.lower() in _SCALE_WORDS:
            number.scale = _SCALE_WORDS[lex.text.lower()]
            number.units += (lex.text.lower(),)
            index += 1
        units: list[str] = []
        while (lex := self._lex_at(index)) is not None and lex.kind == "word" and len(units) < 3:
            word = lex.text.lower()
            if not lex.spaced:
                if word in _GLUED_UNITS and not units:
                    units.append(word)
                    index += 1
                    continue
                self.current.append(self._poison(lex, "number glued to letters"))  # "2x", "7th"
                return index + 1
            if len(word) == 1:
                after = self._lex_at(index + 1)
                if word == "a" and after is not None and after.kind == "word":
                    break  # "9 a day"
                if word == "x" and after is not None and after.spaced and _starts_operand(after):
                    break  # "3 x 4": multiplication, read as an operator word
                self.current.append(self._poison(lex, "number next to a variable"))
                return index + 1
            if word in _STOP_WORDS or word in _SCALE_WORDS or not word.isalpha():
                break
            units.append(_unit_name(word))
            index += 1
        if units:
            number.units += (units[-1],)  # the head noun names the unit: "duck eggs" → "egg"
            after = self._lex_at(index)
            if after is not None and after.kind in ("op", "pow") and (after.text in ("^", "**") or not after.spaced):
                self.current.append(self._poison(after, "a unit in an expression"))  # "5 cm^2", "3 degrees/5%"
        return index


def _runs(text: str, budget: _Budget) -> list[list[_Tok]]:
    return _RunBuilder(_lex(text), budget).build()
