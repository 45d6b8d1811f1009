"""Import a detector trained outside TBD (a PyTorch / timm state dict, e.g. the design's EfficientNet-B0 on 140k
faces, its CNN+LSTM or Swin models) as a TBD checkpoint: safetensors plus a model card that says honestly what is
known about it, which is only what the user states. Nothing is unpickled: `.pth`/`.pt` files are read with
`torch.load(weights_only=True)`, which accepts tensors and plain containers only.

    python -m core weights import-torch effb0.pth --name effb0-140k --arch image_classifier \\
        --backbone efficientnet_b0 --input-size 128

The tensors must fit the architecture exactly (after removing `module.` / `_orig_mod.` prefixes, and adding the
`net.` prefix for a bare timm model); anything missing, left over or of another shape is an error, never a partial
load. The imported model is verified by loading it back through `load_detector` and scoring a blank crop.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..media import file_sha256
from .archs import BACKBONE_NORMALISATION, SEQUENCE_ARCHITECTURES, is_swin
from .checkpoint import CardError, ModelCard, load_detector, save_checkpoint
from .registry import create_model

__all__ = ["import_torch", "read_state_dict", "fit_state_dict"]

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")
ARCHITECTURES = ("image_classifier", "cnn_lstm", "swin_seq")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a .pth/.pt state dict (also inside a training checkpoint's
    `state_dict` / `model_state_dict` / `model` entry)."""
    p = Path(path)
    if not p.is_file():
        raise CardError(f"{p} not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as e:
            raise CardError(f"{p.name} is not a readable safetensors file ({type(e).__name__})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CardError(f"{p.name} holds Python objects, not only tensors (a whole pickled model?); TBD never "
                            "unpickles code: save `model.state_dict()` with torch.save and import that") from None
        raise CardError(f"{p.name} is not a readable PyTorch file ({first[:160]})") from None
    for _ in range(2):  # {"state_dict": {...}} or {"model": {"state_dict": ...}}
        if isinstance(obj, dict) and not _all_tensors(obj):
            inner = [obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)]
            if inner:
                obj = inner[0]
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        raise CardError(f"{p.name} does not hold a state dict of tensors (keys found: "
                        f"{', '.join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__})")
    return dict(obj)


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def fit_state_dict(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `state`'s keys onto `net` (prefixes) and check that every tensor fits; raises CardError otherwise."""
    target = net.state_dict()
    cleaned = {}
    for k, v in state.items():
        for pre in _PREFIXES:
            while k.startswith(pre):
                k = k[len(pre):]
        cleaned[k] = v
    candidates = [cleaned, {f"net.{k}": v for k, v in cleaned.items()}]
    best = max(candidates, key=lambda c: len(set(c) & set(target)))
    missing = [k for k in target if k not in best]
    extra = [k for k in best if k not in target]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} not in the architecture (e.g. {extra[0]})")
        raise CardError("the weights do not fit this architecture: " + ", ".join(parts)
                        + "; check --arch, --backbone and the number of classes")
    wrong = [k for k in target if tuple(best[k].shape) != tuple(target[k].shape)]
    if wrong:
        k = wrong[0]
        raise CardError(f"the weights do not fit this architecture: {len(wrong)} tensors have another shape (e.g. {k}"
                        f" {tuple(best[k].shape)} where the model has {tuple(target[k].shape)}); check --backbone, "
                        "--input-size and the number of classes")
    return {k: best[k].to(target[k].dtype) if best[k].is_floating_point() else best[k] for k in target}


def _lstm_config(state: dict[str, torch.Tensor]) -> dict:
    """hidden size, layers and direction of a CNN+LSTM from its tensors."""
    keys = {k.split("lstm.", 1)[1]: v for k, v in state.items() if "lstm." in k}
    if "weight_hh_l0" not in keys:
        raise CardError("the weights have no LSTM (lstm.weight_hh_l0): not a cnn_lstm model")
    hidden = int(keys["weight_hh_l0"].shape[1])
    layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in keys if k.startswith("weight_hh_l"))
    return {"hidden": hidden, "num_layers": layers, "bidirectional": any(k.endswith("_reverse") for k in keys)}


