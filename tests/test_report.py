"""`scopebench report` end to end on synthetic run directories: every --format, plots, bad input."""

from __future__ import annotations

import io
import json
import re
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.errors import ScopebenchError
from scopebench.reporting.report import run_report
from scopebench.run_dir import RunDir
from tests._report_data import ENCODERS, make_run, path_macs, write_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "run", n_docs=30)


@pytest.fixture(scope="module")
def truth(run_dir):
    """Known answers computed here, independently of scopebench.analysis."""
    scores = RunDir(run_dir).read("scores")
    routes = RunDir(run_dir).read("routes")
    overall = scores.groupby("model")["score"].mean()
    scope = routes[routes["model"] == "demo-scope"]
    macs = {e: path_macs([e]) for e in ENCODERS}
    per_bench = scope.groupby("benchmark")["encoder"].apply(lambda s: sum(macs[e] for e in s) / len(s))
    saving = 1 - per_bench.mean() / path_macs(ENCODERS)
    return {"overall": overall, "scope_tflops": 2 * per_bench.mean() / 1e12, "saving": saving}


def invoke(*args):
    result = runner.invoke(app, ["report", *map(str, args)])
    return result


def test_table_format_shows_scores_compute_routing_and_oracle(run_dir, truth):
    r = runner.invoke(app, ["report", str(run_dir)], env={"COLUMNS": "300"})  # a model's row on one line
    assert r.exit_code == 0, r.output
    out = r.stdout
    for title in ("Scores on cambrian16", "Compute vs accuracy", "Cost per path", "Routing of demo-scope",
                  "Oracle router for demo-scope"):
        assert title in out
    scope_line = next(line for line in out.splitlines()
                      if line.startswith("│ demo-scope ") and "router" in line)
    assert f"{truth['overall']['demo-scope']:.1f}" in scope_line
    assert f"{truth['scope_tflops']:.3g}" in scope_line
    assert f"{100 * truth['saving']:.1f}%" in scope_line
    assert re.search(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", scope_line)  # delta with its 95% CI
    assert "demo-baseline-all" in scope_line  # the reference, found automatically


def test_csv_format_is_the_joined_model_table(run_dir, truth):
    r = invoke(run_dir, "--format", "csv")
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout)).set_index("model")
    assert len(df) == 6
    for model, value in truth["overall"].items():
        assert df.loc[model, "overall"] == pytest.approx(value)
    assert df.loc["demo-baseline-all", "expected_tflops"] == pytest.approx(2 * path_macs(ENCODERS) / 1e12)
    assert df.loc["demo-scope", "expected_tflops"] == pytest.approx(truth["scope_tflops"])
    assert df.loc["demo-scope", "saving"] == pytest.approx(truth["saving"])
    assert df.loc["demo-scope", "reference"] == "demo-baseline-all"
    assert (df.loc["demo-scope", "delta_low"] <= df.loc["demo-scope", "delta"]
            <= df.loc["demo-scope", "delta_high"])
    assert bool(df.loc["demo-baseline-all", "pareto"])  # the most accurate model is on the front
    assert not bool(df.loc["demo-baseline-1-vit_hr", "pareto"])  # dearer and worse than demo-scope


def test_json_format_and_external_scores(run_dir, tmp_path):
    ext = tmp_path / "paper.csv"
    ext.write_text("model,benchmark,score\nSCOPE-paper,MME-P,1500\nSCOPE-paper,gqa,64.0\n")
    r = invoke(run_dir, "--format", "json", "--scores", ext)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    models = {m["model"]: m for m in doc["models"]}
    assert models["SCOPE-paper"]["source"] == "external"
    assert models["SCOPE-paper"]["MME-P"] == 75.0 and models["SCOPE-paper"]["GQA"] == 64.0
    assert models["SCOPE-paper"]["overall"] is None and models["SCOPE-paper"]["complete"] is False
    routing = [row for row in doc["routing"] if row["level"] == "all"]
    assert len(routing) == 1 and sum(routing[0][f"share:{e}"] for e in ENCODERS) == pytest.approx(1.0)
    assert {row["benchmark"] for row in doc["oracle"]} >= {"Overall", "MME-P"}
    assert doc["suite"] == "cambrian16"


def test_markdown_format(run_dir, truth):
    r = invoke(run_dir, "--format", "markdown")
    assert r.exit_code == 0, r.output
    assert "## Routing of demo-scope" in r.stdout and "|---|" in r.stdout
    assert f"**{truth['overall']['demo-scope']:.1f}**" in r.stdout


