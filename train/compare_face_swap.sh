#!/usr/bin/env bash
# Equal-budget comparison of face-swap recipes (validation split only decides; the README records every one).
# Each variant: the same 38 % of the training groups of the DFDC + FF++ crops, Adam 3e-4, batch 32, extreme
# augmentation p=0.5, stopped after the epoch that passes 6 minutes on the 2-core CPU.
#   bash train/compare_face_swap.sh        (about 30 minutes; needs .cache/faces/swap from build_defaults.sh step 1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
M=${M:-.cache/faces/swap/manifest.csv}
OUT=${OUT:-runs/compare}
C="--manifest $M --task binary --epochs 20 --batch 32 --lr 3e-4 --aug 0.5 --train-fraction 0.38 --max-minutes 6 --out $OUT --seed 0"
$PY -m train.train_image $C --name cmp-lite0-160 --backbone tf_efficientnet_lite0 --init imagenet-lite0 --size 160
$PY -m train.train_image $C --name cmp-lite2-160 --backbone tf_efficientnet_lite2 --init imagenet-lite2 --size 160
$PY -m train.train_image $C --name cmp-lite0-224 --backbone tf_efficientnet_lite0 --init imagenet-lite0 --size 224
$PY -m train.train_image $C --name cmp-lite0-160-sbi --backbone tf_efficientnet_lite0 --init imagenet-lite0 --size 160 --sbi-extra 0.5
