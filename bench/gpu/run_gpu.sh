#!/usr/bin/env bash
# One-shot GPU evidence for the CUDA backend (issue 7), for a machine with an NVIDIA GPU, CuPy,
# PyTorch, nvcc and compute-sanitizer and no network:
#
#   bash bench/gpu/run_gpu.sh OUTDIR [STAGES]        STAGES default: "build test sanitize bench check"
#
#   build     pip install --no-build-isolation --no-deps .   (sm_90 only on Hopper, to halve
#             the nvcc time; override with FL_CUDA_ARCHS)                 -> OUTDIR/build.log
#   test      pytest tests/test_cuda.py                                    -> OUTDIR/test-cuda.log
#   sanitize  compute-sanitizer memcheck, then racecheck, over a small subset of those tests,
#             CuPy's memory pool off so that every array is its own allocation
#                                                                           -> OUTDIR/sanitizer.log
#   bench     bench/gpu/bench_cuda.py                          -> OUTDIR/cuda-gemm-<gpu>.json
#   check     the independent checker .gpu/gpu_check.py (if present)  -> OUTDIR/gpu-check.json
# Issue 8 (conv, conv_transpose, LSTM/RNN), not in the default list (the budget): run them in
# their own call after a build in the same warm machine, e.g. "build test8 sanitize8 bench8":
#   test8     pytest tests/test_cuda_conv_rnn.py                   -> OUTDIR/test-cuda-conv-rnn.log
#   sanitize8 compute-sanitizer memcheck + racecheck over a subset of those
#                                                                   -> OUTDIR/sanitizer-conv-rnn.log
#   bench8    bench/gpu/bench_cuda_conv_rnn.py (vs cuDNN)          -> OUTDIR/cuda-conv-rnn-<gpu>.json
# Attention (issue 9; not in the default list, run them in their own call after "build"):
#   test9     pytest tests/test_cuda_attention.py                 -> OUTDIR/test-cuda-attention.log
#   sanitize9 compute-sanitizer memcheck + racecheck on a subset of those -> OUTDIR/sanitizer-attention.log
#   bench9    bench/gpu/bench_cuda_attention.py            -> OUTDIR/cuda-attention-<gpu>.json
#                                                                   (+ OUTDIR/bench-attention.log)
#
# The whole run is bounded by FL_BUDGET seconds (default 560, under the device tool's 10-minute
# command limit): each stage gets min(its own cap, what is left), and a stage that overruns is
# killed and reported, the next one still runs. A stage list lets a session split the work over
# several calls when the budget is short (the build must then be in the same warm machine).
# The last lines printed are a summary (the device tool returns the end of the output).
set -u
OUTDIR=${1:?usage: run_gpu.sh OUTDIR [STAGES]}
STAGES=${2:-"build test sanitize bench check"}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
# CuPy warns at import when it cannot find the toolkit, and pytest runs with warnings as errors
# (pyproject: filterwarnings = error), which would make conftest see no GPU and skip every test.
if [[ -z "${CUDA_PATH:-}" ]] && command -v nvcc >/dev/null; then
  CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  export CUDA_PATH
fi
PY=${PYTHON:-python3}
BUDGET=${FL_BUDGET:-560}
START=$(date +%s)
declare -a SUMMARY=()

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
cap() {  # cap SECONDS -> min(SECONDS, left - 5), at least 1
  local l; l=$(( $(left) - 5 )); local c=$1
  (( c > l )) && c=$l
  (( c < 1 )) && c=1
  echo "$c"
}
has() { [[ " $STAGES " == *" $1 "* ]]; }
note() { SUMMARY+=("$1"); echo "== $1"; }

GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
GPU_TAG=$(echo "${GPU_NAME:-unknown}" | tr 'A-Z' 'a-z' | grep -oE 'h100|h200|a100|l40s|l4|a10g|b200|gb200' | head -1)
[[ -z "$GPU_TAG" ]] && GPU_TAG=$(echo "${GPU_NAME:-unknown}" | tr 'A-Z ' 'a-z_' | tr -cd 'a-z0-9_-' | cut -c1-24)
{
  echo "date: $(date -u +%FT%TZ)"
  echo "gpu: $GPU_NAME"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  $PY -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
  git rev-parse HEAD 2>/dev/null
} > "$OUTDIR/env.txt" 2>&1
cat "$OUTDIR/env.txt"

