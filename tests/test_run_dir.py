"""The run directory never loses or fakes a result: resume settings, whole-weights fingerprints, routes for
every answer, concurrent writers, cut and malformed traces, temp files, read-only disks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.models.registry import demo_models

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _eval(*args: str):
    return CliRunner().invoke(app, ["eval", *args], env=ENV)


def _routes(out: Path) -> pd.DataFrame:
    return (pd.read_parquet(out / "routes.parquet").sort_values(["model", "benchmark", "doc_id"])
            .reset_index(drop=True))


@pytest.mark.slow
def test_resume_follows_the_limit_and_rebuilds_routes(tmp_path):
    out = tmp_path / "run"
    args = ("demo-scope", "--tasks", "c16mini_gqa,c16mini_mmvp", "--output", str(out))
    first = _eval(*args, "--limit", "3")
    assert first.exit_code == 0, first.output
    more = _eval(*args, "--limit", "6")  # a resume with another --limit re-runs the parts, and says so
    assert more.exit_code == 0, more.output
    assert "2 re-run (they had --limit 3 (now 6))" in more.output
    scores = pd.read_parquet(out / "scores.parquet")
    assert sorted(scores["n"]) == [6, 6]
    assert len(pd.read_parquet(out / "routes.parquet")) == 12
    done = json.loads((out / "parts/demo-scope/c16mini_gqa/done").read_text())
    assert done["settings"]["limit"] == 6 and done["n"] == 6 and len(done["docs"]) == 16
    assert json.loads((out / "manifest.json").read_text())["models"]["demo-scope"]["limit"] == 6
    fewer = _eval(*args, "--limit", "4")  # and the other way round
    assert fewer.exit_code == 0, fewer.output
    assert sorted(pd.read_parquet(out / "scores.parquet")["n"]) == [4, 4]
    assert len(pd.read_parquet(out / "routes.parquet")) == 8, "routes of samples beyond the limit were kept"
    want = _routes(out)

    # its answers are nowhere else: answered again, routed
    shutil.rmtree(out / "parts/demo-scope/c16mini_gqa")
    again = _eval(*args, "--limit", "4")
    assert again.exit_code == 0, again.output
    assert "1 evaluated, 1 reused" in again.output
    pd.testing.assert_frame_equal(_routes(out), want)

    (out / "routes.parquet").unlink()  # a lost routes table (scores intact) is rebuilt from the parts
    (out / ".routes.parquet.x1y2.tmp").write_bytes(b"half a table")  # left by a kill inside a write
    (out / "parts/demo-scope/c16mini_mmvp/.scores.parquet.x1y2.tmp").write_bytes(b"half")
    rebuilt = _eval(*args, "--limit", "4")
    assert rebuilt.exit_code == 0, rebuilt.output
    pd.testing.assert_frame_equal(_routes(out), want)
    assert not list(out.rglob("*.tmp")), "temp files of a killed write were not cleaned up"
    assert (_routes(out)["route"] != "").all()


@pytest.mark.slow
def test_a_retrained_checkpoint_of_the_same_size_is_not_taken_for_the_old_one(tmp_path):
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(demo_models()["demo-baseline-0"], ckpt)
    out = tmp_path / "run"
    args = (str(ckpt), "--tasks", "c16mini_gqa", "--limit", "4", "--output", str(out))
    assert _eval(*args).exit_code == 0
    weights = ckpt / "model.safetensors"
    size = weights.stat().st_size
    state = load_file(str(weights))
    name = sorted(k for k in state if k.endswith("weight"))[-1]  # a tensor far past the first 4 MiB
    state[name] = state[name] * 0.5
    save_file(state, str(weights), metadata={"format": "pt", "scopebench": "1"})
    assert weights.stat().st_size == size
    refused = _eval(*args)
    assert refused.exit_code == 2
    assert "holds results of another model named 'demo-baseline-0'" in refused.output
    assert "--overwrite" in refused.output and len(refused.output.strip().splitlines()) == 1
    replaced = _eval(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "1 re-run (they had another model)" in replaced.output
    manifest = json.loads((out / "manifest.json").read_text())
    done = json.loads((out / "parts/demo-baseline-0/c16mini_gqa/done").read_text())
    assert done["settings"]["fingerprint"] == manifest["models"]["demo-baseline-0"]["fingerprint"]


def test_fingerprint_covers_every_byte_of_the_checkpoint(tmp_path):
    from scopebench.models.fingerprint import model_fingerprint

    ckpt = tmp_path / "ckpt"
    shutil.copytree(demo_models()["demo-baseline-0"], ckpt)
    before = model_fingerprint(str(ckpt))
    assert model_fingerprint(str(ckpt), dtype="bfloat16") != before
    for name in ("model.safetensors", "tokenizer.json"):
        path = ckpt / name
        data = bytearray(path.read_bytes())
        data[-2] ^= 1  # the last bytes: far past the first 4 MiB of the weights
        path.write_bytes(bytes(data))
        after = model_fingerprint(str(ckpt))
        assert after != before, f"a change to {name} kept the fingerprint"
        before = after


def test_file_digests_are_kept_under_their_stat_data(tmp_path, monkeypatch):
    """A checkpoint file's SHA-256 is kept in the digest cache and not read again while its stat data
    holds; a rewrite of the same size, or a copy, is hashed again; a cache that cannot be used changes
    nothing but the time."""
    import hashlib

    from scopebench.models import fingerprint

    monkeypatch.setenv("SCOPEBENCH_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "ckpt"
    shutil.copytree(demo_models()["demo-baseline-0"], ckpt)
    hour_ago = time.time_ns() - 3600 * 10**9
    for path in ckpt.iterdir():
        os.utime(path, ns=(hour_ago, hour_ago))  # settled: a file written just now is not kept
    real = fingerprint.folder_digest(ckpt)
    weights = str((ckpt / "model.safetensors").resolve())
    cache = json.loads(fingerprint.digest_cache().read_text())
    assert cache[weights][-1] == hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
    assert len(cache) == len(list(ckpt.iterdir()))

    fingerprint._file_digest.cache_clear()  # as a fresh process: what the cache says is used unread
    cache[weights][-1] = "0" * 64
    fingerprint.digest_cache().write_text(json.dumps(cache))
    assert fingerprint.folder_digest(ckpt) != real
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-2] ^= 1
    (ckpt / "model.safetensors").write_bytes(bytes(data))  # same size; new mtime and ctime
    os.utime(ckpt / "model.safetensors", ns=(hour_ago, hour_ago))  # even with the old mtime put back
    changed = fingerprint.folder_digest(ckpt)
    assert changed != real
    data[-2] ^= 1
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    os.utime(ckpt / "model.safetensors", ns=(hour_ago, hour_ago))
    assert fingerprint.folder_digest(ckpt) == real  # and kept again under the new stat data

    other = tmp_path / "other.safetensors"
    data[-2] ^= 1
    other.write_bytes(bytes(data))
    os.utime(other, ns=(hour_ago, hour_ago))
    os.replace(other, ckpt / "model.safetensors")  # same path, size and mtime; another inode
    assert fingerprint.folder_digest(ckpt) == changed
    for broken in ("{not json", "[1, 2]"):
        fingerprint.digest_cache().write_text(broken)
        fingerprint._file_digest.cache_clear()
        assert fingerprint.folder_digest(ckpt) == changed
    monkeypatch.setenv("SCOPEBENCH_CACHE", str(ckpt / "model.safetensors"))  # a file: cannot be a folder
    fingerprint._file_digest.cache_clear()
    assert fingerprint.folder_digest(ckpt) == changed


def test_two_evals_into_one_output_keep_both(tmp_path):
    out = tmp_path / "run"
    cmds = [[sys.executable, "-m", "scopebench.cli", "eval", model, "--tasks",
             "c16mini_gqa,c16mini_mmvp,c16mini_ai2d",
             "--limit", "4", "--output", str(out), "--json"] for model in ("demo-scope", "demo-baseline-0")]
    procs = [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["models"]) == {"demo-scope", "demo-baseline-0"}
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(scores) == len(list(out.glob("parts/*/*/done"))) == 6
    assert len(pd.read_parquet(out / "routes.parquet")) == 24


def test_reads_never_see_a_table_mid_replace(tmp_path):
    from scopebench.tables import read_table, write_table

    path = tmp_path / "scores.parquet"
    df = pd.DataFrame({"model": "m", "suite": "s", "benchmark": [f"b{i}" for i in range(3000)], "task": "t",
                       "category": "c", "metric": "x", "score": 1.0, "raw_score": 1.0, "n": 1, "stderr": 0.0})
    write_table(df, path)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, pandas as pd; from pathlib import Path; from scopebench.tables import write_table\n"
        f"p = Path({str(path)!r}); df = pd.read_parquet(p)\n"
        "for _ in range(150): write_table(df, p)")])
    reads = 0
    while writer.poll() is None:
        assert len(read_table(path, "scores")) == 3000
        reads += 1
    assert writer.returncode == 0 and reads > 0
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask()), "tables must be readable by the team"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_cut_trace_line_does_not_swallow_the_next_record(tmp_path):
    from scopebench.evaluation.adapter import ScopeLMM, read_traces

    trace = tmp_path / "trace.rank0.jsonl"
    rec = {"key": "t|1|gen|abc", "fingerprint": "f", "task": "t", "doc_id": 1, "route": "shared+a",
           "encoder": "a",
           "probs": {"a": 1.0}, "eranks": {}, "answer": "yes"}
    trace.write_text(json.dumps(rec)[:25])  # a kill or a full disk cut the last line
    ScopeLMM._log(types.SimpleNamespace(trace_path=trace), [{**rec, "doc_id": 2}])
    assert [r["doc_id"] for r in read_traces(tmp_path)] == [2]


def test_malformed_trace_lines_are_answered_again(tmp_path):
    from scopebench.evaluation.adapter import read_traces

    good = {"key": "t|1|ll|abc", "fingerprint": "f", "task": "t", "doc_id": 1, "route": "shared",
            "encoder": "",
            "probs": None, "eranks": {}, "answer": [-1.5, True]}
    bad = [[1, 2, 3], {}, {**good, "doc_id": "abc"}, {**good, "route": 5}, {**good, "answer": None},
           {**good, "probs": {"a": "x"}}, {**good, "doc_id": True}, "text"]
    lines = [json.dumps(b).encode() for b in bad] + [b"\xff\xfe{", json.dumps(good).encode()]
    (tmp_path / "trace.rank0.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert read_traces(tmp_path) == [good]


def test_a_read_only_output_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        result = _eval("demo-baseline-0", "--tasks", "c16mini_gqa", "--limit", "1", "--output",
                       str(ro / "run"))
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert result.exit_code == 2, result.output
    assert "Read-only file system; the file system is read-only" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_merge_replaces_exactly_the_rows_of_the_new_keys(tmp_path):
    """A merge replaces the old rows sharing a key with the new rows and keeps the
    rest, for one key (eval's parts) as for several."""
    from scopebench.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    keys = ["model", "benchmark"]

    def rows(model, bench, route, docs=(0,)) -> list[dict]:
        return [{"model": model, "benchmark": bench, "task": "t", "doc_id": d, "route": route, "encoder": "",
                 "sample_score": 1.0, "visual_tokens": 1, "visual_grid": None} for d in docs]

    def routes() -> dict:
        return {(r.model, r.benchmark, r.doc_id): r.route for r in run.read("routes").itertuples()}

    run.write("routes", pd.DataFrame([r for m in ("a", "b", "1") for b in "xy" for r in rows(m, b, "old")]))
    run.merge("routes", pd.DataFrame(rows("b", "y", "new", docs=(1, 2))), keys)
    assert routes() == {("a", "x", 0): "old", ("a", "y", 0): "old", ("b", "x", 0): "old",
                        ("b", "y", 1): "new", ("b", "y", 2): "new",
                        ("1", "x", 0): "old", ("1", "y", 0): "old"}
    run.merge("routes", pd.DataFrame(rows("1", "x", "two") + rows("a", "y", "two")), keys)
    assert routes() == {("a", "x", 0): "old", ("a", "y", 0): "two", ("b", "x", 0): "old",
                        ("b", "y", 1): "new", ("b", "y", 2): "new",
                        ("1", "x", 0): "two", ("1", "y", 0): "old"}
