"""The `scopebench` command line. Commands are thin: they parse options and call into
the stage that does the work, importing torch / lmms-eval only when they run."""

from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from scopebench import __version__
from scopebench.errors import ScopebenchError


class _BareFlags:
    """Flags in --help without Typer's ``<bool>`` type label (``--json``, ``-h, --help``)."""

    def get_params(self, ctx) -> list:
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, typer.core.TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_BareFlags, typer.core.TyperCommand):
    """click's usage notation, ``MODEL`` and ``[MODEL]...``, where Typer writes ``{MODEL}``."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument):
                name = param.display_name_raw if param.required else f"[{param.display_name_raw}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class _Group(_BareFlags, typer.core.TyperGroup):
    pass


class _Typer(typer.Typer):
    def command(self, *args, cls=_Command, **kwargs):
        return super().command(*args, cls=cls, **kwargs)


app = _Typer(
    cls=_Group,
    name="scopebench",
    help="Benchmark multi-encoder VLMs (SCOPE Mixture-of-Encoders and baselines): accuracy, FLOPs, latency, "
    "routing.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo_app = _Typer(
    cls=_Group, help="Build the offline demo: the cambrian16-mini suite and the tiny demo checkpoints.")
app.add_typer(demo_app, name="demo")
import_app = _Typer(cls=_Group, help="Convert a model trained elsewhere into a scopebench checkpoint.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


OS_HINTS = {  # errno -> the fix, for a file system error on a path the user gave
    errno.EROFS: "the file system is read-only; choose an --output on a writable disk",
    errno.ENOSPC: "the disk is full; free space (finished parts are kept) or choose another --output",
    errno.EACCES: "permission denied; pass a path scopebench can write",
    errno.EPERM: "permission denied; pass a path scopebench can write",
    errno.EEXIST: "a file is in the way; pass a directory where one is expected",
    errno.ENOTDIR: "a file is in the way; pass a directory where one is expected",
    errno.EISDIR: "that is a directory; pass a file path",
}


def user_errors(fn):
    """Turn a ScopebenchError, or a file system error on a path (a read-only or full disk, an output path
    that is a file), into one red line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ScopebenchError, OSError) as err:
            if isinstance(err, OSError) and (err.errno not in OS_HINTS or err.filename is None):
                raise
            from rich.console import Console

            message = str(err) if isinstance(err, ScopebenchError) else (
                f"{err.filename}: {err.strerror}; {OS_HINTS[err.errno]}")
            Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scopebench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """scopebench: what a multi-encoder VLM is worth, in accuracy and in compute."""


Json = Annotated[bool, typer.Option("--json",
                                    help="Print machine-readable JSON on stdout and nothing else.")]
Device = Annotated[str, typer.Option("--device", help="cpu or cuda.")]


@app.command()
@user_errors
def models(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", help="A preset, demo model or checkpoint dir to show in full.")] = None,
    json_out: Json = False,
) -> None:
    """List model presets, demo models and checkpoints; with NAME, show its resolved config."""
    from scopebench.models.registry import show_models

    show_models(name, json_out=json_out)


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[
        list[str] | None,
        typer.Argument(metavar="MODEL",
                       help="Checkpoint dirs, presets or demo model names (default: the demo models).")
    ] = None,
    suite: Annotated[str, typer.Option(help="Built-in suite name or suite YAML file.")] = "cambrian16-mini",
    tasks: Annotated[str | None, typer.Option(
        help="Comma-separated benchmark names or task ids (default: all).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N samples of each task.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass (grouped by route).")] = 16,
    device: Device = "cpu",
    output: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<suite>).")] = None,
    judge: Annotated[bool, typer.Option(
        help="Use the API-judge variants of MMBench / MathVista (needs an API key).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite",
        help="Replace the results of another model of the same name in --output.")] = False,
    dtype: Annotated[str, typer.Option(
        help="auto (the checkpoint's stored dtype on CUDA, float32 on CPU), float32, bfloat16 or float16.")
    ] = "auto",
    device_map: Annotated[str | None, typer.Option(
        help="auto: spread one model over the devices of --max-memory (accelerate big-model inference).")
    ] = None,
    max_memory: Annotated[str | None, typer.Option(
        help="With --device-map: DEVICE=SIZE,... e.g. 0=70GiB,1=70GiB (cpu=8GiB on CPU; the rest to disk).")
    ] = None,
    json_out: Json = False,
) -> None:
    """Evaluate models on a benchmark suite through lmms-eval; write scores and routing traces."""
    from scopebench.evaluation.runner import run_eval

    if tasks is not None and not tasks.strip():
        raise ScopebenchError(
            "--tasks is empty; give comma-separated benchmark names or task ids, or leave it out for all")
    run_eval(
        models=model or [], suite=suite, tasks=tasks.split(",") if tasks else None, limit=limit,
        batch_size=batch_size, device=device, output=output, judge=judge, json_out=json_out,
        overwrite=overwrite, dtype=dtype, device_map=device_map, max_memory=max_memory,
    )


