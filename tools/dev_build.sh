#!/usr/bin/env bash
# Incremental developer build: compiles python/fastlayers/_core*.so in place.
# Use:  tools/dev_build.sh && PYTHONPATH=python python -m pytest -q
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FASTLAYERS_BUILD_DIR:-build/dev}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" "$@" >/dev/null
cmake --build "$build" -j "${FASTLAYERS_JOBS:-2}"
