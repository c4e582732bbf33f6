"""A resolved run: every option turned into what the run does, frozen.

:func:`harness.resolve.resolve` makes one from the command line; nothing edits it
afterwards. ``Run.config`` is what the report records: the settings that took
effect, each once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from harness.limits import Limits, Window  # noqa: F401 - part of a run
from harness.profiles import BenchPlan, PlanContext, Profile
from harness.workload import Workload
from protocol import messages as m
from workers.placement import Slot


class EngineSpec(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # "vllm" or "sim"
    device: str  # "cuda", "cpu", "sim", or "auto" (remote workers alone: each host decides)
    tp: int = 1
    args: dict[str, object] = {}  # AsyncEngineArgs fields, or the sim's costs
    model: str | None = None
    vocab_size: int = 32000
    max_model_len: int | None = None
    cpu_kv_cache_gb: int | None = None  # vllm-cpu workers (and remote ones that resolve to cpu)
    sampling: m.Sampling = msgspec.field(default_factory=m.Sampling)


class DispatchSpec(msgspec.Struct, frozen=True, kw_only=True):
    policy: str = "least-outstanding"
    max_inflight_per_worker: int | None = None


class WorkloadSpec(msgspec.Struct, frozen=True, kw_only=True):
    data: list[str]
    data_weights: list[float] | None = None
    tokenizer: str | None = None
    chat_template: str | None = None  # only where some data is chat
    seed: int | None = None  # None where nothing is random
    samples: int = 0  # distinct requests; a benchmark's k-th request is sample k mod samples
    cycles: bool = False  # a benchmark sends more requests than there are samples
    summary: dict[str, object] = {}


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The settings that took effect: what the report's ``config`` records."""

    engine: EngineSpec
    workers: int
    remote_workers: int = 0
    gpus: list[str] | None = None
    load: dict[str, object]
    limits: Limits
    dispatch: DispatchSpec
    workload: WorkloadSpec
    slo: dict[str, float] = {}
    checkpoint_s: float | None = 30.0
    listen: str | None = None  # multi-node: tcp://HOST:PORT for remote workers (events: PORT+1)
    telemetry_s: float = 1.0  # engine and device telemetry interval; 0: none
    launcher: str = "local"  # "ray": every worker is a Ray actor (remote_workers of them)
    ray_address: str | None = None  # --launcher ray: the cluster it was given


@dataclass(frozen=True)
class Network:
    listen: str | None  # None until a launcher picks an address its nodes can reach
    remote_workers: int
    token: str  # never recorded
    token_generated: bool  # the head made it, so it prints it
    key_file: Path | None = None  # where the head writes its public key for scripts


@dataclass(frozen=True, eq=False)
class Run:
    config: RunConfig
    slots: tuple[Slot, ...]
    profile: Profile
    workload: Workload
    replay_ns: np.ndarray | None
    outputs: tuple[Path, ...]
    log_dir: Path
    network: Network | None
    quiet: bool
    verbose: bool  # workers' logs shown during start-up
    command: tuple[str, ...]
    run_id: str
    no_clobber: bool = False
    records: tuple[Path, ...] = ()  # per-request record files, written by the collector
    save_token_times: bool = False

    @property
    def engine(self) -> EngineSpec:
        return self.config.engine

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def total_workers(self) -> int:
        return self.config.workers + self.config.remote_workers

    def plan_context(self) -> PlanContext:
        lim = self.config.limits
        return PlanContext(
            lim.max_requests, lim.max_seconds, self.config.workload.seed or 0,
            self.total_workers, self.replay_ns,
        )  # fmt: skip

    def plans(self, results: Sequence[object]) -> Iterator[BenchPlan]:
        return self.profile.plans(self.plan_context(), results)
