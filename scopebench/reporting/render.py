"""Turn a Report into titled tables of strings, and render them as rich, Markdown or HTML."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import pandas as pd

from scopebench.analysis.aggregate import OVERALL
from scopebench.reporting.build import Report

UNITS = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))
FLOPS_NOTE = "FLOPs = 2 x MACs"


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    bold_rows: set[int] = field(default_factory=set)
    text: tuple[int, ...] = (0,)  # text columns (left-aligned, not wrapped); the rest are numbers
    keys: tuple[int, ...] = (0,)  # what a row is about: repeated when a terminal table is split
    wrap: tuple[int, ...] = ()  # lists of words (versions, a command line): the only cells that may wrap


def flops_unit(values) -> tuple[str, float]:
    """The largest prefix (T, G, M, K) in which the largest value is at least 0.1, e.g. ("TFLOPs", 1e12)."""
    top = max((abs(v) for v in values if isinstance(v, float | int) and math.isfinite(v)), default=1e12)
    for prefix, scale in UNITS:
        if top >= 0.1 * scale:
            return f"{prefix}FLOPs", scale
    return "KFLOPs", 1e3


def num(x, fmt: str = ".1f", na: str = "–") -> str:
    if x is None or pd.isna(x):
        return na
    text = format(float(x), fmt)
    return format(0.0, fmt) if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def human(x) -> str:
    """7.62e9 -> '7.62B'."""
    if x is None or pd.isna(x):
        return "–"
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def pct(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{100.0 * x:.1f}%"


def _model_header(report: Report) -> list[str]:
    ext = set(report.models.loc[report.models["source"] == "external", "model"])
    return [f"{m} (external)" if m in ext else m for m in report.models["model"]]


def scores_section(report: Report) -> Section:
    """Benchmarks (grouped by category) x models; category means and the overall score."""
    agg, models = report.agg, list(report.models["model"])
    rows, bold = [], set()

    def mean_row(label: str, group: str) -> list[str]:
        cells = []
        for m in models:
            if agg.is_complete(m, group):
                cells.append(num(agg.categories.loc[m, group], ".1f"))
            else:
                cells.append(f"incomplete ({int(agg.coverage.loc[m, group])}/{agg.sizes[group]})")
        return [label, *cells]

    for cat in report.suite.categories:
        for b in (b for b in report.suite.benchmarks if b.category == cat):
            rows.append([b.name, *(num(agg.benchmarks.loc[m, b.name]) for m in models)])
        bold.add(len(rows))
        rows.append(mean_row(f"{cat} (mean)", cat))
    bold.add(len(rows))
    rows.append(mean_row(OVERALL, OVERALL))
    return Section(
        f"Scores on {report.suite.name} (0-100; MME-P / 20)", ["benchmark", *_model_header(report)], rows,
        "category = plain mean of its benchmarks, overall = mean of all benchmarks (Cambrian-1); "
        "a missing benchmark makes its category incomplete",
        bold,
    )


def compute_section(report: Report) -> Section:
    """One row per model: accuracy, expected compute, latency, params, Pareto, saving and delta."""
    m = report.models
    unit, scale = flops_unit(m["expected_flops"])
    rows = []
    for r in m.to_dict("records"):
        lat = "–" if pd.isna(r["latency_ms"]) else f"{r['latency_ms']:.3g} ms (bs {int(r['latency_batch'])})"
        span = "" if pd.isna(r["saving_min"]) or r["saving_min"] == r["saving_max"] else \
            f" ({pct(r['saving_min'])}..{pct(r['saving_max'])})"
        delta = "–" if pd.isna(r["delta"]) else \
            f"{r['delta']:+.1f} [{r['delta_low']:+.1f}, {r['delta_high']:+.1f}]"
        rows.append([
            r["model"] + (" (external)" if r["source"] == "external" else ""), r["type"],
            num(r["overall"]) if r["complete"] else "incomplete",
            num(r["expected_flops"] / scale, ".3g"), lat,
            f"{human(r['params'])} / {human(r['active_params'])}",
            "*" if r["pareto"] else "", r["reference"] if isinstance(r["reference"], str) else "–",
            pct(r["saving"]) + span, delta,
        ])
    return Section(
        "Compute vs accuracy",
        ["model", "type", "overall", f"expected {unit}/sample", "latency", "params total / active", "Pareto",
         "reference", "saving vs ref (per-benchmark range)", "Δ overall vs ref [95% CI]"],
        rows,
        f"expected {unit} per sample under the observed routing, mean over benchmarks ({FLOPS_NOTE}); "
        "* = on the Pareto front (accuracy up, compute down); Δ = paired bootstrap over shared samples "
        "(2000 resamples, per-benchmark means then mean over benchmarks)",
        text=(0, 1, 7),
    )


def paths_section(report: Report) -> Section:
    p = report.paths
    unit, scale = flops_unit(p["flops"])
    order = {m: i for i, m in enumerate(report.models["model"])}
    p = p.sort_values(["model", "path"], key=lambda s: s.map(order) if s.name == "model" else s)
    rows = [[
        r["model"], r["path"], num(r["flops"] / scale, ".3g"), num(r["visual_tokens"], ".0f"),
        human(r["active_params"]),
        "–" if pd.isna(r["latency_median_ms"])
        else f"{r['latency_median_ms']:.3g} ± {r['latency_iqr_ms']:.2g}",
        num(r["batch_size"], ".0f"), str(r["device"]) if pd.notna(r["device"]) else "–",
    ] for r in p.to_dict("records")]
    return Section(
        "Cost per path", ["model", "path", unit, "visual tokens", "active params",
                          "latency ms (median ± IQR)",
                          "batch", "device"],
        rows, f"static counts per routed path ({FLOPS_NOTE})", text=(0, 1, 7), keys=(0, 1),
    )


def routing_sections(report: Report) -> list[Section]:
    out = []
    for model, part in report.routing.groupby("model", sort=False):
        shares = [c for c in part.columns if c.startswith("share:") and part[c].notna().any()]
        rows, bold = [], set()
        for i, r in enumerate(part.to_dict("records")):
            if r["level"] != "benchmark":
                bold.add(i)
            mm = "inf" if r["max_min_share"] == math.inf else num(r["max_min_share"], ".2g")
            rows.append([r["name"], str(r["n"]), *(pct(r[c]) for c in shares), num(r["confidence"], ".2f"),
                         num(r["entropy"], ".2f"), num(r["balance"], ".2f"), mm])
        out.append(Section(
            f"Routing of {model}",
            ["benchmark / category", "n", *(c.removeprefix("share:") for c in shares), "confidence",
             "entropy (nats)", "balance", "max/min share"],
            rows,
            "share of samples routed to each encoder; confidence = mean top probability; entropy = mean "
            "per-sample entropy; balance = entropy of the mean routing distribution / log E (1 = even); "
            "categories and 'all' weight benchmarks equally",
            bold,
        ))
    return out


def oracle_sections(report: Report) -> list[Section]:
    out = []
    for model, part in report.oracle.groupby("model", sort=False):
        rows = [[r["benchmark"], str(r["n"]), num(r["oracle"]), num(r["router"]), pct(r["agreement"])]
                for r in part.to_dict("records")]
        left = [b.name for b in report.suite.benchmarks if b.name not in set(part["benchmark"])]
        out.append(Section(
            f"Oracle router for {model}", ["benchmark", "n", "oracle", "router", "agreement"], rows,
            f"oracle = best per-sample score among {part['baselines'].iloc[0]} "
            "(upper bound of top-1 routing); "
            "router = the model's own score on the same samples; agreement = router's pick among the best"
            + (f"; left out: {', '.join(left)} (no per-sample scores stored for the router and every "
               "baseline)" if left else ""),
            {len(rows) - 1},
        ))
    return out


def roles_section(report: Report) -> list[Section]:
    """Capacity and Necessity of each routed encoder, per category and overall (empty without the runs)."""
    r = report.roles
    if r.empty:
        return []
    rows, bold = [], set()
    for rec in r.to_dict("records"):
        if rec["group"] == OVERALL:
            bold.add(len(rows))
        rows.append([rec["encoder"], rec["group"], num(rec["capacity"]),
                     num(rec["capacity_vs_shared"], "+.1f"),
                     num(rec["necessity_masked"], "+.1f"), num(rec["necessity_retrained"], "+.1f"),
                     num(rec["erank"], ".1f")])
    first = r.iloc[0]
    used = [f"full set: {first['full_model']}", f"shared only: {first['shared_model'] or '–'}"]
    for col, label in (("capacity_model", "Capacity"), ("masked_model", "masked"),
                       ("retrained_model", "retrained")):
        found = [m for m in dict.fromkeys(r[col]) if isinstance(m, str)]
        used.append(f"{label}: {', '.join(found) or '–'}")
    return [Section(
        "Encoder roles",
        ["encoder", "category", "Capacity", "vs shared", "Necessity (masked)", "Necessity (retrained)",
         "eff. rank"],
        rows,
        "Capacity = score with the encoder alone beside the shared encoder; Necessity = full-set score minus "
        "the score without the encoder, masked at inference or retrained without it (points, 0-100); "
        "eff. rank = mean entropy effective rank of its pre-projector features in the full model; "
        + "; ".join(used),
        bold, text=(0, 1), keys=(0, 1),
    )] + [Section(t.title, t.columns, t.rows, t.caption, text=tuple(range(t.text)), keys=tuple(range(t.text)))
          for t in _role_tables(report)]


def _role_tables(report: Report):
    """The rest of `scopebench roles`' analysis: rank correlations, best subsets, the pair, rank dynamics."""
    from scopebench.reporting.roles_view import tables

    if report.role_analysis is None:
        return []
    return [t for t in tables(report.role_analysis) if not t.title.startswith("Encoder roles")]


