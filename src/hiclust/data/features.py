"""Augmentation for feature vectors (a matrix of embeddings or measured features rather than images)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureAugment", "NeighbourViews", "neighbour_whitening"]


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


class NeighbourViews(nn.Module):
    """The two views of feature rows that CoHiClust's input-space mode trains on (docs/methods.md,
    "Feature matrices"): row i itself and one of its k nearest neighbours j, drawn per sample,
    each plus Gaussian noise of standard deviation ``noise`` (in the units of the standardized
    features, i.e. column standard deviations).

    Why both: neighbours say which rows belong together along the data's own shape (what a
    k-NN graph knows); noise as large as a column's spread makes the tree prefer splits with a
    wide margin, as k-means does. Measured on scikit-learn's wine, breast cancer and iris, each
    alone is worse (benchmarks/RESULTS.md, "Feature matrices").

    Parameters
    ----------
    x : tensor of shape (N, D)
        The standardized training rows (held as a buffer on the module's device).
    neighbours : int tensor of shape (N, k)
        Indices of each row's k nearest other rows.
    noise : float
        Standard deviation of the added noise.
    noise_basis : tensor of shape (D, D), optional
        Noise is ``noise · g @ noise_basis`` for standard normal g (B, D): isotropic in the
        coordinates z = x · W when ``noise_basis`` = W⁻¹ (see :func:`neighbour_whitening`).
        None: isotropic in the rows' own coordinates.

    forward(idx (B,) int64, generator) → (2B, D) float32: rows j and B + j are the two views of
    sample idx[j].

    >>> x = torch.arange(8.0).reshape(4, 2)
    >>> views = NeighbourViews(x, torch.tensor([[1], [0], [3], [2]]), noise=0.0)
    >>> views(torch.tensor([0, 2])).tolist()
    [[0.0, 1.0], [4.0, 5.0], [2.0, 3.0], [6.0, 7.0]]
    """

    def __init__(self, x: torch.Tensor, neighbours: torch.Tensor, noise: float = 1.0,
                 noise_basis: torch.Tensor | None = None) -> None:
        super().__init__()
        if x.ndim != 2 or neighbours.ndim != 2 or neighbours.shape[0] != x.shape[0] or neighbours.shape[1] < 1:
            raise ValueError(
                f"NeighbourViews needs rows (N, D) and neighbours (N, k >= 1), got {tuple(x.shape)} and "
                f"{tuple(neighbours.shape)}"
            )
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.register_buffer("x", x.float(), persistent=False)
        self.register_buffer("neighbours", neighbours.long().to(x.device), persistent=False)
        if noise_basis is not None and tuple(noise_basis.shape) != (x.shape[1], x.shape[1]):
            raise ValueError(f"noise_basis must have shape ({x.shape[1]}, {x.shape[1]}), got {tuple(noise_basis.shape)}")
        self.register_buffer("noise_basis", None if noise_basis is None else noise_basis.float().to(x.device),
                             persistent=False)
        self.noise = float(noise)

    def forward(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = self.x.device
        idx = idx.to(dev).long()
        pick = torch.randint(0, self.neighbours.shape[1], (idx.shape[0],), generator=generator, device=dev)
        rows = torch.cat((idx, self.neighbours[idx, pick]))
        out = self.x[rows]
        if self.noise > 0:
            g = torch.randn(out.shape, generator=generator, device=dev)
            out = out + self.noise * (g if self.noise_basis is None else g @ self.noise_basis)
        return out


def neighbour_whitening(x: torch.Tensor, neighbours: torch.Tensor, shrinkage: float = 0.1
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear map that whitens the differences between rows and their nearest neighbours.

    C = mean over pairs (i, j ∈ N_k(i)) of (x_i − x_j)(x_i − x_j)ᵀ estimates (twice) the spread
    within a cluster; shrunk towards its mean eigenvalue, C' = (1 − s)·C + s·(tr C / D)·I, it is
    factored as C' = V Λ Vᵀ and W = V Λ^(−1/2). In z = x · W, directions along which neighbours
    differ have unit spread and directions that separate clusters stand out, as in linear
    discriminant analysis but without labels (benchmarks/RESULTS.md, "Feature matrices:
    whitened input space").

    Args:
        x: (N, D) rows (standardized features).
        neighbours: (N, k) int indices of each row's nearest other rows.
        shrinkage: s in [0, 1]; > 0 keeps C' invertible for collinear columns.

    Returns:
        W (D, D) and its inverse (D, D), float32 on x's device: z = x @ W, x = z @ W⁻¹.

    >>> x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    >>> w, w_inv = neighbour_whitening(x, torch.tensor([[2], [3], [0], [1]]), shrinkage=0.0)
    >>> torch.allclose(w @ w_inv, torch.eye(2), atol=1e-6)
    True
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    a = x.detach().double()
    diff = (a[:, None, :] - a[neighbours.long().to(a.device)]).reshape(-1, a.shape[1])  # (N·k, D)
    c = diff.T @ diff / diff.shape[0]
    d = c.shape[0]
    c = (1.0 - shrinkage) * c + shrinkage * (torch.trace(c) / d) * torch.eye(d, dtype=c.dtype, device=c.device)
    evals, evecs = torch.linalg.eigh(c)
    # Identical rows give C = 0: nothing to whiten by, and nothing a tree could split either.
    evals = evals.clamp_min(float(evals.max()) * 1e-9 if float(evals.max()) > 0 else 1.0)
    w = evecs / evals.sqrt()
    w_inv = evals.sqrt()[:, None] * evecs.T
    return w.float(), w_inv.float()
