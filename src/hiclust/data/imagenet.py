"""ImageNet-10 and ImageNet-Dogs: class subsets of the ILSVRC2012 train split.

Both are the deep-clustering benchmarks of CC and CoHiClust (docs/methods.md, "Reference
recipe"): ImageNet-10 has 10 classes chosen to be easy to tell apart, ImageNet-Dogs 15 dog breeds
(fine-grained). Each is read from an ImageNet folder in the layout of the official train archive
(and of ``torchvision.datasets.ImageNet``)::

    ROOT/train/n02056570/n02056570_10007.JPEG
    ROOT/train/n02085936/...

``ROOT`` may also be the ``train`` folder itself. Only the listed classes (WordNet ids) are read;
the others may be absent. Images are decoded in parallel threads and stored at one size: the
shorter side resized to ``image_size`` (default 224, the crop size of both recipes), then the
centre ``image_size × image_size`` square, the usual ImageNet evaluation framing. ImageNet cannot
be downloaded automatically (it needs an account at image-net.org).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hiclust._warnings import user_stacklevel
from hiclust.data.datasets import DatasetNotFoundError, ImageDataset, _register

__all__ = ["IMAGENET10_CLASSES", "IMAGENET_DOGS_CLASSES", "DEFAULT_IMAGENET_SIZE", "load_imagenet_subset"]

DEFAULT_IMAGENET_SIZE = 224

# WordNet id → class name, in label order (label i = i-th entry).
IMAGENET10_CLASSES: dict[str, str] = {
    "n02056570": "king penguin",
    "n02085936": "Maltese dog",
    "n02128757": "snow leopard",
    "n02690373": "airliner",
    "n02692877": "airship",
    "n03095699": "container ship",
    "n04254680": "soccer ball",
    "n04285008": "sports car",
    "n04467665": "trailer truck",
    "n07747607": "orange",
}

IMAGENET_DOGS_CLASSES: dict[str, str] = {
    "n02085936": "Maltese dog",
    "n02086646": "Blenheim spaniel",
    "n02088238": "basset",
    "n02091467": "Norwegian elkhound",
    "n02097130": "giant schnauzer",
    "n02099601": "golden retriever",
    "n02101388": "Brittany spaniel",
    "n02101556": "clumber",
    "n02102177": "Welsh springer spaniel",
    "n02105056": "groenendael",
    "n02105412": "kelpie",
    "n02105855": "Shetland sheepdog",
    "n02107142": "Doberman",
    "n02110958": "pug",
    "n02112137": "chow",
}

_EXTENSIONS = (".jpeg", ".jpg", ".png")


def _train_dir(root: Path, wnids: list[str]) -> Path:
    """The folder holding the wnid sub-folders: ROOT/train, ROOT/imagenet/train or ROOT itself."""
    candidates = [root / "train", root / "imagenet" / "train", root]
    for c in candidates:
        if c.is_dir() and any((c / w).is_dir() for w in wnids):
            return c
    return candidates[0]


def _decode_square(path: Path, size: int) -> np.ndarray | str:
    """One image → uint8 (size, size, 3): shorter side to ``size``, centre square; an error string if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            # JPEG: let libjpeg decode at a reduced scale (≥ the target) — several times faster for large photos.
            im.draft("RGB", (size, size))
            im = im.convert("RGB")  # ImageNet holds a few CMYK and grayscale JPEGs
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
            left, top = (nw - size) // 2, (nh - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8).copy()
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"


def load_imagenet_subset(name: str, classes: dict[str, str], root: Path, split: str, download: bool,
                         image_size: int | None = None) -> ImageDataset:
    """The images of ``classes`` (wnid → name) from an ImageNet train folder as one uint8 tensor
    ``(N, 3, S, S)``, S = ``image_size`` (default 224); labels follow the order of ``classes``."""
    if download:
        raise ValueError(f"{name!r} cannot be downloaded automatically: get ILSVRC2012 (image-net.org) and pass its folder "
                         "as root (holding train/<wnid>/*.JPEG)")
    if split == "test":
        raise ValueError(f"{name!r} is built from the ImageNet train split only (the clustering protocol trains and "
                         "evaluates on it); use split='train' or 'all' (both give the same images)")
    size = DEFAULT_IMAGENET_SIZE if image_size is None else int(image_size)
    wnids = list(classes)
    base = _train_dir(root, wnids)
    missing = [w for w in wnids if not (base / w).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"{name}: {len(missing)} of its {len(wnids)} ImageNet classes are missing under {base}: "
            f"{', '.join(missing)}; pass as root the ImageNet folder holding train/<wnid>/*.JPEG"
        )
    files: list[Path] = []
    labels: list[int] = []
    empty = []
    for label, w in enumerate(wnids):  # one listing per class folder (≤ 15), not per image
        found = sorted(p for p in (base / w).iterdir() if p.suffix.lower() in _EXTENSIONS and not p.name.startswith("."))
        if not found:
            empty.append(w)
        files += found
        labels += [label] * len(found)
    if empty:
        raise DatasetNotFoundError(f"{name}: the class folder(s) {', '.join(empty)} under {base} hold no JPEG images")
    workers = min(16, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        decoded = list(pool.map(lambda p: _decode_square(p, size), files, chunksize=64))
    ok = np.array([not isinstance(d, str) for d in decoded], dtype=bool)
    if not ok.all():
        bad = [(files[i], decoded[i]) for i in np.flatnonzero(~ok)]
        listing = "; ".join(f"{p} ({why})" for p, why in bad[:3]) + (" ..." if len(bad) > 3 else "")
        warnings.warn(f"{name}: skipped {len(bad)} unreadable image file(s) of {len(files)}: {listing}", stacklevel=user_stacklevel())
    images = np.stack([d for d in decoded if not isinstance(d, str)]).transpose(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)[ok])
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), y, list(classes.values()), name)


def _loader(name: str, classes: dict[str, str]):
    def load(root: Path, split: str, download: bool, image_size: int | None = None) -> ImageDataset:
        return load_imagenet_subset(name, classes, root, split, download, image_size)

    load.decodes_at_size = True  # type: ignore[attr-defined]  # load_dataset passes image_size
    load.__doc__ = f"{name}: {len(classes)} ImageNet train classes, 3 × S × S (S = image_size, default 224)."
    return load


_register("imagenet10")(_loader("imagenet10", IMAGENET10_CLASSES))
_register("imagenet_dogs")(_loader("imagenet_dogs", IMAGENET_DOGS_CLASSES))
