"""Which devices each worker gets."""

from __future__ import annotations

import pytest

from workers.placement import PlacementError, discover_gpus, place_cpus, place_gpus

EIGHT = [str(i) for i in range(8)]


def table(slots):
    return [(s.worker_id, s.env["CUDA_VISIBLE_DEVICES"]) for s in slots]


def test_two_by_four_on_eight_gpus():
    assert table(place_gpus(2, 4, EIGHT)) == [(0, "0,1,2,3"), (1, "4,5,6,7")]


def test_eight_by_one():
    assert table(place_gpus(8, 1, EIGHT)) == [(i, str(i)) for i in range(8)]


def test_four_by_two_on_explicit_list():
    gpus = "0,1,2,3,4,5,6,7".split(",")
    assert table(place_gpus(4, 2, gpus)) == [(0, "0,1"), (1, "2,3"), (2, "4,5"), (3, "6,7")]


def test_subset_keeps_given_ids():
    assert table(place_gpus(2, 2, ["0", "1", "4", "5"])) == [(0, "0,1"), (1, "4,5")]


def test_too_many_gpus_is_a_clear_error():
    with pytest.raises(PlacementError, match="needs 16 GPUs, but 8 are available"):
        place_gpus(4, 4, EIGHT)


def test_cpu_workers_get_their_own_cores():
    slots = place_cpus(2, [0, 1], 2)
    assert [s.env["VLLM_CPU_OMP_THREADS_BIND"] for s in slots] == ["0", "1"]
    assert all(s.env["VLLM_CPU_KVCACHE_SPACE"] == "2" for s in slots)
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" for s in slots)
    # A share of several cores keeps one for the worker's own Python side.
    four = place_cpus(2, [0, 1, 2, 3], 1)
    assert [s.env["VLLM_CPU_OMP_THREADS_BIND"] for s in four] == ["0", "2"]
    assert [s.devices for s in four] == [["0", "1"], ["2", "3"]]
    assert place_cpus(1, [0, 1, 2], 1)[0].env["VLLM_CPU_OMP_THREADS_BIND"] == "0,1"
    with pytest.raises(PlacementError):
        place_cpus(3, [0, 1], 1)


def test_discovery_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert discover_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert discover_gpus() == []