@app.command()
@user_errors
def assemble(
    config: Annotated[str, typer.Argument(
        metavar="CONFIG", help="A model config YAML naming local pretrained parts, or a preset.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The checkpoint folder to write (new).")],
    weights: Annotated[list[Path] | None, typer.Option(
        "--weights", help="Trained tensors (safetensors) from another codebase; repeatable.")] = None,
    key_map: Annotated[Path | None, typer.Option(
        help="YAML list of (regex, replacement) rules renaming --weights tensors ('' drops one).")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    max_shard_size: Annotated[str, typer.Option(help="Shard the weights above this size (e.g. 5GB).")
                              ] = "5GB",
    allow_random: Annotated[bool, typer.Option(
        "--allow-random",
        help="Randomly initialise what nothing supplies (marks the checkpoint untrained).")
    ] = False,
    json_out: Json = False,
) -> None:
    """Write a scopebench checkpoint from pretrained parts and trained weights made elsewhere."""
    import json

    from scopebench.models.assemble import assemble as run_assemble

    done = run_assemble(config, output, weights or [], key_map, dtype, max_shard_size, allow_random)
    if json_out:
        print(json.dumps(done, indent=2))
        return
    random = f"; {done['random']} random tensors (untrained)" if done["random"] else ""
    pretrained = ", ".join(done["from_pretrained"]) or "-"
    print(f"wrote {done['output']}: {done['parameters'] / 1e6:.1f} M parameters in {done['dtype']}; "
          f"{done['from_weights']} tensors from --weights; pretrained parts: {pretrained}{random}")


@import_app.command("llava-hf")
@user_errors
def import_llava_hf(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="A transformers LLaVA folder (LlavaForConditionalGeneration, safetensors).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The checkpoint folder to write (new).")],
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    max_shard_size: Annotated[str, typer.Option(help="Shard the weights above this size (e.g. 5GB).")
                              ] = "5GB",
    json_out: Json = False,
) -> None:
    """A LLaVA checkpoint as a Baseline-0 scopebench checkpoint (vision tower, feature layer, projector, LLM,
    image processor and prompt layout kept)."""
    import json

    from scopebench.models.llava_import import import_llava

    done = import_llava(folder, output, dtype, max_shard_size)
    if json_out:
        print(json.dumps(done, indent=2))
        return
    print(f"wrote {done['output']}: {done['parameters'] / 1e6:.1f} M parameters in {done['dtype']}; "
          f"vision {done['feature_layer']} layer, class token {'dropped' if done['drop_cls'] else 'kept'}, "
          f"{done['aspect']} at {done['image_size']} px; "
          f"{'the tokenizer' if done['chat_template'] else 'the Vicuna'} chat template")


