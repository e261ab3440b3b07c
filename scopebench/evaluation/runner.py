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
import importlib
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
    merge_rows,
    read_manifest,
    read_table,
    write_manifest,
    write_table,
)

LMMS_EVAL_LOG = "lmms_eval.rank{rank}.log"  # per (model, task) part: what lmms-eval printed


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


def check_run_dir(out: Path, suite: Suite, fingerprints: dict[str, str]) -> dict[str, Any]:
    """The run's manifest, checked against this suite and these models (ScopebenchError on mismatch)."""
    manifest = read_manifest(out)
    if manifest.get("suite") and manifest["suite"] != suite.name:
        raise ScopebenchError(
            f"{out} holds a run of suite '{manifest['suite']}', not '{suite.name}'; choose another --output"
        )
    for name, fp in fingerprints.items():
        old = manifest.get("models", {}).get(name, {}).get("fingerprint")
        if old and old != fp:
            raise ScopebenchError(
                f"{out} holds results of a different model named '{name}' (fingerprint {old} != {fp}); "
                f"choose another --output"
            )
    return manifest


def _part_dir(out: Path, model: str, task: str) -> Path:
    return out / "parts" / model.replace("/", "_") / task


def restore_finished(out: Path) -> None:
    """Merge every finished part (``parts/MODEL/TASK/done``) whose score is missing from the run's tables
    back into them (after a table was deleted, or lost). Reading the tables first also refuses a corrupt
    one before any task runs."""
    def keys(scores: pd.DataFrame) -> set[tuple[str, ...]]:
        return set(scores[KEYS["scores"]].astype(str).itertuples(index=False, name=None))

    have = keys(load_table(out, "scores", required=False))
    load_table(out, "routes", required=False)
    for done in sorted(out.glob("parts/*/*/done")):
        score = read_table(done.parent / "scores.parquet", "scores")
        if not keys(score) <= have:
            merge_rows(out, "scores", score, KEYS["scores"])
            merge_rows(out, "routes", read_table(done.parent / "routes.parquet", "routes"), KEYS["routes"])


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


def _sample_judge(bench: Benchmark, suite: Suite):
    """The task's own judging function named by ``sample_judge``; returns one value per list of samples."""
    module, _, name = bench.sample_judge.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ScopebenchError(f"{suite.source}: benchmark '{bench.name}': sample_judge '{bench.sample_judge}' "
                              f"cannot be imported ({err}); fix or remove the field") from None

    def judge(values: list) -> Any:
        out = fn(values)
        return out[-1] if isinstance(out, tuple) else out  # e.g. MMMU's evaluate_mmmu: (per-id verdicts, {"acc"})

    return judge


def collect(results: dict, bench: Benchmark, task: str, model: str, suite: Suite, traces: list[dict]):
    """lmms-eval results + adapter traces -> (scores row, routes rows)."""
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
    judge = _sample_judge(bench, suite) if bench.sample_judge else None
    per_doc = {int(s["doc_id"]): sample_score(judge([s.get(bench.metric)]) if judge else s.get(bench.metric))
               for s in samples}
    by_doc: dict[int, dict] = {}
    for rec in traces:
        if rec.get("task") == task:
            by_doc[int(rec["doc_id"])] = rec
    rows = []
    for doc_id in sorted(set(per_doc) | set(by_doc)):
        rec = by_doc.get(doc_id, {})
        row = {"model": model, "benchmark": bench.name, "task": task, "doc_id": doc_id,
               "route": rec.get("route", ""), "encoder": rec.get("encoder", ""),
               "sample_score": per_doc.get(doc_id, math.nan)}
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


