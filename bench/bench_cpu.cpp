// Multi-threaded CPU kernels at DeepSeek-R1 shapes: memory read bandwidth, one expert's
// matrix-vector product (gate/up 7168->2048, down 2048->7168) and the MoE decode step
// (8 experts per token, batch 1/4/16), per weight format, on one thread and on all; and the
// MLA attention over the latent cache on the tile unit (prefill and decode, R1's 128 heads).
//
// Weights come from a layer of n_expert experts of the real size, at least 2.5 GiB in all
// (up to R1's 256), much larger than the last-level cache. Experts are taken in a fixed
// shuffled order, round-robin, so an expert is reused only after the whole layer has been
// streamed: every byte counted comes from DRAM. Experts are copies of one random expert
// (caches do not deduplicate, and it keeps set-up fast).
//
// Counters: bytes_per_second counts weight bytes read (the distinct experts of a step);
// bw_frac is that rate over the read bandwidth the same binary measures (read_bw/threads:N,
// a summing pass over 2 GiB on all threads).
//
// clock/threads:N: the core clock while N threads run 512-bit integer work (a dependent chain
// of vpaddd, one cycle each), in GHz per thread. With it, block_cycles on the MoE step counts
// the core cycles spent per 256-weight block (threads x clock x time / blocks), to compare
// with the bound from the kernels' instruction counts (docs/performance.md).
//
// panel/FORMAT/tokN (where the CPU has AMX): one thread's tile-unit product of one expert's
// gate matrix [2048, 7168] with N tokens (cpu/gemm.h panel_gemm, activations packed once),
// reporting multiply-adds/s (MAC/s) and weights unpacked/s. The matrix is re-read from L3/DRAM
// each pass; the unpacking, not the memory, bounds it.
//
// kernel/FORMAT/threads:N: the dot kernel alone, no memory traffic: each of N threads (pinned,
// one per core) dots its own 128 weight rows of 7168 (L2-resident, at most 0.5 MiB) with one
// activation row, over and over. block_cycles (threads x clock x time / blocks) against the
// single-thread figure shows what running N cores at once costs the kernel itself (the all-core
// clock, cores that share execution units); the MoE step's block_cycles against this one shows
// what streaming from DRAM adds.
//
// ports/threads:N and gathers/threads:N: the two resources the gather formats' kernels are
// bound by (docs/performance.md), on N threads at once: independent 512-bit vpaddd (ports 0
// and 5) and independent vpgatherdq of 8 qwords from an L1-resident table. Each reports ns per
// instruction per thread (s_per_op, printed with an SI prefix) and ops per cycle at the
// single-thread clock; if N threads share execution units, the per-thread rate falls with N.
//
// kernel_pair/FORMAT/cpu:J: the same loop on two threads pinned to CPUs 0 and J at once;
// block_cycles is the slower thread's, at the single-thread clock. A pair of logical CPUs that
// share one core's execution units (SMT siblings, which a VM may not show in its topology) runs
// at about twice the single-thread figure.
//
// tile_load/offset:N (where the CPU has AMX): one thread loading 1 KiB tiles (16 rows of 64
// bytes) from an L1-resident buffer that starts N bytes past a cache line; 0 is how tandem's
// buffers are aligned (core/aligned.h), 16 is what std::vector storage gives. Reports ns per
// tile (s_per_tile, printed with an SI prefix: 4.1n = 4.1 ns).
//
// tile_rate/PATTERN/threads:N (AMX): the tile unit's products and loads in the products'
// patterns (bm_tile_rate).
//
// With TANDEM_PHASES set, panel/, panel_i8/, gemm/ and moe_prefill/ also report each phase's
// share of the products' time (cpu/phases.h) as ph_pack, ph_unpack, ph_tiles, ph_epi, ph_vec
// and ph_out. Run:
//   build/bin/bench_cpu --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/gemm_i8.h"
#include "cpu/matmul.h"
#include "cpu/moe.h"
#include "cpu/phases.h"
#include "cpu/bandwidth.h"
#include "cpu/thread_pool.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace {

using tandem::GgmlType;
using namespace tandem::cpu;

constexpr int64_t kEmbd = 7168, kFf = 2048, kTopK = 8;  // DeepSeek-R1
constexpr uint64_t kBwBytes = uint64_t{2} << 30;
constexpr uint64_t kLayerMinBytes = uint64_t{5} << 29;  // 2.5 GiB

ThreadPool& pool_all() {
    static ThreadPool pool(0);
    return pool;
}
ThreadPool& pool_one() {
    static ThreadPool pool(1);
    return pool;
}
// A pool of exactly n threads (kept for the process).
ThreadPool& pool_of(int n) {
    if (n == 1) return pool_one();
    if (n == pool_all().n_threads()) return pool_all();
    static std::map<int, std::unique_ptr<ThreadPool>> pools;
    auto& p = pools[n];
    if (!p) p = std::make_unique<ThreadPool>(n);
    return *p;
}

// ---- read bandwidth ----

struct BwBuffer {
    std::unique_ptr<uint8_t[]> data{new uint8_t[kBwBytes]};
    BwBuffer() {
        // First touch on every thread, so pages spread the way the kernels' accesses do.
        pool_all().parallel_for(static_cast<int64_t>(kBwBytes >> 12), [&](int64_t p0, int64_t p1, int) {
            std::memset(data.get() + (p0 << 12), 1, static_cast<size_t>((p1 - p0) << 12));
        });
    }
};
BwBuffer& bw_buffer() {
    static BwBuffer b;
    return b;
}

void read_pass(ThreadPool& pool) {
    const uint8_t* base = bw_buffer().data.get();
    std::vector<uint64_t> sums(static_cast<size_t>(pool.n_threads()) * 8);
    const int64_t n_lines = static_cast<int64_t>(kBwBytes / 128);
    pool.parallel_for(n_lines, [&](int64_t l0, int64_t l1, int idx) {
        sums[static_cast<size_t>(idx) * 8] = tandem::cpu::read_sum(base + l0 * 128, static_cast<uint64_t>(l1 - l0) * 128);
    });
    benchmark::DoNotOptimize(sums.data());
}

// The all-threads read bandwidth, bytes/s: measured once (best of 20 passes after 3 warm-up
// passes), on first use. Fewer passes read ~10% low on the benchmark Xeon.
double read_bw() {
    static const double bw = [] {
        double best = 0;
        for (int i = 0; i < 3; ++i) read_pass(pool_all());
        for (int i = 0; i < 20; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            read_pass(pool_all());
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            best = std::max(best, static_cast<double>(kBwBytes) / s);
        }
        return best;
    }();
    return bw;
}

