"""`scopebench eval`: run models on a suite through lmms-eval and write the run directory.

Work is done per (model, task). A finished pair is written to ``parts/`` atomically and
merged into the run's tables at once, so an interrupted run loses no finished task, and
running again into the same output skips finished pairs. Inside a task, answers already in
the adapter's trace (and lmms-eval's response cache) are reused.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.suites import Benchmark, Suite, load_suite
from scopebench.tables import (
    ERANK_PREFIX,
    KEYS,
    PROB_PREFIX,
    atomic_write_text,
    environment,
    load_table,
    locked,
    merge_rows,
    read_manifest,
    read_table,
    remove_stale_temp_files,
    update_manifest,
    write_table,
)

LMMS_EVAL_LOG = "lmms_eval.rank{rank}.log"  # per (model, task) part: what lmms-eval printed
PART_LOCK = ".lock.rank{rank}"  # held by the process slot evaluating the part


def default_models() -> list[str]:
    from scopebench.models.registry import demo_models

    names = list(demo_models())
    if not names:
        raise ScopebenchError("no demo checkpoints found; build them with `scopebench demo train` or pass MODEL")
    return names


def _model_names(refs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Reference -> display name (the config's name; unique within a run), and -> its trained policy."""
    from scopebench.models.registry import resolve

    names: dict[str, str] = {}
    trained: dict[str, str] = {}
    for ref in refs:
        kind, cfg, _ = resolve(ref)
        name = ref if kind == "preset" else cfg.name
        if name in names.values():
            raise ScopebenchError(f"two models are named '{name}'; evaluate them into different --output folders")
        names[ref], trained[ref] = name, cfg.policy
    return names, trained


def check_run_dir(out: Path, suite: Suite, fingerprints: dict[str, str], overwrite: bool = False) -> None:
    """Refuse an output folder holding another suite, or another model under one of these names (unless
    ``overwrite``: its parts are then re-run)."""
    from scopebench.evaluation.adapter import FINGERPRINT

    manifest = read_manifest(out)
    if manifest.get("suite") and manifest["suite"] != suite.name:
        raise ScopebenchError(
            f"{out} holds a run of suite '{manifest['suite']}', not '{suite.name}'; choose another --output"
        )
    for name, fp in fingerprints.items():
        old = manifest.get("models", {}).get(name, {}).get("fingerprint")
        if old and old != fp and not overwrite:
            why = ("it was fingerprinted by an older scopebench, which hashed only part of the weights"
                   if not str(old).startswith(f"{FINGERPRINT}|") else "its config or weights differ")
            raise ScopebenchError(
                f"{out} holds results of another model named '{name}' ({why}: {old} != {fp}); pass --overwrite "
                f"to replace them, or choose another --output"
            )


def _part_dir(out: Path, model: str, task: str) -> Path:
    return out / "parts" / model.replace("/", "_") / task


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
    except FileNotFoundError:
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


def restore_finished(out: Path) -> None:
    """Merge every finished part (``parts/MODEL/TASK/done``) whose scores or routes are missing from the run's
    tables back into them (after a table was deleted, or lost). Reading the tables first also refuses a
    corrupt one before any task runs."""
    def keys(df: pd.DataFrame, name: str) -> set[tuple[str, ...]]:
        return set(df[KEYS[name]].astype(str).itertuples(index=False, name=None))

    with locked(out):
        have = {name: keys(load_table(out, name, required=False), name) for name in ("scores", "routes")}
        for done in sorted(out.glob("parts/*/*/done")):
            part = {name: read_table(done.parent / f"{name}.parquet", name) for name in ("scores", "routes")}
            if not all(keys(part[name], name) <= have[name] for name in part):
                for name, rows in part.items():
                    merge_part(out, name, rows)


def merge_part(out: Path, name: str, rows: pd.DataFrame) -> None:
    """Put a part's rows into the run's table, replacing every row of the same (model, benchmark)."""
    merge_rows(out, name, rows, ["model", "benchmark"])


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
        for key in ("score", "correct", "is_correct", "true_false", "acc", "accuracy", "anls", "relaxed_overall"):
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
    raw = None if key is None else _scalar(metrics[key] if metrics[key] is not None else 0.0)  # MathVista: None = 0 right
    if raw is None:
        keys = sorted(k.split(",")[0] for k in metrics if "," in k and "stderr" not in k)
        raise ScopebenchError(
            f"task '{task}' reported no metric '{bench.metric}' (it reported: {', '.join(keys) or 'nothing'}); "
            f"fix `metric` for benchmark '{bench.name}' in {suite.source}"
        )
    samples = results.get("samples", {}).get(task, [])
    per_doc = {int(s["doc_id"]): sample_score(bench.judge_sample(s.get(bench.metric))) for s in samples}
    by_doc = {int(rec["doc_id"]): rec for rec in traces if rec["task"] == task and rec["fingerprint"] == fingerprint}
    unrouted = sorted(set(per_doc) - set(by_doc))
    if unrouted:
        raise ScopebenchError(f"task '{task}' for model '{model}': no routing record for doc {unrouted[0]} "
                              f"({len(unrouted)} in all); run eval again to answer them")
    rows = []
    for doc_id in sorted(per_doc):
        rec = by_doc[doc_id]
        row = {"model": model, "benchmark": bench.name, "task": task, "doc_id": doc_id,
               "route": rec["route"], "encoder": rec.get("encoder", ""), "sample_score": per_doc[doc_id]}
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
    score = {"model": model, "suite": suite.name, "benchmark": bench.name, "task": task, "category": bench.category,
             "metric": bench.metric, "score": bench.to_percent(raw), "raw_score": raw, "n": n, "stderr": stderr}
    return score, rows


