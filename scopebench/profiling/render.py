"""Rich tables for `scopebench flops` and `scopebench latency`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from scopebench.reporting import terminal
from scopebench.reporting.terminal import Col, print_table
from scopebench.run_dir import RunDir

G = 1e9


def _num(x: float, fmt: str = ",.2f") -> str:
    """``fmt`` for ordinary values, 3 significant digits for small ones (tiny models)."""
    return format(x, fmt) if x == 0 or abs(x) >= 1 else format(x, ".3g")


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _saving(s: float | None) -> str:
    return "-" if s is None else f"{100 * s:.1f}%"


def _path_label(p: dict) -> str:
    return "shared+all (reference)" if p["reference"] else p["path"]


def print_flops(result: dict, expected=None, output: Path | None = None) -> None:
    """Per-path summary, per-component breakdown, uncounted ops, notes and what was written."""
    console = terminal.console()
    has_llm = result["prompt_tokens"] is not None
    layout = f" + {result['layout_tokens']} of the prompt layout" if result.get("layout_tokens") else ""
    context = (f"prompt {result['prompt_tokens']} tokens{layout}, {result['generated_tokens']} generated; "
               if has_llm else "")
    cols = [Col("path", "left", key=True), Col("visual tokens"), Col("GMACs"), Col("GFLOPs")]
    cols += [Col("decode GFLOPs/token")] if has_llm else []
    cols += [Col("params"), Col("active")]
    routed = any(p["saving_vs_all"] is not None for p in result["paths"])
    cols += [Col("saving vs all")] if routed else []
    rows = []
    for p in result["paths"]:
        row = [_path_label(p), str(p["visual_tokens"]), _num(p["total"]["macs"] / G, ",.1f"),
               _num(p["total"]["flops"] / G, ",.1f")]
        row += [_num(p["decode_per_token"]["flops"] / G)] if has_llm else []
        row += [_params(p["params"]), _params(p["active_params"])]
        row += [_saving(p["saving_vs_all"])] if routed else []
        rows.append(row)
    print_table(console, f"{result['model']}: compute per path ({context}counter {result['counter']}, "
                         f"device {result['device']}; FLOPs = 2 x MACs)", cols, rows)
    rows, sections = [], set()
    for p in result["paths"]:
        for i, (name, c) in enumerate(p["components"].items()):
            rows.append([_path_label(p) if i == 0 else "", name, _num(c["macs"] / G, ",.3f"),
                         _num(c["flops"] / G, ",.3f"), _params(c["params"]), c["counter"]])
        sections.add(len(rows) - 1)
    print_table(console, "per component", [
        Col("path", "left", key=True), Col("component", "left", key=True), Col("GMACs"), Col("GFLOPs"),
        Col("params"), Col("counter", "left")], rows, sections=sections)
    ref = next((p for p in result["paths"] if p["reference"]), None)
    if ref is not None:
        console.print(f"shared+all (reference) = {ref['path']}: the all-encoders path of the same pool, "
                      "which this policy never takes (counted without the router); "
                      "saving = 1 - total / reference total.",
                      highlight=False)
    if has_llm:
        console.print("llm_decode = generated tokens after the first (the prefill yields the first); "
                      "decode GFLOPs/token is one step at context = visual + prompt tokens.", highlight=False)
    ops = result["unsupported_ops"]
    if ops:
        listed = ", ".join(f"{op} x{n}" for op, n in ops.items())
        console.print(f"[bold]not counted[/] (no matmul-class cost; calls over the counted components): "
                      f"{listed}",
                      highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if output is not None:
        _print_expected(console, expected, output)
        written = f"{len(result['paths'])} paths" + (f" and {len(expected)} benchmarks' expected costs"
                                                      if expected is not None and len(expected) else "")
        console.print(f"wrote {written} of {result['model']} to {RunDir(output).file('costs')}",
                      highlight=False)


def _print_expected(console: Console, expected, output: Path) -> None:
    if not len(expected):
        console.print(f"no routes for this model in {output}: wrote per-path costs only "
                      "(expected costs need `scopebench eval` routes)", highlight=False)
        return
    rows = []
    for _, r in expected.iterrows():
        saving = r.get("saving_vs_all")
        rows.append([str(r["benchmark"]), _num(float(r["flops"]) / G),
                     "-" if saving is None or saving != saving else f"{100 * saving:.1f}%"])
    print_table(console, f"expected compute under the observed routing ({output})",
                [Col("benchmark", "left", key=True), Col("expected GFLOPs"), Col("saving vs all encoders")],
                rows)


def print_latency(result: dict) -> None:
    """Per path and component: median ± IQR, achieved TFLOP/s and fraction of peak."""
    console = terminal.console()
    peak = result.get("peak_tflops")
    title = (f"{result['model']}: latency on {result['device']} ({result['dtype']}, batch "
             f"{result['batch_size']}, {result['repeats']} repeats"
             + (f", {result['threads']} threads" if result.get("threads") else "") + ")")
    cols = [Col("path", "left", key=True), Col("component", "left", key=True), Col("median ms"),
            Col("IQR ms"), Col("GFLOPs"), Col("TFLOP/s")] + ([Col("of peak")] if peak else [])
    rows, sections = [], set()
    for p in result["paths"]:
        timed = {**p["components"], "total (first token)": p["total"]}
        for i, (name, t) in enumerate(timed.items()):
            row = [p["path"] if i == 0 else "", name, _num(t["median_ms"], ",.3f"), _num(t["iqr_ms"], ",.3f"),
                   _num(t["flops"] / G), _num(t["tflops"], ",.3f")]
            row += ([f"{100 * t['peak_fraction']:.1f}%" if t.get("peak_fraction") is not None else "-"]
                    if peak else [])
            rows.append(row)
        sections.add(len(rows) - 1)
    print_table(console, title, cols, rows, sections=sections)