void bm_read_bw(benchmark::State& state) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    read_pass(pool);
    for (auto _ : state) read_pass(pool);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBwBytes));
    state.counters["bw_frac"] = benchmark::Counter(static_cast<double>(state.iterations()) * kBwBytes / read_bw(),
                                                   benchmark::Counter::kIsRate);
    state.counters["threads"] = pool.n_threads();
}

// ---- one MoE layer of a given format, built on first use and kept until another is asked ----

struct BenchLayer {
    GgmlType type{};
    int64_t n_expert = 0;
    std::unique_ptr<uint8_t[]> gate, up, down;
    ExpertWeights w{};
    std::vector<int32_t> order;  // shuffled expert order
    size_t cursor = 0;
    uint64_t expert_bytes() const { return (w.gate_row_bytes + w.up_row_bytes) * kFf + w.down_row_bytes * kEmbd; }
    int32_t next() {
        const int32_t e = order[cursor];
        cursor = (cursor + 1) % order.size();
        return e;
    }
};

std::unique_ptr<BenchLayer> g_layer;

// The layer of `type`'s experts, at least 2.5 GiB of them (16 to 256 experts), or exactly
// n_expert where that is given.
BenchLayer& layer_of(GgmlType type, int64_t n_expert = 0) {
    if (g_layer && g_layer->type == type && (n_expert == 0 || g_layer->n_expert == n_expert)) return *g_layer;
    g_layer.reset();
    auto L = std::make_unique<BenchLayer>();
    L->type = type;
    const uint64_t up_rb = quant_row_bytes(type, kEmbd), down_rb = quant_row_bytes(type, kFf);
    L->w = {type, type, type, nullptr, nullptr, nullptr, up_rb, up_rb, down_rb, kEmbd, kFf, 0};
    const uint64_t mat = up_rb * kFf;  // == down_rb * kEmbd for these shapes
    L->n_expert = n_expert > 0 ? n_expert : std::clamp<int64_t>(static_cast<int64_t>((kLayerMinBytes + 3 * mat - 1) / (3 * mat)), 16, 256);
    L->w.n_expert = L->n_expert;
    const uint64_t n_bytes = mat * static_cast<uint64_t>(L->n_expert);
    L->gate.reset(new uint8_t[n_bytes]);
    L->up.reset(new uint8_t[n_bytes]);
    L->down.reset(new uint8_t[down_rb * kEmbd * static_cast<uint64_t>(L->n_expert)]);
    L->w.gate = L->gate.get();
    L->w.up = L->up.get();
    L->w.down = L->down.get();
    std::vector<uint8_t> one(mat);
    tandem::quant::fill_random(type, one, 42, 0.05f);
    pool_all().parallel_for(L->n_expert, [&](int64_t e0, int64_t e1, int) {
        for (int64_t e = e0; e < e1; ++e) {
            std::memcpy(L->gate.get() + e * mat, one.data(), mat);
            std::memcpy(L->up.get() + e * mat, one.data(), mat);
            std::memcpy(L->down.get() + e * mat, one.data(), mat);
        }
    });
    L->order.resize(static_cast<size_t>(L->n_expert));
    std::iota(L->order.begin(), L->order.end(), 0);
    std::shuffle(L->order.begin(), L->order.end(), std::mt19937_64(7));
    g_layer = std::move(L);
    return *g_layer;
}

std::vector<float> activations(int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    std::mt19937_64 rng(3);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (float& v : x) v = d(rng);
    return x;
}

// ---- the core clock under load ----

// Seconds for n * 8 dependent 512-bit adds (vpaddd latency is one cycle) on this thread.
__attribute__((target("avx512f"))) double add_chain_seconds(int64_t n) {
    __m512i a = _mm512_set1_epi32(1);
    const __m512i b = _mm512_set1_epi32(3);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i)
        asm volatile(
            "vpaddd %1, %0, %0\n\tvpaddd %1, %0, %0\n\tvpaddd %1, %0, %0\n\tvpaddd %1, %0, %0\n\t"
            "vpaddd %1, %0, %0\n\tvpaddd %1, %0, %0\n\tvpaddd %1, %0, %0\n\tvpaddd %1, %0, %0"
            : "+v"(a)
            : "v"(b));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Seconds for n * 8 dependent scalar adds (one cycle each) with four 512-bit VPDPBUSD beside
// every eight, in independent chains: the clock while the vector units do the kernels' heaviest
// work (where a CPU lowers its clock for 512-bit multiplies, the light chain above misses it).
// The VPDPBUSDs take ports 0 and 5 half the time with two threads on a core; the scalar chain
// has its own ALUs. NOTES: the adds take a register, not an immediate: the Xeon's front end
// folds chains of immediate adds (it reported 2.90 GHz on one thread where this reads 2.62-2.73).
__attribute__((target("avx512f,avx512vnni"))) double vnni_chain_seconds(int64_t n) {
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
    __m512i c[4] = {_mm512_set1_epi32(1), _mm512_set1_epi32(2), _mm512_set1_epi32(3), _mm512_set1_epi32(4)};
    int64_t x = 0, one = 1;
    benchmark::DoNotOptimize(one);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
        asm volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                     : "+r"(x)
                     : "r"(one));
        for (__m512i& v : c) v = _mm512_dpbusd_epi32(v, a, b);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (__m512i& v : c) benchmark::DoNotOptimize(v);
    benchmark::DoNotOptimize(x);
    return s;
}

// The mean clock (Hz) of the pool's threads while all of them run the chain (vnni: the scalar
// chain beside VPDPBUSDs); 0 without AVX-512 (VNNI).
double clock_hz(ThreadPool& pool, bool vnni = false) {
    if (!__builtin_cpu_supports("avx512f") || (vnni && !__builtin_cpu_supports("avx512vnni"))) return 0.0;
    constexpr int64_t kReps = 50'000'000;  // 400 M cycles, ~0.15 s
    std::vector<double> hz(static_cast<size_t>(pool.n_threads()));
    pool.run_on_all([&](int idx) {
        hz[static_cast<size_t>(idx)] = 8.0 * kReps / (vnni ? vnni_chain_seconds(kReps) : add_chain_seconds(kReps));
    });
    return std::accumulate(hz.begin(), hz.end(), 0.0) / static_cast<double>(hz.size());
}
// clock_hz of pool_of(n_threads), measured once per size.
double clock_of(int n_threads) {
    static std::map<int, double> clocks;
    auto [it, fresh] = clocks.try_emplace(n_threads, 0.0);
    if (fresh) it->second = clock_hz(pool_of(n_threads));
    return it->second;
}

void bm_clock(benchmark::State& state, bool vnni) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    double hz = 0;
    for (auto _ : state) hz = clock_hz(pool, vnni);
    state.counters["GHz"] = hz / 1e9;
    state.counters["threads"] = pool.n_threads();
}

