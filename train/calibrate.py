"""Calibrate an installed model after its training: fit a temperature (`--method platt`: a temperature and a
bias) on the validation split of the manifests it was trained with, choose its thresholds on the calibrated
validation scores, and write both into its card (the weights, and so the card's SHA-256, do not change). For
models trained before the trainers calibrated, or whose calibration is to be refitted (`--refit`).

The validation and test crops are the trainer's own: the same manifests, the same `--max-per-group` (frame
models), the same clips and windows (sequence models), for the SBI task the same fixed pseudo-fakes; the script
checks that the network's validation AUC is the one the card recorded at training time, so a different split
cannot slip in.

    python -m train.calibrate weights/gan-face.json --manifest .cache/faces/gan-wide/manifest.csv \
        --manifest .cache/faces/real-wide/manifest.csv --max-per-group 6
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch.nn as nn

from core.calibration import METHODS
from core.models.checkpoint import TTA_VIEWS, CardError, load_detector, write_card

from .common import final_metrics, limit_per_group, pick_device, training_rows
from .landmarks import LandmarkError
from .train_image import held_out_samples
from .train_image import run_epoch as image_epoch
from .train_video import held_out_clips
from .train_video import run_epoch as clip_epoch

AUC_TOLERANCE = 0.002  # the validation AUC recomputed here may differ from the card's by rounding only


def view_scores(det, samples, rng: np.random.Generator, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(P(fake), labels) of a frame model's held-out samples as core scores them (`Detector.predict`: the card's
    test-time views and temperature); items are drawn in order, as the trainer's validation pass draws them."""
    probs, labels = [], []
    for i in range(0, len(samples), batch):
        items = [samples.item(k, rng) for k in range(i, min(i + batch, len(samples)))]
        probs.append(det.predict([img for img, _ in items]))
        labels += [y for _, y in items]
    return np.concatenate(probs), np.asarray(labels)


def calibrate_card(card_path: Path, manifests: list[str], max_per_group: int = 0, device: str = "cpu",
                   refit: bool = False, seed: int = 0, allow_other_split: bool = False,
                   tta: list[str] | None = None, method: str = "temperature",
                   tta_sizes: list[int] | None = None, outside_box: str | None = None) -> dict:
    """Fit and store the card's temperature and thresholds; returns the new calibration. Raises ValueError with a
    one-line reason (a calibrated card without `refit`, crops that are not the card's, a
    validation split that does not reproduce the card's validation AUC). `tta` (frame models): the test-time views
    the card is to score with (`[]` none, None: keep the card's), `tta_sizes` the extra input sizes (likewise),
    `outside_box` "black" to score each crop with its ring outside the face box black, "none" not to (None: keep
    the card's); the split check always uses the single view of the crop as cut, and the temperature, thresholds
    and metrics are of the scores core will report."""
    card_path = Path(card_path)
    det = load_detector(card_path, device=pick_device(device))
    card = det.card
    if card.calibration and not refit:
        raise ValueError(f"{card.name} is already calibrated (temperature {card.temperature:g}); --refit fits again")
    tta = list(card.tta) if tta is None else list(tta)
    tta_sizes = list(card.tta_sizes) if tta_sizes is None else list(tta_sizes)
    ring = card.outside_box_black if outside_box is None else outside_box == "black"
    card.tta, card.tta_sizes = tta, tta_sizes
    cut = {k: v for k, v in card.crop.items() if k != "outside_box"}  # the crop as cut
    scored = dict(cut, outside_box="black") if ring else cut  # the crop as the card will score it
    card.crop = scored
    card.validate()  # views the card cannot hold (unknown, or on a sequence model) are refused as a card error
    task = card.training.get("task", "binary")
    rows, crop = training_rows(Namespace(manifest=manifests, task=task, landmarks=card.training.get("landmarks",
                                                                                                    "mtcnn5")))
    if card.crop and {k: card.crop.get(k) for k in crop} != crop:
        raise ValueError(f"{card.name} was trained on crops {card.crop}, the manifests have {crop}")
    profile, region = card.training.get("sbi_profile", "strong"), card.training.get("sbi_region", "face")
    if card.kind == "frame":
        split = {s: limit_per_group([r for r in rows if r["split"] == s], max_per_group) for s in ("val", "test")}
        val, test = held_out_samples(split, task, seed, profile, region)
        epoch, extra = image_epoch, ()
    else:
        split = {s: [r for r in rows if r["split"] == s] for s in ("val", "test")}
        val, test = held_out_clips(split, task, card.frames, profile, bool(card.training.get("image_sequences")),
                                   region)
        epoch, extra = clip_epoch, (False,)
    sets = {"validation": val, "test": test}
    if not len(sets["validation"]):
        raise ValueError("the manifests have no val rows (or clips)")
    old = card.calibration
    card.calibration, card.tta, card.tta_sizes, card.crop = {}, [], [], cut  # the network's own probabilities, one view
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.time()
    has_test = test is not None and len(test) > 0
    metrics = final_metrics(lambda s, rs: epoch(
        det, sets[s], np.arange(len(sets[s])), 8, loss_fn, None, None, det.device, np.random.default_rng(rs), False,
        f"calibrate {s}", *extra)[2:], has_test, t0, det.device, method=method)
    single_view_auc = metrics["validation"].get("auc")
    recorded = old.get("validation_auc_single_view", (card.metrics.get("validation") or {}).get("auc"))
    got = single_view_auc
    other = recorded is not None and (got is None or abs(got - recorded) > AUC_TOLERANCE)
    if other and not allow_other_split:
        raise ValueError(f"validation AUC here {got} is not the card's {recorded:.4f}: these are not the crops "
                         f"{card.name} was validated on (manifests, --max-per-group; --allow-other-split to fit on them anyway)")
    views = bool(tta or tta_sizes or ring)
    if views:
        card.tta, card.tta_sizes, card.crop = tta, tta_sizes, scored
        metrics = final_metrics(lambda s, rs: view_scores(det, sets[s], np.random.default_rng(rs)), has_test, t0,
                                det.device, method=method)
    if "calibration" not in metrics:
        raise ValueError("the validation split holds one class only: no temperature can be fitted")
    cal = dict(metrics["calibration"], fitted_after_training=time.strftime("%Y-%m-%d") + " by train.calibrate")
    if views:
        named = ", ".join(tta + [f"{v} px" for v in tta_sizes] + (["the ring outside the face box black"] if ring else []))
        cal["tta"] = (f"fitted on the mean fake logit of the views {named}; validation AUC of the single "
                      f"view {single_view_auc:.4f}, of the views {metrics['validation'].get('auc'):.4f}")
        cal["validation_auc_single_view"] = round(float(single_view_auc), 6)
    if other:
        cal["note"] = (f"fitted on a re-made validation split, not the one of training: validation AUC {got:.4f} "
                       f"here against {recorded:.4f} at training time")
    d = json.loads(card_path.read_text())
    d["calibration"] = cal
    d["tta"] = tta
    d["tta_sizes"] = tta_sizes
    if ring or "outside_box" in d.get("crop", {}):  # other cards keep their crop entry exactly as written
        d["crop"] = card.crop
    d["thresholds"] = metrics["thresholds"]
    for s in ("validation", "test"):
        if s in metrics:
            d.setdefault("metrics", {})[s] = {m: metrics[s][m] for m in ("auc", "accuracy", "n", "confusion_matrix")
                                              if m in metrics[s]}
    write_card(card_path, d)
    load_detector(card_path)  # the written card loads and its weights still verify
    return cal


