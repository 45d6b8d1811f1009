"""Train a per-face image classifier (design phase 1: EfficientNet at 128 px, cross-entropy, Adam 1e-3, batch 64,
10 epochs, mixed precision on CUDA) and write a run folder plus a checkpoint with its model card.

Tasks:
- `binary`: real vs fake crops from the manifest (e.g. FFHQ vs StyleGAN2 -> `gan-face`).
- `sbi`: real crops only; every real crop is also shown as a self-blended pseudo-fake (-> `sbi-frame`).

    python -m train.train_image --manifest .cache/faces/gan/manifest.csv --task binary --name gan-face \
        --backbone tf_efficientnet_lite0 --init imagenet-lite0 --size 128 --epochs 10 --ship weights
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from core.faces import CROP_MARGIN, CROP_SIZE
from core.models import CardError, ModelCard, create_model, load_detector
from core.models.archs import BACKBONE_NORMALISATION, is_swin
from core.models.checkpoint import Detector

from .common import (
    Augment,
    InitError,
    RunDir,
    WeightEma,
    add_augment_args,
    add_run_args,
    augment_from_args,
    binary_metrics,
    final_metrics,
    finish_run,
    fit_batches,
    init_backbone,
    limit_per_group,
    load_crop,
    made_batches,
    pick_device,
    seed_everything,
    training_rows,
)
from .landmarks import LANDMARK_DESC, LandmarkError
from .sbi import sample_params, self_blend

NORMALISATION = BACKBONE_NORMALISATION  # timm's pretrained configs: mean, std, interpolation


def init_from_checkpoint(net: nn.Module, card_path: str, arch_config: dict) -> str:
    """Copy every weight of a TBD image checkpoint with the same architecture into `net`; the card's description."""
    try:
        src = load_detector(card_path)
    except CardError as e:
        raise InitError(f"--init-from: {e}") from None
    c = src.card
    if c.architecture != "image_classifier" or any(c.config.get(k) != v for k, v in arch_config.items()):
        raise InitError(f"--init-from {c.name} is {c.architecture} {c.config}; this run trains image_classifier "
                        f"{arch_config}")
    net.load_state_dict(src.net.state_dict(), strict=True)
    return f"all weights from {c.name} (SHA-256 {c.sha256[:16]}...; its init: {c.training.get('init', 'unknown')})"


def build_card(args, name: str, architecture: str, config: dict, init_desc: str, frames: int = 1,
               crop: dict | None = None) -> ModelCard:
    mean, std, interp = NORMALISATION[args.backbone]
    return ModelCard(name=name, architecture=architecture, config=config, input_size=args.size, mean=mean, std=std,
                     interpolation=interp, classes=["real", "fake"], output="softmax", frames=frames,
                     crop=crop or {"size": CROP_SIZE, "margin": CROP_MARGIN}, license="see training.terms",
                     training={"init": init_desc})


