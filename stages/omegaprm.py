"""OmegaPRM (Luo et al. 2024, arXiv 2406.06592): binary-search Monte-Carlo labelling with a rollout pool.

Per question:
1. Initial rollouts from the question (the policy's N solutions count among them; ``initial_rollouts``
   in all) give MC(root).  With ``filter_questions``, a question whose initial rollouts are all right
   or all wrong is dropped, as in the paper: its solutions are abstained on, with the reason.
2. Every wrong solution is binary-searched for its first error: roll out k times from the midpoint
   prefix; MC > 0 means the error lies after it, else at or before it; repeat until one step remains.
   O(k log M) rollouts instead of exhaustive MC's O(k M).
3. The pool: every wrong rollout from a state with 0 < MC < 1.  Each iteration pops
   argmax Q(s,r) + U(s), Q = α^(1−MC(s)) · β^(len(r)/L), U = c_puct · sqrt(Σ N) / (1 + N(s)), binary-searches
   the popped rollout (a new solution continuing state s) and adds the new states it measured.  Up to
   ``search_limit`` iterations per question.
Labels: hard = 1[MC > 0] before the first error, 0 at it, -1 (unlabelled) after; soft = MC where measured.
A correct solution is a witness that each of its prefixes can reach the answer: all its steps are 1.

All questions of a shard advance together (one engine call per round, see ``annotator.drive``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from data_schemas.records import Problem, Solution, StepLabels, solution_id_for
from stages.annotator import (AnnotationContext, AnnotationResult, Search, annotator_id, detail_json, drive,
                              lockstep, spent_since)
from stages.rollouts import MCEstimate, PrefixQuery, Rollout, prefix_text


@dataclass(frozen=True)
class OmegaPRMSettings:
    k: int = 8  # rollouts per state
    alpha: float = 0.5
    beta: float = 0.9
    length_scale: int = 500  # L, in tokens
    c_puct: float = 0.125
    search_limit: int = 100  # pool iterations per question
    initial_rollouts: int = 32  # rollouts from the question, the policy's solutions included
    filter_questions: bool = True  # drop questions whose initial rollouts are all right or all wrong


@dataclass
class TreeState:
    """A prefix with a measured MC value: ``prefix_steps`` steps of ``solution``."""

    solution: Solution
    prefix_steps: int
    estimate: MCEstimate
    visits: int = 0

    @property
    def mc(self) -> float:
        return self.estimate.value


@dataclass
class SearchOutcome:
    """The binary search's result for one solution."""

    first_error_step: int
    measured: dict[int, MCEstimate] = field(default_factory=dict)  # prefix_steps -> estimate
    error: str | None = None  # rollouts failed: no verdict


def binary_search(solution: Solution, left: int, right: int) -> Search:
    """Find the first error of a wrong solution, knowing MC(prefix ``left``) > 0 and that the full
    prefix ``right`` is wrong.  Yields one prefix per round; returns a SearchOutcome."""
    measured: dict[int, MCEstimate] = {}
    while right - left > 1:
        middle = (left + right) // 2
        [estimate] = yield [PrefixQuery(solution, middle)]
        if estimate.error:
            return SearchOutcome(-1, measured, error=estimate.error)
        measured[middle] = estimate
        if estimate.value > 0:
            left = middle
        else:
            right = middle
    return SearchOutcome(first_error_step=right - 1, measured=measured)


def priority(state: TreeState, rollout: Rollout, total_visits: int, settings: OmegaPRMSettings) -> float:
    """Q(s, r) + U(s): prefer short wrong rollouts from states that are likely right, and unvisited states."""
    q = settings.alpha ** (1.0 - state.mc) * settings.beta ** (rollout.tokens / settings.length_scale)
    u = settings.c_puct * math.sqrt(total_visits) / (1 + state.visits)
    return q + u


