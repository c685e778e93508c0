#include "cpu/gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/check.h"
#include "cpu/bf16_block.h"
#include "cpu/gemm_i8.h"
#include "cpu/matmul.h"
#include "cpu/phases.h"
#include "cpu/tiles.h"
#include "cpu/transpose.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace tandem::cpu {

namespace {

// The CPU's side of each unit: CPUID bits and the OS saving the state (XCR0).
struct UnitSupport {
    bool avx512 = false;  // AVX512 F, BW, VL, DQ, VNNI and BF16 (what quant::dequantize_row_bf16 runs on)
    bool amx = false;     // and AMX-TILE, AMX-BF16 with the tile data state granted
    bool amx_int8 = false;  // and AMX-INT8
};

UnitSupport detect_units() {
    UnitSupport u;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return u;  // OSXSAVE
    const bool fma = c & (1u << 12), f16c = c & (1u << 29);
    uint32_t xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    const uint64_t xcr0 = xcr0_lo | (uint64_t{xcr0_hi} << 32);
    if ((xcr0 & 0xe6) != 0xe6) return u;  // SSE, AVX and the three AVX-512 states
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return u;
    const unsigned max_subleaf = a;
    const bool avx2 = b & (1u << 5);
    const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17);
    const bool avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
    const bool vnni = c & (1u << 11);
    const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
    unsigned a1, b1, c1, d1;
    if (max_subleaf < 1 || !__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) return u;
    const bool avx512_bf16 = a1 & (1u << 5);
    u.avx512 = fma && f16c && avx2 && avx512f && avx512dq && avx512bw && avx512vl && vnni && avx512_bf16;
    if (!u.avx512 || !amx_bf16 || !amx_tile || (xcr0 & 0x60000) != 0x60000) return u;
    // Linux hands out the 8 KiB tile data state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    u.amx = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    u.amx_int8 = u.amx && amx_int8;
    return u;
}

// The bf16 unit, and whether int8 products may run at all, chosen once.
struct UnitChoice {
    GemmUnit unit = GemmUnit::none;
    bool int8 = true;
    bool amx_int8 = false;  // the tile unit multiplies bytes too (AMX-INT8)
};

UnitChoice pick_units() {
    const UnitSupport u = detect_units();
    UnitChoice c;
    c.unit = u.amx ? GemmUnit::amx : u.avx512 ? GemmUnit::avx512 : GemmUnit::none;
    c.amx_int8 = u.amx_int8;
    if (std::getenv("TANDEM_AMX")) fail("TANDEM_AMX is no longer read: TANDEM_GEMM=off turns the bf16 products off");
    const char* env = std::getenv("TANDEM_GEMM");
    const std::string_view cap = env ? env : "";
    if (!cap.empty() && cap != "off" && cap != "avx512" && cap != "int8" && cap != "amx-emulated")
        fail("TANDEM_GEMM={}: expected off (per-token products only), avx512 (no tile unit), int8 (no bf16 unit: "
             "the int8 products alone) or amx-emulated (the tile unit's products in C++, for tests)", cap);
    if (cap == "amx-emulated") {
        // The vector code around the tile operations is the tile unit's: AVX-512 with BF16 and VNNI.
        if (!u.avx512) fail("TANDEM_GEMM=amx-emulated needs AVX-512 with BF16 and VNNI, which this CPU lacks");
        c.unit = GemmUnit::amx;
        c.amx_int8 = true;
        tile::g_emulated = true;  // also on a CPU with a tile unit: the emulation is what is asked for
    }
    if (cap == "off" || cap == "int8") c.unit = GemmUnit::none;
    if (cap == "avx512" && c.unit == GemmUnit::amx) c.unit = GemmUnit::avx512;
    c.int8 = cap != "off";
    return c;
}

const UnitChoice& units() {
    static const UnitChoice choice = pick_units();
    return choice;
}

// The AMX tile configuration (palette 1): every tile used here is 16 rows of 64 bytes.
struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

constexpr TileConfig make_tile_config() {
    TileConfig cfg;
    for (int i = 0; i < 8; ++i) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    return cfg;
}
// NOTES: a static object, not a local: GCC 12 does not see that ldtilecfg reads its operand
// and drops the stores that fill a local config (the instruction then faults on garbage).
constexpr TileConfig kTileConfig = make_tile_config();

}  // namespace

