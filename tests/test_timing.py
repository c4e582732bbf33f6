"""Time to answer: where the wall time went, and the report before the engines stop."""

from __future__ import annotations

import json
import time

import psutil

from tests.conftest import start_harness

RUN = dict(engine="sim", sim="decode_ms=2", profile="constant", rate=200, max_requests=200,
           data="prompt_tokens=8,output_tokens=4")  # fmt: skip


def test_phase_timings_add_up_to_the_wall_time(tmp_path):
    t0 = time.time()
    proc = start_harness(tmp_path, **RUN)
    proc.communicate(timeout=120)
    wall = time.time() - t0
    assert proc.returncode == 0
    t = json.loads((tmp_path / "out.json").read_text())["timings"]
    phases = {k: v for k, v in t.items() if k != "wall"}
    assert list(phases)[:3] == ["set-up (imports, options, workload)", "spawn", "engine start"]
    assert list(phases)[-2:] == ["results", "shutdown"]
    assert "benchmark 0: constant@200/s" in phases
    assert abs(sum(phases.values()) - t["wall"]) < 0.01
    # The process's own start counts too, to the kernel's tick: never more than the caller saw
    # (psutil's create_time, a whole-second boot time plus ticks, could be 1 s over).
    assert -0.05 < wall - t["wall"] < 1.0
    assert 0.9 < phases["benchmark 0: constant@200/s"] < 20  # 200 sends at 200/s


def test_the_report_is_written_before_an_engine_that_will_not_stop(tmp_path):
    proc = start_harness(
        tmp_path, **{**RUN, "sim": "decode_ms=2,shutdown_delay_s=30"}, checkpoint_s=0
    )
    out = tmp_path / "out.json"
    while not out.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    written = time.time()
    assert proc.poll() is None  # the answer is on disk while the engine is still being stopped
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert json.loads(out.read_text())["benchmarks"][0]["requests"]["completed"] == 200
    proc.communicate(timeout=60)
    waited = time.time() - written
    assert proc.returncode == 0
    assert waited < 15  # it was stopped after its grace, not after its 30 s
    t = json.loads(out.read_text())["timings"]
    assert t["results"] < 3  # on disk within 3 s of the last result
    assert 2.5 <= t["shutdown"] < 10  # and the report says so
    _, alive = psutil.wait_procs(kids, timeout=5)
    assert alive == []
