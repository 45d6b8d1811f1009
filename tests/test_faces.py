"""Crop geometry, track linking, and the dual-stage detector on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, need_shared
from core.faces import PAD_VALUE, Face, FaceDetector, crop_box, crop_face, link_tracks, pad_frame
from core.media import load_image

NEEDS_PADDING = DATA / "i-Shreyansh__DeepFake-Detection/faces_224/esbaoauizq.jpg"  # MTCNN finds it only padded


def test_crop_box_square_margin_and_padded():
    l, t, r, b = crop_box((100, 100, 140, 160), 400, 300, margin=0.25)
    assert r - l == b - t == 90  # 60 * 1.5, square on the longer side
    assert (l + r) / 2 == pytest.approx(120, abs=1) and (t + b) / 2 == pytest.approx(130, abs=1)
    # Near an edge the window stays centred on the face and reaches outside the frame (padding, not shifting).
    assert crop_box((0, 0, 40, 40), 400, 300, margin=0.5) == (-20, -20, 60, 60)
    # Larger than the frame: the whole window, outside parts included.
    assert crop_box((10, 10, 290, 290), 300, 300, margin=0.5) == (-130, -130, 430, 430)


def test_crop_box_shift_mode_of_earlier_models():
    # Cards cut before padding existed ("mode": "shift"): shifted inside the frame, clamped where it cannot fit.
    l, t, r, b = crop_box((0, 0, 40, 40), 400, 300, margin=0.5, mode="shift")
    assert (l, t) == (0, 0) and r - l == 80 and b - t == 80
    assert crop_box((10, 10, 290, 290), 300, 300, margin=0.5, mode="shift") == (0, 0, 300, 300)
    with pytest.raises(ValueError, match="crop mode"):
        crop_box((0, 0, 4, 4), 10, 10, mode="clamp")


def test_crop_face_pads_where_the_window_leaves_the_image():
    img = np.full((100, 100, 3), 200, np.uint8)  # a face crop that the face fills
    crop = crop_face(img, (0, 0, 100, 100), size=150, margin=0.25)  # window -25..125 -> 150 px, no resize
    assert crop.shape == (150, 150, 3)
    assert np.all(crop[:25] == PAD_VALUE) and np.all(crop[:, :25] == PAD_VALUE) and np.all(crop[-25:] == PAD_VALUE)
    assert np.all(crop[25:125, 25:125] == 200)  # the image itself, centred and unscaled


def test_detection_copy_repeats_the_edge_not_the_crop_padding():
    """The second detection pass searches the frame inside a border of its own edge pixels (a black border hides
    faces that the image edge cuts off); the crop's padding stays PAD_VALUE."""
    img = np.zeros((100, 80, 3), np.uint8)
    img[0, :] = (10, 20, 30)
    img[-1, :] = (200, 100, 50)
    img[1:-1, 0] = (7, 7, 7)
    padded, p = pad_frame(img)
    assert p == 25 and padded.shape == (150, 130, 3)
    assert np.array_equal(padded[p:-p, p:-p], img)
    assert np.all(padded[:p, p + 1:-p - 1] == (10, 20, 30)) and np.all(padded[-p:, p + 1:-p - 1] == (200, 100, 50))
    assert np.all(padded[p + 1:-p - 1, :p] == (7, 7, 7))
    crop = crop_face(img, (0, 0, 80, 100), size=150, margin=0.25)
    assert np.all(crop[:5] == PAD_VALUE)
    black, p = pad_frame(img, border="black")
    assert p == 25 and np.array_equal(black[p:-p, p:-p], img)
    assert np.all(black[:p] == PAD_VALUE) and np.all(black[:, :p] == PAD_VALUE) and np.all(black[-p:] == PAD_VALUE)
    with pytest.raises(ValueError, match="unknown detection border"):
        pad_frame(img, border="reflect")


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


def test_pre_cropped_faces_are_found(detector, shared_data):
    """The DFDC and FF++ face crops (the face fills the image) are detected: the padded pass finds what the plain
    pass misses, and boxes come back in the crop's own pixels."""
    need_shared(NEEDS_PADDING)
    img = load_image(NEEDS_PADDING)
    assert detector._detect_pass([img], detector.threshold) == [[]]
    faces = detector.detect([img])[0]
    assert faces and faces[0].extra.get("padded_detection") == "black"
    black, p = pad_frame(img, border="black")
    first = detector._detect_pass([black], detector.threshold)[0][0]
    assert faces[0].box == tuple(round(min(max(v - p, 0.0), lim), 1)
                                 for v, lim in zip(first.box, (img.shape[1], img.shape[0]) * 2))
    x1, y1, x2, y2 = faces[0].box
    assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0] and (x2 - x1) > img.shape[1] / 2
    crops = sorted((shared_data / "i-Shreyansh__DeepFake-Detection/faces_224").glob("*.jpg"))[:20:2] + \
        sorted((shared_data / "MCS1-FYP__MesoNet-Website").glob("*/*.jpg"))[:20:2]
    found = [bool(detector.detect([load_image(p)])[0]) for p in crops]
    assert sum(found) >= 18, [str(p) for p, f in zip(crops, found) if not f]


def test_a_face_the_crop_edge_cuts_off_is_found(detector, shared_data):
    """A tight DFDC crop whose forehead and chin lie outside the image: inside a black border MTCNN confirms
    nothing; inside a border of repeated edge pixels (the last detection copy) the face is found."""
    path = shared_data / "i-Shreyansh__DeepFake-Detection/faces_224/wvpvheatlc.jpg"
    need_shared(path)
    img = load_image(path)
    p = img.shape[0] // 4
    black = np.pad(img, ((p, p), (p, p), (0, 0)))
    assert np.array_equal(black, pad_frame(img, border="black")[0])
    assert detector._detect_pass([img], detector.threshold) == [[]]
    assert detector._detect_pass([black], detector.threshold) == [[]]
    faces = detector.detect([img])[0]
    assert len(faces) == 1 and faces[0].extra.get("padded_detection") == "edge" and faces[0].confidence >= 0.9
    x1, y1, x2, y2 = faces[0].box
    assert (x2 - x1) > 0.7 * img.shape[1] and (y2 - y1) > 0.7 * img.shape[0]
