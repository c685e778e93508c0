"""`tandem chat` as a user drives it: lines on stdin, answers on stdout, per-turn and final
summary lines on stderr. Checked against independent references: the conversation rendered by
jinja2 and tokenized by Hugging Face `tokenizers`, and a fresh `tandem run` of those tokens
(which a reused KV cache must reproduce exactly under greedy decoding)."""
import json
import re
import subprocess

import pytest

from text_reference import TOKENIZER, hf_tokenizer, jinja_render, v3_chat_template
from conftest import binary

N = 6


@pytest.fixture(scope="module")
def vocab_model(tmp_path_factory, tandem):
    """A tiny deepseek2 model carrying the real DeepSeek-V3 vocabulary and chat template."""
    path = tmp_path_factory.mktemp("chat") / "tiny-vocab.gguf"
    tandem("synth", "--preset", "tiny", "--recipe", "q8_0", "--vocab", TOKENIZER, "-o", path)
    return path


def chat(model, stdin, *args, transcript=None):
    cmd = [str(binary("tandem")), "chat", "-m", str(model), "--greedy", "-n", str(N), "-t", "2", *map(str, args)]
    if transcript:
        cmd += ["--transcript", str(transcript)]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def turn_stats(stderr):
    return [(int(a), int(b)) for a, b in re.findall(r"turn \d+: prefill (\d+) tokens \((\d+) reused", stderr)]


def prompt_ids(messages):
    return hf_tokenizer().encode(jinja_render(v3_chat_template(), messages), add_special_tokens=False).ids


def fresh_answer(tandem, model, tmp_path, messages):
    """The greedy answer of a fresh run over the rendered conversation, as chat would keep it."""
    out = tmp_path / "fresh.json"
    tandem("run", "-m", model, "--prompt-tokens", ",".join(map(str, prompt_ids(messages))), "-n", N, "--greedy",
           "--tokens-out", out, "-t", 2)
    ids = json.loads(out.read_text())
    return hf_tokenizer().decode(ids, skip_special_tokens=True).strip(" \n")


def test_second_turn_reuses_the_cache_and_matches_a_fresh_run(tandem, vocab_model, tmp_path, monkeypatch):
    # Exact equality holds on the per-token path: on a CPU with AMX or AVX512-BF16 the fresh
    # run's prompt and the chat's partial prefill would go through the bf16 path in different
    # batches, and a random tiny model's near-tied logits flip under that rounding
    # (src/cpu/gemm.h).
    monkeypatch.setenv("TANDEM_GEMM", "off")
    t = tmp_path / "t.json"
    proc = chat(vocab_model, "Hello there\nAnd a second question?\n", transcript=t)
    messages = json.loads(t.read_text())
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [messages[0]["content"], messages[2]["content"]] == ["Hello there", "And a second question?"]
    for m in messages[1::2]:
        assert m["content"] and m["content"] in proc.stdout

    (p1, r1), (p2, r2) = turn_stats(proc.stderr)
    first, second = prompt_ids(messages[:1]), prompt_ids(messages[:3])
    assert (p1, r1) == (len(first), 0)
    # The whole first prompt is cached, and the second prompt starts with it.
    assert second[:len(first)] == first
    assert r2 >= len(first) and p2 + r2 == len(second)

    # Greedy answers with the cache reused equal fresh runs over the whole conversation.
    assert messages[1]["content"] == fresh_answer(tandem, vocab_model, tmp_path, messages[:1])
    assert messages[3]["content"] == fresh_answer(tandem, vocab_model, tmp_path, messages[:3])


def test_reset_starts_over_and_reuses_the_cached_prompt(tandem, vocab_model, tmp_path):
    t = tmp_path / "t.json"
    proc = chat(vocab_model, "What is 2+2?\n/reset\nWhat is 2+2?\n", transcript=t)
    messages = json.loads(t.read_text())
    assert len(messages) == 2  # only the conversation after /reset
    answers = re.findall(r"^(.*)$", proc.stdout, re.M)
    assert answers.count(messages[1]["content"]) >= 2  # the same greedy answer twice
    (p1, r1), (p2, r2) = turn_stats(proc.stderr)
    assert r2 == p1 - 1 and p2 == 1  # identical prompt: all cached but the last token


def test_system_message_and_template_override(tandem, vocab_model, tmp_path):
    t = tmp_path / "t.json"
    proc = chat(vocab_model, "Hi\n", "--system", "Be brief.", "--chat-template", "chatml", transcript=t)
    messages = json.loads(t.read_text())
    assert messages[0] == {"role": "system", "content": "Be brief."}
    source = tandem("tokenize", "-m", vocab_model, "--print-template", "--chat-template", "chatml").stdout
    ids = hf_tokenizer().encode(jinja_render(source, messages[:2]), add_special_tokens=False).ids
    assert turn_stats(proc.stderr) == [(len(ids), 0)]


THINK_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<｜{{ m.role }}｜>{{ m.content }}{% endfor %}"
                  "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}")


def test_reasoning_is_shown_apart_and_left_out_of_history(tandem, vocab_model, tmp_path):
    # A template that opens the reasoning block (as R1's updated one does): with a few tokens,
    # everything the model writes is reasoning, shown between markers and not kept.
    tmpl = tmp_path / "think.jinja"
    tmpl.write_text(THINK_TEMPLATE, encoding="utf-8")
    t = tmp_path / "t.json"
    proc = chat(vocab_model, "Think about it\n", "--chat-template", tmpl, "--ignore-eos", transcript=t)
    assert proc.stdout.startswith("[thinking]\n")
    assert "\n[/thinking]\n" in proc.stdout
    reasoning = proc.stdout.split("[thinking]\n", 1)[1].split("\n[/thinking]")[0]
    assert reasoning.strip()
    messages = json.loads(t.read_text())
    assert messages[1] == {"role": "assistant", "content": ""}

    hidden = chat(vocab_model, "Think about it\n", "--chat-template", tmpl, "--ignore-eos", "--hide-thinking")
    assert "[thinking]" not in hidden.stdout and reasoning not in hidden.stdout


def test_exit_eof_and_summary(tandem, vocab_model):
    proc = chat(vocab_model, "/help\n/exit\nnever asked\n")
    assert "/reset" in proc.stderr and turn_stats(proc.stderr) == []
    assert re.search(r"^chat: 0 turns: prefill 0 tokens .* peak RSS [\d.]+ MiB$", proc.stderr.strip().splitlines()[-1])
    proc = chat(vocab_model, "one\ntwo")  # EOF without a final newline still answers "two"
    assert len(turn_stats(proc.stderr)) == 2
    assert re.search(r"^chat: 2 turns: prefill \d+ tokens in [\d.]+ s \([\d.]+ tok/s\) \| decode \d+ tokens",
                     proc.stderr.strip().splitlines()[-1])


def test_multi_line_message_with_backslash(tandem, vocab_model, tmp_path):
    t = tmp_path / "t.json"
    chat(vocab_model, "first line\\\nsecond line\n", transcript=t)
    assert json.loads(t.read_text())[0]["content"] == "first line\nsecond line"


def test_a_turn_that_does_not_fit_is_refused_not_fatal(tandem, vocab_model, tmp_path):
    t = tmp_path / "t.json"
    proc = chat(vocab_model, "word " * 40 + "\nshort\n", "--ctx", 32, transcript=t)
    assert "do not fit in --ctx 32: /reset to start over" in proc.stderr
    messages = json.loads(t.read_text())
    assert [m["content"] for m in messages if m["role"] == "user"] == ["short"]
