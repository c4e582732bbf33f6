"""Node layout sweeps: enumeration, the sweep script (sim engine), summaries and the container file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.layouts import Layout, enumerate_layouts

ROOT = Path(__file__).resolve().parent.parent


def test_layouts_for_eight_gpus():
    layouts, skipped = enumerate_layouts(8, [1, 2, 4, 8], heads=32)
    assert [x.name for x in layouts] == ["8x1", "4x2", "2x4", "1x8"]
    assert skipped == []


def test_tp_values_the_heads_or_gpus_do_not_divide_are_skipped_with_why():
    layouts, skipped = enumerate_layouts(8, [1, 2, 3, 4, 8], heads=4)
    assert layouts == [Layout(8, 1), Layout(4, 2), Layout(2, 4)]
    assert [(s.tp, s.reason) for s in skipped] == [
        (3, "tp 3 does not divide 8 GPUs"),
        (8, "tp 8 does not divide the model's 4 attention heads"),
    ]


def sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A node sweep of sim layouts (W x 1: the sim engine takes no --tp)."""
    cmd = [sys.executable, "scripts/sweep.py", "node", "--device", "cpu", "--results", str(tmp_path / "results"), "--sweep-id", "s1", *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


SIM_ARGS = "--engine sim --sim decode_ms=1 --sweep-points 2 --max-requests 20 --data prompt_tokens=8,output_tokens=8 --quiet"


def test_sim_sweep_writes_reports_summary_and_resumes(tmp_path):
    proc = sweep(tmp_path, "--workers-list", "2 4", "--slo", "ttft_ms=1000", "--args", SIM_ARGS)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "results" / "s1"
    assert sorted(p.name for p in out.glob("*x*.json")) == ["2x1.json", "4x1.json"]
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["layout"]: r for r in summary["rows"]}
    assert set(rows) == {"4x1", "2x1"}
    assert all(r["status"] == "ok" and r["peak_output_tokens_per_s"] > 0 for r in rows.values())
    assert all(r["best_slo_rate"] > 0 for r in rows.values())
    best = [r["layout"] for r in rows.values() if r["best"]]
    assert best == [summary["best"]]
    assert rows[summary["best"]]["best_slo_rate"] == max(r["best_slo_rate"] for r in rows.values())
    html = (out / "summary.html").read_text()
    assert "(best)" in html and "<script" not in html
    # Resumed: finished layouts are skipped, not rerun.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*x*.json")}
    again = sweep(tmp_path, "--workers-list", "2 4", "--slo", "ttft_ms=1000", "--args", SIM_ARGS)
    assert again.returncode == 0
    assert again.stdout.count("done already") == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*x*.json")} == stamps
    # harness compare --layouts prints the same summary.
    cmp = subprocess.run([sys.executable, "-m", "harness", "compare", "--layouts", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cmp.returncode == 0 and f"{summary['best']:<9}" in cmp.stdout and "<- best" in cmp.stdout


def test_a_bad_layout_option_fails_the_sweep_before_any_layout_runs(tmp_path):
    proc = sweep(tmp_path, "--workers-list", "1 2", "--args", SIM_ARGS + " --rate 5")
    assert proc.returncode == 1
    assert (
        "sweep: error: 1x1: --rate applies to --profile constant or poisson, not sweep"
        in proc.stderr
    )
    assert not (tmp_path / "results" / "s1").exists()


def test_failed_layouts_are_recorded_and_the_sweep_goes_on(tmp_path):
    failing = SIM_ARGS + " --sim fail_every=2 --max-errors 1"
    proc = sweep(tmp_path, "--workers-list", "2 4", "--args", failing)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "results" / "s1"
    failed = sorted(p.name for p in out.glob("*.failed.json"))
    assert failed == ["2x1.failed.json", "4x1.failed.json"]
    assert not list(out.glob("[0-9]x[0-9].json"))
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert {r["status"] for r in rows} == {"failed"}
    assert all("--max-errors reached" in r["error"] for r in rows)


def test_containerfile_is_pinned_and_installs_the_project():
    text = (ROOT / "Containerfile.vllm").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)[1]
    assert re.fullmatch(r"docker\.io/vllm/vllm-openai(:v\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})", base)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # Every package the project ships is copied in, and pip installs that copy under the
    # image's own versions as constraints.
    for pkg in ("protocol", "workers", "harness"):
        assert f"COPY {pkg} /opt/vllm-harness/{pkg}" in text
    assert "pip install --no-cache-dir -c /tmp/image-constraints.txt /opt/vllm-harness" in text
    (script,) = project["project"]["scripts"]
    assert f'ENTRYPOINT ["{script}"]' in text
    assert re.search(r"^USER 1001$", text, re.M) and "VOLUME /results" in text
    assert "chmod -R g=u" in text


@pytest.mark.parametrize("target", ["sweep-node", "sweep-rate", "container"])
def test_makefile_targets_exist(target):
    proc = subprocess.run(["make", "-n", target, "WORKERS=2", "TP=4", "RATES=1 2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
