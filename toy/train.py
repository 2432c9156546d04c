"""Train the embedded policy-and-judge model from scratch on the toy domain (CPU, about half an hour).

One tiny Qwen2-architecture causal LM learns three formats (loss on the answer side only):
- policy: ``Q: <expr>`` → the canonical step-by-step solution;
- judge: ``J: <expr>`` and numbered steps → for each step ``check i: <expected> | <step> ok|wrong`` up to
  the first wrong one, then ``Verdict: \\boxed{k}``; half the solutions carry one planted slip;
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
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    judge_share: float = 0.3  # fraction of training examples in the judging format
    compare_share: float = 0.2  # fraction of auxiliary comparison examples (the judge's key skill)
    seed: int = 0
    # model shape: head_dim = hidden_size / heads must be 64 for vLLM's CPU attention kernels
    hidden_size: int = 128
    layers: int = 3
    heads: int = 2
    intermediate_size: int = 512
    max_positions: int = 256
    threads: int = 2
    eval_every: int = 250
    eval_problems: int = 100


# Training problems come from seeds >= this; evaluation and the demo use small seeds, so
# held-out problems are never trained on (the expressions are also filtered below).
TRAIN_SEED_OFFSET = 1_000_003


def policy_example(problem: domain.ToyProblem) -> tuple[str, str]:
    return domain.policy_prompt(problem.expression), domain.solution_text(problem.expression)


def judge_example(rng: random.Random, problem: domain.ToyProblem) -> tuple[str, str]:
    steps = domain.solution_steps(problem.expression)
    if rng.random() < 0.5:
        steps = domain.corrupt_solution(rng, problem.expression)
    return domain.judge_prompt(problem.expression, steps), domain.judge_target(problem.expression, steps)


def _encode(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    target_ids = tokenizer.encode(target, add_special_tokens=False).ids + [tokenizer.token_to_id(EOS)]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


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


def train(out_dir: str | Path, config: TrainConfig = TrainConfig(), log=print) -> dict:
    """Train a model and save it (safetensors + tokenizer) under ``out_dir``.  Returns the log."""
    import torch

    torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))

    def learning_rate(step: int) -> float:
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    held_out = {p.expression for p in domain.generate_problems(2000, seed=0)}
    rng = random.Random(config.seed + TRAIN_SEED_OFFSET)
    pad_id = SPECIAL_TOKENS.index(PAD)
    history: list[dict] = []
    started = time.time()
    for step in range(config.steps):
        batch_ids, batch_labels = [], []
        while len(batch_ids) < config.batch_size:
            expression = domain.generate_problem(rng)
            if expression in held_out:
                continue
            problem = domain.ToyProblem("train", expression, domain.evaluate(expression))
            draw = rng.random()
            if draw < config.judge_share:
                prompt, target = judge_example(rng, problem)
            elif draw < config.judge_share + config.compare_share:
                prompt, target = domain.compare_example(rng, problem.expression)
            else:
                prompt, target = policy_example(problem)
            ids, labels = _encode(tokenizer, prompt, target)
            batch_ids.append(ids)
            batch_labels.append(labels)
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids in batch_ids])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for lab in batch_labels])
        attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch_ids])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == config.steps - 1:
            entry = {"step": step, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - started, 1)}
            if config.eval_every and (step % config.eval_every == 0 or step == config.steps - 1) and step > 0:
                model.eval()
                entry.update(quick_eval(model, tokenizer, config.eval_problems))
                model.train()
            history.append(entry)
            log(json.dumps(entry))
    model.eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_pretrained_tokenizer(out_dir, config.max_positions)
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": SPECIAL_TOKENS.index(EOS), "pad_token_id": pad_id, "do_sample": True, "temperature": 1.0},
        indent=2) + "\n")
    report = {"config": asdict(config), "history": history, "train_seconds": round(time.time() - started, 1)}
    (out_dir / "training_log.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


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
    verdicts = sample(model, tokenizer, [prompt for prompt, _ in judge_cases], max_new_tokens=192, temperature=0)
    judge_hits = sum(domain.parse_verdict(verdict) == domain.parse_verdict(target)
                     for verdict, (_, target) in zip(verdicts, judge_cases))
    return {
        "final_answer_accuracy": round(sum(c.answer_correct for c in checks) / n, 3),
        "step_accuracy": round(sum(sum(c.step_correct) for c in checks) / max(1, sum(len(c.step_correct) for c in checks)), 3),
        "judge_accuracy_planted": round(judge_hits / n, 3),
    }
