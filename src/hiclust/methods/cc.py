"""CC: Contrastive Clustering (Li et al., AAAI 2021; docs/methods.md, "CC")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hiclust.losses.modules import CCLoss
from hiclust.methods.base import DeepClusterer, Phase, PreparedData, common
from hiclust.methods.params import Integral, Interval, Param, Real
from hiclust.nn import ClusterHead, ProjectionHead

__all__ = ["ContrastiveClustering", "CCNet"]


class CCNet(nn.Module):
    """Backbone f, instance head g_I (Linear→ReLU→Linear, L2-normalized) and cluster head g_C
    (Linear→ReLU→Linear→softmax over M clusters)."""

    def __init__(self, backbone: nn.Module, n_clusters: int, projection_dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.instance = ProjectionHead(backbone.feature_dim, hidden, projection_dim, batch_norm=False)
        self.cluster = ClusterHead(backbone.feature_dim, n_clusters, hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, ...) → (h (B, d), z (B, projection_dim) unit rows, y (B, M) softmax)."""
        h = self.backbone(x)
        return h, self.instance(h), self.cluster(h)


class _TrainForward(nn.Module):
    """(z, y) of a batch: what training calls and DDP wraps (h is not part of the loss)."""

    def __init__(self, net: CCNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, clusters: bool = True) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """(z, y); only z when ``clusters`` is False (the instance-only pass: the cluster head stays out
        of the graph, so DDP sees it as unused rather than waiting for its gradients)."""
        if not clusters:
            return self.net.instance(self.net.backbone(x))
        _, z, y = self.net(x)
        return z, y


class ContrastiveClustering(DeepClusterer):
    """Contrastive Clustering: instance- and cluster-level contrastive heads trained jointly.

    Loss per batch of two augmented views: L = NT-Xent(z^a, z^b; τ_I) + [NT-Xent over the 2M
    cluster columns of Y^a, Y^b; τ_C] − H(Y) (+ 2·log M, the constant the reference adds so that
    the entropy term is ≥ 0; it changes no gradient); see :class:`hiclust.losses.CCLoss`.
    Prediction: argmax of the cluster head on the unaugmented image. Under torchrun both
    contrastive terms see the gathered global batch.

    ``fit(X, instance_data=U)`` gives CC's STL-10 schedule: every epoch first passes over the
    images ``U`` (STL-10's 100k unlabeled) with the instance loss alone, then over ``X`` with both
    losses; the clusters are those of ``X``.

    {parameters}

    Attributes
    ----------
    model_ : CCNet
    labels_ : ndarray of shape (N,)
    history_ : list of dict
    device_ : torch.device
    input_shape_, image_size_ : the geometry the model was fitted on.
    """

    _LOG_NAME = "CC"
    _CHANNELS_LAST_ON_CPU = True
    _SUPPORTS_INSTANCE_DATA = True
    _params = common(
        "backbone", "epochs", "batch_size", "lr", "weight_decay", "projection_dim", "image_size", "augmentation",
        "eval_every", "device", "precision", "seed", "random_state", "verbose",
        n_clusters=Param(Interval(Integral, 2, None, closed="left"),
                         "M, the number of clusters (columns of the cluster head; at least 2, the cluster loss "
                         "contrasts clusters)."),
        instance_temperature=Param(Interval(Real, 0, None, closed="neither"), "τ_I of the instance loss."),
        cluster_temperature=Param(Interval(Real, 0, None, closed="neither"), "τ_C of the cluster loss."),
        entropy_weight=Param(Interval(Real, 0, None, closed="left"),
                             "Weight of −H(Y) (1 in CC; 0 removes the anti-collapse term)."),
        hidden_dim=Param(Interval(Integral, 1, None, closed="left"), "Width of both heads."),
    )

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
        augmentation: str | dict[str, Any] | nn.Module = "auto",
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
        self.instance_temperature = instance_temperature
        self.cluster_temperature = cluster_temperature
        self.entropy_weight = entropy_weight
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.image_size = image_size
        self.augmentation = augmentation
        self.eval_every = eval_every
        self.device = device
        self.precision = precision
        self.seed = seed
        self.random_state = random_state
        self.verbose = verbose

    def _build_model(self) -> CCNet:
        net = self._backbone_for(self.input_shape_, self.image_size_ or 0)
        return CCNet(net, self.n_clusters, self.projection_dim, self.hidden_dim)

    def _init_fit_state(self, data: PreparedData) -> None:
        self._loss = CCLoss(self.n_clusters, self.instance_temperature, self.cluster_temperature,
                            self.entropy_weight, gather_distributed=True)

    def _phases(self, data: PreparedData) -> list[Phase]:
        return [Phase("train", epochs=self.epochs, lr=self.lr)]

    def _train_module(self) -> nn.Module:
        return _TrainForward(self.model_)

    def _find_unused_parameters(self, phase: Phase, start_epoch: int) -> bool:
        return self._instance_x is not None  # the cluster head rests during the instance-only pass

    def _instance_step(self, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        b = batch.shape[0]
        with self._autocast():
            z = self._net(self._views(batch), clusters=False).float()
        instance = self._loss.instance(z[:b], z[b:])
        return {"loss": instance}

    def _training_step(self, phase: Phase, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        b = batch.shape[0]
        with self._autocast():
            z, y_soft = self._net(self._views(batch))
        z, y_soft = z.float(), y_soft.float()
        return self._loss(z[:b], z[b:], y_soft[:b], y_soft[b:])

    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model_(batch)[0]

    def _proba(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model_(batch)[2]

    def _extra_state(self) -> dict[str, Any]:
        return {}
