"""Average the weights of two fine-tuned checkpoints of one network (weight-space ensembling: WiSE-FT, Wortsman et
al., CVPR 2022; model soups, Wortsman et al., ICML 2022). Where one checkpoint was fine-tuned from the other, the
two lie in one basin of the loss, and a point between them is often better than both, above all on data unlike
either's training set; the result costs one network at inference, not two.

    python -m train.soup runs/face-swap-stage1/face-swap.json runs/face-swap-stage2/face-swap.json \
        --alpha 0.3 0.5 0.7 --manifest .cache/faces/swap/manifest.csv --manifest .cache/faces/ffhq-swap/manifest.csv \
        --name face-swap --out runs --ship weights

Weights = alpha x FIRST + (1 - alpha) x SECOND (integer buffers, such as batch-norm step counters, from SECOND).
With several --alpha values, each is scored on the validation split of the manifests (one view, as the trainers
validate) and the best kept (ties: the first listed); nothing else is read. The card is SECOND's with the average
recorded in its training section; a temperature and thresholds are fitted on the validation split as a trainer
fits them (`train.calibrate --refit --tta hflip` then refits them on the card's test-time views).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from argparse import Namespace

import numpy as np
import torch.nn as nn

from core.models.checkpoint import CardError, load_detector

from .common import RunDir, binary_metrics, final_metrics, finish_run, limit_per_group, pick_device, training_rows
from .train_image import auc_by_dataset, by_dataset_text, held_out_samples, run_epoch

# What two checkpoints must share to be averaged: the same network, fed the same way.
SAME = ("architecture", "config", "input_size", "mean", "std", "interpolation", "classes", "output", "frames", "crop")


def check_compatible(a, b) -> None:
    """Raise ValueError with a one-line reason when two cards' networks cannot be averaged."""
    for key in SAME:
        if getattr(a, key) != getattr(b, key):
            raise ValueError(f"cannot average {a.name} and {b.name}: their {key} differ "
                             f"({getattr(a, key)} vs {getattr(b, key)})")


def average_state(first: dict, second: dict, alpha: float) -> dict:
    """alpha x first + (1 - alpha) x second for floating-point tensors; other tensors from second."""
    if first.keys() != second.keys():
        raise ValueError("cannot average: the checkpoints hold different tensors")
    out = {}
    for k, v in second.items():
        if first[k].shape != v.shape:
            raise ValueError(f"cannot average: tensor {k} has shapes {tuple(first[k].shape)} and {tuple(v.shape)}")
        out[k] = (alpha * first[k].float() + (1 - alpha) * v.float()).to(v.dtype) if v.is_floating_point() else v
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", help="card of the first checkpoint (e.g. the model a fine-tune started from)")
    ap.add_argument("second", help="card of the second checkpoint; the result keeps its card")
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.5], help="weight(s) of FIRST, each in [0, 1]")
    ap.add_argument("--manifest", required=True, action="append", help="the manifests SECOND was trained with")
    ap.add_argument("--max-per-group", type=int, default=0)
    ap.add_argument("--name", help="model name of the result (default: SECOND's)")
    ap.add_argument("--out", default="runs")
    ap.add_argument("--ship", help="copy the result's card and weights into this folder")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    if not args.alpha or any(not 0 <= a <= 1 for a in args.alpha):
        print("error: every --alpha must be between 0 and 1", file=sys.stderr)
        return 2
    device = pick_device(args.device)
    try:
        det_a, det_b = load_detector(args.first, device=device), load_detector(args.second, device=device)
        check_compatible(det_a.card, det_b.card)
        if det_b.card.kind != "frame":
            raise ValueError(f"{det_b.card.name} is a sequence model; only frame models are averaged here")
        state_a = {k: v.detach().cpu() for k, v in det_a.net.state_dict().items()}
        state_b = {k: v.detach().cpu() for k, v in det_b.net.state_dict().items()}
        rows, _ = training_rows(Namespace(manifest=args.manifest, task="binary", landmarks="mtcnn5"))
    except (CardError, ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    split = {s: limit_per_group([r for r in rows if r["split"] == s], args.max_per_group) for s in ("val", "test")}
    if not split["val"]:
        print("error: the manifests hold no validation rows", file=sys.stderr)
        return 2
    val_set, test_set = held_out_samples(split, "binary", 0, "strong")
    loss_fn = nn.CrossEntropyLoss()
    det = det_b

    def score(data, seed):
        return run_epoch(det, data, np.arange(len(data)), args.batch, loss_fn, None, None, device,
                         np.random.default_rng(seed), False, "score")[2:]

    tried = []
    for alpha in args.alpha:
        det.net.load_state_dict(average_state(state_a, state_b, alpha))
        vp, vy = score(val_set, 1234)
        auc = binary_metrics(vy, vp)["auc"] or 0.0
        per = auc_by_dataset(np.asarray(vy), np.asarray(vp), val_set.datasets())
        tried.append((auc, -len(tried), alpha))
        print(f"alpha {alpha:g}: validation AUC {auc:.4f}{by_dataset_text(per)}", file=sys.stderr)
    alpha = max(tried)[2]
    det.net.load_state_dict(average_state(state_a, state_b, alpha))
    card = copy.deepcopy(det_b.card)
    card.name = args.name or card.name
    card.tta, card.tta_sizes = [], []  # the temperature and thresholds below are of one view; train.calibrate --tta refits them
    first, second = det_a.card, det_b.card
    tried_txt = ", ".join(f"{a:g}: {auc:.4f}" for auc, _, a in sorted(tried, key=lambda t: t[2]))
    card.training = {
        **second.training,
        "init": f"weight average {alpha:g} x {first.name} (SHA-256 {first.sha256[:16]}...) + {1 - alpha:g} x "
                f"{second.name} (SHA-256 {second.sha256[:16]}...), no further training; alpha chosen on the "
                f"validation AUC (one view) among {tried_txt}",
        "recipe": "weight average of two checkpoints (train.soup); the parents' recipes below",
        "sources": sorted(set(first.training.get("sources", [])) | set(second.training.get("sources", [])))[:2000],
        "parents": [{k: c.training.get(k) for k in ("init", "data", "recipe", "minutes", "counts")}
                    for c in (first, second)],
    }
    run = RunDir(args.out, card.name, {"first": args.first, "second": args.second, "alpha": alpha, "tried": tried_txt,
                                       "manifest": args.manifest})
    metrics = final_metrics(lambda s, seed: score({"validation": val_set, "test": test_set}[s], seed),
                            test_set is not None and len(test_set) > 0, time.time(), device)
    fin = Namespace(display_name=card.display_name, name=card.name, task="binary",
                    terms=second.training.get("terms", ""), ship=args.ship)
    finish_run(det, card, run, metrics, fin, f"{card.name} (weight average, alpha {alpha:g})", {},
               "validation/test: crops of the manifest's val/test splits", parents=[first, second])
    return 0


if __name__ == "__main__":
    sys.exit(main())