def vision_section(report: Report) -> list[Section]:
    """Score with and without vision per benchmark, category and overall (empty without blind runs)."""
    v = report.vision
    if v.empty:
        return []
    models = list(dict.fromkeys(v["model"]))
    order = list(dict.fromkeys(v["group"]))
    cells = {(r["model"], r["group"]): r for r in v.to_dict("records")}
    rows, bold = [], set()
    fixed = {}
    for group in order:
        level = cells[(models[0], group)]["level"]
        if level != "benchmark":
            bold.add(len(rows))
        row = [f"{group} mean" if level == "category" else group]
        for m in models:
            r = cells[(m, group)]
            row += [num(r["score"]), num(r["blind"]), num(r["gain"], "+.1f") + _gain_ci(r, fixed)]
        rows.append(row)
    pairs = ", ".join(f"{m} vs {b}" for m, b in dict.fromkeys(zip(v["model"], v["blind_model"], strict=True)))
    marks = "; ".join(f"{mark} = interval holding {', '.join(names)} at their gain"
                      for names, mark in fixed.items())
    return [Section(
        "Vision dependence",
        ["benchmark", *[c for m in models for c in (m, "blind", "gain")]],
        rows,
        "blind = the same model with vision disabled (same routes; every encoder feeding the LLM sees a "
        "black image; Cambrian-1's 'Who's answering: LLM or MLLM?'); gain = score - blind score (points, "
        "0-100), with a 95% paired-bootstrap interval over the per-sample scores; no interval for a "
        "benchmark whose score is not the mean of its stored per-sample scores "
        "(e.g. MME-P, scored on image pairs)"
        + (f"; {marks}" if marks else "") + f"; {pairs}",
        bold,
    )]


