"""CC: Contrastive Clustering (Li et al., AAAI 2021; SPEC.md §2).

Also holds :class:`NetEstimatorMixin`, the input/persistence plumbing shared by the estimators
of this module, ``simclr.py`` and ``dec.py`` (standardizing features, the evaluation transform,
config/state round trips, resume checks), so that each method file holds only its model and loss.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from hiclust.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from hiclust.losses import cluster_contrastive_loss, cluster_entropy, nt_xent
from hiclust.methods.base import DeepClustererMixin, PreparedData, prepare_data, seed_everything
from hiclust.nn import BACKBONES, MLP, ClusterHead, ProjectionHead, build_backbone, default_backbone
from hiclust.train import resolve_device, train_loop

__all__ = ["ContrastiveClustering", "CCNet", "NetEstimatorMixin"]


# ------------------------------------------------------------------------------------------------
# shared plumbing
# ------------------------------------------------------------------------------------------------
class NetEstimatorMixin(DeepClustererMixin):
    """Input handling and persistence shared by the torch estimators.

    Subclasses define ``_build_model()`` (from ``input_shape_``/``image_size_``), ``_state()``
    (extra fitted state, tensors and plain data only) and ``_load_state(state, path)``.
    Images are fed as uint8 and converted per batch on the device (``to_float``); feature
    matrices are standardized with the training mean/std (``feature_mean_``/``feature_std_``).
    """

    # Parameters that may differ when resuming a checkpoint (they do not change the result).
    _RESUME_FREE = ("verbose", "epochs", "device", "eval_every")
    _LOG_NAME = "model"

    # -------------------------------------------------------------------------- inputs
    def _setup_inputs(self, data: PreparedData, image_size: int | None = None) -> torch.Tensor:
        """Records the input geometry and returns the training tensor on ``device_``."""
        x = data.x
        if data.is_image:
            self.image_size_ = int(image_size or x.shape[-1])
            self.feature_mean_ = self.feature_std_ = None
            out = x.to(self.device_)
        else:
            self.image_size_ = None
            self.feature_mean_ = x.mean(0).to(self.device_)
            self.feature_std_ = x.std(0).clamp_min(1e-6).to(self.device_)
            out = (x.to(self.device_) - self.feature_mean_) / self.feature_std_
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        return out

    def _eval_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Deterministic transform of a raw batch (uint8 images or raw features) to model input."""
        if batch.ndim == 2:
            return (batch.float() - self.feature_mean_) / self.feature_std_
        from hiclust.data.augment import to_float

        return to_float(batch, self.image_size_)

    def _prepare_like_fit(self, X: Any) -> torch.Tensor:
        self._check_is_fitted()
        x = prepare_data(X).x
        if tuple(x.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"this model was fitted on inputs of shape {self.input_shape_} per sample, got {tuple(x.shape[1:])}"
            )
        return x

    def _backbone_for(self, shape: tuple[int, ...], image_size: int) -> nn.Module:
        """The backbone f for inputs of per-sample ``shape`` (a custom module is used as is)."""
        backbone = self.backbone
        if isinstance(backbone, nn.Module):
            if not hasattr(backbone, "feature_dim"):
                raise TypeError("a custom backbone module needs a 'feature_dim' attribute (size of its output)")
            return backbone
        if len(shape) == 1:
            if backbone not in ("auto", "mlp"):
                raise ValueError(f"feature matrices use the 'mlp' backbone, not {backbone!r}")
            return MLP(shape[0])
        name = default_backbone(shape[0], image_size) if backbone == "auto" else backbone
        return build_backbone(name, shape[0], image_size)

    # -------------------------------------------------------------------------- logging
    def _emit(self, record: dict[str, Any], callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.history_.append(record)
        if self.verbose:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            print(f"[{self._LOG_NAME}] {shown}", file=sys.stderr, flush=True)
        if callback is not None:
            callback(record)

    def _label_metrics(self, labels: torch.Tensor | None, pred: np.ndarray) -> dict[str, float]:
        if labels is None:
            return {}
        from hiclust.metrics import evaluate

        return {k: v for k, v in evaluate(labels.numpy(), pred).items() if k in ("acc", "nmi", "ari")}

    # -------------------------------------------------------------------------- persistence
    def _config(self) -> dict[str, Any]:
        params = self.get_params()
        for key, value in params.items():
            if isinstance(value, nn.Module):
                params[key] = f"custom:{type(value).__name__}"
            elif isinstance(value, tuple):
                params[key] = list(value)  # JSON has no tuples; keep configs comparable
        return params

    def _io_state(self) -> dict[str, Any]:
        return {
            "model": self.model_.state_dict(),
            "history": self.history_,
            "input_shape": list(self.input_shape_),
            "image_size": self.image_size_,
            "feature_mean": None if self.feature_mean_ is None else self.feature_mean_.cpu(),
            "feature_std": None if self.feature_std_ is None else self.feature_std_.cpu(),
        }

    def _restore_io_state(self, state: dict[str, Any], path: Any) -> None:
        """Loads weights and history into an already built ``model_`` (shapes checked)."""
        if list(self.input_shape_) != list(state["input_shape"]):
            raise CheckpointError(
                f"{path} was trained on inputs of shape {tuple(state['input_shape'])}; this run has {self.input_shape_}"
            )
        try:
            self.model_.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit this model's layers: {exc}") from None
        self.history_ = list(state["history"])

    def _check_resume_config(self, config: dict[str, Any], path: Any) -> None:
        mine = self._config()
        diff = {k: (config.get(k), v) for k, v in mine.items() if k not in self._RESUME_FREE and config.get(k) != v}
        if diff:
            raise CheckpointError(
                f"cannot resume from {path}: its configuration differs in "
                + ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in diff.items())
            )

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any], path: Any) -> None:
        pass

    def _full_state(self) -> dict[str, Any]:
        state = self._io_state()
        state.update(self._state())
        return state

    def save(self, path: str | Path) -> None:
        """Writes the fitted model (weights, fitted state, config; no optimizer) atomically."""
        self._check_is_fitted()
        save_checkpoint(path, model_class=type(self).__name__, config=self._config(), state=self._full_state())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """Loads a model written by ``save`` or a training checkpoint (safe: weights_only)."""
        config, state = load_checkpoint(path, expected_class=cls.__name__)
        for key, value in config.items():
            if isinstance(value, str) and value.startswith("custom:"):
                raise CheckpointError(
                    f"{path} used a custom {key} module ({value}); rebuild the estimator with it and "
                    "load the weights from the checkpoint's state['model'] instead"
                )
        config["device"] = device
        est = cls(**config)
        est.device_ = resolve_device(device)
        est.input_shape_ = tuple(int(s) for s in state["input_shape"])
        est.image_size_ = state["image_size"]
        fm, fs = state["feature_mean"], state["feature_std"]
        est.feature_mean_ = None if fm is None else fm.to(est.device_)
        est.feature_std_ = None if fs is None else fs.to(est.device_)
        est.model_ = est._build_model().to(est.device_)
        est._restore_io_state(state, path)
        est._load_state(state, path)
        return est

    def _save_training(self, path: Any, optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator],
                       progress: dict[str, Any]) -> None:
        state = self._full_state()
        state.update(optimizer=optimizer.state_dict(), rng=capture_rng_state(), progress=progress)
        state["generators"] = {k: g.get_state() for k, g in generators.items()}
        save_checkpoint(path, model_class=type(self).__name__, config=self._config(), state=state)

    def _restore_training(self, path: Any, generators: dict[str, torch.Generator]) -> tuple[dict[str, Any], Any]:
        """Restores model, fitted state and RNGs from a training checkpoint.

        Returns (the saved ``progress`` dict, the optimizer state dict to load into the optimizer
        of the phase that ``progress`` names).
        """
        config, state = load_checkpoint(path, expected_class=type(self).__name__)
        if "progress" not in state:
            raise CheckpointError(f"{path} is a saved model, not a training checkpoint; it cannot be resumed")
        self._check_resume_config(config, path)
        self._restore_io_state(state, path)
        self._load_state(state, path)
        restore_rng_state(state["rng"])
        for k, g in generators.items():
            if k in state.get("generators", {}):
                g.set_state(state["generators"][k])
        return dict(state["progress"]), state["optimizer"]


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
        self.device_ = resolve_device(self.device)
        seed_everything(self.seed)
        gens = {
            "shuffle": torch.Generator().manual_seed(self.seed),
            "augment": torch.Generator(device=self.device_).manual_seed(self.seed + 1),
        }
        x_dev = self._setup_inputs(data, self.image_size)
        self.model_ = self._build_model().to(self.device_)
        augment = self._make_augment(data, self.image_size_ or 0).to(self.device_)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.history_: list[dict[str, Any]] = []
        start_epoch = 0
        if resume and checkpoint is not None and Path(checkpoint).exists():
            progress, opt_state = self._restore_training(checkpoint, gens)
            optimizer.load_state_dict(opt_state)
            start_epoch = int(progress["epoch"])
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