void report(benchmark::State& state, double bytes, ThreadPool& pool) {
    state.SetBytesProcessed(static_cast<int64_t>(bytes));
    state.counters["bw_frac"] = benchmark::Counter(bytes / read_bw(), benchmark::Counter::kIsRate);
    state.counters["threads"] = pool.n_threads();
}

// Core cycles per 256-weight block read: threads x clock x elapsed / blocks.
void report_block_cycles(benchmark::State& state, double bytes, uint64_t block_bytes, ThreadPool& pool) {
    const double hz = clock_of(pool.n_threads());
    if (hz <= 0) return;
    const double blocks = bytes / static_cast<double>(block_bytes);
    state.counters["block_cycles"] =
        benchmark::Counter(blocks / (pool.n_threads() * hz), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One expert: gate (7168 -> 2048) or down (2048 -> 7168), batch 1.
void bm_expert(benchmark::State& state, GgmlType type, bool down) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    BenchLayer& L = layer_of(type);
    read_bw();
    const int64_t n_in = down ? kFf : kEmbd, n_out = down ? kEmbd : kFf;
    const uint64_t rb = down ? L.w.down_row_bytes : L.w.gate_row_bytes;
    const uint8_t* base = down ? L.w.down : L.w.gate;
    const std::vector<float> x = activations(n_in);
    std::vector<float> y(static_cast<size_t>(n_out));
    MatmulScratch scratch;
    for (auto _ : state) {
        const uint8_t* w = base + static_cast<uint64_t>(L.next()) * rb * static_cast<uint64_t>(n_out);
        matmul(pool, type, w, rb, n_in, n_out, x.data(), 1, y.data(), scratch);
        benchmark::DoNotOptimize(y.data());
    }
    report(state, static_cast<double>(state.iterations()) * static_cast<double>(rb * n_out), pool);
}

// The MoE step: `batch` tokens, 8 experts each.
void bm_moe(benchmark::State& state, GgmlType type, int batch) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    BenchLayer& L = layer_of(type);
    read_bw();
    const std::vector<float> x = activations(batch * kEmbd);
    std::vector<float> out(static_cast<size_t>(batch * kEmbd));
    std::vector<int32_t> ids(static_cast<size_t>(batch * kTopK));
    const std::vector<float> wts(ids.size(), 1.0f / kTopK);
    std::vector<int32_t> distinct;
    MoeScratch scratch;
    double bytes = 0;
    for (auto _ : state) {
        state.PauseTiming();
        for (int32_t& e : ids) e = L.next();
        distinct = ids;
        std::sort(distinct.begin(), distinct.end());
        bytes += static_cast<double>(std::unique(distinct.begin(), distinct.end()) - distinct.begin()) *
                 static_cast<double>(L.expert_bytes());
        state.ResumeTiming();
        moe_forward(pool, L.w, x.data(), batch, ids.data(), wts.data(), kTopK, out.data(), scratch);
        benchmark::DoNotOptimize(out.data());
    }
    report(state, bytes, pool);
    report_block_cycles(state, bytes, quant_row_bytes(type, 256), pool);
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * batch, benchmark::Counter::kIsRate);
}

// With TANDEM_PHASES set: each phase's share of the products' marked time (cpu/phases.h), as
// counters ph_<phase>, over this benchmark's run (call phases::reset() before its loop).
void report_phases(benchmark::State& state) {
    if (!tandem::cpu::phases::g_on) return;
    namespace ph = tandem::cpu::phases;
    const auto shares = ph::shares();
    if (std::none_of(shares.begin(), shares.end(), [](double v) { return v > 0; })) return;
    const char* keys[] = {"ph_pack", "ph_unpack", "ph_tiles", "ph_epi", "ph_vec", "ph_out"};
    static_assert(std::size(keys) == ph::kCount);
    for (int i = 0; i < ph::kCount; ++i) state.counters[keys[i]] = shares[static_cast<size_t>(i)];
}

// The MoE step of a prefill: n_tok tokens, each with 8 distinct experts of R1's 256 drawn at
// random (a fixed draw), so an expert gets n_tok x 8 / 256 tokens on average, unevenly, as
// routing does. MAC/s counts the products' multiply-adds (3 x 7168 x 2048 per token and slot).
void bm_moe_prefill(benchmark::State& state, GgmlType type, int n_tok) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    constexpr int64_t kExperts = 256;
    BenchLayer& L = layer_of(type, kExperts);
    const std::vector<float> x = activations(n_tok * kEmbd);
    std::vector<float> out(static_cast<size_t>(n_tok * kEmbd));
    std::vector<int32_t> ids(static_cast<size_t>(n_tok * kTopK));
    const std::vector<float> wts(ids.size(), 1.0f / kTopK);
    std::mt19937_64 rng(11);
    std::vector<int32_t> all(kExperts);
    std::iota(all.begin(), all.end(), 0);
    for (int t = 0; t < n_tok; ++t) {
        std::shuffle(all.begin(), all.end(), rng);
        std::copy_n(all.begin(), kTopK, ids.begin() + t * kTopK);
    }
    MoeScratch scratch;
    tandem::cpu::phases::reset();
    for (auto _ : state) {
        moe_forward(pool, L.w, x.data(), n_tok, ids.data(), wts.data(), kTopK, out.data(), scratch);
        benchmark::DoNotOptimize(out.data());
    }
    report_phases(state);
    const double macs = static_cast<double>(state.iterations()) * n_tok * kTopK * 3.0 * kEmbd * kFf;
    state.counters["MAC/s"] = benchmark::Counter(macs, benchmark::Counter::kIsRate);
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * n_tok, benchmark::Counter::kIsRate);
    state.counters["threads"] = pool.n_threads();
}

// ---- the dot kernel alone, L2-resident ----

constexpr int64_t kKernelRows = 128;

// One thread's weight rows and quantized activations for the kernel benchmarks.
struct KernelData {
    GgmlType type;
    uint64_t row_bytes;
    tandem::aligned_vector<uint8_t> w, a;
    KernelData(GgmlType t, uint64_t seed) : type(t), row_bytes(quant_row_bytes(t, kEmbd)), w(row_bytes * kKernelRows) {
        tandem::quant::fill_random(type, {w.data(), w.size()}, seed, 0.05f);
        const GgmlType at = tandem::quant::vec_dot_type(type);
        a.resize(quant_row_bytes(at, kEmbd));
        const std::vector<float> x = activations(kEmbd);
        tandem::quant::quantize_row(at, x.data(), a.data(), kEmbd);
    }
    // `passes` passes over the rows; returns the sum so the work is not optimised away.
    float run(int64_t passes) const {
        const tandem::quant::VecDotFn dot = tandem::quant::vec_dot_fn(type);
        float s = 0;
        for (int64_t p = 0; p < passes; ++p)
            for (int64_t r = 0; r < kKernelRows; ++r) s += dot(w.data() + static_cast<uint64_t>(r) * row_bytes, a.data(), kEmbd);
        return s;
    }
    double blocks(int64_t passes) const { return static_cast<double>(passes) * kKernelRows * (kEmbd / 256); }
};

