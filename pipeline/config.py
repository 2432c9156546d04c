"""Job configuration: pydantic models, YAML loading with dotted overrides, and the config hash.

Unknown keys are errors (a typo must not silently fall back to a default), and every error names the
file and the key.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toy.domain import DEFAULT_DIFFICULTY

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODEL = "embedded"  # the model name that means the trained toy model shipped in toy/model


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToyProblemsConfig(Strict):
    """The toy generator's knobs; the defaults are the domain's default difficulty (one source of truth)."""

    n: int = Field(20, ge=1)
    seed: int = 0
    min_ops: int = Field(DEFAULT_DIFFICULTY.min_ops, ge=1)
    max_ops: int = Field(DEFAULT_DIFFICULTY.max_ops, ge=1)
    max_operand: int = Field(DEFAULT_DIFFICULTY.max_operand, ge=1)
    operators: str = DEFAULT_DIFFICULTY.operators
    paren_prob: float = Field(DEFAULT_DIFFICULTY.paren_prob, ge=0, le=1)
    max_value: int = Field(DEFAULT_DIFFICULTY.max_value, ge=1)

    @model_validator(mode="after")
    def _ops_range(self) -> "ToyProblemsConfig":
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) is above max_ops ({self.max_ops}); "
                             f"the default range is {DEFAULT_DIFFICULTY.min_ops}-{DEFAULT_DIFFICULTY.max_ops}")
        return self


class FieldMapping(Strict):
    """Which fields of a record hold the question, the reference answer and the id."""

    question: str = "question"
    answer: str = "answer"
    id: str | None = None


class ProblemsConfig(Strict):
    source: Literal["toy", "jsonl", "parquet", "hf"] = "toy"
    path: str | None = None  # file, folder, or Hub id for hf
    split: str = "test"  # for hf datasets
    subset: str | None = None  # hf config name
    domain: Literal["toy", "gsm8k", "math", "plain"] = "toy"
    fields: FieldMapping = FieldMapping()
    limit: int | None = Field(None, ge=1)
    offset: int = Field(0, ge=0)
    toy: ToyProblemsConfig = ToyProblemsConfig()

    @model_validator(mode="after")
    def _path_required(self) -> "ProblemsConfig":
        if self.source != "toy" and not self.path:
            raise ValueError(f"problems.path is required when problems.source is {self.source!r}")
        return self


class SamplingConfig(Strict):
    n: int = Field(4, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, ge=1)
    stop: list[str] = []


class OpenAIConfig(Strict):
    base_url: str = "http://127.0.0.1:8000"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)


class ModelConfig(Strict):
    """A model behind an engine: the policy, or a judge."""

    engine: Literal["vllm", "openai"] = "vllm"
    model: str = EMBEDDED_MODEL
    # vllm.LLM keyword arguments, passed through (dtype, max_model_len, tensor_parallel_size, ...)
    engine_kwargs: dict[str, Any] = {}
    openai: OpenAIConfig = OpenAIConfig()
    # Prompt: "{question}" is replaced; chat=True sends it as a user message through the chat template.
    prompt_template: str | None = None  # None: the domain's default
    system_prompt: str | None = None
    chat: bool = False
    num_gpus: float = Field(0, ge=0)  # per engine actor
    num_cpus: float = Field(1, ge=0)
    replicas: int = Field(1, ge=1)  # engine actors


class SplitConfig(Strict):
    strategy: Literal["blank_line", "line", "step_marker", "token_budget"] | None = None  # None: domain default
    target_pieces: int = Field(16, ge=1)


class GradeConfig(Strict):
    timeout_s: float = Field(5.0, gt=0)


class OmegaPRMConfig(Strict):
    """OmegaPRM, with the paper's defaults (DESIGN.md §5)."""

    type: Literal["omegaprm"]
    k: int = Field(8, ge=1)
    alpha: float = Field(0.5, gt=0, le=1)
    beta: float = Field(0.9, gt=0, le=1)
    length_scale: int = Field(500, ge=1)
    c_puct: float = Field(0.125, ge=0)
    search_limit: int = Field(100, ge=0)
    initial_rollouts: int = Field(32, ge=0)
    filter_questions: bool = True
    role: Literal["label", "gold"] = "label"


class MCExhaustiveConfig(Strict):
    """Math-Shepherd's exhaustive Monte-Carlo estimation."""

    type: Literal["mc_exhaustive"]
    k: int = Field(8, ge=1)
    steps: Literal["all", "up_to_first_error"] = "all"
    role: Literal["label", "gold"] = "label"


