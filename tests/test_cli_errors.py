"""Bad input to every option of every subcommand: one line on stderr, exit 2, nothing started.

The table below must name every option ``harness run`` and ``harness worker`` declare
(a test checks), with the values a person or a script could get wrong: zero, negative,
NaN, infinity, huge, the wrong type, and paths that cannot be written. Each case runs
the real CLI entry point in this process; a handful also run as real processes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.options import RunOptions, WorkerOptions, _fields

ROOT = Path(__file__).resolve().parent.parent
HAS_VLLM = importlib.util.find_spec("vllm") is not None
SIM = ["--engine", "sim"]
VLLM = ["--engine", "vllm", "--device", "cpu"]
KEY = "iHVRxBK[U(DOqsT/dZAOBdm[&G@Y4oX1pY8X9rn="  # a valid CURVE public key

# option -> list of (argv, what the error line must say); {tmp} is a fresh folder, {file} a file in it.
RUN_BAD: dict[str, list[tuple[list[str], str]]] = {
    "engine": [(["--engine", "nope"], "Invalid value for '--engine'")],
    "model": [([*VLLM, "--model", "/nonexistent/model"], "no such file")],
    "device": [(["--device", "tpu"], "Invalid value for '--device'"),
               ([*SIM, "--device", "cpu"], "--device applies to --engine vllm")],
    "workers": [([*SIM, "--workers", "-1"], "--workers must be"), ([*SIM, "--workers", "x"], "harness: error:"),
                ([*SIM, "--workers", "99999"], "--workers must be"), ([*SIM, "--workers", "0"], "--workers must be > 0")],
    "tp": [([*SIM, "--tp", "2"], "--tp applies to --engine vllm"), ([*VLLM, "--tp", "0"], "--tp must be"),
           ([*VLLM, "--tp", "3"], "does not divide the model's 4 attention heads")],
    "gpus": [([*VLLM, "--gpus", "0,1"], "--gpus places local GPU workers"),
             (["--engine", "vllm", "--device", "cuda", "--gpus", "a,b"], "--gpus: expected GPU ids")],
    "engine_arg": [([*SIM, "--engine-arg", "max_num_seqs=4"], "--engine-arg applies to --engine vllm"),
                   ([*VLLM, "--engine-arg", "noequals"], "expected key=value"),
                   ([*VLLM, "--engine-arg", "max_num_seqs=NaN"], "must be a finite number"),
                   ([*VLLM, "--engine-arg", "tensor_parallel_size=2"], "use --tp")]
                  + ([([*VLLM, "--engine-arg", "no_such_field=1"], "not an AsyncEngineArgs field")] if HAS_VLLM else []),
    "engine_args_file": [([*VLLM, "--engine-args-file", "/nonexistent.json"], "--engine-args-file"),
                         ([*VLLM, "--engine-args-file", "{file}"], "--engine-args-file")],
    "dtype": [([*VLLM, "--dtype", "float7"], "--dtype must be one of")],
    "max_model_len": [([*VLLM, "--max-model-len", "0"], "--max-model-len must be"),
                      ([*VLLM, "--max-model-len", "16"], "exceed max_model_len 16")],
    "load_format": [([*VLLM, "--load-format", " "], "--load-format must not be empty")],
    "gpu_memory_utilization": [([*VLLM, "--gpu-memory-utilization", "0.5"], "applies to GPU engines"),
                               (["--engine", "vllm", "--gpu-memory-utilization", "nan"], "finite")],
    "enforce_eager": [([*SIM, "--enforce-eager"], "--enforce-eager applies to --engine vllm")],
    "cpu_kv_cache_gb": [([*VLLM, "--cpu-kv-cache-gb", "0"], "--cpu-kv-cache-gb must be"),
                        ([*VLLM, "--cpu-kv-cache-gb", "-1"], "--cpu-kv-cache-gb must be")],
    "sim": [([*SIM, "--sim", "warp=9"], "--sim"), ([*SIM, "--sim", "decode_ms=nan"], "--sim"), ([*SIM, "--sim", "decode_ms=1e400"], "finite"),
            ([*SIM, "--sim", "decode_ms=-1"], "--sim decode_ms must be"), ([*VLLM, "--sim", "decode_ms=1"], "--sim applies")],
    "sampling": [([*SIM, "--sampling", "temperature=0.5"], "--sampling applies to --engine vllm")]
                + [([*VLLM, "--sampling", v], msg) for v, msg in
                   (("temperature=-1", "--sampling temperature must be"), ("temperature=NaN", "finite"),
                    ("temperature=1e400", "finite"), ("temperature=101", "--sampling temperature must be"),
                    ("temperature=hot", "must be a number"), ("top_p=0", "--sampling top_p must be"),
                    ("top_p=1.5", "--sampling top_p must be"), ("top_k=1.5", "--sampling top_k must be an integer"),
                    ("top_k=true", "must be an integer"), ("top_k=-2", "--sampling top_k must be"),
                    ("seed=-1", "--sampling seed must be"), ("seed=9223372036854775808", "--sampling seed must be"),
                    ("ignore_eos=maybe", "true or false"), ("ignore_eos=1", "true or false"),
                    ('stop=""', "a string of 1 to 1,000"), ("stop=5", "a string"), ("min_p=0.1", "unknown key 'min_p'"),
                    ("temperature", "expected key=value"), ("=1", "expected key=value"))]
                + [([*VLLM, "--sampling", "stop=END", "--engine-arg", "skip_tokenizer_init=true"],
                    "cannot go with --engine-arg skip_tokenizer_init=true")],
    "profile": [([*SIM, "--profile", "bogus"], "Invalid value for '--profile'")],
    "rate": [([*SIM, "--profile", "constant", "--rate", v], m) for v, m in
             (("0", "--rate must be > 0"), ("-3", "--rate must be > 0"), ("nan", "finite"), ("inf", "finite"),
              ("1e308", "at most"), ("abc", "expected numbers"), ("", "expected numbers"), ("1,1", "given twice"))]
            + [([*SIM, "--rate", "5"], "--rate applies to --profile constant or poisson, not throughput"),
               ([*SIM, "--profile", "constant"], "--profile constant needs --rate")],
    "concurrency": [([*SIM, "--profile", "concurrent", "--concurrency", v], "--concurrency") for v in ("0.5", "0", "x", "-2")]
                   + [([*SIM, "--profile", "concurrent"], "needs --concurrency")],
    "max_concurrency": [([*SIM, "--max-concurrency", "0"], "--max-concurrency must be"),
                        ([*SIM, "--profile", "synchronous", "--max-concurrency", "4"], "--max-concurrency applies to")],
    "burstiness": [([*SIM, "--profile", "poisson", "--rate", "5", "--burstiness", v], "--burstiness must be")
                   for v in ("0", "-1", "nan", "inf", "1e9")]
                  + [([*SIM, "--profile", "constant", "--rate", "5", "--burstiness", "2"], "--burstiness applies to")],
    "sweep_points": [([*SIM, "--profile", "sweep", "--sweep-points", v], "--sweep-points must be") for v in ("-3", "0", "5000")],
    "time_scale": [([*SIM, "--time-scale", "2"], "--time-scale applies to --profile replay")]
                  + [([*SIM, "--profile", "replay", "--time-scale", v], "--time-scale must be") for v in ("0", "nan", "-1")],
    "dispatch": [([*SIM, "--dispatch", "random"], "Invalid value for '--dispatch'"),
                 ([*SIM, "--dispatch", "round-robin"], "--dispatch chooses between workers")],
    "max_inflight_per_worker": [([*SIM, "--max-inflight-per-worker", "0"], "--max-inflight-per-worker must be")],
    "data": [([*SIM, "--data", "prompt_tokens=-4"], "must not be negative"), ([*SIM, "--data", "colour=blue"], "unknown key 'colour'"),
             ([*SIM, "--data", "/nonexistent.jsonl"], "no such file"), ([*SIM, "--data", "prompt_tokens=x"], "is not a number")],
    "data_weights": [([*SIM, "--data", "prompt_tokens=4", "--data", "prompt_tokens=8", "--data-weights", v], "--data-weights")
                     for v in ("nan,1", "1", "0,1", "-1,1")]
                    + [([*SIM, "--data-weights", "1"], "--data-weights mixes two or more")],
    "tokenizer": [([*SIM, "--tokenizer", "/nonexistent"], "--tokenizer applies to text data")],
    "chat_template": [([*SIM, "--chat-template", "plain"], "--chat-template applies to chat data")],
    "seed": [([*SIM, "--seed", "-1"], "--seed must be"), ([*SIM, "--seed", "99999999999999999999"], "--seed must be"),
             ([*SIM, "--seed", "x"], "harness: error:")],
    "max_requests": [([*SIM, "--max-requests", v], "--max-requests must be an integer in") for v in ("0", "-5", "99999999999999999999")],
    "max_seconds": [([*SIM, "--max-seconds", v], "--max-seconds must be") for v in ("nan", "0", "-1", "inf")],
    "max_errors": [([*SIM, "--max-errors", v], "--max-errors") for v in ("-1", "nan", "2.5", "0")],
    "warmup": [([*SIM, "--warmup", v], "--warmup") for v in ("nans", "abc", "-1", "infs")]
              + [([*SIM, "--max-requests", "10", "--warmup", "10"], "leave none of the 10 requests to measure"),
                 ([*SIM, "--warmup", "2s"], "holds all or none of them")],
    "cooldown": [([*SIM, "--cooldown", v], "--cooldown") for v in ("nans", "x", "-2")]
                + [([*SIM, "--max-seconds", "5", "--cooldown", "3"], "--cooldown 3 with --profile throughput needs --max-requests"),
                   ([*SIM, "--profile", "synchronous", "--cooldown", "3s"], "needs --max-seconds")],
    "drain_timeout": [([*SIM, "--drain-timeout", v], "--drain-timeout must be") for v in ("-5", "nan")],
    "startup_timeout": [([*SIM, "--startup-timeout", v], "--startup-timeout must be") for v in ("0", "nan", "-1")],
    "output": [([*SIM, "--output", p], "--output") for p in ("/proc/x.json", "{tmp}", "{file}/x.json", "{tmp}/r.txt")],
    "output_dir": [([*SIM, "--output-dir", "{file}"], "--output-dir")],
    "slo": [([*SIM, "--slo", v], "--slo") for v in ("ttft_ms=abc", "ttft_ms=-5", "latency=5", "ttft_ms=nan", "ttft_ms")],
    "checkpoint_s": [([*SIM, "--checkpoint-s", v], "--checkpoint-s must be") for v in ("-1", "nan", "0.01")],
    "log_dir": [([*SIM, "--log-dir", p], "--log-dir") for p in ("{file}", "/proc/logs")],
    "quiet": [([*SIM, "--quiet", "yes"], "harness: error:")],
    "telemetry_interval": [([*SIM, "--telemetry-interval", v], "--telemetry-interval") for v in ("0", "nan", "-1", "1e9")]
    + [([*SIM, "--no-telemetry", "--telemetry-interval", "2"], "cannot go with --no-telemetry")],
    "no_telemetry": [([*SIM, "--no-telemetry", "yes"], "harness: error:")],
    "verbose": [([*SIM, "--verbose", "--quiet"], "--verbose")],
    "save_token_times": [([*SIM, "--save-token-times"], "--save-token-times adds to the request records")],
    "no_clobber": [([*SIM, "--no-clobber", "--output", "{json}"], "exists (--no-clobber)")],
    "listen": [([*SIM, "--listen", "127.0.0.1:7000", "--remote-workers", "1"], "--listen: expected tcp://HOST:PORT"),
               ([*SIM, "--listen", "tcp://127.0.0.1:65535", "--remote-workers", "1"], "port 65535 is out of range"),
               ([*SIM, "--listen", "tcp://127.0.0.1:7000"], "--listen needs --remote-workers")],
    "remote_workers": [([*SIM, "--remote-workers", "2"], "--remote-workers needs --listen"),
                       ([*SIM, "--listen", "tcp://127.0.0.1:7000", "--remote-workers", "-1"], "--remote-workers must be")],
    "token": [([*SIM, "--token", "abc"], "--token applies to multi-node runs"),
              ([*SIM, "--listen", "tcp://127.0.0.1:7000", "--remote-workers", "1", "--token", " "], "--token must not be empty")],
    "key_file": [([*SIM, "--key-file", "{tmp}/key"], "--key-file applies to multi-node runs"),
                 ([*SIM, "--listen", "tcp://127.0.0.1:7000", "--remote-workers", "1", "--key-file", "{tmp}"], "--key-file"),
                 ([*SIM, "--launcher", "ray", "--key-file", "{tmp}/key"], "--launcher ray starts them itself")],
    "launcher": [([*SIM, "--launcher", "slurm"], "Invalid value for '--launcher'"),
                 ([*SIM, "--launcher", "ray", "--workers", "0"], "--launcher ray needs --workers N > 0"),
                 ([*SIM, "--launcher", "ray", "--listen", "tcp://127.0.0.1:7000", "--remote-workers", "1"],
                  "--remote-workers counts workers started by hand"),
                 ([*VLLM, "--launcher", "ray", "--tp", "2"], "--device cpu runs --tp 1"),
                 ([*SIM, "--launcher", "ray", "--listen", "127.0.0.1:7000"], "--listen: expected tcp://HOST:PORT")],
    "ray_address": [([*SIM, "--ray-address", "auto"], "--ray-address applies to --launcher ray")]
                   + [([*SIM, "--launcher", "ray", "--ray-address", v], "--ray-address: expected auto, HOST:PORT or ray://HOST:PORT")
                      for v in ("bogus::", "ray://h", "h:0", "h:99999", "http://h:80")],
    "_parser": [([*SIM, "--no-such-option"], "harness: error:"), ([*SIM, "extra"], "harness: error:")],
}  # fmt: skip

WORKER_BAD: dict[str, list[tuple[list[str], str]]] = {
    "connect": [(["--token", "t", "--server-key", KEY], "needs --connect"),
                (["--connect", "head:7000", "--token", "t", "--server-key", KEY], "--connect: expected tcp://HOST:PORT"),
                (["--connect", "tcp://h:0", "--token", "t", "--server-key", KEY], "port 0 is out of range")],
    "token": [(["--connect", "tcp://127.0.0.1:7000", "--server-key", KEY], "needs --token"),
              (["--connect", "tcp://127.0.0.1:7000", "--server-key", KEY, "--token", " "], "needs --token")],
    "server_key": [(["--connect", "tcp://127.0.0.1:7000", "--token", "t"], "needs --server-key"),
                   (["--connect", "tcp://127.0.0.1:7000", "--token", "t", "--server-key", "short"], "not a CURVE public key")],
    "gpus": [(["--connect", "tcp://127.0.0.1:7000", "--token", "t", "--server-key", KEY, "--gpus", "a"], "--gpus: expected GPU ids")],
    "model": [(["--connect", "tcp://127.0.0.1:7000", "--token", "t", "--server-key", KEY, "--model", "/nonexistent"], "not a directory")],
    "join_timeout": [(["--connect", "tcp://127.0.0.1:7000", "--token", "t", "--server-key", KEY, "--join-timeout", v],
                      "--join-timeout must be") for v in ("0", "nan", "-1")],
    "clock_skew_s": [(["--connect", "tcp://127.0.0.1:7000", "--token", "t", "--server-key", KEY, "--clock-skew-s", "nan"], "finite")],
}  # fmt: skip

OTHER_BAD: list[tuple[list[str], str]] = [
    (["report", "/nonexistent.json"], "no such file"),
    (["report", "{tmp}"], "is a directory"),
    (["report", "{file}"], "not JSON"),
    (["report", "{report}", "--output", "/proc/r.html"], "--output /proc/r.html"),
    (["report", "{report}", "--output", "{tmp}/r.txt"], "the name must end in"),
    (["compare", "{report}"], "give two or more reports"),
    (["compare", "{report}", "/nonexistent.json"], "no such file"),
    (["compare", "{report}", "{report}", "--output", "/proc/c.html"], "--output /proc/c.html"),
    (["compare", "--layouts", "/nonexistent"], "no such sweep directory"),
    (["compare", "--layouts", "{tmp}"], "no layout results"),
    (["tiny-model", "{file}"], "not a directory"),
    (["tiny-model", "/proc/tiny"], "/proc/tiny"),
    (["no-such-command"], "harness: error:"),
]


def _cases(table: dict[str, list[tuple[list[str], str]]]) -> list[tuple[str, list[str], str]]:
    return [(name, argv, msg) for name, rows in table.items() for argv, msg in rows]


def test_every_option_has_bad_values_in_the_table():
    run = {name for name, *_ in _fields(RunOptions)}
    worker = {name for name, *_ in _fields(WorkerOptions)}
    assert run <= set(RUN_BAD), sorted(run - set(RUN_BAD))
    assert worker <= set(WORKER_BAD), sorted(worker - set(WORKER_BAD))


@pytest.fixture
def place(tmp_path):
    """Fill {tmp}, {file} and {report} in an argv."""
    f = tmp_path / "plain.txt"
    f.write_text("not json\n")
    old = tmp_path / "old.json"
    old.write_text("{}")
    rep = ROOT / "tests" / "fixtures" / "report_a.json"

    def fill(argv: list[str]) -> list[str]:
        return [a.format(tmp=tmp_path, file=f, report=rep, json=old) for a in argv]

    return fill


def cli(argv: list[str], capsys, monkeypatch) -> tuple[int, str, float]:
    """The real entry point, in this process: (exit code, stderr, seconds it took)."""
    from harness import cli as entry

    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        entry.main()
    return e.value.code, capsys.readouterr().err, time.perf_counter() - t0


def check(argv: list[str], message: str, capsys, monkeypatch, tmp_path) -> None:
    code, err, _ = cli(argv, capsys, monkeypatch)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("harness: error:"), (argv, err)
    assert message in lines[0], (argv, lines[0])
    assert "Traceback" not in err
    assert not (tmp_path / "logs").exists()  # nothing started


@pytest.fixture(autouse=True)
def _no_gpus_no_token(monkeypatch, tmp_path):
    import harness.remote
    import harness.runner

    def started(*_a: object) -> None:
        raise AssertionError("bad input got past the checks: a run started")

    monkeypatch.setattr(harness.runner, "execute", started)
    monkeypatch.setattr(harness.remote, "supervise", started)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("HARNESS_TOKEN", raising=False)
    monkeypatch.delenv("HARNESS_SERVER_KEY", raising=False)
    monkeypatch.delenv("HARNESS_CONNECT", raising=False)
    monkeypatch.chdir(tmp_path)  # a default output under results/ lands here


@pytest.mark.parametrize(
    "name,argv,message", _cases(RUN_BAD), ids=lambda x: " ".join(x) if isinstance(x, list) else None
)
def test_bad_run_input(name, argv, message, place, capsys, monkeypatch, tmp_path):
    out = (
        []
        if any(a in ("--output", "--output-dir") for a in argv)
        else ["--output", str(tmp_path / "o.json")]
    )
    logs = [] if "--log-dir" in argv else ["--log-dir", str(tmp_path / "logs")]
    check(["run", *place(argv), *out, *logs], message, capsys, monkeypatch, tmp_path)


@pytest.mark.parametrize(
    "name,argv,message",
    _cases(WORKER_BAD),
    ids=lambda x: " ".join(x) if isinstance(x, list) else None,
)
def test_bad_worker_input(name, argv, message, place, capsys, monkeypatch, tmp_path):
    check(["worker", *place(argv)], message, capsys, monkeypatch, tmp_path)


@pytest.mark.parametrize(
    "argv,message", OTHER_BAD, ids=lambda x: " ".join(x) if isinstance(x, list) else None
)
def test_bad_input_to_the_other_commands(argv, message, place, capsys, monkeypatch, tmp_path):
    check(place(argv), message, capsys, monkeypatch, tmp_path)


@pytest.mark.parametrize(
    "argv",
    [["run", *SIM, "--rate", "nan", "--profile", "poisson"], ["run", *SIM, "--max-seconds", "nan"],
     ["worker", "--connect", "tcp://127.0.0.1:7000"], ["report", "/nonexistent.json"]],
)  # fmt: skip
def test_as_a_real_process_too(argv, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache")}
    env.pop("HARNESS_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("harness: error:"), (
        proc.stderr
    )


def test_report_of_a_newer_schema_is_a_clear_error(tmp_path, capsys, monkeypatch):
    path = tmp_path / "future.json"
    path.write_text('{"schema_version": 99, "benchmarks": []}')
    code, err, _ = cli(["report", str(path)], capsys, monkeypatch)
    assert code == 2 and "schema version 99 is newer" in err and len(err.strip().splitlines()) == 1
