"""Telemetry through the sim engine: its own scheduler view, the devices, the harness's cost."""

from __future__ import annotations

RUN = dict(engine="sim", workers=2, sim="decode_ms=5,max_num_seqs=2", profile="constant", rate=60,
           max_requests=150, data="prompt_tokens=8,output_tokens=20")  # fmt: skip


def test_the_sim_engine_reports_its_scheduler_through_the_same_path(harness):
    _, rep = harness(**RUN, telemetry_interval=0.25)
    b = rep["benchmarks"][0]
    tele = {w["worker_id"]: w for w in b["telemetry"]}
    assert sorted(tele) == [0, 1]
    for w in tele.values():
        s, sm = w["series"], w["summary"]
        assert len(s["t_s"]) >= 8  # about 2.5 s at 0.25 s
        assert all(0.15 < b - a < 0.5 for a, b in zip(s["t_s"], s["t_s"][1:], strict=False))
        assert max(s["running"]) <= 2 and max(s["running"]) > 1  # its batch holds 2
        assert max(s["waiting"]) > 0  # 30/s per worker of 100 ms each: requests wait for a slot
        assert s["kv_usage_pct"] == [None] * len(s["t_s"]) and sm["kv_usage_mean_pct"] is None
        assert all(x > 0 for x in s["rss_mb"])
        assert (
            w["sources"]["gpu"] == "none: a sim worker has no GPU" and "processes" in w["sources"]
        )
    cost = b["harness_cost"]
    assert set(cost) == {"coordinator", "collector"}
    assert all(
        c["rss_max_mb"] > 10 and c["cpu_max_pct"] >= c["cpu_mean_pct"] >= 0 for c in cost.values()
    )


def test_no_telemetry_means_none(harness):
    _, rep = harness(**RUN, no_telemetry=True)
    assert rep["benchmarks"][0]["telemetry"] == [] and rep["config"]["telemetry_s"] == 0


def test_efficiency_reaches_the_csv_and_the_layout_summary(harness, tmp_path):
    import msgspec

    from harness.layouts import Layout, row_for
    from harness.render import csv_rows
    from harness.report import read_json
    from harness.telemetry import efficiency

    _, rep = harness(**RUN, telemetry_interval=0.25)
    assert (
        rep["benchmarks"][0]["efficiency"]["gpus"] == 0
    )  # a sim run has no GPU: no per-GPU figure
    report = read_json(tmp_path / "out.json")
    b = report.benchmarks[0]
    row = csv_rows(report)[0]
    assert row["gpus"] == 0 and row["output_tokens_per_s_per_gpu"] is None
    assert row["engines_running_mean"] == sum(w.summary.running_mean for w in b.telemetry) > 0
    assert row["engines_kv_usage_mean_pct"] is None and row["engines_energy_j"] is None
    # As on a node of 2 GPUs whose NVML counted 40 J and 60 J over the benchmark:
    for w, joules in zip(b.telemetry, (40.0, 60.0), strict=True):
        w.summary.energy_j = joules
    b.efficiency = efficiency(2, b.throughput.output_tokens, b.throughput.output_tokens_per_s,
                              b.telemetry)  # fmt: skip
    assert b.efficiency.energy_j == 100.0
    assert b.efficiency.output_tokens_per_joule == b.throughput.output_tokens / 100.0
    r = row_for(Layout(2, 1), [b], partial=False)
    assert r.peak_output_tokens_per_s_per_gpu == b.throughput.output_tokens_per_s / 2
    assert r.output_tokens_per_joule == b.throughput.output_tokens / 100.0
    assert msgspec.json.decode(msgspec.json.encode(r))["output_tokens_per_joule"] > 0


def test_the_html_report_draws_the_engines_under_the_latency(harness, tmp_path):
    from harness.render import to_html
    from harness.report import read_json
    from tests.test_render import _browser, _drawn

    harness(**RUN, telemetry_interval=0.25)
    report = read_json(tmp_path / "out.json")
    page = to_html(report)
    assert "Engines and devices" in page and "none: a sim worker has no GPU" in page
    assert "KV cache, queues and devices" in page or "running" in page
    path = tmp_path / "r.html"
    path.write_text(page)
    drew, total = _drawn(_browser(), path, tmp_path / "profile")
    assert drew == total and total >= 2  # the latency time series and the engines' under it
