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
    RESUME_FILE,
    Augment,
    InitError,
    WeightEma,
    add_augment_args,
    add_run_args,
    augment_desc,
    augment_from_args,
    binary_metrics,
    border_rect,
    copy_grids,
    fill_border,
    final_metrics,
    finish_run,
    fit_batches,
    init_backbone,
    limit_per_group,
    load_crop,
    made_batches,
    open_run,
    pick_device,
    restore_state,
    save_state,
    seed_everything,
    training_rows,
    zoom_face,
)
from .landmarks import LANDMARK_DESC, LandmarkError
from .sbi import sample_params, self_blend

NORMALISATION = BACKBONE_NORMALISATION  # timm's pretrained configs: mean, std, interpolation


def init_from_checkpoint(net: nn.Module, card_path: str, arch_config: dict) -> tuple[str, ModelCard]:
    """Copy every weight of a TBD image checkpoint with the same architecture into `net`; the description of that
    start for the card, and the checkpoint's card."""
    try:
        src = load_detector(card_path)
    except CardError as e:
        raise InitError(f"--init-from: {e}") from None
    c = src.card
    if c.architecture != "image_classifier" or any(c.config.get(k) != v for k, v in arch_config.items()):
        raise InitError(f"--init-from {c.name} is {c.architecture} {c.config}; this run trains image_classifier "
                        f"{arch_config}")
    net.load_state_dict(src.net.state_dict(), strict=True)
    return f"all weights from {c.name} (SHA-256 {c.sha256[:16]}...; its init: {c.training.get('init', 'unknown')})", c


MESO_ARCHS = ("meso4", "mesoinception4")
MESO_NORMALISATION = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "bilinear")


def build_card(args, name: str, architecture: str, config: dict, init_desc: str, frames: int = 1,
               crop: dict | None = None) -> ModelCard:
    meso = architecture in MESO_ARCHS
    mean, std, interp = MESO_NORMALISATION if meso else NORMALISATION[args.backbone]
    return ModelCard(name=name, architecture=architecture, config=config, input_size=args.size, mean=mean, std=std,
                     interpolation=interp, classes=["real", "fake"], output="sigmoid" if meso else "softmax",
                     frames=frames,
                     crop=crop or {"size": CROP_SIZE, "margin": CROP_MARGIN}, license="see training.terms",
                     training={"init": init_desc})


CONTEXT_MIN_INSIDE = 0.8  # a real crop lends its surroundings (--border-fill) if at most 20 % of it is padding


def _inside_share(crop: np.ndarray, rect: tuple[int, int, int, int] | None) -> float:
    if rect is None:
        return 1.0
    t, b, l, r = rect
    return (b - t) * (r - l) / float(crop.shape[0] * crop.shape[1])


