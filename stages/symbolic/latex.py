"""LaTeX and typography → plain arithmetic text, the first thing the symbolic checker does to a step.

Steps write their arithmetic as LaTeX (``\\frac{1}{2}``, ``3 \\times 4``, ``$...$``), as typography
(``½``, ``×``, ``−``, ``²``) or as plain text.  ``normalize_latex`` rewrites the simple forms into the
plain text the lexer reads (``arithmetic``), and leaves a command where the math is something the
checker does not evaluate (``\\array``, ``\\mixednumber``, ``\\lbrace``), so that the expression next
to it is refused, not misread.  The text is untrusted and may be long: every rewrite is a regex
without nested quantifiers or one linear pass over balanced braces.
"""
from __future__ import annotations

import re

CURRENCY = "\ue000"  # private-use marker: "$18" → CURRENCY + "18", so the "$" survives as a unit

_DROP_ENVIRONMENT_RE = re.compile(r"\\(?:begin|end)\s*\{[^{}\n]{0,40}\}")
# matrices and arrays hold numbers that are no values on their own: their edges taint
_ARRAY_ENVIRONMENT_RE = re.compile(r"\\(?:begin|end)\s*\{(?:[pbvBV]?matrix|array|cases|smallmatrix)\*?\}")
# "$...$" is inline math when its content touches both dollars ("$2\cdot12=24$"); "$18 and $20" is money
_INLINE_MATH_RE = re.compile(r"(?<!\\)\$(?=[^\s$])([^$]{0,2000}?[^\s$\\])\$")
_CURRENCY_RE = re.compile(r"\\?[$£€]\s?(?=\.?[0-9])")
_DISPLAY_DELIMITER_RE = re.compile(r"\\[\[\]()]|\$")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![A-Za-z])\s*\.?")
_DEGREES_RE = re.compile(r"\^\s*+(?:\{\s*+)?\\circ\s*+\}?")
_FRACTION_COMMANDS = ("\\frac", "\\dfrac", "\\tfrac", "\\cfrac")
_TEXT_COMMANDS = ("\\text", "\\textbf", "\\textit", "\\textrm", "\\mathrm", "\\mbox", "\\mathbf", "\\operatorname")
_GROUP_COMMAND_RE = re.compile(r"\\(?:[dtc]?frac|text(?:bf|it|rm)?|mathrm|mbox|mathbf|operatorname|boxed|fbox)(?![A-Za-z])")
_TIMES_RE = re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])|[×·⋅∗]")
_DIVIDE_RE = re.compile(r"\\div(?![A-Za-z])|÷")
# Relations other than "=" end a run without tainting it: "3 + 4 = 7 \le 9" still checks 3 + 4 = 7.
_BREAK_RE = re.compile(
    r"\\(?:leq?|geq?|lt|gt|neq?|approx|equiv|simeq|sim|cong|to|rightarrow|Rightarrow|implies|Longrightarrow"
    r"|longrightarrow|iff|Leftrightarrow|mapsto)(?![A-Za-z])|[≈≤≥≠→⇒]")
_SPACE_COMMAND_RE = re.compile(r"\\(?:quad|qquad|displaystyle|textstyle|limits|nonumber|hfill)(?![A-Za-z])|\\[,;:! ]|\\\\|&|~")
_SPACED_DASH_RE = re.compile(r"(?<=\s)[–−](?=\s)|−")  # "120 – 80" is a minus; "5–10" stays a range
_VULGAR_FRACTIONS = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅖": "2/5",
                     "⅗": "3/5", "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8", "⅞": "7/8"}
_VULGAR_RE = re.compile(r"(?<![0-9])(?:([0-9]{1,12}) ?)?([%s])" % "".join(_VULGAR_FRACTIONS))
_SUPERSCRIPTS = {"²": "^2", "³": "^3"}


