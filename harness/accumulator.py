"""One benchmark's requests in the collector: columns indexed by send order, and their checks.

Everything a peer sends is checked before it touches a column. The request must be
one the coordinator numbered for this benchmark, started once, and reported on by
the worker that started it; times must fall within the benchmark's window; token
counts within the request's maximum. A section of a message that fails a check is
dropped and counted by kind. What passes can only fill rows the coordinator's plan
allows (``rid_hi``), so the collector's memory follows the plan, not the peer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from protocol import messages as m

PENDING, COMPLETED, FAILED, ABORTED = 0, 1, 2, 3
# Times a peer sends must lie within the benchmark's start minus this and now plus this.
# Remote workers' clocks are offset-corrected to well within it.
MARGIN_NS = 60 * 10**9
BIN_NS = 100_000_000  # output tokens are binned at 100 ms as they arrive (measured requests only)
MAX_ERROR_KINDS = 50
MAX_ERROR_LEN = 500
MAX_WORKER_ID = 1 << 15
NO_OUTPUT = "finished with no output tokens"

COLUMNS: dict[str, type] = {
    "started": np.bool_,
    "status": np.int8,
    "phase": np.int8,
    "worker": np.int32,
    "sched": np.int64,
    "recv": np.int64,
    "release": np.int64,
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
}


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
        self.chunk_k: list[np.ndarray] = []  # measured requests' outputs: row, gap to the
        self.chunk_gap: list[np.ndarray] = []  # previous output (0 for the first) and tokens
        self.chunk_n: list[np.ndarray] = []
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
        self.end_deadline = 0.0
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

    def _in_window(self, t: np.ndarray | int, allow_zero: bool = False) -> bool:
        lo, hi = self.t0_ns - MARGIN_NS, time.monotonic_ns() + MARGIN_NS
        arr = np.asarray(t, np.int64)
        ok = (arr >= lo) & (arr <= hi)
        if allow_zero:
            ok |= arr == 0
        return bool(ok.all())

    def mine(self, rids: np.ndarray) -> np.ndarray:
        """Which of ``rids`` belong to this benchmark (the rest are late, or foreign)."""
        return (rids >= self.rid_lo) & (rids < self.rid_hi)

    def _rows(self, rids: np.ndarray, worker_id: int) -> np.ndarray | None:
        """Rows of started, still pending requests of ``worker_id``; None if any is not one."""
        k = rids - self.rid_lo
        if len(k) and (k.min() < 0 or k.max() >= self.size):
            return None
        c = self.c
        if not (c["started"][k].all() and (c["worker"][k] == worker_id).all()):
            return None
        if not (c["status"][k] == PENDING).all():
            return None
        return k

    def reject(self, kind: str) -> None:
        self.rejected[kind] += 1

    # --- ingest --------------------------------------------------------------

    def started(self, recs: list[m.Started], worker_id: int) -> None:
        """Requests a worker received (or the coordinator lost with its worker)."""
        rids = np.fromiter((s.rid for s in recs), np.int64, len(recs))
        if not (0 <= worker_id < MAX_WORKER_ID) or len(np.unique(rids)) != len(rids):
            return self.reject("bad started")
        if not self.mine(rids).all() or any(s.bench != self.bench for s in recs):
            return self.reject("started for another benchmark")
        k = rids - self.rid_lo
        self._grow(int(k.max()))
        c = self.c
        if c["started"][k].any():
            return self.reject("started twice")
        for s in recs:
            if not (
                s.phase in (m.PHASE_MEASURED, m.PHASE_WARMUP, m.PHASE_COOLDOWN)
                and 0 <= s.prompt_len <= self.max_prompt and 1 <= s.max_tokens <= self.max_tokens
            ):  # fmt: skip
                return self.reject("bad started")
        times = [(s.sched_ns, s.recv_ns, s.release_ns) for s in recs]
        if not (
            self._in_window([t[0] for t in times])
            and self._in_window([x for t in times for x in t[1:]], True)
        ):
            return self.reject("started out of the benchmark's time")
        for key, field in (("phase", "phase"), ("sched", "sched_ns"), ("recv", "recv_ns"),
                           ("release", "release_ns"), ("prompt_len", "prompt_len"),
                           ("max_tokens", "max_tokens")):  # fmt: skip
            c[key][k] = [getattr(s, field) for s in recs]
        c["worker"][k] = worker_id
        c["started"][k] = True

    def tokens(self, rid: np.ndarray, n: np.ndarray, t: np.ndarray, worker_id: int) -> None:
        """Outputs: ``n`` new tokens of request ``rid`` arrived at ``t``."""
        k = self._rows(rid, worker_id)
        if k is None:
            return self.reject("tokens for a request that is not running here")
        if len(n) and (n.min() < 1 or not self._in_window(t)):
            return self.reject("bad tokens")
        c = self.c
        order = np.lexsort((t, k))
        k, n, t = k[order], n[order], t[order]
        same = np.zeros(len(k), bool)
        same[1:] = k[1:] == k[:-1]
        prev = c["last"][k]
        prev[same] = t[np.flatnonzero(same) - 1]
        total = np.bincount(k, weights=n, minlength=0).astype(np.int64)
        uk = np.flatnonzero(total)
        if (t < prev).any() or (c["n_out"][uk] + total[uk] > c["max_tokens"][uk]).any():
            return self.reject("tokens out of order or beyond the request's maximum")
        first = prev == 0
        c["first"][k[first]] = t[first]
        last = np.ones(len(k), bool)
        last[:-1] = ~same[1:]
        c["last"][k[last]] = t[last]
        c["n_out"][uk] += total[uk].astype(np.int32)
        np.add.at(c["n_chunks"], k, 1)
        self.out_tokens += int(total.sum())
        if self.token_times is not None:
            for ki, ti, ni in zip(k.tolist(), t.tolist(), n.tolist(), strict=True):
                self.token_times.setdefault(ki, []).append((ti, ni))
        self._measured_outputs(k, n, t, prev, first)

    def _measured_outputs(self, k: np.ndarray, n: np.ndarray, t: np.ndarray, prev: np.ndarray,
                          first: np.ndarray) -> None:  # fmt: skip
        meas = self.c["phase"][k] == m.PHASE_MEASURED
        if not meas.any():
            return
        k, n, t, prev, first = k[meas], n[meas], t[meas], prev[meas], first[meas]
        gap = np.where(first, 0, t - prev)
        self.chunk_k.append(k.astype(np.int32))
        self.chunk_gap.append(gap)
        self.chunk_n.append(n.astype(np.int32))
        idx = (t - self.t0_ns) // BIN_NS
        idx = np.maximum(idx, 0)
        if int(idx.max()) >= len(self.token_bins):
            grown = np.zeros(max(int(idx.max()) + 1, 2 * len(self.token_bins), 64), np.int64)
            grown[: len(self.token_bins)] = self.token_bins
            self.token_bins = grown
        np.add.at(self.token_bins, idx, n)
        if first.any():
            self.ttft_ns.extend((t[first] - self.c["sched"][k[first]]).tolist())
        if (~first).any():
            self.itl_ns.extend(gap[~first][-256:].tolist())

    def finished(self, recs: list[m.Finished], worker_id: int) -> None:
        rids = np.fromiter((f.rid for f in recs), np.int64, len(recs))
        k = self._rows(rids, worker_id)
        if k is None or len(np.unique(k)) != len(k):
            return self.reject("end of a request that is not running here")
        c = self.c
        ends = np.fromiter((f.end_ns for f in recs), np.int64, len(recs))
        eng = [f.engine for f in recs if f.engine is not None]
        eng_t = [
            x for e in eng for x in (e.queued_ns, e.scheduled_ns, e.first_token_ns, e.last_token_ns)
        ]
        if (
            not self._in_window(ends)
            or (ends < c["last"][k]).any()
            or not self._in_window(eng_t, True)
        ):
            return self.reject("end out of the benchmark's time")
        if any(e.preemptions < 0 or e.preemptions >= 2**31 for e in eng):
            return self.reject("bad engine times")
        for i, f in zip(k.tolist(), recs, strict=True):
            if f.engine is not None:
                e = f.engine
                for key, v in (("eng_queued", e.queued_ns), ("eng_sched", e.scheduled_ns),
                               ("eng_first", e.first_token_ns), ("eng_last", e.last_token_ns),
                               ("preemptions", e.preemptions)):  # fmt: skip
                    c[key][i] = v
            if c["n_out"][i] == 0:  # vLLM's client counts a request with no output a failure
                self._end(i, f.end_ns, FAILED, NO_OUTPUT)
            else:
                self._end(i, f.end_ns, COMPLETED)

    def failed(self, recs: list[m.Failed], worker_id: int) -> None:
        rids = np.fromiter((f.rid for f in recs), np.int64, len(recs))
        k = self._rows(rids, worker_id)
        if k is None or len(np.unique(k)) != len(k):
            return self.reject("end of a request that is not running here")
        ends = np.fromiter((f.end_ns for f in recs), np.int64, len(recs))
        if not self._in_window(ends):
            return self.reject("end out of the benchmark's time")
        for i, f in zip(k.tolist(), recs, strict=True):
            self._end(i, f.end_ns, ABORTED if f.aborted else FAILED, f.error[:MAX_ERROR_LEN])

    def lost(self, msg: m.Lost) -> None:
        """Requests of a dead worker (from the coordinator): failed, whether or not they started."""
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
        for k in (rids - self.rid_lo).tolist():
            if k < self.size and self.c["status"][k] == PENDING:
                self._end(k, msg.end_ns, FAILED, msg.reason[:MAX_ERROR_LEN])

    def _end(self, k: int, end_ns: int, status: int, error: str | None = None) -> None:
        c = self.c
        c["status"][k] = status
        c["end"][k] = end_ns
        self.n_ended += 1
        if status == COMPLETED:
            self.n_completed += 1
        elif status == FAILED:
            self.n_failed += 1
        else:
            self.n_aborted += 1
        if error is not None:
            self.error_of[k] = error
            if status == FAILED and c["phase"][k] == m.PHASE_MEASURED:
                fits = error in self.errors or len(self.errors) < MAX_ERROR_KINDS
                self.errors[error if fits else "other"] += 1
        if self.on_end is not None:
            self.on_end(k)

    def pending_rows(self) -> list[int]:
        """Rows of requests that started and never ended (their end never came)."""
        c = self.c
        return np.flatnonzero(
            c["started"][: self.size] & (c["status"][: self.size] == PENDING)
        ).tolist()

    # --- what the statistics read --------------------------------------------

    def columns(self) -> dict[str, np.ndarray]:
        """Rows of every request that started, in send order."""
        rows = np.flatnonzero(self.c["started"][: self.size])
        return {"k": rows, **{key: col[rows] for key, col in self.c.items() if key != "started"}}

    def chunks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured requests' outputs (row, gap ns, tokens), by row and, within one, in time order."""
        if not self.chunk_k:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32)
        k = np.concatenate(self.chunk_k)
        order = np.argsort(k, kind="stable")
        return k[order], np.concatenate(self.chunk_gap)[order], np.concatenate(self.chunk_n)[order]

    def progress(self) -> m.Progress:
        if len(self.ttft_ns) > 100_000:  # keep the live medians cheap on long runs
            self.ttft_ns = self.ttft_ns[-50_000:]
        if len(self.itl_ns) > 100_000:
            self.itl_ns = self.itl_ns[-50_000:]
        ttft = float(np.median(self.ttft_ns)) / 1e6 if self.ttft_ns else None
        itl = float(np.median(self.itl_ns)) / 1e6 if self.itl_ns else None
        return m.Progress(self.bench, self.n_completed, self.n_failed, self.out_tokens, ttft,
                          time.monotonic_ns(), self.n_aborted, itl)  # fmt: skip
