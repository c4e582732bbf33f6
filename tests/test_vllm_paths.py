"""The worker's two output paths on a fake ``AsyncLLM``, without vLLM.

The fake behaves as vLLM 0.26-0.32 do (outputs handed to each request's collector
through ``put``), or as a release that changed that private class might: the fast
path's start-up probe must notice, and the public path must then deliver every token.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from protocol import messages as m
from workers import vllm_engine
from workers.vllm_compat import FORCED_PUBLIC, OUTPUT_PATH_ENV


class FakeOutput:
    """Like vLLM's RequestOutput with one completion."""

    def __init__(self, ids: list[int], finished: bool, reason: str | None = None) -> None:
        self.outputs = [SimpleNamespace(token_ids=ids, finish_reason=reason)]
        self.finished = finished
        self.metrics = None

    def add(self, other: FakeOutput, aggregate: bool) -> None:
        self.outputs[0].token_ids = self.outputs[0].token_ids + other.outputs[0].token_ids
        self.outputs[0].finish_reason = other.outputs[0].finish_reason
        self.finished |= other.finished


class _Collector:
    """Like vLLM's RequestOutputCollector (0.26-0.32): put() merges, get() waits."""

    __slots__ = ()
    output: FakeOutput | Exception | None
    ready: asyncio.Event

    def __init__(self) -> None:
        self.output = None
        self.ready = asyncio.Event()

    def put(self, output: FakeOutput | Exception) -> None:
        if self.output is None or isinstance(output, Exception):
            self.output = output
            self.ready.set()
        else:
            self.output.add(output, aggregate=True)

    async def get(self) -> FakeOutput:
        while (out := self.output) is None:
            await self.ready.wait()
        self.output = None
        self.ready.clear()
        if isinstance(out, Exception):
            raise out
        return out


class FakeCollector(_Collector):
    pass  # an instance with a __dict__, as vLLM's has: its put can be replaced


class SlottedCollector(_Collector):
    __slots__ = ("output", "ready")  # its put cannot be replaced


class FakeAsyncLLM:
    """One token per ``step_s`` for each request. ``bypass``: "all" or "first" outputs skip put()."""

    def __init__(self, collector=FakeCollector, bypass="", step_s=0.001) -> None:
        self.collector, self.bypass, self.step_s = collector, bypass, step_s
        self.live: dict[str, FakeCollector] = {}
        self.aborted: list[str] = []
        self.errored = False

    async def add_request(self, rid, prompt, params):
        col = self.collector()
        self.live[rid] = col
        asyncio.get_running_loop().create_task(self._produce(rid, col, params.max_tokens))
        return col

    async def _produce(self, rid, col, n):
        for i in range(n):
            await asyncio.sleep(self.step_s)
            if self.live.get(rid) is not col:
                return
            out = FakeOutput([i], i == n - 1, "length" if i == n - 1 else None)
            if self.bypass == "all" and col.output is not None:
                col.output.add(out, aggregate=True)  # a release that no longer calls put()
            elif self.bypass and col.output is None:
                col.output = out  # "first": only the first output skips put()
                col.ready.set()
            else:
                col.put(out)
        self.live.pop(rid, None)

    async def generate(self, prompt, params, rid):
        col = await self.add_request(rid, prompt, params)
        try:
            while True:
                out = await col.get()
                yield out
                if out.finished:
                    return
        except (asyncio.CancelledError, GeneratorExit):
            await self.abort([rid])
            raise

    async def abort(self, rids):
        for rid in rids:
            self.aborted.append(rid)
            col = self.live.pop(rid, None)
            if col is not None:
                col.put(FakeOutput([], True, "abort"))


class Recorder:
    """Stands in for the Outbox: what the engine reported."""

    def __init__(self) -> None:
        self.tokens: dict[int, int] = {}
        self.finished: dict[int, tuple[int, str]] = {}
        self.failed: dict[int, tuple[str, bool]] = {}

    def tokens_(self, rid: int, n: int, t_ns: int) -> None:
        assert t_ns > 0
        self.tokens[rid] = self.tokens.get(rid, 0) + n


def make_engine(fake: FakeAsyncLLM) -> tuple[vllm_engine.VllmEngine, Recorder]:
    rec = Recorder()
    out = SimpleNamespace(
        tokens=rec.tokens_,
        finished=lambda rid, n, reason, times=None: rec.finished.__setitem__(rid, (n, reason)),
        failed=lambda rid, err, aborted=False: rec.failed.__setitem__(rid, (err, aborted)),
    )
    eng = vllm_engine.VllmEngine(0, {}, "cpu", ["0"], out)
    eng.engine = fake
    eng._SamplingParams = lambda **kw: SimpleNamespace(**kw)
    eng._delta = "DELTA"
    return eng, rec


