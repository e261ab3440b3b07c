"""`scopebench flops`: MACs and FLOPs (= 2 x MACs) of every routed path, per component.

Components of a path: ``shared_encoder``, ``router``, ``routed:<name>``, ``projector``,
``llm_prefill`` (visual + prompt tokens; LM head on the last position, which gives the first
generated token) and ``llm_decode``: the remaining ``generated_tokens - 1`` KV-cached steps at
contexts L, L+1, ... (L = prefill length). A path's total is the sum of its components. The cost
of one decode step at context L is reported beside it (``decode_per_token``), not in the total.
Each distinct computation is counted once and reused across paths. Routed policies also get the
all-encoders path (``reference``), even when the policy never takes it, to report savings.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from scopebench.errors import ScopebenchError
from scopebench.profiling.components import (
    DECODE,
    PREFILL,
    ROUTER,
    PathPlan,
    count_params,
    decode_part,
    layout_tokens,
    plan_encoder,
    plan_model,
    prefill_part,
    where,
)
from scopebench.profiling.counters import COUNTERS, TORCH, Count, count

UNIT = "macs: multiply-accumulates of matmul-class ops (linear, matmul, conv, attention); flops = 2 x macs"


class Tally:
    """Counts each distinct part once; collects the ops no counter counted and fallback notes."""

    def __init__(self, counter: str, label: str):
        self.counter, self.label = counter, label
        self.cache: dict[tuple, Count] = {}
        self.uncounted: Counter = Counter()
        self.notes: list[str] = []

    def __call__(self, key: tuple, make_part) -> Count:
        if key not in self.cache:
            part = make_part()
            result = count(part.module, part.inputs, self.counter, f"{part.component} of '{self.label}'")
            result.output = None
            self.uncounted.update(result.uncounted)
            if result.note:
                self.notes.append(result.note)
            self.cache[key] = result
        return self.cache[key]


def _entry(c: Count, params: int) -> dict:
    return {"macs": c.macs, "flops": c.flops, "params": params, "counter": c.counter}


def _decode(tally: Tally, llm, context: int, generated: int) -> tuple[Count, int]:
    """One step at ``context`` and the exact total of ``generated - 1`` steps (cost is linear in context)."""
    first = tally((DECODE, context), lambda: decode_part(llm, context, 1))
    steps = max(generated - 1, 0)
    total = steps * first.macs
    if steps >= 2:
        second = tally((DECODE, context + 1), lambda: decode_part(llm, context + 1, 1))
        total += (second.macs - first.macs) * steps * (steps - 1) // 2
    return first, total


def count_paths(plans: list[PathPlan], tally: Tally, llm=None, generated_tokens: int = 16,
                total_params: int | None = None) -> list[dict]:
    """Per-path results (see the module docstring), savings against the reference path when there is one."""
    paths = []
    for plan in plans:
        comps = {p.component: _entry(tally(p.key, lambda p=p: p), p.params) for p in plan.parts}
        entry = {"path": plan.name, "route": list(plan.route), "reference": plan.reference,
                 "visual_tokens": plan.visual_tokens, "llm_tokens": plan.llm_tokens, "components": comps}
        if llm is not None:
            step, total = _decode(tally, llm, plan.llm_tokens, generated_tokens)
            comps[DECODE] = {"macs": total, "flops": 2 * total, "params": count_params([llm]),
                             "counter": step.counter}
            entry["decode_per_token"] = {"macs": step.macs, "flops": step.flops, "context": plan.llm_tokens}
        macs = sum(c["macs"] for c in comps.values())
        active = count_params(plan.modules)
        entry.update(total={"macs": macs, "flops": 2 * macs}, active_params=active,
                     params=active if plan.reference or total_params is None else total_params)
        paths.append(entry)
    ref = next((p for p in paths if p["reference"]), None)
    for p in paths:
        p["saving_vs_all"] = None if ref is None else 1.0 - p["total"]["macs"] / ref["total"]["macs"]
    return paths


def count_sizes(model, sizes: list[tuple[str, str]], tally: Tally, prompt_tokens: int,
                generated_tokens: int) -> list[dict]:
    """Each distinct (route, visual_grid) of a run's samples (a native-resolution shared encoder) counted as
    the sample ran: per image the shared encoder at its grid, the routed encoders and the projector; the
    router on the first image; the LLM prefill over every image's tokens plus the prompt, then the decode.
    Also the reference (all-encoders) route at every grid set, for savings. One row per (route, grid)."""
    from scopebench.models.encoders import parse_grid_text

    plans: dict = {}  # grid -> {path name: PathPlan}

    def plan(grid) -> dict[str, PathPlan]:
        if grid not in plans:
            plans[grid] = {("reference" if p.reference else p.name): p
                           for p in plan_model(model, prompt_tokens, grid=grid)}
        return plans[grid]

    todo = dict.fromkeys(sizes)
    for _, text in sizes:
        if "reference" in plan(parse_grid_text(text)[0]):
            todo[("reference", text)] = None
    rows = []
    for route, text in todo:
        grids = parse_grid_text(text)
        if route not in plan(grids[0]):
            raise ScopebenchError(f"routes table: route '{route}' is not a path of '{tally.label}' "
                                  f"({', '.join(n for n in plan(grids[0]) if n != 'reference')}); "
                                  "count the model the run evaluated")
        per_image = [plan(g)[route] for g in grids]
        macs, visual = 0, 0
        for i, image in enumerate(per_image):
            visual += image.visual_tokens
            macs += sum(tally(p.key, lambda p=p: p).macs for p in image.parts
                        if p.component != PREFILL and (i == 0 or p.component != ROUTER))
        first = per_image[0]
        llm_tokens = visual + first.llm_tokens - first.visual_tokens
        macs += tally((PREFILL, llm_tokens), lambda n=llm_tokens: prefill_part(model.llm, n, 1)).macs
        macs += _decode(tally, model.llm, llm_tokens, generated_tokens)[1]
        rows.append({"route": first.name if route == "reference" else route, "visual_grid": text,
                     "reference": route == "reference", "visual_tokens": visual, "llm_tokens": llm_tokens,
                     "macs": macs, "flops": 2 * macs})
    return rows


def profile(target, prompt_tokens: int, generated_tokens: int, counter: str,
            sizes: list[tuple[str, str]] | None = None) -> dict:
    """Count every path of a loaded target, and each of ``sizes`` (``count_sizes``); the JSON-ready result
    of `scopebench flops`."""
    device = where(target.model)[0].type
    if device == "meta" and counter != TORCH:
        counter = TORCH
        if target.kind != "preset":  # the preset note says so already
            target.notes.append("meta device: counted with the torch counter (fvcore needs a real forward)")
    llm = None if target.encoder else target.model.llm
    total = None if target.encoder else count_params([target.model])
    tally = Tally(counter, target.label)
    try:
        plans = (plan_encoder(target.label, target.model) if target.encoder
                 else plan_model(target.model, prompt_tokens))
        limit = getattr(getattr(llm, "config", None), "max_position_embeddings", None)
        longest = max((p.llm_tokens for p in plans), default=0) + generated_tokens
        if limit and longest > limit:  # no limit for an encoder on its own (llm is None)
            raise ScopebenchError(f"--prompt-tokens {prompt_tokens}: the longest path needs {longest} "
                                  f"LLM positions, more than the LLM's max_position_embeddings ({limit}); "
                                  "lower --prompt-tokens")
        paths = count_paths(plans, tally, llm, generated_tokens, total)
        counted = count_sizes(target.model, sizes, tally, prompt_tokens, generated_tokens) if sizes else []
    except ScopebenchError:
        raise
    except Exception as err:  # an encoder that cannot run at this size, a broken config: one line
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ScopebenchError(f"cannot run '{target.label}': {type(err).__name__}: {first}; "
                              "check --image-size and the model config") from None
    extra = None if target.encoder else layout_tokens(target.model)
    if not target.encoder and extra is None:
        target.notes.append("no tokenizer: the prompt layout's own tokens (template, chat template) are not "
                            "counted, only --prompt-tokens")
    return {
        "model": target.label, "unit": UNIT, "device": device, "counter": counter,
        "prompt_tokens": None if target.encoder else prompt_tokens, "layout_tokens": extra,
        "generated_tokens": None if target.encoder else generated_tokens,
        "policy": None if target.encoder else str(target.model.policy),
        "paths": paths, "sizes": counted, "unsupported_ops": dict(tally.uncounted.most_common()),
        "notes": list(dict.fromkeys(target.notes + tally.notes)),
    }


def run_flops(*models: str, image_size: int | None = None, prompt_tokens: int = 64,
              generated_tokens: int = 16, meta: bool = False, counter: str = "fvcore",
              output: Path | None = None, json_out: bool = False) -> list[dict]:
    """`scopebench flops`: count each model in turn, print it (rich tables, or JSON: one object, a list
    for several models) and optionally write it to the run's costs table before the next one loads, so
    a bad model further on loses nothing already written."""
    if counter not in COUNTERS:
        raise ScopebenchError(f"--counter must be one of {', '.join(COUNTERS)}, got '{counter}'")
    if prompt_tokens < 1 or generated_tokens < 1:
        raise ScopebenchError("--prompt-tokens and --generated-tokens must be >= 1")
    results = [_count(model, image_size, prompt_tokens, generated_tokens, meta, counter, output, json_out)
               for model in models]
    if json_out:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return results


def _count(model: str, image_size: int | None, prompt_tokens: int, generated_tokens: int, meta: bool,
           counter: str, output: Path | None, json_out: bool) -> dict:
    """Count one model, add it to ``output``'s costs table, and print its tables unless ``json_out``."""
    from scopebench.profiling.costs import sample_sizes
    from scopebench.profiling.loading import load_for_flops

    target = load_for_flops(model, image_size, meta)
    sizes = None
    if not target.encoder:
        sizes, note = sample_sizes(None if output is None else Path(output), target.label, target.model)
        target.notes += [note] if note else []
    result = profile(target, prompt_tokens, generated_tokens, TORCH if meta else counter, sizes)
    expected = None
    if output is not None:
        from scopebench.profiling.costs import write_flops

        expected = write_flops(Path(output), result)
    if json_out:
        if expected is not None:
            result["expected"] = json.loads(expected.to_json(orient="records"))
    else:
        from scopebench.profiling.render import print_flops

        print_flops(result, expected, output)
    return result
