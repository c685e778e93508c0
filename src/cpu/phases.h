// Where the tile-path products spend their time, by phase, when TANDEM_PHASES is set in the
// environment: each thread adds the time-stamp counter ticks between its marks to per-phase
// totals, which bench_cpu and `tandem bench` print as shares.
//
// Why: on the benchmark machine's tile unit the products run at a quarter to a third of what the
// instruction counts allow (docs/performance.md), and that machine has no perf; only timing
// inside the products says whether the weights' unpacking, the tile products, the vector
// epilogues or the activations' packing take the rest. Off (the default) each mark is one
// predictable branch; on, a mark costs an RDTSC (~25 cycles), a few percent of a panel block.
//
// NOTES: the tile unit runs asynchronously to the vector units, so a phase that issues tile
// products is charged only until its last instruction issues; the wait for them lands on the
// next phase that reads their results (a tile store, then the epilogue's loads). The shares
// are of the threads' summed time inside marked regions, not of wall time.
#pragma once

#include <x86intrin.h>

#include <array>
#include <cstdint>

namespace tandem::cpu::phases {

enum Id { kPackActs, kUnpack, kTiles, kEpilogue, kVector, kOutput, kCount };
const char* name(Id id);

// True when TANDEM_PHASES is set (read once).
extern const bool g_on;

struct Clock {
    std::array<uint64_t, kCount> ticks{};
    uint64_t t0 = 0;
};
Clock& local();  // this thread's, registered for shares()

// Starts timing on this thread (the ticks until the next mark go to that mark's phase).
inline void start() {
    if (g_on) local().t0 = __rdtsc();
}
// Charges the ticks since the last start or mark to `id`.
inline void mark(Id id) {
    if (!g_on) return;
    Clock& c = local();
    const uint64_t t = __rdtsc();
    c.ticks[static_cast<size_t>(id)] += t - c.t0;
    c.t0 = t;
}

// Each phase's share of every thread's ticks since the last reset (all zero when nothing was
// marked); reset() zeroes them (call only while no product runs).
std::array<double, kCount> shares();
void reset();

}  // namespace tandem::cpu::phases
