"""CC: Contrastive Clustering (Li et al., AAAI 2021; SPEC.md §2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from hiclust.losses import cluster_contrastive_loss, cluster_entropy, nt_xent
from hiclust.methods.base import NetEstimatorMixin, prepare_data
from hiclust.nn import BACKBONES, ClusterHead, ProjectionHead
from hiclust.train import train_loop

__all__ = ["ContrastiveClustering", "CCNet"]


# ------------------------------------------------------------------------------------------------
# CC
# ------------------------------------------------------------------------------------------------
class CCNet(nn.Module):
    """Backbone f, instance head g_I (Linear→ReLU→Linear, L2-normalized) and cluster head g_C
    (Linear→ReLU→Linear→softmax over M clusters), SPEC.md §2."""

    def __init__(self, backbone: nn.Module, n_clusters: int, projection_dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.instance = ProjectionHead(backbone.feature_dim, hidden, projection_dim, batch_norm=False)
        self.cluster = ClusterHead(backbone.feature_dim, n_clusters, hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, ...) → (h (B, d), z (B, projection_dim) unit rows, y (B, M) softmax)."""
        h = self.backbone(x)
        return h, self.instance(h), self.cluster(h)


class ContrastiveClustering(NetEstimatorMixin, ClusterMixin, BaseEstimator):
    """Contrastive Clustering: instance- and cluster-level contrastive heads trained jointly.

    Loss per batch of two augmented views (SPEC.md §2):
    L = NT-Xent(z^a, z^b; τ_I) + [NT-Xent over the 2M cluster columns of Y^a, Y^b; τ_C] − H(Y)
    (+ 2·log M, the constant the reference adds so that the entropy term is ≥ 0; it changes no
    gradient). Prediction: argmax of the cluster head on the unaugmented image.

    Parameters:
        n_clusters: M, the number of clusters (columns of the cluster head).
        backbone: "auto" (small CNN for ≤ 28 px grayscale, else ResNet18), one of
            ``hiclust.nn.BACKBONES`` (the reference uses "resnet34"), or an ``nn.Module`` with a
            ``feature_dim`` attribute. Feature matrices use an MLP.
        epochs, batch_size, lr, weight_decay: Adam optimisation (reference: 1000, 256, 3e-4, 0).
        instance_temperature: τ_I (0.5). cluster_temperature: τ_C (1.0).
        entropy_weight: weight of −H(Y) (1 in CC; 0 removes the anti-collapse term).
        projection_dim: size of the instance head's output (128). hidden_dim: width of both heads (512).
        image_size: side of the augmented crops; default the images' own size.
        augmentation: "auto" (by dataset, as CoHiClust), a preset name (e.g. "cc", the reference
            recipe), or a module mapping a batch to an augmented float batch.
        eval_every: with labels, record ACC/NMI/ARI in ``history_`` every this many epochs.
        device, seed, verbose: as in :class:`hiclust.CoHiClust`.

    Fitted attributes: model_, labels_ (N,), history_, device_, input_shape_, image_size_.
    """

    _LOG_NAME = "CC"

    def __init__(
        self,
        n_clusters: int = 10,
        backbone: str | nn.Module = "auto",
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        instance_temperature: float = 0.5,
        cluster_temperature: float = 1.0,
        entropy_weight: float = 1.0,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        image_size: int | None = None,
        augmentation: str | nn.Module = "auto",
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
        self.instance_temperature = instance_temperature
        self.cluster_temperature = cluster_temperature
        self.entropy_weight = entropy_weight
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.image_size = image_size
        self.augmentation = augmentation
        self.eval_every = eval_every
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ----------------------------------------------------------------------------- validation
    def _validate(self, n_samples: int) -> None:
        k = self.n_clusters
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"n_clusters must be an integer >= 2 (the cluster loss contrasts clusters), got {k!r}")
        if k > n_samples:
            raise ValueError(f"n_clusters={k} is larger than the number of samples ({n_samples}); lower n_clusters")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (contrastive losses need pairs), got {self.batch_size}")
        if self.batch_size > n_samples:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the dataset ({n_samples} samples); use batch_size <= {n_samples}"
            )
        for name in ("instance_temperature", "cluster_temperature", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.entropy_weight < 0 or self.weight_decay < 0:
            raise ValueError("entropy_weight and weight_decay must be >= 0")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if isinstance(self.backbone, str) and self.backbone not in ("auto", *BACKBONES):
            raise ValueError(f"unknown backbone {self.backbone!r}; choose 'auto' or one of {', '.join(BACKBONES)}")

    def check_params(self, X: Any, y: Any = None) -> None:
        """Validates the hyperparameters against the data without training (raises ValueError)."""
        self._validate(prepare_data(X, y).x.shape[0])

    def _build_model(self) -> CCNet:
        net = self._backbone_for(self.input_shape_, self.image_size_ or 0)
        return CCNet(net, self.n_clusters, self.projection_dim, self.hidden_dim)

    # ----------------------------------------------------------------------------- fitting
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 10,
        resume: bool = False,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> "ContrastiveClustering":
        """Trains on X (an ImageDataset, images or a feature matrix; see ``prepare_data``).

        Args:
            y: optional labels, used only to record metrics in ``history_``.
            checkpoint: file written atomically every ``checkpoint_every`` epochs and at the end.
            resume: continue from ``checkpoint`` if it exists (same configuration required).
            callback: called with each epoch's history record.
        """
        data = prepare_data(X, y)
        self._validate(data.x.shape[0])
        x_dev, augment, optimizer, gens, start_epoch = self._start_augmented_fit(data, checkpoint, resume)
        log_m = math.log(self.n_clusters)
        use_amp = self.device_.type == "cuda"

        def step(batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
            b = batch.shape[0]
            views = torch.cat((augment(batch, generator=gens["augment"]), augment(batch, generator=gens["augment"])))
            with torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=use_amp):
                _, z, y_soft = self.model_(views)
            z, y_soft = z.float(), y_soft.float()
            terms = {
                "instance": nt_xent(z[:b], z[b:], self.instance_temperature),
                "cluster": cluster_contrastive_loss(y_soft[:b], y_soft[b:], self.cluster_temperature),
                "entropy": cluster_entropy(y_soft[:b], y_soft[b:]),
            }
            terms["loss"] = terms["instance"] + terms["cluster"] + self.entropy_weight * (2 * log_m - terms["entropy"])
            return terms

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            record: dict[str, Any] = {"epoch": epoch + 1, **logs}
            last = epoch + 1 == self.epochs
            if data.labels is not None and ((epoch + 1) % self.eval_every == 0 or last):
                record.update(self._label_metrics(data.labels, self._predict_prepared(data.x)))
            self._emit(record, callback)
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or last):
                self._save_training(checkpoint, optimizer, gens, {"epoch": epoch + 1})

        if start_epoch < self.epochs:
            train_loop(
                self.model_, step, x_dev, optimizer=optimizer, epochs=self.epochs, batch_size=self.batch_size,
                shuffle_generator=gens["shuffle"], start_epoch=start_epoch, on_epoch_end=on_epoch_end,
                progress=self.verbose, desc="CC",
            )
        self.labels_ = self._predict_prepared(data.x)
        return self

    # ----------------------------------------------------------------------------- inference
    def _proba_prepared(self, x: torch.Tensor) -> torch.Tensor:
        return self._batched_eval(lambda b: self.model_(b)[2], x)

    def _predict_prepared(self, x: torch.Tensor) -> np.ndarray:
        return self._proba_prepared(x).argmax(1).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, M) cluster-head softmax."""
        return self._proba_prepared(self._prepare_like_fit(X)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """(N,) cluster ids 0..M−1 (argmax of the cluster head)."""
        return self._predict_prepared(self._prepare_like_fit(X))

    def transform(self, X: Any) -> np.ndarray:
        """(N, d) backbone features h."""
        x = self._prepare_like_fit(X)
        return self._batched_eval(lambda b: self.model_(b)[0], x).numpy()
