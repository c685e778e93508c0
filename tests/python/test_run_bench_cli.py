"""`tandem run` and `tandem bench` as a user sees them: streamed text, the summary line, the
JSON of bench, and clear errors for bad input."""
import json
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT.parent / "shared" / "data" / "tokenizers" / "deepseek-v3" / "tokenizer.json"


@pytest.fixture(scope="module")
def vocab_model(tmp_path_factory, tandem):
    """A tiny deepseek2 model carrying the real DeepSeek-V3 vocabulary and chat template."""
    assert TOKENIZER.exists(), TOKENIZER
    path = tmp_path_factory.mktemp("run") / "tiny-vocab.gguf"
    tandem("synth", "--preset", "tiny", "--recipe", "q8_0", "--vocab", TOKENIZER, "-o", path)
    return path


def test_run_streams_text_and_prints_a_summary(tandem, vocab_model):
    proc = tandem("run", "-m", vocab_model, "-p", "Hello, world", "-n", "12", "--greedy", "--ignore-eos", "-t", "2")
    assert proc.stdout.strip() != ""
    summary = proc.stderr.strip().splitlines()[-1]
    assert re.search(r"prefill \d+ tokens in [\d.]+ s \([\d.]+ tok/s\) \| decode 12 tokens \([\d.]+ tok/s", summary), summary
    assert re.search(r"peak RSS [\d.]+ MiB", summary), summary


def test_run_is_reproducible_with_a_seed(tandem, vocab_model):
    args = ["run", "-m", vocab_model, "-p", "Once upon a time", "-n", "10", "--temp", "0.9", "--top-p", "0.95",
            "--ignore-eos", "-t", "2"]
    a = tandem(*args, "--seed", "42").stdout
    b = tandem(*args, "--seed", "42").stdout
    assert a == b


def test_chat_template_is_applied(tandem, vocab_model, tmp_path):
    out = tmp_path / "l.npy"
    tandem("run", "-m", vocab_model, "-p", "hi", "--chat", "-n", "0", "--logits-out", out)
    # DeepSeek-V3's template: BOS, <｜User｜>hi<｜Assistant｜>: 4+ positions of logits.
    assert np.load(out).shape[0] >= 4


def test_greedy_tokens_out_matches_stdout_ids(tandem, vocab_model, tmp_path):
    out = tmp_path / "t.json"
    tandem("run", "-m", vocab_model, "--prompt-tokens", "0,100,200", "-n", "6", "--greedy", "--tokens-out", out)
    ids = json.loads(out.read_text())
    assert len(ids) <= 6 and all(isinstance(i, int) for i in ids)


