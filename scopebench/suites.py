"""Benchmark suites as data: which lmms-eval task feeds which benchmark, its category,
its main metric and how to bring that metric onto the Cambrian-1 0-100 scale.

A suite is a YAML file (``tasks/suites/NAME.yaml`` or any path)::

    name: cambrian16
    task_dir: null            # folder of extra lmms-eval task YAMLs (relative to the file), or null
    benchmarks:
      - {name: MME-P, task: mme, category: General, metric: mme_perception_score, scale: 0.05}

``scale`` multiplies the lmms-eval value to give 0-100 (``0.05`` for MME-P's 0-2000,
``100`` for a 0-1 accuracy, ``1`` for a metric already in percent). ``native_max`` is the
top of the benchmark's published scale (2000 for MME-P, 100 otherwise); external score
files are read in that scale. Optional per benchmark: ``judge_task`` (the lmms-eval task
to use when the API judge is enabled), ``sample_judge`` (``module:function``, the task's own
function that judges a list of per-sample metric values, applied to each sample alone to get
per-sample scores where the stored value is not one, e.g. SEED's ``seed_aggregation_result``;
only a module of ``lmms_eval.tasks`` or a module file in ``task_dir``, e.g. ``utils:f`` for
``task_dir/utils.py``), ``doc_group`` (documents scored together: 2 for MME, whose two questions per
image are scored as a pair; a ``--limit`` is rounded up to whole groups) and ``note`` (shown in reports,
e.g. "rule-based answer extraction").
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from scopebench.config import check_fields, required_fields
from scopebench.errors import ScopebenchError, suggest
from scopebench.paths import tasks_dir

CATEGORY_ORDER = ("General", "Knowledge", "OCR & Chart", "Vision-Centric")


@dataclass(frozen=True)
class Benchmark:
    name: str
    task: str
    category: str
    metric: str
    scale: float = 100.0
    native_max: float = 100.0
    judge_task: str | None = None
    sample_judge: str | None = None
    note: str = ""
    doc_group: int = 1
    judge_fn: Callable | None = field(default=None, compare=False, repr=False)  # sample_judge, once loaded

    def judge_sample(self, value):
        """One sample's metric value as ``sample_judge`` judges it alone (unchanged without a judge)."""
        if self.sample_judge is None:
            return value
        if self.judge_fn is None:
            raise RuntimeError("sample judges are loaded by load_suite(..., judges=True)")
        try:
            out = self.judge_fn([value])
        except Exception as err:  # the suite's code: one line, not a traceback
            raise ScopebenchError(f"benchmark '{self.name}': sample_judge '{self.sample_judge}' failed: "
                                  f"{_one_line(err)}; fix the function or remove the field") from None
        return out[-1] if isinstance(out, tuple) else out  # MMMU's evaluate_mmmu: (verdicts, {"acc"})

    def to_percent(self, value: float) -> float:
        """lmms-eval metric value -> 0-100."""
        return float(value) * self.scale

    def whole_groups(self, limit: int | None) -> int | None:
        """``--limit`` rounded up to whole document groups (MME's question pairs)."""
        return None if limit is None else -(-limit // self.doc_group) * self.doc_group

    def native_to_percent(self, value: float) -> float:
        """Score on the benchmark's published scale (e.g. MME-P out of 2000) -> 0-100."""
        return float(value) * 100.0 / self.native_max


@dataclass(frozen=True)
class Suite:
    name: str
    benchmarks: tuple[Benchmark, ...]
    task_dir: Path | None = None
    source: Path | None = None
    description: str = ""
    categories: tuple[str, ...] = field(default=())

    def benchmark(self, name_or_task: str) -> Benchmark:
        """The benchmark with this name or task id; letter case counts only to tell two apart."""
        for b in self.benchmarks:
            if name_or_task in (b.name, b.task):
                return b
        wanted = name_or_task.casefold()
        folded = [b for b in self.benchmarks if wanted in (b.name.casefold(), b.task.casefold())]
        if len(folded) == 1:
            return folded[0]
        known = {k.casefold(): k for b in reversed(self.benchmarks) for k in (b.task, b.name)}  # names win
        close = difflib.get_close_matches(wanted, list(known), n=1)
        raise ScopebenchError(
            f"unknown benchmark or task '{name_or_task}' in suite '{self.name}'"
            f"{f' (did you mean {known[close[0]]!r}?)' if close else ''}; "
            f"choose from: {', '.join(f'{b.name} ({b.task})' for b in self.benchmarks)}"
        )

    def with_benchmark_names(self, df, where: Path):
        """``df`` with its ``benchmark`` column (benchmark names or task ids) as this suite's benchmark names;
        a value outside the suite is one error naming ``where``."""
        names = {}
        for value in df["benchmark"].dropna().unique():
            try:
                names[value] = self.benchmark(str(value)).name
            except ScopebenchError as err:
                raise ScopebenchError(f"{where}: column 'benchmark': {err}") from None
        return df.assign(benchmark=df["benchmark"].map(names))

    def select(self, names: list[str] | None) -> list[Benchmark]:
        """Benchmarks named by benchmark name or task id, each once, in the order named (all when
        ``names`` is empty)."""
        if not names:
            return list(self.benchmarks)
        return list({b.name: b for b in map(self.benchmark, names)}.values())


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {next(iter(str(err).splitlines()), '')[:300]}"


def suite_files() -> dict[str, Path]:
    """Built-in suites by name."""
    return {p.stem: p for p in sorted((tasks_dir() / "suites").glob("*.yaml"))}


_REQUIRED = required_fields(Benchmark)
_LOADED = frozenset({"judge_fn"})  # Benchmark fields a suite file does not set
JUDGE_PACKAGE = "lmms_eval.tasks."


def _judge_file(module: str, task_dir: Path | None) -> Path | None:
    """The file of ``module`` (``utils``, ``sub.utils``) inside the suite's task folder, or None."""
    if task_dir is None:
        return None
    path = task_dir.joinpath(*module.split(".")).with_suffix(".py")
    return path if path.is_file() and path.resolve().is_relative_to(task_dir.resolve()) else None


def _check_judge(judge, task_dir: Path | None, where: str) -> None:
    """Refuse a ``sample_judge`` that is not 'module:function' from lmms_eval.tasks or the task_dir."""
    module, _, name = judge.partition(":") if isinstance(judge, str) else ("", "", "")
    if not (name.isidentifier() and all(p.isidentifier() for p in module.split("."))):
        raise ScopebenchError(f"{where}.sample_judge must be 'module:function', got {judge!r}")
    if not module.startswith(JUDGE_PACKAGE) and _judge_file(module, task_dir) is None:
        raise ScopebenchError(f"{where}.sample_judge '{judge}': the module must be in {JUDGE_PACKAGE}* or "
                              "a .py file in the suite's task_dir; name one of those")


def _load_judge(bench: Benchmark, task_dir: Path | None, where: str) -> Benchmark:
    """``bench`` with its ``sample_judge`` imported (a task_dir module by path, as lmms-eval's !function)."""
    module, _, name = bench.sample_judge.partition(":")
    try:
        path = None if module.startswith(JUDGE_PACKAGE) else _judge_file(module, task_dir)
        if path is None:
            fn = getattr(importlib.import_module(module), name)
        else:
            spec = importlib.util.spec_from_file_location(module, path)
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
            fn = getattr(loaded, name)
    except Exception as err:  # the suite's code: one line, not a traceback
        raise ScopebenchError(f"{where}.sample_judge '{bench.sample_judge}' cannot be imported "
                              f"({_one_line(err)}); fix or remove the field") from None
    if not callable(fn):
        raise ScopebenchError(f"{where}.sample_judge '{bench.sample_judge}' is a {type(fn).__name__}, "
                              "not a function")
    return replace(bench, judge_fn=fn)


def load_suite(name_or_path: str | Path, judges: bool = False) -> Suite:
    """Load a built-in suite by name, or a user suite from a YAML file; ``judges``: import the
    ``sample_judge`` functions too (slow: they import lmms-eval), as `eval` does before any task runs."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and not path.is_file():
        raise ScopebenchError(f"{path}: suite file not found; "
                              "pass an existing suite YAML file or a built-in suite name")
    if path.suffix not in (".yaml", ".yml"):
        files = suite_files()
        if str(name_or_path) not in files:
            raise ScopebenchError(
                f"unknown suite '{name_or_path}'{suggest(str(name_or_path), list(files))}; "
                f"built-in suites: {', '.join(files)}; or pass a suite YAML file"
            )
        path = files[str(name_or_path)]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ScopebenchError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or not data["benchmarks"]:
        raise ScopebenchError(f"{path}: field 'benchmarks' must be a non-empty list of benchmarks")
    task_dir = (path.parent / data["task_dir"]).resolve() if data.get("task_dir") else None
    benchmarks = []
    for i, item in enumerate(data["benchmarks"]):
        where = f"{path}: benchmarks[{i}]"
        if not isinstance(item, dict):
            raise ScopebenchError(f"{where} must be a mapping with fields {', '.join(_REQUIRED)}")
        missing = [k for k in _REQUIRED if not item.get(k)]  # an empty one too
        if missing:
            raise ScopebenchError(f"{where} is missing field '{missing[0]}'")
        check_fields(Benchmark, item, where, exclude=_LOADED)
        if item.get("sample_judge") is not None:
            _check_judge(item["sample_judge"], task_dir, where)
        for num in ("scale", "native_max"):
            if num in item and not (isinstance(item[num], int | float) and item[num] > 0):
                raise ScopebenchError(f"{where}.{num} must be a positive number, got {item[num]!r}")
        group = item.get("doc_group", 1)
        if not (isinstance(group, int) and not isinstance(group, bool) and group >= 1):
            raise ScopebenchError(f"{where}.doc_group must be a whole number, 1 or more, got {group!r}")
        bench = Benchmark(**item)
        benchmarks.append(bench)
    names = [b.name for b in benchmarks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ScopebenchError(f"{path}: benchmark name '{sorted(dup)[0]}' appears twice")
    cats = tuple(dict.fromkeys(b.category for b in benchmarks))
    suite = Suite(
        name=str(data.get("name") or path.stem),
        benchmarks=tuple(benchmarks),
        task_dir=task_dir,
        source=path,
        description=str(data.get("description", "")),
        categories=cats,
    )
    return with_judges(suite) if judges else suite


def with_judges(suite: Suite) -> Suite:
    """``suite`` with its benchmarks' ``sample_judge`` functions imported (slow: they import lmms-eval)."""
    return replace(suite, benchmarks=tuple(
        _load_judge(b, suite.task_dir, f"{suite.source}: benchmarks[{i}]") if b.sample_judge else b
        for i, b in enumerate(suite.benchmarks)))
