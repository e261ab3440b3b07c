"""Model references: presets (configs/*.yaml), shipped demo checkpoints, and checkpoint folders.

A reference is one of
- a checkpoint folder (holds ``scopebench.json``),
- a demo model name (``demo-scope``, ``demo-baseline-0``, ... in the shipped demo folder),
- a preset name, optionally with a variant or policy: ``scope-paper``, ``scope-paper@baseline-2``,
  ``cambrian-1@fixed:clip,dinov2``;
- a checkpoint folder or demo model with an inference policy: ``demo-baseline-all@all/mask:conv``
  (drop ``conv`` from the trained all-encoders model), ``demo-scope@fixed:hires`` (force one path),
  ``demo-scope@blind`` (its own policy with every image black: vision disabled).
  The weights are the checkpoint's; only the selection policy changes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from scopebench.config import ModelConfig, Policy, config_from_dict
from scopebench.errors import ScopebenchError, suggest
from scopebench.models.checkpoint import is_checkpoint, read_config
from scopebench.paths import configs_dir, demo_checkpoints_dir


def preset_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(configs_dir().glob("*.yaml"))}


def demo_models() -> dict[str, Path]:
    root = demo_checkpoints_dir()
    return {p.name: p for p in sorted(root.iterdir()) if is_checkpoint(p)} if root.is_dir() else {}


def load_preset(name: str) -> ModelConfig:
    path = preset_files()[name]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ScopebenchError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from None
    return config_from_dict(data, str(path), base=path.parent)


def with_policy(cfg: ModelConfig, variant: str) -> ModelConfig:
    """A preset variant (named in ``variants`` or a policy string), with the routed pool pruned to what it
    uses."""
    policy_text = cfg.variants.get(variant, variant)
    try:
        policy = Policy.parse(policy_text, cfg.routed_names, where=f"model '{cfg.name}@{variant}'")
    except ScopebenchError as err:
        if variant in cfg.variants or not cfg.variants or ":" in variant or "/" in variant:
            raise
        raise ScopebenchError(
            f"model '{cfg.name}@{variant}': unknown variant{suggest(variant, list(cfg.variants))}; variants: "
            f"{', '.join(cfg.variants)} (any policy string is accepted too, e.g. "
            f"{cfg.name}@fixed:{cfg.routed_names[0]})") from err
    keep = policy.encoders_used(cfg.routed_names)
    return dataclasses.replace(
        cfg, name=f"{cfg.name}@{variant}", policy=str(policy),
        routed={k: v for k, v in cfg.routed.items() if k in keep}, variants={},
    )


def inference_policy(ref: str) -> tuple[str, str | None]:
    """``CHECKPOINT_OR_DEMO@POLICY`` -> (the checkpoint's reference, POLICY); anything else -> (ref, None).

    ``@blind`` is short for the checkpoint's own policy with vision disabled (``<policy>/blind``)."""
    base, _, policy = ref.rpartition("@")
    folder = (Path(base).expanduser() if base and is_checkpoint(Path(base).expanduser())
              else demo_models().get(base))
    if folder is None:
        return ref, None
    return base, f"{read_config(folder).policy}/blind" if policy == "blind" else policy


def _check_policy(cfg: ModelConfig, policy: str, ref: str) -> None:
    """Parse an inference policy and check the checkpoint has what it needs (a router, a token gate)."""
    need = Policy.parse(policy, cfg.routed_names, where=f"model '{ref}'").selector
    if need is not None and need != cfg.parsed_policy().selector:
        raise ScopebenchError(f"model '{ref}': the checkpoint has no {need}, "
                              f"so policy '{policy}' cannot run; "
                              "use fixed:NAME, all, random or <policy>/mask:NAME")


@dataclass(frozen=True)
class ModelRef:
    """A model reference, parsed once. ``config`` keeps the trained policy (it decides which modules exist)
    and is named like the run names the model; ``policy`` is the one it runs with; ``base`` the reference
    without ``@POLICY`` for a checkpoint or demo model (``ref`` itself otherwise)."""

    ref: str
    kind: str  # checkpoint | demo | preset
    config: ModelConfig
    folder: Path | None
    policy: str
    base: str

    @property
    def name(self) -> str:
        """The model's name in a run's tables: the config's, or the reference for a preset."""
        return self.ref if self.kind == "preset" else self.config.name

    @property
    def inference_policy(self) -> str | None:
        """The policy applied after loading (CHECKPOINT@POLICY), None when the model runs as trained."""
        return None if self.base == self.ref else self.policy

    def manifest_entry(self) -> dict[str, str | None]:
        """What a run's manifest records of the model, so later stages need not parse its name."""
        return {"ref": self.ref, "kind": self.kind,
                "checkpoint": None if self.folder is None else str(self.folder),
                "base": self.base, "policy": self.policy, "trained_policy": self.config.policy}


def resolve(ref: str, accepted: str = "a checkpoint folder, a demo model or a preset") -> ModelRef:
    """Parse a model reference: a checkpoint folder, a demo model or a preset, with an optional
    ``@VARIANT_OR_POLICY``. ``accepted``: what the calling command takes, for the unknown-model error."""
    path = Path(ref).expanduser()
    if is_checkpoint(path):
        cfg = read_config(path)
        return ModelRef(ref, "checkpoint", cfg, path, cfg.policy, ref)
    demos = demo_models()
    if ref in demos:
        cfg = read_config(demos[ref])
        return ModelRef(ref, "demo", cfg, demos[ref], cfg.policy, ref)
    base, policy = inference_policy(ref)
    if policy is not None:
        own = resolve(base, accepted)
        _check_policy(own.config, policy, ref)
        cfg = dataclasses.replace(own.config, name=f"{own.config.name}@{ref.rpartition('@')[2]}")
        return ModelRef(ref, own.kind, cfg, own.folder, policy, base)
    name, _, variant = ref.partition("@")
    presets = preset_files()
    if name in presets:
        cfg = load_preset(name)
        cfg = with_policy(cfg, variant) if variant else cfg
        return ModelRef(ref, "preset", cfg, None, cfg.policy, ref)
    if path.exists():
        raise ScopebenchError(f"{path}: not a scopebench checkpoint (no scopebench.json inside)")
    known = list(demos) + list(presets)
    raise ScopebenchError(
        f"unknown model '{ref}'{suggest(ref, known)}; give {accepted} (see `scopebench models`)"
    )


def check_device(device: str) -> None:
    """Refuse a ``--device`` other than cpu / cuda / cuda:N, or cuda without a visible GPU."""
    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ScopebenchError(f"--device must be cpu or cuda (cuda:N), got '{device}'")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ScopebenchError("--device cuda: no CUDA device is available "
                                  "(torch.cuda.is_available() is False); "
                                  "use --device cpu")


DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def run_dtype(dtype: str, device: str, folder: Path | None) -> str:
    """The dtype a model runs in: ``auto`` is the checkpoint's stored dtype on CUDA and float32 on the CPU
    (and for a preset); a dtype the device cannot run is refused."""
    if dtype not in DTYPE_CHOICES:
        raise ScopebenchError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got '{dtype}'")
    if device.split(":")[0] != "cuda":
        return "float32" if dtype == "auto" else dtype
    import torch

    from scopebench.models.weights import stored_dtype

    if dtype == "auto":
        stored = stored_dtype(folder) if folder is not None else torch.float32
        dtype = {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(stored, "float32")
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ScopebenchError("--dtype bfloat16: this GPU does not support bfloat16; use float16 or float32")
    return dtype


def load_model(ref: str, device: str = "cpu", meta: bool = False, policy: str | None = None,
               dtype: str | None = None, device_map: str | None = None, max_memory: dict | None = None,
               offload_dir: Path | None = None):
    """Instantiate a reference: checkpoints with their weights (in ``dtype``; over several devices with
    ``device_map="auto"``), presets with random (or meta) weights."""
    from scopebench.models.build import build_model
    from scopebench.models.checkpoint import load_checkpoint

    model_ref = resolve(ref)
    kind, cfg, folder = model_ref.kind, model_ref.config, model_ref.folder
    policy = policy or model_ref.inference_policy
    if device_map not in (None, "auto"):
        raise ScopebenchError(f"--device-map must be 'auto', got '{device_map}'")
    if folder is not None and not meta:
        try:
            model = load_checkpoint(folder, device="cpu" if device_map else device, dtype=dtype)
        except ScopebenchError as err:
            if kind != "demo":
                raise
            raise ScopebenchError(
                f"{err} (shipped demo model: regenerate it with `scopebench demo train`)") from None
        if device_map:
            from scopebench.models.placement import place

            model = place(model, max_memory, device, offload_dir)
    else:
        model = build_model(cfg, meta=meta)
        if not meta:
            model = model.to(device)
    model.ref = ref
    if policy:
        model.set_policy(policy)
    return model


def show_models(name: str | None, json_out: bool = False) -> None:
    """`scopebench models`: list everything, or show one reference's resolved config."""
    from rich.console import Console

    from scopebench.reporting.terminal import console as terminal_console

    console = Console()
    if name:
        found = resolve(name)
        kind, cfg, folder = found.kind, found.config, found.folder
        runs_with = found.inference_policy  # CHECKPOINT@POLICY: the config keeps the trained one
        data = {"ref": name, "kind": kind, "checkpoint": str(folder) if folder else None,
                "inference_policy": found.policy, "config": cfg.to_dict()}
        if json_out:
            print(json.dumps(data, indent=2, default=str))
            return
        console.print(f"[bold]{name}[/] ({kind}{', ' + str(folder) if folder else ''})")
        if runs_with:
            console.print(f"runs with policy {runs_with}; the config below is the checkpoint's "
                          f"(trained policy: {cfg.policy})",
                          highlight=False)
        console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), highlight=False)
        return
    rows = []
    for ref, path in preset_files().items():
        cfg = load_preset(ref)
        rows.append(("preset", ref, cfg, ", ".join(f"@{v}" for v in cfg.variants), str(path)))
    for ref, path in demo_models().items():
        rows.append(("demo", ref, read_config(path), "", str(path)))
    broken = {}  # a folder under the working directory that cannot be read is listed with its reason
    for path in sorted(Path.cwd().glob("*/scopebench.json")) + sorted(Path.cwd().glob("*/*/scopebench.json")):
        try:
            rows.append(("checkpoint", str(path.parent), read_config(path.parent), "", str(path.parent)))
        except ScopebenchError as err:
            broken[str(path.parent)] = str(err)
    if json_out:
        print(json.dumps([{"kind": k, "ref": r, "policy": c.policy, "shared": c.shared.spec,
                           "routed": {n: e.spec for n, e in c.routed.items()}, "llm": c.llm.spec,
                           "variants": list(c.variants), "path": p} for k, r, c, _, p in rows]
                         + [{"kind": "broken", "ref": r, "error": e, "path": r} for r, e in broken.items()],
                         indent=2))
        return
    from scopebench.reporting.terminal import Col, print_table

    console = terminal_console()
    cols = [Col("kind", "left"), Col("name", "left", key=True), Col("policy", "left"),
            Col("shared encoder", "left"), Col("routed encoders", "left", wrap=True), Col("LLM", "left"),
            Col("variants", "left", wrap=True)]
    print_table(console, "scopebench models", cols, [
        [kind, ref, cfg.policy, cfg.shared.spec, ", ".join(cfg.routed) or "-", cfg.llm.spec, variants]
        for kind, ref, cfg, variants, _ in rows])
    for ref, err in broken.items():
        console.print(f"[red]broken[/] {ref}: {err}", highlight=False)