def spec(rid: int, max_tokens: int) -> m.RequestSpec:
    return m.RequestSpec(rid, [1, 2, 3], max_tokens, 0, 0)


async def choose_and_run(eng: vllm_engine.VllmEngine, n: int, max_tokens: int) -> dict:
    config = await eng._choose_path()
    for rid in range(n):
        eng.add(spec(rid, max_tokens))
    for _ in range(2000):
        if not eng._counts:
            break
        await asyncio.sleep(0.005)
    return config


@pytest.fixture
def collector_class(monkeypatch):
    def use(cls):
        monkeypatch.setattr(vllm_engine, "_collector_class", lambda: cls)

    return use


@pytest.mark.parametrize(
    "fake,forced,path,why,probe_aborted",
    [
        (dict(), "auto", "fast", None, False),
        (dict(), "public", "public", FORCED_PUBLIC, False),
        (dict(bypass="all"), "auto", "public", "the hook saw no finished output in 0.5 s", True),
        (dict(bypass="first"), "auto", "public", "the hook delivered 2 of the probe's 3", False),
        (dict(collector=SlottedCollector), "auto", "public", "the collector's put cannot", True),
    ],
    ids=["fast", "forced", "put-bypassed", "put-partly-bypassed", "slots"],
)
def test_both_paths_deliver_every_token(
    monkeypatch, collector_class, fake, forced, path, why, probe_aborted
):
    monkeypatch.setenv(OUTPUT_PATH_ENV, forced)
    monkeypatch.setattr(vllm_engine, "PROBE_TIMEOUT_S", 0.5)
    engine = FakeAsyncLLM(**fake)
    collector_class(engine.collector)
    eng, rec = make_engine(engine)
    config = asyncio.run(choose_and_run(eng, 8, 5))
    assert eng.path == path and config["output_path"] == path
    assert (config.get("output_path_why") or "").startswith(why or "")
    assert rec.tokens == {rid: 5 for rid in range(8)}
    assert rec.finished == {rid: (5, "length") for rid in range(8)} and rec.failed == {}
    assert not eng._streams and not engine.live
    assert (vllm_engine.PROBE_ID in engine.aborted) is probe_aborted  # none left running


def test_no_collector_class_means_the_public_path(collector_class):
    collector_class(None)
    eng, rec = make_engine(FakeAsyncLLM())
    config = asyncio.run(choose_and_run(eng, 2, 3))
    assert config["output_path"] == "public" and "no vllm.v1" in config["output_path_why"]
    assert rec.finished == {0: (3, "length"), 1: (3, "length")}


def test_a_bad_output_path_setting_fails_start_up(monkeypatch):
    monkeypatch.setenv(OUTPUT_PATH_ENV, "fastest")
    eng, _ = make_engine(FakeAsyncLLM())
    with pytest.raises(ValueError, match="must be auto or public, not 'fastest'"):
        asyncio.run(eng._choose_path())


@pytest.mark.parametrize("forced", ["auto", "public"])
def test_abort_stops_requests_in_vllm_on_both_paths(monkeypatch, collector_class, forced):
    monkeypatch.setenv(OUTPUT_PATH_ENV, forced)
    collector_class(FakeCollector)
    engine = FakeAsyncLLM(step_s=0.01)
    eng, rec = make_engine(engine)

    async def go() -> None:
        await eng._choose_path()
        for rid in range(3):
            eng.add(spec(rid, 1000))
        await asyncio.sleep(0.1)
        eng.abort([0, 1], "max-seconds")
        await asyncio.sleep(0.1)
        seen = dict(rec.tokens)
        await asyncio.sleep(0.1)
        assert rec.tokens[0] == seen[0] and rec.tokens[1] == seen[1]  # nothing after abort
        assert rec.tokens[2] > seen[2]  # the other one goes on
        eng.abort([2], "end")
        await asyncio.sleep(0.05)

    asyncio.run(go())
    assert rec.failed == {rid: (why, True) for rid, why in [(0, "max-seconds"), (1, "max-seconds"), (2, "end")]}  # fmt: skip
    assert rec.finished == {} and engine.live == {} and not eng._streams
    assert sorted(set(engine.aborted) - {vllm_engine.PROBE_ID}) == ["0", "1", "2"]
