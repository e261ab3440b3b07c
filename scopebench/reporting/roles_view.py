"""`scopebench roles`: the encoder-roles analysis of run directories and / or a CSV of subset scores, as a
terminal table, Markdown or JSON, and its plots (marginal-gain curve, Capacity vs Necessity, rank
dynamics)."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scopebench.analysis.aggregate import OVERALL, aggregate
from scopebench.analysis.roles import (
    Roles,
    Subset,
    analyse,
    check_subsets,
    encoder_order,
    mean_erank,
    run_subsets,
)
from scopebench.errors import ScopebenchError
from scopebench.reporting.inputs import scored_row
from scopebench.suites import Suite, load_suite

FORMATS = ("table", "markdown", "json")
CSV_COLUMNS = ("encoders", "benchmark", "score")
SHARED_ONLY = ("", "none", "shared")  # an `encoders` cell naming the shared-only model


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    text: int = 1  # the first ``text`` columns are names (left-aligned); the rest numbers


def read_subset_csv(path: Path, suite: Suite) -> tuple[list[Subset], pd.DataFrame, list[str]]:
    """A CSV ``encoders,benchmark,score[,how]`` (scores in each benchmark's native scale; ``how``:
    retrained, the default, or masked) -> its subsets and a long (model, benchmark, score 0-100) table."""
    try:
        df = pd.read_csv(path, dtype={"encoders": str}, keep_default_na=False)
    except FileNotFoundError:
        raise ScopebenchError(
            f"{path}: file not found; pass a CSV with columns encoders,benchmark,score"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise ScopebenchError(f"{path}: not a readable CSV; write columns encoders,benchmark,score") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ScopebenchError(
            f"{path}: missing column '{missing[0]}'; the header must be "
            "encoders,benchmark,score (optionally how)"
        )
    names: dict[tuple[frozenset, str], str] = {}
    rows, seen, pool = [], set(), []
    for i, rec in enumerate(df.to_dict("records"), start=2):
        where = f"{path}: line {i}"
        cell = str(rec["encoders"]).strip()
        encoders = (
            frozenset() if cell.casefold() in SHARED_ONLY else frozenset(e.strip() for e in cell.split("+"))
        )
        pool += [] if not encoders else [e.strip() for e in cell.split("+")]
        if "" in encoders:
            raise ScopebenchError(
                f"{where}: column 'encoders': '{cell}' has an empty name; join names by '+'"
            )
        how = str(rec.get("how") or "retrained").strip()
        if how not in ("retrained", "masked"):
            raise ScopebenchError(f"{where}: column 'how': '{how}'; write retrained or masked")
        label = "+".join(sorted(encoders)) or "shared"
        model = names.setdefault((encoders, how), label if how == "retrained" else f"{label} (masked)")
        bench, value = scored_row(rec, suite, where)
        if (model, bench.name) in seen:
            raise ScopebenchError(f"{where}: subset {label} ({how}) has {bench.name} twice; keep one row")
        seen.add((model, bench.name))
        rows.append({"model": model, "benchmark": bench.name, "score": bench.native_to_percent(value)})
    if not rows:
        raise ScopebenchError(f"{path}: no rows; write one row per subset and benchmark")
    subsets = [Subset(m, enc, how) for (enc, how), m in names.items()]
    return subsets, pd.DataFrame(rows), list(dict.fromkeys(pool))


def load_roles(sources: list[Path], full: str | None = None, suite_name: str | None = None) -> Roles:
    """The analysis of run directories and / or subset CSVs (``suite_name`` for CSVs alone; default
    cambrian16)."""
    from scopebench.reporting.inputs import load_runs

    if not sources:
        raise ScopebenchError("no SOURCE given; pass run directories and / or a CSV encoders,benchmark,score")
    csvs = [p for p in sources if p.suffix.lower() == ".csv"]
    dirs = [p for p in sources if p not in csvs]
    subsets, scores, eranks, notes, pool = [], [], None, [], []
    if dirs:
        runs = load_runs(dirs)
        suite = runs.suite
        if suite_name and load_suite(suite_name).name != suite.name:
            raise ScopebenchError(
                f"--suite {suite_name}: the runs are of suite '{suite.name}'; "
                "leave --suite out or pass runs of that suite"
            )
        categories = {b.name: b.category for b in suite.benchmarks}
        pool = encoder_order(runs.routes)
        found, run_full, notes = run_subsets(runs.routes, runs.models, full if not csvs else None)
        if run_full is None:
            raise ScopebenchError(
                f"{dirs[0]}: no model on one fixed encoder set; evaluate the full "
                "set and its subsets (`scopebench sweep`)"
            )
        full = full or run_full
        subsets += found
        keep = {s.model for s in found}
        scores.append(runs.scores[runs.scores["model"].isin(keep)][["model", "benchmark", "score"]])
        eranks = {
            s.model: {e: mean_erank(runs.routes, s.model, e, categories) for e in s.encoders}
            for s in found
            if s.how == "retrained"
        }
    else:
        suite = load_suite(suite_name or "cambrian16")
    for path in csvs:
        found, table, order = read_subset_csv(path, suite)
        pool += [e for e in order if e not in pool]
        taken = {s.model for s in subsets} & {s.model for s in found}
        if taken:
            raise ScopebenchError(f"{path}: subset {sorted(taken)[0]} is also in the runs; keep one")
        subsets += found
        scores.append(table)
    long = pd.concat(scores, ignore_index=True)
    retrained = [s for s in subsets if s.how == "retrained"]
    if full is None:
        if not retrained:
            raise ScopebenchError(f"{sources[0]}: no retrained subset; name the full set with --full")
        full = max(retrained, key=lambda s: len(s.encoders)).model
    if full not in {s.model for s in retrained}:
        raise ScopebenchError(
            f"--full {full}: no such subset; choose from {', '.join(s.model for s in retrained)}"
        )
    where = ", ".join(map(str, sources))
    full_set = next(s.encoders for s in retrained if s.model == full)
    if any(s.how == "masked" for s in subsets) and (full_set, "masked") not in {
        (s.encoders, s.how) for s in subsets
    }:
        subsets.append(Subset(full, full_set, "masked"))  # the full checkpoint, nothing masked
    check_subsets(subsets, full, long.groupby("model")["benchmark"].agg(set).to_dict(), where)
    if not full_set:
        raise ScopebenchError(f"{where}: the full set {full} has no routed encoder; pass a model with some")
    present = set(long.loc[long["model"] == full, "benchmark"])
    scored = [b for b in suite.benchmarks if b.name in present]
    if len(scored) < len(suite.benchmarks):  # the suite's benchmarks the subsets were scored on
        notes.append(
            f"scores over {len(scored)} of the {len(suite.benchmarks)} benchmarks of {suite.name}: "
            f"{', '.join(b.name for b in scored)}"
        )
        cats = tuple(c for c in suite.categories if any(b.category == c for b in scored))
        suite = dataclasses.replace(suite, benchmarks=tuple(scored), categories=cats)
    agg = aggregate(long, suite)
    roles = analyse(subsets, agg.categories, full, pool, eranks)
    roles.notes = notes + [
        f"suite {suite.name}: Cambrian-1 averaging (category = mean of its benchmarks, Overall = mean of all)"
    ]
    return roles


def _n(x, fmt: str = ".1f") -> str:
    return "–" if x is None or pd.isna(x) else format(x, fmt)


def _without_empty(t: Table) -> Table:
    """``t`` without the number columns that hold no value (what is left out is named apart)."""
    keep = [j for j in range(len(t.columns)) if j < t.text or any(r[j] != "–" for r in t.rows)]
    return Table(
        t.title, [t.columns[j] for j in keep], [[r[j] for j in keep] for r in t.rows], t.caption, t.text
    )


def tables(roles: Roles) -> list[Table]:
    """What the command prints, one table per part of the analysis (Overall unless said)."""
    return [_without_empty(t) for t in _tables(roles)]


def _tables(roles: Roles) -> list[Table]:
    per = roles.per_encoder
    overall = per[per["group"] == OVERALL].set_index("encoder")
    ranks = roles.rankings[roles.rankings["group"] == OVERALL].set_index("encoder")
    measures = [m for m in ("capacity", "necessity_masked", "necessity_retrained") if m in ranks]
    heads = {
        "capacity": "Capacity",
        "necessity_masked": "Necessity masked",
        "necessity_retrained": "Necessity retrained",
    }
    rows = []
    for e, r in overall.iterrows():
        rows.append(
            [
                e,
                _n(r["capacity"]),
                _n(r["capacity_vs_shared"], "+.1f"),
                _n(r["necessity_masked"], "+.1f"),
                _n(r["necessity_retrained"], "+.1f"),
                *(_n(ranks.loc[e, m], ".0f") for m in measures),
                _n(r["erank"]),
            ]
        )
    first = overall.iloc[0]
    out = [
        Table(
            "Encoder roles (Overall)",
            [
                "encoder",
                "Capacity",
                "vs shared",
                "Necessity masked",
                "Necessity retrained",
                *(f"rank {heads[m]}" for m in measures),
                "eff. rank (full)",
            ],
            rows,
            f"points 0-100; full set {roles.full} = {_n(roles.full_score)}; "
            f"shared only: {first['shared_model'] or '–'}; rank 1 = highest, ties share the best rank",
        )
    ]
    cats = per[per["group"] != OVERALL]
    if len(cats):
        out.append(
            Table(
                "Encoder roles per category",
                ["encoder", "category", "Capacity", "Necessity masked", "Necessity retrained"],
                [
                    [
                        r["encoder"],
                        r["group"],
                        _n(r["capacity"]),
                        _n(r["necessity_masked"], "+.1f"),
                        _n(r["necessity_retrained"], "+.1f"),
                    ]
                    for r in cats.to_dict("records")
                ],
                text=2,
            )
        )
    corr = roles.correlations[roles.correlations["group"] == OVERALL]
    if len(corr):
        out.append(
            Table(
                "Rank correlations (Overall)",
                ["rankings", "encoders", "Kendall tau", "Spearman rho"],
                [
                    [
                        f"{r['a']} vs {r['b']}",
                        str(r["n"]),
                        _n(r["kendall_tau"], "+.2f"),
                        _n(r["spearman_rho"], "+.2f"),
                    ]
                    for r in corr.to_dict("records")
                ],
                "scipy.stats kendalltau (tau-b) and spearmanr, ties averaged; – = undefined "
                "(fewer than 2 encoders or one measure constant)",
            )
        )
    if len(roles.curve):
        out.append(
            Table(
                "Best subset per size (marginal gain)",
                ["how", "size", "best subset", "score", "gap to full", "subsets evaluated"],
                [
                    [
                        r["how"],
                        str(r["size"]),
                        r["subset"],
                        _n(r["score"]),
                        _n(r["gap_to_full"], "+.1f"),
                        f"{r['evaluated']}/{r['of']}",
                    ]
                    for r in roles.curve.to_dict("records")
                ],
                text=3,
            )
        )
    p = roles.pair
    if p:
        rows = [
            [
                "best pair",
                p["best_pair"],
                _n(p["best_pair_score"]),
                _n(p["best_pair_gap_to_full"], "+.1f"),
                p.get("best_pair_kind", "–").replace("two high-Capacity encoders", "two high-Capacity"),
            ]
        ]
        if "anchor" in p:
            rows.insert(
                0,
                [
                    "anchor + complement",
                    p["pair"],
                    _n(p["pair_score"]),
                    _n(p["pair_gap_to_full"], "+.1f"),
                    f"{p['anchor']} + {p['complement']}",
                ],
            )
        out.append(
            Table(
                f"Pair recommendation ({p['how']} pairs)",
                ["pair", "encoders", "score", "gap to full", "kind"],
                rows,
                "anchor = the highest-Capacity encoder; complement = the encoder whose pair with it scores "
                + (
                    f"highest ({p['complement']}: Capacity rank {p['complement_capacity_rank']})"
                    if "anchor" in p
                    else "highest"
                )
                + "; kind: two high-Capacity encoders (the top two by Capacity) or anchor + complement",
                text=2,
            )
        )
    if len(roles.dynamics):
        out.append(
            Table(
                "Rank dynamics (effective rank there / alone)",
                ["model", "role", "encoder", "eff. rank", "alone", "ratio", "trend"],
                [
                    [
                        r["model"],
                        r["role"],
                        r["encoder"],
                        _n(r["erank"]),
                        _n(r["erank_alone"]),
                        _n(r["ratio"], ".2f"),
                        r["trend"],
                    ]
                    for r in roles.dynamics.to_dict("records")
                ],
                "alone = in the encoder's own single-encoder model; expanding above 1.05, "
                "shrinking below 0.95, else stable",
                text=3,
            )
        )
    return out


def to_json(roles: Roles) -> str:
    from scopebench.reporting.report import _records

    doc = {
        "full": roles.full,
        "encoders": list(roles.encoders),
        "per_encoder": _records(roles.per_encoder),
        "rankings": _records(roles.rankings),
        "correlations": _records(roles.correlations),
        "curve": _records(roles.curve),
        "pair": roles.pair,
        "dynamics": _records(roles.dynamics),
        "left_out": list(dict.fromkeys(roles.left_out)),
        "notes": roles.notes,
    }
    return json.dumps(doc, indent=2, default=float) + "\n"


def to_markdown(roles: Roles) -> str:
    lines = []
    for t in tables(roles):
        lines += [
            f"### {t.title}",
            "",
            "| " + " | ".join(t.columns) + " |",
            "|" + "|".join("---" if i < t.text else "---:" for i in range(len(t.columns))) + "|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
        lines += ["", f"_{t.caption}_" if t.caption else "", ""]
    lines += [f"- left out: {x}" for x in dict.fromkeys(roles.left_out)]
    lines += [f"- note: {x}" for x in roles.notes]
    return "\n".join(lines).rstrip() + "\n"


def print_roles(roles: Roles, out=None) -> None:
    """The tables on a console that fits them (``reporting.terminal``), then what is left out."""
    from scopebench.reporting.terminal import Col, console, print_table

    out = out or console()
    for t in tables(roles):
        cols = [Col(h, "left" if i < t.text else "right", key=i < t.text) for i, h in enumerate(t.columns)]
        print_table(out, t.title, cols, t.rows, t.caption)
    for x in dict.fromkeys(roles.left_out):
        out.print(f"left out: {x}", highlight=False, soft_wrap=True)
    for x in roles.notes:
        out.print(f"note: {x}", highlight=False, soft_wrap=True)


def figures(roles: Roles) -> dict[str, object]:
    """Marginal-gain curve, Capacity vs Necessity, rank dynamics (each only where its data exist)."""
    from scopebench.reporting.plots import _plt

    plt = _plt()
    figs = {}
    if len(roles.curve):
        fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
        for how, part in roles.curve.groupby("how", sort=False):
            line = part.set_index("size")["score"].reindex(range(1, len(roles.encoders) + 1))  # gap: missing
            ax.plot(line.index, line, marker="o" if how == "retrained" else "s", label=how)
            for r in part.to_dict("records"):
                ax.annotate(
                    r["subset"],
                    (r["size"], r["score"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.axhline(roles.full_score, color="0.3", ls="--", lw=1, label=f"full set ({roles.full})")
        ax.set_xticks(range(1, len(roles.encoders) + 1))
        ax.set(
            xlabel="encoders in the subset",
            ylabel="best overall score (0-100)",
            title="Marginal gain: best subset of each size",
        )
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
        figs["roles_marginal_gain"] = fig
    o = roles.per_encoder[roles.per_encoder["group"] == OVERALL]
    marks = [
        (c, label, m)
        for c, label, m in (("necessity_masked", "masked", "s"), ("necessity_retrained", "retrained", "o"))
        if o[c].notna().any()
    ]
    if o["capacity"].notna().any() and marks:
        fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
        for c, label, m in marks:
            ax.scatter(o["capacity"], o[c], marker=m, label=f"Necessity {label}")
            for e, x, y in zip(o["encoder"], o["capacity"], o[c], strict=True):
                ax.annotate(e, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set(
            xlabel="Capacity: overall score with the encoder alone",
            ylabel="Necessity (points)",
            title="Capacity vs Necessity, one point per encoder",
        )
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
        figs["roles_capacity_necessity"] = fig
    if len(roles.dynamics):
        fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
        d = roles.dynamics
        labels = [f"{r['encoder']}\n{r['role']}" for r in d.to_dict("records")]
        ax.bar(range(len(d)), d["ratio"], color=["C1" if t == "expanding" else "C0" for t in d["trend"]])
        ax.axhline(1, color="0.3", lw=0.8)
        ax.set_xticks(range(len(d)), labels, fontsize=7)
        ax.set(ylabel="effective rank there / alone", title="Rank dynamics (orange: expanding)")
        ax.grid(axis="y", alpha=0.3)
        figs["roles_rank_dynamics"] = fig
    return figs


def run_roles(
    sources: list[Path], full: str | None, fmt: str, plot_dir: Path | None, suite: str | None = None
) -> None:
    """`scopebench roles`: print the analysis in ``fmt`` and write its plots into ``plot_dir``."""
    from scopebench.reporting import plots

    if fmt not in FORMATS:
        raise ScopebenchError(f"--format: unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
    roles = load_roles(sources, full, suite)
    if plot_dir is not None:
        figs = figures(roles)
        try:
            written = plots.save(figs, plot_dir)
        finally:
            plots.close(figs)
        print(f"plots: {', '.join(map(str, written))}", file=sys.stderr)
    if fmt == "table":
        print_roles(roles)
    else:
        sys.stdout.write(to_json(roles) if fmt == "json" else to_markdown(roles))
