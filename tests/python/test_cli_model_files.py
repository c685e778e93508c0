"""`tandem synth`, `tandem info` and `tandem dump`, checked as a user sees them (through the
CLI's output) against the `gguf` package's reader and dequantizers."""
import json
import re

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

RECIPES = ["f32", "f16", "q8_0", "q4_k_m", "ud-q2_k_xl", "ud-iq1_s", "ud-iq1_m", "ud-iq2_xxs"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tandem):
    out = tmp_path_factory.mktemp("synth")
    paths = {}
    for recipe in RECIPES:
        p = out / f"tiny-{recipe}.gguf"
        proc = tandem("synth", "--preset", "tiny", "--recipe", recipe, "-o", p)
        assert proc.stdout.strip() == str(p)
        assert "wrote" in proc.stderr
        paths[recipe] = p
    return paths


def reader_tensors(path):
    return {t.name: t for t in GGUFReader(path).tensors}


@pytest.mark.parametrize("recipe", RECIPES)
def test_synth_file_is_valid_for_the_gguf_package(tiny_models, recipe):
    tensors = reader_tensors(tiny_models[recipe])
    # R1's structure at toy size: 3 layers, the first dense, the rest MoE with shared experts.
    assert tensors["blk.0.ffn_gate.weight"].shape.tolist() == [256, 512]
    assert tensors["blk.1.ffn_gate_exps.weight"].shape.tolist() == [256, 256, 8]
    assert tensors["blk.2.ffn_down_exps.weight"].shape.tolist() == [256, 256, 8]
    assert tensors["blk.1.exp_probs_b.bias"].tensor_type.name == "F32"
    assert "blk.0.ffn_gate_exps.weight" not in tensors
    # Every block is valid: dequantized weights are finite and of sane magnitude.
    for name, t in tensors.items():
        w = dequantize(t.data, t.tensor_type)
        assert np.isfinite(w).all(), name
        assert 0 < np.abs(w).max() < 4, (name, np.abs(w).max())


def test_recipe_types(tiny_models):
    types = {n: t.tensor_type.name for n, t in reader_tensors(tiny_models["ud-iq1_s"]).items()}
    assert types["blk.1.ffn_gate_exps.weight"] == "IQ1_S"
    assert types["blk.1.ffn_up_exps.weight"] == "IQ1_S"
    assert types["blk.1.ffn_down_exps.weight"] == "IQ2_XXS"  # first MoE layer
    assert types["blk.2.ffn_down_exps.weight"] == "IQ1_S"
    assert types["blk.1.attn_kv_b.weight"] == "Q6_K"
    assert types["blk.1.attn_q_a.weight"] == "Q4_K"
    assert types["blk.1.ffn_gate_inp.weight"] == "F32"
    assert types["blk.1.attn_norm.weight"] == "F32"
    q2 = {n: t.tensor_type.name for n, t in reader_tensors(tiny_models["ud-q2_k_xl"]).items()}
    assert q2["blk.1.ffn_gate_exps.weight"] == "Q2_K" and q2["blk.1.ffn_down_exps.weight"] == "Q3_K"
    m = {n: t.tensor_type.name for n, t in reader_tensors(tiny_models["ud-iq1_m"]).items()}
    assert m["blk.1.ffn_gate_exps.weight"] == "IQ1_M" and m["blk.2.ffn_up_exps.weight"] == "IQ1_M"
    assert m["blk.1.ffn_down_exps.weight"] == "IQ2_XXS" and m["blk.2.ffn_down_exps.weight"] == "IQ2_XXS"
    x = {n: t.tensor_type.name for n, t in reader_tensors(tiny_models["ud-iq2_xxs"]).items()}
    assert x["blk.1.ffn_gate_exps.weight"] == "IQ2_XXS" and x["blk.2.ffn_up_exps.weight"] == "IQ2_XXS"
    assert x["blk.1.ffn_down_exps.weight"] == "Q2_K" and x["blk.2.ffn_down_exps.weight"] == "IQ2_XXS"


