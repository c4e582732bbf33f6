"""One benchmark's requests in the collector: columns indexed by send order, and their checks.

Everything a peer sends is checked before it touches a column. The request must be
one the coordinator numbered for this benchmark, started once, and reported on by
the worker that started it; times must fall within the benchmark's window; token
counts within the request's maximum. A section of a message that fails a check is
dropped and counted by kind. What passes can only fill rows the coordinator's plan
allows (``rid_hi``), so the collector's memory follows the plan, not the peer.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from protocol import messages as m

PENDING, COMPLETED, FAILED, ABORTED = 0, 1, 2, 3
# Times a peer sends must lie within the benchmark's start minus this and now plus this.
# Remote workers' clocks are offset-corrected to well within it.
MARGIN_NS = 60 * 10**9
BIN_NS = 100_000_000  # output tokens are binned at 100 ms as they arrive (measured requests only)
MAX_ERROR_KINDS = 50
MAX_ERROR_LEN = 500
RECENT_DONE_MAX = 1 << 16  # a dead worker's done requests kept (the coordinator sends fewer)
MAX_WORKER_ID = 1 << 15
NO_OUTPUT = "finished with no output tokens"


def _ints(rows: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Records' integer fields as an int64 matrix, and which rows fit: a peer may send a
    value past int64, which costs only its own record (its row is left zeros)."""
    try:
        return np.array(rows, np.int64).reshape(len(rows), -1), np.ones(len(rows), bool)
    except (OverflowError, ValueError):
        pass
    a = np.zeros((len(rows), len(rows[0])), np.int64)
    fits = np.zeros(len(rows), bool)
    for i, row in enumerate(rows):  # only when one does not fit: find which
        try:
            a[i] = row
            fits[i] = True
        except (OverflowError, ValueError):
            continue
    return a, fits


MAX_TELEMETRY_SAMPLES = 100_000  # per worker and benchmark: a day of 1 s samples


def _plausible(s: m.TelemetrySample, t0_ns: int) -> bool:
    figures = [s.running, s.waiting, s.kv_usage_pct, s.kv_usage_max_pct, s.cpu_pct, s.rss_mb]
    counts = [s.steps, s.preemptions, s.prefix_queries, s.prefix_hits, s.spec_drafts,
              s.spec_draft_tokens, s.spec_accepted_tokens]  # fmt: skip
    gpus = [
        x
        for g in s.gpus
        for x in (g.sm_util_pct, g.mem_used_mb, g.power_w, g.sm_clock_mhz, g.temp_c, g.energy_j)
    ]
    return (
        t0_ns - MARGIN_NS <= s.t_ns <= time.monotonic_ns() + MARGIN_NS
        and all(math.isfinite(x) and -1.0 <= x < 1e9 for x in figures + gpus)
        and all(0 <= c < 2**40 for c in counts)
        and s.kv_usage_pct <= 100.0 and len(s.gpus) <= 64
    )  # fmt: skip


COLUMNS: dict[str, type] = {
    "started": np.bool_,
    "status": np.int8,
    "phase": np.int8,
    "worker": np.int32,
    "sched": np.int64,
    "recv": np.int64,
    "release": np.int64,
    "dispatched": np.int64,
    "first": np.int64,
    "last": np.int64,
    "end": np.int64,
    "prompt_len": np.int32,
    "max_tokens": np.int32,
    "n_out": np.int32,
    "n_chunks": np.int32,
    "eng_queued": np.int64,
    "eng_sched": np.int64,
    "eng_first": np.int64,
    "eng_last": np.int64,
    "preemptions": np.int32,
    "finish": np.int8,  # FINISH_REASONS: why a finished request stopped
}
# vLLM's finish reasons, coded in the "finish" column: "length" (max_tokens reached) or
# "stop" (EOS or a stop string, with --sampling). 0: it did not finish; 3: anything else.
FINISH_REASONS = ("", "length", "stop", "other")
_FINISH_CODE = {r: i for i, r in enumerate(FINISH_REASONS) if r}
FINISH_STOP = _FINISH_CODE["stop"]


