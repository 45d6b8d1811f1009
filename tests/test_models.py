"""Registry, checkpoints and model cards, MesoNet import, Grad-CAM."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DFDC_CROPS, MESONET, need_shared
from core.models import (
    CardError,
    ModelCard,
    create_model,
    discover_models,
    list_architectures,
    load_detector,
    save_checkpoint,
)


def _card(name, arch, config, size=64, frames=1, **kw) -> ModelCard:
    out = "sigmoid" if arch.startswith("meso") else "softmax"
    return ModelCard(name=name, architecture=arch, config=config, input_size=size, mean=[0.5] * 3, std=[0.5] * 3,
                     interpolation="bicubic", classes=["real", "fake"], frames=frames, output=out, **kw)


def test_gradcam_failure_is_raised_not_swallowed(tmp_path):
    from core.explain import gradcam

    card = _card("wrong", "meso4", {}, size=256)
    card.output = "softmax"  # a card that does not fit its network: the fake logit cannot be computed
    det = load_detector(save_checkpoint(create_model("meso4"), card, tmp_path))
    with pytest.raises(IndexError):
        gradcam(det, [np.zeros((64, 64, 3), np.uint8)])
    assert sum(len(m._forward_hooks) for m in det.modules()) == 0


def test_registry_lists_every_design_architecture():
    assert {"image_classifier", "cnn_lstm", "swin_seq", "meso4", "mesoinception4"} <= set(list_architectures())
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("nope")


@pytest.mark.parametrize("arch,config,shape", [
    ("image_classifier", {"backbone": "tf_efficientnet_lite0"}, (2, 3, 64, 64)),
    ("image_classifier", {"backbone": "efficientnet_b0"}, (2, 3, 64, 64)),
    ("image_classifier", {"backbone": "swin_tiny_patch4_window7_224", "img_size": 96}, (2, 3, 96, 96)),
    ("cnn_lstm", {"backbone": "tf_efficientnet_lite0", "hidden": 32}, (2, 3, 3, 64, 64)),
    ("cnn_lstm", {"backbone": "resnext50_32x4d", "hidden": 32}, (1, 2, 3, 64, 64)),
    ("swin_seq", {"img_size": 224}, (1, 2, 3, 224, 224)),
    ("meso4", {}, (2, 3, 256, 256)),
    ("mesoinception4", {}, (2, 3, 256, 256)),
])
def test_architectures_forward(arch, config, shape):
    net = create_model(arch, **config).eval()
    with torch.inference_mode():
        out = net(torch.randn(*shape))
    assert out.shape[0] == shape[0] and torch.isfinite(out).all()


def test_effb0_lstm_matches_design_parameter_count():
    net = create_model("cnn_lstm", backbone="efficientnet_b0", hidden=256)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 5.583e6) / 5.583e6 < 0.01  # slides: Effb0+Lstm 5.583M parameters


def test_checkpoint_round_trip_and_card(tmp_path):
    torch.manual_seed(0)
    net = create_model("image_classifier", backbone="tf_efficientnet_lite0").eval()
    card = _card("tiny", "image_classifier", {"backbone": "tf_efficientnet_lite0"},
                 training={"data": "unit test", "terms": "none"})
    path = save_checkpoint(net, card, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["sha256"] and saved["parameters"] > 1e6 and saved["kind"] == "frame"
    det = load_detector(path)
    crops = [np.random.default_rng(i).integers(0, 255, (80, 80, 3), dtype=np.uint8) for i in range(3)]
    p = det.predict(crops)
    with torch.inference_mode():
        x = det.preprocess(crops)
        ref = torch.softmax(net(x), dim=1)[:, 1].numpy()
    assert np.allclose(p, ref, atol=1e-5)  # same weights, same preprocessing, P(fake) = softmax of class 'fake'
    assert det.preprocess(crops).shape == (3, 3, 64, 64)
    assert discover_models([tmp_path])["tiny"].name == "tiny"


def test_card_problems_are_reported(tmp_path):
    net = create_model("meso4")
    path = save_checkpoint(net, _card("m", "meso4", {}, size=256), tmp_path)
    d = json.loads(path.read_text())
    # tampered weights
    st = tmp_path / "m.safetensors"
    data = bytearray(st.read_bytes())
    data[-1] ^= 0xFF
    st.write_bytes(bytes(data))
    with pytest.raises(CardError, match="SHA-256"):
        load_detector(path)
    # wrong architecture for the tensors
    d2 = dict(d, architecture="mesoinception4", sha256="")
    save_checkpoint(net, _card("m", "meso4", {}, size=256), tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(d2, name="bad", file="m.safetensors")))
    with pytest.raises(CardError, match="do not fit"):
        load_detector(bad)
    # invalid thresholds / missing fields are rejected by validation
    with pytest.raises(CardError, match="thresholds"):
        ModelCard.from_dict(dict(d, thresholds={"decision": 0.9, "real_below": 0.95, "fake_above": 0.99}))
    with pytest.raises(CardError, match="missing"):
        ModelCard.from_dict({"name": "x"})
    # caveats: measured weaknesses on a kind of input core recognises; a card without them loads as before
    assert ModelCard.from_dict(d).caveats == {}
    kinds = {"pre_cropped": "misses tight crops", "low_resolution": "flags small real faces"}
    ok = ModelCard.from_dict(dict(d, caveats=kinds))
    assert ok.caveats == kinds and ok.to_dict()["caveats"] == ok.caveats
    for bad_caveats in ({"night": "x"}, {"pre_cropped": " "}, {"pre_cropped": 3}, ["pre_cropped"]):
        with pytest.raises(CardError, match="caveats"):
            ModelCard.from_dict(dict(d, caveats=bad_caveats))
    found = discover_models([tmp_path])
    assert isinstance(found["m"], ModelCard)


def test_checkpoints_never_unpickle(tmp_path):
    """A .safetensors file that is really a pickle is refused."""
    net = create_model("meso4")
    path = save_checkpoint(net, _card("p", "meso4", {}, size=256), tmp_path)
    torch.save(net.state_dict(), tmp_path / "p.safetensors")
    d = json.loads(path.read_text())
    d["sha256"] = ""
    path.write_text(json.dumps(d))
    with pytest.raises(CardError, match="cannot read"):
        load_detector(path)


def test_mesonet_port_separates_dfdc_crops(meso_weights):
    """The published Meso4 (DF) weights, ported, rank DFDC fake crops above real ones (22 crops, 11/11)."""
    need_shared(DFDC_CROPS)
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    files = sorted(DFDC_CROPS.glob("*/*.png"))
    y = [int(f.parent.name == "fake") for f in files]
    crops = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    crops = [np.asarray(Image.fromarray(c).resize((256, 256), Image.BILINEAR)) for c in crops]
    det = load_detector(meso_weights / "meso4-df.json")
    p = det.predict(crops)
    assert sum(y) == 11 and len(y) == 22
    assert roc_auc_score(y, p) >= 0.7
    # Keras' sigmoid is P(real): our P(fake) must be its complement, so flipping the class order flips AUC.
    assert det.card.classes == ["fake", "real"] and det.card.output == "sigmoid"


def test_mesonet_h5_layout_read_exactly():
    need_shared(MESONET / "Meso4_DF.h5")
    import h5py

    from core.models.mesonet import keras_state_dict

    arch, sd, leaky = keras_state_dict(MESONET / "Meso4_DF.h5")
    assert arch == "meso4" and leaky is False  # the saved Meso4 graph has no LeakyReLU layer
    with h5py.File(MESONET / "Meso4_DF.h5") as f:
        k = np.asarray(f["conv2d_5/conv2d_5/kernel:0"])  # first conv, (kh, kw, in, out)
        d = np.asarray(f["dense_3/dense_3/kernel:0"])
    assert np.array_equal(sd["conv1.0.weight"].numpy(), k.transpose(3, 2, 0, 1))
    assert np.array_equal(sd["fc1.weight"].numpy(), d.T)
    arch, sd, leaky = keras_state_dict(MESONET / "MesoInception_DF.h5")
    assert arch == "mesoinception4" and leaky is True
    assert sd["inc1.b1.0.weight"].shape == (1, 3, 1, 1) and sd["inc2.b4.1.0.weight"].shape == (2, 2, 3, 3)


def test_import_mesonet_checks_sha(tmp_path):
    need_shared(MESONET / "Meso4_DF.h5")
    from core.models.mesonet import import_mesonet

    src = tmp_path / "src"
    src.mkdir()
    data = bytearray((MESONET / "Meso4_DF.h5").read_bytes())
    data[-10] ^= 1
    (src / "Meso4_DF.h5").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        import_mesonet(src, tmp_path / "out")
    cards = import_mesonet(MESONET, tmp_path / "out")
    assert len(cards) == 4 and all(load_detector(c) for c in cards)


# ------------------------------------------------------------------------------------------------ Grad-CAM


@pytest.mark.parametrize("arch,config,size,frames", [
    ("meso4", {}, 256, 1),
    ("mesoinception4", {}, 256, 1),
    ("image_classifier", {"backbone": "tf_efficientnet_lite0"}, 96, 1),
    ("image_classifier", {"backbone": "swin_tiny_patch4_window7_224", "img_size": 96}, 96, 1),
    ("cnn_lstm", {"backbone": "tf_efficientnet_lite0", "hidden": 16}, 96, 4),
    ("swin_seq", {"img_size": 224}, 224, 2),
])
def test_gradcam_every_architecture_and_hooks_released(tmp_path, arch, config, size, frames):
    from core.explain import gradcam, gradcam_overlays

    torch.manual_seed(0)
    net = create_model(arch, **config)
    det = load_detector(save_checkpoint(net, _card(arch, arch, config, size=size, frames=frames), tmp_path))
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    maps = gradcam(det, crops)
    assert len(maps) == 2 and maps[0].shape == (size, size)
    assert np.isfinite(maps[0]).all() and maps[0].min() >= 0 and maps[0].max() <= 1
    ov = gradcam_overlays(det, crops)
    assert ov[0].shape == (128, 128, 3) and ov[0].dtype == np.uint8 and not np.array_equal(ov[0], crops[0])
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) + len(getattr(m, "_forward_pre_hooks", {}))
                for m in det.modules())
    assert hooks == 0  # the context manager released every hook


def test_fetch_mesonet_verifies_and_converts(tmp_path, monkeypatch):
    """The download path, served from the local copies: every file is checked against its published SHA-256."""
    need_shared(*(MESONET / f for f in ("Meso4_DF.h5", "Meso4_F2F.h5", "MesoInception_DF.h5", "MesoInception_F2F.h5")))
    import urllib.request

    from core.models import mesonet

    requested = []

    class _Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout=None, corrupt=False):
        requested.append(url)
        data = bytearray((MESONET / url.rsplit("/", 1)[1]).read_bytes())
        if corrupt:
            data[100] ^= 1
        return _Resp(bytes(data))

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    cards = mesonet.fetch_mesonet(tmp_path / "ok")
    assert len(cards) == 4 and all(mesonet.MESONET_COMMIT in u and "DariusAf/MesoNet" in u for u in requested)
    assert load_detector(cards[0]).card.license == "Apache-2.0"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: fake_urlopen(url, corrupt=True))
    with pytest.raises(ValueError, match="SHA-256"):
        mesonet.fetch_mesonet(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing installed from a failed download

    def offline(url, timeout=None):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="cannot download"):
        mesonet.fetch_mesonet(tmp_path / "off")


# ---------------------------------------------------------------------------------- importing foreign weights


def _crops(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("sigmoid", [False, True])
def test_import_torch_state_dict_scores_like_the_original(tmp_path, sigmoid):
    """A timm EfficientNet-B0 trained elsewhere, saved the usual ways (DataParallel prefix, inside a training
    checkpoint): imported, it gives the original's P(fake) and an honest card."""
    import timm

    from core.media import file_sha256
    from core.models.torch_import import import_torch

    torch.manual_seed(0)
    orig = timm.create_model("efficientnet_b0", pretrained=False, num_classes=1 if sigmoid else 2).eval()
    src = tmp_path / "effb0.pth"
    torch.save({"epoch": 9, "optimizer": {"lr": 1e-3},
                "state_dict": {f"module.{k}": v for k, v in orig.state_dict().items()}}, src)
    card_path = import_torch(src, tmp_path / "w", "effb0-140k", "image_classifier", "efficientnet_b0", 128,
                             sigmoid=sigmoid, data="Kaggle 140k real and fake faces")
    det = load_detector(card_path)
    crops = _crops(3, 128)
    with torch.inference_mode():
        out = orig(det.preprocess(crops))
    expected = torch.sigmoid(out[:, 0]) if sigmoid else torch.softmax(out, 1)[:, 1]
    np.testing.assert_allclose(det.predict(crops), expected.numpy(), atol=1e-5)
    c = det.card
    assert c.mean == [0.485, 0.456, 0.406] and c.interpolation == "bicubic" and c.output == (
        "sigmoid" if sigmoid else "softmax")
    assert c.metrics == {} and c.ensemble["default"] is False and "has not measured" in c.description
    assert c.training["source_sha256"] == file_sha256(src) and c.training["data"] == "Kaggle 140k real and fake faces"
    assert discover_models([tmp_path / "w"]).keys() == {"effb0-140k"}  # no temporary files left beside it


