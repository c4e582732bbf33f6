"""A real vLLM ``AsyncLLM`` (the V1 ``AsyncLLMEngine``) behind the :class:`Engine` interface.

vLLM is imported only in :meth:`VllmEngine.start`, after the worker has set
``CUDA_VISIBLE_DEVICES`` and the CPU variables. Outputs are taken where
vLLM's output handler delivers them (each request's output collector) rather
than through one asyncio task per request: on a small CPU every harness cycle
is taken from the engine, and a task per request costs a wake-up per token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from protocol import messages as m
from workers.engine import Outbox


def _ns(ts: float) -> int:
    # vLLM's engine-core timestamps are time.monotonic(): the same clock, in seconds.
    return int(ts * 1e9) if ts else 0


class VllmEngine:
    def __init__(
        self, worker_id: int, args: dict[str, Any], device: str, devices: list[str], outbox: Outbox
    ) -> None:
        self.worker_id = worker_id
        self.args = dict(args)
        self.device = device
        self.devices = devices
        self.out = outbox
        self.engine: Any = None
        self._params: dict[int, Any] = {}
        self._counts: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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
        cfg = self.engine.vllm_config
        cache = cfg.cache_config
        blocks = cache.num_gpu_blocks or 0
        sched = cfg.scheduler_config
        effective = {
            "model": str(cfg.model_config.model),
            "dtype": str(cfg.model_config.dtype),
            "max_model_len": str(cfg.model_config.max_model_len),
            "max_num_seqs": str(sched.max_num_seqs),
            "max_num_batched_tokens": str(sched.max_num_batched_tokens),
            "enable_chunked_prefill": str(getattr(sched, "enable_chunked_prefill", None)),
            "enable_prefix_caching": str(cache.enable_prefix_caching),
            "block_size": str(cache.block_size),
            "num_kv_blocks": str(blocks),
            "tensor_parallel_size": str(cfg.parallel_config.tensor_parallel_size),
            "enforce_eager": str(cfg.model_config.enforce_eager),
            "vllm_version": _vllm_version(),
        }
        return m.WorkerInfo(
            worker_id=self.worker_id,
            device=self.device,
            devices=self.devices,
            startup_s=time.monotonic() - t0,
            kv_cache_tokens=blocks * cache.block_size if blocks else None,
            engine_config=effective,
        )

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
        loggers = [_silent_stat_logger()] if args["disable_log_stats"] else None
        # vllm serve's usage context, so defaults are a deployed server's.
        return AsyncLLM.from_engine_args(
            engine_args, usage_context=UsageContext.OPENAI_API_SERVER, stat_loggers=loggers
        )

    def _sampling(self, max_tokens: int) -> Any:
        sp = self._params.get(max_tokens)
        if sp is None:
            sp = self._SamplingParams(
                max_tokens=max_tokens,
                ignore_eos=True,
                detokenize=False,
                output_kind=self._delta,
            )
            self._params[max_tokens] = sp
        return sp

    def add(self, spec: m.RequestSpec) -> None:
        task = asyncio.get_running_loop().create_task(self._add(spec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add(self, spec: m.RequestSpec) -> None:
        rid = spec.rid
        self._counts[rid] = 0
        try:
            collector = await self.engine.add_request(
                str(rid), {"prompt_token_ids": spec.prompt}, self._sampling(spec.max_tokens)
            )
        except Exception as e:  # noqa: BLE001 - any engine error fails this request only
            self._counts.pop(rid, None)
            self.out.failed(rid, f"{type(e).__name__}: {e}")
            return
        early = collector.output
        collector.output = None

        def put(output: Any, _rid: int = rid) -> None:
            self._on_output(_rid, output)

        collector.put = put
        if early is not None:
            self._on_output(rid, early)

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
        if live and self.engine is not None:
            task = asyncio.get_running_loop().create_task(self.engine.abort([str(r) for r in live]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def dead(self) -> bool:
        return bool(self.engine is not None and self.engine.errored)

    async def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()


def _vllm_version() -> str:
    try:
        import vllm

        return str(vllm.__version__)
    except Exception:  # noqa: BLE001
        return "unknown"


def _silent_stat_logger() -> Any:
    """A stat logger that records nothing.

    Any custom logger turns on per-request stats; being a PrometheusStatLogger
    stops vLLM from adding its default Prometheus logger too.
    """
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    class SilentStatLogger(PrometheusStatLogger):  # type: ignore[misc]
        def __init__(self, vllm_config: Any, engine_indexes: Any = None) -> None:
            pass

        def record(self, *args: Any, **kwargs: Any) -> None:
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

    return SilentStatLogger


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
