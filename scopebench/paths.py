"""Locate the data that ships with scopebench (tasks/, configs/, demo checkpoints).

From a checkout (or an editable install) they live at the repository root; in an
installed wheel they are copied into ``scopebench/_data``.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (PACKAGE_DIR / "_data" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"scopebench data folder '{name}' not found next to {PACKAGE_DIR}; "
                            "reinstall scopebench")


def tasks_dir() -> Path:
    """Folder of lmms-eval task YAMLs and suite definitions."""
    return _data_dir("tasks")


def configs_dir() -> Path:
    """Folder of model presets (YAML)."""
    return _data_dir("configs")


def demo_checkpoints_dir() -> Path:
    """Folder of the shipped demo checkpoints (one sub-folder per model)."""
    return PACKAGE_DIR / "demo" / "checkpoints"