def test_import_torch_cnn_lstm_and_bare_timm_swin(tmp_path):
    """The design's sequence model: its LSTM size and depth come from the tensors; a bare timm Swin state dict
    (no wrapper prefix) becomes a per-crop Swin classifier at its own input size, Grad-CAM included."""
    import timm

    from core.explain import gradcam
    from core.models.torch_import import import_torch

    torch.manual_seed(1)
    seq = create_model("cnn_lstm", backbone="tf_efficientnet_lite0", hidden=24, num_layers=2).eval()
    torch.save(seq.state_dict(), tmp_path / "lstm.pt")
    det = load_detector(import_torch(tmp_path / "lstm.pt", tmp_path / "w", "lstm", "cnn_lstm", "tf_efficientnet_lite0",
                                     64, frames=4))
    assert det.card.config["hidden"] == 24 and det.card.config["num_layers"] == 2 and det.card.kind == "sequence"
    clip = _crops(4, 64, seed=2)
    with torch.inference_mode():
        expected = torch.softmax(seq(det.preprocess(clip).unsqueeze(0)), 1)[0, 1].item()
    assert det.predict_sequences([clip])[0] == pytest.approx(expected, abs=1e-5)

    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=2, img_size=96).eval()
    from safetensors.torch import save_file

    save_file(swin.state_dict(), str(tmp_path / "swin.safetensors"))
    det = load_detector(import_torch(tmp_path / "swin.safetensors", tmp_path / "w", "swin", "image_classifier",
                                     "swin_tiny_patch4_window7_224", 96))
    crops = _crops(2, 96, seed=3)
    with torch.inference_mode():
        expected = torch.softmax(swin(det.preprocess(crops)), 1)[:, 1].numpy()
    np.testing.assert_allclose(det.predict(crops), expected, atol=1e-5)
    maps = gradcam(det, crops)
    assert maps[0].shape == (96, 96) and np.isfinite(maps[0]).all()


