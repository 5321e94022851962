"""Losses as pure functions of tensors, and each method's loss as an ``nn.Module`` (:mod:`hiclust.losses.modules`)."""

from hiclust.losses.contrastive import cluster_contrastive_loss, cluster_entropy, nt_xent
from hiclust.losses.dec import (
    ALPHA_SCHEDULES,
    alpha_schedule,
    balance_kl,
    combine_losses,
    kl_divergence,
    kmeans_loss,
    knn_graph,
    locality_loss,
    self_augmentation_loss,
    student_t_assignment,
    target_distribution,
    zipf_prior,
)
from hiclust.losses.modules import CCLoss, CoHiClustLoss, DECLoss, NTXentLoss
from hiclust.losses.tree import (
    cohiloss,
    depth_from_decisions,
    leaf_probabilities,
    level_probabilities,
    tree_balance_loss,
)

__all__ = [
    "cohiloss",
    "tree_balance_loss",
    "level_probabilities",
    "leaf_probabilities",
    "depth_from_decisions",
    "nt_xent",
    "cluster_contrastive_loss",
    "cluster_entropy",
    "student_t_assignment",
    "target_distribution",
    "kl_divergence",
    "kmeans_loss",
    "zipf_prior",
    "balance_kl",
    "knn_graph",
    "locality_loss",
    "self_augmentation_loss",
    "ALPHA_SCHEDULES",
    "alpha_schedule",
    "combine_losses",
    "NTXentLoss",
    "CoHiClustLoss",
    "CCLoss",
    "DECLoss",
]
