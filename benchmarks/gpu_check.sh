#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU tests and benchmarks, results under $OUT
# (default benchmarks/results/). Arguments go to benchmarks/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Compiled kernels stay out of $OUT, which comes back to the caller.
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/gpubp-cupy-cache}"
exec python3 benchmarks/gpu_check.py "$@"
