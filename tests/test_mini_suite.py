"""The synthetic world and the offline cambrian16-mini suite, checked through lmms-eval's own loading and
scoring."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from scopebench.demo.build_suite import build_suite  # noqa: E402
from scopebench.demo.chance import evaluate_answers, guesser  # noqa: E402
from scopebench.demo.suite_data import check_mini_suite_files, mini_task_include_path, task_data_files  # noqa: E402
from scopebench.demo.world import (  # noqa: E402
    TASKS,
    TRAIN_SEED_START,
    WORD_PATTERN,
    doc_images,
    items,
    pixel_digest,
    suite_answers,
    suite_docs,
    task_prompt,
    training_examples,
    vocabulary_corpus,
)
from scopebench.errors import ScopebenchError  # noqa: E402
from scopebench.suites import load_suite  # noqa: E402

REAL_YAMLS = {  # mini task -> the lmms-eval 0.7.3 task YAML it mirrors
    "c16mini_mme": "mme/mme.yaml",
    "c16mini_mmbench": "mmbench/mmbench_en_dev_static.yaml",
    "c16mini_seedbench": "seedbench/seedbench.yaml",
    "c16mini_gqa": "gqa/gqa.yaml",
    "c16mini_scienceqa": "scienceqa/scienceqa_img.yaml",
    "c16mini_mmmu": "mmmu/mmmu_val.yaml",
    "c16mini_mathvista": "mathvista/mathvista_testmini_format.yaml",
    "c16mini_ai2d": "ai2d/ai2d.yaml",
    "c16mini_chartqa": "chartqa/chartqa.yaml",
    "c16mini_ocrbench": "ocrbench/ocrbench.yaml",
    "c16mini_textvqa": "textvqa/textvqa_val.yaml",
    "c16mini_docvqa": "docvqa/docvqa_val.yaml",
    "c16mini_mmvp": "mmvp/mmvp.yaml",
    "c16mini_realworldqa": "realworldqa/realworldqa.yaml",
    "c16mini_cv_bench_2d": "cv_bench/cv_bench_2d.yaml",
    "c16mini_cv_bench_3d": "cv_bench/cv_bench_3d.yaml",
}


@pytest.fixture(scope="module")
def task_dict(tmp_path_factory):
    """All 16 mini tasks built by lmms-eval's TaskManager (include path only), from an unrelated cwd."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    mp = pytest.MonkeyPatch()
    mp.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    mp.chdir(tmp_path_factory.mktemp("cwd"))
    manager = TaskManager(include_path=str(mini_task_include_path()), include_defaults=False)
    yield manager, get_task_dict(sorted(TASKS), manager)
    mp.undo()


def test_generator_is_deterministic_and_seeds_differ():
    for task in TASKS:
        (doc_a, ans_a), (doc_b, ans_b) = items(task, 7)[0], items(task, 7)[0]
        assert [pixel_digest(i) for i in doc_images(doc_a)] == [pixel_digest(i) for i in doc_images(doc_b)]
        assert task_prompt(task, doc_a) == task_prompt(task, doc_b) and ans_a == ans_b
        other = items(task, 8)[0][0]
        assert pixel_digest(doc_images(other)[0]) != pixel_digest(doc_images(doc_a)[0]), task
        for img in doc_images(doc_a):
            assert img.mode == "RGB" and img.size == (128, 128)


def test_training_seeds_never_meet_suite_seeds():
    with pytest.raises(ValueError, match="belong to the suite"):
        training_examples("c16mini_gqa", [TRAIN_SEED_START - 1])
    for task, path in task_data_files(mini_task_include_path()).items():
        table = pq.read_table(path)
        suite = set()
        for name in table.column_names:
            for value in table.column(name).to_pylist():
                cells = value if isinstance(value, list) else [value]
                suite |= {pixel_digest(Image.open(io.BytesIO(c["bytes"])).convert("RGB"))
                          for c in cells if isinstance(c, dict) and "bytes" in c}
        train = training_examples(task, range(TRAIN_SEED_START, TRAIN_SEED_START + 20))
        assert suite and train and not suite & {pixel_digest(ex["image"]) for ex in train}, task


