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
// tile_load/offset:N (where the CPU has AMX): one thread loading 1 KiB tiles (16 rows of 64
// bytes) from an L1-resident buffer that starts N bytes past a cache line; 0 is how tandem's
// buffers are aligned (core/aligned.h), 16 is what std::vector storage gives. Reports ns per
// tile (s_per_tile, printed with an SI prefix: 4.1n = 4.1 ns). Run:
//   build/bin/bench_cpu --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/moe.h"
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
ThreadPool& pool_of(int n) { return n == 1 ? pool_one() : pool_all(); }

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

BenchLayer& layer_of(GgmlType type) {
    if (g_layer && g_layer->type == type) return *g_layer;
    g_layer.reset();
    auto L = std::make_unique<BenchLayer>();
    L->type = type;
    const uint64_t up_rb = quant_row_bytes(type, kEmbd), down_rb = quant_row_bytes(type, kFf);
    L->w = {type, type, type, nullptr, nullptr, nullptr, up_rb, up_rb, down_rb, kEmbd, kFf, 0};
    const uint64_t mat = up_rb * kFf;  // == down_rb * kEmbd for these shapes
    L->n_expert = std::clamp<int64_t>(static_cast<int64_t>((kLayerMinBytes + 3 * mat - 1) / (3 * mat)), 16, 256);
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

// The mean clock (Hz) of the pool's threads while all of them run the chain; 0 without AVX-512.
double clock_hz(ThreadPool& pool) {
    if (!__builtin_cpu_supports("avx512f")) return 0.0;
    constexpr int64_t kReps = 50'000'000;  // 400 M cycles, ~0.15 s
    std::vector<double> hz(static_cast<size_t>(pool.n_threads()));
    pool.run_on_all([&](int idx) { hz[static_cast<size_t>(idx)] = 8.0 * kReps / add_chain_seconds(kReps); });
    return std::accumulate(hz.begin(), hz.end(), 0.0) / static_cast<double>(hz.size());
}
double clock_of(int n_threads) {
    static const double one = clock_hz(pool_one()), all = clock_hz(pool_all());
    return n_threads == 1 ? one : all;
}

void bm_clock(benchmark::State& state) {
    ThreadPool& pool = pool_of(static_cast<int>(state.range(0)));
    double hz = 0;
    for (auto _ : state) hz = clock_hz(pool);
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

// One expert's gate matrix times n_tok tokens on the tile unit, on this thread.
void bm_panel(benchmark::State& state, GgmlType type, int n_tok) {
    if (!amx_available()) {
        state.SkipWithError("no AMX");
        return;
    }
    const uint64_t rb = quant_row_bytes(type, kEmbd);
    std::vector<uint8_t> w(rb * kFf);
    tandem::quant::fill_random(type, w, 5, 0.05f);
    const std::vector<float> x = activations(n_tok * kEmbd);
    tandem::aligned_vector<uint16_t> packed(packed_acts_size(n_tok, kEmbd));
    pack_acts(x.data(), kEmbd, nullptr, n_tok, kEmbd, packed.data());
    PanelScratch ps;
    float* out = ps.out_for(n_tok);
    for (auto _ : state) {
        for (int64_t r0 = 0; r0 < kFf; r0 += kPanelRows)
            panel_gemm(type, w.data() + static_cast<uint64_t>(r0) * rb, rb, kPanelRows, kEmbd, packed.data(), n_tok, out, ps);
        benchmark::DoNotOptimize(out);
    }
    const double weights = static_cast<double>(state.iterations()) * kFf * kEmbd;
    state.counters["MAC/s"] = benchmark::Counter(weights * n_tok, benchmark::Counter::kIsRate);
    state.counters["weights/s"] = benchmark::Counter(weights, benchmark::Counter::kIsRate);
}

// MLA attention of n_tok tokens of one sequence, the last n_tok of n_ctx positions (a prefill
// when n_tok == n_ctx), at R1 shapes (576-value cache rows, 512 values, 128 heads). Counts the
// multiply-adds of the two products over each row's causal positions.
void bm_mla(benchmark::State& state, int64_t n_tok, int64_t n_ctx) {
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
    const MlaSeq seq{cache.data(), n_ctx};
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

void register_all() {
    const int all = pool_all().n_threads();
    benchmark::RegisterBenchmark("clock", bm_clock)->Arg(1)->Arg(all)->ArgName("threads")->Iterations(3)->UseRealTime();
    benchmark::RegisterBenchmark("read_bw", bm_read_bw)->Arg(1)->Arg(all)->ArgName("threads")->Unit(benchmark::kMillisecond)->MinTime(0.5)->UseRealTime();
    const GgmlType types[] = {GgmlType::IQ1_S, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K,
                              GgmlType::Q3_K,  GgmlType::Q6_K,    GgmlType::Q8_0};
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
        for (int n_tok : {16, 32, 64, 256})
            benchmark::RegisterBenchmark(("panel/" + t + "/tok" + std::to_string(n_tok)).c_str(), bm_panel, type, n_tok)
                ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
    }
    benchmark::RegisterBenchmark("tile_load", bm_tile_load)->Arg(0)->Arg(16)->ArgName("offset")->MinTime(0.3);
    for (const auto& [n_tok, n_ctx] : {std::pair<int64_t, int64_t>{512, 512}, {1, 512}, {1, 4096}, {1, 16384}})
        benchmark::RegisterBenchmark(("mla/tokens" + std::to_string(n_tok) + "/ctx" + std::to_string(n_ctx)).c_str(), bm_mla,
                                     n_tok, n_ctx)
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
