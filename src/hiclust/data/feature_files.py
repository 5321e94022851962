"""Feature matrices from files: ``--dataset features:PATH``.

:class:`FeatureDataset` is the feature-vector counterpart of :class:`~hiclust.data.ImageDataset`:
one float32 matrix ``(N, D)`` in memory plus optional labels, class names and item ids. The
estimators take ``dataset.features`` (an (N, D) float matrix: MLP backbone, feature-space
augmentation); :func:`model_input` returns what to hand them for either kind of dataset.

Readable files (:func:`load_feature_file`)::

    .npy      a 2-D numeric array (memory-mapped; any float or integer dtype, converted to
              float32 a block of rows at a time)
    .npz      arrays "X" or "features" (N, D), optional "y" or "labels" (N,) (or the array
              named by ``label_column``), optional item ids (the array named by ``id_column``)
    .csv      every numeric column is a feature; ``label_column`` / ``id_column`` name the
    .parquet  labels and the item ids (read with pandas; parquet also needs pyarrow)

A CSV file whose first row is all numbers has no header row (``np.savetxt`` writes such files):
its first row is data, and its columns are named ``0`` … ``D-1``. A first row of exactly the
integers 0 … D-1 or 1 … D is read as column names, as ``DataFrame.to_csv`` writes them.

Labels may be integers ≥ 0 (used as class ids) or any other values (strings, negative
integers): those are mapped to ids 0..C−1 in sorted order, their text kept as class names.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "emb.npz")
>>> np.savez(path, X=np.ones((4, 3)), y=np.array(["cat", "dog", "cat", "dog"]))
>>> ds = load_feature_file(path)
>>> ds.features.shape, ds.labels.tolist(), ds.class_names
(torch.Size([4, 3]), [0, 1, 0, 1], ['cat', 'dog'])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiclust._warnings import user_stacklevel
from hiclust.data.streaming import rows_text

__all__ = ["FeatureDataset", "load_feature_file", "model_input", "FEATURE_SUFFIXES"]

FEATURE_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
_CHUNK_ROWS = 65536  # rows converted to float32 per block (bounds the temporary memory)


@dataclass
class FeatureDataset:
    """A feature matrix, in memory or (a .npy over the memory budget) read from disk.

    Attributes:
        features: float32 tensor ``(N, D)`` on the CPU, finite values; or a
            :class:`~hiclust.data.streaming.NpyRows` of that shape read a batch at a time.
        labels: int64 tensor ``(N,)`` of class ids ≥ 0, or ``None`` (unlabeled).
        class_names: names of the classes (index = class id), or ``None``.
        name: dataset name (``"features:PATH"`` when loaded from a file).
        item_ids: ``N`` item ids (a CSV id column, ...), or ``None``: the row numbers.
        feature_names: the ``D`` feature columns' names (a CSV or parquet header), or ``None``.
    """

    features: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    name: str = "features"
    item_ids: list[str] | None = None
    feature_names: list[str] | None = None

    def __post_init__(self) -> None:
        x = self.features
        from hiclust.data.streaming import DiskRows

        if not isinstance(x, (torch.Tensor, DiskRows)) or x.dtype != torch.float32 or x.ndim != 2:
            raise ValueError("FeatureDataset.features must be a float32 tensor (N, D) or DiskRows of that shape")
        if x.shape[0] == 0:
            raise ValueError(f"{self.name}: the feature matrix has no rows; nothing to cluster")
        if x.shape[1] == 0:
            raise ValueError(f"{self.name}: the feature matrix has no columns (shape {tuple(x.shape)}); "
                             "give at least one numeric feature")
        if self.labels is not None:
            y = torch.as_tensor(self.labels).to(dtype=torch.int64, device="cpu").flatten()
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{self.name}: {y.shape[0]} labels for {x.shape[0]} rows; they must be equally many")
            self.labels = y
        if self.item_ids is not None and len(self.item_ids) != x.shape[0]:
            raise ValueError(f"{self.name}: {len(self.item_ids)} item ids for {x.shape[0]} rows")
        if self.feature_names is not None and len(self.feature_names) != x.shape[1]:
            raise ValueError(f"{self.name}: {len(self.feature_names)} feature names for {x.shape[1]} columns")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __repr__(self) -> str:
        lab = "unlabeled" if self.labels is None else f"{self.n_classes} classes"
        return f"FeatureDataset(name={self.name!r}, features={tuple(self.features.shape)} float32, {lab})"

    @property
    def n_classes(self) -> int | None:
        """Number of classes (``None`` if unlabeled)."""
        if self.class_names is not None:
            return len(self.class_names)
        return None if self.labels is None else int(self.labels.max()) + 1

    @property
    def is_streamed(self) -> bool:
        """True when the rows are read from disk a batch at a time (over the memory budget)."""
        from hiclust.data.streaming import DiskRows

        return isinstance(self.features, DiskRows)

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def ids(self) -> list[str]:
        """``N`` item ids: ``item_ids`` or the row numbers 0..N−1 as text."""
        return list(self.item_ids) if self.item_ids is not None else [str(i) for i in range(len(self))]


def model_input(data: Any) -> Any:
    """What an estimator's ``fit`` / ``predict`` take for ``data``: the (N, D) float32 matrix of a
    :class:`FeatureDataset`, anything else unchanged (an ImageDataset is taken as it is)."""
    return data.features if isinstance(data, FeatureDataset) else data


def _to_float32(arr: Any, what: str) -> np.ndarray:
    """(N, D) float32 copy of a 2-D numeric (possibly memory-mapped) array, a block of rows at a
    time; refuses NaN/Inf naming the first bad rows."""
    dtype = np.dtype(arr.dtype)
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"{what}: unsupported dtype {dtype}; features must be numbers (float or int)")
    if arr.ndim != 2:
        raise ValueError(f"{what}: a feature matrix must be 2-D (N items, D features), got shape {tuple(arr.shape)}")
    n, d = arr.shape
    if n == 0:
        raise ValueError(f"{what}: the feature matrix has no rows; nothing to cluster")
    if d == 0:
        raise ValueError(f"{what}: the feature matrix has no columns (shape {tuple(arr.shape)}); give at least one feature")
    out = np.empty((n, d), dtype=np.float32)
    bad: list[int] = []
    for s in range(0, n, _CHUNK_ROWS):  # blocks of many rows: bounded memory, vectorized inside
        block = np.asarray(arr[s:s + _CHUNK_ROWS], dtype=np.float32)
        finite = np.isfinite(block).all(1)
        if not finite.all():
            bad += (np.flatnonzero(~finite) + s).tolist()
        out[s:s + block.shape[0]] = block
    if bad:
        raise ValueError(f"{what}: NaN or infinite values (or values beyond float32's range) in "
                         f"{rows_text(bad)}; impute or drop those rows first")
    return out


def _labels_to_ids(values: np.ndarray, what: str) -> tuple[torch.Tensor, list[str] | None]:
    """(N,) labels → (int64 ids, class names or None). Integers ≥ 0 are ids as they are; other
    values (text, negative or fractional numbers) are mapped to 0..C−1 in sorted order."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"{what}: labels must be one value per item (N,), got shape {v.shape}")
    if v.dtype.kind == "f":
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: {int((~np.isfinite(v)).sum())} labels are empty (NaN); fill or drop those rows")
        if np.all(v == np.round(v)):
            v = v.astype(np.int64)
    elif v.dtype.kind == "O":
        missing = np.array([x is None or (isinstance(x, float) and x != x) for x in v.tolist()])
        if missing.any():
            raise ValueError(f"{what}: {int(missing.sum())} labels are empty; fill or drop those rows")
        v = v.astype(str)
    if v.dtype.kind in "iu" and (v.size == 0 or v.min() >= 0):
        return torch.from_numpy(v.astype(np.int64)), None
    if v.dtype.kind == "b":
        v = v.astype(np.int64)
        return torch.from_numpy(v), None
    uniq, ids = np.unique(v, return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64).reshape(-1)), [str(u) for u in uniq.tolist()]


