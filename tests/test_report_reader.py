"""What a reader sees (#24): the HTML report, the plots, and the small things around the tables."""

from __future__ import annotations

import io
import re

import pytest
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.reporting.build import build_report
from scopebench.reporting.inputs import load_runs
from scopebench.reporting.report import run_report
from scopebench.run_dir import RunDir, folder_name
from scopebench.suites import load_suite
from tests._report_data import make_run, write_manifest

MANIFEST = {"suite": "cambrian16", "git": "0123456789abcdef", "finished": "2026-12-03T14:03:30",
            "command": ["/x/bin/scopebench", "eval", "--output", "runs/r"], "device": "cpu", "dtype": "auto",
            "versions": {"scopebench": "0.1.0", "lmms-eval": "0.7.3", "torch": "2.14.1"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "run", n_docs=20)
    costs = RunDir(run).read("costs")
    RunDir(run).write("costs", costs[costs["kind"] != "latency"])  # no latency measured
    write_manifest(run, MANIFEST)
    return run


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(load_runs([run_dir]))


def test_html_provenance_headline_captions_and_advice(run_dir, report, tmp_path):
    out = tmp_path / "r.html"
    run_report([run_dir], None, "html", None, out)
    page = out.read_text()
    text = re.sub("<[^>]+>", "", page)
    for field in ("lmms-eval 0.7.3", "0123456789ab", "2026-12-03T14:03:30", "scopebench eval --output runs/r",
                  "cpu auto"):
        assert field in text, field
    m = report.models.set_index("model").loc["demo-scope"]
    sentence = (f"demo-scope vs demo-baseline-all: {m['delta']:+.1f} points [{m['delta_low']:+.1f}, "
                f"{m['delta_high']:+.1f}] (95% CI, paired) at {100 * m['saving']:.1f}% less expected compute")
    assert f"<p class='headline'>{sentence}</p>" in page
    assert "white-space:nowrap" in page and "<span class='t'>--output</span>" in page  # no mid-token wrap
    assert "<figcaption><b>Accuracy vs compute.</b> Overall score against expected FLOPs" in page
    assert "<th>latency</th>" not in page and "no data for: latency (left out)" in page
    assert "latency ms (median ± IQR)" not in page.split("no data for: latency ms")[0].split("Cost per")[-1]


def test_advice_goes_into_the_to_complete_box(run_dir, tmp_path):
    run = tmp_path / "nocosts"
    make_run(run, n_docs=10, costs=False)
    out = tmp_path / "r.html"
    run_report([run], None, "html", None, out)
    page = out.read_text()
    box = page.split("<div class='todo'><h2>To complete this report</h2>")[1].split("</div>")[0]
    assert "<code>scopebench flops MODEL --output" in box


def test_oracle_names_what_it_leaves_out(run_dir, tmp_path):
    routes = RunDir(run_dir).read("routes")
    routes.loc[routes["benchmark"] == "MMBench-EN", "sample_score"] = float("nan")
    run = make_run(tmp_path / "r", n_docs=20)
    RunDir(run).write("routes", routes)
    from scopebench.reporting.render import oracle_sections

    caption = oracle_sections(build_report(load_runs([run])))[0].caption
    assert "left out: MMBench-EN (no per-sample scores" in caption


def test_plots_say_what_they_show(report):
    from scopebench.reporting import plots

    figs = plots.figures(report)
    try:
        ax = figs["accuracy_vs_compute"].axes[0]
        assert ax.containers and "95% interval" in ax.get_title()  # error bars
        colours = {t.get_label(): tuple(t.get_facecolor()[0]) for t in ax.collections
                   if t.get_label()[:1] != "_"}
        bars = {c.get_label(): tuple(c.patches[0].get_facecolor())
                for c in figs["categories"].axes[0].containers}
        for model, colour in bars.items():  # one colour per model across plots
            assert colours[model] == colour, model
        roles = figs["encoder_roles"].axes[0]
        assert "vs demo-baseline-0" in roles.get_title() and "demo-baseline-all minus" in roles.get_title()
        assert sum(t.get_text() == "n/a" for t in roles.texts) == 3  # no masked runs: missing, not 0
        heat = figs["routing_heatmap"]
        assert heat.axes[-1].get_ylim()[1] == pytest.approx(100)  # the colourbar in % like its cells
    finally:
        plots.close(figs)


def test_part_folders_and_offload_share_one_escape(tmp_path):
    name = "demo-baseline-all@all/mask:conv"
    assert folder_name(name) == "demo-baseline-all@all%2Fmask%3Aconv"
    run = RunDir(tmp_path)
    assert run.part(name, "t").parent.name == folder_name(name) and ":" not in str(run.part(name, "t"))
    old = tmp_path / "parts" / "demo-baseline-all@all_mask:conv" / "t"
    old.mkdir(parents=True)
    assert run.part(name, "t") == old  # a run dir of an earlier scopebench is still read


def test_tasks_match_names_and_ids_in_any_case():
    suite = load_suite("cambrian16-mini")
    assert [b.name for b in suite.select(["docvqa", "C16MINI_GQA", "realworldqa"])] == \
        ["DocVQA", "GQA", "RealWorldQA"]
    with pytest.raises(Exception, match="did you mean 'DocVQA'"):
        suite.benchmark("docvq")


def test_help_has_no_type_oddities():
    """click's notation in every --help: `MODEL` / `[MODEL]...`, flags bare (Typer writes {MODEL}, <bool>)."""
    import typer.main

    from scopebench.cli import app as cli_app

    group = typer.main.get_command(cli_app)
    commands = [[]] + [[name] for name in group.commands if name not in ("demo", "import")] + \
        [["demo", "train"], ["demo", "suite"], ["import", "llava-hf"]]
    for command in commands:
        text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"}).output
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage and "<bool>" not in text, (command, usage)
    flops = CliRunner().invoke(app, ["flops", "--help"], env={"COLUMNS": "160"}).output
    assert "scopebench flops [OPTIONS] MODEL" in flops
    assert "scopebench eval [OPTIONS] [MODEL]..." in CliRunner().invoke(app, ["eval", "-h"]).output


def test_flops_output_says_what_it_wrote(tmp_path, capsys, monkeypatch):
    import pandas as pd

    from scopebench.profiling.render import print_flops
    from tests.test_tables_width import _flops_result

    monkeypatch.setenv("COLUMNS", "160")
    RunDir(tmp_path).write("costs", pd.DataFrame({"model": ["scope-paper"]}))
    print_flops(_flops_result(), pd.DataFrame(), tmp_path)
    assert f"wrote 5 paths of scope-paper to {tmp_path / 'costs.parquet'}" in capsys.readouterr().out


def test_eval_progress_has_an_overall_bar_and_no_unknown_total():
    from scopebench.evaluation.display import EvalProgress

    progress = EvalProgress(2)
    progress.progress.console.file = io.StringIO()
    with progress:
        on_batch = progress.start("m · GQA")
        fields = {t.description: t.fields["count"] for t in progress.progress.tasks}
        assert fields == {"(model, task) parts": "0/2", "m · GQA": "setting up"}
        on_batch(4, 10)
        assert progress.progress.tasks[-1].fields["count"] == "4/10"
        progress.finish()
        progress.finish()  # a part another process finished
    overall = progress.progress.tasks[0]
    assert overall.completed == 2 and overall.fields["count"] == "2/2" and len(progress.progress.tasks) == 1