class BenchAccumulator:
    def __init__(
        self,
        begin: m.BeginBench,
        on_end: Callable[[int], None] | None = None,
        token_times: bool = False,
    ) -> None:
        self.bench = begin.bench
        self.name = begin.name
        self.t0_ns = begin.t0_ns
        self.rid_lo = begin.rid_lo
        self.rid_hi = begin.rid_hi
        self.max_tokens = begin.max_tokens
        self.max_prompt = begin.max_prompt
        self.on_end = on_end  # told each row that ended (per-request records)
        self.size = 0
        self.c = {k: np.zeros(0, t) for k, t in COLUMNS.items()}
        self.chunk_k: list[np.ndarray] = []  # measured requests' outputs: row and gap to the
        self.chunk_gap: list[np.ndarray] = []  # previous output (0 for the first), 12 bytes each
        self.token_bins = np.zeros(0, np.int64)
        self.errors: Counter[str] = Counter()  # measured failures, by reason
        self.error_of: dict[int, str] = {}  # row -> why it failed or was aborted
        self.n_ended = self.n_completed = self.n_failed = self.n_aborted = self.out_tokens = 0
        self.ttft_ns: list[int] = []  # for the live median
        self.itl_ns: list[int] = []
        self.messages = self.entries = self.busy_ns = 0
        self.rejected: Counter[str] = Counter()
        self.late = 0  # well-formed records of another benchmark: dropped, not an error
        self.end_msg: m.EndBench | None = None
        # Workers that died (from the coordinator's Lost): why, when, and the requests they
        # said were done, whose ends may have died with them (settled in ``stranded``).
        self.dead: dict[int, tuple[str, int]] = {}
        self.dead_done: dict[int, list[m.Started]] = {}
        self.lost_at = 0.0  # when the last Lost came (time.monotonic)
        self.end_deadline = 0.0
        self.telemetry: dict[int, list[m.TelemetrySample]] = {}  # by worker
        self.telemetry_sources: dict[int, dict[str, str]] = {}
        # --save-token-times: each running request's outputs (time, tokens), until it ends.
        self.token_times: dict[int, list[tuple[int, int]]] | None = {} if token_times else None

    # --- rows ----------------------------------------------------------------

    def extend(self, rid_hi: int) -> None:
        self.rid_hi = max(self.rid_hi, rid_hi)

    def _grow(self, k_max: int) -> None:
        if k_max < self.size:
            return
        new = min(max(self.size * 2, k_max + 1, 1024), self.rid_hi - self.rid_lo)
        for name, col in self.c.items():
            grown = np.zeros(new, col.dtype)
            grown[: self.size] = col
            self.c[name] = grown
        self.size = new

    def mine(self, rids: np.ndarray) -> np.ndarray:
        """Which of ``rids`` belong to this benchmark (the rest are late, or foreign)."""
        return (rids >= self.rid_lo) & (rids < self.rid_hi)

    def reject(self, kind: str, count: int = 1) -> None:
        self.rejected[kind] += count

    # --- ingest --------------------------------------------------------------

    def _window(self, t: np.ndarray, zero_ok: bool = False) -> np.ndarray:
        ok = (t >= self.t0_ns - MARGIN_NS) & (t <= time.monotonic_ns() + MARGIN_NS)
        return ok | (t == 0) if zero_ok else ok

    def started(self, recs: list[m.Started], worker_id: int) -> None:
        """Requests a worker received (or the coordinator lost with its worker)."""
        if not recs:
            return
        a, fits = _ints([(s.rid, s.bench, s.phase, s.sched_ns, s.recv_ns, s.prompt_len, s.max_tokens,
                    s.release_ns, s.dispatched_ns) for s in recs])  # fmt: skip
        if not 0 <= worker_id < MAX_WORKER_ID or not fits.any():
            return self.reject("bad started", len(recs))
        if not fits.all():
            self.reject("bad started", int((~fits).sum()))
        rid, bench, phase, sched, recv, plen, mtok, rel, disp = a.T
        k = rid - self.rid_lo
        ok = (
            fits
            & (bench == self.bench)
            & (k >= 0)
            & (k < self.rid_hi - self.rid_lo)
            & (phase >= 0)
            & (phase <= 2)
        )
        ok &= (plen >= 0) & (plen <= self.max_prompt) & (mtok >= 1) & (mtok <= self.max_tokens)
        ok &= (
            self._window(sched)
            & self._window(recv, True)
            & self._window(rel, True)
            & self._window(disp, True)
        )
        first = np.zeros(len(k), bool)
        first[np.unique(np.where(ok, k, -1), return_index=True)[1]] = True
        ok &= first  # a request named twice in one message: once
        if ok.any():
            self._grow(int(k[ok].max()))
            ok[ok] &= ~self.c["started"][k[ok]]
        if not ok[fits].all():
            self.reject("bad, foreign or repeated started", int((~ok[fits]).sum()))
        if not ok.any():
            return
        c, k = self.c, k[ok]
        for key, col in (("phase", phase), ("sched", sched), ("recv", recv), ("release", rel),
                         ("dispatched", disp), ("prompt_len", plen), ("max_tokens", mtok)):  # fmt: skip
            c[key][k] = col[ok]
        c["worker"][k] = worker_id
        c["started"][k] = True

    def tokens(self, rid: np.ndarray, n: np.ndarray, t: np.ndarray, wid: np.ndarray | int) -> None:
        """Outputs: ``n`` new tokens of request ``rid`` arrived at ``t``, reported by worker ``wid``.

        Columnar and checked entry by entry, so a batch of many workers' messages is one
        pass and a foreign entry costs only itself. Entries of one request are applied in
        time order.
        """
        k = rid - self.rid_lo
        ok = self._running(k, wid) & (n >= 1)
        ok &= (t >= self.t0_ns - MARGIN_NS) & (t <= time.monotonic_ns() + MARGIN_NS)
        if not ok.all():
            self.reject("tokens for a request that is not running here", int((~ok).sum()))
            k, n, t = k[ok], n[ok], t[ok]
        if not len(k):
            return
        order = np.lexsort((t, k))
        k, n, t = k[order], n[order], t[order]
        k, n, t = self._in_order_and_within_max(k, n, t)
        if len(k):
            self._apply_outputs(k, n, t)

    def _in_order_and_within_max(
        self, k: np.ndarray, n: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Drop outputs earlier than their request's last one, and tokens past its maximum."""
        c = self.c
        ok = t >= c["last"][k]
        start = np.ones(len(k), bool)
        start[1:] = k[1:] != k[:-1]
        heads = np.flatnonzero(start)
        cs = np.cumsum(np.where(ok, n, 0))
        base = np.repeat(
            cs[heads] - np.where(ok[heads], n[heads], 0), np.diff(np.append(heads, len(k)))
        )
        ok &= c["n_out"][k] + (cs - base) <= c["max_tokens"][k]
        if not ok.all():
            self.reject("tokens out of order or beyond the request's maximum", int((~ok).sum()))
            return k[ok], n[ok], t[ok]
        return k, n, t

    def _apply_outputs(self, k: np.ndarray, n: np.ndarray, t: np.ndarray) -> None:
        """Outputs sorted by request and time, all valid: the columns take them in one pass."""
        c = self.c
        start = np.ones(len(k), bool)
        start[1:] = k[1:] != k[:-1]
        heads = np.flatnonzero(start)
        prev = c["last"][k]
        later = np.flatnonzero(~start)
        prev[later] = t[later - 1]
        first = prev == 0
        c["first"][k[first]] = t[first]
        tails = np.append(heads[1:] - 1, len(k) - 1)
        uk = k[heads]
        c["last"][uk] = t[tails]
        c["n_out"][uk] += np.add.reduceat(n, heads).astype(np.int32)
        c["n_chunks"][uk] += np.diff(np.append(heads, len(k))).astype(np.int32)
        self.out_tokens += int(n.sum())
        if self.token_times is not None:
            for ki, ti, ni in zip(k.tolist(), t.tolist(), n.tolist(), strict=True):
                self.token_times.setdefault(ki, []).append((ti, ni))
        self._measured_outputs(k, n, t, prev, first)

    def _measured_outputs(self, k: np.ndarray, n: np.ndarray, t: np.ndarray, prev: np.ndarray,
                          first: np.ndarray) -> None:  # fmt: skip
        meas = self.c["phase"][k] == m.PHASE_MEASURED
        if not meas.all():
            if not meas.any():
                return
            k, n, t, prev, first = k[meas], n[meas], t[meas], prev[meas], first[meas]
        gap = np.where(first, 0, t - prev)
        self.chunk_k.append(k.astype(np.int32))
        self.chunk_gap.append(gap)
        idx = np.maximum((t - self.t0_ns) // BIN_NS, 0)
        lo, hi = int(idx.min()), int(idx.max())
        if hi >= len(self.token_bins):
            grown = np.zeros(max(hi + 1, 2 * len(self.token_bins), 64), np.int64)
            grown[: len(self.token_bins)] = self.token_bins
            self.token_bins = grown
        # A batch spans a few bins: count within them (np.add.at is an order slower).
        self.token_bins[lo : hi + 1] += np.bincount(
            idx - lo, weights=n, minlength=hi - lo + 1
        ).astype(np.int64)
        if first.any():
            self.ttft_ns.extend((t[first] - self.c["sched"][k[first]])[-256:].tolist())
        if not first.all():
            self.itl_ns.extend(gap[~first][-256:].tolist())

    def _running(self, k: np.ndarray, wid: int) -> np.ndarray:
        """Which rows ``k`` are started, still-running requests of worker ``wid``.

        Checked before any column is indexed: rows may be foreign, and before the first
        start there are no columns at all.
        """
        ok = (k >= 0) & (k < self.size)
        if not ok.any():
            return ok
        kk = np.where(ok, k, 0)
        c = self.c
        return ok & c["started"][kk] & (c["worker"][kk] == wid) & (c["status"][kk] == PENDING)

    def _ending(self, rid: np.ndarray, end: np.ndarray, wid: int, fits: np.ndarray) -> np.ndarray:
        """Which ends are of running requests of ``wid``, once each, at a time after their last output."""
        k = rid - self.rid_lo
        ok = self._running(k, wid) & fits
        if not ok.any():
            return ok
        kk = np.where(ok, k, 0)
        ok &= self._window(end) & (end >= self.c["last"][kk])
        first = np.zeros(len(k), bool)
        first[np.unique(np.where(ok, k, -1), return_index=True)[1]] = True
        return ok & first

    def _valid_ends(
        self, recs: list[Any], worker_id: int
    ) -> tuple[list[Any], np.ndarray, np.ndarray]:
        """The ends (Finished or Failed) that ``_ending`` accepts: themselves, rows and times."""
        if not recs:
            return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
        a, fits = _ints([(r.rid, r.end_ns) for r in recs])
        if not fits.all():
            self.reject("bad end", int((~fits).sum()))
        ok = self._ending(a[:, 0], a[:, 1], worker_id, fits)
        if not ok[fits].all():
            self.reject("end of a request that is not running here", int((~ok[fits]).sum()))
        mine = [r for r, y in zip(recs, ok, strict=True) if y]
        return mine, a[ok, 0] - self.rid_lo, a[ok, 1]

    def finished(self, recs: list[m.Finished], worker_id: int) -> None:
        mine, k, end = self._valid_ends(recs, worker_id)
        self.c["finish"][k] = [_FINISH_CODE.get(f.finish_reason, 3) for f in mine]
        self._engine_times([f for f in mine if f.engine is not None])
        none = self.c["n_out"][k] == 0  # vLLM's client counts a request with no output a failure
        self._end_many(k[~none], end[~none], COMPLETED)
        self._end_many(k[none], end[none], FAILED, [NO_OUTPUT] * int(none.sum()))

    def _engine_times(self, recs: list[m.Finished]) -> None:
        if not recs:
            return
        e, fits = _ints([(f.rid, f.engine.queued_ns, f.engine.scheduled_ns, f.engine.first_token_ns,  # type: ignore[union-attr]
                    f.engine.last_token_ns, f.engine.preemptions) for f in recs])  # type: ignore[union-attr]  # fmt: skip
        ok = fits & self._window(e[:, 1:5], True).all(axis=1) & (e[:, 5] >= 0) & (e[:, 5] < 2**31)
        if not ok.all():
            self.reject("bad engine times", int((~ok).sum()))
        k = e[ok, 0] - self.rid_lo
        for j, key in enumerate(
            ("eng_queued", "eng_sched", "eng_first", "eng_last", "preemptions"), 1
        ):
            self.c[key][k] = e[ok, j]

    def failed(self, recs: list[m.Failed], worker_id: int) -> None:
        mine, k, end = self._valid_ends(recs, worker_id)
        aborted = np.array([f.aborted for f in mine], bool)
        errors = [f.error[:MAX_ERROR_LEN] for f in mine]
        self._end_many(
            k[aborted],
            end[aborted],
            ABORTED,
            [e for e, x in zip(errors, aborted, strict=True) if x],
        )
        self._end_many(
            k[~aborted],
            end[~aborted],
            FAILED,
            [e for e, x in zip(errors, aborted, strict=True) if not x],
        )

    def lost(self, msg: m.Lost) -> None:
        """Requests of a dead worker (from the coordinator): failed, whether or not they started."""
        if 0 <= msg.worker_id < MAX_WORKER_ID:
            self.dead[msg.worker_id] = (msg.reason[:MAX_ERROR_LEN], msg.end_ns)
            done = [s for s in msg.done if s.bench == self.bench]
            self.dead_done.setdefault(msg.worker_id, []).extend(done[:RECENT_DONE_MAX])
            self.lost_at = time.monotonic()
        recs = [
            s for s in msg.requests if s.bench == self.bench and self.rid_lo <= s.rid < self.rid_hi
        ]
        self.late += len(msg.requests) - len(recs)
        if not recs:
            return
        rids = np.fromiter((s.rid for s in recs), np.int64, len(recs))
        new = [
            s
            for s in recs
            if s.rid - self.rid_lo >= self.size or not self.c["started"][s.rid - self.rid_lo]
        ]
        if new:
            self.started(new, msg.worker_id)
        k = rids - self.rid_lo
        k = k[k < self.size]
        k = np.unique(k[self.c["status"][k] == PENDING])
        self._end_many(k, np.full(len(k), msg.end_ns, np.int64), FAILED,
                       [msg.reason[:MAX_ERROR_LEN]] * len(k))  # fmt: skip

    def stranded(self) -> int:
        """How many requests dead workers left without an end (their ends died with them):
        those started here and still running, and those they said were done that the
        collector never heard of. Only a count: their events may still be on the way."""
        if not self.dead:
            return 0
        unheard = {s.rid for done in self._unheard().values() for s in done}
        return len(self._stranded_rows()) + len(unheard)

    def _unheard(self) -> dict[int, list[m.Started]]:
        """By dead worker: the requests it said were done that never started here."""
        return {w: [s for s in done if self._unknown(s.rid)] for w, done in self.dead_done.items()}

    def _stranded_rows(self) -> np.ndarray:
        k = np.array(self.pending_rows(), np.int64)
        return k[np.isin(self.c["worker"][k], list(self.dead))]

    def fail_stranded(self) -> None:
        """Stranded requests fail with the reason their worker died; those never heard of
        are started first, as the coordinator knew them. Their late events, if any, are
        then rejected: a request is never both failed and completed."""
        if not self.dead:
            return
        for wid, unheard in self._unheard().items():
            self.started(unheard, wid)
        self.dead_done = {}
        k = self._stranded_rows()
        for wid, (why, end_ns) in self.dead.items():
            mine = k[self.c["worker"][k] == wid]
            self._end_many(mine, np.full(len(mine), end_ns, np.int64), FAILED, [why] * len(mine))

    def _unknown(self, rid: int) -> bool:
        k = rid - self.rid_lo
        return 0 <= k < self.rid_hi - self.rid_lo and (k >= self.size or not self.c["started"][k])

    def _end_many(
        self, k: np.ndarray, end: np.ndarray, status: int, errors: list[str] | None = None
    ) -> None:
        """Requests ``k`` ended at ``end`` with ``status`` (and, if given, each one's error)."""
        if not len(k):
            return
        c = self.c
        c["status"][k] = status
        c["end"][k] = end
        self.n_ended += len(k)
        if status == COMPLETED:
            self.n_completed += len(k)
        elif status == FAILED:
            self.n_failed += len(k)
        else:
            self.n_aborted += len(k)
        if errors is not None:
            measured = (c["phase"][k] == m.PHASE_MEASURED).tolist()
            for ki, err, meas in zip(k.tolist(), errors, measured, strict=True):
                self.error_of[ki] = err
                if status == FAILED and meas:
                    fits = err in self.errors or len(self.errors) < MAX_ERROR_KINDS
                    self.errors[err if fits else "other"] += 1
        if self.on_end is not None:
            for ki in k.tolist():
                self.on_end(ki)

    def add_telemetry(self, msg: m.Telemetry) -> None:
        """A worker's samples: kept when their time and every figure are plausible."""
        wid = msg.worker_id
        kept = self.telemetry.setdefault(wid, [])
        for s in msg.samples:
            if len(kept) >= MAX_TELEMETRY_SAMPLES or not _plausible(s, self.t0_ns):
                self.reject("bad telemetry sample")
                continue
            kept.append(s)
        self.telemetry_sources[wid] = {
            str(k)[:100]: str(v)[:300] for k, v in list(msg.sources.items())[:10]
        }

    def pending_rows(self) -> list[int]:
        """Rows of requests that started and never ended (their end never came)."""
        c = self.c
        return np.flatnonzero(
            c["started"][: self.size] & (c["status"][: self.size] == PENDING)
        ).tolist()

    # --- what the statistics read --------------------------------------------

    def columns(self) -> dict[str, np.ndarray]:
        """Rows of every request that started, in send order: views, not copies, where (as
        usual) every row up to the last started one did start."""
        started = self.c["started"][: self.size]
        n = int(np.flatnonzero(started)[-1]) + 1 if started.any() else 0
        if started[:n].all():
            return {
                "k": np.arange(n),
                **{key: col[:n] for key, col in self.c.items() if key != "started"},
            }
        rows = np.flatnonzero(started)
        return {"k": rows, **{key: col[rows] for key, col in self.c.items() if key != "started"}}

    def chunks(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured requests' outputs (row, gap ns), by row and, within one, in time order.

        The parts are freed as they are joined: at a million requests this is the
        collector's largest moment.
        """
        if not self.chunk_k:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        k = np.concatenate(self.chunk_k)
        self.chunk_k = []
        order = np.argsort(k, kind="stable")
        k = k[order]
        gap = np.concatenate(self.chunk_gap)
        self.chunk_gap = []
        return k, gap[order]

    def progress(self) -> m.Progress:
        if len(self.ttft_ns) > 100_000:  # keep the live medians cheap on long runs
            self.ttft_ns = self.ttft_ns[-50_000:]
        if len(self.itl_ns) > 100_000:
            self.itl_ns = self.itl_ns[-50_000:]
        ttft = float(np.median(self.ttft_ns)) / 1e6 if self.ttft_ns else None
        itl = float(np.median(self.itl_ns)) / 1e6 if self.itl_ns else None
        return m.Progress(self.bench, self.n_completed, self.n_failed, self.out_tokens, ttft,
                          time.monotonic_ns(), self.n_aborted, itl)  # fmt: skip
