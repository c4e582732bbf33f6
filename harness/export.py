"""Reports in other tools' formats: ``harness export RUN.json --format vllm --output-dir DIR``.

``vllm``: for each benchmark, ``DIR/BENCH--<n>-<name>/run=0.json`` holds the keys that
``vllm bench serve --save-result`` writes, with the same meanings: TTFT and E2E from the
send (vLLM's client clock), ITL per output, ``failed`` counting every unsuccessful request.
The same figures on the scheduled clock are added under keys of their own
(``*_ttft_from_schedule_ms``, ``*_e2el_from_schedule_ms``). Where the run saved its
requests (``--output FILE.jsonl``), the per-request arrays are there too (``itls`` needs
``--save-token-times``). Beside each file, ``summary.json`` is the one-element list that
``vllm bench sweep plot DIR`` reads, as ``vllm bench sweep serve`` lays it out.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import msgspec

from harness.output import atomic_write
from harness.schema import BenchmarkResult, Dist, Report

FORMATS = ("vllm",)
PERCENTILES = (("p50", "median"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"))


def _metric(out: dict[str, Any], name: str, d: Dist | None) -> None:
    """mean, median, std and percentiles of one metric, under vLLM's key names (0 when empty, as vLLM)."""
    out[f"mean_{name}_ms"] = d.mean if d else 0.0
    out[f"median_{name}_ms"] = d.median if d else 0.0
    out[f"std_{name}_ms"] = d.std if d else 0.0
    for key, attr in PERCENTILES:
        out[f"{key}_{name}_ms"] = getattr(d, attr) if d else 0.0


def header(rep: Report, b: BenchmarkResult) -> dict[str, Any]:
    cfg = rep.config
    load = cfg.get("load") if isinstance(cfg.get("load"), dict) else {}
    engine = cfg.get("engine") if isinstance(cfg.get("engine"), dict) else {}
    created = dt.datetime.fromisoformat(rep.created_utc)
    rate = b.load.requested_rate
    return {
        "date": created.strftime("%Y%m%d-%H%M%S"), "endpoint_type": "vllm-harness",
        "backend": "vllm-harness", "label": None, "model_id": engine.get("model") or engine.get("kind"),
        "tokenizer_id": None, "num_prompts": b.requests.completed + b.requests.failed + b.requests.incomplete,
        "request_rate": rate if rate is not None else "inf", "burstiness": load.get("burstiness", 1.0),
        "max_concurrency": b.load.max_concurrency or b.load.concurrency,
    }  # fmt: skip


def vllm_result(
    rep: Report, b: BenchmarkResult, rows: list[dict[str, Any]] | None
) -> dict[str, Any]:
    t = b.throughput
    out = header(rep, b)
    out |= {
        "duration": b.duration_s, "completed": b.requests.completed,
        "failed": b.requests.failed + b.requests.aborted,
        "total_input_tokens": t.input_tokens, "total_output_tokens": t.output_tokens,
        "request_throughput": t.requests_per_s,
        "request_goodput": b.goodput.from_send_requests_per_s if b.goodput else None,
        "output_throughput": t.output_tokens_per_s, "total_token_throughput": t.total_tokens_per_s,
    }  # fmt: skip
    if rows is not None:
        out |= arrays(rows)
    out |= {"max_output_tokens_per_s": t.max_output_tokens_per_s,
            "max_concurrent_requests": t.max_concurrent_requests, "rtfx": 0.0}  # fmt: skip
    for name, d in (("ttft", b.ttft_from_send_ms), ("tpot", b.tpot_ms), ("itl", b.itl_ms),
                    ("e2el", b.e2e_from_send_ms), ("ttft_from_schedule", b.ttft_ms),
                    ("e2el_from_schedule", b.e2e_ms)):  # fmt: skip
        _metric(out, name, d)
    out |= {"harness_benchmark": b.name, "harness_profile": b.load.profile,
            "harness_version": rep.harness_version}  # fmt: skip
    return out


def arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """vLLM's per-request arrays, in send order, for the benchmark's measured requests."""
    rows = sorted((r for r in rows if r["phase"] == "measured"), key=lambda r: r["request"])
    out: dict[str, list[Any]] = {k: [] for k in ("input_lens", "output_lens", "ttfts", "itls", "latencies",
                                                 "start_times", "queue_times", "generated_texts", "errors")}  # fmt: skip
    for r in rows:
        ok = r["status"] == "completed"
        sent = r["sent_ns"] or 0
        times = r.get("token_times_ns") or []
        out["input_lens"].append(r["prompt_tokens"])
        out["output_lens"].append(r["output_tokens"] if ok else 0)
        out["ttfts"].append((r["first_token_ns"] - sent) / 1e9 if ok else 0.0)
        out["itls"].append(
            [(b - a) / 1e9 for a, b in zip(times, times[1:], strict=False)] if ok else []
        )
        out["latencies"].append((r["last_token_ns"] - sent) / 1e9 if ok else 0.0)
        out["start_times"].append(sent / 1e9)
        held = (r["released_ns"] - r["scheduled_ns"]) if r["released_ns"] else 0
        out["queue_times"].append(max(held, 0) / 1e9)
        out["generated_texts"].append("")
        out["errors"].append("" if ok else (r["error"] or r["status"]))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=@-]+", "_", text).strip("_")


def export_vllm(rep: Report, out_dir: Path) -> list[Path]:
    from harness.records import read

    rows: list[dict[str, Any]] | None = None
    files = [Path(p) for p in rep.records if Path(p).exists()]
    if files:
        rows = read(files[0])
    written = []
    for b in rep.benchmarks:
        mine = [r for r in rows if r["benchmark"] == b.index] if rows is not None else None
        data = vllm_result(rep, b, mine)
        folder = out_dir / f"BENCH--{b.index}-{_slug(b.name)}"
        atomic_write(
            folder / "run=0.json", msgspec.json.format(msgspec.json.encode(data), indent=4)
        )
        atomic_write(
            folder / "summary.json",
            msgspec.json.encode([{k: v for k, v in data.items() if not isinstance(v, list)}]),
        )
        written.append(folder / "run=0.json")
    return written