def test_import_torch_refuses_clearly_and_keeps_installed_models(tmp_path):
    import timm

    net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=2)
    torch.save(net.state_dict(), tmp_path / "b0.pth")
    torch.save(net, tmp_path / "whole.pth")
    out = tmp_path / "w"

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "core", "weights", "import-torch", *args, "--out", str(out)],
                           capture_output=True, text=True, cwd=str(tmp_path),
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        return r.returncode, r.stderr.strip()

    base = ["--arch", "image_classifier", "--input-size", "128"]
    rc, err = cli(str(tmp_path / "b0.pth"), "--name", "b0", "--backbone", "efficientnet_b0", *base)
    assert rc == 0, err
    before = (out / "b0.safetensors").read_bytes(), (out / "b0.json").read_text()
    cases = {
        "holds Python objects": [str(tmp_path / "whole.pth"), "--name", "w", "--backbone", "efficientnet_b0"],
        "do not fit this architecture": [str(tmp_path / "b0.pth"), "--name", "b0x", "--backbone", "resnext50_32x4d"],
        "already exists": [str(tmp_path / "b0.pth"), "--name", "b0", "--backbone", "efficientnet_b0"],
        "not found": [str(tmp_path / "nope.pth"), "--name", "n", "--backbone", "efficientnet_b0"],
        "one crop at a time": [str(tmp_path / "b0.pth"), "--name", "f", "--backbone", "efficientnet_b0",
                               "--frames", "8"],
    }
    for msg, args in cases.items():
        rc, err = cli(*args, *base)
        assert rc == 1 and msg in err and len(err.splitlines()) == 1 and "Traceback" not in err, (msg, err)
    rc, err = cli(str(tmp_path / "b0.pth"), "--name", "x")
    assert rc == 2 and "--arch" in err and "--backbone" in err and "--input-size" in err
    assert ((out / "b0.safetensors").read_bytes(), (out / "b0.json").read_text()) == before
    assert sorted(p.name for p in out.iterdir()) == ["b0.json", "b0.safetensors"]


