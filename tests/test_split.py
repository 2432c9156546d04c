"""Step splitting: every strategy, and the invariant rollouts rely on: text[start:end] == step."""
from __future__ import annotations

import random
import re

import pytest

from data_schemas.records import Solution
from stages.split import SPLIT_STRATEGIES, split_solution, split_solutions
from toy import domain as toy_domain
from toy.tokenizer import build_tokenizer


def whitespace_tokens(text: str) -> list[tuple[int, int]]:
    """A fake tokenizer: one token per run of non-space characters."""
    return [(match.start(), match.end()) for match in re.finditer(r"\S+", text)]


def split(text: str, strategy: str, **options) -> list[str]:
    steps, offsets = split_solution(text, strategy, **options)
    assert_exact_spans(text, steps, offsets)
    return steps


def assert_exact_spans(text: str, steps: list[str], offsets: list[dict]) -> None:
    assert len(steps) == len(offsets)
    previous_end = 0
    for step, offset in zip(steps, offsets):
        assert text[offset["start"]:offset["end"]] == step
        assert step and step == step.strip()
        assert offset["start"] >= previous_end  # in order, not overlapping
        previous_end = offset["end"]


QWEN_STYLE = (
    "To find the total, we first compute the eggs left.\n\n"
    "Janet has 16 - 3 - 4 = 9 eggs left.\n"
    "She sells each for $2.\n"
    "   \n"
    "So she makes 9 * 2 = 18 dollars.\n\n\n"
    "The answer is \\boxed{18}.\n"
)


def test_blank_line_splits_paragraphs():
    assert split(QWEN_STYLE, "blank_line") == [
        "To find the total, we first compute the eggs left.",
        "Janet has 16 - 3 - 4 = 9 eggs left.\nShe sells each for $2.",
        "So she makes 9 * 2 = 18 dollars.",
        "The answer is \\boxed{18}.",
    ]


def test_blank_line_handles_crlf_and_surrounding_whitespace():
    assert split("  first \r\n\r\n second\r\nline  \n \t\n", "blank_line") == ["first", "second\r\nline"]


def test_line_gives_one_step_per_non_empty_line():
    assert split(QWEN_STYLE, "line") == [
        "To find the total, we first compute the eggs left.",
        "Janet has 16 - 3 - 4 = 9 eggs left.",
        "She sells each for $2.",
        "So she makes 9 * 2 = 18 dollars.",
        "The answer is \\boxed{18}.",
    ]


def test_line_recovers_toy_solution_steps():
    expression = "(3+4)*2-5"
    assert split(toy_domain.solution_text(expression), "line") == toy_domain.solution_steps(expression)


def test_step_marker_splits_at_markers_and_keeps_preamble_with_first_step():
    text = ("Let us solve it.\n"
            "## Step 1: Count the eggs.\n16 - 3 - 4 = 9\n\n"
            "step 2. Multiply by the price, as in Step 1.\n"
            "**Step 3:** 9 * 2 = 18\n"
            "  - Step 4) Done: \\boxed{18}")
    assert split(text, "step_marker") == [
        "Let us solve it.\n## Step 1: Count the eggs.\n16 - 3 - 4 = 9",
        "step 2. Multiply by the price, as in Step 1.",  # "Step 1." mid-line is no marker
        "**Step 3:** 9 * 2 = 18",
        "- Step 4) Done: \\boxed{18}",
    ]


def test_step_marker_without_markers_falls_back_to_blank_line():
    assert split(QWEN_STYLE, "step_marker") == split(QWEN_STYLE, "blank_line")


def test_token_budget_needs_token_offsets():
    with pytest.raises(ValueError, match="token_offsets"):
        split_solution(QWEN_STYLE, "token_budget")