# Column names that usually hold the classes: used as features only with a warning.
LABEL_LIKE_COLUMNS = ("label", "labels", "y", "target", "targets", "class", "classes", "category", "kind", "species",
                      "cultivar", "truth", "ground_truth", "cluster")


def _class_id_column(df: Any, feature_cols: list[str]) -> tuple[str, int, int] | None:
    """The last or first feature column when it looks like class ids, else None: an integer
    column whose values are exactly 0..k-1 or 1..k, with 2 <= k <= 50 and at least five rows per
    value. Labels usually sit at one end of a table; a count column in the middle is left alone."""
    n = len(df)
    for col in dict.fromkeys((feature_cols[-1], feature_cols[0])) if feature_cols else ():
        if df[col].dtype.kind not in "iu":
            continue
        values = np.unique(df[col].to_numpy())
        k = values.size
        if 2 <= k <= 50 and n >= 5 * k and values[0] in (0, 1) and values[-1] - values[0] == k - 1:
            return col, int(values[0]), int(values[-1])
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_header_row(path: Path) -> int | None:
    """0 when the CSV file's first row names the columns, None when it is data: every field a
    number, and not the column indices 0..D-1 or 1..D that ``DataFrame.to_csv`` writes."""
    import pandas as pd

    first = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    if first.empty:
        return 0
    fields = [str(v).strip() for v in first.iloc[0].tolist()]
    if not all(_is_number(f) for f in fields):
        return 0
    indices = [str(i) for i in range(len(fields) + 1)]
    return 0 if fields in (indices[:-1], indices[1:]) else None


