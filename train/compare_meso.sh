#!/usr/bin/env bash
# Equal-budget comparison of the two MesoNet architectures trained from scratch on the face-swap crops (the
# validation split alone decides; the README records both). Each variant: the same 38 % of the training groups of
# the DFDC + FF++ crops, 256 px, Adam 1e-3 (the MesoNet paper's rate), batch 32, extreme augmentation p=0.5,
# stopped after the epoch that passes 6 minutes on the 2-core CPU.
#   bash train/compare_meso.sh        (about 15 minutes; needs .cache/faces/swap from build_defaults.sh step 1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
M=${M:-.cache/faces/swap/manifest.csv}
OUT=${OUT:-runs/compare}
C="--manifest $M --task binary --epochs 20 --batch 32 --lr 1e-3 --aug 0.5 --size 256 --train-fraction 0.38 --max-minutes 6 --out $OUT --seed 0"
$PY -m train.train_image $C --name cmp-meso4 --arch meso4
$PY -m train.train_image $C --name cmp-mesoinception4 --arch mesoinception4
