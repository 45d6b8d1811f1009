"""Every dashboard page renders headlessly (AppTest); a real analysis through the Analyze page; the Robustness
probe; result files on the Benchmarks page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import DFDC_CLIP, need_shared

REPO = Path(__file__).resolve().parents[1]
PAGES = ["Home.py", "pages/1_Analyze.py", "pages/2_Benchmarks.py", "pages/3_Robustness.py", "pages/4_Models.py",
         "pages/5_Cases.py"]


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
    a = at.session_state["analysis"]
    banner = [m.value for m in at.markdown if "ensemble P(fake)" in m.value]
    assert banner and any(v in banner[0] for v in ("REAL", "FAKE", "UNCERTAIN"))
    assert len(at.get("plotly_chart")) == 2  # per-model bars and the timeline
    assert at.select_slider[0].label == "Frame" and len(at.select_slider[0].options) == 12
    assert at.radio[0].label == "Face"
    # the SHA-256 whole, in a code block (copy button), not cut off in a table
    assert [c.value for c in at.code] == [a.info.sha256]
    assert [b.label for b in at.get("download_button")] == ["Download JSON result", "Download HTML case report",
                                                            "Download PDF case report"]
    # the gallery: one face crop (not a frame) per face, each with a select button; the frame view is one frame
    gallery = [b for b in at.button if b.label in ("select", "selected")]
    assert len(gallery) == len(a.faces) and len(a.faces) >= 6
    assert sum(b.label == "selected" for b in gallery) == len(a.frames[at.select_slider[0].value]["faces"])
    thumbs = [i for i in at.get("image") if "frame " in str(i.proto) and " | " in str(i.proto)]
    assert len(thumbs) == len(a.faces)
    # a gallery click selects that face's frame everywhere: slider, timeline marker, frame view
    target = next(b for b in gallery if b.label == "select")
    k = int(target.key.rsplit("-", 1)[1])
    target.click().run()
    assert not at.exception, at.exception
    assert at.select_slider[0].value == a.faces[k].frame
    assert at.radio[0].value == k
    assert next(b for b in at.button if b.key == target.key).label == "selected"
    # choosing another frame keeps the result and moves the selection
    at.select_slider[0].set_value(11).run()
    assert at.select_slider[0].value == 11
    assert not at.exception and len(at.get("plotly_chart")) == 2
    assert at.session_state["history"][-1]["file"] == "dfdc.mp4"


def _analyzed_image(meso_weights, face_image, monkeypatch):
    """The Analyze page after analysing the FFHQ face photo with the MesoNet pair: (AppTest, Analysis)."""
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = _app("pages/1_Analyze.py").run()
    at.file_uploader[2].upload("face.jpg", face_image.read_bytes(), "image/jpeg").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    return at, at.session_state["analysis"]


def test_analyze_bands_and_why_at_full_precision(meso_weights, face_image, monkeypatch):
    """Thresholds print with the precision they have, and one line says why the verdict is what it is."""
    from core.ensemble import threshold_text

    at, a = _analyzed_image(meso_weights, face_image, monkeypatch)
    th = a.ensemble["thresholds"]
    bands = next(c.value for c in at.caption if c.value.startswith("Bands:"))
    assert f"real below {threshold_text(th['real_below'])}, fake at or above {threshold_text(th['fake_above'])}" in bands
    assert threshold_text(0.001) == "0.001" and threshold_text(0.9987) == "0.9987" and threshold_text(0.5) == "0.5"
    why = next(m.value for m in at.markdown if m.value.startswith("**Why:**"))
    assert f"{a.fake_probability:.3f}" in why and a.ensemble["verdict"] in why
    assert all(f"{m} votes {a.models[m]['vote']}" in why for m in a.ensemble["members"])


def test_analyze_one_image_has_no_video_furniture(meso_weights, face_image, monkeypatch):
    """A single image: faces, bars, heatmaps with each model's own input crop; no timeline, no frame slider."""
    at, a = _analyzed_image(meso_weights, face_image, monkeypatch)
    assert len(at.get("plotly_chart")) == 1 and len(at.select_slider) == 0  # bars only
    assert not any(s.value == "Timeline" for s in at.subheader)
    captions = [str(i.proto) for i in at.get("image")]
    for m in a.models:  # under each heatmap, the model's own input crop, labelled with its crop size and margin
        size, margin, mode = a.crop_specs[m]
        assert any(f"{m} input: {size} px crop, margin {margin:g}" in c for c in captions), m
        assert any(f"{m}: Grad-CAM" in c for c in captions), m
    # tables: numbers in their format, missing values as "-", never "None"
    for d in at.dataframe:
        assert "None" not in d.value.astype(str).to_numpy().ravel().tolist()
    models = next(d.value for d in at.dataframe if "threshold" in d.value.columns)
    assert set(models["in verdict"]) <= {"yes", "no"} and list(models["model"]) == list(a.models)


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
    models = next(d.value for d in at.dataframe if "in verdict" in d.value.columns).set_index("model")
    assert models.loc["mesoinception4-df", "in verdict"] == "no" and models.loc["meso4-df", "in verdict"] == "yes"


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
    n = len(json.loads((REPO / "weights" / "benchmarks.json").read_text())["runs"]["ours"]["models"])
    # every subset: a single model under one rule, larger subsets under mean, max and logistic stacking
    assert len(candidates) == n + 3 * (2 ** n - 1 - n)
    assert set(candidates["rule"]) == {"mean", "max", "logistic"}
    assert any("How the default ensemble was chosen" in m.value for m in at.markdown)
    assert "runner-up" not in candidates.columns
    assert any("paired bootstrap resamples" in m.value and "runner-up" in m.value for m in at.markdown)
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


