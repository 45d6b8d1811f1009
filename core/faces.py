"""Face detection (dual-stage MTCNN), the one face-crop function, and linking faces into tracks.

Stage 1 runs MTCNN on a downscaled copy of each frame (batched by size). Stage 2 crops every candidate with a
margin from the full-resolution frame and re-runs MTCNN on the crop; a face is kept only when stage 2 confirms it
at or above the confidence threshold.

>>> det = FaceDetector(threshold=0.9)
>>> faces_per_frame = det.detect([rgb_frame])
>>> crop = crop_face(rgb_frame, faces_per_frame[0][0].box, size=256, margin=0.3)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from PIL import Image

__all__ = ["Face", "FaceDetector", "crop_box", "crop_face", "black_outside_box", "pad_frame", "link_tracks", "box_iou",
           "CROP_SIZE", "CROP_MARGIN", "PAD_VALUE", "DETECT_PAD", "PAD_BORDERS"]

CROP_SIZE = 256
CROP_MARGIN = 0.3


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in full-frame pixels
    confidence: float  # stage-2 (confirmation) probability
    detect_confidence: float  # stage-1 probability
    landmarks: list[tuple[float, float]] | None = None  # 5 points: eyes, nose, mouth corners
    track: int = -1
    extra: dict = field(default_factory=dict)


PAD_MODES = ("pad", "shift")
PAD_VALUE = (0, 0, 0)  # the one padding: black, where a crop window leaves the image
DETECT_PAD = 0.25  # a frame with no face is searched again inside a border of this fraction of its long side


def crop_box(box, width: int, height: int, margin: float = CROP_MARGIN, square: bool = True,
             mode: str = "pad") -> tuple[int, int, int, int]:
    """Integer crop window around `box`: grown by `margin` of its size on every side and made square around the
    centre. `mode="pad"` (the convention): the window stays centred on the face even where it leaves the image,
    so it may reach outside the frame (negative or beyond width/height) and `crop_face` fills that part with
    PAD_VALUE. `mode="shift"` (models trained before padding existed; their cards say so): the window is shifted
    inside the frame where it fits, otherwise clamped to it."""
    if mode not in PAD_MODES:
        raise ValueError(f"unknown crop mode {mode!r} (one of {PAD_MODES})")
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = w * (1 + 2 * margin), h * (1 + 2 * margin)
    if square:
        bw = bh = max(bw, bh)
    left, top = cx - bw / 2, cy - bh / 2
    if mode == "pad":
        l, t = int(round(left)), int(round(top))
        return l, t, max(int(round(left + bw)), l + 1), max(int(round(top + bh)), t + 1)
    # Shift inside the frame when the window fits; otherwise clamp.
    left = min(max(left, 0.0), max(width - bw, 0.0))
    top = min(max(top, 0.0), max(height - bh, 0.0))
    l, t = int(round(left)), int(round(top))
    r, b = int(round(left + bw)), int(round(top + bh))
    l, t = max(l, 0), max(t, 0)
    r, b = min(r, width), min(b, height)
    if r <= l:
        r = min(l + 1, width)
    if b <= t:
        b = min(t + 1, height)
    return l, t, r, b


def crop_face(image: np.ndarray, box, size: int = CROP_SIZE, margin: float = CROP_MARGIN,
              square: bool = True, mode: str = "pad") -> np.ndarray:
    """The face crop used by inference AND training: the `crop_box` window, with PAD_VALUE where it leaves the
    image (mode "pad"), resized to size x size (bicubic)."""
    h, w = image.shape[:2]
    l, t, r, b = crop_box(box, w, h, margin=margin, square=square, mode=mode)
    if l < 0 or t < 0 or r > w or b > h:
        patch = np.empty((b - t, r - l, image.shape[2]), image.dtype)
        patch[:] = PAD_VALUE
        sl, st, sr, sb = max(l, 0), max(t, 0), min(r, w), min(b, h)
        if sr > sl and sb > st:
            patch[st - t:sb - t, sl - l:sr - l] = image[st:sb, sl:sr]
    else:
        patch = image[t:b, l:r]
    if patch.shape[0] == size and patch.shape[1] == size:
        return np.ascontiguousarray(patch)
    return np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.BICUBIC))


def black_outside_box(crop: np.ndarray, margin: float) -> np.ndarray:
    """A square crop cut with `margin` (mode "pad") with everything outside its face box's square, the central
    1 / (1 + 2 margin) of each side, set to PAD_VALUE: a face on a frame or a photo then looks as a pre-cropped face
    (whose file the box nearly fills) looks once padded, with no surroundings. A copy; `crop` is not changed."""
    h, w = crop.shape[:2]
    by, bx = (int(round(n * margin / (1 + 2 * margin))) for n in (h, w))
    out = np.empty_like(crop)
    out[:] = PAD_VALUE
    out[by:h - by, bx:w - bx] = crop[by:h - by, bx:w - bx]
    return out


_BORDER_MODES = {"black": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE}
PAD_BORDERS = tuple(_BORDER_MODES)  # the detection copies' borders, in the order they are searched


def pad_frame(image: np.ndarray, fraction: float = DETECT_PAD, border: str = "edge") -> tuple[np.ndarray, int]:
    """A copy of a frame for the later detection passes, and its border width: the frame inside a border of
    `fraction` of its long side on every side. MTCNN finds faces that fill a whole image (pre-cropped faces) in
    such a copy. `border="black"` pads with PAD_VALUE; `border="edge"` repeats the frame's edge pixels, which finds
    most faces that the image's edge cuts off (forehead or chin outside a tight crop) where a black border hides
    them. This copy is for detection only: crops are cut by `crop_face`, whose one padding is PAD_VALUE."""
    if border not in PAD_BORDERS:
        raise ValueError(f"unknown detection border {border!r} (one of {PAD_BORDERS})")
    p = max(int(round(max(image.shape[:2]) * fraction)), 1)
    return cv2.copyMakeBorder(image, p, p, p, p, _BORDER_MODES[border], value=PAD_VALUE), p


def box_iou(a, b) -> float:
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(ix2 - ix1, 0) * max(iy2 - iy1, 0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def _resize(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    nw, nh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA), scale


class FaceDetector:
    """Dual-stage MTCNN (facenet-pytorch weights shipped in its wheel).

    threshold: stage-2 confirmation probability a face needs (default 0.9).
    detect_size: long side of the frame copy that stage 1 sees; min_face: smallest face in that copy (pixels).
    """

    _lock = threading.Lock()

    def __init__(self, threshold: float = 0.9, detect_size: int = 640, min_face: int = 24,
                 confirm_size: int = 112, device: str | torch.device = "cpu", dual_stage: bool = True):
        try:
            from facenet_pytorch import MTCNN
        except Exception as e:  # pragma: no cover - install problem
            raise RuntimeError(f"facenet-pytorch is not installed ({e}); run `make setup`") from None
        if not 0.0 < threshold <= 1.0:
            raise ValueError("face threshold must be in (0, 1]")
        self.threshold = float(threshold)
        self.detect_size = int(detect_size)
        self.min_face = int(min_face)
        self.confirm_size = int(confirm_size)
        self.dual_stage = dual_stage
        self.device = torch.device(device)
        self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=self.min_face)
        self._mtcnn.eval()

    # -- raw MTCNN on a batch of same-size uint8 RGB arrays; returns per image (k,5) boxes+prob and (k,5,2) points
    def _run(self, batch: np.ndarray, min_face: int) -> list[tuple[np.ndarray, np.ndarray]]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        m = self._mtcnn
        try:
            with torch.inference_mode():
                boxes, points = detect_face(batch, min_face, m.pnet, m.rnet, m.onet, m.thresholds, m.factor,
                                            self.device)
        except RuntimeError:
            if len(batch) == 1:
                return [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32))]
            return [r for img in batch for r in self._run(img[None], min_face)]
        out = []
        for b, p in zip(boxes, points):
            b = np.asarray(b, dtype=np.float32).reshape(-1, 5)
            p = np.asarray(p, dtype=np.float32).reshape(-1, 5, 2)
            out.append((b, p))
        return out

    def detect(self, frames: list[np.ndarray], threshold: float | None = None) -> list[list[Face]]:
        """Faces in each frame, strongest first. Frames are RGB uint8 arrays (any sizes). `threshold` overrides
        the confirmation threshold for this call."""
        thr = self.threshold if threshold is None else float(threshold)
        with self._lock:
            return self._detect(frames, thr)

    def _detect(self, frames: list[np.ndarray], thr: float) -> list[list[Face]]:
        """Every frame as it is; each frame where nothing was confirmed once more inside a black border, then
        where that finds nothing too, inside a border that repeats its edge pixels (`pad_frame`): a face that
        fills the whole image (a pre-cropped face) is found there. The black border goes first so that every box
        it finds stays what it was (the shipped models' crops were cut from those); the edge border only adds."""
        results = self._detect_pass(frames, thr)
        for border in PAD_BORDERS:
            empty = [i for i, faces in enumerate(results) if not faces]
            if not empty:
                break
            padded = [pad_frame(frames[i], border=border) for i in empty]
            for i, (img, p), faces in zip(empty, padded, self._detect_pass([img for img, _ in padded], thr)):
                h, w = frames[i].shape[:2]
                for f in faces:
                    x1, y1, x2, y2 = f.box
                    f.box = (round(max(x1 - p, 0.0), 1), round(max(y1 - p, 0.0), 1),
                             round(min(x2 - p, float(w)), 1), round(min(y2 - p, float(h)), 1))
                    f.landmarks = [(round(x - p, 1), round(y - p, 1)) for x, y in f.landmarks or []]
                    f.extra["padded_detection"] = border
                results[i] = [f for f in faces if f.box[2] > f.box[0] and f.box[3] > f.box[1]]
        return results

    def _detect_pass(self, frames: list[np.ndarray], thr: float) -> list[list[Face]]:
        results: list[list[Face]] = [[] for _ in frames]
        small = [_resize(f, self.detect_size) for f in frames]
        # Stage 1, batched by the downscaled size.
        groups: dict[tuple, list[int]] = {}
        for i, (img, _) in enumerate(small):
            groups.setdefault(img.shape, []).append(i)
        cands: list[tuple[int, np.ndarray, np.ndarray]] = []  # (frame index, box+prob, points), full-res coords
        for idxs in groups.values():
            for j in range(0, len(idxs), 16):
                chunk = idxs[j:j + 16]
                batch = np.stack([small[i][0] for i in chunk])
                for i, (b, p) in zip(chunk, self._run(batch, self.min_face)):
                    s = small[i][1]
                    for k in range(len(b)):
                        bb = b[k].copy()
                        bb[:4] /= s
                        cands.append((i, bb, p[k] / s))
        if not cands:
            return results
        if not self.dual_stage:
            for i, bb, pts in cands:
                if bb[4] >= thr:
                    results[i].append(self._face(frames[i], bb, pts, float(bb[4])))
        else:
            # Stage 2: re-run MTCNN on a margin crop of every candidate, all crops in one batch.
            size = self.confirm_size
            crops = [crop_face(frames[i], bb[:4], size=size, margin=0.5) for i, bb, _ in cands]
            confirmed = []
            for j in range(0, len(crops), 64):
                confirmed += self._run(np.stack(crops[j:j + 64]), max(12, size // 6))
            for (i, bb, pts), (b2, _) in zip(cands, confirmed):
                conf = _confirm_score(b2, size)
                if conf >= thr:
                    results[i].append(self._face(frames[i], bb, pts, conf))
        for faces in results:
            faces.sort(key=lambda f: -f.confidence)
        return results

    @staticmethod
    def _face(frame: np.ndarray, bb: np.ndarray, pts: np.ndarray, conf: float) -> Face:
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in bb[:4])
        box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
        return Face(box=tuple(round(v, 1) for v in box), confidence=round(float(conf), 4),
                    detect_confidence=round(float(bb[4]), 4),
                    landmarks=[(round(float(x), 1), round(float(y), 1)) for x, y in pts])


def _confirm_score(boxes: np.ndarray, size: int) -> float:
    """Best stage-2 probability among boxes that sit where the candidate face is (centre of the crop)."""
    if len(boxes) == 0:
        return 0.0
    c = size / 2
    best = 0.0
    for x1, y1, x2, y2, p in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        side = max(x2 - x1, y2 - y1)
        # The candidate occupies the middle 1/(1+2*0.5) = half of the crop.
        if abs(cx - c) < size * 0.25 and abs(cy - c) < size * 0.25 and side > size * 0.2:
            best = max(best, float(p))
    return best


def link_tracks(frames_faces: list[list[Face]], min_iou: float = 0.2, max_gap: int = 10) -> int:
    """Assign `track` ids to faces across consecutive sampled frames by box overlap (greedy, best match first).
    A track may miss up to `max_gap` sampled frames. Returns the number of tracks."""
    tracks: list[dict] = []  # {"id", "box", "last"}
    for fi, faces in enumerate(frames_faces):
        pairs = []
        for ti, tr in enumerate(tracks):
            if fi - tr["last"] > max_gap + 1:
                continue
            for k, face in enumerate(faces):
                score = _match_score(tr["box"], face.box)
                if score >= min_iou:
                    pairs.append((score, ti, k))
        pairs.sort(reverse=True)
        used_t, used_f = set(), set()
        for score, ti, k in pairs:
            if ti in used_t or k in used_f:
                continue
            used_t.add(ti)
            used_f.add(k)
            faces[k].track = tracks[ti]["id"]
            tracks[ti]["box"], tracks[ti]["last"] = faces[k].box, fi
        for k, face in enumerate(faces):
            if k not in used_f:
                face.track = len(tracks)
                tracks.append({"id": face.track, "box": face.box, "last": fi})
    return len(tracks)


def _match_score(a, b) -> float:
    """IoU, or a centre-distance score for faces that moved more than their size overlaps allow."""
    iou = box_iou(a, b)
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1.0)
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    dist = ((ca[0] - cb[0]) ** 2 + (ca[1] - cb[1]) ** 2) ** 0.5 / size
    wa, wb = a[2] - a[0], b[2] - b[0]
    size_ratio = min(wa, wb) / max(wa, wb, 1e-6)
    near = max(0.0, 1.0 - dist) * size_ratio if dist < 0.6 and size_ratio > 0.5 else 0.0
    return max(iou, near * 0.5)
