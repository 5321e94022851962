"""The one estimator lifecycle every deep method shares.

:class:`DeepClusterer` owns everything that is not the method itself: parameter validation (from
the ``_params`` declarations, before anything is built), device and seeds, inputs (uint8 images
or standardized features), the optimizer and learning-rate schedule of each phase, mixed
precision, the two augmented views, data parallelism (DDP; the loss modules gather), the
evaluation and checkpoint schedule, the non-finite guard, save / load / resume with one checkpoint
format, and ``predict`` / ``predict_proba`` / ``transform`` / ``fit_predict`` over two hooks.

A method is its network, its loss module, its declared parameters and a few hooks:

``_build_model()``
    the ``nn.Module`` for ``input_shape_`` / ``image_size_``.
``_phases(data)``
    the list of :class:`Phase` s it trains in (one for CoHiClust and CC; DEC pre-trains, then
    clusters).
``_training_step(phase, batch, epoch)``
    the loss terms of one mini-batch (a dict with "loss").
``_embed(batch)``, ``_proba(batch)``
    features and cluster probabilities of a model-input batch.
``_check_params_vs_input(data)``, ``_init_fit_state(data)``, ``_on_epoch_end(phase, epoch,
record)``, ``_finish_fit(data)``, ``_extra_state()`` / ``_load_extra_state(state, path)``
    where it needs them.

Fitting happens on a private working copy of the estimator; its fitted attributes (the names
ending in ``_``) are copied onto the estimator only when ``fit`` completes, so a fit that stops
early never leaves a half-trained model answering ``predict``.
"""

from __future__ import annotations

import math
import random
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from torch import nn

from hiclust import distributed as dist_utils
from hiclust import interrupt
from hiclust._warnings import user_stacklevel
from hiclust.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from hiclust.data.features import FeatureAugment
from hiclust.data.streaming import DiskRows, StandardizedRows, column_stats, is_streamed, iter_batches, rows_text
from hiclust.methods.params import Param, install_parameters
from hiclust.nn import MLP, build_backbone, default_backbone
from hiclust.train import NonFiniteLossError, resolve_device, train_loop

__all__ = [
    "PreparedData", "prepare_data", "seed_everything", "default_depth", "DeepClusterer", "Phase", "NotFittedError",
]


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
@dataclass
class PreparedData:
    """What every estimator trains on.

    ``x``: uint8 (N, C, H, W) images, or float32 (N, D) features (not yet standardized).
    ``labels``: int64 (N,) or None. ``name``: dataset name if known (chooses augmentation).
    """

    x: torch.Tensor
    labels: torch.Tensor | None
    name: str | None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None  # a DataFrame's column names

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4


# predict on a feature matrix warns when the rows' values sit on average more than this many
# training standard deviations from the training column means. Rows drawn like the training ones
# average at most 1 (E|z| <= 1 for unit variance); raw wine given to a model fitted on standardized
# wine averages 69, standardized wine given to a model fitted on raw wine 5.3.
FAR_FROM_TRAINING = 5.0
# The verbose log prints about this many epoch lines per fit: every epoch with an event (a
# pruning, an evaluation) and the last of each phase, and every k-th epoch, where k grows with
# the fit's epochs and the events (a 178-row matrix trains 5 × 100 epochs of a few milliseconds
# and prunes in each draw: 60 lines of cadence plus the prunings came to about 105 lines for a
# 30-second fit). history_, the callback and history.jsonl still receive every epoch.
LOG_LINES = 40
_LOGGED_EVENTS = ("pruned_leaf", "acc")


class EmptyClusterWarning(UserWarning):
    """fit ended with clusters that hold no training item."""


def _to_tensor(x: Any) -> Any:
    if isinstance(x, DiskRows):  # streamed from disk: validated as it is read
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if hasattr(x, "to_numpy") and hasattr(x, "columns"):  # a pandas DataFrame, as scikit-learn accepts it
        try:
            x = x.to_numpy(dtype=np.float32, copy=True)  # writable: torch.from_numpy warns on a read-only view
        except (ValueError, TypeError):
            raise TypeError("X as a DataFrame must hold numbers only; drop or encode its non-numeric columns "
                            "(e.g. df.select_dtypes('number'))") from None
    if isinstance(x, (list, tuple)):  # nested lists of numbers, as scikit-learn accepts them
        try:
            x = np.asarray(x)
        except ValueError as exc:  # ragged rows
            raise ValueError(f"X as a list must be rectangular (every row the same length): {exc}") from None
    if isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind in "USV":
            raise TypeError(f"X must hold numbers, got an array of dtype {x.dtype}; convert it to float first")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"expected an ImageDataset, a FeatureDataset, a torch.Tensor, a numpy array, a pandas DataFrame or a list "
        f"of rows, got {type(x).__name__}; load image files with hiclust.load_dataset('folder:PATH') and feature "
        "files with hiclust.load_dataset('features:PATH') first"
    )


def _label_ids(y: Any) -> tuple[torch.Tensor, list[str] | None]:
    """Labels as int64 ids (N,): integers as they are; any other labels (strings, floats, objects)
    mapped to 0..C−1 in sorted order, their names returned as class names."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return torch.from_numpy(np.ascontiguousarray(y.astype(np.int64))), None
    if y.dtype.kind == "b":
        raise TypeError("labels must be class ids or names, not booleans; convert them with y.astype(int)")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("labels contain NaN or infinite values; drop those samples or give them a class")
    if y.dtype == object and any(v is None for v in y.ravel()):
        raise ValueError("labels contain None; drop those samples or give them a class")
    try:
        names, ids = np.unique(y.ravel(), return_inverse=True)
    except TypeError as exc:  # mixed types that cannot be ordered
        raise TypeError(f"labels must be of one kind (all numbers or all strings): {exc}") from None
    return torch.from_numpy(ids.astype(np.int64)), [str(v) for v in names]


def _column_names(X: Any) -> list[str] | None:
    """The feature columns' names of a pandas DataFrame or a FeatureDataset read from a table."""
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        return [str(c) for c in X.columns]
    if hasattr(X, "feature_names") and hasattr(X, "features"):
        return X.feature_names
    return None