def _read_traces(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("trace.rank*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


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
    output: Path | None, judge: bool, json_out: bool,
) -> None:
    """Evaluate ``models`` on ``suite`` and write / extend the run directory; print the scores."""
    from scopebench.evaluation.adapter import model_fingerprint
    from scopebench.models.registry import check_device

    check_device(device)
    if limit is not None and limit < 1:
        raise ScopebenchError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise ScopebenchError(f"--batch-size must be >= 1, got {batch_size}")
    suite_obj = load_suite(suite)
    benches = suite_obj.select(tasks)
    refs = models or default_models()
    names, trained = _model_names(refs)
    fingerprints = {names[r]: model_fingerprint(r) for r in refs}
    out = Path(output or Path("runs") / suite_obj.name)
    manifest = check_run_dir(out, suite_obj, fingerprints)
    task_of = {b.name: (b.judge_task if judge and b.judge_task else b.task) for b in benches}
    rank = int(os.environ.get("RANK", 0))
    quiet_logs()
    from scopebench.evaluation.datasets import task_config, task_manager

    manager = task_manager(suite_obj, list(task_of.values()))
    configs = {name: task_config(manager, t) for name, t in task_of.items()}
    manifest.update({
        "suite": suite_obj.name, "suite_file": str(suite_obj.source), "judge": judge, "limit": limit,
        "batch_size": batch_size, "device": device, **environment(),
    })
    manifest.setdefault("models", {}).update({names[r]: {
        "ref": r, "fingerprint": fingerprints[names[r]], "trained_policy": trained[r]} for r in refs})
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, manifest)
        restore_finished(out)
    todo = [(r, b) for r in refs for b in benches if not (_part_dir(out, names[r], task_of[b.name]) / "done").exists()]
    with _progress(json_out or rank != 0) as progress:
        _evaluate(todo, names, task_of, configs, manager, out, suite_obj, limit, batch_size, device, progress)
    if rank != 0:
        return
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_manifest(out, manifest)
    from scopebench.evaluation.display import print_scores

    wanted = {(names[r], b.name) for r in refs for b in benches}
    print_scores(out, suite_obj, wanted, json_out=json_out)


def _evaluate(todo, names, task_of, configs, manager, out, suite, limit, batch_size, device, progress) -> None:
    from lmms_eval.evaluator import simple_evaluate

    from scopebench.evaluation.adapter import ScopeLMM

    lm, current = None, None
    for ref, bench in todo:
        model, task = names[ref], task_of[bench.name]
        part = _part_dir(out, model, task)
        if ref != current:
            lm, current = ScopeLMM(ref, device=device, batch_size=batch_size), ref
        lm.trace_path = part / f"trace.rank{lm.rank}.jsonl"
        lm.done = lm._read_trace()
        job = progress.add_task(f"{model} · {bench.name}", total=None)
        lm.on_batch = lambda k, total, job=job: progress.update(job, total=total, advance=k)
        _reset_task_state()
        args = argparse.Namespace(output_path=str(part), process_with_media=False)
        part.mkdir(parents=True, exist_ok=True)
        log = part / LMMS_EVAL_LOG.format(rank=lm.rank)
        try:
            # lmms-eval's prints, tqdm bars and warnings go to the task's log, not the terminal (or --json's stdout)
            with open(log, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                results = simple_evaluate(
                    model=lm, tasks=[copy.deepcopy(configs[bench.name])], task_manager=manager, limit=limit, batch_size=batch_size,
                    log_samples=True, bootstrap_iters=0, use_cache=str(out / "cache" / model), verbosity="ERROR",
                    process_docs_parallel=1, cli_args=args,
                    # accelerate's gather of lmms-eval's 0-d request counts fails across CPU processes; the
                    # torchrun backend uses plain torch.distributed collectives (gloo on CPU)
                    distributed_executor_backend="torchrun" if device == "cpu" else "accelerate",
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
        progress.update(job, completed=progress.tasks[-1].total or 0)
        if int(os.environ.get("RANK", 0)) != 0 or results is None:
            continue
        score, routes = collect(results, bench, task, model, suite, _read_traces(part))
        _save_part(part, results, score, routes)
        merge_rows(out, "scores", pd.DataFrame([score]), ["model", "benchmark"])
        merge_rows(out, "routes", pd.DataFrame(routes), ["model", "benchmark", "doc_id"])
        # last: a part marked done is skipped on resume, so it must already be in the run's tables
        atomic_write_text(part / "done", time.strftime("%Y-%m-%dT%H:%M:%S"))


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
