"""DatasetStore and the dataset card: shards, atomicity, resume, and loading with datasets/pyarrow."""
from __future__ import annotations

import json
import threading

import pyarrow.parquet as pq
import pytest
import yaml

from data_schemas.layers import LABELS, PRM, SCHEMA_VERSION, table
from pipeline import __version__
from pipeline.card import dataset_card
from pipeline.store import ConfigMismatchError, DatasetStore, TEMP_PREFIX, layer_folder, safe_folder_name

CONFIG = {"name": "test", "seed": 0, "sampling": {"n": 2, "temperature": 1.0}}
HASH = "aaaa1111"
ANNOTATOR = "omegaprm@1-3f2a9c"


def prm_rows(shard: str, n: int = 2) -> list[dict]:
    return [{
        "problem_id": f"p{shard}", "solution_id": f"s{shard}-{i}", "question": "1+2*3?",
        "steps": ["2*3=6", "1+6=7"], "labels": [1, 0], "soft_labels": [0.75, None],
        "first_error_step": 1, "outcome_correct": False, "annotators": [ANNOTATOR],
        "reference": "7", "final_answer": "8", "policy_key": "embedded|t=1.0",
    } for i in range(n)]


def label_rows(shard: str, n: int = 2) -> list[dict]:
    return [{
        "solution_id": f"s{shard}-{i}", "problem_id": f"p{shard}", "annotator": ANNOTATOR,
        "step_labels": [1, 0], "step_values": [0.75, 0.0], "step_n_correct": [6, 0], "step_n_rollouts": [8, 8],
        "first_error_step": 1, "abstained": False, "rollouts": 16, "generated_tokens": 400, "detail": "{}",
    } for i in range(n)]


def problem_rows(shard: str) -> list[dict]:
    return [{"problem_id": f"p{shard}", "source": "toy", "source_id": shard, "domain": "toy",
             "question": "1+2*3?", "reference": "7"}]


def shard_tables(shard: str, n: int = 2) -> dict:
    return {"problems": table("problems", problem_rows(shard)), "prm": table("prm", prm_rows(shard, n)),
            f"labels/{ANNOTATOR}": table("labels", label_rows(shard, n))}


@pytest.fixture
def store(tmp_path):
    store = DatasetStore(tmp_path / "out")
    store.begin(CONFIG, HASH)
    return store


def finish_with_card(store: DatasetStore) -> dict:
    manifest = store.finish({"prm_rows": store.read_layer("prm").num_rows})
    store.write_card(dataset_card(manifest, store.layers(), title="test set"))
    return store.manifest


def test_two_shards_read_back_in_shard_order(store, tmp_path):
    store.write_shard("00001", shard_tables("00001", n=3))
    store.write_shard("00000", shard_tables("00000"))
    prm = store.read_layer("prm")
    assert prm.schema == PRM
    assert prm.column("solution_id").to_pylist() == ["s00000-0", "s00000-1", "s00001-0", "s00001-1", "s00001-2"]
    assert store.read_layer(f"labels/{ANNOTATOR}").schema == LABELS
    assert store.read_layer("solutions").num_rows == 0 and store.read_layer("solutions").schema.names[0] == "solution_id"
    assert store.completed_shards() == {"00000", "00001"}
    assert store.layers() == ["problems", f"labels/{ANNOTATOR}", "prm"]

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["shards"]["00001"] == {"problems": 1, "prm": 3, f"labels/{ANNOTATOR}": 3}
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["prmforge_version"] == __version__
    assert manifest["config"] == CONFIG and manifest["config_hash"] == HASH and manifest["created_at"]
    folder = manifest["layer_dirs"][f"labels/{ANNOTATOR}"]
    assert folder == layer_folder(f"labels/{ANNOTATOR}") and "@" not in folder
    assert (tmp_path / "out" / folder / "part-00000.parquet").is_file()


