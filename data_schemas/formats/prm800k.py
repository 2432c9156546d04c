"""PRM800K raw labels (OpenAI, "Let's Verify Step by Step"): one labelling session per record.

Record: ``{labeler, timestamp, generation, question: {problem, ground_truth_answer, ...},
label: {steps: [{completions: [{text, rating, flagged}], human_completion, chosen_completion}], finish_reason}}``.

The imported solution is the trajectory the labeller followed: at each step the ``chosen_completion``; where
that is null, the labeller's own ``human_completion`` (written, in phase 1, when every completion was rated -1;
PRM800K counts it as a +1 step); where both are null the trajectory ends at that step.  A step that ends the
trajectory with a completion rated -1 (phase 2's ``found_error``: the pre-generated step, listed first) is kept
as the last step, labelled bad: that first error is what phase 2 labelled.

Ratings map to step labels: +1 → 1, 0 ("neutral", acceptable but no progress) → ``neutral_as``, -1 → 0;
everything after the first bad step is unlabelled.  The raw ratings and the finish reason stay in the labels'
``detail`` JSON.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from data_schemas.formats import (
    ImportResult,
    LabelledSolution,
    RecordFields,
    SkipRecord,
    import_records,
    read_records,
    unlabel_after_first_error,
)

ANNOTATOR = "human:prm800k"
POLICY_KEY = "prm800k"
ANSWER_MARKER = "# Answer"  # PRM800K solutions end with "\n\n# Answer\n\n<answer>"
RATINGS = (-1, 0, 1)
HUMAN_COMPLETION_RATING = 1


def _record_id(record: Mapping) -> str:
    return f"labeler {record.get('labeler', '?')} at {record.get('timestamp', '?')}"


def _completions(step: Mapping, at: str, fields: RecordFields) -> list[tuple[str, int | None]]:
    """(text, rating) of each completion of one step; a rating is -1, 0, 1 or null (never rated)."""
    completions = fields.take_list(step, "completions", dict, at=at, nullable=True) or []
    parsed = []
    for index, completion in enumerate(completions):
        completion_at = f"{at}completions[{index}]."
        text = fields.take(completion, "text", str, at=completion_at)
        rating = fields.take(completion, "rating", int, at=completion_at, nullable=True)
        if rating is not None and rating not in RATINGS:
            raise fields.error(completion_at + "rating", f"{rating} is not -1, 0 or 1")
        parsed.append((text, rating))
    return parsed


def _trajectory(label: Mapping, fields: RecordFields) -> tuple[list[str], list[int | None], list[int]]:
    """The followed steps, their ratings, and the indices of the steps a labeller wrote."""
    steps: list[str] = []
    ratings: list[int | None] = []
    human_steps: list[int] = []
    for step_index, step in enumerate(fields.take_list(label, "steps", dict, at="label.")):
        at = f"label.steps[{step_index}]."
        completions = _completions(step, at, fields)
        chosen = fields.take(step, "chosen_completion", int, at=at, nullable=True)
        human = fields.take(step, "human_completion", dict, at=at, nullable=True)
        if chosen is not None:
            if not 0 <= chosen < len(completions):
                raise fields.error(at + "chosen_completion",
                                   f"index {chosen} out of range for {len(completions)} completions")
            text, rating = completions[chosen]
        elif human is not None:
            text = fields.take(human, "text", str, at=at + "human_completion.")
            rating = HUMAN_COMPLETION_RATING
            human_steps.append(len(steps))
        else:
            error = next(((text, rating) for text, rating in completions if rating == -1), None)
            if error is not None:
                steps.append(error[0])
                ratings.append(error[1])
            break
        steps.append(text)
        ratings.append(rating)
    return steps, ratings, human_steps


def _final_answer(last_step: str) -> str | None:
    if ANSWER_MARKER not in last_step:
        return None
    return last_step.rsplit(ANSWER_MARKER, 1)[1].strip() or None


def records_from_prm800k(records: Iterable[dict], *, source: str, skip_invalid: bool = False,
                         neutral_as: int = 1) -> ImportResult:
    """Problems, solutions and ``human:prm800k`` labels from PRM800K raw records.

    ``neutral_as`` is the step label a rating of 0 becomes: 1 (default) follows PRM800K, whose instructions
    call neutral steps acceptable, and the usual binary PRM training on it; 0 counts them as errors;
    -1 leaves them unlabelled.  Sessions that end before their first step (``bad_problem`` and the like) have
    nothing to import and are listed in ``skipped``.
    """
    if neutral_as not in (-1, 0, 1):
        raise ValueError(f"neutral_as must be 1, 0 or -1, got {neutral_as!r}")
    label_for_rating = {1: 1, 0: neutral_as, -1: 0, None: -1}  # None: a chosen step nobody rated

    def convert(record: Mapping, fields: RecordFields) -> LabelledSolution:
        question = fields.take(record, "question", dict)
        problem = fields.take(question, "problem", str, at="question.")
        reference = fields.take(question, "ground_truth_answer", str, at="question.", nullable=True, optional=True)
        label = fields.take(record, "label", dict)
        finish_reason = fields.take(label, "finish_reason", str, at="label.")
        steps, ratings, human_steps = _trajectory(label, fields)
        if not steps:
            raise SkipRecord(f"no step to import (finish_reason {finish_reason!r})")
        return LabelledSolution(
            question=problem, reference=reference or "", domain="math", source_id="", policy_key=POLICY_KEY,
            annotator=ANNOTATOR, steps=steps,
            step_labels=unlabel_after_first_error([label_for_rating[rating] for rating in ratings]),
            # "solution": the labeller reached a step with the correct answer; other endings leave it unknown
            outcome_correct=True if finish_reason == "solution" else None,
            final_answer=_final_answer(steps[-1]),
            detail={"ratings": ratings, "finish_reason": finish_reason, "human_steps": human_steps,
                    "labeler": record.get("labeler")})

    return import_records(records, source=source, skip_invalid=skip_invalid, record_id=_record_id, convert=convert)


def read_prm800k(path: str | Path, *, skip_invalid: bool = False, neutral_as: int = 1) -> ImportResult:
    """``records_from_prm800k`` over a JSON-lines file (PRM800K's phase1/phase2 files)."""
    return records_from_prm800k(read_records(path), source=str(path), skip_invalid=skip_invalid,
                                neutral_as=neutral_as)
