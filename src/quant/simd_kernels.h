// SIMD dot-product kernels, written once and compiled per instruction set.
//
// Included only by vec_dot_avx2.cpp and vec_dot_avx512.cpp, the latter under
// `#pragma GCC target("avx512...")`; everything here has internal linkage (anonymous
// namespace) so the two compilations never merge at link time, and every header these
// kernels use is included by those files *before* the pragma, so no shared inline function
// is ever compiled with AVX-512 (which would let the linker hand an AVX2 CPU an AVX-512 copy).
//
// Scheme (the same integers as vec_dot_scalar.cpp): each 32-weight chunk is decoded into
// 32 unsigned bytes u <= 128 (offset, or with the sign moved onto the activation), and
//     acc += sum over pairs of maddubs(u, qa) * scale16
// where scale16 holds the integer scale of the first 16 weights in the low 128-bit lane and
// of the last 16 in the high lane. Offsets multiply the activation group sums (Q8_K bsums).
// Per 256-block the int32 accumulator is converted once and added into float lanes.
// ISA differences are confined to scaled_dot / dot_u8: AVX2 uses maddubs + madd + add,
// AVX-512 VNNI fuses the last two (vpdpwssd) and uses vpdpbusd for unscaled chunks; both
// run at 256-bit width, which keeps clocks up and is enough for memory-bound decode.
#pragma once

namespace tandem::quant {
namespace {

template <Isa I>
inline __m256i scaled_dot(__m256i acc, __m256i u, __m256i qa, __m256i scale16) {
    const __m256i pairs = _mm256_maddubs_epi16(u, qa);  // [16] int16, |.| <= 2 * 128 * 127
    if constexpr (I == Isa::Avx512Vnni) {
        return _mm256_dpwssd_epi32(acc, pairs, scale16);
    } else {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scale16));
    }
}

// [8] int32, each the sum of 4 products u * qa (u unsigned bytes, qa signed).
template <Isa I>
inline __m256i dot_u8(__m256i u, __m256i qa) {
    if constexpr (I == Isa::Avx512Vnni) {
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, qa);
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, qa), _mm256_set1_epi16(1));
    }
}

inline __m256i scale_pair(int lo, int hi) {
    return _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(lo)), _mm_set1_epi16(static_cast<int16_t>(hi)));
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum_g offset16[g] * bsums[g] over the 16 groups, as [8] int32 to add to an accumulator.
inline __m256i bsum_terms(const BlockQ8K& a, const int16_t* offset16) {
    return _mm256_madd_epi16(load32(a.bsums), load32(offset16));
}

// ---- per-format 256-blocks: add ad * (da * int_a + db * int_b) into facc ----

template <Isa I>
inline void block_dot(const BlockQ2K& b, const BlockQ8K& a, __m256& facc) {
    alignas(32) int16_t sc[16], mn[16];
    for (int g = 0; g < 16; ++g) {
        sc[g] = static_cast<int16_t>(b.scales[g] & 0x0F);
        mn[g] = static_cast<int16_t>(-(b.scales[g] >> 4));
    }
    const __m256i mask2 = _mm256_set1_epi8(3);
    __m256i acc = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
        // qs bytes half*32 .. +31; bits 2s..2s+1 hold chunk 4*half + s.
        const __m256i q = load32(b.qs + 32 * half);
        for (int s = 0; s < 4; ++s) {
            const int c = 4 * half + s;
            const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), mask2);
            acc = scaled_dot<I>(acc, u, load32(a.qs + 32 * c), scale_pair(sc[2 * c], sc[2 * c + 1]));
        }
    }
    const __m256i mins = bsum_terms(a, mn);
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * fp16_to_f32(b.dmin)), facc);
}

template <Isa I>
inline void block_dot(const BlockQ3K& b, const BlockQ8K& a, __m256& facc) {
    alignas(32) int16_t sc[16], off[16];
    for (int g = 0; g < 16; ++g) {
        sc[g] = static_cast<int16_t>(q3k_scale(b.scales, g));
        off[g] = static_cast<int16_t>(-4 * sc[g]);  // u below is q + 4
    }
    const __m256i mask2 = _mm256_set1_epi8(3);
    const __m256i hm = load32(b.hmask);
    __m256i acc = bsum_terms(a, off);
    for (int half = 0; half < 2; ++half) {
        const __m256i q = load32(b.qs + 32 * half);
        for (int s = 0; s < 4; ++s) {
            const int c = 4 * half + s;
            // Bit c of hmask[l] adds 4 to element 32c + l.
            const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << c));
            const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), _mm256_set1_epi8(4));
            const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * s), mask2), high);
            acc = scaled_dot<I>(acc, u, load32(a.qs + 32 * c), scale_pair(sc[2 * c], sc[2 * c + 1]));
        }
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
}