def test_core_knows_no_screen():
    """core imports nothing from the app side (app/, pages/, streamlit, plotly). core/bench.py is the one harness
    that drives the page from outside (its app-memory scenario runs the Analyze page in AppTest, as a test does)."""
    import re

    bad = []
    for f in (REPO / "core").rglob("*.py"):
        if f.name == "bench.py":
            continue
        for line in f.read_text().splitlines():
            if re.match(r"\s*(from|import)\s+(app|pages|streamlit|plotly)\b", line):
                bad.append(f"{f.relative_to(REPO)}: {line.strip()}")
    assert not bad, bad
    assert not (REPO / "core" / "viz.py").exists() and not (REPO / "core" / "dashboard.py").exists()


def test_robustness_one_strength_is_bars_and_a_table(monkeypatch):
    """benchmarks.json holds one JPEG strength: bars (clean vs q50) and a table with the change, not a line chart
    on a 49-51 axis; the caption names the data once."""
    monkeypatch.setenv("TBD_WEIGHTS", str(REPO / "weights"))
    at = _app("pages/3_Robustness.py").run()
    assert not at.exception, at.exception
    at.tabs[1].selectbox[0].set_value(next(o for o in at.tabs[1].selectbox[0].options
                                           if str(o).endswith("benchmarks.json"))).run()
    assert not at.exception, at.exception
    spec = json.loads(at.tabs[1].get("plotly_chart")[0].proto.spec)
    assert {t["type"] for t in spec["data"]} == {"bar"} and len(spec["data"]) == 2
    rows = next(d.value for d in at.tabs[1].dataframe if "change" in d.value.columns)
    assert set(rows["strength"]) == {"50"} and "ensemble" in set(rows["model"])
    caption = next(c.value for c in at.tabs[1].caption if c.value.startswith("Measured here on"))
    assert caption.lower().count("measured here") == 1


def test_robustness_page_shows_the_shipped_face_swap_under_video_compression(monkeypatch):
    """weights/robustness_crops.json (train.robust_crops on the face-swap test crops) is listed on the Robustness
    page's batch tab: one row per condition with the AUC, its change from clean and the per-dataset AUCs; the figures
    are the file's, and the README quotes its CRF 36 AUC."""
    monkeypatch.setenv("TBD_WEIGHTS", str(REPO / "weights"))
    res = json.loads((REPO / "weights" / "robustness_crops.json").read_text())
    assert res["split"] == "test" and [Path(c).stem for c in res["cards"]] == ["face-swap"]
    at = _app("pages/3_Robustness.py").run()
    at.tabs[1].selectbox[0].set_value(next(o for o in at.tabs[1].selectbox[0].options
                                           if str(o).endswith("robustness_crops.json"))).run()
    assert not at.exception, at.exception
    rows = next(d.value for d in at.tabs[1].dataframe if "condition" in d.value.columns)
    assert list(rows["condition"])[:2] == ["clean", "jpeg 30"] and "h264 36" in set(rows["condition"])
    assert set(rows["model"]) == {"face-swap"} and rows["change"].iloc[0] == 0
    crf36 = next(c for c in res["conditions"] if c["perturbation"] == "h264" and c["strength"] == 36)
    auc36 = next(iter(crf36["auc"].values()))["all"]
    assert float(rows.loc[rows["condition"] == "h264 36", "AUC"].iloc[0]) == auc36
    assert any(k.startswith("AUC, FaceForensics") for k in rows.columns)
    assert f"{auc36:.3f}" in (REPO / "README.md").read_text()


def test_several_strengths_keep_every_model_visible():
    """Lines get a marker shape per model and are set apart, so equal scores do not hide each other."""
    from app import viz

    rob = {"clean": {"video": {"a": {"auc": 0.9}, "b": {"auc": 0.9}}},
           "perturbations": {"jpeg": [{"strength": s, "video": {"a": {"auc": 0.8}, "b": {"auc": 0.8}}}
                                      for s in (90, 50)]}}
    fig = viz.robustness_figure(rob, "jpeg")
    xs = [tuple(t.x) for t in fig.data]
    assert len(set(xs)) == 2 and len({t.marker.symbol for t in fig.data}) == 2


