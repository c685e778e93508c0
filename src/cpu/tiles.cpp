#include "cpu/tiles.h"

#include <cstring>

namespace tandem::cpu::tile {

bool g_emulated = false;

namespace emu {

namespace {

// The calling thread's eight tiles, 16 rows of 64 bytes each (the tile unit's state is per
// thread as well).
struct Tiles {
    alignas(64) uint8_t t[8][16][64];
};
thread_local Tiles g_tiles;

float bf16_to_f32(uint16_t v) {
    const uint32_t bits = uint32_t{v} << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

}  // namespace

void zero(int t) { std::memset(g_tiles.t[t], 0, sizeof(g_tiles.t[t])); }

void load(int t, const void* base, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(g_tiles.t[t][r], static_cast<const uint8_t*>(base) + r * stride, 64);
}

void store(int t, void* base, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<uint8_t*>(base) + r * stride, g_tiles.t[t][r], 64);
}

void dpbusd(int c, int a, int b) {
    // C: [16 m][16 n] int32; A: [16 m][64] uint8 (16 quads); B: [16 k][16 n x 4] int8.
    for (int m = 0; m < 16; ++m) {
        int32_t acc[16];
        std::memcpy(acc, g_tiles.t[c][m], 64);
        for (int k = 0; k < 16; ++k)
            for (int n = 0; n < 16; ++n) {
                int32_t sum = 0;
                for (int i = 0; i < 4; ++i)
                    sum += int32_t{g_tiles.t[a][m][4 * k + i]} * int32_t{static_cast<int8_t>(g_tiles.t[b][k][4 * n + i])};
                acc[n] = static_cast<int32_t>(static_cast<uint32_t>(acc[n]) + static_cast<uint32_t>(sum));
            }
        std::memcpy(g_tiles.t[c][m], acc, 64);
    }
}

void dpbf16ps(int c, int a, int b) {
    // C: [16 m][16 n] float; A: [16 m][16 k x 2] bf16; B: [16 k][16 n x 2] bf16.
    for (int m = 0; m < 16; ++m) {
        float acc[16];
        uint16_t arow[32];
        std::memcpy(acc, g_tiles.t[c][m], 64);
        std::memcpy(arow, g_tiles.t[a][m], 64);
        for (int k = 0; k < 16; ++k) {
            uint16_t brow[32];
            std::memcpy(brow, g_tiles.t[b][k], 64);
            const float a0 = bf16_to_f32(arow[2 * k]), a1 = bf16_to_f32(arow[2 * k + 1]);
            for (int n = 0; n < 16; ++n) {
                acc[n] += a0 * bf16_to_f32(brow[2 * n]);
                acc[n] += a1 * bf16_to_f32(brow[2 * n + 1]);
            }
        }
        std::memcpy(g_tiles.t[c][m], acc, 64);
    }
}

}  // namespace emu

}  // namespace tandem::cpu::tile