template <Isa I, typename Block>
inline void k4_block_dot(const Block& b, const BlockQ8K& a, __m256& facc) {
    alignas(32) int16_t mn[16];
    int sc[8];
    for (int j = 0; j < 8; ++j) {
        const auto [s, m] = k4_scale_min(b.scales, j);
        sc[j] = s;
        mn[2 * j] = mn[2 * j + 1] = static_cast<int16_t>(-m);
    }
    const __m256i mask4 = _mm256_set1_epi8(0x0F);
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
        // qs bytes 32k .. 32k+31: low nibbles are chunk 2k, high nibbles chunk 2k+1.
        const __m256i q = load32(b.qs + 32 * k);
        __m256i lo = _mm256_and_si256(q, mask4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask4);
        if constexpr (sizeof(Block) == sizeof(BlockQ5K)) {
            // Fifth bit of chunk c is bit c of qh[l].
            const __m256i qh = load32(b.qh);
            const __m256i b_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * k)));
            const __m256i b_hi = _mm256_set1_epi8(static_cast<char>(1 << (2 * k + 1)));
            const __m256i sixteen = _mm256_set1_epi8(16);
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_lo), b_lo), sixteen));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_hi), b_hi), sixteen));
        }
        acc = scaled_dot<I>(acc, lo, load32(a.qs + 64 * k), _mm256_set1_epi16(static_cast<int16_t>(sc[2 * k])));
        acc = scaled_dot<I>(acc, hi, load32(a.qs + 64 * k + 32), _mm256_set1_epi16(static_cast<int16_t>(sc[2 * k + 1])));
    }
    const __m256i mins = bsum_terms(a, mn);
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * fp16_to_f32(b.dmin)), facc);
}

template <Isa I>
inline void block_dot(const BlockQ4K& b, const BlockQ8K& a, __m256& facc) { k4_block_dot<I>(b, a, facc); }
template <Isa I>
inline void block_dot(const BlockQ5K& b, const BlockQ8K& a, __m256& facc) { k4_block_dot<I>(b, a, facc); }

template <Isa I>
inline void block_dot(const BlockQ6K& b, const BlockQ8K& a, __m256& facc) {
    alignas(32) int16_t off[16];
    for (int g = 0; g < 16; ++g) off[g] = static_cast<int16_t>(-32 * b.scales[g]);  // u below is q + 32
    const __m256i mask4 = _mm256_set1_epi8(0x0F), mask2 = _mm256_set1_epi8(3);
    __m256i acc = bsum_terms(a, off);
    for (int half = 0; half < 2; ++half) {
        // ql bytes half*64 + [0, 64), qh bytes half*32 + [0, 32): chunk 4*half + t, t = 2n + r,
        // takes nibble n of ql[half*64 + 32r + l] and bits 2t..2t+1 of qh[half*32 + l].
        const __m256i ql0 = load32(b.ql + 64 * half), ql1 = load32(b.ql + 64 * half + 32);
        const __m256i qh = load32(b.qh + 32 * half);
        for (int t = 0; t < 4; ++t) {
            const int c = 4 * half + t;
            const __m256i ql = (t % 2) ? ql1 : ql0;
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql, 4 * (t / 2)), mask4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * t), mask2);
            const __m256i u = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
            acc = scaled_dot<I>(acc, u, load32(a.qs + 32 * c), scale_pair(b.scales[2 * c], b.scales[2 * c + 1]));
        }
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
}

// Four 8-byte grid entries as one chunk, entry 0 in the lowest bytes.
inline __m256i grid_chunk(uint64_t e0, uint64_t e1, uint64_t e2, uint64_t e3) {
    return _mm256_set_epi64x(static_cast<int64_t>(e3), static_cast<int64_t>(e2), static_cast<int64_t>(e1),
                             static_cast<int64_t>(e0));
}

template <Isa I>
inline void block_dot(const BlockIq2Xxs& b, const BlockQ8K& a, __m256& facc) {
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < 8; ++i) {
        // Bytes 8i .. 8i+3: four grid indices; 8i+4 .. 8i+7: four 7-bit sign indices, scale.
        const uint32_t aux0 = load_u32(qs + 8 * i), aux1 = load_u32(qs + 8 * i + 4);
        const __m256i u = grid_chunk(kIq2xxsGrid[aux0 & 0xFF], kIq2xxsGrid[(aux0 >> 8) & 0xFF],
                                     kIq2xxsGrid[(aux0 >> 16) & 0xFF], kIq2xxsGrid[aux0 >> 24]);
        // The grid is unsigned; its signs move onto the activations.
        const __m256i signs = grid_chunk(kKsignsMul[aux1 & 0x7F], kKsignsMul[(aux1 >> 7) & 0x7F],
                                         kKsignsMul[(aux1 >> 14) & 0x7F], kKsignsMul[(aux1 >> 21) & 0x7F]);
        const __m256i qa = _mm256_sign_epi8(load32(a.qs + 32 * i), signs);
        acc = scaled_dot<I>(acc, u, qa, _mm256_set1_epi16(static_cast<int16_t>(2 * (aux1 >> 28) + 1)));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * (fp16_to_f32(b.d) * 0.125f)), facc);
}