def test_html_is_one_self_contained_file_and_plots_are_png_and_svg(run_dir, tmp_path):
    page, plots = tmp_path / "report.html", tmp_path / "plots"
    r = invoke(run_dir, "--format", "html", "--output", page, "--plot", plots)
    assert r.exit_code == 0, r.output
    html = page.read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert links and all(link.startswith("data:") for link in links)
    assert "<link" not in html and "<script" not in html
    assert "Compute vs accuracy" in html and "demo-scope" in html
    for stem in ("accuracy_vs_compute", "categories", "routing_heatmap", "latency"):
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (plots / f"{stem}.svg").read_text()


def test_runs_without_costs_are_reported_with_the_fix(tmp_path):
    # suite from scores table
    run = make_run(tmp_path / "nocost", n_docs=5, costs=False, manifest_suite=False)
    r = invoke(run)
    assert r.exit_code == 0, r.output
    assert "no costs: run `scopebench flops MODEL --output" in " ".join(r.stdout.split())  # notes wrap
    r = invoke(run, "--format", "csv")
    assert r.exit_code == 0 and "no costs: run `scopebench flops MODEL" in r.stderr
    assert pd.read_csv(io.StringIO(r.stdout))["expected_tflops"].isna().all()


def test_a_benchmark_without_routes_leaves_no_partial_expected_cost(run_dir, tmp_path):
    """A model scored on a benchmark it has no routes (nor stored expected cost) for gets no expected cost,
    with a note, rather than a mean over fewer benchmarks than its score; other models keep theirs."""
    run = shutil.copytree(run_dir, tmp_path / "partial")
    routes, costs = RunDir(run).read("routes"), RunDir(run).read("costs")
    gap = lambda d: (d["model"] == "demo-scope") & (d["benchmark"] == "DocVQA")  # noqa: E731
    RunDir(run).write("routes", routes[~gap(routes)])
    RunDir(run).write("costs", costs[~(gap(costs) & (costs["kind"] == "expected"))])
    before = {m["model"]: m["expected_flops"]
              for m in json.loads(invoke(run_dir, "--format", "json").stdout)["models"]}
    doc = json.loads(invoke(run, "--format", "json").stdout)
    after = {m["model"]: m["expected_flops"] for m in doc["models"]}
    assert after.pop("demo-scope") is None and before.pop("demo-scope") is not None
    assert after == before
    assert any(n.startswith("no expected cost for demo-scope: no routes or path costs for DocVQA")
               for n in doc["notes"])


