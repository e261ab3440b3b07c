"""A routed path as the parts it runs, each a small module with example inputs.

``flops`` counts each distinct part once and ``latency`` times it. Parts of a path:
``shared_encoder``, ``router`` (models with a router), ``routed:<name>`` per routed encoder,
``projector`` (every projector the path uses, the token-MoE gate, resampling and fusion) and
``llm_prefill`` (visual tokens + prompt tokens; the LM head on the last position only, which
yields the first generated token). ``decode`` is one KV-cached step at context = prefill length.
Encoders are run on pixels already at their own resolution (resizing is pre-processing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from scopebench.config import Route, route_name
from scopebench.models.generation import cache_arg
from scopebench.models.vlm import make_projector
from scopebench.profiling.counters import on_meta

SHARED, ROUTER, PROJECTOR, PREFILL, DECODE = ("shared_encoder", "router", "projector", "llm_prefill",
                                              "llm_decode")
DECODE_PER_TOKEN = "llm_decode_per_token"
ROUTED = "routed:"


@dataclass
class Part:
    """One computation of a path. Parts with equal ``key`` are the same computation."""

    component: str
    key: tuple
    module: nn.Module
    inputs: tuple
    modules: list[nn.Module]  # whose parameters the part uses

    @property
    def params(self) -> int:
        return count_params(self.modules)


@dataclass
class PathPlan:
    """The first-token parts of one route (decode: see ``decode_part``). ``reference``: not taken by the
    policy."""

    name: str
    route: Route
    parts: list[Part]
    visual_tokens: int
    llm_tokens: int
    reference: bool = False
    modules: list[nn.Module] = field(default_factory=list)


def count_params(modules: list[nn.Module]) -> int:
    """Parameters of ``modules``, each tensor counted once (shared / tied weights)."""
    seen: dict[int, int] = {}
    for m in modules:
        for p in m.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def where(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(module.parameters())
    return p.device, p.dtype


def example(shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """A random input in [0, 1) (an empty one on the meta device)."""
    if torch.device(device).type == "meta":
        return torch.empty(shape, device=device, dtype=dtype)
    return torch.rand(shape, device=device, dtype=dtype)


def index_device(device) -> torch.device:
    """Where integer index inputs (position ids) live: the CPU for meta models, so that they have values."""
    return torch.device("cpu") if torch.device(device).type == "meta" else torch.device(device)


class EncoderFeatures(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels):
        return self.encoder.features(pixels)


class RouterCall(nn.Module):
    def __init__(self, router):
        super().__init__()
        self.router = router

    def forward(self, text, mask, visual):
        return self.router(text, mask, visual)


class Projection(nn.Module):
    """The model's own ``fuse`` for a route, fed zeros of each routed encoder's feature shape (the encoders
    are counted on their own). ``projector``: a stand-in for a channel-fusion route the model has none for."""

    def __init__(self, model, route: Route, shapes: dict[str, tuple[int, int]],
                 projector: nn.Module | None = None):
        super().__init__()
        self.model, self.route, self.shapes, self.projector = model, route, shapes, projector

    def forward(self, shared_feats):
        feats = {e: shared_feats.new_zeros(shared_feats.shape[0], *self.shapes[e]) for e in self.route}
        return self.model.fuse(shared_feats, feats, self.route, self.projector)


class Prefill(nn.Module):
    """LLM prefill over input embeddings, logits of the last position only."""

    def __init__(self, llm):
        super().__init__()
        self.llm = llm

    def forward(self, embeds, position_ids):
        return self.llm(inputs_embeds=embeds, position_ids=position_ids, use_cache=False,
                        logits_to_keep=1).logits


class DecodeStep(nn.Module):
    """One decoding step of one token over a KV cache given as (key, value) tensors per layer."""

    def __init__(self, llm):
        super().__init__()
        self.llm = llm

    def forward(self, embeds, position_ids, *kv):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.llm.config)
        for layer in range(len(kv) // 2):
            cache.update(kv[2 * layer], kv[2 * layer + 1], layer)
        return self.llm(inputs_embeds=embeds, position_ids=position_ids, use_cache=True,
                        **{cache_arg(self.llm): cache}).logits


def run(module: nn.Module, inputs: tuple):
    """Run a part for its output (shapes); on the meta device CPU index tensors follow the meta ones."""
    with torch.no_grad(), on_meta(module, inputs):
        return module(*inputs)


def kv_shape(llm, context: int, batch: int) -> tuple[int, int, int, int, int]:
    """(layers, batch, kv heads, context, head dim) of the LLM's KV cache."""
    cfg = llm.config.get_text_config()
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers, batch, kv_heads, context, head_dim


def prefill_part(llm, tokens: int, batch: int) -> Part:
    device, dtype = where(llm)
    dim = llm.get_input_embeddings().embedding_dim
    pos = torch.arange(tokens, device=index_device(device)).expand(batch, tokens)
    inputs = (example((batch, tokens, dim), device, dtype), pos)
    return Part(PREFILL, (PREFILL, tokens), Prefill(llm), inputs, [llm])


