"""WebDataset-style ``.tar`` shards for image collections too large to handle as loose files.

``hiclust shard DATASET --out DIR`` (:func:`write_shards`) writes::

    DIR/shard-000000.tar     samples 0 .. shard_size-1, then shard-000001.tar, ...
    DIR/index.npz            per image: shard number, byte offset and size of the image's data
                             inside its tar, label (-1 when unlabelled), and the item ids
    DIR/dataset.json         name, N, image shape (C, H, W), class names, image format, shards,
                             hiclust version

Each sample is a group of tar members sharing one key (the zero-padded row number, without
dots): ``KEY.png`` (or ``KEY.jpg``), ``KEY.cls`` (the integer label as ASCII text, labelled data
only) and ``KEY.id.txt`` (the item id, e.g. the image's path relative to its folder, UTF-8). That
is the layout the ``webdataset`` package reads, so the shards can feed other tools as they are.
(The id is not ``KEY.id``: webdataset's default decoder reads ``.id`` members as integers and
would fail on a path; ``.id.txt`` decodes to text.)

The images are stored as they are in the dataset (already decoded and resized): PNG by default,
which is lossless, so the dataset read back has exactly the same pixels and a model trained on
the shards sees what it would have seen on the folder. JPEG (``image_format="jpg"``) is about
3-10x smaller but changes pixels slightly.

:class:`ShardImages` reads the images back in any order through ``index.npz`` (a seek and one
read per image, no scan of the tar), and :func:`load_shards` turns a shard directory into an
:class:`~hiclust.data.datasets.ImageDataset`: in memory when it fits the memory budget,
otherwise streamed a batch at a time.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import sys
import tarfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiclust.data.streaming import DiskRows, iter_batches

__all__ = ["write_shards", "ShardImages", "load_shards", "check_out_dir", "SHARD_FORMAT", "IMAGE_FORMATS"]

SHARD_FORMAT = "hiclust-shards"
_FORMAT_VERSION = 1
IMAGE_FORMATS = ("png", "jpg")
_META, _INDEX = "dataset.json", "index.npz"
_ID_EXT = "id.txt"  # not "id": webdataset decodes .id members with int()
_BLOCK = tarfile.BLOCKSIZE  # 512: tar pads every member's data to a multiple of this
_MAX_OPEN = 64  # open shard files kept per process (a directory may hold thousands of shards)


def _shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _threads() -> int:
    """Threads for PNG/JPEG coding in this process: Pillow releases the GIL while it encodes and
    decodes, so threads scale; inside a DataLoader worker (already one process per core) one."""
    if torch.utils.data.get_worker_info() is not None:
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path if shards may be written there (it does not exist, or is an empty
    directory); ValueError otherwise, so that nobody's files are replaced or mixed with shards."""
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} already exists and is not an empty directory; pick an empty or new "
                         "directory for the shards")
    return out


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _encode(chw: np.ndarray, image_format: str, quality: int) -> bytes:
    """One uint8 image (C, H, W), C in {1, 3} → PNG or JPEG bytes (grayscale stays 1 channel)."""
    from PIL import Image

    a = chw[0] if chw.shape[0] == 1 else np.ascontiguousarray(chw.transpose(1, 2, 0))
    buf = io.BytesIO()
    im = Image.fromarray(a)  # uint8 (H, W) → mode L, (H, W, 3) → RGB
    if image_format == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> int:
    """Appends one regular file; returns the byte offset of its data in the archive."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))
    # The data ends padded to a block; the offset before it does not depend on the header's size
    # (an extended PAX header for a long name would make the header longer than one block).
    return tar.offset - -(-len(data) // _BLOCK) * _BLOCK


def _pack_ids(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """N strings → (UTF-8 bytes of all, concatenated: uint8; N+1 int64 start offsets). Compact for
    millions of paths, unlike a fixed-width unicode array (4 bytes × the longest id × N)."""
    encoded = [s.encode("utf-8") for s in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack_ids(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = blob.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


def write_shards(data: Any, out_dir: str | os.PathLike[str], *, shard_size: int = 10000,
                 image_format: str = "png", quality: int = 95, progress: bool = True) -> dict[str, Any]:
    """Writes ``data``'s images as WebDataset ``.tar`` shards plus ``index.npz`` and ``dataset.json``.

    The images are read ``256`` at a time (:func:`~hiclust.data.streaming.iter_batches`), so a
    streamed dataset is never held whole. Everything is written into a hidden temporary
    directory beside ``out_dir`` that is renamed to ``out_dir`` once complete: an interrupted
    or failed run leaves no ``out_dir`` (and removes its temporary directory, except after a
    hard kill, which leaves a ``.NAME.partial-*`` directory to delete).

    Args:
        data: an :class:`~hiclust.data.datasets.ImageDataset` (uint8 images ``(N, C, H, W)``, a
            tensor or a :class:`~hiclust.data.streaming.DiskRows`).
        out_dir: a new or empty directory (anything else is refused with ValueError).
        shard_size: images per shard (the last shard holds the rest).
        image_format: ``"png"`` (lossless, default) or ``"jpg"``/``"jpeg"`` (lossy, smaller).
        quality: JPEG quality 1..100 (ignored for PNG).
        progress: show a progress bar on stderr.

    Returns:
        ``{"out_dir": str, "images": N, "shards": count, "bytes": total size of the shard files,
        "seconds": wall time}``.
    """
    from hiclust import __version__
    from hiclust.data.datasets import ImageDataset

    if not isinstance(data, ImageDataset):
        raise TypeError(f"shards hold images; got {type(data).__name__} (feature matrices are read directly with "
                        "features:PATH)")
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise ValueError(f"--shard-size must be a positive number of images per shard, got {shard_size!r}")
    fmt = str(image_format).lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"--format must be png or jpg, got {image_format!r}")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"--quality must be an integer from 1 to 100, got {quality!r}")
    out = check_out_dir(out_dir)

    started = time.perf_counter()
    n = len(data)
    c, h, w = data.image_shape
    n_shards = -(-n // int(shard_size))
    width = max(6, len(str(n - 1)))  # keys sort in row order as text too
    ids = [str(i) for i in data.ids()]
    labels = None if data.labels is None else data.labels.numpy()
    shard_of = np.arange(n, dtype=np.int64) // int(shard_size)
    offsets = np.zeros(n, dtype=np.int64)
    sizes = np.zeros(n, dtype=np.int64)
    mtime = int(time.time())

    out.parent.mkdir(parents=True, exist_ok=True)
    # Created with mkdir (not tempfile.mkdtemp, whose 0700 mode the renamed directory would keep,
    # hiding the shards from the group a data directory is usually shared with).
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    tar: tarfile.TarFile | None = None
    fh: Any = None
    bar = None
    try:
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="shard", unit="img", leave=False, file=sys.stderr)
        current = -1
        row = 0
        with ThreadPoolExecutor(max_workers=_threads()) as pool:
            for batch in iter_batches(data.images, 256):
                arr = batch.numpy()
                if arr.dtype != np.uint8 or arr.shape[1:] != (c, h, w):
                    raise ValueError(f"rows {row}..{row + len(arr) - 1} are {arr.dtype} {arr.shape[1:]}, not uint8 "
                                     f"{(c, h, w)} like the dataset")
                encoded = list(pool.map(lambda a: _encode(a, fmt, int(quality)), arr))
                for blob in encoded:
                    if shard_of[row] != current:
                        if tar is not None:
                            _close_shard(tar, fh)
                        current = int(shard_of[row])
                        fh = open(tmp / _shard_name(current), "wb")
                        tar = tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT)
                    key = f"{row:0{width}d}"
                    offsets[row] = _add_member(tar, f"{key}.{fmt}", blob, mtime)
                    sizes[row] = len(blob)
                    if labels is not None:
                        _add_member(tar, f"{key}.cls", str(int(labels[row])).encode("ascii"), mtime)
                    _add_member(tar, f"{key}.{_ID_EXT}", ids[row].encode("utf-8"), mtime)
                    row += 1
                if bar is not None:
                    bar.update(len(arr))
        if tar is not None:
            _close_shard(tar, fh)
        if bar is not None:
            bar.close()
        if row != n:
            raise RuntimeError(f"read {row} images but the dataset has {n}; report this as a bug")

        id_bytes, id_offsets = _pack_ids(ids)
        np.savez(tmp / _INDEX, shard=shard_of.astype(np.int32), offset=offsets, size=sizes,
                 label=np.full(n, -1, dtype=np.int64) if labels is None else labels.astype(np.int64),
                 id_bytes=id_bytes, id_offsets=id_offsets)
        meta = {
            "format": SHARD_FORMAT, "format_version": _FORMAT_VERSION, "name": data.name, "n": n,
            "image_shape": [c, h, w], "class_names": data.class_names, "labelled": labels is not None,
            "item_ids": data.item_ids is not None, "image_format": fmt,
            "quality": int(quality) if fmt == "jpg" else None, "shard_size": int(shard_size), "shards": n_shards,
            "shard_files": [_shard_name(i) for i in range(n_shards)], "key_width": width,
            "members": [fmt, *(["cls"] if labels is not None else []), _ID_EXT],
            "hiclust_version": __version__,
        }
        (tmp / _META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        total = sum((tmp / f).stat().st_size for f in meta["shard_files"])
        # An empty out_dir was accepted above: it is replaced by the finished directory. A
        # directory that filled up meanwhile makes the rename fail (OSError), and nothing of
        # someone else's is touched.
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        if bar is not None:
            bar.close()
        if fh is not None and not fh.closed:
            fh.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out_dir": str(out), "images": n, "shards": n_shards, "bytes": int(total),
            "seconds": time.perf_counter() - started}


def _close_shard(tar: tarfile.TarFile, fh: Any) -> None:
    tar.close()
    fh.flush()
    os.fsync(fh.fileno())  # on disk before the directory is renamed into place
    fh.close()


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _read_meta(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such shard directory (write one with `hiclust shard DATASET "
                                f"--out {directory}`)")
    path = directory / _META
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a shard directory: no {_META} (write one with "
                                f"`hiclust shard DATASET --out DIR`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rewrite the shards") from None
    if not isinstance(meta, dict) or meta.get("format") != SHARD_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path} does not describe hiclust shards (format {found!r}); write them with `hiclust shard`")
    if int(meta.get("format_version", 0)) > _FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer hiclust ({meta.get('hiclust_version')}); upgrade hiclust")
    lacking = [k for k in ("n", "image_shape", "shard_files") if k not in meta]
    if lacking or len(meta["image_shape"]) != 3 or int(meta["image_shape"][0]) not in (1, 3):
        raise ValueError(f"{path} is incomplete or damaged ({', '.join(lacking) or 'image_shape'}); rewrite the shards")
    return meta


def _read_index(directory: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    path = directory / _INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a complete shard directory: no {_INDEX}; rewrite the shards")
    with np.load(path, allow_pickle=False) as z:
        index = {k: z[k] for k in z.files}
    n = int(meta["n"])
    for key in ("shard", "offset", "size", "label"):
        if key not in index or index[key].shape != (n,):
            raise ValueError(f"{path}: '{key}' is missing or not {n} long; rewrite the shards")
    if "id_offsets" not in index or index["id_offsets"].shape != (n + 1,) or "id_bytes" not in index:
        raise ValueError(f"{path}: the item ids are missing or not {n} long; rewrite the shards")
    files = meta["shard_files"]
    if n and (index["shard"].min() < 0 or index["shard"].max() >= len(files)):
        raise ValueError(f"{path} names shards that {directory / _META} does not list; rewrite the shards")
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(files)} shard files are missing in {directory}: "
                                f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    # A truncated copy would otherwise fail only when its last images are read, mid-epoch.
    ends = np.zeros(len(files), dtype=np.int64)
    np.maximum.at(ends, index["shard"].astype(np.int64), index["offset"] + index["size"])
    short = [f for f, e in zip(files, ends) if (directory / f).stat().st_size < e]
    if short:
        raise ValueError(f"shard file(s) {', '.join(short[:3])} in {directory} are shorter than index.npz says "
                         "(an incomplete copy?); copy them again")
    return index


class ShardImages(DiskRows):
    """The images of a shard directory as uint8 ``(N, C, H, W)``, read on demand.

    Each read looks up the image's shard, byte offset and size in ``index.npz``, reads those
    bytes (``os.pread``, no seeking, so views sharing a handle do not disturb each other) and
    decodes them with Pillow: ``(k, C, H, W)`` in the order asked, repeats allowed. Open shard
    files are cached per process (at most 64, least recently used closed first); the cache is
    keyed by the process id and left out of pickles, so DataLoader workers, forked or spawned,
    open their own.

    Args:
        directory: written by :func:`write_shards`.
        workers: DataLoader worker processes for :meth:`batches` (0: read in the caller).
    """

    def __init__(self, directory: str | os.PathLike[str], *, workers: int = 0,
                 _meta: dict[str, Any] | None = None, _index: dict[str, np.ndarray] | None = None) -> None:
        directory = Path(directory).expanduser()
        meta = _meta if _meta is not None else _read_meta(directory)
        index = _index if _index is not None else _read_index(directory, meta)
        c, h, w = (int(s) for s in meta["image_shape"])
        super().__init__((int(meta["n"]), c, h, w), torch.uint8)
        self.directory = str(directory)
        self.files = [str(directory / f) for f in meta["shard_files"]]
        self.workers = int(workers)
        self._shard = index["shard"].astype(np.int64)
        self._offset = index["offset"].astype(np.int64)
        self._size = index["size"].astype(np.int64)
        self._handles: OrderedDict[int, Any] = OrderedDict()
        self._pid = os.getpid()

    def describe(self) -> str:
        return f"{len(self.files):,} shards, {len(self):,} images under {self.directory}"

    # -------------------------------------------------------------- file handles
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()  # open files cannot travel to another process
        state["_pid"] = None
        return state

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked worker: the parent's handles are not this process's to use
            self._handles, self._pid = OrderedDict(), os.getpid()
        f = self._handles.get(shard)
        if f is None:
            f = open(self.files[shard], "rb", buffering=0)
            self._handles[shard] = f
            while len(self._handles) > _MAX_OPEN:
                self._handles.popitem(last=False)[1].close()
        else:
            self._handles.move_to_end(shard)
        return f.fileno()

    def close(self) -> None:
        """Closes this process's open shard files (they are reopened when needed)."""
        if self._pid == os.getpid():
            for f in self._handles.values():
                f.close()
        self._handles = OrderedDict()

    def _bytes(self, row: int) -> bytes:
        shard, offset, size = int(self._shard[row]), int(self._offset[row]), int(self._size[row])
        fd = self._fd(shard)
        if hasattr(os, "pread"):
            data = os.pread(fd, size, offset)
        else:  # Windows: no pread; reads happen in one thread per process here
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, size)
        if len(data) != size:
            raise OSError(f"{self.files[shard]} ends before image row {row} (offset {offset}, {size} bytes); "
                          "the shard is truncated, copy it again")
        return data

    # -------------------------------------------------------------- decoding
    def _decode(self, data: bytes, row: int) -> np.ndarray:
        """Encoded bytes → (C, H, W) uint8 (grayscale files become RGB in a colour dataset and
        vice versa, as the folder loader does)."""
        from PIL import Image

        from hiclust.data.datasets import CorruptImageError

        c, h, w = self._source_shape[1:]
        try:
            with Image.open(io.BytesIO(data)) as im:
                want = "L" if c == 1 else "RGB"
                a = np.asarray(im if im.mode == want else im.convert(want), dtype=np.uint8)
        except Exception as e:  # Pillow raises many types for bad data
            raise CorruptImageError(f"image row {row} in {self.files[int(self._shard[row])]} could not be decoded "
                                    f"({type(e).__name__}: {e}); rewrite the shards") from None
        if a.shape[:2] != (h, w):
            raise ValueError(f"image row {row} in {self.files[int(self._shard[row])]} is {a.shape[1]}x{a.shape[0]}, "
                             f"not {w}x{h} as dataset.json says; rewrite the shards")
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        # Each distinct row read once, in file order (rows are stored in order: ascending row
        # numbers are ascending (shard, offset)), then scattered into the order asked.
        uniq, inverse = np.unique(rows, return_inverse=True)
        blobs = [self._bytes(int(r)) for r in uniq]
        threads = _threads() if len(uniq) >= 32 else 1
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                decoded = list(pool.map(self._decode, blobs, uniq.tolist()))
        else:
            decoded = [self._decode(b, int(r)) for b, r in zip(blobs, uniq)]
        out = np.empty((len(uniq), *self._source_shape[1:]), dtype=np.uint8)
        for j, a in enumerate(decoded):
            out[j] = a
        same = len(uniq) == len(rows) and np.array_equal(uniq, rows)  # already in order: no copy
        return torch.from_numpy(out if same else out[inverse.ravel()])


