"""Train a sequence model over N face crops of a clip: CNN+LSTM or Swin (design phase 2: AdamW 1e-4, StepLR step 5
gamma 0.5, weighted cross-entropy with class weights (N_total/2)/N_class, early stopping patience 5, dropout 0.4,
LeakyReLU head, autocast + GradScaler on CUDA, seeding of python/numpy/torch/cuda).

Tasks: `binary` (real vs fake clips from the manifest) or `sbi` (real clips vs temporally consistent self-blended
clips: one blend parameter set per clip). `--encoder-from CARD` starts the CNN from an image model (e.g.
sbi-frame) and takes its input size and normalisation; `--freeze-encoder` trains only the LSTM and head on the
encoder's features (the design's transfer-learning baseline; the practical choice on a CPU).

    python -m train.train_video --manifest .cache/faces/real/manifest.csv --task sbi --name sbi-temporal \
        --arch cnn_lstm --backbone tf_efficientnet_lite0 --encoder-from weights/sbi-frame.json --freeze-encoder \
        --frames 8 --batch 8 --epochs 20 --ship weights
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from core.media import sample_indices
from core.models import create_model
from core.models.checkpoint import Detector, read_card

from .common import (
    Augment,
    InitError,
    RunDir,
    add_augment_args,
    add_run_args,
    augment_desc,
    augment_from_args,
    binary_metrics,
    final_metrics,
    finish_run,
    fit_batches,
    init_backbone,
    load_crop,
    made_batches,
    pick_device,
    seed_everything,
    training_rows,
)
from .landmarks import LANDMARK_DESC, LandmarkError
from .sbi import self_blend_clip
from .train_image import NORMALISATION, build_card, class_weights

_NUMBERED = re.compile(r"^(.+)_(\d+)\.(?:jpe?g|png|webp)$", re.IGNORECASE)


def sequence_key(source: str) -> tuple[str, int] | None:
    """(clip, frame number) of an image that is a numbered frame of a video (`.../012_026_4.jpg` is frame 4 of
    `.../012_026`, as the FF++ crops are named), else None."""
    m = _NUMBERED.match(source)
    return (m.group(1), int(m.group(2))) if m else None


class Clips:
    """Clips (a source video's crops in time order) and how to draw F-frame windows from them."""

    def __init__(self, rows: list[dict], task: str, frames: int, windows: int, augment: Augment | None,
                 sbi_profile: str = "strong", image_sequences: bool = False, sbi_region: str = "face"):
        self.sbi_profile = sbi_profile
        self.sbi_region = sbi_region
        by_src: dict[str, list[dict]] = {}
        for r in rows:
            if r["media"] == "video":
                by_src.setdefault(r["source"], []).append(r)
            elif image_sequences and (key := sequence_key(r["source"])):
                by_src.setdefault(key[0], []).append(dict(r, frame=key[1]))
        self.clips = []
        for src, rs in sorted(by_src.items()):
            rs.sort(key=lambda r: int(r["frame"]))
            if len(rs) < 2:
                continue
            self.clips.append({"source": src, "label": int(rs[0]["label"] == "fake"),
                               "crops": [load_crop(r["crop_path"]) for r in rs],
                               "landmarks": [r["landmarks"] for r in rs]})
        self.task, self.frames, self.windows, self.augment = task, frames, windows, augment
        if task == "sbi":
            self.items = [(c, 0) for c in range(len(self.clips))] + [(c, 1) for c in range(len(self.clips))]
        else:
            self.items = [(c, self.clips[c]["label"]) for c in range(len(self.clips))]
        self.items = self.items * windows

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return np.array([y for _, y in self.items])

    def window(self, k: int, rng: np.random.Generator) -> tuple[list[np.ndarray], int]:
        c, y = self.items[k]
        clip = self.clips[c]
        n = len(clip["crops"])
        # F frames spread over the clip (as inference samples a track), with a random start offset.
        span = max(self.frames, int(n * rng.uniform(0.6, 1.0))) if n > self.frames else n
        start = int(rng.integers(0, n - span + 1)) if n > span else 0
        idx = [start + i for i in sample_indices(span, self.frames)]
        idx = [idx[int(j)] for j in np.linspace(0, len(idx) - 1, self.frames).round()]
        frames = [clip["crops"][i] for i in idx]
        if self.task == "sbi" and y == 1:
            frames, _ = self_blend_clip(frames, [clip["landmarks"][i] for i in idx], rng, self.sbi_profile,
                                        self.sbi_region)
        if self.augment is not None:
            frames = self.augment(frames, rng)
        return frames, y


def held_out_clips(split: dict, task: str, frames: int, sbi_profile: str,
                   image_sequences: bool, sbi_region: str = "face") -> tuple[Clips, Clips]:
    """The validation and test clips of a run (2 windows per clip, no augmentation): one place, so train.calibrate
    rebuilds exactly what the trainer validated on."""
    return tuple(Clips(split[s], task, frames, 2, None, sbi_profile, image_sequences, sbi_region)
                 for s in ("val", "test"))


def load_encoder_from(net: nn.Module, card_path: str) -> dict:
    """Copy an image_classifier checkpoint's backbone into a cnn_lstm encoder (classifier dropped)."""
    from safetensors.torch import load_file

    card = read_card(card_path)
    if card.architecture != "image_classifier":
        raise InitError(f"--encoder-from needs an image_classifier card, got {card.architecture}")
    state = load_file(str(Path(card_path).parent / card.file))
    enc = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.") and not k.startswith("net.classifier.")}
    missing, unexpected = net.encoder.load_state_dict(enc, strict=False)
    if missing or unexpected:
        raise InitError(f"encoder from {card.name} does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return {"name": card.name, "sha256": card.sha256, "card": card, "input_size": card.input_size, "mean": card.mean,
            "std": card.std, "interpolation": card.interpolation, "backbone": card.config.get("backbone"),
            "crop": card.crop}


def run_epoch(det: Detector, data: Clips, order, bs, loss_fn, opt, scaler, device, rng, train, desc, freeze,
              workers: int = 0):
    det.train(train)
    if freeze:
        det.net.encoder.eval()

    def batches():
        for batch in made_batches(data.window, order, bs, rng, workers, desc):
            x = torch.stack([det.preprocess(frames) for frames, _ in batch])  # (B, F, 3, H, W)
            yield x, torch.tensor([lab for _, lab in batch], dtype=torch.long)

    return fit_batches(det, batches(), loss_fn, opt, scaler, device, train)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, action="append")
    ap.add_argument("--task", choices=["binary", "sbi"], default="sbi")
    ap.add_argument("--name", required=True)
    ap.add_argument("--display-name", default="")
    ap.add_argument("--arch", choices=["cnn_lstm", "swin_seq"], default="cnn_lstm")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0",  # the one backbone with offline ImageNet weights
                    choices=sorted(NORMALISATION))
    ap.add_argument("--init", default="imagenet-lite0", choices=["imagenet-lite0", "imagenet-lite2", "timm-hub", "none"],
                    help="backbone start when there is no --encoder-from (imagenet-lite0 fits tf_efficientnet_lite0)")
    ap.add_argument("--encoder-from", help="image_classifier card whose backbone starts the encoder")
    ap.add_argument("--freeze-encoder", action="store_true")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--windows", type=int, default=4, help="windows drawn per clip and epoch")
    ap.add_argument("--image-sequences", action="store_true",
                    help="also build clips from image crops named as numbered frames of one video "
                         "(<video>_<frame>.jpg, as the FF++ crops are); images of one frame are left out")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.4)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--aug", type=float, default=0.5)
    add_augment_args(ap, "clips")
    add_run_args(ap, "clips per split")
    args = ap.parse_args(argv)

    seed_everything(args.seed)
    device = pick_device(args.device)
    try:
        rows, crop = training_rows(args)
    except (LandmarkError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.arch == "swin_seq":
        args.backbone, args.size = "swin_tiny_patch4_window7_224", 224
        net = create_model("swin_seq", backbone=args.backbone, img_size=224)
        config = {"backbone": args.backbone, "img_size": 224}
    else:
        net = create_model("cnn_lstm", backbone=args.backbone, hidden=args.hidden, dropout=args.dropout)
        config = {"backbone": args.backbone, "hidden": args.hidden, "dropout": args.dropout}
    try:
        if args.encoder_from:
            enc = load_encoder_from(net, args.encoder_from)
            if enc["backbone"] != args.backbone:
                raise InitError(f"--encoder-from {enc['name']} has backbone {enc['backbone']}, not {args.backbone}")
            args.size = enc["input_size"]
            if enc["crop"] and {k: enc["crop"].get(k) for k in crop} != crop:
                raise InitError(f"--encoder-from {enc['name']} was trained on crops {enc['crop']}, "
                                f"the manifests have {crop}")
            init_desc = f"encoder from {enc['name']} ({enc['sha256'][:12]})"
        else:
            target = net.net if args.arch == "swin_seq" else net.encoder
            init_desc = init_backbone(target, args.backbone, args.init)
    except InitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.freeze_encoder:
        if args.arch != "cnn_lstm":
            print("error: --freeze-encoder applies to cnn_lstm", file=sys.stderr)
            return 2
        for p in net.encoder.parameters():
            p.requires_grad_(False)
    card = build_card(args, args.name, args.arch, config, init_desc, frames=args.frames, crop=crop)
    if args.encoder_from:
        card.mean, card.std, card.interpolation = enc["mean"], enc["std"], enc["interpolation"]
    else:
        card.mean, card.std, card.interpolation = NORMALISATION[args.backbone]
    det = Detector(net, card).to(device)
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    augment = augment_from_args(args)
    train_set = Clips(split["train"], args.task, args.frames, args.windows, augment, args.sbi_profile,
                      args.image_sequences, args.sbi_region)
    val_set, test_set = held_out_clips(split, args.task, args.frames, args.sbi_profile, args.image_sequences,
                                       args.sbi_region)
    if args.limit:
        for ds in (train_set, val_set, test_set):
            keep = set(range(min(args.limit, len(ds.clips))))
            ds.items = [it for it in ds.items if it[0] in keep]
    if not len(train_set) or not len(val_set):
        print("error: the manifest needs train and val video clips", file=sys.stderr)
        return 2
    counts = {"train_clips": len(train_set.clips), "val_clips": len(val_set.clips), "test_clips": len(test_set.clips)}
    run = RunDir(args.out, args.name, dict(vars(args), device=str(device), counts=counts))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train_set.labels()).to(device))
    params = [p for p in det.net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    rng = np.random.default_rng(args.seed)
    best_loss, best_state, bad = float("inf"), None, 0
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        tl, ta, _, _ = run_epoch(det, train_set, rng.permutation(len(train_set)), args.batch, loss_fn, opt, scaler,
                                 device, rng, True, f"epoch {epoch} train", args.freeze_encoder,
                                 args.workers)
        vl, va, vp, vy = run_epoch(det, val_set, np.arange(len(val_set)), args.batch, loss_fn, None, None, device,
                                   np.random.default_rng(1234), False, f"epoch {epoch} val", args.freeze_encoder,
                                   args.workers)
        sched.step()
        auc = binary_metrics(vy, vp)["auc"] or 0.0
        run.log_epoch({"epoch": epoch, "train_loss": tl, "train_acc": ta, "val_loss": vl, "val_acc": va,
                       "val_auc": auc, "lr": opt.param_groups[0]["lr"], "minutes": (time.time() - t0) / 60})
        print(f"epoch {epoch}: train loss {tl:.4f} acc {ta:.3f} | val loss {vl:.4f} acc {va:.3f} AUC {auc:.4f} "
              f"| {(time.time() - t0) / 60:.1f} min", file=sys.stderr)
        if vl < best_loss:
            best_loss, bad = vl, 0
            best_state = {k: v.detach().cpu().clone() for k, v in det.net.state_dict().items()}
        else:
            bad += 1
            if bad >= args.patience:
                print(f"early stop: validation loss has not improved for {args.patience} epochs", file=sys.stderr)
                break
        if args.max_minutes and (time.time() - t0) / 60 > args.max_minutes:
            print(f"stopping: time budget of {args.max_minutes} min reached", file=sys.stderr)
            break
    det.net.load_state_dict(best_state)
    sets = {"validation": val_set, "test": test_set}
    metrics = final_metrics(lambda split, seed: run_epoch(
        det, sets[split], np.arange(len(sets[split])), args.batch, loss_fn, None, None, device,
        np.random.default_rng(seed), False, split, args.freeze_encoder, args.workers)[2:],
        len(test_set) > 0, t0, device)
    finish_run(det, card, run, metrics, args, f"{args.name} ({args.arch}, {args.backbone}, {args.task})", {
        "data": args.data_desc or ", ".join(sorted({r["dataset"] for r in split["train"]})),
        "counts": counts,
        "image_sequences": bool(args.image_sequences),
        "recipe": f"AdamW lr {args.lr}, StepLR(5, 0.5), batch {args.batch}, {len(run.history)} epochs, "
                  f"{args.frames} frames, {args.size}px, weighted cross-entropy, early stopping {args.patience}, "
                  f"dropout {args.dropout}, {'frozen encoder' if args.freeze_encoder else 'end to end'}"
                  + (f", every clip re-encoded as JPEG q{args.final_jpeg[0]}-{args.final_jpeg[1]}" if args.final_jpeg else "")
                  + augment_desc(args)
                  + (f", SBI source profile {args.sbi_profile}, {args.sbi_region} region, masks from "
                     f"{LANDMARK_DESC[args.landmarks]}" if args.task == "sbi" else "")
                  + f", seed {args.seed}" + (", a seed per sample (--workers)" if args.workers else ""),
        "sources": sorted({c["source"] for c in train_set.clips}),
    }, "validation/test: windows of the manifest's val/test clips" +
        (" and their self-blended versions" if args.task == "sbi" else ""),
        parents=[enc["card"]] if args.encoder_from else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
