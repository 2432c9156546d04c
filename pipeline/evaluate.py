"""Score every annotator of a dataset against a gold one (the exact checker, or imported human labels).

Per annotator, over the solutions the gold annotator labelled:
- ProcessBench metrics: ``error_accuracy`` (gold has an error: the exact earliest-error index was
  named), ``correct_accuracy`` (gold has none: -1 was named), and their harmonic mean ``f1``.
  An abstention counts as a miss, as an unparseable answer does in ProcessBench.
- ``step_agreement`` and Cohen's ``kappa`` over the steps both labelled (neither -1).
- ``n`` solutions compared, ``abstained`` among them, and ``coverage`` (the share not abstained).
- The same three ProcessBench metrics over the labelled solutions only (``*_labelled``): what a
  filtering annotator (OmegaPRM's question filter, a consensus rule) gets right on the rows it keeps.
  A dataset builder reads both: coverage says how much is kept, ``f1_labelled`` how good it is.
"""
from __future__ import annotations

from pipeline.store import DatasetStore


def cohen_kappa(pairs: list[tuple[int, int]]) -> float | None:
    """Cohen's kappa of two binary raters; None when undefined (no pairs, or chance agreement is 1)."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    a_good = sum(a for a, _ in pairs) / n
    b_good = sum(b for _, b in pairs) / n
    expected = a_good * b_good + (1 - a_good) * (1 - b_good)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def _f1(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def compare(gold: dict[str, dict], other: dict[str, dict]) -> dict:
    """Metrics of ``other`` against ``gold``; both map solution_id -> labels-layer row."""
    errors_hit = errors_total = correct_hit = correct_total = abstained = 0
    errors_labelled = correct_labelled = 0
    pairs: list[tuple[int, int]] = []
    compared = 0
    for solution_id, gold_row in gold.items():
        if gold_row["abstained"] or solution_id not in other:
            continue
        row = other[solution_id]
        compared += 1
        gold_error = gold_row["first_error_step"]
        if row["abstained"]:
            abstained += 1
            hit = False
        else:
            hit = row["first_error_step"] == gold_error
            for mine, theirs in zip(row["step_labels"], gold_row["step_labels"]):
                if mine >= 0 and theirs >= 0:
                    pairs.append((int(theirs), int(mine)))
        if gold_error >= 0:
            errors_total += 1
            errors_hit += hit
            errors_labelled += not row["abstained"]
        else:
            correct_total += 1
            correct_hit += hit
            correct_labelled += not row["abstained"]
    error_accuracy = _share(errors_hit, errors_total)
    correct_accuracy = _share(correct_hit, correct_total)
    error_labelled = _share(errors_hit, errors_labelled)
    correct_labelled_accuracy = _share(correct_hit, correct_labelled)
    kappa = cohen_kappa(pairs)
    return {
        "error_accuracy": _round(error_accuracy),
        "correct_accuracy": _round(correct_accuracy),
        "f1": _round(_f1(error_accuracy, correct_accuracy)),
        "coverage": _round(_share(compared - abstained, compared)),
        "error_accuracy_labelled": _round(error_labelled),
        "correct_accuracy_labelled": _round(correct_labelled_accuracy),
        "f1_labelled": _round(_f1(error_labelled, correct_labelled_accuracy)),
        "step_agreement": _round(sum(a == b for a, b in pairs) / len(pairs) if pairs else None),
        "kappa": _round(kappa),
        "n": compared,
        "n_erroneous": errors_total,
        "n_correct": correct_total,
        "abstained": abstained,
        "steps_compared": len(pairs),
    }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def evaluate_dataset(root: str, gold: str) -> dict:
    """The evaluate report of the dataset at ``root`` against the annotator ``gold`` (id or prefix)."""
    store = DatasetStore(root)
    layers = [layer[len("labels/"):] for layer in store.layers() if layer.startswith("labels/")]
    if not layers:
        raise ValueError(f"{root} has no labels/ layers to evaluate")
    gold_id = next((a for a in layers if a == gold or a.startswith(gold)), None)
    if gold_id is None:
        raise ValueError(f"no annotator in {root} matches the gold {gold!r}; present: {', '.join(layers)}")

    def rows(annotator: str) -> dict[str, dict]:
        return {row["solution_id"]: row for row in store.read_layer(f"labels/{annotator}").to_pylist()}

    gold_rows = rows(gold_id)
    return {"gold": gold_id,
            "annotators": {a: compare(gold_rows, rows(a)) for a in layers if a != gold_id}}


def format_report(report: dict) -> str:
    columns = ["error_accuracy", "correct_accuracy", "f1", "coverage", "f1_labelled", "step_agreement", "kappa",
               "n"]
    width = max([len(a) for a in report["annotators"]] + [9])
    lines = [f"gold: {report['gold']}", f"{'annotator':<{width}}  " + "  ".join(f"{c:>14}" for c in columns)]
    for annotator, metrics in report["annotators"].items():
        cells = ["-" if metrics[c] is None else str(metrics[c]) for c in columns]
        lines.append(f"{annotator:<{width}}  " + "  ".join(f"{cell:>14}" for cell in cells))
    return "\n".join(lines)
