#!/usr/bin/env bash
# The GPU path, checked in one go on the day a GPU machine is lent (under 10 minutes on one GPU):
#   bash tools/device_check.sh [OUT]        (OUT: where logs and tables go, default ./device_check)
# 1. trains the default model on the embedded set for a few epochs, fp32 then bf16, and prints img/s;
# 2. the same under DDP with one process per GPU (NCCL), checking one checkpoint and one metrics.json;
# 3. the benchmark table's GPU columns (latency fp32 / bf16, peak memory, train img/s).
# Each step's exit status is reported; the script goes on after a failed step and exits 1 at the end.
set -u
OUT=${1:-device_check}
mkdir -p "$OUT"
PY=${PYTHON:-python}
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "torch $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)'), $GPUS GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
if [ "$GPUS" -lt 1 ]; then echo "no CUDA device: nothing to check"; exit 1; fi
failed=0
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  echo "[$name] exit $status in $((SECONDS - started)) s (log: $OUT/$name.log)"
  [ $status -eq 0 ] || { failed=1; tail -5 "$OUT/$name.log"; }
}
COMMON=(trainer.max_epochs=3 num_visualizations=2 trainer.enable_progress_bar=false data.num_workers=4)
for precision in 32-true bf16-mixed; do
  step "train_$precision" 180 $PY tools/train.py "${COMMON[@]}" trainer.accelerator=gpu trainer.devices=1 \
    trainer.precision=$precision hydra.run.dir="$OUT/train_$precision"
  $PY -c "import json,sys; t=json.load(open(sys.argv[1])); print('  img/s', t.get('train/img_per_s'), 'AP', json.load(open(sys.argv[2]))['bbox/AP'])" \
    "$OUT/train_$precision/timing.json" "$OUT/train_$precision/metrics.json" 2>/dev/null
done
step train_ddp 240 $PY tools/train.py "${COMMON[@]}" trainer=ddp trainer.accelerator=gpu trainer.devices="$GPUS" \
  hydra.run.dir="$OUT/train_ddp"
ckpts=$(find "$OUT/train_ddp" -name "*.ckpt" | wc -l)
echo "  DDP on $GPUS GPU(s): $ckpts checkpoint file(s), metrics.json: $(test -f "$OUT/train_ddp/metrics.json" && echo yes || echo no)"
step benchmark 180 $PY tools/benchmark.py device=cuda backbones=[cspdarknet_n,resnet18,vit_t] image_sizes=[320,640] \
  train=true amp=true hydra.run.dir="$OUT/benchmark"
cat "$OUT"/benchmark/*.md 2>/dev/null | head -30
exit $failed
