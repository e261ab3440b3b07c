"""Typed model configs: the LLM, the encoders, projector, router, fusion and selection policy.

A model config is plain data (YAML in ``configs/``, JSON in a checkpoint folder)::

    name: scope-demo
    llm: {spec: hf:/path/or/hub-id, config: {model_type: qwen2, hidden_size: 64, ...}}
    shared: {spec: timm:vit_tiny_patch16_224, image_size: 64}
    routed:
      convnext: {spec: timm:convnext_atto}
      clip: {spec: open_clip:ViT-B-32}
    projector: mlp2x_gelu        # or linear
    fusion: sequence             # or channel
    policy: router               # see `Policy`
    router: {dim: 64, heads: 2}
    variants: {baseline-0: shared_only, baseline-all: all}   # presets only

Policies (``Policy.parse``): ``shared_only`` (Baseline-0), ``fixed:a,b`` (Baseline-k), ``all``,
``router`` (SCOPE top-1), ``router_topk:K``, ``token_moe``, ``random``; any of them may end in
``/mask:a,b`` to drop encoders from a fixed checkpoint at inference.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopebench.errors import ScopebenchError, suggest
from scopebench.models.allowlist import check_overrides, check_transformers_config

POLICY_KINDS = ("shared_only", "fixed", "all", "router", "router_topk", "token_moe", "random")
ROUTER_KINDS = ("router", "router_topk")
SAMPLE_KINDS = (*ROUTER_KINDS, "random")  # a route chosen per sample
ROUTING_KINDS = (*SAMPLE_KINDS, "token_moe")  # not one route for every sample
SOURCES = ("timm", "open_clip", "hf")  # encoder libraries: SOURCE:NAME specs
# how an encoder gets its pixels (EncoderConfig.aspect): the model's shared square canvas resampled (what the
# demo checkpoints were trained with), or its own library's transform on the original image, squashed to its
# square, padded to a square of the mean colour (LLaVA, Cambrian-1) or shortest side + centre crop (CLIP), or
# at native resolution (Qwen2.5-VL: tokens follow the image, within min_pixels / max_pixels)
ASPECTS = ("canvas", "squash", "pad", "crop", "native")

IMAGE_PLACEHOLDER = "<image>"  # where a prompt layout puts an image's visual tokens
Route = tuple[str, ...]  # routed encoders a sample uses, in config order; () = shared only


def route_name(route: Route) -> str:
    """('convnext',) -> 'shared+convnext'; () -> 'shared'."""
    return "+".join(("shared", *route))


@dataclass(frozen=True)
class Policy:
    """Which encoders a sample uses. ``encoders``: the fixed set; ``k``: top-k; ``masked``: dropped at
    inference; ``blind``: every image replaced by a black one (vision disabled: what the LLM answers from
    text alone)."""

    kind: str
    encoders: tuple[str, ...] = ()
    k: int = 1
    masked: tuple[str, ...] = ()
    blind: bool = False

    @classmethod
    def parse(cls, text: str, routed: list[str], where: str = "policy") -> Policy:
        """Parse a policy string, ``KIND[:ARG][/mask:NAMES][/blind]``, against the model's routed encoder
        names."""
        text = str(text)
        if text.endswith("/blind"):
            return dataclasses.replace(cls.parse(text.removesuffix("/blind"), routed, where), blind=True)
        if text == "blind":
            raise ScopebenchError(f"{where}: write vision-disabled runs as '<policy>/blind', "
                                  "e.g. 'all/blind'")
        base, _, mask = text.partition("/mask:")
        if base.startswith("mask:"):  # "mask:a" alone: the checkpoint's own policy is applied by the caller
            raise ScopebenchError(f"{where}: write masking as '<policy>/mask:{base[5:]}', "
                                  f"e.g. 'all/mask:{base[5:]}'")
        kind, _, arg = base.partition(":")
        if kind not in POLICY_KINDS:
            hint = suggest(kind, [*POLICY_KINDS, "blind"])
            raise ScopebenchError(f"{where}: unknown policy '{text}'{hint}; "
                                  f"choose from {', '.join(POLICY_KINDS)}, "
                                  "optionally followed by /mask:NAMES and /blind")
        masked = _names(mask, routed, where) if "/mask:" in text else ()
        if "/mask:" in text and not masked:
            raise ScopebenchError(f"{where}: '/mask:' needs encoder names, "
                                  f"e.g. {kind}/mask:{routed[0] if routed else 'NAME'}")
        if kind == "fixed":
            if not arg:
                raise ScopebenchError(f"{where}: 'fixed' needs encoder names, "
                                      f"e.g. fixed:{routed[0] if routed else 'NAME'}")
            return cls("fixed", _names(arg, routed, where), masked=masked)
        if kind == "all":
            return cls("fixed", tuple(routed), masked=masked)
        if kind == "router_topk":
            if not arg.isdigit() or not 1 <= int(arg) <= len(routed):
                raise ScopebenchError(f"{where}: router_topk:K needs 1 <= K <= {len(routed)}, got '{arg}'")
            return cls("router_topk", k=int(arg), masked=masked)
        if arg:
            raise ScopebenchError(f"{where}: policy '{kind}' takes no argument, got '{text}'")
        if kind in ("router", "token_moe", "random") and not routed:
            raise ScopebenchError(f"{where}: policy '{kind}' needs routed encoders, the model has none")
        return cls(kind, masked=masked)

    @staticmethod
    def kind_of(text: str) -> str:
        """The kind a policy string names, read without a pool: 'fixed:a/mask:b' -> 'fixed' ('' for '')."""
        return str(text).split("/")[0].split(":")[0]

    @property
    def uses_router(self) -> bool:
        return self.kind in ROUTER_KINDS

    @property
    def is_fixed(self) -> bool:
        """One route for every sample: shared_only, fixed (and all)."""
        return self.kind not in ROUTING_KINDS

    @property
    def is_routed(self) -> bool:
        """The route varies by sample (router, router_topk, random) or by token (token_moe)."""
        return self.kind in ROUTING_KINDS

    @property
    def is_masked(self) -> bool:
        return bool(self.masked)

    @property
    def selector(self) -> str | None:
        """The module the policy chooses with, beyond encoders and projectors: 'router', 'token gate' or
        None."""
        return "router" if self.uses_router else "token gate" if self.kind == "token_moe" else None

    def available(self, pool: list[str]) -> list[str]:
        """The routed encoders of ``pool`` (the model's, in config order) that are not masked."""
        return [n for n in pool if n not in self.masked]

    def routes(self, pool: list[str]) -> list[Route]:
        """Every route the policy can take over ``pool``, masked encoders dropped."""
        avail = self.available(pool)
        if self.kind == "shared_only":
            return [()]
        if self.kind == "fixed":
            return [tuple(n for n in avail if n in self.encoders)]
        if self.kind == "token_moe":
            return [tuple(avail)]
        return [tuple(c) for c in itertools.combinations(avail, self.k if self.kind == "router_topk" else 1)]

    def trained_routes(self, pool: list[str]) -> list[Route]:
        """The routes a model trained with this policy learns (masking drops encoders at inference only)."""
        return dataclasses.replace(self, masked=()).routes(pool)

    def encoders_used(self, pool: list[str]) -> list[str]:
        """The routed encoders of ``pool`` a model with this policy holds: those of its trained routes."""
        used = {e for route in self.trained_routes(pool) for e in route}
        return [n for n in pool if n in used]

    def reference_route(self, pool: list[str]) -> Route | None:
        """The all-encoders route, when the policy picks routes per sample and cannot take it (what
        routing saves against); else None."""
        route = tuple(pool)
        if self.kind not in SAMPLE_KINDS or not route or route in self.routes(pool):
            return None
        return route

    def __str__(self) -> str:
        text = {"fixed": f"fixed:{','.join(self.encoders)}",
                "router_topk": f"router_topk:{self.k}"}.get(self.kind, self.kind)
        return (text + (f"/mask:{','.join(self.masked)}" if self.masked else "")
                + ("/blind" if self.blind else ""))


def _names(arg: str, routed: list[str], where: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in arg.split(",") if n.strip())
    for n in names:
        if n not in routed:
            raise ScopebenchError(f"{where}: unknown encoder '{n}'{suggest(n, routed)}; "
                                  f"routed encoders: {', '.join(routed) or 'none'}")
    return tuple(n for n in routed if n in names)  # config order


@dataclass
class EncoderConfig:
    """How to build one encoder. ``spec`` is ``SOURCE:NAME``; ``config`` is an inline transformers
    config (for ``hf:`` ids that are neither local nor reachable); ``overrides`` go to the factory."""

    spec: str
    image_size: int | None = None
    feature_layer: str = "last"  # "last" or "penultimate"
    drop_cls: bool = True
    pretrained: str | None = None  # local safetensors file / folder, or "hub"
    overrides: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    aspect: str = "canvas"  # one of ASPECTS
    min_pixels: int | None = None  # aspect native: the image processor's pixel range (its defaults if None)
    max_pixels: int | None = None

    @property
    def source(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.spec.split(":", 1)[1] if ":" in self.spec else ""


@dataclass
class RouterConfig:
    """Router size and loss weights (dual entropy regularisation + load balancing)."""

    dim: int = 256
    heads: int = 4
    dropout: float = 0.0
    batch_entropy_weight: float = 0.1  # maximise H(mean_b p_b): dataset-level load balance
    sample_entropy_weight: float = 0.05  # minimise mean_b H(p_b): instance-level confidence
    load_balance_weight: float = 0.01  # Switch-style auxiliary loss
    train_mode: str = "straight_through"  # or "soft"
    temperature: float = 1.0


@dataclass
class LLMConfig:
    """The causal LM: ``spec`` hf:ID_OR_DIR; ``config`` an inline transformers config (needed offline)."""

    spec: str
    config: dict[str, Any] | None = None
    pretrained: str | None = None
    trust_remote_code: bool = False


@dataclass
class ModelConfig:
    name: str
    llm: LLMConfig
    shared: EncoderConfig
    routed: dict[str, EncoderConfig] = field(default_factory=dict)
    projector: str = "mlp2x_gelu"
    fusion: str = "sequence"
    policy: str = "router"
    router: RouterConfig = field(default_factory=RouterConfig)
    image_size: int | None = None  # input canvas; default: the largest encoder resolution
    # prompt layout (scopebench.models.tokenizer): the text around {prompt}, with the visual tokens at <image>
    prompt_template: str = "<image>{prompt}"
    chat_template: bool = False  # the template's text is the user turn of the tokenizer's chat template
    system_prompt: str | None = None  # chat_template only
    interleave: bool = True  # a prompt's <image k> markers (MMMU) hold image k (false: they stay text)
    max_images: int = 1  # images per request; the rest are dropped (and counted in the run's manifest)
    add_special_tokens: bool = False  # tokenise with the tokenizer's own special tokens (a Llama BOS)
    max_new_tokens: int = 16
    seed: int = 0
    variants: dict[str, str] = field(default_factory=dict)
    description: str = ""
    untrained: bool = False  # assembled with random tensors (`assemble --allow-random`): eval warns

    @property
    def routed_names(self) -> list[str]:
        return list(self.routed)

    def parsed_policy(self, where: str | None = None) -> Policy:
        return Policy.parse(self.policy, self.routed_names, where=where or f"model '{self.name}': policy")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"llm": LLMConfig, "shared": EncoderConfig, "router": RouterConfig}


def required_fields(cls) -> list[str]:
    """The fields of dataclass ``cls`` that have no default."""
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def check_fields(cls, data: dict[str, Any], where: str, exclude: frozenset[str] = frozenset()) -> None:
    """Refuse a mapping with a field dataclass ``cls`` lacks (with a did-you-mean) or without one it requires;
    ``exclude``: fields of ``cls`` a file may not set."""
    fields = sorted(f.name for f in dataclasses.fields(cls) if f.name not in exclude)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ScopebenchError(f"{where}: unknown field '{unknown[0]}'{suggest(unknown[0], fields)}; "
                              f"allowed: {', '.join(fields)}")
    missing = [r for r in required_fields(cls) if r not in data]
    if missing:
        raise ScopebenchError(f"{where}: missing field '{missing[0]}'")


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ScopebenchError(f"{where}: expected a mapping, got {type(data).__name__}")
    check_fields(cls, data, where)
    for name, hint in typing.get_type_hints(cls).items():
        if name in data and not _has_type(data[name], hint):
            raise ScopebenchError(f"{where}: field '{name}' must be {_type_name(hint)}, got {data[name]!r}")
    return cls(**data)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a config value fits a field's annotation (plain types, dicts, lists, ``X | None``)."""
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    origin = typing.get_origin(hint) or hint
    return not isinstance(origin, type) or isinstance(value, origin) or dataclasses.is_dataclass(value)


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
    names = [getattr(typing.get_origin(h) or h, "__name__", str(h)) for h in (args or (hint,))]
    return " or ".join("null" if n == "NoneType" else f"{'an' if n == 'int' else 'a'} {n}" for n in names)


def config_from_dict(data: dict[str, Any], where: str, base: Path | None = None) -> ModelConfig:
    """Validate a config mapping (from YAML / JSON) into a ModelConfig; ``where`` names the file.

    ``base``: the folder of that file; the config's local paths are resolved against it (and must exist)."""
    if not isinstance(data, dict):
        raise ScopebenchError(f"{where}: the model config must be a mapping")
    data = dict(data)
    for key, cls in _SECTIONS.items():
        if key in data:
            data[key] = _build(cls, data[key], f"{where}: {key}")
    if "routed" in data:
        if not isinstance(data["routed"], dict):
            raise ScopebenchError(f"{where}: routed must map encoder names to encoder configs")
        data["routed"] = {str(k): _build(EncoderConfig, v, f"{where}: routed.{k}")
                          for k, v in data["routed"].items()}
        bad = [k for k in data["routed"]
               if not k.replace("_", "").replace("-", "").isalnum() or k == "shared"]
        if bad:
            raise ScopebenchError(f"{where}: routed encoder name '{bad[0]}' must be alphanumeric "
                                  "(with _ or -) and not 'shared'")
    cfg = _build(ModelConfig, data, where)
    for key in ("projector", "fusion"):
        allowed = {"projector": ("mlp2x_gelu", "linear"), "fusion": ("sequence", "channel")}[key]
        if getattr(cfg, key) not in allowed:
            raise ScopebenchError(f"{where}: {key} must be one of {', '.join(allowed)}, "
                                  f"got '{getattr(cfg, key)}'")
    check_layout(cfg, where)
    cfg.parsed_policy(f"{where}: policy")
    for variant, policy in cfg.variants.items():
        Policy.parse(policy, cfg.routed_names, where=f"{where}: variants.{variant}")
    remote = frozenset({"auto_map"}) if cfg.llm.trust_remote_code else frozenset()  # build_model gates it
    check_transformers_config(cfg.llm.config, f"{where}: llm.config", allow=remote)
    for name, enc in _encoders(cfg).items():
        if enc.source in SOURCES:
            check_overrides(enc.source, enc.overrides, f"{where}: {name}.overrides")
        check_transformers_config(enc.config, f"{where}: {name}.config")
        if enc.aspect not in ASPECTS:
            raise ScopebenchError(f"{where}: {name}.aspect must be one of {', '.join(ASPECTS)}, "
                                  f"got {enc.aspect!r}")
    if base is not None:
        _resolve_paths(cfg, Path(base), where)
    return cfg


def check_layout(cfg: ModelConfig, where: str) -> None:
    """The prompt layout: a template with {prompt} as its only field and one image placeholder."""
    template = cfg.prompt_template
    try:
        template.format(prompt="")
    except (KeyError, IndexError, ValueError):
        raise ScopebenchError(
            f"{where}: prompt_template {template!r} may hold no field but {{prompt}}; "
            "write literal braces as {{ and }}") from None
    count = template.count(IMAGE_PLACEHOLDER)
    if count != 1:
        what = "no" if not count else f"{count}"
        raise ScopebenchError(
            f"{where}: prompt_template {template!r} holds {what} '{IMAGE_PLACEHOLDER}' placeholder"
            f"{'s' if count else ''}; it takes exactly one, where the request's images go (max_images "
            f"{cfg.max_images}), e.g. '{IMAGE_PLACEHOLDER}\\n{{prompt}}'")
    if cfg.max_images < 1:
        raise ScopebenchError(f"{where}: max_images must be >= 1, got {cfg.max_images}")
    if cfg.system_prompt is not None and not cfg.chat_template:
        raise ScopebenchError(f"{where}: system_prompt needs chat_template: true "
                              "(or write it into prompt_template)")


def _encoders(cfg: ModelConfig) -> dict[str, EncoderConfig]:
    return {"shared": cfg.shared, **{f"routed.{k}": v for k, v in cfg.routed.items()}}


def _resolve_paths(cfg: ModelConfig, base: Path, where: str) -> None:
    """Make the local paths a config reads (``hf:`` folders, ``pretrained:``) absolute against ``base``."""
    for name, section in {"llm": cfg.llm, **_encoders(cfg)}.items():
        source, _, local = section.spec.partition(":")
        if source == "hf" and section.config is None and local and (
                local.startswith((".", "/", "~")) or (base / local).exists()):  # else a hub id
            section.spec = f"hf:{_local_path(base, local, f'{where}: {name}.spec', folder=True)}"
        if section.pretrained is not None and (name == "llm" or section.pretrained != "hub"):
            section.pretrained = str(_local_path(base, section.pretrained, f"{where}: {name}.pretrained",
                                                 folder=name == "llm"))


def _local_path(base: Path, value: str, where: str, folder: bool = False) -> Path:
    path = (base / Path(value).expanduser()).resolve()
    if not path.exists():
        raise ScopebenchError(f"{where}: {path} not found (relative paths start at the config's folder)")
    if folder and not path.is_dir():
        raise ScopebenchError(f"{where}: {path} is not a folder")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise ScopebenchError(f"{where}: {path} cannot be read; fix its permissions")
    return path
