"""The engine's logits against transformers, on the tiny random models in tests/fixtures/
(made by tools/make_reference.py; see tools/reference/README.md).

For every fixture and prompt:
  * `tandem run -m model.gguf --prompt-tokens IDS -n 0 --logits-out OUT.npy` writes float32
    logits [n_tokens, n_vocab]; at every position |engine - reference| <= 1e-3 * max|reference|.
  * `tandem run -m model.gguf --prompt-tokens IDS -n 32 --greedy --tokens-out OUT.json` gives the
    same 32 greedy tokens as transformers.
For quantized fixtures the reference ran on the dequantized weights, so the tolerance is the same.
Skipped only while `tandem --help` does not list the `run` verb.
"""
import json
import pathlib
import re

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
CASES = sorted(p.parent.name for p in FIXTURES.glob("*/manifest.json"))


def manifest(name):
    return json.loads((FIXTURES / name / "manifest.json").read_text())


@pytest.fixture(scope="module")
def run_verb(tandem):
    proc = tandem("--help", check=False)
    text = proc.stdout + proc.stderr
    if not re.search(r"^\s*run\b", text, re.M):
        pytest.skip("forward pass not built yet: `tandem --help` lists no `run` verb")
    return tandem


def test_fixtures_are_complete():
    assert len(CASES) >= 13, CASES
    for name in CASES:
        m = manifest(name)
        assert (FIXTURES / name / m["model"]).exists(), name
        assert len(m["prompts"]) == len(m["logits"]) == len(m["greedy"]), name
        for ids, lf, gen in zip(m["prompts"], m["logits"], m["greedy"]):
            ref = np.load(FIXTURES / name / lf)
            assert ref.shape == (len(ids), m["hf_config"]["vocab_size"]) and ref.dtype == np.float32
            assert np.isfinite(ref).all()
            assert len(gen) == m["n_greedy"]


@pytest.mark.parametrize("name", CASES)
def test_prompt_logits(run_verb, name, tmp_path):
    m = manifest(name)
    rel = m["tolerance"]["rel"]
    model = FIXTURES / name / m["model"]
    for k, (ids, lf) in enumerate(zip(m["prompts"], m["logits"])):
        ref = np.load(FIXTURES / name / lf).astype(np.float64)
        out = tmp_path / f"logits_{k}.npy"
        run_verb("run", "-m", model, "--prompt-tokens", ",".join(map(str, ids)), "-n", "0",
                 "--logits-out", out)
        got = np.load(out)
        assert got.dtype == np.float32, got.dtype
        assert got.shape == ref.shape, (got.shape, ref.shape)
        err = np.abs(got.astype(np.float64) - ref).max(axis=1)
        bound = rel * np.abs(ref).max(axis=1)
        bad = np.nonzero(err > bound)[0]
        assert bad.size == 0, (
            f"{name} prompt {k}: {bad.size}/{len(ids)} positions out of tolerance; first at {bad[0]}: "
            f"max|d| {err[bad[0]]:.3e} > {bound[bad[0]]:.3e}; worst ratio {np.max(err / bound):.2f}; "
            f"argmax engine {int(got[bad[0]].argmax())} reference {int(ref[bad[0]].argmax())}")


@pytest.mark.parametrize("name", CASES)
def test_greedy_continuation(run_verb, name, tmp_path):
    m = manifest(name)
    model = FIXTURES / name / m["model"]
    for k, (ids, want) in enumerate(zip(m["prompts"], m["greedy"])):
        out = tmp_path / f"tokens_{k}.json"
        run_verb("run", "-m", model, "--prompt-tokens", ",".join(map(str, ids)), "-n", str(len(want)),
                 "--greedy", "--tokens-out", out)
        got = json.loads(out.read_text())
        assert got == want, f"{name} prompt {k}: first difference at {next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}\n got  {got}\n want {want}"
