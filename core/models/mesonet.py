"""MesoNet (Afchar et al., WIFS 2018): import of the published Keras HDF5 weights into the PyTorch port.

The weights are Apache-2.0 and live upstream (github.com/DariusAf/MesoNet); they are never committed here.
`python -m core weights fetch mesonet` downloads them on a user's machine, checks SHA-256 and converts them into
safetensors + model cards; `python -m core weights import-mesonet DIR` converts local copies.

>>> convert_mesonet("Meso4_DF.h5", "weights/fetched")
"""

from __future__ import annotations

import re
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ..media import file_sha256
from .archs import Meso4, MesoInception4
from .checkpoint import ModelCard, save_checkpoint

__all__ = ["MESONET_FILES", "MESONET_COMMIT", "convert_mesonet", "fetch_mesonet", "import_mesonet", "keras_state_dict"]

MESONET_COMMIT = "2144d56a30e48cdcac1976ff13a1c5cdc86376c6"
MESONET_URL = "https://raw.githubusercontent.com/DariusAf/MesoNet/{commit}/weights/{file}"
# file -> (card name, architecture, trained on, sha256 of the upstream file)
MESONET_FILES = {
    "Meso4_DF.h5": ("meso4-df", "meso4", "Deepfake face swaps (authors' dataset)",
                    "036ed30d04ffd9c7506f825b97c86aa64915f5818931da96817b169aad790af5"),
    "Meso4_F2F.h5": ("meso4-f2f", "meso4", "Face2Face reenactment (FaceForensics)",
                     "bcfda015d217b9f8d6557693edbdf9f4e79cfd22672541968dd0e2954462b5d7"),
    "MesoInception_DF.h5": ("mesoinception4-df", "mesoinception4", "Deepfake face swaps (authors' dataset)",
                            "234586d40058e76ef8b6f27ca4b63c06e31c2a5a69c0d8ba6f30b1468ab7bafa"),
    "MesoInception_F2F.h5": ("mesoinception4-f2f", "mesoinception4", "Face2Face reenactment (FaceForensics)",
                             "d4533ac8a3197dc35c47405d23d99e888c1d0135e267e03540c7451feaccff3f"),
}


