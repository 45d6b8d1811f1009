#!/usr/bin/env bash
# The prepared GPU run: one call of the device tool, with the kit from `python -m train.gpu_kit` carried along
# (carry [".gpu"]). It needs only what that machine's PyTorch image has (torch, timm, OpenCV, scikit-learn,
# matplotlib, tqdm, safetensors); runs start from the shipped checkpoints (--init-from), so the Lite0 ImageNet
# package is not needed, and the kit's cached 68-point landmarks make dlib unnecessary.
#
#   bash train/gpu_check.sh smoke     # CUDA paths of both trainers (autocast + GradScaler), one short epoch each
#   bash train/gpu_check.sh full      # the smoke runs, then sbi-frame at GPU scale (320 px, 68-point masks,
#                                     # WORKERS sample threads: the cores minus 2 by default)
#   DEVICE=cpu bash train/gpu_check.sh smoke   # the same steps on this machine's CPU (a dry run)
#
# What comes back from the device is limited (8 files, 16 MiB each): the script leaves in $OUT one archive of the
# run folders without their checkpoints, and for `full` the new checkpoint and its card.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-smoke}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
KIT=${KIT:-.gpu}
OUT=${OUT:-runs/gpu-check}
MINUTES=${MINUTES:-6}
WORKERS=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 0 ))}  # sample threads for the full run
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
case "$MODE" in smoke|full) ;; *) echo "error: mode must be smoke or full (got $MODE)" >&2; exit 2 ;; esac
[ -f "$KIT/real/manifest.csv" ] || { echo "error: no kit at $KIT (python -m train.gpu_kit builds it)" >&2; exit 2; }
mkdir -p "$OUT"

$PY - "$DEVICE" <<'PY'
import sys, torch
dev = sys.argv[1]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("error: --device cuda asked for, but CUDA is not available")
PY

START=$(date +%s)
$PY -m train.train_image --manifest "$KIT/real/manifest.csv" --task sbi --name smoke-frame \
    --backbone tf_efficientnet_lite0 --init-from weights/sbi-frame.json --size 160 --epochs 1 --batch 16 \
    --limit 64 --device "$DEVICE" --out "$WORK/runs" --ship "$WORK/smoke"
$PY -m train.train_video --manifest "$KIT/real/manifest.csv" --task sbi --name smoke-temporal --arch cnn_lstm \
    --backbone tf_efficientnet_lite0 --encoder-from "$WORK/smoke/smoke-frame.json" --freeze-encoder --frames 4 \
    --windows 1 --batch 4 --epochs 1 --limit 4 --device "$DEVICE" --out "$WORK/runs" --ship "$WORK/smoke"
echo "smoke runs: $(( $(date +%s) - START )) s"

if [ "$MODE" = full ]; then
    manifests=(--manifest "$KIT/real/manifest.csv")
    [ -f "$KIT/gan/manifest.csv" ] && manifests+=(--manifest "$KIT/gan/manifest.csv")
    $PY -m train.train_image "${manifests[@]}" --task sbi --name sbi-frame-gpu \
        --display-name "Self-blended face-swap detector (EfficientNet-Lite0, GPU run)" --backbone tf_efficientnet_lite0 \
        --init-from weights/sbi-frame.json --size 320 --epochs 60 --batch 64 --lr 3e-4 --landmarks dlib68 \
        --max-minutes "$MINUTES" --workers "$WORKERS" --device "$DEVICE" --out "$WORK/runs" --ship "$OUT"
fi
tar -czf "$OUT/runs.tgz" -C "$WORK" --exclude='*.safetensors' runs
echo "total: $(( $(date +%s) - START )) s; in $OUT:"
ls -la "$OUT"
