// The AMX tile operations of tandem's tile-unit products (cpu/gemm.cpp, cpu/gemm_i8.cpp,
// cpu/attention.cpp), each either the instruction or, with TANDEM_GEMM=amx-emulated, the same
// arithmetic in C++ on per-thread tile registers.
//
// Why: most machines that build and test tandem (this project's CI among them) have no tile
// unit, so the tile paths' logic (layouts, strides, which C tile goes where) would otherwise
// run only on the rare machine that has one. Emulated, it runs in the test suite everywhere
// with AVX-512 BF16 and VNNI (the vector code around the tile operations needs those); only
// the speed is not the tile unit's.
//
// Every tile is configured as 16 rows of 64 bytes (amx_configure_tiles), so the emulation
// knows no other shape. The arithmetic is the Intel SDM's (vol. 2, TDPBUSD and TDPBF16PS):
//   dpbusd<c, a, b>:   C.i32[m][n] += sum over k < 16, i < 4 of A.u8[m][4k + i] * B.s8[k][4n + i]
//                      (wrapping int32);
//   dpbf16ps<c, a, b>: C.f32[m][n] += A.bf16[m][2k] * B.bf16[k][2n], then += A.bf16[m][2k + 1] *
//                      B.bf16[k][2n + 1], for k in order, each add rounded to nearest even (the
//                      products are exact in float). The instruction also flushes denormal
//                      inputs and results to zero; the emulation does not.
#pragma once

#include <cstdint>

namespace tandem::cpu::tile {

// True when TANDEM_GEMM=amx-emulated chose the emulated tile unit (set once, with the units).
extern bool g_emulated;

namespace emu {
void zero(int t);
void load(int t, const void* base, int64_t stride);  // 16 rows of 64 bytes, `stride` bytes apart
void store(int t, void* base, int64_t stride);
void dpbusd(int c, int a, int b);
void dpbf16ps(int c, int a, int b);
}  // namespace emu

// NOTES: inline asm, not the _tile_* intrinsics: GCC's are macros that paste their tile
// number into the instruction text, which a template parameter cannot be; "%c" prints the
// constant bare. The memory clobbers keep the compiler from moving the buffers' stores and loads
// across the tile loads and stores it cannot see into.
template <int kT>
inline void zero() {
    if (g_emulated) emu::zero(kT);
    else asm volatile("tilezero %%tmm%c0" ::"i"(kT));
}

template <int kT>
inline void load(const void* base, int64_t stride) {
    if (g_emulated) emu::load(kT, base, stride);
    else asm volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride), "i"(kT) : "memory");
}

template <int kT>
inline void store(void* base, int64_t stride) {
    if (g_emulated) emu::store(kT, base, stride);
    else asm volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(base), "r"(stride), "i"(kT) : "memory");
}

template <int kC, int kA, int kB>
inline void dpbusd() {
    if (g_emulated) emu::dpbusd(kC, kA, kB);
    else asm volatile("tdpbusd %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(kC), "i"(kA), "i"(kB));
}

template <int kC, int kA, int kB>
inline void dpbf16ps() {
    if (g_emulated) emu::dpbf16ps(kC, kA, kB);
    else asm volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(kC), "i"(kA), "i"(kB));
}

inline void release() {
    if (!g_emulated) asm volatile("tilerelease" ::: "memory");
}

}  // namespace tandem::cpu::tile
