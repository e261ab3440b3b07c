"""One run directory: its tables, manifest, parts and write lock (the contract between every stage).

    RUN_DIR/
      manifest.json     versions, git hash, command line, device, suite; per model what it is (ModelEntry)
      scores.parquet    one row per (model, benchmark)
      routes.parquet    one row per (model, benchmark, doc_id)
      costs.parquet     one row per (model, path, component) and expected-cost rows per benchmark
      parts/MODEL/TASK/ what eval wrote for one (model, task): lmms-eval's results, the trace, a `done` marker
      .lock             the write lock (a filelock): every read-modify-write of a table or the manifest
                        holds it

The column schemas and the file-level reading and writing are in ``scopebench.tables``.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.tables import (
    LOCK_FILE,
    TABLES,
    atomic_write_text,
    conform,
    locked,
    read_table,
    remove_stale_temp_files,
    write_table,
)

MANIFEST = "manifest.json"


def folder_name(name: str) -> str:
    """A model name as one folder name on any file system: each character but letters, digits and
    ``@+=,._-~`` percent-encoded (``demo-baseline-all@all/mask:conv`` -> ``...@all%2Fmask%3Aconv``)."""
    return quote(name, safe="@+=,")


@dataclass(frozen=True)
class ModelEntry:
    """What a run's manifest says of one of its models: the reference it was run from, the checkpoint
    reference without ``@POLICY`` (``base``), the policy it ran with and its checkpoint's own."""

    name: str
    ref: str
    base: str
    policy: str
    trained_policy: str

    @classmethod
    def of(cls, name: str, entry: dict | None) -> ModelEntry:
        """From a manifest entry; one written before the entries held ``base`` and ``policy`` (or none at
        all) is derived from the reference, the fingerprint ``scope|NAME|POLICY|HASH`` and the name."""
        entry = entry if isinstance(entry, dict) else {}
        ref = str(entry.get("ref") or name)
        parts = str(entry.get("fingerprint", "")).split("|")
        policy = str(entry.get("policy") or (parts[2] if len(parts) == 4
                                             else ref.rpartition("@")[2] if "@" in ref else ""))
        base = str(entry.get("base") or (ref.rpartition("@")[0] if "@" in ref else ref))
        return cls(name, ref, base, policy, str(entry.get("trained_policy") or policy))


