"""The text side of ``MultiEncoderVLM``: laying out prompts, greedy generation and log-likelihood scoring.

``TextMixin`` is a base of the model class; it reads the model's ``cfg``, ``tokenizer``, ``llm``,
``text_embeddings``, ``route_and_encode`` (routing and encoding, grouped by route), ``slot_tokens`` (each
sample's visual tokens per image slot) and ``forward``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from scopebench.config import Route
from scopebench.errors import ScopebenchError
from scopebench.models.tokenizer import Layout, layouts


@dataclass
class Generation:
    texts: list[str]
    routes: list[Route]
    probs: torch.Tensor | None
    eranks: dict[str, torch.Tensor] | None = None  # encoder -> (B,) effective rank, NaN = not run


class TextMixin:
    """Prompts in, answers (or scores) out, for a model that routes and encodes images itself."""

    def _tok(self):
        if self.tokenizer is None:
            raise ScopebenchError(f"model '{self.cfg.name}' has no tokenizer: "
                                  "a checkpoint folder needs its tokenizer.json "
                                  "(re-save it with its tokenizer); a preset without weights cannot generate")
        return self.tokenizer

    def encode_prompts(self, prompts: list[str], counts: list[int] | None = None,
                       device=None) -> tuple[torch.Tensor, torch.Tensor, list[Layout]]:
        """Raw prompts laid out (template, chat template, image placeholders; ``counts``: images per prompt,
        default 1) and tokenised: right-padded token ids, their mask, and each prompt's ``Layout``."""
        tok = self._tok()
        laid = layouts(self.cfg, tok, prompts, counts or [1] * len(prompts))
        ids, mask = _pad([lay.ids for lay in laid], tok.pad_token_id or 0, device)
        return ids, mask, laid

    @torch.no_grad()
    def generate(self, images, prompts: list[str], max_new_tokens: int | None = None) -> Generation:
        """Greedy answers for raw prompts (the layout is applied here), batched by route. ``images``: one
        tensor (B, 3, H, W), or per prompt a tensor (n, 3, H, W) of its n images."""
        first, extra = split_images(images)
        if len(prompts) != first.shape[0]:
            raise ScopebenchError(f"batch mismatch: {first.shape[0]} images but {len(prompts)} prompts")
        tok = self._tok()
        max_new = max_new_tokens or self.cfg.max_new_tokens
        ids, mask, laid = self.encode_prompts(prompts, image_counts(extra), first.device)
        text = self.text_embeddings(ids)
        routes, probs, eranks, groups = self.route_and_encode(first, text, mask, ranks=True)
        out: list[str] = [""] * len(prompts)
        for route, idx, ix, vis in groups:
            rows = self.slot_tokens(route, idx, vis, extra, laid)
            slots = [laid[i].slots for i in idx]
            tokens = self._greedy(rows, text[ix], mask[ix], slots, max_new, tok.eos_token_id)
            for j, seq in zip(idx, tokens, strict=True):
                out[j] = tok.decode(seq, skip_special_tokens=True).strip()
        return Generation(texts=out, routes=routes, probs=probs, eranks=eranks)

    def _greedy(self, vis, text, mask, slots, max_new: int, eos: int | None) -> list[list[int]]:
        """KV-cached greedy decoding over left-padded sequences, each sample's visual tokens at its slots."""
        lengths = mask.sum(1).tolist()
        seqs = [interleave(vis[k], text[k], n, slots[k])[0] for k, n in enumerate(lengths)]
        width = max(len(s) + text.shape[1] - n for s, n in zip(seqs, lengths, strict=True))
        rows, masks = [], []
        for seq in seqs:
            pad = width - len(seq)
            rows.append(torch.cat([seq.new_zeros(pad, seq.shape[-1]), seq], dim=0))
            masks.append(torch.cat([mask.new_zeros(pad), mask.new_ones(len(seq))]))
        embeds, attn = torch.stack(rows), torch.stack(masks)
        pos = (attn.cumsum(1) - 1).clamp_min(0)
        out = self.llm(inputs_embeds=embeds, attention_mask=attn, position_ids=pos, use_cache=True,
                       logits_to_keep=1)
        key = cache_arg(self.llm)
        done = torch.zeros(len(lengths), dtype=torch.bool, device=embeds.device)
        result: list[list[int]] = [[] for _ in lengths]
        for _ in range(max_new):
            nxt = out.logits[:, -1].argmax(-1)
            for k, token in enumerate(nxt.tolist()):
                if not done[k]:
                    if token == eos:
                        done[k] = True
                    else:
                        result[k].append(token)
            if bool(done.all()):
                break
            attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=1)
            pos = pos[:, -1:] + 1
            out = self.llm(
                inputs_embeds=self.text_embeddings(nxt[:, None]), attention_mask=attn, position_ids=pos,
                use_cache=True, logits_to_keep=1, **{key: getattr(out, key)},
            )
        return result

    @torch.no_grad()
    def loglikelihood(self, images, contexts: list[str], continuations: list[str]):
        """(log p(continuation | images, context), continuation is the greedy output) per request; ``images``
        as for ``generate``."""
        tok = self._tok()
        first, extra = split_images(images)
        laid = layouts(self.cfg, tok, contexts, image_counts(extra))
        ctx = [lay.ids for lay in laid]
        cont = tok(continuations, add_special_tokens=False)["input_ids"]
        ids, mask = _pad([a + b for a, b in zip(ctx, cont, strict=True)], tok.pad_token_id or 0,
                         first.device)
        labels = torch.full_like(ids, -100)
        for k, (a, b) in enumerate(zip(ctx, cont, strict=True)):
            labels[k, len(a) : len(a) + len(b)] = ids[k, len(a) : len(a) + len(b)]
        out = self.forward(images, ids, mask, labels=labels, layouts=laid)
        logp = out.logits.float().log_softmax(-1)
        results = []
        for k in range(len(contexts)):
            sel = labels[k] != -100
            target = labels[k][sel]
            lp = logp[k][sel].gather(-1, target[:, None]).sum().item()
            greedy = bool((logp[k][sel].argmax(-1) == target).all())
            results.append((lp, greedy))
        return results, out.routes, out.probs, out.eranks