template <Isa I>
inline void block_dot(const BlockIq1S& b, const BlockQ8K& a, __m256& facc) {
    // Per 32 weights: (d/8) * (8 s * sum(g qa) + delta s * bsum), g in {-1,0,1}, and with
    // u = g + 1 in {0,1,2}: sum(g qa) = sum(u qa) - bsum, so the offset is (delta - 8) s.
    alignas(32) int16_t off[16];
    const __m256i one = _mm256_set1_epi8(1);
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < 8; ++i) {
        const uint32_t qh = b.qh[i];
        const int s = 2 * static_cast<int>((qh >> 12) & 7) + 1;
        off[2 * i] = off[2 * i + 1] = static_cast<int16_t>(((qh & 0x8000) ? -1 - 8 : 1 - 8) * s);
        const uint8_t* q = b.qs + 4 * i;
        const __m256i g = grid_chunk(kIq1sGrid[q[0] | ((qh << 8) & 0x700)], kIq1sGrid[q[1] | ((qh << 5) & 0x700)],
                                     kIq1sGrid[q[2] | ((qh << 2) & 0x700)], kIq1sGrid[q[3] | ((qh >> 1) & 0x700)]);
        acc = scaled_dot<I>(acc, _mm256_add_epi8(g, one), load32(a.qs + 32 * i), _mm256_set1_epi16(static_cast<int16_t>(8 * s)));
    }
    acc = _mm256_add_epi32(acc, bsum_terms(a, off));
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * (fp16_to_f32(b.d) * 0.125f)), facc);
}

template <Isa I>
inline void block_dot(const BlockIq1M& b, const BlockQ8K& a, __m256& facc) {
    // As the scalar form: (d/8) * (2 sc + 1) * q with q = 8 g +- 1 (the delta sign changes
    // every 8 weights). Here u = q + 9 = 8 (g + 1) + (1 +- 1) in [0, 18]; the +9 comes back
    // through the group sums.
    alignas(32) int16_t sc[16], off[16];
    for (int g = 0; g < 16; ++g) {
        sc[g] = static_cast<int16_t>(2 * iq1m_sub_scale(b, g) + 1);
        off[g] = static_cast<int16_t>(-9 * sc[g]);
    }
    __m256i acc = bsum_terms(a, off);
    for (int i = 0; i < 8; ++i) {
        // Grid entries 4i .. 4i+3; entry k takes nibble k % 2 of qh[k / 2]: 3 index bits and
        // the delta sign (bit 3).
        const uint32_t nibs = b.qh[2 * i] | (uint32_t{b.qh[2 * i + 1]} << 8);  // 4 nibbles
        const uint8_t* q = b.qs + 4 * i;
        const __m256i g = grid_chunk(kIq1sGrid[q[0] | ((nibs << 8) & 0x700)], kIq1sGrid[q[1] | ((nibs << 4) & 0x700)],
                                     kIq1sGrid[q[2] | (nibs & 0x700)], kIq1sGrid[q[3] | ((nibs >> 4) & 0x700)]);
        constexpr uint64_t kTwos = 0x0202020202020202ull;  // 1 + delta for delta = +1
        const __m256i delta = grid_chunk((nibs & 0x0008) ? 0 : kTwos, (nibs & 0x0080) ? 0 : kTwos,
                                         (nibs & 0x0800) ? 0 : kTwos, (nibs & 0x8000) ? 0 : kTwos);
        // 8 (g + 1) stays inside each byte (<= 16), so a 16-bit shift is safe.
        const __m256i u = _mm256_add_epi8(_mm256_slli_epi16(_mm256_add_epi8(g, _mm256_set1_epi8(1)), 3), delta);
        acc = scaled_dot<I>(acc, u, load32(a.qs + 32 * i), scale_pair(sc[2 * i], sc[2 * i + 1]));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc),
                           _mm256_set1_ps(a.d * (fp16_to_f32(iq1m_scale_bits(b)) * 0.125f)), facc);
}

