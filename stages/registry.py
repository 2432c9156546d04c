"""Build annotators from their config entries (plain dicts or pydantic models with a ``type``)."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from stages.exact import ExactChecker
from stages.judge import JudgeSettings, LLMJudge
from stages.mc_exhaustive import MCExhaustive, MCExhaustiveSettings
from stages.omegaprm import OmegaPRM, OmegaPRMSettings


def _settings(cls, entry: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in entry.items() if key in names})


def build_annotator(entry: dict[str, Any]):
    kind = entry["type"]
    if kind == "omegaprm":
        return OmegaPRM(_settings(OmegaPRMSettings, entry))
    if kind == "mc_exhaustive":
        return MCExhaustive(_settings(MCExhaustiveSettings, entry))
    if kind == "exact":
        return ExactChecker()
    if kind == "llm_judge":
        model = entry.get("model")
        settings = _settings(JudgeSettings, {**entry, "chat": bool(model and model.get("chat"))})
        return LLMJudge(settings, model_name=model["model"] if model else "policy")
    if kind == "symbolic":
        from stages.symbolic import SymbolicChecker

        return SymbolicChecker()
    raise ValueError(f"unknown annotator type {kind!r}")
