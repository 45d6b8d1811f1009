"""One real-browser test: `streamlit run` on a free port, headless Debian Chromium driven by Playwright (never a
downloaded browser), a sample video uploaded, the verdict, gallery and charts checked, a screenshot saved."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DFDC_CLIP, free_port, need_shared, wait_http

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _need(what: str, ok: bool) -> None:
    if not ok:
        msg = f"needs {what} (installed by `make test` via apt-get when run as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture()
def server(meso_weights, tmp_path):
    port = free_port()
    env = dict(os.environ, TBD_WEIGHTS=str(meso_weights), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_stcore/health", tmp_path / "streamlit.log", "streamlit", ok=lambda body: body == b"ok")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_upload_video_in_a_real_browser(server, tmp_path):
    """128 frames of a 1080p DFDC clip through the Analyze page: the verdict, bars and timeline; the gallery shows
    face crops (one screenshot of a gallery image, checked in one assertion); a gallery click moves the selection;
    the page payload (websocket deltas + media files) is measured and printed (README)."""
    need_shared(DFDC_CLIP)
    _need("Debian chromium at /usr/bin/chromium", Path(CHROMIUM).exists())
    _need("playwright (PyPI)", shutil.which("python3") is not None and _has_playwright())
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    received = {"ws": 0, "media": 0, "media_files": 0}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})

        def on_ws(ws):
            ws.on("framereceived", lambda payload: received.__setitem__("ws", received["ws"] + len(payload)))

        def on_response(resp):
            if "/media/" in resp.url:
                try:
                    received["media"] += len(resp.body())
                    received["media_files"] += 1
                except Exception:  # a response the page dropped (rerun) has no body any more
                    pass

        page.on("websocket", on_ws)
        page.on("response", on_response)
        page.goto(f"{server}/Analyze", wait_until="domcontentloaded")
        page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
        slider = page.locator("input[type=range][aria-label=\"Number of frames to process\"]")  # to 128
        slider.focus()
        slider.press("End")
        page.wait_for_function("document.querySelector('input[aria-label=\"Number of frames to process\"]')"
                               ".value === '128'", timeout=30_000)
        page.wait_for_timeout(1000)  # the rerun that takes the new value
        page.set_input_files("input[type=file] >> nth=0", str(DFDC_CLIP))
        page.get_by_text("Using the video input", exact=False).wait_for(timeout=60_000)
        received.update(ws=0, media=0, media_files=0)  # count what the analysis result costs
        page.get_by_role("button", name="Analyze", exact=True).click()
        page.get_by_text("ensemble P(fake) =", exact=False).first.wait_for(timeout=480_000)
        banner = page.get_by_text("ensemble P(fake) =", exact=False).first.inner_text()
        assert any(v in banner for v in ("REAL", "FAKE", "UNCERTAIN"))
        page.get_by_text("Download PDF case report").wait_for(timeout=120_000)  # the page renders top-down
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= 2  # bars and timeline
        assert page.get_by_text("Traceback").count() == 0
        gallery = page.locator("[data-testid='stImage']").filter(has_text=" | ")
        gallery.first.wait_for(timeout=60_000)
        n_gallery = gallery.count()
        n_tracks = page.get_by_text(re.compile(r"^Track \d+")).count()
        assert n_tracks >= 1 and 6 <= n_gallery <= 24 * n_tracks < 128  # one page (24) per track, not 128 frames
        page.wait_for_timeout(1500)
        at_render = dict(received)  # what the rendered result cost, before any click
        # the gallery shows face crops, not frames: face-sized, square, not blank
        shot = gallery.first.locator("img").screenshot(path=str(tmp_path / "gallery-face.png"))
        img = np.asarray(Image.open(tmp_path / "gallery-face.png").convert("L"), dtype=float)
        h, w = img.shape
        assert w >= 64 and h >= 64 and 0.8 < w / h < 1.25 and img.std() > 15, (w, h, img.std())
        # a click on a gallery face selects its frame everywhere
        frame_caption = page.get_by_text("boxes coloured by each face", exact=False).first
        before = frame_caption.inner_text()
        page.get_by_role("button", name="select", exact=True).last.click()
        page.wait_for_function("(b) => !document.body.innerText.includes(b)", arg=before, timeout=60_000)
        after = page.get_by_text("boxes coloured by each face", exact=False).first.inner_text()
        assert after != before and page.get_by_role("button", name="selected", exact=True).count() >= 1
        # the reports are made when their button is clicked (not on every rerun) and arrive whole
        with page.expect_download(timeout=180_000) as dl:
            page.get_by_text("Download PDF case report").click()
        pdf = Path(dl.value.path())
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
        full = tmp_path / "analyze.png"
        page.screenshot(path=str(full), full_page=True)
        browser.close()
    r = at_render
    print(f"\nAnalyze page, 128 frames of {DFDC_CLIP.name}: {n_gallery} gallery crops in {n_tracks} tracks; payload "
          f"of the rendered result {(r['ws'] + r['media']) / 1024:.0f} KB ({r['ws'] / 1024:.0f} KB websocket, "
          f"{r['media'] / 1024:.0f} KB in {r['media_files']} media files); after one gallery click "
          f"{(received['ws'] + received['media']) / 1024:.0f} KB in all")
    assert shot and full.stat().st_size > 50_000
    if os.environ.get("TBD_SCREENSHOT_DIR"):  # keep a copy to look at
        shutil.copy(full, Path(os.environ["TBD_SCREENSHOT_DIR"]) / "analyze.png")


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True
