"""The whole pipeline on real media from ../shared (MesoNet models as the ensemble): JSON contract, tracks,
no-face, failing models, Grad-CAM, reports, evaluation and robustness."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import DFDC_CLIP, need_pdf, need_shared
from core.analyze import Analyzer, NoModelsError
from core.evaluate import evaluate_csv, read_labels, robustness_csv
from core.media import MediaError
from core.report import render_html

FACE_KEYS = {"box", "confidence", "track", "fake_probability"}


@pytest.fixture(scope="module")
def clip_result(analyzer):
    need_shared(DFDC_CLIP)
    return analyzer.analyze(DFDC_CLIP, frames=32, cam=True)


def test_json_contract_on_a_real_video(clip_result, analyzer):
    j = json.loads(json.dumps(clip_result.to_json()))
    assert set(j["input"]) >= {"path", "sha256", "kind", "width", "height", "fps", "duration_s", "frame_count", "codec"}
    assert j["input"]["kind"] == "video" and (j["input"]["width"], j["input"]["height"]) == (1920, 1080)
    assert j["input"]["frame_count"] == 300 and j["input"]["duration_s"] == pytest.approx(10.01, abs=0.05)
    assert j["verdict"] in ("fake", "real", "uncertain")
    assert 0 <= j["fake_probability"] <= 1
    assert set(j["models"]) == set(analyzer.detectors)
    for m in j["models"].values():
        assert set(m) >= {"fake_probability", "vote", "error"} and m["error"] is None
        assert m["vote"] in ("fake", "real")
    assert len(j["frames"]) == 32
    times = [f["time_s"] for f in j["frames"]]
    assert times == sorted(times) and times[0] == 0 and times[-1] > 9.5  # the whole duration, not the start
    faces = [face for f in j["frames"] for face in f["faces"]]
    assert len(faces) >= 5  # the DFDC subject is found in several frames (dark clip)
    for face in faces:
        assert FACE_KEYS <= set(face)
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 1920 and 0 <= y1 < y2 <= 1080
        assert face["confidence"] >= 0.9
        assert set(face["fake_probability"]) == set(analyzer.detectors)
        assert 0 <= face["ensemble_fake_probability"] <= 1
        assert all(0 <= p <= 1 for p in face["fake_probability"].values())
    assert j["tracks"] and all(t["faces"] >= 1 for t in j["tracks"])
    assert j["ensemble"]["track"] in {t["id"] for t in j["tracks"]}
    assert set(j["timings_s"]) >= {"load", "decode", "faces", "models", "explain", "total"}
    assert j["timings_s"]["total"] < j["timings_s"]["load"] + j["timings_s"]["total"]
    # The video-level model score is the mean over the deciding track's faces.
    tid = j["ensemble"]["track"]
    for name in analyzer.detectors:
        ps = [face["fake_probability"][name] for face in faces if face["track"] == tid]
        assert j["models"][name]["fake_probability"] == pytest.approx(np.mean(ps), abs=1e-5)
    # Ensemble = mean of the models on that track.
    assert j["fake_probability"] == pytest.approx(np.mean([m["fake_probability"] for m in j["models"].values()]),
                                                  abs=1e-5)


def test_gradcam_overlays_for_every_face_and_model(clip_result, analyzer):
    assert clip_result.faces
    for f in clip_result.faces:
        assert set(f.cams) == set(analyzer.detectors)
        for ov in f.cams.values():
            assert ov.shape == f.crop.shape and ov.dtype == np.uint8


def test_html_report_is_self_contained(clip_result, tmp_path):
    html = render_html(clip_result)
    assert clip_result.info.sha256 in html
    assert "Verdict:" in html and clip_result.verdict.replace("_", " ").upper() in html
    votes = clip_result.ensemble.get("votes", {})
    assert "Votes of the verdict's models: " + ", ".join(f"{n} {k}" for k, n in votes.items()) in html
    # compact gallery: every face once as a small crop, the deciding track first; the key face with each model's
    # Grad-CAM over its own input crop
    assert html.count("<div class='face'") == len(clip_result.faces)
    tracks = re.findall(r"<h3>Track (\d+)", html)
    assert tracks and int(tracks[0]) == clip_result.ensemble["track"]
    assert html.count("data:image/png;base64,") >= len(clip_result.faces) + 1 + 2 * len(clip_result.models)
    assert all(f"{m}: Grad-CAM over its input" in html for m in clip_result.models)
    assert not re.search(r"""(src|href)=["']https?://""", html)
    assert "<svg" in html and "Grad-CAM" in html
    # the timeline has time ticks (seconds) along the axis
    ticks = [float(t) for t in re.findall(r'text-anchor="middle">([0-9.]+)</text>', html)]
    last = clip_result.frames[-1]["time_s"]
    assert len(ticks) >= 4 and ticks == sorted(ticks) and ticks[-1] <= last < ticks[-1] + (ticks[1] - ticks[0])
    assert "time (s)" in html


