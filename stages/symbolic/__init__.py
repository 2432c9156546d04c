"""Symbolic annotator (id prefix ``symbolic``): check the arithmetic a step writes down.

Per step it finds the relations it can check and says 1 (every checked relation holds, at least one
was checked), 0 (some relation provably fails) or -1 (nothing checkable).  What it reads:

- ``lhs = rhs`` runs found inside prose (``She has 3 + 4 = 7 apples``), chains ``a = b = c``
  (adjacent pairs), GSM8K calculator annotations ``<<16-3-4=9>>`` (each one);
- ``+ - * / ^ **``, parentheses, implicit products ``2(3+4)``, decimals, thousands separators,
  ``$18``, ``25%``, ``25% of 80``, mixed numbers ``3 1/2``, unit words (``18 dollars``, ``5 cm``),
  ``3 times 4``, ``n!``;
- simple LaTeX: ``\\frac`` ``\\dfrac`` ``\\times`` ``\\cdot`` ``\\div`` ``\\left( \\right)`` ``^{2}``
  ``$...$`` ``\\[ \\]`` ``\\text{}`` ``\\boxed{}``;
- the toy domain (``previous_value``): a step that is a bare expression must keep that value;
- the final answer (``Answer: N``, ``\\boxed{N}``, ``#### N``) against the problem's reference.

Model output is untrusted text.  Nothing here calls ``eval``/``exec`` or sympy's parsers: a
restricted lexer and a recursive-descent parser evaluate with exact ``Fraction`` arithmetic under
hard bounds (text length, digits per number, exponent and result size, nesting depth, factorial,
operation count and a wall-clock deadline per step).  Anything refused or not understood makes that
relation *unchecked*, never correct.

Prose is ambiguous, so the reading is conservative both ways.  An expression whose edge touches text
it cannot read (``x + 3 = 7``, ``f(3) = 7``, ``2\\sqrt{3}``, ``3:2``, ``$350 000``) is dropped, not
guessed.  A relation that fails is called wrong only when no common loose usage explains it: two bare
numbers (``2 dozen = 24``), a bare number that labels a line (``4 students = 4 * 1.5 = 6``), an
integer or truncated rounding (``100 / 3 = 33``), ``100%`` meaning "as a percentage", ``28 / 1/5``
meaning "divided by a fifth", a running total written as a chain (``3/2 = 1.50 + 3.00 = 4.50``).
A false "wrong" poisons a veto; a lost check only costs coverage.  Calibration: of the ~40,000 lines
of the 8,792 GSM8K reference solutions (test + train), 28 are called wrong, each a slip in the written
text ("2*8 = 24", "70 + 40 = 100"); of MATH-500's solutions, one paragraph (a real typo) and no final answer.

A symbolic 1 means "the arithmetic written here holds", not "the step is right": a wrong plan with
correct arithmetic is 1.

The package, one job a module, in the order a step goes through them:

- ``latex``: LaTeX and typography → plain text (``normalize_latex``);
- ``arithmetic``: the bounds, the lexer, the tokens and the bounded ``Fraction`` evaluator;
- ``runs``: the runs of arithmetic found in prose, poisoned where they touch unreadable text;
- ``sides``: one side of a relation with its readings, and the tolerances of "equal";
- ``relations``: judging ``a = b`` (and excusing loose usage), ``StepCheck``, ``check_step``;
- ``final_answers``: ``stated_answer``, ``answer_side``, ``compare_answers``;
- ``annotator``: ``SymbolicChecker`` and the ``SETTINGS`` its id hashes.
"""
from __future__ import annotations

from stages.symbolic.annotator import SETTINGS, SymbolicChecker
from stages.symbolic.final_answers import answer_side, compare_answers, stated_answer
from stages.symbolic.latex import normalize_latex
from stages.symbolic.relations import CORRECT, UNKNOWN, WRONG, check_step

__all__ = ["CORRECT", "SETTINGS", "UNKNOWN", "WRONG", "SymbolicChecker", "answer_side", "check_step",
           "compare_answers", "normalize_latex", "stated_answer"]
