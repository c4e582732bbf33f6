"""Every message that crosses a socket.

Structs are ``array_like`` (no field names on the wire) and ``gc=False`` (no cycles,
so the garbage collector can skip them). Fields are only ever appended, with
defaults, so an older peer can still decode a newer message.
"""

from __future__ import annotations

import msgspec

from protocol.results import BenchmarkResult

# 3: remote workers send Pings while their engine starts (silence then is a death too),
# Hello says what launched the worker, Configure carries telemetry and sampling, and
# workers send Telemetry.
PROTOCOL_VERSION = 3

# Request phases: measured requests feed the statistics, warm-up and cool-down
# requests are run and counted but kept out of them. The coordinator sets each
# request's phase when it sends it.
PHASE_MEASURED = 0
PHASE_WARMUP = 1
PHASE_COOLDOWN = 2


class _Msg(msgspec.Struct, array_like=True, gc=False, tag=True, omit_defaults=False):
    pass


class _Rec(msgspec.Struct, array_like=True, gc=False):
    pass


# --- coordinator -> worker -------------------------------------------------


class RequestSpec(_Rec):
    """One request, fully built before the clock starts."""

    rid: int
    prompt: list[int]
    max_tokens: int
    sched_ns: int  # scheduled send time, CLOCK_MONOTONIC
    bench: int
    phase: int = PHASE_MEASURED
    # When a cap (--max-concurrency, --max-inflight-per-worker) held it past sched_ns, the
    # moment it was let go; 0 if it was not held. Dispatch lag counts from the later of the two.
    release_ns: int = 0
    dispatched_ns: int = 0  # when the coordinator handed it to its socket


class Submit(_Msg, tag="submit"):
    requests: list[RequestSpec]


class Cancel(_Msg, tag="cancel"):
    rids: list[int]
    reason: str = "aborted"


class Shutdown(_Msg, tag="shutdown"):
    pass


class Sampling(msgspec.Struct, frozen=True, kw_only=True):
    """How every request of a run samples: the vLLM ``SamplingParams`` fields it sets.

    The default is the harness's fixed setting: each request generates exactly its
    ``max_tokens`` (``ignore_eos``, no stop strings), with vLLM's default sampling.
    Anything else lets the model stop by itself, and output lengths are as measured.
    """

    temperature: float | None = None  # None: vLLM's default (1.0)
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    ignore_eos: bool = True
    stop: tuple[str, ...] = ()

    @property
    def fixed_length(self) -> bool:
        return self.ignore_eos and not self.stop

    @property
    def needs_tokenizer(self) -> bool:
        """The EOS id and stop strings come from the tokenizer; without it vLLM ignores both."""
        return not self.fixed_length


class Configure(_Msg, tag="configure"):
    """The answer to a remote worker's Hello: its id and the engine it must run.

    Remote workers (``harness worker --connect``) learn everything from the run
    they join, so one command line on the head configures every node.
    """

    worker_id: int
    engine: str  # "sim" or "vllm"
    engine_args: dict[str, object]
    device: str  # "auto", "cuda", "cpu" or "sim": resolved on the worker's own host
    tp: int
    cpu_kv_cache_gb: int
    events_port: int  # the collector's port, on the host the worker connected to
    heartbeat_s: float = 1.0
    events_key: str = ""  # the collector's CURVE public key for that port
    telemetry_s: float = 1.0  # 0: none
    sampling: Sampling = msgspec.field(default_factory=Sampling)


class Refused(_Msg, tag="refused"):
    """The answer to a Hello that cannot join: wrong token or version, or no free slot."""

    reason: str


class Pong(_Msg, tag="pong"):
    """The answer to Ping: the coordinator's clock when it got it."""

    worker_t_ns: int
    coordinator_t_ns: int


# --- worker -> coordinator -------------------------------------------------


class Hello(_Msg, tag="hello"):
    role: str  # "worker" or "collector"
    worker_id: int
    pid: int
    host: str
    protocol_version: int
    token: str
    versions: dict[str, str] = {}
    # What started a remote worker and where (workers/launch.py): "launcher" (ray, slurm,
    # remote), "slot" (the launcher's worker index), "node", and the scheduler's own ids.
    launch: dict[str, str] = {}


class WorkerInfo(_Rec):
    worker_id: int
    device: str  # "cuda", "cpu" or "sim"
    devices: list[str]  # GPU names or CPU core ids
    startup_s: float
    kv_cache_tokens: int | None = None
    engine_config: dict[str, str] = {}
    # Remote workers: the coordinator's clock minus this host's, and its bound (half the
    # best round trip). Every timestamp the worker sends is already on the coordinator's clock.
    clock_offset_ns: int = 0
    clock_error_ns: int = 0


