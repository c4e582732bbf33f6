"""Harness vs vLLM's offline ``LLM.generate()`` (what ``vllm bench throughput`` measures).

One invocation, the same model, device, requests and pinned engine settings:
first the offline engine in a child process, then ``harness run --workers 1
--profile throughput`` (or ``--profile concurrent`` with ``--concurrency N``) through
each worker output path asked for (``--output-path``: the fast hook, vLLM's public
``generate()``, or both), with the workers' telemetry on, off or both
(``--telemetry``). Prints and writes output tokens/s, the harness/offline ratio and the
harness's dispatch lag for each.

With ``--concurrency N`` the harness keeps N requests in flight and both engines run at
most ``--max-num-seqs`` at once (N unless given): the question is whether the worker
still takes each request off its socket at once while vLLM's output processing is busy
with N streams, and what that costs in throughput.

    python scripts/bench_vs_offline.py --device cpu --output-path both --repeat 2
    python scripts/bench_vs_offline.py --device cuda --concurrency 256 --requests 4096
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _runs import ROOT, harness_run, machine, write  # noqa: E402

from harness.options import RunOptions  # noqa: E402
from harness.resolve import resolve  # noqa: E402
from workers.vllm_compat import OUTPUT_PATH_ENV  # noqa: E402

# What each --output-path asks the workers for: "fast" is the default, checked at start-up.
PATH_ENV = {"fast": "auto", "public": "public"}
# From each harness report: the worker's receipt against the due time, and its two hops.
LAGS = ("dispatch_lag_ms", "pacing_lag_ms", "delivery_ms")


def offline_child(spec: dict) -> None:
    """Runs in a child process with the worker's environment: time one LLM.generate()."""
    from vllm import LLM, SamplingParams

    llm = LLM(**spec["engine_args"])
    prompts = [{"prompt_token_ids": p} for p in spec["prompts"]]
    params = SamplingParams(max_tokens=spec["output_tokens"], ignore_eos=True, detokenize=False)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    print("RESULT " + json.dumps({"elapsed_s": elapsed, "output_tokens": tokens}), flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="default: the tiny dummy model")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests the harness keeps in flight (profile concurrent); default: all at once",
    )
    ap.add_argument(
        "--max-num-seqs", type=int, default=None, help="default: --concurrency, else 128"
    )
    ap.add_argument("--max-num-batched-tokens", type=int, default=2048)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of offline, then each path")
    ap.add_argument(
        "--output-path",
        default="both",
        choices=["fast", "public", "both"],
        help="the workers' output path(s) to measure (HARNESS_VLLM_OUTPUT_PATH)",
    )
    ap.add_argument(
        "--telemetry",
        default="on",
        choices=["on", "off", "both"],
        help="the workers' telemetry (--no-telemetry when off): 'both' measures its cost",
    )
    ap.add_argument("--output", type=Path, default=Path("results/bench_vs_offline.json"))
    ap.add_argument("--offline-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    for name in ("requests", "concurrency", "max_num_seqs", "repeat"):
        value = getattr(a, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if a.max_num_seqs is None:
        a.max_num_seqs = a.concurrency or 128
    return a


def run_options(a: argparse.Namespace) -> tuple[dict, dict]:
    """The engine settings both sides pin, and ``harness run``'s options."""
    pinned = {
        "max_num_seqs": a.max_num_seqs,
        "max_num_batched_tokens": a.max_num_batched_tokens,
        "enforce_eager": a.enforce_eager,
        "enable_prefix_caching": False,
        "max_model_len": a.max_model_len,
        "load_format": a.load_format,
    }
    load = (
        {"profile": "concurrent", "concurrency": str(a.concurrency)}
        if a.concurrency
        else {"profile": "throughput"}
    )
    options = dict(
        engine="vllm", device=a.device, workers=1, **load,
        max_requests=a.requests, seed=a.seed,
        data=[f"prompt_tokens={a.prompt_tokens},output_tokens={a.output_tokens}"],
        engine_arg=[f"{k}={json.dumps(v)}" for k, v in pinned.items()],
        **({"model": a.model} if a.model else {}),
    )  # fmt: skip
    return pinned, options


def offline_runner(a: argparse.Namespace, options: dict, spec_path: Path):
    """A function that times one offline run in a child process placed like the worker.

    The harness's own resolution gives the offline engine the very same engine
    arguments, placement and prompts (token ids) as the harness's worker.
    """
    run = resolve(RunOptions.of(**options))
    slot = run.slots[0]
    spec = {
        "engine_args": dict(run.engine.args),
        "prompts": [s.prompt for s in run.workload.samples][: a.requests],
        "output_tokens": a.output_tokens,
    }
    spec_path.write_text(json.dumps(spec))
    pythonpath = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    cores = slot.spare_cores

    def offline() -> dict:
        proc = subprocess.run(
            [sys.executable, __file__, "--offline-child", str(spec_path)],
            env={**os.environ, **slot.env, "PYTHONPATH": pythonpath},
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=ROOT,
        )
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise SystemExit(f"offline run failed: {proc.stderr.strip()[-800:]}")
        return json.loads(line[0][len("RESULT ") :])

    return offline


def variants(a: argparse.Namespace) -> list[str]:
    """Each output path, with telemetry on and/or off: ``fast``, ``fast/no-telemetry``, ..."""
    paths = ["fast", "public"] if a.output_path == "both" else [a.output_path]
    tele = {"on": [""], "off": ["/no-telemetry"], "both": ["", "/no-telemetry"]}[a.telemetry]
    return [p + t for p in paths for t in tele]


def harness_pair(off: dict, options: dict, variant: str) -> tuple[dict, dict]:
    """One harness run of ``variant`` against the offline run ``off``; the pair and config."""
    path, _, no_tele = variant.partition("/")
    env = {OUTPUT_PATH_ENV: PATH_ENV[path]}
    rep = harness_run(
        timeout=1800, env=env, **options, **({"no_telemetry": True} if no_tele else {})
    )
    b = rep["benchmarks"][0]
    config = rep["environment"]["workers"][0]["engine_config"]
    offline_tps = off["output_tokens"] / off["elapsed_s"]
    harness_tps = b["throughput"]["output_tokens_per_s"]
    pair = {
        "offline_output_tokens_per_s": offline_tps,
        "offline_elapsed_s": off["elapsed_s"],
        "offline_output_tokens": off["output_tokens"],
        "harness_output_tokens_per_s": harness_tps,
        "harness_duration_s": b["duration_s"],
        "harness_completed": b["requests"]["completed"],
        "harness_output_path": config.get("output_path", "unknown"),
        "ratio": harness_tps / offline_tps,
        "peak_inflight": b["load"]["peak_inflight"],
        **{f"{k}_p{q}": (b.get(k) or {}).get(f"p{q}") for k in LAGS for q in (50, 99)},
    }
    return pair, config


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def summarize(pairs: list[dict], config: dict) -> dict:
    ratios = sorted(p["ratio"] for p in pairs)
    mid = len(ratios) // 2
    return {
        "pairs": pairs,
        "ratio_median": ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2,
        "ratio_of_means": sum(p["harness_output_tokens_per_s"] for p in pairs)
        / sum(p["offline_output_tokens_per_s"] for p in pairs),
        # The worst round: a lag target must hold in every run, not on average.
        "dispatch_lag_ms_p99_max": max(
            (p["dispatch_lag_ms_p99"] for p in pairs if p["dispatch_lag_ms_p99"] is not None),
            default=None,
        ),
        "engine_config": config,
    }


def measure(a: argparse.Namespace, options: dict, names: list[str]) -> dict[str, dict]:
    """``--repeat`` rounds: offline, then each variant (in turns), so drift hits all alike."""
    spec_path = Path("/tmp") / f"bench_vs_offline_{os.getpid()}.json"
    pairs: dict[str, list[dict]] = {v: [] for v in names}
    configs: dict[str, dict] = {}
    try:
        offline = offline_runner(a, options, spec_path)
        for i in range(a.repeat):
            off = offline()
            line = f"round {i + 1}: offline {off['output_tokens'] / off['elapsed_s']:,.1f} tok/s"
            for v in names[i % len(names) :] + names[: i % len(names)]:
                pair, configs[v] = harness_pair(off, options, v)
                pairs[v].append(pair)
                line += (
                    f"; harness {v} ({pair['harness_output_path']}) "
                    f"{pair['harness_output_tokens_per_s']:,.1f} tok/s, ratio {pair['ratio']:.4f}"
                    f", dispatch lag p99 {_ms(pair['dispatch_lag_ms_p99'])}"
                    f" (peak {pair['peak_inflight']} in flight)"
                )
            print(line, flush=True)
    finally:
        spec_path.unlink(missing_ok=True)
    return {v: summarize(pairs[v], configs[v]) for v in names}


def main() -> None:
    a = parse_args()
    if a.offline_child:
        offline_child(json.loads(Path(a.offline_child).read_text()))
        return
    pinned, options = run_options(a)
    result = measure(a, options, variants(a))
    for v, r in result.items():
        print(
            f"{v}: median ratio {r['ratio_median']:.4f}, "
            f"ratio of means {r['ratio_of_means']:.4f} over {len(r['pairs'])} pair(s); "
            f"dispatch lag p99 at most {_ms(r['dispatch_lag_ms_p99_max'])}"
        )
    meta = {k: str(v) for k, v in vars(a).items()}
    write(
        a.output,
        {
            "benchmark": "bench_vs_offline",
            "machine": machine(),
            "device": a.device,
            "args": meta,
            "pinned": pinned,
            "result": result,
        },
    )


if __name__ == "__main__":
    main()