GemmUnit gemm_unit() { return units().unit; }

I8Unit i8_unit() {
    if (!units().int8) return I8Unit::none;
    switch (quant::active_isa()) {
        // The tile unit's int8 products end on the AVX-512 vector units (their epilogue).
        case quant::Isa::Avx512Vnni:
            if (units().unit == GemmUnit::amx) return amx_int8_available() ? I8Unit::amx : I8Unit::none;
            return I8Unit::avx512;
        // With a bf16 unit (TANDEM_ISA=avx2 on an AVX-512 CPU) its products stay as they were.
        case quant::Isa::Avx2: return units().unit == GemmUnit::none ? I8Unit::avx2 : I8Unit::none;
        case quant::Isa::Scalar: break;
    }
    return I8Unit::none;
}

const char* matrix_units_name() {
    if (gemm_unit() != GemmUnit::none) return gemm_unit_name(gemm_unit());
    switch (i8_unit()) {
        case I8Unit::avx512: return "AVX512-INT8";
        case I8Unit::avx2: return "AVX2-INT8";
        default: return "none";
    }
}

const char* gemm_unit_name(GemmUnit unit) {
    switch (unit) {
        case GemmUnit::amx: return tile::g_emulated ? "AMX (emulated)" : "AMX";
        case GemmUnit::avx512: return "AVX512-BF16";
        case GemmUnit::none: break;
    }
    return "none";
}

bool amx_available() { return gemm_unit() == GemmUnit::amx; }

bool amx_int8_available() { return amx_available() && units().amx_int8; }

__attribute__((target("amx-tile"))) void amx_configure_tiles() {
    if (!tile::g_emulated) _tile_loadconfig(&kTileConfig);
}

bool gemm_supports(GgmlType type, int64_t n_in) {
    // F32 and F16 weights keep their precision (bf16 would drop 16 and 3 mantissa bits):
    // whoever ships them asked for it.
    if (type == GgmlType::F32 || type == GgmlType::F16) return false;
    return n_in % 32 == 0 && n_in > 0 && quant::can_dequantize(type) && gemm_unit() != GemmUnit::none;
}

int64_t gemm_min_tokens(GgmlType type) { return i8_gemm_supports(type) ? i8_min_tokens(type) : bf16_min_tokens(type); }

int64_t bf16_min_tokens(GgmlType type) {
    if (gemm_unit() == GemmUnit::amx) return 4;
    // (The AVX2 rows kernels beside a bf16 unit: only under TANDEM_ISA=avx2 on an AVX-512 CPU,
    // unmeasured: the per-token path's 8.)
    if (!quant::vec_dot_rows_fn(type) || quant::active_isa() != quant::Isa::Avx512Vnni) return 8;
    // Where the rows kernel's rate (flat in the token count) meets bf16's (rising with it):
    // bench_cpu rows/FMT/gate/tokN against panel/FMT/tokN on one Zen 4 thread (gemm.h). Q2_K,
    // Q3_K and Q5_K take Q4_K's, unmeasured.
    switch (type) {
        case GgmlType::IQ1_S_U2: return 24;
        case GgmlType::Q6_K: return 48;  // between 32 (rows 67 GMAC/s, bf16 50) and 64 (68, 70)
        // rows/Q8_0/gate/tok8 2897 us against panel/Q8_0/tok16 3536 (the same up to 16 tokens):
        // they meet near 10 tokens; 8, as before these formats had rows kernels, keeps a prompt's
        // path (bf16 activations, or Q8_0 per token) where it was.
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
        case GgmlType::Q5_0:
        case GgmlType::IQ4_NL:
        case GgmlType::Q4_1:
        case GgmlType::Q5_1: return 8;
        default: return 16;
    }
}

bool gemm_applies(GgmlType type, int64_t n_in, int64_t n_tok) {
    if (i8_gemm_takes(type, n_in)) return n_tok >= i8_min_tokens(type);
    return bf16_gemm_applies(type, n_in, n_tok);
}

bool bf16_gemm_applies(GgmlType type, int64_t n_in, int64_t n_tok) {
    return n_tok >= bf16_min_tokens(type) && gemm_supports(type, n_in);
}

