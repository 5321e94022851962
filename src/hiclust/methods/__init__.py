"""Clustering methods. ``METHODS`` maps the names used by the CLI and configs to estimators."""

from __future__ import annotations

from typing import Any

from hiclust.methods.cc import ContrastiveClustering
from hiclust.methods.cohiclust import CoHiClust, CoHiClustNet
from hiclust.methods.dec import DEC, IDEC
from hiclust.methods.deepect import DeepECT
from hiclust.methods.simclr import SimCLR

__all__ = [
    "CoHiClust", "CoHiClustNet", "ContrastiveClustering", "DEC", "IDEC", "DeepECT", "SimCLR", "METHODS", "make_estimator",
    "register_method",
]

METHODS: dict[str, type] = {
    "cohiclust": CoHiClust,
    "cc": ContrastiveClustering,
    "dec": DEC,
    "idec": IDEC,
    "simclr": SimCLR,
    "deepect": DeepECT,
}


def register_method(name: str, cls: type) -> None:
    METHODS[name] = cls


def make_estimator(method: str, params: dict[str, Any]) -> Any:
    """Builds ``METHODS[method](**params)`` with a clear error for unknown names or parameters."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}")
    cls = METHODS[method]
    valid = set(cls().get_params())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    return cls(**params)
