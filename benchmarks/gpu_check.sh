#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU tests and benchmarks, results under $OUT
# (default benchmarks/results/). Arguments go to benchmarks/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Compiled kernels stay out of $OUT, which comes back to the caller.
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/gpubp-cupy-cache}"
# The device machine reaches no package index: if pytest is missing there, install
# it from wheels carried along with the call (here: pip download -d .wheels pytest).
if ! python3 -c "import pytest" 2>/dev/null && compgen -G ".wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --find-links .wheels pytest
fi
exec python3 benchmarks/gpu_check.py "$@"