def test_pdf_report_first_page_has_sha_verdict_and_model_versions(clip_result, tmp_path):
    need_pdf()
    from pypdf import PdfReader

    from core.report import render_pdf

    pdf = render_pdf(clip_result)
    assert pdf[:5] == b"%PDF-"
    (tmp_path / "case.pdf").write_bytes(pdf)
    reader = PdfReader(tmp_path / "case.pdf")
    first = "".join(reader.pages[0].extract_text().split())  # table cells may wrap a long hash
    assert clip_result.info.sha256 in first
    assert clip_result.verdict.replace("_", " ").upper() in first
    for name, card in clip_result.model_cards.items():
        assert "".join(name.split()) in first and card["sha256"] in first
    assert len(reader.pages) >= 2


def test_image_with_face(analyzer, face_image):
    r = analyzer.analyze(face_image).to_json()
    assert r["input"]["kind"] == "image" and len(r["frames"]) == 1 and r["frames"][0]["time_s"] == 0
    assert len(r["frames"][0]["faces"]) == 1 and r["verdict"] != "no_face"


def test_no_face_gives_no_face_never_a_score(analyzer, tmp_path):
    p = tmp_path / "landscape.png"
    rng = np.random.default_rng(0)
    Image.fromarray(np.clip(rng.normal(120, 20, (240, 320, 3)), 0, 255).astype(np.uint8)).save(p)
    r = analyzer.analyze(p).to_json()
    assert r["verdict"] == "no_face" and r["fake_probability"] is None
    assert all(m["fake_probability"] is None and m["error"] is None for m in r["models"].values())
    assert r["tracks"] == []


def test_zip_of_frames_from_a_real_video(analyzer, tmp_path, shared_data):
    need_shared(DFDC_CLIP)
    from core.media import open_media

    frames = list(open_media(DFDC_CLIP).frames(12))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, f in enumerate(frames):
            b = io.BytesIO()
            Image.fromarray(f.image).save(b, format="JPEG", quality=92)
            zf.writestr(f"clip/frame_{k + 1}.jpg", b.getvalue())
    p = tmp_path / "frames.zip"
    p.write_bytes(buf.getvalue())
    r = analyzer.analyze(p, frames=32).to_json()
    assert r["input"]["kind"] == "frames" and r["input"]["frame_count"] == 12
    assert [f["index"] for f in r["frames"]] == list(range(12)) and r["frames"][0]["time_s"] is None
    assert sum(len(f["faces"]) for f in r["frames"]) >= 2


