"""OmegaPRM and exhaustive MC search logic, against a scripted engine."""
from __future__ import annotations

import math

import pytest

from stages.annotator import AnnotationContext
from stages.generate import PolicySpec
from stages.mc_exhaustive import MCExhaustive, MCExhaustiveSettings
from stages.omegaprm import OmegaPRM, OmegaPRMSettings, TreeState, priority
from stages.rollouts import MCEstimate, Rollout, RolloutSampler
from tests.scripted import ScriptedEngine, grade_text, make_problem, make_solution, prepare

SPEC = PolicySpec(model="scripted", prompt_template="{question}\n")
NO_POOL = dict(search_limit=0, initial_rollouts=0, filter_questions=False)


def context_for(engine, problems, **kw):
    sampler = RolloutSampler(engine, SPEC, {p.problem_id: p for p in problems}, grade_text)
    return AnnotationContext({p.problem_id: p for p in problems}, sampler, prepare, **kw)


def first_error_rule(first_error: int):
    """Prefixes of up to ``first_error`` steps can still succeed; longer ones cannot."""
    return lambda question, prefix: 0.5 if prefix <= first_error else 0.0


@pytest.mark.parametrize("first_error", range(8))
def test_binary_search_finds_every_first_error(first_error):
    problem = make_problem()
    solution = make_solution(problem, 8, correct=False)
    engine = ScriptedEngine(first_error_rule(first_error))
    result = OmegaPRM(OmegaPRMSettings(k=4, **NO_POOL)).annotate([solution], context_for(engine, [problem]))
    [labels] = result.labels
    assert labels.first_error_step == first_error
    assert labels.step_labels[:first_error] == [1] * first_error
    assert labels.step_labels[first_error] == 0
    assert labels.step_labels[first_error + 1:] == [-1] * (7 - first_error)
    # O(k log M) rollouts: at most ceil(log2 8) = 3 prefixes of k = 4
    assert engine.rollouts <= 4 * math.ceil(math.log2(8))
    assert labels.rollouts == engine.rollouts


def test_mc_zero_everywhere_blames_the_first_step():
    problem = make_problem()
    solution = make_solution(problem, 6, correct=False)
    engine = ScriptedEngine(lambda q, p: 0.0)
    [labels] = OmegaPRM(OmegaPRMSettings(k=4, **NO_POOL)).annotate([solution], context_for(engine, [problem])).labels
    assert labels.first_error_step == 0
    assert labels.step_labels == [0, -1, -1, -1, -1, -1]


def test_mc_one_everywhere_blames_the_last_step():
    problem = make_problem()
    solution = make_solution(problem, 6, correct=False)
    engine = ScriptedEngine(lambda q, p: 1.0)
    [labels] = OmegaPRM(OmegaPRMSettings(k=4, **NO_POOL)).annotate([solution], context_for(engine, [problem])).labels
    assert labels.first_error_step == 5
    assert labels.step_labels == [1, 1, 1, 1, 1, 0]
    assert labels.step_values[-1] == 0.0  # the whole wrong solution: MC known without rollouts


def test_one_step_solutions_need_no_rollouts():
    problem = make_problem()
    wrong, right = make_solution(problem, 1, False, 0), make_solution(problem, 1, True, 1)
    engine = ScriptedEngine(lambda q, p: 0.5)
    labels = OmegaPRM(OmegaPRMSettings(k=4, **NO_POOL)).annotate([wrong, right], context_for(engine, [problem])).labels
    assert [row.step_labels for row in labels] == [[0], [1]]
    assert engine.rollouts == 0


def test_question_filter_abstains_on_all_wrong_initial_rollouts():
    problem = make_problem()
    solutions = [make_solution(problem, 4, False, i) for i in range(4)]
    engine = ScriptedEngine(lambda q, p: 0.0)
    settings = OmegaPRMSettings(k=4, initial_rollouts=8, search_limit=0, filter_questions=True)
    labels = OmegaPRM(settings).annotate(solutions, context_for(engine, [problem])).labels
    assert all(row.abstained for row in labels)
    assert engine.rollouts == 4  # only the top-up of the initial rollouts
    assert "question filtered" in labels[0].detail


def test_searches_of_many_questions_share_engine_calls():
    problems = [make_problem(f"Q{i}") for i in range(10)]
    solutions = [make_solution(p, 16, False) for p in problems]
    engine = ScriptedEngine(lambda q, p: 0.5 if p <= int(q[1:]) else 0.0)
    labels = OmegaPRM(OmegaPRMSettings(k=2, **NO_POOL)).annotate(solutions, context_for(engine, problems)).labels
    assert [row.first_error_step for row in labels] == list(range(10))
    assert len(engine.calls) <= math.ceil(math.log2(16))  # rounds, not questions × rounds


