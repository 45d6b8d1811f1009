"""Detector models: registry + factory, checkpoints with model cards, MesoNet import."""

from .checkpoint import CardError, Detector, ModelCard, discover_models, load_detector, save_checkpoint, weights_dirs
from .registry import create_model, list_architectures, register_model

__all__ = ["CardError", "Detector", "ModelCard", "create_model", "discover_models", "list_architectures",
           "load_detector", "register_model", "save_checkpoint", "weights_dirs"]
