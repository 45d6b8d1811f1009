"""Architecture registry and the single model factory (timm-style).

>>> @register_model("my_arch")
... def my_arch(**cfg): return MyModule(**cfg)
>>> net = create_model("my_arch", width=8)
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_architectures"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def create_model(architecture: str, **config) -> nn.Module:
    """Build an untrained network of a registered architecture from its config (the checkpoint metadata)."""
    from . import archs  # noqa: F401  (fills the registry)

    if architecture not in _REGISTRY:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[architecture](**config)


def list_architectures() -> list[str]:
    from . import archs  # noqa: F401

    return sorted(_REGISTRY)