def _sizes(values: list[str] | None) -> list[int] | None:
    """--tta-sizes: None (keep the card's), [] for 'none', else the sizes as integers."""
    if values is None:
        return None
    if values == ["none"]:
        return []
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--tta-sizes takes input sizes in pixels or 'none', not {' '.join(values)}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("card", help="the model card (JSON) to calibrate, changed in place")
    ap.add_argument("--manifest", required=True, action="append", help="the manifests it was trained with")
    ap.add_argument("--max-per-group", type=int, default=0, help="as the training run had it")
    ap.add_argument("--refit", action="store_true", help="fit again over an existing calibration")
    ap.add_argument("--allow-other-split", action="store_true",
                    help="calibrate even where the validation split cannot be re-made exactly (e.g. pseudo-fakes made "
                         "by a later train.sbi); the card's calibration says so and gives both AUCs")
    ap.add_argument("--tta", choices=sorted(TTA_VIEWS) + ["none"],
                    help="frame models: score each crop and its mirror image (hflip) from now on, or one view "
                         "(none); the temperature is fitted on the scores core will report. Default: the card's")
    ap.add_argument("--tta-sizes", nargs="+", metavar="PX",
                    help="frame models: also score each crop resized to these input sizes (multi-scale), all views' "
                         "fake logits averaged; 'none' for the input size alone. Default: the card's")
    ap.add_argument("--outside-box", choices=["black", "none"],
                    help="frame models with a padded crop: score each crop with its ring outside the face box set to "
                         "black (a face with surroundings then looks as a padded pre-cropped face does), or not "
                         "(none). Default: the card's")
    ap.add_argument("--method", choices=METHODS, default="temperature",
                    help="temperature: sigmoid(z / T); platt: sigmoid(z / T + b), for scores that lean to one class")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        cal = calibrate_card(Path(args.card), args.manifest, args.max_per_group, args.device, args.refit,
                             allow_other_split=args.allow_other_split,
                             tta=None if args.tta is None else [] if args.tta == "none" else [args.tta],
                             method=args.method, tta_sizes=_sizes(args.tta_sizes), outside_box=args.outside_box)
    except (ValueError, CardError, LandmarkError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keys = ("method", "temperature", "bias", "ece_validation_before", "ece_validation", "ece_test_before", "ece_test")
    print(json.dumps({k: cal[k] for k in keys if k in cal}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
