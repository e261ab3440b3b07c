"""The Hugging Face hub, offline-first: is it reachable, and a config from the cache before the network."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set or the hub's host takes no connection."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_config(repo_id: str, trust_remote_code: bool = False):
    """A transformers config for a hub id: from the local cache, else from the hub if it is reachable.

    Raises OSError when neither has it, at once: offline, transformers would retry the network for
    about 30 seconds first.
    """
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(repo_id, trust_remote_code=trust_remote_code, local_files_only=True)
    except OSError:
        if not hub_reachable():
            raise
    return AutoConfig.from_pretrained(repo_id, trust_remote_code=trust_remote_code)