class RunDir:
    """A run directory. ``files`` maps a table to a file of its own (a baseline given as a scores file)."""

    def __init__(self, path: Path, files: dict[str, Path] | None = None) -> None:
        self.path = Path(path)
        self.files = dict(files or {})
        self._written: dict[str, tuple[bytes, pd.DataFrame]] = {}  # table -> (file bytes, frame) last written

    def __str__(self) -> str:
        return str(self.path)

    # ----- tables ---------------------------------------------------------------------------------
    def file(self, name: str) -> Path | None:
        """The file holding table ``name`` (Parquet preferred, then CSV), or None."""
        if self.files:  # a table file on its own: no other tables
            return self.files.get(name)
        for suffix in (".parquet", ".csv"):
            p = self.path / f"{name}{suffix}"
            if p.exists():
                return p
        return None

    def read(self, name: str, required: bool = True) -> pd.DataFrame:
        """Table ``name``; an empty schema-shaped frame when absent and not ``required``."""
        p = self.file(name)
        if p is None:
            if required:
                raise ScopebenchError(
                    f"{self.path}: no {name} table ({name}.parquet or {name}.csv); "
                    f"create it with `scopebench {'eval' if name != 'costs' else 'flops --output'}`"
                )
            return pd.DataFrame(columns=TABLES[name])
        return read_table(p, name)

    def write(self, name: str, df: pd.DataFrame) -> Path:
        """Write table ``name`` atomically as Parquet, columns in schema order."""
        path, table = self.path / f"{name}.parquet", conform(df, name)
        self._written[name] = (write_table(table, path), table)
        return path

    def _read_for_update(self, name: str) -> pd.DataFrame:
        """Table ``name`` as ``read`` gives it; the frame this object last wrote when the file still holds
        exactly those bytes (eval merges every part: parsing the table back each time was its main cost)."""
        p, (data, table) = self.file(name), self._written.get(name, (None, None))
        if table is not None and p == self.path / f"{name}.parquet" and p.read_bytes() == data:
            return table
        return self.read(name, required=False)

    def replace_rows(self, name: str, new: pd.DataFrame, drop: Callable[[pd.DataFrame], pd.Series]) -> None:
        """Under the lock: remove the rows ``drop`` marks and append ``new``."""
        with self.lock():
            old = self._read_for_update(name)
            frames = [f for f in (old[~drop(old)] if len(old) else old, new) if len(f)]
            self.write(name, pd.concat(frames, ignore_index=True) if frames else new)

    def merge(self, name: str, new: pd.DataFrame, keys: list[str]) -> None:
        """Under the lock: insert ``new``, replacing the old rows that share its ``keys`` values."""
        if new.empty:
            self.replace_rows(name, new, lambda old: pd.Series(False, index=old.index))
            return
        wanted = new[keys].astype(str).drop_duplicates()
        if len(wanted) == 1:  # one key (eval's parts: one model and benchmark): a column test each
            values = wanted.iloc[0]
            self.replace_rows(name, new, lambda old: functools.reduce(
                operator.and_, (old[k].astype(str) == values[k] for k in keys)))
            return
        idx = pd.MultiIndex.from_frame(wanted)
        self.replace_rows(name, new, lambda old: pd.Series(
            pd.MultiIndex.from_frame(old[keys].astype(str)).isin(idx), index=old.index))

    # ----- manifest -------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest ({} when absent); one clear error when it is unreadable or malformed."""
        p = self.path / MANIFEST
        if self.files or not p.exists():  # a table file on its own has no manifest
            return {}
        try:
            manifest = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ScopebenchError(f"{p}: not valid JSON; "
                                  "delete it (or, for eval, choose another --output)") from None
        if not isinstance(manifest, dict):
            raise ScopebenchError(f"{p}: not a JSON object; "
                                  "delete it (or, for eval, choose another --output)")
        for key, kind in (("models", dict), ("versions", dict), ("suite", str)):
            if key in manifest and not isinstance(manifest[key], kind):
                raise ScopebenchError(f"{p}: field '{key}' must be a JSON "
                                      f"{'object' if kind is dict else 'string'}; "
                                      "delete the manifest or re-create the run with scopebench")
        return manifest

    def update_manifest(self, fields: dict[str, Any],
                        models: dict[str, dict] | None = None) -> dict[str, Any]:
        """Under the lock: ``fields`` replace top-level keys, ``models`` entries are merged into the
        manifest's (so concurrent writers keep each other's models)."""
        with self.lock():
            manifest = self.manifest()
            manifest.update(fields)
            for name, entry in (models or {}).items():
                manifest.setdefault("models", {}).setdefault(name, {}).update(entry)
            atomic_write_text(self.path / MANIFEST,
                              json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return manifest

    def models(self) -> dict[str, ModelEntry]:
        """Every model the manifest lists, as a ModelEntry."""
        return {name: ModelEntry.of(name, entry) for name, entry in self.manifest().get("models", {}).items()}

    # ----- parts and the lock ---------------------------------------------------------------------
    def part(self, model: str, task: str) -> Path:
        """The part folder of (model, task); one named by an earlier scopebench ('/' -> '_') is kept."""
        parts = self.path / "parts"
        old = parts / model.replace("/", "_") / task
        if old.is_dir() and not (parts / folder_name(model)).exists():
            return old
        return parts / folder_name(model) / task

    def finished_parts(self) -> list[Path]:
        return sorted(done.parent for done in self.path.glob("parts/*/*/done"))

    def lock(self, wait: bool = True):
        """The run directory's write lock (re-entrant within a process)."""
        return locked(self.path, LOCK_FILE, wait)

    def remove_stale_temp_files(self) -> None:
        """Delete temp files a killed write left beside the tables; hold the lock."""
        remove_stale_temp_files(self.path)


def environment() -> dict[str, Any]:
    """Versions, git hash and command line for the manifest."""
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("scopebench", "lmms-eval", "torch", "transformers", "timm", "open_clip_torch", "fvcore"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    try:
        git = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"versions": versions, "git": git, "command": sys.argv, "python": sys.version.split()[0]}