if has build; then
  ARCHS=${FL_CUDA_ARCHS:-}
  if [[ -z "$ARCHS" ]]; then
    case "$GPU_TAG" in h100|h200) ARCHS=90 ;; a100) ARCHS=80 ;; *) ARCHS="80;90" ;; esac
  fi
  t=$(cap 300)
  echo "== build (sm ${ARCHS}, ${t}s cap)"
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${ARCHS} -DFASTLAYERS_CUDA=ON" CMAKE_BUILD_PARALLEL_LEVEL=16 \
    timeout "$t" $PY -m pip install -v --no-build-isolation --no-deps . > "$OUTDIR/build.log" 2>&1
  rc=$?
  grep -iE "warning|error" "$OUTDIR/build.log" | grep -viE "^\s*$|Werror|-Wall" | head -20
  $PY -c "import fastlayers as fl; print(fl.info())" >> "$OUTDIR/build.log" 2>&1
  note "build rc=$rc ($(tail -1 "$OUTDIR/build.log"))"
fi

# pytest from the tests/ folder's parent, the installed package (not ./python) on the path.
if has test; then
  t=$(cap 240)
  echo "== test (${t}s cap)"
  timeout "$t" $PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py > "$OUTDIR/test-cuda.log" 2>&1
  rc=$?
  note "test rc=$rc: $(grep -E '[0-9]+ (passed|failed|skipped)' "$OUTDIR/test-cuda.log" | tail -1)"
  if grep -q "needs a CUDA GPU" "$OUTDIR/test-cuda.log"; then
    note "WARNING: GPU tests were skipped; python -c 'import cupy, fastlayers; print(fastlayers.info())' says:"
    $PY -W error -c "import cupy, fastlayers; print(fastlayers.info())" 2>&1 | tail -3
  fi
fi

if has sanitize; then
  # memcheck: every kernel family once, odd sizes; racecheck: the kernels with shared memory.
  # (ids as pytest writes them: tuple parameters become shapeN / ashapeN)
  SUB_MEM='(test_gemm_f32 and (7-13-5 or 129-65-257)) or (test_gemm_half and 33-47-29) or test_gemm_alpha_beta
    or test_matmul or (test_softmax and (shape2 or shape3 or shape4)) or (test_layer_norm and True and (shape1 or shape2))
    or (test_batch_norm and shape1) or (test_max_pool2d and (shape1 or shape3)) or (test_avg_pool2d and shape6)
    or test_adaptive_pools or (test_cross_entropy and mean and (shape1 or shape3)) or (test_point_losses and shape1)
    or (test_embedding and int64) or test_upsample or (test_dropout and 0.3) or (test_activations and 1027)
    or test_kernels_run_on'
  SUB_RACE='(test_gemm_f32 and 129-65-257) or (test_gemm_half and 33-47-29) or test_gemm_half_both
    or (test_softmax and (shape2 or shape3)) or (test_layer_norm and True and (shape1 or shape2))
    or (test_batch_norm and shape1) or (test_cross_entropy and mean and shape1 and 0.1)
    or (test_point_losses and shape1 and mean)'
  : > "$OUTDIR/sanitizer.log"
  for tool in memcheck racecheck; do
    t=$(cap 150)
    if [[ $tool == memcheck ]]; then SUBSET=$(echo $SUB_MEM); else SUBSET=$(echo $SUB_RACE); fi
    echo "== compute-sanitizer $tool (${t}s cap)"
    echo "===== $tool =====" >> "$OUTDIR/sanitizer.log"
    extra=""
    [[ $tool == memcheck ]] && extra="--leak-check no"
    FASTLAYERS_NO_CUPY_POOL=1 timeout "$t" compute-sanitizer --tool "$tool" $extra --error-exitcode 99 \
      --target-processes all $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda.py -k "$SUBSET" \
      >> "$OUTDIR/sanitizer.log" 2>&1
    rc=$?
    note "sanitizer $tool rc=$rc (99 = errors found, 124 = timed out): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUTDIR/sanitizer.log" | tail -1) $(grep -E '[0-9]+ (passed|failed)' "$OUTDIR/sanitizer.log" | tail -1)"
  done
