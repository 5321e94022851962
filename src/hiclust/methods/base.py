"""Plumbing shared by the deep estimators: input coercion and validation, device and seeding,
augmentation choice, batched inference, and checkpoint state."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hiclust.data.features import FeatureAugment

__all__ = ["PreparedData", "prepare_data", "seed_everything", "DeepClustererMixin"]


@dataclass
class PreparedData:
    """What every estimator trains on.

    ``x``: uint8 (N, C, H, W) images, or float32 (N, D) features (already standardized).
    ``labels``: int64 (N,) or None. ``name``: dataset name if known (chooses augmentation).
    """

    x: torch.Tensor
    labels: torch.Tensor | None
    name: str | None
    class_names: list[str] | None = None

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4


def _to_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"expected an ImageDataset, a torch.Tensor or a numpy array, got {type(x).__name__}; "
        "load files with hiclust.data.load_dataset('folder:PATH') first"
    )


def prepare_data(X: Any, y: Any = None) -> PreparedData:
    """Coerces the accepted input forms to :class:`PreparedData` and validates them.

    Accepted: an ``ImageDataset``; uint8 images (N,H,W), (N,C,H,W) or (N,H,W,C) with C ∈ {1,3};
    float images of those shapes with values in [0, 1]; or a float feature matrix (N, D).
    """
    from hiclust.data.datasets import ImageDataset  # late import: data is a sibling package

    name = class_names = None
    labels = None
    if isinstance(X, ImageDataset):
        x, labels, name, class_names = X.images, X.labels, X.name, X.class_names
    else:
        x = _to_tensor(X)
    if y is not None:
        labels = _to_tensor(np.asarray(y) if not isinstance(y, (torch.Tensor, np.ndarray)) else y)
    if x.shape[0] == 0 if x.ndim else True:
        raise ValueError("the dataset is empty (0 samples); nothing to cluster")
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()  # channels-last → channels-first
    if x.ndim == 4:
        if x.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have 1 or 3 channels in (N, C, H, W) or (N, H, W, C) layout, got shape {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8:
            x = x.float()
            if not torch.isfinite(x).all():
                raise ValueError("the images contain NaN or infinite values; clean or drop those samples")
            if x.min() < 0 or x.max() > 1:
                raise ValueError(
                    f"float images must lie in [0, 1] (got [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
                    "pass uint8 images or divide by 255"
                )
            x = (x * 255).round().to(torch.uint8)
    elif x.ndim == 2:
        if not torch.is_floating_point(x) and x.dtype == torch.bool:
            raise TypeError("feature matrices must be numeric")
        x = x.float()
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(1).nonzero().flatten()[:5].tolist()
            raise ValueError(f"the features contain NaN or infinite values (rows {bad}...); impute or drop them")
    else:
        raise ValueError(
            f"expected images (N, C, H, W) / (N, H, W) or features (N, D), got an array of shape {tuple(x.shape)}"
        )
    if labels is not None:
        labels = labels.flatten()
        if labels.shape[0] != x.shape[0]:
            raise ValueError(f"got {labels.shape[0]} labels for {x.shape[0]} samples; they must be equally many")
        labels = labels.long()
    return PreparedData(x, labels, name, class_names)


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (all devices). Determinism on CPU follows; on CUDA some
    kernels stay non-deterministic unless torch.use_deterministic_algorithms is set by the user."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class DeepClustererMixin:
    """Shared helpers; subclasses define ``model_``, ``_eval_input`` and the fit logic."""

    def _make_augment(self, data: PreparedData, image_size: int) -> nn.Module:
        from hiclust.data.augment import BatchAugment, augmentation_preset, preset_for_dataset

        aug = self.augmentation
        if not data.is_image:
            return FeatureAugment()
        channels = data.x.shape[1]
        if isinstance(aug, nn.Module):
            return aug
        if aug == "auto":
            return preset_for_dataset(data.name or "", image_size, channels)
        if isinstance(aug, str):
            return augmentation_preset(aug, image_size, channels)
        raise TypeError(f"augmentation must be 'auto', a preset name or a BatchAugment, got {aug!r}")

    @torch.no_grad()
    def _batched_eval(self, fn, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Applies ``fn`` to evaluation-transformed batches of ``x`` on the fitted device; CPU result."""
        self.model_.eval()
        outs = []
        for i in range(0, x.shape[0], batch_size):
            batch = self._eval_input(x[i : i + batch_size].to(self.device_))
            outs.append(fn(batch).float().cpu())
        return torch.cat(outs)

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")


def default_depth(n_clusters: int) -> int:
    """Smallest complete tree with at least ``n_clusters`` leaves (10 → 4, 20 → 5, 15 → 4)."""
    return max(1, math.ceil(math.log2(n_clusters)))
