"""One run's settings: everything needed to rerun it, written into the report."""

from __future__ import annotations

import msgspec


class Window(msgspec.Struct, frozen=True):
    """A warm-up or cool-down window: ``requests`` or ``seconds`` (one of them)."""

    requests: int | None = None
    seconds: float | None = None


class RunConfig(msgspec.Struct, kw_only=True):
    engine: str = "vllm"
    device: str = "cuda"
    model: str | None = None
    workers: int = 1
    tp: int = 1
    gpus: list[str] | None = None
    engine_args: dict[str, object] = {}
    sim: dict[str, float] = {}
    cpu_kv_cache_gb: int = 1
    profile: str = "throughput"
    rates: list[float] = []
    concurrencies: list[int] = []
    max_concurrency: int | None = None
    burstiness: float = 1.0
    sweep_points: int = 5
    max_requests: int | None = None
    max_seconds: float | None = None
    max_errors: float | None = None  # a count (>= 1) or a fraction (< 1)
    warmup: Window = Window()
    cooldown: Window = Window()
    seed: int = 0
    data: list[str] = msgspec.field(default_factory=lambda: ["prompt_tokens=128,output_tokens=64"])
    data_weights: list[float] = []
    tokenizer: str | None = None
    chat_template: str = "default"
    time_scale: float = 1.0  # replay: multiply the trace's offsets by this
    vocab_size: int = 32000
    dispatch: str = "least-outstanding"
    max_inflight_per_worker: int | None = None
    startup_timeout_s: float = 600.0
    drain_timeout_s: float = 60.0
    checkpoint_s: float | None = 30.0  # write the report so far this often; None = never
    slo: dict[str, float] = {}
    quiet: bool = False
    listen: str | None = None  # multi-node: tcp://HOST:PORT for remote workers (events: PORT+1)
    remote_workers: int = 0
