#!/usr/bin/env bash
# The CPU measurements issues 3 (item 7) and 4 (item 6) ask for, on the GPU benchmark
# machine's Xeon, as an A/B of two builds made by bench/device/build_lead.sh (.dev/lead/new,
# .dev/lead/base), in priority order so a call cut short still brings back the first parts.
# Every part is written to $OUT as it runs (tee), each under its own timeout.
#
#   run(command="bash bench/device/xeon_ab.sh kernels", carry=[".dev/lead"])   ~5 min
#   run(command="bash bench/device/xeon_ab.sh model", carry=[".dev/lead"])     ~6 min
#
# (both parts in one call may pass the 10-minute limit of a device command; "all" runs both).
# Parts: 1 the host (lscpu, read bandwidth, clock) and the batch-1 MoE step and L2 kernel rate
# of the new build at 1 and 16 threads; 2 the same with the other block-factor form; 3 the
# base build's batch-1 set; 4 the 13-layer R1-shaped UD-IQ1_S model (issue 4's target), base
# and new interleaved, then a phase profile and 4 and 8 sequences. NOTES: the read bandwidth
# and a Q2_K control are measured in every bench_cpu run, since the hosts lent differ (some
# noisy: session 16's call26 saw 87-98 GB/s and the Q2_K step vary 5x).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/xeon_ab}
part=${1:-all}
mkdir -p "$OUT"
L=.dev/lead
export LD_LIBRARY_PATH=$PWD/$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}  # libbenchmark, libfmt: not on the device
formats='IQ1_S_U2|IQ2_XXS_U3|IQ1_M_U2|Q2_K_U16|Q3_K_U16|Q2_K|Q4_K|IQ1_S|IQ2_XXS'
set1="read_bw|clock_vnni|moe/($formats)/batch1/|kernel/($formats)/threads:(1|16)/"
bench() {  # LABEL BUILD [ENV...]: the batch-1 set
    local label=$1 build=$2
    shift 2
    echo "== $label" | tee -a "$OUT/batch1.txt"
    env "$@" timeout 150 "$L/$build/bench_cpu" --benchmark_filter="$set1" --benchmark_counters_tabular=true 2>&1 |
        grep -v '^\*\*\*' | tee -a "$OUT/batch1.txt"
}

{ lscpu | grep -E 'Model name|^CPU\(s\)|Thread|MHz|L2|L3'; nproc; free -g | head -2; cat $L/*/COMMIT; } | tee "$OUT/host.txt"

# 1-3: the kernels (issue 3 item 7)
if [ "$part" = kernels ] || [ "$part" = all ]; then
    bench "new (default factor form)" new
    bench "new, TANDEM_BLOCK_FACTORS=inline" new TANDEM_BLOCK_FACTORS=inline
    bench "base" base
fi
[ "$part" = model ] || [ "$part" = all ] || exit 0

# 4: the 13-layer model (issue 4 item 6): 3 dense + 10 MoE layers, UD-IQ1_S, 16 threads
model=/tmp/r1-13.gguf
[ -f $model ] || timeout 240 $L/new/tandem synth --preset r1 --layers 13 --recipe ud-iq1_s -o $model 2>&1 | tail -2 | tee "$OUT/synth.txt"
tg() {  # LABEL BUILD [ENV...]
    local label=$1 build=$2
    shift 2
    echo "== $label" | tee -a "$OUT/model.txt"
    env "$@" timeout 120 "$L/$build/tandem" bench -m $model -p 512 -n 64 -t 16 -r 2 --json 2>&1 | grep -E '"(pp_tps|tg_tps|tg_tps_per_seq|n_parallel|decode_bandwidth_fraction)"|rror' | tr -d '\n ' | tee -a "$OUT/model.txt"; echo | tee -a "$OUT/model.txt"
}
tg new new
tg base base
tg new new
tg base base
tg "new, TANDEM_BLOCK_FACTORS=inline" new TANDEM_BLOCK_FACTORS=inline
TANDEM_PHASES=1 timeout 90 $L/new/tandem bench -m $model -p 512 -n 32 -t 16 -r 1 2>&1 | tail -40 | tee "$OUT/phases.txt"
for p in 4 8; do
    echo "== --parallel $p" | tee -a "$OUT/model.txt"
    timeout 120 $L/new/tandem bench -m $model -p 128 -n 32 -t 16 -r 1 --parallel $p --json 2>&1 | grep -E '"(pp_tps|tg_tps|tg_tps_per_seq|n_parallel|decode_bandwidth_fraction)"|rror' | tr -d '\n ' | tee -a "$OUT/model.txt"; echo | tee -a "$OUT/model.txt"
done
echo "done" | tee -a "$OUT/host.txt"