@pytest.mark.parametrize("args,message", [
    (["--prompt-tokens", "1,x,3"], "'x' is not a token id"),
    (["--prompt-tokens", "999999999"], "outside the vocabulary"),
    (["-p", "a", "--prompt-tokens", "1"], "exactly one of"),
    (["--prompt-tokens", "1", "-n", "-3"], "-n must be 0 or more"),
    (["--prompt-tokens", "1,2,3", "-n", "10", "--ctx", "8"], "exceeds --ctx 8"),
    (["--prompt-tokens", "1", "--top-p", "7"], "top_p"),
])
def test_run_rejects_bad_input(tandem, vocab_model, args, message):
    proc = tandem("run", "-m", vocab_model, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_bench_json(tandem, vocab_model):
    proc = tandem("bench", "-m", vocab_model, "-p", "16", "-n", "4", "-r", "2", "-t", "2", "--json", "--no-bandwidth")
    j = json.loads(proc.stdout)
    assert j["pp_tps"] > 0 and j["tg_tps"] > 0
    assert len(j["pp_tps_all"]) == 2 and len(j["tg_tps_all"]) == 2
    assert j["bytes_per_token"] > 0 and j["peak_rss_bytes"] > 0
    assert j["matrix_unit"] in ("AMX", "AVX512-BF16", "AVX512-INT8", "AVX2-INT8")


def test_bench_parallel_sequences(tandem, vocab_model):
    # Three sequences, each with its own 10-token prompt (a --batch of 16 splits them across
    # batches) and 3 decoded tokens per step: the rates count all of them.
    j = json.loads(tandem("bench", "-m", vocab_model, "-p", "10", "-n", "3", "-r", "1", "-t", "2", "--batch", "16",
                          "--parallel", "3", "--json", "--no-bandwidth").stdout)
    assert j["n_parallel"] == 3
    assert j["pp_tps"] > 0 and j["tg_tps"] > 0
    assert j["tg_tps_per_seq"] == pytest.approx(j["tg_tps"] / 3)
    out = tandem("bench", "-m", vocab_model, "-p", "10", "-n", "3", "-r", "1", "-t", "2", "--parallel", "3",
                 "--no-bandwidth").stdout
    assert "prefill   3 sequences x 10 tokens:" in out, out
    assert "decode    3 sequences x 3 tokens:" in out and "tok/s per sequence" in out, out
    assert "KV cache" in out and "for 3 sequences x 14 positions" in out, out
    for bad in ("0", "257"):
        proc = tandem("bench", "-m", vocab_model, "--parallel", bad, check=False)
        assert proc.returncode != 0
        assert f"--parallel must be 1 to 256 sequences, found {bad}" in proc.stderr, proc.stderr


def test_bench_names_the_unit_of_batched_products(tandem, vocab_model, monkeypatch):
    # TANDEM_GEMM caps the unit: off leaves every product on the per-token path.
    monkeypatch.setenv("TANDEM_GEMM", "off")
    out = tandem("bench", "-m", vocab_model, "-p", "8", "-n", "1", "-r", "1", "-t", "2", "--no-bandwidth").stdout
    assert "cpu       2 threads, batched products on the per-token path (no AMX or AVX512-BF16)" in out, out
    monkeypatch.setenv("TANDEM_GEMM", "avx512")
    j = json.loads(tandem("bench", "-m", vocab_model, "-p", "8", "-n", "1", "-r", "1", "-t", "2", "--json",
                          "--no-bandwidth").stdout)
    assert j["matrix_unit"] in ("AVX512-BF16", "AVX512-INT8", "AVX2-INT8")
    # int8: no bf16 unit, the int8 products alone; with TANDEM_ISA=avx2 on AVX2 (as on CPUs
    # without AVX-512).
    monkeypatch.setenv("TANDEM_GEMM", "int8")
    monkeypatch.setenv("TANDEM_ISA", "avx2")
    out = tandem("bench", "-m", vocab_model, "-p", "8", "-n", "1", "-r", "1", "-t", "2", "--no-bandwidth").stdout
    assert "cpu       2 threads, batched products on AVX2 in int8 (no AMX or AVX512-BF16)" in out, out
    monkeypatch.delenv("TANDEM_ISA")
    monkeypatch.setenv("TANDEM_GEMM", "amx")
    proc = tandem("bench", "-m", vocab_model, "-p", "8", "-n", "1", "-r", "1", "-t", "2", "--no-bandwidth", check=False)
    assert proc.returncode != 0
    assert ("TANDEM_GEMM=amx: expected off (per-token products only), avx512 (no tile unit), int8 (no bf16 unit: the "
            "int8 products alone) or amx-emulated") in proc.stderr, proc.stderr


def test_bench_says_when_the_tile_unit_is_emulated(tandem, vocab_model, monkeypatch):
    # TANDEM_GEMM=amx-emulated runs the tile unit's products in C++ (cpu/tiles.h) where the CPU
    # has AVX-512 BF16 and VNNI; elsewhere it is an error that says so.
    monkeypatch.setenv("TANDEM_GEMM", "amx-emulated")
    proc = tandem("bench", "-m", vocab_model, "-p", "8", "-n", "1", "-r", "1", "-t", "2", "--no-bandwidth", check=False)
    if proc.returncode != 0:
        assert "TANDEM_GEMM=amx-emulated needs AVX-512 with BF16 and VNNI, which this CPU lacks" in proc.stderr, proc.stderr
        return
    assert "cpu       2 threads, batched products on AMX (emulated)" in proc.stdout, proc.stdout


def test_bench_text_reports_bandwidth(tandem, vocab_model):
    out = tandem("bench", "-m", vocab_model, "-p", "8", "-n", "4", "-r", "1", "-t", "2").stdout
    assert re.search(r"decode reads [\d.]+ MiB per token: [\d.]+ \w+/s = \d+% of the measured", out), out
    assert out.strip().splitlines()[-1].startswith("summary   pp ")