def decode_part(llm, context: int, batch: int) -> Part:
    """One decode step reading a cache of ``context`` tokens (attention over context + 1 keys)."""
    device, dtype = where(llm)
    dim = llm.get_input_embeddings().embedding_dim
    layers, *shape = kv_shape(llm, context, batch)
    kv = tuple(example(tuple(shape), device, dtype) for _ in range(2 * layers))
    pos = torch.full((batch, 1), context, device=index_device(device))
    inputs = (example((batch, 1, dim), device, dtype), pos, *kv)
    return Part(DECODE_PER_TOKEN, (DECODE, context), DecodeStep(llm), inputs, [llm])


Grid = tuple[int, int]  # a native-resolution encoder's merged-token grid (rows, columns) for one image


def encoder_part(component: str, encoder, batch: int, grid: Grid | None = None) -> Part:
    """The encoder on its own square, or (a native-resolution encoder) on the pixels of token ``grid``."""
    device, dtype = where(encoder)
    if grid is None:
        pixels = example((batch, 3, encoder.image_size, encoder.image_size), device, dtype)
        return Part(component, (component,), EncoderFeatures(encoder), (pixels,), [encoder])
    unit = encoder.patch * encoder.merge
    pixels = example((batch, 3, grid[0] * unit, grid[1] * unit), device, dtype)
    return Part(component, (component, grid), EncoderFeatures(encoder), (pixels,), [encoder])


def feature_shape(part: Part) -> tuple[int, int]:
    """(tokens, channels) an encoder part outputs: shape-only on real weights, a meta run otherwise."""
    encoder = part.module.encoder
    if where(encoder)[0].type == "meta":
        out = run(part.module, part.inputs)
        return int(out.shape[1]), int(out.shape[2])
    if len(part.key) > 1:  # at a token grid
        return part.key[1][0] * part.key[1][1], encoder.width
    return encoder.output_shape()


def plan_encoder(spec: str, encoder, batch: int = 1) -> list[PathPlan]:
    """A single encoder: one path whose only part is the encoder."""
    part = encoder_part("encoder", encoder, batch)
    tokens, _ = feature_shape(part)
    return [PathPlan(spec, (), [part], tokens, 0, modules=[encoder])]


def _standin_projector(model, route: Route, shapes) -> nn.Module | None:
    """Channel fusion has no projector for an untrained route: a same-shaped stand-in (for counting)."""
    if model.cfg.fusion != "channel" or model.channel_key(route) is not None:
        return None
    device, dtype = where(model)
    width = model.shared.width + sum(shapes[e][1] for e in route)
    dim = model.llm.get_input_embeddings().embedding_dim
    with torch.device(device):
        return make_projector(model.cfg.projector, width, dim).to(dtype)


def _projector_modules(model, route: Route, standin: nn.Module | None) -> list[nn.Module]:
    if standin is not None:
        return [standin]
    if model.cfg.fusion == "channel":
        mods = [model.projectors[model.channel_key(route)]]
    else:
        mods = [model.projectors["shared"], *(model.projectors[e] for e in route)]
    return mods + ([model.gate] if model.gate is not None else [])


def layout_tokens(model) -> int | None:
    """Text tokens the model's prompt layout adds around a prompt (template, chat template, system prompt),
    by its tokenizer; None without one."""
    from scopebench.models.tokenizer import layout

    if model.tokenizer is None:
        return None
    return len(layout(model.cfg, model.tokenizer, "", 1).ids)


def plan_model(model, prompt_tokens: int, batch: int = 1, grid: Grid | None = None) -> list[PathPlan]:
    """Every path of the model's policy (plus the all-encoders reference for routed policies); the LLM
    reads ``prompt_tokens`` plus those of the prompt layout (``layout_tokens``). ``grid``: the shared
    encoder (at native resolution) on an image of that token grid instead of its own square."""
    prompt_tokens += layout_tokens(model) or 0
    device, dtype = where(model)
    shared = encoder_part(SHARED, model.shared, batch, grid)
    n_shared, c_shared = feature_shape(shared)
    shared_feats = example((batch, n_shared, c_shared), device, dtype)
    size = () if grid is None else (n_shared,)  # part keys: what the cost depends on
    router = None
    if model.router is not None:
        dim = model.llm.get_input_embeddings().embedding_dim
        text = example((batch, prompt_tokens, dim), device, dtype)
        mask = torch.ones(batch, prompt_tokens, device=device, dtype=torch.long)
        router = Part(ROUTER, (ROUTER, *size), RouterCall(model.router), (text, mask, shared_feats),
                      [model.router])
    routed = {e: encoder_part(ROUTED + e, enc, batch) for e, enc in model.routed.items()}
    shapes = {e: feature_shape(p) for e, p in routed.items()}
    ref = model.policy.reference_route(model.cfg.routed_names)  # what routing saves against
    plans = []
    for route, reference in [*((r, False) for r in model.paths()), *([(ref, True)] if ref else [])]:
        standin = _standin_projector(model, route, shapes)
        proj_modules = _projector_modules(model, route, standin)
        proj = Part(PROJECTOR, (PROJECTOR, route, *size), Projection(model, route, shapes, standin),
                    (shared_feats,), proj_modules)
        visual = int(run(proj.module, proj.inputs).shape[1])
        llm_tokens = visual + prompt_tokens
        parts = [shared, *([router] if router and not reference else []), *(routed[e] for e in route), proj,
                 prefill_part(model.llm, llm_tokens, batch)]
        modules = [m for p in parts for m in p.modules]
        plans.append(PathPlan(route_name(route), route, parts, visual, llm_tokens, reference, modules))
    return plans