def _gain_ci(r: dict, fixed: dict[tuple[str, ...], str]) -> str:
    """' [low, high]' of a gain; a dagger when the row holds some benchmarks fixed; '(all N alike)' when
    both runs scored every sample the same (the interval is then one point)."""
    if not r["n"]:
        return ""
    if r["gain_low"] == r["gain_high"] == 0:
        return f" (same score on all {r['n']} samples)"
    held = tuple(r.get("fixed") or ())
    mark = fixed.setdefault(held, "†" * (len(fixed) + 1)) if held and r["level"] != "benchmark" else ""
    return f" [{num(r['gain_low'], '+.1f')}, {num(r['gain_high'], '+.1f')}]{mark}"


def _without_empty_columns(s: Section) -> Section:
    """``s`` without the columns that hold no value in any row; the caption names them."""
    empty = [j for j in range(len(s.columns)) if j not in s.keys and all(r[j] in ("", "–") for r in s.rows)]
    if not empty:
        return s
    keep = [j for j in range(len(s.columns)) if j not in empty]
    note = f"no data for: {', '.join(s.columns[j] for j in empty)} (left out)"
    return Section(s.title, [s.columns[j] for j in keep], [[r[j] for j in keep] for r in s.rows],
                   f"{s.caption}; {note}" if s.caption else note, s.bold_rows,
                   tuple(keep.index(j) for j in s.text if j in keep),
                   tuple(keep.index(j) for j in s.keys if j in keep))