uint64_t packed_acts_size(int64_t n_tok, int64_t n_in) {
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    return static_cast<uint64_t>(n_groups * n_in * kTokenGroup);
}

void pack_acts(const float* x, int64_t x_stride, const int32_t* rows, int64_t n_tok, int64_t n_in, uint16_t* packed) {
    // Each token's row is rounded to bf16 once, then its value pairs (2r, 2r + 1), one 32-bit
    // word each, go to word [g][r][t % 16] of the packed layout.
    thread_local std::vector<uint16_t> row;
    uint16_t* bf = grow(row, static_cast<uint64_t>(n_in));
    const int64_t n_pairs = n_in / 2;
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    auto* words = reinterpret_cast<uint32_t*>(packed);  // [n_groups][n_pairs][16]
    for (int64_t t = 0; t < n_groups * kTokenGroup; ++t) {
        uint32_t* dst = words + (t / kTokenGroup) * n_pairs * kTokenGroup + t % kTokenGroup;
        if (t >= n_tok) {
            for (int64_t r = 0; r < n_pairs; ++r) dst[r * kTokenGroup] = 0;
            continue;
        }
        quant::dequantize_row_bf16(GgmlType::F32, x + (rows ? rows[t] : t) * x_stride, bf, n_in);
        uint32_t pair;
        for (int64_t r = 0; r < n_pairs; ++r) {
            std::memcpy(&pair, bf + 2 * r, 4);
            dst[r * kTokenGroup] = pair;
        }
    }
}

float* PanelScratch::out_for(int64_t n_tok, int64_t n_rows) {
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    return grow(out, static_cast<uint64_t>(n_groups * kTokenGroup * n_rows));
}

namespace {



// C tiles += K steps [k_begin, k_end) (multiples of 32) of chunk (32 rows x width bf16,
// row-major) times the chunk's value pairs of token groups g and g + 1 (if two). NOTES: tiles
// 0-3 are C (rows 0-15 / 16-31 x group g / g + 1), 4-5 the two 16-row halves of a 32-value K
// step of the chunk, 6-7 the two groups' matching 16 value pairs: per K step 4 tile loads
// (4 KiB, the chunk's from L1) for 4 products of 16 cycles each.
__attribute__((target("amx-tile,amx-bf16"))) void chunk_steps(const uint16_t* chunk, int64_t width, int64_t k_begin,
                                                                int64_t k_end, const uint16_t* b0, const uint16_t* b1,
                                                                bool two) {
    const int64_t a_stride = width * 2;  // bytes between chunk rows
    const uint16_t* chunk_hi = chunk + 16 * width;
    // NOTES: the B tiles (a group's 1 KiB of value pairs per K step) come from L2, and a tile
    // load waits for the products still reading its tile register: the next step's B tiles are
    // prefetched into L1 while this step multiplies.
    const auto prefetch_b = [](const uint16_t* b, int64_t k) { prefetch_bytes(b, static_cast<uint64_t>(k * 32), 1024); };
    if (two) {
        for (int64_t k = k_begin; k < k_end; k += 32) {
            prefetch_b(b0, k + 32);
            prefetch_b(b1, k + 32);
            tile::load<4>(chunk + k, a_stride);
            tile::load<5>(chunk_hi + k, a_stride);
            tile::load<6>(b0 + k * 16, 64);  // value pairs k/2 .. k/2 + 15: 16 tokens x 2 bf16 each
            tile::load<7>(b1 + k * 16, 64);
            tile::dpbf16ps<0, 4, 6>();
            tile::dpbf16ps<1, 5, 6>();
            tile::dpbf16ps<2, 4, 7>();
            tile::dpbf16ps<3, 5, 7>();
        }
    } else {
        for (int64_t k = k_begin; k < k_end; k += 32) {
            prefetch_b(b0, k + 32);
            tile::load<4>(chunk + k, a_stride);
            tile::load<5>(chunk_hi + k, a_stride);
            tile::load<6>(b0 + k * 16, 64);
            tile::dpbf16ps<0, 4, 6>();
            tile::dpbf16ps<1, 5, 6>();
        }
    }
}

__attribute__((target("amx-tile"))) void tiles_zero() {
    tile::zero<0>();
    tile::zero<1>();
    tile::zero<2>();
    tile::zero<3>();
}
__attribute__((target("amx-tile"))) void tiles_load(const float* c, bool two) {  // c: [2 groups][2 halves][256]
    tile::load<0>(c, 64);
    tile::load<1>(c + 256, 64);
    if (two) {
        tile::load<2>(c + 512, 64);
        tile::load<3>(c + 768, 64);
    }
}
__attribute__((target("amx-tile"))) void tiles_store(float* c, bool two) {
    tile::store<0>(c, 64);
    tile::store<1>(c + 256, 64);
    if (two) {
        tile::store<2>(c + 512, 64);
        tile::store<3>(c + 768, 64);
    }
}

// The vector units' products of one unit: c (the C tiles of token groups g and, if kGroups is
// 2, g + 1: [2][32 rows][16 tokens] f32, as the tile path stores them) += the chunk (32 rows x
// width bf16) times the groups' packed value pairs, kRows rows at a time (8 x 2 groups or 16 x
// 1 accumulators, cpu/bf16_block.h).
template <int kRows, int kGroups>
void vector_steps(const uint16_t* chunk, int64_t width, const uint16_t* b0, const uint16_t* b1, float* c, bool accumulate) {
    const uint16_t* b[2] = {b0, b1};
    for (int r0 = 0; r0 < kPanelRows; r0 += kRows)
        bf16_rows_by_pairs<kRows, kGroups>(chunk + r0 * width, width, b, width / 2, c + r0 * 16, 16, 512, accumulate);
}

}  // namespace

