"""One real-browser test: `streamlit run` on a free port, headless Debian Chromium driven by Playwright (never a
downloaded browser), a sample video uploaded, the verdict, gallery and charts checked, a screenshot saved."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import DFDC_CLIP, need_shared

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _need(what: str, ok: bool) -> None:
    if not ok:
        msg = f"needs {what} (installed by `make test` via apt-get when run as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(meso_weights, tmp_path):
    port = _free_port()
    env = dict(os.environ, TBD_WEIGHTS=str(meso_weights), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_upload_video_in_a_real_browser(server, tmp_path):
    need_shared(DFDC_CLIP)
    _need("Debian chromium at /usr/bin/chromium", Path(CHROMIUM).exists())
    _need("playwright (PyPI)", shutil.which("python3") is not None and _has_playwright())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{server}/Analyze", wait_until="domcontentloaded")
        page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
        page.set_input_files("input[type=file] >> nth=0", str(DFDC_CLIP))
        page.get_by_text("Using the video input", exact=False).wait_for(timeout=60_000)
        page.get_by_role("button", name="Analyze").click()
        page.get_by_text("ensemble P(fake)", exact=False).wait_for(timeout=240_000)
        banner = page.get_by_text("ensemble P(fake)", exact=False).first.inner_text()
        assert any(v in banner for v in ("REAL", "FAKE", "UNCERTAIN"))
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= 2  # bars and timeline
        assert page.locator("[data-testid='stImage']").count() >= 2  # annotated frame and face crop
        page.get_by_text("Download HTML case report").wait_for(timeout=60_000)  # the page renders top-down
        assert page.get_by_text("Download HTML case report").count() == 1
        assert page.get_by_text("Traceback").count() == 0
        shot = tmp_path / "analyze.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 50_000
    if os.environ.get("TBD_SCREENSHOT_DIR"):  # keep a copy to look at
        shutil.copy(shot, Path(os.environ["TBD_SCREENSHOT_DIR"]) / "analyze.png")


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True
