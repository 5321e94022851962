"""DEC and IDEC (SPEC.md §3, the deep clustering lecture), with the lecture's other loss
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
   non-finite checks and progress display are shared with the other methods.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from hiclust.losses.dec import (
    ALPHA_SCHEDULES,
    alpha_schedule,
    balance_kl,
    kl_divergence,
    kmeans_loss,
    knn_graph,
    locality_loss,
    self_augmentation_loss,
    student_t_assignment,
    target_distribution,
)
from hiclust.methods.base import NetEstimatorMixin, PreparedData, prepare_data, seed_everything
from hiclust.train import resolve_device, train_loop

__all__ = ["DEC", "IDEC", "DECNet", "MLPAutoEncoder", "ConvAutoEncoder"]

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


# ------------------------------------------------------------------------------------------------
# DEC
# ------------------------------------------------------------------------------------------------
class DEC(NetEstimatorMixin, ClusterMixin, BaseEstimator):
    """Deep Embedded Clustering (Xie et al. 2016) and its lecture variants (see the module docstring).

    Parameters:
        n_clusters: K.
        backbone: autoencoder, "mlp" (d–hidden_dims–embedding_dim, DEC's; "auto" is the same) or
            "conv" (:class:`ConvAutoEncoder`, images only).
        hidden_dims: MLP widths (500, 500, 2000). conv_channels: conv widths (32, 64, 128).
        embedding_dim: size of z (10).
        pretrain_epochs, pretrain_lr: autoencoder pre-training (Adam).
        pretrained: path of a saved DEC/IDEC model or checkpoint with the same autoencoder
            (backbone, widths, embedding_dim, input shape) whose pre-trained autoencoder is
            used instead of pre-training (e.g. one ``DEC(epochs=0)`` shared by DEC, IDEC and
            "AE + k-means"); ``pretrain_epochs`` is then ignored.
        epochs: cap of the clustering phase in epochs (steps = epochs · ⌊N / batch_size⌋);
            0 stops after the k-means initialisation ("AE + k-means").
        batch_size, lr, weight_decay: mini-batches and Adam of both phases (lr: clustering phase).
        corruption: fraction of input values zeroed during pre-training (denoising autoencoder).
        augmentation: None (off), "auto" (by dataset) or a preset name / module: train on
            augmented images (P still from clean images).
        clustering_augmentation: whether the clustering phase also trains on augmented images
            (DEC-DA); False uses ``augmentation`` for pre-training only. Without the
            reconstruction term (DEC) augmented clustering tends to drift; IDEC is stable with it.
        n_init: k-means restarts for the centroids (20). nu: ν of the Student's t kernel (1).
        update_interval: steps between refreshes of P (140 in DEC's code).
        tol: stop when the fraction of points that changed cluster between two refreshes is
            below this (0.001 = 0.1%); 0 never stops early.
        schedule, alpha, alpha_start: how L_c and L_n are combined (module docstring).
        kmeans_weight: weight of the k-means loss in L_c.
        balance_weight, balance_prior ("uniform" | "zipf"), zipf_s: KL(G‖prior) in L_c.
        locality_weight, n_neighbors: locality-preserving loss over the k nearest input-space
            neighbours, in L_n.
        self_augmentation_weight: −cos(z(x), z(T(x))) in L_n (needs ``augmentation``).
        eval_every: with labels, k-means ACC/NMI/ARI of z every this many pre-training epochs
            (the clustering phase records them at every refresh).
        device, seed, verbose: as in :class:`hiclust.CoHiClust`.

    Fitted attributes: model_, labels_, cluster_centers_ (K, embedding_dim), n_iter_ (clustering
    steps taken), converged_ (stopped by ``tol``), init_labels_ (k-means labels before the
    clustering phase), history_ (records with "phase": "pretrain" | "init" | "cluster"), device_.
    """

    _LOG_NAME = "DEC"

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
        augmentation: str | nn.Module | None = None,
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
        self.verbose = verbose

    # ----------------------------------------------------------------------------- validation
    def _validate(self, data: PreparedData) -> None:
        n = data.x.shape[0]
        k = self.n_clusters
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {k!r}")
        if k > n:
            raise ValueError(f"n_clusters={k} is larger than the number of samples ({n}); lower n_clusters")
        if self.backbone not in AUTOENCODERS:
            raise ValueError(f"backbone (the autoencoder) must be one of {', '.join(AUTOENCODERS)}, got {self.backbone!r}")
        if self.backbone == "conv" and not data.is_image:
            raise ValueError("backbone='conv' needs images; feature matrices use backbone='mlp'")
        dims = self.conv_channels if self.backbone == "conv" else self.hidden_dims
        if len(dims) < 1 or any(int(d) < 1 for d in dims) or self.embedding_dim < 1:
            raise ValueError("hidden_dims/conv_channels must be non-empty lists of positive widths and embedding_dim >= 1")
        if self.backbone == "conv" and len(dims) > 6:
            raise ValueError(f"conv_channels may hold at most 6 layers, got {len(dims)}")
        if self.pretrain_epochs < 0 or self.epochs < 0:
            raise ValueError(f"pretrain_epochs and epochs must be >= 0, got {self.pretrain_epochs} and {self.epochs}")
        if self.batch_size < 1 or self.batch_size > n:
            raise ValueError(f"batch_size must be in 1..{n} (the number of samples), got {self.batch_size}")
        for name in ("pretrain_lr", "lr", "nu"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.corruption < 1:
            raise ValueError(f"corruption must be in [0, 1), got {self.corruption}")
        if self.n_init < 1 or self.update_interval < 1:
            raise ValueError(f"n_init and update_interval must be >= 1, got {self.n_init} and {self.update_interval}")
        if not 0 <= self.tol <= 1:
            raise ValueError(f"tol is a fraction of points in [0, 1], got {self.tol}")
        if self.schedule not in ALPHA_SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(ALPHA_SCHEDULES)}, got {self.schedule!r}")
        if self.alpha is not None:
            if self.schedule == "pretrain_finetune":
                raise ValueError("alpha is used by schedule='joint' or 'rising' only; 'pretrain_finetune' fixes α = 1")
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0 <= self.alpha_start <= 1:
            raise ValueError(f"alpha_start must lie in [0, 1], got {self.alpha_start}")
        for name in ("weight_decay", "kmeans_weight", "balance_weight", "locality_weight", "self_augmentation_weight", "zipf_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.balance_prior not in ("uniform", "zipf"):
            raise ValueError(f"balance_prior must be 'uniform' or 'zipf', got {self.balance_prior!r}")
        if self.locality_weight > 0 and not 1 <= self.n_neighbors < n:
            raise ValueError(f"n_neighbors must be in 1..{n - 1}, got {self.n_neighbors}")
        if self.self_augmentation_weight > 0 and self.augmentation is None:
            raise ValueError("self_augmentation_weight > 0 needs augmentation (e.g. augmentation='auto')")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            raise FileNotFoundError(f"pretrained={self.pretrained!r}: no such file (a model saved by DEC/IDEC.save)")

    def check_params(self, X: Any, y: Any = None) -> None:
        """Validates the hyperparameters against the data without training (raises ValueError)."""
        self._validate(prepare_data(X, y))

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
        shape = self.input_shape_
        if self.backbone == "conv":
            ae: nn.Module = ConvAutoEncoder(shape[0], self.image_size_, tuple(self.conv_channels), self.embedding_dim)
        else:
            ae = MLPAutoEncoder(int(np.prod(shape)), tuple(int(d) for d in self.hidden_dims), self.embedding_dim)
        return DECNet(ae, self.n_clusters)

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
    ) -> "DEC":
        """Pre-trains the autoencoder, initialises the centroids by k-means, then runs the
        clustering phase until ``tol`` or ``epochs`` (see the module docstring).

        Args:
            y: optional labels, used only to record metrics in ``history_``.
            checkpoint: file written atomically every ``checkpoint_every`` pre-training epochs /
                target refreshes, after the k-means initialisation, and at the end.
            resume: continue from ``checkpoint`` if it exists (same configuration required).
            callback: called with each history record.
        """
        data = prepare_data(X, y)
        self._validate(data)
        self.device_ = resolve_device(self.device)
        seed_everything(self.seed)
        gens = {
            "shuffle": torch.Generator().manual_seed(self.seed),
            "augment": torch.Generator(device=self.device_).manual_seed(self.seed + 1),
            "sample": torch.Generator().manual_seed(self.seed + 2),
        }
        n = data.x.shape[0]
        x_dev = self._setup_inputs(data)
        self.model_ = self._build_model().to(self.device_)
        augment = None if self.augmentation is None else self._make_augment(data, self.image_size_ or 0).to(self.device_)
        self.history_: list[dict[str, Any]] = []
        self.n_iter_ = 0
        self.converged_ = False
        progress: dict[str, Any] = {"phase": "pretrain", "epoch": 0}
        opt_state = None
        if resume and checkpoint is not None and Path(checkpoint).exists():
            progress, opt_state = self._restore_training(checkpoint, gens)

        def model_input(idx: torch.Tensor) -> torch.Tensor:
            return self._eval_input(x_dev[idx])

        neighbors = None
        if self.locality_weight > 0:
            flat = self._batched_eval(lambda b: b.flatten(1), x_dev)  # the model's input space
            nb_idx, nb_w = knn_graph(flat, self.n_neighbors)
            neighbors = (nb_idx.to(self.device_), nb_w.to(self.device_))

        def non_clustering(idx: torch.Tensor, x_in: torch.Tensor, z: torch.Tensor, x_hat: torch.Tensor,
                           terms: dict[str, torch.Tensor]) -> torch.Tensor:
            """L_n of a batch: reconstruction (+ locality, self-augmentation)."""
            terms["reconstruction"] = F.mse_loss(x_hat, x_in)
            total = terms["reconstruction"]
            if neighbors is not None:
                nb = neighbors[0][idx]  # (B, k)
                z_nb = self.model_.encode(model_input(nb.flatten())).view(nb.shape[0], nb.shape[1], -1)
                terms["locality"] = locality_loss(z, z_nb, neighbors[1][idx])
                total = total + self.locality_weight * terms["locality"]
            if self.self_augmentation_weight > 0:
                z_clean = self.model_.encode(model_input(idx))
                terms["self_augmentation"] = self_augmentation_loss(z_clean, z)
                total = total + self.self_augmentation_weight * terms["self_augmentation"]
            return total

        def training_input(idx: torch.Tensor, clustering: bool = False) -> torch.Tensor:
            if augment is None or (clustering and not self.clustering_augmentation):
                return model_input(idx)
            return augment(x_dev[idx], generator=gens["augment"])

        index = torch.arange(n, device=self.device_)
        # ------------------------------------------------------------------ phase 1: pre-training
        if progress["phase"] == "pretrain":
            optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.pretrain_lr, weight_decay=self.weight_decay)
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)

            def pretrain_step(idx: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
                x_in = training_input(idx)
                corrupted = x_in
                if self.corruption > 0:
                    keep = torch.rand(x_in.shape, device=x_in.device, generator=gens["augment"]) >= self.corruption
                    corrupted = x_in * keep
                z, x_hat = self.model_(corrupted)
                terms: dict[str, torch.Tensor] = {}
                terms["loss"] = non_clustering(idx, x_in, z, x_hat, terms)
                return terms

            def pretrain_end(epoch: int, logs: dict[str, float]) -> None:
                record: dict[str, Any] = {"phase": "pretrain", "epoch": epoch + 1, **logs}
                last = epoch + 1 == self.pretrain_epochs
                if data.labels is not None and ((epoch + 1) % self.eval_every == 0 or last):
                    from sklearn.cluster import KMeans

                    z = self._embed(x_dev).numpy()
                    pred = KMeans(self.n_clusters, n_init=3, random_state=self.seed).fit_predict(z)
                    record.update({f"kmeans_{k}": v for k, v in self._label_metrics(data.labels, pred).items()})
                self._emit(record, callback)
                if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0) and not last:
                    self._save_training(checkpoint, optimizer, gens, {"phase": "pretrain", "epoch": epoch + 1})

            start = int(progress["epoch"])
            if self.pretrained is not None:
                self._load_pretrained(self.pretrained, callback)
            elif start < self.pretrain_epochs:
                train_loop(
                    self.model_, pretrain_step, index, optimizer=optimizer, epochs=self.pretrain_epochs,
                    batch_size=self.batch_size, shuffle_generator=gens["shuffle"], start_epoch=start,
                    on_epoch_end=pretrain_end, progress=self.verbose, desc=f"{self._LOG_NAME} pre-training",
                )
            # ---------------------------------------------------------- k-means initialisation
            self._init_centroids(x_dev, data, callback)
            progress = {"phase": "cluster", "chunk": 0, "step": 0, "prev_labels": torch.from_numpy(self.init_labels_)}
            opt_state = None
            if checkpoint is not None:
                self._save_training(checkpoint, optimizer, gens, progress)

        # ------------------------------------------------------------------ phase 2: clustering
        if progress["phase"] == "done" and progress.get("stopped") == "epochs" and \
                self.epochs * (n // self.batch_size) > int(progress["step"]):
            # A finished run resumed with more epochs: continue from its last refresh, whose
            # record is emitted again (without "stopped").
            progress["phase"] = "cluster"
            if self.history_ and self.history_[-1].get("stopped") == "epochs":
                self.history_.pop()
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if opt_state is not None and progress["phase"] == "cluster":
            optimizer.load_state_dict(opt_state)
        if progress["phase"] == "cluster":
            self._cluster_phase(x_dev, data, progress, optimizer, gens, training_input, model_input,
                                non_clustering, checkpoint, checkpoint_every, callback)
        self.labels_ = self._q(x_dev).argmax(1).numpy()
        return self

    _ARCHITECTURE = ("backbone", "hidden_dims", "embedding_dim", "conv_channels")

    def _load_pretrained(self, path: str | Path, callback) -> None:
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
                    "pretrain_seconds": float(sum(h.get("seconds", 0.0) for h in pre))}, callback)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, embedding_dim) z of raw inputs x (CPU result)."""
        return self._batched_eval(lambda b: self.model_.encode(b), x)

    def _q(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) Student's t assignment of raw inputs x (CPU result)."""
        return student_t_assignment(self._embed(x), self.model_.centroids.detach().float().cpu(), self.nu)

    def _init_centroids(self, x_dev: torch.Tensor, data: PreparedData, callback) -> None:
        from sklearn.cluster import KMeans

        z = self._embed(x_dev).double().numpy()
        km = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.seed).fit(z)
        with torch.no_grad():
            self.model_.centroids.copy_(torch.from_numpy(km.cluster_centers_).float())
        self.init_labels_ = km.labels_.astype(np.int64)
        record = {"phase": "init", "inertia": float(km.inertia_), **self._label_metrics(data.labels, self.init_labels_)}
        self._emit(record, callback)

    def _cluster_phase(self, x_dev, data, progress, optimizer, gens, training_input, model_input, non_clustering,
                       checkpoint, checkpoint_every, callback) -> None:
        n = x_dev.shape[0]
        total_steps = self.epochs * (n // self.batch_size)
        step_count = int(progress["step"])
        chunk = int(progress["chunk"])
        prev = progress["prev_labels"].numpy()
        if getattr(self, "init_labels_", None) is None:
            self.init_labels_ = prev
        target = torch.empty(0)

        def cluster_step(idx: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
            nonlocal step_count
            w_c, w_n = self._loss_weights(step_count / max(total_steps, 1))
            step_count += 1
            x_in = training_input(idx, clustering=True)
            z, x_hat = self.model_(x_in)
            q = student_t_assignment(z, self.model_.centroids, self.nu)
            terms: dict[str, torch.Tensor] = {"kl": kl_divergence(target[idx], q)}
            l_c = terms["kl"]
            if self.kmeans_weight > 0:
                terms["kmeans"] = kmeans_loss(z, self.model_.centroids)
                l_c = l_c + self.kmeans_weight * terms["kmeans"]
            if self.balance_weight > 0:
                terms["balance"] = balance_kl(q, self.balance_prior, self.zipf_s)
                l_c = l_c + self.balance_weight * terms["balance"]
            loss = w_c * l_c
            if w_n > 0:
                loss = loss + w_n * non_clustering(idx, x_in, z, x_hat, terms)
            terms["loss"] = loss
            return terms

        def chunk_end(epoch: int, logs: dict[str, float]) -> None:
            self._chunk_logs = logs

        while True:
            # Refresh P from the whole data set; stop when few points changed cluster.
            q_all = self._q(x_dev)
            labels = q_all.argmax(1).numpy()
            delta = float(np.mean(labels != prev))
            record: dict[str, Any] = {"phase": "cluster", "refresh": chunk, "step": step_count, "delta_label": delta}
            if chunk > 0:
                record.update(getattr(self, "_chunk_logs", {}))
            record.update(self._label_metrics(data.labels, labels))
            before, prev = prev, labels
            stop_tol = chunk > 0 and delta < self.tol
            done = stop_tol or step_count >= total_steps
            if stop_tol:
                record["stopped"] = "tol"
                self.converged_ = True
            elif done:
                record["stopped"] = "epochs"
            self._emit(record, callback)
            if done:
                break
            target = target_distribution(q_all).to(self.device_)
            steps = min(self.update_interval, total_steps - step_count)
            # One train_loop "epoch" = `steps` mini-batches over freshly permuted indices.
            reps = math.ceil(steps * self.batch_size / n)
            order = torch.cat([torch.randperm(n, generator=gens["sample"]) for _ in range(reps)])
            sampled = order[: steps * self.batch_size].to(self.device_)
            train_loop(
                self.model_, cluster_step, sampled, optimizer=optimizer, epochs=chunk + 1, batch_size=self.batch_size,
                shuffle_generator=gens["shuffle"], start_epoch=chunk, on_epoch_end=chunk_end,
                progress=self.verbose, desc=f"{self._LOG_NAME} clustering",
            )
            chunk += 1
            if checkpoint is not None and chunk % checkpoint_every == 0:
                self._save_training(checkpoint, optimizer, gens,
                                    {"phase": "cluster", "chunk": chunk, "step": step_count,
                                     "prev_labels": torch.from_numpy(prev)})
        self.n_iter_ = step_count
        if checkpoint is not None:
            # prev_labels of the refresh before the last one, so that a resume with more epochs
            # repeats the last refresh exactly (same delta) and goes on training.
            self._save_training(checkpoint, optimizer, gens,
                                {"phase": "done", "stopped": record["stopped"], "chunk": chunk, "step": step_count,
                                 "prev_labels": torch.from_numpy(before)})

    # ----------------------------------------------------------------------------- inference
    @property
    def cluster_centers_(self) -> np.ndarray:
        """(K, embedding_dim) centroids μ in the embedding space."""
        self._check_is_fitted()
        return self.model_.centroids.detach().cpu().numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) Student's t soft assignment Q."""
        return self._q(self._prepare_like_fit(X)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """(N,) argmax of Q."""
        return self.predict_proba(X).argmax(1)

    def transform(self, X: Any) -> np.ndarray:
        """(N, embedding_dim) embeddings z."""
        return self._embed(self._prepare_like_fit(X)).numpy()

    # ----------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {
            "n_iter": int(getattr(self, "n_iter_", 0)),
            "converged": bool(getattr(self, "converged_", False)),
            "init_labels": None if getattr(self, "init_labels_", None) is None else torch.from_numpy(self.init_labels_),
        }

    def _load_state(self, state: dict[str, Any], path: Any) -> None:
        self.n_iter_ = int(state.get("n_iter", 0))
        self.converged_ = bool(state.get("converged", False))
        init = state.get("init_labels")
        self.init_labels_ = None if init is None else init.numpy()


class IDEC(DEC):
    """Improved DEC (Guo et al. 2017): DEC that keeps the decoder, L = L_r + γ·KL(P‖Q).

    Same parameters as :class:`DEC` plus ``gamma`` (0.1); the default ``schedule="joint"`` with
    ``alpha=None`` uses IDEC's weights (w_c, w_n) = (γ, 1). Giving ``alpha`` (or another
    schedule) switches to the lecture's α·L_c + (1 − α)·L_n.
    """

    _LOG_NAME = "IDEC"

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
        augmentation: str | nn.Module | None = None,
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
            verbose=verbose,
        )
        self.gamma = gamma

    def _validate(self, data: PreparedData) -> None:
        super()._validate(data)
        if not self.gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def _loss_weights(self, progress: float) -> tuple[float, float]:
        if self.schedule == "joint" and self.alpha is None:
            return float(self.gamma), 1.0
        return super()._loss_weights(progress)
