#!/usr/bin/env python3
"""Reference tokenizations from Hugging Face `tokenizers`, for tandem's tokenizer tests.

Writes OUT_DIR/<name>.json = {"tokenizer_json", "tokenizers_version", "cases": [{"name",
"text", "ids", "round_trip"}]}; tests/text/tokenizer_vectors_test.cpp builds a GGUF vocabulary
from the same tokenizer.json and checks that tandem produces exactly these ids.

Ids are `encode(text, add_special_tokens=False)`: tokenizer.json's post-processor for
DeepSeek-V3 adds nothing (transformers adds the BOS on top), so BOS handling is tested on its
own. `round_trip` says whether HF's decode gives the text back; tandem must round-trip at least
where HF does.

Invalid UTF-8: HF's Python API takes str and its Rust core takes valid UTF-8 only, so raw
invalid bytes have no HF reference. Cases built from invalid bytes are decoded with
errors="replace" (each maximal ill-formed subpart becomes U+FFFD) and compared on that text;
the raw bytes are tested separately in C++ (no crash, exact round trip, byte tokens).

Also writes OUT_DIR/chat_templates.json: chat templates (tools/text_chat_templates.py) rendered
by jinja2 the way transformers' apply_chat_template renders them, for
tests/text/chat_template_test.cpp.

Usage: text_make_vectors.py [--tokenizer PATH] [--name deepseek-v3] --out OUT_DIR
"""
import argparse
import json
import os
import random
import sys
import unicodedata

from tokenizers import Tokenizer
import tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

