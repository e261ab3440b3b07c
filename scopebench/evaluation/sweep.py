"""`scopebench sweep`: every non-empty subset of a full checkpoint's routed encoders, by masking
(``FULL@all/mask:...``) and from retrained subset checkpoints, evaluated into one resumable run directory
whose manifest tags each model with its subset and how it was obtained; then the roles table."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from scopebench.errors import ScopebenchError


def parse_sizes(text: str | None, n: int) -> set[int]:
    """``--sizes 1,2`` -> {1, 2}; all sizes 1..n when None."""
    if text is None:
        return set(range(1, n + 1))
    try:
        sizes = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise ScopebenchError(f"--sizes {text}: give comma-separated subset sizes, e.g. 1,2") from None
    bad = sorted(s for s in sizes if not 1 <= s <= n)
    if not sizes or bad:
        raise ScopebenchError(f"--sizes {text}: sizes must lie in 1-{n} (the full set has {n} encoders)")
    return sizes


def plan(full: str, retrained: list[str], sizes: str | None) -> tuple[dict[str, dict], int, list[str]]:
    """Model reference -> its manifest tag (``subset``, ``obtained``); the number of non-empty subsets;
    the full set's encoders."""
    from scopebench.config import Policy
    from scopebench.models.registry import resolve

    ref = resolve(full, "a checkpoint folder or a demo model")
    cfg = ref.config
    if ref.kind == "preset" or ref.base != ref.ref:
        raise ScopebenchError(f"{full}: give the full checkpoint itself (a folder or a demo model), "
                              "without @POLICY")
    pool = list(cfg.routed_names)
    own = Policy.parse(cfg.policy, pool, where=f"{full}: policy")
    if not own.is_fixed or set(own.encoders_used(pool)) != set(pool) or len(pool) < 2:
        raise ScopebenchError(f"{full}: its policy '{cfg.policy}' does not run a fixed set of two or more "
                              "routed encoders; give a model trained on the full set (e.g. policy all)")
    keep = parse_sizes(sizes, len(pool))
    todo = {}
    for k in sorted(keep):
        for subset in itertools.combinations(pool, k):
            dropped = [e for e in pool if e not in subset]
            name = full if not dropped else f"{full}@all/mask:{','.join(dropped)}"
            todo[name] = {"subset": list(subset), "obtained": "masked"}
    for path in retrained:
        r = resolve(path, "a checkpoint folder or a demo model")
        used = Policy.parse(r.config.policy, list(r.config.routed_names), where=f"{path}: policy")
        if not used.is_fixed:
            raise ScopebenchError(f"--retrained {path}: a routed model; give one trained on a fixed subset")
        subset = list(used.encoders_used(list(r.config.routed_names)))
        extra = [e for e in subset if e not in pool]
        if extra:
            raise ScopebenchError(f"--retrained {path}: encoder '{extra[0]}' is not in the full set of "
                                  f"{full} "
                                  f"({', '.join(pool)})")
        if len(subset) in keep or not subset:
            todo[path] = {"subset": subset, "obtained": "retrained"}
    todo[full] = {"subset": pool, "obtained": "retrained"}  # the full model is both
    return todo, 2 ** len(pool) - 1, pool


def run_sweep(full: str, retrained: list[str], suite: str, sizes: str | None, output: Path | None,
              tasks: list[str] | None, limit: int | None, batch_size: int, device: str) -> None:
    """Plan, show the count and an estimate, evaluate (resumable), tag the manifest, print the roles."""
    from scopebench.evaluation.runner import run_eval
    from scopebench.models.registry import resolve
    from scopebench.reporting.roles_view import run_roles
    from scopebench.run_dir import RunDir
    from scopebench.suites import load_suite

    todo, total, pool = plan(full, retrained, sizes)
    benches = load_suite(suite).select(tasks)
    output = Path(output or Path("runs") / f"sweep-{Path(full).name}")
    masked = sum(t["obtained"] == "masked" for t in todo.values())
    per = f"{limit} samples each" if limit else "every sample"
    print(f"sweep: 2^{len(pool)} - 1 = {total} subsets of {', '.join(pool)}; evaluating {masked} masked "
          f"(--sizes {sizes or 'all'}) + {len(todo) - masked} retrained models (the full one counts as both) "
          f"on {len(benches)} benchmarks "
          f"= {len(todo) * len(benches)} model x benchmark parts ({per}); finished parts in {output} are "
          "reused; the progress bar shows the time left", file=sys.stderr)
    run_eval(models=list(todo), suite=suite, tasks=tasks, limit=limit, batch_size=batch_size, device=device,
             output=output, judge=False, json_out=False)
    RunDir(output).update_manifest({}, {resolve(r).name: tag for r, tag in todo.items()})
    run_roles([output], resolve(full).name, "table", None)
