"""Plumbing shared by the deep estimators: input coercion and validation, device and seeding,
augmentation choice, batched inference, and checkpoint state."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hiclust.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from hiclust.data.features import FeatureAugment
from hiclust.nn import MLP, build_backbone, default_backbone
from hiclust.train import resolve_device

__all__ = ["PreparedData", "prepare_data", "seed_everything", "DeepClustererMixin", "NetEstimatorMixin", "default_depth"]


@dataclass
class PreparedData:
    """What every estimator trains on.

    ``x``: uint8 (N, C, H, W) images, or float32 (N, D) features (already standardized).
    ``labels``: int64 (N,) or None. ``name``: dataset name if known (chooses augmentation).
    """

    x: torch.Tensor
    labels: torch.Tensor | None
    name: str | None
    class_names: list[str] | None = None

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4


def _to_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"expected an ImageDataset, a torch.Tensor or a numpy array, got {type(x).__name__}; "
        "load files with hiclust.data.load_dataset('folder:PATH') first"
    )


def prepare_data(X: Any, y: Any = None) -> PreparedData:
    """Coerces the accepted input forms to :class:`PreparedData` and validates them.

    Accepted: an ``ImageDataset``; uint8 images (N,H,W), (N,C,H,W) or (N,H,W,C) with C ∈ {1,3};
    float images of those shapes with values in [0, 1]; or a float feature matrix (N, D).
    """
    from hiclust.data.datasets import ImageDataset  # late import: data is a sibling package

    name = class_names = None
    labels = None
    if isinstance(X, ImageDataset):
        x, labels, name, class_names = X.images, X.labels, X.name, X.class_names
    else:
        x = _to_tensor(X)
    if y is not None:
        labels = _to_tensor(np.asarray(y) if not isinstance(y, (torch.Tensor, np.ndarray)) else y)
    if x.shape[0] == 0 if x.ndim else True:
        raise ValueError("the dataset is empty (0 samples); nothing to cluster")
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()  # channels-last → channels-first
    if x.ndim == 4:
        if x.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have 1 or 3 channels in (N, C, H, W) or (N, H, W, C) layout, got shape {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8:
            x = x.float()
            if not torch.isfinite(x).all():
                raise ValueError("the images contain NaN or infinite values; clean or drop those samples")
            if x.min() < 0 or x.max() > 1:
                raise ValueError(
                    f"float images must lie in [0, 1] (got [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
                    "pass uint8 images or divide by 255"
                )
            x = (x * 255).round().to(torch.uint8)
    elif x.ndim == 2:
        if not torch.is_floating_point(x) and x.dtype == torch.bool:
            raise TypeError("feature matrices must be numeric")
        x = x.float()
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(1).nonzero().flatten()[:5].tolist()
            raise ValueError(f"the features contain NaN or infinite values (rows {bad}...); impute or drop them")
    else:
        raise ValueError(
            f"expected images (N, C, H, W) / (N, H, W) or features (N, D), got an array of shape {tuple(x.shape)}"
        )
    if labels is not None:
        labels = labels.flatten()
        if labels.shape[0] != x.shape[0]:
            raise ValueError(f"got {labels.shape[0]} labels for {x.shape[0]} samples; they must be equally many")
        labels = labels.long()
    return PreparedData(x, labels, name, class_names)


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (all devices). Determinism on CPU follows; on CUDA some
    kernels stay non-deterministic unless torch.use_deterministic_algorithms is set by the user."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class DeepClustererMixin:
    """Shared helpers; subclasses define ``model_``, ``_eval_input`` and the fit logic."""

    def _make_augment(self, data: PreparedData, image_size: int) -> nn.Module:
        from hiclust.data.augment import augmentation_preset, preset_for_dataset

        aug = self.augmentation
        if not data.is_image:
            return FeatureAugment()
        channels = data.x.shape[1]
        if isinstance(aug, nn.Module):
            return aug
        if aug == "auto":
            return preset_for_dataset(data.name or "", image_size, channels)
        if isinstance(aug, str):
            return augmentation_preset(aug, image_size, channels)
        raise TypeError(f"augmentation must be 'auto', a preset name or a BatchAugment, got {aug!r}")

    @torch.no_grad()
    def _batched_eval(self, fn, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Applies ``fn`` to evaluation-transformed batches of ``x`` on the fitted device; CPU result."""
        self.model_.eval()
        outs = []
        for i in range(0, x.shape[0], batch_size):
            batch = self._eval_input(x[i : i + batch_size].to(self.device_))
            outs.append(fn(batch).float().cpu())
        return torch.cat(outs)

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")


def default_depth(n_clusters: int) -> int:
    """Smallest complete tree with at least ``n_clusters`` leaves (10 → 4, 20 → 5, 15 → 4)."""
    return max(1, math.ceil(math.log2(n_clusters)))


# ------------------------------------------------------------------------------------------------
# NetEstimatorMixin: input handling and persistence shared by CC, SimCLR, DEC and IDEC
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

    def _start_augmented_fit(
        self, data: PreparedData, checkpoint: str | Path | None, resume: bool
    ) -> tuple[torch.Tensor, nn.Module, torch.optim.Optimizer, dict[str, torch.Generator], int]:
        """Common start of the contrastive fits (CC, SimCLR): device, seeds, generators, inputs,
        model, augmentation, Adam, and the resumed state when ``resume`` finds ``checkpoint``.

        Returns (training tensor on the device, augmentation, optimizer, generators, start epoch).
        """
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
        return x_dev, augment, optimizer, gens, start_epoch

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