def test_calibration_is_stored_in_the_card_and_applied(tmp_path):
    """A card's temperature divides the fake logit: same ranking, P(fake) pulled towards 0.5 for T > 1; a card
    without calibration loads and reports the network's own probabilities; a bad temperature is refused."""
    torch.manual_seed(0)
    net = create_model("meso4")
    plain = load_detector(save_checkpoint(net, _card("plain", "meso4", {}, size=256), tmp_path / "a"))
    assert plain.card.calibration == {} and plain.card.temperature == 1.0
    hot = _card("hot", "meso4", {}, size=256, calibration={"method": "temperature", "temperature": 4.0})
    hot = load_detector(save_checkpoint(net, hot, tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "hot.json").read_text())["calibration"]["temperature"] == 4.0
    crops = [np.random.default_rng(i).integers(0, 255, (256, 256, 3), dtype=np.uint8) for i in range(6)]
    p, q = plain.predict(crops), hot.predict(crops)
    z = np.log(p / (1 - p))
    assert np.allclose(q, 1 / (1 + np.exp(-z / 4.0)), atol=1e-5)
    assert np.array_equal(np.argsort(p), np.argsort(q))
    bad = json.loads((tmp_path / "b" / "hot.json").read_text())
    bad["calibration"]["temperature"] = -1
    (tmp_path / "b" / "hot.json").write_text(json.dumps(bad))
    with pytest.raises(CardError, match="temperature"):
        load_detector(tmp_path / "b" / "hot.json")