constexpr int64_t kKernelPasses = 64;

void bm_kernel(benchmark::State& state, GgmlType type) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    std::vector<std::unique_ptr<KernelData>> data(static_cast<size_t>(pool.n_threads()));
    // Each thread builds its own rows, so they sit in its core's cache.
    pool.run_on_all([&](int idx) { data[static_cast<size_t>(idx)] = std::make_unique<KernelData>(type, 11 + idx); });
    const double hz = clock_of(pool.n_threads());
    std::vector<float> sums(static_cast<size_t>(pool.n_threads()) * 16);
    for (auto _ : state)
        pool.run_on_all([&](int idx) { sums[static_cast<size_t>(idx) * 16] = data[static_cast<size_t>(idx)]->run(kKernelPasses); });
    benchmark::DoNotOptimize(sums.data());
    const double blocks = data[0]->blocks(kKernelPasses) * pool.n_threads() * static_cast<double>(state.iterations());
    state.SetBytesProcessed(static_cast<int64_t>(blocks * static_cast<double>(quant_row_bytes(type, 256))));
    state.counters["threads"] = pool.n_threads();
    if (hz > 0)
        state.counters["block_cycles"] =
            benchmark::Counter(blocks / (pool.n_threads() * hz), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// n x 16 independent 512-bit adds (8 accumulators, one cycle latency each).
__attribute__((target("avx512f"))) void add_throughput(int64_t n) {
    __m512i a0 = _mm512_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const __m512i b = _mm512_set1_epi32(3);
    for (int64_t i = 0; i < n; ++i)
        asm volatile(
            "vpaddd %8, %0, %0\n\tvpaddd %8, %1, %1\n\tvpaddd %8, %2, %2\n\tvpaddd %8, %3, %3\n\t"
            "vpaddd %8, %4, %4\n\tvpaddd %8, %5, %5\n\tvpaddd %8, %6, %6\n\tvpaddd %8, %7, %7\n\t"
            "vpaddd %8, %0, %0\n\tvpaddd %8, %1, %1\n\tvpaddd %8, %2, %2\n\tvpaddd %8, %3, %3\n\t"
            "vpaddd %8, %4, %4\n\tvpaddd %8, %5, %5\n\tvpaddd %8, %6, %6\n\tvpaddd %8, %7, %7"
            : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7)
            : "v"(b));
}

// n x 4 independent vpgatherdq (8 qwords each) from a 2048-entry table (16 KiB), indices
// not depending on the loaded values.
__attribute__((target("avx512f"))) uint64_t gather_throughput(const uint64_t* table, int64_t n) {
    __m256i idx = _mm256_setr_epi32(3, 700, 1201, 64, 1999, 512, 77, 1500);
    const __m256i step = _mm256_set1_epi32(97), mask = _mm256_set1_epi32(2047);
    const __m512i zero = _mm512_setzero_si512();
    __m512i s0 = zero, s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i < n; ++i) {
        const __m256i i1 = _mm256_and_si256(_mm256_add_epi32(idx, step), mask);
        const __m256i i2 = _mm256_and_si256(_mm256_add_epi32(i1, step), mask);
        const __m256i i3 = _mm256_and_si256(_mm256_add_epi32(i2, step), mask);
        s0 = _mm512_xor_si512(s0, _mm512_mask_i32gather_epi64(zero, 0xFF, idx, table, 8));
        s1 = _mm512_xor_si512(s1, _mm512_mask_i32gather_epi64(zero, 0xFF, i1, table, 8));
        s2 = _mm512_xor_si512(s2, _mm512_mask_i32gather_epi64(zero, 0xFF, i2, table, 8));
        s3 = _mm512_xor_si512(s3, _mm512_mask_i32gather_epi64(zero, 0xFF, i3, table, 8));
        idx = _mm256_and_si256(_mm256_add_epi32(i3, step), mask);
    }
    alignas(64) uint64_t out[8];
    _mm512_store_si512(out, _mm512_xor_si512(_mm512_xor_si512(s0, s1), _mm512_xor_si512(s2, s3)));
    return out[0] ^ out[7];
}

void bm_ports(benchmark::State& state, bool gathers) {
    if (!__builtin_cpu_supports("avx512f")) {
        state.SkipWithError("no AVX-512");
        return;
    }
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    constexpr int64_t kReps = 1 << 20;
    const int64_t ops = gathers ? 4 * kReps / 8 : 16 * kReps;
    std::vector<uint64_t> table(2048);
    std::iota(table.begin(), table.end(), 1);
    std::vector<uint64_t> sink(static_cast<size_t>(pool.n_threads()) * 8);
    for (auto _ : state)
        pool.run_on_all([&](int idx) {
            if (gathers) sink[static_cast<size_t>(idx) * 8] = gather_throughput(table.data(), kReps / 8);
            else add_throughput(kReps);
        });
    benchmark::DoNotOptimize(sink.data());
    const double n = static_cast<double>(ops) * static_cast<double>(state.iterations());
    state.counters["s_per_op"] = benchmark::Counter(n, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    const double hz = clock_of(1);
    if (hz > 0) state.counters["ops_per_cycle"] = benchmark::Counter(n / hz, benchmark::Counter::kIsRate);
    state.counters["threads"] = pool.n_threads();
}

// Runs fn on a new thread that first pins itself to `cpu` (fn does not run unpinned).
std::thread pinned_thread(int cpu, std::function<void()> fn) {
    return std::thread([cpu, fn = std::move(fn)] {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) != 0) std::abort();
        fn();
    });
}

