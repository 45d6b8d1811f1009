"""Shared fixtures. Media for unit tests is generated here; integration tests read ../shared (skipped with a
reason on a user's fresh clone, a failure when CI=true)."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
MESONET = SHARED / "reference" / "mesonet"
DFDC_CLIP = DATA / "aaronchong888__DeepFake-Detect/train_sample_videos/abofeumbvv.mp4"
DFDC_CROPS = DATA / "aaronchong888__DeepFake-Detect/prepared_dataset"

sys.path.insert(0, str(REPO)) if str(REPO) not in sys.path else None


# The dashboard stores analyses in $TBD_DATA/cases.sqlite: never the user's own database during the tests.
os.environ["TBD_DATA"] = tempfile.mkdtemp(prefix="tbd-test-data-")
atexit.register(shutil.rmtree, os.environ["TBD_DATA"], True)


def need_shared(*paths: Path) -> None:
    """Skip (or fail under CI) when ../shared or the named files are missing."""
    missing = [p for p in (paths or (SHARED,)) if not p.exists()]
    if missing:
        msg = f"needs ../shared ({missing[0]} is missing)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must run with ../shared beside the clone")
        pytest.skip(msg)


def need_pdf() -> None:
    """Skip (or fail under CI) when WeasyPrint or Debian's Pango (libpango-1.0-0, libpangoft2-1.0-0) is missing."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as e:
        msg = f"needs WeasyPrint with Debian libpango-1.0-0 and libpangoft2-1.0-0 (`make test` as root): {e}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    need_shared(DATA / "LABELS.csv")
    return DATA


@pytest.fixture(scope="session")
def meso_weights(tmp_path_factory) -> Path:
    """MesoNet DF models converted from the local published copies into a private weights folder."""
    need_shared(MESONET / "Meso4_DF.h5", MESONET / "MesoInception_DF.h5")
    from core.models.mesonet import convert_mesonet

    out = tmp_path_factory.mktemp("weights")
    convert_mesonet(MESONET / "Meso4_DF.h5", out)
    convert_mesonet(MESONET / "MesoInception_DF.h5", out)
    return out


@pytest.fixture(scope="session")
def analyzer(meso_weights):
    from core.analyze import Analyzer

    return Analyzer(dirs=[meso_weights], device="cpu")


@pytest.fixture(scope="session")
def face_image(shared_data) -> Path:
    """A real photo with one clear face (FFHQ)."""
    p = shared_data / "ffhq_vs_stylegan2" / "real" / "0.jpg"
    need_shared(p)
    return p


# ------------------------------------------------------------------------------------------ media makers


def make_video(path: Path, n: int = 30, size=(160, 96), fps: int = 10, codec: str = "libx264",
               pts: list[int] | None = None, time_base: Fraction | None = None, rotation: int | None = None,
               faststart: bool = False, draw=None, bframes: int = 2) -> Path:
    """Encode a small clip whose frame i shows its index as a bright bar position (decodable ground truth)."""
    import av

    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        if codec == "libx264":
            st.options = {"g": "12", "bf": str(bframes)}
        if time_base is not None:
            st.codec_context.time_base = time_base
            st.time_base = time_base
        if rotation is not None:
            st.set_display_rotation(rotation)
        for i in range(n):
            img = draw(i) if draw else frame_pattern(i, size)
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                fr.pts = pts[i]
                fr.time_base = time_base
            for pkt in st.encode(fr):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def frame_pattern(i: int, size=(160, 96)) -> np.ndarray:
    w, h = size
    img = np.full((h, w, 3), 40, np.uint8)
    x = 4 + (i * 4) % (w - 12)
    img[:, x:x + 8] = 230
    img[:10, :10] = (255, 0, 0)  # red top-left marker to check rotation
    return img


def bar_position(img: np.ndarray) -> int:
    """Inverse of frame_pattern: x of the bright bar (middle rows)."""
    row = img[img.shape[0] // 2, :, :].mean(axis=1)
    return int(np.argmax(row > 150))


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("TBD_DEBUG", None)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=str(REPO), capture_output=True, text=True,
                          env=e, timeout=timeout)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the tests' servers listen on loopback only)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, log_path: Path, what: str, ok=lambda body: True, tries: int = 120) -> None:
    """Poll `url` until it answers (and `ok(body)`), else fail with the tail of the server's log."""
    import time
    import urllib.request

    for _ in range(tries):
        try:
            if ok(urllib.request.urlopen(url, timeout=1).read()):
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not start: {Path(log_path).read_text()[-2000:]}")
