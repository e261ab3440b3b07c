"""lmms-eval model adapter: runs a MultiEncoderVLM behind lmms-eval's `lmms` interface.

Registered through the ``lmms_eval.models`` entry point, so ``lmms-eval --model scope
--model_args pretrained=DIR`` works as well as ``scopebench eval``. Requests are batched
(sorted by prompt length) and each batch is grouped by route inside the model. Every answer
is logged with its route and router probabilities to a JSON-lines trace (one per process),
which also lets an interrupted run resume without recomputing answered requests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from scopebench.models.fingerprint import model_fingerprint


class Request(NamedTuple):
    """A simple-model lmms-eval request's ``args``. ``target``: generation kwargs (generate_until) or the
    continuation, a string or a function of the document (loglikelihood)."""

    context: str
    target: Any
    doc_to_visual: Callable | None
    doc_id: int
    task: str
    split: str

    @property
    def gen_kwargs(self) -> dict | None:
        return self.target


def _cut(text: str, until: list[str]) -> str:
    """A generated answer up to its first stop string."""
    for stop in until:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_traces(folder: Path) -> list[dict]:
    """The well-formed records of a part's traces (``trace.rank*.jsonl``). A line that is cut, not UTF-8, or
    JSON of another shape is left out: its request is answered again."""
    out = []
    for path in sorted(Path(folder).glob("trace.rank*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if _well_formed(rec):
                out.append(rec)
    return out


def _well_formed(rec) -> bool:
    """A trace record as `ScopeLMM` writes it: keys and route as strings, an integer doc id, an answer."""
    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str)
                                            for k in ("key", "fingerprint", "task")):
        return False
    answer, probs, eranks = rec.get("answer"), rec.get("probs"), rec.get("eranks", {})
    tokens, dropped = rec.get("visual_tokens", 0), rec.get("images_dropped", 0)
    return (isinstance(rec.get("doc_id"), int) and not isinstance(rec["doc_id"], bool)
            and isinstance(rec.get("route"), str) and rec["route"].startswith("shared")
            and isinstance(rec.get("encoder", ""), str)
            and (isinstance(answer, str)
                 or (isinstance(answer, list) and len(answer) == 2 and number(answer[0])))
            and (probs is None or (isinstance(probs, dict) and all(map(number, probs.values()))))
            and isinstance(eranks, dict) and all(map(number, eranks.values()))
            and isinstance(rec.get("visual_grid", ""), str)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (tokens, dropped)))


def images_to_tensor(visuals: list, size: int) -> torch.Tensor:
    """PIL images (None -> black) -> the shared square canvas (B, 3, size, size) in [0, 1]."""
    from scopebench.models.encoders import ImageBatch

    return ImageBatch(visuals, size).canvas()


def request_images(visuals: list, canvas: int, device="cpu", memo=None):
    """Each request's images (a PIL image, None, or a list of them; none -> one black image) as the model
    takes them: one ``ImageBatch`` when every request has one image, else one per request. Each encoder
    prepares its pixels from the originals; ``canvas``: the side of the shared square canvas; ``memo``: an
    ``ImageMemo`` keeping what is made from the images for other models."""
    from scopebench.models.encoders import ImageBatch

    per_request = [v if isinstance(v, list | tuple) else [v] for v in visuals]
    per_request = [list(v) or [None] for v in per_request]
    if all(len(v) == 1 for v in per_request):
        return ImageBatch([v[0] for v in per_request], canvas, device, memo=memo)
    return [ImageBatch(v, canvas, device, memo=memo) for v in per_request]


class DocImages:
    """Documents' decoded images kept for the other models of one run (each model's requests would fetch
    and decode them again: 1.7 s of the demo eval), with what is made from them without a model's weights
    (``memo``: their canvas and its resamples, 4 s), up to ``budget`` bytes in all; past it, what is not
    kept is made per request. Keys: (task, split, doc_id)."""

    def __init__(self, budget: int = 1 << 30) -> None:
        from scopebench.models.encoders import ImageMemo

        self.memo, self.images = ImageMemo(budget), {}

    def get(self, key: tuple, load: Callable[[], list]) -> list:
        if key in self.images:
            return self.images[key]
        images = load()
        size = sum(im.width * im.height * len(im.getbands()) for im in images if hasattr(im, "getbands"))
        if self.memo.spend(size):
            self.images[key] = images
            for im in images:
                self.memo.hold(im)
        return images


class ScopeLMM(lmms):
    """lmms-eval model ``scope``: ``pretrained`` is a checkpoint folder, demo model or preset."""

    def __init__(
        self, pretrained: str = "demo-scope", device: str = "cpu", batch_size: int | str = 16,
        policy: str | None = None, max_new_tokens: int | None = None, trace_dir: str | None = None,
        dtype: str = "auto", device_map: str | None = None, max_memory: str | None = None,
        offload_dir: str | None = None, **kwargs,
    ) -> None:
        super().__init__()
        from scopebench.models.placement import parse_max_memory
        from scopebench.models.registry import load_model, resolve, run_dtype

        world = int(os.environ.get("WORLD_SIZE", 1))
        if world > 1:  # launched by `accelerate launch` / torchrun: one shard of the requests per process
            self._rank, self._world_size = int(os.environ.get("RANK", 0)), world
            if device == "cuda":
                device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self._device = torch.device(device)
        self.ref = pretrained
        self.dtype = run_dtype(dtype, device, resolve(pretrained).folder)
        self.model = load_model(pretrained, device=device, policy=policy, dtype=self.dtype,
                                device_map=device_map, max_memory=parse_max_memory(max_memory),
                                offload_dir=Path(offload_dir) if offload_dir else None)
        if device_map:  # inputs start where the encoders and the LLM's embeddings are
            self._device = next(self.model.shared.parameters()).device
        self.batch_size = int(batch_size)
        self.max_new_tokens = max_new_tokens
        self.fingerprint = model_fingerprint(pretrained, policy, self.dtype)
        sizes = [self.model.shared.image_size, *(e.image_size for e in self.model.routed.values())]
        self.canvas = self.model.cfg.image_size or max(sizes)
        self.trace_path: Path | None = None
        self.done: dict[str, dict] = {}
        self.on_batch: Callable[[int, int], None] | None = None  # (done in batch, total requests)
        self.doc_images: DocImages | None = None  # set by the runner: shared by the run's models
        if trace_dir:
            self.begin_task(Path(trace_dir))
        self.model_seconds = 0.0  # time spent inside the model (the rest is lmms-eval and data handling)

    def __str__(self) -> str:  # lmms-eval keys its response cache on str(model)
        return self.fingerprint

    @property
    def device(self):
        return self._device

    # ----- trace --------------------------------------------------------------------------------
    @staticmethod
    def _key(task: str, doc_id: int, kind: str, text: str) -> str:
        return f"{task}|{doc_id}|{kind}|{hashlib.sha1(text.encode()).hexdigest()[:12]}"

    def begin_task(self, part: Path, on_batch: Callable[[int, int], None] | None = None) -> None:
        """Log this task's answers to ``part/trace.rank{rank}.jsonl`` and reuse the answers this model already
        logged in the part (by any process slot of an earlier, interrupted run)."""
        self.trace_path = Path(part) / f"trace.rank{self.rank}.jsonl"
        self.done = {r["key"]: r for r in read_traces(part) if r["fingerprint"] == self.fingerprint}
        self.on_batch = on_batch

    def _log(self, records: list[dict]) -> None:
        if self.trace_path is None:
            return
        self.trace_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.trace_path, "ab") as f:
            if f.tell() and _last_byte(self.trace_path) != b"\n":  # a line cut by a kill or a full disk
                f.write(b"\n")  # ends there, so it cannot swallow the next record
            # written through at once: a killed process loses none of it (no fsync: 0.7 ms a batch, and a
            # machine crash costs at most their recomputation, a cut line being dropped on resume)
            f.write("".join(json.dumps(rec) + "\n" for rec in records).encode())

    def _route_record(self, key, task, doc_id, route, probs_row, eranks: dict | None, j: int) -> dict:
        names = self.model.cfg.routed_names
        ranks = {e: float(r[j]) for e, r in (eranks or {}).items() if not math.isnan(float(r[j]))}
        return {
            "key": key, "fingerprint": self.fingerprint, "task": task, "doc_id": int(doc_id),
            "route": "+".join(("shared", *route)),
            "encoder": route[0] if probs_row is not None and route else "",
            "probs": None if probs_row is None
                     else dict(zip(names, [float(p) for p in probs_row], strict=True)),
            "eranks": ranks,
        }

    # ----- lmms-eval API --------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        def compute(images: torch.Tensor, batch: list[Request]):
            kwargs = batch[0].gen_kwargs or {}  # one task per call: its generation settings
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else until
            max_new = self.max_new_tokens or kwargs.get("max_new_tokens") or self.model.cfg.max_new_tokens
            gen = self.model.generate(images, [r.context for r in batch], max_new_tokens=int(max_new))
            return [_cut(text, until) for text in gen.texts], gen.routes, gen.probs, gen.eranks

        return self._answer(requests, "gen", lambda r: r.context, compute)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        def compute(images: torch.Tensor, batch: list[Request]):
            scored, routes, probs, eranks = self.model.loglikelihood(
                images, [r.context for r in batch], [self._continuation(r) for r in batch])
            return [list(s) for s in scored], routes, probs, eranks

        answers = self._answer(requests, "ll", lambda r: r.context + "\x00" + self._continuation(r), compute)
        return [tuple(a) for a in answers]

    def _answer(self, requests: list[Instance], kind: str, key_text: Callable[[Request], str],
                compute) -> list:
        """The one request loop: batches sorted by prompt length; answers already in the trace are reused,
        the rest computed by ``compute(images, requests) -> (answers, routes, probs, eranks)`` and logged
        with their routes."""
        reqs = [Request(*r.args) for r in requests]
        results: list = [None] * len(reqs)
        order = sorted(range(len(reqs)), key=lambda i: len(reqs[i].context))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            keys = {i: self._key(reqs[i].task, reqs[i].doc_id, kind, key_text(reqs[i])) for i in idx}
            todo = [i for i in idx if keys[i] not in self.done]
            for i in set(idx) - set(todo):
                results[i] = self.done[keys[i]]["answer"]
            if todo:
                batch = [reqs[i] for i in todo]
                visuals = [self._visuals(r) for r in batch]
                images = request_images([v for v, _ in visuals], self.canvas, self._device,
                                        self.doc_images.memo if self.doc_images else None)
                begin = time.perf_counter()
                answers, routes, probs, eranks = compute(images, batch)
                self.model_seconds += time.perf_counter() - begin
                logged = []
                for j, i in enumerate(todo):
                    results[i] = answers[j]
                    rec = self._route_record(keys[i], reqs[i].task, reqs[i].doc_id, routes[j],
                                             None if probs is None else probs[j], eranks, j)
                    own = images[j]  # this request's own images
                    tokens = self.model.visual_tokens(own, routes[j])
                    grid = self.model.visual_grid(own)  # None at one fixed size: not logged
                    logged.append({**rec, "visual_tokens": tokens, "images_dropped": visuals[j][1],
                                   **({} if grid is None else {"visual_grid": grid}), "answer": answers[j]})
                self._log(logged)
            if self.on_batch:
                self.on_batch(len(idx), len(reqs))
        return results

    def _doc(self, r: Request):
        return self.task_dict[r.task][r.split][r.doc_id]

    def _visuals(self, r: Request) -> tuple[list, int]:
        """A request's images, up to the model's ``max_images``, and how many above it were dropped."""
        if not r.doc_to_visual:
            return [], 0

        def load() -> list:
            return list(r.doc_to_visual(self._doc(r)) or [])

        visuals = self.doc_images.get((r.task, r.split, r.doc_id), load) if self.doc_images else load()
        keep = self.model.cfg.max_images
        return visuals[:keep], max(0, len(visuals) - keep)

    def _continuation(self, r: Request) -> str:
        """A log-likelihood request's continuation: a string, or a function of the document."""
        return r.target if isinstance(r.target, str) else r.target(self._doc(r))

    def clean(self) -> None:
        """lmms-eval calls this after each evaluation; the model stays loaded for the next task."""
        import gc

        gc.collect()

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("scope models answer single-round requests only")
