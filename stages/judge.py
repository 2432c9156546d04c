"""LLM-as-judge annotator: ask a model for the earliest wrong step of each solution.

Styles:
- ``processbench``: the ProcessBench critique prompt (paragraphs tagged and indexed from 0; the index
  of the earliest error in ``\\boxed{}``, -1 if none);
- ``qwen``: one analysis per paragraph, stopping at the first error, then a conclusion with the index;
- ``toy``: the embedded model's judging format (toy/domain.py), for the demo's local judge;
- ``custom``: a user template with ``{problem}``, ``{tagged_steps}`` and ``{numbered_steps}``.
``votes: m`` samples m verdicts and takes the majority (ties go to the earliest error: a judge that
might be right about an error is not outvoted by silence).  A verdict that cannot be parsed, or names
a step the solution does not have, is an abstention, never a guess.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

from data_schemas.engine import GenerationRequest
from data_schemas.records import Problem, Solution, StepLabels
from stages.annotator import AnnotationContext, AnnotationResult, annotator_id, detail_json
from stages.generate import request_seed
from toy import domain as toy_domain

PROCESSBENCH_TEMPLATE = (
    "The following is a math problem and a solution (split into paragraphs, enclosed with tags and indexed from 0):\n\n"
    "[Math Problem]\n\n{problem}\n\n[Solution]\n\n{tagged_steps}\n\n"
    "Your task is to review and critique the solution paragraph by paragraph. Once you identify an error in a "
    "paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return the index "
    "of -1 (which typically denotes \"not found\").\n\nPlease put your final answer (i.e., the index) in \\boxed{{}}."
)

QWEN_TEMPLATE = (
    "The following is a math problem and a solution split into paragraphs indexed from 0.\n\n"
    "[Math Problem]\n\n{problem}\n\n[Solution]\n\n{tagged_steps}\n\n"
    "Verify the solution paragraph by paragraph. For each paragraph write \"Paragraph i:\", a short analysis, "
    "and then \"correct\" or \"incorrect\". Stop at the first incorrect paragraph. Then write "
    "\"Conclusion: the earliest error is in paragraph \\boxed{{i}}\", or \\boxed{{-1}} if every paragraph is correct."
)

_BOXED_INDEX = re.compile(r"\\boxed\{\s*(-?\d{1,4})\s*\}")
_PARAGRAPH_HEADER = re.compile(r"Paragraph\s+(\d{1,4})\s*:", re.IGNORECASE)
_INCORRECT = re.compile(r"\bincorrect\b", re.IGNORECASE)
MAX_SCANNED_CHARS = 20_000  # a judge may ramble; the verdict is at the end


@dataclass(frozen=True)
class JudgeSettings:
    style: str = "processbench"
    template: str | None = None
    votes: int = 1
    temperature: float = 0.0
    max_tokens: int = 1024
    chat: bool = False
    engine: str = "policy"  # which engine of the context: "policy", or this annotator's own judge model


def tagged_steps(steps: list[str]) -> str:
    return "\n\n".join(f"<paragraph_{index}>\n{step}\n</paragraph_{index}>" for index, step in enumerate(steps))


def numbered_steps(steps: list[str]) -> str:
    return "\n".join(f"{index}: {step}" for index, step in enumerate(steps))


def judge_prompt(settings: JudgeSettings, problem: Problem, steps: list[str]) -> str:
    if settings.style == "toy":
        return toy_domain.judge_prompt(problem.question, steps)
    template = {"processbench": PROCESSBENCH_TEMPLATE, "qwen": QWEN_TEMPLATE}.get(settings.style, settings.template)
    if template is None:
        raise ValueError("a custom judge needs a template")
    # plain replacement, not str.format: problems and steps are full of braces (LaTeX)
    return (template.replace("{problem}", problem.question).replace("{tagged_steps}", tagged_steps(steps))
            .replace("{numbered_steps}", numbered_steps(steps)).replace("{{", "{").replace("}}", "}"))


def parse_verdict(text: str, n_steps: int) -> int | None:
    """The earliest wrong step the judge names (-1: none), or None when it names none we can trust."""
    tail = text[-MAX_SCANNED_CHARS:]
    boxed = _BOXED_INDEX.findall(tail)
    if boxed:
        verdict = int(boxed[-1])
    else:
        verdict = _first_incorrect_paragraph(tail)
        if verdict is None:
            return None
    return verdict if -1 <= verdict < n_steps else None


def _first_incorrect_paragraph(text: str) -> int | None:
    """Qwen style without a box: the first paragraph whose own analysis calls it incorrect."""
    headers = list(_PARAGRAPH_HEADER.finditer(text))
    for header, following in zip(headers, headers[1:] + [None]):
        segment = text[header.end(): following.start() if following else len(text)]
        if _INCORRECT.search(segment):
            return int(header.group(1))
    return None


def majority(verdicts: list[int | None]) -> int | None:
    counts = Counter(v for v in verdicts if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [v for v, c in counts.items() if c == top]
    errors = [v for v in tied if v >= 0]
    return min(errors) if errors else -1


class LLMJudge:
    name = "llm_judge"
    version = 1

    def __init__(self, settings: JudgeSettings = JudgeSettings(), model_name: str = "policy") -> None:
        if settings.style not in ("processbench", "qwen", "toy", "custom"):
            raise ValueError(f"unknown judge style {settings.style!r}")
        self.settings = settings
        self.id = annotator_id(self.name, self.version, {**asdict(settings), "model": model_name})

    def _request(self, problem: Problem, solution: Solution, job_seed: int) -> GenerationRequest:
        prompt = judge_prompt(self.settings, problem, solution.steps)
        common = dict(n=self.settings.votes, temperature=self.settings.temperature, max_tokens=self.settings.max_tokens,
                      seed=request_seed(job_seed, "judge", self.id, solution.solution_id))
        if self.settings.chat:
            return GenerationRequest(messages=(("user", prompt),), **common)
        return GenerationRequest(prompt=prompt, **common)

    def annotate(self, solutions: list[Solution], context: AnnotationContext) -> AnnotationResult:
        engine = context.engines.get(self.id) or context.engines.get(self.settings.engine)
        if engine is None:
            raise ValueError(f"llm_judge: no engine named {self.settings.engine!r}")
        usable = [s for s in solutions if not s.failed_reason and s.steps]
        requests = [self._request(context.problems[s.problem_id], s, context.job_seed) for s in usable]
        results = engine.generate(requests) if requests else []
        rows = []
        for solution, result in zip(usable, results):
            steps = len(solution.steps)
            texts = [c.text for c in result.completions] if result.ok else []
            verdicts = [parse_verdict(text, steps) for text in texts]
            verdict = majority(verdicts)
            tokens = sum(c.tokens for c in result.completions) if result.ok else 0
            detail = {"verdicts": verdicts, "responses": [text[-2000:] for text in texts]}
            if not result.ok:
                detail["error"] = result.error
            if verdict is None:
                rows.append(StepLabels(solution.solution_id, solution.problem_id, self.id, [-1] * steps,
                                       [None] * steps, [0] * steps, [0] * steps, -1, abstained=True,
                                       generated_tokens=tokens, detail=detail_json(detail)))
                continue
            valid = [v for v in verdicts if v is not None]
            labels = [1 if verdict == -1 or index < verdict else 0 if index == verdict else -1 for index in range(steps)]
            # soft value of a step: the share of votes that judged it (and all before it) good
            values = [sum(1 for v in valid if v == -1 or v > index) / len(valid) for index in range(steps)]
            rows.append(StepLabels(solution.solution_id, solution.problem_id, self.id, labels, values,
                                   [0] * steps, [0] * steps, verdict, generated_tokens=tokens, detail=detail_json(detail)))
        return AnnotationResult(rows)
