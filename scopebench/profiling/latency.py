"""`scopebench latency`: measured time per routed path and per component.

Parts are those `flops` counts (``components.py``), timed one by one; a path's ``total`` is its
first-token parts run back to back (encoders, router, projector, prefill), timed as one.
``llm_decode_per_token`` is one KV-cached step at context = prefill length (the cache is cropped
back after each step). CUDA: CUDA events around each call, synchronised, median and IQR over the
repeats, optional CUDA graphs per encoder. CPU: ``torch.utils.benchmark.Timer`` at a fixed thread
count. Achieved TFLOP/s uses the torch counter's FLOPs of the same calls; on a known GPU also the
fraction of its dense peak.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch

from scopebench.errors import ScopebenchError
from scopebench.models.generation import cache_arg
from scopebench.models.registry import check_device
from scopebench.models.weights import DTYPES
from scopebench.profiling.components import (
    DECODE,
    DECODE_PER_TOKEN,
    PathPlan,
    decode_part,
    example,
    index_device,
    plan_encoder,
    plan_model,
)
from scopebench.profiling.counters import TORCH
from scopebench.profiling.flops import Tally

NOISY = 0.10  # warn when IQR / median exceeds this
# Dense (no sparsity) peak TFLOP/s from NVIDIA datasheets; float32 = non-tensor-core FP32.
# Matched in order against torch.cuda.get_device_name(), case-insensitively.
PEAK_TFLOPS = [
    ("h100 pcie", "H100 PCIe", {"bfloat16": 756.0, "float16": 756.0, "float32": 51.2}),
    ("h100 nvl", "H100 NVL", {"bfloat16": 835.5, "float16": 835.5, "float32": 60.0}),
    ("h100", "H100 SXM", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("h200 nvl", "H200 NVL", {"bfloat16": 835.5, "float16": 835.5, "float32": 60.0}),
    ("h200", "H200 SXM", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("a100", "A100", {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    ("l40s", "L40S", {"bfloat16": 362.1, "float16": 362.1, "float32": 91.6}),
]


def peak_tflops(device_name: str, dtype: str) -> tuple[str, float] | None:
    """(GPU, dense peak TFLOP/s for ``dtype``) for a known GPU name, else None."""
    name = device_name.lower()
    for pattern, label, peaks in PEAK_TFLOPS:
        if pattern in name:
            return label, peaks[dtype]
    return None


def _check_options(device: str, dtype: str, batch_size: int, warmup: int, repeats: int, cuda_graphs: bool):
    if dtype not in DTYPES:
        raise ScopebenchError(f"--dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ScopebenchError("--batch-size and --repeats must be >= 1 and --warmup >= 0")
    check_device(device)
    if cuda_graphs and not device.startswith("cuda"):
        raise ScopebenchError("--cuda-graphs needs --device cuda")


def time_call(fn, device: torch.device, warmup: int, repeats: int, threads: int) -> tuple[float, float]:
    """(median, IQR) in seconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        import numpy as np

        torch.cuda.synchronize(device)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1e3)
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        return float(median), float(q3 - q1)
    # importing torch.utils.benchmark loads cpp_extension, which warns on CPU-only machines with a CUDA build
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Measurement, Timer

    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = Measurement.merge([timer.timeit(1) for _ in range(repeats)])[0]
    return float(m.median), float(m.iqr)