def _read_table(path: Path) -> Any:
    try:
        import pandas as pd
    except ImportError:
        extra = " pyarrow" if path.suffix.lower() == ".parquet" else ""
        raise ImportError(f"reading {path.suffix} feature files needs pandas: pip install pandas{extra}") from None
    if path.suffix.lower() == ".csv":
        try:
            header = _csv_header_row(path)
            return pd.read_csv(path, header=header)
        except (ValueError, UnicodeDecodeError) as e:  # pandas' ParserError is a ValueError
            raise ValueError(f"{path}: not a readable CSV file ({str(e).splitlines()[0]})") from None
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise ImportError("reading .parquet feature files needs pyarrow: pip install pyarrow") from None
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None


def _from_table(path: Path, label_column: str | None, id_column: str | None, name: str) -> FeatureDataset:
    df = _read_table(path)
    cols = [str(c) for c in df.columns]
    df.columns = cols
    if len(df) == 0:
        raise ValueError(f"{path.name}: no rows of data, only the column names {', '.join(cols[:20])}"
                         + (" ..." if len(cols) > 20 else ""))
    for flag, col in (("--label-column", label_column), ("--id-column", id_column)):
        if col is not None and col not in cols:
            raise ValueError(f"{flag} {col!r}: {path.name} has no such column; its columns: {', '.join(cols[:20])}"
                             + (" ..." if len(cols) > 20 else ""))
    feature_cols = [c for c in cols if c not in (label_column, id_column)]
    if label_column is None:
        named = [c for c in feature_cols if c.strip().lower() in LABEL_LIKE_COLUMNS]
        if named and df[named[0]].dtype.kind in "iuf":  # a text column is refused below anyway
            warnings.warn(f"{path.name}: column {named[0]!r} is clustered as a feature; if it holds the classes, "
                          f"pass label_column={named[0]!r}", stacklevel=user_stacklevel())
        elif not named:
            id_like = _class_id_column(df, feature_cols)
            if id_like is not None:
                col, lo, hi = id_like
                warnings.warn(f"{path.name}: column {col!r} holds only the integers {lo}..{hi}, like class ids, and is "
                              f"clustered as a feature; if it holds the classes, pass label_column={col!r}",
                              stacklevel=user_stacklevel())
    non_numeric = [c for c in feature_cols if df[c].dtype.kind not in "iuf"]
    if non_numeric:
        raise ValueError(
            f"{path.name}: column(s) {', '.join(non_numeric[:5])} are not numeric; name the labels with "
            "label_column=NAME and item ids with id_column=NAME (every other column must be a number)"
        )
    if not feature_cols:
        raise ValueError(f"{path.name}: no feature columns left (columns: {', '.join(cols)})")
    x = _to_float32(df[feature_cols].to_numpy(), str(path))
    labels = class_names = None
    if label_column is not None:
        labels, class_names = _labels_to_ids(df[label_column].to_numpy(), f"{path.name} column {label_column!r}")
    ids = None if id_column is None else [str(v) for v in df[id_column].tolist()]
    return FeatureDataset(torch.from_numpy(x), labels, class_names, name, ids, feature_cols)


