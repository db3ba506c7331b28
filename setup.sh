#!/usr/bin/env bash
# Set up jaxnets on this machine: real offline data where apt is usable, then the Python packages.
#   ./setup.sh         runtime: jax, flax, optax, tensorflow-datasets, ... (pip install -e .)
#   ./setup.sh --dev   also the test and docs extras: pytest, ruff, torch for the parity tests,
#                      the lessons site's Sphinx stack, and Debian's chromium for its browser test
# torch: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu ./setup.sh --dev installs PyTorch's
# CPU build from that index; without it torch==2.13.0 is installed (a local CPU wheel on our
# machines; on PyPI's Linux index it is the CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stage() { echo "setup: $*"; }

# Wait for apt/dpkg locks another process holds (an unattended upgrade, a second setup) instead of
# failing; dpkg's locks are fcntl locks, so probe them the same way.
wait_for_apt_locks() {
  local waited=0
  while ! "$PY" - <<'PY'
import fcntl, os, sys
for path in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock"):
    if not os.path.exists(path):
        continue
    with open(path, "a") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sys.exit(1)
PY
  do
    if [ "$waited" -ge 600 ]; then
      echo "setup: warning: apt/dpkg still locked by another process after 600 s" >&2
      return 1
    fi
    [ $((waited % 30)) = 0 ] && stage "waiting for another apt/dpkg process to release its lock"
    sleep 5; waited=$((waited + 5))
  done
}

# Fashion-MNIST (real images, same IDX format as MNIST) from Debian, so the experiments and tests
# have real data offline; with --dev also Debian's chromium, for the lessons site's browser test.
# Skipped where apt is not usable (not root, not Debian).
DEBS=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || DEBS="dataset-fashion-mnist"
[ "${1:-}" = "--dev" ] && ! [ -x /usr/bin/chromium ] && DEBS="$DEBS chromium"
DEBS="${DEBS# }"
if [ -z "$DEBS" ]; then
  stage "[1/3] Debian packages already installed (Fashion-MNIST in /usr/share/datasets/fashion-mnist)"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  stage "[1/3] installing Debian's $DEBS (apt-get update + install)"
  # The lock timeout covers a lock taken between our probe and apt's own.
  if wait_for_apt_locks \
     && apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
     && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
          $DEBS >/dev/null; then
    stage "[1/3] $DEBS installed"
  else
    echo "setup: warning: could not install $DEBS; experiments will need --data-dir or" \
         "internet, and the site's browser test /usr/bin/chromium" >&2
  fi
else
  stage "[1/3] skipping Debian's $DEBS (needs root and apt-get)"
fi

if [ "${1:-}" = "--dev" ]; then
  # torch before the extra: an unpinned torch pulled in by the extra would be PyPI's CUDA build.
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    stage "[2/3] installing torch from $TORCH_INDEX_URL"
    "$PY" -m pip install torch --index-url "$TORCH_INDEX_URL"
  else
    stage "[2/3] installing torch==2.13.0 for the parity tests" \
          "(TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU build elsewhere)"
    "$PY" -m pip install torch==2.13.0
  fi
  stage "[3/3] installing jaxnets with the test and docs extras (pip install -e \".[dev]\")"
  "$PY" -m pip install -e ".[dev]"
else
  stage "[2/3] no test extra (./setup.sh --dev adds pytest, ruff, torch and the docs stack)"
  stage "[3/3] installing jaxnets and its dependencies (pip install -e .)"
  "$PY" -m pip install -e .
fi
stage "done ($("$PY" -c 'import jax; print("jax", jax.__version__, jax.default_backend())'))"
