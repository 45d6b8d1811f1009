"""Checkpoints: `NAME.safetensors` (tensors only) beside `NAME.json` (the model card). Everything needed to build
and feed the model (architecture, config, input size, mean/std, interpolation, class order, frames, crop,
thresholds) lives in the card, so preprocessing can never differ from training. Nothing is ever unpickled.

>>> det = load_detector("weights/sbi-frame.json")
>>> p_fake = det.predict(face_crops)          # list of HxWx3 uint8 crops -> np.ndarray of P(fake)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..calibration import METHODS as CALIBRATION_METHODS
from ..faces import black_outside_box
from ..media import file_sha256
from .archs import SEQUENCE_ARCHITECTURES
from .registry import create_model

__all__ = ["ModelCard", "Detector", "save_checkpoint", "write_card", "load_detector", "discover_models", "weights_dirs",
           "CardError", "REPO_WEIGHTS"]

REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
CARD_VERSION = 1
CAVEAT_INPUTS = {"pre_cropped", "low_resolution"}  # the input kinds a card's `caveats` may name (core.analyze)
TTA_VIEWS = {"hflip"}
_INTERP = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area"}


class CardError(ValueError):
    """A model card or its checkpoint is missing, inconsistent or invalid."""


@dataclass
class ModelCard:
    name: str
    architecture: str
    config: dict
    input_size: int
    mean: list[float]
    std: list[float]
    interpolation: str = "bilinear"
    classes: list[str] = field(default_factory=lambda: ["real", "fake"])
    output: str = "softmax"  # softmax over classes, or sigmoid of one logit for classes[1]
    frames: int = 1
    # How faces are cut for this model (core.faces.crop_face): size, margin and mode. A card without "mode" was
    # cut before padding existed and gets "shift" (its crops were shifted/clamped inside the frame).
    crop: dict = field(default_factory=lambda: {"size": 256, "margin": 0.3, "mode": "pad"})
    # Post-hoc calibration fitted on validation data: {"method": "temperature", "temperature": T, ...}:
    # P(fake) = sigmoid(fake logit / T); {"method": "platt", "temperature": T, "bias": b, ...}: sigmoid(z / T + b).
    # Empty: the network's own probabilities.
    calibration: dict = field(default_factory=dict)
    # Test-time augmentation of frame models: "hflip" scores each crop and its mirror image and averages the two
    # fake logits (then the temperature, fitted on those averaged logits). Grad-CAM explains the crop as it is.
    tta: list[str] = field(default_factory=list)
    # Multi-scale test-time augmentation of frame models: each crop is also resized to these input sizes (besides
    # input_size) and every view at every size is scored; all those fake logits are averaged (then calibrated, the
    # calibration fitted on those averaged logits). Grad-CAM explains the crop at input_size.
    tta_sizes: list[int] = field(default_factory=list)
    thresholds: dict = field(default_factory=lambda: {"decision": 0.5, "real_below": 0.35, "fake_above": 0.65})
    display_name: str = ""
    version: str = "1"
    description: str = ""
    training: dict = field(default_factory=dict)  # data, terms, recipe
    metrics: dict = field(default_factory=dict)
    license: str = ""
    limitations: list[str] = field(default_factory=list)
    # Measured weaknesses on a kind of input that core can recognise, shown with any analysis of such an input:
    # {"pre_cropped": text} where a face fills its image (found only on the padded detection pass),
    # {"low_resolution": text} where the faces' median box is under core.analyze.LOW_RES_FACE_PX.
    caveats: dict = field(default_factory=dict)
    ensemble: dict = field(default_factory=lambda: {"default": True, "weight": 1.0})
    file: str = ""
    sha256: str = ""
    parameters: int = 0
    path: str = ""  # where the card was read from (not saved)

    @property
    def kind(self) -> str:
        return "sequence" if self.architecture in SEQUENCE_ARCHITECTURES else "frame"

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "path"}
        d["card_version"] = CARD_VERSION
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str = "") -> "ModelCard":
        required = ["name", "architecture", "config", "input_size", "mean", "std", "classes", "file"]
        missing = [k for k in required if k not in d]
        if missing:
            raise CardError(f"model card {path or d.get('name')}: missing {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        card = cls(**{k: v for k, v in d.items() if k in known}, path=path)
        card.validate()
        return card

    def validate(self) -> None:
        where = f"model card {self.path or self.name}"
        if "fake" not in self.classes:
            raise CardError(f"{where}: classes must include 'fake'")
        if self.output not in ("softmax", "sigmoid"):
            raise CardError(f"{where}: output must be softmax or sigmoid")
        if self.output == "sigmoid" and len(self.classes) != 2:
            raise CardError(f"{where}: a sigmoid output needs exactly two classes")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise CardError(f"{where}: mean and std need three values (std > 0)")
        if self.interpolation not in _INTERP:
            raise CardError(f"{where}: interpolation must be one of {sorted(_INTERP)}")
        t = self.thresholds
        if not (0 <= t.get("real_below", 0.35) <= t.get("decision", 0.5) <= t.get("fake_above", 0.65) <= 1):
            raise CardError(f"{where}: thresholds must satisfy 0 <= real_below <= decision <= fake_above <= 1")
        if self.input_size < 16 or self.frames < 1:
            raise CardError(f"{where}: input_size >= 16 and frames >= 1 required")
        if self.crop.get("mode", "shift") not in ("pad", "shift"):
            raise CardError(f"{where}: crop mode must be pad or shift")
        if self.crop.get("outside_box") not in (None, "black"):
            raise CardError(f"{where}: crop outside_box must be \"black\" or absent")
        if self.outside_box_black and (self.crop_spec[2] != "pad" or self.crop_spec[1] <= 0):
            raise CardError(f"{where}: crop outside_box needs mode pad and a margin above 0")
        if not isinstance(self.tta, list) or not set(self.tta) <= TTA_VIEWS:
            raise CardError(f"{where}: tta must be a list drawn from {sorted(TTA_VIEWS)}")
        if self.tta and self.kind != "frame":
            raise CardError(f"{where}: tta is for frame models only")
        if not isinstance(self.tta_sizes, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 1024 for v in self.tta_sizes):
            raise CardError(f"{where}: tta_sizes must be a list of input sizes from 16 to 1024")
        if len(set(self.tta_sizes)) != len(self.tta_sizes) or self.input_size in self.tta_sizes:
            raise CardError(f"{where}: tta_sizes must not repeat a size or input_size")
        if self.tta_sizes and self.kind != "frame":
            raise CardError(f"{where}: tta_sizes is for frame models only")
        if not isinstance(self.caveats, dict) or not set(self.caveats) <= CAVEAT_INPUTS or not all(
                isinstance(v, str) and v.strip() for v in self.caveats.values()):
            raise CardError(f"{where}: caveats must map input kinds from {sorted(CAVEAT_INPUTS)} to a text")
        if self.calibration:
            method = self.calibration.get("method")
            if method not in CALIBRATION_METHODS:
                raise CardError(f"{where}: calibration method must be {' or '.join(CALIBRATION_METHODS)}")
            t = self.calibration.get("temperature")
            if not isinstance(t, (int, float)) or not 0.01 <= t <= 100:
                raise CardError(f"{where}: calibration temperature must be a number in [0.01, 100]")
            b = self.calibration.get("bias")
            if method == "platt" and (not isinstance(b, (int, float)) or not -50 <= b <= 50):
                raise CardError(f"{where}: Platt calibration needs a bias, a number in [-50, 50]")

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0)) if self.calibration else 1.0

    @property
    def calibration_bias(self) -> float:
        """The b of Platt scaling, sigmoid(z / T + b); 0 for temperature scaling or none."""
        return float(self.calibration.get("bias", 0.0)) if self.calibration.get("method") == "platt" else 0.0

    @property
    def scoring(self) -> str:
        """How this model turns a face into P(fake), in one line: the views scored and the calibration."""
        if self.kind != "frame":
            views = f"each track as {self.frames} frames"
        elif self.tta_sizes:
            sizes = " and ".join(f"{v} px" for v in self.scoring_sizes)
            views = (f"each face at {sizes}" + (" and the mirror image of each" if "hflip" in self.tta else "")
                     + f", the {len(self.scoring_sizes) * (2 if 'hflip' in self.tta else 1)} fake logits averaged")
        else:
            views = ("each face and its mirror image, the two fake logits averaged" if "hflip" in self.tta
                     else "each face once")
        if self.calibration:
            how = (f"Platt-calibrated (sigmoid(logit / T + b), T = {self.temperature:g}, b = {self.calibration_bias:g}"
                   if self.calibration["method"] == "platt" else f"temperature-calibrated (T = {self.temperature:g}")
            cal = f"{how}, fitted on the {self.calibration.get('fitted_on', 'validation split')})"
        else:
            cal = "the network's own probability (not calibrated)"
        if self.outside_box_black:
            views = "the crop's ring outside the face box set to black, then " + views
        return f"{views}; P(fake) {cal}"

    @property
    def scoring_sizes(self) -> list[int]:
        """The input sizes a frame model scores each crop at: input_size first, then the tta_sizes."""
        return [int(self.input_size)] + [int(v) for v in self.tta_sizes]

    @property
    def outside_box_black(self) -> bool:
        """Whether the crop's ring outside the face box is blacked before scoring (crop "outside_box": "black")."""
        return self.crop.get("outside_box") == "black"

    @property
    def crop_spec(self) -> tuple[int, float, str]:
        """(size, margin, mode) for core.faces.crop_face."""
        return (int(self.crop.get("size", 256)), float(self.crop.get("margin", 0.3)),
                str(self.crop.get("mode", "shift")))


