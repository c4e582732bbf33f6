"""Every option of ``harness run``, with every profile: it takes effect, or it is refused.

For each profile and each option, two different values of the option are resolved on
top of a valid run of that profile. Both must be refused (one line, exit 2, through the
real CLI), or both must resolve to runs that differ: in their config, placement,
requests, schedule, outputs or network. An option that changes nothing would be
silently ignored, which is what this test exists to catch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from types import SimpleNamespace

import msgspec
import pytest

from harness.checks import UsageError
from harness.options import RunOptions, _fields, run_argv
from harness.profiles import PROFILES
from harness.resolve import VLLM_OPTIONS, resolve
from harness.tinymodel import write_tiny_model
from protocol import messages as m

NAMES = [name for name, *_ in _fields(RunOptions) if name != "profile"]

# Which profiles take each load option; every other profile must refuse it.
LOAD_RULES = {
    "rate": {"constant", "poisson"},
    "concurrency": {"concurrent"},
    "max_concurrency": {"throughput", "constant", "poisson", "sweep", "replay"},
    "burstiness": {"poisson"},
    "sweep_points": {"sweep"},
    "time_scale": {"replay"},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    from harness.tinymodel import write_tiny_model

    models = [
        write_tiny_model(d / "m1", tokenizer=True),
        write_tiny_model(d / "m2", tokenizer=True),
    ]
    traces = []
    for i, gap in enumerate((100, 250)):
        p = d / f"trace{i}.jsonl"
        p.write_text("\n".join(json.dumps({"timestamp": k * gap, "input_length": 8, "output_length": 2})
                               for k in range(6)) + "\n")  # fmt: skip
        traces.append(str(p))
    args = []
    for n in (4, 8):
        p = d / f"args{n}.json"
        p.write_text(json.dumps({"max_num_seqs": n}))
        args.append(p)
    return {"dir": d, "models": models, "traces": traces, "args": args}


def values(name: str, f: dict) -> tuple[object, object]:
    """Two different values of an option, each valid on its own."""
    d = f["dir"]
    table = {
        "engine": ("sim", "vllm"), "model": tuple(f["models"]), "device": ("cpu", "cuda"),
        "workers": (1, 2), "tp": (1, 2), "gpus": ("0", "1"),
        "engine_arg": (["max_num_seqs=4"], ["max_num_seqs=8"]),
        "sampling": (["temperature=0.5"], ["ignore_eos=false,stop=END"]),
        "engine_args_file": tuple(f["args"]), "dtype": ("float32", "bfloat16"),
        "max_model_len": (1024, 2048), "load_format": ("dummy", "auto"),
        "gpu_memory_utilization": (0.5, 0.8), "enforce_eager": (True, False),
        "cpu_kv_cache_gb": (1, 2), "sim": (["decode_ms=1"], ["decode_ms=2"]),
        "rate": ("1", "2"), "concurrency": ("1", "2"), "max_concurrency": (2, 4),
        "burstiness": (0.5, 2.0), "sweep_points": (2, 3), "time_scale": (0.5, 2.0),
        "dispatch": ("least-outstanding", "round-robin"), "max_inflight_per_worker": (2, 4),
        "data": (["prompt_tokens=8,output_tokens=2"], ["prompt_tokens=16,output_tokens=2"]),
        "data_weights": ("1,1", "1,2"), "tokenizer": tuple(f["models"]),
        "chat_template": ("plain", "default"), "seed": (1, 2), "max_requests": (10, 20),
        "max_seconds": (1.0, 2.0), "max_errors": (1.0, 2.0), "warmup": ("1", "2"),
        "cooldown": ("1", "2"), "drain_timeout": (1.0, 2.0), "startup_timeout": (10.0, 20.0),
        "output": ([d / "a.json"], [d / "b.json"]), "output_dir": (d / "d1", d / "d2"),
        "slo": ("ttft_ms=1", "ttft_ms=2"), "checkpoint_s": (0.0, 5.0),
        "log_dir": (d / "l1", d / "l2"), "quiet": (True, False), "verbose": (True, False),
        "listen": ("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7003"), "remote_workers": (1, 2),
        "token": ("a", "b"), "no_clobber": (True, False), "save_token_times": (True, False),
        "telemetry_interval": (0.5, 2.0), "no_telemetry": (True, False),
        "key_file": (d / "k1", d / "k2"), "launcher": ("local", "ray"),
        "ray_address": ("auto", "127.0.0.1:6379"),
    }  # fmt: skip
    if name == "data" and f.get("profile") == "replay":
        return [f["traces"][0]], [f["traces"][1]]
    return table[name]


def base(profile: str, engine: str, f: dict) -> dict[str, object]:
    """A valid run of ``profile``: the sim engine, or vllm-cpu for the engine options."""
    opts: dict[str, object] = {"engine": engine, "profile": profile, "max_requests": 40,
                               "output": [f["dir"] / "base.json"]}  # fmt: skip
    if engine == "vllm":
        opts["device"] = "cpu"
    opts |= {"concurrent": {"concurrency": "2"}, "constant": {"rate": "5"},
             "poisson": {"rate": "5"}, "replay": {"data": [f["traces"][0]]}}.get(profile, {})  # fmt: skip
    return opts


def fingerprint(run) -> bytes:  # type: ignore[no-untyped-def]
    """What the run does: its plans, requests, placement, engines, limits and outputs.

    Not what it records of its load options (``config.load``): a profile that recorded
    an option but planned without it would pass otherwise. Limits, dispatch, SLOs and
    checkpoints act at run time; tests of their effects on real runs are named in
    RUNTIME_EFFECTS.
    """
    plans = []
    # A sweep plans its rates from its first two results: give it two.
    done = [SimpleNamespace(throughput=SimpleNamespace(requests_per_s=r)) for r in (2.0, 20.0)]
    for p in run.plans(done):
        offs = None if p.offsets_ns is None else p.offsets_ns.tobytes().hex()
        plans.append([p.name, p.profile, p.rate, p.concurrency, p.max_concurrency, offs])
    config = msgspec.structs.replace(run.config, load={})
    return msgspec.json.encode({
        "config": config, "slots": run.slots, "outputs": [str(x) for x in run.outputs],
        "log": str(run.log_dir), "quiet": run.quiet, "verbose": run.verbose, "plans": plans,
        "no_clobber": run.no_clobber, "records": [str(x) for x in run.records],
        "token_times": run.save_token_times,
        "network": dataclasses.asdict(run.network) if run.network else None,
        "samples": [[s.prompt, s.output_tokens] for s in run.workload.samples],
    })  # fmt: skip


# Options that act while a run runs, and the tests that show their effect on its report.
RUNTIME_EFFECTS = {
    "max_errors": "test_profiles.py::test_max_errors_count_stops_the_run",
    "warmup": "test_profiles.py::test_warmup_and_cooldown_in_seconds",
    "cooldown": "test_profiles.py::test_warmup_requests_are_counted_but_excluded",
    "drain_timeout": "test_options.py::test_drain_timeout_aborts_what_is_still_in_flight",
    "dispatch": "test_profiles.py::test_round_robin_alternates_workers",
    "max_inflight_per_worker": "test_profiles.py::test_least_outstanding_respects_the_per_worker_cap",
    "max_concurrency": "test_options.py::test_max_concurrency_caps_poisson_in_flight",
    "slo": "test_stats.py::test_every_vllm_figure_equals_vllms_own",
    "checkpoint_s": "test_reliability.py::test_collector_death_stops_the_run_and_keeps_the_last_checkpoint",
    "max_seconds": "test_profiles.py::test_max_seconds_stops_sending_and_aborts_in_flight",
}


def test_runtime_effects_are_tested_where_named():
    from pathlib import Path

    root = Path(__file__).parent
    for option, where in RUNTIME_EFFECTS.items():
        file, _, name = where.partition("::")
        assert f"def {name}(" in (root / file).read_text(), (option, where)


def outcome(opts: dict[str, object]) -> bytes | UsageError:
    try:
        return fingerprint(resolve(RunOptions.of(**opts)))
    except UsageError as e:
        return e


def cli_refuses(opts: dict[str, object], capsys, monkeypatch) -> str:
    """The real CLI on these options: exit 2 and one line on stderr, nothing started."""
    from harness import cli

    monkeypatch.setattr(sys, "argv", ["harness", "run", *run_argv(**opts)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("harness: error:"), err
    return lines[0]


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("name", NAMES)
def test_every_option_takes_effect_or_is_refused(profile, name, files, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPUs: cuda placements are refused
    f = {**files, "profile": profile}
    engine = "vllm" if name in VLLM_OPTIONS else "sim"
    results = []
    for v in values(name, f):
        opts = {**base(profile, engine, f), name: v}
        if name == "engine" and v == "vllm":
            opts["device"] = "cpu"
        results.append((opts, outcome(opts)))
    refused = [isinstance(r, UsageError) for _, r in results]
    for (opts, _), no in zip(results, refused, strict=True):
        if no:
            cli_refuses(opts, capsys, monkeypatch)
    if not any(refused):
        assert results[0][1] != results[1][1], f"--{name} changed nothing with --profile {profile}"
    if name in LOAD_RULES:
        takes = profile in LOAD_RULES[name]
        if not takes:
            assert all(refused), f"--{name} should be refused with --profile {profile}"
            assert "applies to --profile" in str(results[0][1])
        elif name != "time_scale" or profile == "replay":
            assert not any(refused), f"--{name} should take effect with --profile {profile}"


@pytest.mark.parametrize("name", VLLM_OPTIONS)
def test_engine_options_are_refused_with_the_sim_engine(name, files):
    v, _ = values(name, files)
    r = outcome({"engine": "sim", name: v, "output": [files["dir"] / "x.json"]})
    assert isinstance(r, UsageError) and "applies to --engine vllm" in str(r)


def test_a_dataset_file_runs_each_entry_once_unless_asked(files, tmp_path):
    data = tmp_path / "twelve.jsonl"
    data.write_text("\n".join(json.dumps({"prompt_token_ids": [i + 1] * 4, "output_tokens": 2})
                              for i in range(12)) + "\n")  # fmt: skip
    out = [tmp_path / "o.json"]
    once = resolve(RunOptions.of(engine="sim", data=[str(data)], output=out))
    assert once.limits.max_requests == 12 and not once.config.workload.cycles
    more = resolve(RunOptions.of(engine="sim", data=[str(data)], max_requests=30, output=out))
    assert more.limits.max_requests == 30 and more.config.workload.cycles
    assert more.config.workload.samples == 12


def test_max_concurrency_is_recorded_only_where_it_applies(files):
    out = [files["dir"] / "x.json"]
    poisson = resolve(
        RunOptions.of(engine="sim", profile="poisson", rate="50", max_concurrency=2, output=out)
    )
    assert poisson.config.load["max_concurrency"] == 2
    assert [p.max_concurrency for p in poisson.plans([])] == [2]
    plain = resolve(RunOptions.of(engine="sim", profile="poisson", rate="50", output=out))
    assert "max_concurrency" not in plain.config.load


def test_max_concurrency_caps_poisson_in_flight(harness):
    # 50 requests/s of 200 ms each would keep about 10 in flight; the cap holds it to 2.
    _, rep = harness(engine="sim", sim="decode_ms=20", profile="poisson", rate=50, max_concurrency=2,
                     max_requests=60, data="prompt_tokens=8,output_tokens=10")  # fmt: skip
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 60
    assert b["load"]["peak_inflight"] <= 2 and b["load"]["max_concurrency"] == 2
    assert max(b["timeseries"]["inflight"]) <= 2
    assert b["load"]["achieved_send_rate"] < 20  # held back by the cap, not by the schedule
    # Latency counts from the schedule, so the queue behind the cap shows in TTFT, not in the
    # dispatch lag (which counts from when the cap let each request go).
    assert b["ttft_ms"]["max"] > 10 * b["ttft_from_send_ms"]["max"]
    assert b["dispatch_lag_ms"]["p99"] < 50


def test_drain_timeout_aborts_what_is_still_in_flight(harness):
    # Each request takes about 2 s; sending ends at once and the drain gives them 0.3 s.
    _, rep = harness(engine="sim", sim="decode_ms=100", profile="concurrent", concurrency="4",
                     max_requests=4, drain_timeout=0.3, data="prompt_tokens=8,output_tokens=20")  # fmt: skip
    b = rep["benchmarks"][0]
    assert b["stop_reason"] == "drain_timeout"
    assert b["requests"]["aborted"] == 4 and b["requests"]["completed"] == 0


def test_sampling_resolves_to_what_the_workers_get(files, tmp_path):
    base_opts = {"engine": "vllm", "device": "cpu", "model": files["models"][0],
                 "output": [tmp_path / "s.json"]}  # fmt: skip
    fixed = resolve(RunOptions.of(**base_opts)).config.engine
    assert fixed.sampling == m.Sampling() and fixed.sampling.fixed_length
    assert fixed.args["skip_tokenizer_init"] is True  # no tokenizer where nothing needs one
    own = resolve(RunOptions.of(**base_opts, sampling=['temperature=0,top_k=5,stop=",",stop="a b"',
                                                       "seed=7,ignore_eos=false"])).config.engine  # fmt: skip
    assert own.sampling == m.Sampling(temperature=0.0, top_k=5, seed=7, ignore_eos=False,
                                      stop=(",", "a b"))  # fmt: skip
    assert own.args["skip_tokenizer_init"] is False  # vLLM needs it for EOS and stop strings
    bare = write_tiny_model(tmp_path / "bare", tokenizer=False)
    for how in ("ignore_eos=false", "stop=END"):
        with pytest.raises(UsageError, match="needs the model's tokenizer.*has none"):
            resolve(RunOptions.of(**{**base_opts, "model": bare}, sampling=[how]))
    # Sampling that keeps every length fixed needs no tokenizer.
    assert resolve(RunOptions.of(**{**base_opts, "model": bare}, sampling=["top_p=0.5"]))