class Ready(_Msg, tag="ready"):
    info: WorkerInfo


class StartupFailed(_Msg, tag="startup_failed"):
    worker_id: int
    error: str


class Ping(_Msg, tag="ping"):
    """A remote worker's clock probe (NTP-style); hosts do not share CLOCK_MONOTONIC."""

    t_ns: int
    dropped: int = 0  # Events messages this worker could not send (the collector fell behind)


class Heartbeat(_Msg, tag="heartbeat"):
    worker_id: int
    t_ns: int
    dropped: int = 0


class Done(_Msg, tag="done"):
    """Requests that left the worker (finished, failed or aborted).

    Closed-loop profiles send their next request on this, and dispatch counts
    outstanding requests with it.
    """

    worker_id: int
    rids: list[int]
    failed: list[int] = []  # those of ``rids`` that failed (not counting aborts)


# --- worker -> collector ---------------------------------------------------


class Started(_Rec):
    rid: int
    bench: int
    phase: int
    sched_ns: int
    recv_ns: int
    prompt_len: int
    max_tokens: int
    release_ns: int = 0
    dispatched_ns: int = 0


def started_of(spec: RequestSpec, recv_ns: int) -> Started:
    """The record of ``spec`` taken at ``recv_ns``: by its worker, or (0) made by the
    coordinator for a request whose worker died."""
    return Started(spec.rid, spec.bench, spec.phase, spec.sched_ns, recv_ns, len(spec.prompt),
                   spec.max_tokens, spec.release_ns, spec.dispatched_ns)  # fmt: skip


class EngineTimes(_Rec):
    """vLLM's own RequestStateStats, converted to CLOCK_MONOTONIC ns (0 = unknown)."""

    queued_ns: int = 0
    scheduled_ns: int = 0
    first_token_ns: int = 0
    last_token_ns: int = 0
    preemptions: int = 0


class Finished(_Rec):
    rid: int
    output_tokens: int
    end_ns: int
    finish_reason: str
    engine: EngineTimes | None = None


class Failed(_Rec):
    rid: int
    end_ns: int
    error: str
    aborted: bool = False


class Events(_Msg, tag="events"):
    """Everything a worker saw in one engine output step.

    Token events are columnar: ``tok_rid`` (int64), ``tok_n`` (int32) and
    ``tok_t_ns`` (int64) are raw little-endian arrays, one entry per request
    that got tokens in the step. ``tok_n`` may exceed 1: DELTA outputs merge
    tokens when the consumer lags.
    """

    worker_id: int
    seq: int
    tok_rid: bytes
    tok_n: bytes
    tok_t_ns: bytes
    started: list[Started] = []
    finished: list[Finished] = []
    failed: list[Failed] = []


class GpuSample(_Rec):
    """One GPU over one telemetry interval (NVML): means, and the energy the driver counted."""

    index: str
    sm_util_pct: float
    mem_used_mb: float
    power_w: float
    sm_clock_mhz: float
    temp_c: float
    energy_j: float = -1.0  # over the interval; -1 where the GPU has no energy counter


class TelemetrySample(_Rec):
    """A worker's engine and devices over one interval ending at ``t_ns`` (the head's clock).

    Scheduler figures are means over the interval's engine steps (counts are sums); -1
    marks what the engine does not report (the sim engine has no KV cache).
    """

    t_ns: int
    steps: int
    running: float
    waiting: float
    kv_usage_pct: float
    kv_usage_max_pct: float
    preemptions: int
    prefix_queries: int
    prefix_hits: int
    spec_drafts: int
    spec_draft_tokens: int
    spec_accepted_tokens: int
    cpu_pct: float  # the worker's processes (vLLM's engine processes included), 100 = one core
    rss_mb: float
    gpus: list[GpuSample] = []


class Telemetry(_Msg, tag="telemetry"):
    worker_id: int
    samples: list[TelemetrySample]
    sources: dict[str, str] = {}  # what measured what, and why a source is missing


# --- coordinator <-> collector (a private IPC link) ---------------------------


