"""The output folder of one job: layered, sharded Parquet plus ``manifest.json`` (DESIGN.md §1).

    OUT/manifest.json                      config, versions, completed shards with row counts, parent, summary
    OUT/<layer folder>/part-<shard>.parquet
    OUT/README.md                          the dataset card

The manifest is the single source of truth: a shard exists only once the manifest records it, and
readers read only recorded parts.  Every file is written under a hidden temporary name and renamed into
place, and the manifest is rewritten (temp + rename) only after all of a shard's files are in place, so a
crash at any moment leaves a shard either complete and recorded or unrecorded, to be redone on resume
under the same file names (no duplicated rows).

All I/O goes through ``pyarrow.fs``, so the root may be a local path or a URI (``s3://``, ``gs://``).
On object stores a rename is copy + delete rather than atomic, which is still safe here: what makes a
shard visible is the manifest, and a single object PUT replaces the manifest whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from data_schemas.layers import LAYERS, SCHEMA_VERSION
from pipeline import __version__

MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
# Hidden (leading dot) and not ending in .parquet: Hugging Face `datasets` and `*.parquet` globs skip
# temporaries, and begin() removes the ones a crash left behind.
TEMP_PREFIX = ".tmp-"
NESTED_LAYERS = ("rollouts", "labels")  # layers with one folder per policy key / annotator id
PARQUET_COMPRESSION = "zstd"

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SHARD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_FOLDER_CHARS = 64


def split_into_shards(items: list, shard_size: int) -> list[tuple[str, list]]:
    """Consecutive chunks of ``shard_size`` items with their shard ids ("00000", "00001", ...)."""
    return [(f"{index // shard_size:05d}", items[index:index + shard_size]) for index in range(0, len(items), shard_size)]


class ConfigMismatchError(ValueError):
    """The output folder holds data made under another config (or is not a prmforge output)."""


def open_root(root: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """A filesystem and base path for a local path (relative ones too) or a URI such as s3://bucket/out."""
    text = os.fspath(root)
    if "://" not in text:
        # FileSystem.from_uri refuses relative paths and would read '%' as URI escapes.
        return pafs.LocalFileSystem(), os.path.abspath(text).replace(os.sep, "/")
    filesystem, path = pafs.FileSystem.from_uri(text)
    return filesystem, path.rstrip("/")


def safe_folder_name(name: str) -> str:
    """A folder name for an annotator id or policy key, deterministic and safe on every filesystem/URI.

    Names already safe stay as they are; others get their unsafe characters replaced and a short hash of
    the original appended, so two ids never share a folder ('a@b' and 'a_b' differ).
    """
    # No leading '.' or '_': `datasets` skips hidden and '__' folders.
    safe = _UNSAFE_CHARS.sub("_", name).lstrip("._-")[:_MAX_FOLDER_CHARS]
    if safe == name:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


def layer_folder(layer: str) -> str:
    """The folder of a layer path: 'prm' → 'prm', 'labels/omegaprm@1-3f2a' → 'labels/omegaprm_1-3f2a-<hash>'."""
    top, _, sub = layer.partition("/")
    if top not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}: the top level must be one of {sorted(LAYERS)}")
    if top in NESTED_LAYERS and not sub:
        raise ValueError(f"layer {top!r} is written per key: name it '{top}/<id>', not {layer!r}")
    if top not in NESTED_LAYERS and sub:
        raise ValueError(f"layer {top!r} has no sub-folders; got {layer!r}")
    return f"{top}/{safe_folder_name(sub)}" if sub else top


def layer_sort_key(layer: str) -> tuple[int, str]:
    """Pipeline order (problems, solutions, rollouts, labels, prm), then by name."""
    top, _, sub = layer.partition("/")
    return list(LAYERS).index(top), sub


