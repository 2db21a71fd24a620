#!/usr/bin/env bash
# The whole GPU check of numpynst in one command, for a machine with an NVIDIA GPU, CuPy and PyTorch
# (the H200 lent through the device tool: Python 3.12, CuPy for CUDA 13, no network). Run it from the
# repository root; everything it produces lands in $OUT (default /tmp/numpynst_gpu_check_out):
#
#   gpu_check.log           everything printed, step by step, with each step's exit code and time
#   gpu_figures.json        the figures (benchmarks/gpu_figures.py collect), summarised at the end of the log
#   pytest_gpu.xml          JUnit report of `pytest -m gpu` (every CuPy-parametrized test + tests/test_gpu.py)
#   stylize_2048.jpg        numpynst stylize --backend cupy at 2048 px, 100 L-BFGS iterations
#   stylize_2048_plot.png   its loss curves and the content | style | result strip
#   10_gpu_with_cupy.ipynb  tutorial 10 executed (full mode) on the GPU
#   batch_contact_sheet.png numpynst batch --gpu: the contact sheet of the 3 x 2 sample grid
#   print_8192.jpg          an 8192 px print (2048 -> 4096 -> 8192 px, 15 L-BFGS iterations per scale,
#                           --max-memory 100GB): 1024 px preview | 1:1 crop from the middle; per scale
#                           the planner's estimated peak beside the measured one (pool, nvidia-smi)
#
# Steps, in order of importance (a step that would end past the deadline is cut short by `timeout`,
# later ones are skipped; collect always runs): wheels, env, pytest, vgg_step, print, vgg_precision,
# precision, agree, variants, breakdown, features, stylize, batch, notebook, collect.
# GPU_CHECK_STEPS="pytest vgg_step" runs a subset (plus wheels and collect); GPU_CHECK_BUDGET
# (seconds, default 450) is the deadline for all of it.
#
# Third round (issue 33): vgg_step's numpynst now measures im2col against the implicit-GEMM kernel per
# layer shape (NUMPYNST_GPU_CONV=measure, the default) and reports its choices; `variants` compares
# im2col, implicit and measure; `vgg_precision` times tf32 and fp16 against PyTorch with TF32 on and
# with autocast; `precision` states J, dJ/dx and a picture's agreement with fp32; `print` reports the
# planner's estimate against the measured peak per scale; `features` runs this round's new options
# (style losses, masks, checkpoints, video) where the tree has them, NumPy vs the device under the
# host-transfer trap, and prints why it skips each one it does not find.
#
# CPU mode (NUMPYNST_GPU_CHECK_CPU=1): every step's Python runs against NumPy at tiny sizes, to prove
# the plumbing (paths, file names, JSON, timeouts) here before the real run spends device time:
#   NUMPYNST_GPU_CHECK_CPU=1 PYTHON=.venv/bin/python OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh
#
# Nothing is installed from a registry: numpynst runs from this tree (PYTHONPATH), and the packages the
# device image lacks come as wheels in .whl/ (benchmarks/gpu_wheels.sh), installed into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/numpynst_gpu_check_out}
CPU=${NUMPYNST_GPU_CHECK_CPU:-0}
BUDGET=${GPU_CHECK_BUDGET:-450}
ONLY=${GPU_CHECK_STEPS:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/numpynst_gpu_check.XXXXXX")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
T0=$(date +%s)
: > "$WORK/steps.tsv"

if [ "$CPU" = 1 ]; then
  MODE=cpu BACKEND=numpy SIZES="32" REPEAT=1 STYLE_SIZE=48 STYLE_IT=3 AGREE_SIZE=32
  BATCH_SIZE=32 BATCH_IT=2 VARIANT_SIZE=32 GPU_FLAG="" PRINT_SIZE=128 PRINT_IT=12 PRINT_MEM=1GB
  PREC_SIZES="32" PREC_REPEAT=1 PREC_PICTURE=32 PREC_IT=3 FEATURE_SIZE=32 FEATURE_IT=2
  export NUMPYNST_FAST=1
else
  MODE=gpu BACKEND=cupy SIZES="512 1024 2048" REPEAT=7 STYLE_SIZE=2048 STYLE_IT=100 AGREE_SIZE=256
  BATCH_SIZE=256 BATCH_IT=50 VARIANT_SIZE=1024 GPU_FLAG=--gpu PRINT_SIZE=8192 PRINT_IT=15 PRINT_MEM=100GB
  PREC_SIZES="1024 2048" PREC_REPEAT=5 PREC_PICTURE=512 PREC_IT=50 FEATURE_SIZE=64 FEATURE_IT=5
  unset NUMPYNST_FAST
fi

# step NAME BUDGET_SECONDS COMMAND...: run COMMAND under `timeout` (its whole process group), cut to
# what is left before the deadline (keeping 20 s for collect); record exit code and seconds.
step() {
  local name=$1 want=$2; shift 2
  if [ -n "$ONLY" ] && [[ " $ONLY wheels collect " != *" $name "* ]]; then return 0; fi
  local left=$(( BUDGET - ($(date +%s) - T0) - 20 ))
  local t=$(( want < left ? want : left ))
  if [ "$t" -lt 10 ]; then
    echo "== [$name] skipped: ${left}s left before the deadline"
    printf '%s\t%s\t%s\n' "$name" 124 0 >> "$WORK/steps.tsv"
    return 0
  fi
  echo; echo "== [$name] $(date -u +%H:%M:%S), limit ${t}s: $*"
  local s=$(date +%s.%N)
  STEP_LIMIT=$t timeout -k 10 "$t" bash -o pipefail -c '"$@"' "$name" "$@"   # bash: the command may be a function
  local rc=$?
  local dt
  dt=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$rc" = 124 ] && echo "== [$name] TIMED OUT (step limit ${t}s)"
  echo "== [$name] exit $rc in ${dt}s"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >> "$WORK/steps.tsv"
  return 0
}

install_wheels() {
  if [ "$CPU" = 1 ]; then echo "CPU mode: the venv has the packages; .whl/ holds $(ls .whl/*.whl 2>/dev/null | wc -l) wheels"; return 0; fi
  ls .whl/*.whl > /dev/null 2>&1 || { echo "no .whl/ folder (benchmarks/gpu_wheels.sh): batch and notebook steps will fail"; return 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
}

gpu_env() {
  command -v nvidia-smi > /dev/null && nvidia-smi
  "$PY" benchmarks/gpu_figures.py env --json "$WORK/env.json"
}

gpu_pytest() {
  local extra=()
  "$PY" -c "import xdist" 2> /dev/null && [ "$CPU" != 1 ] && extra+=(-n 4)
  "$PY" -c "import pytest_timeout" 2> /dev/null && extra+=(--timeout 300)
  # SIGINT 20 s before the step's limit: pytest then stops like on Ctrl-C and still writes its report
  timeout -s INT -k 10 $(( STEP_LIMIT > 30 ? STEP_LIMIT - 20 : STEP_LIMIT / 2 )) \
    "$PY" -m pytest -q -rs -m gpu -p no:cacheprovider --continue-on-collection-errors \
      --junitxml="$OUT/pytest_gpu.xml" "${extra[@]}" tests/
  local rc=$?
  cp "$OUT/pytest_gpu.xml" "$WORK/pytest_gpu.xml" 2> /dev/null
  return $rc
}

# nvidia-smi samples of the GPU's used memory every 100 ms while "$@" runs (none where there is no nvidia-smi)
with_memory_samples() {
  local out=$1; shift
  local pid=""
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$out" 2> /dev/null &
    pid=$!
  fi
  "$@"
  local rc=$?
  [ -n "$pid" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null
  return $rc
}

# Output into a file, not through tee: at the step's limit `timeout` sends SIGTERM to the whole group,
# stylize then saves its best image so far and prints its summary line (stopped: interrupted), which
# a tee killed by the same signal would lose; collect reads the file.
gpu_stylize() {
  local out="$OUT/stylize_${STYLE_SIZE}.jpg"
  rm -f "$out" "$OUT/stylize_${STYLE_SIZE}_plot.png"
  with_memory_samples "$WORK/smi_stylize.csv" \
    "$PY" -m numpynst stylize numpynst/data/samples/astronaut.jpg numpynst/data/samples/ihc.jpg -o "$out" \
      --size "$STYLE_SIZE" --iterations "$STYLE_IT" --tol 0 --backend "$BACKEND" --quiet --plot \
      > "$WORK/stylize.log" 2>&1
  local rc=$?
  cat "$WORK/stylize.log"
  return $rc
}

gpu_batch() {
  "$PY" benchmarks/gpu_figures.py batch --json "$WORK/batch.json" --outdir "$WORK/batch" $GPU_FLAG \
    --size "$BATCH_SIZE" --iterations "$BATCH_IT" --timeout 200 --sheet "$OUT/batch_contact_sheet.png"
}

vgg_variants() {
  local conv=""
  [ "$CPU" = 1 ] || conv="--gpu-conv im2col implicit measure"
  "$PY" benchmarks/vgg_step.py --backend "$BACKEND" --size "$VARIANT_SIZE" --repeat 5 --pause 0.05 $conv \
    --json "$WORK/vgg_step_variants.json"
}

# The print's output through a file for the same reason as stylize's; the sheet is the one file kept.
gpu_print() {
  with_memory_samples "$WORK/smi_print.csv" \
    "$PY" benchmarks/gpu_figures.py print --json "$WORK/print.json" --backend "$BACKEND" --size "$PRINT_SIZE" \
      --iterations "$PRINT_IT" --max-memory "$PRINT_MEM" --full "$WORK/print.jpg" \
      --sheet "$OUT/print_${PRINT_SIZE}.jpg" > "$WORK/print.log" 2>&1
  local rc=$?
  cat "$WORK/print.log"
  return $rc
}

# tf32 and fp16 against PyTorch with the same precision (TF32 on / autocast), one vgg_step run each;
# on the CPU only fp16 (its NumPy emulation) runs, tf32 is a GPU mode
vgg_precision() {
  local rc=0 prec
  for prec in tf32 fp16; do
    if [ "$CPU" = 1 ] && [ "$prec" = tf32 ]; then echo "tf32: skipped in CPU mode (a GPU's tensor-core mode)"; continue; fi
    "$PY" benchmarks/vgg_step.py --backend "$BACKEND" --size $PREC_SIZES --repeat "$PREC_REPEAT" --pause 0.05 \
      --precision "$prec" --json "$WORK/vgg_step_$prec.json" || rc=$?
  done
  return $rc
}

export ROOT PY OUT CPU WORK BACKEND STYLE_SIZE STYLE_IT BATCH_SIZE BATCH_IT VARIANT_SIZE GPU_FLAG
export PRINT_SIZE PRINT_IT PRINT_MEM PREC_SIZES PREC_REPEAT PREC_PICTURE PREC_IT FEATURE_SIZE FEATURE_IT
export -f install_wheels gpu_env gpu_pytest with_memory_samples gpu_stylize gpu_batch vgg_variants gpu_print \
  vgg_precision

main() {
echo "== numpynst gpu_check ($MODE mode) $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), work folder $WORK, budget ${BUDGET}s"
step wheels    90  install_wheels
[ "$CPU" = 1 ] || export PYTHONPATH=$PYTHONPATH:/tmp/site
step env       60  gpu_env
step pytest   200  gpu_pytest
step vgg_step 150  "$PY" benchmarks/vgg_step.py --backend "$BACKEND" --size $SIZES --repeat "$REPEAT" --pause 0.05 \
                     --json "$WORK/vgg_step.json"
step print    220  gpu_print
step vgg_precision 120 vgg_precision
step precision 60  "$PY" benchmarks/gpu_figures.py precision --json "$WORK/precision.json" --backend "$BACKEND" \
                     --agree-size "$AGREE_SIZE" --size "$PREC_PICTURE" --iterations "$PREC_IT"
step agree     90  "$PY" benchmarks/gpu_figures.py agree --json "$WORK/agree.json" --backend "$BACKEND" --size "$AGREE_SIZE"
step variants  90  vgg_variants
step breakdown 60  "$PY" benchmarks/vgg_step.py --backend "$BACKEND" --size "$VARIANT_SIZE" --repeat 3 --pause 0.05 \
                     --no-torch --breakdown --json "$WORK/vgg_step_breakdown.json"
step features  90  "$PY" benchmarks/gpu_figures.py features --json "$WORK/features.json" --work "$WORK/features" \
                     --backend "$BACKEND" --size "$FEATURE_SIZE" --iterations "$FEATURE_IT"
step stylize  200  gpu_stylize
step batch     90  gpu_batch
step notebook 180  "$PY" benchmarks/gpu_figures.py notebook --out "$OUT/10_gpu_with_cupy.ipynb" --timeout 170
BUDGET=$(( BUDGET + 20 ))
step collect   20  "$PY" benchmarks/gpu_figures.py collect --work "$WORK" --out "$OUT/gpu_figures.json" --mode "$MODE"
echo "== done in $(( $(date +%s) - T0 ))s; files in $OUT:"
ls -l "$OUT"
}

main 2>&1 | tee "$OUT/gpu_check.log"