def import_torch(path: str | Path, out_dir: str | Path, name: str, architecture: str, backbone: str,
                 input_size: int, frames: int = 1, classes: tuple[str, ...] = ("real", "fake"),
                 sigmoid: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
                 interpolation: str | None = None, crop_size: int = 256, crop_margin: float = 0.3,
                 data: str = "", license: str = "", force: bool = False) -> Path:
    """Convert one state dict into OUT/NAME.safetensors + OUT/NAME.json; returns the card path."""
    out = Path(out_dir)
    if not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise CardError(f"invalid model name {name!r}")
    if architecture not in ARCHITECTURES:
        raise CardError(f"--arch must be one of {', '.join(ARCHITECTURES)}")
    if backbone not in BACKBONE_NORMALISATION:
        raise CardError(f"--backbone must be one of {', '.join(sorted(BACKBONE_NORMALISATION))}")
    if (out / f"{name}.json").exists() and not force:
        raise CardError(f"a model called {name!r} already exists in {out}; choose another --name (or --force to "
                        "replace it)")
    classes = tuple(classes)
    if "fake" not in classes or len(set(classes)) != len(classes):
        raise CardError(f"--classes must name each output once and include 'fake' (got {','.join(classes)})")
    if sigmoid and len(classes) != 2:
        raise CardError("a single-logit (sigmoid) model has exactly two classes")
    if architecture in SEQUENCE_ARCHITECTURES and frames < 2:
        raise CardError(f"{architecture} scores sequences: give --frames (the clip length it was trained on)")
    if architecture not in SEQUENCE_ARCHITECTURES and frames != 1:
        raise CardError(f"{architecture} scores one crop at a time: --frames is for cnn_lstm and swin_seq")
    state = read_state_dict(path)
    config: dict = {"backbone": backbone, "num_classes": 1 if sigmoid else len(classes)}
    if architecture == "cnn_lstm":
        config.update(_lstm_config(state))
    if architecture == "swin_seq" or (architecture == "image_classifier" and is_swin(backbone)):
        config["img_size"] = input_size
    if architecture == "swin_seq" and not is_swin(backbone):
        raise CardError("swin_seq needs --backbone swin_tiny_patch4_window7_224")
    try:
        net = create_model(architecture, **config)
    except ValueError as e:
        raise CardError(str(e)) from None
    net.load_state_dict(fit_state_dict(net, state), strict=True)

    d_mean, d_std, d_interp = BACKBONE_NORMALISATION[backbone]
    src_sha = file_sha256(path)
    card = ModelCard(
        name=name, architecture=architecture, config=config, input_size=int(input_size),
        mean=list(mean or d_mean), std=list(std or d_std), interpolation=interpolation or d_interp,
        classes=list(classes), output="sigmoid" if sigmoid else "softmax", frames=int(frames),
        crop={"size": int(crop_size), "margin": float(crop_margin), "mode": "pad"},
        thresholds={"decision": 0.5, "real_below": 0.35, "fake_above": 0.65},
        display_name=f"{name} (imported {backbone})",
        description=(f"Imported with `core weights import-torch` from {Path(path).name} (SHA-256 {src_sha[:16]}...). "
                     "Trained outside TBD; TBD has not measured it. Thresholds are the untuned defaults (0.5, "
                     "uncertain between 0.35 and 0.65) until `python -m core evaluate` on labelled data says more."),
        training={"source": f"imported from {Path(path).name} (SHA-256 {src_sha})", "source_sha256": src_sha,
                  "imported": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "data": data or "not stated by the user", "terms": license or "not stated by the user",
                  "normalisation": "given by the user" if (mean or std) else f"timm's default for {backbone}"},
        metrics={}, license=license or "not stated by the user",
        limitations=["Not evaluated by TBD: its training data, recipe and accuracy are only what the user stated.",
                     "It is kept out of the default verdict: choose it on the Analyze page or with --models."],
        ensemble={"default": False, "weight": 1.0},
    )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".import-") as tmp:  # nothing lands until it is verified
        tmp_card = save_checkpoint(net, card, tmp)
        det = load_detector(tmp_card)  # round trip: the card alone rebuilds it, and it scores
        blank = [np.full((input_size, input_size, 3), 128, np.uint8)]
        p = det.predict_sequences([blank * frames]) if det.card.kind == "sequence" else det.predict(blank)
        if not np.isfinite(p).all():
            raise CardError(f"{name}: the imported model gives non-finite scores on a blank crop")
        os.replace(Path(tmp) / card.file, out / card.file)
        os.replace(tmp_card, out / f"{name}.json")
    return out / f"{name}.json"
