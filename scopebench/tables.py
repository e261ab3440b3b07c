"""The tables of a run directory (``scopebench.run_dir``): their columns, and reading and writing one
table file. Columns are fixed here so every analysis reads the same thing. Tables are read from Parquet
or CSV through one open file; they are written as Parquet, atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from scopebench.errors import ScopebenchError

# score: 0-100 (Cambrian-1 convention); raw_score: lmms-eval's value of `metric`.
# docs: a hash of the documents scored (``parts.docs_digest``); empty in runs of an earlier scopebench.
SCORES_COLUMNS = ["model", "suite", "benchmark", "task", "category", "metric", "score", "raw_score", "n",
                  "stderr", "docs"]
# route: the encoder path the sample took, e.g. "shared+dinov2" ("shared" for Baseline-0);
# encoder: the routed encoder the router chose ("" when no router); sample_score: the
# per-sample value of the main metric on 0-100 where lmms-eval defines one, else NaN;
# prob:<encoder>: router probability of each routed encoder (NaN without a router);
# erank:<encoder>: entropy effective rank of the encoder's pre-projector features for the sample
# ("shared" too; NaN where the sample's route did not run the encoder); visual_tokens: how many visual tokens
# the LLM got for the sample's images on its route (they follow the image at native resolution; empty in
# tables of an earlier scopebench); visual_grid: the shared encoder's merged-token grid of each of the
# sample's images when it runs at native resolution, e.g. "14x20" or "14x20;10x10" (empty at one fixed size
# and in tables of an earlier scopebench): what `scopebench flops MODEL --output RUN` counts each sample at.
ROUTES_COLUMNS = ["model", "benchmark", "task", "doc_id", "route", "encoder", "sample_score", "visual_tokens",
                  "visual_grid"]
PROB_PREFIX = "prob:"
ERANK_PREFIX = "erank:"
# kind: "path" (static per-path count), "latency" (measured), or "expected" (per benchmark, under routing).
# macs: multiply-accumulates; flops = 2 * macs. Latency in milliseconds.
COSTS_COLUMNS = [
    "model", "kind", "path", "component", "benchmark", "visual_tokens", "macs", "flops", "params",
    "active_params", "latency_median_ms", "latency_iqr_ms", "batch_size", "device", "counter",
]

TABLES = {"scores": SCORES_COLUMNS, "routes": ROUTES_COLUMNS, "costs": COSTS_COLUMNS}


TMP_SUFFIX = ".tmp"  # atomic writes go through ".NAME.XXXX.tmp" beside the target; a kill can leave one
LOCK_FILE = ".lock"


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0666 less the umask (mkstemp's 0600 would hide a
    shared run directory from a teammate)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file: a temp file beside it,
    fsynced, renamed over it, and the folder fsynced so the rename survives a power cut."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def remove_stale_temp_files(folder: Path) -> None:
    """Delete temp files a killed write left in ``folder``; call it holding the folder's lock."""
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


@functools.cache
def _lock(path: str):
    from filelock import FileLock

    return FileLock(path)  # one object per folder, so a nested `locked` in this process re-enters it


@contextlib.contextmanager
def locked(folder: Path, name: str = LOCK_FILE, wait: bool = True):
    """Hold ``folder``'s write lock (the filelock ``folder/NAME``); say so when another process holds it and
    wait for it, or with ``wait=False`` yield False at once instead (True when held)."""
    from filelock import Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(str((folder / name).resolve()))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            yield False
            return
        print(f"waiting for {folder}: another scopebench process is writing it", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield True
    finally:
        lock.release()


def write_table(df: pd.DataFrame, path: Path) -> bytes:
    """Write a table atomically as Parquet (or CSV when ``path`` ends in .csv); the bytes written."""
    buf = io.BytesIO()
    if Path(path).suffix == ".csv":
        df.to_csv(buf, index=False)
    else:
        df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
    return buf.getvalue()


def conform(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Order a table's columns as the schema says, adding missing ones as NA (extra prob: columns kept)."""
    cols = TABLES[name]
    out = df.copy()
    for c in cols:
        if c not in out.columns:
            out[c] = pd.NA
    extra = [c for c in out.columns if c not in cols]
    return out[cols + extra]


def read_table(path: Path, name: str) -> pd.DataFrame:
    """Read one table file, checking it has the schema's columns."""
    try:  # read the bytes through one open file: a concurrent atomic replace cannot cut the read
        data = io.BytesIO(Path(path).read_bytes())
        df = pd.read_csv(data) if path.suffix == ".csv" else pd.read_parquet(data)
    except FileNotFoundError:
        raise ScopebenchError(f"{path}: file not found") from None
    except Exception as err:  # pyarrow / pandas parse errors
        raise ScopebenchError(
            f"{path}: cannot read the {name} table ({err.__class__.__name__}); re-create it with scopebench"
        ) from None
    required = [c for c in TABLES[name]
                if c not in ("stderr", "sample_score", "counter", "docs", "visual_tokens", "visual_grid")]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ScopebenchError(f"{path}: the {name} table lacks column '{missing[0]}'; "
                              "re-create it with scopebench")
    _check_values(df, name, path)
    return df


KEYS = {"scores": ["model", "benchmark"], "routes": ["model", "benchmark", "doc_id"]}  # one row per key
FILLED = {"scores": KEYS["scores"], "routes": [*KEYS["routes"], "route"], "costs": ["model"]}
NUMERIC = {"scores": ["score"], "routes": ["sample_score", "visual_tokens"], "costs": ["macs", "flops"]}
RANGE = {"score": (0, 100), "sample_score": (0, 100), "visual_tokens": (0, math.inf), "macs": (0, math.inf),
         "flops": (0, math.inf)}


def _check_values(df: pd.DataFrame, name: str, path: Path) -> None:
    """Refuse rows a stage cannot use: empty keys (or routes), non-numeric values, repeated keys."""
    fix = "fix the file or re-create it with scopebench"
    for col in FILLED[name]:
        empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if empty.any():
            raise ScopebenchError(f"{path}: row {int(empty.to_numpy().argmax()) + 1}: "
                                  f"column '{col}' is empty; {fix}")
    for col in [c for c in NUMERIC[name] if c in df.columns]:  # optional columns may be absent
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ScopebenchError(f"{path}: row {row + 1}: column '{col}' is {str(df[col].iloc[row])!r}, "
                                  f"not a number; {fix}")
        low, high = RANGE[col]
        out = ~values.between(low, high) & values.notna()
        if out.any():
            row = int(out.to_numpy().argmax())
            raise ScopebenchError(f"{path}: row {row + 1}: column '{col}' is {values.iloc[row]}, "
                                  f"outside {low}-{high}; {fix}")
    if name in KEYS:
        dup = df.duplicated(KEYS[name], keep=False)
        if dup.any():
            row = df[dup].iloc[0]
            key = ", ".join(f"{k} '{row[k]}'" for k in KEYS[name])
            raise ScopebenchError(f"{path}: {key} appears more than once; "
                                  f"keep one row per {' and '.join(KEYS[name])}")