def docs_digest(samples: list[dict]) -> str:
    """A hash of the documents a part evaluated: doc ids, documents, prompts and targets as lmms-eval logged
    them (another --limit, dataset revision or prompt gives another hash)."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: int(s["doc_id"])):
        h.update(json.dumps([s["doc_id"], s.get("doc_hash"), s.get("arguments"), s.get("target")],
                            sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _save_part(part: Path, results: dict, score: dict, routes: list[dict]) -> None:
    """lmms-eval's raw results and samples, then this pair's tables (its `done` marker comes later)."""
    raw = {k: v for k, v in results.items() if k != "samples"}
    atomic_write_text(part / "lmms_eval_results.json", json.dumps(raw, indent=1, default=str))
    samples = results.get("samples", {})
    lines = [json.dumps(s, default=str) for task in samples.values() for s in task]
    atomic_write_text(part / "lmms_eval_samples.jsonl", "\n".join(lines) + "\n")
    write_table(pd.DataFrame([score]), part / "scores.parquet")
    write_table(pd.DataFrame(routes), part / "routes.parquet")


def quiet_logs() -> None:
    """Silence lmms-eval, datasets and transformers logging below ERROR (progress is shown by scopebench)."""
    import logging

    from loguru import logger

    logger.remove()
    logger.add(lambda m: None, level="ERROR")
    for name in ("lmms-eval", "datasets", "transformers", "root", "open_clip"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_eval(
    models: list[str], suite: str, tasks: list[str] | None, limit: int | None, batch_size: int, device: str,
    output: Path | None, judge: bool, json_out: bool, overwrite: bool = False,
) -> None:
    """Evaluate ``models`` on ``suite`` and write / extend the run directory; print the scores."""
    from scopebench.evaluation.adapter import model_fingerprint
    from scopebench.models.registry import check_device

    check_device(device)
    if limit is not None and limit < 1:
        raise ScopebenchError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise ScopebenchError(f"--batch-size must be >= 1, got {batch_size}")
    suite_obj = load_suite(suite, judges=True)
    benches = suite_obj.select(tasks)
    refs = models or default_models()
    names, trained = _model_names(refs)
    dtype = "float32"
    fingerprints = {names[r]: model_fingerprint(r, dtype=dtype) for r in refs}
    out = Path(output or Path("runs") / suite_obj.name)
    check_run_dir(out, suite_obj, fingerprints, overwrite)
    task_of = {b.name: (b.judge_task if judge and b.judge_task else b.task) for b in benches}
    rank = int(os.environ.get("RANK", 0))
    quiet_logs()
    from scopebench.evaluation.datasets import task_config, task_manager

    manager = task_manager(suite_obj, list(task_of.values()))
    configs = {name: task_config(manager, t) for name, t in task_of.items()}
    run = {"suite": suite_obj.name, "suite_file": str(suite_obj.source), "judge": judge, "limit": limit,
           "batch_size": batch_size, "device": device, "dtype": dtype, **environment()}
    entries = {names[r]: {"ref": r, "fingerprint": fingerprints[names[r]], "trained_policy": trained[r],
                          "limit": limit, "batch_size": batch_size, "device": device, "dtype": dtype} for r in refs}
    if rank == 0:
        with locked(out):
            remove_stale_temp_files(out)
            update_manifest(out, run, entries)
            restore_finished(out)
        for part in out.glob("parts/*/*"):  # a part another process is running keeps its temp files
            with locked(part, PART_LOCK.format(rank=0), wait=False) as free:
                if free:
                    remove_stale_temp_files(part)
    plan = {(r, b.name): part_settings(fingerprints[names[r]], task_of[b.name], b.whole_groups(limit), batch_size,
                                       device, dtype) for r in refs for b in benches}
    rounded = [f"{b.name} to {b.whole_groups(limit)} (it scores {b.doc_group} questions per image together)"
               for b in benches if b.whole_groups(limit) != limit]
    if rounded and rank == 0 and not json_out:
        print(f"--limit {limit} rounded up for {'; '.join(rounded)}", file=sys.stderr)
    todo, reused, stale = [], 0, {}
    for r in refs:
        for b in benches:
            done = read_done(_part_dir(out, names[r], task_of[b.name]))
            why = None if done is None else stale_setting(done, plan[r, b.name])
            if done is not None and why is None:
                reused += 1
                continue
            todo.append((r, b))
            if why:
                stale[why] = stale.get(why, 0) + 1
    with _progress(json_out or rank != 0) as progress:
        _evaluate(todo, names, task_of, configs, manager, out, suite_obj, plan, progress)
    if rank != 0:
        return
    update_manifest(out, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    from scopebench.evaluation.display import print_scores

    wanted = {(names[r], b.name) for r in refs for b in benches}
    print_scores(out, suite_obj, wanted, json_out=json_out)
    if not json_out:
        again = "".join(f"; {n} re-run (they had {why})" for why, n in stale.items())
        print(f"(model, task) parts: {len(todo)} evaluated, {reused} reused from earlier runs{again}", file=sys.stderr)


def _evaluate(todo, names, task_of, configs, manager, out, suite, plan, progress) -> None:
    from lmms_eval.evaluator import simple_evaluate

    from scopebench.evaluation.adapter import ScopeLMM, read_traces

    lm, current = None, None
    world = int(os.environ.get("WORLD_SIZE", 1))
    for ref, bench in todo:
        model, task = names[ref], task_of[bench.name]
        settings = plan[ref, bench.name]
        part = _part_dir(out, model, task)
        part.mkdir(parents=True, exist_ok=True)
        if ref != current:
            lm, current = ScopeLMM(ref, device=settings["device"], batch_size=settings["batch_size"],
                                   dtype=settings["dtype"]), ref
        # one process per part at a time; two single-process runs of one model share the work
        with locked(part, PART_LOCK.format(rank=lm.rank)):
            done = read_done(part)
            if world == 1 and done is not None and stale_setting(done, settings) is None:
                continue  # another process finished it while this one waited
            remove_stale_temp_files(part)
            job = progress.add_task(f"{model} · {bench.name}", total=None)
            lm.begin_task(part, on_batch=lambda k, total, job=job: progress.update(job, total=total, advance=k))
            results = _run_task(simple_evaluate, lm, configs[bench.name], manager, part, model, task, settings, out)
            progress.update(job, completed=progress.tasks[-1].total or 0)
            if lm.rank != 0 or results is None:
                continue
            score, routes = collect(results, bench, task, model, suite, read_traces(part), lm.fingerprint)
            _save_part(part, results, score, routes)
            with locked(out):
                merge_part(out, "scores", pd.DataFrame([score]))
                merge_part(out, "routes", pd.DataFrame(routes))
                # last: a part marked done is skipped on resume, so it must already be in the run's tables
                samples = results.get("samples", {}).get(task, [])
                atomic_write_text(part / "done", json.dumps({
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": settings,
                    "docs": docs_digest(samples), "n": len(samples)}, indent=1))


def _run_task(simple_evaluate, lm, config, manager, part, model, task, settings, out) -> dict | None:
    """One lmms-eval evaluation of one task; what lmms-eval prints goes to the part's log."""
    args = argparse.Namespace(output_path=str(part), process_with_media=False)
    log = part / LMMS_EVAL_LOG.format(rank=lm.rank)
    _reset_task_state()
    try:
        # lmms-eval's prints, tqdm bars and warnings go to the task's log, not the terminal (or --json's stdout)
        with open(log, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            return simple_evaluate(
                model=lm, tasks=[copy.deepcopy(config)], task_manager=manager, limit=settings["limit"],
                batch_size=settings["batch_size"], log_samples=True, bootstrap_iters=0, verbosity="ERROR",
                process_docs_parallel=1, cli_args=args,
                # no lmms-eval response cache: its answers carry no route; the adapter's trace is the cache
                # accelerate's gather of lmms-eval's 0-d request counts fails across CPU processes; the
                # torchrun backend uses plain torch.distributed collectives (gloo on CPU)
                distributed_executor_backend="torchrun" if settings["device"] == "cpu" else "accelerate",
            )
    except ScopebenchError:
        raise
    except Exception as err:  # a task that cannot run: one line, finished work stays on disk
        if os.environ.get("SCOPEBENCH_DEBUG"):
            raise
        raise ScopebenchError(
            f"task '{task}' failed for model '{model}': {type(err).__name__}: {str(err).splitlines()[0][:300]}"
            f"; lmms-eval's output is in {log}; finished tasks are kept in {out}"
        ) from None


def _reset_task_state() -> None:
    """lmms-eval's OCRBench keeps a module-level running total: zero it before each evaluation."""
    ocr = sys.modules.get("lmms_eval.tasks.ocrbench.utils")
    if ocr is not None:
        for k in ocr.OCRBench_score:
            ocr.OCRBench_score[k] = 0


def _progress(disabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        # bound to the real stderr: lmms-eval's output is redirected to a log while the bars refresh
        console=Console(file=sys.stderr), disable=disabled, transient=False,
    )
