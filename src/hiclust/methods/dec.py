"""DEC and IDEC (docs/methods.md, "DEC and IDEC"), with the lecture's other loss
components available as parameters.

Training has two phases:

1. **Pre-training** (``pretrain_epochs`` epochs, the generic ``train_loop``): the autoencoder
   minimises the non-clustering loss L_n = reconstruction MSE (+ ``locality_weight``·locality
   + ``self_augmentation_weight``·self-augmentation). ``corruption`` > 0 makes it a denoising
   autoencoder (masking noise), as in the original DEC.
2. **Clustering** (at most ``epochs`` epochs' worth of mini-batch steps): centroids μ are
   initialised by k-means on z (``n_init`` = 20 restarts, best inertia); then, every
   ``update_interval`` steps, Q (Student's t) is computed on the whole data set, the target P is
   refreshed from it, and training stops as soon as fewer than a fraction ``tol`` of the points
   changed cluster since the previous refresh. Each block of ``update_interval`` steps is one
   call of ``train_loop`` (one "epoch" of it over a sampled index list), so the loop, its
   non-finite checks and progress display are shared with the other methods. This phase is a
   custom :class:`~hiclust.methods.base.Phase` of the shared lifecycle; everything else
   (validation, inputs, checkpoints, resume, predict) is the base's.

   Loss per step: w_c·L_c + w_n·L_n with L_c = KL(P‖Q) (+ ``kmeans_weight``·k-means loss
   + ``balance_weight``·KL(G‖prior)) and (w_c, w_n) from ``schedule``:
   "pretrain_finetune" (DEC: (1, 0), the decoder is dropped), "joint" (fixed α: (α, 1 − α);
   IDEC's default is L_r + γ·KL, i.e. (γ, 1)), "rising" (α grows linearly from ``alpha_start``
   to ``alpha`` (default 1) over the clustering phase).

Inputs: images are fed as pixels in [0, 1] (flattened for the MLP autoencoder), feature
matrices standardized. ``augmentation`` (off by default) trains on augmented images in both
phases while P is always computed on the clean images (the DEC-DA recipe).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hiclust.losses.dec import (
    ALPHA_SCHEDULES,
    alpha_schedule,
    knn_graph,
    locality_loss,
    self_augmentation_loss,
    student_t_assignment,
    target_distribution,
)
from hiclust.losses.modules import DECLoss
from hiclust.methods.base import DeepClusterer, Phase, PreparedData, common
from hiclust.methods.params import Integral, Interval, Param, Real, StrOptions
from hiclust.train import train_loop

__all__ = ["DEC", "IDEC", "DECNet", "MLPAutoEncoder", "ConvAutoEncoder", "build_autoencoder", "kmeans_metrics", "AUTOENCODER_PARAMS"]

AUTOENCODERS = ("auto", "mlp", "conv")


# ------------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------------
class MLPAutoEncoder(nn.Module):
    """DEC's autoencoder d–500–500–2000–10: ReLU hidden layers, linear embedding and output.

    encode: (B, ...) → (B, embedding_dim); forward: → (z, x̂ with the input's shape).
    """

    def __init__(self, in_features: int, hidden_dims: tuple[int, ...] = (500, 500, 2000), embedding_dim: int = 10) -> None:
        super().__init__()
        dims = [in_features, *hidden_dims]
        enc: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            enc += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*enc, nn.Linear(dims[-1], embedding_dim))
        rdims = [embedding_dim, *reversed(hidden_dims)]
        dec: list[nn.Module] = []
        for a, b in zip(rdims[:-1], rdims[1:]):
            dec += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.decoder = nn.Sequential(*dec, nn.Linear(rdims[-1], in_features))
        self.embedding_dim = embedding_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decoder(z).view_as(x)


class ConvAutoEncoder(nn.Module):
    """Convolutional autoencoder for images (the DCEC layout): three stride-2 convolutions
    (5×5, 5×5, 3×3; ``channels``), a linear embedding, and the mirror image with transposed
    convolutions. (B, C, S, S) → z (B, embedding_dim), x̂ (B, C, S, S). Any S ≥ 4."""

    def __init__(self, in_channels: int, image_size: int, channels: tuple[int, ...] = (32, 64, 128),
                 embedding_dim: int = 10) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"the convolutional autoencoder needs images of at least 4 px, got {image_size}")
        kernels = [5, 5, 3, 3, 3, 3][: len(channels)]
        sizes = [image_size]
        for _ in channels:
            sizes.append((sizes[-1] + 1) // 2)  # 'same' padding, stride 2: ceil(s/2)
        enc: list[nn.Module] = []
        c = in_channels
        for k, ch in zip(kernels, channels):
            enc += [nn.Conv2d(c, ch, k, stride=2, padding=k // 2), nn.ReLU(inplace=True)]
            c = ch
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c * sizes[-1] ** 2, embedding_dim))
        dec: list[nn.Module] = [nn.Linear(embedding_dim, c * sizes[-1] ** 2), nn.ReLU(inplace=True),
                                nn.Unflatten(1, (c, sizes[-1], sizes[-1]))]
        outs = [*reversed(channels[:-1]), in_channels]
        for i, (k, ch) in enumerate(zip(reversed(kernels), outs)):
            s_in, s_out = sizes[-1 - i], sizes[-2 - i]
            # a transposed conv maps s → 2s − 1 + output_padding; pick the padding that lands on s_out
            dec.append(nn.ConvTranspose2d(c, ch, k, stride=2, padding=k // 2, output_padding=s_out - 2 * s_in + 1))
            if i < len(channels) - 1:
                dec.append(nn.ReLU(inplace=True))
            c = ch
        self.decoder = nn.Sequential(*dec)
        self.embedding_dim = embedding_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decoder(z)


class DECNet(nn.Module):
    """An autoencoder plus the K cluster centres μ (a parameter, trained in the clustering phase)."""

    def __init__(self, autoencoder: nn.Module, n_clusters: int) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.centroids = nn.Parameter(torch.zeros(n_clusters, autoencoder.embedding_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ...) → (z (B, embedding_dim), x̂ (B, ...))."""
        return self.autoencoder(x)


def build_autoencoder(est: Any) -> nn.Module:
    """The autoencoder an estimator's parameters describe (``backbone`` "mlp"/"auto" or "conv",
    ``hidden_dims``, ``conv_channels``, ``embedding_dim``) for its fitted input geometry."""
    shape = est.input_shape_
    if est.backbone == "conv":
        if len(est.conv_channels) > 6:
            raise ValueError(f"conv_channels may hold at most 6 layers, got {len(est.conv_channels)}")
        return ConvAutoEncoder(shape[0], est.image_size_, tuple(est.conv_channels), est.embedding_dim)
    return MLPAutoEncoder(int(np.prod(shape)), tuple(int(d) for d in est.hidden_dims), est.embedding_dim)


def kmeans_metrics(est: Any, record: dict[str, Any]) -> None:
    """Adds kmeans_acc/nmi/ari of k-means (3 restarts) on the embedding of the training data to a
    pre-training record: how clusterable the autoencoder's space is so far."""
    from sklearn.cluster import KMeans

    z = est._batched_eval(est._embed, est._data.x).numpy()
    pred = KMeans(est.n_clusters, n_init=3, random_state=est._seed()).fit_predict(z)
    record.update({f"kmeans_{k}": v for k, v in est._label_metrics(est._data.labels, pred).items()})


# ------------------------------------------------------------------------------------------------
# DEC
# ------------------------------------------------------------------------------------------------
# The autoencoder and its pre-training, shared by every autoencoder method (DEC, IDEC, DeepECT).
AUTOENCODER_PARAMS: dict[str, Param] = dict(
    backbone=Param(StrOptions(set(AUTOENCODERS)),
                   "The autoencoder: 'mlp' (d–hidden_dims–embedding_dim, DEC's; 'auto' is the same) or 'conv' "
                   "(ConvAutoEncoder, images only)."),
    hidden_dims=Param([list, tuple], "Widths of the MLP autoencoder's hidden layers.", flag=""),
    embedding_dim=Param(Interval(Integral, 1, None, closed="left"), "Size of the embedding z."),
    conv_channels=Param([list, tuple], "Widths of the convolutional autoencoder (at most 6 layers).", flag=""),
    pretrain_epochs=Param(Interval(Integral, 0, None, closed="left"), "Epochs of autoencoder pre-training."),
    pretrain_lr=Param(Interval(Real, 0, None, closed="neither"), "Adam learning rate of the pre-training."),
)

_DEC_PARAMS = common(
    "n_clusters", "batch_size", "weight_decay", "device", "seed", "random_state", "verbose",
    **AUTOENCODER_PARAMS,
    pretrained=Param([str, None],
                     "Path of a saved DEC/IDEC model or checkpoint with the same autoencoder (backbone, widths, "
                     "embedding_dim, input shape) used instead of pre-training; pretrain_epochs is then ignored."),
    epochs=Param(Interval(Integral, 0, None, closed="left"),
                 "Cap of the clustering phase in epochs (steps = epochs · ⌊N / batch_size⌋); 0 stops after the "
                 "k-means initialisation ('AE + k-means').", resume="free"),
    lr=Param(Interval(Real, 0, None, closed="neither"), "Adam learning rate of the clustering phase."),
    corruption=Param(Interval(Real, 0, 1, closed="left"),
                     "Fraction of input values zeroed during pre-training (denoising autoencoder)."),
    augmentation=Param([str, dict, nn.Module, None],
                       "None (off), 'auto' (by dataset), a preset name, a dict {'preset': name, setting: value} "
                       "or a module: train on augmented images "
                       "(the target P still comes from clean images)."),
    clustering_augmentation=Param("boolean",
                                  "Whether the clustering phase also trains on augmented images (DEC-DA); False "
                                  "uses augmentation for pre-training only.", flag=""),
    n_init=Param(Interval(Integral, 1, None, closed="left"), "k-means restarts for the centroids."),
    nu=Param(Interval(Real, 0, None, closed="neither"), "ν of the Student's t kernel."),
    update_interval=Param(Interval(Integral, 1, None, closed="left"), "Steps between refreshes of the target P."),
    tol=Param(Interval(Real, 0, 1, closed="both"),
              "Stop when the fraction of points that changed cluster between two refreshes is below this; 0 "
              "never stops early."),
    schedule=Param(StrOptions(set(ALPHA_SCHEDULES)),
                   "How L_c and L_n are combined: 'pretrain_finetune' (DEC), 'joint' (fixed α), 'rising' (α "
                   "grows from alpha_start to alpha)."),
    alpha=Param([Interval(Real, 0, 1, closed="both"), None], "α of the 'joint' / 'rising' schedules."),
    alpha_start=Param(Interval(Real, 0, 1, closed="both"), "Starting α of the 'rising' schedule."),
    kmeans_weight=Param(Interval(Real, 0, None, closed="left"), "Weight of the k-means loss in L_c."),
    balance_weight=Param(Interval(Real, 0, None, closed="left"), "Weight of KL(G‖prior) in L_c."),
    balance_prior=Param(StrOptions({"uniform", "zipf"}), "Prior of the balance term."),
    zipf_s=Param(Interval(Real, 0, None, closed="left"), "Exponent of the Zipf prior."),
    locality_weight=Param(Interval(Real, 0, None, closed="left"),
                          "Weight of the locality-preserving loss over input-space neighbours, in L_n."),
    n_neighbors=Param(Interval(Integral, 1, None, closed="left"), "Neighbours of the locality loss."),
    self_augmentation_weight=Param(Interval(Real, 0, None, closed="left"),
                                   "Weight of −cos(z(x), z(T(x))) in L_n (needs augmentation)."),
    eval_every=Param(Interval(Integral, 1, None, closed="left"),
                     "With labels, k-means ACC/NMI/ARI of z every this many pre-training epochs (the clustering "
                     "phase records them at every refresh).", resume="free"),
)


class DEC(DeepClusterer):
    """Deep Embedded Clustering (Xie et al. 2016) and its lecture variants (see the module docstring).

    {parameters}

    Attributes
    ----------
    model_ : DECNet
    labels_ : ndarray of shape (N,)
    cluster_centers_ : ndarray of shape (K, embedding_dim)
    n_iter_ : int
        Clustering steps taken.
    converged_ : bool
        Stopped by ``tol``.
    init_labels_ : ndarray of shape (N,)
        k-means labels before the clustering phase.
    history_ : list of dict
        Records with "phase": "pretrain" | "pretrained" | "init" | "cluster".
    device_ : torch.device
    """

    _LOG_NAME = "DEC"
    _EXTRA_GENERATORS = ("sample",)
    _SUPPORTS_DISTRIBUTED = False  # the target P and the k-means initialisation are whole-data steps
    _params = _DEC_PARAMS
    _ARCHITECTURE = ("backbone", "hidden_dims", "embedding_dim", "conv_channels")

    def __init__(
        self,
        n_clusters: int = 10,
        backbone: str = "mlp",
        hidden_dims: tuple[int, ...] = (500, 500, 2000),
        embedding_dim: int = 10,
        conv_channels: tuple[int, ...] = (32, 64, 128),
        pretrain_epochs: int = 200,
        pretrain_lr: float = 1e-3,
        pretrained: str | None = None,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        corruption: float = 0.0,
        augmentation: str | dict[str, Any] | nn.Module | None = None,
        clustering_augmentation: bool = True,
        n_init: int = 20,
        nu: float = 1.0,
        update_interval: int = 140,
        tol: float = 0.001,
        schedule: str = "pretrain_finetune",
        alpha: float | None = None,
        alpha_start: float = 0.0,
        kmeans_weight: float = 0.0,
        balance_weight: float = 0.0,
        balance_prior: str = "uniform",
        zipf_s: float = 1.0,
        locality_weight: float = 0.0,
        n_neighbors: int = 5,
        self_augmentation_weight: float = 0.0,
        eval_every: int = 10,
        device: str = "auto",
        seed: int = 0,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.hidden_dims = hidden_dims
        self.embedding_dim = embedding_dim
        self.conv_channels = conv_channels
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.pretrained = pretrained
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.corruption = corruption
        self.augmentation = augmentation
        self.clustering_augmentation = clustering_augmentation
        self.n_init = n_init
        self.nu = nu
        self.update_interval = update_interval
        self.tol = tol
        self.schedule = schedule
        self.alpha = alpha
        self.alpha_start = alpha_start
        self.kmeans_weight = kmeans_weight
        self.balance_weight = balance_weight
        self.balance_prior = balance_prior
        self.zipf_s = zipf_s
        self.locality_weight = locality_weight
        self.n_neighbors = n_neighbors
        self.self_augmentation_weight = self_augmentation_weight
        self.eval_every = eval_every
        self.device = device
        self.seed = seed
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- validation
    def _check_params_vs_input(self, data: PreparedData) -> None:
        super()._check_params_vs_input(data)
        n = data.x.shape[0]
        if self.backbone == "conv" and not data.is_image:
            raise ValueError("backbone='conv' needs images; feature matrices use backbone='mlp'")
        dims = self.conv_channels if self.backbone == "conv" else self.hidden_dims
        if len(dims) < 1 or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
            raise ValueError("hidden_dims/conv_channels must be non-empty lists of positive integer widths")
        if self.backbone == "conv" and len(dims) > 6:
            raise ValueError(f"conv_channels may hold at most 6 layers, got {len(dims)}")
        if self.alpha is not None and self.schedule == "pretrain_finetune":
            raise ValueError("alpha is used by schedule='joint' or 'rising' only; 'pretrain_finetune' fixes α = 1")
        if self.locality_weight > 0 and not self.n_neighbors < n:
            raise ValueError(f"n_neighbors must be in 1..{n - 1}, got {self.n_neighbors}")
        if self.self_augmentation_weight > 0 and self.augmentation is None:
            raise ValueError("self_augmentation_weight > 0 needs augmentation (e.g. augmentation='auto')")
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            raise FileNotFoundError(f"pretrained={self.pretrained!r}: no such file (a model saved by DEC/IDEC.save)")

    def _loss_weights(self, progress: float) -> tuple[float, float]:
        """(w_c, w_n) of the clustering and non-clustering losses; progress in [0, 1] of the
        clustering phase."""
        if self.schedule == "rising":
            end = 1.0 if self.alpha is None else self.alpha
            a = alpha_schedule("rising", progress, alpha_start=self.alpha_start, alpha_end=end)
        else:
            a = alpha_schedule(self.schedule, progress, alpha=0.5 if self.alpha is None else self.alpha)
        return a, 1.0 - a

    def _build_model(self) -> DECNet:
        return DECNet(build_autoencoder(self), self.n_clusters)

    # ----------------------------------------------------------------------------- training
    def _init_fit_state(self, data: PreparedData) -> None:
        self.n_iter_ = 0
        self.converged_ = False
        self.init_labels_ = None
        self._loss = DECLoss(self.nu, self.kmeans_weight, self.balance_weight, self.balance_prior, self.zipf_s)
        self._neighbors = None

    def _phases(self, data: PreparedData) -> list[Phase]:
        if self.locality_weight > 0 and self._neighbors is None:
            flat = self._batched_eval(lambda b: b.flatten(1), data.x)  # the model's input space
            nb_idx, nb_w = knn_graph(flat, self.n_neighbors)
            self._neighbors = (nb_idx.to(self.device_), nb_w.to(self.device_))
        pretrain = Phase("pretrain", epochs=self.pretrain_epochs, lr=self.pretrain_lr, record_phase=True,
                         checkpoint_last=False, evaluate=lambda record: kmeans_metrics(self, record))
        if self.pretrained is not None:
            pretrain.run = lambda progress, opt_state: self._load_pretrained(self.pretrained)
        return [pretrain, Phase("cluster", lr=self.lr, run=self._cluster_phase)]

    def _phase_data(self, phase: Phase) -> torch.Tensor:
        return torch.arange(self._x.shape[0], device=self.device_)  # DEC's steps index the data

    def _model_input(self, idx: torch.Tensor) -> torch.Tensor:
        # Images are stored as uint8 and converted per batch; features are already standardized.
        rows = self._x[idx].to(self.device_)  # streamed data (DiskRows) is read on the CPU
        return self._eval_input(rows) if self._x.ndim == 4 else rows

    def _training_input(self, idx: torch.Tensor, clustering: bool = False) -> torch.Tensor:
        if self._augment is None or (clustering and not self.clustering_augmentation):
            return self._model_input(idx)
        return self._augment(self._x[idx].to(self.device_), generator=self._generators["augment"])

    def _non_clustering(self, idx: torch.Tensor, x_in: torch.Tensor, z: torch.Tensor, x_hat: torch.Tensor,
                        terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_n of a batch: reconstruction (+ locality, self-augmentation)."""
        terms["reconstruction"] = F.mse_loss(x_hat, x_in)
        total = terms["reconstruction"]
        if self._neighbors is not None:
            nb = self._neighbors[0][idx]  # (B, k)
            z_nb = self.model_.encode(self._model_input(nb.flatten())).view(nb.shape[0], nb.shape[1], -1)
            terms["locality"] = locality_loss(z, z_nb, self._neighbors[1][idx])
            total = total + self.locality_weight * terms["locality"]
        if self.self_augmentation_weight > 0:
            z_clean = self.model_.encode(self._model_input(idx))
            terms["self_augmentation"] = self_augmentation_loss(z_clean, z)
            total = total + self.self_augmentation_weight * terms["self_augmentation"]
        return total

    def _training_step(self, phase: Phase, idx: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """One pre-training step: the autoencoder's L_n on (corrupted) inputs."""
        x_in = self._training_input(idx)
        corrupted = x_in
        if self.corruption > 0:
            keep = torch.rand(x_in.shape, device=x_in.device, generator=self._generators["augment"]) >= self.corruption
            corrupted = x_in * keep
        z, x_hat = self.model_(corrupted)
        terms: dict[str, torch.Tensor] = {}
        terms["loss"] = self._non_clustering(idx, x_in, z, x_hat, terms)
        return terms

    def _load_pretrained(self, path: str | Path) -> None:
        """Copies the autoencoder weights of a saved DEC/IDEC (architecture checked)."""
        from hiclust.checkpoint import CheckpointError, load_checkpoint

        config, state = load_checkpoint(path)
        mine = self._config()
        diff = [k for k in self._ARCHITECTURE if config.get(k) != mine[k]]
        if list(state.get("input_shape", [])) != list(self.input_shape_) or diff or "model" not in state:
            raise CheckpointError(
                f"{path} does not hold an autoencoder for this model: it differs in "
                f"{', '.join(diff) or 'input shape'} (file: {[config.get(k) for k in diff] or state.get('input_shape')})"
            )
        weights = {k[len("autoencoder."):]: v for k, v in state["model"].items() if k.startswith("autoencoder.")}
        self.model_.autoencoder.load_state_dict(weights)
        pre = [h for h in state.get("history", []) if h.get("phase") == "pretrain"]
        self._emit({"phase": "pretrained", "path": str(path), "pretrain_epochs": len(pre),
                    "pretrain_seconds": float(sum(h.get("seconds", 0.0) for h in pre))})

    def _q(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) Student's t assignment of raw inputs x (CPU result)."""
        z = self._batched_eval(self._embed, x)
        return student_t_assignment(z, self.model_.centroids.detach().float().cpu(), self.nu)

    def _init_centroids(self) -> None:
        from sklearn.cluster import KMeans

        z = self._batched_eval(self._embed, self._data.x).double().numpy()
        km = KMeans(self.n_clusters, n_init=self.n_init, random_state=self._seed()).fit(z)
        with torch.no_grad():
            self.model_.centroids.copy_(torch.from_numpy(km.cluster_centers_).float())
        self.init_labels_ = km.labels_.astype(np.int64)
        record = {"phase": "init", "inertia": float(km.inertia_),
                  **self._label_metrics(self._data.labels, self.init_labels_)}
        self._emit(record)

    def _cluster_phase(self, progress: dict[str, Any], opt_state: Any) -> None:
        """k-means initialisation, then blocks of ``update_interval`` steps between refreshes of
        the target P until ``tol`` or ``epochs`` (module docstring)."""
        n = self._x.shape[0]
        total_steps = self.epochs * (n // self.batch_size)
        self._optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self._scheduler = None
        if "step" not in progress:  # fresh from pre-training
            self._init_centroids()
            progress = {"phase": "cluster", "chunk": 0, "step": 0, "prev_labels": torch.from_numpy(self.init_labels_)}
            if self._checkpoint is not None:
                self._save_training(progress)
        else:
            if opt_state is not None:
                self._optimizer.load_state_dict(opt_state)
            if progress.get("stopped") is not None:
                if progress["stopped"] != "epochs" or total_steps <= int(progress["step"]):
                    self.n_iter_ = int(progress["step"])
                    return  # finished, and not asked for more steps
                # A finished run resumed with more epochs: continue from its last refresh, whose
                # record is emitted again (without "stopped").
                if self.history_ and self.history_[-1].get("stopped") == "epochs":
                    self.history_.pop()
        step_count = int(progress["step"])
        chunk = int(progress["chunk"])
        prev = progress["prev_labels"].numpy()
        if self.init_labels_ is None:
            self.init_labels_ = prev
        target = torch.empty(0)
        chunk_logs: dict[str, float] = {}

        def cluster_step(idx: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
            nonlocal step_count
            w_c, w_n = self._loss_weights(step_count / max(total_steps, 1))
            step_count += 1
            x_in = self._training_input(idx, clustering=True)
            z, x_hat = self.model_(x_in)
            terms = self._loss(z, self.model_.centroids, target[idx])
            loss = w_c * terms.pop("loss")
            if w_n > 0:
                loss = loss + w_n * self._non_clustering(idx, x_in, z, x_hat, terms)
            terms["loss"] = loss
            return terms

        def chunk_end(epoch: int, logs: dict[str, float]) -> None:
            chunk_logs.clear()
            chunk_logs.update(logs)

        while True:
            # Refresh P from the whole data set; stop when few points changed cluster.
            q_all = self._q(self._data.x)
            labels = q_all.argmax(1).numpy()
            delta = float(np.mean(labels != prev))
            record: dict[str, Any] = {"phase": "cluster", "refresh": chunk, "step": step_count, "delta_label": delta}
            if chunk > 0:
                record.update(chunk_logs)
            record.update(self._label_metrics(self._data.labels, labels))
            before, prev = prev, labels
            stop_tol = chunk > 0 and delta < self.tol
            done = stop_tol or step_count >= total_steps
            if stop_tol:
                record["stopped"] = "tol"
                self.converged_ = True
            elif done:
                record["stopped"] = "epochs"
            self._emit(record)
            if done:
                break
            target = target_distribution(q_all).to(self.device_)
            steps = min(self.update_interval, total_steps - step_count)
            # One train_loop "epoch" = `steps` mini-batches over freshly permuted indices.
            reps = math.ceil(steps * self.batch_size / n)
            order = torch.cat([torch.randperm(n, generator=self._generators["sample"]) for _ in range(reps)])
            sampled = order[: steps * self.batch_size].to(self.device_)
            self._guard_non_finite(lambda: train_loop(
                self.model_, cluster_step, sampled, optimizer=self._optimizer, epochs=chunk + 1,
                batch_size=self.batch_size, shuffle_generator=self._generators["shuffle"], start_epoch=chunk,
                on_epoch_end=chunk_end, progress=self.verbose, desc=f"{self._LOG_NAME} clustering",
            ))
            chunk += 1
            if self._checkpoint is not None and chunk % self._checkpoint_every == 0:
                self._save_training({"phase": "cluster", "chunk": chunk, "step": step_count,
                                     "prev_labels": torch.from_numpy(prev)})
        self.n_iter_ = step_count
        if self._checkpoint is not None:
            # prev_labels of the refresh before the last one, so that a resume with more epochs
            # repeats the last refresh exactly (same delta) and goes on training.
            self._save_training({"phase": "cluster", "stopped": record["stopped"], "chunk": chunk,
                                 "step": step_count, "prev_labels": torch.from_numpy(before)})

    def _finish_fit(self, data: PreparedData) -> None:
        self.labels_ = self._q(data.x).argmax(1).numpy()

    # ----------------------------------------------------------------------------- inference
    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model_.encode(batch)

    def _proba(self, batch: torch.Tensor) -> torch.Tensor:
        return student_t_assignment(self._embed(batch).float(), self.model_.centroids.detach().float(), self.nu)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) Student's t soft assignment Q."""
        return self._q(self._prepare_like_fit(X)).numpy()

    def _predict_raw(self, x: torch.Tensor) -> np.ndarray:
        return self._q(x).argmax(1).numpy()

    @property
    def cluster_centers_(self) -> np.ndarray:
        """(K, embedding_dim) centroids μ in the embedding space."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        return self.model_.centroids.detach().cpu().numpy()

    # ----------------------------------------------------------------------------- persistence
    def _extra_state(self) -> dict[str, Any]:
        return {
            "n_iter": int(getattr(self, "n_iter_", 0)),
            "converged": bool(getattr(self, "converged_", False)),
            "init_labels": None if getattr(self, "init_labels_", None) is None else torch.from_numpy(self.init_labels_),
        }

    def _load_extra_state(self, state: dict[str, Any], path: Any) -> None:
        self.n_iter_ = int(state.get("n_iter", 0))
        self.converged_ = bool(state.get("converged", False))
        init = state.get("init_labels")
        self.init_labels_ = None if init is None else init.numpy()


class IDEC(DEC):
    """Improved DEC (Guo et al. 2017): DEC that keeps the decoder, L = L_r + γ·KL(P‖Q).

    Same parameters as :class:`DEC` plus ``gamma``; the default ``schedule="joint"`` with
    ``alpha=None`` uses IDEC's weights (w_c, w_n) = (γ, 1). Giving ``alpha`` (or another
    schedule) switches to the lecture's α·L_c + (1 − α)·L_n.

    {parameters}
    """

    _LOG_NAME = "IDEC"
    _params = {**_DEC_PARAMS, "gamma": Param(Interval(Real, 0, None, closed="left"), "γ, the weight of KL(P‖Q).")}

    def __init__(
        self,
        n_clusters: int = 10,
        backbone: str = "mlp",
        hidden_dims: tuple[int, ...] = (500, 500, 2000),
        embedding_dim: int = 10,
        conv_channels: tuple[int, ...] = (32, 64, 128),
        pretrain_epochs: int = 200,
        pretrain_lr: float = 1e-3,
        pretrained: str | None = None,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        corruption: float = 0.0,
        augmentation: str | dict[str, Any] | nn.Module | None = None,
        clustering_augmentation: bool = True,
        n_init: int = 20,
        nu: float = 1.0,
        update_interval: int = 140,
        tol: float = 0.001,
        schedule: str = "joint",
        alpha: float | None = None,
        alpha_start: float = 0.0,
        gamma: float = 0.1,
        kmeans_weight: float = 0.0,
        balance_weight: float = 0.0,
        balance_prior: str = "uniform",
        zipf_s: float = 1.0,
        locality_weight: float = 0.0,
        n_neighbors: int = 5,
        self_augmentation_weight: float = 0.0,
        eval_every: int = 10,
        device: str = "auto",
        seed: int = 0,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            n_clusters=n_clusters, backbone=backbone, hidden_dims=hidden_dims, embedding_dim=embedding_dim,
            conv_channels=conv_channels, pretrain_epochs=pretrain_epochs, pretrain_lr=pretrain_lr,
            pretrained=pretrained, epochs=epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, corruption=corruption,
            augmentation=augmentation, clustering_augmentation=clustering_augmentation, n_init=n_init, nu=nu,
            update_interval=update_interval, tol=tol,
            schedule=schedule, alpha=alpha, alpha_start=alpha_start, kmeans_weight=kmeans_weight,
            balance_weight=balance_weight, balance_prior=balance_prior, zipf_s=zipf_s,
            locality_weight=locality_weight, n_neighbors=n_neighbors,
            self_augmentation_weight=self_augmentation_weight, eval_every=eval_every, device=device, seed=seed,
            random_state=random_state, verbose=verbose,
        )
        self.gamma = gamma

    def _loss_weights(self, progress: float) -> tuple[float, float]:
        if self.schedule == "joint" and self.alpha is None:
            return float(self.gamma), 1.0
        return super()._loss_weights(progress)