def _num(name: str) -> int:
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def keras_state_dict(h5_path: str | Path) -> tuple[str, dict[str, torch.Tensor], bool]:
    """Read a MesoNet Keras weights file. Returns (architecture, PyTorch state dict, leaky) where `leaky` says
    whether the saved graph had a LeakyReLU after the 16-unit dense layer."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        leaky = any(n.startswith("leaky_re_lu") for n in names)

        def weights(layer: str) -> dict[str, np.ndarray]:
            g = f[layer]
            out = {}
            for key in g.attrs["weight_names"]:
                key = key.decode() if isinstance(key, bytes) else key
                out[key.split("/")[-1].split(":")[0]] = np.asarray(g[key])
            return out

        convs = sorted((n for n in names if n.startswith("conv2d_")), key=_num)
        bns = sorted((n for n in names if n.startswith("batch_normalization_")), key=_num)
        denses = sorted((n for n in names if n.startswith("dense_")), key=_num)
        conv_w = [weights(n) for n in convs]
        bn_w = [weights(n) for n in bns]
        dense_w = [weights(n) for n in denses]

    if len(convs) == 4:
        arch = "meso4"
        conv_keys = [f"conv{i}.0" for i in range(1, 5)]
    elif len(convs) == 16:
        arch = "mesoinception4"
        conv_keys = []
        for blk in ("inc1", "inc2"):  # Keras creation order inside an inception layer
            conv_keys += [f"{blk}.b1.0", f"{blk}.b2.0.0", f"{blk}.b2.1.0", f"{blk}.b3.0.0", f"{blk}.b3.1.0",
                          f"{blk}.b4.0.0", f"{blk}.b4.1.0"]
        conv_keys += ["conv3.0", "conv4.0"]
    else:
        raise ValueError(f"{h5_path}: {len(convs)} conv layers; not a MesoNet weights file")
    if len(bns) != 4 or len(denses) != 2:
        raise ValueError(f"{h5_path}: unexpected layers for MesoNet")

    sd: dict[str, torch.Tensor] = {}
    for key, w in zip(conv_keys, conv_w):
        sd[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w["kernel"].transpose(3, 2, 0, 1)))
        sd[f"{key}.bias"] = torch.from_numpy(w["bias"])
    for i, w in enumerate(bn_w, start=1):
        sd[f"bn{i}.weight"] = torch.from_numpy(w["gamma"])
        sd[f"bn{i}.bias"] = torch.from_numpy(w["beta"])
        sd[f"bn{i}.running_mean"] = torch.from_numpy(w["moving_mean"])
        sd[f"bn{i}.running_var"] = torch.from_numpy(w["moving_variance"])
        sd[f"bn{i}.num_batches_tracked"] = torch.tensor(0)
    for i, w in enumerate(dense_w, start=1):
        sd[f"fc{i}.weight"] = torch.from_numpy(np.ascontiguousarray(w["kernel"].T))
        sd[f"fc{i}.bias"] = torch.from_numpy(w["bias"])
    return arch, {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, leaky


def convert_mesonet(h5_path: str | Path, out_dir: str | Path) -> Path:
    """Convert one published MesoNet .h5 into OUT/<name>.safetensors + OUT/<name>.json. Returns the card path."""
    h5_path = Path(h5_path)
    name, arch_expected, trained_on, _ = MESONET_FILES.get(
        h5_path.name, (h5_path.stem.lower().replace("_", "-"), None, "unknown", ""))
    arch, sd, leaky = keras_state_dict(h5_path)
    if arch_expected and arch != arch_expected:
        raise ValueError(f"{h5_path.name}: holds a {arch}, expected {arch_expected}")
    net = (Meso4 if arch == "meso4" else MesoInception4)(leaky=leaky)
    net.load_state_dict(sd, strict=True)
    card = ModelCard(
        name=name,
        display_name=f"{'Meso4' if arch == 'meso4' else 'MesoInception4'} ({name.split('-')[-1].upper()})",
        architecture=arch,
        config={"leaky": leaky},
        input_size=256,
        mean=[0.0, 0.0, 0.0],
        std=[1.0, 1.0, 1.0],
        interpolation="bilinear",
        classes=["fake", "real"],  # Keras class folders sorted: df=0, real=1; the sigmoid is P(real)
        output="sigmoid",
        frames=1,
        crop={"size": 256, "margin": 0.15, "mode": "pad"},
        thresholds={"decision": 0.5, "real_below": 0.3, "fake_above": 0.7},
        version=MESONET_COMMIT[:12],
        description="MesoNet reference detector (Afchar et al., WIFS 2018), published Keras weights ported to "
                    "PyTorch. A small mesoscopic CNN on 256x256 face crops.",
        training={"data": trained_on, "source": f"github.com/DariusAf/MesoNet@{MESONET_COMMIT}/weights/{h5_path.name}",
                  "terms": "weights Apache-2.0; training data per the MesoNet paper"},
        license="Apache-2.0",
        limitations=["Trained on 2018-era face swaps at low resolution; known to generalise poorly "
                     "(Celeb-DF frame AUC about 0.61 in DeepfakeBench).",
                     "Thresholds are the published 0.5 decision point, not tuned on our data."],
        ensemble={"default": name.endswith("-df"), "weight": 1.0, "role": "reference"},
        metrics={},
    )
    return save_checkpoint(net, card, out_dir)


def import_mesonet(src_dir: str | Path, out_dir: str | Path, verify: bool = True) -> list[Path]:
    """Convert every published MesoNet file found in SRC_DIR (checking SHA-256 against the upstream files)."""
    src = Path(src_dir)
    cards = []
    for fname, (_, _, _, sha) in MESONET_FILES.items():
        p = src / fname
        if not p.exists():
            continue
        if verify and sha and file_sha256(p) != sha:
            raise ValueError(f"{p}: SHA-256 differs from the published file")
        cards.append(convert_mesonet(p, out_dir))
    if not cards:
        raise FileNotFoundError(f"no MesoNet .h5 files in {src}")
    return cards


def fetch_mesonet(out_dir: str | Path, timeout: float = 60.0) -> list[Path]:
    """Download the published weights from the upstream repository at a pinned commit, verify every file's
    SHA-256, and only then convert them (a failed download installs nothing)."""
    with tempfile.TemporaryDirectory(prefix="tbd-mesonet-") as tmp:
        downloaded = []
        for fname, (_, _, _, sha) in MESONET_FILES.items():
            url = MESONET_URL.format(commit=MESONET_COMMIT, file=fname)
            dest = Path(tmp) / fname
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
                    f.write(r.read(5 << 20))
            except Exception as e:
                raise ConnectionError(f"cannot download {url} ({e})") from None
            if file_sha256(dest) != sha:
                raise ValueError(f"{fname}: downloaded file does not match its published SHA-256")
            downloaded.append(dest)
        return [convert_mesonet(p, out_dir) for p in downloaded]