@pytest.mark.parametrize("recipe", RECIPES)
def test_info_json_matches_the_file(tiny_models, tandem, recipe):
    path = tiny_models[recipe]
    info = json.loads(tandem("info", "--json", path).stdout)
    tensors = reader_tensors(path)
    assert info["architecture"] == "deepseek2"
    assert info["n_tensors"] == len(tensors)
    assert info["hyperparameters"]["block_count"] == "3"
    assert info["hyperparameters"]["expert_count"] == "8"
    assert info["n_params"] == sum(int(t.n_elements) for t in tensors.values())
    by_type = {}
    for t in tensors.values():
        by_type.setdefault(t.tensor_type.name, [0, 0])
        by_type[t.tensor_type.name][0] += 1
        by_type[t.tensor_type.name][1] += int(t.n_bytes)
    assert {k: [v["count"], v["bytes"]] for k, v in info["tensor_types"].items()} == by_type
    comps = info["bytes_per_component"]
    assert sum(comps.values()) == sum(int(t.n_bytes) for t in tensors.values())
    routed = sum(int(t.n_bytes) for n, t in tensors.items() if "_exps" in n)
    assert comps["routed experts"] == routed
    # Bytes per decoded token, computed independently: all non-expert weights except the
    # embedding table, one embedding row, and 2 of 8 experts' share of the routed weights.
    embd = tensors["token_embd.weight"]
    other = sum(int(t.n_bytes) for n, t in tensors.items() if "_exps" not in n and n != "token_embd.weight")
    assert info["active_bytes_per_token"] == other + int(embd.n_bytes) // 512 + routed * 2 // 8
    # The repacked layouts' sizes per 256-weight block (quant/blocks.h): IQ1_S 50 -> 70 bytes,
    # IQ1_M 56 -> 76, IQ2_XXS 66 -> 102, IQ3_XXS 98 -> 134, Q2_K 84 -> 84 and Q3_K 110 -> 110
    # (regrouped); other formats stay.
    grows = {"IQ1_S": (50, 70), "IQ1_M": (56, 76), "IQ2_XXS": (66, 102), "IQ3_XXS": (98, 134), "Q2_K": (84, 84),
             "Q3_K": (110, 110)}
    experts = [t for n, t in tensors.items() if "_exps" in n and t.tensor_type.name in grows]
    growth = sum(int(t.n_bytes) // grows[t.tensor_type.name][0] * (grows[t.tensor_type.name][1] - grows[t.tensor_type.name][0])
                 for t in experts)
    assert info["repack_growth_bytes"] == growth
    assert set(filter(None, info["repacked_formats"].split(", "))) == {t.tensor_type.name for t in experts}


def test_info_text_output(tiny_models, tandem):
    out = tandem("info", tiny_models["ud-iq1_s"]).stdout
    assert "deepseek2" in out
    assert re.search(r"IQ1_S\s+5 tensors", out)
    assert re.search(r"routed experts\s+\d+\.\d+ KiB", out)
    assert "decode reads" in out and "2 of 8 routed experts active" in out
    assert re.search(r"repacked\s+IQ1_S, IQ2_XXS experts take \d+\.\d+ KiB more in memory", out), out
    out = tandem("info", tiny_models["ud-q2_k_xl"]).stdout  # Q2_K gate/up, Q3_K down: both regrouped
    assert re.search(r"repacked\s+Q2_K, Q3_K experts are regrouped as loaded \(the same size\)", out), out


@pytest.mark.parametrize("recipe", RECIPES)
def test_dump_equals_gguf_dequantize(tiny_models, tandem, tmp_path, recipe):
    path = tiny_models[recipe]
    tensors = reader_tensors(path)
    names = ["token_embd.weight", "blk.0.ffn_down.weight", "blk.1.attn_kv_b.weight",
             "blk.1.ffn_down_exps.weight", "blk.2.ffn_up_exps.weight", "blk.1.attn_output.weight",
             "blk.1.attn_norm.weight", "output.weight"]
    for name in names:
        out = tmp_path / f"{name}.npy"
        proc = tandem("dump", path, name, "-o", out)
        assert name in proc.stdout
        got = np.load(out)
        t = tensors[name]
        want = dequantize(t.data, t.tensor_type)
        assert got.dtype == np.float32
        assert got.shape == want.shape, name
        assert np.array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32)), name


