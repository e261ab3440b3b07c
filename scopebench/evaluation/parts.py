"""One (model, task) part of a run directory: what it was run with, its `done` marker, and the rows it
contributes to the run's scores and routes tables (from lmms-eval's results and the adapter's trace).

    parts/MODEL/TASK/
      trace.rank*.jsonl        the adapter's answers, each with its route and router probabilities
      lmms_eval_results.json   lmms-eval's results; lmms_eval_samples.jsonl its per-sample log
      scores.parquet, routes.parquet   this part's rows of the run's tables
      done                     JSON: finished time, settings, a hash of the documents, sample count (last)
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.run_dir import RunDir
from scopebench.suites import Benchmark, Suite
from scopebench.tables import ERANK_PREFIX, KEYS, PROB_PREFIX, atomic_write_text, read_table, write_table


def part_settings(fingerprint: str, task: str, limit: int | None, batch_size: int, device: str,
                  dtype: str) -> dict[str, Any]:
    """What a (model, task) part was run with, as its ``done`` marker records it."""
    return {"fingerprint": fingerprint, "task": task, "limit": limit, "batch_size": batch_size,
            "device": device, "dtype": dtype}


# A finished part is reused only when these settings match (the fingerprint covers config, weights and dtype);
# batch size and device are recorded but do not change answers (route-grouped batches equal one-sample ones).
RESULT_SETTINGS = ("fingerprint", "task", "limit")


def read_done(part: Path) -> dict[str, Any] | None:
    """A part's ``done`` marker (None when unfinished). A marker of an earlier scopebench (a bare timestamp)
    records no settings: ``{}``."""
    try:
        data = json.loads((part / "done").read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # not begun, or the run folder is not made yet
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def stale_setting(done: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """The first result-changing setting a finished part was run with differently, e.g. "--limit 3 (now
    none)"; None when the part can be reused."""
    recorded = done.get("settings")
    if not isinstance(recorded, dict):
        return "settings not recorded (an older scopebench)"
    for key in RESULT_SETTINGS:
        if recorded.get(key) != settings[key]:
            if key == "limit":
                return f"--limit {recorded.get(key) or 'none'} (now {settings[key] or 'none'})"
            return "another model" if key == "fingerprint" else f"another {key}"
    return None


def restore_finished(run: RunDir) -> None:
    """Merge every finished part whose scores or routes are missing from the run's tables back into them
    (after a table was deleted, or lost). Reading the tables first also refuses a corrupt one before any
    task runs; of a part's own tables only the key columns are read, unless its rows are missing."""
    def keys(df: pd.DataFrame, name: str) -> set[tuple[str, ...]]:
        return set(df[KEYS[name]].astype(str).itertuples(index=False, name=None))

    with run.lock():
        have = {name: keys(run.read(name, required=False), name) for name in ("scores", "routes")}
        for part in run.finished_parts():
            if all(_part_keys(part, name) <= have[name] for name in have):
                continue
            for name in have:
                run.merge(name, read_table(part / f"{name}.parquet", name), ["model", "benchmark"])


