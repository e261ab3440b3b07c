"""Encoder roles with hand-computed answers: Capacity, Necessity, rank correlations (with ties), the
marginal-gain curve, the pair, rank dynamics, and what a missing subset leaves out."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scopebench.analysis.aggregate import OVERALL
from scopebench.analysis.roles import Subset, analyse, encoder_order

RETRAINED = {"": 10, "a": 50, "b": 40, "c": 30, "a+b": 55, "a+c": 62, "b+c": 45, "a+b+c": 60}
MASKED = {"a+b": 52, "a+c": 58, "b+c": 35, "a": 48, "b": 20, "c": 25}
ERANKS = {"r:a": {"a": 10}, "r:b": {"b": 5}, "r:c": {"c": 8}, "r:a+c": {"a": 10.2, "c": 12},
          "r:a+b": {"a": 10, "b": 5}, "r:a+b+c": {"a": 9, "b": 5, "c": 10}}


def _roles(retrained=RETRAINED, masked=MASKED, eranks=ERANKS):
    subsets, scores = [], {}
    for how, table in (("retrained", retrained), ("masked", masked)):
        for name, value in table.items():
            model = f"{how[0]}:{name}"
            subsets.append(Subset(model, frozenset(filter(None, name.split("+"))), how))
            scores[model] = value
    subsets.append(Subset("r:a+b+c", frozenset("abc"), "masked"))  # the full model is its own masked full set
    frame = pd.DataFrame({OVERALL: scores})
    eranks = None if eranks is None else {
        m: {e: {OVERALL: v} for e, v in d.items()} for m, d in eranks.items()}
    return analyse(subsets, frame, "r:a+b+c", ["a", "b", "c"], eranks)


def _col(roles, column):
    return roles.per_encoder.set_index("encoder")[column].to_dict()


def _corr(roles, a, b):
    r = roles.correlations.set_index(["a", "b"]).loc[(a, b)]
    return int(r["n"]), round(r["kendall_tau"], 4), round(r["spearman_rho"], 4)


def test_capacity_necessity_rankings_and_correlations():
    roles = _roles()
    assert _col(roles, "capacity") == {"a": 50, "b": 40, "c": 30}
    assert _col(roles, "capacity_vs_shared") == {"a": 40, "b": 30, "c": 20}
    assert _col(roles, "necessity_retrained") == {"a": 15, "b": -2, "c": 5}  # 60 - (b+c, a+c, a+b)
    assert _col(roles, "necessity_masked") == {"a": 25, "b": 2, "c": 8}
    ranks = roles.rankings.set_index("encoder")
    assert ranks["capacity"].to_dict() == {"a": 1, "b": 2, "c": 3}
    assert ranks["necessity_retrained"].to_dict() == {"a": 1, "b": 3, "c": 2}
    assert _corr(roles, "Necessity masked", "Necessity retrained") == (3, 1.0, 1.0)
    # pairs (a,b) (a,c) concordant, (b,c) discordant: tau = 1/3; rank differences 0,1,1: rho = 1 - 12/24
    assert _corr(roles, "Capacity", "Necessity retrained") == (3, round(1 / 3, 4), 0.5)
    assert roles.left_out == []


def test_ties():
    roles = _roles(retrained={**RETRAINED, "c": 40})
    assert roles.rankings.set_index("encoder")["capacity"].to_dict() == {"a": 1, "b": 2, "c": 2}
    # Capacity 50,40,40 vs Necessity 15,-2,5: 2 concordant, 1 tied in x: tau-b = 2 / sqrt(2 * 3);
    # ranks (1, 2.5, 2.5) vs (1, 3, 2): rho = 1.5 / sqrt(1.5 * 2)
    assert _corr(roles, "Capacity", "Necessity retrained") == (3, round(2 / math.sqrt(6), 4),
                                                               round(1.5 / math.sqrt(3), 4))


def test_marginal_gain_curve_and_pair():
    roles = _roles()
    curve = roles.curve[roles.curve["how"] == "retrained"]
    assert curve[["size", "subset", "score", "gap_to_full"]].values.tolist() == [
        [1, "a", 50, -10], [2, "a+c", 62, 2], [3, "a+b+c", 60, 0]]
    masked = roles.curve[roles.curve["how"] == "masked"]
    assert masked["subset"].tolist() == ["a", "a+c", "a+b+c"]
    p = roles.pair
    assert (p["anchor"], p["complement"], p["pair_score"], p["pair_gap_to_full"]) == ("a", "c", 62, 2)
    assert p["best_pair_kind"] == "anchor + complement" and p["complement_capacity_rank"] == 3
    two = _roles(retrained={**RETRAINED, "a+b": 70})
    assert two.pair["best_pair"] == "a+b" and two.pair["best_pair_kind"] == "two high-Capacity encoders"


def test_rank_dynamics():
    d = _roles().dynamics
    got = {(r["role"], r["encoder"]): (round(r["ratio"], 3), r["trend"]) for r in d.to_dict("records")}
    assert got == {("best pair", "a"): (1.02, "stable"), ("best pair", "c"): (1.5, "expanding"),
                   ("full set", "a"): (0.9, "shrinking"), ("full set", "b"): (1.0, "stable"),
                   ("full set", "c"): (1.25, "expanding")}
    assert "rank dynamics: needs run directories" in _roles(eranks=None).left_out[0]


def test_missing_subset_leaves_out_exactly_what_it_cannot_support():
    roles = _roles(retrained={k: v for k, v in RETRAINED.items() if k != "b+c"})
    nec = _col(roles, "necessity_retrained")
    assert math.isnan(nec["a"]) and (nec["b"], nec["c"]) == (-2, 5)
    assert _col(roles, "capacity") == {"a": 50, "b": 40, "c": 30}
    assert roles.left_out == ["Necessity retrained: needs the full set without a"]
    assert _corr(roles, "Necessity masked", "Necessity retrained") == (2, 1.0, 1.0)  # b and c only
    bare = _roles(masked={})
    assert bare.per_encoder["necessity_masked"].isna().all()
    assert "rank correlation Necessity masked vs Necessity retrained: needs Necessity masked" in bare.left_out
    assert set(bare.curve["how"]) == {"retrained"}


@pytest.mark.parametrize("drop", ["a"])
def test_capacity_missing(drop):
    roles = _roles(retrained={k: v for k, v in RETRAINED.items() if k != drop})
    assert math.isnan(_col(roles, "capacity")["a"])
    assert "Capacity: needs the model with a alone" in roles.left_out
    assert "anchor + complement: needs every encoder's Capacity" in roles.left_out
    assert roles.pair["best_pair"] == "a+c"


BENCHES = ["mme", "MMBench-EN", "SEED-I", "gqa", "SQA-I", "MMMU", "MathVista", "AI2D", "ChartQA", "OCRBench",
           "TextVQA", "DocVQA", "MMVP", "RealWorldQA", "CV-Bench-2D", "cv_bench_3d"]


def _csv(tmp_path, retrained=RETRAINED, extra: str = "") -> str:
    """Every benchmark at the subset's score (MME-P in its 0-2000 scale), by name or task id."""
    lines = ["encoders,benchmark,score"]
    for name, value in retrained.items():
        lines += [f"{name},{b},{value * 20 if b == 'mme' else value}" for b in BENCHES]
    path = tmp_path / "subsets.csv"
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


