"""CSV, HTML and compare, rendered from fixed reports; and the HTML in a real browser."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import plotly.offline
import pytest

from harness.compare import delta_pct, differences, pair
from harness.compare import rows as compare_rows
from harness.render import to_csv, to_html
from harness.report import read_json

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def rep_a():
    return read_json(FIX / "report_a.json")


def test_csv_values_match_the_report(rep_a):
    raw = json.loads((FIX / "report_a.json").read_text())
    rows = list(csv.DictReader(io.StringIO(to_csv(rep_a))))
    assert len(rows) == len(raw["benchmarks"]) == 2
    for row, b in zip(rows, raw["benchmarks"], strict=True):
        assert row["name"] == b["name"]
        assert int(row["requests_completed"]) == b["requests"]["completed"]
        assert float(row["requests_per_s"]) == b["throughput"]["requests_per_s"]
        assert float(row["output_tokens_per_s"]) == b["throughput"]["output_tokens_per_s"]
        for d in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "dispatch_lag_ms"):
            for st in ("mean", "p50", "p99", "p999"):
                assert float(row[f"{d}_{st}"]) == b[d][st]
        for d in ("engine_queue_ms", "engine_prefill_ms"):  # the sim has no engine timestamps
            assert b[d] is None and row[f"{d}_p50"] == ""
        assert float(row["goodput_requests_per_s"]) == b["goodput"]["requests_per_s"]
        assert int(row["concurrency"]) == b["load"]["concurrency"]


def _without_plotly(page: str) -> str:
    """The page less plotly's bundle (a library's code, whose strings name web sites)."""
    bundle = plotly.offline.get_plotlyjs()
    assert page.count(bundle) == 1  # inlined once, whatever the number of charts
    return page.replace(bundle, "")


def _figures(page: str) -> list[dict]:
    m = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S)
    assert m
    return json.loads(m[1])


def test_html_is_self_contained_and_shows_the_values(rep_a):
    page = to_html(rep_a)
    raw = json.loads((FIX / "report_a.json").read_text())
    assert not re.search(r"""(src|href)=["']?https?:""", _without_plotly(page))
    n_bench = len(raw["benchmarks"])
    # 4 latency-throughput curves + 4 CDFs + a time-series chart per benchmark.
    assert page.count('<div class="chart"') == len(_figures(page)) == 8 + n_bench
    for b in raw["benchmarks"]:
        assert f"<td>{b['throughput']['requests_per_s']:,.2f}</td>" in page
        assert f"<td>{b['ttft_ms']['p99']:,.2f}</td>" in page
        assert f"<td>{b['tpot_ms']['p50']:,.2f}</td>" in page
        assert f"<td>{b['goodput']['requests_per_s']:,.2f}</td>" in page
        for w in b["workers"]:
            assert f"<td>{w['output_tokens_per_s']:,.2f}</td>" in page
    assert "Environment" in page and raw["environment"]["python"] in page


def test_html_charts_have_units_slo_lines_log_switches_and_per_second_rates(rep_a):
    figs = _figures(to_html(rep_a))
    titles = [f["layout"]["title"]["text"] for f in figs]
    for f, title in zip(figs, titles, strict=True):
        lay = f["layout"]
        axes = [v for k, v in lay.items() if k.startswith(("xaxis", "yaxis"))]
        named = [a["title"]["text"] for a in axes if a.get("title", {}).get("text")]
        assert all("(" in t for t in named), (title, named)  # every axis title has its unit
        assert "legend" in lay and (lay["legend"].get("x", 0) >= 1 or lay["legend"]["y"] >= 1)
        if title.endswith("CDF") or "vs achieved" in title:
            axis = "xaxis" if title.endswith("CDF") else "yaxis"
            buttons = lay["updatemenus"][0]["buttons"]
            assert [b["args"][0][f"{axis}.type"] for b in buttons] == ["linear", "log"]
    # The fixture's run had --slo ttft_ms=20: a line on the TTFT charts, on no other.
    slo_lines = {
        t: [s for s in f["layout"].get("shapes", [])] for f, t in zip(figs, titles, strict=True)
    }
    assert slo_lines["TTFT vs achieved request rate"][0]["y0"] == 20.0
    assert slo_lines["TTFT CDF"][0]["x0"] == 20.0
    assert slo_lines["ITL CDF"] == [] and slo_lines["E2E latency CDF"] == []
    # Time series: the fixture's v1 reports have no bin_s (1 s): rates are counts per second.
    b = rep_a.benchmarks[0]
    ts = next(f for f, t in zip(figs, titles, strict=True) if t.startswith(f"{b.name}: over time"))
    sends = next(d for d in ts["data"] if d["name"] == "sends/s")
    assert sends["y"][0] == b.timeseries.sends[0] / b.timeseries.bin_s


