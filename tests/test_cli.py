"""`python -m core` end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image

from conftest import DFDC_CLIP, MESONET, make_video, need_pdf, need_shared, run_cli


def _bad_inputs(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("meeting notes\n" * 20)
    (d / "page.jpg").write_text("<html><body>hello</body></html>")
    full = make_video(d / "full.mp4", n=60)
    (d / "trunc.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    Image.new("1", (20000, 20000)).save(d / "huge.png")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../escape.png", b"x")
        zf.writestr("/etc/evil.png", b"x")
    (d / "traversal.zip").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", b"no images here")
    (d / "noimg.zip").write_bytes(buf.getvalue())
    return d, ["empty.mp4", "notes.mp4", "page.jpg", "trunc.mp4", "huge.png", "traversal.zip", "noimg.zip",
               "missing.mp4"]


def test_bad_inputs_exit_2_one_line_each_and_good_ones_still_analysed(tmp_path, meso_weights, face_image):
    d, names = _bad_inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    paths = [str(d / n) for n in names] + [str(face_image)]
    out_json = tmp_path / "out.json"
    p = run_cli("analyze", *paths, "--json", str(out_json), "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(names)
    for n, line in zip(names, errors):
        assert line.startswith(f"error: {d / n}: ") and len(line.split(": ", 2)[2]) > 5
    res = json.loads(out_json.read_text())
    assert len(res) == len(paths) and all("error" in r for r in res[:-1])
    assert res[-1]["verdict"] in ("real", "fake", "uncertain") and res[-1]["input"]["kind"] == "image"
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert set(after) - set(before) == {"out.json"}  # nothing else written, inputs untouched
    assert not (tmp_path.parent / "escape.png").exists()


def test_json_to_stdout_is_only_json_and_report(tmp_path, meso_weights):
    need_shared(DFDC_CLIP)
    report = tmp_path / "case.html"
    p = run_cli("analyze", str(DFDC_CLIP), "--frames", "8", "--json", "-", "--report", str(report), "--cam",
                env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)  # stdout carries nothing but the JSON
    assert j["input"]["sha256"] and len(j["frames"]) == 8 and j["settings"]["cam"] is True
    html = report.read_text()
    assert j["input"]["sha256"] in html and "data:image/png;base64," in html


def test_pdf_report_from_the_command_line(tmp_path, meso_weights, face_image):
    need_pdf()
    from pypdf import PdfReader

    report = tmp_path / "case.pdf"
    p = run_cli("analyze", str(face_image), "--json", "-", "--quiet", "--report", str(report),
                env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    text = "".join(PdfReader(report).pages[0].extract_text().split())
    assert j["input"]["sha256"] in text and j["verdict"].upper() in text
    assert all(v["sha256"] in text for v in j["model_versions"].values())


def test_video_and_variable_frame_rate_clip_give_valid_results(tmp_path, meso_weights):
    from fractions import Fraction

    pts = [0, 33, 40, 200, 233, 500, 510, 990]
    clip = make_video(tmp_path / "vfr.mp4", n=len(pts), pts=pts, time_base=Fraction(1, 1000), bframes=0)
    p = run_cli("analyze", str(clip), "--json", "-", "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["verdict"] == "no_face" and j["fake_probability"] is None and len(j["frames"]) == 8
    assert "NO_FACE" not in p.stdout  # human summary suppressed with --json -


def test_no_models_installed_message(tmp_path):
    p = run_cli("analyze", "whatever.mp4", env={"TBD_WEIGHTS": str(tmp_path)})
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("error: no detector models installed")
    assert "Traceback" not in p.stderr


def test_weights_import_list_verify(tmp_path):
    need_shared(MESONET / "Meso4_DF.h5")
    out = tmp_path / "w"
    p = run_cli("weights", "import-mesonet", str(MESONET), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert len(list(out.glob("*.safetensors"))) == 4
    p = run_cli("weights", "list", env={"TBD_WEIGHTS": str(out)})
    assert p.returncode == 0 and "meso4-df" in p.stdout and "mesoinception4-f2f" in p.stdout
    p = run_cli("weights", "verify", env={"TBD_WEIGHTS": str(out)})
    assert p.returncode == 0 and p.stdout.count("ok ") == 4
    (out / "meso4-df.safetensors").write_bytes(b"broken")
    p = run_cli("weights", "verify", env={"TBD_WEIGHTS": str(out)})
    assert p.returncode == 1 and "FAILED   meso4-df" in p.stdout


def test_evaluate_and_robustness_commands(tmp_path, meso_weights, shared_data):
    rows = ["path,label,dataset,method"]
    for k in range(2):
        rows.append(f"{shared_data}/ffhq_vs_stylegan2/real/{k}.jpg,real,FFHQ,none")
    fakes = sorted((shared_data / "ffhq_vs_stylegan2/fake").iterdir())[:2]
    rows += [f"{f},fake,StyleGAN2,GAN" for f in fakes]
    rows.append("nonexistent.jpg,real,FFHQ,none")
    rows.append("ignored.jpg,unknown,x,y")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval.json"
    p = run_cli("evaluate", str(csv_path), "--json", str(out), "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert res["n_rows"] == 5 and len(res["errors"]) == 1 and res["errors"][0]["path"] == "nonexistent.jpg"
    assert "video-level" in p.stdout and "AUC" in p.stdout and "by dataset" in p.stdout
    assert set(res["breakdown"]["method"]) == {"none", "GAN"}
    out2 = tmp_path / "rob.json"
    p = run_cli("robustness", str(csv_path), "--perturb", "jpeg:70,30", "--perturb", "noise:10", "--frames", "1",
                "--json", str(out2), "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    rob = json.loads(out2.read_text())
    assert [e["strength"] for e in rob["perturbations"]["jpeg"]] == [70.0, 30.0]
    assert "clean" in p.stdout and "jpeg" in p.stdout
    p = run_cli("robustness", str(csv_path), "--perturb", "sepia:3")
    assert p.returncode == 2 and "unknown perturbation" in p.stderr
    p = run_cli("evaluate", str(tmp_path / "none.csv"))
    assert p.returncode == 2 and "no such file" in p.stderr


def test_refuses_to_overwrite_input(tmp_path, meso_weights, face_image):
    img = tmp_path / "photo.png"
    Image.fromarray(np.asarray(Image.open(face_image).convert("RGB"))).save(img)
    original = img.read_bytes()
    p = run_cli("analyze", str(img), "--report", str(img), "--quiet", env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode != 0 and "refusing to overwrite" in p.stderr
    assert img.read_bytes() == original


def test_models_beside_the_verdict(meso_weights, face_image, tmp_path):
    report = tmp_path / "case.html"
    p = run_cli("analyze", str(face_image), "--models", "meso4-df", "--beside", "mesoinception4-df", "--json", "-",
                "--report", str(report), env={"TBD_WEIGHTS": str(meso_weights)})
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["models"]["meso4-df"]["in_ensemble"] and not j["models"]["mesoinception4-df"]["in_ensemble"]
    assert j["models"]["mesoinception4-df"]["fake_probability"] is not None
    assert j["ensemble"]["members"] == ["meso4-df"] and "outside the verdict: mesoinception4-df" in p.stderr
    html = report.read_text()
    assert "mesoinception4-df (outside the verdict)" in html and "meso4-df (outside" not in html