def test_two_run_dirs_are_concatenated(run_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, keep in ((a, lambda m: m != "demo-scope"), (b, lambda m: m == "demo-scope")):
        d.mkdir()
        for name in ("scores", "routes", "costs"):
            t = RunDir(run_dir).read(name)
            RunDir(d).write(name, t[t["model"].map(keep)])
        write_manifest(d, {"suite": "cambrian16"})
    split = pd.read_csv(io.StringIO(invoke(a, b, "--format", "csv").stdout)).set_index("model")
    whole = pd.read_csv(io.StringIO(invoke(run_dir, "--format", "csv").stdout)).set_index("model")
    pd.testing.assert_series_equal(split["overall"].sort_index(), whole["overall"].sort_index())
    assert split.loc["demo-scope", "saving"] == pytest.approx(whole.loc["demo-scope", "saving"])
    dup = invoke(run_dir, b, "--format", "csv")
    assert dup.exit_code == 2 and "appear more than once" in dup.stderr


def test_explicit_reference_in_the_python_api(run_dir, tmp_path):
    out = tmp_path / "r.json"
    run_report([run_dir], scores=None, fmt="json", plot_dir=None, output=out,
               reference="demo-baseline-1-siglip")
    models = {m["model"]: m for m in json.loads(out.read_text())["models"]}
    assert models["demo-scope"]["reference"] == "demo-baseline-1-siglip"
    assert models["demo-baseline-1-siglip"]["reference"] is None
    with pytest.raises(ScopebenchError, match="unknown model 'nope'"):
        run_report([run_dir], scores=None, fmt="json", plot_dir=None, output=out, reference="nope")


def _variant(run_dir, base: str, name: str, encoders: list[str], shift: float, first: bool = False) -> None:
    """Add model ``name``: ``base``'s scores + ``shift`` (at most 100) on every benchmark, one route over
    ``encoders`` (its rows before every other model's when ``first``)."""
    scores, routes = RunDir(run_dir).read("scores"), RunDir(run_dir).read("routes")
    new_scores = scores[scores["model"] == base].assign(
        model=name, score=lambda d: (d["score"] + shift).clip(upper=100.0))
    new_routes = routes[routes["model"] == base].assign(model=name, route="+".join(["shared", *encoders]))
    order = (lambda old, new: [new, old]) if first else (lambda old, new: [old, new])
    RunDir(run_dir).write("scores", pd.concat(order(scores, new_scores), ignore_index=True))
    RunDir(run_dir).write("routes", pd.concat(order(routes, new_routes), ignore_index=True))


def test_encoder_roles_known_answers(run_dir, tmp_path):
    """Capacity = Baseline-1 overall; Necessity = full minus masked / retrained overall; token MoE is no
    full set."""
    run = shutil.copytree(run_dir, tmp_path / "roles")
    rest = ["convnext", "siglip"]
    _variant(run, "demo-baseline-all", "demo-baseline-all@all/mask:vit_hr", rest, -4.0)
    _variant(run, "demo-baseline-all", "baseline-2-no-vit_hr", rest, -1.5)
    # one constant all-encoders route, like Baseline-all
    _variant(run, "demo-baseline-all", "token-moe", ENCODERS, +9.0)
    # a forced path
    _variant(run, "demo-baseline-1-vit_hr", "demo-scope@fixed:vit_hr", ["vit_hr"], +20.0, first=True)
    write_manifest(run, {"suite": "cambrian16", "models": {
        "token-moe": {"fingerprint": "scope|token-moe|token_moe|0"},
        "demo-scope@fixed:vit_hr": {"fingerprint": "scope|demo-scope@fixed:vit_hr|fixed:vit_hr|0",
                                    "trained_policy": "router"},
        "demo-baseline-1-vit_hr": {"fingerprint": "scope|demo-baseline-1-vit_hr|fixed:vit_hr|0",
                                   "trained_policy": "fixed:vit_hr"},
    }})
    routes = RunDir(run).read("routes")
    full = routes["model"] == "demo-baseline-all"
    ocr = routes["benchmark"].isin(["ChartQA", "OCRBench", "TextVQA", "DocVQA"])
    routes.loc[full, "erank:vit_hr"] = 20.0
    routes.loc[full & ocr, "erank:vit_hr"] = 10.0  # 4 of 16 benchmarks
    RunDir(run).write("routes", routes)
    r = invoke(run, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    overall = RunDir(run_dir).read("scores").groupby("model")["score"].mean()
    roles = {(x["encoder"], x["group"]): x for x in doc["roles"]}
    assert {e for e, _ in roles} == set(ENCODERS)
    for e in ENCODERS:
        row = roles[(e, "Overall")]
        assert row["full_model"] == "demo-baseline-all" and row["capacity_model"] == f"demo-baseline-1-{e}"
        assert row["capacity"] == pytest.approx(overall[f"demo-baseline-1-{e}"])
        assert row["capacity_vs_shared"] == pytest.approx(overall[f"demo-baseline-1-{e}"]
                                                          - overall["demo-baseline-0"])
    assert roles[("vit_hr", "Overall")]["necessity_masked"] == pytest.approx(4.0)
    assert roles[("vit_hr", "OCR & Chart")]["necessity_retrained"] == pytest.approx(1.5)
    assert roles[("siglip", "Overall")]["necessity_masked"] is None
    assert (roles[("vit_hr", "Overall")]["erank"] == pytest.approx(17.5)
            and roles[("vit_hr", "OCR & Chart")]["erank"] == 10.0)
    assert roles[("siglip", "Overall")]["erank"] is None
    assert (any("encoder roles: left out: " in n for n in doc["notes"])
            and not any("several full-set" in n for n in doc["notes"]))
    markdown = invoke(run, "--format", "markdown").stdout
    assert "## Encoder roles" in markdown and "masked: demo-baseline-all@all/mask:vit_hr" in markdown
    assert "Encoder roles" in invoke(run, "--plot", tmp_path / "plots").stdout
    assert (tmp_path / "plots" / "encoder_roles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the section is `scopebench roles`' analysis: its best-subset curve, correlations and plots too
    curve = {(c["how"], c["size"]): c for c in doc["encoder_roles"]["curve"]}
    assert curve[("masked", 2)]["subset"] == "convnext+siglip"
    assert curve[("masked", 2)]["gap_to_full"] == pytest.approx(-4.0)
    assert "Best subset per size" in markdown and "Rank correlations" in markdown
    assert (tmp_path / "plots" / "roles_marginal_gain.png").exists()


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_input_exits_2_with_one_line(run_dir, tmp_path):
    no_routes = tmp_path / "no_routes"
    shutil.copytree(run_dir, no_routes)
    (no_routes / "routes.parquet").unlink()
    _one_line_error(invoke(no_routes), "no routes table")

    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    suite = tmp_path / "tiny.yaml"
    suite.write_text("name: tiny\nbenchmarks:\n"
                     + "".join(f"  - {{name: {b}, task: {t}, category: General, metric: m}}\n"
                               for b, t in (("MME-P", "mme"), ("GQA", "gqa"))))
    write_manifest(other, {"suite": str(suite)})
    _one_line_error(invoke(run_dir, other), "suite 'tiny' differs from suite 'cambrian16'")

    mini = make_run(tmp_path / "mini", n_docs=3, suite="cambrian16-mini")  # labelled as the full suite
    write_manifest(mini, {"suite": "cambrian16"})
    _one_line_error(invoke(mini), str(mini / "manifest.json"), "field 'suite' is 'cambrian16' but",
                    "column 'suite' says 'cambrian16-mini'")
    RunDir(mini).write("scores", RunDir(mini).read("scores").assign(suite="cambrian16"))
    _one_line_error(invoke(mini), str(mini / "scores.parquet"), "column 'task': 'c16mini_mme' is not")

    cases = {
        "model,bench,score\nx,GQA,50\n": "missing column 'benchmark'",
        "model,benchmark,score\nx,NotABench,50\n":
            "line 2: column 'benchmark': unknown benchmark or task 'NotABench'",
        "model,benchmark,score\nx,MME-P,2500\n": "line 2: score 2500 of MME-P is outside 0-2000",
        "model,benchmark,score\nx,GQA,101\n": "outside 0-100",
        "model,benchmark,score\n,GQA,50\n": "line 2: column 'model' is empty",
        "model,benchmark,score\n  ,GQA,50\n": "line 2: column 'model' is empty",
    }
    for i, (text, needle) in enumerate(cases.items()):
        csv = tmp_path / f"ext{i}.csv"
        csv.write_text(text)
        _one_line_error(invoke(run_dir, "--scores", csv), str(csv), needle)

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    manifests = {  # manifest.json content -> the one line it must give
        b"[]": "not a JSON object",
        b"\xff\xfe{}": "not valid JSON",
        b'{"models": []}': "field 'models' must be a JSON object",
        b'{"suite": "nosuch"}': "suite: unknown suite 'nosuch'",
    }
    for content, needle in manifests.items():
        (broken / "manifest.json").write_bytes(content)
        _one_line_error(invoke(broken), str(broken / "manifest.json"), needle)
    shutil.copy(run_dir / "manifest.json", broken / "manifest.json")
    RunDir(broken).write("routes", RunDir(run_dir).read("routes").assign(
        route=lambda d: d["route"].mask(d.index == 4, None)))
    _one_line_error(invoke(broken), str(broken / "routes.parquet"), "row 5: column 'route' is empty")

    _one_line_error(invoke(run_dir, "--format", "xlsx"), "--format: unknown format 'xlsx'", "table, markdown")
    _one_line_error(invoke(tmp_path / "missing"), "not a directory")
    before = (broken / "routes.parquet").read_bytes()
    _one_line_error(invoke(broken, "--format", "csv", "--output", broken / "routes.parquet"),
                    "is one of the report's inputs")
    assert (broken / "routes.parquet").read_bytes() == before
    _one_line_error(invoke(run_dir, "--output", tmp_path), f"--output {tmp_path}: is a folder")


def test_vision_dependence_known_answers(run_dir, tmp_path):
    """A blind run (every sample wrong) beside its model: gain = the model's score, with a bootstrap interval
    where scores are per-sample means; blind runs are never anyone's baseline; an unpaired one gets a note."""
    run = shutil.copytree(run_dir, tmp_path / "vision")
    scores, routes = RunDir(run).read("scores"), RunDir(run).read("routes")
    blind_scores = scores[scores["model"] == "demo-scope"].assign(model="demo-scope@blind", score=0.0)
    # not the mean of its samples: no interval
    blind_scores.loc[blind_scores["benchmark"] == "MME-P", "score"] = 10.0
    blind_routes = routes[routes["model"] == "demo-scope"].assign(model="demo-scope@blind", sample_score=0.0)
    orphan = routes[routes["model"] == "demo-baseline-all"].assign(model="demo-baseline-all@all/blind")
    RunDir(run).write("scores", pd.concat(
        [scores, blind_scores, scores[scores["model"] == "demo-baseline-all"].assign(
            model="demo-baseline-all@all/blind")], ignore_index=True))
    RunDir(run).write("routes", pd.concat([routes, blind_routes, orphan], ignore_index=True))
    costs = RunDir(run).read("costs")  # the orphan as good as Baseline-all and cheaper than anything
    cheap = costs[costs["model"] == "demo-baseline-all"].assign(model="demo-baseline-all@all/blind",
                                                                macs=lambda d: d["macs"] / 1000)
    RunDir(run).write("costs", pd.concat([costs, cheap], ignore_index=True))
    write_manifest(run, {"suite": "cambrian16", "models": {
        "demo-scope": {"fingerprint": "scope|demo-scope|router|0"},
        "demo-scope@blind": {"fingerprint": "scope|demo-scope@blind|router/blind|0",
                             "trained_policy": "router"},
        "demo-baseline-all@all/blind": {"fingerprint": "scope|x|fixed:vit_hr,convnext,siglip/blind|0"},
    }})
    r = invoke(run, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    seeing = scores[scores["model"] == "demo-scope"].set_index("benchmark")["score"]
    vision = {x["group"]: x for x in doc["vision"]}
    assert {x["model"] for x in doc["vision"]} == {"demo-scope"}
    for bench, score in seeing.items():
        row = vision[bench]
        assert row["blind_model"] == "demo-scope@blind" and row["score"] == pytest.approx(score)
        blind = 10.0 if bench == "MME-P" else 0.0
        assert row["blind"] == blind and row["gain"] == pytest.approx(score - blind)
        if bench == "MME-P":
            assert row["n"] == 0 and row["gain_low"] is None
        else:
            assert row["n"] == 30 and 0 < row["gain_low"] < row["gain"] < row["gain_high"]
    overall = vision["Overall"]  # an interval too: MME-P (no per-sample mean) held at its gain, and named
    assert overall["gain"] == pytest.approx(seeing.mean() - 10.0 / 16) and overall["n"] == 15 * 30
    assert overall["fixed"] == ["MME-P"] and overall["gain_low"] < overall["gain"] < overall["gain_high"]
    assert vision["General"]["n"] == 90 and vision["Knowledge"]["n"] == 120
    assert vision["Knowledge"]["fixed"] == []
    models = {m["model"]: m for m in doc["models"]}
    assert models["demo-scope"]["reference"] == "demo-baseline-all"
    assert (models["demo-scope@blind"]["reference"] is None
            and models["demo-baseline-all@all/blind"]["reference"] is None)
    for m in ("demo-scope@blind", "demo-baseline-all@all/blind"):  # no costs: not what the blind run pays
        assert models[m]["expected_flops"] is None and models[m]["params"] is None and not models[m]["pareto"]
        assert all(m not in {r["model"] for r in doc[t]} for t in ("expected", "paths"))
    assert models["demo-baseline-0"]["pareto"] and models["demo-scope"]["expected_flops"] is not None
    blind_note = "blind runs (demo-scope@blind, demo-baseline-all@all/blind) are left out of compute"
    assert any(n.startswith(blind_note) for n in doc["notes"])
    assert not any("no costs for demo-scope@blind" in n for n in doc["notes"])
    assert any("no vision gain for demo-baseline-all@all/blind" in n and "(demo-baseline-all@all)" in n
               for n in doc["notes"])
    markdown = invoke(run, "--format", "markdown").stdout
    assert "## Vision dependence" in markdown and "demo-scope vs demo-scope@blind" in markdown


def test_runs_without_a_router_report_every_format(run_dir, tmp_path):
    """Only fixed-path models (e.g. `scopebench eval demo-baseline-0`): no routing or oracle section, no
    crash."""
    run = shutil.copytree(run_dir, tmp_path / "fixed")
    for name in ("scores", "routes", "costs"):
        table = RunDir(run).read(name)
        RunDir(run).write(name, table[table["model"] != "demo-scope"])
    for fmt in ("table", "markdown", "json", "html"):
        r = invoke(run, "--format", fmt)
        assert r.exit_code == 0, r.output
        assert "Routing of" not in r.stdout and "demo-baseline-0" in r.stdout
    assert json.loads(invoke(run, "--format", "json").stdout)["routing"] == []