def test_tasks_load_through_lmms_eval_with_the_generators_docs(task_dict):
    manager, tasks = task_dict
    assert sorted(tasks) == sorted(TASKS)
    for name, task in tasks.items():
        docs = task.test_docs()
        generated = suite_docs(name)
        assert len(docs) == len(generated) >= 50, name
        for i, (doc, gen) in enumerate(zip(docs, generated, strict=True)):
            assert task.doc_to_text(doc) == task_prompt(name, gen), (name, i)
            visuals = task.doc_to_visual(doc)
            assert visuals and all(v.mode == "RGB" and v.size == (128, 128) for v in visuals)
            if i < 3:  # the shipped pixels are the generator's pixels
                assert np.array_equal(np.asarray(visuals[0]), np.asarray(doc_images(gen)[0].convert("RGB")))


def test_prompts_and_scoring_functions_are_lmms_evals_own():
    from lmms_eval.tasks.mathvista import utils as mathvista_utils
    from lmms_eval.utils import load_yaml_config

    real_root = Path(mathvista_utils.__file__).parents[1]

    def where(fn):
        return (Path(fn.__code__.co_filename).resolve(), fn.__name__) if callable(fn) else fn

    for mini, real_rel in REAL_YAMLS.items():
        ours = load_yaml_config(str(mini_task_include_path() / f"{mini}.yaml"), mode="full")
        real = load_yaml_config(str(real_root / real_rel), mode="full")
        for key in ("lmms_eval_specific_kwargs", "generation_kwargs", "output_type", "test_split",
                    "model_specific_target_kwargs"):
            assert ours.get(key) == real.get(key), (mini, key)
        keys = (["doc_to_visual", "doc_to_text", "doc_to_target"]
                + (["process_results"] if mini != "c16mini_mathvista" else []))
        for key in keys:
            assert where(ours.get(key)) == where(real.get(key)), (mini, key)
        real_aggs = {m["metric"]: m["aggregation"] for m in real["metric_list"]}
        for metric in ours["metric_list"]:
            assert (where(metric["aggregation"])
                    == where(real_aggs[metric["metric"]])), (mini, metric["metric"])


def _evaluate(tasks, answer_for, out: Path) -> dict:
    """lmms-eval's simple_evaluate of the 16 mini tasks with a model that answers ``answer_for(task,
    doc_id)``."""
    return evaluate_answers(tasks[0], lambda task, doc_id, prompt: answer_for(task, doc_id), out)["results"]


def _percent(results: dict, bench) -> float:
    key = next(k for k in results[bench.task] if k.split(",")[0] == bench.metric)
    value = results[bench.task][key]
    return 0.0 if value is None else bench.to_percent(value)  # MathVista's aggregation gives None for 0 right


def test_gold_answers_get_full_marks_and_wrong_answers_do_not(task_dict, tmp_path):
    suite = load_suite("cambrian16-mini")
    assert [b.task for b in suite.benchmarks] == list(TASKS)
    # as a word model decodes
    gold = {t: [" ".join(WORD_PATTERN.findall(a)) for a in suite_answers(t)] for t in TASKS}
    best = _evaluate(task_dict, lambda task, i: gold[task][i], tmp_path / "gold")
    assert {b.name: _percent(best, b) for b in suite.benchmarks} == {b.name: 100.0 for b in suite.benchmarks}
    worst = _evaluate(task_dict, lambda task, i: "zzz", tmp_path / "wrong")
    for b in suite.benchmarks:
        # MMMU's own parser guesses a random letter when it finds none; everything else scores nothing
        assert _percent(worst, b) <= (40.0 if b.task == "c16mini_mmmu" else 0.0), b.name


