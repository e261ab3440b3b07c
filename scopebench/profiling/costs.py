"""Rows for the run directory's ``costs`` table from `flops` and `latency` results.

kind="path": one row per (path, component), a ``llm_decode_per_token`` row (not part of the total)
and a component="total" row carrying visual_tokens, params (whole model) and active_params.
kind="reference": the same for the all-encoders path a routed policy does not take.
kind="expected": per benchmark, path="expected", component="total": routing-weighted MACs from the
run's ``routes`` table (``scopebench.analysis.compute.expected_costs``), plus ``saving_vs_all``.
kind="latency": median / IQR milliseconds per (path, component) and total, with batch size and device.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scopebench.profiling.components import DECODE_PER_TOKEN
from scopebench.run_dir import RunDir
from scopebench.tables import conform

TOTAL = "total"
STATIC_KINDS = ("path", "reference", "expected")


def flops_rows(result: dict) -> pd.DataFrame:
    """kind=path / reference rows of a `flops` result."""
    rows = []
    for p in result["paths"]:
        base = {"model": result["model"], "kind": "reference" if p["reference"] else "path",
                "path": p["path"],
                "device": result["device"]}
        for name, c in p["components"].items():
            rows.append({**base, "component": name, "macs": c["macs"], "flops": c["flops"],
                         "params": c["params"],
                         "active_params": c["params"], "counter": c["counter"]})
        if "decode_per_token" in p:
            d = p["decode_per_token"]
            rows.append({**base, "component": DECODE_PER_TOKEN, "macs": d["macs"], "flops": d["flops"],
                         "visual_tokens": p["visual_tokens"], "counter": result["counter"]})
        counters = sorted({c["counter"] for c in p["components"].values()})
        rows.append({**base, "component": TOTAL, "visual_tokens": p["visual_tokens"],
                     "macs": p["total"]["macs"], "flops": p["total"]["flops"], "params": p["params"],
                     "active_params": p["active_params"],
                     "counter": "+".join(counters)})
    return conform(pd.DataFrame(rows), "costs")


def _replace(run_dir: Path, model: str, kinds: tuple[str, ...], new: pd.DataFrame, keep=None) -> None:
    """Drop the model's rows of ``kinds`` (those matching ``keep`` survive) and append ``new``."""
    def drop(old: pd.DataFrame) -> pd.Series:
        out = (old["model"] == model) & old["kind"].isin(kinds)
        return out & ~keep(old) if keep is not None else out

    RunDir(run_dir).replace_rows("costs", new, drop)


def sample_sizes(run_dir: Path | None, model: str, vlm) -> tuple[list[tuple[str, str]] | None, str | None]:
    """The distinct (route, visual_grid) of ``model``'s samples in ``run_dir``'s routes table, to count each
    sample at its own image size, and a note saying what was (or could not be) counted. (None, None) when
    the shared encoder runs at one fixed size."""
    from scopebench.analysis.compute import has_grids

    if not vlm.shared.native:
        return None, None
    later = (f"the shared encoder runs at native resolution: the path figures are at image_size "
             f"{vlm.shared.image_size}; the per-sample figure needs `scopebench flops {model} --output RUN` "
             "after eval")
    routes = RunDir(run_dir).read("routes", required=False) if run_dir is not None else pd.DataFrame()
    routes = routes[routes["model"] == model] if len(routes) else routes
    if not len(routes):
        return None, later
    with_grid = routes[has_grids(routes)]
    if not len(with_grid):
        return None, (f"the routes of {model} in {run_dir} have no visual_grid (an earlier scopebench): "
                      "expected costs use the one-size path figures; run `scopebench eval` again")
    sizes = list(dict.fromkeys(zip(with_grid["route"].astype(str), with_grid["visual_grid"].astype(str),
                                   strict=True)))
    grids = with_grid["visual_grid"].nunique()
    lacking = len(routes) - len(with_grid)
    rest = (f"; {lacking} samples without a visual_grid: their benchmarks use the one-size path figures"
            if lacking else "")
    return sizes, (f"expected costs from each sample's own image size: {len(sizes)} distinct (route, token "
                   f"grid) counted for {len(with_grid)} samples ({grids} grid sets, each also on the "
                   f"all-encoders reference){rest}")


def write_flops(run_dir: Path, result: dict) -> pd.DataFrame:
    """Write path / reference rows and, when the run has routes for the model, expected rows (from each
    sample's own size where ``result["sizes"]`` counted them). Returns the latter."""
    from scopebench.analysis.compute import expected_costs

    rows = flops_rows(result)
    routes = RunDir(run_dir).read("routes", required=False)
    routes = routes[routes["model"] == result["model"]]
    sizes = pd.DataFrame(result.get("sizes") or []).assign(model=result["model"])
    expected = (expected_costs(routes, rows, sizes if len(sizes) else None) if len(routes)
                else conform(pd.DataFrame(), "costs"))
    ref = [p["total"]["macs"] for p in result["paths"] if p["reference"]]
    if len(expected):
        expected["saving_vs_all"] = 1.0 - expected["macs"].astype(float) / ref[0] if ref else float("nan")
        if "reference_macs" in expected:  # the reference at each sample's own size
            own = 1.0 - expected["macs"].astype(float) / expected["reference_macs"].astype(float)
            expected["saving_vs_all"] = own.fillna(expected["saving_vs_all"])
            expected = expected.drop(columns="reference_macs")
    _replace(run_dir, result["model"], STATIC_KINDS, pd.concat([f for f in (rows, expected) if len(f)]))
    return expected


def latency_rows(result: dict) -> pd.DataFrame:
    """kind=latency rows of a `latency` result."""
    rows = []
    for p in result["paths"]:
        timed = {**p["components"], TOTAL: p["total"]}
        for name, t in timed.items():
            rows.append({"model": result["model"], "kind": "latency", "path": p["path"], "component": name,
                         "visual_tokens": p["visual_tokens"], "macs": t["macs"], "flops": t["flops"],
                         "latency_median_ms": t["median_ms"], "latency_iqr_ms": t["iqr_ms"],
                         "batch_size": result["batch_size"], "device": result["device"]})
    return conform(pd.DataFrame(rows), "costs")


def write_latency(run_dir: Path, result: dict) -> None:
    """Replace the model's latency rows measured at the same batch size on the same device."""
    rows = latency_rows(result)

    def other_setting(df: pd.DataFrame) -> pd.Series:
        same = (pd.to_numeric(df["batch_size"], errors="coerce") == result["batch_size"])
        return ~(same & (df["device"].astype(str) == result["device"]))

    _replace(run_dir, result["model"], ("latency",), rows, keep=other_setting)
