"""Independent references for the text-level CLI tests: jinja2 configured as transformers'
apply_chat_template configures it, and Hugging Face `tokenizers` on DeepSeek-V3's
tokenizer.json (the vocabulary of the tiny test models)."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER_DIR = ROOT.parent / "shared" / "data" / "tokenizers" / "deepseek-v3"
TOKENIZER = TOKENIZER_DIR / "tokenizer.json"
QWEN_MODEL = ROOT / "models" / "qwen2.5-coder-0.5b-instruct.gguf"
V3_BOS, V3_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def jinja_render(source, messages, add_generation_prompt=True, bos_token=V3_BOS, eos_token=V3_EOS):
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                          bos_token=bos_token, eos_token=eos_token)


def hf_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(TOKENIZER))


def v3_chat_template():
    return json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]