void bm_kernel_pair(benchmark::State& state, GgmlType type) {
    const int other = static_cast<int>(state.range(0));
    if (other >= online_cpus()) {
        state.SkipWithError("no such CPU");
        return;
    }
    const KernelData d0(type, 11), d1(type, 12);
    double slowest = 0;
    for (auto _ : state) {
        std::atomic<int> ready{0};
        double secs[2] = {0, 0};
        float sums[2] = {0, 0};
        auto body = [&](int i, const KernelData& d) {
            return [&, i] {
                d.run(2);  // into this core's cache
                ready.fetch_add(1);
                while (ready.load() < 2) {
                }
                const auto t0 = std::chrono::steady_clock::now();
                sums[i] = d.run(kKernelPasses);
                secs[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            };
        };
        std::thread a = pinned_thread(0, body(0, d0)), b = pinned_thread(other, body(1, d1));
        a.join();
        b.join();
        benchmark::DoNotOptimize(sums);
        slowest += std::max(secs[0], secs[1]);
    }
    const double hz = clock_of(1);
    if (hz > 0) state.counters["block_cycles"] = slowest * hz / (d0.blocks(kKernelPasses) * static_cast<double>(state.iterations()));
}

// One expert's gate matrix times n_tok tokens on the bf16 unit (gemm_unit()), on this thread;
// with i8, the int8 product (cpu/gemm_i8.h) instead, on cpu::i8_unit().
void bm_panel(benchmark::State& state, GgmlType type, int n_tok, bool i8) {
    if (i8 ? !i8_gemm_supports(type) : gemm_unit() == GemmUnit::none) {
        state.SkipWithError(i8 ? "no int8 product for this format on this CPU" : "no AMX or AVX512-BF16");
        return;
    }
    const uint64_t rb = quant_row_bytes(type, kEmbd);
    std::vector<uint8_t> w(rb * kFf);
    tandem::quant::fill_random(type, w, 5, 0.05f);
    const std::vector<float> x = activations(n_tok * kEmbd);
    tandem::aligned_vector<uint16_t> packed(packed_acts_size(n_tok, kEmbd));
    std::vector<uint8_t> packed_i8(i8 ? packed_acts_i8_bytes(n_tok, kEmbd) : 0);
    if (i8) pack_acts_i8(type, x.data(), kEmbd, nullptr, n_tok, kEmbd, packed_i8.data());
    else pack_acts(x.data(), kEmbd, nullptr, n_tok, kEmbd, packed.data());
    PanelScratch ps;
    float* out = ps.out_for(n_tok);
    tandem::cpu::phases::reset();
    for (auto _ : state) {
        for (int64_t r0 = 0; r0 < kFf; r0 += kPanelRows) {
            const uint8_t* wr = w.data() + static_cast<uint64_t>(r0) * rb;
            if (i8) panel_gemm_i8(type, wr, rb, kPanelRows, kEmbd, packed_i8.data(), n_tok, out, ps);
            else panel_gemm(type, wr, rb, kPanelRows, kEmbd, packed.data(), n_tok, out, ps);
        }
        benchmark::DoNotOptimize(out);
    }
    report_phases(state);
    const double weights = static_cast<double>(state.iterations()) * kFf * kEmbd;
    state.counters["MAC/s"] = benchmark::Counter(weights * n_tok, benchmark::Counter::kIsRate);
    state.counters["weights/s"] = benchmark::Counter(weights, benchmark::Counter::kIsRate);
}

// The same product on the per-token path: each weight row against the N tokens' quantized
// activations through the several-rows dot kernel (quant::DotRows: the rows kernel where the
// format has one, else one dot per token), on this thread.
void bm_rows(benchmark::State& state, GgmlType type, int n_tok, bool down) {
    const int64_t n_in = down ? kFf : kEmbd, n_out = down ? kEmbd : kFf;
    const uint64_t rb = quant_row_bytes(type, n_in);
    std::vector<uint8_t> w(rb * static_cast<uint64_t>(n_out));
    tandem::quant::fill_random(type, w, 5, 0.05f);
    const std::vector<float> x = activations(n_tok * n_in);
    const GgmlType at = tandem::quant::vec_dot_type(type);
    const uint64_t xb = quant_row_bytes(at, n_in);
    tandem::aligned_vector<uint8_t> xq(xb * static_cast<uint64_t>(n_tok));  // aligned, as the model's activation buffers
    std::vector<const void*> ptrs;
    for (int t = 0; t < n_tok; ++t) {
        tandem::quant::quantize_row(at, x.data() + static_cast<int64_t>(t) * n_in, xq.data() + t * xb, n_in);
        ptrs.push_back(xq.data() + t * xb);
    }
    const tandem::quant::DotRows dot(type);
    std::vector<float> out(static_cast<size_t>(n_tok));
    for (auto _ : state) {
        for (int64_t r = 0; r < n_out; ++r) dot(w.data() + static_cast<uint64_t>(r) * rb, ptrs.data(), n_tok, n_in, out.data());
        benchmark::DoNotOptimize(out.data());
    }
    const double weights = static_cast<double>(state.iterations()) * kFf * kEmbd;
    state.counters["MAC/s"] = benchmark::Counter(weights * n_tok, benchmark::Counter::kIsRate);
    state.counters["weights/s"] = benchmark::Counter(weights, benchmark::Counter::kIsRate);
}

// What one parallel_for costs beyond its work: each iteration runs one parallel_for whose
// ranges do nothing, then keeps the calling thread busy for `gap` microseconds (the serial
// work between two products of a decode step: a norm, a residual, the routing). Reports the
// time per call outside the gap.
void bm_pool(benchmark::State& state) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    const auto gap = std::chrono::microseconds(state.range(1));
    std::atomic<int64_t> sink{0};
    double outside = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for(int64_t{8} * pool.n_threads(), [&](int64_t b, int64_t e, int) { sink.fetch_add(e - b, std::memory_order_relaxed); });
        const auto t1 = std::chrono::steady_clock::now();
        outside += std::chrono::duration<double>(t1 - t0).count();
        while (std::chrono::steady_clock::now() - t1 < gap) {
        }
    }
    state.counters["us_per_call"] = benchmark::Counter(outside * 1e6 / static_cast<double>(state.iterations()));
}

// The product of n_tok tokens with a [n_out, 7168] matrix through cpu::matmul, as prefill runs
// the attention and dense projections: n_out 2048 (one R1 expert's or the shared expert's
// gate) or 18432 (a dense layer's gate). From gemm_min_tokens(type) tokens on that is the tile
// path (int8 for a format with an int8 product on this CPU, else bf16) on gemm_unit()
// (activations packed, work items of up to four panels over the pool); TANDEM_GEMM=off
// measures the per-token path instead. F32 weights take the per-token path's blocked loop.
// Reports multiply-adds per second.
void bm_gemm(benchmark::State& state, GgmlType type, int64_t n_out, int64_t n_tok, int64_t max_chunk, int64_t n_in) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    const uint64_t rb = quant_row_bytes(type, n_in);
    std::vector<uint8_t> w(rb * static_cast<uint64_t>(n_out));
    tandem::quant::fill_random(type, w, 5, 0.05f);
    const std::vector<float> x = activations(n_tok * n_in);
    std::vector<float> y(static_cast<size_t>(n_tok * n_out));
    MatmulScratch scratch;
    scratch.gemm.max_chunk = max_chunk;
    tandem::cpu::phases::reset();
    for (auto _ : state) {
        matmul(pool, type, w.data(), rb, n_in, n_out, x.data(), n_tok, y.data(), scratch);
        benchmark::DoNotOptimize(y.data());
    }
    report_phases(state);
    const double macs = static_cast<double>(state.iterations()) * static_cast<double>(n_out * n_in * n_tok);
    state.counters["MAC/s"] = benchmark::Counter(macs, benchmark::Counter::kIsRate);
}