def _part_keys(part: Path, name: str) -> set[tuple[str, ...]]:
    """The keys of a part's ``name`` table (an unreadable table has none: it is then read in full, which
    names the file and the fix)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(part / f"{name}.parquet", columns=KEYS[name])
    except Exception:  # missing, corrupt, or lacking a key column
        return {("",)}
    columns = [[str(v) for v in table.column(k).to_pylist()] for k in KEYS[name]]
    return set(zip(*columns, strict=True))


def finish_part(run: RunDir, part: Path, results: dict, score: dict, routes: list[dict],
                settings: dict[str, Any]) -> None:
    """Save a part, put its rows into the run's tables (replacing every row of its model and benchmark),
    then mark it done: a part marked done is skipped on resume, so it must already be in the tables."""
    save_part(part, results, score, routes)
    samples = results.get("samples", {}).get(settings["task"], [])
    with run.lock():
        run.merge("scores", pd.DataFrame([score]), ["model", "benchmark"])
        run.merge("routes", pd.DataFrame(routes), ["model", "benchmark"])
        atomic_write_text(part / "done", json.dumps({
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": settings,
            "docs": docs_digest(samples), "n": len(samples)}, indent=1))


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return None


def sample_score(value: Any) -> float:
    """A per-sample metric value on 0-100 (correctness in [0, 1] scaled), NaN when it has no such meaning.

    Dicts carry the task's own per-sample judgement under one of a few keys (CV-Bench and MMVP:
    ``is_correct``, MathVista: ``true_false``); scopebench never re-judges an answer."""
    if isinstance(value, dict):
        for key in ("score", "correct", "is_correct", "true_false", "acc", "accuracy", "anls",
                    "relaxed_overall"):
            if key in value:
                return sample_score(value[key])
        return math.nan
    if isinstance(value, list | tuple) and value:
        return sample_score(value[0]) if len(value) == 1 else math.nan
    v = _scalar(value)
    if v is None or not 0.0 <= v <= 1.0:
        return math.nan
    return 100.0 * v


def collect(results: dict, bench: Benchmark, task: str, model: str, suite: Suite, traces: list[dict],
            fingerprint: str):
    """lmms-eval results + the adapter's trace records of this model -> (scores row, routes rows): one routes
    row per scored sample, each with the route its answer was computed on."""
    metrics = results.get("results", {}).get(task, {})
    keys = [k for k in metrics if "," in k and k.split(",")[0] == bench.metric]
    key = f"{bench.metric},none" if f"{bench.metric},none" in keys else next(iter(keys), None)
    # MathVista: None = 0 right
    raw = None if key is None else _scalar(metrics[key] if metrics[key] is not None else 0.0)
    if raw is None:
        keys = sorted(k.split(",")[0] for k in metrics if "," in k and "stderr" not in k)
        raise ScopebenchError(
            f"task '{task}' reported no metric '{bench.metric}' "
            f"(it reported: {', '.join(keys) or 'nothing'}); "
            f"fix `metric` for benchmark '{bench.name}' in {suite.source}"
        )
    samples = results.get("samples", {}).get(task, [])
    per_doc = {int(s["doc_id"]): sample_score(bench.judge_sample(s.get(bench.metric))) for s in samples}
    by_doc = {int(rec["doc_id"]): rec for rec in traces
              if rec["task"] == task and rec["fingerprint"] == fingerprint}
    unrouted = sorted(set(per_doc) - set(by_doc))
    if unrouted:
        raise ScopebenchError(f"task '{task}' for model '{model}': no routing record for doc {unrouted[0]} "
                              f"({len(unrouted)} in all); run eval again to answer them")
    rows = []
    for doc_id in sorted(per_doc):
        rec = by_doc[doc_id]
        row = {"model": model, "benchmark": bench.name, "task": task, "doc_id": doc_id,
               "route": rec["route"], "encoder": rec.get("encoder", ""), "sample_score": per_doc[doc_id],
               "visual_tokens": rec.get("visual_tokens"), "visual_grid": rec.get("visual_grid")}
        for enc, p in (rec.get("probs") or {}).items():
            row[PROB_PREFIX + enc] = p
        for enc, r in (rec.get("eranks") or {}).items():
            row[ERANK_PREFIX + enc] = r
        rows.append(row)
    values = [v for v in per_doc.values() if not math.isnan(v)]
    n = int(results.get("n-samples", {}).get(task, {}).get("effective", len(samples)) or len(samples))
    stderr = math.nan
    if len(values) > 1:
        mean = sum(values) / len(values)
        stderr = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    score = {"model": model, "suite": suite.name, "benchmark": bench.name, "task": task,
             "category": bench.category, "metric": bench.metric, "score": bench.to_percent(raw),
             "raw_score": raw, "n": n, "stderr": stderr, "docs": docs_digest(samples)}
    return score, rows


def docs_digest(samples: list[dict]) -> str:
    """A hash of the documents a part evaluated: doc ids, documents, prompts and targets as lmms-eval logged
    them (another --limit, dataset revision or prompt gives another hash)."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: int(s["doc_id"])):
        h.update(json.dumps([s["doc_id"], s.get("doc_hash"), s.get("arguments"), s.get("target")],
                            sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def save_part(part: Path, results: dict, score: dict, routes: list[dict]) -> None:
    """lmms-eval's raw results and samples, then this pair's tables (its `done` marker comes later)."""
    raw = {k: v for k, v in results.items() if k != "samples"}
    atomic_write_text(part / "lmms_eval_results.json", json.dumps(raw, indent=1, default=str))
    samples = results.get("samples", {})
    lines = [json.dumps(s, default=str) for task in samples.values() for s in task]
    atomic_write_text(part / "lmms_eval_samples.jsonl", "\n".join(lines) + "\n")
    write_table(pd.DataFrame([score]), part / "scores.parquet")
    write_table(pd.DataFrame(routes), part / "routes.parquet")
