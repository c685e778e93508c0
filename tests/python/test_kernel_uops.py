"""The batch-1 kernels' block loops stay as lean as docs/performance.md counts them.

tools/kernel_uops.py reads a kernel's block loop from the object code and counts its vector uops
by port (a model of Intel's two 512-bit ports). The issue-3 bound for IQ1_S_U2 and IQ2_XXS_U3 rests
on these counts; a change that adds work to those loops (a lost embedded broadcast, a spill, an
extra shift) shows here before it shows on the benchmark machine.
"""
import shutil
import sys

import pytest

from conftest import BUILD, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import kernel_uops  # noqa: E402

# format: (most vector uops per block, most port-0-only uops), the counts of this build's loops
LIMITS = {"IQ1_S_U2": (15, 6), "IQ2_XXS_U3": (18, 7), "Q2_K_U16": (18, 9)}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) not installed")
@pytest.mark.parametrize("fmt", sorted(LIMITS))
def test_block_loop_uops(fmt):
    _, obj, name = next(k for k in kernel_uops.KERNELS if k[0] == fmt)
    path = kernel_uops.obj_dir(BUILD) / obj
    if not path.exists():
        pytest.fail(f"{path} is missing: build the project first")
    r = kernel_uops.report(fmt, path, name)
    assert r["blocks_per_iteration"] == 1, r
    assert not r["unknown"], r
    most, most_p0 = LIMITS[fmt]
    assert r["uops"] <= most and r["p0"] <= most_p0, r
