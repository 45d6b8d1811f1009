#!/usr/bin/env bash
# The prepared GPU run: one call of the device tool, with the kit from `python -m train.gpu_kit` carried along
# (carry [".gpu"]). It needs only what that machine's PyTorch image has (torch, timm, OpenCV, scikit-learn,
# matplotlib, tqdm, safetensors); runs start from the shipped checkpoints (--init-from), so the Lite0 ImageNet
# package is not needed, and the kit's cached 68-point landmarks make dlib unnecessary.
#
#   bash train/gpu_check.sh smoke     # CUDA paths of both trainers (autocast + GradScaler), one short epoch each
#   bash train/gpu_check.sh full      # the smoke runs, then sbi-frame at GPU scale (320 px, 68-point masks,
#                                     # WORKERS sample threads: the cores minus 2 by default)
#   bash train/gpu_check.sh archs     # the smoke runs, then one short epoch of every other architecture and
#                                     # backbone, and the shipped models scored on DEVICE against the CPU
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
case "$MODE" in smoke|full|archs) ;; *) echo "error: mode must be smoke, full or archs (got $MODE)" >&2; exit 2 ;; esac
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
if [ "$MODE" = archs ]; then
    tiny=(--manifest "$KIT/real/manifest.csv" --task sbi --init none --epochs 1 --limit 32 --workers "$WORKERS"
          --device "$DEVICE" --out "$WORK/runs" --ship "$WORK/archs")
    for b in efficientnet_b0 resnext50_32x4d swin_tiny_patch4_window7_224; do
        size=128; [ "$b" = swin_tiny_patch4_window7_224 ] && size=224
        $PY -m train.train_image "${tiny[@]}" --name "img-$b" --backbone "$b" --size "$size" --batch 16
    done
    tinyv=(--manifest "$KIT/real/manifest.csv" --task sbi --init none --epochs 1 --limit 4 --windows 1 --frames 4
           --workers "$WORKERS" --device "$DEVICE" --out "$WORK/runs" --ship "$WORK/archs")
    $PY -m train.train_video "${tinyv[@]}" --name seq-lstm-b0 --arch cnn_lstm --backbone efficientnet_b0 --size 128 \
        --batch 4
    $PY -m train.train_video "${tinyv[@]}" --name seq-swin --arch swin_seq --batch 2
    $PY - "$DEVICE" "$KIT/real/manifest.csv" weights/*.json <<'PY'
import csv, sys
from pathlib import Path

import numpy as np
from PIL import Image

from core.models import load_detector

dev, manifest = sys.argv[1], Path(sys.argv[2])
cards = [c for c in sys.argv[3:] if Path(c).with_suffix(".safetensors").exists()]  # model cards, not results files
rows = list(csv.DictReader(open(manifest)))[:16]
crops = [np.asarray(Image.open(manifest.parent / r["crop"]).convert("RGB")) for r in rows]
worst = 0.0
for card in cards:
    out = {}
    for d in ("cpu", dev):
        det = load_detector(card, device=d)
        out[d] = det.predict(crops) if det.card.kind == "frame" else det.predict_sequences([crops[:8], crops[8:]])
    diff = float(np.abs(out["cpu"] - out[dev]).max())
    worst = max(worst, diff)
    print(f"{Path(card).stem}: {len(out[dev])} scores on {dev}, largest difference from the CPU {diff:.2e}")
if worst > 0.02:
    sys.exit(f"error: scores on {dev} differ from the CPU by up to {worst:.3f}")
PY
fi
tar -czf "$OUT/runs.tgz" -C "$WORK" --exclude='*.safetensors' runs
echo "total: $(( $(date +%s) - START )) s; in $OUT:"
ls -la "$OUT"