def test_html_time_series_divide_by_the_bin_width(rep_a):
    import msgspec

    b = rep_a.benchmarks[0]
    ts = msgspec.structs.replace(b.timeseries, t_s=[0.25, 0.5], sends=[5, 3], completions=[1, 6],
                                 output_tokens=[8, 48], inflight=[4, 1], bin_s=0.25)  # fmt: skip
    one = msgspec.structs.replace(rep_a, benchmarks=[msgspec.structs.replace(b, timeseries=ts)])
    fig = next(f for f in _figures(to_html(one)) if "over time" in f["layout"]["title"]["text"])
    by_name = {d["name"]: d for d in fig["data"]}
    assert by_name["sends/s"]["x"] == [0.0, 0.25, 0.5] and by_name["sends/s"]["y"] == [20, 12, 12]
    assert by_name["output tok/s"]["y"][:2] == [32, 192]
    assert "bins of 0.25 s" in fig["layout"]["title"]["text"]


def test_html_names_benchmarks_by_their_rounded_rate(rep_a):
    import msgspec

    b = rep_a.benchmarks[0]
    load = msgspec.structs.replace(b.load, profile="constant", requested_rate=12.345678)
    odd = msgspec.structs.replace(b, name="constant@12.345678/s", load=load)
    page = to_html(msgspec.structs.replace(rep_a, benchmarks=[odd]))
    assert (
        "constant@12.3/s" in page
        and "constant@12.345678/s" not in _without_plotly(page).split("<h2>Config")[0]
    )


def test_compare_deltas_are_exact():
    a, b = read_json(FIX / "report_a.json"), read_json(FIX / "report_b.json")
    table, warnings = compare_rows(a, [b])
    rows = {(r[0], r[1]): r for r in table}
    for bench in a.benchmarks:
        assert rows[(bench.name, "req/s")][4] == "+25.00% better"
        assert rows[(bench.name, "TTFT p99 ms")][4] == "-50.00% better"
        assert rows[(bench.name, "ITL p50 ms")][4] == "+0.00% same"
    assert warnings == []
    assert delta_pct(200.0, 150.0) == -25.0 and delta_pct(0.0, 1.0) is None


def test_compare_pairs_by_load_and_warns_about_what_does_not_match():
    import msgspec

    a, b = read_json(FIX / "report_a.json"), read_json(FIX / "report_b.json")
    # The other run's benchmarks in reverse order, and one of them at another load.
    other = msgspec.structs.replace(b, benchmarks=list(reversed(b.benchmarks)))
    pairs = pair(a, other)
    assert [(p.base.name, p.other.name) for p in pairs] == [(x.name, x.name) for x in a.benchmarks]
    moved = msgspec.structs.replace(other.benchmarks[0], name="synchronous")
    moved.load = msgspec.structs.replace(moved.load, profile="synchronous", requested_rate=None,
                                         concurrency=1)  # fmt: skip
    odd = msgspec.structs.replace(b, benchmarks=[moved, other.benchmarks[1]])
    _, warnings = compare_rows(a, [odd])
    assert any("no benchmark of this load in the other run" in w for w in warnings)
    assert any("synchronous: only in the other run" in w for w in warnings)


def test_compare_lists_config_and_environment_differences():
    import msgspec

    a, b = read_json(FIX / "report_a.json"), read_json(FIX / "report_b.json")
    env = msgspec.structs.replace(
        b.environment, packages={**b.environment.packages, "vllm": "0.99.0"}
    )
    b2 = msgspec.structs.replace(b, environment=env, config={**b.config, "workers": 7})
    diffs = dict(differences([a, b2]))
    assert diffs["config.workers"][1] == "7"
    assert diffs["environment.packages.vllm"][1] == "0.99.0"


def test_compare_cli_prints_and_writes_html(tmp_path):
    out = tmp_path / "cmp.html"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "compare", str(FIX / "report_a.json"),
         str(FIX / "report_b.json"), "--output", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "+25.00% better" in proc.stdout and "-50.00% better" in proc.stdout
    page = out.read_text()
    assert page.count('<div class="chart"') == 4  # TTFT, TPOT, ITL, E2E vs throughput
    figs = _figures(page)
    for f in figs:  # one colour per run, whatever the series
        colors = {d["legendgroup"]: set() for d in f["data"]}
        for d in f["data"]:
            colors[d["legendgroup"]].add(d["line"]["color"])
        assert sorted(colors) == ["report_a", "report_b"]
        assert all(len(c) == 1 for c in colors.values())
        assert len({c for cs in colors.values() for c in cs}) == 2
    assert '<td class="better">+25.00% better</td>' in page


def test_report_command_renders_csv_and_html(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(FIX / "report_a.json"),
         "--output", str(tmp_path / "r.csv"), "--output", str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.csv").read_text() == to_csv(read_json(FIX / "report_a.json"))
    assert '<div class="chart"' in (tmp_path / "r.html").read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # No network at all: anything the page tried to fetch would fail, and say so.
         "--host-resolver-rules=MAP * ~NOTFOUND",
         # Run the page's timers and promises (plotly draws asynchronously) before dumping.
         "--virtual-time-budget=15000"]  # fmt: skip


