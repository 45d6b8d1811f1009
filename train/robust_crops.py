"""How a frame model's ranking of held-out face crops moves under perturbations (core.perturb: JPEG, H.264,
resizing, blur, noise), and, given two cards, whether one is more robust than the other beyond noise.

A fixed sample of one split of the manifests (`--n` crops drawn with `--seed`; the same crops for every card) is
perturbed once per condition (the same perturbed pixels for every card, each crop with its own seed) and scored as
core scores it (`Detector.predict`: the card's test-time views and calibration). For two cards the difference of
their AUCs (second minus first) gets a 95 % interval from a paired bootstrap over groups (a fake and its real
source, the crops of one video, are drawn together), so a gain that one resampling of the groups undoes is not
read as one.

    python -m train.robust_crops weights/face-swap.json runs/x/face-swap.json --manifest .cache/faces/swap/manifest.csv \
        --split val --n 1200 --perturb jpeg:30 --perturb h264:23,30,36,42 --out robust.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from core import perturb
from core.models.checkpoint import CardError, load_detector

from .common import load_crop, read_manifests
from .train_image import auc_by_dataset

DEFAULT_PERTURBATIONS = ["jpeg:30", "h264:23,30,36,42", "downscale:3", "blur:2", "noise:10"]


def sample_rows(manifests: list[str], split: str, n: int, seed: int) -> list[dict]:
    """`n` rows of one split (all when n <= 0), drawn by a seeded permutation of the manifests' rows in order."""
    rows = [r for r in read_manifests(manifests) if r["split"] == split]
    if not rows:
        raise ValueError(f"no crops in the {split!r} split of {', '.join(manifests)}")
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in (order[:n] if n > 0 else order)]


def group_bootstrap_auc_diff(y: np.ndarray, p0: np.ndarray, p1: np.ndarray, groups: list[str],
                             n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of AUC(p1) - AUC(p0), resampling whole groups with replacement (both cards the same draw)."""
    names, inv = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])
        if y[idx].min() == y[idx].max():
            continue
        diffs.append(roc_auc_score(y[idx], p1[idx]) - roc_auc_score(y[idx], p0[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def _aucs(y: np.ndarray, p: np.ndarray, datasets: list[str]) -> dict:
    """AUC of all crops and of each dataset that holds both classes (the trainer's per-dataset reading)."""
    return {k: round(v, 4) for k, v in {"all": float(roc_auc_score(y, p)), **auc_by_dataset(y, p, datasets)}.items()}


def measure(cards: list[str], rows: list[dict], specs: list[str], n_boot: int = 2000, seed: int = 0) -> dict:
    """Per condition (clean first, then each strength of each spec): every card's AUC, all and per dataset, its
    mean P(fake) on reals, and with two cards the difference and its group-bootstrap interval."""
    conditions = [("clean", None)]
    for spec in specs:
        name, strengths = perturb.parse_spec(spec)
        conditions += [(name, s) for s in strengths]
    dets = [load_detector(c) for c in cards]
    imgs = [load_crop(r["crop_path"]) for r in rows]
    y = np.array([r["label"] == "fake" for r in rows], int)
    if y.min() == y.max():
        raise ValueError("the sampled crops hold one class only; an AUC needs both")
    datasets = [r["dataset"] for r in rows]
    groups = [r["group"] for r in rows]
    result = {"cards": [str(c) for c in cards], "n": len(rows), "fakes": int(y.sum()), "conditions": []}
    for name, strength in conditions:
        x = imgs if name == "clean" else [perturb.apply(name, strength, [im], seed=i)[0] for i, im in enumerate(imgs)]
        probs = [det.predict(x) for det in dets]
        entry = {"perturbation": name, "strength": strength,
                 "auc": {c: _aucs(y, p, datasets) for c, p in zip(result["cards"], probs)},
                 "mean_p_real": {c: round(float(p[y == 0].mean()), 4) for c, p in zip(result["cards"], probs)}}
        if len(dets) == 2:
            lo, hi = group_bootstrap_auc_diff(y, probs[0], probs[1], groups, n_boot, seed)
            entry["diff"] = {"value": round(entry["auc"][result["cards"][1]]["all"]
                                            - entry["auc"][result["cards"][0]]["all"], 4),
                             "ci95": [round(lo, 4), round(hi, 4)]}
        result["conditions"].append(entry)
        print(f"{name:10s} {'' if strength is None else strength:>5}  "
              + "  ".join(f"{a['all']:.3f}" for a in entry["auc"].values())
              + (f"  diff {entry['diff']['value']:+.3f} [{entry['diff']['ci95'][0]:+.3f}, {entry['diff']['ci95'][1]:+.3f}]"
                 if "diff" in entry else ""), file=sys.stderr, flush=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cards", nargs="+", help="one card, or two (baseline, candidate) to compare")
    ap.add_argument("--manifest", required=True, action="append")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--n", type=int, default=1200, help="crops to sample (0 = the whole split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--perturb", action="append", default=None,
                    help=f"NAME[:S1,S2,..] (core.perturb; default {' '.join(DEFAULT_PERTURBATIONS)})")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", help="write the result as JSON here (default: stdout)")
    args = ap.parse_args(argv)
    if len(args.cards) > 2:
        print("error: give one card, or two to compare", file=sys.stderr)
        return 2
    try:
        rows = sample_rows(args.manifest, args.split, args.n, args.seed)
        result = measure(args.cards, rows, args.perturb or DEFAULT_PERTURBATIONS, args.n_boot, args.seed)
    except (ValueError, CardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.update(split=args.split, seed=args.seed, manifests=args.manifest,
                  created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  what=f"face crops of the {args.split} split ({result['n']}, {result['fakes']} fake), each model alone "
                       "(its test-time views and calibration), clean and perturbed once per condition")
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
