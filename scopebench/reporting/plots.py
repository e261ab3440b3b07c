"""Report plots with matplotlib (Agg): accuracy vs compute with the Pareto front, per-category bars,
routing heatmap, latency per path, encoder roles. Each is written as PNG and SVG."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from scopebench.analysis.aggregate import OVERALL
from scopebench.analysis.pareto import front_order
from scopebench.reporting.build import Report
from scopebench.reporting.render import FLOPS_NOTE, flops_unit
from scopebench.tables import atomic_write_bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "scopebench"})
    return plt


MARKERS = "osD^vP<>Xh"


def style(report: Report, model: str) -> dict:
    """The one colour and marker of ``model`` in every plot (by its place in the report); routed models are
    stars."""
    names = list(report.models["model"])
    i = names.index(model) if model in names else len(names)
    routed = report.models.loc[report.models["model"] == model, "type"].astype(str).str.startswith("router")
    return {"color": f"C{i % 10}", "marker": "*" if routed.any() else MARKERS[i % len(MARKERS)]}


def _interval(report: Report, model: str) -> tuple[float, float]:
    """Half-widths below and above a model's overall score: a 95% normal interval from the benchmarks'
    stderr (mean of independent benchmark means), 0 where unknown."""
    se = report.stderr
    if model not in se.index:
        return 0.0, 0.0
    v = se.loc[model].dropna().to_numpy(float)
    n = len(report.suite.benchmarks)
    half = 1.96 * math.sqrt(float((v ** 2).sum())) / n if len(v) else 0.0
    return half, half


def accuracy_vs_compute(report: Report):
    """Overall score vs expected FLOPs per sample; the Pareto front as a step line."""
    plt = _plt()
    m = report.models
    pts = m[m["complete"] & m["expected_flops"].notna()].reset_index(drop=True)
    unit, scale = flops_unit(pts["expected_flops"])
    x, y = pts["expected_flops"].to_numpy(float) / scale, pts["overall"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    for i, r in pts.iterrows():
        st = style(report, r["model"])
        err = np.array(_interval(report, r["model"]), ndmin=2).T
        ax.errorbar(x[i], y[i], yerr=err if err.any() else None, fmt="none", ecolor=st["color"], alpha=0.6,
                    capsize=3, zorder=2)
        ax.scatter(x[i], y[i], s=150 if st["marker"] == "*" else 50, marker=st["marker"], c=st["color"],
                   zorder=3, label=r["model"])
    front = front_order(y, x)
    if len(front):
        ax.step(x[front], y[front], where="post", ls="--", c="0.5", lw=1, label="Pareto front (circled)",
                zorder=2)
        ax.scatter(x[front], y[front], s=160, facecolors="none", edgecolors="0.3", zorder=4)
    ext = m[(m["source"] == "external") & m["complete"]]
    for i, r in enumerate(ext.itertuples()):
        ax.axhline(r.overall, ls=":", c=f"C{4 + i % 5}", lw=1.2, label=f"{r.model} (external, no cost)")
    if len(x) and x.min() > 0 and x.max() / x.min() > 10:
        ax.set_xscale("log")
    ax.margins(x=0.15, y=0.12)
    ax.set_xlabel(f"expected {unit} per sample ({FLOPS_NOTE})")
    ax.set_ylabel(f"overall score (0-100, mean of {len(report.suite.benchmarks)} benchmarks)")
    ax.set_title(f"Accuracy vs compute on {report.suite.name} (bars: 95% interval of the overall score)")
    ax.grid(alpha=0.3)
    _label_points(fig, ax, x, y, list(pts["model"]))
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncols=3, frameon=False)
    return fig


_OFFSETS = ((6, 5, "left"), (6, -13, "left"), (-6, 5, "right"), (-6, -13, "right"), (6, 14, "left"),
            (6, -22, "left"))


def _label_points(fig, ax, x, y, names: list[str]) -> None:
    """Name each point, trying a few offsets so that labels do not overlap each other."""
    renderer = fig.canvas.get_renderer()
    placed = []
    for i in np.argsort(-y, kind="stable"):
        for dx, dy, ha in _OFFSETS:
            label = ax.annotate(names[i], (x[i], y[i]), xytext=(dx, dy), textcoords="offset points",
                                fontsize=8, ha=ha)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            label.remove()
        else:
            label = ax.annotate(names[i], (x[i], y[i]), xytext=_OFFSETS[0][:2], textcoords="offset points",
                                fontsize=8)
            box = label.get_window_extent(renderer)
        placed.append(box)


def categories(report: Report):
    """Grouped bars: one group per category (and Overall), one bar per model; no bar when incomplete."""
    plt = _plt()
    groups = [*report.suite.categories, OVERALL]
    models = list(report.models["model"])
    values = report.agg.categories.reindex(index=models, columns=groups).astype(float)
    for g in groups:
        values.loc[[not report.agg.is_complete(mod, g) for mod in models], g] = np.nan
    fig, ax = plt.subplots(figsize=(max(7.5, 1.6 * len(groups) + 0.3 * len(models)), 4.8),
                           layout="constrained")
    width = 0.8 / len(models)
    pos = np.arange(len(groups))
    external = set(report.models.loc[report.models["source"] == "external", "model"])
    for i, mod in enumerate(models):
        ext = mod in external
        ax.bar(pos + (i - (len(models) - 1) / 2) * width, values.loc[mod].to_numpy(), width,
               color=style(report, mod)["color"], label=f"{mod} (external)" if ext else mod,
               hatch="//" if ext else None,
               edgecolor="white" if ext else None)
    ax.set_xticks(pos, groups)
    ax.set_ylabel("score (0-100; category = mean of its benchmarks)")
    ax.set_ylim(0, min(100, np.nanmax(values.to_numpy(), initial=0) * 1.1 + 5))
    ax.set_title(f"Scores per category on {report.suite.name} (missing bar = incomplete category)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(len(models), 3), frameon=False)
    return fig


def routing_heatmap(report: Report):
    """Benchmark x routed encoder, share of samples annotated, one panel per routed model."""
    plt = _plt()
    parts = [(mod, p[p["level"] == "benchmark"]) for mod, p in report.routing.groupby("model", sort=False)]
    cat = {b.name: b.category for b in report.suite.benchmarks}
    n_rows = max(len(p) for _, p in parts)
    fig, axes = plt.subplots(1, len(parts),
                             figsize=(2.2 + 1.3 * max(len(_shares(p)) for _, p in parts) * len(parts),
                                      1.2 + 0.32 * n_rows), layout="constrained", squeeze=False)
    for ax, (mod, p) in zip(axes[0], parts, strict=True):
        cols = _shares(p)
        grid = 100 * p[cols].to_numpy(float)
        im = ax.imshow(grid, cmap="Blues", vmin=0, vmax=100, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{math.floor(v + 0.5)}%", ha="center", va="center", fontsize=8,
                    color="white" if v > 60 else "black")
        ax.set_xticks(range(len(cols)), [c.removeprefix("share:") for c in cols])
        ax.set_yticks(range(len(p)), [f"{b} ({cat.get(b, '?')})" for b in p["name"]])
        cats = [cat.get(b) for b in p["name"]]
        for i in range(1, len(cats)):
            if cats[i] != cats[i - 1]:
                ax.axhline(i - 0.5, c="0.3", lw=1)
        ax.set_title(f"{mod}: share of samples per routed encoder")
        ax.set_xlabel("routed encoder")
    fig.colorbar(im, ax=axes[0].tolist(), label="share of the benchmark's samples (%)", shrink=0.8,
                 format="%g%%")
    return fig


def _shares(part: pd.DataFrame) -> list[str]:
    return [c for c in part.columns if c.startswith("share:") and part[c].notna().any()]


def latency(report: Report):
    """Median latency per routed path (IQR as error bar), one bar per (model, path)."""
    plt = _plt()
    p = report.paths.dropna(subset=["latency_median_ms"])
    order = {mod: i for i, mod in enumerate(report.models["model"])}
    p = p.sort_values(["model", "latency_median_ms"], key=lambda s: s.map(order) if s.name == "model" else s)
    labels = [f"{r.model}: {r.path}" for r in p.itertuples()]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.3 * len(p)), layout="constrained")
    colors = [style(report, mod)["color"] for mod in p["model"]]
    ax.barh(range(len(p)), p["latency_median_ms"], xerr=p["latency_iqr_ms"].fillna(0) / 2, color=colors,
            capsize=2)
    ax.set_yticks(range(len(p)), labels)
    ax.invert_yaxis()
    batches = ", ".join(f"{b:g}" for b in sorted(p["batch_size"].dropna().unique()))
    devices = ", ".join(sorted(p["device"].dropna().astype(str).unique()))
    ax.set_xlabel(f"median latency per forward (ms; batch {batches}; error bar spans the IQR)")
    ax.set_title(f"Latency per routed path on {devices}")
    ax.grid(axis="x", alpha=0.3)
    return fig


ROLE_COLORS = ("#4c72b0", "#dd8452", "#55a868")  # measures, not models: no model colour
ROLE_MEASURES = {"capacity_vs_shared": "Capacity - shared only", "necessity_masked": "Necessity (masked)",
                 "necessity_retrained": "Necessity (retrained)"}


def encoder_roles(report: Report):
    """Overall Capacity gain and Necessity per routed encoder (points); effective rank beside them."""
    plt = _plt()
    r = report.roles[report.roles["group"] == OVERALL].reset_index(drop=True)
    measures = [c for c in ROLE_MEASURES if r[c].notna().any() or c == "necessity_masked"]  # n/a when missing
    ranked = r["erank"].notna().any()
    fig, axes = plt.subplots(1, 2 if ranked else 1, figsize=(9 if ranked else 6.5, 3.8), layout="constrained",
                             squeeze=False, width_ratios=[2, 1] if ranked else None)
    ax, pos = axes[0][0], np.arange(len(r))
    width = 0.8 / max(len(measures), 1)
    for i, c in enumerate(measures):
        values = r[c].to_numpy(float)
        at = pos + (i - (len(measures) - 1) / 2) * width
        ax.bar(at, values, width, label=ROLE_MEASURES[c], color=ROLE_COLORS[i % len(ROLE_COLORS)])
        for x in at[np.isnan(values)]:  # a missing value is not a zero
            ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, color="0.35", rotation=90)
    ax.axhline(0, c="0.3", lw=0.8)
    ax.set_xticks(pos, r["encoder"])
    ax.set_ylabel("overall score difference (points, 0-100)")
    ax.set_xlabel("routed encoder (n/a = the run needed is missing)")
    shared = r["shared_model"].dropna()
    ax.set_title(f"Capacity: vs {shared.iloc[0] if len(shared) else 'shared only'}; "
                 f"Necessity: {r['full_model'].iloc[0]} minus it without the encoder")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    if ranked:
        ax2 = axes[0][1]
        ax2.bar(pos, r["erank"].to_numpy(float), 0.6, color="0.5")
        ax2.set_xticks(pos, r["encoder"])
        ax2.set_ylabel("effective rank of pre-projector features")
        ax2.set_title("Effective rank (full model)")
        ax2.grid(axis="y", alpha=0.3)
    return fig


def figures(report: Report) -> dict[str, object]:
    """The report's figures by file stem (only those the data supports: no compute plot without costs)."""
    m = report.models
    figs = {}
    if (m["complete"] & m["expected_flops"].notna()).any():
        figs["accuracy_vs_compute"] = accuracy_vs_compute(report)
    figs["categories"] = categories(report)
    if len(report.routing):
        figs["routing_heatmap"] = routing_heatmap(report)
    if len(report.paths) and report.paths["latency_median_ms"].notna().any():
        figs["latency"] = latency(report)
    if len(report.roles):
        figs["encoder_roles"] = encoder_roles(report)
    if report.role_analysis is not None:
        from scopebench.reporting.roles_view import figures as role_figures

        figs.update(role_figures(report.role_analysis))
    return figs


