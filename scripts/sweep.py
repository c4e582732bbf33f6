"""Layout and rate sweeps on one node; the Makefile's sweep targets call this.

    python scripts/sweep.py node --model M [--gpus 8] [--tp "1 2 4 8"] [--profile sweep]
                                 [--slo ttft_ms=500,tpot_ms=50] [--args "..."] [--results results]
    python scripts/sweep.py node --device cpu --workers-list "1 2"     # CPU: W x 1 layouts
    python scripts/sweep.py rate --model M --workers 2 --tp 4 --rates "1 2 4 8"

Each layout runs ``harness run`` into ``<results>/<sweep-id>/<workers>x<tp>.json``; a
layout whose report exists is skipped (``--force`` reruns it); one that fails is
recorded as ``<workers>x<tp>.failed.json`` and the sweep goes on. The summary is
printed and written as summary.json and summary.html (``harness compare --layouts DIR``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.checks import UsageError  # noqa: E402
from harness.layouts import (  # noqa: E402
    Layout,
    LayoutFailure,
    enumerate_layouts,
    summarize,
    table,
    write_summary,
)
from harness.options import parse_run_argv, run_argv  # noqa: E402
from harness.resolve import resolve  # noqa: E402
from harness.tinymodel import read_model_config  # noqa: E402
from workers.placement import discover_gpus  # noqa: E402


def layout_argv(layout: Layout, harness_args: list[str], out: Path) -> list[str]:
    own = run_argv(workers=layout.workers, output=out / f"{layout.name}.json",
                   log_dir=out / "logs" / layout.name)  # fmt: skip
    if layout.tp != 1:
        own += run_argv(tp=layout.tp)
    return [*own, *harness_args]


def check_layouts(layouts: list[Layout], harness_args: list[str], out: Path) -> None:
    """Resolve every layout's run before any starts: a bad option fails the sweep at once."""
    for layout in layouts:
        try:
            resolve(parse_run_argv(layout_argv(layout, harness_args, out)))
        except UsageError as e:
            raise SystemExit(f"sweep: error: {layout.name}: {e}") from None


def run_layout(layout: Layout, out: Path, harness_args: list[str], force: bool) -> None:
    report = out / f"{layout.name}.json"
    failed = out / f"{layout.name}.failed.json"
    if report.exists() and not force:
        print(f"{layout.name}: done already ({report}), skipped; --force reruns it", flush=True)
        return
    failed.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "harness", "run", *layout_argv(layout, harness_args, out)]
    print(f"{layout.name}: {shlex.join(cmd[2:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness: error:")]
        error = errors[-1].removeprefix("harness: error: ") if errors else f"exit {proc.returncode}"
        failure = LayoutFailure(layout.name, error, proc.returncode)
        failed.write_bytes(msgspec.json.encode(failure) + b"\n")
        report.unlink(missing_ok=True)  # a partial report must not count as done
        print(f"{layout.name}: FAILED ({error}); going on", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    for mode in ("node", "rate"):
        p = sub.add_parser(mode)
        p.add_argument("--model", default=None)
        p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
        p.add_argument("--profile", default="sweep" if mode == "node" else "constant")
        p.add_argument("--slo", default=None)
        p.add_argument("--args", default="", help="more harness run arguments, one string")
        p.add_argument("--results", type=Path, default=Path("results"))
        p.add_argument("--sweep-id", default=None)
        p.add_argument("--force", action="store_true")
    node, rate = sub.choices["node"], sub.choices["rate"]
    node.add_argument("--gpus", type=int, default=None, help="[default: the visible GPUs]")
    node.add_argument("--tp", default="1 2 4 8")
    node.add_argument("--workers-list", default="1 2", help="CPU layouts: W x 1 for each W")
    rate.add_argument("--workers", type=int, required=True)
    rate.add_argument("--tp", type=int, default=1)
    rate.add_argument("--rates", required=True)
    a = ap.parse_args()

    sim = "--engine sim" in a.args or "--engine=sim" in a.args
    harness_args = run_argv(profile=a.profile, **({} if sim else {"device": a.device}),
                            **({"model": a.model} if a.model else {}),
                            **({"slo": a.slo} if a.slo else {}))  # fmt: skip
    harness_args += shlex.split(a.args)

    if a.mode == "rate":
        layouts = [Layout(a.workers, a.tp)]
        harness_args += run_argv(rate=",".join(a.rates.split()))
    elif a.device == "cpu":
        layouts = [Layout(int(w), 1) for w in a.workers_list.split()]
    else:
        heads = None
        if a.model:
            try:
                heads = int(read_model_config(Path(a.model)).get("num_attention_heads") or 0)  # type: ignore[call-overload]
            except ValueError as e:
                print(f"sweep: error: {e}", file=sys.stderr)
                return 2
        gpus = a.gpus if a.gpus is not None else len(discover_gpus())
        if not gpus:
            print(
                "sweep: error: no GPU visible here: give --gpus N, or --device cpu", file=sys.stderr
            )
            return 2
        layouts, skipped = enumerate_layouts(gpus, [int(t) for t in a.tp.split()], heads)
        for s in skipped:
            print(f"skipping tp {s.tp}: {s.reason}", flush=True)
    if not layouts:
        print("sweep: error: no layout fits", file=sys.stderr)
        return 2
    sweep_id = a.sweep_id or f"{a.mode}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out = a.results / sweep_id
    check_layouts(layouts, harness_args, out)
    out.mkdir(parents=True, exist_ok=True)
    for layout in layouts:
        run_layout(layout, out, harness_args, a.force)
    summary = summarize(out)
    write_summary(summary, out)
    print(table(summary))
    print(f"summary: {out / 'summary.json'}, {out / 'summary.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
