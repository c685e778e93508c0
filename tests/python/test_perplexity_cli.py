"""`tandem perplexity` against an independent computation: the same windows' logits from
`tandem run --prompt-tokens ... --logits-out`, tokens from Hugging Face `tokenizers`, and
llama.cpp's method (BOS replacing each window's first token, second half scored, mean and
standard error of the negative log-likelihood) written out in numpy."""
import re

import numpy as np
import pytest

from text_reference import ROOT, TOKENIZER, V3_BOS, hf_tokenizer

TEXT = ROOT / "data" / "web-luke.txt"
N_CTX, N_CHUNKS = 48, 3


@pytest.fixture(scope="module")
def vocab_model(tmp_path_factory, tandem):
    """A tiny deepseek2 model carrying the real DeepSeek-V3 vocabulary (adds BOS)."""
    path = tmp_path_factory.mktemp("ppl") / "tiny-vocab.gguf"
    tandem("synth", "--preset", "tiny", "--recipe", "q8_0", "--vocab", TOKENIZER, "-o", path)
    return path


def parse(stdout):
    running = [float(v) for v in re.findall(r"\[\d+\]([\d.]+),", stdout)]
    m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", stdout)
    assert m, stdout
    return running, float(m.group(1)), float(m.group(2))


def reference(tandem, model, tmp_path, text):
    # DeepSeek-V3 adds BOS (tokenizer_config.json add_bos_token; tokenizer.ggml.add_bos_token in
    # the GGUF): llama.cpp tokenizes the whole text with BOS in front.
    tok = hf_tokenizer()
    bos = tok.token_to_id(V3_BOS)
    tokens = [bos] + tok.encode(text, add_special_tokens=False).ids
    nlls, running = [], []
    for i in range(N_CHUNKS):
        window = tokens[i * N_CTX:(i + 1) * N_CTX]
        window_in = [bos] + window[1:]
        out = tmp_path / f"w{i}.npy"
        tandem("run", "-m", model, "--prompt-tokens", ",".join(map(str, window_in)), "-n", "0", "--logits-out", out,
               "--mla", "absorbed")
        logits = np.load(out).astype(np.float64)
        first = N_CTX // 2
        for j in range(first, N_CTX - 1):
            row = logits[j]
            m = row.max()
            nlls.append(-(row[window[j + 1]] - m - np.log(np.exp(row - m).sum())))
        running.append(np.exp(np.mean(nlls)))
    nll = np.array(nlls)
    ppl = np.exp(nll.mean())
    return running, ppl, ppl * np.sqrt(nll.var() / (len(nll) - 1)), len(tokens)


def test_perplexity_matches_numpy_over_run_logits(tandem, vocab_model, tmp_path, monkeypatch):
    # The per-token path on both sides (TANDEM_GEMM=off): with bf16 products and attention the
    # 20-token chunks here and run's whole windows round differently (measured 5e-4 of the
    # perplexity between --batch 1, 8, 20 and 48 on the vector units), and this checks the loop.
    monkeypatch.setenv("TANDEM_GEMM", "off")
    text = TEXT.read_text(encoding="utf-8")[:4000]
    f = tmp_path / "text.txt"
    f.write_text(text, encoding="utf-8")
    # One attention form for both sides (by default the first 20-token chunk of a window and the
    # whole window would decompress and later chunks not: 8-bit rounding apart at ~1e-2; each form
    # is checked against transformers in test_reference_logits.py). Here: the perplexity loop.
    proc = tandem("perplexity", "-m", vocab_model, "-f", f, "--ctx", N_CTX, "--chunks", N_CHUNKS, "--batch", 20, "-t", 2,
                  "--mla", "absorbed")
    running, ppl, err = parse(proc.stdout)
    ref_running, ref_ppl, ref_err, n_tokens = reference(tandem, vocab_model, tmp_path, text)
    assert f"perplexity: {n_tokens} tokens" in proc.stderr
    assert f"{N_CHUNKS} chunks of {N_CTX} tokens, scoring the last {N_CTX - 1 - N_CTX // 2}" in proc.stderr
    np.testing.assert_allclose(running, ref_running, rtol=2e-4)
    np.testing.assert_allclose(ppl, ref_ppl, rtol=2e-4)
    np.testing.assert_allclose(err, ref_err, rtol=2e-3)
    assert re.search(r"seconds per pass - ETA", proc.stderr)
    assert re.search(r"perplexity: prefill \d+ tokens in [\d.]+ s .* peak RSS", proc.stderr.strip().splitlines()[-1])


def test_batch_size_does_not_change_the_result(tandem, vocab_model, tmp_path, monkeypatch):
    # NOTES: on the per-token path (TANDEM_GEMM=off) the batch split cannot change a token's
    # arithmetic; on a CPU with AMX or AVX512-BF16, batches (and experts) of 4 (AMX) or 8
    # tokens and more take the bf16 path (src/cpu/gemm.h), which agrees only to bf16 rounding.
    # Likewise the attention form (--mla auto decompresses batches that start a window and not
    # later ones; the forms round activations to 8 bits differently), so one form is fixed here.
    monkeypatch.setenv("TANDEM_GEMM", "off")
    f = tmp_path / "text.txt"
    f.write_text(TEXT.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    results = [parse(tandem("perplexity", "-m", vocab_model, "-f", f, "--ctx", 32, "--chunks", 2, "--batch", b,
                            "-t", 2, "--mla", "absorbed").stdout) for b in (8, 16, 512)]
    for r in results[1:]:
        np.testing.assert_allclose(r[1], results[0][1], rtol=1e-5)


def test_chunks_default_to_all_that_fit(tandem, vocab_model, tmp_path):
    text = TEXT.read_text(encoding="utf-8")[:1500]
    f = tmp_path / "text.txt"
    f.write_text(text, encoding="utf-8")
    n_tokens = 1 + len(hf_tokenizer().encode(text, add_special_tokens=False).ids)
    running, _, _ = parse(tandem("perplexity", "-m", vocab_model, "-f", f, "--ctx", 64, "-t", 2).stdout)
    assert len(running) == n_tokens // 64


@pytest.mark.parametrize("args,message", [
    (["--ctx", "4096"], "needs at least 8192 (two windows)"),
    (["--ctx", "2"], "--ctx must be at least 4"),
    (["--chunks", "0"], "--chunks must be positive"),
])
def test_bad_input_is_a_clear_error(tandem, vocab_model, tmp_path, args, message):
    f = tmp_path / "short.txt"
    f.write_text("Only a few words here. " * 20, encoding="utf-8")
    proc = tandem("perplexity", "-m", vocab_model, "-f", f, *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
