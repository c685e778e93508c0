// Instruction-set selection and the one table that binds a type to its dot-product kernel.
#include "quant/vec_dot.h"

#include <cstdlib>
#include <string>

#include "core/check.h"
#include "quant/vec_dot_impl.h"

namespace tandem::quant {

std::string_view isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return "scalar";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512Vnni: return "avx512vnni";
    }
    return "?";
}

Isa detect_isa() {
    // libgcc's CPUID reader also checks XCR0, i.e. that the OS saves the wide registers.
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("bmi2"))
        fail("this CPU lacks AVX2/FMA/BMI2; tandem is built for x86-64 with AVX2 (Haswell, Zen 1 or newer)");
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        return Isa::Avx512Vnni;
    return Isa::Avx2;
}

namespace {
Isa detected_isa() {
    static const Isa isa = detect_isa();
    return isa;
}
}  // namespace

Isa active_isa() {
    static const Isa isa = [] {
        Isa best = detected_isa();
        if (const char* env = std::getenv("TANDEM_ISA")) {
            const std::string want = env;
            Isa asked;
            if (want == "scalar") asked = Isa::Scalar;
            else if (want == "avx2") asked = Isa::Avx2;
            else if (want == "avx512vnni") asked = Isa::Avx512Vnni;
            else fail("TANDEM_ISA: expected scalar, avx2 or avx512vnni, found '{}'", want);
            if (static_cast<int>(asked) > static_cast<int>(best))
                fail("TANDEM_ISA={} but this CPU supports at most {}", want, isa_name(best));
            best = asked;
        }
        return best;
    }();
    return isa;
}

bool vbmi_kernels() {
    static const bool on = [] {
        __builtin_cpu_init();
        const bool has = __builtin_cpu_supports("avx512vbmi") && detected_isa() == Isa::Avx512Vnni;
        if (const char* env = std::getenv("TANDEM_VBMI")) {
            const std::string want = env;
            if (want != "0" && want != "1") fail("TANDEM_VBMI: expected 0 or 1, found '{}'", want);
            if (want == "1" && !has) fail("TANDEM_VBMI=1 but this CPU has no AVX-512 VBMI");
            return want == "1";
        }
        return has;
    }();
    return on;
}

bool inline_block_factors() {
    static const bool inline_factors = [] {
        if (const char* env = std::getenv("TANDEM_BLOCK_FACTORS")) {
            const std::string want = env;
            if (want != "inline" && want != "chunked") fail("TANDEM_BLOCK_FACTORS: expected inline or chunked, found '{}'", want);
            return want == "inline";
        }
        __builtin_cpu_init();
        return __builtin_cpu_is("amd") != 0;
    }();
    return inline_factors;
}

GgmlType vec_dot_type(GgmlType type) {
    const GgmlTypeTraits& t = ggml_traits(type);
    if (!t.quantized) return GgmlType::F32;
    if (type == GgmlType::IQ1_S_U2 || type == GgmlType::IQ2_XXS_U3) return GgmlType::Q8_K_U2;
    if (type == GgmlType::IQ1_M_U2 || type == GgmlType::Q2_K_U16 || type == GgmlType::Q3_K_U16) return GgmlType::Q8_K_U16;
    return t.block_size == 256 ? GgmlType::Q8_K : GgmlType::Q8_0;
}

bool can_vec_dot(GgmlType type) { return scalar_kernel(type) != nullptr; }

bool has_simd_kernel(GgmlType type, Isa isa) {
    switch (isa) {
        case Isa::Scalar: return false;
        case Isa::Avx2: return avx2_kernel(type) != nullptr;
        case Isa::Avx512Vnni: return avx512vnni_kernel(type) != nullptr;
    }
    return false;
}

VecDotFn vec_dot_fn(GgmlType type, Isa isa) {
    const VecDotFn scalar = scalar_kernel(type);
    if (!scalar) fail("vec_dot: no dot product for type {}", ggml_type_name(type));
    if (static_cast<int>(isa) > static_cast<int>(detected_isa()))
        fail("vec_dot: this CPU cannot run {} kernels", isa_name(isa));
    VecDotFn simd = nullptr;
    if (isa == Isa::Avx2) simd = avx2_kernel(type);
    if (isa == Isa::Avx512Vnni && vbmi_kernels()) simd = avx512vbmi_kernel(type);
    if (isa == Isa::Avx512Vnni && !simd) simd = avx512vnni_kernel(type);
    return simd ? simd : scalar;
}

VecDotFn vec_dot_fn(GgmlType type) { return vec_dot_fn(type, active_isa()); }

VecDotRowsFn vec_dot_rows_fn(GgmlType type, Isa isa) {
    if (static_cast<int>(isa) > static_cast<int>(detected_isa()))
        fail("vec_dot: this CPU cannot run {} kernels", isa_name(isa));
    if (isa == Isa::Avx2) return avx2_rows_kernel(type);
    if (isa != Isa::Avx512Vnni) return nullptr;
    const VecDotRowsFn vbmi = vbmi_kernels() ? avx512vbmi_rows_kernel(type) : nullptr;
    return vbmi ? vbmi : avx512vnni_rows_kernel(type);
}

VecDotRowsFn vec_dot_rows_fn(GgmlType type) { return vec_dot_rows_fn(type, active_isa()); }

VecDotBlockFn vec_dot_block_fn(GgmlType type, Isa isa) {
    if (static_cast<int>(isa) > static_cast<int>(detected_isa()))
        fail("vec_dot: this CPU cannot run {} kernels", isa_name(isa));
    return isa == Isa::Avx512Vnni ? avx512vnni_block_kernel(type) : nullptr;
}

VecDotBlockFn vec_dot_block_fn(GgmlType type) { return vec_dot_block_fn(type, active_isa()); }

}  // namespace tandem::quant
