"""The README's bash blocks run as written, in order, in a fresh copy of the repository.

The quickstart (``make demo`` and the block after it) runs in CI; the demo blocks further down run with
``SCOPEBENCH_README=all`` (minutes more). The copy uses this environment's virtualenv: ``make`` is told not
to reinstall it (installing needs the network). Blocks that cannot run here are listed with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = {  # first line of a block -> why the test does not run it
    "scopebench assemble my-model.yaml": "needs your own model files",
    "make test": "is the test suite itself",
}
NOT_RUN_LINES = ("make test",)  # lines left out of a block that runs (the suite would run itself)
LATER = ("scopebench eval demo-baseline-all@all/mask:hires",  # the encoder-roles and check sections
         "scopebench eval demo-scope --output runs/release",
         "scopebench sweep demo-baseline-all")  # the roles section (75 s)


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def test_every_bash_block_is_run_or_skipped_for_a_reason():
    for block in bash_blocks((ROOT / "README.md").read_text()):
        first = block.strip().splitlines()[0]
        assert (first.startswith(("make demo", ".venv/bin/scopebench")) or first.startswith(LATER)
                or any(first.startswith(k) for k in NOT_RUN)), first


def _fresh_copy(tmp: Path) -> Path:
    repo = tmp / "scopebench"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    shim = tmp / "bin"
    shim.mkdir()
    make = shutil.which("make")
    (shim / "make").write_text(f'#!/bin/sh\nexec {make} -o .venv/bin/scopebench "$@"\n')
    (shim / "make").chmod(0o755)
    return repo


@pytest.mark.slow
def test_readme_blocks_run_as_written(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = _fresh_copy(tmp_path)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{repo / '.venv/bin'}:{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "120"}
    blocks = bash_blocks((repo / "README.md").read_text())
    everything = os.environ.get("SCOPEBENCH_README") == "all"
    ran = 0
    for block in blocks:
        first = block.strip().splitlines()[0]
        if any(first.startswith(k) for k in NOT_RUN) and not first.startswith("make demo"):
            continue
        if first.startswith(LATER) and not everything:
            continue
        script = "\n".join(line for line in block.splitlines() if not line.strip().startswith(NOT_RUN_LINES))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{first}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran += 1
    assert ran >= 2
    run = repo / "runs" / "cambrian16-mini"
    page = (repo / "report.html").read_text()
    assert "less expected compute" in page  # the headline: SCOPE has its all-encoders reference and costs
    assert "no costs for" not in page and "no expected cost for" not in page  # every model was counted
    assert (run / "plots" / "accuracy_vs_compute.png").exists() and (repo / "runs" / "release").is_dir()