def labels_from_search(solution: Solution, outcome: SearchOutcome, annotator: str,
                       known_good: dict[int, float] | None = None) -> StepLabels:
    """Hard and soft labels of a searched solution; ``known_good`` adds MC values of prefixes known
    from the tree (prefix_steps -> MC)."""
    steps = len(solution.steps)
    first_error = outcome.first_error_step
    labels, values, n_correct, n_rollouts = [], [], [], []
    for index in range(steps):
        prefix = index + 1
        estimate = outcome.measured.get(prefix)
        if index < first_error:
            labels.append(1)
        elif index == first_error:
            labels.append(0)
        else:
            labels.append(-1)
        if estimate is not None:
            values.append(estimate.value)
            n_correct.append(estimate.n_correct)
            n_rollouts.append(estimate.n_rollouts)
        elif index == first_error and prefix == steps:
            values.append(0.0)  # the whole solution is wrong: its MC is known without rollouts
            n_correct.append(0)
            n_rollouts.append(0)
        elif known_good and prefix in known_good and index < first_error:
            values.append(known_good[prefix])
            n_correct.append(0)
            n_rollouts.append(0)
        else:
            values.append(None)
            n_correct.append(0)
            n_rollouts.append(0)
    return StepLabels(solution.solution_id, solution.problem_id, annotator, labels, values, n_correct, n_rollouts,
                      first_error)