class BeginBench(_Msg, tag="begin_bench"):
    """A benchmark starts: what the collector needs to accept its events and nothing else.

    Its requests are numbered densely from ``rid_lo``, in send order, below ``rid_hi``
    (raised by ``Extend`` as an open-ended benchmark goes on). No request asks for
    more than ``max_tokens`` output tokens or has more than ``max_prompt`` prompt tokens.
    """

    bench: int
    t0_ns: int  # the benchmark's start, shared by the coordinator's pacing and the statistics
    rid_lo: int
    rid_hi: int
    max_tokens: int
    max_prompt: int
    name: str = ""


class Extend(_Msg, tag="extend"):
    """An open-ended benchmark may now number its requests up to ``rid_hi``."""

    bench: int
    rid_hi: int


class BenchInfo(_Rec):
    """What only the coordinator knows about a benchmark."""

    index: int
    name: str
    profile: str
    scheduled: int  # requests it sent (or would have sent, had no limit stopped it)
    requested_rate: float | None = None
    concurrency: int | None = None
    max_concurrency: int | None = None


class EndBench(_Msg, tag="end_bench"):
    """All requests of ``bench`` have left the workers; finish its statistics."""

    bench: int
    expected_rids: int  # requests the collector must have seen end
    info: BenchInfo


class Snapshot(_Msg, tag="snapshot"):
    """Statistics of a running benchmark so far, for checkpoints; answered by a partial BenchResult."""

    bench: int
    info: BenchInfo


class Lost(_Msg, tag="lost"):
    """A worker died: its requests in flight (``requests``) fail with ``reason``.

    Each comes as the ``Started`` record the worker may never have sent
    (``recv_ns`` 0), so a request lost before its worker saw it is still counted.
    ``done`` are the requests it said were done most recently: their ends may have
    died with it (its events and its Done travel on different sockets), so any of
    them whose end never reaches the collector fails too, at the benchmark's end.
    """

    worker_id: int
    requests: list[Started]
    reason: str
    end_ns: int
    done: list[Started] = []


class Stop(_Msg, tag="stop"):
    pass


class Admit(_Msg, tag="admit"):
    """A remote worker passed the token check: its CURVE key may now push events."""

    worker_id: int
    key: str


class Admitted(_Msg, tag="admitted"):
    """The collector's answer to Admit: the key is in its gate. Only then is the worker
    told to connect: libzmq does not retry a connection its authenticator refused once,
    so a worker that raced ahead of the Admit would push every event into the void."""

    worker_id: int


class Progress(_Msg, tag="progress"):
    bench: int
    completed: int
    failed: int
    output_tokens: int
    ttft_p50_ms: float | None
    t_ns: int
    aborted: int = 0
    itl_p50_ms: float | None = None


class BenchResult(_Msg, tag="bench_result"):
    bench: int
    result: BenchmarkResult
    partial: bool = False  # an answer to Snapshot: the benchmark is still running


CoordinatorToWorker = Submit | Cancel | Shutdown | Configure | Refused | Pong
WorkerToCoordinator = Hello | Ready | StartupFailed | Heartbeat | Done | Ping
CoordinatorToCollector = BeginBench | Extend | EndBench | Snapshot | Lost | Stop | Admit
CollectorToCoordinator = Hello | Progress | BenchResult | Admitted
WorkerToCollector = Events | Telemetry


# --- process start-up (JSON on the command line) ---------------------------


class WorkerConfig(msgspec.Struct):
    """What a worker process needs to start; the coordinator writes it as JSON.

    A remote worker starts with ``remote`` set and ``worker_id`` -1: the rest of
    it comes in the coordinator's Configure.
    """

    worker_id: int
    coordinator_addr: str
    collector_addr: str
    token: str
    engine: str  # "sim" or "vllm"
    engine_args: dict[str, object] = {}
    heartbeat_s: float = 1.0
    device: str = "cuda"
    devices: list[str] = []
    remote: bool = False
    join_timeout_s: float = 600.0  # remote: how long to wait for the coordinator
    clock_skew_ns: int = 0  # tests only: pretend this host's clock is ahead by this much
    model: str | None = None  # remote: this host's path to the model, if not the head's
    server_key: str = ""  # remote: the head's CURVE public key
    telemetry_s: float = 1.0  # aggregate and send engine and device telemetry this often; 0: none
    sampling: Sampling = msgspec.field(default_factory=Sampling)


def read_config(path: str, type_: type) -> object:
    """A child's config: JSON in a file only its user can read ("-": on standard input),
    never on its command line."""
    if path == "-":
        import sys

        return msgspec.json.decode(sys.stdin.buffer.read(), type=type_)
    with open(path, "rb") as fh:
        return msgspec.json.decode(fh.read(), type=type_)


def write_config(path: str, config: object) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.encode(config))
