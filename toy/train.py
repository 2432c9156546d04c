"""Train the embedded policy-and-judge model from scratch on the toy domain (CPU, about half an hour).

One tiny Qwen2-architecture causal LM learns three formats (loss on the answer side only):
- policy: ``Q: <expr>`` → the canonical step-by-step solution;
- judge: ``J: <expr>`` and numbered steps → for each step ``i: <a op b=c> <expected> | <step> ok|wrong``
  up to the first wrong one, then ``Verdict: \\boxed{k}``; most solutions carry one planted slip, and
  the slipped step's line weighs more in the loss (copying the step under check is the shortcut a
  tiny model falls into; the extra weight is what makes computing pay);
- compare (auxiliary): ``C: <a> | <b>`` → ``ok`` or ``wrong``, the judge's one hard skill, taught directly.
The model is small and briefly trained on purpose: sampled at temperature 1 it makes real mistakes,
which is what the labelling pipeline needs to find.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from toy import domain
from toy.tokenizer import EOS, PAD, SPECIAL_TOKENS, VOCAB_SIZE, build_tokenizer, save_pretrained_tokenizer


@dataclass
class TrainConfig:
    steps: int = 4000
    batch_size: int = 64
    micro_batch: int = 16  # rows per forward pass, after sorting the batch by length
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    judge_share: float = 0.35  # fraction of training examples in the judging format
    compare_share: float = 0.1  # fraction of auxiliary comparison examples (the judge's key skill)
    judge_slip_share: float = 0.6  # fraction of judging examples with a planted slip
    slip_line_weight: float = 4.0  # loss weight of the slipped step's check line and the verdict
    # Training problems span 2-5 operations; the default difficulty (domain.DEFAULT_DIFFICULTY) was
    # chosen after training so that accuracy lands in the band the pipeline needs.
    min_ops: int = 2
    max_ops: int = 5
    calibration_steps: int = 600
    calibration_learning_rate: float = 5e-4
    calibration_judge_share: float = 0.5
    calibration_compare_share: float = 0.2
    seed: int = 0
    # model shape: head_dim = hidden_size / heads must be 64 for vLLM's CPU attention kernels
    hidden_size: int = 128
    layers: int = 3
    heads: int = 2
    intermediate_size: int = 512
    max_positions: int = 384
    threads: int = 2
    eval_every: int = 500
    eval_problems: int = 100


# Training problems come from seeds >= this; evaluation and the demo use small seeds, so
# held-out problems are never trained on (the expressions are also filtered below).
TRAIN_SEED_OFFSET = 1_000_003


def policy_example(problem: domain.ToyProblem) -> tuple[str, str]:
    return domain.policy_prompt(problem.expression), domain.solution_text(problem.expression)


def judge_example(rng: random.Random, problem: domain.ToyProblem, slip_share: float = 0.6) -> tuple[str, str]:
    steps = domain.solution_steps(problem.expression)
    if rng.random() < slip_share:
        steps = domain.corrupt_solution(rng, problem.expression)
    return domain.judge_prompt(problem.expression, steps), domain.judge_target(problem.expression, steps)


def _encode(tokenizer, prompt: str, target: str, slip_weight: float = 1.0) -> tuple[list[int], list[int], list[float]]:
    """Token ids, labels (-100 on the prompt) and per-token loss weights.

    The tokenizer is one token per character, so character offsets are token offsets: in a judge
    target with a wrong step, that step's line and the verdict weigh ``slip_weight``."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    target_ids = tokenizer.encode(target, add_special_tokens=False).ids + [tokenizer.token_to_id(EOS)]
    weights = [1.0] * len(target_ids)
    if target.endswith("}") and " wrong\n" in target:
        slip_start = target.rfind("\n", 0, target.index(" wrong\n")) + 1
        weights[slip_start:] = [slip_weight] * (len(target_ids) - slip_start)
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids, [0.0] * len(prompt_ids) + weights