fi

if has bench; then
  t=$(cap 300)
  echo "== bench (${t}s cap)"
  timeout "$t" $PY bench/gpu/bench_cuda.py --json "$OUTDIR/cuda-gemm-${GPU_TAG}.json" --budget $(( t - 30 )) \
    > "$OUTDIR/bench.log" 2>&1
  rc=$?
  tail -40 "$OUTDIR/bench.log"
  note "bench rc=$rc: $(grep -E 'targets met' "$OUTDIR/bench.log" | tail -1)"
fi

# ---- issue 8: convolution and recurrent kernels ------------------------------------------------
if has test8; then
  t=$(cap 240)
  echo "== test8 (${t}s cap)"
  timeout "$t" $PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda_conv_rnn.py > "$OUTDIR/test-cuda-conv-rnn.log" 2>&1
  rc=$?
  note "test8 rc=$rc: $(grep -E '[0-9]+ (passed|failed|skipped)' "$OUTDIR/test-cuda-conv-rnn.log" | tail -1)"
  grep -E "^(FAILED|ERROR)" "$OUTDIR/test-cuda-conv-rnn.log" | head -15
fi

if has sanitize8; then
  # memcheck: each kernel once at edge shapes; racecheck: the kernels with shared memory
  # (implicit GEMM, depthwise weight gradient, rnn step, transpose, column sums).
  SUB8_MEM='(test_conv2d and (3x3-odd or depthwise-mult2-stride2 or groups3 or split-k or 1x1-c132))
    or (test_conv_transpose2d and (asym-groups2-outpad or depthwise-s2)) or test_conv2d_noncontiguous
    or (test_lstm and (5-3-4-8 or 5-3-7-11 or 4-9-16-32)) or (test_rnn and tanh and 6-4-5-13) or test_cells
    or test_lstm_empty or (test_lstm_step_kernel_variants and 13) or (test_conv2d_winograd and same)'
  SUB8_RACE='(test_conv2d and (3x3-odd or depthwise-batch-split or split-k))
    or (test_lstm and (6-4-5-13 or 4-9-16-32)) or (test_rnn and relu and 5-3-4-8)
    or (test_lstm_step_kernel_variants and 12 and (bpt8 or pdl))'
  : > "$OUTDIR/sanitizer-conv-rnn.log"
  for tool in memcheck racecheck; do
    t=$(cap 150)
    if [[ $tool == memcheck ]]; then SUBSET=$(echo $SUB8_MEM); else SUBSET=$(echo $SUB8_RACE); fi
    echo "== compute-sanitizer $tool, conv/rnn (${t}s cap)"
    echo "===== $tool =====" >> "$OUTDIR/sanitizer-conv-rnn.log"
    extra=""
    [[ $tool == memcheck ]] && extra="--leak-check no"
    FASTLAYERS_NO_CUPY_POOL=1 timeout "$t" compute-sanitizer --tool "$tool" $extra --error-exitcode 99 \
      --target-processes all $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda_conv_rnn.py -k "$SUBSET" \
      >> "$OUTDIR/sanitizer-conv-rnn.log" 2>&1
    rc=$?
    note "sanitizer8 $tool rc=$rc (99 = errors found, 124 = timed out): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUTDIR/sanitizer-conv-rnn.log" | tail -1) $(grep -E '[0-9]+ (passed|failed)' "$OUTDIR/sanitizer-conv-rnn.log" | tail -1)"
  done
fi

if has bench8; then
  t=$(cap 300)
  echo "== bench8 (${t}s cap)"
  timeout "$t" $PY bench/gpu/bench_cuda_conv_rnn.py --json "$OUTDIR/cuda-conv-rnn-${GPU_TAG}.json" --budget $(( t - 30 )) \
    > "$OUTDIR/bench-conv-rnn.log" 2>&1
  rc=$?
  tail -45 "$OUTDIR/bench-conv-rnn.log"
  note "bench8 rc=$rc: $(grep -E 'targets met' "$OUTDIR/bench-conv-rnn.log" | tail -1)"