class OmegaPRM:
    name = "omegaprm"
    version = 1

    def __init__(self, settings: OmegaPRMSettings = OmegaPRMSettings()) -> None:
        self.settings = settings
        self.id = annotator_id(self.name, self.version, asdict(settings))

    # ------------------------------------------------------------------ per question
    def _question(self, problem: Problem, solutions: list[Solution], context: AnnotationContext,
                  labels: dict[str, StepLabels], new_solutions: list[Solution]) -> Search:
        settings = self.settings
        gradable = [s for s in solutions if s.outcome_correct is not None]
        for solution in solutions:
            if solution.outcome_correct is None:
                labels[solution.solution_id] = self._abstain(solution, "final answer could not be graded")
        if not gradable:
            return None
        # 1. MC(root): the policy's solutions are rollouts from the question; top up to initial_rollouts
        extra = max(0, settings.initial_rollouts - len(gradable))
        root_estimate = MCEstimate(0.0, 0, 0, [])
        if extra:
            [root_estimate] = yield [PrefixQuery(gradable[0], 0, k=extra)]
            if root_estimate.error:
                for solution in gradable:
                    labels[solution.solution_id] = self._abstain(solution, root_estimate.error)
                return None
        n_correct = sum(bool(s.outcome_correct) for s in gradable) + root_estimate.n_correct
        n_total = len(gradable) + root_estimate.n_rollouts
        root = TreeState(gradable[0], 0, MCEstimate(n_correct / n_total, n_correct, n_total, root_estimate.rollouts))
        if settings.filter_questions and root.mc in (0.0, 1.0):
            reason = f"question filtered: MC(question) = {root.mc:.0f} over {n_total} initial rollouts"
            for solution in gradable:
                labels[solution.solution_id] = self._abstain(solution, reason)
            return None

        # 2. binary search of every wrong solution, all in lockstep
        wrong = [s for s in gradable if not s.outcome_correct]
        for solution in gradable:
            if solution.outcome_correct:
                labels[solution.solution_id] = self._all_good(solution)
        outcomes = yield from lockstep([binary_search(s, 0, len(s.steps)) for s in wrong])
        states: list[TreeState] = [root]
        for solution, outcome in zip(wrong, outcomes):
            if outcome.error:
                labels[solution.solution_id] = self._abstain(solution, outcome.error)
                continue
            labels[solution.solution_id] = labels_from_search(solution, outcome, self.id)
            states.extend(self._new_states(solution, outcome))

        # 3. the pool: wrong rollouts of states with 0 < MC < 1
        pool: list[tuple[TreeState, Rollout]] = []
        for state in states:
            self._add_to_pool(pool, state)
        next_index = max(s.sample_index for s in solutions) + 1
        for _ in range(settings.search_limit):
            if not pool:
                break
            total_visits = sum(state.visits for state in states)
            best = max(range(len(pool)), key=lambda i: priority(pool[i][0], pool[i][1], total_visits, settings))
            state, rollout = pool.pop(best)
            state.visits += 1
            derived = self._derive(state, rollout, next_index, context)
            next_index += 1
            left = sum(1 for offset in derived.step_offsets
                       if offset["end"] <= len(prefix_text(state.solution, state.prefix_steps)))
            if derived.outcome_correct is not False or left >= len(derived.steps):
                continue  # nothing to search: not wrong after all, or no step beyond the state
            outcome = yield from binary_search(derived, left, len(derived.steps))
            if outcome.error:
                continue  # a searched rollout with failed rollouts is not kept
            known = {state.prefix_steps: state.mc} if left == state.prefix_steps and left > 0 else None
            labels[derived.solution_id] = labels_from_search(derived, outcome, self.id, known)
            new_solutions.append(derived)
            fresh = self._new_states(derived, outcome)
            states.extend(fresh)
            for new_state in fresh:
                self._add_to_pool(pool, new_state)
        return None

    def _new_states(self, solution: Solution, outcome: SearchOutcome) -> list[TreeState]:
        return [TreeState(solution, prefix, estimate) for prefix, estimate in sorted(outcome.measured.items())
                if estimate.n_rollouts > 0]

    @staticmethod
    def _add_to_pool(pool: list, state: TreeState) -> None:
        if 0.0 < state.mc < 1.0:
            pool.extend((state, rollout) for rollout in state.estimate.rollouts if not rollout.correct)

    @staticmethod
    def _derive(state: TreeState, rollout: Rollout, sample_index: int, context: AnnotationContext) -> Solution:
        """The solution a pool rollout makes: the state's prefix, then the rollout's completion."""
        base = state.solution
        text = prefix_text(base, state.prefix_steps) + rollout.completion
        derived = Solution(solution_id_for(base.problem_id, base.policy_key, sample_index, text), base.problem_id,
                           base.policy_key, sample_index, base.prompt, text, finish_reason="tree",
                           generated_tokens=rollout.tokens)
        return context.prepare_solution(derived)

    def _all_good(self, solution: Solution) -> StepLabels:
        steps = len(solution.steps)
        return StepLabels(solution.solution_id, solution.problem_id, self.id, [1] * steps, [None] * steps,
                          [0] * steps, [0] * steps, -1)

    def _abstain(self, solution: Solution, reason: str) -> StepLabels:
        steps = len(solution.steps)
        return StepLabels(solution.solution_id, solution.problem_id, self.id, [-1] * steps, [None] * steps,
                          [0] * steps, [0] * steps, -1, abstained=True, detail=detail_json({"reason": reason}))

    # ------------------------------------------------------------------ a shard
    def annotate(self, solutions: list[Solution], context: AnnotationContext) -> AnnotationResult:
        if context.sampler is None:
            raise ValueError("omegaprm needs a rollout sampler (a policy engine)")
        usable = [s for s in solutions if not s.failed_reason and s.steps]
        by_problem: dict[str, list[Solution]] = {}
        for solution in usable:
            by_problem.setdefault(solution.problem_id, []).append(solution)
        labels: dict[str, StepLabels] = {}
        new_solutions: list[Solution] = []
        start = len(context.sampler.new_rows)
        searches = [self._question(context.problems[pid], group, context, labels, new_solutions)
                    for pid, group in by_problem.items()]
        drive(lockstep(searches), context.sampler, self.settings.k)
        spent = spent_since(context.sampler, start)
        ordered = []
        for solution in usable + new_solutions:
            row = labels[solution.solution_id]
            row.rollouts, row.generated_tokens = spent.get(solution.solution_id, (0, 0))
            ordered.append(row)
        return AnnotationResult(ordered, new_solutions)