def test_folder_names_are_safe_deterministic_and_distinct():
    assert safe_folder_name("already-safe_1.0") == "already-safe_1.0"
    assert safe_folder_name(ANNOTATOR) == safe_folder_name(ANNOTATOR)
    assert safe_folder_name("a@b") != safe_folder_name("a_b") == "a_b"
    assert not safe_folder_name("../..").startswith(".") and "/" not in safe_folder_name("Qwen/Qwen2.5-Math-7B")
    with pytest.raises(ValueError):
        layer_folder("labels")  # nested layers need an id
    with pytest.raises(ValueError):
        layer_folder("prm/x")


def test_datasets_and_pyarrow_load_the_folder(store, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    # The variables are read when `datasets` is first imported, which may have happened in another test.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    cache = str(tmp_path / "hf-cache")  # keep ~/.cache clean

    store.write_shard("00000", shard_tables("00000"))
    store.write_shard("00001", shard_tables("00001"))
    manifest = finish_with_card(store)
    root = tmp_path / "out"
    assert manifest["finished_at"] and manifest["summary"] == {"prm_rows": 4}

    card = (root / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    default = header["configs"][0]
    assert {key: default[key] for key in ("config_name", "data_files")} == {
        "config_name": "default", "data_files": [{"split": "train", "path": "prm/*.parquet"}]}
    assert "prmforge layer prm (content " in default["description"]  # keys datasets' cache to the content
    assert {"process-reward-model", "prm"} <= set(header["tags"])
    assert ANNOTATOR in card and "-1" in card

    loaded = datasets.load_dataset(str(root), cache_dir=cache)
    assert list(loaded) == ["train"]
    assert loaded["train"].num_rows == 4
    assert loaded["train"].column_names == PRM.names
    assert loaded["train"][0]["labels"] == [1, 0]
    labels_config = next(c["config_name"] for c in header["configs"] if c["config_name"].startswith("labels-"))
    assert datasets.load_dataset(str(root), labels_config, cache_dir=cache)["train"].num_rows == 4

    assert pq.read_table(root / "prm").schema.equals(PRM)


def test_other_config_is_refused_and_overwrite_replaces(store, tmp_path):
    store.write_shard("00000", shard_tables("00000"))
    other = dict(CONFIG, seed=1)
    with pytest.raises(ConfigMismatchError, match=r"--overwrite.*--out") as raised:
        DatasetStore(tmp_path / "out").begin(other, "bbbb2222")
    assert "seed" in str(raised.value)
    (tmp_path / "out" / "notes.txt").write_text("mine")

    fresh = DatasetStore(tmp_path / "out", overwrite=True)
    fresh.begin(other, "bbbb2222")
    assert fresh.completed_shards() == set() and fresh.read_layer("prm").num_rows == 0
    assert not (tmp_path / "out" / "prm").exists()
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"  # only prmforge's own files are deleted
    assert fresh.manifest["config_hash"] == "bbbb2222"


def test_same_config_resumes(store, tmp_path):
    store.write_shard("00000", shard_tables("00000"))
    resumed = DatasetStore(str(tmp_path / "out"))
    resumed.begin(CONFIG, HASH)
    assert resumed.is_complete("00000") and not resumed.is_complete("00001")
    assert resumed.read_layer("prm").num_rows == 2


def test_crash_mid_write_leaves_nothing_visible_and_rewrite_is_exact(store, tmp_path, monkeypatch):
    store.write_shard("00000", shard_tables("00000"))
    real_rename = DatasetStore._rename
    renames = []

    def crash_after_first(self, source, target):
        if len(renames) == 1:
            raise OSError("simulated crash")
        renames.append(target)
        real_rename(self, source, target)

    monkeypatch.setattr(DatasetStore, "_rename", crash_after_first)
    with pytest.raises(OSError, match="simulated"):
        store.write_shard("00001", shard_tables("00001"))
    monkeypatch.undo()

    assert len(renames) == 1  # one part of shard 00001 did land in its folder...
    resumed = DatasetStore(tmp_path / "out")
    resumed.begin(CONFIG, HASH)
    assert resumed.completed_shards() == {"00000"}  # ...but the shard is not recorded
    assert resumed.read_layer("prm").num_rows == 2 and resumed.read_layer("problems").num_rows == 1
    assert not list((tmp_path / "out").rglob(f"{TEMP_PREFIX}*"))

    resumed.write_shard("00001", shard_tables("00001"))
    ids = resumed.read_layer("prm").column("solution_id").to_pylist()
    assert ids == ["s00000-0", "s00000-1", "s00001-0", "s00001-1"]
    assert resumed.read_layer("problems").num_rows == 2


def test_rewriting_a_recorded_shard_replaces_its_rows(store):
    store.write_shard("00000", shard_tables("00000", n=2))
    store.write_shard("00000", shard_tables("00000", n=3))
    assert store.read_layer("prm").num_rows == 3
    assert store.manifest["shards"]["00000"]["prm"] == 3


def test_stale_temp_files_are_removed_and_strays_ignored(store, tmp_path):
    root = tmp_path / "out"
    store.write_shard("00000", shard_tables("00000"))
    (root / "prm" / f"{TEMP_PREFIX}part-00001.deadbeef").write_bytes(b"half a parquet")
    (root / f"{TEMP_PREFIX}manifest.json.cafe").write_text("{")
    pq.write_table(table("prm", prm_rows("00009")), root / "prm" / "part-00009.parquet")  # unrecorded part

    resumed = DatasetStore(root)
    resumed.begin(CONFIG, HASH)
    assert not list(root.rglob(f"{TEMP_PREFIX}*"))
    assert resumed.read_layer("prm").num_rows == 2  # the unrecorded part is not read
    resumed.finish({})
    assert not (root / "prm" / "part-00009.parquet").exists()  # nor left for globs to find


def test_concurrent_shards_keep_the_manifest_consistent(store, tmp_path):
    shard_ids = [f"{i:05d}" for i in range(8)]
    errors = []

    def write(shard_id):
        try:
            store.write_shard(shard_id, {"prm": table("prm", prm_rows(shard_id))})
        except BaseException as error:  # surfaced below; a thread would swallow it
            errors.append(error)

    threads = [threading.Thread(target=write, args=(shard_id,)) for shard_id in shard_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(on_disk["shards"]) == set(shard_ids)
    assert DatasetStore(tmp_path / "out").read_layer("prm").num_rows == 2 * len(shard_ids)


def test_schema_violations_write_nothing(store, tmp_path):
    bad = table("prm", prm_rows("00000")).drop_columns(["labels"])
    with pytest.raises(ValueError, match="labels"):
        store.write_shard("00000", {"problems": table("problems", problem_rows("00000")), "prm": bad})
    assert store.completed_shards() == set() and not (tmp_path / "out" / "problems").exists()
    with pytest.raises(ValueError):
        store.write_shard("../x", shard_tables("00000"))


def test_manifest_hash_names_the_manifest_bytes(store, tmp_path):
    import hashlib

    assert store.manifest_hash() == hashlib.sha256((tmp_path / "out" / "manifest.json").read_bytes()).hexdigest()
    before = store.manifest_hash()
    store.write_shard("00000", shard_tables("00000"))
    assert store.manifest_hash() != before


def test_uri_root_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = DatasetStore("rel/out")
    relative.begin(CONFIG, HASH)
    relative.write_shard("00000", shard_tables("00000"))
    uri = DatasetStore(f"file://{tmp_path}/rel/out")
    assert uri.read_layer("prm").num_rows == 2  # reading needs no begin()


def test_all_io_goes_through_pyarrow_fs():
    # mock:// is pyarrow's in-memory filesystem: any os-level file access would miss the data.
    store = DatasetStore("mock:///bucket/out")
    store.begin(CONFIG, HASH)
    store.write_shard("00000", shard_tables("00000"))
    store.finish({}, "---\n---\n# card\n")
    assert store.read_layer("prm").num_rows == 2 and len(store.manifest_hash()) == 64


def test_unreadable_manifest_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigMismatchError, match="--overwrite"):
        DatasetStore(tmp_path / "out").begin(CONFIG, HASH)
    store = DatasetStore(tmp_path / "out", overwrite=True)
    store.begin(CONFIG, HASH)
    assert store.completed_shards() == set()
