"""The detector architectures. Every network returns class logits; `Detector` (checkpoint.py) turns them into a
single fake logit using the class order in the model card.

- `image_classifier`: a timm backbone (efficientnet_b0, tf_efficientnet_lite0/lite2, resnext50_32x4d or
  swin_tiny_patch4_window7_224) on one face crop.
- `cnn_lstm`: a timm CNN encoder per frame, LSTM over frames with temporal LayerNorm, LeakyReLU head, dropout.
- `swin_seq`: Swin-T per frame, logits averaged over the sequence.
- `meso4`, `mesoinception4`: MesoNet (Afchar et al., 2018) ported so the published Keras weights load.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model

__all__ = ["ImageClassifier", "CnnLstm", "SwinSequence", "Meso4", "MesoInception4", "SEQUENCE_ARCHITECTURES",
           "BACKBONE_NORMALISATION", "is_swin"]

SEQUENCE_ARCHITECTURES = {"cnn_lstm", "swin_seq"}
CNN_BACKBONES = {"efficientnet_b0", "tf_efficientnet_lite0", "tf_efficientnet_lite2", "resnext50_32x4d"}
BACKBONE_NORMALISATION = {  # timm's pretrained configs: mean, std, interpolation
    "tf_efficientnet_lite0": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "bicubic"),
    "tf_efficientnet_lite2": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "bicubic"),
    "efficientnet_b0": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "bicubic"),
    "resnext50_32x4d": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "bicubic"),
    "swin_tiny_patch4_window7_224": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "bicubic"),
}


def _timm(backbone: str, **kw) -> nn.Module:
    import timm

    return timm.create_model(backbone, pretrained=False, **kw)


class ImageClassifier(nn.Module):
    """One face crop -> class logits. A Swin backbone is built for `img_size` (its window grid is fixed) and gets
    Grad-CAM's token-to-map reshape; CNN backbones take any input size."""

    def __init__(self, backbone: str = "efficientnet_b0", num_classes: int = 2, drop_rate: float = 0.2,
                 img_size: int = 224):
        super().__init__()
        self.backbone_name = backbone
        kw = {"img_size": img_size} if is_swin(backbone) else {}
        self.net = _timm(backbone, num_classes=num_classes, drop_rate=drop_rate, **kw)
        if is_swin(backbone):
            self.reshape_transform = _swin_tokens_to_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def cam_layer(self) -> nn.Module:
        return _swin_cam_layer(self.net) if is_swin(self.backbone_name) else _last_conv_stage(self.net)


class CnnLstm(nn.Module):
    """(B, F, 3, H, W) -> (B, classes). Frame features from the CNN (global average pooled), an LSTM over frames,
    LayerNorm over each time step's hidden state, mean over time, then LeakyReLU + dropout + linear."""

    def __init__(self, backbone: str = "efficientnet_b0", hidden: int = 256, num_layers: int = 1,
                 dropout: float = 0.4, num_classes: int = 2, bidirectional: bool = False):
        super().__init__()
        self.backbone_name = backbone
        self.encoder = _timm(backbone, num_classes=0)
        feat = self.encoder.num_features
        self.lstm = nn.LSTM(feat, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        out = hidden * (2 if bidirectional else 1)
        self.norm = nn.LayerNorm(out)
        self.act = nn.LeakyReLU(0.01)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # a single frame
            x = x.unsqueeze(1)
        b, f = x.shape[:2]
        feats = self.encoder(x.flatten(0, 1)).view(b, f, -1)
        seq, _ = self.lstm(feats)
        h = self.norm(seq).mean(dim=1)
        return self.fc(self.drop(self.act(h)))

    def cam_layer(self) -> nn.Module:
        return _last_conv_stage(self.encoder)


class SwinSequence(nn.Module):
    """Swin-T applied to every frame; per-frame logits averaged over the sequence."""

    def __init__(self, backbone: str = "swin_tiny_patch4_window7_224", num_classes: int = 2, img_size: int = 224,
                 drop_rate: float = 0.0):
        super().__init__()
        self.backbone_name = backbone
        self.net = _timm(backbone, num_classes=num_classes, img_size=img_size, drop_rate=drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self.net(x)
        b, f = x.shape[:2]
        return self.net(x.flatten(0, 1)).view(b, f, -1).mean(dim=1)

    def cam_layer(self) -> nn.Module:
        return _swin_cam_layer(self.net)

    @staticmethod
    def reshape_transform(t: torch.Tensor) -> torch.Tensor:
        return _swin_tokens_to_map(t)


def is_swin(backbone: str) -> bool:
    """Swin backbones fix their window grid at build time and need Grad-CAM's token-to-map reshape."""
    return backbone.startswith("swin")


def _swin_cam_layer(net: nn.Module) -> nn.Module:
    return net.layers[-1].blocks[-1].norm1


def _swin_tokens_to_map(t: torch.Tensor) -> torch.Tensor:
    """timm Swin blocks keep (B, H, W, C) (older versions (B, H*W, C)); Grad-CAM wants (B, C, H, W)."""
    if t.dim() == 4:
        return t.permute(0, 3, 1, 2)
    b, n, c = t.shape
    s = int(n**0.5)
    return t.reshape(b, s, s, c).permute(0, 3, 1, 2)


def _last_conv_stage(net: nn.Module) -> nn.Module:
    """The layer Grad-CAM should look at: the last feature stage of a timm CNN."""
    for attr in ("bn2", "layer4"):
        if hasattr(net, attr):
            return getattr(net, attr)
    if hasattr(net, "blocks"):
        return net.blocks[-1]
    raise ValueError(f"no Grad-CAM layer known for {type(net).__name__}")


# ---------------------------------------------------------------------------------------------- MesoNet


def _pad_same(k: int, d: int = 1) -> int:
    return d * (k - 1) // 2


class _ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, d: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, padding=_pad_same(k, d), dilation=d), nn.ReLU(inplace=False))


