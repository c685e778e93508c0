#!/usr/bin/env python3
"""Vector uops per block of a kernel's inner loop, by port, from its object code.

The compute bound issue 3 (item 7) asks for where a format cannot stream at 80% of the read
bandwidth: the block loop of a one-row kernel, taken from `objdump -d`, its vector instructions
sorted by the execution ports they may take on Intel's server cores with AVX-512 (Ice Lake and
Sapphire Rapids run 512-bit vector work on two ports, 0 and 5; port 1 is fused into port 0),
and the bound a core's two ports give: max(port-0-only, port-5-only, all / 2) cycles per block.

    python3 tools/kernel_uops.py                     # the batch-1 kernels of issue 3's formats
    python3 tools/kernel_uops.py --object OBJ --function 'dot_iq1su2_row<(tandem::quant::Isa)2, false>'

NOTES: the port classes are those uops.info lists for Ice Lake's 512-bit forms (shifts, multiplies,
VNNI and int/float conversions on port 0; shuffles, permutes, compares into masks, extensions on
port 5; logic, add, blend, float add/mul/FMA on either); an instruction not in the table is
reported as unknown and counted on either port. Loads folded into an instruction add no vector
uop; pure loads, stores, register moves, broadcasts from memory and zero idioms are left out. A
model, not a measurement: bench_cpu's kernel/ rate is the measured counterpart.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def obj_dir(build: Path) -> Path:
    return build / "src" / "CMakeFiles" / "tandem_quant.dir" / "quant"

# (object, function as objdump -C prints it, block multiply-adds per block) for the kernels the
# batch-1 MoE step of each item-7 format runs on a Sapphire Rapids Xeon (VBMI, Intel factor form).
KERNELS = [
    ("IQ1_S_U2", "vec_dot_avx512vbmi.cpp.o", "dot_iq1su2_row<(tandem::quant::Isa)2, false>"),
    ("IQ2_XXS_U3", "vec_dot_avx512vbmi.cpp.o", "dot_iq2xxsu3_row<(tandem::quant::Isa)2, false>"),
    ("IQ1_M_U2", "vec_dot_avx512vbmi.cpp.o", "dot_iq1mu2_row<(tandem::quant::Isa)2, false>"),
    ("Q2_K_U16", "vec_dot_avx512vbmi.cpp.o", "dot_q2ku16_row<(tandem::quant::Isa)2, false>"),
    ("Q3_K_U16", "vec_dot_avx512vbmi.cpp.o", "dot_q3ku16_row<(tandem::quant::Isa)2, false>"),
    ("Q2_K", "vec_dot_avx512.cpp.o", "dot_k_row<(tandem::quant::Isa)2, tandem::quant::BlockQ2K>"),
    ("Q4_K", "vec_dot_avx512.cpp.o", "dot_k_row<(tandem::quant::Isa)2, tandem::quant::BlockQ4K>"),
]

# The instructions that mark a block: each block of these kernels has four of them.
BLOCK_MARKS = ("vpdpbusd", "vpdpwssd")

# Scalar float arithmetic counts on port 0: with 512-bit uops in flight port 1 takes no vector work.
P0 = re.compile(r"^(vmulss|vaddss|vsubss|vfn?m(add|sub)\d+ss|vpdpbusds?|vpdpwssds?|vpmaddubsw|vpmaddwd|vpmull[wdq]|vpmulh\w*|vpmuldq|vpmuludq|"
                r"vps[lr]l[wdq]|vpsra[wdq]|vps[lr]lv[wdq]|vpsrav[wdq]|vcvtdq2ps|vcvtps2dq|vcvttps2dq|vpmultishiftqb)$")
P5 = re.compile(r"^(vpermb|vpermw|vpermd|vpermps|vpermq|vpermpd|vpermi2\w+|vpermt2\w+|vpshufb|vpshufd|vpshuf[hl]w|"
                r"vpunpck\w+|vpalignr|vshuf\w+|vpbroadcast[bwdq]|vbroadcasts[sd]|vptestn?m[bwdq]|vpcmp\w*|"
                r"vpinsr[bwdq]|vpmovzx\w+|vpmovsx\w+|vpmov[dqw][bwd]|vextract\w+|vinsert\w+|vpacks\w+|vpackus\w+|vpcompress\w+)$")
P05 = re.compile(r"^(vpand[dq]?|vpandn[dq]?|vpor[dq]?|vpxor[dq]?|vpternlog[dq]|vpadd[bwdq]|vpsub[bwdq]|vpadds\w*|"
                 r"vpsubs\w*|vpabs[bwdq]|vpminu\w+|vpmaxu\w+|vpmins\w+|vpmaxs\w+|vpblendm\w+|vmovdq[au]\w*|vmovap[sd]|"
                 r"vmovup[sd]|vaddps|vsubps|vmulps|vfn?m(add|sub)\d+ps|vandps|vxorps|vorps|vpsign\w)$")
# Counted as two uops: port 0 and port 5 (Ice Lake).
P0_P5 = re.compile(r"^(vcvtph2ps)$")
SKIP = re.compile(r"^(prefetch\w*|vzeroupper|nop\w*)$")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
BRANCH = re.compile(r"^j\w+$")


def disassemble(obj: Path) -> list[str]:
    out = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(obj)], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def function_body(lines: list[str], name: str) -> list[tuple[int, str, str]]:
    """(address, mnemonic, operands) of the first function whose demangled name contains `name`."""
    body, inside = [], False
    for line in lines:
        if line.endswith(">:"):
            if inside:
                break
            inside = name in line
            continue
        if inside:
            m = INSN.match(line)
            if m:
                body.append((int(m.group(1), 16), m.group(2), m.group(3)))
    if not body:
        raise SystemExit(f"kernel_uops: no function matching '{name}'")
    return body


def block_loop(body: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The smallest loop (a backward branch and its target) holding at least four block marks."""
    best = None
    for i, (addr, mnem, ops) in enumerate(body):
        if not BRANCH.match(mnem):
            continue
        target = re.match(r"([0-9a-f]+)", ops)
        if not target or int(target.group(1), 16) > addr:
            continue
        start = int(target.group(1), 16)
        loop = [ins for ins in body[: i + 1] if ins[0] >= start]
        marks = sum(1 for _, m, _ in loop if m in BLOCK_MARKS)
        if marks >= 4 and (best is None or len(loop) < len(best)):
            best = loop
    if best is None:
        raise SystemExit("kernel_uops: no loop with four multiply-adds")
    return best


