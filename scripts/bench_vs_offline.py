"""Harness vs vLLM's offline ``LLM.generate()`` (what ``vllm bench throughput`` measures).

One invocation, the same model, device, requests and pinned engine settings:
first the offline engine in a child process, then ``harness run --workers 1
--profile throughput``. Prints and writes both output tokens/s and their ratio.

    python scripts/bench_vs_offline.py --device cpu --output results/bench_vs_offline.json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="default: the tiny dummy model")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--max-num-seqs", type=int, default=128)
    ap.add_argument("--max-num-batched-tokens", type=int, default=2048)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="offline/harness pairs, alternated")
    ap.add_argument("--output", type=Path, default=Path("results/bench_vs_offline.json"))
    ap.add_argument("--offline-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.offline_child:
        offline_child(json.loads(Path(a.offline_child).read_text()))
        return

    pinned = {
        "max_num_seqs": a.max_num_seqs,
        "max_num_batched_tokens": a.max_num_batched_tokens,
        "enforce_eager": a.enforce_eager,
        "enable_prefix_caching": False,
        "max_model_len": a.max_model_len,
        "load_format": a.load_format,
    }
    options = dict(
        engine="vllm", device=a.device, workers=1, profile="throughput",
        max_requests=a.requests, seed=a.seed,
        data=f"prompt_tokens={a.prompt_tokens},output_tokens={a.output_tokens}",
        engine_arg=[f"{k}={json.dumps(v)}" for k, v in pinned.items()],
        **({"model": a.model} if a.model else {}),
    )  # fmt: skip
    # The harness's own resolution gives the offline engine the very same engine arguments,
    # placement and prompts (token ids) as the harness's worker.
    run = resolve(RunOptions.of(**options))
    slot = run.slots[0]
    spec = {
        "engine_args": dict(run.engine.args),
        "prompts": [s.prompt for s in run.workload.samples][: a.requests],
        "output_tokens": a.output_tokens,
    }
    spec_path = Path("/tmp") / f"bench_vs_offline_{os.getpid()}.json"
    spec_path.write_text(json.dumps(spec))
    pythonpath = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

    def offline() -> dict:
        proc = subprocess.run(
            [sys.executable, __file__, "--offline-child", str(spec_path)],
            env={**os.environ, **slot.env, "PYTHONPATH": pythonpath},
            preexec_fn=(lambda: os.sched_setaffinity(0, slot.spare_cores))
            if slot.spare_cores
            else None,
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=ROOT,
        )
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise SystemExit(f"offline run failed: {proc.stderr.strip()[-800:]}")
        return json.loads(line[0][len("RESULT ") :])

    pairs = []
    rep: dict = {}
    try:
        # Alternate the two, so drift in the machine's speed hits both alike.
        for i in range(a.repeat):
            off = offline()
            rep = harness_run(timeout=1800, **options)
            b = rep["benchmarks"][0]
            offline_tps = off["output_tokens"] / off["elapsed_s"]
            harness_tps = b["throughput"]["output_tokens_per_s"]
            pairs.append(
                {
                    "offline_output_tokens_per_s": offline_tps,
                    "offline_elapsed_s": off["elapsed_s"],
                    "offline_output_tokens": off["output_tokens"],
                    "harness_output_tokens_per_s": harness_tps,
                    "harness_duration_s": b["duration_s"],
                    "harness_completed": b["requests"]["completed"],
                    "ratio": harness_tps / offline_tps,
                }
            )
            print(
                f"pair {i + 1}: offline {offline_tps:,.1f} tok/s, "
                f"harness {harness_tps:,.1f} tok/s, ratio {harness_tps / offline_tps:.4f}",
                flush=True,
            )
    finally:
        spec_path.unlink()
    ratios = sorted(p["ratio"] for p in pairs)
    mid = len(ratios) // 2
    result = {
        "pairs": pairs,
        "ratio_median": ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2,
        "ratio_of_means": sum(p["harness_output_tokens_per_s"] for p in pairs)
        / sum(p["offline_output_tokens_per_s"] for p in pairs),
        "engine_config": rep["environment"]["workers"][0]["engine_config"],
    }
    print(
        f"median ratio {result['ratio_median']:.4f}, "
        f"ratio of means {result['ratio_of_means']:.4f} over {len(pairs)} pair(s)"
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
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