def _cli(*args):
    from typer.testing import CliRunner

    from scopebench.cli import app

    return CliRunner().invoke(app, ["roles", *args], env={"COLUMNS": "200"})


def test_roles_csv_json(tmp_path):
    import json

    r = _cli(_csv(tmp_path), "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    overall = {x["encoder"]: x for x in doc["per_encoder"] if x["group"] == OVERALL}
    assert {e: x["necessity_retrained"] for e, x in overall.items()} == pytest.approx(
        {"a": 15, "b": -2, "c": 5})
    assert doc["pair"]["anchor"] == "a" and doc["pair"]["complement"] == "c"
    assert "Necessity masked: needs the full set masked to b+c" in doc["left_out"]
    table = _cli(_csv(tmp_path))
    assert table.exit_code == 0 and "anchor + complement" in table.stdout, table.output


@pytest.mark.parametrize("extra, message", [
    ("b+a,GQA,50\n", "subset a+b (retrained) has GQA twice"),
    ("a+d,GQA,50\n", "encoder 'd'"),
    ("a+b+c,MME-P,2001\n", "outside 0-2000"),
])
def test_roles_csv_bad_input(tmp_path, extra, message):
    r = _cli(_csv(tmp_path, extra=extra))
    assert r.exit_code == 2 and message in r.output, r.output


def test_roles_csv_benchmark_sets_differ(tmp_path):
    path = _csv(tmp_path)
    lines = [x for x in open(path).read().splitlines() if x != "b,gqa,40"]
    open(path, "w").write("\n".join(lines) + "\n")
    r = _cli(path)
    assert r.exit_code == 2 and "lacks benchmark GQA" in r.output, r.output


def test_sweep_plan_masks_every_subset_and_tags_it():
    from scopebench.evaluation.sweep import plan

    todo, total, pool = plan("demo-baseline-all", ["demo-baseline-1-conv", "demo-baseline-0"], None)
    assert total == 7 and pool == ["hires", "conv", "clip"]
    masked = {r: t["subset"] for r, t in todo.items() if t["obtained"] == "masked"}
    assert masked["demo-baseline-all@all/mask:conv,clip"] == ["hires"] and len(masked) == 6
    assert todo["demo-baseline-all"] == {"subset": pool, "obtained": "retrained"}
    assert todo["demo-baseline-1-conv"] == {"subset": ["conv"], "obtained": "retrained"}
    sized, _, _ = plan("demo-baseline-all", ["demo-baseline-1-conv"], "2")
    assert sorted(r for r, t in sized.items() if t["obtained"] == "masked") == [
        f"demo-baseline-all@all/mask:{e}" for e in ("clip", "conv", "hires")]
    assert "demo-baseline-1-conv" not in sized  # --sizes limits the retrained ones too


@pytest.mark.parametrize("args, message", [
    (["demo-scope"], "does not run a fixed set"),
    (["demo-baseline-all", "--sizes", "4"], "sizes must lie in 1-3"),
])
def test_sweep_bad_input(args, message):
    from typer.testing import CliRunner

    from scopebench.cli import app

    r = CliRunner().invoke(app, ["sweep", *args])
    assert r.exit_code == 2 and message in r.output, r.output


def test_report_published_scores_alone(tmp_path):
    """`report --scores FILE --suite cambrian16` with no run directory: Cambrian-1 averaging."""
    import json

    from typer.testing import CliRunner

    from scopebench.cli import app

    path = tmp_path / "published.csv"
    values = {b: 40 + i for i, b in enumerate(BENCHES)}  # MME-P (first) at 40 points = 800 / 2000
    path.write_text("model,benchmark,score\n" + "".join(
        f"paper,{b},{v * 20 if b == 'mme' else v}\n" for b, v in values.items()))
    r = CliRunner().invoke(app, ["report", "--scores", str(path), "--suite", "cambrian16",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["models"][0]
    assert row["MME-P"] == pytest.approx(40) and row["General (mean)"] == pytest.approx(41.5)
    assert row["overall"] == pytest.approx(47.5)  # mean of 40..55
    bare = CliRunner().invoke(app, ["report", "--scores", str(path)])
    assert bare.exit_code == 2 and "--suite NAME" in bare.output


def test_subsets_are_named_in_the_full_sets_encoder_order():
    routes = pd.DataFrame({"route": ["shared+clip", "shared", "shared+hires+conv+clip", "shared+conv",
                                     "shared+extra"]})
    assert encoder_order(routes) == ["hires", "conv", "clip", "extra"]
