"""Every request on record, figures re-derived from the records, and exports vLLM reads."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from harness.records import read
from tests.conftest import ROOT

RUN = dict(engine="sim", sim="prefill_ms=3,decode_ms=2,fail_every=9", profile="constant", rate=150,
           max_requests=120, warmup="10", cooldown="10", data="prompt_tokens=8,output_tokens=5")  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("records")
    from tests.conftest import run_harness

    _, rep = run_harness(
        tmp, output=[tmp / "out.json", tmp / "requests.jsonl.gz"], save_token_times=True, **RUN
    )
    return tmp, rep, read(tmp / "requests.jsonl.gz")


def test_every_sent_request_has_exactly_one_row(saved):
    _, rep, rows = saved
    b = rep["benchmarks"][0]
    assert len(rows) == len({r["rid"] for r in rows}) == b["requests"]["scheduled"] == 120
    by = lambda key: sum(1 for r in rows if r["phase"] == "measured" and r["status"] == key)  # noqa: E731
    q = b["requests"]
    assert (by("completed"), by("failed")) == (q["completed"], q["failed"])
    assert sum(r["phase"] == "warmup" for r in rows) == q["warmup"] == 10
    assert sum(r["phase"] == "cooldown" for r in rows) == q["cooldown"] == 10
    assert {r["error"] for r in rows if r["status"] == "failed"} == {"sim: injected failure"}
    assert rep["records"] == [str((saved[0] / "requests.jsonl.gz").resolve())]


def test_the_report_rederives_from_the_records_to_the_last_digit(saved):
    import numpy as np

    _, rep, rows = saved
    b = rep["benchmarks"][0]
    ok = sorted(
        (r for r in rows if r["phase"] == "measured" and r["status"] == "completed"),
        key=lambda r: r["request"],
    )
    ttft = np.array([(r["first_token_ns"] - r["scheduled_ns"]) / 1e9 for r in ok])
    e2e_send = np.array([(r["last_token_ns"] - r["sent_ns"]) / 1e9 for r in ok])
    itl = np.array(
        [
            (t1 - t0) / 1e9
            for r in ok
            for t0, t1 in zip(r["token_times_ns"], r["token_times_ns"][1:], strict=False)
        ]
    )
    assert b["ttft_ms"]["mean"] == float(np.mean(ttft) * 1000)
    assert b["ttft_ms"]["p99"] == float(np.percentile(ttft, 99) * 1000)
    assert b["e2e_from_send_ms"]["std"] == float(np.std(e2e_send) * 1000)
    assert b["itl_ms"]["count"] == len(itl) and b["itl_ms"]["median"] == float(
        np.median(itl) * 1000
    )
    assert all(sum(r["token_counts"]) == r["output_tokens"] == 5 for r in ok)


def test_a_closed_loop_time_series_counts_every_measured_send_and_completion(harness):
    _, rep = harness(engine="sim", sim="decode_ms=3", profile="concurrent", concurrency="4", max_requests=300,
                     warmup="20", data="prompt_tokens=8,output_tokens=6")  # fmt: skip
    b = rep["benchmarks"][0]
    ts = b["timeseries"]
    assert sum(ts["sends"]) == b["requests"]["completed"] == 280
    assert sum(ts["completions"]) == 280
    assert sum(ts["output_tokens"]) == 280 * 6


VLLM_KEYS = [  # what vllm bench serve --save-result --save-detailed writes (0.32, default percentiles + e2el)
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
    "burstiness", "max_concurrency", "duration", "completed", "failed", "total_input_tokens",
    "total_output_tokens", "request_throughput", "request_goodput", "output_throughput",
    "total_token_throughput", "input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times",
    "queue_times", "generated_texts", "errors", "max_output_tokens_per_s", "max_concurrent_requests", "rtfx",
    *(f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "std", "p99")),
]  # fmt: skip


def test_export_has_vllms_keys_and_its_arrays_give_its_figures(saved, tmp_path):
    tmp, rep, _ = saved
    proc = subprocess.run([sys.executable, "-m", "harness", "export", str(tmp / "out.json"), "--format", "vllm",
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.glob("BENCH--0-*/run=0.json")
    data = json.loads(run.read_text())
    assert [k for k in VLLM_KEYS if k not in data] == []
    summary = json.loads((run.parent / "summary.json").read_text())
    assert isinstance(summary, list) and all(not isinstance(v, list) for v in summary[0].values())
    b = rep["benchmarks"][0]
    assert data["completed"] == b["requests"]["completed"] and data["duration"] == b["duration_s"]
    assert data["mean_ttft_from_schedule_ms"] == b["ttft_ms"]["mean"]
    assert len(data["ttfts"]) == data["num_prompts"] == 100
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(
            "vLLM's calculate_metrics is not installed here; the keys and values above were checked"
        )
    from vllm.benchmarks.serve import calculate_metrics

    outs = [SimpleNamespace(success=e == "", output_tokens=o, prompt_len=i, ttft=t, itl=itl, latency=lat,
                            start_time=s, generated_text="", error=e, input_audio_duration=0.0)
            for i, o, t, itl, lat, s, e in zip(data["input_lens"], data["output_lens"], data["ttfts"], data["itls"],
                                               data["latencies"], data["start_times"], data["errors"], strict=True)]  # fmt: skip
    met, lens = calculate_metrics([None] * len(outs), outs, data["duration"], None, [99.0], {})
    assert lens == data["output_lens"]
    for key in ("completed", "failed", "total_input", "request_throughput", "output_throughput",
                "total_token_throughput", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "mean_tpot_ms",
                "std_tpot_ms", "mean_itl_ms", "median_itl_ms", "std_itl_ms", "mean_e2el_ms", "std_e2el_ms",
                "max_output_tokens_per_s", "max_concurrent_requests"):  # fmt: skip
        ours = data["total_input_tokens" if key == "total_input" else key]
        assert ours == getattr(met, key), key
    for m in ("ttft", "tpot", "itl", "e2el"):
        assert data[f"p99_{m}_ms"] == dict(getattr(met, f"percentiles_{m}_ms"))[99.0], m


def test_a_million_requests_each_on_record_within_the_memory_ceiling(tmp_path):
    """1,000,000 requests through 2 sim workers: one row each, every process within its ceiling."""
    import gzip
    import time

    import psutil

    from harness.limits import MEMORY
    from tests.conftest import start_harness

    n, out = 1_000_000, 4
    proc = start_harness(tmp_path, engine="sim", workers=2, profile="constant", rate=40_000, max_requests=n,
                         checkpoint_s=0, data=f"prompt_tokens=16,output_tokens={out}",
                         output=[tmp_path / "out.json", tmp_path / "requests.jsonl.gz"])  # fmt: skip
    peak: dict[str, int] = {}
    while proc.poll() is None:
        try:
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]:
                name = next((a for a in p.cmdline() if a.startswith("harness-")), "coordinator")
                peak[name] = max(peak.get(name, 0), p.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["benchmarks"][0]["requests"]["completed"] == n
    seen = bytearray(n)
    with gzip.open(tmp_path / "requests.jsonl.gz", "rb") as fh:
        for line in fh:
            rid = int(line[line.index(b'"rid":') + 6 : line.index(b',"worker"')])
            seen[rid] += 1
    assert seen.count(1) == n  # every request exactly once
    mb = {k: v / 2**20 for k, v in peak.items()}
    assert mb["harness-collector"] < MEMORY.collector_mb(n, n * out), mb
    assert mb["coordinator"] < MEMORY.coordinator_mb(n), mb
    assert all(mb[w] < MEMORY.worker_mb for w in mb if w.startswith("harness-worker")), mb
