"""SimCLR features + a classical clusterer: the "SimCLR features + agglomerative" baseline of
the CoHiClust paper.

The network is CoHiClust's backbone f and projection head g (same builders, same
augmentations) trained with NT-Xent alone — CoHiClust with the tree terms switched off — and the
clusters come afterwards from agglomerative clustering (or k-means) of the backbone features h.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hiclust.losses.dec import student_t_assignment
from hiclust.losses.modules import NTXentLoss
from hiclust.methods.base import DeepClusterer, Phase, PreparedData, common
from hiclust.methods.params import Integral, Interval, Param, StrOptions
from hiclust.nn import ProjectionHead

__all__ = ["SimCLR", "SimCLRNet"]

CLUSTERERS = ("agglomerative", "kmeans")


class SimCLRNet(nn.Module):
    """Backbone f and CoHiClust's projection head g (Linear→BN→ReLU→Linear, L2-normalized)."""

    def __init__(self, backbone: nn.Module, projection_dim: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = ProjectionHead(backbone.feature_dim, 512, projection_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ...) → (h (B, d), z (B, projection_dim))."""
        h = self.backbone(x)
        return h, self.projection(h)


class _Projection(nn.Module):
    """z of a batch: what training calls and DDP wraps."""

    def __init__(self, net: SimCLRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[1]


class SimCLR(DeepClusterer):
    """Contrastive representation (NT-Xent only) followed by a classical clustering of h.

    ``predict``/``predict_proba`` on new data use the nearest cluster centre (Student's t
    kernel, ν = 1); on the training data ``labels_`` is the clusterer's own answer. Under torchrun
    NT-Xent sees the gathered global batch.

    {parameters}

    Attributes
    ----------
    model_ : SimCLRNet
    labels_ : ndarray of shape (N,)
        The clusterer's labels of the training data.
    cluster_centers_ : tensor of shape (K, d)
        Mean feature of each cluster.
    hierarchy_ : hiclust.Hierarchy or None
        Tree over the K clusters for "agglomerative", else None.
    point_linkage_ : ndarray or None
        Full linkage over the training points (agglomerative only; not saved).
    history_ : list of dict
    device_ : torch.device
    """

    _LOG_NAME = "SimCLR"
    _CHANNELS_LAST_ON_CPU = True
    _params = common(
        "n_clusters", "backbone", "batch_size", "lr", "weight_decay", "temperature", "projection_dim", "image_size",
        "augmentation", "device", "precision", "seed", "random_state", "verbose",
        epochs=Param(Interval(Integral, 0, None, closed="left"),
                     "Training epochs (0: cluster the untrained network's features).", resume="free"),
        clusterer=Param(StrOptions(set(CLUSTERERS)), "'agglomerative' (SciPy linkage; O(N²) memory) or 'kmeans'."),
        linkage=Param(StrOptions({"ward", "average", "complete", "single"}), "Agglomerative linkage."),
        normalize=Param("boolean", "L2-normalize h before clustering (contrastive features live on a sphere).",
                        flag=""),
        eval_every=Param(Interval(Integral, 1, None, closed="left"),
                         "With labels, record k-means ACC/NMI/ARI of h in history_ every this many epochs.",
                         resume="free"),
    )

    def __init__(
        self,
        n_clusters: int = 10,
        backbone: str | nn.Module = "auto",
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        temperature: float = 0.5,
        projection_dim: int = 128,
        image_size: int | None = None,
        augmentation: str | dict[str, Any] | nn.Module = "auto",
        clusterer: str = "agglomerative",
        linkage: str = "ward",
        normalize: bool = True,
        eval_every: int = 10,
        device: str = "auto",
        precision: str = "auto",
        seed: int = 0,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.image_size = image_size
        self.augmentation = augmentation
        self.clusterer = clusterer
        self.linkage = linkage
        self.normalize = normalize
        self.eval_every = eval_every
        self.device = device
        self.precision = precision
        self.seed = seed
        self.random_state = random_state
        self.verbose = verbose

    def _build_model(self) -> SimCLRNet:
        return SimCLRNet(self._backbone_for(self.input_shape_, self.image_size_ or 0), self.projection_dim)

    def _init_fit_state(self, data: PreparedData) -> None:
        self._loss = NTXentLoss(self.temperature, gather_distributed=True)

    def _phases(self, data: PreparedData) -> list[Phase]:
        return [Phase("train", epochs=self.epochs, lr=self.lr, evaluate=self._kmeans_metrics)]

    def _train_module(self) -> nn.Module:
        return _Projection(self.model_)

    def _training_step(self, phase: Phase, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        b = batch.shape[0]
        with self._autocast():
            z = self._net(self._views(batch))
        return self._loss(z[:b].float(), z[b:].float())

    def _kmeans_metrics(self, record: dict[str, Any]) -> None:
        from hiclust.baselines import BASELINES

        feats = self._batched_eval(self._embed, self._data.x).numpy()
        record.update(self._label_metrics(self._data.labels, BASELINES["kmeans"](feats, self.n_clusters).labels))

    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        h = self.model_(batch)[0]
        return F.normalize(h, dim=1) if self.normalize else h

    def _proba(self, batch: torch.Tensor) -> torch.Tensor:
        return student_t_assignment(self._embed(batch).float(), self.cluster_centers_.to(batch.device))

    def _finish_fit(self, data: PreparedData) -> None:
        from hiclust.baselines import agglomerative, kmeans

        feats = self._batched_eval(self._embed, data.x)
        f = feats.numpy()
        if self.clusterer == "agglomerative":
            result = agglomerative(f, self.n_clusters, linkage=self.linkage)
        else:
            result = kmeans(f, self.n_clusters, random_state=self._seed())
        self.labels_ = result.labels
        self.hierarchy_ = result.hierarchy
        self.point_linkage_ = result.linkage
        labels = torch.from_numpy(result.labels)
        counts = torch.bincount(labels, minlength=self.n_clusters).clamp_min(1).unsqueeze(1).float()
        self.cluster_centers_ = torch.zeros(self.n_clusters, feats.shape[1]).index_add_(0, labels, feats) / counts

    @property
    def linkage_(self) -> np.ndarray:
        """The tree over the K clusters as a SciPy linkage (agglomerative only)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        if self.hierarchy_ is None:
            raise AttributeError("clusterer='kmeans' builds no hierarchy; use clusterer='agglomerative'")
        return self.hierarchy_.to_linkage()

    def _extra_state(self) -> dict[str, Any]:
        if not hasattr(self, "labels_"):
            return {}  # a training checkpoint written before clustering
        return {
            "labels": torch.from_numpy(np.asarray(self.labels_)),
            "cluster_centers": self.cluster_centers_,
            "tree_linkage": None if self.hierarchy_ is None else torch.from_numpy(self.hierarchy_.to_linkage()),
        }

    def _load_extra_state(self, state: dict[str, Any], path: Any) -> None:
        from hiclust.hierarchy import Hierarchy

        if state.get("labels") is None:
            return
        self.labels_ = state["labels"].numpy()
        self.cluster_centers_ = state["cluster_centers"]
        self.point_linkage_ = None  # O(N²) to recompute; not stored
        tl = state.get("tree_linkage")
        if tl is None:
            self.hierarchy_ = None
        elif tl.shape[0] == 0:
            self.hierarchy_ = Hierarchy([[-1, -1]], leaf_of=self.labels_)
        else:
            self.hierarchy_ = Hierarchy.from_linkage(tl.numpy()).fit_points(self.labels_)
