"""End to end with real parts: the vLLM engine on Ray, the embedded model, Parquet read back."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from data_schemas.layers import PRM
from pipeline.config import build_config
from pipeline.runner import run_job
from pipeline.store import ConfigMismatchError, DatasetStore
from tests.conftest import PROJECT_ROOT, CountingEngine


def small_config(**changes) -> dict:
    config = {
        "name": "test",
        "problems": {"source": "toy", "domain": "toy", "toy": {"n": 6, "seed": 0}},
        "policy": {"engine": "vllm", "model": "embedded"},
        "sampling": {"n": 3, "max_tokens": 48},
        "annotators": [
            {"type": "omegaprm", "k": 4, "initial_rollouts": 8, "search_limit": 2},
            {"type": "llm_judge", "style": "toy", "max_tokens": 320},
            {"type": "exact"},
        ],
        "consensus": {"rule": "qwen", "primary": "omegaprm"},
        "output": {"shard_size": 2},
    }
    config.update(changes)
    return config


class CrashingEngine:
    """Lets ``calls_before_crash`` engine calls through, then fails like a dying worker."""

    def __init__(self, engine, calls_before_crash: int) -> None:
        self.engine, self.left = engine, calls_before_crash

    def generate(self, requests):
        if self.left <= 0:
            raise RuntimeError("engine worker died")
        self.left -= 1
        return self.engine.generate(requests)


def prm_by_solution(out) -> dict:
    rows = pq.read_table(out / "prm").to_pylist()
    assert len(rows) == len({row["solution_id"] for row in rows}), "duplicated rows"
    return {row["solution_id"]: row for row in rows}


def test_end_to_end_layers_and_formats(tmp_path, policy_engine):
    import datasets

    out = tmp_path / "job"
    summary = run_job(build_config(small_config()), str(out), engine=policy_engine, progress=False)
    assert summary.problems == 6 and summary.solutions >= 18
    table = pq.read_table(out / "prm")
    assert table.schema.names[:len(PRM.names)] == PRM.names
    for name in PRM.names:
        assert table.schema.field(name).type == PRM.field(name).type
    loaded = datasets.load_dataset(str(out))
    assert loaded["train"].num_rows == table.num_rows == summary.prm_rows
    manifest = json.loads((out / "manifest.json").read_text())
    layers = {layer for layer in DatasetStore(str(out)).layers()}
    assert {"problems", "solutions", "prm"} <= layers
    assert any(layer.startswith("rollouts/") for layer in layers)
    assert sum(layer.startswith("labels/") for layer in layers) == 4  # 3 annotators + consensus
    assert len(manifest["shards"]) == 3
    rows = table.to_pylist()
    for row in rows:  # consensus kept rows: labels stop at the first error
        labels = row["labels"]
        assert len(labels) == len(row["steps"]) == len(row["soft_labels"])
        if row["first_error_step"] >= 0:
            assert labels[row["first_error_step"]] == 0
            assert all(label == 1 for label in labels[:row["first_error_step"]])
    assert (out / "README.md").read_text().startswith("---")


def test_load_dataset_never_serves_another_folders_cached_rows(tmp_path, policy_engine):
    """datasets caches a folder's YAML configs by their text, not by the files: two outputs of the same
    name (or one path written twice) must still load their own rows (the card's content fingerprint)."""
    import datasets

    for problems in (2, 3):
        out = tmp_path / f"run{problems}" / "job"
        config = small_config(annotators=[], consensus={"rule": "none"},
                              problems={"source": "toy", "domain": "toy", "toy": {"n": problems, "seed": 0}})
        summary = run_job(build_config(config), str(out), engine=policy_engine, progress=False)
        loaded = datasets.load_dataset(str(out))["train"]
        assert loaded.num_rows == summary.prm_rows == pq.read_table(out / "prm").num_rows == 3 * problems


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, policy_engine):
    config = build_config(small_config())
    counting = CountingEngine(policy_engine)
    run_job(config, str(tmp_path / "whole"), engine=counting, progress=False)
    # in-process shards run one after another and seeds make the calls repeat: failing the last call
    # kills the run inside its last shard, after the others are complete
    with pytest.raises(RuntimeError, match="worker died"):
        run_job(config, str(tmp_path / "resumed"), engine=CrashingEngine(policy_engine, counting.calls - 1),
                progress=False)
    done = DatasetStore(str(tmp_path / "resumed")).completed_shards()
    assert 0 < len(done) < 3
    summary = run_job(config, str(tmp_path / "resumed"), engine=policy_engine, progress=False)
    assert summary.shards_skipped == len(done)
    whole, resumed = prm_by_solution(tmp_path / "whole"), prm_by_solution(tmp_path / "resumed")
    assert whole.keys() == resumed.keys()
    for solution_id, row in whole.items():
        assert resumed[solution_id]["labels"] == row["labels"]
        assert resumed[solution_id]["first_error_step"] == row["first_error_step"]
    solutions = pq.read_table(tmp_path / "resumed" / "solutions").column("solution_id").to_pylist()
    assert len(solutions) == len(set(solutions))


def test_other_config_on_same_out_is_refused(tmp_path, policy_engine):
    out = str(tmp_path / "job")
    config = small_config(annotators=[], consensus={})
    run_job(build_config(config), out, engine=policy_engine, progress=False)
    with pytest.raises(ConfigMismatchError, match="overwrite"):
        run_job(build_config({**config, "seed": 1}), out, engine=policy_engine, progress=False)
    summary = run_job(build_config({**config, "seed": 1}), out, engine=policy_engine, progress=False, overwrite=True)
    assert summary.problems == 6


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT)


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  n: 0\n  temprature: 1.0\n")
    result = run_cli("label", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "sampling.n" in result.stderr and "sampling.temprature: unknown key" in result.stderr
    assert not (tmp_path / "out").exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text("problems: [unclosed\n")
    result = run_cli("label", "--config", str(broken))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    result = run_cli("label", "--config", str(bad), "--out", str(tmp_path / "out"), "sampling.n=2",
                     "sampling.temprature=", "policy.engine=tpu")
    assert result.returncode == 2 and "policy.engine" in result.stderr


def test_problem_file_errors_name_record_and_field(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?"}\n')
    config = tmp_path / "job.yaml"
    config.write_text(f"problems:\n  source: jsonl\n  path: {problems}\n  domain: plain\n")
    result = run_cli("label", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{problems}, line 2: missing field 'answer'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_job_the_local_ray_cannot_schedule_is_refused_not_left_hanging(ray_local, tmp_path):
    from pipeline.config import ConfigError

    config = build_config(small_config(policy={"engine": "vllm", "model": "embedded", "num_cpus": 64}))
    with pytest.raises(ConfigError, match=r"policy.num_cpus 64 x 1 \+ ray.shard_cpus"):
        run_job(config, str(tmp_path / "out"), progress=False)
    assert not list((tmp_path / "out").glob("*/part-*.parquet"))