def test_mirrored_test_time_view_averages_the_fake_logits(tmp_path):
    """A card with tta ["hflip"] reports sigmoid of the mean fake logit of each crop and its mirror image (then its
    temperature); unknown views and views on a sequence model are refused with a card error."""
    torch.manual_seed(0)
    net = create_model("meso4")
    plain = load_detector(save_checkpoint(net, _card("one", "meso4", {}, size=256), tmp_path / "a"))
    two = _card("two", "meso4", {}, size=256, tta=["hflip"], calibration={"method": "temperature", "temperature": 2.0})
    two = load_detector(save_checkpoint(net, two, tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "two.json").read_text())["tta"] == ["hflip"]
    crops = [np.random.default_rng(i).integers(0, 255, (256, 256, 3), dtype=np.uint8) for i in range(5)]

    def logit(p):
        return np.log(p / (1 - p))

    z = (logit(plain.predict(crops)) + logit(plain.predict([c[:, ::-1].copy() for c in crops]))) / 2
    np.testing.assert_allclose(two.predict(crops), 1 / (1 + np.exp(-z / 2.0)), atol=1e-5)
    assert not np.allclose(two.predict(crops), plain.predict(crops), atol=1e-3)
    assert plain.card.scoring == "each face once; P(fake) the network's own probability (not calibrated)"
    assert two.card.scoring.startswith("each face and its mirror image") and "T = 2" in two.card.scoring
    for bad, msg in (({"tta": ["vflip"]}, "tta must be"), ({"tta": "hflip"}, "tta must be"),
                     ({"tta": ["hflip"], "architecture": "cnn_lstm"}, "frame models only")):
        d = dict(json.loads((tmp_path / "b" / "two.json").read_text()), **bad)
        with pytest.raises(CardError, match=msg):
            ModelCard.from_dict(d)


