#!/usr/bin/env bash
# Runs on the lent GPU machine (device tool), from the repo root, with the CUDA builds of the
# benches carried in .gpu/ (built here by .ci/build-cuda; carry .gpu/gpu_check.gz and
# .gpu/train_step.gz). Writes JSON lines to $OUT:
# - check.jsonl: CPU-vs-CUDA agreement of the loss, every gradient (the hand-written pass on
#   the fused kernels), the exact meta-gradient and 5 training steps; step phases;
# - train_step.jsonl: our step (reference ops = before, fused kernels = after) against the
#   PyTorch twin on the same GPU, fp32 and bf16, at d=256 (with and without adapters) and d=768.
# Optional .gpu/probe_cost.gz and .gpu/meta_step.gz run too when carried.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
PY=${PY:-/opt/torch/.venv/bin/python3}; [ -x "$PY" ] || PY=python3
nv=$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))')
export LD_LIBRARY_PATH="$nv:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__)' | tee -a "$OUT/gpu.txt"
date -u +%FT%TZ >> "$OUT/gpu.txt"
bin=/tmp/gpu-bin; mkdir -p "$bin"
for gz in .gpu/*.gz; do gunzip -c "$gz" > "$bin/$(basename "$gz" .gz)"; chmod +x "$bin/$(basename "$gz" .gz)"; done
STEPS=${STEPS:-10}
[ -x "$bin/gpu_check" ] && timeout 240 "$bin/gpu_check" --device cuda --json --steps "$STEPS" ${CHECK_ARGS:---small-only} 2>&1 | tee "$OUT/check.jsonl"
if [ -x "$bin/train_step" ]; then
  ts() { timeout 300 "$bin/train_step" --device cuda --json --vs-torch --python "$PY" --steps "$STEPS" --rounds "${ROUNDS:-1}" "$@" 2>&1 | tee -a "$OUT/train_step.jsonl"; }
  for p in ${PRECISIONS:-fp32 bf16}; do
    # The reference ops (before) beside the fused kernels (after) in fp32.
    k=fused; [ "$p" = fp32 ] && k=${KERNELS:-both}
    ts --precision "$p" --kernels "$k" --cases "${CASES:-0,1,2}"
  done
fi
[ -x "$bin/probe_cost" ] && "$bin/probe_cost" --device cuda --json --runs 5 2>&1 | tee -a "$OUT/candle.jsonl"
[ -x "$bin/meta_step" ] && "$bin/meta_step" --device cuda --json --runs 5 2>&1 | tee -a "$OUT/candle.jsonl"
exit 0
