#!/usr/bin/env bash
# Builds tandem and bench_cpu of one commit for the CPU-only A/B runs on the GPU benchmark
# machine's Xeon (bench/device/xeon_ab.sh): portable (no -march=native), no CUDA, static
# tandem libraries, so the binaries run there from the carried folder .dev/lead/NAME.
#
#   bench/device/build_lead.sh NAME COMMIT     e.g. base dd92c7e, new HEAD
#
# NOTES: .dev/ is gitignored and a fresh checkout does not have it; each session rebuilds
# the binaries it compares (one build at a time on the 2-core dev machine, ~10 min each).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1
commit=$(git rev-parse "$2")
tree=/tmp/tandem-lead-$name
rm -rf "$tree"
git worktree prune
git worktree add --detach "$tree" "$commit" >/dev/null
cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_NATIVE=OFF -DTANDEM_CUDA=OFF \
    -DTANDEM_TESTS=OFF >/dev/null
cmake --build "$tree/build" -j "${JOBS:-2}" --target tandem bench_cpu
mkdir -p ".dev/lead/$name"
cp "$tree/build/bin/tandem" "$tree/build/bin/bench_cpu" ".dev/lead/$name/"
# The Debian shared libraries they link that the device lacks (xeon_ab.sh puts .dev/lead on
# LD_LIBRARY_PATH).
for lib in $(ldd ".dev/lead/$name/bench_cpu" ".dev/lead/$name/tandem" | grep -o '/[^ ]*lib\(benchmark\|fmt\|pcre2\)[^ ]*' | sort -u); do
    cp -L "$lib" .dev/lead/
done
echo "$commit $(git log -1 --format=%s "$commit" | cut -c1-100)" >".dev/lead/$name/COMMIT"
git worktree remove --force "$tree"
du -sh ".dev/lead/$name"