def test_failing_model_is_reported_not_averaged(analyzer, face_image, monkeypatch):
    names = list(analyzer.detectors)
    good = analyzer.analyze(face_image).to_json()
    broken = names[0]

    def boom(*a, **k):
        raise RuntimeError("weights corrupted in memory")

    monkeypatch.setattr(analyzer.detectors[broken], "predict", boom)
    r = analyzer.analyze(face_image).to_json()
    assert r["models"][broken]["error"].startswith("RuntimeError: weights corrupted")
    assert r["models"][broken]["fake_probability"] is None
    other = names[1]
    assert r["fake_probability"] == pytest.approx(good["models"][other]["fake_probability"], abs=1e-6)
    assert r["ensemble"]["members"] == [other]
    monkeypatch.setattr(analyzer.detectors[other], "predict", boom)
    r = analyzer.analyze(face_image).to_json()
    assert r["verdict"] == "error" and r["fake_probability"] is None


def test_face_threshold_and_model_subset(analyzer, face_image):
    names = list(analyzer.detectors)
    r = analyzer.analyze(face_image, models=[names[0]], face_threshold=0.9).to_json()
    assert list(r["models"]) == [names[0]]
    r = analyzer.analyze(face_image, face_threshold=1.0).to_json()
    assert r["verdict"] == "no_face"  # nothing is confirmed at probability 1.0
    with pytest.raises(NoModelsError):
        analyzer.analyze(face_image, models=["not-a-model"])


def test_models_beside_the_ensemble(analyzer, face_image):
    names = list(analyzer.detectors)
    r = analyzer.analyze(face_image, ensemble_models=names[:1]).to_json()
    assert all(r["models"][n]["fake_probability"] is not None for n in names)  # every model scored
    assert [r["models"][n]["in_ensemble"] for n in names] == [True] + [False] * (len(names) - 1)
    assert r["ensemble"]["members"] == names[:1]
    assert r["fake_probability"] == pytest.approx(r["models"][names[0]]["fake_probability"], abs=1e-5)
    with pytest.raises(NoModelsError):
        analyzer.analyze(face_image, ensemble_models=["not-a-model"])


def test_unusable_input_raises_media_error(analyzer, tmp_path):
    p = tmp_path / "x.mp4"
    p.write_text("not a video")
    with pytest.raises(MediaError):
        analyzer.analyze(p)


def test_no_models_is_a_clear_error(tmp_path):
    with pytest.raises(NoModelsError, match="no detector models installed"):
        Analyzer(dirs=[tmp_path])


# ---------------------------------------------------------------------------------------- evaluate, robustness


