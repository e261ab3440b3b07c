"""The scopebench checkpoint format: a folder with

    scopebench.json       the full ModelConfig (the LLM's transformers config inlined)
    model.safetensors     every weight of the MultiEncoderVLM, or Hugging Face shards
                          (model-00001-of-0000N.safetensors + model.safetensors.index.json)
    tokenizer.json ...    the tokenizer files (transformers `save_pretrained`)

Only safetensors are read; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

from scopebench.config import IMAGE_PLACEHOLDER, ModelConfig, config_from_dict
from scopebench.errors import ScopebenchError
from scopebench.tables import TMP_SUFFIX, atomic_write_text

CONFIG_FILE = "scopebench.json"


def is_checkpoint(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).exists()


def save_checkpoint(model, folder: Path, max_shard_size: int | str = "5GB") -> Path:
    """Write config, weights (one file, or shards above ``max_shard_size``) and tokenizer into a temp folder
    beside ``folder``, then rename it into place: a checkpoint is never half-written. The LLM config is
    inlined so the folder is self-contained."""
    import shutil
    import tempfile

    from scopebench.models.weights import save_weights

    folder = Path(folder)
    data = model.cfg.to_dict()
    data["llm"]["config"] = model.llm.config.to_diff_dict() | {"model_type": model.llm.config.model_type}
    data["llm"]["pretrained"] = None
    for enc in [data["shared"], *data["routed"].values()]:
        enc["pretrained"] = None
    data.pop("variants", None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=TMP_SUFFIX))
    try:
        save_weights(model, tmp, max_shard_size)
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(data, indent=2, sort_keys=False))
        if folder.exists():  # replaced whole: no shard of an earlier save survives beside the new ones
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: Path) -> ModelConfig:
    """The checkpoint's config. A checkpoint written before prompt layouts existed (a template with no
    image placeholder, no chat template) put the visual tokens before all text: it reads as that layout."""
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise ScopebenchError(f"{folder}: no {CONFIG_FILE}; this is not a scopebench checkpoint folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ScopebenchError(f"{path}: not valid JSON (line {err.lineno}); "
                              "restore the file from the checkpoint") from None
    template = data.get("prompt_template") if isinstance(data, dict) else None
    if isinstance(template, str) and IMAGE_PLACEHOLDER not in template and not data.get("chat_template"):
        data["prompt_template"] = IMAGE_PLACEHOLDER + template
    return config_from_dict(data, str(path), base=Path(folder))


def load_checkpoint(folder: Path, device: str = "cpu", dtype: str | None = None,
                    trust_remote_code: bool = False):
    """Load a checkpoint folder into a MultiEncoderVLM (eval mode), checking every tensor. The model is
    built on the meta device and takes the stored tensors as they are (no random init, the stored
    dtype kept); ``dtype`` converts it after loading."""
    from scopebench.models.build import build_model
    from scopebench.models.weights import DTYPES, assign_weights, read_weights, weight_files

    folder = Path(folder)
    cfg = read_config(folder)
    files = weight_files(folder)
    where = files[0] if len(files) == 1 else folder  # errors name the one weights file, or the folder
    state = read_weights(where)
    tokenizer = _load_tokenizer(folder)
    model = build_model(cfg, tokenizer=tokenizer, trust_remote_code=trust_remote_code, empty=True)
    if tokenizer is not None:
        _check_vocab(tokenizer, model.llm.get_input_embeddings().num_embeddings, folder)
    assign_weights(model, state, where)
    if dtype is not None:
        model = model.to(DTYPES[dtype])
    return model.to(device).eval()


def _load_tokenizer(folder: Path):
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer_config.json").exists():
        return None
    from transformers import AutoTokenizer

    path = folder / "tokenizer.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError):
            raise ScopebenchError(f"{path}: not valid JSON; re-save the checkpoint") from None
        if not isinstance(data, dict):
            raise ScopebenchError(f"{path}: holds a JSON {type(data).__name__}, not a tokenizer object; "
                                  "re-save the checkpoint with its tokenizer")
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as err:  # malformed tokenizer files raise KeyError, TypeError, AttributeError, ...
        if not path.exists():
            raise ScopebenchError(f"{path}: missing, and the other tokenizer files cannot be "
                                  "read without it; re-save the checkpoint with its tokenizer") from None
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ScopebenchError(f"{folder}: tokenizer files cannot be read ({type(err).__name__}: {first}); "
                              "re-save the checkpoint") from None


def _check_vocab(tokenizer, rows: int, folder: Path) -> None:
    """Refuse a tokenizer whose ids run past the LLM's embedding table (the first prompt would fail)."""
    size = max([*tokenizer.get_vocab().values(), len(tokenizer) - 1]) + 1
    if size > rows:
        raise ScopebenchError(f"{folder / 'tokenizer.json'}: the tokenizer has {size} token ids but the "
                              f"LLM's embedding table has {rows} (llm.config.vocab_size); "
                              "use the tokenizer the LLM was trained with")
