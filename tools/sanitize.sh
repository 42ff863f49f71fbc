#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the whole test suite.
#
#   tools/sanitize.sh                 # build (incremental) + run every test, log in build/asan/
#   tools/sanitize.sh tests/test_gemm.py -k strided    # extra arguments go to pytest
#   FASTLAYERS_SANITIZE_BUILD_ONLY=1 tools/sanitize.sh  # just (re)build the instrumented module
#   FASTLAYERS_SANITIZE_TAG=a tools/sanitize.sh tests/test_nn.py &  # parts in parallel, own log
#
# How it works
# - The extension is compiled with -fsanitize=address,undefined (CMake option
#   FASTLAYERS_SANITIZE, -fno-sanitize-recover=all: the first UB report aborts) into its own
#   build dir (build/asan) with CUDA off, and the module lands in a shadow copy of the Python
#   package (build/asan/pkg/fastlayers) so the developer's python/fastlayers/_core*.so is left
#   alone. The Python sources are re-copied on every run.
# - CPython is not instrumented, so the ASan runtime must be the first library loaded:
#   LD_PRELOAD=$(gcc -print-file-name=libasan.so). Child processes (the fuzz harness runs its
#   batches in subprocesses) inherit the preload and the options, so they are checked too.
# - detect_leaks=0: CPython and NumPy keep interned objects/caches alive at exit by design;
#   leaks are measured by tests/test_reliability.py instead (RSS + tracemalloc).
# - allocator_may_return_null=1: a test that asks NumPy for an impossible array must get a
#   MemoryError, as without ASan, not an ASan "allocation-size-too-big" abort.
# - Reports go to files (log_path) as well as the pytest log, because pytest captures fd 2
#   and an aborting process would take the captured text with it. Any report file => failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${FASTLAYERS_ASAN_BUILD_DIR:-build/asan}
pkg="$root/$build/pkg"
tag=${FASTLAYERS_SANITIZE_TAG:+-$FASTLAYERS_SANITIZE_TAG}  # parallel runs over parts of the suite
log="$root/$build/sanitize$tag.log"
reports="$root/$build/reports$tag"
mkdir -p "$pkg/fastlayers" "$reports"

# Shadow package: every Python file of python/fastlayers, not its compiled module.
find "$pkg/fastlayers" -mindepth 1 -maxdepth 1 ! -name '_core*.so' -exec rm -rf {} +
tar -C python/fastlayers --exclude='_core*.so' --exclude='__pycache__' -cf - . | tar -C "$pkg/fastlayers" -xf -

t0=$SECONDS
FASTLAYERS_BUILD_DIR=$build tools/dev_build.sh -DFASTLAYERS_CUDA=OFF \
  -DFASTLAYERS_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-g1 \
  -DFASTLAYERS_OUTPUT_DIR="$pkg/fastlayers"
build_s=$((SECONDS - t0))
echo "sanitize.sh: instrumented build took ${build_s}s"
[[ -n "${FASTLAYERS_SANITIZE_BUILD_ONLY:-}" ]] && exit 0

libasan=$(gcc -print-file-name=libasan.so)
[[ -e "$libasan" ]] || { echo "libasan.so not found (gcc -print-file-name=libasan.so)"; exit 2; }
rm -f "$reports"/*

# libstdc++ preloaded too: CPython does not link it, and ASan resolves the real __cxa_throw
# when it starts; without it the first C++ exception (every FL_CHECK -> ValueError) dies in
# "CHECK failed: asan_interceptors.cpp:320 real___cxa_throw != 0".
libstdcxx=$(gcc -print-file-name=libstdc++.so.6)
export LD_PRELOAD="$libasan:$libstdcxx${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=4096:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=0:log_path=$reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
export PYTHONPATH="$pkg"
export PYTHONFAULTHANDLER=1

# The run must use the instrumented module, never the developer's one.
python -c "import fastlayers, sys; f = fastlayers._core.__file__; print('module:', f); sys.exit(0 if f.startswith('$pkg') else 3)"

t1=$SECONDS
set +e
# --capture=sys: leave fd 2 alone, so a UBSan report (which ends the process) reaches the log
# instead of dying with pytest's captured output.
python -m pytest -p no:cacheprovider --capture=sys -q "${@:-tests}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
run_s=$((SECONDS - t1))

# Errors fail the run; "WARNING: AddressSanitizer failed to allocate" lines are the
# refusals that max_allocation_size_mb is there for (they become MemoryError) and are only listed.
shopt -s nullglob
errors=()
for f in "$reports"/*; do
  if grep -qE "ERROR: AddressSanitizer|runtime error:|CHECK failed|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$f"; then
    errors+=("$f")
  else
    echo "sanitize.sh: warning only in $f: $(sort -u "$f" | tr '\n' ' ' | cut -c1-300)" | tee -a "$log"
  fi
done
if ((${#errors[@]})); then
  echo "sanitize.sh: ${#errors[@]} sanitizer error report(s):" | tee -a "$log"
  for f in "${errors[@]}"; do echo "== $f" | tee -a "$log"; cat "$f" | tee -a "$log"; done
  ((rc == 0)) && rc=1
fi
echo "sanitize.sh: pytest exit $rc, tests took ${run_s}s (build ${build_s}s); log: $log" | tee -a "$log"
exit "$rc"
