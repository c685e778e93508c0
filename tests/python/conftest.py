"""Shared fixtures: where the build is, and running the tandem binary as a user would."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("TANDEM_BINARY_DIR", ROOT / "build"))


def binary(name: str) -> pathlib.Path:
    path = BUILD / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build the project first (scripts/test.sh does)")
    return path


@pytest.fixture(scope="session")
def tandem():
    exe = binary("tandem")

    def run(*args, check=True, timeout=300):
        proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"tandem {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run
