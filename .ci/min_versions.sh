#!/usr/bin/env bash
# The declared minimum versions give our numbers: install every `name>=X` lower bound of
# pyproject.toml's dependencies as `name==X` into a throwaway venv, run one figure from the
# README (Fashion-MNIST, 50 steps of the seed's SGD) with the installed package and compare it
# with the figure today's stack gives. A bound nobody has run is a promise nobody has checked.
#   .ci/min_versions.sh            fresh venv in a temporary folder, removed afterwards
#   MINVER_VENV=DIR .ci/min_versions.sh   build (or reuse) the venv in DIR and keep it
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXPECTED=0.5711   # test accuracy of the command below on jax 0.10.2 / flax 0.12.8 (README)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=${MINVER_VENV:-$work/venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "min-versions: pinning pyproject.toml's lower bounds"
"$PY" - "$work/pins.txt" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
pins = []
for dep in deps:
    # name>=X, or name>=X,<Y: pinned to X
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)(\s*,\s*<[0-9A-Za-z.]+)?",
                     dep.split(";")[0].strip())
    pins.append(f"{m[1]}=={m[2]}" if m else dep)
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
PY
cat "$work/pins.txt"

if [ ! -x "$venv/bin/python" ]; then
  echo "min-versions: creating $venv"
  "$PY" -m venv "$venv"
fi
echo "min-versions: installing the pinned minimums (this downloads old wheels)"
"$venv/bin/python" -m pip install -q -r "$work/pins.txt"
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation . 2>/dev/null \
  || "$venv/bin/python" -m pip install -q --no-deps .
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|tensorflow-datasets|numpy) '

echo "min-versions: python -m experiments.mnist --steps 50 --dataset fashion_mnist"
# Run from an empty folder so the installed package (not this checkout) is what runs.
(cd "$work" && "$venv/bin/python" -m experiments.mnist --steps 50 --dataset fashion_mnist \
   --out "$work/out" --no-progress)
"$venv/bin/python" - "$work/out/metrics.json" "$EXPECTED" <<'PY'
import json, sys
acc = json.load(open(sys.argv[1]))["test_accuracy"]
want = float(sys.argv[2])
print(f"min-versions: test accuracy {acc:.4%} (today's stack: {want:.2%})")
sys.exit(0 if round(acc, 4) == want else 1)
PY