class Samples:
    """In-memory crops with labels; `item` builds one (uint8 crop, label) with SBI and augmentation applied.

    task "sbi": every real crop twice, as itself (real) and as a self-blended pseudo-fake.
    task "binary": every crop with its label; `sbi_extra` F > 0 adds pseudo-fakes blended from F x (number of real
    crops with landmarks) real crops (evenly spaced, a new blend each time one is drawn) as extra fakes.
    `border_fill` P > 0: a crop with black padding (a pre-cropped face, `border_rect`) has it replaced with
    probability P, half the time by mirroring the crop and half by the surroundings of a random real crop with
    little or no padding (its own padding mirrored away; `fill_border`), before the augmentation. `zoom` P > 0: with
    probability P a crop is shown closer, anywhere from its face box to the whole crop (`zoom_face`)."""

    def __init__(self, rows: list[dict], task: str, augment: Augment | None, seed: int, sbi_profile: str = "strong",
                 sbi_extra: float = 0.0, sbi_region: str = "face", border_fill: float = 0.0, zoom: float = 0.0):
        self.sbi_profile = sbi_profile
        self.sbi_region = sbi_region
        self.rows = rows
        self.task = task
        self.augment = augment
        self.crops = [load_crop(r["crop_path"]) for r in rows]
        self.border_fill = border_fill
        self.zoom = zoom
        self.rects = [border_rect(c) for c in self.crops] if border_fill > 0 else []
        self.context = [c if rect is None else fill_border(c, rect, "mirror")  # nearly border-free real crops
                        for c, rect, r in zip(self.crops, self.rects, rows)
                        if r["label"] == "real" and _inside_share(c, rect) >= CONTEXT_MIN_INSIDE]
        self.rng = np.random.default_rng(seed)
        blendable = [i for i in range(len(rows)) if rows[i]["landmarks"]]
        if task == "sbi":  # (crop index, label, self-blend?)
            reals = range(len(rows))
            self.items = [(i, 0, False) for i in reals] + [(i, 1, True) for i in blendable]
        else:
            self.items = [(i, int(r["label"] == "fake"), False) for i, r in enumerate(rows)]
            real_blendable = [i for i in blendable if rows[i]["label"] == "real"]
            k = int(round(sbi_extra * len(real_blendable)))
            if k:
                pick = np.linspace(0, len(real_blendable) - 1, min(k, len(real_blendable))).round().astype(int)
                self.items += [(real_blendable[j], 1, True) for j in pick]

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return np.array([y for _, y, _ in self.items])

    def datasets(self) -> list[str]:
        """Each item's dataset (a pseudo-fake's is its real crop's)."""
        return [self.rows[i].get("dataset", "") for i, _, _ in self.items]

    def item(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Item k as (uint8 crop, label): a crop, or a self-blended pseudo-fake of a real one; then the augmentation."""
        i, y, blend = self.items[k]
        img = self.crops[i]
        if blend:
            img, _ = self_blend(img, self.rows[i]["landmarks"], sample_params(rng, self.sbi_profile, self.sbi_region))
        if self.border_fill and self.rects[i] is not None and rng.random() < self.border_fill:
            how = "context" if self.context and rng.random() < 0.5 else "mirror"
            ctx = self.context[int(rng.integers(len(self.context)))] if how == "context" else None
            img = fill_border(img, self.rects[i], how, ctx)
        if self.zoom and rng.random() < self.zoom:
            img = zoom_face(img, self.rows[i]["landmarks"], rng)
        if self.augment is not None:
            img = self.augment([img], rng)[0]
        return img, y


def held_out_samples(split: dict, task: str, seed: int, sbi_profile: str,
                     sbi_region: str = "face") -> tuple[Samples, Samples | None]:
    """The validation and test sets of a run (no augmentation; fixed pseudo-fakes for the SBI task): one place, so
    train.calibrate rebuilds exactly what the trainer validated on."""
    return (Samples(split["val"], task, None, seed + 1, sbi_profile, sbi_region=sbi_region),
            Samples(split["test"], task, None, seed + 2, sbi_profile, sbi_region=sbi_region) if split["test"] else None)


def _group_hash(group: str) -> float:
    import hashlib

    return int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def auc_by_dataset(y: np.ndarray, p: np.ndarray, datasets: list[str]) -> dict[str, float]:
    """The validation AUC of each dataset that holds both classes (a dataset of reals only has none)."""
    out = {}
    ds = np.array(datasets)
    for name in sorted(set(datasets)):
        m = ds == name
        if len(set(y[m].tolist())) == 2:
            out[name] = float(binary_metrics(y[m], p[m])["auc"])
    return out


def by_dataset_text(by_dataset: dict[str, float]) -> str:
    """The per-dataset AUCs for a progress line ("; NAME AUC" each), empty where fewer than two datasets have one."""
    return "".join(f"; {name[:24]} {a:.4f}" for name, a in by_dataset.items()) if len(by_dataset) > 1 else ""


def selection_auc(auc: float, by_dataset: dict[str, float], rule: str) -> float:
    """The figure that picks the kept epoch: the AUC over all validation crops (`auc`), or the mean of the
    per-dataset AUCs (`macro`: a small dataset beside a large one counts as much as it), which is the overall AUC
    where fewer than two datasets hold both classes."""
    if rule == "macro" and len(by_dataset) >= 2:
        return float(np.mean(list(by_dataset.values())))
    return auc


def repeated_items(data: "Samples", repeats: list[tuple[str, int]]) -> np.ndarray:
    """The item keys of one epoch: each item once, or K times when its crop's source contains a --repeat pattern
    (the first matching pattern counts); the epoch's order is a permutation of these keys."""
    keys = []
    for k, (i, _, _) in enumerate(data.items):
        src = data.rows[i].get("source", "")
        keys += [k] * next((n for pat, n in repeats if pat in src), 1)
    return np.array(keys, dtype=np.int64)


def class_weights(y: np.ndarray) -> torch.Tensor:
    """(N_total / 2) / N_class, as in the design."""
    n = len(y)
    return torch.tensor([(n / 2) / max((y == c).sum(), 1) for c in (0, 1)], dtype=torch.float32)


def run_epoch(det: Detector, data: Samples, order: np.ndarray, bs: int, loss_fn, opt, scaler, device, rng,
              train: bool, desc: str, ema: WeightEma | None = None,
              workers: int = 0, sizes: list[int] | None = None) -> tuple[float, float, np.ndarray, np.ndarray]:
    """One pass over `order`. `sizes` (training only): each batch is resized to one of these input sizes, drawn
    at random (multi-scale training); without it every batch is at the card's input size."""
    det.train(train)
    size_rng = np.random.default_rng(int(rng.integers(2 ** 31))) if sizes else None

    def batches():
        for items in made_batches(data.item, order, bs, rng, workers, desc):
            size = int(size_rng.choice(sizes)) if size_rng is not None else None
            yield (det.preprocess([img for img, _ in items], size),
                   torch.tensor([y for _, y in items], dtype=torch.long))

    return fit_batches(det, batches(), loss_fn, opt, scaler, device, train, ema)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, action="append", help="manifest.csv (repeatable)")
    ap.add_argument("--task", choices=["binary", "sbi"], default="binary")
    ap.add_argument("--name", required=True, help="model name (checkpoint and card file names)")
    ap.add_argument("--display-name", default="")
    ap.add_argument("--arch", default="image_classifier", choices=["image_classifier", *MESO_ARCHS],
                    help="image_classifier (a timm --backbone) or a MesoNet trained from scratch at 256 px")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0",  # the one backbone with offline ImageNet weights
                    choices=sorted(NORMALISATION))
    ap.add_argument("--init", default="imagenet-lite0", choices=["imagenet-lite0", "imagenet-lite2", "timm-hub", "none"])
    ap.add_argument("--init-from", metavar="CARD",
                    help="start from every weight of an installed image model with the same backbone (e.g. "
                         "weights/gan-face.json; where the Lite0 ImageNet package is not installed, such as a GPU "
                         "machine); replaces --init")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--train-sizes", type=int, nargs="+", metavar="PX",
                    help="multi-scale training: each training batch is resized to one of these input sizes, drawn at "
                         "random; validation, calibration and the card stay at --size")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--cosine", action="store_true",
                    help="cosine decay of the learning rate over --epochs (stepped once per epoch)")
    ap.add_argument("--aug", type=float, default=0.5, help="probability scale of the extreme augmentation (0 = off)")
    add_augment_args(ap, "crops")
    ap.add_argument("--ema", type=float, default=0,
                    help="keep an exponential moving average of the weights (decay per step, e.g. 0.99) and "
                         "validate and ship that average (0 = off)")
    ap.add_argument("--sbi-extra", type=float, default=0.0,
                    help="task binary: add self-blended pseudo-fakes of this fraction of the real training crops as "
                         "extra fakes (validation and test stay real fakes only)")
    ap.add_argument("--border-fill", type=float, default=0.0, metavar="P",
                    help="replace the black padding of pre-cropped training faces with probability P (half by "
                         "mirroring the crop, half by another real face's surroundings), so that a face with real "
                         "surroundings (a frame, a photo) is not new to the model; validation stays as cut")
    ap.add_argument("--zoom", type=float, default=0.0, metavar="P",
                    help="show a training crop closer with probability P: a square window around its face, from the "
                         "face box (a face that fills its image) to the whole crop, so that how much of the view the "
                         "face fills is no cue (wide crops, e.g. gan-face)")
    ap.add_argument("--no-calibrate", action="store_true",
                    help="do not fit a temperature on the validation split (the card's P(fake) is then uncalibrated)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the latest unfinished run of --name in --out from its last finished epoch "
                         "(the same arguments; a run killed by a session end loses at most one epoch)")
    ap.add_argument("--train-fraction", type=float, default=1.0,
                    help="train on the whole groups of this fraction of the training split (by a hash of the group "
                         "name; for quick comparisons of recipes at equal cost); validation stays whole")
    ap.add_argument("--max-per-group", type=int, default=0,
                    help="at most N crops per LABELS.csv group in each split (e.g. frames of one clip; 0 = all)")
    ap.add_argument("--repeat", nargs=2, action="append", default=[], metavar=("PATTERN", "K"),
                    help="show the training crops whose source path contains PATTERN K times per epoch (an integer "
                         ">= 1; repeatable), e.g. a small dataset beside a large one; validation is untouched")
    ap.add_argument("--select-by", choices=["auc", "macro"], default="auc",
                    help="which validation figure keeps the best epoch: the AUC over all crops (default) or the mean "
                         "of the per-dataset AUCs (macro), for targets set per dataset")
    add_run_args(ap, "training crops")
    args = ap.parse_args(argv)
    try:
        repeats = [(pat, int(k)) for pat, k in args.repeat]
        if any(k < 1 for _, k in repeats):
            raise ValueError
    except ValueError:
        print("error: --repeat takes a pattern and an integer K >= 1", file=sys.stderr)
        return 2
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
    if args.train_fraction < 1.0:
        split["train"] = [r for r in split["train"] if _group_hash(r["group"]) < args.train_fraction]
    if args.limit:
        split["train"] = split["train"][: args.limit]
        split["val"] = split["val"][: max(4, args.limit // 2)]
        split["test"] = split["test"][: max(4, args.limit // 2)]
    if not split["train"] or not split["val"]:
        print("error: the manifest needs train and val rows", file=sys.stderr)
        return 2
    if not (0 <= args.border_fill <= 1 and 0 <= args.zoom <= 1 and 0 <= args.low_res <= 1):
        print("error: --border-fill, --zoom and --low-res are probabilities (0 to 1)", file=sys.stderr)
        return 2
    if args.train_sizes and (args.arch in MESO_ARCHS or is_swin(args.backbone)
                             or not all(16 <= v <= 1024 for v in args.train_sizes)):
        print("error: --train-sizes needs a convolutional backbone that takes any input size (not MesoNet or Swin) "
              "and sizes from 16 to 1024 px", file=sys.stderr)
        return 2
    if args.arch in MESO_ARCHS:  # MesoNet from scratch: one fake logit, 256 px input (its dense layer's size)
        if args.size != 256 or args.init_from or args.init not in ("none", "imagenet-lite0"):
            print(f"error: --arch {args.arch} trains from scratch at --size 256 (no --init / --init-from)",
                  file=sys.stderr)
            return 2
        arch_config = {"leaky": True}
        net = create_model(args.arch, **arch_config)
        args.backbone, args.init = args.arch, "none"
    else:
        arch_config = {"backbone": args.backbone, "num_classes": 2}
        if is_swin(args.backbone):  # Swin's window grid is built for one input size
            arch_config["img_size"] = args.size
        net = create_model("image_classifier", drop_rate=0.2, **arch_config)
    parent = None
    try:
        if args.arch in MESO_ARCHS:
            init_desc = "random initialisation (MesoNet, trained here)"
        elif args.init_from:
            init_desc, parent = init_from_checkpoint(net, args.init_from, arch_config)
        else:
            init_desc = init_backbone(net.net, args.backbone, args.init)
    except InitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    card = build_card(args, args.name, args.arch, arch_config, init_desc, crop=crop)
    det = Detector(net, card).to(device)
    config = dict(vars(args), device=str(device), counts={k: len(v) for k, v in split.items()})
    try:
        run, resumed = open_run(args, config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    copy_grids(args.manifest, run)
    augment = augment_from_args(args)
    train_set = Samples(split["train"], args.task, augment, args.seed, args.sbi_profile, args.sbi_extra,
                        args.sbi_region, border_fill=args.border_fill, zoom=args.zoom)
    val_set, test_set = held_out_samples(split, args.task, args.seed, args.sbi_profile, args.sbi_region)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train_set.labels()).to(device))
    opt = torch.optim.Adam(det.net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs) if args.cosine else None
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    rng = np.random.default_rng(args.seed)
    best, best_state = (-1.0, float("-inf")), None  # (selection AUC, -validation loss): ties go to the lower loss
    ema = WeightEma(det.net, args.ema) if args.ema else None
    t0 = time.time()
    first = 1
    if resumed is not None:
        first, best, best_state = restore_state(resumed, det, opt, ema, rng, run, sched)
        t0 -= resumed["minutes"] * 60
        print(f"resuming {run.path} after epoch {first - 1} (best validation figure {best[0]:.4f})", file=sys.stderr)
    epoch_items = repeated_items(train_set, repeats)
    for epoch in range(first, args.epochs + 1):
        order = epoch_items[rng.permutation(len(epoch_items))]
        tl, ta, _, _ = run_epoch(det, train_set, order, args.batch, loss_fn, opt, scaler, device, rng, True,
                                 f"epoch {epoch} train", ema, args.workers, args.train_sizes)
        if ema is not None:  # validate (and keep) the averaged weights; training goes on from its own
            current = {k: v.detach().clone() for k, v in det.net.state_dict().items()}
            det.net.load_state_dict(ema.state)
        vrng = np.random.default_rng(1234)  # fixed pseudo-fakes for validation
        vl, va, vp, vy = run_epoch(det, val_set, np.arange(len(val_set)), args.batch, loss_fn, None, None, device,
                                   vrng, False, f"epoch {epoch} val", workers=args.workers)
        auc = binary_metrics(vy, vp)["auc"] or 0.0
        by_ds = auc_by_dataset(np.asarray(vy), np.asarray(vp), val_set.datasets())
        chosen = selection_auc(auc, by_ds, args.select_by)
        run.log_epoch({"epoch": epoch, "train_loss": tl, "train_acc": ta, "val_loss": vl, "val_acc": va,
                       "val_auc": auc, "val_auc_by_dataset": by_ds, "val_selection": chosen,
                       "minutes": (time.time() - t0) / 60})
        print(f"epoch {epoch}: train loss {tl:.4f} acc {ta:.3f} | val loss {vl:.4f} acc {va:.3f} AUC {auc:.4f}"
              f"{by_dataset_text(by_ds)} "
              f"| {(time.time() - t0) / 60:.1f} min", file=sys.stderr)
        if (chosen, -vl) > best:
            best, best_state = (chosen, -vl), {k: v.detach().cpu().clone() for k, v in det.net.state_dict().items()}
        if ema is not None:
            det.net.load_state_dict(current)
        if sched is not None:
            sched.step()
        save_state(run, epoch, det, opt, ema, rng, best, best_state, (time.time() - t0) / 60, sched)
        if args.max_minutes and (time.time() - t0) / 60 > args.max_minutes:
            print(f"stopping: time budget of {args.max_minutes} min reached", file=sys.stderr)
            break
    det.net.load_state_dict(best_state)
    (run.path / RESUME_FILE).unlink(missing_ok=True)
    sets = {"validation": val_set, "test": test_set}
    metrics = final_metrics(lambda split, seed: run_epoch(
        det, sets[split], np.arange(len(sets[split])), args.batch, loss_fn, None, None, device,
        np.random.default_rng(seed), False, split, workers=args.workers)[2:],
        test_set is not None and len(test_set) > 0, t0, device, calibrate=not args.no_calibrate)
    finish_run(det, card, run, metrics, args, f"{args.name} ({args.backbone}, {args.task})", {
        "data": args.data_desc or ", ".join(sorted({r["dataset"] for r in split["train"]})),
        "counts": config["counts"],
        "recipe": f"Adam lr {args.lr}{' with cosine decay' if args.cosine else ''}, batch {args.batch}, "
                  f"{len(run.history)} epochs, {args.size}px"
                  + (f" (each training batch at one of {', '.join(map(str, args.train_sizes))} px, drawn at random)"
                     if args.train_sizes else "") + ", "
                  f"weighted cross-entropy, extreme augmentation p={args.aug}"
                  + (f", every crop re-encoded as JPEG q{args.final_jpeg[0]}-{args.final_jpeg[1]}" if args.final_jpeg else "")
                  + (f", at most {args.max_per_group} crops per group" if args.max_per_group else "")
                  + (f", {args.train_fraction:g} of the training groups" if args.train_fraction < 1 else "")
                  + "".join(f", crops of sources containing '{pat}' shown {k}x per epoch" for pat, k in repeats)
                  + (f", started from {args.init_from}" if args.init_from else "")
                  + (f", self-blended pseudo-fakes of {args.sbi_extra:g} x the real crops as extra fakes "
                     f"(SBI source profile {args.sbi_profile}, {args.sbi_region} region)" if args.sbi_extra else "")
                  + (f", black padding of pre-cropped faces replaced with p={args.border_fill:g} (half mirrored, half "
                     "another real face's surroundings)" if args.border_fill else "")
                  + (f", a closer view (face box to whole crop) with p={args.zoom:g}" if args.zoom else "")
                  + augment_desc(args)
                  + (f", weights averaged over steps (EMA decay {args.ema})" if args.ema else "")
                  + (f", SBI source profile {args.sbi_profile}, {args.sbi_region} region, masks from "
                     f"{LANDMARK_DESC[args.landmarks]}" if args.task == "sbi" else "")
                  + f", seed {args.seed}" + (", a seed per sample (--workers)" if args.workers else ""),
        "sources": sorted({r["source"] for r in split["train"]})[:2000],
    }, "validation/test: crops of the manifest's val/test splits" +
        (" with fixed self-blended pseudo-fakes" if args.task == "sbi" else ""), parents=[parent] if parent else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
