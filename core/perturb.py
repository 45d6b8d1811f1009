"""Perturbations for the robustness lab: each takes a list of RGB uint8 frames (one image = one frame) and a
strength, and is deterministic under a seed. H.264 re-encodes the frames as one clip, so it acts temporally.

>>> frames = apply("jpeg", 50, frames)
>>> specs = parse_spec("blur:1,2,4")            # ("blur", [1.0, 2.0, 4.0])
"""

from __future__ import annotations

import io
from typing import Callable

import cv2
import numpy as np
from PIL import Image

__all__ = ["PERTURBATIONS", "apply", "parse_spec", "describe"]


def _jpeg(frames: list[np.ndarray], quality: float, rng: np.random.Generator) -> list[np.ndarray]:
    q = int(np.clip(round(quality), 1, 100))
    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=q)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return out


def _blur(frames: list[np.ndarray], sigma: float, rng: np.random.Generator) -> list[np.ndarray]:
    if sigma <= 0:
        return [f.copy() for f in frames]
    return [cv2.GaussianBlur(f, (0, 0), sigmaX=float(sigma)) for f in frames]


def _noise(frames: list[np.ndarray], sigma: float, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.clip(f.astype(np.float32) + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def _downscale(frames: list[np.ndarray], factor: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Shrink by `factor` (e.g. 2 = half size) with area averaging, then back up bilinearly."""
    if factor <= 1:
        return [f.copy() for f in frames]
    out = []
    for f in frames:
        h, w = f.shape[:2]
        small = cv2.resize(f, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
    return out


def _brightness_contrast(frames: list[np.ndarray], strength: float, rng: np.random.Generator) -> list[np.ndarray]:
    """strength s: contrast scaled by (1 - s/100) around mid-grey, brightness shifted by +s (0..100)."""
    s = float(strength)
    return [np.clip((f.astype(np.float32) - 127.5) * (1 - s / 100.0) + 127.5 + s, 0, 255).astype(np.uint8)
            for f in frames]


def _h264(frames: list[np.ndarray], crf: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Encode the frames as one H.264 clip (libx264, yuv420p, given CRF) and decode them back."""
    import av

    if not frames:
        return []
    h, w = frames[0].shape[:2]
    ew, eh = w - w % 2, h - h % 2
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = ew, eh, "yuv420p"
        st.options = {"crf": str(int(round(crf))), "preset": "veryfast"}
        for f in frames:
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:eh, :ew]), format="rgb24")
            for pkt in st.encode(fr):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    buf.seek(0)
    decoded = []
    with av.open(buf) as inp:
        for fr in inp.decode(video=0):
            decoded.append(fr.to_ndarray(format="rgb24"))
    res = []
    for orig, dec in zip(frames, decoded):
        if dec.shape != orig.shape:
            pad = orig.copy()
            pad[:eh, :ew] = dec
            dec = pad
        res.append(dec)
    return res


# name -> (function, parameter name, sensible strengths, direction text)
PERTURBATIONS: dict[str, tuple[Callable, str, list[float], str]] = {
    "jpeg": (_jpeg, "quality", [90, 70, 50, 30], "JPEG re-compression at quality q (lower = stronger)"),
    "blur": (_blur, "sigma", [1, 2, 4], "Gaussian blur with standard deviation sigma pixels"),
    "noise": (_noise, "sigma", [5, 10, 20], "additive Gaussian noise, standard deviation sigma (0-255 scale)"),
    "downscale": (_downscale, "factor", [2, 3, 4], "downscale by a factor and upscale back"),
    "brightness": (_brightness_contrast, "strength", [10, 25, 40],
                   "brightness +s and contrast x(1 - s/100)"),
    "h264": (_h264, "crf", [23, 30, 36, 42], "H.264 re-encode of the sampled frames at a CRF (higher = stronger)"),
}


def apply(name: str, strength: float, frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    rng = np.random.default_rng(seed)
    return PERTURBATIONS[name][0](frames, float(strength), rng)


def parse_spec(spec: str) -> tuple[str, list[float]]:
    """'jpeg:90,70,50' -> ('jpeg', [90.0, 70.0, 50.0]); 'blur' alone uses the default strengths."""
    name, _, vals = spec.partition(":")
    name = name.strip().lower()
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    if not vals.strip():
        return name, [float(v) for v in PERTURBATIONS[name][2]]
    try:
        return name, [float(v) for v in vals.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bad strengths in {spec!r}: use numbers separated by commas") from None


def describe(name: str) -> str:
    return PERTURBATIONS[name][3]