@app.command()
@user_errors
def flops(
    model: Annotated[list[str], typer.Argument(
        metavar="MODEL",
        help="Checkpoint dirs, presets, demo models, or encoder specs (timm:NAME, open_clip:NAME, hf:ID); "
             "several share one start-up.")],
    image_size: Annotated[int | None, typer.Option(help="Override every encoder's input resolution.")] = None,
    prompt_tokens: Annotated[int, typer.Option(help="Text tokens in the prompt.")] = 64,
    generated_tokens: Annotated[int, typer.Option(
        help="Generated tokens (decode cost per token is reported).")] = 16,
    meta: Annotated[bool, typer.Option(
        "--meta", help="Count on the meta device: no weights, any size.")] = False,
    counter: Annotated[str, typer.Option(help="fvcore (jit trace) or torch (FlopCounterMode).")] = "fvcore",
    output: Annotated[Path | None, typer.Option(
        help="Run directory: add per-path costs and expected costs under routing.")] = None,
    json_out: Json = False,
) -> None:
    """Count MACs and FLOPs (= 2 x MACs) per routed path and per component."""
    from scopebench.profiling.flops import run_flops

    run_flops(
        *model, image_size=image_size, prompt_tokens=prompt_tokens, generated_tokens=generated_tokens,
        meta=meta, counter=counter, output=output, json_out=json_out,
    )


@app.command()
@user_errors
def latency(
    model: Annotated[str, typer.Argument(metavar="MODEL",
                                         help="Checkpoint dir, preset, demo model, or encoder spec.")],
    batch_size: Annotated[int, typer.Option(help="Images per forward.")] = 1,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up iterations.")] = 5,
    repeats: Annotated[int, typer.Option(help="Timed iterations.")] = 30,
    device: Device = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    prompt_tokens: Annotated[int, typer.Option(help="Text tokens in the prompt.")] = 64,
    cuda_graphs: Annotated[bool, typer.Option(
        help="Capture each encoder in a CUDA graph (CUDA only).")] = False,
    output: Annotated[Path | None, typer.Option(help="Run directory to add latency rows to.")] = None,
    json_out: Json = False,
) -> None:
    # kept on one line: typer shows the line breaks of a command's docstring in the command list
    """Measure latency per routed path and per component (CUDA events on GPU, torch.utils.benchmark on CPU)."""  # noqa: E501
    from scopebench.profiling.latency import run_latency

    run_latency(
        model, batch_size=batch_size, warmup=warmup, repeats=repeats, device=device, dtype=dtype,
        prompt_tokens=prompt_tokens, cuda_graphs=cuda_graphs, output=output, json_out=json_out,
    )


@app.command()
@user_errors
def report(
    run_dirs: Annotated[list[Path] | None, typer.Argument(
        metavar="RUN_DIR", help="Run directories written by `scopebench eval`.")] = None,
    scores: Annotated[Path | None, typer.Option(
        help="CSV of external scores: model,benchmark,score (native scale).")] = None,
    suite: Annotated[str | None, typer.Option(
        help="Suite of --scores given without a run directory (e.g. cambrian16).")] = None,
    format: Annotated[str, typer.Option("--format", help="table, markdown, csv, json or html.")] = "table",
    plot: Annotated[Path | None, typer.Option(help="Write PNG and SVG plots into this folder.")] = None,
    output: Annotated[Path | None, typer.Option(
        help="Write the report to this file instead of stdout.")] = None,
) -> None:
    """Compute-versus-accuracy report: Pareto front, savings, routing analysis, plots."""
    from scopebench.reporting.report import run_report

    run_report(run_dirs or [], scores=scores, fmt=format, plot_dir=plot, output=output, suite=suite)


@app.command()
@user_errors
def roles(
    sources: Annotated[list[Path], typer.Argument(
        help="Run directories and / or CSVs encoders,benchmark,score (encoders joined by '+').",
        metavar="SOURCE")],
    full: Annotated[str | None, typer.Option(
        help="The full-set model (default: the largest subset).")] = None,
    format: Annotated[str, typer.Option(help="table | markdown | json")] = "table",
    plot: Annotated[Path | None, typer.Option(help="Write the roles plots (PNG + SVG) here.")] = None,
    suite: Annotated[str | None, typer.Option(
        help="Suite of a CSV given alone (default cambrian16).")] = None,
) -> None:
    """Encoder roles: Capacity, Necessity, rank correlations, best subsets, the pair, rank dynamics."""
    from scopebench.reporting.roles_view import run_roles

    run_roles(sources, full, format, plot, suite)