def conform_to_schema(layer: str, table: pa.Table) -> pa.Table:
    """``table`` with exactly the layer's columns, in schema order and types; anything else fails loudly."""
    schema = LAYERS[layer.partition("/")[0]]
    if set(table.column_names) != set(schema.names):
        missing = sorted(set(schema.names) - set(table.column_names))
        extra = sorted(set(table.column_names) - set(schema.names))
        raise ValueError(f"table for layer {layer!r} does not match its schema (data_schemas/layers.py): "
                         f"missing columns {missing}, unexpected columns {extra}")
    return table.select(schema.names).cast(schema)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, for an error message a user can act on."""
    keys = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


class DatasetStore:
    """The output folder of one job: begin (or resume), write shards, read layers, finish."""

    def __init__(self, root: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.root = os.fspath(root)
        self.overwrite = overwrite
        self._fs, self._base = open_root(root)
        self._lock = threading.Lock()  # shards may finish concurrently in threads
        self._manifest: dict | None = None

    # -- paths and raw file operations --------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self._base, *parts])

    def _exists(self, path: str) -> bool:
        return self._fs.get_file_info(path).type != pafs.FileType.NotFound

    def _rename(self, source: str, target: str) -> None:
        """Move a finished file into place (replaces an older one of the same name); a seam for tests."""
        self._fs.move(source, target)

    def _delete_quietly(self, path: str) -> None:
        try:
            self._fs.delete_file(path)
        except OSError:  # already renamed or never created
            pass

    def _write_bytes_atomically(self, relative: str, data: bytes) -> None:
        folder, _, name = relative.rpartition("/")
        temp = self._path(*filter(None, [folder, f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}"]))
        try:
            with self._fs.open_output_stream(temp) as stream:
                stream.write(data)
            self._rename(temp, self._path(relative))
        except BaseException:
            self._delete_quietly(temp)
            raise

    # -- manifest ------------------------------------------------------------------------------------

    def _read_manifest_file(self) -> dict | None:
        path = self._path(MANIFEST_FILE)
        try:
            with self._fs.open_input_stream(path) as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError as error:
            raise ConfigMismatchError(f"{path} is not valid JSON ({error}); pass --overwrite to replace "
                                      f"this output, or choose another --out") from None

    def _current(self) -> dict:
        """The manifest in memory, loaded from the folder when the store only reads (no begin())."""
        if self._manifest is None:
            manifest = self._read_manifest_file()
            if manifest is None:
                raise FileNotFoundError(f"{self._path(MANIFEST_FILE)} does not exist: not a prmforge output, "
                                        f"or one whose job has not begun")
            self._manifest = manifest
        return self._manifest

    def _update_manifest(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` and rewrite manifest.json atomically, under the lock so writes never interleave."""
        with self._lock:
            manifest = self._current()
            change(manifest)
            self._write_bytes_atomically(MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
            return json.loads(json.dumps(manifest))

    @property
    def manifest(self) -> dict:
        """A copy of the manifest."""
        with self._lock:
            return json.loads(json.dumps(self._current()))

    def manifest_hash(self) -> str:
        """sha256 of manifest.json's bytes: names exactly this state of the dataset (e.g. for a parent link)."""
        with self._fs.open_input_stream(self._path(MANIFEST_FILE)) as stream:
            return hashlib.sha256(stream.read()).hexdigest()

    # -- job lifecycle -------------------------------------------------------------------------------

    def begin(self, config: dict, config_hash: str, *, parent: dict | None = None) -> dict:
        """Start a job here, or resume one made with the same config hash; returns the manifest.

        Another config's output is refused unless ``overwrite``, which deletes it first.  Temporary files
        left by a crashed run are removed.
        """
        try:
            existing = self._read_manifest_file()
        except ConfigMismatchError:  # unreadable manifest
            if not self.overwrite:
                raise
            self._delete_content()
            existing = None
        if existing is not None:
            problem = self._incompatibility(existing, config, config_hash)
            if problem:
                if not self.overwrite:
                    raise ConfigMismatchError(f"{problem}. Pass --overwrite to replace it, or choose another --out.")
                self._delete_content()
                existing = None
        elif self._has_layer_folders():
            if not self.overwrite:
                raise ConfigMismatchError(
                    f"{self.root} holds layer folders but no {MANIFEST_FILE}: it is not a prmforge output, or its "
                    f"first write was interrupted. Pass --overwrite to replace it, or choose another --out.")
            self._delete_content()
        self._fs.create_dir(self._base, recursive=True)
        self._remove_temp_files()

        if existing is None:
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "prmforge_version": __version__,
                "config": config,
                "config_hash": config_hash,
                "created_at": _now(),
                "shards": {},
                "layer_dirs": {},
                "parent": parent,
                "summary": None,
                "finished_at": None,
            }
        else:
            manifest = existing
            manifest["config"] = config  # same hash; keys outside the hash (name, ray) may have changed
            if parent is not None:
                manifest["parent"] = parent
            manifest["finished_at"] = None  # in progress again until finish()
        with self._lock:
            self._manifest = manifest
        return self._update_manifest(lambda _: None)

    def _incompatibility(self, existing: dict, config: dict, config_hash: str) -> str:
        if existing.get("schema_version") != SCHEMA_VERSION:
            return (f"{self.root} was written with layer schema version {existing.get('schema_version')}, "
                    f"this prmforge writes version {SCHEMA_VERSION}")
        if existing.get("config_hash") != config_hash:
            changed = _config_differences(existing.get("config") or {}, config)
            detail = f" (changed: {', '.join(changed[:8])}{', ...' if len(changed) > 8 else ''})" if changed else ""
            return (f"{self.root} holds a dataset made with another config: hash {existing.get('config_hash')}, "
                    f"this config hashes to {config_hash}{detail}")
        return ""

    def _has_layer_folders(self) -> bool:
        return any(self._exists(self._path(top)) for top in LAYERS)

    def _delete_content(self) -> None:
        """Delete what a prmforge output consists of; never other files the folder may hold."""
        # Manifest first: a crash halfway then leaves no manifest naming deleted files.
        for name in (MANIFEST_FILE, CARD_FILE):
            self._delete_quietly(self._path(name))
        for top in LAYERS:
            if self._exists(self._path(top)):
                self._fs.delete_dir(self._path(top))
        self._remove_temp_files()

    def _remove_temp_files(self) -> int:
        selector = pafs.FileSelector(self._base, allow_not_found=True, recursive=True)
        stale = [info.path for info in self._fs.get_file_info(selector)
                 if info.type == pafs.FileType.File and info.base_name.startswith(TEMP_PREFIX)]
        for path in stale:
            self._delete_quietly(path)
        return len(stale)

    # -- shards --------------------------------------------------------------------------------------

    def completed_shards(self) -> set[str]:
        with self._lock:
            return set(self._current()["shards"])

    def is_complete(self, shard_id: str) -> bool:
        with self._lock:
            return shard_id in self._current()["shards"]

    def write_shard(self, shard_id: str, tables: dict[str, pa.Table]) -> None:
        """Write one shard's layers (``{"prm": table, "labels/<id>": table, ...}``) and record it as complete."""
        if not _SHARD_ID.fullmatch(shard_id):
            raise ValueError(f"shard id {shard_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
                             f"starting with a letter or digit")
        if not tables:
            raise ValueError(f"shard {shard_id!r}: no layers to write")
        folders = {layer: layer_folder(layer) for layer in tables}
        # Every table is checked before any file is written.  Empty tables write no file: readers of
        # Parquet folders (datasets among them) fail on a zero-row file, and no file means no rows.
        conformed = {layer: conform_to_schema(layer, table) for layer, table in tables.items()}
        conformed = {layer: table for layer, table in conformed.items() if table.num_rows > 0}
        if self.is_complete(shard_id):
            # Rewriting a recorded shard: unrecord it first, so a crash midway cannot leave it recorded half-replaced.
            self._update_manifest(lambda manifest: manifest["shards"].pop(shard_id, None))

        moves: list[tuple[str, str]] = []
        try:
            for layer, table in conformed.items():
                self._fs.create_dir(self._path(folders[layer]), recursive=True)
                target = self._path(folders[layer], f"part-{shard_id}.parquet")
                temp = self._path(folders[layer], f"{TEMP_PREFIX}part-{shard_id}.{uuid.uuid4().hex}")
                moves.append((temp, target))
                pq.write_table(table, temp, filesystem=self._fs, compression=PARQUET_COMPRESSION)
            for temp, target in moves:
                self._rename(temp, target)
        except BaseException:
            for temp, _ in moves:
                self._delete_quietly(temp)
            raise

        rows = {layer: table.num_rows for layer, table in conformed.items()}

        def record(manifest: dict) -> None:
            manifest["shards"][shard_id] = rows
            manifest["layer_dirs"].update({layer: folders[layer] for layer in conformed})

        self._update_manifest(record)

    # -- reading -------------------------------------------------------------------------------------

    def layers(self) -> list[str]:
        """Layer paths present in completed shards, in pipeline order."""
        with self._lock:
            present = {layer for rows in self._current()["shards"].values() for layer in rows}
        return sorted(present, key=layer_sort_key)

    def layer_files(self, layer: str) -> list[str]:
        """Paths of the parts of ``layer`` that completed shards wrote, in shard order."""
        folder = layer_folder(layer)  # validates the name
        with self._lock:
            manifest = self._current()
            folder = manifest["layer_dirs"].get(layer, folder)  # as written, should the naming rule ever change
            shards = manifest["shards"]
            recorded = [shard_id for shard_id in sorted(shards) if layer in shards[shard_id]]
        return [self._path(folder, f"part-{shard_id}.parquet") for shard_id in recorded]

    def iter_layer(self, layer: str, columns: list[str] | None = None):
        """The layer's completed parts one table at a time: memory bounded by a shard, not the dataset."""
        schema = LAYERS[layer.partition("/")[0]]
        for path in self.layer_files(layer):
            yield pq.read_table(path, filesystem=self._fs, schema=schema, columns=columns)

    def read_part(self, layer: str, shard_id: str) -> pa.Table:
        """One completed shard's part of ``layer`` (empty when that shard wrote no rows there)."""
        schema = LAYERS[layer.partition("/")[0]]
        with self._lock:
            manifest = self._current()
            recorded = layer in manifest["shards"].get(shard_id, {})
            folder = manifest["layer_dirs"].get(layer) or layer_folder(layer)
        if not recorded:
            return schema.empty_table()
        return pq.read_table(self._path(folder, f"part-{shard_id}.parquet"), filesystem=self._fs, schema=schema)

    def read_layer(self, layer: str) -> pa.Table:
        """All rows of ``layer`` from completed shards (stray files ignored), with the layer's schema."""
        schema = LAYERS[layer.partition("/")[0]]
        parts = [pq.read_table(path, filesystem=self._fs, schema=schema) for path in self.layer_files(layer)]
        return pa.concat_tables(parts) if parts else schema.empty_table()

    # -- finishing -----------------------------------------------------------------------------------

    def remove_stray_parts(self) -> int:
        """Delete part files no completed shard recorded (left by a crashed attempt), so that globs over the
        folders (the dataset card's ``data_files``) see exactly what read_layer() reads."""
        recorded = {path for layer in self.layers() for path in self.layer_files(layer)}
        removed = 0
        for top in LAYERS:
            selector = pafs.FileSelector(self._path(top), allow_not_found=True, recursive=True)
            for info in self._fs.get_file_info(selector):
                is_part = info.base_name.startswith("part-") and info.base_name.endswith(".parquet")
                if info.type == pafs.FileType.File and is_part and info.path not in recorded:
                    self._delete_quietly(info.path)
                    removed += 1
        return removed

    def write_card(self, card_text: str) -> None:
        """Write README.md, the Hugging Face dataset card."""
        self._write_bytes_atomically(CARD_FILE, card_text.encode())

    def finish(self, summary: dict, card_text: str | None = None) -> dict:
        """Record the job's summary and ``finished_at``; write the card when given.  Returns the manifest.

        The card may need the final manifest (counts): then pass no text here and call write_card() after.
        """
        self.remove_stray_parts()
        if card_text:
            self.write_card(card_text)  # before finished_at, so a finished dataset always has its card

        def record(manifest: dict) -> None:
            manifest["summary"] = summary
            manifest["finished_at"] = _now()

        return self._update_manifest(record)
