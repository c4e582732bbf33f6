"""Engine and device telemetry, aggregated on the worker to a fixed interval.

An engine reports its scheduler's state once per step (vLLM through its stat logger,
the sim engine itself); :class:`SchedulerView` only adds them up, so the cost per
step is a few additions, whatever the step rate. Every interval the worker samples
its devices (NVML per GPU where it exists; its own processes' CPU and memory always)
and sends one typed sample to the collector, on the head's clock.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

from protocol import messages as m

NO_KV = -1.0  # the engine has no KV cache to report (the sim)


class SchedulerView:
    """Per-step scheduler figures, summed until the next sample takes them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.steps = 0
        self.running = self.waiting = self.kv = 0.0
        self.kv_max = NO_KV
        self.kv_steps = 0
        self.preemptions = self.prefix_queries = self.prefix_hits = 0
        self.spec_drafts = self.spec_draft_tokens = self.spec_accepted = 0

    def step(
        self, running: int, waiting: int, kv_usage: float | None = None, preempted: int = 0
    ) -> None:
        """One engine step: requests running and waiting, KV cache usage (0..1) if it has one."""
        self.steps += 1
        self.running += running
        self.waiting += waiting
        self.preemptions += preempted
        if kv_usage is not None:
            self.kv += kv_usage
            self.kv_steps += 1
            self.kv_max = max(self.kv_max, kv_usage)

    def cache(self, queries: int, hits: int) -> None:
        self.prefix_queries += queries
        self.prefix_hits += hits

    def spec(self, drafts: int, draft_tokens: int, accepted: int) -> None:
        self.spec_drafts += drafts
        self.spec_draft_tokens += draft_tokens
        self.spec_accepted += accepted

    def take(
        self, t_ns: int, cpu_pct: float, rss_mb: float, gpus: list[m.GpuSample]
    ) -> m.TelemetrySample:
        n = max(self.steps, 1)
        kv = self.kv / self.kv_steps * 100 if self.kv_steps else NO_KV
        kv_max = self.kv_max * 100 if self.kv_steps else NO_KV
        sample = m.TelemetrySample(
            t_ns, self.steps, self.running / n, self.waiting / n, kv, kv_max, self.preemptions,
            self.prefix_queries, self.prefix_hits, self.spec_drafts, self.spec_draft_tokens,
            self.spec_accepted, cpu_pct, rss_mb, gpus,
        )  # fmt: skip
        self._reset()
        return sample


class Devices:
    """What the worker runs on: its processes (always), and its GPUs through NVML where it can."""

    def __init__(self, device: str, gpu_ids: list[str]) -> None:
        self.proc = psutil.Process()
        self.cpu: dict[int, psutil.Process] = {}
        self.sources = {
            "processes": "psutil: this worker and its children (the engine's processes)"
        }
        self.nvml: object | None = None
        self.handles: list[tuple[str, object]] = []
        self.energy: dict[str, float] = {}
        if device == "cuda":
            self._open_nvml(gpu_ids)
        else:
            self.sources["gpu"] = f"none: a {device} worker has no GPU"

    def _open_nvml(self, gpu_ids: list[str]) -> None:
        try:
            import pynvml  # nvidia-ml-py, an optional extra

            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - no library, no driver: say which
            self.sources["gpu"] = f"none: NVML is not available ({type(e).__name__}: {e})".strip()
            return
        self.nvml = pynvml
        for gid in gpu_ids:
            index = gid.split(":", 1)[0].strip()  # "0: NVIDIA H100" in the report's names
            try:
                self.handles.append((index, pynvml.nvmlDeviceGetHandleByIndex(int(index))))
            except Exception as e:  # noqa: BLE001
                self.sources["gpu"] = f"none: NVML has no GPU {index} ({e})"
                self.handles = []
                return
        self.sources["gpu"] = (
            "NVML (nvidia-ml-py): SM utilization, memory, power, SM clock, temperature, energy"
        )

    def processes(self) -> tuple[float, float]:
        """CPU (%, 100 = one core) and resident MB of this worker and every process under it."""
        cpu = rss = 0.0
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except psutil.Error:
            pass
        seen = set()
        for p in procs:
            try:
                tracked = self.cpu.setdefault(p.pid, p)
                cpu += tracked.cpu_percent(None)  # since its last call: this interval
                rss += tracked.memory_info().rss
                seen.add(p.pid)
            except psutil.Error:
                continue
        self.cpu = {pid: p for pid, p in self.cpu.items() if pid in seen}
        return cpu, rss / 2**20

    def gpus(self) -> list[m.GpuSample]:
        if self.nvml is None:
            return []
        nv = self.nvml
        out = []
        for index, h in self.handles:
            try:
                util = nv.nvmlDeviceGetUtilizationRates(h)  # type: ignore[attr-defined]
                mem = nv.nvmlDeviceGetMemoryInfo(h)  # type: ignore[attr-defined]
                power = nv.nvmlDeviceGetPowerUsage(h) / 1000  # type: ignore[attr-defined]
                clock = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)  # type: ignore[attr-defined]
                temp = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a GPU that stops answering gives no sample
                continue
            out.append(m.GpuSample(index, float(util.gpu), mem.used / 2**20, power, float(clock), float(temp),
                                   self._energy(index, h)))  # fmt: skip
        return out

    def _energy(self, index: str, h: object) -> float:
        """Joules the driver counted since the last sample (-1 where the GPU cannot say)."""
        try:
            mj = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h))  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - pre-Volta GPUs have no counter
            return -1.0
        last = self.energy.get(index)
        self.energy[index] = mj
        return (mj - last) / 1000 if last is not None else -1.0


class Sampler:
    """Every ``interval_s``: the scheduler's figures and the devices', as one sample."""

    def __init__(self, view: SchedulerView, devices: Devices, now_ns: Callable[[], int]) -> None:
        self.view = view
        self.devices = devices
        self.now_ns = now_ns
        self.devices.processes()  # psutil's CPU figures count from their first call

    def sample(self) -> m.TelemetrySample:
        cpu, rss = self.devices.processes()
        return self.view.take(self.now_ns(), cpu, rss, self.devices.gpus())
