#!/usr/bin/env bash
# Runs on the lent GPU machine (device tool): where a training step's GPU time goes, ours and
# the PyTorch twin's, at d=768 (12 layers, seq 256, batch 32). Nsight Compute times every
# kernel of a window of launches after the warm-up; the table sums the time per kernel name.
# Needs .gpu/train_step.gz carried; writes $OUT/profile_{ours,torch}_$PRECISION.txt
# (PRECISION=fp32|bf16, default fp32; TORCH=0 skips the twin; SKIP and COUNT set the window).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
PY=${PY:-/opt/torch/.venv/bin/python3}
nv=$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))')
export LD_LIBRARY_PATH="$nv:${LD_LIBRARY_PATH:-}"
NCU=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
bin=/tmp/gpu-bin; mkdir -p "$bin"
gunzip -c .gpu/train_step.gz > "$bin/train_step" && chmod +x "$bin/train_step"
table() {
  "$PY" - "$1" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
start = next(i for i, r in enumerate(rows) if "Kernel Name" in r and "Metric Value" in r)
head, rows = rows[start], rows[start:]
name, value = head.index("Kernel Name"), head.index("Metric Value")
total, count = collections.Counter(), collections.Counter()
for r in rows[1:]:
    try: v = float(r[value].replace(",", ""))
    except ValueError: continue
    k = r[name][:90]; total[k] += v; count[k] += 1
all_ns = sum(total.values())
print(f"kernels {sum(count.values())}  GPU time {all_ns/1e6:.2f} ms")
for k, v in total.most_common(30):
    print(f"{v/1e6:9.3f} ms {100*v/all_ns:5.1f}% {count[k]:6d}  {k}")
PY
}
prof() {
  local out=$1; shift
  timeout 250 "$NCU" --metrics gpu__time_duration.sum --csv --print-units base --launch-skip "${SKIP:-4000}" --launch-count "${COUNT:-2500}" "$@" \
    > "/tmp/$out.csv" 2> "/tmp/$out.err"
  tail -3 "/tmp/$out.err"
  table "/tmp/$out.csv" | tee "$OUT/$out.txt"
}
P=${PRECISION:-fp32}
prof "profile_ours_$P" "$bin/train_step" --case 2 --kernels fused --steps 3 --device cuda --precision "$P"
[ "${TORCH:-1}" = 1 ] && prof "profile_torch_$P" "$PY" benches/torch/twin.py bench --device cuda --dtype "$P" --d 768 \
  --layers 12 --heads 12 --ffn 3072 --vocab 32000 --seq 256 --batch 32 --steps 3 --json