def classify(loop: list[tuple[int, str, str]]) -> dict:
    counts = {"p0": 0, "p5": 0, "p05": 0, "unknown": [], "marks": 0}
    for _, mnem, ops in loop:
        if SKIP.match(mnem) or not (mnem.startswith("v") or mnem.startswith("k")):
            continue
        regs = re.findall(r"%[xyz]mm\d+", ops)
        if re.match(r"^(vpxor[dq]?|vxorp[sd]|vpsub[bwdq])$", mnem) and len(regs) == 3 and len(set(regs)) == 1:
            continue  # a zero idiom: no port
        if mnem in BLOCK_MARKS:
            counts["marks"] += 1
        base = mnem
        is_move = re.match(r"^(vmovdq[au]\w*|vmovap[sd]|vmovup[sd]|vmovs[sd]|vmovd|vmovq|kmov\w)$", mnem)
        masked = "{%k" in ops
        if is_move and ("(" in ops or not masked):  # a load, a store or a plain register copy
            continue
        if re.match(r"^(vbroadcasts[sd]|vpbroadcast[bwdq]|vbroadcast[if]\d+x\d+)$", mnem) and "(" in ops:  # a load
            continue
        if P0_P5.match(base):
            counts["p0"] += 1
            counts["p5"] += 1
        elif P0.match(base):
            counts["p0"] += 1
        elif P5.match(base):
            counts["p5"] += 1
        elif P05.match(base):
            counts["p05"] += 1
        else:
            counts["unknown"].append(mnem)
            counts["p05"] += 1
    return counts


def report(fmt: str, obj: Path, name: str) -> dict:
    loop = block_loop(function_body(disassemble(obj), name))
    c = classify(loop)
    blocks = c["marks"] / 4
    per = {k: c[k] / blocks for k in ("p0", "p5", "p05")}
    total = per["p0"] + per["p5"] + per["p05"]
    bound = max(per["p0"], per["p5"], total / 2)
    return {"format": fmt, "uops": total, **per, "bound": bound, "unknown": sorted(set(c["unknown"])), "blocks_per_iteration": blocks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--object", type=Path, help="object file (default: the kernels of issue 3's formats)")
    ap.add_argument("--function", help="demangled function name, or a part of it")
    ap.add_argument("--build", type=Path, default=ROOT / "build", help="build folder (default: build)")
    args = ap.parse_args()
    todo = [("?", args.object, args.function)] if args.object else [(f, obj_dir(args.build) / o, n) for f, o, n in KERNELS]
    print("| kernel | vector uops per block | port 0 only | port 5 only | either | bound, cycles per block per core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for fmt, obj, name in todo:
        r = report(fmt, obj, name)
        extra = f" (unclassified: {', '.join(r['unknown'])})" if r["unknown"] else ""
        print(f"| {fmt} | {r['uops']:.0f} | {r['p0']:.0f} | {r['p5']:.0f} | {r['p05']:.0f} | {r['bound']:.1f}{extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
