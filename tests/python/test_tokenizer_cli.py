"""`tandem tokenize` through the CLI, against Hugging Face `tokenizers` on the DeepSeek-V3 vocab.

The model is a tokenizer-only GGUF made by tools/text_make_vocab_gguf from tokenizer.json; a
second one, written with the `gguf` Python package, checks that tandem reads vocabularies it
did not write itself and names an unsupported pre-tokenizer or tokenizer kind.
"""
import json
import subprocess

import pytest
from conftest import ROOT, binary

TOKENIZER_JSON = ROOT.parent / "shared" / "data" / "tokenizers" / "deepseek-v3" / "tokenizer.json"
BOS = 0

TEXTS = [
    "Hello world",
    "深度求索是一家人工智能公司。日本語のテキスト、한국어 문장",
    "def f(x):\n\treturn x ** 2  # 12345678901234567890\n\n\n",
    "emoji 😀👨‍👩‍👧 and   spaces\t\ttabs",
    "<｜User｜>What is 2+2?<｜Assistant｜><think>\nfour\n</think>4<｜end▁of▁sentence｜>",
]


@pytest.fixture(scope="module")
def hf():
    tokenizers = pytest.importorskip("tokenizers")
    if not TOKENIZER_JSON.exists():
        pytest.fail(f"{TOKENIZER_JSON} is missing")
    return tokenizers.Tokenizer.from_file(str(TOKENIZER_JSON))


@pytest.fixture(scope="module")
def vocab_gguf(tmp_path_factory):
    out = tmp_path_factory.mktemp("vocab") / "deepseek-v3-vocab.gguf"
    subprocess.run([str(binary("text_make_vocab_gguf")), "--tokenizer", str(TOKENIZER_JSON),
                    "--pre", "deepseek-v3", "--vocab-size", "129280", "--out", str(out)], check=True)
    return out


def tokenize(tandem, model, *args):
    return json.loads(tandem("tokenize", "-m", model, *args).stdout)


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_hf_with_bos(tandem, vocab_gguf, hf, text):
    # The vocabulary says add_bos_token (tokenizer_config.json), as transformers does on top
    # of tokenizer.json.
    assert tokenize(tandem, vocab_gguf, text) == [BOS] + hf.encode(text, add_special_tokens=False).ids
    assert tokenize(tandem, vocab_gguf, "--no-bos", text) == hf.encode(text, add_special_tokens=False).ids


def test_pieces_join_to_the_text(tandem, vocab_gguf):
    text = "Streaming 你好 world"
    pieces = tokenize(tandem, vocab_gguf, "--pieces", "--no-bos", text)
    assert all(set(p) >= {"id", "piece"} for p in pieces)
    assert "".join(p["piece"] for p in pieces) == text
    # A piece that is part of a character shows U+FFFD and its raw bytes.
    partial = tokenize(tandem, vocab_gguf, "--pieces", "--no-bos", "😀")
    raw = b"".join(bytes.fromhex(p["bytes"]) if "bytes" in p else p["piece"].encode() for p in partial)
    assert raw == "😀".encode()


def test_file_input_with_invalid_utf8(tandem, vocab_gguf, tmp_path, hf):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"valid \xff\xfe then \xe4\xbd more")
    ids = tokenize(tandem, vocab_gguf, "--no-bos", "-f", path)
    pieces = tokenize(tandem, vocab_gguf, "--no-bos", "--pieces", "-f", path)
    raw = b"".join(bytes.fromhex(p["bytes"]) if "bytes" in p else p["piece"].encode() for p in pieces)
    assert raw == path.read_bytes()
    assert [p["id"] for p in pieces] == ids
    # The valid text before the first bad byte tokenizes as HF does.
    assert ids[:2] == hf.encode("valid ", add_special_tokens=False).ids[:2]


def test_parse_special_can_be_turned_off(tandem, vocab_gguf):
    assert tokenize(tandem, vocab_gguf, "--no-bos", "<｜User｜>") == [128803]
    plain = tokenize(tandem, vocab_gguf, "--no-bos", "--no-parse-special", "<｜User｜>")
    assert len(plain) > 1 and 128803 not in plain


def test_missing_text_is_a_usage_error(tandem, vocab_gguf):
    proc = tandem("tokenize", "-m", vocab_gguf, check=False)
    assert proc.returncode != 0
    assert "TEXT" in proc.stderr


def write_with_gguf_package(path, model="gpt2", pre="deepseek-v3"):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "tokenizer-only")
    # GPT-2 byte-level spelling of the 256 byte tokens.
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = iter(range(256, 256 + 68))
    tokens = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    tokens += ["he", "ll", "hell", "hello", "<|end|>"]
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([1] * 260 + [3])
    w.add_token_merges(["h e", "l l", "he ll", "hell o"])
    w.add_eos_token_id(260)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_reads_a_vocab_written_by_the_gguf_package(tandem, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_with_gguf_package(path)
    assert tokenize(tandem, path, "hello<|end|>h") == [259, 260, ord("h")]


@pytest.mark.parametrize("model,pre,needle", [("gpt2", "made-up-pre", "'made-up-pre'"),
                                              ("llama", "deepseek-v3", "'llama'")])
def test_unsupported_tokenizer_is_named(tandem, tmp_path, model, pre, needle):
    path = tmp_path / "bad.gguf"
    write_with_gguf_package(path, model=model, pre=pre)
    proc = tandem("tokenize", "-m", path, "x", check=False)
    assert proc.returncode == 1
    assert needle in proc.stderr and "tandem: error:" in proc.stderr