template <Isa I>
inline void block_dot(const BlockIq3Xxs& b, const BlockQ8K& a, __m256& facc) {
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < 8; ++i) {
        const uint32_t aux = load_u32(b.qs + 64 + 4 * i);  // after the 64 grid indices
        const uint8_t* q = b.qs + 8 * i;
        const __m256i u = _mm256_setr_epi32(
            static_cast<int>(kIq3xxsGrid[q[0]]), static_cast<int>(kIq3xxsGrid[q[1]]), static_cast<int>(kIq3xxsGrid[q[2]]),
            static_cast<int>(kIq3xxsGrid[q[3]]), static_cast<int>(kIq3xxsGrid[q[4]]), static_cast<int>(kIq3xxsGrid[q[5]]),
            static_cast<int>(kIq3xxsGrid[q[6]]), static_cast<int>(kIq3xxsGrid[q[7]]));
        const __m256i signs = grid_chunk(kKsignsMul[aux & 0x7F], kKsignsMul[(aux >> 7) & 0x7F],
                                         kKsignsMul[(aux >> 14) & 0x7F], kKsignsMul[(aux >> 21) & 0x7F]);
        const __m256i qa = _mm256_sign_epi8(load32(a.qs + 32 * i), signs);
        acc = scaled_dot<I>(acc, u, qa, _mm256_set1_epi16(static_cast<int16_t>(2 * (aux >> 28) + 1)));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * (fp16_to_f32(b.d) * 0.25f)), facc);
}

template <Isa I, typename Block>
float dot_k_row(const void* w, const void* a, int64_t n) {  // w: [n/256] Block, a: [n/256] Q8_K
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8K*>(a);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) block_dot<I>(wb[i], ab[i], facc);
    return hsum(facc);
}

// Q8_0 . Q8_0: signed weights, so |w| goes in the unsigned operand and w's sign onto qa.
template <Isa I>
float dot_q8_0_row(const void* w, const void* a, int64_t n) {  // w, a: [n/32] Q8_0
    const auto* wb = static_cast<const BlockQ8_0*>(w);
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQ32; ++i) {
        const __m256i q = load32(wb[i].qs);
        const __m256i dot = dot_u8<I>(_mm256_abs_epi8(q), _mm256_sign_epi8(load32(ab[i].qs), q));
        const float d = fp16_to_f32(wb[i].d) * fp16_to_f32(ab[i].d);
        facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d), facc);
    }
    return hsum(facc);
}

// The 32 signed 4-bit (Q4_0) or 5-bit (Q5_0) values of a block as [32] int8: the low nibbles
// of qs are elements 0..15, the high nibbles 16..31; Q5_0's qh bit j is element j's fifth bit.
inline __m256i unpack_nibbles(const uint8_t* qs) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0x0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f));
    return _mm256_setr_m128i(lo, hi);
}

inline __m256i fifth_bits(const uint8_t* qh) {  // byte j = 0x10 when bit j of the u32 is set
    uint32_t bits;
    std::memcpy(&bits, qh, 4);
    // Byte j takes byte j/8 of the word, then keeps bit j%8.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                               _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

template <Isa I, typename Block>
float dot_q4_5_0_row(const void* w, const void* a, int64_t n) {  // w: [n/32] Q4_0 or Q5_0, a: [n/32] Q8_0
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQ32; ++i) {
        __m256i q = unpack_nibbles(wb[i].qs);
        if constexpr (std::is_same_v<Block, BlockQ5_0>) {
            q = _mm256_sub_epi8(_mm256_or_si256(q, fifth_bits(wb[i].qh)), _mm256_set1_epi8(16));
        } else {
            q = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
        }
        const __m256i dot = dot_u8<I>(_mm256_abs_epi8(q), _mm256_sign_epi8(load32(ab[i].qs), q));
        const float d = fp16_to_f32(wb[i].d) * fp16_to_f32(ab[i].d);
        facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d), facc);
    }
    return hsum(facc);
}

template <Isa I>
VecDotFn simd_kernel(GgmlType type) {
    using T = GgmlType;
    switch (type) {
        case T::Q8_0: return dot_q8_0_row<I>;
        case T::Q4_0: return dot_q4_5_0_row<I, BlockQ4_0>;
        case T::Q5_0: return dot_q4_5_0_row<I, BlockQ5_0>;
        case T::Q2_K: return dot_k_row<I, BlockQ2K>;
        case T::Q3_K: return dot_k_row<I, BlockQ3K>;
        case T::Q4_K: return dot_k_row<I, BlockQ4K>;
        case T::Q5_K: return dot_k_row<I, BlockQ5K>;
        case T::Q6_K: return dot_k_row<I, BlockQ6K>;
        case T::IQ2_XXS: return dot_k_row<I, BlockIq2Xxs>;
        case T::IQ3_XXS: return dot_k_row<I, BlockIq3Xxs>;
        case T::IQ1_S: return dot_k_row<I, BlockIq1S>;
        case T::IQ1_M: return dot_k_row<I, BlockIq1M>;
        default: return nullptr;
    }
}

}  // namespace
}  // namespace tandem::quant
