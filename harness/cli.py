"""The ``harness`` command line. Bad input is one line on stderr and exit code 2.

Each command maps its options and hands them on: ``run`` to :mod:`harness.resolve`
and :mod:`harness.runner`, ``worker`` to :mod:`harness.remote`. The options
themselves are declared once, in :mod:`harness.options`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from harness import runner
from harness.checks import UsageError
from harness.help import CompactHelp
from harness.options import RunOptions, WorkerOptions, typer_command
from harness.report import ReportError, print_end_table, read_json, summary

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Benchmark vLLM engines in-process, with no HTTP server in the way.",
)


def _version(value: bool) -> None:
    if value:
        from harness.environment import versions_line

        print(versions_line())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="print the harness and vLLM versions",
        ),
    ] = False,
) -> None:
    """Benchmark vLLM engines in-process, with no HTTP server in the way."""


def run(o: RunOptions) -> None:
    """Run benchmarks on a pool of engine workers.

    Sampling by default: every request is sent as prompt token ids with ignore_eos=True, detokenize=False and vLLM's default SamplingParams (temperature 1, top_p 1, top_k off, no seed), so it generates exactly its output length. --sampling sets temperature, top_p, top_k, seed, ignore_eos and stop strings; with ignore_eos=false or a stop string the model stops by itself and output lengths are as measured (see docs/metrics.md).

    Prints progress on stderr (--verbose adds the workers' logs while engines start), then one table of every benchmark and the paths written; harness report FILE.json prints each benchmark's details.
    """
    from harness.resolve import resolve

    resolved = resolve(o, ["harness", *sys.argv[1:]])
    raise typer.Exit(runner.execute(resolved))


def worker(o: WorkerOptions) -> None:
    """Join a run on another node as one engine worker (multi-node).

    The head (harness run --listen ... --remote-workers N) sends the engine's settings. Start one per engine, e.g. with srun --ntasks-per-node=2 --gpus-per-task=4.
    """
    from harness.remote import supervise
    from harness.resolve import resolve_worker

    raise typer.Exit(supervise(resolve_worker(o)))


app.command("run", cls=CompactHelp)(typer_command(RunOptions, run))
app.command("worker", cls=CompactHelp)(typer_command(WorkerOptions, worker))


@app.command("tiny-model")
def tiny_model(
    folder: Annotated[Path, typer.Argument(help="where to write config.json and the tokenizer")],
) -> None:
    """Write the tiny dummy Llama (config and a trained tokenizer) used for smoke runs and CI."""
    from harness.tinymodel import write_tiny_model

    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    try:
        write_tiny_model(folder)
    except OSError as e:
        raise UsageError(f"{folder}: {e.strerror or e}") from None
    print(folder / "config.json")


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="a report written by harness run (.json)")],
    output: Annotated[
        list[Path], typer.Option(help="render to .json, .csv or .html; repeatable", metavar="FILE")
    ] = [],
) -> None:
    """Print a saved run's details (a block per benchmark, then one table), or render it."""
    from harness.output import atomic_write
    from harness.render import render
    from harness.resolve import check_outputs

    check_outputs(output)
    try:
        rep = read_json(path)
    except ReportError as e:
        raise UsageError(str(e)) from None
    print(summary(rep) + "\n")
    from rich.console import Console

    print_end_table(rep, Console(highlight=False))
    for out in output:
        try:
            atomic_write(out, render(rep, out))
        except OSError as e:
            raise UsageError(f"--output {out}: {e.strerror or e}") from None
        print(f"wrote {out}", file=sys.stderr)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="a report written by harness run (.json)")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="vllm: the files of vllm bench serve --save-result, one per benchmark",
            metavar="vllm",
        ),
    ] = "vllm",
    output_dir: Annotated[
        Path, typer.Option(help="where to write them (a folder per benchmark)", metavar="DIR")
    ] = Path("export"),
) -> None:
    """Write a saved run in another tool's format (per-request arrays where it saved its requests)."""
    from harness import checks
    from harness.export import FORMATS, export_vllm

    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {format!r})")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir {output_dir}: not a directory")
    checks.writable_file(output_dir / "probe", "--output-dir")
    try:
        rep = read_json(path)
    except ReportError as e:
        raise UsageError(str(e)) from None
    for p in export_vllm(rep, output_dir):
        print(p)


@app.command()
def compare(
    runs: Annotated[
        Optional[list[Path]], typer.Argument(help="reports; the first is the base")
    ] = None,
    layouts: Annotated[
        Optional[Path],
        typer.Option(help="a layout sweep's folder (<workers>x<tp>.json files)", metavar="DIR"),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            help="write the comparison as .html (a layout summary as .html or .json)",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Compare runs benchmark by benchmark (paired by load), or the layouts of a node sweep."""
    from harness.resolve import check_outputs

    if output is not None:
        check_outputs([output])
    if layouts is not None:
        return _compare_layouts(layouts, output)
    if not runs or len(runs) < 2:
        raise UsageError("compare: give two or more reports, or --layouts DIR")
    if output is not None and output.suffix != ".html":
        raise UsageError(f"--output {output}: compare writes .html")
    try:
        reps = [read_json(p) for p in runs]
    except ReportError as e:
        raise UsageError(str(e)) from None
    from harness.compare import text
    from harness.output import atomic_write
    from harness.render import compare_html

    names = [p.stem for p in runs]
    print(text(names, reps[0], reps[1:]))
    if output is not None:
        atomic_write(output, compare_html(names, reps).encode())
        print(f"wrote {output}", file=sys.stderr)


def _compare_layouts(folder: Path, output: Path | None) -> None:
    from harness.layouts import summarize, table, write_summary

    try:
        sweep = summarize(folder)
    except ReportError as e:
        raise UsageError(str(e)) from None
    print(table(sweep))
    if output is not None:
        write_summary(sweep, output)
        print(f"wrote {output}", file=sys.stderr)


def main() -> None:
    from harness.streams import protect

    protect()
    code: object = 0
    try:
        code = app(standalone_mode=False)
    except UsageError as e:
        _error(str(e))
        sys.exit(runner.EXIT_USAGE)
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        code = runner.EXIT_INTERRUPTED
    except KeyboardInterrupt:
        code = runner.EXIT_INTERRUPTED
    except typer.TyperException as e:  # the parser's own usage errors
        _error(e.format_message())
        sys.exit(runner.EXIT_USAGE)
    sys.exit(code if isinstance(code, int) else 0)


def _error(text: str) -> None:
    line = " ".join(text.split())
    try:
        print(f"harness: error: {line}", file=sys.stderr)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
