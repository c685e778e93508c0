#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs dependencies, builds (Release, with CUDA when
# nvcc is found), generates the reference vectors from the independent Python references,
# runs the C++ tests and the Python/CLI tests, then the GGUF tests under ASan+UBSan and a
# bounded libFuzzer run over the GGUF parser.
#
#   scripts/test.sh            everything
#   QUICK=1 scripts/test.sh    skip the sanitizer build and the fuzzer
#   FUZZ_SECONDS=N             length of the fuzzing run (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

step() { printf '\n== %s\n' "$*"; }

step "setup"
bash scripts/setup.sh

step "build (release)"
cmake --preset release -DTANDEM_NATIVE=OFF >/dev/null
cmake --build build -j "$JOBS"

step "reference vectors (gguf, tokenizers)"
export TANDEM_BINARY_DIR=$ROOT/build
export TANDEM_REQUIRE_VECTORS=1
python3 tools/quant_gen_grids.py --check
python3 tools/quant_vectors.py --out build/quant_vectors
python3 tools/text_make_vectors.py --out build/text_vectors

step "C++ tests"
ctest --test-dir build --output-on-failure -j "$JOBS" 2>&1 | tee build/ctest.log
ctest_total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' build/ctest.log | tail -1)

step "bf16 products and MLA attention on the vector units (TANDEM_GEMM=avx512; on AMX CPUs the default run took the tile unit)"
TANDEM_GEMM=avx512 ./build/tests/test_cpu --gtest_brief=1 --gtest_filter='Gemm*:DequantBf16*:Moe*:Mla*'
TANDEM_GEMM=avx512 ./build/tests/test_model --gtest_brief=1

step "int8 products without a bf16 unit: AVX-512 VNNI (as Cascade Lake, Ice Lake), then AVX2 (as AMD Zen 2/3, Intel client cores)"
TANDEM_GEMM=int8 ./build/tests/test_cpu --gtest_brief=1 --gtest_filter='Gemm*:Matmul*:Moe*'
TANDEM_GEMM=int8 ./build/tests/test_model --gtest_brief=1
TANDEM_ISA=avx2 TANDEM_GEMM=int8 ./build/tests/test_cpu --gtest_brief=1 --gtest_filter='Gemm*:Matmul*:Moe*'
TANDEM_ISA=avx2 TANDEM_GEMM=int8 ./build/tests/test_model --gtest_brief=1

step "IQ1_S_U2's one-row kernel with each form of its block factors (the CPU's vendor picks one; both give the same bits)"
TANDEM_BLOCK_FACTORS=inline ./build/tests/test_quant --gtest_brief=1 --gtest_filter='*VecDot*:*Repack*'
TANDEM_BLOCK_FACTORS=chunked ./build/tests/test_quant --gtest_brief=1 --gtest_filter='*VecDot*:*Repack*'

step "the AVX-512 kernels without VPERMB (TANDEM_VBMI=0: as Cascade Lake, which has AVX-512 VNNI but not VBMI)"
if grep -qw avx512vbmi /proc/cpuinfo; then
  TANDEM_VBMI=0 ./build/tests/test_quant --gtest_brief=1 --gtest_filter='*VecDot*:*Repack*'
  TANDEM_VBMI=0 ./build/tests/test_cpu --gtest_brief=1 --gtest_filter='Moe*'
else
  echo "skipped: this CPU has no AVX-512 VBMI, so the default run took those kernels"
fi

step "the tile unit's products emulated (TANDEM_GEMM=amx-emulated: the AMX paths' logic, on CPUs without AMX)"
if grep -qw avx512_bf16 /proc/cpuinfo && grep -qw avx512_vnni /proc/cpuinfo; then
  TANDEM_GEMM=amx-emulated ./build/tests/test_cpu --gtest_brief=1 --gtest_filter='Gemm*:Matmul*:Moe*:Mla*'
  TANDEM_I8_TILES=double TANDEM_GEMM=amx-emulated ./build/tests/test_cpu --gtest_brief=1 --gtest_filter='GemmI8*:Moe*'
  TANDEM_GEMM=amx-emulated ./build/tests/test_model --gtest_brief=1
  TANDEM_GEMM=amx-emulated python3 -m pytest -q tests/python/test_reference_logits.py
else
  echo "skipped: the emulation needs AVX512-BF16 and VNNI, which this CPU lacks"
fi

step "forward-pass tests on the per-token path only (TANDEM_GEMM=off: batches bit-equal to single tokens)"
TANDEM_GEMM=off ./build/tests/test_model --gtest_brief=1 2>&1 | tee build/test_model_noamx.log
noamx_passed=$(grep -Eo '\[  PASSED  \] [0-9]+' build/test_model_noamx.log | grep -Eo '[0-9]+$' || echo 0)

step "real model (PyPI, ~470 MiB, kept in models/)"
bash scripts/fetch_model.sh
export TANDEM_REQUIRE_MODEL=1

step "Python and CLI tests"
python3 -m pytest -q tests/python 2>&1 | tee build/pytest.log
py_passed=$(grep -Eo '[0-9]+ passed' build/pytest.log | tail -1 | grep -Eo '[0-9]+' || echo 0)

san_passed=0
if [ -z "${QUICK:-}" ]; then
  step "GGUF and tokenizer tests under ASan+UBSan"
  cmake --preset asan >/dev/null
  cmake --build build-asan -j "$JOBS" --target test_gguf test_text
  ln -sfn "$ROOT/build/text_vectors" build-asan/text_vectors
  for t in test_gguf test_text; do
    TANDEM_BINARY_DIR=$ROOT/build-asan ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ./build-asan/tests/$t --gtest_brief=1 2>&1 | tee build/asan_$t.log
    n=$(grep -Eo '\[  PASSED  \] [0-9]+' build/asan_$t.log | grep -Eo '[0-9]+$' || echo 0)
    san_passed=$((san_passed + n))
  done

  step "libFuzzer over the GGUF parser (${FUZZ_SECONDS} s, ASan+UBSan)"
  cmake --preset fuzz >/dev/null
  cmake --build build-fuzz -j "$JOBS" --target fuzz_gguf
  mkdir -p build-fuzz/corpus
  ./build-fuzz/bin/fuzz_gguf -max_total_time="$FUZZ_SECONDS" -max_len=4096 -print_final_stats=1 \
    build-fuzz/corpus build/gguf_corpus 2>&1 | tail -n 4
fi

step "summary"
echo "ctest: ${ctest_total:-0} tests, per-token path: ${noamx_passed} passed, pytest: ${py_passed} passed, sanitizer run: ${san_passed} passed"
echo "$(( ${ctest_total:-0} + noamx_passed + py_passed + san_passed )) passed, 0 failed"