def build_model(config: TrainConfig):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(config.seed)
    model_config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=SPECIAL_TOKENS.index(PAD),
        eos_token_id=SPECIAL_TOKENS.index(EOS),
        bos_token_id=SPECIAL_TOKENS.index(EOS),
        torch_dtype="float32",
    )
    return Qwen2ForCausalLM(model_config)


@dataclass(frozen=True)
class Phase:
    """One stretch of training: its length, learning-rate schedule and mixture of formats."""

    name: str
    steps: int
    learning_rate: float
    warmup_steps: int
    judge_share: float
    compare_share: float
    slip_share: float
    slip_weight: float
    cosine: bool  # cosine decay to a tenth; else constant after warm-up


def phases(config: TrainConfig) -> list[Phase]:
    """Main training, then a short calibration.  The main phase's planted slips and heavy slip lines
    teach the judge to compute rather than copy, but leave it quick to cry "wrong"; the calibration
    (even odds of a slip, every line weighing the same, small constant learning rate) evens that out."""
    return [
        Phase("main", config.steps, config.learning_rate, config.warmup_steps, config.judge_share,
              config.compare_share, config.judge_slip_share, config.slip_line_weight, cosine=True),
        Phase("calibration", config.calibration_steps, config.calibration_learning_rate, 20,
              config.calibration_judge_share, config.calibration_compare_share, 0.5, 1.0, cosine=False),
    ]


def train(out_dir: str | Path, config: TrainConfig = TrainConfig(), log=print, start_from: str | Path | None = None,
          only: str | None = None) -> dict:
    """Train a model and save it (safetensors + tokenizer) under ``out_dir``.  Returns the log.

    ``start_from`` (a saved model) and ``only`` (a phase name) run one phase on an existing model:
    each phase draws from its own seeded stream and starts a fresh optimizer, so the main phase then
    the calibration in two calls gives the model one call gives."""
    import torch

    torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    if start_from is not None:
        from transformers import Qwen2ForCausalLM

        model = Qwen2ForCausalLM.from_pretrained(str(start_from))
    else:
        model = build_model(config)
    history: list[dict] = []
    started = time.time()
    for index, phase in enumerate(phases(config)):
        if only is None or phase.name == only:
            _train_phase(model, tokenizer, config, phase, random.Random(config.seed + TRAIN_SEED_OFFSET + index),
                         history, log, started)
    model.eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_pretrained_tokenizer(out_dir, config.max_positions)
    pad_id = SPECIAL_TOKENS.index(PAD)
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": SPECIAL_TOKENS.index(EOS), "pad_token_id": pad_id, "do_sample": True, "temperature": 1.0},
        indent=2) + "\n")
    report = {"config": asdict(config), "history": history, "train_seconds": round(time.time() - started, 1)}
    (out_dir / "training_log.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _train_phase(model, tokenizer, config: TrainConfig, phase: Phase, rng: random.Random, history: list[dict],
                 log, started: float) -> None:
    import torch

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=phase.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))

    def learning_rate(step: int) -> float:
        if step < phase.warmup_steps:
            return phase.learning_rate * (step + 1) / phase.warmup_steps
        if not phase.cosine:
            return phase.learning_rate
        progress = (step - phase.warmup_steps) / max(1, phase.steps - phase.warmup_steps)
        return phase.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    difficulty = domain.Difficulty(min_ops=config.min_ops, max_ops=config.max_ops)
    held_out = {p.expression for p in domain.generate_problems(2000, seed=0)}
    held_out |= {p.expression for p in domain.generate_problems(2000, seed=0, difficulty=difficulty)}
    pad_id = SPECIAL_TOKENS.index(PAD)
    for step in range(phase.steps):
        batch_ids, batch_labels, batch_weights = [], [], []
        while len(batch_ids) < config.batch_size:
            expression = domain.generate_problem(rng, difficulty)
            if expression in held_out:
                continue
            problem = domain.ToyProblem("train", expression, domain.evaluate(expression))
            draw = rng.random()
            if draw < phase.judge_share:
                prompt, target = judge_example(rng, problem, phase.slip_share)
            elif draw < phase.judge_share + phase.compare_share:
                prompt, target = domain.compare_example(rng, problem.expression)
            else:
                prompt, target = policy_example(problem)
            ids, labels, weights = _encode(tokenizer, prompt, target, phase.slip_weight)
            batch_ids.append(ids)
            batch_labels.append(labels)
            batch_weights.append(weights)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        optimizer.zero_grad()
        # Judge examples are four times longer than policy ones: sorting the batch by length into
        # micro-batches pads each to its own width (about twice as fast), and dividing every part by
        # the whole batch's weight keeps the gradient exactly that of one padded batch.
        order = sorted(range(len(batch_ids)), key=lambda row: len(batch_ids[row]))
        total_weight = sum(sum(w[1:]) for w in batch_weights)
        loss_value = 0.0
        for chunk in range(0, len(order), config.micro_batch):
            rows = order[chunk: chunk + config.micro_batch]
            width = max(len(batch_ids[row]) for row in rows)
            input_ids = torch.tensor([batch_ids[r] + [pad_id] * (width - len(batch_ids[r])) for r in rows])
            labels = torch.tensor([batch_labels[r] + [-100] * (width - len(batch_labels[r])) for r in rows])
            attention_mask = torch.tensor([[1] * len(batch_ids[r]) + [0] * (width - len(batch_ids[r])) for r in rows])
            weights = torch.tensor([batch_weights[r] + [0.0] * (width - len(batch_weights[r])) for r in rows])
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
            token_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                           labels[:, 1:].reshape(-1), ignore_index=-100,
                                                           reduction="none")
            part = (token_loss * weights[:, 1:].reshape(-1)).sum() / total_weight
            part.backward()
            loss_value += part.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == phase.steps - 1:
            entry = {"phase": phase.name, "step": step, "loss": round(loss_value, 4), "elapsed_s": round(time.time() - started, 1)}
            if config.eval_every and (step % config.eval_every == 0 or step == phase.steps - 1) and step > 0:
                model.eval()
                entry.update(quick_eval(model, tokenizer, config.eval_problems))
                model.train()
            history.append(entry)
            log(json.dumps(entry))


