"""Publish a dataset on the Hugging Face Hub.

The Hub folder holds the Parquet shards under ``data/`` (every layer, or one export format), a dataset
card whose YAML ``configs`` name each of them, the manifest and the job config.  The token comes from
the usual place (``HF_TOKEN`` or ``huggingface-cli login``) through ``huggingface_hub``; prmforge never
reads, prints or writes it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import yaml

from pipeline.card import config_description, content_fingerprint, dataset_card
from pipeline.store import CARD_FILE, MANIFEST_FILE, DatasetStore


def build_hub_folder(source: str, target: str | Path, *, export_format: str | None = None,
                     test_size: float | None = None, seed: int = 0) -> list[str]:
    """Write the folder that would be uploaded; returns its files, relative to ``target``."""
    store = DatasetStore(source)
    manifest = store.manifest
    if not manifest.get("config"):
        raise ValueError(f"{source} is not a prmforge dataset (no manifest.json with a config)")
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} is not empty: choose a new folder for the Hub files")
    target.mkdir(parents=True, exist_ok=True)
    title = manifest["config"].get("name", "prm dataset")
    if export_format is None:
        folders = {}
        for layer in store.layers():
            folder = f"data/{manifest.get('layer_dirs', {}).get(layer, layer)}"
            folders[layer] = folder
            (target / folder).mkdir(parents=True, exist_ok=True)
            for path in store.layer_files(layer):
                shutil.copyfile(path, target / folder / Path(path).name)
        card_manifest = {**manifest, "layer_dirs": folders}
        card = dataset_card(card_manifest, store.layers(), title=title)
    else:
        from pipeline.export import export_dataset

        report = export_dataset(source, export_format, str(target / "data"), test_size=test_size, seed=seed)
        card = export_card(manifest, export_format, report, title)
    (target / CARD_FILE).write_text(card, encoding="utf-8")
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (target / "config.yaml").write_text(yaml.safe_dump(manifest["config"], sort_keys=False), encoding="utf-8")
    return sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())


def export_card(manifest: dict, export_format: str, report: dict, title: str) -> str:
    splits = report.get("splits", {"train": report.get("rows", 0)})
    header = {
        "license": "other",
        "task_categories": ["text-classification"],
        "tags": ["process-reward-model", "prm", "prmforge", export_format],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in splits],
                     "description": config_description(export_format,
                                                       content_fingerprint(manifest, [export_format, report]))}],
    }
    body = (f"# {title} ({export_format})\n\nThe `prm/` rows of a prmforge dataset in the {export_format} format. "
            f"Rows per split: {json.dumps(splits)}. The provenance (config, annotators, counts) is in "
            f"`{MANIFEST_FILE}`; split by problem, never by step.\n")
    return f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n{body}"


def push(source: str, repo: str, *, private: bool = False, export_format: str | None = None,
         test_size: float | None = None, dry_run: str | None = None, api=None) -> dict:
    """Build the Hub folder and upload it (or only build it, with ``dry_run`` naming the folder)."""
    if "/" not in repo or repo.count("/") != 1:
        raise ValueError(f"--repo must be ORG/NAME, not {repo!r}")
    if dry_run:
        files = build_hub_folder(source, dry_run, export_format=export_format, test_size=test_size)
        return {"repo": repo, "dry_run": dry_run, "files": files, "uploaded": False}
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    with tempfile.TemporaryDirectory(prefix="prmforge-push-") as folder:
        files = build_hub_folder(source, folder, export_format=export_format, test_size=test_size)
        url = api.create_repo(repo_id=repo, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=folder,
                                   commit_message=f"prmforge: {Path(source).name}")
    return {"repo": repo, "url": str(url), "commit": str(getattr(commit, "oid", commit)), "files": files,
            "uploaded": True}
