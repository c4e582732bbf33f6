"""Every request on record: one row per request, written as requests end.

``--output requests.jsonl`` (or ``.jsonl.gz``, or ``.parquet`` with pyarrow) gets a row
for every request a benchmark sent, so anyone can audit or re-derive a figure. Times
are whole nanoseconds from the benchmark's start (its t0), on the coordinator's clock,
so differences are exact; ``None`` where a time is unknown. Rows are buffered in small
batches and written as they fill, so memory stays flat however long the run.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import msgspec

from harness.accumulator import ABORTED, COMPLETED, FAILED, FINISH_REASONS, BenchAccumulator
from protocol import messages as m

RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
BATCH = 4096
PHASES = {m.PHASE_MEASURED: "measured", m.PHASE_WARMUP: "warmup", m.PHASE_COOLDOWN: "cooldown"}
STATUS = {COMPLETED: "completed", FAILED: "failed", ABORTED: "aborted"}
_TIMES = (("scheduled_ns", "sched"), ("released_ns", "release"), ("dispatched_ns", "dispatched"),
          ("sent_ns", "recv"),
          ("first_token_ns", "first"), ("last_token_ns", "last"), ("end_ns", "end"),
          ("engine_queued_ns", "eng_queued"), ("engine_scheduled_ns", "eng_sched"),
          ("engine_first_token_ns", "eng_first"), ("engine_last_token_ns", "eng_last"))  # fmt: skip


def is_records(path: Path) -> bool:
    return str(path).endswith(RECORD_SUFFIXES)


class Record(msgspec.Struct, omit_defaults=False):
    """One request. ``sent`` is the worker's receipt (what vLLM's client calls the send)."""

    benchmark: int
    name: str
    request: int  # its position in the benchmark's send order
    rid: int
    worker: int
    phase: str
    status: str  # completed, failed, aborted, or incomplete (no end came before the benchmark did)
    error: str | None
    finish_reason: str | None  # completed: "length" (its max_tokens) or "stop" (EOS, a stop string)
    prompt_tokens: int
    output_tokens: int
    max_tokens: int
    outputs: int  # outputs it arrived in (tokens can come several to an output)
    scheduled_ns: int | None
    released_ns: int | None  # when a cap let it go, if one held it
    dispatched_ns: int | None  # when the coordinator handed it to its socket
    sent_ns: int | None
    first_token_ns: int | None
    last_token_ns: int | None
    end_ns: int | None
    engine_queued_ns: int | None
    engine_scheduled_ns: int | None
    engine_first_token_ns: int | None
    engine_last_token_ns: int | None
    preemptions: int
    token_times_ns: list[int] | None = None  # --save-token-times: each output's arrival
    token_counts: list[int] | None = None  # and how many tokens it carried


def record(
    acc: BenchAccumulator, k: int, name: str, tokens: list[tuple[int, int]] | None
) -> Record:
    c = acc.c
    t0 = acc.t0_ns

    def rel(col: str) -> int | None:
        v = int(c[col][k])
        return v - t0 if v else None

    status = int(c["status"][k])
    times = {key: rel(col) for key, col in _TIMES}
    return Record(
        benchmark=acc.bench, name=name, request=k, rid=acc.rid_lo + k, worker=int(c["worker"][k]),
        phase=PHASES.get(int(c["phase"][k]), "?"), status=STATUS.get(status, "incomplete"),
        error=acc.error_of.get(k), finish_reason=FINISH_REASONS[int(c["finish"][k])] or None,
        prompt_tokens=int(c["prompt_len"][k]), output_tokens=int(c["n_out"][k]),
        max_tokens=int(c["max_tokens"][k]), outputs=int(c["n_chunks"][k]), preemptions=int(c["preemptions"][k]),
        token_times_ns=[t - t0 for t, _ in tokens] if tokens is not None else None,
        token_counts=[n for _, n in tokens] if tokens is not None else None, **times,
    )  # fmt: skip


class RecordSink:
    """The run's record files; ``add`` takes a row, files are written a batch at a time."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = [Path(p) for p in paths]
        self.rows: list[Record] = []
        self.written = 0
        self.error: str | None = None
        self._files: dict[Path, Any] = {}

    def add(self, row: Record) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.rows or self.error is not None:
            self.rows = []
            return
        try:
            for p in self.paths:
                self._write(p, self.rows)
        except (OSError, ValueError) as e:
            self.error = f"{type(e).__name__}: {e}"  # stop writing; the report says why
        self.written += len(self.rows)
        self.rows = []

    def _write(self, path: Path, rows: list[Record]) -> None:
        if str(path).endswith(".parquet"):
            return self._parquet(path, rows)
        fh = self._files.get(path)
        if fh is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")
            self._files[path] = fh
        fh.write(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
        fh.flush()

    def _parquet(self, path: Path, rows: list[Record]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(
            [msgspec.structs.asdict(r) for r in rows], schema=_arrow_schema()
        )
        writer = self._files.get(path)
        if writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self._files[path] = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)

    def close(self) -> None:
        self.flush()
        for fh in self._files.values():
            try:
                fh.close()
            except (OSError, ValueError):
                pass
        self._files = {}


def _arrow_schema() -> Any:
    import pyarrow as pa

    kinds = {int: pa.int64(), str: pa.string()}
    fields = []
    for f in msgspec.structs.fields(Record):
        if f.name in ("token_times_ns", "token_counts"):
            fields.append(pa.field(f.name, pa.list_(pa.int64())))
        else:
            base = int if "int" in str(f.type) else str
            fields.append(pa.field(f.name, kinds[base]))
    return pa.schema(fields)


def read(path: Path) -> list[dict[str, Any]]:
    """A record file's rows (for export and tests)."""
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(str(path)).to_pylist()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return [msgspec.json.decode(line) for line in fh if line.strip()]
