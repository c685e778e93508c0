"""The tokenizer on a real model's vocabulary: tandem's ids for the Qwen2.5-Coder-0.5B GGUF
(the model scripts/demo.sh runs) against Hugging Face's.

The reference is independent of tandem: transformers' GGUF tokenizer converter
(transformers.integrations.gguf.gguf_tokenizer_mapping, the code behind
AutoTokenizer.from_pretrained(dir, gguf_file=...)) builds a `tokenizers` tokenizer from the
file's tokens, merges and pre-tokenizer name. transformers' own GGUF metadata reader needs
torch, so the metadata is read here with the `gguf` package, as that reader does.

The model is fetched by scripts/fetch_model.sh; without it the test is skipped, unless
TANDEM_REQUIRE_MODEL=1 (CI) makes that a failure.
"""
import json
import os

import pytest

from text_reference import QWEN_MODEL, ROOT

TEXTS = [
    "Hello world",
    " leading space, trailing space ",
    "What is 12 * 7? Answer briefly.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\tprint(fib(30))",
    "Numbers: 1234567890, 3.14159, -42, 1e-10, 0x1F, 2024-11-21",
    "Ünïcödé àccénts, ß, Æsir, naïve café, Ελληνικά, русский текст",
    "中文分词测试：你好，世界！日本語のテキスト。한국어 문장.",
    "emoji 🤖🚀👍🏽 and flags 🇫🇷 and zwj 👨‍👩‍👧",
    "    indented\n\n\n\nmany newlines\r\nwindows line\r\n   \t  mixed   whitespace   ",
    "It's they're we'll I'd YOU'RE don't CAN'T",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|> text after a special token",
    "a" * 300 + " " + "ab" * 150,
    "https://example.com/path?query=1&b=2#frag user@example.org",
    "{\"json\": [1, 2, {\"nested\": true}], \"s\": \"\\u00e9\"}",
    "   ",
    "",
]


def reference_tokenizer(path):
    gguf = pytest.importorskip("gguf")
    mapping = pytest.importorskip("transformers.integrations.gguf.gguf_tokenizer_mapping")
    reader = gguf.GGUFReader(str(path))
    md = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.") or k == "general.architecture"}
    tokenizer = {name: md[f"tokenizer.{key}"] for key, name in mapping.GGUF_TOKENIZER_MAPPING["tokenizer"].items()
                 if f"tokenizer.{key}" in md}
    backend, _ = mapping.convert_gguf_tokenizer(md["general.architecture"], tokenizer)
    return backend, bool(md.get("tokenizer.ggml.add_bos_token", False))


@pytest.fixture(scope="module")
def qwen():
    if not QWEN_MODEL.exists():
        if os.environ.get("TANDEM_REQUIRE_MODEL"):
            pytest.fail(f"{QWEN_MODEL} missing: run scripts/fetch_model.sh")
        pytest.skip(f"{QWEN_MODEL} not fetched (scripts/fetch_model.sh)")
    return QWEN_MODEL


@pytest.fixture(scope="module")
def reference(qwen):
    return reference_tokenizer(qwen)


def test_varied_texts_match_hugging_face(tandem, qwen, reference, tmp_path):
    ref, add_bos = reference
    assert not add_bos  # Qwen2.5 adds no BOS; neither side may add one
    mismatches = []
    for i, text in enumerate(TEXTS):
        f = tmp_path / f"t{i}.txt"
        f.write_bytes(text.encode("utf-8"))
        got = json.loads(tandem("tokenize", "-m", qwen, "-f", f).stdout)
        want = ref.encode(text, add_special_tokens=False).ids
        if got != want:
            mismatches.append((text[:60], got[:20], want[:20]))
    assert not mismatches, mismatches


def test_whole_perplexity_text_matches_hugging_face(tandem, qwen, reference):
    """30k tokens of English prose (data/web-luke.txt), the text perplexity is measured on."""
    path = ROOT / "data" / "web-luke.txt"
    ref, _ = reference
    got = json.loads(tandem("tokenize", "-m", qwen, "-f", path).stdout)
    want = ref.encode(path.read_text(encoding="utf-8"), add_special_tokens=False).ids
    assert len(got) > 25000
    assert got == want
