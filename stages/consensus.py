"""Consensus filtering: keep the solutions whose annotators agree, and say why the others were dropped.

The rule (Qwen, "The Lessons of Developing PRMs", arXiv 2501.07301, generalised):
- ``primary``: the annotator whose labels (and soft labels) become the final ones, e.g. omegaprm;
- ``agree_with``: annotators that must name the same first wrong step as the primary (Qwen's rule is
  agree_with = [llm_judge]); a member that abstained, or is missing, drops the solution;
- ``symbolic_veto``: a step the symbolic checker proves wrong cannot be labelled good;
- ``min_mc``: a step whose MC estimate is below this is bad, not good (hard = 1[MC >= min_mc]).
Every solution gets a row in the consensus layer: kept ones carry the final labels, dropped ones are
abstentions whose detail says why.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from data_schemas.records import Solution, StepLabels
from stages.annotator import annotator_id, detail_json


@dataclass(frozen=True)
class ConsensusRule:
    primary: str  # annotator type or id prefix
    agree_with: tuple[str, ...] = ()
    symbolic_veto: bool = False
    min_mc: float | None = None


def resolve(name: str, annotator_ids: list[str]) -> str | None:
    """The annotator id that a type name or id prefix names (the first, in config order)."""
    return next((a for a in annotator_ids if a == name or a.startswith(name)), None)


def apply_min_mc(labels: StepLabels, min_mc: float) -> StepLabels:
    """Re-threshold hard labels on the MC estimates; the first bad step ends the labelled prefix."""
    new_labels = []
    bad_seen = False
    for label, value in zip(labels.step_labels, labels.step_values):
        if bad_seen:
            new_labels.append(-1)
            continue
        if label == 1 and value is not None and value < min_mc:
            label = 0
        if label == 0:
            bad_seen = True
        new_labels.append(label)
    first_error = next((i for i, label in enumerate(new_labels) if label == 0), -1)
    return replace(labels, step_labels=new_labels, first_error_step=first_error)


class Consensus:
    name = "consensus"
    version = 1

    def __init__(self, rule: ConsensusRule) -> None:
        self.rule = rule
        self.id = annotator_id(self.name, self.version, asdict(rule))

    def decide(self, solution: Solution, primary: StepLabels | None, members: dict[str, StepLabels | None],
               symbolic: StepLabels | None) -> tuple[StepLabels | None, str]:
        """The final labels of one solution, or None and the reason it is dropped."""
        if primary is None:
            return None, "primary annotator did not label this solution"
        if primary.abstained:
            return None, f"primary abstained: {primary.detail}"
        final = apply_min_mc(primary, self.rule.min_mc) if self.rule.min_mc is not None else primary
        for member_id, member in members.items():
            if member is None:
                return None, f"{member_id} did not label this solution"
            if member.abstained:
                return None, f"{member_id} abstained"
            if member.first_error_step != final.first_error_step:
                return None, (f"disagreement on the first error: {final.annotator} says {final.first_error_step}, "
                              f"{member_id} says {member.first_error_step}")
        if symbolic is not None and not symbolic.abstained:
            for index, (mine, theirs) in enumerate(zip(final.step_labels, symbolic.step_labels)):
                if mine == 1 and theirs == 0:
                    return None, f"symbolic veto: step {index} is labelled good but proven wrong"
        return final, ""

    def apply(self, solutions: list[Solution], labels: dict[str, dict[str, StepLabels]]) -> tuple[dict[str, StepLabels], list[StepLabels]]:
        """Final labels of the kept solutions (by solution id), and one consensus-layer row per solution."""
        ids = list(labels)
        primary_id = resolve(self.rule.primary, ids)
        member_ids = [resolve(name, ids) or name for name in self.rule.agree_with]
        symbolic_id = resolve("symbolic", ids) if self.rule.symbolic_veto else None
        if self.rule.symbolic_veto and symbolic_id is None:
            raise ValueError("consensus.symbolic_veto needs a symbolic annotator in the job")
        kept: dict[str, StepLabels] = {}
        rows: list[StepLabels] = []
        for solution in solutions:
            if solution.failed_reason or not solution.steps:
                continue
            sid = solution.solution_id
            primary = labels.get(primary_id, {}).get(sid) if primary_id else None
            members = {m: labels.get(m, {}).get(sid) for m in member_ids}
            symbolic = labels[symbolic_id].get(sid) if symbolic_id else None
            final, reason = self.decide(solution, primary, members, symbolic)
            steps = len(solution.steps)
            if final is None:
                rows.append(StepLabels(sid, solution.problem_id, self.id, [-1] * steps, [None] * steps, [0] * steps,
                                       [0] * steps, -1, abstained=True, detail=detail_json({"kept": False, "reason": reason})))
                continue
            kept[sid] = final
            rows.append(replace(final, annotator=self.id, rollouts=0, generated_tokens=0,
                                detail=detail_json({"kept": True, "primary": final.annotator, "agreed": list(members)})))
        return kept, rows