def test_benchmark_filters_are_collapsed_and_default_to_everything(monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(REPO / "weights"))
    at = _app("pages/2_Benchmarks.py").run()
    at.selectbox[0].set_value(next(o for o in at.selectbox[0].options if str(o).endswith("benchmarks.json"))).run()
    assert not at.exception, at.exception
    assert any(e.label.startswith("Filters") for e in at.expander)
    assert at.multiselect and all(m.value == [] and m.placeholder.startswith("all ") for m in at.multiselect)
    fams = next(d.value for d in at.dataframe if "family" in d.value.columns)
    bench = json.loads((REPO / "weights" / "benchmarks.json").read_text())
    assert set(fams["model"]) == set(bench["runs"]["ours"]["models"]) | set(bench["runs"]["mesonet"]["models"]) | {"ensemble"}
    for d in at.dataframe:
        assert "None" not in d.value.astype(str).to_numpy().ravel().tolist()


def test_models_page_puts_card_thresholds_beside_the_verdict_bands(monkeypatch):
    from core.ensemble import threshold_text

    monkeypatch.setenv("TBD_WEIGHTS", str(REPO / "weights"))
    at = _app("pages/4_Models.py").run()
    assert not at.exception, at.exception
    policy = json.loads((REPO / "weights" / "ensemble.json").read_text())
    table = next(d.value for d in at.dataframe if "verdict fake_above" in d.value.columns).set_index("model")
    for m in policy["models"]:
        assert float(table.loc[m, "verdict fake_above"]) == pytest.approx(policy["fake_above"])
        card = json.loads((REPO / "weights" / f"{m}.json").read_text())
        assert float(table.loc[m, "card fake_above"]) == pytest.approx(card["thresholds"]["fake_above"])
    text = " ".join(m.value for m in at.markdown)
    assert f"fake at or above {threshold_text(policy['fake_above'])}" in text and "Two sets" in " ".join(
        s.value for s in at.subheader)
    # each card says how it scores a face: the mirrored views and the fitted temperature of the shipped models
    from core.models.checkpoint import read_card

    for m in policy["models"]:
        card = read_card(REPO / "weights" / f"{m}.json")
        assert card.scoring in text
        assert "mirror image" in card.scoring and f"T = {card.temperature:g}" in card.scoring


def test_analyze_stores_cases_and_the_cases_page_opens_labels_exports_and_deletes(meso_weights, face_image,
                                                                                   tmp_path, monkeypatch):
    from core.cases import CaseDB

    need_shared(DFDC_CLIP)
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    monkeypatch.setenv("TBD_DATA", str(tmp_path))
    db = tmp_path / "cases.sqlite"
    at = _app("pages/1_Analyze.py").run()
    assert at.sidebar.toggle[0].value is True and at.sidebar.text_input[0].value == str(db)
    at.sidebar.slider[0].set_value(8).run()
    at.file_uploader[0].upload("dfdc.mp4", DFDC_CLIP.read_bytes(), "video/mp4").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    a = at.session_state["analysis"]
    # the switch off: nothing stored
    at2 = _app("pages/1_Analyze.py").run()
    at2.sidebar.toggle[0].set_value(False).run()
    at2.file_uploader[2].upload("face.jpg", face_image.read_bytes(), "image/jpeg").run()
    at2.button[0].click().run()
    assert not at2.exception and not at2.error
    with CaseDB(db) as r:
        cases = r.cases()
    assert [c["path"] for c in cases] == ["dfdc.mp4"] and cases[0]["source"] == "dashboard"
    assert cases[0]["sha256"] == a.info.sha256 and cases[0]["verdict"] == a.verdict

    at = _app("pages/5_Cases.py").run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert list(table["path"]) == ["dfdc.mp4"]
    # the opened case shows the same verdict, bars, timeline and gallery as Analyze
    banner = next(m.value for m in at.markdown if "ensemble P(fake)" in m.value)
    assert a.verdict.upper() in banner and f"{a.fake_probability:.3f}" in banner
    assert len(at.get("plotly_chart")) == 2 and at.select_slider[0].label == "Frame"
    assert len([b for b in at.button if b.label in ("select", "selected")]) == len(a.faces)
    assert [b.label for b in at.get("download_button")][0] == "Export these cases (CSV)"
    # note and label saved back
    at.text_area[0].input("matches the DFDC label")
    next(r for r in at.radio if r.label == "Label").set_value("fake")
    next(b for b in at.button if b.label == "Save note and label").click().run()
    assert not at.exception, at.exception
    with CaseDB(db) as r:
        c = r.cases()[0]
    assert c["note"] == "matches the DFDC label" and c["label"] == "fake"
    # delete needs the confirmation
    delete = next(b for b in at.button if b.label == "Delete case")
    assert delete.disabled
    next(cb for cb in at.checkbox if cb.label.startswith("Yes, delete case")).check().run()
    next(b for b in at.button if b.label == "Delete case").click().run()
    assert not at.exception, at.exception
    with CaseDB(db) as r:
        assert r.count() == 0
