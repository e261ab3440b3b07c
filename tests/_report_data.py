"""Synthetic but realistic run directories for the analysis and report tests.

Six models on the cambrian16 suite: demo-baseline-0 (shared), demo-baseline-1-<enc> for three
routed encoders, demo-baseline-all (shared + all three) and demo-scope (a router picking one
encoder per sample). Baseline-1 sample scores are drawn from per-category encoder strengths;
SCOPE mostly picks the best encoder of a category and then scores what that Baseline-1 scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scopebench.run_dir import RunDir
from scopebench.suites import load_suite

ENCODERS = ["convnext", "vit_hr", "siglip"]
# probability of a correct answer per category for shared+<enc>
STRENGTH = {
    "convnext": {"General": 0.62, "Knowledge": 0.50, "OCR & Chart": 0.40, "Vision-Centric": 0.66},
    "vit_hr": {"General": 0.58, "Knowledge": 0.52, "OCR & Chart": 0.70, "Vision-Centric": 0.52},
    "siglip": {"General": 0.66, "Knowledge": 0.58, "OCR & Chart": 0.50, "Vision-Centric": 0.55},
}
GMAC = 1e9
ENC_MACS = {"shared": 60 * GMAC, "convnext": 30 * GMAC, "vit_hr": 90 * GMAC, "siglip": 45 * GMAC}
LLM_MACS_PER_TOKEN = 1.5 * GMAC
TOKENS = {"shared": 256, "convnext": 144, "vit_hr": 576, "siglip": 196}
PARAMS = {"shared": 0.67e9, "convnext": 0.2e9, "vit_hr": 0.3e9, "siglip": 0.4e9, "llm": 7.6e9,
          "router": 0.01e9}


def path_name(encs: list[str]) -> str:
    return "+".join(["shared", *encs])


def path_macs(encs: list[str]) -> float:
    """Total MACs of a path: encoders + LLM prefill over all visual tokens."""
    parts = ["shared", *encs]
    return sum(ENC_MACS[p] for p in parts) + LLM_MACS_PER_TOKEN * sum(TOKENS[p] for p in parts)


def _cost_rows(model: str, paths: list[list[str]], router: bool) -> list[dict]:
    total_params = PARAMS["shared"] + PARAMS["llm"] + sum(PARAMS[e] for e in {e for p in paths for e in p})
    total_params += PARAMS["router"] if router else 0
    rows = []
    for encs in paths:
        name = path_name(encs)
        active = (PARAMS["shared"] + PARAMS["llm"] + sum(PARAMS[e] for e in encs)
                  + (PARAMS["router"] if router else 0))
        tokens = sum(TOKENS[p] for p in ["shared", *encs])
        for comp in ["shared", *encs]:
            rows.append({"model": model, "kind": "path", "path": name, "component": comp,
                         "macs": ENC_MACS[comp],
                         "params": PARAMS[comp], "active_params": PARAMS[comp]})
        macs = path_macs(encs)
        rows.append({"model": model, "kind": "path", "path": name, "component": "total", "macs": macs,
                     "visual_tokens": tokens, "params": total_params, "active_params": active,
                     "device": "cpu", "counter": "fvcore"})
        rows.append({"model": model, "kind": "latency", "path": name, "component": "total",
                     "latency_median_ms": macs / GMAC * 0.05, "latency_iqr_ms": macs / GMAC * 0.004,
                     "batch_size": 1, "device": "cuda:NVIDIA H100"})
    for r in rows:
        r["flops"] = 2 * r["macs"] if "macs" in r else np.nan
    return rows


def write_manifest(run_dir: Path, manifest: dict) -> None:
    """A run directory's whole manifest, as a test crafts it."""
    (Path(run_dir) / "manifest.json").write_text(json.dumps(manifest))


def make_run(run_dir: Path, n_docs: int = 40, seed: int = 0, costs: bool = True, suite: str = "cambrian16",
             manifest_suite: bool = True) -> Path:
    """Write scores, routes, costs and manifest for the six demo models into ``run_dir``."""
    rng = np.random.default_rng(seed)
    benches = load_suite(suite).benchmarks
    correct = {e: {} for e in ENCODERS}  # enc -> benchmark -> 0/100 per doc
    for b in benches:
        base = rng.random(n_docs)
        for e in ENCODERS:
            correct[e][b.name] = 100.0 * ((base + rng.random(n_docs)) / 2 < STRENGTH[e][b.category])
    models = {"demo-baseline-0": [[]], **{f"demo-baseline-1-{e}": [[e]] for e in ENCODERS},
              "demo-baseline-all": [ENCODERS], "demo-scope": [[e] for e in ENCODERS]}
    routes, cost_rows = [], []
    for model, paths in models.items():
        router = model == "demo-scope"
        cost_rows += _cost_rows(model, paths, router)
        for b in benches:
            best = max(ENCODERS, key=lambda e, c=b.category: STRENGTH[e][c])
            for d in range(n_docs):
                row = {"model": model, "benchmark": b.name, "task": b.task, "doc_id": d, "encoder": ""}
                if router:
                    logits = np.array([2.5 if e == best else 0.0 for e in ENCODERS]) + rng.normal(0, 1.0, 3)
                    probs = np.exp(logits) / np.exp(logits).sum()
                    pick = ENCODERS[int(np.argmax(probs))]
                    row |= {"route": path_name([pick]), "encoder": pick,
                            "sample_score": correct[pick][b.name][d]}
                    row |= {f"prob:{e}": p for e, p in zip(ENCODERS, probs, strict=True)}
                elif paths == [[]]:
                    row |= {"route": "shared", "sample_score": 100.0 * (rng.random() < 0.45)}
                elif len(paths[0]) == 1:
                    e = paths[0][0]
                    row |= {"route": path_name([e]), "sample_score": correct[e][b.name][d]}
                else:
                    vals = [correct[e][b.name][d] for e in ENCODERS]
                    row |= {"route": path_name(ENCODERS),
                            "sample_score": max(vals) if rng.random() < 0.6 else vals[0]}
                routes.append(row)
    routes = pd.DataFrame(routes)
    scores = routes.groupby(["model", "benchmark", "task"], sort=False)["sample_score"].agg(
        ["mean", "size", "sem"])
    scores = scores.reset_index().rename(columns={"mean": "score", "size": "n", "sem": "stderr"})
    cat = {b.name: (b.category, b.metric, b.scale) for b in benches}
    scores["category"] = scores["benchmark"].map(lambda x: cat[x][0])
    scores["metric"] = scores["benchmark"].map(lambda x: cat[x][1])
    scores["raw_score"] = scores.apply(lambda r: r["score"] / cat[r["benchmark"]][2], axis=1)
    scores["suite"] = suite
    run_dir.mkdir(parents=True, exist_ok=True)
    RunDir(run_dir).write("scores", scores)
    RunDir(run_dir).write("routes", routes)
    if costs:
        RunDir(run_dir).write("costs", pd.DataFrame(cost_rows))
    write_manifest(run_dir, {"suite": suite} if manifest_suite else {})
    return run_dir


if __name__ == "__main__":  # build one for a look: python tests/_report_data.py /tmp/run
    import sys

    print(json.dumps(str(make_run(Path(sys.argv[1]), n_docs=int(sys.argv[2]) if len(sys.argv) > 2 else 40))))
