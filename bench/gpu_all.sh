#!/usr/bin/env bash
# The long, full GPU run (hours; for one 10-minute window use bench/gpu_session.sh): the GPU tests, tuning of
# the conv suite (fp16 NHWC, and fp32 with --precision auto), a cache export, then the conv/GEMM/model
# benchmarks against cuDNN/cuBLAS. Results (JSON + PNG) land in bench/results/. It streams: after every step
# the log and a tarball of bench/results are refreshed in $OUT (when set), so a kill keeps every finished step,
# and $OUT holds two files whatever the number of results.
# Usage, from the repo root on the GPU machine:  source .whl/env.sh && bash bench/gpu_all.sh [--quick]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
quick=""; [ "${1:-}" = "--quick" ] && quick="--limit 6"
if [ -f .whl/env.sh ] && ! python3 -c "import optuna, platformdirs" 2>/dev/null; then
  source .whl/env.sh || echo "gpu_all: wheel install failed; continuing with what the image has" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p bench/results
log_file="${OUT:-bench/results}/gpu_all.log"
publish() {  # the finished steps so far, into $OUT
  [ -n "${OUT:-}" ] && tar czf "$OUT/gpu_all_results.tgz.tmp" bench/results 2>/dev/null && mv "$OUT/gpu_all_results.tgz.tmp" "$OUT/gpu_all_results.tgz"
  return 0
}
step() {  # step NAME COMMAND...: run, log, publish
  local name="$1"; shift
  echo "=== $name ($(date +%T))" | tee -a "$log_file"
  "$@" 2>&1 | tee -a "$log_file" | tail -25
  echo "=== $name: exit ${PIPESTATUS[0]}" | tee -a "$log_file"
  publish
}
step "GPU tests"            python3 -m pytest -q -m gpu -x tests
step "tune fp16 NHWC"       python3 -m tritonconv.cli tune --dtype float16 --layout nhwc --trials 48 $quick --json bench/results/tune_fp16_nhwc.json
step "tune fp32 auto"       python3 -m tritonconv.cli tune --dtype float32 --precision auto --tolerance 3e-3 --trials 48 $quick --json bench/results/tune_fp32_auto.json
step "cache export"         python3 -m tritonconv.cli cache export bench/results/tuned_cache.json
step "conv bench fp16"      python3 bench/conv.py --dtype fp16 --layout nhwc
step "conv bench bf16"      python3 bench/conv.py --dtype bf16 --layout nhwc
step "conv bench fp32/tf32" python3 bench/conv.py --dtype fp32 --precision tf32
step "gemm bench"           python3 bench/gemm.py
step "models bench"         python3 bench/models.py
step "tuning speed"         python3 bench/tune_speed.py --runner real --problems 0 --out bench/results/tune_speed_gpu.json
echo "=== done ($(date +%T))" | tee -a "$log_file"
