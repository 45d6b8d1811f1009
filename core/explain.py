"""Grad-CAM heatmaps through pytorch-grad-cam, always used as a context manager so its hooks are released.

Works for image classifiers (last CNN stage), the CNN encoder of sequence models (the crop is fed as a one-frame
sequence), Swin (reshape transform) and MesoNet. The target is the model's fake logit.

>>> overlays = gradcam_overlays(detector, crops)   # list of HxWx3 uint8 images
"""

from __future__ import annotations

import numpy as np
import torch

from .models.checkpoint import Detector

__all__ = ["gradcam", "gradcam_overlays", "overlay"]


def _target_layer(det: Detector):
    return det.net.cam_layer()


def gradcam(det: Detector, crops: list[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """Heatmaps in [0, 1] at the model's input size, one per crop, for the fake logit."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    reshape = getattr(det.net, "reshape_transform", None)
    maps: list[np.ndarray] = []
    layer = _target_layer(det)
    failure: list[BaseException] = []
    # pytorch-grad-cam's __exit__ prints and swallows exceptions: catch them inside the block and re-raise after
    # the hooks are released, so a failed explanation is never mistaken for an empty one.
    with torch.enable_grad(), GradCAM(model=det, target_layers=[layer], reshape_transform=reshape) as cam:
        try:
            for i in range(0, len(crops), batch_size):
                x = det.preprocess(crops[i:i + batch_size]).detach().requires_grad_(True)
                g = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * len(x))
                maps.extend(np.asarray(m, dtype=np.float32) for m in g)
        except Exception as e:  # noqa: BLE001 - re-raised below
            failure.append(e)
    if failure:
        raise failure[0]
    if len(maps) != len(crops):
        raise RuntimeError(f"Grad-CAM returned {len(maps)} maps for {len(crops)} crops")
    return maps


def overlay(crop: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Colour heatmap blended over the crop (heat is resized to the crop)."""
    import cv2

    h, w = crop.shape[:2]
    heat = cv2.resize(np.clip(heat, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.uint8(255 * heat), cv2.COLORMAP_JET)[..., ::-1]
    return np.uint8(np.clip((1 - alpha) * crop.astype(np.float32) + alpha * colour.astype(np.float32), 0, 255))


def gradcam_overlays(det: Detector, crops: list[np.ndarray]) -> list[np.ndarray]:
    return [overlay(det.view(c), m) for c, m in zip(crops, gradcam(det, crops))]  # drawn on what the model saw
