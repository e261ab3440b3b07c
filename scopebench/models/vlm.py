"""MultiEncoderVLM: one model class for SCOPE and all of its baselines.

shared encoder + routed encoder pool + projector(s) + token fusion + a transformers causal LM.
What differs between SCOPE and a baseline is only the selection policy (``scopebench.config.Policy``).
A batch is grouped by route, so each routed encoder runs only on the samples routed to it.
Generation and log-likelihood scoring: ``scopebench.models.generation``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scopebench.config import ModelConfig, Policy, Route, route_name
from scopebench.errors import ScopebenchError
from scopebench.models.encoders import ImageBatch, VisionEncoder, create_encoder, grid_text
from scopebench.models.generation import TextMixin, interleave, split_images
from scopebench.models.router import CrossAttentionRouter, router_losses
from scopebench.models.tokenizer import Layout

# route, sample indices (list, tensor), visual tokens
Group = tuple[Route, list[int], torch.Tensor, torch.Tensor]


@dataclass
class VLMOutput:
    """Per-sample results of a forward pass (in the input's order)."""

    logits: torch.Tensor  # (B, T, V): the prediction for each text position
    sample_nll: torch.Tensor | None  # (B,) mean NLL of the labelled tokens
    loss: torch.Tensor | None
    routes: list[Route]
    probs: torch.Tensor | None  # (B, E) router probabilities (None without a router)
    aux: dict[str, torch.Tensor]
    eranks: dict[str, torch.Tensor] | None = None  # eval mode: encoder -> (B,) effective rank, NaN = not run
    # (B, D) the LLM's last hidden state predicting text token hidden_at
    answer_hidden: torch.Tensor | None = None


def make_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A projector from encoder features to LLM embeddings: ``linear`` or ``mlp2x_gelu``."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def effective_rank(feats: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B,): entropy effective rank exp(H(p)), p = s / sum(s), s = singular values of each
    sample's (tokens x channels) feature matrix (Roy & Vetterli 2007); NaN for non-finite features."""
    x = feats.detach().float()
    finite = torch.isfinite(x).flatten(1).all(1)
    out = x.new_full(finite.shape, float("nan"))
    if finite.any():
        s = torch.linalg.svdvals(x[finite])
        p = s / s.sum(-1, keepdim=True).clamp_min(1e-12)
        out[finite] = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))
    return out


