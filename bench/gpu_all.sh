#!/usr/bin/env bash
# Everything that needs a GPU, in one call (device time is scarce): the GPU tests (bf16 numerics, CUDA graphs,
# real compiles), tuning of the conv suite, then the conv/GEMM/model benchmarks against cuDNN/cuBLAS. Results
# (JSON + PNG) land in bench/results/ and, when $OUT is set (the lent-GPU workplace), are copied there too.
# Usage, from the repo root on the GPU machine:  bash bench/gpu_all.sh [--quick]
set -uo pipefail
quick=""; [ "${1:-}" = "--quick" ] && quick="--limit 6"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p bench/results
log() { echo; echo "=== $* ($(date +%T))"; }
log "GPU tests";            python -m pytest -q -m gpu -x tests 2>&1 | tail -25
log "tune fp16 NHWC";       python -m tritonconv.cli tune --dtype float16 --layout nhwc --trials 48 $quick --json bench/results/tune_fp16_nhwc.json
log "tune fp32 auto";       python -m tritonconv.cli tune --dtype float32 --precision auto --tolerance 3e-3 --trials 48 $quick --json bench/results/tune_fp32_auto.json
log "cache export";         python -m tritonconv.cli cache export bench/results/tuned_cache.json
log "conv bench fp16";      python bench/conv.py --dtype fp16 --layout nhwc
log "conv bench bf16";      python bench/conv.py --dtype bf16 --layout nhwc
log "conv bench fp32/tf32"; python bench/conv.py --dtype fp32 --precision tf32
log "gemm bench";           python bench/gemm.py
log "models bench";         python bench/models.py
if [ -n "${OUT:-}" ]; then cp bench/results/*.json bench/results/*.png "$OUT"/ 2>/dev/null; fi
log "done"
