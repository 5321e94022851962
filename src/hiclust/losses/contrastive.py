"""Contrastive losses: NT-Xent (SimCLR, CoHiClust's R2, CC's instance loss) and CC's
cluster-level loss with its marginal-entropy term (docs/methods.md, "Regularization" and "CC")."""

from __future__ import annotations


import torch
import torch.nn.functional as F

__all__ = ["nt_xent", "cluster_contrastive_loss", "cluster_entropy"]


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent over the 2N rows of two views (docs/methods.md, "Regularization", R2).

    Args:
        z_a, z_b: (N, D) projections of the two views (normalized here, so any scale works).
        temperature: τ.

    Returns:
        Scalar: mean over the 2N rows of −log(exp(z_a·z_a⁺/τ) / Σ_{b≠a} exp(z_a·z_b/τ)).
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(f"views must both be (N, D), got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z_a.shape[0]
    z = F.normalize(torch.cat((z_a, z_b), dim=0), dim=1)
    logits = z @ z.T / temperature
    # A row is never its own negative: exclude the diagonal from the softmax.
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat((torch.arange(n, 2 * n), torch.arange(0, n))).to(z.device)
    return F.cross_entropy(logits, positive)


def cluster_contrastive_loss(
    y_a: torch.Tensor, y_b: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """CC's cluster-level contrastive loss (without the entropy term).

    Args:
        y_a, y_b: (N, M) softmax cluster assignments of the two views. Column i is the
            representation of cluster i; columns (i of a, i of b) are positives.

    Returns:
        Scalar: NT-Xent with cosine similarity over the 2M columns.
    """
    if y_a.shape != y_b.shape or y_a.ndim != 2:
        raise ValueError(f"views must both be (N, M), got {tuple(y_a.shape)} and {tuple(y_b.shape)}")
    return nt_xent(y_a.T, y_b.T, temperature)


def cluster_entropy(y_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
    """H(Y) = −Σ_i [P(ŷ_i^a) log P(ŷ_i^a) + P(ŷ_i^b) log P(ŷ_i^b)], P(ŷ_i^k) = Σ_t Y^k_ti / ‖Y^k‖₁.

    Args:
        y_a, y_b: (N, M) non-negative cluster assignments of the two views.

    Returns:
        Scalar in [0, 2·log M]; CC minimizes L_clu − H(Y) (the reference adds the constant 2·log M).
    """
    total = y_a.new_zeros(())
    for y in (y_a, y_b):
        p = y.sum(0) / y.sum()
        total = total - (p * torch.log(p.clamp_min(1e-12))).sum()
    return total