def test_mathvista_scoring_never_calls_the_judge(monkeypatch):
    from lmms_eval.tasks.mathvista import utils as mathvista_utils

    root = mini_task_include_path
    spec = importlib.util.spec_from_file_location("c16mini_utils", root() / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def no_judge(*args, **kwargs):
        raise AssertionError("the GPT extractor was called")

    monkeypatch.setattr(mathvista_utils.mathvista_evaluator, "get_chat_response", no_judge)
    doc, answer = items("c16mini_mathvista", 3)[0]
    assert module.mathvista_process_results(doc, [answer])["llm_as_judge_eval"]["true_false"]
    for reply in ("the answer is " + answer, "twelve", ""):
        assert not module.mathvista_process_results(doc, [reply])["llm_as_judge_eval"]["true_false"]


def test_answers_are_short_and_words_are_in_the_vocabulary():
    vocab = {w for text in vocabulary_corpus() for w in WORD_PATTERN.findall(text)}
    for task in TASKS:
        for ex in training_examples(task, range(TRAIN_SEED_START + 5000, TRAIN_SEED_START + 5040)):
            assert 1 <= len(ex["answer"].split()) <= 3, (task, ex["answer"])
            assert " ".join(WORD_PATTERN.findall(ex["answer"])) == ex["answer"]
            missing = set(WORD_PATTERN.findall(ex["prompt"] + " " + ex["answer"])) - vocab
            assert not missing, (task, missing)
            assert ex["image"].mode == "RGB" and ex["image"].size == (128, 128)


def test_build_is_byte_identical_and_the_folder_is_relocatable(tmp_path, task_dict):
    """A rebuilt folder is byte-identical, and it works as an include path wherever it lies (as in a
    wheel)."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    some = ["c16mini_mme", "c16mini_mmvp", "c16mini_seedbench"]
    assert build_suite(tmp_path / "a", tasks=some) == [], "the rebuild must match the shipped checksums"
    build_suite(tmp_path / "b", tasks=some)
    for task in some:
        rel = TASKS[task].data_file
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), task
    manager = TaskManager(include_path=str(tmp_path / "a"), include_defaults=False)
    assert (len(get_task_dict(["c16mini_mmvp"], manager)["c16mini_mmvp"].test_docs())
            == 2 * TASKS["c16mini_mmvp"].units)


def test_suite_folder_is_small_and_checked(tmp_path):
    shipped = mini_task_include_path()
    assert sum(p.stat().st_size for p in shipped.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts) < 5e6
    check_mini_suite_files()
    folder = tmp_path / "mini"
    shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("__pycache__"))
    victim = folder / TASKS["c16mini_docvqa"].data_file
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ScopebenchError, match=r"docvqa\.parquet.*corrupt.*scopebench demo suite"):
        check_mini_suite_files(folder)
    (folder / "data" / "SHA256SUMS").unlink()
    victim.write_bytes(bytes(data[:100]))
    with pytest.raises(ScopebenchError, match=r"docvqa\.parquet.*not readable Parquet"):
        check_mini_suite_files(folder)
    victim.unlink()
    with pytest.raises(ScopebenchError, match=r"docvqa\.parquet.*missing.*scopebench demo suite"):
        check_mini_suite_files(folder)
    (folder / "c16mini_gqa.yaml").unlink()
    with pytest.raises(ScopebenchError, match=r"c16mini_gqa\.yaml: task file of the mini suite is missing"):
        check_mini_suite_files(folder)


def test_suite_definitions_load():
    mini = load_suite("cambrian16-mini")
    assert mini.task_dir == mini_task_include_path()
    assert [b.category for b in mini.benchmarks].count("Knowledge") == 4 and len(mini.benchmarks) == 16
    ocr = load_suite("scope-ocr")
    assert [b.task for b in ocr.benchmarks] == ["docvqa_val", "infovqa_val", "textvqa_val", "chartqa",
                                                "vcr_wiki_en_hard"]
    assert load_suite("cambrian16").benchmark("MathVista").task == "mathvista_testmini_format"
    picked = mini.select(["c16mini_gqa", "GQA", "MME-P"])  # a benchmark named twice (task id, name) runs once
    assert [b.name for b in picked] == ["GQA", "MME-P"]


def test_random_guesser_guesses_among_what_the_question_offers():
    """The chance baseline: a random offered letter, Yes/No, else a random answer of the task's own list."""
    guess = guesser(0)
    lettered = ("What colour?\nA. red\nB. blue\nC. green\n"
                "Answer with the option's letter from the given choices directly.")
    assert {guess("c16mini_mmbench", 0, lettered) for _ in range(60)} == {"A", "B", "C"}
    cv = "How many cones? Select from the following choices.\n(A) 3\n(B) 5"
    assert {guess("c16mini_cv_bench_2d", 0, cv) for _ in range(30)} == {"A", "B"}
    assert ({guess("c16mini_mme", 0, "Is it red? Please answer yes or no.") for _ in range(30)}
            == {"Yes", "No"})
    prior = {" ".join(WORD_PATTERN.findall(a)) for a in suite_answers("c16mini_textvqa")}
    said = {guess("c16mini_textvqa", 0, "What is the name of the shop?") for _ in range(200)}
    assert said <= prior and len(said) > 10
    draws = [[g("c16mini_textvqa", 0, "?") for _ in range(20)] for g in (guesser(0), guesser(0), guesser(1))]
    assert draws[0] == draws[1] != draws[2]