def _subset_csv(shared_data, tmp_path, n_per_class=3) -> tuple:
    """Rows of ../shared/data/LABELS.csv (all its columns) for a few GAN and FFHQ faces, paths made absolute."""
    with open(shared_data / "LABELS.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    pick = [r for r in rows if r["path"].startswith("ffhq_vs_stylegan2/real/")][:n_per_class]
    pick += [r for r in rows if r["path"].startswith("ffhq_vs_stylegan2/fake/")][:n_per_class]
    out = tmp_path / "subset.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in pick:
            w.writerow(dict(r, path=str(shared_data / r["path"])))
    return out, pick


def test_shared_labels_csv_reads_as_is(shared_data):
    rows = read_labels(shared_data / "LABELS.csv")
    assert len(rows) > 800 and {r["label"] for r in rows} == {"real", "fake"}
    from pathlib import Path

    assert all(Path(r["abs_path"]).exists() for r in rows)


def test_evaluate_metrics(analyzer, shared_data, tmp_path):
    csv_path, pick = _subset_csv(shared_data, tmp_path)
    res = evaluate_csv(csv_path, analyzer, frames=1, progress=False)
    assert res["n_rows"] == 6 and len(res["files"]) == 6
    for level in ("video", "frame"):
        for name in list(analyzer.detectors) + (["ensemble"] if level == "video" else []):
            m = res[level][name]
            assert m["n"] > 0 and 0 <= m["auc"] <= 1 and 0 <= m["accuracy"] <= 1
            assert np.array(m["confusion_matrix"]).sum() == m["n"]
    # AUC computed here agrees with sklearn on the per-file scores.
    from sklearn.metrics import roc_auc_score

    name = list(analyzer.detectors)[0]
    files = [f for f in res["files"] if f["models"][name] is not None]
    assert res["video"][name]["auc"] == pytest.approx(
        roc_auc_score([f["label"] == "fake" for f in files], [f["models"][name] for f in files]))
    assert set(res["breakdown"]["dataset"]) == {r["dataset"] for r in pick}
    assert "ensemble" in res["video"] and "report" in res["video"]["ensemble"]


def test_robustness_per_strength(analyzer, shared_data, tmp_path):
    csv_path, _ = _subset_csv(shared_data, tmp_path, n_per_class=2)
    res = robustness_csv(csv_path, analyzer, [("jpeg", [50.0]), ("blur", [2.0])], frames=1, progress=False)
    assert set(res["perturbations"]) == {"jpeg", "blur"}
    e = res["perturbations"]["jpeg"][0]
    assert e["strength"] == 50.0 and set(e["video"]) == set(analyzer.detectors) | {"ensemble"}
    assert res["clean"]["video"]["ensemble"]["n"] == 4
    # A perturbation changes the scores.
    name = list(analyzer.detectors)[0]
    assert e["video"][name]["mean_p_fake_on_real"] != res["clean"]["video"][name]["mean_p_fake_on_real"]


def test_each_stage_runs_alone_and_together_they_are_analyze(analyzer, face_image):
    """sample -> detect -> crop -> score -> decide -> explain, called one by one (and timed), give what
    `analyze` gives."""
    import time

    from core.media import open_media

    names = list(analyzer.detectors)
    specs = analyzer._crop_specs(names)
    media = open_media(face_image)
    t = {}
    t0 = time.perf_counter()
    chunks = list(analyzer.sample(media, 1))
    t["sample"] = time.perf_counter() - t0
    assert len(chunks) == 1 and len(chunks[0]) == 1
    faces = analyzer.detect(chunks[0], 0.9)
    assert len(faces[0]) == 1
    cropped = analyzer.crop(chunks[0][0], faces[0], specs)
    assert len(cropped) == 1 and set(cropped[0][1]) == set(specs)
    assert cropped[0][0].thumb.shape[:2] == (128, 128)
    found = analyzer.faces_of(open_media(face_image), 1, 0.9, specs)
    scores = analyzer.score(found, names)
    decision = analyzer.decide(found, scores, names, names)
    analyzer.explain(found, names, scores.model_out)
    a = analyzer.analyze(face_image, frames=1, cam=True)
    assert decision.verdict == a.verdict
    assert decision.fake_probability == pytest.approx(a.fake_probability, abs=1e-6)
    assert {m: v["fake_probability"] for m, v in scores.model_out.items()} == pytest.approx(
        {m: v["fake_probability"] for m, v in a.models.items()}, abs=1e-6)
    assert set(found.faces[0].cams) == set(names) and set(found.faces[0].inputs) == set(names)
    # a stored case comes back with the same per-face scores (gallery borders included)
    back = type(a).from_json(a.to_json(), a.face_thumbs())
    assert [f.fake_probability for f in back.faces] == pytest.approx([f.fake_probability for f in a.faces], abs=1e-6)
    assert back.verdict == a.verdict and back.faces[0].thumb.shape == a.faces[0].thumb.shape
    assert t["sample"] >= 0


def test_a_cards_pre_cropped_caveat_is_a_warning_only_where_the_face_fills_the_image(tmp_path):
    """gan-face's card carries a measured caveat for faces that fill their image (it misses GAN faces cut that
    tightly): an analysis of a pre-cropped face (found only on the padded detection pass) carries it as a warning;
    a photo with the face inside it does not; a card without caveats adds nothing."""
    from conftest import DATA, REPO

    crop = DATA / "i-Shreyansh__DeepFake-Detection/faces_224/esbaoauizq.jpg"  # MTCNN finds it only padded
    photo = DATA / "ffhq_vs_stylegan2/real/0.jpg"
    need_shared(crop)
    need_shared(photo)
    an = Analyzer(models=["gan-face", "face-swap"], dirs=[REPO / "weights"], device="cpu")
    caveat = an.cards["gan-face"].caveats["pre_cropped"]
    assert "pre_cropped" not in an.cards["face-swap"].caveats
    a = an.analyze(crop, frames=1)
    assert a.faces and a.faces[0].face.extra.get("padded_detection")
    assert a.info.warnings == [f"gan-face on a face that fills its image: {caveat}"]
    assert a.to_json()["input"]["warnings"] == a.info.warnings
    b = an.analyze(photo, frames=1)
    assert b.faces and not b.faces[0].face.extra.get("padded_detection") and b.info.warnings == []
    only = Analyzer(models=["face-swap"], dirs=[REPO / "weights"], device="cpu")
    assert only.analyze(crop, frames=1).info.warnings == []


def test_low_resolution_caveats_warn_on_small_faces_only(tmp_path):
    """Both default models' cards state what was measured on faces under LOW_RES_FACE_PX: a photo shrunk so that
    its face box is ~45 px carries each as a warning, with the measured face size; the same photo as given does
    not; a model whose card has no such caveat adds nothing."""
    from conftest import DATA, REPO
    from core.analyze import LOW_RES_FACE_PX, face_side_px

    photo = DATA / "ffhq_vs_stylegan2/real/0.jpg"
    need_shared(photo)
    small = tmp_path / "small.jpg"
    Image.open(photo).convert("RGB").resize((80, 80), Image.LANCZOS).save(small, quality=95)
    an = Analyzer(models=["face-swap", "gan-face"], dirs=[REPO / "weights"], device="cpu")
    big = an.analyze(photo, frames=1)
    assert big.faces and face_side_px(big.faces) >= LOW_RES_FACE_PX and big.info.warnings == []
    a = an.analyze(small, frames=1)
    side = face_side_px(a.faces)
    assert a.faces and side < LOW_RES_FACE_PX
    low = [w for w in a.info.warnings if "low-resolution face" in w]
    assert low == [f"{n} on a low-resolution face (median face box {side:.0f} px, under {LOW_RES_FACE_PX}): "
                   f"{an.cards[n].caveats['low_resolution']}" for n in ("face-swap", "gan-face")]
    assert a.to_json()["input"]["warnings"] == a.info.warnings
    other = Analyzer(models=["swap-sbi"], dirs=[REPO / "weights"], device="cpu")
    assert not other.cards["swap-sbi"].caveats and other.analyze(small, frames=1).info.warnings == []


def test_a_sideways_image_is_analysed_turned_with_a_warning(tmp_path):
    """MTCNN finds upright faces only: a photo turned sideways without an EXIF tag is detected again turned back
    (the warning and `rotation` say so, and its scores are those of the upright photo); an image without any face
    stays no_face after every turn."""
    from conftest import DATA, REPO

    photo = DATA / "ffhq_vs_stylegan2/real/0.jpg"
    need_shared(photo)
    side = tmp_path / "side.png"
    Image.open(photo).convert("RGB").rotate(-90, expand=True).save(side)  # a quarter turn clockwise
    an = Analyzer(models=["face-swap"], dirs=[REPO / "weights"], device="cpu")
    a = an.analyze(side, frames=1)
    assert a.faces and a.verdict != "no_face" and a.info.rotation == 90
    assert a.info.warnings == ["no upright face: one was found with the image turned 90 degrees counter-clockwise, "
                               "and the turned image was analysed"]
    up = tmp_path / "up.png"
    Image.open(photo).convert("RGB").save(up)
    b = an.analyze(up, frames=1)
    assert b.info.rotation == 0 and b.info.warnings == []
    assert a.models["face-swap"]["fake_probability"] == pytest.approx(b.models["face-swap"]["fake_probability"], abs=0.02)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (128, 140, 150)).save(blank)
    c = an.analyze(blank, frames=1)
    assert c.verdict == "no_face" and not c.faces and c.info.rotation == 0 and c.info.warnings == []