def test_multi_scale_test_time_views_average_the_fake_logits(tmp_path):
    """A card with tta_sizes scores each crop at input_size and at every listed size (and the mirror of each, with
    hflip) and reports sigmoid of the mean of all those fake logits, then its calibration; sizes that repeat, that
    are not whole pixels, or that sit on a sequence model are refused with a card error."""
    torch.manual_seed(0)
    net = create_model("image_classifier", backbone="tf_efficientnet_lite0").eval()
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a random network's logits are huge; scaled down, no probability saturates at 0 or 1
        head.weight.mul_(0.02)
    one = load_detector(save_checkpoint(net, _card("one", "image_classifier", {"backbone": "tf_efficientnet_lite0"}),
                                        tmp_path / "a"))
    multi = _card("multi", "image_classifier", {"backbone": "tf_efficientnet_lite0"}, tta=["hflip"], tta_sizes=[96],
                  calibration={"method": "platt", "temperature": 2.0, "bias": 0.5})
    multi = load_detector(save_checkpoint(net, multi, tmp_path / "b"))
    assert multi.card.scoring_sizes == [64, 96]
    crops = [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(4)]

    def z(size, flip=False):
        with torch.no_grad():
            x = one.preprocess([c[:, ::-1].copy() for c in crops] if flip else crops, size)
            return one(x)[:, 0].double().numpy()

    mean = (z(64) + z(64, True) + z(96) + z(96, True)) / 4
    np.testing.assert_allclose(multi.predict(crops), 1 / (1 + np.exp(-(mean / 2.0 + 0.5))), atol=1e-4)
    assert np.all(np.abs(mean) < 5) and not np.allclose(z(96), z(64), atol=1e-3)  # a different view, not a copy
    assert multi.card.scoring.startswith("each face at 64 px and 96 px and the mirror image of each, the 4 fake")
    d0 = json.loads((tmp_path / "b" / "multi.json").read_text())
    assert d0["tta_sizes"] == [96]
    for bad, msg in (({"tta_sizes": [96, 96]}, "must not repeat"), ({"tta_sizes": [64]}, "must not repeat"),
                     ({"tta_sizes": [96.5]}, "tta_sizes must be"), ({"tta_sizes": 96}, "tta_sizes must be"),
                     ({"tta_sizes": [8]}, "tta_sizes must be"),
                     ({"tta": [], "tta_sizes": [96], "architecture": "cnn_lstm", "frames": 8}, "frame models only")):
        with pytest.raises(CardError, match=msg):
            ModelCard.from_dict(dict(d0, **bad))
    old = {k: v for k, v in d0.items() if k != "tta_sizes"}  # a card written before tta_sizes existed still loads
    assert ModelCard.from_dict(old).scoring_sizes == [64]


def test_temperature_fit_and_ece():
    """Scores made over-confident by a known temperature are brought back: the fit recovers it and the expected
    calibration error falls; ECE of calibrated synthetic scores is small."""
    from core.calibration import apply_temperature, expected_calibration_error, fit_temperature, reliability_table

    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.02, 0.98, 20000)
    y = (rng.uniform(size=p_true.size) < p_true).astype(int)
    assert expected_calibration_error(p_true, y) < 0.02
    sharp = apply_temperature(p_true, 1 / 3)  # three times over-confident
    assert expected_calibration_error(sharp, y) > 0.08
    t = fit_temperature(sharp, y)
    assert t == pytest.approx(3.0, rel=0.08)
    assert expected_calibration_error(apply_temperature(sharp, t), y) < 0.02
    rows = reliability_table(p_true, y)
    assert sum(r["n"] for r in rows) == y.size and all(abs(r["mean_p"] - r["frac_fake"]) < 0.05 for r in rows)
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature([0.2, 0.3], [0, 0])


def test_platt_fit_moves_scores_that_lean_to_one_class():
    """Scores that lean to "fake" by a known shift (and are over-confident) are brought back by Platt scaling, which
    recovers both the temperature and the bias; a temperature alone cannot undo the shift. Scores that rank fakes
    below reals are refused, not flipped."""
    from core.calibration import apply_calibration, expected_calibration_error, fit_calibration, fit_platt, logit

    rng = np.random.default_rng(1)
    p_true = rng.uniform(0.02, 0.98, 20000)
    y = (rng.uniform(size=p_true.size) < p_true).astype(int)
    leaning = 1 / (1 + np.exp(-(2.0 * logit(p_true) + 1.5)))  # sigmoid(z / T + b) undoes it with T = 2, b = -0.75
    t, b = fit_platt(leaning, y)
    assert t == pytest.approx(2.0, rel=0.08) and b == pytest.approx(-0.75, abs=0.08)
    platt = fit_calibration(leaning, y, "platt")
    assert platt == {"method": "platt", "temperature": t, "bias": b}
    temp = fit_calibration(leaning, y, "temperature")
    assert expected_calibration_error(apply_calibration(leaning, platt), y) < 0.02
    assert expected_calibration_error(apply_calibration(leaning, temp), y) > 0.05
    np.testing.assert_allclose(apply_calibration(leaning, {}), leaning)
    with pytest.raises(ValueError, match="do not rank fakes above reals"):
        fit_platt(1 - p_true, y)
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration(leaning, y, "isotonic")


