"""Data read from disk a batch at a time, for collections larger than the memory budget.

:class:`DiskRows` stands in for the ``(N, ...)`` tensor of a dataset (uint8 images ``(N, C, H, W)``
or float32 features ``(N, D)``) where that tensor would not fit: it has the tensor's ``shape``,
``dtype``, ``ndim`` and ``len``, and indexing it with an int, a slice or an index array reads just
those rows, in the order asked. Training and inference read it through :meth:`DiskRows.batches`,
a PyTorch ``DataLoader`` whose worker processes read and decode whole batches while the
network runs; the batches are the rows of the same shuffled order the in-memory path draws, so
a run on streamed data equals the in-memory run of the same seed (see ``docs/scaling.md``).

Kinds of rows (each in its own module): :class:`FolderImages` (image files decoded and resized
as the in-memory folder loader does), :class:`NpyRows` (a ``.npy`` matrix read a set of rows at a time with positioned reads,
so resident memory stays at one batch),
``hiclust.data.shards.ShardImages`` (WebDataset ``.tar`` shards).

The memory budget (:func:`parse_memory`, :func:`memory_budget`): ``"auto"`` is a quarter of the
machine's physical memory; a dataset whose uint8/float32 tensor is larger streams.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "configure", "DiskRows", "FolderImages", "NpyRows", "StandardizedRows", "column_stats", "is_streamed", "parse_memory", "memory_budget", "default_workers",
    "iter_batches", "announce_streamed",
]


def is_streamed(x: Any) -> bool:
    """True for data read from disk a batch at a time (a :class:`DiskRows`)."""
    return isinstance(x, DiskRows)


# Process-wide settings of the command line's --max-memory / --workers (see configure).
_SETTINGS: dict[str, int | None] = {"max_memory": None, "workers": None}
# Told (name, bytes in memory, budget) when a dataset is streamed: the command line's notice.
# None in the Python API, which stays silent (``ds.is_streamed`` says it there).
_ON_STREAM: Callable[[str, int, int], None] | None = None


def configure(max_memory: str | int | None = None, workers: int | None = None,
              on_stream: Callable[[str, int, int], None] | None = None) -> None:
    """Sets what ``max_memory="auto"`` and ``workers=None`` mean for this process (the command
    line's ``--max-memory`` and ``--workers``); None leaves a setting at its default.
    ``on_stream(name, nbytes, budget)`` is called for every dataset :func:`~hiclust.data.load_dataset`
    streams because its ``nbytes`` exceed the ``budget`` (None: nothing is called)."""
    global _ON_STREAM
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
        raise ValueError(f"workers must be an integer >= 0 (0: read in the main process), got {workers!r}")
    budget = None if max_memory is None or str(max_memory).strip().lower() == "auto" else parse_memory(max_memory)
    _SETTINGS.update(max_memory=budget, workers=None if workers is None else int(workers))
    _ON_STREAM = on_stream


def announce_streamed(data: Any, budget: int | None) -> None:
    """Calls the ``on_stream`` callback of :func:`configure` when ``data`` (an ``ImageDataset`` or
    ``FeatureDataset``) is streamed from disk because it is larger than ``budget`` bytes."""
    if _ON_STREAM is None or budget is None or not getattr(data, "is_streamed", False):
        return
    rows = data.features if hasattr(data, "features") else data.images
    _ON_STREAM(str(data.name), rows.nbytes_in_memory(), int(budget))


def default_workers() -> int:
    """Data-loading worker processes used when none are asked for: ``--workers`` if given, else
    half the CPU cores (at least 1, at most 8), leaving the rest to the network on a CPU machine."""
    if _SETTINGS["workers"] is not None:
        return int(_SETTINGS["workers"])
    return max(1, min(8, (os.cpu_count() or 2) // 2))


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_memory(text: str | int | None) -> int | None:
    """A memory size in bytes: an int, "auto" (→ :func:`memory_budget`), or a number with a unit
    K, M, G or T (powers of 1024, an optional trailing "B" / "iB"); None stays None (no limit).

    >>> parse_memory("512M"), parse_memory("1.5G"), parse_memory(4096)
    (536870912, 1610612736, 4096)
    """
    if text is None:
        return None
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a memory size must be >= 0 bytes, got {text}")
        return int(text)
    if not isinstance(text, str):
        raise TypeError(f"a memory size must be an int (bytes) or text such as '8G', got {type(text).__name__}")
    if text.strip().lower() == "auto":
        return memory_budget()
    m = re.fullmatch(r"\s*(-?)([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if m is not None and m.group(1):
        raise ValueError(f"a memory size cannot be negative, got {text.strip()!r}; write e.g. 800M, 8G, auto, "
                         "or 0 to always stream")
    if m is None:
        raise ValueError(f"cannot read the memory size {text!r}; write e.g. 800M, 8G or auto")
    return int(float(m.group(2)) * _UNITS[m.group(3)])


def memory_budget() -> int:
    """The default budget for a dataset held in memory: ``--max-memory`` if given, else a quarter
    of the physical memory (loading a folder briefly holds two copies, and the network needs the
    rest)."""
    if _SETTINGS["max_memory"] is not None:
        return int(_SETTINGS["max_memory"])
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest 16 GiB machine
        total = 16 * 1024**3
    return int(total) // 4


class DiskRows:
    """A read-only ``(N, ...)`` array on disk, read a set of rows at a time.

    Subclasses set ``shape`` (torch.Size) and ``dtype`` (torch.uint8 or torch.float32) and
    implement :meth:`_read`. ``rows`` (optional) maps this view's row i to the source's row
    ``rows[i]`` (a subset, :meth:`take`). ``workers``: data-loading processes for
    :meth:`batches` (0: read in the calling process).
    """

    device = torch.device("cpu")
    shape: torch.Size
    dtype: torch.dtype
    workers: int = 0

    def __init__(self, shape: Sequence[int], dtype: torch.dtype, rows: np.ndarray | None = None) -> None:
        self._source_shape = torch.Size(int(s) for s in shape)
        self.dtype = dtype
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = self._source_shape[0] if self._rows is None else len(self._rows)
        self.shape = torch.Size((n, *self._source_shape[1:]))

    # ------------------------------------------------------------------ what subclasses implement
    def _read(self, rows: np.ndarray) -> torch.Tensor:
        """Source rows ``rows`` (int64, any order, maybe repeated) → a CPU tensor ``(len(rows), ...)``
        of ``dtype``, in that order."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where the rows come from, for messages ("612,000 image files under /data/x")."""
        return type(self).__name__

    # ------------------------------------------------------------------ tensor-like behaviour
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return int(self.shape[0])

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def nbytes_in_memory(self) -> int:
        """Bytes the whole array would take as a tensor."""
        return int(np.prod(self.shape)) * torch.empty((), dtype=self.dtype).element_size()

    def _source_rows(self, key: Any) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -n <= key < n:
                raise IndexError(f"row {key} is out of range for {n} rows")
            idx = np.array([key % n], dtype=np.int64)
        elif isinstance(key, slice):
            idx = np.arange(n, dtype=np.int64)[key]
        else:
            idx = key.detach().cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
            if idx.dtype == np.bool_:
                idx = np.flatnonzero(idx)
            idx = idx.astype(np.int64).ravel()
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"row indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
            idx = idx % max(n, 1)
        return idx if self._rows is None else self._rows[idx]

    def __getitem__(self, key: Any) -> torch.Tensor:
        """Rows as a CPU tensor: ``x[i]`` → one row (…); ``x[a:b]`` / ``x[index_array]`` → (k, …)."""
        out = self._read(self._source_rows(key))
        return out[0] if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else out

    def take(self, indices: Any) -> "DiskRows":
        """A view of the selected rows (nothing is read)."""
        import copy

        view = copy.copy(self)
        view._rows = self._source_rows(indices)
        view.shape = torch.Size((len(view._rows), *self._source_shape[1:]))
        return view

    def to_tensor(self, batch_size: int = 4096) -> torch.Tensor:
        """The whole array read into one tensor (with :meth:`batches`' workers)."""
        out = torch.empty(tuple(self.shape), dtype=self.dtype)
        at = 0
        for batch in self.batches(_sequential(len(self), batch_size)):
            out[at : at + batch.shape[0]] = batch
            at += batch.shape[0]
        return out

    def batches(self, index_batches: Iterable[Any], device: torch.device | str = "cpu",
                workers: int | None = None) -> Iterator[torch.Tensor]:
        """The rows of each index batch in turn, as tensors on ``device``.

        With ``workers`` > 0 (default ``self.workers``) a ``DataLoader`` reads and decodes the
        next batches in that many worker processes while the caller computes; on CUDA the
        batches come through pinned memory and are copied asynchronously.
        """
        from torch.utils.data import DataLoader

        device = torch.device(device)
        workers = self.workers if workers is None else int(workers)
        batches = [b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b) for b in index_batches]
        loader = DataLoader(
            _BatchReader(self), batch_size=None, sampler=batches, num_workers=workers,
            pin_memory=device.type == "cuda", worker_init_fn=_one_thread if workers else None,
            prefetch_factor=4 if workers else None, persistent_workers=False,
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype}, {self.describe()})"


