"""A model's fingerprint: the stable id a run directory records for each model it evaluated, so that a
finished part is reused only for the very model (config, dtype and every checkpoint byte) that made it.
Light on imports: a run that has nothing left to evaluate checks its models without torch or lmms-eval."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

FINGERPRINT = "scope2"  # "scope" fingerprints (earlier scopebench) hashed only the first 4 MiB of weights


def model_fingerprint(ref: str, policy: str | None = None, dtype: str = "float32") -> str:
    """A stable id for a model as it runs: ``scope2|NAME|POLICY|HASH``, HASH over its config, the dtype it
    runs in and every byte of its checkpoint folder (weights, shards, tokenizer)."""
    from scopebench.models.registry import resolve

    model = resolve(ref)
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    h.update(dtype.encode())
    if model.folder is not None:
        h.update(folder_digest(model.folder).encode())
    return f"{FINGERPRINT}|{model.config.name}|{policy or model.policy}|{h.hexdigest()[:16]}"


def folder_digest(folder: Path) -> str:
    """SHA-256 over the names and full contents of a checkpoint folder's files (hidden files left out)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        h.update(f"{path.relative_to(folder)}\0"
                 f"{_file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"
                 .encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, streamed in 8 MiB chunks (keyed on size and mtime: computed once per process)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()