def _graphed(fn):
    """Capture ``fn`` in a CUDA graph (after warming it on a side stream); returns the replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _decode_call(llm, context: int, batch: int):
    """One real KV-cached decode step after a prefill of ``context`` tokens; the cache is cropped back."""
    p = next(llm.parameters())
    dim = llm.get_input_embeddings().embedding_dim
    pos = torch.arange(context, device=index_device(p.device)).expand(batch, context)
    key = cache_arg(llm)
    cache = getattr(llm(inputs_embeds=example((batch, context, dim), p.device, p.dtype), position_ids=pos,
                        use_cache=True, logits_to_keep=1), key)
    step = example((batch, 1, dim), p.device, p.dtype)
    step_pos = torch.full((batch, 1), context, device=p.device)

    def call():
        llm(inputs_embeds=step, position_ids=step_pos, use_cache=True, logits_to_keep=1, **{key: cache})
        cache.crop(-1)

    return call


class _Timer:
    """Times each distinct part once (optionally CUDA-graphed encoders) and records noisy timings."""

    def __init__(self, device, warmup, repeats, threads, cuda_graphs, peak):
        self.device, self.warmup, self.repeats, self.threads = device, warmup, repeats, threads
        self.cuda_graphs, self.peak = cuda_graphs, peak
        self.calls: dict[tuple, object] = {}
        self.cache: dict[tuple, dict] = {}
        self.warnings: list[str] = []

    def call(self, part):
        if part.key not in self.calls:
            fn = functools.partial(part.module, *part.inputs)
            if self.cuda_graphs and part.component.startswith(("shared_encoder", "routed:", "encoder")):
                try:
                    fn = _graphed(fn)
                except Exception as err:  # e.g. host syncs inside the encoder: time it eagerly
                    self.warnings.append(f"{part.component}: CUDA graph capture failed "
                                         f"({type(err).__name__}); "
                                         "timed without a graph")
            self.calls[part.key] = fn
        return self.calls[part.key]

    def measure(self, key: tuple, fn, flops: int, label: str) -> dict:
        if key not in self.cache:
            median, iqr = time_call(fn, self.device, self.warmup, self.repeats, self.threads)
            tflops = flops / median / 1e12 if median > 0 else float("nan")
            self.cache[key] = {"median_ms": 1e3 * median, "iqr_ms": 1e3 * iqr, "macs": flops // 2,
                               "flops": flops,
                               "tflops": tflops, "peak_fraction": tflops / self.peak if self.peak else None}
            if median > 0 and iqr / median > NOISY:
                self.warnings.append(f"{label}: IQR is {100 * iqr / median:.0f}% of the median; "
                                     "the timing is noisy "
                                     "(use more --repeats on an idle machine)")
        return self.cache[key]


def measure_paths(plans: list[PathPlan], llm, timer: _Timer, tally: Tally, batch: int) -> list[dict]:
    """Per path: each component's timing and the first-token total."""
    paths = []
    for plan in plans:
        comps, calls, total_flops = {}, [], 0
        for part in plan.parts:
            flops = tally(part.key, lambda part=part: part).flops
            fn = timer.call(part)
            comps[part.component] = timer.measure(part.key, fn, flops, f"{plan.name} {part.component}")
            calls.append(fn)
            total_flops += flops
        total = timer.measure(("total", plan.name), lambda calls=calls: [f() for f in calls], total_flops,
                              f"{plan.name} total")
        if llm is not None:
            key = (DECODE, plan.llm_tokens)
            flops = tally(key, lambda n=plan.llm_tokens: decode_part(llm, n, batch)).flops
            if key not in timer.calls:
                timer.calls[key] = _decode_call(llm, plan.llm_tokens, batch)
            comps[DECODE_PER_TOKEN] = timer.measure(key, timer.calls[key], flops, f"{plan.name} decode")
        paths.append({"path": plan.name, "reference": plan.reference, "visual_tokens": plan.visual_tokens,
                      "llm_tokens": plan.llm_tokens, "components": comps, "total": total})
    return paths


def run_latency(model: str, batch_size: int = 1, warmup: int = 5, repeats: int = 30, device: str = "cpu",
                dtype: str = "float32", prompt_tokens: int = 64, cuda_graphs: bool = False,
                output: Path | None = None, json_out: bool = False) -> dict:
    """`scopebench latency`: time every path's components; print a table or JSON; write latency rows."""
    from scopebench.profiling.loading import load_for_latency

    _check_options(device, dtype, batch_size, warmup, repeats, cuda_graphs)
    if prompt_tokens < 1:
        raise ScopebenchError("--prompt-tokens must be >= 1")
    dev = torch.device(device)
    target = load_for_latency(model, device, DTYPES[dtype])
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    peak = peak_tflops(gpu, dtype) if gpu else None
    threads = torch.get_num_threads()
    timer = _Timer(dev, warmup, repeats, threads, cuda_graphs, peak[1] if peak else None)
    tally = Tally(TORCH, target.label)
    llm = None if target.encoder else target.model.llm
    try:
        with torch.inference_mode():
            plans = (plan_encoder(target.label, target.model, batch_size) if target.encoder
                     else plan_model(target.model, prompt_tokens, batch_size))
            plans = [p for p in plans if not p.reference]
            paths = measure_paths(plans, llm, timer, tally, batch_size)
    except torch.OutOfMemoryError:
        raise ScopebenchError(f"out of memory on {device} timing '{model}' at batch size {batch_size}; "
                              "use a smaller --batch-size") from None
    except ScopebenchError:
        raise
    except Exception as err:  # a model that cannot run on this device / dtype: one line
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ScopebenchError(f"cannot time '{model}' on {device} in {dtype}: "
                              f"{type(err).__name__}: {first}") from None
    result = {
        "model": target.label, "device": f"cuda:{gpu}" if gpu else "cpu", "dtype": dtype,
        "batch_size": batch_size,
        "warmup": warmup, "repeats": repeats, "threads": None if gpu else threads, "cuda_graphs": cuda_graphs,
        "gpu": peak[0] if peak else gpu, "peak_tflops": peak[1] if peak else None,
        "prompt_tokens": None if target.encoder else prompt_tokens, "paths": paths,
        "warnings": timer.warnings,
    }
    if output is not None:
        from scopebench.profiling.costs import write_latency

        write_latency(Path(output), result)
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        from scopebench.profiling.render import print_latency

        print_latency(result)
    if timer.warnings:
        from rich.console import Console

        err = Console(stderr=True)
        for w in timer.warnings:
            err.print(f"[yellow]warning:[/] {w}", highlight=False)
    return result
