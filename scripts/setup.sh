#!/usr/bin/env bash
# Installs everything tandem needs on a fresh Debian machine: the C++ toolchain and
# libraries (apt) and the Python packages the tests use as independent references (pip).
# Idempotent and quiet on success; prints only what it is doing and errors.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libfmt-dev libcpp-httplib-dev libpcre2-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
)
# transformers: only its GGUF tokenizer converter (the real-model vocabulary test); no torch.
PIP_PACKAGES=(numpy gguf tokenizers openai jinja2 pytest requests transformers)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! $PY - "${PIP_PACKAGES[@]}" <<'PYEOF'
import importlib.util, sys
names = {"jinja2": "jinja2", "pytest": "pytest", "requests": "requests"}
sys.exit(0 if all(importlib.util.find_spec(names.get(n, n)) for n in sys.argv[1:]) else 1)
PYEOF
then
  echo "setup: installing python packages ${PIP_PACKAGES[*]}"
  $PY -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi
