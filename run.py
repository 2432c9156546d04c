#!/usr/bin/env python3
"""prmforge command line: ``python run.py VERB ...`` (also installed as ``prmforge``).

Verbs: label, demo, relabel, evaluate, bench {labelers}, toy {train,eval}.  Exit codes: 0 done, 1 the job failed, 2 bad config or input.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent
if str(PROJECT_ROOT) not in sys.path:  # `python run.py` from anywhere
    sys.path.insert(0, str(PROJECT_ROOT))

DEMO_CONFIG = PROJECT_ROOT / "configs" / "demo.yaml"
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def _print_summary(summary) -> None:
    data = summary.as_dict()
    width = max(len(key) for key in data)
    print("\nsummary")
    for key, value in data.items():
        print(f"  {key:<{width}}  {value}")


def _label(config_path: str | None, out: str | None, overrides: list[str], overwrite: bool, default_out: str) -> int:
    from pipeline.config import load_config
    from pipeline.runner import run_job

    config = load_config(config_path, overrides)
    out_dir = out or default_out
    summary = run_job(config, out_dir, overwrite=overwrite)
    _print_summary(summary)
    print(f"\noutput: {out_dir}  (load with datasets.load_dataset({out_dir!r}))")
    return 0


def cmd_label(args) -> int:
    return _label(args.config, args.out, args.overrides, args.overwrite, f"out/{Path(args.config).stem}")


def cmd_demo(args) -> int:
    overrides = list(args.overrides)
    if args.problems:
        overrides.append(f"problems.toy.n={args.problems}")
    return _label(str(DEMO_CONFIG), args.out, overrides, args.overwrite, "out/demo")


def cmd_relabel(args) -> int:
    from pipeline.relabel import REPORT_FILE, relabel

    summary = relabel(args.source, args.annotators, args.out, overwrite=args.overwrite)
    data = summary.as_dict()
    agreement = data.pop("agreement")
    width = max(len(key) for key in list(data) + list(agreement))
    print("\nrelabel")
    for key, value in data.items():
        print(f"  {key:<{width}}  {value}")
    print("agreement of the old and new prm/ labels")
    for key, value in agreement.items():
        print(f"  {key:<{width}}  {value}")
    print(f"\noutput: {args.out}  (report: {args.out}/{REPORT_FILE})")
    return 0


def cmd_evaluate(args) -> int:
    from pipeline.evaluate import evaluate_dataset, format_report

    try:
        report = evaluate_dataset(args.source, args.gold)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_bench_labelers(args) -> int:
    from benchmarks.labelers import benchmark

    report = benchmark(args.problems, args.samples, args.k, args.max_ops, args.seed)
    _print_nested(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print_nested(report: dict, indent: str = "") -> None:
    width = max(len(key) for key in report)
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{indent}{key}")
            _print_nested(value, indent + "  ")
        else:
            print(f"{indent}{key:<{width}}  {value}")


def cmd_toy_train(args) -> int:
    from toy.train import TrainConfig, train

    config = TrainConfig(steps=args.steps, seed=args.seed, layers=args.layers)
    report = train(args.out, config)
    print(f"trained in {report['train_seconds']} s; saved to {args.out}")
    return 0


def cmd_toy_eval(args) -> int:
    from toy.evaluate import evaluate_model, print_report

    report = evaluate_model(args.model, n=args.n, seed=args.seed)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prmforge", description="Process-reward-model training data, end to end.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine and Ray messages")
    verbs = parser.add_subparsers(dest="verb", required=True)

    label = verbs.add_parser("label", help="run a labelling job from a YAML config")
    label.add_argument("--config", required=True)
    label.add_argument("--out", help="output folder or URI (default out/<config name>)")
    label.add_argument("--overwrite", action="store_true", help="replace an existing output made with another config")
    label.add_argument("overrides", nargs="*", metavar="key.sub=value")
    label.set_defaults(func=cmd_label)

    demo = verbs.add_parser("demo", help="label toy problems with the embedded model into out/demo")
    demo.add_argument("--out")
    demo.add_argument("--problems", type=int, help="number of toy problems")
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("overrides", nargs="*", metavar="key.sub=value")
    demo.set_defaults(func=cmd_demo)

    relabel = verbs.add_parser("relabel", help="relabel a dataset under new annotators, reusing its rollouts")
    relabel.add_argument("--from", dest="source", required=True, help="the parent dataset folder")
    relabel.add_argument("--annotators", required=True, help="YAML with annotators / consensus (configs/annotators/)")
    relabel.add_argument("--out", required=True)
    relabel.add_argument("--overwrite", action="store_true")
    relabel.set_defaults(func=cmd_relabel)

    evaluate = verbs.add_parser("evaluate", help="score every annotator of a dataset against a gold annotator")
    evaluate.add_argument("--from", dest="source", required=True, help="dataset folder")
    evaluate.add_argument("--gold", required=True, help="gold annotator id or prefix (exact, human:prm800k, ...)")
    evaluate.add_argument("--json")
    evaluate.set_defaults(func=cmd_evaluate)

    bench = verbs.add_parser("bench", help="benchmarks (figures for the README)").add_subparsers(dest="bench_verb", required=True)
    labelers = bench.add_parser("labelers", help="OmegaPRM vs exhaustive MC: rollouts, tokens, time, accuracy vs exact")
    labelers.add_argument("--problems", type=int, default=24)
    labelers.add_argument("--samples", type=int, default=4, help="solutions per problem")
    labelers.add_argument("--k", type=int, default=8, help="rollouts per prefix")
    labelers.add_argument("--max-ops", type=int, help="toy difficulty: operations per problem (longer solutions)")
    labelers.add_argument("--seed", type=int, default=0)
    labelers.add_argument("--json")
    labelers.set_defaults(func=cmd_bench_labelers)

    toy = verbs.add_parser("toy", help="the embedded toy domain and model").add_subparsers(dest="toy_verb", required=True)
    train = toy.add_parser("train", help="train the embedded model from scratch")
    train.add_argument("--out", default=str(PROJECT_ROOT / "toy" / "model"))
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--layers", type=int, default=3)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=cmd_toy_train)
    toy_eval = toy.add_parser("eval", help="accuracy of the embedded model and judge, through the vllm engine")
    toy_eval.add_argument("--model", default=str(PROJECT_ROOT / "toy" / "model"))
    toy_eval.add_argument("--n", type=int, default=200)
    toy_eval.add_argument("--seed", type=int, default=0)
    toy_eval.add_argument("--json")
    toy_eval.set_defaults(func=cmd_toy_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pipeline.errors import USER_ERRORS

    try:
        return args.func(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
