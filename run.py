#!/usr/bin/env python3
"""prmforge command line: ``python run.py VERB ...`` (also installed as ``prmforge``).

Verbs: label, demo, relabel, import, export, push, evaluate, bench {labelers,memory,engine,scaling}, toy {train,eval}.  Exit codes: 0 done, 1 the job failed, 2 bad config or input.
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


def cmd_import(args) -> int:
    from data_schemas.formats import FormatError
    from pipeline.importer import SKIPPED_FILE, import_dataset

    try:
        summary = import_dataset(args.format, args.input, args.out, skip_invalid=args.skip_invalid,
                                 overwrite=args.overwrite, split=args.split)
    except (FormatError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    skipped = summary.pop("skipped_records")
    _print_nested(summary)
    for where, why in skipped[:20]:
        print(f"  skipped {where}: {why}")
    if skipped:
        print(f"  ({len(skipped)} skipped in all; listed in {args.out}/{SKIPPED_FILE})")
    print(f"\noutput: {args.out}")
    return 0


def cmd_export(args) -> int:
    from pipeline.export import export_dataset

    try:
        report = export_dataset(args.source, args.format, args.out, test_size=args.test_size, seed=args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_nested(report)
    print(f"\noutput: {args.out}  (load with datasets.load_dataset({args.out!r}))")
    return 0


def cmd_push(args) -> int:
    from pipeline.push import push

    try:
        result = push(args.source, args.repo, private=args.private, export_format=args.format,
                      test_size=args.test_size, dry_run=args.dry_run)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = result.pop("files")
    _print_nested(result)
    print(f"  {len(files)} files: " + ", ".join(files[:8]) + (" ..." if len(files) > 8 else ""))
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


def cmd_bench_memory(args) -> int:
    from benchmarks.memory import benchmark

    report = benchmark(args.problems, args.factor, args.shard_size)
    _print_nested(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_bench_engine(args) -> int:
    from benchmarks.engine import benchmark

    report = benchmark(args.problems, args.samples, args.max_tokens, shard_size=args.shard_size, seed=args.seed)
    _print_nested(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_bench_scaling(args) -> int:
    from benchmarks.scaling import benchmark

    try:
        report = benchmark(args.solutions, args.source, args.tokens_per_s, seed=args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
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

    importer = verbs.add_parser("import", help="import a public PRM dataset into prmforge layers")
    importer.add_argument("--format", required=True, choices=["processbench", "prm800k", "math-shepherd", "trl"])
    importer.add_argument("--input", required=True, help="file (.json/.jsonl/.parquet), datasets folder, or Hub id")
    importer.add_argument("--out", required=True)
    importer.add_argument("--split", default="train", help="split, for a datasets folder or Hub id")
    importer.add_argument("--skip-invalid", action="store_true", help="skip malformed records and report them")
    importer.add_argument("--overwrite", action="store_true")
    importer.set_defaults(func=cmd_import)

    export = verbs.add_parser("export", help="export prm/ rows to a trainer format")
    export.add_argument("--from", dest="source", required=True)
    export.add_argument("--format", required=True, choices=["trl", "math-shepherd", "processbench", "parquet"])
    export.add_argument("--out", required=True)
    export.add_argument("--test-size", type=float, help="share of problems in a test split (split by problem)")
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=cmd_export)

    push = verbs.add_parser("push", help="publish a dataset on the Hugging Face Hub")
    push.add_argument("--from", dest="source", required=True)
    push.add_argument("--repo", required=True, help="ORG/NAME")
    push.add_argument("--private", action="store_true")
    push.add_argument("--format", choices=["trl", "math-shepherd", "processbench", "parquet"],
                      help="push one export format instead of every layer")
    push.add_argument("--test-size", type=float)
    push.add_argument("--dry-run", metavar="DIR", help="write the Hub folder to DIR and upload nothing")
    push.set_defaults(func=cmd_push)

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
    memory = bench.add_parser("memory", help="driver peak memory for N and factor x N problems")
    memory.add_argument("--problems", type=int, default=40)
    memory.add_argument("--factor", type=int, default=10)
    memory.add_argument("--shard-size", type=int, default=8)
    memory.add_argument("--json")
    memory.set_defaults(func=cmd_bench_memory)
    engine = bench.add_parser("engine", help="generated tokens/s: raw vllm.LLM.generate vs the pipeline on Ray")
    engine.add_argument("--problems", type=int, default=1000)
    engine.add_argument("--samples", type=int, default=8, help="solutions per problem")
    engine.add_argument("--max-tokens", type=int, default=64)
    engine.add_argument("--shard-size", type=int, help="problems per shard (default: the config's)")
    engine.add_argument("--seed", type=int, default=0)
    engine.add_argument("--json")
    engine.set_defaults(func=cmd_bench_engine)
    scaling = bench.add_parser("scaling", help="CPU stages on 1 and 2 Ray workers; per-solution costs of a dataset")
    scaling.add_argument("--solutions", type=int, default=4000)
    scaling.add_argument("--from", dest="source", help="a prmforge output: report its per-solution costs")
    scaling.add_argument("--tokens-per-s", type=float, help="engine throughput (bench engine) for the sizing")
    scaling.add_argument("--seed", type=int, default=0)
    scaling.add_argument("--json")
    scaling.set_defaults(func=cmd_bench_scaling)

    toy = verbs.add_parser("toy", help="the embedded toy domain and model").add_subparsers(dest="toy_verb", required=True)
    train = toy.add_parser("train", help="train the embedded model from scratch")
    train.add_argument("--out", default=str(PROJECT_ROOT / "toy" / "model"))
    train.add_argument("--steps", type=int, default=4000)
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
