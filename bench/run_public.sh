#!/usr/bin/env bash
# The four strategies side by side on the public tasks, with the SCRIPTED model (no real
# model: each sample is the reference fix with probability P, else a wrong edit).
#
#   bench/run_public.sh [P] [OUT] [extra mulligan bench flags...]
#
# Rerun the same command to resume an interrupted bench. Plots need `pip install
# 'mulligan[bench]'`. Report: OUT/report.md; plots: OUT/solve_vs_{samples,tokens}.png.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
p="${1:-0.3}"
out="${2:-$root/bench/out/bench-public-p$p}"
shift $(( $# > 2 ? 2 : $# ))
tasks="${MULLIGAN_BENCH_TASKS:-$root/../shared/benchmarks}"
cd "$root"
exec python -m agent.frontends.cli bench "$tasks" --strategy all --budget 4 --candidates 2 --beam 2 \
    --scripted-p "$p" --image "${MULLIGAN_IMAGE:-mulligan/base:bookworm}" --timeout 60 \
    --workers "${WORKERS:-3}" --sandbox-workers 2 --out "$out" "$@"
