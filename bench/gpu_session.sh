#!/usr/bin/env bash
# One GPU session of at most 9.5 minutes, the most important answers first. Each stage is bounded twice: by
# `timeout` here and by its own deadline inside (it stops starting new work), and writes JSON lines into $OUT as
# it goes, so a kill keeps everything that finished. Six files in all:
#   session.jsonl      stage 0 (GPU, torch, triton, cuDNN, deps, precompile == launch key per family) + every
#                      stage's start / end / exit code
#   correctness.jsonl  stage 1: differential sweep on real compiles (bf16, Hopper paths, split-K, epilogues, batch 1)
#   speed.jsonl        stage 2: ~10 fp16 NHWC layers, cuDNN NCHW + NHWC vs every family's default, TFLOP/s, roofline
#   tuning.jsonl       stage 3: one study under a hard budget (per-trial compile / check / time) vs an exhaustive sweep
#   extras.jsonl       stage 4: matmul vs cuBLAS, CUDA-graph capture + replay, a converted model vs eager;
#                      stage 4b (algorithms): Winograd, int8 (and fp8 where present) vs cuDNN fp16 on ResNet-50 3x3s
#   pytest.log         stage 5: pytest -m gpu with whatever time is left
# Usage, from the repository root:
#   GPU image:  bash shared/device/bootstrap.sh here first (wheels into .whl/), then on the GPU machine:
#               source .whl/env.sh && bash bench/gpu_session.sh          (results in $OUT, else bench/results/gpu_session)
#   CPU:        bash bench/gpu_session.sh --dry-run [--out DIR]           (interpreter, tiny shapes, same stages and files)
#               [--scale N]: every dry-run time box N times longer (a loaded CPU; the tests use it)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dry=""; out="${OUT:-}"; total=570; scale=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry="--dry-run"; shift ;;
    --out) out="$2"; shift 2 ;;
    --total) total="$2"; shift 2 ;;
    --scale) scale="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$scale" =~ ^[1-9][0-9]*$ ]] || { echo "--scale takes a whole number >= 1, got $scale" >&2; exit 2; }
[ -n "$out" ] || out="bench/results/gpu_session${dry:+_dry_run}"
mkdir -p "$out"
if [ -f .whl/env.sh ] && [ -z "$dry" ] && ! python3 -c "import optuna, platformdirs" 2>/dev/null; then
  source .whl/env.sh || echo "gpu_session: wheel install failed; continuing with what the image has" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
if [ -n "$dry" ]; then  # seconds per stage: env correctness speed tuning extras algorithms pytest
  budgets=(); for b in 40 45 30 40 30 45 60; do budgets+=($(( b * scale ))); done
  total=$(( (total < 300 ? total : 300) * scale ))
else
  budgets=(45 150 110 140 70 35 0)
fi
note() { printf '{"stage": "session", "kind": "%s", "t_s": %s%s}\n' "$1" "$(( $(date +%s) - start ))" "${2:+, $2}" >> "$out/session.jsonl"; }
left() { echo $(( total - ($(date +%s) - start) )); }

dry_json=false; margin=8; [ -n "$dry" ] && dry_json=true
note begin "\"dry_run\": $dry_json, \"total_s\": $total, \"scale\": $scale, \"host\": \"$(hostname)\""
i=0
for stage in env correctness speed tuning extras algorithms; do
  budget=${budgets[$i]}; i=$((i + 1))
  room=$(( $(left) - 20 ))  # keep 20 s for pytest and the last lines
  [ "$budget" -gt "$room" ] && budget=$room
  if [ "$budget" -lt 5 ]; then note skipped "\"name\": \"$stage\", \"reason\": \"no time left\""; continue; fi
  interp=""
  [ -n "$dry" ] && [ "$stage" != env ] && interp="TRITON_INTERPRET=1"
  echo "=== stage $stage (budget ${budget}s, $(left)s left in the session)"
  # the stage's own deadline is 8 s shorter than the timeout that kills it
  inner=$(( budget - margin ))
  env $interp timeout -k 5 "$budget" python3 bench/gpu_session.py "$stage" --out "$out" --deadline "$inner" $dry
  rc=$?
  note stage_exit "\"name\": \"$stage\", \"rc\": $rc, \"timed_out\": $([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo true || echo false)"
  file=$stage; [ $stage = env ] && file=session; [ $stage = algorithms ] && file=extras
  tail -n 2 "$out/$file.jsonl" 2>/dev/null | cut -c1-300
done

rest=$(( $(left) - 5 ))
budget=${budgets[6]}; [ "$budget" -eq 0 ] || [ "$budget" -gt "$rest" ] && budget=$rest
echo "=== stage pytest (budget ${budget}s)"
if [ "$budget" -ge 5 ]; then
  if [ -n "$dry" ]; then  # no GPU: prove the GPU tests still collect
    timeout -k 5 "$budget" python3 -m pytest -q -m gpu --collect-only -p no:cacheprovider tests > "$out/pytest.log" 2>&1
  else
    timeout -k 5 "$budget" python3 -m pytest -q -m gpu -p no:cacheprovider tests > "$out/pytest.log" 2>&1
  fi
  rc=$?
  note stage_exit "\"name\": \"pytest\", \"rc\": $rc, \"timed_out\": $([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo true || echo false)"
  tail -n 3 "$out/pytest.log"
else
  echo "no time left for pytest" > "$out/pytest.log"; note skipped '"name": "pytest", "reason": "no time left"'
fi
note end "\"elapsed_s\": $(( $(date +%s) - start ))"
ls -l "$out"