def save_checkpoint(model: nn.Module, card: ModelCard, out_dir: str | Path) -> Path:
    """Write OUT/NAME.safetensors and OUT/NAME.json; returns the card path. The card records the tensor file's
    SHA-256 and parameter count."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card.file = f"{card.name}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    st_path = out / card.file
    save_file(tensors, str(st_path), metadata={"tbd_card": json.dumps({"name": card.name,
                                                                       "architecture": card.architecture})})
    card.sha256 = file_sha256(st_path)
    card.parameters = int(sum(p.numel() for p in model.parameters()))
    card_path = write_card(out / f"{card.name}.json", card.to_dict())
    card.path = str(card_path)
    return card_path


def write_card(card_path: str | Path, card: dict) -> Path:
    """Write a model card's JSON atomically (a reader never sees half a card); returns its path."""
    card_path = Path(card_path)
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_path)
    return card_path


def read_card(card_path: str | Path) -> ModelCard:
    p = Path(card_path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise CardError(f"model card {p} not found") from None
    except json.JSONDecodeError as e:
        raise CardError(f"model card {p} is not valid JSON ({e})") from None
    return ModelCard.from_dict(d, path=str(p))


class Detector(nn.Module):
    """A loaded model plus its card. `forward` maps preprocessed input to one fake logit per sample (B, 1):
    sigmoid(fake logit) = P(fake) for both softmax and sigmoid heads, divided by the card's calibration
    temperature when it has one (plus its bias, for Platt scaling)."""

    def __init__(self, net: nn.Module, card: ModelCard):
        super().__init__()
        self.net = net
        self.card = card
        self.fake_index = card.classes.index("fake")
        self.register_buffer("_mean", torch.tensor(card.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(card.std).view(1, 3, 1, 1), persistent=False)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def device(self) -> torch.device:
        return self._mean.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if self.card.output == "sigmoid":
            z = logits.reshape(logits.shape[0], -1)[:, :1]  # logit of classes[1]
            z = z if self.fake_index == 1 else -z
        else:
            others = torch.cat([logits[:, : self.fake_index], logits[:, self.fake_index + 1:]], dim=1)
            z = (logits[:, self.fake_index] - torch.logsumexp(others, dim=1)).unsqueeze(1)
        t, b = self.card.temperature, self.card.calibration_bias
        z = z if t == 1.0 else z / t
        return z if b == 0.0 else z + b

    def preprocess(self, crops: list[np.ndarray], size: int | None = None) -> torch.Tensor:
        """uint8 HxWx3 RGB crops -> normalised (N, 3, S, S) float tensor on the model's device (S: `size`, by
        default the card's input_size)."""
        return self._resized(self._unit(crops), int(size or self.card.input_size))

    def _unit(self, crops: list[np.ndarray]) -> torch.Tensor:
        """uint8 HxWx3 RGB crops -> (N, 3, H, W) floats in [0, 1] on the model's device (the ring outside the face
        box blacked first where the card asks for it: `view`)."""
        x = torch.from_numpy(np.stack([self.view(c) for c in crops])).to(self.device)
        return x.permute(0, 3, 1, 2).float().div_(255.0)

    def view(self, crop: np.ndarray) -> np.ndarray:
        """The crop as this model sees it: as given, or with the ring outside its face box black (core.faces)."""
        return black_outside_box(crop, self.card.crop_spec[1]) if self.card.outside_box_black else crop

    def _resized(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """[0, 1] crops resized to s x s with the card's interpolation, then normalised."""
        if x.shape[-1] != s or x.shape[-2] != s:
            mode = _INTERP[self.card.interpolation]
            kw = {"align_corners": False, "antialias": True} if mode in ("bilinear", "bicubic") else {}
            x = F.interpolate(x, size=(s, s), mode=mode, **kw).clamp_(0, 1)
        return (x - self._mean) / self._std

    def fake_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 1) fake logit that P(fake) is the sigmoid of: `forward`, averaged over the card's TTA views."""
        z = self(x)
        if "hflip" in self.card.tta:
            z = (z + self(x.flip(-1))) / 2
        return z

    @torch.inference_mode()
    def predict(self, crops: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """P(fake) for each crop (frame models) - a flat array."""
        if self.card.kind != "frame":
            raise TypeError(f"{self.name} is a sequence model; use predict_sequences")
        out = []
        sizes = self.card.scoring_sizes
        for i in range(0, len(crops), batch_size):
            x = self._unit(crops[i:i + batch_size])  # stacked once, resized for each size
            z = sum(self.fake_logits(self._resized(x, s)) for s in sizes) / len(sizes)
            out.append(torch.sigmoid(z).float().cpu().numpy()[:, 0])
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    @torch.inference_mode()
    def predict_sequences(self, sequences: list[list[np.ndarray]]) -> np.ndarray:
        """P(fake) for each sequence of crops; each is resampled uniformly to the card's `frames`."""
        from ..media import sample_indices

        out = []
        n = self.card.frames
        for seq in sequences:
            idx = sample_indices(len(seq), n)
            if len(idx) < n:  # short track: repeat frames in order to reach the trained length
                idx = [idx[int(i)] for i in np.linspace(0, len(idx) - 1, n).round()]
            x = self.preprocess([seq[i] for i in idx]).unsqueeze(0)
            out.append(float(torch.sigmoid(self(x))[0, 0]))
        return np.asarray(out, dtype=np.float32)


def load_detector(card_path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> Detector:
    """Build the network from the card alone and load its safetensors (strict: every tensor must match)."""
    from safetensors.torch import load_file

    card = read_card(card_path)
    st_path = Path(card_path).parent / card.file
    if not st_path.exists():
        raise CardError(f"{card.name}: weights file {st_path.name} is missing")
    if verify and card.sha256 and file_sha256(st_path) != card.sha256:
        raise CardError(f"{card.name}: {st_path.name} does not match the SHA-256 in its card")
    net = create_model(card.architecture, **card.config)
    try:
        state = load_file(str(st_path), device="cpu")
    except Exception as e:
        raise CardError(f"{card.name}: cannot read {st_path.name} ({e})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise CardError(f"{card.name}: weights do not fit the architecture in its card ({detail})") from None
    det = Detector(net, card).to(device).eval()
    return det


def weights_dirs() -> list[Path]:
    """Folders searched for model cards: $TBD_WEIGHTS (os.pathsep-separated) if set, else weights/ and
    weights/fetched/ (where `core weights fetch` writes)."""
    env = os.environ.get("TBD_WEIGHTS")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [REPO_WEIGHTS, REPO_WEIGHTS / "fetched"]


def discover_models(dirs: list[Path] | None = None) -> dict[str, ModelCard | CardError]:
    """Every model card found (name -> card), or the error that makes a card unusable."""
    found: dict[str, Any] = {}
    for d in dirs if dirs is not None else weights_dirs():
        if not Path(d).is_dir():
            continue
        for p in sorted(Path(d).glob("*.json")):
            try:
                raw = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                found[p.stem] = CardError(f"model card {p} is not valid JSON ({e})")
                continue
            if not isinstance(raw, dict) or "architecture" not in raw:
                continue  # other JSON files (benchmarks, ensemble policy)
            try:
                card = ModelCard.from_dict(raw, path=str(p))
            except CardError as e:
                found[raw.get("name", p.stem)] = e
                continue
            if not (p.parent / card.file).exists():
                found[card.name] = CardError(f"{card.name}: weights file {card.file} is missing")
                continue
            found.setdefault(card.name, card)
    return found
