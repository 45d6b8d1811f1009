"""Crop geometry, track linking, and the dual-stage detector on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from core.faces import Face, FaceDetector, crop_box, crop_face, link_tracks
from core.media import load_image


def test_crop_box_square_margin_and_clamped():
    l, t, r, b = crop_box((100, 100, 140, 160), 400, 300, margin=0.25)
    assert r - l == b - t == 90  # 60 * 1.5, square on the longer side
    assert (l + r) / 2 == pytest.approx(120, abs=1) and (t + b) / 2 == pytest.approx(130, abs=1)
    # Near an edge the window shifts inside rather than padding.
    l, t, r, b = crop_box((0, 0, 40, 40), 400, 300, margin=0.5)
    assert (l, t) == (0, 0) and r - l == 80 and b - t == 80
    # Larger than the frame: clamped to the frame.
    assert crop_box((10, 10, 290, 290), 300, 300, margin=0.5) == (0, 0, 300, 300)


def test_crop_face_size_and_content():
    img = np.zeros((300, 400, 3), np.uint8)
    img[100:160, 100:140] = 255
    crop = crop_face(img, (100, 100, 140, 160), size=64, margin=0.0)
    assert crop.shape == (64, 64, 3)
    assert crop[32, 32].mean() > 200 and crop[32, 2].mean() < 50  # face centred, sides outside the box dark


def test_link_tracks_follows_moving_faces_and_keeps_separate_people():
    def f(x, y, s=50):
        return Face(box=(x, y, x + s, y + s), confidence=0.99, detect_confidence=0.99)

    frames = [[f(10, 10), f(300, 10)], [f(18, 12), f(305, 14)], [], [f(30, 15)], [f(40, 18), f(310, 20)]]
    n = link_tracks(frames)
    assert n == 2
    assert {frames[0][0].track, frames[1][0].track, frames[3][0].track, frames[4][0].track} == {0}
    assert {frames[0][1].track, frames[1][1].track, frames[4][1].track} == {1}


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(threshold=0.9)


def test_detects_real_faces_and_confirms(detector, face_image, shared_data):
    img = load_image(face_image)
    faces = detector.detect([img])[0]
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    h, w = img.shape[:2]
    assert 0.2 * w < x2 - x1 < 0.9 * w  # an FFHQ face fills much of the photo
    assert faces[0].confidence >= 0.9 and len(faces[0].landmarks) == 5
    # A multi-face press photo gives several confirmed faces (batch of different sizes in one call).
    group = next((shared_data / "serengil__deepface").rglob("couple.jpg"))
    res = detector.detect([load_image(group), img])
    assert len(res[0]) >= 2 and len(res[1]) == 1


def test_no_face_in_a_photo_without_people(detector):
    rng = np.random.default_rng(0)
    sky = np.clip(rng.normal(150, 10, (360, 480, 3)), 0, 255).astype(np.uint8)
    assert detector.detect([sky]) == [[]]


def test_second_stage_rejects_what_the_first_stage_alone_accepts(detector, face_image):
    """With dual stage the kept set is a subset of stage-1 candidates, and a stricter threshold never adds faces."""
    img = load_image(face_image)
    single = FaceDetector(threshold=0.5, dual_stage=False).detect([img])[0]
    dual_strict = detector.detect([img], threshold=0.999)[0]
    assert len(dual_strict) <= len(single)
    assert all(f.confidence >= 0.999 for f in dual_strict)