void panel_gemm(GgmlType type, const uint8_t* w, uint64_t row_bytes, int64_t n_rows, int64_t n_in, const uint16_t* packed,
                int64_t n_tok, float* out, PanelScratch& ps, int64_t max_chunk) {
    TANDEM_CHECK(n_rows > 0 && n_rows <= kMaxPanels * kPanelRows && n_in % 32 == 0 && max_chunk >= 64);
    const GgmlTypeTraits& tr = ggml_traits(type);
    // Chunks of the widest whole number of blocks, at most kChunk values, that divides the row
    // (else the whole row). NOTES: on the vector units, products of up to 64 tokens take chunks
    // of half that (16 KiB, which leaves room in a 32 KiB L1 for the activations): measured on
    // Zen 4, 2 threads, 16 and 64 tokens, 0-20% faster; at 512 tokens 0-5% slower, so those
    // keep kChunk. The sums run in the same order either way.
    const bool half_chunks = gemm_unit() != GemmUnit::amx && n_tok <= 4 * kTokenGroup;
    int64_t width = n_in;
    for (int64_t w_try = std::min(half_chunks ? max_chunk / 2 : max_chunk, n_in) / 32 * 32; w_try >= 32; w_try -= 32)
        if (n_in % w_try == 0 && w_try % tr.block_size == 0) {
            width = w_try;
            break;
        }
    const uint64_t chunk_bytes = static_cast<uint64_t>(width / tr.block_size) * tr.type_size;
    const int64_t n_panels = (n_rows + kPanelRows - 1) / kPanelRows, n_chunks = n_in / width;
    // Work units in order: (chunk c, panel p) for c, then p, so each chunk of the activations
    // is taken from L2 by all the panels in turn. Two chunk buffers, for the tile unit: while it
    // multiplies unit u, unit u + 1 is unpacked into the other, a few rows after each K step
    // (the tile products run asynchronously to the vector units, so the unpacking hides behind
    // them instead of following them). The vector units unpack a unit, then multiply it.
    const uint64_t chunk_elems = static_cast<uint64_t>(kPanelRows * width);
    uint16_t* chunks = grow(ps.chunk, 2 * chunk_elems);
    const int64_t n_units = n_chunks * n_panels;
    const auto unit_rows = [&](int64_t u) { return std::min(kPanelRows, n_rows - (u % n_panels) * kPanelRows); };
    const auto row_at = [&](int64_t u, int64_t r) {  // row r of unit u's chunk in w
        return w + static_cast<uint64_t>((u % n_panels) * kPanelRows + r) * row_bytes + static_cast<uint64_t>(u / n_panels) * chunk_bytes;
    };
    const auto unpack_rows = [&](int64_t u, int64_t r0, int64_t r1) {  // rows [r0, r1) of unit u's panel
        uint16_t* chunk = chunks + (u % 2) * chunk_elems;
        const int64_t filled = unit_rows(u);
        // The same rows of the next unit, a unit ahead: 32 short pieces of rows row_bytes apart
        // are more streams than the hardware prefetchers follow.
        if (u + 1 < n_units)
            for (int64_t r = r0; r < std::min(r1, unit_rows(u + 1)); ++r) prefetch_bytes(row_at(u + 1, r), chunk_bytes);
        for (int64_t r = r0; r < std::min(r1, filled); ++r)
            quant::dequantize_row_bf16(type, row_at(u, r), chunk + r * width, width);
        if (r1 > filled) std::fill(chunk + std::max(r0, filled) * width, chunk + r1 * width, uint16_t{0});
    };
    const int64_t n_steps = width / 32, rows_per_step = (kPanelRows + n_steps - 1) / n_steps;
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    const int64_t n_pairs = (n_groups + 1) / 2;
    const int64_t group_elems = n_in * kTokenGroup;  // uint16 per packed group
    // [panels][pairs][2 groups][2 halves][256]: C tiles between units.
    float* acc = grow(ps.acc, static_cast<uint64_t>(n_panels * n_pairs * 1024));
    phases::start();
    if (gemm_unit() == GemmUnit::amx) {
        // With one panel and one or two token groups the C tiles stay in the tile unit for the
        // whole row; otherwise each (panel, group pair)'s C tiles are saved to `acc` between units.
        const bool resident = n_panels == 1 && n_groups <= 2;
        amx_configure_tiles();
        if (resident) tiles_zero();
        unpack_rows(0, 0, kPanelRows);
        // Marked per unit and group pair, not per K step (a mark costs about half a step's
        // issue): the first pair's time includes the next unit's unpacking, interleaved.
        phases::mark(phases::kUnpack);
        for (int64_t u = 0; u < n_units; ++u) {
            const uint16_t* chunk = chunks + (u % 2) * chunk_elems;
            const int64_t k0 = (u / n_panels) * width;
            float* acc_p = acc + (u % n_panels) * n_pairs * 1024;
            for (int64_t g = 0; g < n_groups; g += 2) {
                const bool two = g + 1 < n_groups;
                // The first chunk of the row starts from zero tiles (no zeros to load).
                if (!resident) {
                    if (u < n_panels) tiles_zero();
                    else tiles_load(acc_p + g * 512, two);
                }
                const uint16_t* b0 = packed + g * group_elems + k0 * 16;
                for (int64_t s = 0; s < n_steps; ++s) {
                    chunk_steps(chunk, width, 32 * s, 32 * (s + 1), b0, b0 + group_elems, two);
                    if (g == 0 && u + 1 < n_units)
                        unpack_rows(u + 1, s * rows_per_step, std::min(kPanelRows, (s + 1) * rows_per_step));
                }
                if (!resident) tiles_store(acc_p + g * 512, two);
                phases::mark(phases::kTiles);
            }
        }
        if (resident) tiles_store(acc, true);
        tile::release();
    } else {
        TANDEM_CHECK(gemm_unit() == GemmUnit::avx512);
        for (int64_t u = 0; u < n_units; ++u) {
            unpack_rows(u, 0, kPanelRows);
            phases::mark(phases::kUnpack);
            const uint16_t* chunk = chunks + (u % 2) * chunk_elems;
            const int64_t k0 = (u / n_panels) * width;
            float* acc_p = acc + (u % n_panels) * n_pairs * 1024;
            for (int64_t g = 0; g < n_groups; g += 2) {
                const uint16_t* b0 = packed + g * group_elems + k0 * 16;
                // A panel's first chunk starts its sums from zero (no zeros to store and load).
                if (g + 1 < n_groups) vector_steps<8, 2>(chunk, width, b0, b0 + group_elems, acc_p + g * 512, u >= n_panels);
                else vector_steps<16, 1>(chunk, width, b0, nullptr, acc_p + g * 512, u >= n_panels);
            }
            phases::mark(phases::kVector);
        }
    }
    // C tile [16 rows][16 tokens] of panel p, group g, half h -> out[t, 32 p + 16 h + m].
    const int64_t out_stride = n_panels * kPanelRows;
    for (int64_t p = 0; p < n_panels; ++p)
        for (int64_t g = 0; g < n_groups; ++g)  // both halves: 32 rows 16 floats apart
            columns_to_rows(acc + p * n_pairs * 1024 + (g / 2) * 1024 + (g % 2) * 512, 16, kPanelRows / 8,
                            std::min(kTokenGroup, n_tok - g * kTokenGroup), out + g * kTokenGroup * out_stride + p * kPanelRows,
                            out_stride);
    phases::mark(phases::kOutput);
}

