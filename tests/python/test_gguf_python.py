"""Files tandem's GGUF writer produces load in the `gguf` Python package's GGUFReader,
with every metadata value and every tensor's type, shape and bytes intact."""
import subprocess

import numpy as np
import pytest
from gguf import GGUFReader, GGMLQuantizationType, GGUFValueType
from gguf.constants import GGML_QUANT_SIZES

from conftest import binary


@pytest.mark.parametrize("alignment", [32, 64])
def test_writer_output_reads_in_gguf_package(tmp_path, alignment):
    path = tmp_path / "sample.gguf"
    subprocess.run([str(binary("gguf_sample")), str(path), str(alignment)], check=True)
    r = GGUFReader(path)

    def scalar(key):
        f = r.fields[key]
        return f.parts[f.data[0]][0]

    def string(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    assert string("general.architecture") == "sample"
    expect = {
        "sample.u8": (GGUFValueType.UINT8, 200), "sample.i8": (GGUFValueType.INT8, -100),
        "sample.u16": (GGUFValueType.UINT16, 60000), "sample.i16": (GGUFValueType.INT16, -30000),
        "sample.u32": (GGUFValueType.UINT32, 4000000000), "sample.i32": (GGUFValueType.INT32, -2000000000),
        "sample.u64": (GGUFValueType.UINT64, 2**64 - 1), "sample.i64": (GGUFValueType.INT64, -(2**63)),
        "sample.f32": (GGUFValueType.FLOAT32, 3.25), "sample.f64": (GGUFValueType.FLOAT64, -1e300),
        "sample.bool": (GGUFValueType.BOOL, True),
    }
    for key, (vtype, value) in expect.items():
        assert r.fields[key].types == [vtype], key
        assert scalar(key) == value, key
    assert string("sample.str") == "utf-8 你好"
    strs = r.fields["sample.strs"]
    assert strs.types == [GGUFValueType.ARRAY, GGUFValueType.STRING]
    assert [bytes(strs.parts[i]).decode() for i in strs.data] == ["a", "", "ccc"]
    ints = r.fields["sample.i32s"]
    assert [int(ints.parts[i][0]) for i in ints.data] == [1, -2, 3]
    floats = r.fields["sample.f32s"]
    assert [float(floats.parts[i][0]) for i in floats.data] == [0.5, -1.5]
    assert r.fields["sample.nested"].types[:2] == [GGUFValueType.ARRAY, GGUFValueType.ARRAY]
    if alignment != 32:
        assert scalar("general.alignment") == alignment

    tensors = {t.name: t for t in r.tensors}
    assert len(tensors) == len(GGML_QUANT_SIZES) - sum(
        1 for t in GGML_QUANT_SIZES if t.name in ("NVFP4", "Q1_0"))
    for i, (name, t) in enumerate(sorted(tensors.items(), key=lambda kv: kv[1].tensor_type.value)):
        block, size = GGML_QUANT_SIZES[t.tensor_type]
        assert name == f"tensor.{t.tensor_type.name}"
        assert list(t.shape) == [2 * block, 3]
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        assert raw.size == 2 * 3 * size
        want = ((i * 131 + np.arange(raw.size) * 7) % 256).astype(np.uint8)
        assert np.array_equal(raw, want), name
