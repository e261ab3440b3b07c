"""Regenerate the cambrian16-mini Parquet files (``scopebench demo suite``), byte-identical on re-run."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from pathlib import Path

from scopebench.demo.suite_data import CHECKSUMS, mini_task_include_path, sha256
from scopebench.errors import ScopebenchError
from scopebench.tables import atomic_write_bytes


def _png_images(value):
    """Replace PIL images (also inside lists) by deterministic PNG bytes, as datasets' Image feature stores
    them."""
    from PIL import Image

    from scopebench.demo.synth.draw import png_bytes

    if isinstance(value, Image.Image):
        return {"bytes": png_bytes(value), "path": None}
    if isinstance(value, list):
        return [_png_images(v) for v in value]
    return value


def write_task_data(task: str, path: Path) -> None:
    """Write one task's documents to ``path`` as Parquet with the task's datasets features (atomic)."""
    import datasets
    import pyarrow.parquet as pq

    from scopebench.demo.world import TASKS, suite_docs

    spec = TASKS[task]
    rows = [{key: _png_images(val) for key, val in doc.items()} for doc in suite_docs(task)]
    table = datasets.Dataset.from_list(rows, features=spec.features).data.table
    table = table.replace_schema_metadata(spec.features.arrow_schema.metadata)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=9, row_group_size=len(rows))
    atomic_write_bytes(path, buf.getvalue())


def shipped_checksums() -> dict[str, str]:
    """Data file (relative to the task folder) -> SHA-256, as the shipped ``SHA256SUMS`` lists them."""
    path = mini_task_include_path() / CHECKSUMS
    lines = path.read_text().splitlines() if path.exists() else []
    return {rel: digest for digest, rel in (line.split("  ", 1) for line in lines if line.strip())}


def build_suite(output: Path | None = None, tasks: Iterable[str] | None = None) -> list[str]:
    """Write the mini suite's data (default: the shipped ``tasks/cambrian16_mini``); print and return the
    data files that differ from the shipped checksums (none: the rebuild is byte-identical to them).

    A new ``output`` folder also gets the task YAMLs and ``utils.py``, so it is a complete
    ``include_path``. ``tasks`` limits the rebuild to some task ids (default: all 16).
    """
    from rich.progress import track

    from scopebench.demo.world import TASKS

    shipped = mini_task_include_path()
    folder = Path(output).resolve() if output is not None else shipped
    if folder != shipped:
        folder.mkdir(parents=True, exist_ok=True)
        for src in [*shipped.glob("*.yaml"), shipped / "utils.py"]:
            shutil.copyfile(src, folder / src.name)
    names = list(tasks) if tasks is not None else list(TASKS)
    before = shipped_checksums()  # read first: a rebuild of the shipped folder rewrites them
    try:
        for task in track(names, description="Building cambrian16-mini"):
            write_task_data(task, folder / TASKS[task].data_file)
        lines = sorted(f"{sha256(p)}  {p.relative_to(folder).as_posix()}"
                       for p in (folder / "data").glob("*.parquet"))
        (folder / CHECKSUMS).write_text("".join(line + "\n" for line in lines))
    except PermissionError:
        raise ScopebenchError(f"{folder}: not writable; "
                              "pass --output DIR to build the suite elsewhere") from None
    built = [TASKS[task].data_file for task in names]
    differ = [rel for rel in built if sha256(folder / rel) != before.get(rel)]
    print(f"{len(built) - len(differ)} of {len(built)} data files byte-identical to the shipped checksums"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    return differ
