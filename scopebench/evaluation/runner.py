"""`scopebench eval`: run models on a suite through lmms-eval and write the run directory.

Work is done per (model, task) part (``scopebench.evaluation.parts``). A finished part is merged into
the run's tables at once and marked done with its settings, so an interrupted run loses no finished
task, and running again into the same output reuses the parts run with the same model, task and limit.
Inside a task, the answers already in the adapter's trace are reused. Each model is loaded once and each
lmms-eval task built once per run (its dataset loaded once), then evaluated for every model; a run with
no part left to evaluate imports neither torch nor lmms-eval.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import os
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopebench.errors import ScopebenchError
from scopebench.evaluation.parts import (
    collect,
    finish_part,
    part_settings,
    read_done,
    restore_finished,
    stale_setting,
)
from scopebench.run_dir import RunDir, environment, folder_name
from scopebench.suites import Benchmark, Suite, load_suite, with_judges
from scopebench.tables import locked, remove_stale_temp_files

LMMS_EVAL_LOG = "lmms_eval.rank{rank}.log"  # per (model, task) part: what lmms-eval printed
PART_LOCK = ".lock.rank{rank}"  # held by the process slot evaluating the part


def default_models() -> list[str]:
    from scopebench.models.registry import demo_models

    names = [n for n in demo_models() if not n.startswith("demo-baseline-2-")]  # pairs: for `sweep` only
    if not names:
        raise ScopebenchError("no demo checkpoints found; "
                              "build them with `scopebench demo train` or pass MODEL")
    return names


@dataclass
class Job:
    """What one `eval` runs: the models (reference -> ModelRef), the benchmarks with their lmms-eval task
    configs, and the settings of every (model, benchmark) part."""

    run: RunDir
    suite: Suite
    models: dict[str, Any]  # reference -> scopebench.models.registry.ModelRef
    benchmarks: list[Benchmark]
    tasks: dict[str, str]  # benchmark -> lmms-eval task id
    configs: dict[str, dict]  # benchmark -> lmms-eval task config
    manager: Any  # lmms-eval TaskManager
    settings: dict[tuple[str, str], dict[str, Any]]  # (reference, benchmark) -> part settings
    placement: dict[str, Any]  # device_map, max_memory: one model over several devices
    built: dict[str, Any] = field(default_factory=dict)  # benchmark -> lmms-eval task object, once built
    doc_images: Any = None  # scopebench.evaluation.adapter.DocImages: documents' images, for every model

    def part(self, ref: str, bench: Benchmark) -> Path:
        return self.run.part(self.models[ref].name, self.tasks[bench.name])


def _resolve_all(refs: list[str]):
    """Each reference parsed once (a ModelRef); two models of one name in a run are refused."""
    from scopebench.models.registry import resolve

    found = {}
    for ref in refs:
        model = resolve(ref)
        if model.name in (m.name for m in found.values()):
            raise ScopebenchError(f"two models are named '{model.name}'; "
                                  "evaluate them into different --output folders")
        found[ref] = model
    return found


def check_run_dir(run: RunDir, suite: Suite, fingerprints: dict[str, str], dtypes: dict[str, str],
                  overwrite: bool = False) -> None:
    """Refuse an output folder holding another suite, or another model under one of these names (unless
    ``overwrite``: its parts are then re-run)."""
    from scopebench.models.fingerprint import FINGERPRINT

    manifest = run.manifest()
    if manifest.get("suite") and manifest["suite"] != suite.name:
        raise ScopebenchError(
            f"{run} holds a run of suite '{manifest['suite']}', not '{suite.name}'; choose another --output"
        )
    for name, fp in fingerprints.items():
        old = manifest.get("models", {}).get(name, {}).get("fingerprint")
        if old and old != fp and not overwrite:
            ran = manifest["models"][name].get("dtype")
            why = "its config or weights differ"
            if not str(old).startswith(f"{FINGERPRINT}|"):
                why = "it was fingerprinted by an older scopebench, which hashed only part of the weights"
            elif ran and ran != dtypes[name]:
                why = f"it ran in {ran}, this run in {dtypes[name]}"
            raise ScopebenchError(
                f"{run} holds results of another model named '{name}' ({why}: {old} != {fp}); "
                f"pass --overwrite to replace them, or choose another --output"
            )


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
    output: Path | None, judge: bool, json_out: bool, overwrite: bool = False, dtype: str = "auto",
    device_map: str | None = None, max_memory: str | None = None,
) -> None:
    """Evaluate ``models`` on ``suite`` and write / extend the run directory; print the scores."""
    from scopebench.models.fingerprint import model_fingerprint
    from scopebench.models.placement import parse_max_memory
    from scopebench.models.registry import check_device, run_dtype

    check_device(device)
    if limit is not None and limit < 1:
        raise ScopebenchError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise ScopebenchError(f"--batch-size must be >= 1, got {batch_size}")
    suite_obj = load_suite(suite)
    benches = suite_obj.select(tasks)
    refs = _resolve_all(models or default_models())
    presets = [r for r, m in refs.items() if m.kind == "preset"]
    if presets:
        raise ScopebenchError(
            f"model '{presets[0]}' is a preset, with no trained weights; evaluate a checkpoint "
            f"(`scopebench assemble {presets[0]} -o DIR --allow-random` writes a random-init one for a "
            "dry run); flops and latency take presets as they are")
    if device_map not in (None, "auto"):
        raise ScopebenchError(f"--device-map must be 'auto', got '{device_map}'")
    parse_max_memory(max_memory)  # a malformed --max-memory fails before any work
    dtypes = {r: run_dtype(dtype, device, m.folder) for r, m in refs.items()}
    fingerprints = {m.name: model_fingerprint(r, dtype=dtypes[r]) for r, m in refs.items()}
    run = RunDir(output or Path("runs") / suite_obj.name)
    check_run_dir(run, suite_obj, fingerprints, {m.name: dtypes[r] for r, m in refs.items()}, overwrite)
    task_of = {b.name: (b.judge_task if judge and b.judge_task else b.task) for b in benches}
    settings = {(r, b.name): part_settings(fingerprints[m.name], task_of[b.name], b.whole_groups(limit),
                                           batch_size, device, dtypes[r])
                for r, m in refs.items() for b in benches}
    todo, reused, stale = [], 0, {}
    for r, m in refs.items():
        for b in benches:
            done = read_done(run.part(m.name, task_of[b.name]))
            why = None if done is None else stale_setting(done, settings[r, b.name])
            if done is not None and why is None:
                reused += 1
                continue
            todo.append((r, b.name))
            if why:
                stale[why] = stale.get(why, 0) + 1
    # lmms-eval, its tasks and the suite's sample judges load only when there is work
    job = _job(run, suite_obj, benches, refs, task_of, settings, device_map, max_memory) if todo else None
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        _prepare(run, {"suite": suite_obj.name, "suite_file": str(suite_obj.source), "judge": judge,
                       "limit": limit, "batch_size": batch_size, "device": device, "dtype": dtype,
                       "device_map": device_map, "max_memory": max_memory, **environment()},
                 {m.name: {**m.manifest_entry(), "fingerprint": fingerprints[m.name], "limit": limit,
                           "batch_size": batch_size, "device": device, "dtype": dtypes[r]}
                  for r, m in refs.items()})
        for m in refs.values():
            if m.config.untrained:
                print(f"warning: {m.name} was assembled with random tensors (untrained: true in its "
                      "scopebench.json): its scores say nothing about a trained model", file=sys.stderr)
    rounded = [f"{b.name} to {b.whole_groups(limit)} (it scores {b.doc_group} questions per image together)"
               for b in benches if b.whole_groups(limit) != limit]
    if rounded and rank == 0 and not json_out:
        print(f"--limit {limit} rounded up for {'; '.join(rounded)}", file=sys.stderr)
    if job:
        _evaluate(job, todo, quiet=json_out or rank != 0)
    if rank != 0:
        return
    run.update_manifest({"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    from scopebench.evaluation.display import print_scores

    wanted = {(m.name, b.name) for m in refs.values() for b in benches}
    print_scores(run.path, suite_obj, wanted, json_out=json_out)
    if not json_out:
        again = "".join(f"; {n} re-run (they had {why})" for why, n in stale.items())
        print(f"(model, task) parts: {len(todo)} evaluated, {reused} reused from earlier runs{again}; "
              f"per-sample answers: {run.path / 'parts'}/MODEL/TASK/lmms_eval_samples.jsonl", file=sys.stderr)


def _prepare(run: RunDir, fields: dict[str, Any], entries: dict[str, dict]) -> None:
    """Before any task: record the run and its models, rebuild lost tables from finished parts, and remove
    the temp files a killed write left (a part another process is running keeps its own)."""
    with run.lock():
        run.remove_stale_temp_files()
        run.update_manifest(fields, entries)
        restore_finished(run)
    for part in run.path.glob("parts/*/*"):
        with locked(part, PART_LOCK.format(rank=0), wait=False) as free:
            if free:
                remove_stale_temp_files(part)


def _job(run: RunDir, suite: Suite, benches: list[Benchmark], refs: dict[str, Any], task_of: dict[str, str],
         settings: dict[tuple[str, str], dict[str, Any]], device_map: str | None,
         max_memory: str | None) -> Job:
    """The run's work with its sample judges imported and its lmms-eval task configs found (an unknown task
    is refused here, before any task runs)."""
    quiet_logs()
    from scopebench.evaluation.datasets import task_config, task_manager

    suite = with_judges(suite)
    manager = task_manager(suite, list(task_of.values()))
    return Job(run, suite, refs, [suite.benchmark(b.name) for b in benches], task_of,
               {name: task_config(manager, t) for name, t in task_of.items()}, manager, settings,
               {"device_map": device_map, "max_memory": max_memory})


def _evaluate(job: Job, todo: list[tuple[str, str]], quiet: bool) -> None:
    """Evaluate the ``todo`` (reference, benchmark) parts in order, with a progress bar unless ``quiet``."""
    from scopebench.evaluation.display import EvalProgress

    benches = {b.name: b for b in job.benchmarks}
    try:
        with EvalProgress(len(todo), disabled=quiet) as progress, _git_asked_once():
            _evaluate_parts(job, [(r, benches[b]) for r, b in todo], progress)
    finally:
        gc.unfreeze()  # what was frozen is collected as usual again


GIT_QUERIES = ("get_git_commit_hash", "get_git_branch_name", "get_lmms_eval_version_string")


@contextlib.contextmanager
def _git_asked_once():
    """lmms-eval's own git queries (its commit, branch and version string for each results file), each
    answered once per run: simple_evaluate runs them on every call, 3-4 git processes and 14 ms a task
    (1.3 s of a demo eval), and their answers cannot change during a run."""
    import lmms_eval.evaluator as evaluator

    asked = {name: getattr(evaluator, name) for name in GIT_QUERIES}
    for name, query in asked.items():
        setattr(evaluator, name, functools.cache(query))
    try:
        yield
    finally:
        for name, query in asked.items():
            setattr(evaluator, name, query)


def _evaluate_parts(job: Job, todo: list[tuple[str, Benchmark]], progress) -> None:
    from lmms_eval.evaluator import simple_evaluate

    from scopebench.evaluation.adapter import DocImages, ScopeLMM, read_traces

    lm, current = None, None
    world = int(os.environ.get("WORLD_SIZE", 1))
    for ref, bench in todo:
        model, settings, part = job.models[ref].name, job.settings[ref, bench.name], job.part(ref, bench)
        part.mkdir(parents=True, exist_ok=True)
        if ref != current:
            _free(lm)  # the previous model is freed before the next one loads
            lm = None
            offload = job.run.path / "offload" / folder_name(model) if job.placement["device_map"] else None
            lm, current = ScopeLMM(ref, device=settings["device"], batch_size=settings["batch_size"],
                                   dtype=settings["dtype"], offload_dir=offload, **job.placement), ref
            lm.doc_images = job.doc_images = job.doc_images or DocImages()
            # the libraries, the model and the built tasks outlive the model's tasks: the garbage collector
            # leaves them out (lmms-eval's full collection after each task took 0.26 s)
            gc.freeze()
        # one process per part at a time; two single-process runs of one model share the work
        with locked(part, PART_LOCK.format(rank=lm.rank)):
            done = read_done(part)
            if world == 1 and done is not None and stale_setting(done, settings) is None:
                progress.finish()
                continue  # another process finished it while this one waited
            remove_stale_temp_files(part)
            lm.begin_task(part, on_batch=progress.start(f"{model} · {bench.name}"))
            results = _run_task(simple_evaluate, lm, job, bench, part, model, settings)
            progress.finish()
            if lm.rank != 0 or results is None:
                continue
            traces = read_traces(part)
            score, routes = collect(results, bench, settings["task"], model, job.suite, traces,
                                    lm.fingerprint)
            finish_part(job.run, part, results, score, routes, settings)
            _note_dropped(job.run, model, bench.name, traces, lm)


def _note_dropped(run: RunDir, model: str, bench: str, traces: list[dict], lm) -> None:
    """Record in the manifest how many images above the model's ``max_images`` the benchmark's requests
    lost (``images_dropped``, per benchmark), and say so when any were."""
    dropped = sum(r.get("images_dropped", 0) for r in traces if r["fingerprint"] == lm.fingerprint)
    keep = lm.model.cfg.max_images
    with run.lock():
        counts = run.manifest().get("models", {}).get(model, {}).get("images_dropped", {})
        run.update_manifest({}, {model: {"max_images": keep, "images_dropped": {**counts, bench: dropped}}})
    if dropped:
        print(f"{model} · {bench}: {dropped} images above max_images {keep} dropped "
              f"(images_dropped in {run.path / 'manifest.json'})", file=sys.stderr)


def _free(lm) -> None:
    """Drop ``lm``'s model: freed at once when nothing else holds it; when something does (a reference
    cycle), by a full collection (0.24 s with the libraries loaded, so only then)."""
    if lm is None:
        return
    model = weakref.ref(lm.model)
    lm.model = None
    if model() is not None:
        gc.unfreeze()
        gc.collect()


def _run_task(simple_evaluate, lm, job: Job, bench: Benchmark, part: Path, model: str,
              settings: dict[str, Any]) -> dict | None:
    """One lmms-eval evaluation of one task; what lmms-eval prints goes to the part's log."""
    task = settings["task"]
    args = argparse.Namespace(output_path=str(part), process_with_media=False)
    log = part / LMMS_EVAL_LOG.format(rank=lm.rank)
    _reset_task_state()
    try:
        # lmms-eval's prints, tqdm bars and warnings go to the task's log, not the terminal
        # (or --json's stdout)
        with open(log, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            return simple_evaluate(
                model=lm, tasks=[_built_task(job, bench)], task_manager=job.manager,
                limit=settings["limit"],
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
            f"task '{task}' failed for model '{model}': {type(err).__name__}: "
            f"{str(err).splitlines()[0][:300]}"
            f"; lmms-eval's output is in {log}; finished tasks are kept in {job.run}"
        ) from None


def _built_task(job: Job, bench: Benchmark):
    """The benchmark's lmms-eval task object, built (its dataset loaded) on first use and reused for every
    model: lmms-eval builds its requests, filters and scores anew in each evaluation. In a multi-process run,
    process 0 builds first, as lmms-eval does, so that the others read a warm dataset cache."""
    import torch.distributed as dist
    from lmms_eval.tasks import get_task_dict

    if bench.name not in job.built:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else None
        if rank:
            dist.barrier()  # process 0 builds first
        built = get_task_dict([copy.deepcopy(job.configs[bench.name])], job.manager)
        if rank == 0:
            dist.barrier()
        job.built[bench.name] = next(iter(built.values()))
    return job.built[bench.name]


def _reset_task_state() -> None:
    """lmms-eval's OCRBench keeps a module-level running total: zero it before each evaluation."""
    ocr = sys.modules.get("lmms_eval.tasks.ocrbench.utils")
    if ocr is not None:
        for k in ocr.OCRBench_score:
            ocr.OCRBench_score[k] = 0
