#!/usr/bin/env bash
# Set up jaxnets on this machine: real offline data where apt is usable, then the Python packages.
#   ./setup.sh         runtime: jax, flax, optax, tensorflow-datasets, ... (pip install -e .)
#   ./setup.sh --dev   also the test extra: pytest, ruff and torch (CPU build) for parity tests
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# Fashion-MNIST (real images, same IDX format as MNIST) from Debian, so the experiments and tests
# have real data offline. Skipped quietly where apt is not usable (not root, not Debian).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's dataset-fashion-mnist"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
    >/dev/null || echo "setup: warning: could not install dataset-fashion-mnist; experiments will " \
                       "need --data-dir or internet" >&2
fi

if [ "${1:-}" = "--dev" ]; then
  # The pin first: torch==2.13.0 resolves to a local CPU wheel here, while an unpinned torch
  # pulled in by the extra would download GBs of CUDA packages.
  "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q -e ".[dev]"
else
  "$PY" -m pip install -q -e .
fi
echo "setup: done ($("$PY" -c 'import jax; print("jax", jax.__version__, jax.default_backend())'))"