def test_token_budget_pieces_are_about_equal_and_cut_at_token_boundaries():
    text = " ".join(f"w{index}" for index in range(160))  # 160 tokens, no better place than a space
    steps = split(text, "token_budget", token_offsets=whitespace_tokens, target_pieces=16)
    assert len(steps) == 16
    assert [len(step.split()) for step in steps] == [10] * 16
    token_starts = {start for start, _ in whitespace_tokens(text)}
    token_ends = {end for _, end in whitespace_tokens(text)}
    for offset in split_solution(text, "token_budget", token_offsets=whitespace_tokens, target_pieces=16)[1]:
        assert offset["start"] in token_starts and offset["end"] in token_ends


def test_token_budget_prefers_newline_then_sentence_end_near_the_ideal_cut():
    # 40 tokens, 2 pieces: the ideal cut is before token 20; a newline sits before token 22.
    words = [f"w{index}" for index in range(40)]
    text = " ".join(words[:22]) + "\n" + " ".join(words[22:])
    assert split(text, "token_budget", token_offsets=whitespace_tokens, target_pieces=2)[0].split()[-1] == "w21"
    # No newline; a sentence ends after token 18.
    words[18] += "."
    text = " ".join(words)
    assert split(text, "token_budget", token_offsets=whitespace_tokens, target_pieces=2)[0].endswith("w18.")


def test_token_budget_with_fewer_tokens_than_pieces_gives_one_piece_per_token():
    assert split("a b c", "token_budget", token_offsets=whitespace_tokens, target_pieces=16) == ["a", "b", "c"]
    assert split("a b c", "token_budget", token_offsets=whitespace_tokens, target_pieces=1) == ["a b c"]
    with pytest.raises(ValueError, match="target_pieces"):
        split_solution("a b c", "token_budget", token_offsets=whitespace_tokens, target_pieces=0)


def test_token_budget_with_a_real_tokenizer():
    tokenizer = build_tokenizer()  # the embedded model's character-level tokenizer (tokenizers.Tokenizer)
    expression = "(3+4)*2-5*(6-1)+8"
    text = toy_domain.solution_text(expression)

    def offsets(value: str) -> list[tuple[int, int]]:
        return list(tokenizer.encode(value).offsets)

    steps = split(text, "token_budget", token_offsets=offsets, target_pieces=3)
    assert len(steps) == 3
    # Every ideal cut in this text has a newline within reach: the pieces are whole lines.
    assert "\n".join(steps) == text


@pytest.mark.parametrize("strategy", SPLIT_STRATEGIES)
@pytest.mark.parametrize("text", ["", "   ", "\n\n \t\n"])
def test_empty_text_has_no_steps(strategy, text):
    assert split_solution(text, strategy, token_offsets=whitespace_tokens) == ([], [])


def test_unknown_strategy_names_the_valid_ones():
    with pytest.raises(ValueError, match="blank_line, line, step_marker, token_budget"):
        split_solution("a", "sentences")


@pytest.mark.parametrize("strategy", SPLIT_STRATEGIES)
def test_spans_are_exact_on_random_text(strategy):
    rng = random.Random(7)
    alphabet = ["a", "bc", " ", "  ", "\n", "\n\n", " \n \n", "\t", "Step 1:", "## Step 2.", ".", "x=3", "\r\n"]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        steps, offsets = split_solution(text, strategy, token_offsets=whitespace_tokens,
                                        target_pieces=rng.randint(1, 6))
        assert_exact_spans(text, steps, offsets)
        if strategy in ("blank_line", "line", "token_budget"):  # these lose nothing but whitespace
            assert re.sub(r"\s", "", "".join(steps)) == re.sub(r"\s", "", text)


def test_split_solutions_fills_records():
    solutions = [Solution(f"s-{index}", "p-0", "policy", index, "Q: 1+2*3\n", text)
                 for index, text in enumerate(["2*3+1\n7+0\nAnswer: 7", ""])]
    assert split_solutions(solutions, "line") is solutions
    assert solutions[0].steps == ["2*3+1", "7+0", "Answer: 7"]
    assert solutions[0].step_offsets == [{"start": 0, "end": 5}, {"start": 6, "end": 9}, {"start": 10, "end": 19}]
    assert (solutions[1].steps, solutions[1].step_offsets) == ([], [])