class _BatchReader(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole batches: index array → rows (read in a worker)."""

    def __init__(self, rows: DiskRows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: np.ndarray) -> torch.Tensor:
        return self.rows[idx]


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a worker decodes; the cores' BLAS threads belong to the network


def _sequential(n: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]


def iter_batches(x: Any, batch_size: int, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Consecutive row batches of ``x`` (a tensor or :class:`DiskRows`) on ``device``, in order."""
    if isinstance(x, DiskRows):
        yield from x.batches(_sequential(len(x), batch_size), device)
        return
    for s in range(0, x.shape[0], batch_size):
        yield x[s : s + batch_size].to(device)


# ----------------------------------------------------------------------------------------------
# image files
# ----------------------------------------------------------------------------------------------
class FolderImages(DiskRows):
    """Image files decoded on demand to uint8 ``(C, S, S)``: each file is decoded and resized as
    the in-memory folder loader does (so the pixels are the same), grayscale files repeated to 3
    channels in a colour collection.

    Args:
        files: the image paths, one per row.
        channels: 1 or 3.
        size: (H, W) of every row; files of another size are resized to it (only when the
            loader was given an image size; otherwise all files have this size).
        resize: pass the size to the decoder (``image_size`` was given).
    """

    def __init__(self, files: Sequence[str | Path], channels: int, size: tuple[int, int], resize: bool,
                 root: str | Path | None = None) -> None:
        super().__init__((len(files), channels, *size), torch.uint8)
        self.files = [str(f) for f in files]
        self.channels, self.size, self.resize = int(channels), tuple(size), bool(resize)
        self.root = None if root is None else str(root)

    def describe(self) -> str:
        where = f" under {self.root}" if self.root else ""
        return f"{len(self.files):,} image files{where}"

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        from hiclust.data.datasets import CorruptImageError, _decode

        out = np.empty((len(rows), *self._source_shape[1:]), dtype=np.uint8)
        for j, i in enumerate(rows):
            a = _decode(Path(self.files[i]), self.size[0] if self.resize else None)
            if isinstance(a, str):
                raise CorruptImageError(f"{self.files[i]} could not be read while streaming ({a}); "
                                        "remove or replace the file and rerun (the last checkpoint is kept)")
            out[j] = _to_chw(a, self.channels, self.files[i], self.size)
        return torch.from_numpy(out)


def _to_chw(a: np.ndarray, channels: int, what: str, size: tuple[int, int]) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 → (channels, H, W), refusing a size or colour it cannot take."""
    if a.shape[:2] != tuple(size):
        raise ValueError(f"{what} is {a.shape[1]}x{a.shape[0]}, not {size[1]}x{size[0]} like the rest; "
                         "pass --image-size to resize every image")
    if a.ndim == 2:
        return a[None] if channels == 1 else np.repeat(a[None], 3, axis=0)
    if channels == 1:
        raise ValueError(f"{what} is a colour image in a grayscale collection; convert it to grayscale")
    return a.transpose(2, 0, 1)


# ----------------------------------------------------------------------------------------------
# feature matrices
# ----------------------------------------------------------------------------------------------
class NpyRows(DiskRows):
    """Rows of a 2-D numeric ``.npy`` file as float32 ``(k, D)``, read with positioned reads
    (``os.preadv``) into a buffer of just those rows.

    Why not a memory map: the pages of a mapping count as the process's resident memory while it
    is mapped, and the kernel maps page-cache pages around each touched one (a whole large folio,
    up to megabytes): measured here, 256 random rows read through ``np.load(mmap_mode="r")`` of a
    120 MB file raised the peak RSS by 77 MB, the same rows read with ``pread`` by 4 MB. The
    header (shape, dtype, data offset) is read with ``np.load(mmap_mode="r")``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        dt = np.dtype(arr.dtype)
        if dt == np.bool_ or not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer)):
            raise ValueError(f"{self.path}: unsupported dtype {dt}; features must be numbers (float or int)")
        if arr.ndim != 2:
            raise ValueError(f"{self.path}: a feature matrix must be 2-D (N items, D features), got shape {arr.shape}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{self.path} is stored column by column (Fortran order); to stream it, save it row by "
                             "row: np.save(path, np.ascontiguousarray(matrix))")
        super().__init__(arr.shape, torch.float32)
        self.file_dtype, self.offset = dt, int(arr.offset)
        del arr

    def describe(self) -> str:
        return f"rows read on demand from {self.path}"

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        d = self._source_shape[1]
        row_bytes = d * self.file_dtype.itemsize
        order = np.argsort(rows, kind="stable")  # ascending positions; runs of consecutive rows are one read
        ordered = rows[order]
        raw = np.empty((len(rows), d), dtype=self.file_dtype)
        cuts = np.flatnonzero(np.diff(ordered) != 1) + 1
        starts, ends = np.concatenate(([0], cuts)), np.concatenate((cuts, [len(rows)]))
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a, b in zip(starts.tolist(), ends.tolist()):  # one system call per run of rows
                view = memoryview(raw[a:b]).cast("B")
                at = self.offset + int(ordered[a]) * row_bytes
                got = os.preadv(fd, [view], at) if hasattr(os, "preadv") else _pread_into(fd, view, at)
                if got != len(view):
                    raise OSError(f"{self.path} is shorter than its header says (rows {ordered[a]}..{ordered[b - 1]}); "
                                  "the file was truncated or is being rewritten")
        finally:
            os.close(fd)
        out = np.empty((len(rows), d), dtype=np.float32)
        out[order] = raw
        return torch.from_numpy(out)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


