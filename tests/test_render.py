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
        assert float(row["goodput_requests_per_s"]) == b["goodput"]["requests_per_s"]
        assert int(row["concurrency"]) == b["load"]["concurrency"]


def test_html_is_self_contained_and_shows_the_values(rep_a):
    page = to_html(rep_a)
    raw = json.loads((FIX / "report_a.json").read_text())
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing from the network
    n_bench = len(raw["benchmarks"])
    # 3 latency-throughput curves + 3 CDFs + 2 time-series charts per benchmark.
    assert page.count('<figure class="chart"') == 6 + 2 * n_bench
    for b in raw["benchmarks"]:
        assert f"<td>{b['throughput']['requests_per_s']:,.2f}</td>" in page
        assert f"<td>{b['ttft_ms']['p99']:,.2f}</td>" in page
        for w in b["workers"]:
            assert f"<td>{w['output_tokens_per_s']:,.2f}</td>" in page
    assert "Environment" in page and raw["environment"]["python"] in page


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
    assert out.read_text().count('<figure class="chart"') == 3


def test_report_command_renders_csv_and_html(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(FIX / "report_a.json"),
         "--output", str(tmp_path / "r.csv"), "--output", str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.csv").read_text() == to_csv(read_json(FIX / "report_a.json"))
    assert "<svg" in (tmp_path / "r.html").read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def test_html_report_draws_in_a_real_browser(tmp_path, rep_a):
    browser = _chromium()
    if browser is None:
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            raise AssertionError("HARNESS_REQUIRE_BROWSER=1 but no chromium")
        pytest.skip("chromium is not installed")
    page = tmp_path / "report.html"
    page.write_text(to_html(rep_a))
    common = [browser, *FLAGS, "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    charts = re.search(r'data-charts="(\d+)/(\d+)"', dom.stdout)
    assert charts, dom.stderr[-2000:]
    drew, total = int(charts[1]), int(charts[2])
    assert total == 6 + 2 * len(rep_a.benchmarks) and drew == total
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    shots = ROOT / "results"
    shots.mkdir(exist_ok=True)
    shot = shots / "report-screenshot.png"
    subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'p2'}", "--window-size=1400,2000",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20_000


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
