#!/usr/bin/env bash
# Rebuilds the shipped default detectors from ../shared/data on this machine (CPU or CUDA), then evaluates them.
# Every figure in weights/*.json and weights/benchmarks.json comes from a run of these steps.
#   bash train/build_defaults.sh            (about an hour on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
FACES=${FACES:-.cache/faces}
OUT=${OUT:-runs}
W=${W:-weights}

# 1. Face crops with core's sampler, dual-stage MTCNN and crop function; splits by group.
[ -f "$FACES/gan/manifest.csv" ] || $PY -m train.extract_faces "$DATA/LABELS.csv" --out "$FACES/gan" \
    --include '^ffhq_vs_stylegan2/'
[ -f "$FACES/real/manifest.csv" ] || $PY -m train.extract_faces "$DATA/LABELS.csv" --out "$FACES/real" \
    --labels-only real --include 'StyleTalk|MEAD|VoxCeleb' --frames 16
#    The same faces with a wide margin (hair, ears, background: where generators leave their traces) for gan-face.
[ -f "$FACES/gan-wide/manifest.csv" ] || $PY -m train.extract_faces "$DATA/LABELS.csv" --out "$FACES/gan-wide" \
    --include '^ffhq_vs_stylegan2/' --size 320 --margin 0.6
[ -f "$FACES/real-wide/manifest.csv" ] || $PY -m train.extract_faces "$DATA/LABELS.csv" --out "$FACES/real-wide" \
    --labels-only real --include 'StyleTalk|MEAD|VoxCeleb' --frames 16 --size 320 --margin 0.6

# 2. gan-face: FFHQ and real-clip frames vs StyleGAN2 face crops. Every training crop is re-encoded as JPEG so the
#    classes' different compression histories (FFHQ ~q75, StyleGAN2 ~q95 before the q90 re-save) stop separating
#    them; real faces from video frames (6 per clip) keep "not FFHQ" from meaning "fake". Wide crops (margin 0.6,
#    320 px, scored at 224): on the ensemble validation files they ranked better than face-only crops.
$PY -m train.train_image --manifest "$FACES/gan-wide/manifest.csv" --manifest "$FACES/real-wide/manifest.csv" --task binary \
    --name gan-face --display-name "GAN face (EfficientNet-Lite0)" --backbone tf_efficientnet_lite0 \
    --init imagenet-lite0 --size 224 --epochs 12 --batch 32 --lr 3e-4 --final-jpeg 60 95 --max-per-group 6 \
    --out "$OUT" --ship "$W" \
    --data-desc "FFHQ and frames of real talking-face clips (real) vs thispersondoesnotexist.com StyleGAN2 (fake) wide face crops (margin 0.6), train splits" \
    --terms "FFHQ CC BY-NC-SA 4.0, StyleGAN2 outputs, MEAD/VoxCeleb/StyleTalk samples: research and non-commercial use only"

# 3. sbi-frame: real faces only (FFHQ train split + frames of real talking-face clips) vs their self-blends.
$PY -m train.train_image --manifest "$FACES/real/manifest.csv" --manifest "$FACES/gan/manifest.csv" --task sbi \
    --name sbi-frame --display-name "Self-blended face-swap detector (EfficientNet-Lite0)" \
    --backbone tf_efficientnet_lite0 --init imagenet-lite0 --size 160 --epochs 12 --batch 32 --lr 3e-4 \
    --out "$OUT" --ship "$W" \
    --data-desc "real faces only: FFHQ train split and frames of StyleTalk, MEAD and VoxCeleb-style real clips (train split), with self-blended pseudo-fakes; no real deepfake" \
    --terms "FFHQ CC BY-NC-SA 4.0, MEAD/VoxCeleb/StyleTalk samples research-only: research and non-commercial use only"

# 4. sbi-temporal: CNN+LSTM over 8 frames with the sbi-frame encoder (frozen), real clips vs SBI clips.
$PY -m train.train_video --manifest "$FACES/real/manifest.csv" --task sbi --name sbi-temporal \
    --display-name "Temporal self-blend detector (Lite0 + LSTM)" --arch cnn_lstm --backbone tf_efficientnet_lite0 \
    --encoder-from "$W/sbi-frame.json" --freeze-encoder --frames 8 --windows 2 --batch 8 --epochs 10 --lr 1e-3 \
    --out "$OUT" --ship "$W" \
    --data-desc "real talking-face clips (StyleTalk, MEAD, VoxCeleb-style; train split) vs temporally consistent self-blended clips" \
    --terms "MEAD/VoxCeleb/StyleTalk samples research-only: research and non-commercial use only"

# 5. Evaluation on every labelled file no model trained on, side by side with MesoNet.
$PY -m train.evaluate_defaults --data "$DATA" --faces "$FACES" --weights "$W"

# 6. Descriptions and limitations into the cards.
$PY -m train.card_text "$W"
