"""Media decoding: images, videos and zips of frames become sampled RGB frames plus metadata.

Every input is identified by its content, not its file name. Videos are sampled uniformly over their whole
duration by linear interpolation of presentation timestamps, decoding only what the samples need.

>>> media = open_media("clip.mp4")
>>> for frame in media.frames(32):
...     print(frame.index, frame.time_s, frame.image.shape)
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, ImageSequence

__all__ = [
    "MediaError",
    "MediaInfo",
    "Frame",
    "Media",
    "open_media",
    "sample_indices",
    "load_image",
    "file_sha256",
    "pick_input",
    "MAX_IMAGE_PIXELS",
]

MAX_IMAGE_PIXELS = 100_000_000  # 100 MP: anything larger is refused as a possible decompression bomb
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_TOTAL_BYTES = 2 * 1024**3  # uncompressed, all image entries together
MAX_ZIP_ENTRY_BYTES = 200 * 1024**2
MAX_ZIP_RATIO = 200  # uncompressed / compressed for one entry (zeros compress ~1000x)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class MediaError(ValueError):
    """The input cannot be used; the message is one line meant for the user."""


@dataclass
class MediaInfo:
    path: str
    sha256: str
    kind: str  # video | image | frames
    width: int
    height: int
    fps: float | None = None
    duration_s: float | None = None
    frame_count: int | None = None
    codec: str | None = None
    container: str | None = None
    rotation: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "frame_count": self.frame_count,
            "codec": self.codec,
            "container": self.container,
            "rotation": self.rotation,
            "warnings": list(self.warnings),
        }


@dataclass
class Frame:
    index: int  # index of the frame in the source (video frame number, zip entry number, GIF frame)
    time_s: float | None
    image: np.ndarray  # H x W x 3, uint8, RGB, rotation already applied


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sample_indices(count: int, n: int) -> list[int]:
    """`n` indices spread uniformly over `count` items, first and last included (linear interpolation)."""
    if count <= 0 or n <= 0:
        return []
    if n >= count:
        return list(range(count))
    return sorted(set(int(round(x)) for x in np.linspace(0, count - 1, n)))


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# ----------------------------------------------------------------------------------------------- images


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode to an RGB uint8 array (16-bit and float images are rescaled, alpha is dropped)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        gray = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _open_image(data: bytes | str | Path, label: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaError(f"image is larger than the {MAX_IMAGE_PIXELS // 1_000_000} MP limit") from None
    except Exception:
        raise MediaError("not a readable image") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        raise MediaError(f"image is {w}x{h}, larger than the {MAX_IMAGE_PIXELS // 1_000_000} MP limit")
    if w == 0 or h == 0:
        raise MediaError("image has no pixels")
    return im


def load_image(data: bytes | str | Path) -> np.ndarray:
    """Decode one still image (first frame of an animation) to RGB with its EXIF orientation applied."""
    im = _open_image(data, "image")
    try:
        im.load()
        im = ImageOps.exif_transpose(im) or im
        return _to_rgb(im)
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"image data is corrupt ({_short(e)})") from None


def _frame_times(im: Image.Image) -> list[float]:
    """Start time in seconds of every frame of a (possibly animated) image, without keeping decoded frames."""
    times, t = [], 0.0
    for fr in ImageSequence.Iterator(im):
        times.append(t)
        t += float(fr.info.get("duration", 0) or 0) / 1000.0
    im.seek(0)
    return times


def _frame_rgb(im: Image.Image, i: int) -> np.ndarray:
    im.seek(i)
    fr = im.copy()
    return _to_rgb(ImageOps.exif_transpose(fr) or fr)


def _short(e: BaseException) -> str:
    """One short line for a user: FFmpeg errors lose their errno and file name."""
    strerror = getattr(e, "strerror", None)
    if isinstance(strerror, str) and strerror:
        msg = strerror
        if "Invalid data" in msg or "moov atom" in str(getattr(e, "log", "")):
            msg += "; the file may be truncated or damaged"
        return msg[:160]
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:160]


# ----------------------------------------------------------------------------------------------- media


class Media:
    """An opened input. `info` is filled on opening; `frames(n)` yields up to n sampled frames."""

    def __init__(self, info: MediaInfo):
        self.info = info

    def frames(self, n: int = 32) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError


class ImageMedia(Media):
    """A still or animated image; animated frames are decoded only when sampled."""

    def __init__(self, info: MediaInfo, im: Image.Image, times: list[float], first: np.ndarray):
        super().__init__(info)
        self._im = im
        self._times = times
        self._first = first

    def frames(self, n: int = 32) -> Iterator[Frame]:
        for i in sample_indices(len(self._times), n):
            try:
                rgb = self._first if i == 0 else _frame_rgb(self._im, i)
            except Exception as e:
                self.info.warnings.append(f"frame {i} could not be decoded ({_short(e)})")
                continue
            yield Frame(index=i, time_s=round(self._times[i], 4), image=rgb)


class ZipFramesMedia(Media):
    def __init__(self, info: MediaInfo, path: Path, names: list[str]):
        super().__init__(info)
        self._path = path
        self._names = names

    def frames(self, n: int = 32) -> Iterator[Frame]:
        with zipfile.ZipFile(self._path) as zf:
            for i in sample_indices(len(self._names), n):
                name = self._names[i]
                try:
                    raw = _read_zip_entry(zf, zf.getinfo(name))
                    rgb = load_image(raw)
                except MediaError as e:
                    self.info.warnings.append(f"skipped zip entry {name}: {e}")
                    continue
                yield Frame(index=i, time_s=None, image=rgb)


def _read_zip_entry(zf: zipfile.ZipFile, zi: zipfile.ZipInfo) -> bytes:
    with zf.open(zi) as f:
        raw = f.read(MAX_ZIP_ENTRY_BYTES + 1)
    if len(raw) > MAX_ZIP_ENTRY_BYTES:
        raise MediaError(f"zip entry {zi.filename} is over {MAX_ZIP_ENTRY_BYTES >> 20} MB")
    return raw


class VideoMedia(Media):
    """A video read with PyAV. Sampling uses a demux-only index of packet timestamps and keyframes, then seeks
    to the keyframe before each target and decodes forward, so cost grows with the number of samples."""

    def __init__(self, info: MediaInfo, path: str, pts: np.ndarray, key_pts: np.ndarray, time_base: float,
                 start_pts: int):
        super().__init__(info)
        self._path = path
        self._pts = pts  # sorted presentation timestamps of every video packet
        self._key_pts = key_pts  # sorted timestamps of keyframes
        self._tb = time_base
        self._start = start_pts

    def frames(self, n: int = 32) -> Iterator[Frame]:
        import av

        targets = [int(i) for i in sample_indices(len(self._pts), n)]
        target_pts = [int(self._pts[i]) for i in targets]
        try:
            container = av.open(self._path)
        except Exception as e:
            raise MediaError(f"video cannot be reopened ({_short(e)})") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoder = None
            last_pts = None  # pts of the last decoded frame
            pending = None  # a frame decoded past the previous target, still usable
            for idx, tpts in zip(targets, target_pts):
                key_before = self._key_pts[np.searchsorted(self._key_pts, tpts, side="right") - 1] \
                    if len(self._key_pts) and tpts >= self._key_pts[0] else None
                must_seek = decoder is None or last_pts is None or tpts < last_pts or (
                    key_before is not None and key_before > last_pts)
                if pending is not None and pending.pts is not None and pending.pts >= tpts and not (
                        key_before is not None and last_pts is not None and key_before > last_pts):
                    must_seek = False
                if must_seek:
                    try:
                        container.seek(int(key_before if key_before is not None else tpts), stream=stream,
                                       backward=True, any_frame=False)
                    except Exception:
                        self.info.warnings.append(f"seek failed near frame {idx}; decoding forward")
                    decoder = container.decode(stream)
                    pending = None
                frame = pending
                pending = None
                try:
                    while frame is None or frame.pts is None or frame.pts < tpts:
                        frame = next(decoder)
                        last_pts = frame.pts if frame.pts is not None else last_pts
                except StopIteration:
                    decoder = None
                    if frame is None:
                        self.info.warnings.append(f"frame {idx} could not be decoded (stream ends early)")
                        continue
                except Exception as e:
                    decoder = None
                    self.info.warnings.append(f"frame {idx} could not be decoded ({_short(e)})")
                    continue
                if frame.pts is not None and frame.pts > tpts:
                    pending = frame  # overshoot (missing frame): keep it for the next target
                rgb = frame.to_ndarray(format="rgb24")
                rot = _frame_rotation(frame)
                if rot:
                    self.info.rotation = rot
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=rot // 90))
                t = ((frame.pts if frame.pts is not None else tpts) - self._start) * self._tb
                yield Frame(index=idx, time_s=round(float(t), 4), image=rgb)


def _sniff(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    return "other"


def open_media(path: str | Path, sha256: str | None = None) -> Media:
    """Open a video, image or zip of frames. Raises MediaError with a one-line reason for unusable input."""
    p = Path(path)
    if not p.exists():
        raise MediaError("no such file")
    if p.is_dir():
        raise MediaError("is a folder; zip the frames or give a file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError("file is empty")
    with open(p, "rb") as f:
        head = f.read(16)
    digest = sha256 or file_sha256(p)
    if _sniff(head) == "zip":
        return _open_zip(p, digest)
    # Images first: PIL only identifies by magic bytes, so a video never passes for an image.
    try:
        im = _open_image(p, "image")
    except MediaError as e:
        if "limit" in str(e):
            raise
        im = None
    if im is not None:
        try:
            times = _frame_times(im)
            first = _frame_rgb(im, 0)
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(f"image data is corrupt ({_short(e)})") from None
        h, w = first.shape[:2]
        fmt = (im.format or "").lower() or None
        info = MediaInfo(path=str(p), sha256=digest, kind="image", width=w, height=h, frame_count=len(times),
                         codec=fmt, container=fmt)
        if len(times) > 1 and times[-1] > 0:
            info.duration_s = round(times[-1], 4)
            info.fps = round((len(times) - 1) / times[-1], 4)
        return ImageMedia(info, im, times, first)
    return _open_video(p, digest, head)


def _open_zip(p: Path, digest: str) -> ZipFramesMedia:
    try:
        zf = zipfile.ZipFile(p)
        infos = zf.infolist()
    except Exception as e:
        raise MediaError(f"not a readable zip ({_short(e)})") from None
    with zf:
        return _check_zip(p, digest, zf, infos)


def _check_zip(p: Path, digest: str, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> "ZipFramesMedia":
    if len(infos) > MAX_ZIP_ENTRIES:
        raise MediaError(f"zip has {len(infos)} entries, over the {MAX_ZIP_ENTRIES} limit")
    names, total = [], 0
    for zi in infos:
        name = zi.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if name.startswith(("/", "\\")) or pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
            raise MediaError(f"zip entry {name!r} has an absolute or parent path; refusing the archive")
        if zi.is_dir() or pure.name.startswith(".") or "__MACOSX" in pure.parts:
            continue
        if pure.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if zi.file_size > MAX_ZIP_ENTRY_BYTES or (
                zi.compress_size > 0 and zi.file_size / zi.compress_size > MAX_ZIP_RATIO and zi.file_size > 1 << 20):
            raise MediaError(f"zip entry {name!r} expands to {zi.file_size} bytes (possible zip bomb)")
        total += zi.file_size
        names.append(name)
    if total > MAX_ZIP_TOTAL_BYTES:
        raise MediaError(f"zip expands to {total} bytes, over the {MAX_ZIP_TOTAL_BYTES >> 30} GB limit")
    if not names:
        raise MediaError("zip contains no image files")
    names.sort(key=_natural_key)
    # Metadata from the first readable frame.
    first = None
    for name in names[:20]:
        try:
            first = load_image(_read_zip_entry(zf, zf.getinfo(name)))
            break
        except MediaError:
            continue
    if first is None:
        raise MediaError("zip contains no readable image")
    h, w = first.shape[:2]
    info = MediaInfo(path=str(p), sha256=digest, kind="frames", width=w, height=h, frame_count=len(names),
                     codec=None, container="zip")
    return ZipFramesMedia(info, p, names)


def _open_video(p: Path, digest: str, head: bytes) -> VideoMedia:
    import av

    if head.lstrip()[:1] == b"<" or _looks_like_text(head):
        raise MediaError("not a video or image (looks like a text or HTML file)")
    try:
        container = av.open(str(p))
    except Exception as e:
        raise MediaError(f"not a readable video or image ({_short(e)})") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            what = " and ".join(kinds) if kinds else "no"
            raise MediaError(f"file has {what} streams but no video stream")
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else 1 / 90000
        pts_list, key_list = [], []
        try:
            for pkt in container.demux(stream):
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is None or pkt.size == 0:
                    continue
                pts_list.append(ts)
                if pkt.is_keyframe:
                    key_list.append(ts)
        except Exception as e:
            if not pts_list:
                raise MediaError(f"video data is unreadable ({_short(e)})") from None
            demux_warning = f"video is damaged after {len(pts_list)} packets ({_short(e)}); using what is readable"
        else:
            demux_warning = None
        if not pts_list:
            raise MediaError("video stream has no frames")
        pts = np.unique(np.asarray(pts_list, dtype=np.int64))
        key_pts = np.unique(np.asarray(key_list, dtype=np.int64))
        start = int(stream.start_time) if stream.start_time is not None else int(pts[0])
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        if len(pts) > 1:
            span = (pts[-1] - pts[0]) * tb
            frame_dur = span / (len(pts) - 1)
            duration = float(span + frame_dur)
        else:
            duration = 1 / fps if fps else None
        w, h = int(cc.width or stream.width or 0), int(cc.height or stream.height or 0)
        if w == 0 or h == 0:
            raise MediaError("video stream has no picture size (undecodable)")
        info = MediaInfo(
            path=str(p), sha256=digest, kind="video", width=w, height=h,
            fps=round(fps, 4) if fps else None,
            duration_s=round(duration, 4) if duration else None,
            frame_count=int(len(pts)), codec=cc.name, container=container.format.name,
        )
        if demux_warning:
            info.warnings.append(demux_warning)
        reported = int(stream.frames or 0)
        if reported and reported != len(pts):
            info.warnings.append(f"container reports {reported} frames; {len(pts)} found")
    media = VideoMedia(info, str(p), pts, key_pts, tb, start)
    # Probe one frame: a stream that demuxes but does not decode is unusable.
    try:
        probe = next(media.frames(1), None)
    except MediaError:
        raise
    if probe is None:
        raise MediaError("video stream could not be decoded")
    info.height, info.width = probe.image.shape[:2]
    info.warnings = [w for w in info.warnings if not w.startswith("frame ")]
    return media


def _frame_rotation(frame) -> int:
    """Counter-clockwise rotation (multiple of 90) that the display matrix asks for; np.rot90 applies it."""
    try:
        deg = float(getattr(frame, "rotation", 0) or 0)
    except Exception:
        return 0
    return int(round(deg / 90.0)) * 90 % 360


def _looks_like_text(head: bytes) -> bool:
    """True when the first bytes are printable text (no video container starts that way)."""
    if not head:
        return False
    try:
        txt = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in txt)


def pick_input(video=None, frames_zip=None, image=None) -> tuple[object, str, list[str]]:
    """The design's priority when several inputs arrive at once: zip of frames, then image, then video.
    Inputs are paths or uploaded-file objects. Returns (the chosen input, which slot it came from, the slots
    that were ignored)."""
    given = [(slot, p) for slot, p in (("frames", frames_zip), ("image", image), ("video", video)) if p]
    if not given:
        raise MediaError("no input given: upload a video, an image or a zip of frames")
    slot, chosen = given[0]
    return chosen, slot, [s for s, _ in given[1:]]