def resample_tokens(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N, C) -> (B, n, C): area-resample a square token grid, or average-pool a 1-D sequence."""
    b, m, c = x.shape
    if m == n:
        return x
    side, target = int(round(m**0.5)), int(round(n**0.5))
    if side * side == m and target * target == n:
        grid = x.transpose(1, 2).reshape(b, c, side, side)
        return F.adaptive_avg_pool2d(grid, target).flatten(2).transpose(1, 2)
    return F.adaptive_avg_pool1d(x.transpose(1, 2), n).transpose(1, 2)


class MultiEncoderVLM(TextMixin, nn.Module):
    """Multi-encoder VLM with a selectable policy. Build with ``scopebench.models.build_model``."""

    def __init__(self, cfg: ModelConfig, llm: nn.Module, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.llm = llm
        self.shared: VisionEncoder = create_encoder(cfg.shared)
        self.routed = nn.ModuleDict({name: create_encoder(c) for name, c in cfg.routed.items()})
        self.train_policy = cfg.parsed_policy()
        dim = llm.get_input_embeddings().embedding_dim
        names = cfg.routed_names
        if cfg.fusion == "channel" and self.train_policy.kind == "token_moe":
            raise ScopebenchError(f"model '{cfg.name}': token_moe needs fusion 'sequence'")
        self.projectors = nn.ModuleDict()
        if cfg.fusion == "sequence":
            self.projectors["shared"] = make_projector(cfg.projector, self.shared.width, dim)
            for name in names:
                self.projectors[name] = make_projector(cfg.projector, self.routed[name].width, dim)
        else:
            for route in self.train_policy.trained_routes(names):
                width = self.shared.width + sum(self.routed[e].width for e in route)
                self.projectors[route_name(route)] = make_projector(cfg.projector, width, dim)
        self.router = None
        if self.train_policy.uses_router:
            self.router = CrossAttentionRouter(cfg.router, dim, self.shared.width, len(names))
        self.gate = nn.Linear(dim, len(names)) if self.train_policy.kind == "token_moe" else None
        self.policy = self.train_policy
        self._rng = torch.Generator().manual_seed(cfg.seed)

    # ----- policy -------------------------------------------------------------------------
    def set_policy(self, policy: str | Policy) -> None:
        """Switch the selection policy at inference (e.g. masking an encoder); checks the modules exist."""
        p = policy if isinstance(policy, Policy) else Policy.parse(policy, self.cfg.routed_names)
        if p.uses_router and self.router is None:
            raise ScopebenchError(f"model '{self.cfg.name}' has no router: policy '{p}' cannot run; "
                                  "use fixed:/all/random")
        if p.kind == "token_moe" and self.gate is None:
            raise ScopebenchError(f"model '{self.cfg.name}' has no token gate: policy 'token_moe' cannot run")
        self.policy = p
        for route in self.paths():
            if self.cfg.fusion == "channel" and self.channel_key(route) is None:
                raise ScopebenchError(f"model '{self.cfg.name}' (channel fusion) has no projector "
                                      f"for route {route_name(route)}")
        self._rng = torch.Generator().manual_seed(self.cfg.seed)

    def available(self) -> list[str]:
        """Routed encoders the current policy may use (not masked)."""
        return self.policy.available(self.cfg.routed_names)

    def paths(self) -> list[Route]:
        """Every route the current policy can take."""
        return self.policy.routes(self.cfg.routed_names)

    def channel_key(self, route: Route) -> str | None:
        """Projector of a channel-fusion route: its own, or the trained set it is a masked subset of."""
        for key in self.projectors:
            members = key.split("+")[1:]
            if set(route) <= set(members) and set(members) - set(route) <= set(self.policy.masked):
                return key
        return None

    # ----- routing ------------------------------------------------------------------------
    def text_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(input_ids)

    def choose_routes(self, shared_feats, prompt_embeds,
                      prompt_mask) -> tuple[list[Route], torch.Tensor | None]:
        """Pick each sample's route; returns routes and router probabilities (B, E) when there is a router."""
        b, p = shared_feats.shape[0], self.policy
        names, avail = self.cfg.routed_names, self.available()
        probs = None
        if self.router is not None:
            logits = self.router(prompt_embeds, prompt_mask, shared_feats)
            probs = logits.float().softmax(-1)
        if p.uses_router:
            masked = torch.tensor([n not in avail for n in names], device=probs.device)
            choice = probs.masked_fill(masked, -1.0).topk(p.k, dim=-1).indices.tolist()
            return [tuple(n for i, n in enumerate(names) if i in row) for row in choice], probs
        if p.kind == "random":
            idx = torch.randint(len(avail), (b,), generator=self._rng).tolist()
            return [(avail[i],) for i in idx], probs
        return [self.paths()[0]] * b, probs

    def route_and_encode(
        self, images: torch.Tensor | ImageBatch, text: torch.Tensor, prompt_mask: torch.Tensor, ranks: bool,
        every_route: bool = False,
    ) -> tuple[list[Route], torch.Tensor | None, dict[str, torch.Tensor] | None, Iterator[Group]]:
        """Route a batch and encode it, grouped by route: (routes, router probabilities, effective ranks,
        groups). ``text``: the prompt's embeddings, ``prompt_mask`` the tokens the router reads; ``ranks``:
        record each encoder's per-sample effective rank (else None); ``every_route``: every sample in every
        route the policy can take (soft router training). Each group, made as it is iterated, is (route,
        sample indices, the same as a tensor, visual tokens). Under ``/blind`` the route is chosen on the
        real image and every encoder feeding the LLM sees a black one. With an encoder at native resolution
        (Qwen2.5-VL, aspect ``native``) the batch is encoded and routed in parts of one token grid, and a
        route's group is split likewise."""
        parts = self._by_grid(images, [self.shared], list(range(len(images))))
        shared_feats, routes, probs = self._shared_and_routes(images, parts, text, prompt_mask)
        if self.policy.blind:
            images = torch.zeros_like(images)
            shared_feats = self._shared_and_routes(images, parts)[0]
        groups: dict[Route, list[int]] = {}
        for i, r in enumerate(routes):
            groups.setdefault(r, []).append(i)
        if every_route:
            groups = {r: list(range(len(routes))) for r in self.paths()}
        eranks = self._rank_table(shared_feats, len(routes)) if ranks else None
        return routes, probs, eranks, self._groups(images, shared_feats, groups, eranks)

    def _shared_and_routes(self, images, parts: list[list[int]], text=None, prompt_mask=None):
        """Shared features (B, N, C), or per sample (N_i, C) over several grid parts, and, given ``text``,
        each sample's route and router probabilities (B, E)."""
        if len(parts) == 1:
            feats = self.shared(images)
            if text is None:
                return feats, None, None
            return (feats, *self.choose_routes(feats, text, prompt_mask))
        per_sample: list = [None] * len(images)
        routes: list = [None] * len(images)
        probs = None
        for idx in parts:
            ix = torch.tensor(idx, device=images.device)
            feats = self.shared(images[ix])
            for j, i in enumerate(idx):
                per_sample[i] = feats[j]
            if text is not None:
                part_routes, part_probs = self.choose_routes(feats, text[ix], prompt_mask[ix])
                for j, i in enumerate(idx):
                    routes[i] = part_routes[j]
                if part_probs is not None:
                    probs = part_probs.new_zeros(len(images), part_probs.shape[1]) if probs is None else probs
                    probs[ix] = part_probs
        return per_sample, routes, probs

    def _by_grid(self, images, encoders: list[VisionEncoder], idx: list[int]) -> list[list[int]]:
        """``idx`` split into parts whose images give every encoder of ``encoders`` one token grid (one part
        unless an encoder runs at native resolution)."""
        if not isinstance(images, ImageBatch) or not any(e.native for e in encoders):
            return [idx]
        parts: dict[tuple, list[int]] = {}
        for i in idx:
            key = tuple(e.token_grid(images.images[i]) for e in encoders)
            parts.setdefault(key, []).append(i)
        return list(parts.values())

    def _groups(self, images, shared_feats, groups: dict[Route, list[int]],
                eranks: dict | None) -> Iterator[Group]:
        for route, members in groups.items():
            for idx in self._by_grid(images, [self.shared, *(self.routed[e] for e in route)], members):
                ix = torch.tensor(idx, device=images.device)
                feats = self.encode_routed(images[ix], route)
                if eranks is not None:
                    for e, f in feats.items():
                        eranks[e][ix] = effective_rank(f)
                shared = (shared_feats[ix] if isinstance(shared_feats, torch.Tensor)
                          else torch.stack([shared_feats[i] for i in idx]))
                yield route, idx, ix, self.fuse(shared, feats, route)

    def _rank_table(self, shared_feats, n: int) -> dict[str, torch.Tensor]:
        """Per-sample effective ranks of each encoder's pre-projector features: "shared" and every routed
        encoder, NaN where the sample's route did not run it (filled in group by group)."""
        if isinstance(shared_feats, torch.Tensor):
            shared = effective_rank(shared_feats)
        else:  # per sample, of several token grids
            shared = torch.cat([effective_rank(f[None]) for f in shared_feats])
        table = {name: shared.new_full((n,), float("nan"), dtype=torch.float32)
                 for name in self.cfg.routed_names}
        return {"shared": shared, **table}

    def visual_tokens(self, images: ImageBatch | torch.Tensor, route: Route) -> int:
        """How many visual tokens the LLM gets for one request's images (an ``ImageBatch`` or (n, 3, H, W)) on
        ``route``: the shared and routed encoders' tokens of each image (channel fusion: the shared ones;
        token-level MoE: twice the shared ones), each image at its own token grid under native resolution."""
        total = 0
        for k in range(len(images)):
            image = images.images[k] if isinstance(images, ImageBatch) else None
            shared = self.shared.tokens_for(image)
            if self.cfg.fusion == "channel":
                total += shared
            elif self.policy.kind == "token_moe":
                total += 2 * shared
            else:
                total += shared + sum(self.routed[e].tokens_for(image) for e in route)
        return total

    def visual_grid(self, images: ImageBatch | torch.Tensor) -> str | None:
        """The shared encoder's token grid of each of one request's images (``grid_text``) when it runs at
        native resolution (what the per-sample cost is counted at); None at one fixed size."""
        if not (self.shared.native and isinstance(images, ImageBatch)):
            return None
        return grid_text([self.shared.token_grid(image) for image in images.images])

    # ----- visual tokens ------------------------------------------------------------------
    def encode_routed(self, images: torch.Tensor, route: Route) -> dict[str, torch.Tensor]:
        """Each routed encoder of ``route`` on ``images``: its pre-projector features (b, N_e, C_e)."""
        return {e: self.routed[e](images) for e in route}

    def fuse(
        self, shared_feats: torch.Tensor, feats: dict[str, torch.Tensor], route: Route,
        projector: nn.Module | None = None,
    ) -> torch.Tensor:
        """Visual tokens (b, N_route, D) for samples that all take ``route``: the shared features and the
        routed ones (``encode_routed``) projected, gated (token-level MoE) and fused. ``projector``:
        channel fusion only, one to use for a route the model has none for (profiling)."""
        if self.cfg.fusion == "channel":
            key = self.channel_key(route) if projector is None else route_name(route)
            parts = [shared_feats]
            for e in key.split("+")[1:]:
                if e in route:
                    parts.append(resample_tokens(feats[e], shared_feats.shape[1]))
                else:  # masked: zeros of the shape its features would have
                    parts.append(shared_feats.new_zeros(*shared_feats.shape[:2], self.routed[e].width))
            return (self.projectors[key] if projector is None else projector)(torch.cat(parts, dim=-1))
        tokens = self.projectors["shared"](shared_feats)
        if self.policy.kind == "token_moe":
            return torch.cat([tokens, self._token_moe(feats, tokens)], dim=1)
        return torch.cat([tokens] + [self.projectors[e](feats[e]) for e in route], dim=1)

    def _token_moe(self, feats: dict[str, torch.Tensor], shared_tokens: torch.Tensor) -> torch.Tensor:
        """Per-token top-1 gating over the routed encoders' projected (and resampled) tokens."""
        n, route = shared_tokens.shape[1], tuple(feats)
        experts = torch.stack(
            [resample_tokens(self.projectors[e](feats[e]), n) for e in route], dim=2
        )  # (b, n, E_avail, D)
        cols = [self.cfg.routed_names.index(e) for e in route]
        gate = self.gate(shared_tokens)[..., cols].softmax(-1)  # (b, n, E_avail)
        top = gate.argmax(-1, keepdim=True)
        weight = gate.gather(-1, top)
        chosen = experts.gather(2, top.unsqueeze(-1).expand(-1, -1, 1, experts.shape[-1])).squeeze(2)
        return chosen * weight

    def slot_tokens(self, route: Route, idx: list[int], vis: torch.Tensor, extra: list,
                    layouts: list[Layout] | None,
                    scale: torch.Tensor | None = None) -> list[list[torch.Tensor]]:
        """Per sample of a route group (``idx``): the visual tokens at each of its layout's slots, from its
        first image (``vis``, the group's) and its further ones (``extra``, per batch sample, encoded here on
        the same route); ``scale`` (b,): a factor per sample (the straight-through router gradient)."""
        more = self._extra_tokens(route, [extra[i] for i in idx])
        rows = []
        for j, i in enumerate(idx):
            images = [vis[j], *more[j]]
            if scale is not None:
                images = [v * scale[j] for v in images]
            rows.append([images[m] for m in (layouts[i].images if layouts else [0])])
        return rows

    def _extra_tokens(self, route: Route, extra: list[torch.Tensor | None]) -> list[list[torch.Tensor]]:
        """Visual tokens of each sample's images after its first, on the sample's route (black under
        ``/blind``)."""
        given = [x for x in extra if x is not None]
        if not given:
            return [[] for _ in extra]
        x = torch.cat(given)
        if self.policy.blind:
            x = torch.zeros_like(x)
        tokens = list(self.fuse(self.shared(x), self.encode_routed(x, route), route))
        out = []
        for e in extra:
            n = 0 if e is None else len(e)
            out.append(tokens[:n])
            tokens = tokens[n:]
        return out

    # ----- forward ------------------------------------------------------------------------
    def forward(
        self, images, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None, prompt_mask: torch.Tensor | None = None,
        hidden_at: torch.Tensor | None = None, layouts: list[Layout] | None = None,
    ) -> VLMOutput:
        """Route, encode and run the LLM on right-padded text; group the batch by route.

        ``images``: one tensor (B, 3, H, W), or per sample a tensor (n, 3, H, W) of its n images (the first
        routes it). ``layouts`` (``encode_prompts``): where each sample's visual tokens go in its text
        (default: its one image before the text). ``prompt_mask`` marks the prompt tokens the router reads
        (default: every unlabelled real token). ``hidden_at`` (B,): text index per sample; the output's
        ``answer_hidden`` then holds the LLM's last hidden state at the position that predicts that token
        (under soft router training, the router-probability-weighted mean over routes), for auxiliary
        training losses.
        """
        images, extra = split_images(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ScopebenchError(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        if input_ids.shape[0] != images.shape[0]:
            raise ScopebenchError(f"batch mismatch: {images.shape[0]} images but {input_ids.shape[0]} texts")
        if prompt_mask is None:
            prompt_mask = attention_mask if labels is None else attention_mask * (labels == -100)
        text = self.text_embeddings(input_ids)
        soft = self.training and self.router is not None and self.cfg.router.train_mode == "soft"
        routes, probs, eranks, groups = self.route_and_encode(images, text, prompt_mask,
                                                              ranks=not self.training, every_route=soft)
        run = self._soft_pass if soft else self._hard_pass
        logits, nll, hidden = run(groups, probs, text, attention_mask, labels, hidden_at, (extra, layouts))
        aux: dict[str, torch.Tensor] = {}
        loss = None
        if labels is not None:
            loss = nll.mean()
            aux["lm_loss"] = loss.detach()
            if probs is not None and self.training:
                aux.update(router_losses(probs, self.cfg.router))
                loss = loss + aux["router_loss"]
        return VLMOutput(logits=logits, sample_nll=nll, loss=loss, routes=routes, probs=probs, aux=aux,
                         eranks=eranks, answer_hidden=hidden)

    def _outputs(self, text: torch.Tensor, labels, hidden_at):
        """Zero logits (B, T, V), per-sample NLL (B,) if ``labels``, answer hidden states (B, D) if
        ``hidden_at``."""
        b, t = text.shape[:2]
        vocab = self.llm.get_output_embeddings().out_features
        nll = text.new_zeros(b) if labels is not None else None
        return (text.new_zeros(b, t, vocab), nll,
                None if hidden_at is None else text.new_zeros(b, text.shape[-1]))

    def _hard_pass(self, groups: Iterator[Group], probs, text, mask, labels, hidden_at, images):
        """Each sample through its own route. In training with a router, the route's visual tokens are scaled
        by its probability over itself (1 in value): the router's gradient, straight through. ``images``:
        (further images per sample, layouts)."""
        logits, nll, hidden = self._outputs(text, labels, hidden_at)
        extra, layouts = images
        for route, idx, ix, vis in groups:
            scale = None
            if probs is not None and self.training and route:
                p = probs[ix, self.cfg.routed_names.index(route[0])].to(vis.dtype)
                scale = p / p.detach()
            rows = self.slot_tokens(route, idx, vis, extra, layouts, scale)
            group_logits, group_hidden = self._llm_logits(rows, text[ix], mask[ix], _slots(layouts, idx),
                                                          hidden_at is not None)
            if hidden is not None:
                h = group_hidden[torch.arange(len(idx), device=ix.device), hidden_at[ix]].to(hidden.dtype)
                hidden = hidden.index_copy(0, ix, h)
            if labels is not None:
                nll = nll.index_copy(0, ix, _masked_nll(group_logits, labels[ix]))
            logits = logits.index_copy(0, ix, group_logits.to(logits.dtype))
        return logits, nll, hidden

    def _soft_pass(self, groups: Iterator[Group], probs, text, mask, labels, hidden_at, images):
        """Soft router training: every sample through every route, the NLL and answer hidden states weighted
        by the router's probability of the route (an expected loss); the logits stay zero."""
        logits, nll, hidden = self._outputs(text, labels, hidden_at)
        extra, layouts = images
        for route, idx, ix, vis in groups:
            p = probs[ix, self.cfg.routed_names.index(route[0])].to(vis.dtype)
            rows = self.slot_tokens(route, idx, vis, extra, layouts)
            group_logits, group_hidden = self._llm_logits(rows, text[ix], mask[ix], _slots(layouts, idx),
                                                          hidden_at is not None)
            if hidden is not None:
                h = group_hidden[torch.arange(len(idx), device=ix.device), hidden_at[ix]].to(hidden.dtype)
                hidden = hidden + p.to(h.dtype)[:, None] * h
            if labels is not None:
                g_nll = _masked_nll(group_logits, labels[ix])
                nll = nll + p.to(g_nll.dtype) * g_nll
        return logits, nll, hidden

    def _llm_logits(self, vis: list[list[torch.Tensor]], text: torch.Tensor, mask: torch.Tensor,
                    slots: list[list[int]], hidden: bool = False):
        """Run the LLM on each sample's right-padded text with its visual tokens ``vis`` at its ``slots``;
        return the prediction for each text position (b, T, V) (zero for a text token that opens the
        sequence: nothing predicts it) and, if ``hidden``, the last hidden state it comes from (b, T, D)."""
        rows, pos, real = [], [], []
        for k in range(text.shape[0]):
            n = int(mask[k].sum())
            seq, p = interleave(vis[k], text[k], n, slots[k])
            rows.append(torch.cat([seq, text[k, n:]]))  # the padding after the real tokens, masked
            pos.append(p)
            real.append(len(seq))
        width = max(len(r) for r in rows)
        embeds = torch.stack([F.pad(r, (0, 0, 0, width - len(r))) for r in rows])
        full_mask = torch.stack([(torch.arange(width, device=mask.device) < n).to(mask.dtype) for n in real])
        pos = torch.stack(pos)
        start = max(0, int(pos[:, 0].min()) - 1)  # the LM head runs from the first position that predicts
        out = self.llm(inputs_embeds=embeds, attention_mask=full_mask, use_cache=False,
                       logits_to_keep=width - start, output_hidden_states=hidden)
        # over several devices (a device map) the LLM's output comes from its last one
        at = (pos - 1).clamp_min(0).to(out.logits.device)
        logits = out.logits.gather(1, (at - start)[..., None].expand(-1, -1, out.logits.shape[-1]))
        logits = logits.masked_fill((pos == 0).to(logits.device)[..., None], 0).to(text.device)
        if not hidden:
            return logits, None
        last = out.hidden_states[-1]
        at = at.to(last.device)[..., None].expand(-1, -1, last.shape[-1])
        return logits, last.gather(1, at).to(text.device)


def _slots(layouts: list[Layout] | None, idx: list[int]) -> list[list[int]]:
    """The slots of samples ``idx``: their layouts', or each one image before the text."""
    return [layouts[i].slots if layouts else [0] for i in idx]


def _masked_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL per sample over labelled positions (labels -100 are ignored)."""
    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    count = (labels != -100).sum(1).clamp_min(1)
    return nll.sum(1) / count
