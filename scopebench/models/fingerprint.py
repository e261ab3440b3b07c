"""A model's fingerprint: the stable id a run directory records for each model it evaluated, so that a
finished part is reused only for the very model (config, dtype and every checkpoint byte) that made it.

Hashing every byte costs about 1 s per GB here (19 s for a 10 B bf16 checkpoint), so each file's SHA-256 is
kept in ``$SCOPEBENCH_CACHE/file-digests.json`` (default ``~/.cache/scopebench``) under the stat data
git's index compares (device, inode, size, mtime, ctime): any write, copy or replacement of the file
changes them and the file is hashed again. Light on imports: a run with nothing left to evaluate checks
its models without torch or lmms-eval.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

FINGERPRINT = "scope2"  # "scope" fingerprints (earlier scopebench) hashed only the first 4 MiB of weights
SETTLED_NS = 2_000_000_000  # a file written less than 2 s ago may still change within one mtime tick


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
    """SHA-256 over the names and full contents of a checkpoint folder's files (hidden files left out);
    a file whose digest is in the cache under its current stat data is not read."""
    folder = Path(folder)
    known, new = _read_cache(), {}
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key, stamp = str(path.resolve()), _stamp(path)
        cached = known.get(key)
        if isinstance(cached, list) and cached[:-1] == stamp:
            digest = cached[-1]
        else:
            digest = _file_digest(key, *stamp)
            if time.time_ns() - stamp[3] > SETTLED_NS:
                new[key] = [*stamp, digest]
        h.update(f"{path.relative_to(folder)}\0{digest}".encode())
    if new:
        _write_cache(new)
    return h.hexdigest()


def digest_cache() -> Path:
    """Where file digests are kept: ``$SCOPEBENCH_CACHE``, else ``$XDG_CACHE_HOME/scopebench``, else
    ``~/.cache/scopebench``."""
    root = os.environ.get("SCOPEBENCH_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scopebench")
    return Path(root) / "file-digests.json"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, *stamp: int) -> str:
    """A file's SHA-256, streamed in 8 MiB chunks (keyed on its stat data: computed once per process)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_cache() -> dict:
    """The kept digests (path -> [stat data..., sha256]); a missing or unreadable cache holds none."""
    try:
        data = json.loads(digest_cache().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(new: dict) -> None:
    """Add ``new`` digests to the cache under its lock, dropping those of files that are gone. A cache that
    cannot be written is left as it is: the digests are computed again next time."""
    from scopebench.tables import atomic_write_text, locked

    path = digest_cache()
    try:
        with locked(path.parent, path.name + ".lock"):
            kept = {k: v for k, v in _read_cache().items() if os.path.exists(k)}
            atomic_write_text(path, json.dumps({**kept, **new}, indent=0, sort_keys=True))
    except OSError:
        pass
