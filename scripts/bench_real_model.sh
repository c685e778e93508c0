#!/usr/bin/env bash
# The real-model numbers of docs/performance.md ("The real model"), on any machine that has a
# build and the model file (no network needed):
#   prefill and decode tok/s and peak RSS (tandem bench), and the perplexity on the public-domain
#   text data/web-luke.txt (llama.cpp's method, 512-token windows, all 59 of them).
#
#   bash scripts/bench_real_model.sh [BUILD_DIR] [MODEL] [THREADS]
#
# Defaults: build/, models/qwen2.5-coder-0.5b-instruct.gguf (scripts/fetch_model.sh), all
# cores. CHUNKS=N limits the perplexity run to N windows. Output also goes to
# BUILD_DIR/bench_real_model.log.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MODEL=${2:-models/qwen2.5-coder-0.5b-instruct.gguf}
THREADS=${3:-$(nproc)}
CHUNKS=${CHUNKS:--1}
TANDEM=$BUILD/bin/tandem
[ -x "$TANDEM" ] || { echo "bench_real_model: $TANDEM missing (build first)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "bench_real_model: $MODEL missing (scripts/fetch_model.sh)" >&2; exit 1; }

{
  echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), threads $THREADS"
  echo "== $TANDEM info $MODEL"
  "$TANDEM" info "$MODEL" | head -4
  echo "== bench: 512-token prefill, 64-token decode, 3 repetitions"
  "$TANDEM" bench -m "$MODEL" -p 512 -n 64 -r 3 -t "$THREADS"
  echo "== run: a chat question, greedy"
  "$TANDEM" run -m "$MODEL" --chat -p "What is 12 * 7? Answer briefly." -n 32 --greedy -t "$THREADS"
  echo "== perplexity on data/web-luke.txt, --ctx 512, chunks $CHUNKS"
  "$TANDEM" perplexity -m "$MODEL" -f data/web-luke.txt --ctx 512 --chunks "$CHUNKS" -t "$THREADS"
} 2>&1 | tee "$BUILD/bench_real_model.log"