def sections(report: Report) -> list[Section]:
    """Every table of the report, in reading order."""
    out = [scores_section(report), compute_section(report)]
    if len(report.paths):
        out.append(paths_section(report))
    out += routing_sections(report) + oracle_sections(report) + roles_section(report) + vision_section(report)
    return [_without_empty_columns(s) for s in out]


def headline(report: Report) -> list[str]:
    """One sentence per routed model compared with its reference: accuracy delta [95% CI] and saving."""
    out = []
    for r in report.models.to_dict("records"):
        if not (str(r["type"]).startswith("router") and isinstance(r["reference"], str)
                and pd.notna(r["delta"]) and pd.notna(r["saving"])):
            continue
        out.append(f"{r['model']} vs {r['reference']}: {r['delta']:+.1f} points "
                   f"[{r['delta_low']:+.1f}, {r['delta_high']:+.1f}] (95% CI, paired) at "
                   f"{pct(r['saving'])} {'less' if r['saving'] >= 0 else 'more'} expected compute")
    return out


def provenance(report: Report) -> list[list[str]]:
    """Per run directory: scopebench and library versions, git hash, date, command and device."""
    import shlex

    rows = []
    for run, m in report.manifests.items():
        versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v)
        command = m.get("command") or []
        command = shlex.join(["scopebench", *map(str, command[1:])]) if command else "–"
        rows.append([run, versions or "–", str(m.get("git") or "–")[:12], str(m.get("finished") or "–"),
                     command, " ".join(str(m[k]) for k in ("device", "dtype") if m.get(k)) or "–"])
    return rows


def header_lines(report: Report) -> list[str]:
    return [f"suite: {report.suite.name}", "runs: " + ", ".join(str(r) for r in report.runs),
            *headline(report)]