@app.command()
@user_errors
def sweep(
    full: Annotated[str, typer.Argument(metavar="FULL_CHECKPOINT",
                                        help="Checkpoint folder or demo model trained on the full set.")],
    retrained: Annotated[list[str] | None, typer.Option(
        help="A checkpoint trained on a subset (repeat the option for each).")] = None,
    suite: Annotated[str, typer.Option(help="Built-in suite name or suite YAML file.")] = "cambrian16-mini",
    sizes: Annotated[str | None, typer.Option(help="Subset sizes to mask, e.g. 1,2 (default: all).")] = None,
    output: Annotated[Path | None, typer.Option(
        help="Run directory (default: runs/sweep-<FULL>); rerun to resume.")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="Comma-separated benchmark names or task ids (default: all).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N samples of each task.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass (grouped by route).")] = 16,
    device: Device = "cpu",
) -> None:
    """Evaluate every encoder subset of FULL (masked, plus retrained checkpoints); print the roles."""
    from scopebench.evaluation.sweep import run_sweep

    run_sweep(full, retrained or [], suite, sizes, output, tasks.split(",") if tasks else None, limit,
              batch_size, device)


@app.command()
@user_errors
def check(
    run_dir: Annotated[Path, typer.Argument(
        metavar="RUN_DIR", help="Run directory to check (written by `scopebench eval`).")],
    baseline: Annotated[Path, typer.Option(
        help="Baseline run directory, or its scores.parquet / scores.csv.")],
    tolerance: Annotated[float | None, typer.Option(
        help="Allowed score drop per benchmark, in points (0-100); default 1.", show_default=False)] = None,
    route_tolerance: Annotated[float | None, typer.Option(
        help="Allowed share of re-routed samples per benchmark, in %; default 5.",
        show_default=False)] = None,
    cost_tolerance: Annotated[float | None, typer.Option(
        help="Allowed FLOPs growth per path and benchmark, in %; default 1.", show_default=False)] = None,
    tolerances: Annotated[Path | None, typer.Option(
        help="YAML file of tolerances per benchmark, per category and default (the flags replace its "
             "default).", show_default=False)] = None,
    alpha: Annotated[float, typer.Option(
        help="Significance level of the paired per-sample test a score drop must also pass (Holm across "
             "a model's benchmarks).")] = 0.05,
    junit: Annotated[Path | None, typer.Option(
        help="Write a JUnit XML file: one test case per model, benchmark and check.",
        show_default=False)] = None,
    markdown: Annotated[Path | None, typer.Option(
        help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set).",
        show_default=False)] = None,
    json_out: Json = False,
) -> None:
    """Regression check against a baseline run: exit 0 passed, 1 regressed or missing, 2 bad input."""
    from scopebench.check import run_check

    if not run_check(run_dir, baseline, tolerance, route_tolerance, cost_tolerance, json_out=json_out,
                     alpha=alpha, tolerances=tolerances, junit=junit, markdown=markdown):
        raise typer.Exit(1)


@demo_app.command("suite")
@user_errors
def demo_suite(
    output: Annotated[Path | None, typer.Option(
        help="Task folder to write (default: the shipped tasks/cambrian16_mini).")] = None,
) -> None:
    """Regenerate the cambrian16-mini task data (deterministic)."""
    from scopebench.demo.build_suite import build_suite

    build_suite(output)


@demo_app.command("train")
@user_errors
def demo_train(
    output: Annotated[Path | None, typer.Option(
        help="Checkpoint folder (default: the shipped demo checkpoints).")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Override the number of training steps (for quick checks).")] = None,
    only: Annotated[str | None, typer.Option(
        help="Comma-separated demo model names to train (default: all).")] = None,
) -> None:
    """Train the tiny demo checkpoints (Baseline-0, Baseline-1 per encoder, Baseline-all, SCOPE) on CPU."""
    from scopebench.demo.train import train_all

    train_all(output=output, steps=steps,
              only=None if only is None else [n.strip() for n in only.split(",") if n.strip()])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
