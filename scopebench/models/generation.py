"""The text side of ``MultiEncoderVLM``: tokenising prompts, greedy generation and log-likelihood scoring.

``TextMixin`` is a base of the model class; it reads the model's ``cfg``, ``tokenizer``, ``llm``,
``text_embeddings``, ``route_and_encode`` (routing and encoding, grouped by route) and ``forward``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from scopebench.config import Route
from scopebench.errors import ScopebenchError


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

    def encode_texts(self, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded token ids and mask for already-formatted texts."""
        tok = self._tok()
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        return _pad(ids, tok.pad_token_id or 0, device)

    def format_prompt(self, prompt: str) -> str:
        return self.cfg.prompt_template.format(prompt=prompt)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompts: list[str],
                 max_new_tokens: int | None = None) -> Generation:
        """Greedy answers for raw prompts (the template is applied here), batched by route."""
        if len(prompts) != images.shape[0]:
            raise ScopebenchError(f"batch mismatch: {images.shape[0]} images but {len(prompts)} prompts")
        tok = self._tok()
        max_new = max_new_tokens or self.cfg.max_new_tokens
        ids, mask = self.encode_texts([self.format_prompt(p) for p in prompts], images.device)
        text = self.text_embeddings(ids)
        routes, probs, eranks, groups = self.route_and_encode(images, text, mask, ranks=True)
        out: list[str] = [""] * len(prompts)
        for _route, idx, ix, vis in groups:
            tokens = self._greedy(vis, text[ix], mask[ix], max_new, tok.eos_token_id)
            for j, seq in zip(idx, tokens, strict=True):
                out[j] = tok.decode(seq, skip_special_tokens=True).strip()
        return Generation(texts=out, routes=routes, probs=probs, eranks=eranks)

    def _greedy(self, vis, text, mask, max_new: int, eos: int | None) -> list[list[int]]:
        """KV-cached greedy decoding over left-padded [visual; prompt] sequences."""
        lengths = mask.sum(1).tolist()
        rows, masks = [], []
        nv, width = vis.shape[1], text.shape[1]
        for k, n in enumerate(lengths):
            seq = torch.cat([vis[k].to(text.dtype), text[k, :n]], dim=0)
            pad = width - n
            rows.append(torch.cat([seq.new_zeros(pad, seq.shape[-1]), seq], dim=0))
            masks.append(torch.cat([mask.new_zeros(pad), mask.new_ones(nv + n)]))
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
    def loglikelihood(self, images: torch.Tensor, contexts: list[str], continuations: list[str]):
        """(log p(continuation | image, context), continuation is the greedy output) per request."""
        tok = self._tok()
        ctx = [tok(self.format_prompt(c), add_special_tokens=False)["input_ids"] for c in contexts]
        cont = [tok(c, add_special_tokens=False)["input_ids"] for c in continuations]
        ids, mask = _pad([a + b for a, b in zip(ctx, cont, strict=True)], tok.pad_token_id or 0,
                         images.device)
        labels = torch.full_like(ids, -100)
        for k, (a, b) in enumerate(zip(ctx, cont, strict=True)):
            labels[k, len(a) : len(a) + len(b)] = ids[k, len(a) : len(a) + len(b)]
        out = self.forward(images, ids, mask, labels=labels)
        logp = out.logits.float().log_softmax(-1)
        results = []
        for k in range(len(contexts)):
            sel = labels[k] != -100
            target = labels[k][sel]
            lp = logp[k][sel].gather(-1, target[:, None]).sum().item()
            greedy = bool((logp[k][sel].argmax(-1) == target).all())
            results.append((lp, greedy))
        return results, out.routes, out.probs, out.eranks


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
