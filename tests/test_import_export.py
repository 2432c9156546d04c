"""import → layers → export → re-import, export folders through `datasets`, and push up to HTTP."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.export import export_dataset
from pipeline.importer import import_dataset
from pipeline.push import push
from pipeline.store import DatasetStore
from tests.conftest import FIXTURES, PROJECT_ROOT

SAMPLES = FIXTURES / "formats"
CASES = [
    ("processbench", "processbench_gsm8k_sample24.json", "processbench", "human:processbench"),
    ("prm800k", "prm800k_raw_samples_8.jsonl", "processbench", "human:prm800k"),
    ("math-shepherd", "math_shepherd_samples_7.jsonl", "math-shepherd", "source:math-shepherd"),
]


def steps_and_labels(root: str) -> dict:
    """question -> sorted (steps, labels cut at the first unlabelled step) of the prm/ rows."""
    from data_schemas.formats import labelled_prefix_length

    found: dict = {}
    for row in DatasetStore(root).read_layer("prm").to_pylist():
        kept = labelled_prefix_length(row["labels"])
        found.setdefault(row["question"], []).append((row["steps"][:kept], row["labels"][:kept]))
    return {question: sorted(pairs) for question, pairs in found.items()}


@pytest.mark.parametrize("fmt, sample, export_format, annotator", CASES)
def test_round_trip(tmp_path, fmt, sample, export_format, annotator):
    import datasets

    first = tmp_path / "first"
    summary = import_dataset(fmt, str(SAMPLES / sample), str(first))
    assert summary["annotator"] == annotator and summary["solutions"] > 0
    store = DatasetStore(str(first))
    assert f"labels/{annotator}" in store.layers()
    exported = tmp_path / "exported"
    report = export_dataset(str(first), export_format, str(exported))
    loaded = datasets.load_dataset(str(exported))
    assert loaded["train"].num_rows == report["splits"]["train"]
    again = tmp_path / "again"
    re_import = import_dataset(export_format, str(exported / "train-00000-of-00001.parquet"), str(again))
    assert re_import["solutions"] == report["rows"]
    original, returned = steps_and_labels(str(first)), steps_and_labels(str(again))
    for question, pairs in returned.items():
        assert all(pair in original[question] for pair in pairs)
    if fmt != "prm800k":  # PRM800K sessions that stop mid-way carry unlabelled steps processbench cannot hold
        assert sum(len(p) for p in returned.values()) == sum(len(p) for p in original.values())


@pytest.mark.parametrize("export_format", ["trl", "math-shepherd", "processbench", "parquet"])
def test_exports_load_with_expected_features_and_split_by_problem(tmp_path, export_format):
    import datasets

    source = tmp_path / "pb"
    import_dataset("processbench", str(SAMPLES / "processbench_gsm8k_sample24.json"), str(source))
    out = tmp_path / export_format
    report = export_dataset(str(source), export_format, str(out), test_size=0.25, seed=1)
    loaded = datasets.load_dataset(str(out))
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].num_rows == report["splits"]["train"] and loaded["test"].num_rows > 0
    if export_format == "trl":
        row = loaded["train"][0]
        assert isinstance(row["labels"][0], bool) and len(row["labels"]) == len(row["completions"])
        assert str(loaded["train"].features["labels"]) in ("List(Value('bool'))", "Sequence(feature=Value(dtype='bool'), length=-1)")
        train_problems = set(loaded["train"]["problem_id"])
        assert not train_problems & set(loaded["test"]["problem_id"])  # never the same problem on both sides


def test_malformed_import_names_the_record_and_skip_invalid_reports(tmp_path):
    records = json.loads((SAMPLES / "processbench_gsm8k_sample24.json").read_text())
    records[3]["label"] = 99
    del records[5]["steps"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records))
    run = [sys.executable, str(PROJECT_ROOT / "run.py"), "import", "--format", "processbench", "--input", str(bad)]
    result = subprocess.run(run + ["--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "record 3" in result.stderr and "'label'" in result.stderr
    assert not (tmp_path / "out").exists()
    result = subprocess.run(run + ["--out", str(tmp_path / "ok"), "--skip-invalid"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 skipped" in result.stdout
    skipped = json.loads((tmp_path / "ok" / "import_skipped.json").read_text())
    assert len(skipped) == 2 and "record 5" in skipped[1]["where"]


class RecordingApi:
    """Stands in for huggingface_hub.HfApi at the HTTP boundary: records what would be sent."""

    def __init__(self) -> None:
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/datasets/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        from pathlib import Path

        files = sorted(str(p.relative_to(kwargs["folder_path"])) for p in Path(kwargs["folder_path"]).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        return "commit-oid"


def test_push_builds_the_hub_folder_and_makes_the_calls(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    source = tmp_path / "pb"
    import_dataset("processbench", str(SAMPLES / "processbench_gsm8k_sample24.json"), str(source))
    dry = tmp_path / "hub"
    result = push(str(source), "org/name", dry_run=str(dry))
    assert not result["uploaded"]
    assert {"README.md", "manifest.json", "config.yaml"} <= set(result["files"])
    assert any(f.startswith("data/prm/") for f in result["files"])
    assert datasets.load_dataset(str(dry))["train"].num_rows == DatasetStore(str(source)).read_layer("prm").num_rows
    api = RecordingApi()
    pushed = push(str(source), "org/name", private=True, api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "org/name", "repo_type": "dataset", "private": True, "exist_ok": True}
    assert api.calls[1][1]["files"] == result["files"] and pushed["uploaded"]
    for path in dry.rglob("*"):  # the token is never written anywhere
        if path.is_file():
            assert b"hf_secret_token_value" not in path.read_bytes()
    trl = push(str(source), "org/name", export_format="trl", test_size=0.25, dry_run=str(tmp_path / "hub-trl"))
    assert any(f.startswith("data/test-") for f in trl["files"])
    assert set(datasets.load_dataset(str(tmp_path / "hub-trl"))) == {"train", "test"}
