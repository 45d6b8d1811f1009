"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from REAL faces only.

One real face crop is both target and source: the source copy gets colour and sharpness changes plus a small
scale/translation, and is blended back into the untouched target through a mask built from facial landmarks
(MTCNN's 5 points extrapolated to the face outline, or dlib's 68 points: `train.landmarks`), deformed elastically,
eroded or dilated, and blurred.
Outside the mask the pseudo-fake is the original pixel for pixel, so the only evidence is the blending itself.
A blend covers the inner face (region "face", as a face swap) or the mouth and jaw only (region "mouth", as lip-sync
and expression reenactment re-render them).
For clips, one set of blend parameters serves every frame (masks follow each frame's landmarks).

    python -m train.sbi --manifest .cache/faces/real/manifest.csv --out runs/sbi_examples.png [--landmarks dlib68]
        [--region mouth]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["REGIONS", "SBIParams", "sample_params", "face_mask", "self_blend", "self_blend_clip", "save_grid"]


@dataclass
class SBIParams:
    axes: tuple[float, float, float]  # half width, up, down (in units of eye distance / eye-mouth distance)
    centre_shift: float  # along the eye-mouth axis, in eye-mouth distances
    vertex_noise: np.ndarray  # radial jitter per polygon vertex
    elastic_seed: int
    elastic_amp: float  # pixels at 256
    morph: int  # >0 dilate, <0 erode (pixels at 256)
    blur_sigmas: tuple[float, float]
    ratio: float  # blend ratio
    contrast: float
    brightness: float
    rgb_shift: tuple[float, float, float]
    hue: float
    saturation: float
    sharpen: float  # >0 unsharp amount, <0 downscale factor
    scale: tuple[float, float]
    shift: tuple[float, float]  # fraction of size
    region: str = "face"  # a key of REGIONS


# Where the blend goes. "face": the whole inner face, as a face swap pastes it (Shiohara & Yamasaki). "mouth": the
# mouth, jaw and lower cheeks only, as lip-sync and expression reenactment re-render them (Wav2Lip regenerates the
# lower half of the face box; FF++ NeuralTextures and Face2Face re-render the mouth and expression). Each region is
# a range of the same ellipse's parameters: centre along the eye-mouth axis (0 = the eyes, 1 = the mouth), half
# width in eye distances, reach up and down in eye-mouth distances. "outline68": with dlib's 68 points, follow the
# jaw line and brows instead of the ellipse. "fade": fade the mask out before the crop's edge and padding bands (the
# chin often meets them, and the shifted source copy must not move a border into the picture); off for "face",
# whose pseudo-fakes the shipped SBI models were trained and calibrated on.
REGIONS = {
    "face": {"centre": (0.25, 0.5), "axes": ((0.85, 1.15), (1.0, 1.5), (1.2, 1.7)), "outline68": True, "fade": False},
    "mouth": {"centre": (0.95, 1.25), "axes": ((0.7, 1.05), (0.45, 0.8), (0.55, 0.95)), "outline68": False,
              "fade": True},
}

SOURCE_PROFILES = {  # (unsharp amount range, downscale factor range) of the source copy
    "strong": ((0.3, 1.2), (1.2, 2.0)),  # the first shipped sbi-frame
    "mild": ((0.1, 0.6), (1.05, 1.35)),  # subtler resolution mismatch, closer to a real swap's
}


def sample_params(rng: np.random.Generator, profile: str = "strong", region: str = "face") -> SBIParams:
    """One random blend. `region` "face" draws exactly the stream the shipped SBI models were trained with."""
    sharp, down = SOURCE_PROFILES[profile]
    reg = REGIONS[region]
    return SBIParams(
        axes=tuple(rng.uniform(lo, hi) for lo, hi in reg["axes"]),
        centre_shift=rng.uniform(*reg["centre"]),
        vertex_noise=rng.uniform(-0.06, 0.06, 24),
        elastic_seed=int(rng.integers(1 << 30)),
        elastic_amp=rng.uniform(2.0, 8.0),
        morph=int(rng.integers(-6, 7)),
        blur_sigmas=(rng.uniform(2.0, 8.0), rng.uniform(1.0, 4.0)),
        ratio=float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])),
        contrast=rng.uniform(0.9, 1.1),
        brightness=rng.uniform(-12, 12),
        rgb_shift=tuple(rng.uniform(-15, 15, 3)),
        hue=rng.uniform(-6, 6),
        saturation=rng.uniform(0.85, 1.15),
        sharpen=rng.uniform(*sharp) if rng.random() < 0.5 else -rng.uniform(*down),
        scale=(rng.uniform(0.95, 1.05), rng.uniform(0.95, 1.05)),
        shift=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        region=region,
    )