def split_images(images) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """A batch's images, one tensor (B, 3, H, W) or per request a tensor (n, 3, H, W): the first image of
    each request (what routes it) as one tensor, and each request's further images (None: none)."""
    if isinstance(images, torch.Tensor):
        return images, [None] * images.shape[0]
    return torch.stack([x[0] for x in images]), [x[1:] if len(x) > 1 else None for x in images]


def image_counts(extra: list[torch.Tensor | None]) -> list[int]:
    return [1 + (0 if e is None else len(e)) for e in extra]


def interleave(vis: list[torch.Tensor], text: torch.Tensor, n: int,
               slots: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's sequence: its ``n`` real text embeddings (of ``text``, (T, D)) with the visual tokens
    ``vis[i]`` (N_i, D) before text index ``slots[i]``; and the position of each of the T text tokens in it
    (the padding ones counted on after the real ones)."""
    pieces, pos, cut, shift = [], [], 0, 0
    for s, v in zip(slots, vis, strict=True):
        pieces += [text[cut:s], v.to(text.dtype)]
        pos.append(torch.arange(cut, s) + shift)
        cut, shift = s, shift + v.shape[0]
    pieces.append(text[cut:n])
    pos.append(torch.arange(cut, text.shape[0]) + shift)
    return torch.cat(pieces), torch.cat(pos).to(text.device)


def _pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for k, s in enumerate(seqs):
        ids[k, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[k, : len(s)] = 1
    return ids.to(device), mask.to(device)


def cache_arg(llm) -> str:
    """What transformers calls the KV cache, as argument and output: ``cache`` (5.x) or
    ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(llm.forward).parameters else "past_key_values"