class Samples:
    """In-memory crops with labels; `batch` builds (uint8 crops, labels) with SBI and augmentation applied."""

    def __init__(self, rows: list[dict], task: str, augment: Augment | None, seed: int, sbi_profile: str = "strong"):
        self.sbi_profile = sbi_profile
        self.rows = rows
        self.task = task
        self.augment = augment
        self.crops = [load_crop(r["crop_path"]) for r in rows]
        self.rng = np.random.default_rng(seed)
        if task == "sbi":  # each real crop twice: as itself (0) and as a pseudo-fake (1)
            self.items = [(i, 0) for i in range(len(rows))] + [(i, 1) for i in range(len(rows)) if rows[i]["landmarks"]]
        else:
            self.items = [(i, int(r["label"] == "fake")) for i, r in enumerate(rows)]

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return np.array([y for _, y in self.items])

    def item(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Item k as (uint8 crop, label): a real crop, or its self-blended pseudo-fake; then the augmentation."""
        i, y = self.items[k]
        img = self.crops[i]
        if self.task == "sbi" and y == 1:
            img, _ = self_blend(img, self.rows[i]["landmarks"], sample_params(rng, self.sbi_profile))
        if self.augment is not None:
            img = self.augment([img], rng)[0]
        return img, y


def class_weights(y: np.ndarray) -> torch.Tensor:
    """(N_total / 2) / N_class, as in the design."""
    n = len(y)
    return torch.tensor([(n / 2) / max((y == c).sum(), 1) for c in (0, 1)], dtype=torch.float32)


def run_epoch(det: Detector, data: Samples, order: np.ndarray, bs: int, loss_fn, opt, scaler, device, rng,
              train: bool, desc: str, ema: WeightEma | None = None,
              workers: int = 0) -> tuple[float, float, np.ndarray, np.ndarray]:
    det.train(train)

    def batches():
        for items in made_batches(data.item, order, bs, rng, workers, desc):
            yield det.preprocess([img for img, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)

    return fit_batches(det, batches(), loss_fn, opt, scaler, device, train, ema)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, action="append", help="manifest.csv (repeatable)")
    ap.add_argument("--task", choices=["binary", "sbi"], default="binary")
    ap.add_argument("--name", required=True, help="model name (checkpoint and card file names)")
    ap.add_argument("--display-name", default="")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0",  # the one backbone with offline ImageNet weights
                    choices=sorted(NORMALISATION))
    ap.add_argument("--init", default="imagenet-lite0", choices=["imagenet-lite0", "timm-hub", "none"])
    ap.add_argument("--init-from", metavar="CARD",
                    help="start from every weight of an installed image model with the same backbone (e.g. "
                         "weights/gan-face.json; where the Lite0 ImageNet package is not installed, such as a GPU "
                         "machine); replaces --init")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--aug", type=float, default=0.5, help="probability scale of the extreme augmentation (0 = off)")
    add_augment_args(ap, "crops")
    ap.add_argument("--ema", type=float, default=0,
                    help="keep an exponential moving average of the weights (decay per step, e.g. 0.99) and "
                         "validate and ship that average (0 = off)")
    ap.add_argument("--max-per-group", type=int, default=0,
                    help="at most N crops per LABELS.csv group in each split (e.g. frames of one clip; 0 = all)")
    add_run_args(ap, "training crops")
    args = ap.parse_args(argv)
    if args.ema and not 0 < args.ema < 1:
        print(f"error: --ema must be between 0 and 1 (got {args.ema})", file=sys.stderr)
        return 2

    seed_everything(args.seed)
    device = pick_device(args.device)
    try:
        rows, crop = training_rows(args)
    except (LandmarkError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    split = {s: limit_per_group([r for r in rows if r["split"] == s], args.max_per_group)
             for s in ("train", "val", "test")}
    if args.limit:
        split["train"] = split["train"][: args.limit]
        split["val"] = split["val"][: max(4, args.limit // 2)]
        split["test"] = split["test"][: max(4, args.limit // 2)]
    if not split["train"] or not split["val"]:
        print("error: the manifest needs train and val rows", file=sys.stderr)
        return 2
    arch_config = {"backbone": args.backbone, "num_classes": 2}
    if is_swin(args.backbone):  # Swin's window grid is built for one input size
        arch_config["img_size"] = args.size
    net = create_model("image_classifier", drop_rate=0.2, **arch_config)
    try:
        if args.init_from:
            init_desc = init_from_checkpoint(net, args.init_from, arch_config)
        else:
            init_desc = init_backbone(net.net, args.backbone, args.init)
    except InitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    card = build_card(args, args.name, "image_classifier", arch_config, init_desc, crop=crop)
    det = Detector(net, card).to(device)
    config = dict(vars(args), device=str(device), counts={k: len(v) for k, v in split.items()})
    run = RunDir(args.out, args.name, config)
    augment = augment_from_args(args)
    train_set = Samples(split["train"], args.task, augment, args.seed, args.sbi_profile)
    val_set = Samples(split["val"], args.task, None, args.seed + 1, args.sbi_profile)
    test_set = Samples(split["test"], args.task, None, args.seed + 2, args.sbi_profile) if split["test"] else None
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train_set.labels()).to(device))
    opt = torch.optim.Adam(det.net.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    rng = np.random.default_rng(args.seed)
    best, best_state = -1.0, None
    ema = WeightEma(det.net, args.ema) if args.ema else None
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(train_set))
        tl, ta, _, _ = run_epoch(det, train_set, order, args.batch, loss_fn, opt, scaler, device, rng, True,
                                 f"epoch {epoch} train", ema, args.workers)
        if ema is not None:  # validate (and keep) the averaged weights; training goes on from its own
            current = {k: v.detach().clone() for k, v in det.net.state_dict().items()}
            det.net.load_state_dict(ema.state)
        vrng = np.random.default_rng(1234)  # fixed pseudo-fakes for validation
        vl, va, vp, vy = run_epoch(det, val_set, np.arange(len(val_set)), args.batch, loss_fn, None, None, device,
                                   vrng, False, f"epoch {epoch} val", workers=args.workers)
        auc = binary_metrics(vy, vp)["auc"] or 0.0
        run.log_epoch({"epoch": epoch, "train_loss": tl, "train_acc": ta, "val_loss": vl, "val_acc": va,
                       "val_auc": auc, "minutes": (time.time() - t0) / 60})
        print(f"epoch {epoch}: train loss {tl:.4f} acc {ta:.3f} | val loss {vl:.4f} acc {va:.3f} AUC {auc:.4f} "
              f"| {(time.time() - t0) / 60:.1f} min", file=sys.stderr)
        if auc > best:
            best, best_state = auc, {k: v.detach().cpu().clone() for k, v in det.net.state_dict().items()}
        if ema is not None:
            det.net.load_state_dict(current)
        if args.max_minutes and (time.time() - t0) / 60 > args.max_minutes:
            print(f"stopping: time budget of {args.max_minutes} min reached", file=sys.stderr)
            break
    det.net.load_state_dict(best_state)
    sets = {"validation": val_set, "test": test_set}
    metrics = final_metrics(lambda split, seed: run_epoch(
        det, sets[split], np.arange(len(sets[split])), args.batch, loss_fn, None, None, device,
        np.random.default_rng(seed), False, split, workers=args.workers)[2:],
        test_set is not None and len(test_set) > 0, t0, device)
    finish_run(det, card, run, metrics, args, f"{args.name} ({args.backbone}, {args.task})", {
        "data": args.data_desc or ", ".join(sorted({r["dataset"] for r in split["train"]})),
        "counts": config["counts"],
        "recipe": f"Adam lr {args.lr}, batch {args.batch}, {len(run.history)} epochs, {args.size}px, "
                  f"weighted cross-entropy, extreme augmentation p={args.aug}"
                  + (f", every crop re-encoded as JPEG q{args.final_jpeg[0]}-{args.final_jpeg[1]}" if args.final_jpeg else "")
                  + (f", at most {args.max_per_group} crops per group" if args.max_per_group else "")
                  + (f", bilateral denoise p={args.clean}" if args.clean else "")
                  + (f", weights averaged over steps (EMA decay {args.ema})" if args.ema else "")
                  + (f", SBI source profile {args.sbi_profile}, masks from {LANDMARK_DESC[args.landmarks]}"
                     if args.task == "sbi" else "")
                  + f", seed {args.seed}" + (", a seed per sample (--workers)" if args.workers else ""),
        "sources": sorted({r["source"] for r in split["train"]})[:2000],
    }, "validation/test: crops of the manifest's val/test splits" +
        (" with fixed self-blended pseudo-fakes" if args.task == "sbi" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