class StandardizedRows(DiskRows):
    """Rows of a streamed (N, D) feature matrix standardized as they are read:
    ``(x − mean) / std`` per column (the same float32 operations as on a matrix in memory)."""

    def __init__(self, source: DiskRows, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__(source.shape, torch.float32)
        self.source, self.mean, self.std = source, mean.float().cpu(), std.float().cpu()
        self.workers = source.workers

    def describe(self) -> str:
        return f"standardized {self.source.describe()}"

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        return (self.source[rows] - self.mean) / self.std


def rows_text(rows: list[int], more: bool = False) -> str:
    """Row numbers for an error message, counted from 0 (the first data row; a CSV's header is not
    a row): 'row 5 (0-based)', 'rows 5, 9 (0-based)', 'rows 0, 1, 2, 3, 4 and 7 more (0-based)'
    (``more``: further rows exist beyond those listed, their number unknown).

    >>> rows_text([5]), rows_text([5, 9]), rows_text(list(range(12)))
    ('row 5 (0-based)', 'rows 5, 9 (0-based)', 'rows 0, 1, 2, 3, 4 and 7 more (0-based)')
    """
    shown = ", ".join(str(r) for r in rows[:5])
    rest = len(rows) - 5
    tail = f" and {rest} more" if rest > 0 else (" and more" if more else "")
    return f"row{'s' if len(rows) > 1 or more else ''} {shown}{tail} (0-based)"


def column_stats(x: Any, chunk: int | None = None, what: str = "the features") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and standard deviation (ddof 1, floored at 1e-6) of an (N, D) float matrix
    (a tensor or :class:`NpyRows`), accumulated in float64 over blocks of rows so that a matrix on
    disk is read once without being held; refuses NaN/Inf naming the first bad rows.

    ``chunk``: rows per block (default: 4 MiB of float64 values).

    Returns float32 tensors ``(D,)`` on the CPU.
    """
    n, d = int(x.shape[0]), int(x.shape[1])
    chunk = chunk or max(1, 2**19 // max(d, 1))
    total = torch.zeros(d, dtype=torch.float64)
    for s, block in _blocks(x, chunk):
        if not torch.isfinite(block).all():
            bad = (~torch.isfinite(block)).any(1).nonzero().flatten() + s
            raise ValueError(f"{what} contain NaN or infinite values ({rows_text(bad.tolist())}); impute or drop them")
        total += block.double().sum(0)
    mean = total / n
    sq = torch.zeros(d, dtype=torch.float64)
    for _, block in _blocks(x, chunk):
        sq += ((block.double() - mean) ** 2).sum(0)
    std = (sq / max(n - 1, 1)).sqrt() if n > 1 else torch.ones(d, dtype=torch.float64)
    return mean.float(), std.float().clamp_min(1e-6)


def _blocks(x: Any, chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    for s in range(0, int(x.shape[0]), chunk):
        yield s, (x[s : s + chunk] if isinstance(x, DiskRows) else x[s : s + chunk].cpu()).float()