def _brace_pairs(text: str) -> dict[int, int]:
    """Position of every balanced ``{`` → position of its ``}`` (escaped braces are not braces)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            stack.append(index)
        elif char == "}" and stack:
            pairs[stack.pop()] = index
        index += 1
    return pairs


def _group_argument(text: str, position: int, pairs: dict[int, int]) -> tuple[int, int, int] | None:
    """A command argument at ``position`` (spaces skipped): ``{...}`` or one alphanumeric character.
    Returns (content start, content end, end of the argument)."""
    while position < len(text) and text[position] == " ":
        position += 1
    if position >= len(text):
        return None
    if text[position] == "{":
        close = pairs.get(position)
        return (position + 1, close, close + 1) if close is not None else None
    if text[position].isalnum():
        return position, position + 1, position + 1
    return None


def _rewrite_groups(text: str) -> str:
    """``\\frac{a}{b}`` → ``((a)/(b))``, ``\\text{w}`` → `` w ``, ``\\boxed{x}`` → ``(x)``, nested to
    any depth in one linear pass (the edits of inner groups fall strictly inside the outer ones)."""
    pairs = _brace_pairs(text)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
    for match in _GROUP_COMMAND_RE.finditer(text):
        command, start = match.group(), match.start()
        first = _group_argument(text, match.end(), pairs)
        if first is None:
            continue
        if command in _FRACTION_COMMANDS:
            second = _group_argument(text, first[2], pairs)
            if second is None:
                continue
            # "2\frac{1}{2}" is a mixed number (2.5) in MATH, a product elsewhere: refuse to guess.
            before = start - 1
            while before >= 0 and text[before] == " ":
                before -= 1
            opener = " \\mixednumber ((" if before >= 0 and text[before].isdigit() else "(("
            edits += [(start, first[0], opener), (first[1], second[0], ")/("), (second[1], second[2], "))")]
        elif command in _TEXT_COMMANDS:
            edits += [(start, first[0], " "), (first[1], first[2], " ")]
        else:  # \boxed, \fbox
            edits += [(start, first[0], "("), (first[1], first[2], ")")]
    if not edits:
        return text
    edits.sort()
    pieces, cursor = [], 0
    for start, end, replacement in edits:
        if start < cursor:
            continue  # overlapping edits cannot come from well-formed groups; keep the first
        pieces += [text[cursor:start], replacement]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _vulgar(match: re.Match) -> str:
    whole, fraction = match.group(1), _VULGAR_FRACTIONS[match.group(2)]
    return f" ({whole}+{fraction})" if whole else f" ({fraction})"


def normalize_latex(text: str) -> str:
    """Plain arithmetic text from simple LaTeX and typography (plain text passes through).  A ``$``
    before a number becomes the currency marker; other ``$`` (math delimiters) become spaces."""
    text = _ARRAY_ENVIRONMENT_RE.sub(" \\array ", text)
    text = _DROP_ENVIRONMENT_RE.sub(" ", text)
    text = _INLINE_MATH_RE.sub(r" \1 ", text.replace("$$", " "))
    text = _CURRENCY_RE.sub(" " + CURRENCY, text.replace("\\%", "%"))
    text = _DISPLAY_DELIMITER_RE.sub(" ", text)
    text = _LEFT_RIGHT_RE.sub("", text)
    text = _DEGREES_RE.sub(" degrees ", text).replace("°", " degrees ")
    text = _rewrite_groups(text)
    text = _TIMES_RE.sub("*", text)
    text = _DIVIDE_RE.sub("/", text)
    text = _BREAK_RE.sub(" ; ", text)
    text = _SPACE_COMMAND_RE.sub(" ", text)
    text = _SPACED_DASH_RE.sub("-", text)
    if any(char in text for char in _VULGAR_FRACTIONS):
        text = _VULGAR_RE.sub(_vulgar, text)
    for superscript, power in _SUPERSCRIPTS.items():
        text = text.replace(superscript, power)
    text = text.replace("\\{", " \\lbrace ").replace("\\}", " \\rbrace ")
    return text.replace("{", "(").replace("}", ")")
