"""--chat-template NAME|FILE on tokenize and run: the built-in templates are the texts of their
sources, and whatever template is chosen renders as jinja2 renders it (transformers' setup)."""
import json

import numpy as np
import pytest

from text_reference import QWEN_MODEL, TOKENIZER, hf_tokenizer, jinja_render, v3_chat_template

BUILTINS = ["deepseek-r1", "deepseek-v3", "qwen2.5", "chatml", "llama3"]

CONVERSATIONS = {
    "user": [{"role": "user", "content": "What is 12 * 7?"}],
    "system_user": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "  Hi  "}],
    "multi_turn": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"},
                   {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Tell me a joke\nwith two lines."}],
    "reasoning_history": [{"role": "user", "content": "Solve x+1=2"},
                          {"role": "assistant", "content": "<think>\nx = 2-1\n</think>\n\nx = 1"},
                          {"role": "user", "content": "中文：x+2=5?"}],
}


@pytest.fixture(scope="module")
def vocab_model(tmp_path_factory, tandem):
    """A tiny deepseek2 model carrying the real DeepSeek-V3 vocabulary and chat template."""
    assert TOKENIZER.exists(), TOKENIZER
    path = tmp_path_factory.mktemp("tmpl") / "tiny-vocab.gguf"
    tandem("synth", "--preset", "tiny", "--recipe", "q8_0", "--vocab", TOKENIZER, "-o", path)
    return path


def template_text(tandem, model, spec):
    args = ["tokenize", "-m", model, "--print-template"] + (["--chat-template", spec] if spec else [])
    return tandem(*args).stdout


def test_default_is_the_models_template(tandem, vocab_model):
    assert template_text(tandem, vocab_model, None) == v3_chat_template()


def test_deepseek_v3_builtin_is_the_tokenizer_config_text(tandem, vocab_model):
    assert template_text(tandem, vocab_model, "deepseek-v3") == v3_chat_template()


def test_qwen_builtin_is_the_qwen_gguf_text(tandem):
    if not QWEN_MODEL.exists():
        pytest.skip(f"{QWEN_MODEL} not fetched (scripts/fetch_model.sh)")
    import gguf
    source = gguf.GGUFReader(str(QWEN_MODEL)).fields["tokenizer.chat_template"].contents()
    assert template_text(tandem, QWEN_MODEL, "qwen2.5") == source
    assert template_text(tandem, QWEN_MODEL, None) == source


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_builtin_renders_as_jinja2(tandem, vocab_model, tmp_path, name, conv):
    source = template_text(tandem, vocab_model, name)
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps(CONVERSATIONS[conv]), encoding="utf-8")
    for gen in (True, False):
        flags = [] if gen else ["--no-generation-prompt"]
        got = tandem("tokenize", "-m", vocab_model, "--messages", messages, "--chat-template", name, "--render",
                     *flags).stdout
        assert got == jinja_render(source, CONVERSATIONS[conv], add_generation_prompt=gen)


def test_builtins_differ_from_each_other(tandem, vocab_model):
    texts = {template_text(tandem, vocab_model, n) for n in BUILTINS}
    assert len(texts) == len(BUILTINS)


def test_r1_template_drops_earlier_reasoning(tandem, vocab_model, tmp_path):
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps(CONVERSATIONS["reasoning_history"]), encoding="utf-8")
    got = tandem("tokenize", "-m", vocab_model, "--messages", messages, "--chat-template", "deepseek-r1",
                 "--render").stdout
    assert "x = 2-1" not in got and "<｜Assistant｜>\n\nx = 1<｜end▁of▁sentence｜>" in got


CUSTOM = ("{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}] {{ m.content | trim }}\n{% endfor %}"
          "{% if add_generation_prompt %}[ASSISTANT]{% endif %}")


def test_file_override_on_run_changes_the_prompt_as_jinja2_would(tandem, vocab_model, tmp_path):
    tmpl = tmp_path / "custom.jinja"
    tmpl.write_text(CUSTOM, encoding="utf-8")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " What is 2+2? "}]
    expected_text = jinja_render(CUSTOM, messages)
    rendered = tandem("tokenize", "-m", vocab_model, "--chat", " What is 2+2? ", "--system", "Be brief.",
                      "--chat-template", tmpl, "--render").stdout
    assert rendered == expected_text

    # run --chat feeds exactly those tokens to the model: one row of logits per token, and the
    # same rows as running the HF-tokenized ids directly.
    expected_ids = hf_tokenizer().encode(expected_text, add_special_tokens=False).ids
    out = tmp_path / "chat.npy"
    tandem("run", "-m", vocab_model, "--chat", "-p", " What is 2+2? ", "--system", "Be brief.",
           "--chat-template", tmpl, "-n", "0", "--logits-out", out)
    ref = tmp_path / "ids.npy"
    tandem("run", "-m", vocab_model, "--prompt-tokens", ",".join(map(str, expected_ids)), "-n", "0",
           "--logits-out", ref)
    assert np.load(out).shape[0] == len(expected_ids)
    np.testing.assert_array_equal(np.load(out), np.load(ref))


def test_builtin_override_on_run(tandem, vocab_model, tmp_path):
    tok = hf_tokenizer()
    rows = {}
    for name in ("chatml", "deepseek-v3"):
        source = template_text(tandem, vocab_model, name)
        ids = tok.encode(jinja_render(source, [{"role": "user", "content": "hi"}]), add_special_tokens=False).ids
        out = tmp_path / f"{name}.npy"
        tandem("run", "-m", vocab_model, "--chat", "-p", "hi", "--chat-template", name, "-n", "0", "--logits-out", out)
        rows[name] = np.load(out).shape[0]
        assert rows[name] == len(ids), name
    assert rows["chatml"] != rows["deepseek-v3"]


@pytest.mark.parametrize("args,message", [
    (["--chat-template", "no-such-template"], "neither a built-in template (deepseek-r1, deepseek-v3, qwen2.5"),
    (["--chat-template", "{% if %}"], "neither a built-in"),
])
def test_bad_template_is_a_clear_error(tandem, vocab_model, args, message):
    proc = tandem("run", "-m", vocab_model, "--chat", "-p", "hi", "-n", "0", *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_template_flags_need_chat(tandem, vocab_model):
    proc = tandem("run", "-m", vocab_model, "-p", "hi", "--chat-template", "chatml", check=False)
    assert proc.returncode != 0 and "need --chat" in proc.stderr