fi

if has check; then
  CHECK=""
  for c in .gpu/gpu_check.py shared/gpu_check.py ../shared/gpu_check.py; do [[ -f $c ]] && CHECK=$c && break; done
  if [[ -z "$CHECK" ]]; then
    note "check skipped: no gpu_check.py in .gpu/ (copy /work/shared/gpu_check.py there and carry .gpu)"
  else
    t=$(cap 200)
    echo "== independent check $CHECK (${t}s cap)"
    timeout "$t" $PY "$CHECK" --json "$OUTDIR/gpu-check.json" > "$OUTDIR/gpu-check.log" 2>&1
    rc=$?
    tail -30 "$OUTDIR/gpu-check.log"
    note "check rc=$rc: $(tail -1 "$OUTDIR/gpu-check.log")"
  fi
fi

# ---- attention (issue 9) ----------------------------------------------------------------------
if has test9; then
  t=$(cap 300)
  echo "== test9 (${t}s cap)"
  timeout "$t" $PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda_attention.py > "$OUTDIR/test-cuda-attention.log" 2>&1
  rc=$?
  tail -25 "$OUTDIR/test-cuda-attention.log"
  note "test9 rc=$rc: $(grep -E '[0-9]+ (passed|failed|skipped)' "$OUTDIR/test-cuda-attention.log" | tail -1)"
fi

if has sanitize9; then
  # memcheck: both paths, every flash head dim once, masks, GQA, empty rows/keys; racecheck: the
  # flash kernels (shared memory, cp.async double buffers, the dS^T tile).
  SUB9_MEM='(test_vs_reference and (1x4x2x133x137x32x32 or 1x2x2x70x97x256x256 or 2x6x2x45x101x32x20) and True)
    or test_rows_with_nothing or test_empty_keys or test_zero_size or test_non_contiguous
    or (test_mask_broadcast and 2x3x7x9)'
  SUB9_RACE='(test_flash_and_generic and (64 or 128 or 256))'
  : > "$OUTDIR/sanitizer-attention.log"
  for tool in memcheck racecheck; do
    t=$(cap 150)
    if [[ $tool == memcheck ]]; then SUBSET=$(echo $SUB9_MEM); else SUBSET=$(echo $SUB9_RACE); fi
    echo "== compute-sanitizer $tool, attention (${t}s cap)"
    echo "===== $tool =====" >> "$OUTDIR/sanitizer-attention.log"
    extra=""
    [[ $tool == memcheck ]] && extra="--leak-check no"
    FASTLAYERS_NO_CUPY_POOL=1 timeout "$t" compute-sanitizer --tool "$tool" $extra --error-exitcode 99 \
      --target-processes all $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda_attention.py -k "$SUBSET" \
      >> "$OUTDIR/sanitizer-attention.log" 2>&1
    rc=$?
    note "sanitizer9 $tool rc=$rc (99 = errors found, 124 = timed out): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUTDIR/sanitizer-attention.log" | tail -1) $(grep -E '[0-9]+ (passed|failed)' "$OUTDIR/sanitizer-attention.log" | tail -1)"
  done
fi

if has bench9; then
  t=$(cap 330)
  echo "== bench9 (${t}s cap)"
  timeout "$t" $PY bench/gpu/bench_cuda_attention.py --json "$OUTDIR/cuda-attention-${GPU_TAG}.json" \
    --budget $(( t - 40 )) > "$OUTDIR/bench-attention.log" 2>&1
  rc=$?
  tail -22 "$OUTDIR/bench-attention.log"
  note "bench9 rc=$rc: $(grep -E 'targets met' "$OUTDIR/bench-attention.log" | tail -1)"
fi

echo
echo "===== summary ($(( $(date +%s) - START ))s, gpu: $GPU_NAME) ====="
for s in "${SUMMARY[@]}"; do echo "  $s"; done
grep -E "passed|failed|error" "$OUTDIR/test-cuda.log" 2>/dev/null | tail -3
grep -E "passed|failed|error" "$OUTDIR/test-cuda-conv-rnn.log" 2>/dev/null | tail -3
