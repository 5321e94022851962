"""Augmentation for feature vectors (a matrix of embeddings rather than images)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureAugment"]


class FeatureAugment(nn.Module):
    """Two cheap, label-preserving perturbations of standardized features, per sample:
    random feature masking (each coordinate zeroed with probability ``mask_p``) and additive
    Gaussian noise of standard deviation ``noise_std``. (B, D) float → (B, D) float32."""

    def __init__(self, mask_p: float = 0.2, noise_std: float = 0.1) -> None:
        super().__init__()
        if not 0 <= mask_p < 1 or noise_std < 0:
            raise ValueError("FeatureAugment needs 0 <= mask_p < 1 and noise_std >= 0")
        self.mask_p, self.noise_std = mask_p, noise_std

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.float()
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.mask_p
        noise = torch.randn(x.shape, generator=generator, device=x.device) * self.noise_std
        return x * keep + noise