HAND_WRITTEN = [
    ("empty", ""),
    ("space", " "),
    ("hello", "Hello world"),
    ("english", "The quick brown fox jumps over the lazy dog. It's 5 o'clock, isn't it? "
                "We'll see; they'd've known. I'M SHOUTING, You're Not."),
    ("contractions", "don't DON'T Don't we've WE'VE I'd i'LL she's SHE'S"),
    ("chinese", "深度求索（DeepSeek）是一家专注于人工智能基础技术研究的公司。我们的目标是探索通用人工智能。"),
    ("chinese_punct", "你好，世界！这是一个测试：“引号”、《书名》……（括号）【方括号】"),
    ("japanese", "日本語のテキストです。ひらがな、カタカナ、漢字が混ざっています。ｶﾀｶﾅ半角も。"),
    ("korean", "안녕하세요. 한국어 문장입니다! 대한민국의 수도는 서울입니다."),
    ("mixed_cjk_latin", "DeepSeek-R1模型在2025年1月发布，支持128K上下文。GPT-4oと比較して"),
    ("code_cpp", "int main(int argc, char** argv) {\n    std::vector<int> v{1, 2, 3};\n"
                 "    for (auto& x : v) x *= 2;\n    return v.size() > 2 ? 0 : -1;\n}\n"),
    ("code_python", "def f(x: int) -> list[int]:\n\t\"\"\"Doc.\"\"\"\n\treturn [i ** 2 for i in "
                    "range(x) if i % 3 == 0]  # comment\n\nprint(f(10))\n"),
    ("code_json", '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b\\n"}}'),
    ("code_html", "<div class=\"x\">&nbsp;<a href='https://example.com/?q=1&r=2'>link</a></div>"),
    ("numbers", "0 1 12 123 1234 12345 123456 1234567 3.14159 -42 +7 1e-9 0x1F 1,000,000"),
    ("long_digits", "31415926535897932384626433832795028841971693993751058209749445923078164062"),
    ("digits_mixed", "abc123def4567ghi89012jkl 2024-01-15T12:34:56Z v1.2.3-rc4"),
    ("fullwidth_digits", "１２３４５ ٠١٢٣٤٥٦٧٨٩ ५६७ ⅠⅡⅢ ½ ²³"),
    ("emoji", "I ❤️ tokenizers 🤖🚀✨ 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇺🇳 😀😃😄"),
    ("symbols", "© ® ™ € £ ¥ § ¶ † ‡ • … ‰ ′ ″ ← → ↑ ↓ ∀ ∃ ∅ ∇ ∈ ∉ ∑ ∏ √ ∞ ≈ ≠ ≤ ≥"),
    ("math", "Let $f(x) = \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}$, so α+β≥γ."),
    ("spaces_runs", "a  b   c    d     e      f" + " " * 40 + "g"),
    ("newlines", "line1\nline2\n\nline3\n\n\n\nline4\r\nline5\rline6\n"),
    ("tabs", "\tindent\n\t\tdouble\n \t mixed \t\n\t \t"),
    ("trailing_ws", "text followed by spaces     "),
    ("leading_ws", "     leading spaces"),
    ("only_newlines", "\n\n\n\n\n\n\n\n"),
    ("ws_newline_mix", "  \n  \n\t\n \r\n   x"),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u2009e\u202ff\u205fg\u1680h\u2028i\u2029j\u0085k"),
    ("combining", "e\u0301 n\u0303 a\u0308\u0304 \u0301\u0301\u0301 Z\u0351\u0325\u036b"),
    ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff\x9fg\u200bh\u200di\ufeffj"),
    ("private_use", "\ue000\uf8ff\U000f0000 text"),
    ("rtl", "مرحبا بالعالم. שלום עולם. سلام"),
    ("cyrillic_greek", "Привет, мир! Ελληνικά κείμενα. Україна. Ѳѣ"),
    ("indic_thai", "नमस्ते दुनिया। ภาษาไทย สวัสดี தமிழ் ಕನ್ನಡ"),
    ("special_bos", "<｜begin▁of▁sentence｜>Hello"),
    ("special_chat", "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>What is 2+2?<｜Assistant｜>"
                     "<think>\nSimple.\n</think>\n\n4<｜end▁of▁sentence｜>"),
    ("special_adjacent", "<｜User｜><｜User｜>x<｜Assistant｜><｜end▁of▁sentence｜><｜end▁of▁sentence｜>"),
    ("special_partial", "<｜User| <｜User <｜end▁of▁sentence <|User|> <｜Userx｜>"),
    ("think_tags", "<think>\nLet me think step by step.\n</think>\nThe answer is 42."),
    ("tool_tokens", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
                    "```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
    ("fim_tokens", "<｜fim▁begin｜>def f():\n<｜fim▁hole｜>\n<｜fim▁end｜>"),
    ("punct_runs", "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) ___ +++ === ~~~ ``` '''"),
    ("punct_letter", "-abc .def /ghi :jkl @mno #pqr $stu _vwx ~yz |AB \\CD ^EF"),
    ("url_email", "Visit https://www.deepseek.com/en/docs?ref=abc#section or mail a.b+c@ex-ample.org"),
    ("apostrophes", "rock'n'roll 'quoted' \"double\" ’curly’ ‘single’ «guillemets» „low“"),
    ("repeated_chars", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("repeated_cjk", "哈" * 50),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("mixed_case", "camelCaseIdentifier snake_case_name SCREAMING_CASE kebab-case-name"),
    ("invalid_utf8_replaced", b"ok \xff\xfe bad \xc3\x28 trunc \xe2\x82 end \xed\xa0\x80 \xf4\x90\x80\x80 x\xc3"
                              .decode("utf-8", errors="replace")),
]


def random_texts(rng, n):
    """Random mixtures of scripts, digits, punctuation and whitespace: the corners where two
    regex engines could disagree (category boundaries, look-ahead on whitespace)."""
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r  \u00a0\u3000",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可",
        "あいうえおかきくけこアイウエオカキクケコー",
        "가나다라마바사아자차카타파하",
        "αβγδεζηθικλμνξοπρστυφχψωПРИВЕТмир",
        "éèêëàâäôöûüçñßøåæœ",
        "，。！？：；“”‘’（）【】《》、",
        "😀🚀✨❤️👍🏽🤖",
        "\u0301\u0308\u200d\u200b",
        "१२३٤٥٦①②③",
    ]
    out = []
    for i in range(n):
        length = rng.randint(1, 200)
        parts = []
        while sum(len(p) for p in parts) < length:
            pool = rng.choice(pools)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
        out.append((f"random_{i}", "".join(parts)))
    return out


def random_codepoint_texts(rng, n):
    """Uniformly random assigned code points with spaces, digits and newlines mixed in: every
    Unicode category the regexes test."""
    out = []
    for i in range(n):
        chars = []
        for _ in range(rng.randint(1, 80)):
            r = rng.random()
            if r < 0.15:
                chars.append(rng.choice(" \n\t0123456789"))
            else:
                cp = rng.randint(0x20, 0xFFFF) if r < 0.75 else rng.randint(0x10000, 0x10FFFF)
                # Unassigned in Unicode 14 (Python 3.11's and PCRE2 10.42's tables) but perhaps
                # assigned in the newer tables of tokenizers' Oniguruma: the two engines then
                # classify it differently (seen: U+32090, CJK Extension H in Unicode 15).
                if 0xD800 <= cp <= 0xDFFF or unicodedata.category(chr(cp)) == "Cn":
                    cp = ord("x")
                chars.append(chr(cp))
        out.append((f"random_cp_{i}", "".join(chars)))
    return out


def file_texts():
    """Real text: this repository's own sources and docs (code, comments, markdown)."""
    out = []
    for rel in ["tools/text_make_vectors.py", "src/text/tokenizer.cpp", "src/text/pretokenizer.cpp",
                "CMakeLists.txt", "src/core/check.h"]:
        path = os.path.join(ROOT, rel)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out.append((f"file_{rel}", f.read()))
    return out


# Pre-tokenizer regexes of the other families tandem supports, as in src/text/pretokenizer.cpp
# (\x{...} written out as characters for Oniguruma). Small byte-level BPE vocabularies are
# trained with them by HF `tokenizers`, so that tandem's regex engine (PCRE2) and HF's
# (Oniguruma) are compared on the same patterns, and the converter on the newer merges format
# (pairs instead of "a b" strings).
SMALL_VOCABS = {
    "qwen2": ([r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+"], False),
    "llama-bpe": ([r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                   r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"], True),
    "deepseek-llm": ([
        r"[\r\n]",
        r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}"
        r"\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}"
        r"\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}"
        r"\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}"
        r"\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}"
        r"\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}"
        r"\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}"
        r"\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}"
        r"\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}"
        r"\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}"
        r"\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}"
        r"\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}"
        r"\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}"
        r"\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}"
        r"\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}"
        r"\x{1E900}-\x{1E943}]+",
        r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
        r"\s+$",
        r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
        r"\p{N}+",
    ], False),
}


def train_small_vocab(name, corpus, out_dir):
    import re
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    patterns, ignore_merges = SMALL_VOCABS[name]
    splits = [pre_tokenizers.Split(Regex(re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: chr(int(m.group(1), 16)), p)),
                                   behavior="isolated") for p in patterns]
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(corpus, trainer)
    path = os.path.join(out_dir, f"{name}-tokenizer.json")
    tok.save(path)
    return path


def write_vectors(tok, tokenizer_json, name, pre, cases, out_dir):
    out_cases = []
    for case_name, text in cases:
        ids = tok.encode(text, add_special_tokens=False).ids
        back = tok.decode(ids, skip_special_tokens=False)
        out_cases.append({"name": case_name, "text": text, "ids": ids, "round_trip": back == text})
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"tokenizer_json": os.path.abspath(tokenizer_json), "pre": pre,
                   "tokenizers_version": tokenizers.__version__, "cases": out_cases}, f,
                  ensure_ascii=False)
    n_rt = sum(c["round_trip"] for c in out_cases)
    print(f"{path}: {len(out_cases)} cases, {sum(len(c['ids']) for c in out_cases)} tokens, "
          f"{n_rt} round-trip in HF", file=sys.stderr)


def render_chat_templates(tokenizer_json):
    """Renders each template with jinja2 configured as transformers' apply_chat_template does."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    sys.path.insert(0, HERE)
    import text_chat_templates as ct

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    config = os.path.join(os.path.dirname(tokenizer_json), "tokenizer_config.json")
    out = []
    for name, source in ct.templates(config).items():
        tmpl = env.from_string(source)
        for case_name, ctx in ct.cases(name):
            out.append({"template": name, "source": source, "case": case_name, "context": ctx,
                        "rendered": tmpl.render(**ctx)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "..", "shared", "data", "tokenizers",
                                                        "deepseek-v3", "tokenizer.json"))
    ap.add_argument("--name", default="deepseek-v3")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-random", type=int, default=400)
    args = ap.parse_args()

    tok = Tokenizer.from_file(args.tokenizer)
    rng = random.Random(1234)
    cases = (HAND_WRITTEN + random_texts(rng, args.n_random) +
             random_codepoint_texts(rng, args.n_random) + file_texts())
    # One long text made of everything: exercises long inputs and piece boundaries.
    cases.append(("concatenated", "\n".join(t for _, t in cases)))

    os.makedirs(args.out, exist_ok=True)
    write_vectors(tok, args.tokenizer, args.name, args.name, cases, args.out)
    # The small vocabularies learn from the hand-written and random texts, then encode all
    # cases plus a few with their own special tokens.
    corpus = [t for n, t in cases if n.startswith(("random", "file_")) or n in dict(HAND_WRITTEN)]
    extra = [("special_chatml", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
             ("special_eot", "text<|endoftext|>more<|endoftext|>")]
    for name in SMALL_VOCABS:
        path = train_small_vocab(name, corpus, args.out)
        write_vectors(Tokenizer.from_file(path), path, name, name, cases + extra, args.out)

    chat = render_chat_templates(args.tokenizer)
    chat_path = os.path.join(args.out, "chat_templates.json")
    with open(chat_path, "w", encoding="utf-8") as f:
        json.dump({"jinja2_version": __import__("jinja2").__version__, "cases": chat}, f,
                  ensure_ascii=False)
    print(f"{chat_path}: {len(chat)} renders", file=sys.stderr)


if __name__ == "__main__":
    main()