def to_rich(report: Report, console) -> None:
    """Print the report as rich tables that fit ``console`` (see ``reporting.terminal``)."""
    from scopebench.reporting.terminal import Col, print_table

    for line in header_lines(report):
        console.print(line, highlight=False)
    names = list(report.models["model"])
    for s in sections(report):
        cols = [Col(c, "left" if i in s.text else "right", key=i in s.keys) for i, c in enumerate(s.columns)]
        styles = ["bold" if i in s.bold_rows else None for i in range(len(s.rows))]
        print_table(console, s.title, cols, s.rows, s.caption, styles=styles, names=names)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown."""
    lines = ["# scopebench report", "", *(f"- {line}" for line in header_lines(report)), ""]
    for s in sections(report):
        lines += [f"## {s.title}", "", "| " + " | ".join(map(_md_cell, s.columns)) + " |",
                  "|" + "|".join("---" if i in s.text else "---:" for i in range(len(s.columns))) + "|"]
        for i, row in enumerate(s.rows):
            cells = [f"**{c}**" if i in s.bold_rows and c else c for c in map(_md_cell, row)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"_{s.caption}_" if s.caption else "", ""]
    lines += [f"> note: {n}" for n in report.notes]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
.wide{overflow-x:auto;margin-bottom:1.5em}table{border-collapse:collapse;margin:.5em 0 .2em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#fafafa;vertical-align:bottom}.l{text-align:left}tr.b td{font-weight:bold;background:#f4f4f4}
.cap{font-size:90%;color:#555;margin:-1.2em 0 1.5em;max-width:60em}.t{white-space:nowrap}
.headline{font-size:120%;font-weight:600;margin:.6em 0}
.todo{border:2px solid #d9a400;background:#fff8e1;padding:.6em 1em;margin:1em 0}
.todo h2{margin:.2em 0 .4em;font-size:110%}code{white-space:nowrap}
figure{display:inline-block;margin:1em;vertical-align:top;max-width:100%}img{max-width:100%}
figcaption{font-size:90%;color:#444;max-width:46em}td.w{white-space:normal;max-width:36em}"""


def _align(col: int, s: Section) -> str:
    return " class='l'" if col in s.text else ""


def _table_html(s: Section) -> list[str]:
    e = html.escape
    parts = [f"<h2>{e(s.title)}</h2><div class='wide'><table><tr>"]
    parts += [f"<th{_align(j, s)}>{e(c)}</th>" for j, c in enumerate(s.columns)] + ["</tr>"]
    for i, row in enumerate(s.rows):
        cls = " class='b'" if i in s.bold_rows else ""
        cells = (f"<td class='l w'>{_words(c)}</td>" if j in s.wrap else f"<td{_align(j, s)}>{e(c)}</td>"
                 for j, c in enumerate(row))
        parts.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    # the caption below the scrolling box, so that a wide table does not hide it
    return parts + ["</table></div>"] + ([f"<p class='cap'>{e(s.caption)}</p>"] if s.caption else [])


def _words(text: str) -> str:
    """A cell that may wrap, between words only (never inside '--output' or a version)."""
    return " ".join(f"<span class='t'>{html.escape(w)}</span>" for w in text.split())


def _code(text: str) -> str:
    """Escaped ``text`` with its `backticked` commands as <code>."""
    bits = html.escape(text).split("`")
    return "".join(f"<code>{b}</code>" if i % 2 else b for i, b in enumerate(bits))


def to_html(report: Report, figures: dict[str, tuple[str, str]]) -> str:
    """One self-contained HTML page; ``figures`` maps a title to (data: URI, caption)."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>scopebench report</title>"
             f"<style>{_CSS}</style></head><body><h1>scopebench report: {e(report.suite.name)}</h1>"]
    parts += [f"<p class='headline'>{e(line)}</p>" for line in headline(report)]
    prov = Section("Provenance", ["run", "versions", "git", "finished", "command", "device"],
                   provenance(report), "from each run directory's manifest.json (the last command that wrote "
                   "it)", text=(0, 1, 2, 3, 4, 5), wrap=(1, 4))
    parts += _table_html(prov)
    advice = [n for n in report.notes if "`" in n]
    if advice:
        parts.append("<div class='todo'><h2>To complete this report</h2><ul>"
                     + "".join(f"<li>{_code(n)}</li>" for n in advice) + "</ul></div>")
    for s in sections(report):
        parts += _table_html(s)
    if figures:
        parts.append("<h2>Plots</h2>")
        parts += [f"<figure><img alt='{e(t)}' src='{uri}'><figcaption><b>{e(t)}.</b> {e(cap)}</figcaption>"
                  "</figure>" for t, (uri, cap) in figures.items()]
    others = [n for n in report.notes if n not in advice]
    if others:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_code(n)}</li>" for n in others) + "</ul>")
    return "\n".join(parts) + "\n</body></html>\n"