class ExactConfig(Strict):
    """The toy domain's exact checker: ground truth, written as a gold layer by default."""

    type: Literal["exact"]
    role: Literal["label", "gold"] = "gold"


class LLMJudgeConfig(Strict):
    """An LLM asked for the earliest wrong step; ``model`` None means the policy engine itself."""

    type: Literal["llm_judge"]
    style: Literal["processbench", "qwen", "toy", "custom"] = "processbench"
    template: str | None = None  # for style custom: {problem}, {tagged_steps}, {numbered_steps}
    votes: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=1)
    model: ModelConfig | None = None
    role: Literal["label", "gold"] = "label"

    @model_validator(mode="after")
    def _template_for_custom(self) -> "LLMJudgeConfig":
        if self.style == "custom" and not self.template:
            raise ValueError("style custom needs a template")
        return self


class SymbolicConfig(Strict):
    """Deterministic checks of the arithmetic written in each step."""

    type: Literal["symbolic"]
    role: Literal["label", "gold"] = "label"


AnnotatorConfig = Annotated[Union[OmegaPRMConfig, MCExhaustiveConfig, ExactConfig, LLMJudgeConfig, SymbolicConfig],
                            Field(discriminator="type")]


class RolloutConfig(Strict):
    max_tokens: int | None = Field(None, ge=1)  # None: the policy's sampling.max_tokens


class ConsensusConfig(Strict):
    """Which labels reach prm/.  rule none: the primary annotator's, for every solution it labelled;
    qwen: kept only where the primary and the judge name the same first error; agreement: the same
    with any list of annotators (agree_with)."""

    rule: Literal["none", "qwen", "agreement"] = "none"
    primary: str | None = None  # annotator type or id prefix; None: the first annotator whose role is label
    agree_with: list[str] = []
    symbolic_veto: bool = False
    min_mc: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _members(self) -> "ConsensusConfig":
        if self.rule == "qwen" and not self.agree_with:
            self.agree_with = ["llm_judge"]
        if self.rule == "agreement" and not self.agree_with:
            raise ValueError("rule agreement needs agree_with: the annotators that must agree with the primary")
        return self


class OutputConfig(Strict):
    # Problems per shard: the unit of work, retry and resume.  With n samples a shard sends 32n sequences
    # at once, and four shards in flight keep vLLM's running batch full (bench engine: ratio 0.82 at 32
    # against 0.80 at 8, 1000 problems, 2 CPU cores); memory grows with it, resume granularity shrinks.
    shard_size: int = Field(32, ge=1)


class RayConfig(Strict):
    """Where and how the job runs; none of it changes the output (it is not in the config hash)."""

    address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray started in-process
    num_cpus: int | None = None  # for the local Ray only
    # CPUs reserved by one shard task (split, grade, symbolic, search logic).  A shard task spends most
    # of its time waiting for engine calls, so a quarter CPU lets several run beside the engine and
    # their requests share the engine's running batch (pipeline/engines/continuous.py).
    shard_cpus: float = Field(0.25, gt=0)
    max_shards_in_flight: int | None = Field(None, ge=1)  # None: four per policy replica
    task_retries: int = Field(3, ge=0)  # a shard task whose worker dies is run again
    actor_restarts: int = Field(3, ge=0)  # an engine actor that dies is restarted, its calls retried


class JobConfig(Strict):
    name: str = "job"
    seed: int = 0
    problems: ProblemsConfig = ProblemsConfig()
    policy: ModelConfig = ModelConfig()
    sampling: SamplingConfig = SamplingConfig()
    split: SplitConfig = SplitConfig()
    grade: GradeConfig = GradeConfig()
    annotators: list[AnnotatorConfig] = []
    rollouts: RolloutConfig = RolloutConfig()
    consensus: ConsensusConfig = ConsensusConfig()
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings; the value is read as YAML (numbers, booleans, lists)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({error})") from None
        parsed.append((key.strip(), value))
    return parsed


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def build_config(data: dict | None, overrides: list[str] = (), source: str = "<config>") -> JobConfig:
    data = dict(data or {})
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(data, key, value)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> JobConfig:
    """Read a YAML config (or none: all defaults) and apply dotted overrides."""
    if path is None:
        return build_config({}, overrides, "<defaults>")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return build_config(data, overrides, str(path))


def config_hash(config: JobConfig) -> str:
    """Hash of what determines the output; two runs with the same hash may share an --out (resume)."""
    payload = config.model_dump(mode="json", exclude={"ray", "name"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def resolve_model_path(model: str) -> str:
    """``embedded`` means the trained toy model committed in toy/model."""
    if model == EMBEDDED_MODEL:
        return str(PROJECT_ROOT / "toy" / "model")
    return model
