"""Find and prepare lmms-eval tasks: index only the task folders a suite needs, and fail fast
(one clear line) when a task's dataset is neither local nor reachable."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from scopebench.errors import ScopebenchError, suggest
from scopebench.hub import hub_reachable
from scopebench.suites import Suite


def lmms_tasks_root() -> Path:
    import lmms_eval

    return Path(lmms_eval.__file__).parent / "tasks"


@cache
def _task_folders() -> dict[str, Path]:
    """lmms-eval task id -> folder of its YAML, by a text scan (no YAML parsing, no imports)."""
    found: dict[str, Path] = {}
    pattern = re.compile(r"^task:\s*['\"]?([\w.\-]+)['\"]?\s*$", re.M)
    for path in lmms_tasks_root().rglob("*.yaml"):
        try:
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        for name in pattern.findall(text):
            found.setdefault(name, path.parent)
    return found


def task_folder(task: str) -> Path:
    """The lmms-eval folder that defines ``task`` (ScopebenchError with a suggestion if none)."""
    folders = _task_folders()
    if task not in folders:
        raise ScopebenchError(f"unknown lmms-eval task '{task}'{suggest(task, folders)}; "
                              "check the task id in the suite file")
    return folders[task]


def task_manager(suite: Suite, tasks: list[str]):
    """A TaskManager that indexes only the folders of ``tasks`` (plus the suite's own task folder)."""
    from lmms_eval.tasks import TaskManager

    paths: list[str] = []
    local = set()
    if suite.task_dir is not None:
        include = suite_include_path(suite)
        paths.append(str(include))
        local = {p.stem for p in Path(include).glob("*.yaml")} | _declared_tasks(Path(include))
    for t in tasks:
        if t not in local:
            try:
                folder = str(task_folder(t))
            except ScopebenchError as err:
                raise ScopebenchError(f"{suite.source}: {err}") from None
            if folder not in paths:
                paths.append(folder)
    return TaskManager(verbosity="ERROR", include_path=paths, include_defaults=False)


def _declared_tasks(folder: Path) -> set[str]:
    pattern = re.compile(r"^task:\s*['\"]?([\w.\-]+)", re.M)
    return {n for p in folder.glob("*.yaml") for n in pattern.findall(p.read_text(errors="ignore"))}


def suite_include_path(suite: Suite) -> Path:
    """The include path for a suite's own tasks (the shipped mini suite resolves its data files first)."""
    from scopebench.paths import tasks_dir

    if suite.task_dir is not None and suite.task_dir.resolve() == (tasks_dir() / "cambrian16_mini").resolve():
        from scopebench.demo.suite_data import check_mini_suite_files, mini_task_include_path

        check_mini_suite_files()
        return mini_task_include_path()
    if suite.task_dir is None or not suite.task_dir.is_dir():
        raise ScopebenchError(f"{suite.source}: task_dir {suite.task_dir} is not a folder")
    return suite.task_dir


def task_config(manager, task: str) -> dict:
    """The task's full config, made ready for an offline, login-free run."""
    if task not in manager.task_index:
        raise ScopebenchError(f"unknown lmms-eval task '{task}'; check the task id in the suite file")
    config = dict(manager._get_config(task))
    kwargs = dict(config.get("dataset_kwargs") or {})
    if kwargs.get("token") is True and not _have_hf_token():
        kwargs.pop("token")  # public datasets need no login
    config["dataset_kwargs"] = kwargs
    check_dataset(task, config)
    return config


def _have_hf_token() -> bool:
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return (home / "token").exists()


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()


def dataset_is_cached(repo: str) -> bool:
    """True when the hub dataset ``repo`` is in the hub cache or the `datasets` cache."""
    hub = Path(os.environ.get("HF_HUB_CACHE", _hf_home() / "hub")).expanduser()
    ds = Path(os.environ.get("HF_DATASETS_CACHE", _hf_home() / "datasets")).expanduser()
    wanted = {f"datasets--{repo.replace('/', '--')}".lower(), repo.replace("/", "___").lower()}
    for root in (hub, ds):
        if root.is_dir() and any(p.name.lower() in wanted for p in root.iterdir()):
            return True
    return False


def download_command() -> str:
    """The installed huggingface_hub's download command: `hf download` since 0.34, `huggingface-cli`
    before."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        return ("hf download" if Version(version("huggingface_hub")) >= Version("0.34")
                else "huggingface-cli download")
    except PackageNotFoundError:
        return "hf download"


def check_dataset(task: str, config: dict) -> None:
    """Fail fast when a task's data is neither local, cached, nor downloadable."""
    path = str(config.get("dataset_path", ""))
    kwargs = config.get("dataset_kwargs") or {}
    if path in ("parquet", "json", "csv", "arrow", "imagefolder"):
        files = kwargs.get("data_files") or {}
        for f in files.values() if isinstance(files, dict) else [files]:
            for one in [f] if isinstance(f, str) else f:
                if not Path(one).exists():
                    raise ScopebenchError(f"task '{task}': data file {one} not found; "
                                          "regenerate or download it")
        return
    if not path or Path(path).expanduser().exists() or dataset_is_cached(path):
        if not hub_reachable(timeout=1.0):
            os.environ["HF_DATASETS_OFFLINE"] = "1"  # use the cache without retrying the network
        return
    if not hub_reachable():
        raise ScopebenchError(
            f"task '{task}': dataset '{path}' is not in the local Hugging Face cache ({_hf_home()}) "
            "and the hub is "
            f"unreachable; on a connected machine run `{download_command()} --repo-type dataset {path}` "
            f"(or one `scopebench eval` of the task) and copy the cache here, then run with HF_HUB_OFFLINE=1"
        )