def _render(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def save(figs: dict[str, object], folder: Path) -> list[Path]:
    """Write every figure as STEM.png and STEM.svg into ``folder``."""
    written = []
    for stem, fig in figs.items():
        for fmt in ("png", "svg"):
            path = Path(folder) / f"{stem}.{fmt}"
            atomic_write_bytes(path, _render(fig, fmt))
            written.append(path)
    return written


CAPTIONS = {
    "accuracy_vs_compute": "Overall score against expected FLOPs per sample under each model's observed "
                           "routing; error bars are 95% intervals from the benchmarks' standard errors; the "
                           "dashed step is the Pareto front (circled models).",
    "categories": "Mean score per benchmark category and overall, one bar per model (a missing bar: the "
                  "category is incomplete).",
    "routing_heatmap": "Share of each benchmark's samples the router sends to each routed encoder (%).",
    "latency": "Median latency per routed path; the error bar spans the interquartile range.",
    "encoder_roles": "Capacity (the encoder alone beside the shared encoder, minus the shared-only model) "
                     "and Necessity (the full set minus the full set without the encoder), overall; "
                     "n/a where a run is missing.",
    "roles_marginal_gain": "Best overall score among the evaluated subsets of each size, masked on the full "
                           "checkpoint and retrained; the dashed line is the full set.",
    "roles_capacity_necessity": "Each routed encoder's Capacity (its score alone beside the shared encoder) "
                                "against its Necessity (the full set minus the set without it).",
    "roles_rank_dynamics": "Effective rank of each encoder's pre-projector features in the best pair and "
                           "the full set, over its rank in its own single-encoder model.",
}


def data_uris(figs: dict[str, object]) -> dict[str, tuple[str, str]]:
    """Every figure as (SVG data: URI, caption), for embedding in one self-contained HTML file."""
    return {stem.replace("_", " ").capitalize():
            ("data:image/svg+xml;base64," + base64.b64encode(_render(fig, "svg")).decode(),
             CAPTIONS.get(stem, ""))
            for stem, fig in figs.items()}


def close(figs: dict[str, object]) -> None:
    plt = _plt()
    for fig in figs.values():
        plt.close(fig)