def _browser() -> str:
    browser = _chromium()
    if browser is None:
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            raise AssertionError("HARNESS_REQUIRE_BROWSER=1 but no chromium")
        pytest.skip("chromium is not installed")
    return browser


def _drawn(browser: str, page: Path, profile: Path) -> tuple[int, int]:
    """How many of the page's charts drew, of how many; no console message allowed."""
    dom = subprocess.run(
        [browser, *FLAGS, "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    charts = re.search(r'data-charts="(\d+)/(\d+)"', dom.stdout)
    assert charts, dom.stderr[-2000:]
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    return int(charts[1]), int(charts[2])


def test_html_report_draws_in_a_real_browser(tmp_path, rep_a):
    browser = _browser()
    page = tmp_path / "report.html"
    page.write_text(to_html(rep_a))
    drew, total = _drawn(browser, page, tmp_path / "p1")
    assert total == 8 + len(rep_a.benchmarks) and drew == total
    shots = ROOT / "results"
    shots.mkdir(exist_ok=True)
    shot = shots / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={tmp_path / 'p2'}", "--window-size=1400,2000",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20_000


def ten_benchmarks(rep):  # type: ignore[no-untyped-def]
    """A report of 10 benchmarks: the fixture's, repeated at other rates."""
    import msgspec

    benches = []
    for i in range(10):
        b = rep.benchmarks[i % len(rep.benchmarks)]
        load = msgspec.structs.replace(b.load, profile="constant", requested_rate=10.0 * (i + 1))
        benches.append(msgspec.structs.replace(b, index=i, name=f"constant@{10 * (i + 1)}/s",
                                               load=load))  # fmt: skip
    return msgspec.structs.replace(rep, benchmarks=benches)


def test_a_ten_benchmark_report_draws_and_stays_small(tmp_path, rep_a):
    rep = ten_benchmarks(rep_a)
    html_text = to_html(rep)
    # Past plotly's bundle (inlined once), the charts and tables of 10 benchmarks are small.
    assert len(_without_plotly(html_text).encode()) < 300_000
    page = tmp_path / "ten.html"
    page.write_text(html_text)
    drew, total = _drawn(_browser(), page, tmp_path / "p")
    assert total == 8 + 10 and drew == total


def test_compare_page_draws_in_a_real_browser(tmp_path):
    from harness.render import compare_html

    a, b = read_json(FIX / "report_a.json"), read_json(FIX / "report_b.json")
    page = tmp_path / "cmp.html"
    page.write_text(compare_html(["a", "b"], [a, b]))
    assert _drawn(_browser(), page, tmp_path / "p") == (4, 4)


def test_compare_cli_warns_and_prints_the_differences(tmp_path):
    import msgspec

    from harness.report import to_json

    a, b = read_json(FIX / "report_a.json"), read_json(FIX / "report_b.json")
    engine = {**a.config.get("engine_args", {}), "max_num_seqs": 7}
    b2 = msgspec.structs.replace(
        b, benchmarks=b.benchmarks[:1], config={**b.config, "engine_args": engine}
    )
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_bytes(to_json(a))
    pb.write_bytes(to_json(b2))
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", str(pa), str(pb)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    missing = a.benchmarks[1].name
    assert f"warning: run 1: {missing}: no benchmark of this load in the other run" in proc.stdout
    assert "differences between the runs:" in proc.stdout
    assert "config.engine_args.max_num_seqs: " in proc.stdout and "| 7" in proc.stdout


def test_a_burst_or_a_closed_loop_shows_no_achieved_send_rate(rep_a):
    import msgspec

    from harness.report import bench_table

    b = rep_a.benchmarks[0]  # concurrent: a closed loop
    burst = msgspec.structs.replace(b, name="throughput", load=msgspec.structs.replace(
        b.load, profile="throughput", concurrency=None, achieved_send_rate=0.0))  # fmt: skip
    paced = msgspec.structs.replace(b, name="constant@50/s", load=msgspec.structs.replace(
        b.load, profile="constant", requested_rate=50.0, achieved_send_rate=49.5))  # fmt: skip
    for x in (b, burst):
        assert "Send rate requested / achieved (req/s):     - / -" in bench_table(x)
    assert "50.00 / 49.50" in bench_table(paced)
    page = to_html(msgspec.structs.replace(rep_a, benchmarks=[burst, paced]))
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    rows = re.findall(
        r"<tr><td>(throughput|constant@50/s)</td><td>([^<]*)</td><td>([^<]*)</td>", summary
    )
    assert rows == [("throughput", "-", "-"), ("constant@50/s", "50.00", "49.50")]