def prepare_data(X: Any, y: Any = None) -> PreparedData:
    """Coerces the accepted input forms to :class:`PreparedData` and validates them.

    Accepted: an ``ImageDataset`` or a ``FeatureDataset``; uint8 images (N,H,W), (N,C,H,W) or
    (N,H,W,C) with C ∈ {1,3}; float images of those shapes with values in [0, 1]; or a float
    feature matrix (N, D).

    >>> prepare_data(np.zeros((5, 8, 8), dtype=np.uint8)).x.shape
    torch.Size([5, 1, 8, 8])
    >>> prepare_data(np.ones((4, 3), dtype=np.float64)).x.dtype
    torch.float32
    """
    from hiclust.data.datasets import ImageDataset  # late import: data is a sibling package
    from hiclust.data.feature_files import FeatureDataset

    name = class_names = None
    labels = None
    feature_names = _column_names(X)
    if isinstance(X, ImageDataset):
        x, labels, name, class_names = X.images, X.labels, X.name, X.class_names
    elif isinstance(X, FeatureDataset):  # e.g. load_dataset("features:table.csv"): its header names the columns
        x, labels, name, class_names = X.features, X.labels, X.name, X.class_names
    else:
        x = _to_tensor(X)
    if y is not None:
        labels, names = _label_ids(y)
        class_names = names if names is not None else class_names
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
    elif x.ndim == 2 and is_streamed(x):
        pass  # float32 rows read on demand; NaN/Inf are refused by the statistics pass (column_stats)
    elif x.ndim == 2:
        if not torch.is_floating_point(x) and x.dtype == torch.bool:
            raise TypeError("feature matrices must be numeric")
        if x.shape[1] == 0:
            raise ValueError(f"the feature matrix has no columns (shape {tuple(x.shape)}); give at least one feature")
        x = x.float()
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(1).nonzero().flatten().tolist()
            raise ValueError(f"the features contain NaN or infinite values ({rows_text(bad)}); impute or drop them")
    else:
        raise ValueError(
            f"expected images (N, C, H, W) / (N, H, W) or features (N, D), got an array of shape {tuple(x.shape)}"
        )
    if labels is not None:
        labels = labels.flatten()
        if labels.shape[0] != x.shape[0]:
            raise ValueError(f"got {labels.shape[0]} labels for {x.shape[0]} samples; they must be equally many")
        labels = labels.long()
    return PreparedData(x, labels, name, class_names, feature_names)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's test: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def _shown(value: Any) -> str:
    """A parameter value in a message: None (the parameter left at its default) as 'left at its default'."""
    return "left at its default" if value is None else repr(value)


