"""The HTTP API: FastAPI's TestClient for the contract, a real uvicorn on loopback for uploads, keys, limits and
20 concurrent requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import free_port, wait_http

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def client(meso_weights, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from core.api import create_app

    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    monkeypatch.delenv("TBD_API_KEY", raising=False)
    app = create_app(db_path=tmp_path / "cases.sqlite", max_bytes=2_000_000)
    with TestClient(app) as c:
        yield c


def test_analyze_upload_gives_the_cli_json_and_a_case(client, face_image, meso_weights):
    from conftest import run_cli

    r = client.post("/v1/analyze", files={"file": ("face.jpg", face_image.read_bytes(), "image/jpeg")},
                    params={"frames": 1})
    assert r.status_code == 200, r.text
    j = r.json()
    cli = json.loads(run_cli("analyze", str(face_image), "--frames", "1", "--json", "-", "--quiet",
                             env={"TBD_WEIGHTS": str(meso_weights)}).stdout)
    assert set(j) == set(cli) and j["verdict"] == cli["verdict"]
    assert j["fake_probability"] == pytest.approx(cli["fake_probability"], abs=1e-6)
    assert j["input"]["path"] == "face.jpg" and j["input"]["sha256"] == cli["input"]["sha256"]
    assert r.headers["x-tbd-stored"] == "yes"
    cases = client.get("/v1/cases").json()
    assert [c["sha256"] for c in cases] == [j["input"]["sha256"]] and cases[0]["source"] == "api"
    one = client.get(f"/v1/cases/{j['input']['sha256']}").json()
    assert one["analysis"]["verdict"] == j["verdict"]
    assert client.get("/v1/cases/" + "0" * 64).status_code == 404
    assert client.get("/v1/cases/nothex").status_code == 422
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/v1/analyze" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_bad_uploads_are_4xx_with_one_line(client):
    r = client.post("/v1/analyze", files={"file": ("x.jpg", b"<html>not an image</html>", "image/jpeg")})
    assert r.status_code == 422 and "\n" not in r.json()["detail"] and "x.jpg" in r.json()["detail"]
    r = client.post("/v1/analyze", files={"file": ("empty.mp4", b"", "video/mp4")})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = client.post("/v1/analyze", files={"file": ("big.mp4", b"\0" * 2_100_000, "video/mp4")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert client.post("/v1/analyze").status_code == 422  # no file field
    r = client.post("/v1/analyze", files={"file": ("a.jpg", b"x", "image/jpeg")}, params={"frames": 0})
    assert r.status_code == 422


@pytest.fixture()
def server(meso_weights, tmp_path):
    port = free_port()
    env = dict(os.environ, TBD_WEIGHTS=str(meso_weights), TBD_API_KEY="s3cret", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--port", str(port), "--db",
                             str(tmp_path / "cases.sqlite"), "--max-mb", "3", "--queue", "32"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", tmp_path / "serve.log", "the API")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_real_server_on_loopback_keys_limits_and_20_concurrent_requests(server, face_image):
    import httpx

    data = face_image.read_bytes()
    files = {"file": ("face.jpg", data, "image/jpeg")}
    assert httpx.post(f"{server}/v1/analyze", files=files).status_code == 401  # the key is set
    assert httpx.post(f"{server}/v1/analyze", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    key = {"X-API-Key": "s3cret"}
    r = httpx.post(f"{server}/v1/analyze", files=files, headers=key, params={"frames": 1}, timeout=300)
    assert r.status_code == 200 and r.json()["verdict"] in ("real", "fake", "uncertain")
    r = httpx.post(f"{server}/v1/analyze", files={"file": ("big.mp4", b"\0" * 3_200_000, "video/mp4")},
                   headers=key, timeout=60)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = httpx.post(f"{server}/v1/analyze", files={"file": ("notes.jpg", b"just text, not a photo", "image/jpeg")},
                   headers=key, timeout=60)
    assert r.status_code == 422 and "notes.jpg" in r.json()["detail"] and "\n" not in r.json()["detail"]

    def one(i):
        body = {"file": (f"face{i}.jpg", data, "image/jpeg")}
        return httpx.post(f"{server}/v1/analyze", files=body, headers=key, params={"frames": 1}, timeout=600)

    t0 = time.time()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert [a.status_code for a in answers] == [200] * 20  # all answered, none lost
    sha = {a.json()["input"]["sha256"] for a in answers}
    assert len(sha) == 1
    cases = httpx.get(f"{server}/v1/cases", headers=key).json()
    assert len(cases) == 1  # one file analysed the same way is one case
    print(f"\n20 concurrent uploads answered in {time.time() - t0:.1f} s")


def test_a_full_queue_says_busy_instead_of_piling_up(meso_weights, tmp_path, face_image, monkeypatch):
    from fastapi.testclient import TestClient

    from core.api import create_app

    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    with TestClient(create_app(db_path=tmp_path / "c.sqlite", queue=0)) as c:
        r = c.post("/v1/analyze", files={"file": ("face.jpg", face_image.read_bytes(), "image/jpeg")})
    assert r.status_code == 503 and r.headers["retry-after"] == "10" and "busy" in r.json()["detail"]