def sample(model, tokenizer, prompts: list[str], max_new_tokens: int = 64, temperature: float = 1.0,
           seed: int = 0) -> list[str]:
    """Plain batched sampling with transformers (used while training; the pipeline uses vLLM)."""
    import torch

    eos_id = tokenizer.token_to_id(EOS)
    pad_id = tokenizer.token_to_id(PAD)
    encoded = [tokenizer.encode(p, add_special_tokens=False).ids for p in prompts]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in encoded])
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
    generator_kwargs = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens, eos_token_id=eos_id,
                            pad_token_id=pad_id)
    if temperature > 0:
        generator_kwargs["temperature"] = temperature
        generator_kwargs["top_k"] = 0
    torch.manual_seed(seed)
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **generator_kwargs)
    texts = []
    for row in output[:, width:].tolist():
        if eos_id in row:
            row = row[: row.index(eos_id)]
        texts.append(tokenizer.decode(row))
    return texts


def quick_eval(model, tokenizer, n: int) -> dict:
    """Final-answer and first-step accuracy of sampled solutions, and judge accuracy, on held-out problems."""
    problems = domain.generate_problems(n, seed=0)
    outputs = sample(model, tokenizer, [domain.policy_prompt(p.expression) for p in problems])
    checks = [domain.check_solution(p.expression, text) for p, text in zip(problems, outputs)]
    rng = random.Random(1)
    judge_cases = [judge_example(rng, p) for p in problems]
    verdicts = sample(model, tokenizer, [prompt for prompt, _ in judge_cases], max_new_tokens=320, temperature=0)
    judge_hits = sum(domain.parse_verdict(verdict) == domain.parse_verdict(target)
                     for verdict, (_, target) in zip(verdicts, judge_cases))
    return {
        "final_answer_accuracy": round(sum(c.answer_correct for c in checks) / n, 3),
        "step_accuracy": round(sum(sum(c.step_correct) for c in checks) / max(1, sum(len(c.step_correct) for c in checks)), 3),
        "judge_accuracy_planted": round(judge_hits / n, 3),
    }