def format_duration(seconds: float) -> str:
    """``seconds`` as a short human duration: '45s', '3m05s', '2h07m'.

    >>> format_duration(45.2), format_duration(185), format_duration(7620)
    ('45s', '3m05s', '2h07m')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (all devices). Determinism on CPU follows; on CUDA some
    kernels stay non-deterministic unless torch.use_deterministic_algorithms is set by the user."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_depth(n_clusters: int) -> int:
    """Smallest complete tree with at least ``n_clusters`` leaves.

    >>> [default_depth(k) for k in (2, 10, 15, 16, 20)]
    [1, 4, 4, 4, 5]
    """
    return max(1, math.ceil(math.log2(n_clusters)))


# ------------------------------------------------------------------------------------------------
# phases
# ------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """One stage of training with its own optimizer.

    Attributes:
        name: stored in checkpoints ("train", "pretrain", "cluster"...).
        epochs: epochs of this phase (a standard phase runs ``train_loop`` over them).
        lr: Adam learning rate of the phase.
        schedule: None (constant) or "cosine" (annealed to 0 over ``epochs``, stepped per epoch).
        record_phase: add ``"phase": name`` to each history record.
        checkpoint_last: write a checkpoint after the phase's last epoch too (a phase followed by
            another that checkpoints at its start may skip it).
        evaluate: ``evaluate(record)`` adds label metrics to an epoch's record (default: ACC/NMI/ARI
            of ``predict`` on the training data).
        run: a custom phase: ``run(progress, optimizer_state)`` replaces the standard epoch loop
            (DEC's clustering phase, with its target refreshes and convergence test).
        start: called once when a standard phase starts afresh (not when it is resumed), after
            its optimizer exists (DeepECT's first split of the root).
    """

    name: str
    epochs: int = 0
    lr: float = 1e-3
    schedule: str | None = None
    record_phase: bool = False
    checkpoint_last: bool = True
    evaluate: Callable[[dict[str, Any]], None] | None = None
    run: Callable[[dict[str, Any], Any], None] | None = None
    start: Callable[[], None] | None = None


# Parameters shared by several methods, declared once (a method may re-declare one to say more).
COMMON_PARAMS: dict[str, Param] = {}


def _declare_common() -> None:
    from numbers import Integral, Real

    from hiclust.methods.params import Interval, RegistryOptions, StrOptions
    from hiclust.nn import BACKBONES

    COMMON_PARAMS.update(
        n_clusters=Param(Interval(Integral, 2, None, closed="left"),
                         "Number of clusters K (at least 2: one cluster is no clustering)."),
        backbone=Param([RegistryOptions({"auto"}, BACKBONES), nn.Module],
                       "The network f: 'auto' (a small CNN for images up to 32 px with one channel, "
                       "ResNet18 otherwise; an MLP for feature matrices), a name from "
                       "hiclust.nn.BACKBONES, or an nn.Module with a feature_dim attribute."),
        epochs=Param(Interval(Integral, 1, None, closed="left"), "Training epochs.", resume="free"),
        batch_size=Param(Interval(Integral, 2, None, closed="left"),
                         "Samples per mini-batch (the global batch under torchrun)."),
        lr=Param(Interval(Real, 0, None, closed="neither"), "Adam learning rate."),
        weight_decay=Param(Interval(Real, 0, None, closed="left"), "Adam weight decay."),
        temperature=Param(Interval(Real, 0, None, closed="neither"), "Temperature τ of NT-Xent."),
        projection_dim=Param(Interval(Integral, 1, None, closed="left"), "Output size of the projection head g."),
        image_size=Param([Interval(Integral, 4, None, closed="left"), None],
                         "Side of the square augmented crops the network sees, in pixels (after any --image-size resize "
                         "on load); None: the images' own size.",
                         flag="--crop-size"),
        augmentation=Param([str, dict, nn.Module],
                           "'auto' (chosen by dataset, see hiclust.data.augment), a preset name, a dict "
                           "{'preset': name or 'auto', setting: value, ...} (a preset with some BatchAugment "
                           "settings replaced, e.g. erase_p; in a YAML config), or a module mapping a uint8 batch "
                           "to an augmented float batch."),
        eval_every=Param(Interval(Integral, 1, None, closed="left"),
                         "With labels, record ACC/NMI/ARI in history_ every this many epochs.", resume="free"),
        # Not free on resume: the augmentation generator's state belongs to the device it ran on.
        device=Param(str, "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'."),
        precision=Param(StrOptions({"auto", "float32", "bfloat16"}),
                        "Arithmetic of the training forward pass: 'auto' (bfloat16 autocast on CUDA, float32 on "
                        "the CPU), 'float32', or 'bfloat16' (autocast on either device; on the CPU only where it "
                        "has bfloat16 instructions, e.g. AVX-512 BF16 or AMX, where a ResNet18 step is about "
                        "twice as fast). Weights, optimizer, losses and inference stay float32.",
                        resume="free"),
        seed=Param(Interval(Integral, 0, None, closed="left"),
                   "Seeds python, numpy, torch and the shuffling / augmentation generators."),
        random_state=Param([Interval(Integral, 0, None, closed="left"), None],
                           "scikit-learn's name for seed: when given, it is used instead of seed.", flag=""),
        verbose=Param("boolean", "Per-epoch log lines on stderr (and a progress bar on a terminal).",
                      resume="free", flag=""),
    )


def common(*names: str, **overrides: Param) -> dict[str, Param]:
    """The shared declarations ``names`` (plus method-specific ones given as keywords)."""
    if not COMMON_PARAMS:
        _declare_common()
    return {**{n: COMMON_PARAMS[n] for n in names}, **overrides}


# ------------------------------------------------------------------------------------------------
# the lifecycle
# ------------------------------------------------------------------------------------------------
class DeepClusterer(ClusterMixin, BaseEstimator):
    """Base of the deep estimators (see the module docstring for what a method provides)."""

    _params: dict[str, Param] = {}
    _LOG_NAME = "model"
    # Names of extra torch.Generators a method draws from (besides "shuffle" and "augment").
    _EXTRA_GENERATORS: tuple[str, ...] = ()
    # Loss modules gather across ranks, so every method may train under torchrun unless it says not.
    _SUPPORTS_DISTRIBUTED = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            install_parameters(cls)

    # -------------------------------------------------------------------------- hooks
    def _check_params_vs_input(self, data: PreparedData) -> None:
        """Checks that need the data (e.g. n_clusters <= N); raise ValueError naming the parameter."""
        n = data.x.shape[0]
        k = getattr(self, "n_clusters", None)
        if k is not None and k > n:
            raise ValueError(f"n_clusters={k} is larger than the number of samples ({n}); lower n_clusters")
        bs = getattr(self, "batch_size", None)
        if bs is not None and bs > self._rows_per_epoch(data):
            raise ValueError(f"batch_size={bs} is larger than the dataset ({n} samples); use batch_size <= {n}")
        if dist_utils.world_size() > 1 and bs is not None and bs % dist_utils.world_size():
            raise ValueError(
                f"batch_size={bs} (the global batch) must be divisible by the {dist_utils.world_size()} processes"
            )

    def _rows_per_epoch(self, data: PreparedData) -> int:
        """Rows an epoch iterates over (default: the N samples); a batch may not exceed it."""
        return int(data.x.shape[0])

    def _build_model(self) -> nn.Module:
        raise NotImplementedError

    def _phases(self, data: PreparedData) -> list[Phase]:
        raise NotImplementedError

    def _training_step(self, phase: Phase, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, d) features of a model-input batch."""
        raise NotImplementedError

    def _proba(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, K) cluster probabilities of a model-input batch."""
        raise NotImplementedError

    def _extra_epochs(self) -> int:
        """Epochs trained beyond the phases' own (e.g. CoHiClust's tree draws), for the log's cadence."""
        return 0

    def _log_plan(self, planned: int) -> tuple[int, bool]:
        """(k, events): the log shows every k-th of the ``planned`` epochs, and with ``events``
        every epoch with a pruning or an evaluation too; about LOG_LINES lines in all."""
        events = self._logged_events(planned)
        return max(1, planned // max(LOG_LINES - events, LOG_LINES // 4)), True

    def _logged_events(self, planned: int) -> int:
        """About how many of the ``planned`` epochs log a line for an event (here: an evaluation),
        which the log's cadence leaves room for."""
        return planned // self.eval_every if self._data.labels is not None else 0

    def _init_fit_state(self, data: PreparedData) -> None:
        """Method state created before the model is built (and overwritten by a resumed
        checkpoint); ``device_`` and the input geometry are set."""

    def _on_epoch_end(self, phase: Phase, epoch: int, record: dict[str, Any]) -> None:
        """After each epoch of a standard phase, before evaluation and checkpoint (e.g. pruning)."""

    def _finish_fit(self, data: PreparedData) -> None:
        """Fitted attributes computed after training (default: ``labels_`` = predict(training data))."""
        self.labels_ = self._predict_raw(data.x)

    def _extra_state(self) -> dict[str, Any]:
        """Method state saved in checkpoints and models (tensors and plain data only)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any], path: Any) -> None:
        pass

    def _phase_data(self, phase: Phase) -> torch.Tensor:
        """What a standard phase's epochs iterate over (default: the training tensor, uint8 images
        or standardized features, on the device); ``_training_step`` receives its mini-batches."""
        return self._x

    def _extra_passes(self, phase: Phase) -> list[tuple[str, torch.Tensor, Callable[[torch.Tensor, int], Any]]]:
        """Passes run before the main one in every epoch of ``phase``: (name, data on the device,
        step(batch, epoch) -> loss terms). By default the ``instance_data`` of ``fit``, if any,
        with ``_instance_step``."""
        x = getattr(self, "_instance_x", None)
        return [] if x is None else [("instance_only", x, self._instance_step)]

    def _instance_step(self, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """Loss terms of a batch of ``instance_data`` (methods with ``_SUPPORTS_INSTANCE_DATA``)."""
        raise NotImplementedError

    def _train_module(self) -> nn.Module:
        """The module DDP wraps and ``_training_step`` calls as ``self._net``."""
        return self.model_

    def _find_unused_parameters(self, phase: Phase, start_epoch: int) -> bool:
        return False

    def _resume_free_params(self) -> frozenset[str]:
        return self._resume_free

    # -------------------------------------------------------------------------- validation
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def check_params(self, X: Any, y: Any = None, instance_data: Any = None) -> None:
        """Validates everything ``fit`` checks before training, without training or writing:
        parameter types and ranges (``InvalidParameterError``), parameters against the data,
        the device, the augmentation and the network (ValueError / TypeError)."""
        self._validate_params()
        data = prepare_data(X, y)
        self._check_params_vs_input(data)
        self._check_instance_data(data, instance_data)
        self._check_precision(resolve_device(self.device))
        probe = self._working_copy()
        probe.device_ = torch.device("cpu")
        probe._setup_inputs(data, on_device=False)
        probe._init_fit_state(data)
        probe._make_augment(data)
        probe._build_model()  # e.g. images too small for the backbone

    _SUPPORTS_INSTANCE_DATA = False  # fit(instance_data=...): the method implements _instance_step
    # Convolution weights in channels-last layout on the CPU: oneDNN's convolutions then skip their
    # layout reorders (a contrastive step of the small CNN at 16 px, batch 256: 1.25-1.31x faster;
    # ResNet18 at 32 px, batch 128: 1.13-1.20x; benchmarks/RESULTS.md "A training step on the CPU").
    _CHANNELS_LAST_ON_CPU = False

    def _seed(self) -> int:
        """The seed in force: ``random_state`` (scikit-learn's name) when given, else ``seed``."""
        random_state = getattr(self, "random_state", None)
        return int(self.seed if random_state is None else random_state)

    def _check_instance_data(self, data: PreparedData, instance_data: Any) -> PreparedData | None:
        """``fit``'s ``instance_data`` prepared and checked against X (None if not given)."""
        if instance_data is None:
            return None
        if not self._SUPPORTS_INSTANCE_DATA:
            raise ValueError(f"{type(self).__name__} has no instance-only loss to train instance_data with; "
                             "pass the samples in X (only CC takes instance_data)")
        extra = prepare_data(instance_data)
        if extra.x.shape[1:] != data.x.shape[1:]:
            raise ValueError(f"instance_data must have the per-sample shape of X, {tuple(data.x.shape[1:])}; "
                             f"got {tuple(extra.x.shape[1:])}")
        if extra.x.shape[0] < self.batch_size:
            raise ValueError(f"instance_data has {extra.x.shape[0]} samples, fewer than batch_size={self.batch_size}")
        return extra

    def _working_copy(self) -> "DeepClusterer":
        return type(self)(**self.get_params(deep=False))

    # -------------------------------------------------------------------------- inputs
    def _setup_inputs(self, data: PreparedData, on_device: bool = True) -> Any:
        """Records the input geometry and returns the training data: a tensor on ``device_``, or
        for data streamed from disk a ``DiskRows`` whose batches the training loop moves there.
        Features are standardized with per-column statistics accumulated in float64 (one pass
        over a matrix on disk). ``on_device=False``: a validation probe; nothing is moved and a
        streamed matrix is not read."""
        x = data.x
        device = self.device_ if on_device else torch.device("cpu")
        streamed = is_streamed(x)
        if data.is_image:
            self.image_size_ = int(getattr(self, "image_size", None) or x.shape[-1])
            self.feature_mean_ = self.feature_std_ = None
            out = x if streamed else x.to(device)
        else:
            self.image_size_ = None
            if streamed and not on_device:
                mean, std = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
            else:
                mean, std = column_stats(x)
            self.feature_mean_, self.feature_std_ = mean.to(device), std.to(device)
            out = StandardizedRows(x, mean, std) if streamed else (x.to(device) - self.feature_mean_) / self.feature_std_
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        return out

    def _like_inputs(self, x: Any) -> Any:
        """Other samples of X's kind prepared as ``_setup_inputs`` prepared X (features
        standardized with X's statistics); streamed data stays on disk."""
        if x.ndim == 2:
            if is_streamed(x):
                return StandardizedRows(x, self.feature_mean_.cpu(), self.feature_std_.cpu())
            return (x.to(self.device_) - self.feature_mean_) / self.feature_std_
        return x if is_streamed(x) else x.to(self.device_)

    def _place(self, model: nn.Module) -> nn.Module:
        """``model`` on the fitted device; channels-last convolution weights on the CPU where the
        method asks for them (a layout change only: the same values, the same state dict keys)."""
        if self._CHANNELS_LAST_ON_CPU and self.device_.type == "cpu":
            return model.to(self.device_, memory_format=torch.channels_last)
        return model.to(self.device_)

    def _eval_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Deterministic transform of a raw batch (uint8 images or raw features) to model input."""
        if batch.ndim == 2:
            return (batch.float() - self.feature_mean_) / self.feature_std_
        from hiclust.data.augment import to_float

        return to_float(batch, self.image_size_)

    def _make_augment(self, data: PreparedData) -> nn.Module | None:
        from hiclust.data.augment import augmentation_preset, preset_and_settings, preset_for_dataset

        aug = getattr(self, "augmentation", None)
        if aug is None:
            return None
        if not data.is_image:
            return FeatureAugment()
        if isinstance(aug, nn.Module):
            return aug
        channels, size = data.x.shape[1], self.image_size_ or 0
        aug, overrides = preset_and_settings(aug)  # a dict: a preset with some settings replaced
        if aug == "auto":
            return preset_for_dataset(data.name or "", size, channels, **overrides)
        return augmentation_preset(aug, size, channels, **overrides)

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

    def _views(self, batch: torch.Tensor) -> torch.Tensor:
        """Two augmented views of a uint8 batch stacked: (2B, ...), rows j and B + j from image j."""
        gen = self._generators["augment"]
        return torch.cat((self._augment(batch, generator=gen), self._augment(batch, generator=gen)))

    def _autocast(self) -> Any:
        """The training forward's mixed precision: bf16 autocast on CUDA unless ``precision`` is
        'float32', on the CPU only when it is 'bfloat16'; otherwise a no-op context."""
        precision = getattr(self, "precision", "auto")
        enabled = precision == "bfloat16" or (precision == "auto" and self.device_.type == "cuda")
        return torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=enabled)

    def _check_precision(self, device: torch.device) -> None:
        """Refuses precision='bfloat16' on a CPU without bfloat16 instructions: oneDNN would
        emulate them, slower than float32, which is the opposite of what the option is for."""
        if getattr(self, "precision", "auto") == "bfloat16" and device.type == "cpu" and not cpu_has_bf16():
            raise ValueError("precision='bfloat16' needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX); "
                             "this one has none, so it would be slower than float32: use precision='float32'")

    # -------------------------------------------------------------------------- fitting
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 10,
        resume: bool = False,
        callback: Callable[[dict[str, Any]], None] | None = None,
        instance_data: Any = None,
    ) -> "DeepClusterer":
        """Trains on X (an ImageDataset, images or a feature matrix; see ``prepare_data``).

        Parameters
        ----------
        X : ImageDataset, tensor or array
            uint8 images (N, C, H, W) / (N, H, W) / (N, H, W, C), or float features (N, D).
        y : array-like of shape (N,), optional
            Labels, used only to record metrics in ``history_``.
        checkpoint : path, optional
            File written atomically every ``checkpoint_every`` epochs and at the end of a phase.
        checkpoint_every : int, default=10
            Epochs between checkpoints.
        resume : bool, default=False
            Continue from ``checkpoint`` if it exists (same configuration required).
        callback : callable, optional
            Called with each history record (on rank 0 only under torchrun).
        instance_data : ImageDataset, tensor or array, optional
            Extra samples of X's kind and per-sample shape, trained with the instance
            (representation) loss alone at the start of every epoch and not clustered: CC's STL-10
            schedule over the 100k unlabeled images. Only for methods with such a loss (CC); pass
            them again when resuming.

        Under ``torchrun`` (``hiclust.distributed.init_from_env`` called first), training is
        data parallel with DDP: ``batch_size`` is the global batch, each rank takes a contiguous
        shard, contrastive losses are computed over the gathered global batch, and only rank 0
        writes the checkpoint.
        """
        self._validate_params()
        data = prepare_data(X, y)
        self._check_params_vs_input(data)
        if checkpoint is not None and (isinstance(checkpoint_every, bool)
                                       or not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive integer (epochs), got {checkpoint_every!r}")
        if dist_utils.is_distributed() and not self._SUPPORTS_DISTRIBUTED:
            raise ValueError(
                f"data-parallel training (torchrun, {dist_utils.world_size()} processes) is not implemented for "
                f"{type(self).__name__}; run it in a single process (without torchrun)"
            )
        extra = self._check_instance_data(data, instance_data)
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)  # an earlier fit's results are gone whatever happens now
        work = self._working_copy()
        work._instance_data = extra
        if data.feature_names is not None:  # scikit-learn's convention for a DataFrame's columns
            work.feature_names_in_ = np.asarray(data.feature_names, dtype=object)
        work._run_fit(data, checkpoint, checkpoint_every, resume, callback)
        for name, value in vars(work).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(self, name, value)
        self._warn_if_clusters_empty()
        return self

    @property
    def n_features_in_(self) -> int:
        """Number of feature columns seen by fit (feature matrices only; scikit-learn's convention)."""
        shape = self.__dict__.get("input_shape_")
        if shape is None or len(shape) != 1:
            raise AttributeError("n_features_in_ is set by fit on a feature matrix (N, D)")
        return int(shape[0])

    def _warn_if_clusters_empty(self) -> None:
        """Warns (EmptyClusterWarning) when some of the n_clusters clusters got no training item:
        the model then describes fewer groups than asked for. (The command line's summary says it
        in its own terms and silences this warning.)"""
        labels, k = getattr(self, "labels_", None), getattr(self, "n_clusters", None)
        if labels is None or not isinstance(k, (int, np.integer)) or len(labels) == 0:
            return
        empty = np.flatnonzero(np.bincount(np.asarray(labels, dtype=np.int64), minlength=int(k))[: int(k)] == 0)
        if empty.size:
            shown = ", ".join(map(str, empty[:12])) + (" ..." if empty.size > 12 else "")
            verb = "holds" if empty.size == 1 else "hold"
            warnings.warn(
                f"{empty.size} of the {k} clusters {verb} no training item (cluster {shown}); train longer (epochs), "
                "try another seed, or ask for fewer n_clusters",
                EmptyClusterWarning, stacklevel=user_stacklevel(),
            )

    def _run_fit(self, data: PreparedData, checkpoint: Any, checkpoint_every: int, resume: bool,
                 callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.device_ = resolve_device(self.device)
        self._check_precision(self.device_)
        world, rank = dist_utils.world_size(), dist_utils.rank()
        if world > 1 and self.device_.type == "cuda" and self.device_.index is None:
            self.device_ = torch.device("cuda", torch.cuda.current_device())
        seed = self._seed()
        seed_everything(seed)
        # Same shuffling on every rank (all draw the same global batches and take disjoint
        # shards); each rank its own augmentation stream (under torchrun re-seeded at every
        # epoch start, see _run_phase).
        self._generators = {
            "shuffle": torch.Generator().manual_seed(seed),
            "augment": torch.Generator(device=self.device_).manual_seed(seed + 1 + rank),
        }
        for i, name in enumerate(self._EXTRA_GENERATORS):
            self._generators[name] = torch.Generator().manual_seed(seed + 2 + i)
        self._x = self._setup_inputs(data)
        self._data = data
        extra = getattr(self, "_instance_data", None)
        # Prepared like X: on the device, features standardized with X's statistics.
        self._instance_x = None if extra is None else self._like_inputs(extra.x)
        self._init_fit_state(data)
        self.model_ = self._place(self._build_model())
        augment = self._make_augment(data)
        self._augment = None if augment is None else augment.to(self.device_)
        self.history_: list[dict[str, Any]] = []
        self._fit_started, self._elapsed_before = time.perf_counter(), 0.0
        self._callback = callback
        self._checkpoint = None if checkpoint is None else Path(checkpoint)
        self._checkpoint_every = checkpoint_every
        self._saved = None  # (phase, epoch) of the checkpoint on disk written by this run
        phases = self._phases(data)
        planned = sum(p.epochs for p in phases if p.run is None) + self._extra_epochs()
        self._log_every, self._log_events = self._log_plan(planned)
        progress: dict[str, Any] = {"phase": phases[0].name, "epoch": 0}
        opt_state = sched_state = None
        if resume and checkpoint is not None and Path(checkpoint).exists():
            # Under torchrun the restored "augment" state is rank 0's; it is never drawn from, as
            # every epoch re-seeds each rank's stream before its first batch (_run_phase).
            progress, opt_state, sched_state = self._restore_training(checkpoint)
            self._saved = (progress["phase"], progress.get("epoch"))
            self._elapsed_before = next((r["elapsed"] for r in reversed(self.history_) if "elapsed" in r), 0.0)
        names = [p.name for p in phases]
        if progress["phase"] not in names:
            raise CheckpointError(f"{checkpoint} stopped in phase {progress['phase']!r}, unknown to {type(self).__name__}")
        todo = phases[names.index(progress["phase"]):]
        for i, phase in enumerate(todo):
            # Epochs of the phases after this one, for the log line's time estimate; None when one
            # of them runs its own loop (DEC's clustering) and so has no epoch count to go by.
            later = todo[i + 1:]
            self._epochs_after = None if any(p.run is not None for p in later) else sum(p.epochs for p in later)
            resumed_here = phase.name == progress["phase"]
            state = opt_state if resumed_here else None
            if phase.run is not None:
                phase.run(progress if resumed_here else {"phase": phase.name}, state)
            else:
                start = int(progress.get("epoch", 0)) if resumed_here else 0
                self._run_phase(phase, start, state, sched_state if resumed_here else None)
        self._finish_fit(data)
        for name in ("_x", "_data", "_net", "_augment", "_callback", "_generators", "_optimizer", "_scheduler",
                     "_instance_data", "_instance_x", "_epochs_after", "_log_every", "_log_events", "_fit_started",
                     "_elapsed_before"):
            self.__dict__.pop(name, None)

    def _make_optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model_.parameters(), lr=phase.lr, weight_decay=self.weight_decay, fused=True)

    def _run_phase(self, phase: Phase, start_epoch: int, opt_state: Any, sched_state: Any) -> None:
        """A standard phase: ``phase.epochs`` epochs of ``_training_step`` over shuffled batches."""
        optimizer = self._make_optimizer(phase)
        scheduler = None
        if phase.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=phase.epochs)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        if scheduler is not None and sched_state is not None:
            scheduler.load_state_dict(sched_state)
        self._optimizer, self._scheduler = optimizer, scheduler
        if start_epoch >= phase.epochs:
            return
        if phase.start is not None and start_epoch == 0 and opt_state is None:
            phase.start()
        world, rank = dist_utils.world_size(), dist_utils.rank()
        net = self._train_module()
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                net, device_ids=[self.device_.index] if self.device_.type == "cuda" else None,
                find_unused_parameters=self._find_unused_parameters(phase, start_epoch),
            )
        self._net = net
        reseed: Callable[[int], None] | None = None
        if world > 1:
            seed, augment_gen = self._seed(), self._generators["augment"]

            def reseed_augment(epoch: int) -> None:
                # Each rank's augmentations of an epoch depend on (seed, rank, phase, epoch) only, so
                # a resumed run draws what an uninterrupted one draws. One process keeps its single
                # continuing stream (the checkpoint holds it), so its results stay as they were.
                augment_gen.manual_seed(dist_utils.epoch_seed(seed, rank, phase.name, epoch))

            reseed = reseed_augment

        phase_started = time.perf_counter()

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            record: dict[str, Any] = {"phase": phase.name} if phase.record_phase else {}
            record.update({"epoch": epoch + 1, **logs})
            dist_utils.broadcast_buffers(self.model_)  # rank 0's BatchNorm statistics everywhere
            self._on_epoch_end(phase, epoch, record)
            last = epoch + 1 == phase.epochs
            if self._data.labels is not None and ((epoch + 1) % self.eval_every == 0 or last):
                (phase.evaluate or self._evaluate_record)(record)
            # Wall time per epoch so far in this phase (evaluation included) times the epochs left.
            per_epoch = (time.perf_counter() - phase_started) / (epoch + 1 - start_epoch)
            after = getattr(self, "_epochs_after", 0)
            left = phase.epochs - epoch - 1 + (after or 0)
            shown = (last or (epoch + 1) % self._log_every == 0
                     or (self._log_events and any(k in record for k in _LOGGED_EVENTS)))
            self._emit(record, seconds_left=per_epoch * left if left else None, whole_fit=after is not None,
                       log=shown)
            due = (epoch + 1) % self._checkpoint_every == 0
            # Ctrl-C under `hiclust train` (hiclust.interrupt): a checkpoint here, then the stop.
            stop = interrupt.stop_requested()
            if self._checkpoint is not None and ((due and not last) or (last and phase.checkpoint_last) or stop):
                self._save_training({"phase": phase.name, "epoch": epoch + 1})

        self._guard_non_finite(lambda: train_loop(
            net, lambda batch, epoch: self._training_step(phase, batch, epoch), self._phase_data(phase),
            optimizer=optimizer, epochs=phase.epochs, batch_size=self.batch_size, shard=(rank, world),
            extra_passes=self._extra_passes(phase),
            shuffle_generator=self._generators["shuffle"], start_epoch=start_epoch, scheduler=scheduler,
            on_epoch_end=on_epoch_end, on_epoch_start=reseed, progress=self.verbose and dist_utils.is_main(),
            desc=f"{self._LOG_NAME}" + ("" if phase.name == "train" else f" {phase.name}"),
        ))

    def _guard_non_finite(self, run: Callable[[], Any]) -> Any:
        """Runs ``run``; a NonFiniteLossError says which checkpoint is left."""
        try:
            return run()
        except NonFiniteLossError as exc:
            if self._checkpoint is None:
                raise
            if self._saved is not None:
                phase, epoch = self._saved
                at = f"epoch {epoch}" if phase in (None, "train") else (
                    f"{phase} phase" if epoch is None else f"{phase} epoch {epoch}")
                kept = f"The last good checkpoint {self._checkpoint} ({at}) was kept."
            else:
                kept = "No checkpoint had been written yet."
            raise NonFiniteLossError(f"{exc} {kept}") from None

    def _evaluate_record(self, record: dict[str, Any]) -> None:
        record.update(self._label_metrics(self._data.labels, self._predict_raw(self._data.x)))

    def _emit(self, record: dict[str, Any], seconds_left: float | None = None, whole_fit: bool = True,
              log: bool = True) -> None:
        """Appends ``record`` to ``history_``, logs it (verbose and ``log``), passes it to the
        callback; ``seconds_left``: the estimated rest of the fit (``whole_fit=False``: of this
        phase), shown on the log line only."""
        # Wall seconds since the fit began, evaluations included (a resumed fit continues the count
        # of the run it resumes): quality against time reads off history.jsonl.
        started = getattr(self, "_fit_started", None)
        if started is not None:
            record.setdefault("elapsed", round(self._elapsed_before + time.perf_counter() - started, 3))
        self.history_.append(record)
        if self.verbose and log and dist_utils.is_main():
            # Lists (e.g. CoHiClust's leaf_mass) stay in history_ and history.jsonl, off the log line.
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                             if not isinstance(v, list) and k != "elapsed")
            if seconds_left is not None:
                shown += f" left≈{format_duration(seconds_left)}" + ("" if whole_fit else " (this phase)")
            print(f"[{self._LOG_NAME}] {shown}", file=sys.stderr, flush=True)
        if self._callback is not None and dist_utils.is_main():
            self._callback(record)

    @staticmethod
    def _label_metrics(labels: torch.Tensor | None, pred: np.ndarray) -> dict[str, float]:
        if labels is None:
            return {}
        from hiclust.metrics import evaluate

        return {k: v for k, v in evaluate(labels.numpy(), pred).items() if k in ("acc", "nmi", "ari")}

    # -------------------------------------------------------------------------- inference
    @torch.no_grad()
    def _batched_eval(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      batch_size: int = 1024) -> torch.Tensor:
        """Applies ``fn`` to model-input batches of raw ``x`` on the fitted device; CPU result."""
        self.model_.eval()
        outs = [fn(self._eval_input(batch)).float().cpu() for batch in iter_batches(x, batch_size, self.device_)]
        return torch.cat(outs)

    def _predict_raw(self, x: torch.Tensor) -> np.ndarray:
        return self._batched_eval(self._proba, x).argmax(1).numpy()

    def _prepare_like_fit(self, X: Any) -> torch.Tensor:
        check_is_fitted(self)
        if len(self.input_shape_) == 1 and getattr(X, "ndim", None) == 1 and X.shape[0] == self.input_shape_[0]:
            raise ValueError(
                f"expected a matrix of rows (N, {self.input_shape_[0]}), got one row of shape ({self.input_shape_[0]},); "
                "pass X.reshape(1, -1) for a single sample"
            )
        fitted_names = getattr(self, "feature_names_in_", None)
        given = _column_names(X)
        if given is not None and fitted_names is not None and given != list(fitted_names):
            # Checked before the values: a table laid out like the training file (with its id or
            # label column) would otherwise fail on a non-numeric column, or on the shape.
            fitted = list(fitted_names)
            extra = [c for c in given if c not in fitted]
            missing = [c for c in fitted if c not in given]
            what = "; ".join(part for part in (
                f"not seen by fit: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}" if extra else "",
                f"missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}" if missing else "",
                "the same columns in another order" if not extra and not missing else "",
            ) if part)
            raise ValueError(
                f"X's columns are not those fit saw ({what}); select them as fit saw them: X[model.feature_names_in_]"
            )
        prepared = prepare_data(X)
        x = prepared.x
        if tuple(x.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"this model was fitted on inputs of shape {self.input_shape_} per sample, got {tuple(x.shape[1:])}"
            )
        if x.ndim == 2 and not is_streamed(x) and getattr(self, "feature_mean_", None) is not None:
            self._warn_if_scaled_otherwise(x)
        return x

    def _warn_if_scaled_otherwise(self, x: torch.Tensor) -> None:
        """Warns when rows given to predict lie far outside the training matrix: on average over
        all their values more than FAR_FROM_TRAINING training standard deviations from the training
        means, as when the model was fitted on standardized rows and is given raw ones (or the
        reverse). Such rows all fall on one side of every split, confidently and wrongly."""
        # float32 like the rows (one temporary of their size); the mean is accumulated in float64
        z = (x.float() - self.feature_mean_.cpu()) / self.feature_std_.cpu()
        far = float(z.abs().sum(dtype=torch.float64)) / max(z.numel(), 1)
        if far > FAR_FROM_TRAINING:
            warnings.warn(
                f"the rows given lie far from the training matrix (on average {far:,.1f} training standard "
                "deviations from the training column means); prepare them as the training matrix was (the same "
                "scaling, the same columns in the same order), or the clusters they get mean little",
                UserWarning, stacklevel=user_stacklevel(),
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) cluster probabilities (rows sum to 1)."""
        return self._batched_eval(self._proba, self._prepare_like_fit(X)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """(N,) cluster ids 0..K−1: the most probable cluster."""
        return self._predict_raw(self._prepare_like_fit(X))

    def transform(self, X: Any) -> np.ndarray:
        """(N, d) learned features of X (the backbone's output, or the embedding z)."""
        return self._batched_eval(self._embed, self._prepare_like_fit(X)).numpy()

    # -------------------------------------------------------------------------- persistence
    def _config(self) -> dict[str, Any]:
        params = self.get_params(deep=False)
        for key, value in params.items():
            if isinstance(value, nn.Module):
                params[key] = f"custom:{type(value).__name__}"
            elif isinstance(value, tuple):
                params[key] = list(value)  # JSON has no tuples; keep configs comparable
        return params

    def _state(self) -> dict[str, Any]:
        """The fitted state: weights, input geometry, history and the method's extra state."""
        state = {
            "model": self.model_.state_dict(),
            "history": self.history_,
            "input_shape": list(self.input_shape_),
            "image_size": self.image_size_,
            "feature_mean": None if self.feature_mean_ is None else self.feature_mean_.cpu(),
            "feature_std": None if self.feature_std_ is None else self.feature_std_.cpu(),
            "feature_names": None if getattr(self, "feature_names_in_", None) is None else list(self.feature_names_in_),
        }
        state.update(self._extra_state())
        return state

    def _restore_state(self, state: dict[str, Any], path: Any) -> None:
        """Loads weights, history and extra state into an already built ``model_``."""
        if list(self.input_shape_) != list(state["input_shape"]):
            raise CheckpointError(
                f"{path} was trained on inputs of shape {tuple(state['input_shape'])}; this run has {self.input_shape_}"
            )
        self._load_extra_state(state, path)
        try:
            self.model_.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit this model's layers: {exc}") from None
        self.history_ = list(state["history"])
        if state.get("feature_names") is not None:
            self.feature_names_in_ = np.asarray(state["feature_names"], dtype=object)

    def save(self, path: str | Path) -> None:
        """Writes the fitted model (weights, fitted state, config; no optimizer) atomically."""
        check_is_fitted(self)
        save_checkpoint(path, model_class=type(self).__name__, config=self._config(), state=self._state())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "DeepClusterer":
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
        est._load_extra_state(state, path)
        est.model_ = est._place(est._build_model())
        est._restore_state(state, path)
        est._after_load(state)
        return est

    def _after_load(self, state: dict[str, Any]) -> None:
        """Fitted attributes derived from the loaded state (default: none)."""

    def _check_resume_config(self, config: dict[str, Any], path: Any) -> None:
        """Raises CheckpointError naming every parameter in which checkpoint ``config`` differs."""
        mine = self._config()
        free = self._resume_free_params()
        diff = {k: (config.get(k), v) for k, v in mine.items() if k not in free and config.get(k) != v}
        if diff:
            raise CheckpointError(
                f"cannot resume from {path}: its configuration differs in "
                + ", ".join(f"{k} (checkpoint {_shown(a)}, now {_shown(b)})" for k, (a, b) in diff.items())
            )

    def _check_resume_state(self, state: dict[str, Any], path: Any) -> None:
        """Raises ValueError when this run's parameters cannot continue checkpoint ``state``
        (default: nothing to check beyond the configuration)."""

    def _save_training(self, progress: dict[str, Any]) -> None:
        """Writes a training checkpoint: fitted state + optimizer, schedule, RNGs and ``progress``."""
        state = self._state()
        # Never replace the last good checkpoint with weights that went non-finite.
        bad = [k for k, v in state["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteLossError(
                f"non-finite values in {', '.join(bad[:3])} after epoch {progress.get('epoch')}; the checkpoint "
                f"{self._checkpoint} was not overwritten. Lower the learning rate or check the input data."
            )
        scheduler = getattr(self, "_scheduler", None)
        state.update(
            optimizer=self._optimizer.state_dict(), scheduler=None if scheduler is None else scheduler.state_dict(),
            rng=capture_rng_state(), generators={k: g.get_state() for k, g in self._generators.items()},
            progress=progress,
        )
        if dist_utils.is_main():  # every rank checked finiteness above; one writes
            save_checkpoint(self._checkpoint, model_class=type(self).__name__, config=self._config(), state=state)
        self._saved = (progress.get("phase"), progress.get("epoch"))
        if interrupt.stop_requested():  # Ctrl-C asked for a stop at this resumable point
            raise interrupt.TrainingInterrupted(progress)

    def _restore_training(self, path: Any) -> tuple[dict[str, Any], Any, Any]:
        """Restores the fitted state and RNGs of a training checkpoint.

        Returns (its ``progress``, the optimizer state, the scheduler state) for the phase that
        ``progress`` names.
        """
        config, state = load_checkpoint(path, expected_class=type(self).__name__)
        if "progress" not in state:
            raise CheckpointError(f"{path} is a saved model, not a training checkpoint; it cannot be resumed")
        self._check_resume_config(config, path)
        self._check_resume_state(state, path)
        self._restore_state(state, path)
        restore_rng_state(state["rng"])
        for k, g in self._generators.items():
            if k in state["generators"]:
                g.set_state(state["generators"][k])
        return dict(state["progress"]), state["optimizer"], state.get("scheduler")
