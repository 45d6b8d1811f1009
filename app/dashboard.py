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

__all__ = ["AnalysisStore", "store_case", "recent_cases", "open_case", "saved_upload", "sha256_bytes", "history_row",
           "examples", "REPO", "SHARED_DATA"]

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


def store_case(db_path: str | Path, a: Analysis, name: str) -> str | None:
    """Store a dashboard analysis as a case; a one-line note when it could not be (None when stored)."""
    from core.cases import DatabaseError, store_analysis

    try:
        store_analysis(db_path, a, name, source="dashboard")
    except (DatabaseError, OSError) as e:
        return f"Not stored in the case database: {e}"
    return None


def recent_cases(db_path: str | Path, limit: int = 200) -> list[dict] | str:
    """The newest cases of a database, or a one-line reason why there are none to show."""
    from core.cases import CaseDB, DatabaseError

    if not Path(db_path).exists():
        return f"No case database at {db_path} yet."
    try:
        with CaseDB(db_path) as db:
            rows = db.cases(limit=limit)
    except DatabaseError as e:
        return str(e)
    return rows or "The case database is empty."


def open_case(db_path: str | Path, case_id: int) -> Analysis | str:
    """A stored case as an Analysis for the screens, or a one-line reason."""
    from core.cases import CaseDB, DatabaseError

    try:
        with CaseDB(db_path) as db:
            c = db.case(case_id)
    except DatabaseError as e:
        return str(e)
    if c is None:
        return f"case #{case_id} is not in {db_path}"
    if not c["analysis"]:
        return f"case #{case_id} ({c['path']}) is a per-file error: {c['error']}"
    return Analysis.from_json(c["analysis"], c["thumbs"])
