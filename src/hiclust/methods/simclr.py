"""SimCLR features + a classical clusterer: the "SimCLR features + agglomerative" baseline of
the CoHiClust paper (SPEC.md §5, its Table 5).

The network is CoHiClust's backbone f and projection head g (same builders, same
augmentations) trained with NT-Xent alone — CoHiClust with the tree terms switched off — and the
clusters come afterwards from agglomerative clustering (or k-means) of the backbone features h.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from hiclust.losses import nt_xent
from hiclust.losses.dec import student_t_assignment
from hiclust.methods.base import NetEstimatorMixin, prepare_data
from hiclust.nn import BACKBONES, ProjectionHead
from hiclust.train import train_loop

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


class SimCLR(NetEstimatorMixin, ClusterMixin, BaseEstimator):
    """Contrastive representation (NT-Xent only) followed by a classical clustering of h.

    Parameters:
        n_clusters: K.
        backbone, epochs, batch_size, lr, weight_decay, temperature, projection_dim, image_size,
            augmentation, device, seed, verbose: as in :class:`hiclust.CoHiClust` (whose
            pre-training phase this is).
        clusterer: "agglomerative" (SciPy linkage; O(N²) memory) or "kmeans".
        linkage: "ward", "average", "complete" or "single" (agglomerative only).
        normalize: L2-normalize h before clustering (contrastive features live on a sphere).
        eval_every: with labels, record k-means ACC/NMI/ARI of h in ``history_`` every this many epochs.

    Fitted attributes: model_, labels_ (the clusterer's labels of the training data),
    cluster_centers_ (K, d) mean feature of each cluster, hierarchy_ (``Hierarchy`` over the K
    clusters for "agglomerative", else None), point_linkage_ (full linkage over the training
    points, agglomerative only), history_, device_.

    ``predict``/``predict_proba`` on new data use the nearest cluster centre (Student's t
    kernel, ν = 1); on the training data ``labels_`` is the clusterer's own answer.
    """

    _LOG_NAME = "SimCLR"

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
        augmentation: str | nn.Module = "auto",
        clusterer: str = "agglomerative",
        linkage: str = "ward",
        normalize: bool = True,
        eval_every: int = 10,
        device: str = "auto",
        seed: int = 0,
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
        self.seed = seed
        self.verbose = verbose

    def _validate(self, n_samples: int) -> None:
        k = self.n_clusters
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {k!r}")
        if k > n_samples:
            raise ValueError(f"n_clusters={k} is larger than the number of samples ({n_samples}); lower n_clusters")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 2 or self.batch_size > n_samples:
            raise ValueError(f"batch_size must be in 2..{n_samples} (the number of samples), got {self.batch_size}")
        if self.temperature <= 0 or self.lr <= 0:
            raise ValueError("temperature and lr must be > 0")
        if self.clusterer not in CLUSTERERS:
            raise ValueError(f"clusterer must be one of {', '.join(CLUSTERERS)}, got {self.clusterer!r}")
        if self.linkage not in ("ward", "average", "complete", "single"):
            raise ValueError(f"linkage must be 'ward', 'average', 'complete' or 'single', got {self.linkage!r}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if isinstance(self.backbone, str) and self.backbone not in ("auto", *BACKBONES):
            raise ValueError(f"unknown backbone {self.backbone!r}; choose 'auto' or one of {', '.join(BACKBONES)}")

    def check_params(self, X: Any, y: Any = None) -> None:
        """Validates the hyperparameters against the data without training (raises ValueError)."""
        self._validate(prepare_data(X, y).x.shape[0])

    def _build_model(self) -> SimCLRNet:
        return SimCLRNet(self._backbone_for(self.input_shape_, self.image_size_ or 0), self.projection_dim)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self._batched_eval(lambda b: self.model_(b)[0], x)
        return F.normalize(h, dim=1) if self.normalize else h

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 10,
        resume: bool = False,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> "SimCLR":
        """Trains the representation with NT-Xent, then clusters h (see the class docstring)."""
        from hiclust.baselines import BASELINES

        data = prepare_data(X, y)
        self._validate(data.x.shape[0])
        for stale in ("labels_", "hierarchy_", "point_linkage_", "cluster_centers_"):  # from an earlier fit
            self.__dict__.pop(stale, None)
        x_dev, augment, optimizer, gens, start_epoch = self._start_augmented_fit(data, checkpoint, resume)
        use_amp = self.device_.type == "cuda"

        def step(batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
            b = batch.shape[0]
            views = torch.cat((augment(batch, generator=gens["augment"]), augment(batch, generator=gens["augment"])))
            with torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=use_amp):
                _, z = self.model_(views)
            loss = nt_xent(z[:b].float(), z[b:].float(), self.temperature)
            return {"loss": loss, "nt_xent": loss}

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            record: dict[str, Any] = {"epoch": epoch + 1, **logs}
            last = epoch + 1 == self.epochs
            if data.labels is not None and ((epoch + 1) % self.eval_every == 0 or last):
                feats = self._features(data.x).numpy()
                record.update(self._label_metrics(data.labels, BASELINES["kmeans"](feats, self.n_clusters).labels))
            self._emit(record, callback)
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or last):
                self._save_training(checkpoint, optimizer, gens, {"epoch": epoch + 1})

        if start_epoch < self.epochs:
            train_loop(
                self.model_, step, x_dev, optimizer=optimizer, epochs=self.epochs, batch_size=self.batch_size,
                shuffle_generator=gens["shuffle"], start_epoch=start_epoch, on_epoch_end=on_epoch_end,
                progress=self.verbose, desc="SimCLR",
            )
        self._cluster(self._features(data.x))
        return self

    def _cluster(self, feats: torch.Tensor) -> None:
        from hiclust.baselines import agglomerative, kmeans

        f = feats.numpy()
        if self.clusterer == "agglomerative":
            result = agglomerative(f, self.n_clusters, linkage=self.linkage)
        else:
            result = kmeans(f, self.n_clusters, random_state=self.seed)
        self.labels_ = result.labels
        self.hierarchy_ = result.hierarchy
        self.point_linkage_ = result.linkage
        labels = torch.from_numpy(result.labels)
        counts = torch.bincount(labels, minlength=self.n_clusters).clamp_min(1).unsqueeze(1).float()
        self.cluster_centers_ = torch.zeros(self.n_clusters, feats.shape[1]).index_add_(0, labels, feats) / counts

    # ----------------------------------------------------------------------------- inference
    @property
    def linkage_(self) -> np.ndarray:
        """The tree over the K clusters as a SciPy linkage (agglomerative only)."""
        self._check_is_fitted()
        if self.hierarchy_ is None:
            raise AttributeError("clusterer='kmeans' builds no hierarchy; use clusterer='agglomerative'")
        return self.hierarchy_.to_linkage()

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) Student's t (ν = 1) soft assignment of h to the cluster centres."""
        feats = self._features(self._prepare_like_fit(X))
        return student_t_assignment(feats, self.cluster_centers_).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """(N,) nearest cluster centre of h."""
        return self.predict_proba(X).argmax(1)

    def transform(self, X: Any) -> np.ndarray:
        """(N, d) backbone features h (L2-normalized if ``normalize``)."""
        return self._features(self._prepare_like_fit(X)).numpy()

    # ----------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        if not hasattr(self, "labels_"):
            return {}
        return {
            "labels": torch.from_numpy(np.asarray(self.labels_)),
            "cluster_centers": self.cluster_centers_,
            "tree_linkage": None if self.hierarchy_ is None else torch.from_numpy(self.hierarchy_.to_linkage()),
        }

    def _load_state(self, state: dict[str, Any], path: Any) -> None:
        from hiclust.hierarchy import Hierarchy

        if state.get("labels") is None:
            return  # a training checkpoint written before clustering
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