def _polygon(landmarks: np.ndarray, p: SBIParams) -> np.ndarray:
    le, re_, nose, ml, mr = landmarks[:5]
    eyes = (le + re_) / 2
    mouth = (ml + mr) / 2
    u = re_ - le
    w = max(np.linalg.norm(u), 1.0)
    u = u / w
    v = mouth - eyes
    d = max(np.linalg.norm(v), 1.0)
    v = v / d
    c = eyes + v * d * p.centre_shift
    n = len(p.vertex_noise)
    pts = []
    for k, theta in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False)):
        down = np.sin(theta) > 0
        a = p.axes[0] * w
        b = (p.axes[2] if down else p.axes[1]) * d
        r = 1.0 + p.vertex_noise[k]
        pts.append(c + r * (a * np.cos(theta) * u + b * np.sin(theta) * v))
    return np.asarray(pts, np.float32)


def _polygon68(landmarks: np.ndarray, p: SBIParams) -> np.ndarray:
    """dlib's 68 points: the jaw line and the brows lifted towards the forehead (by 0-30 % of the brow-to-chin
    height, from `axes[1]`), scaled about their centre by 0.92-1.04 (from `axes[0]`)."""
    jaw, brows = landmarks[0:17], landmarks[17:27]
    up = brows.mean(0) - landmarks[8]
    height = max(float(np.linalg.norm(up)), 1.0)
    lift = (p.axes[1] - 1.0) * 0.6 * height
    pts = np.concatenate([jaw, brows + up / height * lift])
    c = pts.mean(0)
    scale = 0.92 + (p.axes[0] - 0.85) * 0.4
    return (c + (pts - c) * scale).astype(np.float32)


def _five_points(pts68: np.ndarray) -> np.ndarray:
    return np.stack([pts68[36:42].mean(0), pts68[42:48].mean(0), pts68[30], pts68[48], pts68[54]])


def _content_ramp(img: np.ndarray, frac: float = 0.06) -> np.ndarray:
    """1 inside the crop's picture, falling linearly to 0 over `frac` of the size towards its edges: the image's
    own edges or, where a crop window left the frame, the edges of the black padding bands (PAD_VALUE rows and
    columns)."""
    h, w = img.shape[:2]
    rows, cols = np.nonzero(img.max(axis=(1, 2)))[0], np.nonzero(img.max(axis=(0, 2)))[0]
    if not len(rows):
        return np.zeros((h, w), np.float32)

    def ramp(n, lo, hi):
        i = np.arange(n, dtype=np.float32)
        return np.clip(np.minimum(i - lo, hi - i) / max(frac * n, 1.0), 0, 1)
    return np.outer(ramp(h, rows[0], rows[-1]), ramp(w, cols[0], cols[-1])).astype(np.float32)


