"""Task functions of the cambrian16-mini suite: lmms-eval 0.7.3's own, imported from the real tasks.

Every mini task reads the same document fields as its real task and uses the real doc_to_visual,
doc_to_text, process_results and aggregation functions. The only addition is a judge-free guard for
MathVista (see ``_import_judge_free`` and ``mathvista_process_results``). Regenerate the data with
``scopebench demo suite``.
"""

import importlib
import os

from lmms_eval.tasks.ai2d.utils import (
    MultiChoiceRegexFilter,
    ai2d_doc_to_target,
    ai2d_doc_to_text,
    ai2d_doc_to_visual,
)
from lmms_eval.tasks.chartqa.utils import chartqa_doc_to_text, chartqa_doc_to_visual, chartqa_process_results
from lmms_eval.tasks.cv_bench.utils import (
    cv_bench_aggregate_results,
    cv_bench_doc_to_text,
    cv_bench_doc_to_visual,
    cv_bench_process_results,
)
from lmms_eval.tasks.docvqa.utils import docvqa_doc_to_text, docvqa_doc_to_visual
from lmms_eval.tasks.gqa.utils import gqa_doc_to_text, gqa_doc_to_visual
from lmms_eval.tasks.mmbench.en_utils import (
    mmbench_aggregate_dev_results_static,
    mmbench_doc_to_text,
    mmbench_doc_to_visual,
    mmbench_process_results,
)
from lmms_eval.tasks.mme.utils import (
    mme_aggregate_results,
    mme_doc_to_text,
    mme_doc_to_visual,
    mme_process_results,
)
from lmms_eval.tasks.mmmu.utils import (
    mmmu_aggregate_results,
    mmmu_doc_to_text,
    mmmu_doc_to_visual,
    mmmu_process_results,
)
from lmms_eval.tasks.mmvp.utils import (
    mmvp_aggregate_pair_results,
    mmvp_aggregate_results,
    mmvp_doc_to_target,
    mmvp_doc_to_text,
    mmvp_doc_to_visual,
    mmvp_process_results,
)
from lmms_eval.tasks.ocrbench.utils import (
    ocrbench_aggregate_accuracy,
    ocrbench_doc_to_text,
    ocrbench_doc_to_visual,
    ocrbench_process_results,
)
from lmms_eval.tasks.realworldqa.utils import (
    realworldqa_doc_to_text,
    realworldqa_doc_to_visual,
    realworldqa_process_results,
)
from lmms_eval.tasks.scienceqa.utils import (
    sqa_doc_to_target,
    sqa_doc_to_text,
    sqa_doc_to_visual,
    sqa_process_results,
)
from lmms_eval.tasks.seedbench.utils import (
    seed_aggregation_result,
    seed_doc_to_text,
    seed_doc_to_visual,
    seed_process_result,
)
from lmms_eval.tasks.textvqa.utils import textvqa_doc_to_text, textvqa_doc_to_visual, textvqa_process_results


def _import_judge_free(module: str):
    """Import a real task module that builds its GPT judge client at import time (MathVista does, and the
    openai client refuses to exist without OPENAI_API_KEY): build lmms-eval's offline "dummy" judge
    instead. These tasks never call it (see ``mathvista_process_results``)."""
    saved = os.environ.get("API_TYPE")
    os.environ["API_TYPE"] = "dummy"
    try:
        return importlib.import_module(module)
    finally:
        if saved is None:
            del os.environ["API_TYPE"]
        else:
            os.environ["API_TYPE"] = saved


_mathvista = _import_judge_free("lmms_eval.tasks.mathvista.utils")
mathvista_aggregate_results = _mathvista.mathvista_aggregate_results
mathvista_doc_to_text = _mathvista.mathvista_doc_to_text
mathvista_doc_to_visual = _mathvista.mathvista_doc_to_visual

__all__ = [
    "MultiChoiceRegexFilter", "ai2d_doc_to_target", "ai2d_doc_to_text", "ai2d_doc_to_visual",
    "chartqa_doc_to_text", "chartqa_doc_to_visual", "chartqa_process_results",
    "cv_bench_aggregate_results", "cv_bench_doc_to_text", "cv_bench_doc_to_visual",
    "cv_bench_process_results",
    "docvqa_doc_to_text", "docvqa_doc_to_visual", "gqa_doc_to_text", "gqa_doc_to_visual",
    "mathvista_aggregate_results", "mathvista_doc_to_text", "mathvista_doc_to_visual",
    "mathvista_process_results",
    "mmbench_aggregate_dev_results_static", "mmbench_doc_to_text", "mmbench_doc_to_visual",
    "mmbench_process_results",
    "mme_aggregate_results", "mme_doc_to_text", "mme_doc_to_visual", "mme_process_results",
    "mmmu_aggregate_results", "mmmu_doc_to_text", "mmmu_doc_to_visual", "mmmu_process_results",
    "mmvp_aggregate_pair_results", "mmvp_aggregate_results", "mmvp_doc_to_target", "mmvp_doc_to_text",
    "mmvp_doc_to_visual", "mmvp_process_results",
    "ocrbench_aggregate_accuracy", "ocrbench_doc_to_text", "ocrbench_doc_to_visual",
    "ocrbench_process_results",
    "realworldqa_doc_to_text", "realworldqa_doc_to_visual", "realworldqa_process_results",
    "sqa_doc_to_target", "sqa_doc_to_text", "sqa_doc_to_visual", "sqa_process_results",
    "seed_aggregation_result", "seed_doc_to_text", "seed_doc_to_visual", "seed_process_result",
    "textvqa_doc_to_text", "textvqa_doc_to_visual", "textvqa_process_results",
]


def _rule_extractable(reply: str, doc: dict) -> bool:
    """True when MathVista's ``extract_answer`` resolves ``reply`` by its own rules, without the GPT call:
    an option's text (multi-choice), or a reply that parses as the answer type (integer / float)."""
    if doc["question_type"] == "multi_choice" and reply in (doc["choices"] or []):
        return True
    cast = {"integer": int, "float": float}.get(doc["answer_type"])
    if cast is None:
        return False
    try:
        cast(reply)
    except ValueError:
        return False
    return True


def mathvista_process_results(doc, results):
    """MathVista's own process_results, judge-free.

    The real one sends any reply its rules cannot read to a GPT answer extractor (network + API key).
    Here such a reply is scored as an empty reply (wrong) instead; replies the rules do read (e.g. a bare
    integer) are scored exactly as lmms-eval scores them.
    """
    reply = results[0].strip()
    return _mathvista.mathvista_process_results(doc, [reply if _rule_extractable(reply, doc) else ""])