// MLA attention of n_tok tokens of one sequence, the last n_tok of n_ctx positions (a prefill
// when n_tok == n_ctx), at R1 shapes (576-value cache rows, 512 values, 128 heads). Counts the
// multiply-adds of the two products over each row's causal positions. With blocks, the cache
// comes already packed (as tandem's cache keeps it), else as f32 rows each call packs.
void bm_mla(benchmark::State& state, int64_t n_tok, int64_t n_ctx, bool blocks) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    if (!mla_attention_available()) {
        state.SkipWithError("no AMX on this CPU");
        return;
    }
    constexpr int64_t kWidth = 576, kRank = 512, kHead = 128;
    const std::vector<float> cache = activations(n_ctx * kWidth), q = activations(n_tok * kHead * kWidth);
    std::vector<float> o(static_cast<size_t>(n_tok * kHead * kRank));
    std::vector<int32_t> row_seq(static_cast<size_t>(n_tok * kHead), 0), row_n_ctx;
    double flop = 0;
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t h = 0; h < kHead; ++h) {
            row_n_ctx.push_back(static_cast<int32_t>(n_ctx - n_tok + t + 1));
            flop += 2.0 * static_cast<double>(row_n_ctx.back()) * (kWidth + kRank);
        }
    tandem::aligned_vector<uint16_t> packed;
    if (blocks) {
        const int64_t be = tandem::cpu::mla_block_elems(kWidth, kRank);
        packed.resize(static_cast<size_t>((n_ctx + kMlaBlock - 1) / kMlaBlock * be));
        for (int64_t j = 0; j < n_ctx; ++j)
            tandem::cpu::mla_pack_position(cache.data() + j * kWidth, j % kMlaBlock, kWidth, kRank, packed.data() + j / kMlaBlock * be);
    }
    const MlaSeq seq = blocks ? MlaSeq{.blocks = packed.data(), .n_ctx = n_ctx} : MlaSeq{.rows = cache.data(), .n_ctx = n_ctx};
    MlaParams p;
    p.width = kWidth;
    p.rank = kRank;
    p.scale = 0.1352f;
    p.n_rows = n_tok * kHead;
    p.q = q.data();
    p.row_seq = row_seq.data();
    p.row_n_ctx = row_n_ctx.data();
    p.seqs = {&seq, 1};
    p.o = o.data();
    MlaScratch scratch;
    for (auto _ : state) {
        mla_attention(pool, p, scratch);
        benchmark::DoNotOptimize(o.data());
    }
    state.counters["flop/s"] = benchmark::Counter(flop * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["threads"] = pool.n_threads();
}

// Eight tiles per pass over a 16 KiB buffer: no tile waits for another.
__attribute__((target("amx-tile"))) void load_tiles(const uint8_t* a, int64_t passes) {
    for (int64_t i = 0; i < passes; ++i) {
        _tile_loadd(0, a, 64);
        _tile_loadd(1, a + 1024, 64);
        _tile_loadd(2, a + 2048, 64);
        _tile_loadd(3, a + 3072, 64);
        _tile_loadd(4, a + 4096, 64);
        _tile_loadd(5, a + 5120, 64);
        _tile_loadd(6, a + 6144, 64);
        _tile_loadd(7, a + 7168, 64);
    }
}

void bm_tile_load(benchmark::State& state) {
    if (!amx_available()) {
        state.SkipWithError("no AMX");
        return;
    }
    tandem::aligned_vector<uint8_t> buf(16384 + 64, 0x3f);
    const uint8_t* a = buf.data() + state.range(0);
    amx_configure_tiles();
    constexpr int64_t kPasses = 1 << 14;
    for (auto _ : state) load_tiles(a, kPasses);
    const double tiles = static_cast<double>(state.iterations()) * kPasses * 8;
    state.counters["s_per_tile"] = benchmark::Counter(tiles, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The tile unit's own rates, each of N threads (pinned) on its own buffers, in the patterns the
// products use (cpu/gemm.cpp chunk_steps, cpu/gemm_i8.cpp tile_block). Modes:
//   0 dp:      TDPBF16PS into 4 C tiles from A and B tiles already loaded (the products alone);
//   1 dp_i8:   the same with TDPBUSD;
//   2 step_l1: chunk_steps' 2x2 step, 4 tile loads (A and B from a 4 KiB L1-resident buffer) and
//              4 TDPBF16PS;
//   3 step_l2: the same with the B tiles streamed from a 256 KiB buffer (L2-resident), as the
//              packed activations of a 7168-wide row are, and A from a 32 KiB chunk;
//   4 c_trip:  step_l1 with the C tiles stored and loaded back every 8 steps (a chunk of 256
//              values between units);
//   5 c_epi:   dp_i8 in tile_block's shape (zero C, 4 steps of 2x2 TDPBUSD with loads from L1,
//              store C) and then the C tiles read back by the vector units (a 1 KiB sum per
//              tile, standing in for tile_epilogue).
// ns_per_dp: ns per product per thread; mac_per_cycle: multiply-adds per core cycle per thread
// at the clock of clock/threads:N (peak: 512 bf16 or 1024 int8 per core).
__attribute__((target("amx-tile,amx-bf16,amx-int8,avx512f"))) int64_t tile_pattern(int mode, const uint8_t* a, const uint8_t* b,
                                                                                      uint64_t b_bytes, float* c, int64_t passes) {
    int64_t n_dp = 0;
    _tile_loadd(4, a, 64);
    _tile_loadd(5, a + 1024, 64);
    _tile_loadd(6, a + 2048, 64);
    _tile_loadd(7, a + 3072, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    uint64_t bo = 0;
    __m512 sink = _mm512_setzero_ps();
    for (int64_t i = 0; i < passes; ++i) {
        switch (mode) {
            case 0:
            case 1:
                for (int s = 0; s < 8; ++s) {
                    if (mode == 0) {
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(1, 5, 6);
                        _tile_dpbf16ps(2, 4, 7);
                        _tile_dpbf16ps(3, 5, 7);
                    } else {
                        _tile_dpbusd(0, 4, 6);
                        _tile_dpbusd(1, 5, 6);
                        _tile_dpbusd(2, 4, 7);
                        _tile_dpbusd(3, 5, 7);
                    }
                }
                n_dp += 32;
                break;
            case 2:
            case 3:
            case 4:
                if (mode == 4) {
                    _tile_loadd(0, c, 64);
                    _tile_loadd(1, c + 256, 64);
                    _tile_loadd(2, c + 512, 64);
                    _tile_loadd(3, c + 768, 64);
                }
                for (int s = 0; s < 8; ++s) {
                    const uint8_t* a_s = mode == 3 ? a + (s % 16) * 64 : a;
                    _tile_loadd(4, a_s, mode == 3 ? 1024 : 64);
                    _tile_loadd(5, a_s + (mode == 3 ? 16384 : 1024), mode == 3 ? 1024 : 64);
                    const uint8_t* b_s = mode == 3 ? b + bo : a + 2048;
                    _tile_loadd(6, b_s, 64);
                    _tile_loadd(7, b_s + (mode == 3 ? b_bytes / 2 : 1024), 64);
                    if (mode == 3) bo = (bo + 1024) % (b_bytes / 2);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 5, 6);
                    _tile_dpbf16ps(2, 4, 7);
                    _tile_dpbf16ps(3, 5, 7);
                }
                if (mode == 4) {
                    _tile_stored(0, c, 64);
                    _tile_stored(1, c + 256, 64);
                    _tile_stored(2, c + 512, 64);
                    _tile_stored(3, c + 768, 64);
                }
                n_dp += 32;
                break;
            case 5:
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int k = 0; k < 4; ++k) {
                    _tile_loadd(4, a + 64 * k, 256);
                    _tile_loadd(5, a + 4096 + 64 * k, 256);
                    _tile_loadd(6, b + 1024 * k, 64);
                    _tile_dpbusd(0, 4, 6);
                    _tile_dpbusd(1, 5, 6);
                    _tile_loadd(7, b + 4096 + 1024 * k, 64);
                    _tile_dpbusd(2, 4, 7);
                    _tile_dpbusd(3, 5, 7);
                }
                _tile_stored(0, c, 64);
                _tile_stored(1, c + 256, 64);
                _tile_stored(2, c + 512, 64);
                _tile_stored(3, c + 768, 64);
                for (int r = 0; r < 64; ++r) sink = _mm512_add_ps(sink, _mm512_load_ps(c + 16 * r));
                n_dp += 16;
                break;
        }
    }
    _tile_stored(0, c, 64);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sink);
    for (float v : lanes) c[0] += v;
    return n_dp;
}

