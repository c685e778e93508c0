#!/usr/bin/env python3
"""Writes exactness vectors for tandem's dequantizers: random valid blocks of every block
format, and the float32 values the `gguf` package's reference dequantizer gives for them.

    python3 tools/quant_vectors.py --out build/quant_vectors

For each type NAME it writes NAME.blocks (n_blocks * type_size raw bytes) and NAME.f32
(n_blocks * block_size little-endian float32), plus MANIFEST listing the types written.
tests/quant/test_exact.cpp requires tandem's dequantize_row to reproduce NAME.f32 bit for bit.

Blocks are independent of tandem: numpy random bytes, so every grid index, sign pattern and
packed value occurs; then every f16/e8m0/f32 scale field is overwritten with a finite value:
random bit patterns over the whole exponent range (subnormals, both signs) and, in the first
blocks, the edge values 0, -0, the smallest subnormal, the largest subnormal, the smallest
normal, 1, the largest finite value and its negative. Outputs are checked to be NaN-free.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

N_BLOCKS = 4096
SEED = 20250203

# f16 bit patterns at the edges of the format (all finite).
F16_EDGES = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF, 0x8001, 0x83FF], dtype=np.uint16)

# Byte offsets of the f16 scale fields inside each block (see src/quant/blocks.h).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0],
    T.IQ1_S: [0], T.IQ4_NL: [0], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64],
}

TYPES = [T.F32, T.F16, T.BF16, *F16_FIELDS.keys(), T.IQ1_M, T.MXFP4]


def random_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """n finite f16 bit patterns: edges first, then random sign/exponent/mantissa."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exponent_all_ones = (bits & 0x7C00) == 0x7C00
    bits[exponent_all_ones] &= np.uint16(0xBFFF)  # clear the top exponent bit: finite
    k = min(n, len(F16_EDGES))
    bits[:k] = F16_EDGES[:k]
    return bits


def set_u16(blocks: np.ndarray, offset: int, values: np.ndarray):
    blocks[:, offset:offset + 2] = values.astype("<u2").view(np.uint8).reshape(-1, 2)


def make_blocks(qtype: T, rng: np.random.Generator) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[qtype]
    n_values = N_BLOCKS
    blocks = rng.integers(0, 256, size=(n_values, type_size), dtype=np.uint16).astype(np.uint8)

    if qtype == T.F32:
        bits = blocks.view("<u4").ravel()
        bits[(bits & 0x7F800000) == 0x7F800000] &= np.uint32(0xBFFFFFFF)  # no inf/NaN
        return blocks
    if qtype == T.F16:
        set_u16(blocks, 0, random_f16(rng, n_values))
        return blocks
    if qtype == T.BF16:
        bits = blocks.view("<u2").ravel()
        bits[(bits & 0x7F80) == 0x7F80] &= np.uint16(0xBFFF)
        return blocks

    for offset in F16_FIELDS.get(qtype, []):
        set_u16(blocks, offset, random_f16(rng, N_BLOCKS))
    if qtype == T.IQ1_M:
        # The f16 super-scale is split over the top nibbles of the 4 uint16 at bytes 48..55.
        d = random_f16(rng, N_BLOCKS).astype(np.uint16)
        for k in range(4):
            nib = ((d >> (4 * k)) & 0x0F).astype(np.uint8)
            byte = 48 + 2 * k + 1
            blocks[:, byte] = (blocks[:, byte] & 0x0F) | (nib << 4)
    if qtype == T.MXFP4:
        # e8m0 exponent: 253 and up overflow to inf once multiplied by the largest value (12).
        e = rng.integers(0, 253, size=N_BLOCKS, dtype=np.uint16).astype(np.uint8)
        e[:4] = [0, 1, 2, 252]
        blocks[:, 0] = e
    return blocks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="directory to write the vectors into")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(SEED)
    written = []
    for qtype in TYPES:
        blocks = make_blocks(qtype, rng)
        expected = quants.dequantize(blocks, qtype)
        expected = np.ascontiguousarray(expected, dtype=np.float32).reshape(-1)
        if np.isnan(expected).any() or not np.isfinite(expected).all():
            print(f"{qtype.name}: reference produced non-finite values", file=sys.stderr)
            return 1
        (args.out / f"{qtype.name}.blocks").write_bytes(blocks.tobytes())
        (args.out / f"{qtype.name}.f32").write_bytes(expected.astype("<f4").tobytes())
        written.append(qtype.name)
    (args.out / "MANIFEST").write_text("\n".join(written) + "\n")
    print(f"quant_vectors: {len(written)} types x {N_BLOCKS} blocks -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
