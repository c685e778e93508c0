// Field unpacking shared by the reference dequantizers, the quantizers and the dot products:
// the packed scales of the K and IQ formats and the base-3 trits of TQ1_0.
#pragma once

#include <cstdint>
#include <utility>

#include "quant/blocks.h"

namespace tandem::quant {

// IQ1_S / IQ1_M: grid values are shifted by +-1/8 (the sign is a per-group bit).
inline constexpr float kIq1Delta = 0.125f;

// Q3_K: the signed 6-bit scale of sub-block i (of 16), in [-32, 31]. See BlockQ3K.
inline int q3k_scale(const uint8_t* scales, int i) {
    const int lo = (scales[i % 8] >> (4 * (i / 8))) & 0x0F;
    const int hi = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

// Q4_K / Q5_K: the 6-bit (scale, min) of sub-block j (of 8). See BlockQ4K.
inline std::pair<int, int> k4_scale_min(const uint8_t* scales, int j) {
    if (j < 4) return {scales[j] & 63, scales[j + 4] & 63};
    return {(scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)};
}

// TQ1_0: the trit (0, 1, 2) of element e. A byte stores up to 5 trits as a base-3 fraction
// scaled to 256; multiplying by 3^p (mod 256) brings trit p to the top.
inline int tq1_trit(const BlockTq1_0& b, int e) {
    static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
    uint8_t v;
    if (e < 160) {
        v = static_cast<uint8_t>(b.qs[e % 32] * kPow3[e / 32]);
    } else if (e < 240) {
        v = static_cast<uint8_t>(b.qs[32 + (e - 160) % 16] * kPow3[(e - 160) / 16]);
    } else {
        v = static_cast<uint8_t>(b.qh[(e - 240) % 4] * kPow3[(e - 240) / 4]);
    }
    return (static_cast<uint16_t>(v) * 3) >> 8;
}

// IQ1_M and IQ1_M_U2 (which share the field): the four uint16 of `scales`, little-endian.
template <typename Block>
inline uint16_t iq1m_scales_u16(const Block& b, int k) {
    return static_cast<uint16_t>(b.scales[2 * k] | (b.scales[2 * k + 1] << 8));
}
// IQ1_M, IQ1_M_U2: the f16 super-scale bits, nibble k from the top of uint16 k.
template <typename Block>
inline uint16_t iq1m_scale_bits(const Block& b) {
    return static_cast<uint16_t>((iq1m_scales_u16(b, 0) >> 12) | ((iq1m_scales_u16(b, 1) >> 8) & 0x00F0) |
                                 ((iq1m_scales_u16(b, 2) >> 4) & 0x0F00) | (iq1m_scales_u16(b, 3) & 0xF000));
}
// IQ1_M, IQ1_M_U2: the 3-bit scale of the 16 elements s (of 16).
template <typename Block>
inline int iq1m_sub_scale(const Block& b, int s) { return (iq1m_scales_u16(b, s / 4) >> (3 * (s % 4))) & 7; }
// IQ2_XXS_U3: the magnitude code (0, 1, 2 for 8, 25, 43) and the sign bit of weight e (of 256).
inline int iq2xxsu3_code(const BlockIq2XxsU3& b, int e) { return (b.qs[u2_position(e) % 64] >> (2 * (u2_position(e) / 64))) & 3; }
inline bool iq2xxsu3_minus(const BlockIq2XxsU3& b, int e) { return (b.signs[u2_position(e) / 8] >> (u2_position(e) % 8)) & 1; }
inline constexpr int kIq2xxsMagnitudes[3] = {8, 25, 43};

// IQ3_XXS_U4: the nibble (bit 3 the sign, bits 0..2 the magnitude code) of weight e (of 256).
inline int iq3xxsu4_nibble(const BlockIq3XxsU4& b, int e) { return (b.q[e % 128] >> (4 * (e / 128))) & 0x0F; }
inline constexpr int kIq3xxsMagnitudes[8] = {4, 12, 20, 28, 36, 44, 52, 62};

// The 2-bit field of weight e (of 256) in 64 bytes of qs: Q2_K's and Q3_K's order (byte 32 (e /
// 128) + e % 32, bits 2 ((e / 32) % 4)), or the group-major one (Q2_K_U16, Q3_K_U16, IQ1_M_U2:
// byte p % 64, bits 2 (p / 64), p = u16_position(e)).
inline int k_low2(const uint8_t* qs, int e) { return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3; }
inline int u16_low2(const uint8_t* qs, int e) { return (qs[u16_position(e) % 64] >> (2 * (u16_position(e) / 64))) & 3; }

// Q2_K, Q2_K_U16: the 2-bit q of weight e (of 256), and the scale and min of its 16 (x = d sc q -
// dmin m).
inline int q2k_q(const BlockQ2K& b, int e) { return k_low2(b.qs, e); }
inline int q2k_q(const BlockQ2KU16& b, int e) { return u16_low2(b.qs, e); }
// Q3_K, Q3_K_U16: u = low 2 bits + 4 * high bit of weight e (of 256), in [0, 7] (the value is u - 4).
inline int q3k_u(const BlockQ3K& b, int e) { return k_low2(b.qs, e) + 4 * ((b.hmask[e % 32] >> (e / 32)) & 1); }
inline int q3k_u(const BlockQ3KU16& b, int e) {
    return u16_low2(b.qs, e) + 4 * ((b.hmask[u16_position(e) / 8] >> (u16_position(e) % 8)) & 1);
}
template <typename Block>
inline int q2k_scale(const Block& b, int e) { return b.scales[e / 16] & 0x0F; }
template <typename Block>
inline int q2k_min(const Block& b, int e) { return b.scales[e / 16] >> 4; }

// IQ1_M_U2: u = grid value + 1 (0, 1, 2) of weight e (of 256), and whether the delta of its 8
// weights is -1/8.
inline int iq1mu2_u(const BlockIq1MU2& b, int e) { return u16_low2(b.qs, e); }
inline bool iq1mu2_minus(const BlockIq1MU2& b, int e) { return (b.delta[e / 64] >> ((e / 8) % 8)) & 1; }

// The repacked layouts' nibble of group g (of 8, 32 weights each) in sc, low nibble first:
// IQ1_S_U2's scale (bits 0..2) and delta sign (bit 3), IQ2_XXS_U3's and IQ3_XXS_U4's scale ls.
template <typename Block>
inline int group_nibble(const Block& b, int g) { return (b.sc[g / 2] >> (4 * (g % 2))) & 0x0F; }
// IQ1_S_U2: u = grid value + 1 (0, 1, 2) of weight e (of 256), at its u2_position.
inline int iq1su2_u(const BlockIq1SU2& b, int e) { return (b.qs[u2_position(e) % 64] >> (2 * (u2_position(e) / 64))) & 3; }

// IQ4_XS: the signed 6-bit scale of sub-block ib (of 8), in [-32, 31].
inline int iq4xs_scale(const BlockIq4Xs& b, int ib) {
    const int lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
    const int hi = (b.scales_h >> (2 * ib)) & 3;
    return (lo | (hi << 4)) - 32;
}

}  // namespace tandem::quant
