"""Relabelling reuses every rollout already paid for (real engine, real Parquet)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import build_config
from pipeline.relabel import REPORT_FILE, relabel
from pipeline.runner import run_job
from pipeline.store import DatasetStore
from tests.conftest import CountingEngine
from tests.test_pipeline import run_cli, small_config


@pytest.fixture(scope="module")
def parent(tmp_path_factory, policy_engine):
    out = tmp_path_factory.mktemp("relabel") / "parent"
    run_job(build_config(small_config()), str(out), engine=policy_engine, progress=False)
    return out


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_new_consensus_rule_spends_zero_rollouts(tmp_path, parent, policy_engine):
    engine = CountingEngine(policy_engine)
    changes = write_yaml(tmp_path / "rule.yaml", {"consensus": {"rule": "none", "primary": "omegaprm"}})
    summary = relabel(str(parent), changes, str(tmp_path / "child"), engine=engine, progress=False)
    assert engine.samples == 0 and engine.calls == 0
    assert summary.rollouts_new == 0 and summary.rollouts_reused > 0
    assert len(summary.reused_annotators) == 3 and summary.rerun_annotators == []
    # without the judge's agreement, at least as many solutions are kept
    assert summary.agreement["kept_new"] >= summary.agreement["kept_old"]
    assert summary.agreement["first_error_agreement"] == 1.0  # same OmegaPRM labels where both kept
    manifest = json.loads((tmp_path / "child" / "manifest.json").read_text())
    assert manifest["parent"]["path"] == str(parent)
    assert manifest["parent"]["manifest_hash"]
    report = json.loads((tmp_path / "child" / REPORT_FILE).read_text())
    assert report["agreement"]["kept_old"] == pq.read_table(parent / "prm").num_rows


def test_new_annotator_reuses_cached_prefixes_and_larger_k_pays_only_the_difference(tmp_path, parent, policy_engine):
    same_k = write_yaml(tmp_path / "mc.yaml", {"annotators": [{"type": "mc_exhaustive", "k": 4}],
                                                "consensus": {"rule": "none", "primary": "mc_exhaustive"}})
    first = relabel(str(parent), same_k, str(tmp_path / "mc4"), engine=CountingEngine(policy_engine), progress=False)
    assert first.rerun_annotators and first.rollouts_reused > 0
    # run again from the child, which now holds every rollout mc_exhaustive needed: nothing new
    engine = CountingEngine(policy_engine)
    again = relabel(str(tmp_path / "mc4"), same_k, str(tmp_path / "mc4-again"), engine=engine, progress=False)
    assert engine.samples == 0 and again.rollouts_new == 0
    bigger = write_yaml(tmp_path / "mc6.yaml", {"annotators": [{"type": "mc_exhaustive", "k": 6}],
                                                 "consensus": {"rule": "none", "primary": "mc_exhaustive"}})
    engine = CountingEngine(policy_engine)
    larger = relabel(str(tmp_path / "mc4"), bigger, str(tmp_path / "mc6"), engine=engine, progress=False)
    store = DatasetStore(str(tmp_path / "mc4"))
    [layer] = [layer for layer in store.layers() if layer.startswith("rollouts/")]
    prefixes = len(set(store.read_layer(layer).column("prefix_hash").to_pylist()))
    assert 0 < engine.samples <= 2 * prefixes  # k 4 -> 6: at most the 2 missing rollouts per prefix
    assert larger.rollouts_new == engine.samples


def test_relabel_file_errors_are_clear(tmp_path, parent):
    from pipeline.config import ConfigError

    bad = write_yaml(tmp_path / "bad.yaml", {"policy": {"model": "other"}})
    with pytest.raises(ConfigError, match="policy: unknown key"):
        relabel(str(parent), bad, str(tmp_path / "x"), progress=False)
    missing = write_yaml(tmp_path / "missing.yaml", {"consensus": {"rule": "qwen", "primary": "omegaprm",
                                                                    "agree_with": ["nonexistent"]}})
    with pytest.raises(ConfigError, match="nonexistent"):
        relabel(str(parent), missing, str(tmp_path / "y"), progress=False)
    assert not (tmp_path / "y").exists()


def test_evaluate_scores_every_annotator_against_the_gold_layer(tmp_path, parent):
    result = run_cli("evaluate", "--from", str(parent), "--gold", "exact", "--json", str(tmp_path / "eval.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["gold"].startswith("exact@")
    kinds = {annotator.split("@")[0] for annotator in report["annotators"]}
    assert kinds == {"omegaprm", "llm_judge", "consensus"}
    solutions = pq.read_table(parent / "solutions").num_rows
    for metrics in report["annotators"].values():
        assert {"error_accuracy", "correct_accuracy", "f1", "step_agreement", "kappa", "n"} <= set(metrics)
        assert metrics["n"] == solutions
        for key in ("error_accuracy", "correct_accuracy", "f1", "coverage", "f1_labelled", "step_agreement"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    assert report["gold"][:8] in result.stdout and "f1_labelled" in result.stdout
    missing = run_cli("evaluate", "--from", str(parent), "--gold", "human:prm800k")
    assert missing.returncode == 2 and "human:prm800k" in missing.stderr and "exact@" in missing.stderr