def test_pool_priority_prefers_likely_right_states_and_short_rollouts():
    settings = OmegaPRMSettings()
    problem = make_problem()
    solution = make_solution(problem, 4, False)
    high = TreeState(solution, 1, MCEstimate(0.75, 3, 4, []))
    low = TreeState(solution, 2, MCEstimate(0.25, 1, 4, []))
    short, long = Rollout("x", False, 10), Rollout("y", False, 400)
    assert priority(high, short, 0, settings) > priority(low, short, 0, settings)
    assert priority(high, short, 0, settings) > priority(high, long, 0, settings)
    # exploration: an unvisited state gains on a visited one as visits accumulate
    high.visits = 5
    assert priority(low, short, 100, settings) - priority(high, short, 100, settings) > \
        priority(low, short, 0, settings) - priority(high, short, 0, settings)


def test_pool_searches_wrong_rollouts_and_adds_new_labelled_solutions():
    problem = make_problem()
    solutions = [make_solution(problem, 6, False, 0), make_solution(problem, 6, True, 1)]
    engine = ScriptedEngine(first_error_rule(3))
    settings = OmegaPRMSettings(k=4, search_limit=3, initial_rollouts=0, filter_questions=False)
    result = OmegaPRM(settings).annotate(solutions, context_for(engine, [problem]))
    assert 1 <= len(result.new_solutions) <= 3
    by_id = {row.solution_id: row for row in result.labels}
    for derived in result.new_solutions:
        assert derived.outcome_correct is False
        assert derived.finish_reason == "tree"
        assert by_id[derived.solution_id].first_error_step >= 0
    assert len(result.labels) == 2 + len(result.new_solutions)


def test_cached_rollouts_are_reused_and_larger_k_samples_only_the_difference():
    problem = make_problem()
    solution = make_solution(problem, 5, False)
    engine = ScriptedEngine(first_error_rule(2))
    context = context_for(engine, [problem])
    MCExhaustive(MCExhaustiveSettings(k=4)).annotate([solution], context)
    first = engine.rollouts
    assert first == 4 * 4  # 4 prefixes need rollouts; the full solution does not
    MCExhaustive(MCExhaustiveSettings(k=4)).annotate([solution], context)
    assert engine.rollouts == first  # all from the cache
    MCExhaustive(MCExhaustiveSettings(k=6)).annotate([solution], context)
    assert engine.rollouts == first + 4 * 2  # only the difference


def test_exhaustive_mc_soft_and_hard_labels():
    problem = make_problem()
    solution = make_solution(problem, 4, False)
    engine = ScriptedEngine(first_error_rule(1))
    [labels] = MCExhaustive(MCExhaustiveSettings(k=4)).annotate([solution], context_for(engine, [problem])).labels
    assert labels.step_labels == [1, 0, 0, 0]
    assert labels.step_values == [0.5, 0.0, 0.0, 0.0]
    assert labels.first_error_step == 1
    engine2 = ScriptedEngine(first_error_rule(1))
    [early] = MCExhaustive(MCExhaustiveSettings(k=4, steps="up_to_first_error")).annotate(
        [solution], context_for(engine2, [problem])).labels
    assert early.step_labels == [1, 0, -1, -1]
    assert engine2.rollouts < engine.rollouts


class FailingForQuestion(ScriptedEngine):
    """Fails every request whose prompt starts with ``bad``, as an engine that gave up after retries."""

    def generate(self, requests):
        from data_schemas.engine import GenerationResult

        results = super().generate(requests)
        return [GenerationResult(error="HTTP 500 (gave up after 4 attempts)") if r.prompt.startswith("bad") else res
                for r, res in zip(requests, results)]


@pytest.mark.parametrize("annotator", [OmegaPRM(OmegaPRMSettings(k=4, **NO_POOL)), MCExhaustive(MCExhaustiveSettings(k=4))])
def test_failed_rollouts_make_one_abstention_not_a_failed_job(annotator):
    good, bad = make_problem("good"), make_problem("bad")
    solutions = [make_solution(good, 6, False), make_solution(bad, 6, False)]
    engine = FailingForQuestion(first_error_rule(2))
    labels = {row.problem_id: row for row in annotator.annotate(solutions, context_for(engine, [good, bad])).labels}
    assert labels[good.problem_id].first_error_step == 2 and not labels[good.problem_id].abstained
    assert labels[bad.problem_id].abstained
    assert "gave up after 4 attempts" in labels[bad.problem_id].detail