void bm_tile_rate(benchmark::State& state, int mode) {
    if (!amx_int8_available()) {
        state.SkipWithError("no AMX-INT8");
        return;
    }
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    constexpr uint64_t kB = 256 << 10;
    struct Bufs {
        tandem::aligned_vector<uint8_t> a, b;
        tandem::aligned_vector<float> c;
    };
    std::vector<Bufs> bufs(static_cast<size_t>(pool.n_threads()));
    pool.run_on_all([&](int idx) {
        Bufs& m = bufs[static_cast<size_t>(idx)];
        m.a.assign(32768 + 1024, 0x01);  // small values: bf16 0x0101 and int8 1 stay finite
        m.b.assign(kB, 0x01);
        m.c.assign(1024, 0.0f);
        amx_configure_tiles();
    });
    constexpr int64_t kPasses = 4096;
    std::atomic<int64_t> n_dp{0};
    for (auto _ : state)
        pool.run_on_all([&](int idx) {
            Bufs& m = bufs[static_cast<size_t>(idx)];
            n_dp += tile_pattern(mode, m.a.data(), m.b.data(), kB, m.c.data(), kPasses);
        });
    const double per_thread = static_cast<double>(n_dp.load()) / pool.n_threads();
    state.counters["ns_per_dp"] = benchmark::Counter(per_thread * 1e9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    const double hz = clock_of(pool.n_threads());
    const double macs = mode == 1 || mode == 5 ? 16384 : 8192;
    if (hz > 0) state.counters["mac_per_cycle"] = benchmark::Counter(per_thread * macs / hz, benchmark::Counter::kIsRate);
    state.counters["threads"] = pool.n_threads();
}

void register_all() {
    const int all = pool_all().n_threads();
    for (bool vnni : {false, true})
        benchmark::RegisterBenchmark(vnni ? "clock_vnni" : "clock", bm_clock, vnni)->Arg(1)->Arg(all)->ArgName("threads")->Iterations(3)->UseRealTime();
    benchmark::RegisterBenchmark("read_bw", bm_read_bw)->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.5)->UseRealTime();
    const GgmlType types[] = {GgmlType::IQ1_S, GgmlType::IQ1_S_U2, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K,
                              GgmlType::Q3_K,  GgmlType::Q6_K,     GgmlType::Q8_0,    GgmlType::IQ1_M, GgmlType::IQ1_M_U2,
                              GgmlType::IQ2_XXS_U3, GgmlType::IQ3_XXS, GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16};
    for (GgmlType type : types) {
        const std::string t(tandem::ggml_type_name(type));
        for (bool down : {false, true})
            benchmark::RegisterBenchmark(("expert/" + t + (down ? "/down_2048x7168" : "/gate_7168x2048")).c_str(), bm_expert, type, down)
                ->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMicrosecond)->MinTime(0.3)->UseRealTime();
        for (int batch : {1, 4, 16}) {
            auto* b = benchmark::RegisterBenchmark(("moe/" + t + "/batch" + std::to_string(batch)).c_str(), bm_moe, type, batch);
            if (batch == 1) b->Arg(1);
            b->Arg(all)->ArgName("threads")->Unit(benchmark::kMicrosecond)->MinTime(0.3)->UseRealTime();
        }
        if (type == GgmlType::IQ1_S_U2 || type == GgmlType::IQ2_XXS || type == GgmlType::Q2_K || type == GgmlType::IQ1_M_U2 ||
            type == GgmlType::IQ2_XXS_U3 || type == GgmlType::Q2_K_U16)
            benchmark::RegisterBenchmark(("moe_prefill/" + t + "/tok512").c_str(), bm_moe_prefill, type, 512)
                ->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.3)->UseRealTime();
        for (int n_tok : {16, 32, 64, 256})
            benchmark::RegisterBenchmark(("panel/" + t + "/tok" + std::to_string(n_tok)).c_str(), bm_panel, type, n_tok, false)
                ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
        if (type == GgmlType::IQ1_S_U2 || type == GgmlType::Q4_K || type == GgmlType::Q6_K || type == GgmlType::IQ2_XXS ||
            type == GgmlType::Q2_K || type == GgmlType::Q3_K || type == GgmlType::IQ1_S || type == GgmlType::IQ1_M_U2 ||
            type == GgmlType::IQ2_XXS_U3 || type == GgmlType::IQ3_XXS_U4 || type == GgmlType::Q2_K_U16 || type == GgmlType::Q3_K_U16)
            for (int n_tok : {4, 8, 16, 32, 64, 256})
                benchmark::RegisterBenchmark(("panel_i8/" + t + "/tok" + std::to_string(n_tok)).c_str(), bm_panel, type, n_tok, true)
                    ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
        for (bool down : {false, true})
            for (int n_tok : {1, 4, 8, 16, 32, 64})
                benchmark::RegisterBenchmark(("rows/" + t + (down ? "/down" : "/gate") + "/tok" + std::to_string(n_tok)).c_str(),
                                             bm_rows, type, n_tok, down)
                    ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
    }
    for (bool g : {false, true}) {
        auto* b = benchmark::RegisterBenchmark(g ? "gathers" : "ports", bm_ports, g);
        for (int n = 1; n < all; n *= 2) b->Arg(n);
        b->Arg(all)->ArgName("threads")->MinTime(0.2)->UseRealTime();
    }
    for (GgmlType type : {GgmlType::IQ1_S, GgmlType::IQ1_S_U2, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q6_K,
                          GgmlType::IQ1_M, GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3, GgmlType::Q2_K_U16, GgmlType::Q3_K,
                          GgmlType::Q3_K_U16}) {
        const std::string t(tandem::ggml_type_name(type));
        auto* k = benchmark::RegisterBenchmark(("kernel/" + t).c_str(), bm_kernel, type);
        for (int n = 1; n < all; n *= 2) k->Arg(n);
        k->Arg(all)->ArgName("threads")->Unit(benchmark::kMicrosecond)->MinTime(0.3)->UseRealTime();
        auto* p = benchmark::RegisterBenchmark(("kernel_pair/" + t).c_str(), bm_kernel_pair, type);
        for (int c = 1; c < all; ++c) p->Arg(c);
        p->ArgName("cpu")->Unit(benchmark::kMicrosecond)->Iterations(5)->UseRealTime();
    }
    benchmark::RegisterBenchmark("pool", bm_pool)
        ->ArgsProduct({{all}, {0, 10, 100}})->ArgNames({"threads", "gap_us"})->MinTime(0.3)->UseRealTime();
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::IQ1_S_U2})
        for (int64_t n_out : {int64_t{2048}, int64_t{18432}})
            for (int64_t n_tok : {int64_t{2}, int64_t{4}, int64_t{8}, int64_t{16}, int64_t{64}, int64_t{512}}) {
                const std::string name = "gemm/" + std::string(tandem::ggml_type_name(type)) + "/" + std::to_string(n_out) + "x7168/tok" + std::to_string(n_tok);
                benchmark::RegisterBenchmark(name.c_str(), bm_gemm, type, n_out, n_tok, kChunk, kEmbd)
                    ->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.3)->UseRealTime();
            }
    // The dense layers' down projection (18432 to 7168, Q6_K in the UD quants), against the
    // gate/up shape above.
    for (GgmlType type : {GgmlType::Q6_K, GgmlType::Q4_K})
        benchmark::RegisterBenchmark(("gemm/" + std::string(tandem::ggml_type_name(type)) + "/7168x18432/tok512").c_str(), bm_gemm,
                                     type, 7168, 512, kChunk, 18432)
            ->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.3)->UseRealTime();
    // MLA's per-head absorptions in a prefill (model/deepseek2.cpp, one head per thread): W_uk^T
    // (bf16, [512, 128]) and W_uv (Q6_K in the UD quants, [128, 512]), 512 tokens: short rows,
    // where the products' fixed costs per panel (C tiles, the output's transpose) count.
    benchmark::RegisterBenchmark("gemm/BF16/512x128/tok512", bm_gemm, GgmlType::BF16, 512, 512, kChunk, 128)
        ->Arg(1)->ArgName("threads")->Unit(benchmark::kMicrosecond)->MinTime(0.3)->UseRealTime();
    benchmark::RegisterBenchmark("gemm/Q6_K/128x512/tok512", bm_gemm, GgmlType::Q6_K, 128, 512, kChunk, 512)
        ->Arg(1)->ArgName("threads")->Unit(benchmark::kMicrosecond)->MinTime(0.3)->UseRealTime();
    // R1's router: F32 weights, 256 experts (the per-token path's blocked loop, rows kernel).
    for (int64_t n_tok : {int64_t{64}, int64_t{512}})
        benchmark::RegisterBenchmark(("gemm/F32/256x7168/tok" + std::to_string(n_tok)).c_str(), bm_gemm, GgmlType::F32, 256, n_tok, kChunk, kEmbd)
            ->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.3)->UseRealTime();
    // The bf16 panels' chunk width (cpu/gemm.h kChunk): a 32-row chunk of 512 values is 32 KiB
    // of bf16, two of them (the tile unit's double buffer) more than a 48 KiB L1, and more so
    // with two threads on a core. Q5_K takes bf16 on every unit (no int8 product); widths 128 to 512.
    for (int64_t n_tok : {int64_t{64}, int64_t{512}})
        for (int64_t width : {int64_t{128}, int64_t{256}, int64_t{512}})
            benchmark::RegisterBenchmark(("chunk/Q5_K/18432x7168/tok" + std::to_string(n_tok) + "/w" + std::to_string(width)).c_str(),
                                         bm_gemm, GgmlType::Q5_K, 18432, n_tok, width, kEmbd)
                ->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.3)->UseRealTime();
    {
        const char* names[] = {"dp", "dp_i8", "step_l1", "step_l2", "c_trip", "c_epi"};
        for (int mode = 0; mode < 6; ++mode)
            benchmark::RegisterBenchmark((std::string("tile_rate/") + names[mode]).c_str(), bm_tile_rate, mode)
                ->Arg(1)->Arg(all)->ArgName("threads")->MinTime(0.3)->UseRealTime();
    }
    benchmark::RegisterBenchmark("tile_load", bm_tile_load)->Arg(0)->Arg(16)->ArgName("offset")->MinTime(0.3);
    for (bool blocks : {false, true})
        for (const auto& [n_tok, n_ctx] : {std::pair<int64_t, int64_t>{512, 512}, {1, 512}, {1, 4096}, {1, 16384}})
            benchmark::RegisterBenchmark(("mla/tokens" + std::to_string(n_tok) + "/ctx" + std::to_string(n_ctx) + (blocks ? "/blocks" : "/rows")).c_str(),
                                         bm_mla, n_tok, n_ctx, blocks)
                ->Arg(all)->ArgName("threads")->Unit(benchmark::kMicrosecond)->MinTime(0.3)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