def face_mask(shape: tuple[int, int], landmarks, p: SBIParams) -> np.ndarray:
    """Soft blend mask in [0, ratio] for an image of `shape` (H, W), from MTCNN's 5 points (an extrapolated
    outline) or dlib's 68 (jaw line and brows, where the region follows that outline: REGIONS)."""
    h, w = shape
    s = max(h, w) / 256.0
    pts = np.asarray(landmarks, np.float32)
    if len(pts) == 68 and REGIONS[p.region]["outline68"]:
        poly = _polygon68(pts, p)
    else:  # the ellipse from five points (dlib's 68 reduced to eye centres, nose tip and mouth corners)
        poly = _polygon(_five_points(pts) if len(pts) == 68 else pts, p)
    hull = cv2.convexHull(poly.astype(np.float32)).astype(np.int32)
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    # Elastic deformation: a smooth random displacement field.
    r = np.random.default_rng(p.elastic_seed)
    grid = 6
    dx = cv2.resize(r.uniform(-1, 1, (grid, grid)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(r.uniform(-1, 1, (grid, grid)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mask = cv2.remap(mask, xs + dx * p.elastic_amp * s, ys + dy * p.elastic_amp * s, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if p.morph:
        k = max(1, int(round(abs(p.morph) * s)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        mask = cv2.dilate(mask, kernel) if p.morph > 0 else cv2.erode(mask, kernel)
    # Two blurs; the inner part stays fully blended, the border is soft.
    mask = cv2.GaussianBlur(mask, (0, 0), p.blur_sigmas[0] * s)
    mask = np.clip(mask * 1.5, 0, 1)  # keep a saturated core after the wide blur
    mask = cv2.GaussianBlur(mask, (0, 0), p.blur_sigmas[1] * s)
    if mask.max() > 0:
        mask = mask / mask.max()
    mask[mask < 1e-3] = 0
    return (mask * p.ratio).astype(np.float32)


def _source(img: np.ndarray, p: SBIParams) -> np.ndarray:
    """The transformed copy: colour, sharpness/resolution, then a small scale and translation."""
    h, w = img.shape[:2]
    x = img.astype(np.float32)
    x = (x - x.mean()) * p.contrast + x.mean() + p.brightness + np.asarray(p.rgb_shift, np.float32)
    x = np.clip(x, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + p.hue) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * p.saturation, 0, 255)
    x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if p.sharpen > 0:
        blur = cv2.GaussianBlur(x, (0, 0), 1.0)
        x = cv2.addWeighted(x, 1 + p.sharpen, blur, -p.sharpen, 0)
    else:
        f = -p.sharpen
        small = cv2.resize(x, (max(8, int(w / f)), max(8, int(h / f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    m = np.float32([[p.scale[0], 0, (1 - p.scale[0]) * w / 2 + p.shift[0] * w],
                    [0, p.scale[1], (1 - p.scale[1]) * h / 2 + p.shift[1] * h]])
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(img: np.ndarray, landmarks, p: SBIParams) -> tuple[np.ndarray, np.ndarray]:
    """(pseudo-fake, mask). Pixels where mask == 0 are exactly the input's."""
    mask = face_mask(img.shape[:2], landmarks, p)
    if REGIONS[p.region]["fade"]:
        mask = mask * _content_ramp(img)
        mask[mask < 1e-3] = 0
    src = _source(img, p).astype(np.float32)
    m = mask[..., None]
    out = src * m + img.astype(np.float32) * (1 - m)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    out[mask == 0] = img[mask == 0]
    return out, mask


def self_blend_clip(frames: list[np.ndarray], landmarks: list, rng: np.random.Generator, profile: str = "strong",
                    region: str = "face"):
    """One parameter set for the whole clip: temporally consistent pseudo-fakes."""
    p = sample_params(rng, profile, region)
    res = [self_blend(f, lm, p) for f, lm in zip(frames, landmarks)]
    return [r[0] for r in res], [r[1] for r in res]


def save_grid(crops: list[np.ndarray], landmarks: list, out: Path, seed: int = 0, profile: str = "strong",
              region: str = "face") -> Path:
    """Rows of (real, pseudo-fake, mask, |difference| x4) for a visual check."""
    rng = np.random.default_rng(seed)
    tiles = []
    for img, lm in zip(crops, landmarks):
        fake, mask = self_blend(img, lm, sample_params(rng, profile, region))
        diff = np.clip(np.abs(fake.astype(int) - img.astype(int)) * 4, 0, 255).astype(np.uint8)
        m3 = np.repeat((mask / max(mask.max(), 1e-6) * 255).astype(np.uint8)[..., None], 3, axis=2)
        tiles.append(np.concatenate([img, fake, m3, diff], axis=1))
    rows = [np.concatenate(tiles[i:i + 2], axis=1) for i in range(0, len(tiles) - len(tiles) % 2, 2)]
    grid = np.concatenate(rows, axis=0) if rows else tiles[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid[..., ::-1])
    return out


def main(argv=None) -> int:
    from .common import load_crop, read_manifests
    from .landmarks import LandmarkError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True, help="PNG grid of examples")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="strong", choices=sorted(SOURCE_PROFILES))
    ap.add_argument("--landmarks", default="mtcnn5", choices=["mtcnn5", "dlib68"])
    ap.add_argument("--region", default="face", choices=sorted(REGIONS))
    args = ap.parse_args(argv)
    try:
        rows = [r for r in read_manifests([args.manifest], args.landmarks) if r["label"] == "real" and r["landmarks"]]
    except LandmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    pick = [rows[i] for i in rng.choice(len(rows), size=min(args.n, len(rows)), replace=False)]
    out = save_grid([load_crop(r["crop_path"]) for r in pick], [r["landmarks"] for r in pick], Path(args.out),
                    args.seed, args.profile, args.region)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