def _from_npz(path: Path, label_column: str | None, id_column: str | None, name: str) -> FeatureDataset:
    try:
        with np.load(path, allow_pickle=False) as z:  # never unpickle objects from a user file
            keys = list(z.files)
            xkey = next((k for k in ("X", "features") if k in keys), None)
            if xkey is None:
                raise ValueError(f"{path.name} holds the arrays {', '.join(keys) or '(none)'}; save the matrix as 'X' "
                                 "or 'features' (np.savez(path, X=matrix, y=labels))")
            ykey = label_column if label_column is not None else next((k for k in ("y", "labels") if k in keys), None)
            for flag, key in (("--label-column", label_column), ("--id-column", id_column)):
                if key is not None and key not in keys:
                    raise ValueError(f"{flag} {key!r}: {path.name} has no such array; its arrays: {', '.join(keys)}")
            x = _to_float32(z[xkey], f"{path} array {xkey!r}")
            labels = class_names = None
            if ykey is not None:
                labels, class_names = _labels_to_ids(z[ykey], f"{path.name} array {ykey!r}")
            ids = None if id_column is None else [str(v) for v in z[id_column].reshape(-1).tolist()]
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(f"{path}: holds Python objects, which are never unpickled; save plain numeric or "
                             "text arrays") from None
        raise
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    return FeatureDataset(torch.from_numpy(x), labels, class_names, name, ids)


def feature_file_columns(path: str | Path) -> list[str] | None:
    """The column names of a .csv/.parquet file or the array names of a .npz file (read without
    loading the data); None for other files or when they cannot be read (loading them reports why)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pandas as pd

            return [str(c) for c in pd.read_csv(path, nrows=0, header=_csv_header_row(path)).columns]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return [str(c) for c in pq.read_schema(path).names]
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return list(z.files)
    except (ImportError, ValueError, OSError, EOFError, UnicodeDecodeError):
        return None
    return None


def load_feature_file(path: str | Path, *, label_column: str | None = None, id_column: str | None = None,
                      name: str | None = None, max_memory: int | None = None,
                      workers: int | None = None) -> FeatureDataset:
    """Reads a feature matrix (see the module docstring for the formats).

    Args:
        path: a .npy, .npz, .csv or .parquet file.
        label_column: the column (CSV/parquet) or array (.npz) holding labels; .npz files use
            "y" / "labels" when present without it.
        id_column: the column / array holding item ids (shown in assignments and reports).
        name: dataset name (default ``"features:PATH"``).
        max_memory: bytes; a .npy matrix whose float32 copy is larger is not loaded but read a
            batch at a time through a memory map (``features`` is then a
            :class:`~hiclust.data.streaming.NpyRows`; NaN/Inf are found by the first pass over
            it). None: always loaded. Other formats are always loaded.
        workers: data-loading processes for a streamed matrix (default 0: reading rows from a
            memory map is cheap next to the network).
    Returns:
        :class:`FeatureDataset` with float32 features (N, D).
    Raises:
        FileNotFoundError: no such file. ValueError: unreadable or non-numeric content, NaN/Inf,
        unknown columns. ImportError: pandas (or pyarrow) missing for .csv/.parquet.
    """
    p = Path(path).expanduser()
    name = name or f"features:{path}"
    suffix = p.suffix.lower()
    if suffix not in FEATURE_SUFFIXES:
        raise ValueError(f"{name!r}: feature files must end in {', '.join(FEATURE_SUFFIXES)}; got {p.name!r}")
    if not p.is_file():
        raise FileNotFoundError(f"{name!r}: no such file {p}")
    if suffix == ".npy":
        if label_column is not None or id_column is not None:
            raise ValueError(f"{p.name}: a .npy file holds only the matrix; for labels or ids use a .npz "
                             "(np.savez(path, X=matrix, y=labels)) or a CSV with --label-column")
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{p}: not a plain numeric .npy array ({e})") from None
        if max_memory is not None and arr.ndim == 2 and arr.shape[0] * arr.shape[1] * 4 > max_memory:
            from hiclust.data.streaming import NpyRows

            del arr
            rows = NpyRows(p)
            rows.workers = 0 if workers is None else int(workers)
            return FeatureDataset(rows, None, None, name)
        return FeatureDataset(torch.from_numpy(_to_float32(arr, str(p))), None, None, name)
    if suffix == ".npz":
        return _from_npz(p, label_column, id_column, name)
    return _from_table(p, label_column, id_column, name)