def load_shards(path: str | os.PathLike[str], *, name: str, max_memory: int | None = None,
                workers: int | None = None) -> Any:
    """A shard directory (:func:`write_shards`) as an :class:`~hiclust.data.datasets.ImageDataset`.

    Args:
        path: the directory holding ``dataset.json``, ``index.npz`` and ``shard-*.tar``.
        name: the dataset's name (e.g. ``"shards:DIR"``).
        max_memory: bytes; when the uint8 images (N·C·H·W bytes) are larger, they stay on disk
            as a :class:`ShardImages` read a batch at a time; otherwise (or None) all are decoded
            into one tensor.
        workers: DataLoader worker processes of the streamed images' :meth:`ShardImages.batches`
            (default :func:`~hiclust.data.streaming.default_workers`; 0 reads in the caller).

    Raises:
        FileNotFoundError: no such directory, or ``dataset.json`` / ``index.npz`` / a shard missing.
        ValueError: the files do not agree with each other (truncated or foreign files).
    """
    from hiclust.data.datasets import ImageDataset

    directory = Path(path).expanduser()
    meta = _read_meta(directory)
    index = _read_index(directory, meta)
    images = ShardImages(directory, _meta=meta, _index=index)
    labels = torch.from_numpy(index["label"].astype(np.int64)) if meta.get("labelled") else None
    ids = _unpack_ids(index["id_bytes"], index["id_offsets"]) if meta.get("item_ids") else None
    if max_memory is None or images.nbytes_in_memory() <= max_memory:
        tensor = images.to_tensor(batch_size=1024)
        images.close()
        return ImageDataset(tensor, labels, meta.get("class_names"), name, ids)
    from hiclust.data.streaming import default_workers

    images.workers = default_workers() if workers is None else int(workers)
    return ImageDataset(images, labels, meta.get("class_names"), name, ids)
