"""Where the cambrian16-mini lmms-eval tasks live, and a check that their shipped data is intact.

The task YAMLs read ``dataset_path: parquet`` with ``data_files`` relative to the YAML; lmms-eval 0.7.3
anchors such relative paths at the YAML's folder (``lmms_eval.utils._maybe_resolve_yaml_local_data_files``)
when the file exists, so the folder works as ``TaskManager(include_path=...)`` from any working
directory and from an installed wheel.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from scopebench.errors import ScopebenchError
from scopebench.paths import tasks_dir

MINI_DIR_NAME = "cambrian16_mini"
CHECKSUMS = "data/SHA256SUMS"
REGENERATE = "regenerate it with `scopebench demo suite`"


def mini_task_include_path() -> Path:
    """The folder of the 16 mini task YAMLs (absolute), for ``TaskManager(include_path=...)``."""
    folder = tasks_dir() / MINI_DIR_NAME
    if not folder.is_dir():
        raise ScopebenchError(f"{folder}: the cambrian16-mini task folder is missing; reinstall scopebench")
    return folder.resolve()


class _IgnoreTags(yaml.SafeLoader):
    """Reads task YAMLs without importing the ``!function`` references."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def task_data_files(folder: Path) -> dict[str, Path]:
    """Task id -> its Parquet file, as named in each task YAML of ``folder``."""
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        config = yaml.load(path.read_text(), Loader=_IgnoreTags)
        files = (config.get("dataset_kwargs") or {}).get("data_files") or {}
        for rel in files.values():
            out[config["task"]] = folder / rel
    return out


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_checksums(folder: Path) -> dict[str, str]:
    """File name (relative to the folder) -> SHA-256, from ``data/SHA256SUMS``."""
    path = folder / CHECKSUMS
    if not path.exists():
        return {}
    pairs = (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def check_mini_suite_files(folder: Path | None = None) -> None:
    """Raise ScopebenchError naming the first missing or corrupt Parquet file of the mini suite."""
    import pyarrow.parquet as pq

    from scopebench.demo.world import TASKS

    folder = Path(folder) if folder is not None else mini_task_include_path()
    sums = read_checksums(folder)
    data_files = task_data_files(folder)
    for task in TASKS:
        if task not in data_files:
            raise ScopebenchError(f"{folder / (task + '.yaml')}: task file of the mini suite is missing; "
                                  "reinstall scopebench")
    for task, path in data_files.items():
        if not path.is_file():
            raise ScopebenchError(f"{path}: data file of task {task} is missing; {REGENERATE}")
        rel = path.relative_to(folder).as_posix()
        if rel in sums and sha256(path) != sums[rel]:
            raise ScopebenchError(f"{path}: data file of task {task} is corrupt (checksum mismatch); "
                                  f"{REGENERATE}")
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as err:  # pyarrow raises several types for unreadable files
            raise ScopebenchError(f"{path}: data file of task {task} is not readable Parquet "
                                  f"({err.__class__.__name__}); {REGENERATE}") from None
        if rows == 0:
            raise ScopebenchError(f"{path}: data file of task {task} has no rows; {REGENERATE}")