def test_platt_calibration_in_a_card_adds_its_bias(tmp_path):
    """A card with {"method": "platt", "temperature": T, "bias": b} reports sigmoid(z / T + b), after averaging the
    mirrored views' logits; its scoring line says so; a Platt card without a bias is refused."""
    torch.manual_seed(0)
    net = create_model("meso4")
    plain = load_detector(save_checkpoint(net, _card("one", "meso4", {}, size=256), tmp_path / "a"))
    cal = {"method": "platt", "temperature": 2.0, "bias": -0.7}
    platt = load_detector(save_checkpoint(net, _card("pl", "meso4", {}, size=256, tta=["hflip"], calibration=cal),
                                          tmp_path / "b"))
    crops = [np.random.default_rng(i).integers(0, 255, (256, 256, 3), dtype=np.uint8) for i in range(5)]

    def logit(p):
        return np.log(p / (1 - p))

    z = (logit(plain.predict(crops)) + logit(plain.predict([c[:, ::-1].copy() for c in crops]))) / 2
    np.testing.assert_allclose(platt.predict(crops), 1 / (1 + np.exp(-(z / 2.0 - 0.7))), atol=1e-5)
    assert platt.card.calibration_bias == -0.7 and plain.card.calibration_bias == 0.0
    assert "Platt-calibrated" in platt.card.scoring and "T = 2" in platt.card.scoring and "b = -0.7" in platt.card.scoring
    d = json.loads((tmp_path / "b" / "pl.json").read_text())
    del d["calibration"]["bias"]
    with pytest.raises(CardError, match="bias"):
        ModelCard.from_dict(d)
    d["calibration"] = {"method": "isotonic", "temperature": 1.0}
    with pytest.raises(CardError, match="temperature or platt"):
        ModelCard.from_dict(d)


def test_a_card_can_black_the_ring_outside_the_face_box(tmp_path):
    """crop "outside_box": "black": every crop is scored with the part outside its face box's square (the central
    1 / (1 + 2 margin) of each side) set to black, which the card's scoring line and Grad-CAM input share; the
    caller's crop is untouched; a card asking for it without a padded, margined crop is refused."""
    from core.faces import PAD_VALUE, black_outside_box

    rng = np.random.default_rng(0)
    crop = rng.integers(1, 255, (224, 224, 3), dtype=np.uint8)
    before = crop.copy()
    ringed = black_outside_box(crop, 0.1)
    b = round(224 * 0.1 / 1.2)  # 19 px: the box is 1 / 1.2 of the crop
    assert np.array_equal(crop, before)
    assert np.all(ringed[:b] == PAD_VALUE) and np.all(ringed[-b:] == PAD_VALUE)
    assert np.all(ringed[:, :b] == PAD_VALUE) and np.all(ringed[:, -b:] == PAD_VALUE)
    assert np.array_equal(ringed[b:-b, b:-b], crop[b:-b, b:-b]) and np.all(ringed[b:-b, b:-b] > 0)

    torch.manual_seed(0)
    net = create_model("meso4")
    spec = {"size": 224, "margin": 0.1, "mode": "pad"}
    plain = load_detector(save_checkpoint(net, _card("plain", "meso4", {}, size=256, crop=spec), tmp_path / "a"))
    ring = load_detector(save_checkpoint(net, _card("ring", "meso4", {}, size=256,
                                                    crop={**spec, "outside_box": "black"}), tmp_path / "b"))
    crops = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    np.testing.assert_allclose(ring.predict(crops), plain.predict([black_outside_box(c, 0.1) for c in crops]), atol=1e-6)
    assert not np.allclose(ring.predict(crops), plain.predict(crops), atol=1e-4)
    assert ring.view(crops[0]) is not crops[0] and plain.view(crops[0]) is crops[0]
    assert "outside the face box set to black" in ring.card.scoring and "black" not in plain.card.scoring
    d = json.loads((tmp_path / "b" / "ring.json").read_text())
    for bad, msg in (({**spec, "outside_box": "grey"}, "outside_box must be"),
                     ({**spec, "mode": "shift", "outside_box": "black"}, "needs mode pad"),
                     ({**spec, "margin": 0.0, "outside_box": "black"}, "needs mode pad")):
        with pytest.raises(CardError, match=msg):
            ModelCard.from_dict({**d, "crop": bad})
