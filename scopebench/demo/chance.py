"""Chance levels of ``cambrian16-mini``: a random guesser, scored by the mini tasks' own lmms-eval code.

The guesser answers a random option letter where the prompt lists lettered options, Yes or No where
it asks for yes or no, and otherwise a random answer from the task's own answer list (the answer
prior: what a model that ignores the question and the image would say at best by luck). One draw
is one full lmms-eval run of the 16 tasks; many draws give each benchmark's chance distribution.
"""

from __future__ import annotations

import contextlib
import io
import random
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pandas as pd

from scopebench.demo.world import OPTION, TASKS, WORD_PATTERN, suite_answers

Answerer = Callable[[str, int, str], str]  # (task, doc_id, prompt) -> answer


def evaluate_answers(manager, answer_for: Answerer, out: Path, tasks: list[str] | None = None) -> dict:
    """lmms-eval's ``simple_evaluate`` of the mini tasks with a model that answers ``answer_for(task, doc_id,
    prompt)``; returns lmms-eval's results dict."""
    from lmms_eval.api.model import lmms
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks.ocrbench import utils as ocrbench_utils

    class FixedAnswers(lmms):
        def generate_until(self, requests):
            return [answer_for(r.args[4], r.args[3], r.args[0]) for r in requests]

        def loglikelihood(self, requests):
            raise NotImplementedError

        def generate_until_multi_round(self, requests):
            raise NotImplementedError

    ocrbench_utils.OCRBench_score.update(dict.fromkeys(ocrbench_utils.OCRBench_score, 0))  # it accumulates
    with contextlib.redirect_stdout(io.StringIO()):  # some aggregations print their sub-scores
        return simple_evaluate(model=FixedAnswers(), tasks=sorted(tasks or TASKS), task_manager=manager,
                               log_samples=False, bootstrap_iters=0,
                               cli_args=types.SimpleNamespace(output_path=str(out), process_with_media=False))


def guesser(seed: int) -> Answerer:
    """A random guesser (see the module docstring), deterministic for ``seed``."""
    rng = random.Random(seed)

    def answer(task: str, doc_id: int, prompt: str) -> str:
        letters = [m.group(2) for line in prompt.split("\n") if (m := OPTION.match(line))]
        if len(letters) >= 2:
            return rng.choice(letters)
        if "yes or no" in prompt.lower():
            return rng.choice(("Yes", "No"))
        return rng.choice(_answer_list(task))

    return answer


@cache
def _answer_list(task: str) -> list[str]:
    """The task's full-marks answers, as a word-level model writes them."""
    return [" ".join(WORD_PATTERN.findall(a)) for a in suite_answers(task)]


def chance_scores(draws: int, out: Path, seed: int = 0) -> pd.DataFrame:
    """One row per (draw, benchmark): the random guesser's score (0-100) on cambrian16-mini."""
    from scopebench.evaluation.datasets import task_manager
    from scopebench.evaluation.runner import collect
    from scopebench.suites import load_suite

    suite = load_suite("cambrian16-mini")
    manager = task_manager(suite, [b.task for b in suite.benchmarks])
    rows = []
    for draw in range(draws):
        results = evaluate_answers(manager, guesser(seed + draw), out / f"draw{draw}")
        for bench in suite.benchmarks:
            score, _ = collect(results, bench, bench.task, "chance", suite, [])
            rows.append({"draw": draw, "benchmark": bench.name, "score": score["score"]})
    return pd.DataFrame(rows)
