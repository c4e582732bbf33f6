#!/usr/bin/env bash
# Every benchmark of the harness itself, each writing its JSON under $RESULTS: the figures
# of the README's "Benchmarks of the harness itself", rerun in one command.
#
#   scripts/bench_all.sh [cpu|cuda [NAME ...]]
#
# NAME: timer schedule overhead ingest memory answer offline (default: all, in that order;
# the first five need no engine, the last two start vLLM). With cuda, answer and offline
# run on the GPU (offline at 256 in flight, the issue's GPU check). PYTHON picks the
# interpreter (default .venv/bin/python; on a machine with vLLM on PYTHONPATH, python3).
# A failed benchmark is reported and the rest still run; the exit status is 1 if any failed.
set -uo pipefail

cd "$(dirname "$0")/.."
DEVICE=${1:-cpu}
case "$DEVICE" in
    cpu | cuda) shift $(($# > 0 ? 1 : 0)) ;;
    *) echo "bench_all.sh: the device is cpu or cuda, not '$DEVICE'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-results}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(timer schedule overhead ingest memory answer offline)

if [ "$DEVICE" = cuda ]; then
    OFFLINE=(--device cuda --concurrency 256 --requests 4096 --output-path fast --repeat 2)
else
    OFFLINE=(--device cpu --output-path both --repeat 2)
fi

bench_cmd() { # the benchmark's command line, in the array cmd; 1 for a name it does not know
    case "$1" in
        timer) cmd=(scripts/bench_timer.py) ;;
        schedule) cmd=(scripts/bench_schedule.py) ;;
        overhead) cmd=(scripts/bench_overhead.py --workers 2) ;;
        ingest) cmd=(scripts/bench_ingest.py) ;;
        memory) cmd=(scripts/bench_memory.py) ;;
        answer) cmd=(scripts/bench_answer.py --device "$DEVICE") ;;
        offline) cmd=(scripts/bench_vs_offline.py "${OFFLINE[@]}") ;;
        *) return 1 ;;
    esac
}

for name in "${NAMES[@]}"; do # every name checked before anything slow starts
    bench_cmd "$name" || { echo "bench_all.sh: no benchmark named '$name'" >&2; exit 2; }
done
failed=()
for name in "${NAMES[@]}"; do
    bench_cmd "$name"
    out="$RESULTS/bench_$name$([ "$DEVICE" = cuda ] && echo _cuda).json"
    echo "== $name: ${cmd[*]} --output $out" >&2
    start=$SECONDS
    if "$PYTHON" "${cmd[@]}" --output "$out"; then
        echo "== $name: done in $((SECONDS - start)) s" >&2
    else
        echo "== $name: FAILED (exit $?) after $((SECONDS - start)) s" >&2
        failed+=("$name")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench_all.sh: failed: ${failed[*]}" >&2
    exit 1
fi
