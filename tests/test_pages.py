"""Every dashboard page renders headlessly (AppTest); a real analysis through the Analyze page; the Robustness
probe; result files on the Benchmarks page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import DFDC_CLIP, need_shared

REPO = Path(__file__).resolve().parents[1]
PAGES = ["Home.py", "pages/1_Analyze.py", "pages/2_Benchmarks.py", "pages/3_Robustness.py", "pages/4_Models.py"]


def _app(page: str) -> AppTest:
    return AppTest.from_file(str(REPO / page), default_timeout=300)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_models(page, meso_weights, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app(page).run()
    assert not at.exception, at.exception
    assert at.title or at.markdown


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_models(page, tmp_path, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(tmp_path))
    at = _app(page).run()
    assert not at.exception, at.exception


def test_analyze_a_real_video_shows_verdict_bars_timeline_gallery(meso_weights, monkeypatch):
    need_shared(DFDC_CLIP)
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/1_Analyze.py").run()
    at.sidebar.slider[0].set_value(12).run()  # frames
    at.file_uploader[0].upload("dfdc.mp4", DFDC_CLIP.read_bytes(), "video/mp4").run()
    assert any("Using the **video** input" in i.value for i in at.info)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    banner = [m.value for m in at.markdown if "ensemble P(fake)" in m.value]
    assert banner and any(v in banner[0] for v in ("REAL", "FAKE", "UNCERTAIN"))
    assert len(at.get("plotly_chart")) == 2  # per-model bars and the timeline
    assert at.select_slider[0].label == "Frame" and len(at.select_slider[0].options) == 12
    assert len(at.get("image")) >= 3  # annotated frame, face crop, Grad-CAM overlays
    assert at.radio[0].label == "Face"
    table = at.dataframe[-1].value
    assert "SHA-256" in list(table["field"])
    assert [b.label for b in at.get("download_button")] == ["Download JSON result", "Download HTML case report"]
    # Choosing another frame keeps the result and moves the selection.
    at.select_slider[0].set_value(11).run()
    assert at.select_slider[0].value == 11
    assert not at.exception and len(at.get("plotly_chart")) == 2
    assert at.session_state["history"][-1]["file"] == "dfdc.mp4"


def test_analyze_models_outside_the_verdict(meso_weights, face_image, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/1_Analyze.py").run()
    at.sidebar.multiselect[0].set_value(["meso4-df"]).run()
    assert at.sidebar.multiselect[1].options == ["MesoInception4 (DF)"]  # display names; the chosen model is not offered
    at.sidebar.multiselect[1].set_value(["mesoinception4-df"]).run()
    at.file_uploader[2].upload("face.jpg", face_image.read_bytes(), "image/jpeg").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    a = at.session_state["analysis"]
    assert set(a.models) == {"meso4-df", "mesoinception4-df"} and a.ensemble["members"] == ["meso4-df"]
    assert a.fake_probability == pytest.approx(a.models["meso4-df"]["fake_probability"], abs=1e-5)
    listing = next(m.value for m in at.markdown if "**mesoinception4-df**" in m.value)
    assert "(outside the verdict)" in listing and "**meso4-df**: P(fake)" in listing
    assert "outside the verdict" not in listing.split("**meso4-df**")[1].split("\n")[0]


def test_analyze_unreadable_upload_is_a_clear_message(meso_weights, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/1_Analyze.py").run()
    at.file_uploader[2].upload("photo.jpg", b"<html>not an image</html>", "image/jpeg").run()
    at.button[0].click().run()
    assert not at.exception
    assert at.error and "photo.jpg" in at.error[0].value and "Traceback" not in at.error[0].value


def test_analyze_priority_frames_over_image_over_video(meso_weights, face_image, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/1_Analyze.py").run()
    at.file_uploader[0].upload("v.mp4", b"x", "video/mp4").run()
    at.file_uploader[2].upload("face.jpg", face_image.read_bytes(), "image/jpeg").run()
    assert any("Using the **image** input `face.jpg`; ignoring the video input" in i.value for i in at.info)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any("ensemble P(fake)" in m.value for m in at.markdown)


def test_robustness_probe_on_an_image(meso_weights, face_image, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/3_Robustness.py").run()
    at.file_uploader[0].upload("face.jpg", face_image.read_bytes(), "image/jpeg").run()
    at.text_input[0].set_value("80, 30").run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.tabs[0].get("plotly_chart")) == 1  # the "One file" tab (batch results may add more)
    rows = at.dataframe[0].value
    assert list(rows["strength"]) == ["clean", "80", "30"]
    assert len(at.tabs[0].get("image")) == 3  # original + two perturbed versions


def test_benchmarks_show_measured_and_quoted(tmp_path, monkeypatch, meso_weights, shared_data):
    """An evaluation result file placed in a weights folder appears as 'measured here', with ROC and confusion."""
    from core.analyze import Analyzer
    from core.evaluate import evaluate_csv

    rows = ["path,label,dataset"] + [f"{shared_data}/ffhq_vs_stylegan2/real/{i}.jpg,real,FFHQ" for i in (0, 1)]
    fakes = sorted((shared_data / "ffhq_vs_stylegan2/fake").glob("*.jpg"))[:2]
    rows += [f"{f},fake,StyleGAN2" for f in fakes]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    res = evaluate_csv(tmp_path / "l.csv", Analyzer(dirs=[meso_weights]), frames=1, progress=False)
    wdir = tmp_path / "w"
    wdir.mkdir()
    for f in meso_weights.iterdir():
        (wdir / f.name).write_bytes(f.read_bytes())
    (wdir / "eval-small.json").write_text(json.dumps(res))
    monkeypatch.setenv("TBD_WEIGHTS", str(wdir))
    at = _app("pages/2_Benchmarks.py").run()
    assert not at.exception, at.exception
    assert any("eval-small.json" in str(o) for o in at.selectbox[0].options)
    at.selectbox[0].set_value(next(o for o in at.selectbox[0].options if "eval-small" in str(o))).run()
    table = at.dataframe[0].value
    assert set(table["model"]) >= {"meso4-df", "ensemble"} and set(table["source"]) == {"measured here"}
    assert len(at.get("plotly_chart")) >= 2  # ROC and confusion matrix
    quoted = [m.value for m in at.markdown if "quoted" in m.value]
    assert any("M2TR" in q for q in quoted) and any("EfficientNet-B0 on 140k" in q for q in quoted)


def test_benchmarks_show_the_shipped_targets_and_ensemble_choice(monkeypatch):
    """The shipped weights/benchmarks.json: targets table (with intervals) and how the default ensemble was chosen."""
    monkeypatch.setenv("TBD_WEIGHTS", str(REPO / "weights"))
    at = _app("pages/2_Benchmarks.py").run()
    assert not at.exception, at.exception
    at.selectbox[0].set_value(next(o for o in at.selectbox[0].options if str(o).endswith("benchmarks.json"))).run()
    assert not at.exception, at.exception
    tables = [d.value for d in at.dataframe]
    targets = next(t for t in tables if "target" in t.columns)
    assert {"DFDC crops AUC >= 0.9", "FF++ crops AUC >= 0.95", "face-swap videos AUC >= 0.85",
            "GAN faces (FFHQ vs StyleGAN2) AUC >= 0.95"} <= set(targets["target"])
    assert set(targets["met"]) <= {"yes", "no", "-"} and "ci95" in targets.columns
    candidates = next(t for t in tables if "score" in t.columns)
    assert len(candidates) == 31 and any("How the default ensemble was chosen" in m.value for m in at.markdown)
    families = next(t for t in tables if "family" in t.columns)
    assert {"DFDC crops", "face-swap videos"} <= set(families["family"])
    assert any("Reliability diagram" in str(c.proto.spec) for c in at.get("plotly_chart"))
    ece = next(t for t in tables if "ECE" in t.columns)
    assert "face-swap" in set(ece["model"])


def test_an_imported_swin_model_is_listed_scored_and_explained(tmp_path, meso_weights, face_image, monkeypatch):
    """A user's own timm Swin-T, brought in with `core weights import-torch`: the Models page shows its honest card,
    and the Analyze page scores it beside the verdict with a Grad-CAM map, leaving the default verdict alone."""
    import shutil

    import timm
    import torch

    from core.models.torch_import import import_torch

    for f in meso_weights.iterdir():
        shutil.copy(f, tmp_path / f.name)
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=2, img_size=96)
    torch.save(swin.state_dict(), tmp_path / "swin.pth")
    import_torch(tmp_path / "swin.pth", tmp_path, "my-swin", "image_classifier", "swin_tiny_patch4_window7_224", 96,
                 data="my own faces")
    monkeypatch.setenv("TBD_WEIGHTS", str(tmp_path))

    at = _app("pages/4_Models.py").run()
    assert not at.exception, at.exception
    card_text = " ".join(m.value for m in at.markdown)
    assert "my own faces" in card_text and "imported from swin.pth" in card_text and "has not measured" in card_text

    at = _app("pages/1_Analyze.py").run()
    assert "my-swin" not in at.sidebar.multiselect[0].value  # not in the default verdict
    at.sidebar.multiselect[1].set_value(["my-swin"]).run()
    at.file_uploader[2].upload("face.jpg", face_image.read_bytes(), "image/jpeg").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    a = at.session_state["analysis"]
    assert "my-swin" in a.models and "my-swin" not in a.ensemble["members"]
    assert 0 <= a.models["my-swin"]["fake_probability"] <= 1
    assert a.faces and "my-swin" in a.faces[0].cams  # Grad-CAM through the Swin reshape


def test_analyze_page_scores_an_uploaded_face_crop(meso_weights, monkeypatch):
    """A pre-cropped face (a DFDC crop the face fills, found only in the padded pass) is scored, not `no face`."""
    from conftest import DATA

    crop = DATA / "i-Shreyansh__DeepFake-Detection/faces_224/esbaoauizq.jpg"
    need_shared(crop)
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/1_Analyze.py").run()
    at.file_uploader[2].upload("crop.jpg", crop.read_bytes(), "image/jpeg").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    a = at.session_state["analysis"]
    assert a.verdict != "no_face" and a.fake_probability is not None and len(a.faces) == 1
    assert any("ensemble P(fake)" in m.value for m in at.markdown)


def test_home_says_what_the_default_ensemble_can_and_cannot_catch(monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(REPO / "weights"))
    at = _app("Home.py").run()
    assert not at.exception, at.exception
    policy = json.loads((REPO / "weights" / "ensemble.json").read_text())
    box = next(i.value for i in at.info if "What the default ensemble can and cannot catch" in i.value)
    assert policy["scope"] in box