def test_split_model_loads_from_any_shard(tandem, tmp_path):
    proc = tandem("synth", "--preset", "tiny", "--recipe", "q8_0", "--split", "3", "-o", tmp_path / "m.gguf")
    shards = proc.stdout.split()
    assert [s.rsplit("/", 1)[1] for s in shards] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    whole = tmp_path / "whole.gguf"
    tandem("synth", "--preset", "tiny", "--recipe", "q8_0", "-o", whole)
    want = json.loads(tandem("info", "--json", whole).stdout)
    for shard in shards:
        info = json.loads(tandem("info", "--json", shard).stdout)
        assert info["shards"] == 3
        assert info["n_tensors"] == want["n_tensors"]
        assert info["bytes_per_component"] == want["bytes_per_component"]
    got = tmp_path / "x.npy"
    ref = tmp_path / "y.npy"
    tandem("dump", shards[1], "blk.2.ffn_up_exps.weight", "-o", got)
    tandem("dump", whole, "blk.2.ffn_up_exps.weight", "-o", ref)
    assert np.array_equal(np.load(got), np.load(ref))


def test_synth_shape_options(tandem, tmp_path):
    p = tmp_path / "m.gguf"
    tandem("synth", "--preset", "tiny", "--layers", "5", "--dense", "2", "--experts", "16", "-o", p)
    info = json.loads(tandem("info", "--json", p).stdout)
    assert info["hyperparameters"]["block_count"] == "5"
    assert info["hyperparameters"]["leading_dense_block_count"] == "2"
    assert info["n_expert"] == 16
    t = reader_tensors(p)
    assert "blk.1.ffn_gate.weight" in t and "blk.2.ffn_gate_exps.weight" in t
    assert t["blk.4.ffn_up_exps.weight"].shape.tolist() == [256, 256, 16]


def test_synth_r1_shapes_from_metadata_only(tandem, tmp_path):
    # One R1 MoE layer at IQ1_S is ~0.9 GB; check shapes on a 1-layer, 1-dense model instead
    # (R1's dense FFN, attention and 129280-token embedding at full size: ~1.1 GB at IQ1_S).
    p = tmp_path / "r1.gguf"
    tandem("synth", "--preset", "r1", "--layers", "1", "--dense", "1", "--recipe", "ud-iq1_s", "-o", p, timeout=600)
    t = reader_tensors(p)
    assert t["blk.0.attn_q_a.weight"].shape.tolist() == [7168, 1536]
    assert t["blk.0.attn_q_b.weight"].shape.tolist() == [1536, 128 * 192]
    assert t["blk.0.attn_kv_a_mqa.weight"].shape.tolist() == [7168, 576]
    assert t["blk.0.attn_kv_b.weight"].shape.tolist() == [512, 128 * 256]
    assert t["blk.0.attn_output.weight"].shape.tolist() == [128 * 128, 7168]
    assert t["blk.0.ffn_gate.weight"].shape.tolist() == [7168, 18432]
    assert t["token_embd.weight"].shape.tolist() == [7168, 129280]


@pytest.mark.parametrize("args,message", [
    (["--preset", "huge"], "huge not in"),
    (["--layers", "0"], "--layers 0 is out of range"),
    (["--dense", "9"], "--dense 9 must be between 0 and the layer count 3"),
    (["--experts", "1"], "--experts 1 must be between"),
])
def test_synth_rejects_bad_options(tandem, tmp_path, args, message):
    proc = tandem("synth", "-o", tmp_path / "x.gguf", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_bad_files_give_clear_errors(tandem, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    proc = tandem("info", bad, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("tandem: error: ")
    assert "bad.gguf: at byte offset 8: tensor count" in proc.stderr or "metadata count" in proc.stderr
    proc = tandem("info", tmp_path / "absent.gguf", check=False)
    assert proc.returncode == 1 and "cannot open" in proc.stderr
    good = tmp_path / "good.gguf"
    tandem("synth", "--preset", "tiny", "-o", good)
    proc = tandem("dump", good, "no.such.tensor", "-o", tmp_path / "x.npy", check=False)
    assert proc.returncode == 1 and "tensor 'no.such.tensor' not found" in proc.stderr
    # Truncated: cut inside the tensor data.
    data = good.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    proc = tandem("info", cut, check=False)
    assert proc.returncode == 1 and "past the end of the file" in proc.stderr
