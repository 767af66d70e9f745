#!/usr/bin/env bash
# Runs on the lent GPU machine (device tool), from the repo root, with the CUDA build of
# benches/gpu_check.rs carried in .gpu/ (built here by .ci/build-cuda). Writes JSON lines to
# $OUT: candle's CPU-vs-CUDA agreement, step times, probe and meta-step costs, and the PyTorch
# twin's step times at the
# same sizes on the same GPU.
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
"$bin/gpu_check" --device cuda --json --steps "${STEPS:-10}" 2>&1 | tee "$OUT/candle.jsonl"
[ -x "$bin/probe_cost" ] && "$bin/probe_cost" --device cuda --json --runs 5 2>&1 | tee -a "$OUT/candle.jsonl"
[ -x "$bin/meta_step" ] && "$bin/meta_step" --device cuda --json --runs 5 2>&1 | tee -a "$OUT/candle.jsonl"
twin() { "$PY" benches/torch/twin.py bench --device cuda --steps "${STEPS:-10}" --json "$@" 2>&1 | tee -a "$OUT/torch.jsonl"; }
for dtype in fp32 bf16; do
  twin --dtype $dtype
  twin --dtype $dtype --adapters 64 --langs 2
  twin --dtype $dtype --d 768 --layers 12 --heads 12 --ffn 3072 --vocab 32000 --seq 256
done
