"""Screen helpers of the dashboard (no computation: that is core's): uploads in a private temp folder, the
session's history rows and the labelled examples of ../shared/data.

>>> with saved_upload(data, "clip.mp4") as path:
...     analysis = analyzer.analyze(path)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

from core.analyze import Analysis

__all__ = ["AnalysisStore", "saved_upload", "sha256_bytes", "history_row", "examples", "REPO", "SHARED_DATA"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


class AnalysisStore:
    """A small thread-safe LRU of finished analyses (the server keeps one, shared by its sessions)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def saved_upload(data: bytes, name: str) -> Iterator[Path]:
    """Write uploaded bytes into a fresh private temp folder (mode 700) and remove it afterwards."""
    d = tempfile.mkdtemp(prefix="tbd-upload-")
    os.chmod(d, 0o700)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[-120:] or "upload"
    p = Path(d) / safe
    try:
        p.write_bytes(data)
        yield p
    finally:
        shutil.rmtree(d, ignore_errors=True)


def history_row(a: Analysis, name: str) -> dict:
    return {"file": name, "verdict": a.verdict,
            "P(fake)": None if a.fake_probability is None else round(a.fake_probability, 3),
            "kind": a.info.kind, "frames": len(a.frames), "faces": len(a.faces),
            "models": ", ".join(a.models), "sha256": a.info.sha256[:16], "when": a.created}


def examples() -> list[Path]:
    """Labelled sample media from ../shared/data (present on development machines, not in a user's clone)."""
    picks = ["aaronchong888__DeepFake-Detect/train_sample_videos/abofeumbvv.mp4",
             "ai-forever__ghost/examples/videos/elon.webm",
             "ffhq_vs_stylegan2/real/0.jpg"]
    out = [SHARED_DATA / p for p in picks if (SHARED_DATA / p).exists()]
    fakes = sorted((SHARED_DATA / "ffhq_vs_stylegan2" / "fake").glob("*.jpg"))[:1]
    return out + fakes