class _Inception(nn.Module):
    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.b1 = _ConvReLU(cin, a, 1)
        self.b2 = nn.Sequential(_ConvReLU(cin, b, 1), _ConvReLU(b, b, 3))
        self.b3 = nn.Sequential(_ConvReLU(cin, c, 1), _ConvReLU(c, c, 3, d=2))
        self.b4 = nn.Sequential(_ConvReLU(cin, d, 1), _ConvReLU(d, d, 3, d=3))
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class _MesoBase(nn.Module):
    """Shared tail: conv blocks (conv-relu, BN eps 1e-3, max-pool), Keras channels-last flatten, dense 16, dense 1.
    The single output logit is for class index 1 (`real` in the published weights)."""

    def _tail(self, leaky: bool):
        self.drop1 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(1024, 16)
        self.act = nn.LeakyReLU(0.1) if leaky else nn.Identity()
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 1)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens (H, W, C)
        return self.fc2(self.drop2(self.act(self.fc1(self.drop1(x)))))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def cam_layer(self) -> nn.Module:
        return self.bn4


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3)


class Meso4(_MesoBase):
    def __init__(self, leaky: bool = True, num_classes: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _ConvReLU(3, 8, 3), _bn(8)
        self.conv2, self.bn2 = _ConvReLU(8, 8, 5), _bn(8)
        self.conv3, self.bn3 = _ConvReLU(8, 16, 5), _bn(16)
        self.conv4, self.bn4 = _ConvReLU(16, 16, 5), _bn(16)
        self._tail(leaky)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bn1(self.conv1(x)), 2)
        x = F.max_pool2d(self.bn2(self.conv2(x)), 2)
        x = F.max_pool2d(self.bn3(self.conv3(x)), 2)
        return F.max_pool2d(self.bn4(self.conv4(x)), 4)


class MesoInception4(_MesoBase):
    def __init__(self, leaky: bool = True, num_classes: int = 1):
        super().__init__()
        self.inc1 = _Inception(3, 1, 4, 4, 2)
        self.bn1 = _bn(11)
        self.inc2 = _Inception(11, 2, 4, 4, 2)
        self.bn2 = _bn(12)
        self.conv3, self.bn3 = _ConvReLU(12, 16, 5), _bn(16)
        self.conv4, self.bn4 = _ConvReLU(16, 16, 5), _bn(16)
        self._tail(leaky)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bn1(self.inc1(x)), 2)
        x = F.max_pool2d(self.bn2(self.inc2(x)), 2)
        x = F.max_pool2d(self.bn3(self.conv3(x)), 2)
        return F.max_pool2d(self.bn4(self.conv4(x)), 4)


@register_model("image_classifier")
def image_classifier(backbone: str = "efficientnet_b0", num_classes: int = 2, drop_rate: float = 0.2,
                     img_size: int = 224, **_):
    return ImageClassifier(backbone=backbone, num_classes=num_classes, drop_rate=drop_rate, img_size=img_size)


@register_model("cnn_lstm")
def cnn_lstm(backbone: str = "efficientnet_b0", hidden: int = 256, num_layers: int = 1, dropout: float = 0.4,
             num_classes: int = 2, bidirectional: bool = False, **_):
    if backbone not in CNN_BACKBONES:
        raise ValueError(f"cnn_lstm backbone must be one of {sorted(CNN_BACKBONES)}")
    return CnnLstm(backbone, hidden, num_layers, dropout, num_classes, bidirectional)


@register_model("swin_seq")
def swin_seq(backbone: str = "swin_tiny_patch4_window7_224", num_classes: int = 2, img_size: int = 224, **_):
    return SwinSequence(backbone, num_classes, img_size)


@register_model("meso4")
def meso4(leaky: bool = True, **_):
    return Meso4(leaky=leaky)


@register_model("mesoinception4")
def mesoinception4(leaky: bool = True, **_):
    return MesoInception4(leaky=leaky)