void gemm(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
          const float* x, int64_t n_tok, float* y, GemmScratch& scratch) {
    TANDEM_CHECK(gemm_supports(w_type, n_in));
    const uint64_t w_row = quant_row_bytes(w_type, n_in);
    if (row_bytes < w_row) fail("gemm: rows of {} bytes, but {} {} values need {}", row_bytes, n_in, ggml_type_name(w_type),
                                w_row);
    uint16_t* packed = grow(scratch.packed, packed_acts_size(n_tok, n_in));
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    pool.parallel_for(n_groups, [&](int64_t g0, int64_t g1, int) {
        for (int64_t g = g0; g < g1; ++g) {
            const int64_t t0 = g * kTokenGroup, nt = std::min(kTokenGroup, n_tok - t0);
            // A group packed alone is the same as its slice of the whole packing.
            pack_acts(x + t0 * n_in, n_in, nullptr, nt, n_in, packed + static_cast<uint64_t>(g * n_in * kTokenGroup));
        }
    });
    if (scratch.threads.size() < static_cast<size_t>(pool.n_threads())) scratch.threads.resize(static_cast<size_t>(pool.n_threads()));
    const auto* wb = static_cast<const uint8_t*>(w);
    // Work items of up to kMaxPanels panels (sharing each activation chunk from L2), as long as
    // that leaves at least two items per thread.
    const int64_t n_panels = (n_out + kPanelRows - 1) / kPanelRows;
    const int64_t per_item = std::clamp<int64_t>(n_panels / (2 * pool.n_threads()), 1, kMaxPanels);
    const int64_t item_rows = per_item * kPanelRows, n_items = (n_out + item_rows - 1) / item_rows;
    pool.parallel_for(n_items, [&](int64_t i0, int64_t i1, int tid) {
        PanelScratch& ps = scratch.threads[static_cast<size_t>(tid)];
        float* out = ps.out_for(n_tok, item_rows);
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t o0 = i * item_rows, n_rows = std::min(item_rows, n_out - o0);
            const int64_t stride = (n_rows + kPanelRows - 1) / kPanelRows * kPanelRows;  // panel_gemm's out rows
            panel_gemm(w_type, wb + static_cast<uint64_t>(o0) * row_bytes, row_bytes, n_rows, n_in, packed, n_tok, out, ps,
                       scratch.max_chunk);
            for (int64_t t = 0; t < n_tok; ++t) std::copy(out + t * stride, out + t * stride + n_rows, y + t * n_out + o0);
        }
    });
}

void gemm_serial(GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out, const float* x,
                 int64_t n_tok, float* y, int64_t y_stride, GemmScratch& scratch) {
    TANDEM_CHECK(gemm_supports(w_type, n_in));
    uint16_t* packed = grow(scratch.packed, packed_acts_size(n_tok, n_in));
    pack_acts(x, n_in, nullptr, n_tok, n_in, packed);
    if (scratch.threads.empty()) scratch.threads.resize(1);
    PanelScratch& ps = scratch.threads[0];
    float* out = ps.out_for(n_tok);
    const auto* wb = static_cast<const uint8_t*>(w);
    for (int64_t o0 = 0; o0 < n_out; o0 += kPanelRows) {
        const int64_t n_rows = std::min(kPanelRows, n_out - o0);
        panel_gemm(w_type, wb + static_cast<uint64_t>(o0) * row_bytes, row_bytes, n_rows, n_in, packed, n_tok, out, ps);
        for (int64_t t = 0; t < n_tok; ++t) std::copy(out + t * kPanelRows, out + t * kPanelRows + n_rows, y + t * y_stride + o0);
    }
}

}  // namespace tandem::cpu
