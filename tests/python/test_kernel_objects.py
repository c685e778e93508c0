"""Checks on the compiled dot kernels themselves (objdump of libtandem_quant.a).

Every row kernel streams its weights with a software prefetch 4 KiB ahead. GCC counts
__builtin_prefetch as free of side effects: in sessions 14 and 15 a prefetch helper left as a
call was judged const and deleted, and the Intel-form grid kernels streamed without it (the
Xeon's MoE step took 1.6-2.4x its kernel time) while every numeric test still passed. This
test reads the object code, so it fails when a kernel loses its prefetch again.
"""
import re
import shutil
import subprocess

import pytest

from conftest import BUILD

# Each object and the fewest row kernels it holds (VBMI: IQ1_S_U2, IQ1_M_U2, Q2_K_U16, Q3_K_U16,
# IQ2_XXS_U3 in two factor forms, and their rows kernels).
KERNEL_OBJECTS = {"vec_dot_avx2.cpp.o": 60, "vec_dot_avx512.cpp.o": 40, "vec_dot_avx512vbmi.cpp.o": 15}
# A row kernel: dot_<fmt>_row / _rows (one weight row against one or several activation rows),
# and the AVX2 rows kernels dot_rows_avx2 / dot_rows_chunk_avx2.
KERNEL_NAME = re.compile(r"dot_(\w+_rows?|rows_avx2|rows_chunk_avx2)<")
PREFETCH = re.compile(r"\bprefetch(t[0-2]|nta|w)\b")


def functions(disassembly: str):
    """(name, body lines) of each function in `objdump -d -C` output."""
    name, body = None, []
    for line in disassembly.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            if name is not None:
                yield name, body
            name, body = m.group(1), []
        elif name is not None and line.strip():
            body.append(line)
    if name is not None:
        yield name, body


def disassemble(member: str) -> str:
    lib = BUILD / "src" / "libtandem_quant.a"
    if not lib.exists():
        pytest.fail(f"{lib} is missing: build the project first (scripts/test.sh does)")
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump (binutils) is not installed")
    # objdump takes an archive and prints every member, each from a "<member>:  file format" line.
    out = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", str(lib)], capture_output=True, text=True, check=True).stdout
    sections = re.split(r"^(\S+\.o):\s+file format.*$", out, flags=re.M)
    for name, text in zip(sections[1::2], sections[2::2]):
        if name == member:
            return text
    pytest.fail(f"{member} not found in {lib}")


def forwards_to(body):
    """The functions a body calls or jumps to at their entry (jumps within itself carry +0x...)."""
    for line in body:
        m = re.search(r"\b(?:call|jmp)q?\s+[0-9a-f]+ <(.*)>$", line)
        if m and not re.search(r"\+0x[0-9a-f]+$", m.group(1)):
            yield m.group(1)


def prefetches(name, bodies, seen=()):
    """Whether a function prefetches, itself or in every dot_ function it forwards to."""
    body = bodies.get(name, [])
    if any(PREFETCH.search(line) for line in body):
        return True
    targets = [t for t in forwards_to(body) if "dot_" in t and t not in seen]
    return bool(targets) and all(prefetches(t, bodies, seen + (name,)) for t in targets)


@pytest.mark.parametrize("member", list(KERNEL_OBJECTS))
def test_every_row_kernel_prefetches(member):
    bodies = dict(functions(disassemble(member)))
    kernels = [name for name in bodies if KERNEL_NAME.search(name) and "lambda" not in name]
    assert len(kernels) >= KERNEL_OBJECTS[member], f"only {len(kernels)} row kernels found in {member}: the name pattern no longer matches"
    missing = [name for name in kernels if not prefetches(name, bodies)]
    assert not missing, "row kernels without a software prefetch:\n" + "\n".join(missing)
