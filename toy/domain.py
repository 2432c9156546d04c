"""The synthetic arithmetic domain of the embedded default.

A problem is an integer expression such as ``(3+4)*2-5``.  A solution rewrites it one operation per
line until a single number is left, written as the final line ``Answer: N``::

    Q: (3+4)*2-5
    7*2-5
    14-5
    Answer: 9

Every step can be checked exactly: a step is correct when it parses, removes exactly one operation
from the expression before it, and keeps the value of the *problem*.  So a step that computes
``3+4=8`` is wrong, and so is every later step built on it (the value was lost), which is the
process-reward notion of a bad step.  The checker is the ground truth of our label benchmarks.

Everything here is pure Python over short strings: no ``eval``, bounded sizes.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

ANSWER_PREFIX = "Answer:"
QUESTION_PREFIX = "Q: "
OPERATORS = "+-*"
PRECEDENCE = {"+": 1, "-": 1, "*": 2}
# Longest expression or number the parser accepts: model output is untrusted and may be endless.
MAX_EXPRESSION_CHARS = 200
MAX_NUMBER_DIGITS = 12

_TOKEN_RE = re.compile(r"\s*(\d+|[-+*()])")


class ParseError(ValueError):
    """The text is not an expression of this domain."""


@dataclass(frozen=True)
class Difficulty:
    """The knob that sets how hard problems are."""

    # The default: 3 to 5 operations, one band wider than most training problems (2 to 5) at the top,
    # where the embedded model's accuracy lands inside 30-80% (README: the embedded default).
    min_ops: int = 3
    max_ops: int = 5
    max_operand: int = 9
    operators: str = OPERATORS
    paren_prob: float = 0.3
    # Problems whose canonical intermediate values leave [0, max_value] are redrawn: it keeps
    # numbers short (a tiny model can learn them) and avoids negative numbers.
    max_value: int = 99


DEFAULT_DIFFICULTY = Difficulty()


# ---------------------------------------------------------------- parsing and evaluation

def tokenize(text: str) -> list[str]:
    """Split an expression into number, operator and parenthesis tokens; reject anything else."""
    text = text.strip()
    if not text:
        raise ParseError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ParseError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if not match:
            raise ParseError(f"unexpected character {text[position]!r} at {position}")
        token = match.group(1)
        if token.isdigit() and len(token) > MAX_NUMBER_DIGITS:
            raise ParseError("number too long")
        tokens.append(token)
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tokens


def _parse(tokens: list[str]):
    """Recursive-descent parse into a tree: int | (op, left, right).  Unary minus on numbers only."""
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = tokens[position]
        position += 1
        return token

    def primary():
        token = peek()
        if token is None:
            raise ParseError("expression ends early")
        if token == "(":
            take()
            node = expression()
            if peek() != ")":
                raise ParseError("missing ')'")
            take()
            return ("()", node)
        if token == "-" and position + 1 < len(tokens) and tokens[position + 1].isdigit():
            take()
            return -int(take())
        if token.isdigit():
            return int(take())
        raise ParseError(f"unexpected {token!r}")

    def term():
        node = primary()
        while peek() == "*":
            take()
            node = ("*", node, primary())
        return node

    def expression():
        node = term()
        while peek() in ("+", "-"):
            op = take()
            node = (op, node, term())
        return node

    tree = expression()
    if position != len(tokens):
        raise ParseError(f"unexpected {tokens[position]!r}")
    return tree


def parse(text: str):
    return _parse(tokenize(text))


def evaluate_tree(node) -> int:
    if isinstance(node, int):
        return node
    if node[0] == "()":
        return evaluate_tree(node[1])
    op, left, right = node
    a, b = evaluate_tree(left), evaluate_tree(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def count_ops(node) -> int:
    if isinstance(node, int):
        return 0
    if node[0] == "()":
        return count_ops(node[1])
    return 1 + count_ops(node[1]) + count_ops(node[2])


def evaluate(text: str) -> int:
    return evaluate_tree(parse(text))


def render(node) -> str:
    """Write a tree back as text, keeping the parentheses the problem had."""
    if isinstance(node, int):
        return str(node)
    if node[0] == "()":
        inner = node[1]
        if isinstance(inner, int):  # "(7)" is written "7": the reduction drops the parentheses
            return str(inner)
        return "(" + render(inner) + ")"
    op, left, right = node
    return render(left) + op + render(right)


# ---------------------------------------------------------------- canonical solution

def _reduce_once(node):
    """Evaluate the one operation a careful solver does next: innermost parentheses first, then
    multiplication before addition and subtraction, left to right.  Returns the new tree."""
    if isinstance(node, int):
        raise ValueError("nothing to reduce")
    if node[0] == "()":
        inner = node[1]
        if isinstance(inner, int):
            return inner
        reduced = _reduce_once(inner)
        return reduced if isinstance(reduced, int) else ("()", reduced)
    op, left, right = node
    if _has_parens_with_ops(left):
        return (op, _reduce_once(left), right)
    if _has_parens_with_ops(right):
        return (op, left, _reduce_once(right))
    if not isinstance(left, int):
        return (op, _reduce_once(left), right)
    if not isinstance(right, int):
        # a + b*c: the multiplication on the right comes first; a - b + c is left-assoc so the
        # right child of + or - is never a bare + or - without parentheses.
        return (op, left, _reduce_once(right))
    return evaluate_tree(node)


def _has_parens_with_ops(node) -> bool:
    if isinstance(node, int):
        return False
    if node[0] == "()":
        return not isinstance(node[1], int)
    return _has_parens_with_ops(node[1]) or _has_parens_with_ops(node[2])


def _strip_trivial_parens(node):
    if isinstance(node, int):
        return node
    if node[0] == "()":
        inner = _strip_trivial_parens(node[1])
        return inner if isinstance(inner, int) else ("()", inner)
    return (node[0], _strip_trivial_parens(node[1]), _strip_trivial_parens(node[2]))


def solution_steps(expression: str) -> list[str]:
    """The canonical steps of a problem; the last one is ``Answer: N``."""
    node = parse(expression)
    steps: list[str] = []
    while not isinstance(node, int):
        node = _strip_trivial_parens(_reduce_once(node))
        steps.append(render(node) if not isinstance(node, int) else f"{ANSWER_PREFIX} {node}")
    return steps


def _leaves(node) -> list[int]:
    if isinstance(node, int):
        return [node]
    if node[0] == "()":
        return _leaves(node[1])
    return _leaves(node[1]) + _leaves(node[2])


def canonical_values(expression: str) -> list[int]:
    """Every number the canonical solution writes, problem included."""
    node = parse(expression)
    values = _leaves(node)
    while not isinstance(node, int):
        node = _strip_trivial_parens(_reduce_once(node))
        values.extend(_leaves(node))
    return values


# ---------------------------------------------------------------- problems

@dataclass(frozen=True)
class ToyProblem:
    problem_id: str
    expression: str
    answer: int

    @property
    def question(self) -> str:
        return self.expression


def _random_tree(rng: random.Random, n_ops: int, difficulty: Difficulty):
    if n_ops == 0:
        return rng.randint(1, difficulty.max_operand)
    left_ops = rng.randint(0, n_ops - 1)
    op = rng.choice(difficulty.operators)
    left = _random_tree(rng, left_ops, difficulty)
    right = _random_tree(rng, n_ops - 1 - left_ops, difficulty)
    # Parentheses wherever precedence needs them, and sometimes where it does not matter.
    for side in ("left", "right"):
        child = left if side == "left" else right
        if isinstance(child, int):
            continue
        needed = PRECEDENCE[child[0]] < PRECEDENCE[op] or (side == "right" and op in "-" and child[0] in "+-")
        if needed or rng.random() < difficulty.paren_prob * 0.5:
            if side == "left":
                left = ("()", child)
            else:
                right = ("()", child)
    return (op, left, right)


def generate_problem(rng: random.Random, difficulty: Difficulty = DEFAULT_DIFFICULTY) -> str:
    """One expression whose canonical intermediates stay in [0, max_value]."""
    while True:
        n_ops = rng.randint(difficulty.min_ops, difficulty.max_ops)
        tree = _random_tree(rng, n_ops, difficulty)
        text = render(tree)
        values = canonical_values(text)
        if all(0 <= v <= difficulty.max_value for v in values):
            return text


def generate_problems(n: int, seed: int = 0, difficulty: Difficulty = DEFAULT_DIFFICULTY) -> list[ToyProblem]:
    """``n`` distinct problems, the same for the same seed and difficulty."""
    rng = random.Random(seed)
    seen: set[str] = set()
    problems: list[ToyProblem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct problems at this difficulty")
        expression = generate_problem(rng, difficulty)
        if expression in seen:
            continue
        seen.add(expression)
        problems.append(ToyProblem(f"toy-{seed}-{len(problems)}", expression, evaluate(expression)))
    return problems


def solution_text(expression: str) -> str:
    return "\n".join(solution_steps(expression))


def policy_prompt(expression: str) -> str:
    return f"{QUESTION_PREFIX}{expression}\n"


# ---------------------------------------------------------------- the exact checker

@dataclass
class CheckResult:
    step_correct: list[bool]  # each step judged against the one before it and the problem's value
    first_error_step: int  # -1: no wrong step
    final_answer: int | None
    answer_correct: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[bool]:
        """Process labels: a step is good when it and every step before it are correct."""
        return [self.first_error_step < 0 or index < self.first_error_step for index in range(len(self.step_correct))]


def extract_answer(text: str) -> int | None:
    """The integer on the ``Answer:`` line, or None."""
    match = re.search(r"Answer:\s*(-?\d{1,12})\s*$", text.strip().split("\n")[-1]) if text.strip() else None
    return int(match.group(1)) if match else None


def check_steps(expression: str, steps: list[str]) -> CheckResult:
    """Judge every step of a solution to ``expression`` exactly (see the module docstring)."""
    target = evaluate(expression)
    previous_ops = count_ops(parse(expression))
    verdicts: list[bool] = []
    reasons: list[str] = []
    final_answer: int | None = None
    for index, raw in enumerate(steps):
        step = raw.strip()
        is_answer = step.startswith(ANSWER_PREFIX)
        body = step[len(ANSWER_PREFIX):] if is_answer else step
        try:
            tree = parse(body)
        except ParseError as error:
            verdicts.append(False)
            reasons.append(f"malformed: {error}")
            previous_ops = -1
            continue
        ops = count_ops(tree)
        value = evaluate_tree(tree)
        if is_answer:
            if index != len(steps) - 1:
                ok, reason = False, "answer before the last step"
            elif ops != 0:
                ok, reason = False, "answer is not a single number"
            else:
                final_answer = value
                ok, reason = True, ""
        else:
            ok, reason = True, ""
            if ops == 0:
                ok, reason = False, "a bare number must be written as the answer line"
        if ok and previous_ops >= 0 and previous_ops - ops != 1:
            ok, reason = False, f"removes {previous_ops - ops} operations, not one"
        if ok and value != target:
            ok, reason = False, f"value {value} differs from the problem's {target}"
        verdicts.append(ok)
        reasons.append(reason)
        previous_ops = ops
    first_error = next((i for i, ok in enumerate(verdicts) if not ok), -1)
    return CheckResult(verdicts, first_error, final_answer, final_answer == target, reasons)


def split_lines(solution: str) -> list[str]:
    return [line for line in solution.strip().split("\n") if line.strip()]


def check_solution(expression: str, solution: str) -> CheckResult:
    return check_steps(expression, split_lines(solution))


# ---------------------------------------------------------------- the judging format

JUDGE_PREFIX = "J: "
VERDICT_PREFIX = "Verdict: \\boxed{"


def judge_prompt(expression: str, steps: list[str]) -> str:
    """The embedded judge's prompt: the problem and its numbered steps (0-based, as ProcessBench).

    The judge answers Qwen-style, one check per step until the first error (see judge_target), then
    ``Verdict: \\boxed{k}`` with the earliest wrong step, or -1."""
    numbered = "".join(f"{index}: {step.strip()}\n" for index, step in enumerate(steps))
    return f"{JUDGE_PREFIX}{expression}\n{numbered}"


def next_operation(expression: str) -> str:
    """The one operation the canonical solution does next, written ``a*b=c`` (the judge's worked check)."""
    node = parse(expression)
    while True:
        if isinstance(node, int):
            raise ValueError("nothing to reduce")
        if node[0] == "()":
            node = node[1]
            continue
        op, left, right = node
        if _has_parens_with_ops(left) or (not isinstance(left, int) and not _has_parens_with_ops(right)):
            node = left
        elif not isinstance(right, int):
            node = right
        else:
            return f"{left}{op}{right}={evaluate_tree(node)}"


def judge_target(expression: str, steps: list[str]) -> str:
    """What a perfect judge writes: for each step, the operation it expects next worked out
    (``14*4=56``), the expression that gives, and the step as written beside it, then ok or wrong,
    stopping at the first wrong step; then the verdict.

    The worked operation comes first on purpose: ``14*4=`` appears nowhere in the prompt, so the judge
    must compute the value rather than copy the step it is checking (a tiny model copies whenever it
    can), and setting expected and written side by side turns checking into a comparison."""
    verdict = check_steps(expression, steps)
    lines = []
    previous = expression
    for index, step in enumerate(steps):
        if count_ops(parse(previous)) > 0:
            worked = f"{next_operation(previous)} {solution_steps(previous)[0]}"
        else:
            worked = previous
        wrong = index == verdict.first_error_step
        lines.append(f"{index}: {worked} | {step.strip()} {'wrong' if wrong else 'ok'}")
        if wrong:
            break
        previous = step
    return "\n".join(lines) + f"\n{VERDICT_PREFIX}{verdict.first_error_step}}}"


COMPARE_PREFIX = "C: "


def compare_example(rng: random.Random, expression: str) -> tuple[str, str]:
    """An auxiliary training pair for the judge's one hard skill: are two short expressions the same?"""
    steps = solution_steps(expression)
    left = rng.choice(steps)
    right = left
    if rng.random() < 0.5:
        right = corrupt_solution(rng, left.removeprefix(ANSWER_PREFIX).strip())[0] if count_ops(parse(
            left.removeprefix(ANSWER_PREFIX).strip())) > 0 else left
        if right == left or rng.random() < 0.3:
            numbers = list(re.finditer(r"\d+", left))
            target = rng.choice(numbers)
            right = left[:target.start()] + str(int(target.group()) + rng.choice([1, 2, 10])) + left[target.end():]
    return f"{COMPARE_PREFIX}{left} | {right} ", "ok" if left == right else "wrong"


def corrupt_solution(rng: random.Random, expression: str) -> list[str]:
    """A solution with one planted arithmetic slip, continued correctly from the slip.

    The slip changes one number of one step, as a model that miscomputes would; what follows
    reduces the corrupted expression faithfully, so the first wrong step is the slipped one.  A
    change that keeps the value (a factor of a product with zero) is no slip: it is drawn again."""
    steps = solution_steps(expression)
    for _ in range(50):
        index = rng.randrange(len(steps))
        step = steps[index]
        is_answer = step.startswith(ANSWER_PREFIX)
        body = step[len(ANSWER_PREFIX):].strip() if is_answer else step
        target = rng.choice(list(re.finditer(r"\d+", body)))
        value = int(target.group())
        delta = rng.choice([-10, -2, -1, -1, 1, 1, 2, 10])
        new_value = value + delta if value + delta >= 0 else value + abs(delta)
        corrupted = body[: target.start()] + str(new_value) + body[target.end():]
        if is_answer:
            planted = steps[:index] + [f"{ANSWER_PREFIX} {corrupted}"]
        else:
            planted = steps[:index] + [corrupted] + solution_steps(corrupted)
        if check_steps(expression, planted).first_error_step == index:
            return planted
    # Every draw kept the value (e.g. 0*(...) everywhere): a wrong final answer is always a slip.
    answer = evaluate(expression)
    return steps[:-1] + [f"{ANSWER_PREFIX} {answer + 1}"]


def parse_verdict(text: str) -> int | None:
    """The step index in the last ``\\boxed{k}`` of a judge's answer; None when there is none."""
    matches = re.findall(r"\\boxed\{\s*(-?\d{1,4})\s*\}", text[-2000:])
    return int(matches[-1]) if matches else None
