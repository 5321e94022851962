"""Run directories: one folder per training run.

Layout of ``RUN_DIR``:
    run.json        method, dataset, resolved parameters, seed, library versions (written first)
    checkpoint.pt   training checkpoint (model, optimizer, RNG, epoch, pruning), atomic
    model.pt        final fitted model, atomic
    history.jsonl   one JSON record per epoch
    metrics.json    final metrics (when labels exist)
    assignments.csv every training item's leaf, root-to-leaf path and leaf probability
    tree.png        picture of the learned hierarchy
A directory holding another run is never reused silently: ``--overwrite`` is required.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiclust.checkpoint import atomic_write_text

__all__ = [
    "RunConfig", "RunDirError", "prepare_run_dir", "read_run_config", "library_versions", "load_config_file",
    "with_absolute_paths", "stored_paths", "resolved_paths", "data_fingerprint", "check_same_data",
]

RUN_FILE = "run.json"
LOCK_FILE = ".hiclust.lock"  # held by the one process training into a run directory
OWNED_FILES = ("run.json", "checkpoint.pt", "model.pt", "history.jsonl", "metrics.json", "tree.png", "evaluation.json",
               "assignments.csv")


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked."""


@dataclass
class RunConfig:
    """What defines a run; stored as ``run.json``."""

    method: str
    dataset: str
    split: str = "all"
    root: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None  # resize images on load (folders of mixed sizes)
    strict: bool = False
    # The split the metrics, report and `evaluate` use when it is not the training split
    # (CoHiClust's STL-10 recipe trains on "unlabeled" and is evaluated on "all").
    eval_split: str | None = None
    # Extra images trained with the instance loss alone every epoch (CC's STL-10 recipe: "unlabeled").
    instance_split: str | None = None
    # features:PATH files: the column (CSV/parquet) or array (.npz) of labels / item ids.
    label_column: str | None = None
    id_column: str | None = None
    # What the run was trained on: {"n", "shape", "sample_blake2b"[, "blake2b"]} (see data_fingerprint);
    # resume checks it.
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "method": self.method, "dataset": self.dataset, "split": self.split, "root": self.root,
            "params": self.params, "image_size": self.image_size, "strict": self.strict,
        }
        # Written only when set, so run.json files of ordinary runs keep their exact form.
        d.update({k: v for k, v in (("eval_split", self.eval_split), ("instance_split", self.instance_split),
                                    ("label_column", self.label_column), ("id_column", self.id_column),
                                    ("data", self.data)) if v})
        return d

    @property
    def evaluation_split(self) -> str:
        """The split that metrics, reports and ``evaluate`` describe."""
        return self.eval_split or self.split

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        if not isinstance(d, dict):
            raise RunDirError(f"run configuration must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - set(_FIELD_TYPES) - {"versions", "created", "resumed", "seed", "command"}
        if unknown:
            raise RunDirError(f"unknown keys in run configuration: {', '.join(sorted(unknown))}")
        for key in ("method", "dataset"):
            if key not in d:
                raise RunDirError(f"run configuration lacks {key!r}")
        for key, types in _FIELD_TYPES.items():
            if key in d and not isinstance(d[key], types) or isinstance(d.get(key), bool) and bool not in types:
                raise RunDirError(f"run configuration: {key!r} must be {' or '.join(t.__name__ for t in types)}, "
                                  f"got {type(d[key]).__name__}")
        return cls(**{k: d[k] for k in _FIELD_TYPES if k in d})

    def identity(self) -> dict[str, Any]:
        """The part that must match for two runs to be 'the same run': everything but the
        parameters the method declares free to change on resume (epochs, verbosity, device...)."""
        from hiclust.methods import METHODS

        free = getattr(METHODS.get(self.method), "_resume_free", frozenset({"epochs", "verbose", "device"}))
        d = self.to_dict()
        d["params"] = {k: v for k, v in self.params.items() if k not in free}
        # Where the data lies may change (a moved run, --dataset/--root); what it is is checked by
        # its fingerprint (``data``) instead.
        form = _path_form(self.dataset)
        if form is not None:
            d["dataset"] = form[0]
        d.pop("root", None)
        d.pop("data", None)
        return d


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,), "dataset": (str,), "split": (str,), "root": (str, type(None)), "params": (dict,),
    "image_size": (int, type(None)), "strict": (bool,), "eval_split": (str, type(None)),
    "instance_split": (str, type(None)), "label_column": (str, type(None)), "id_column": (str, type(None)),
    "data": (dict, type(None)),
}
PATH_FORMS = ("folder:", "npy:", "features:")


def _path_form(dataset: str) -> tuple[str, str] | None:
    """("features:", "x.npy") for a path form, None for a registered dataset name."""
    for prefix in PATH_FORMS:
        if dataset.startswith(prefix):
            return prefix, dataset[len(prefix):]
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def with_absolute_paths(config: RunConfig, base: str | Path | None = None) -> RunConfig:
    """``config`` with its data path (path forms) and ``root`` made absolute; relative ones are
    taken against ``base`` (default: the current directory)."""
    from dataclasses import replace

    base = Path.cwd() if base is None else Path(base)

    def absolute(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    form = _path_form(config.dataset)
    dataset = config.dataset if form is None else form[0] + absolute(form[1])
    root = None if config.root is None else absolute(config.root)
    return replace(config, dataset=dataset, root=root)


def stored_paths(config: RunConfig, run_dir: str | Path) -> RunConfig:
    """The form written to run.json: absolute paths, except data inside the run directory,
    which is stored relative to it (so the run can be moved with its data)."""
    from dataclasses import replace

    run = Path(run_dir).resolve()
    config = with_absolute_paths(config)

    def rel(p: str) -> str:
        q = Path(p)
        return q.relative_to(run).as_posix() if _inside(q, run) and q != run else p

    form = _path_form(config.dataset)
    dataset = config.dataset if form is None else form[0] + rel(form[1])
    return replace(config, dataset=dataset, root=None if config.root is None else rel(config.root))


def resolved_paths(config: RunConfig, run_dir: str | Path) -> RunConfig:
    """The inverse of :func:`stored_paths`: relative paths are taken against the run directory
    when they exist there, else against the current directory (run.json files of older
    versions stored the paths as typed)."""
    from dataclasses import replace

    run = Path(run_dir)

    form = _path_form(config.dataset)
    out = config
    if form is not None and not Path(form[1]).expanduser().is_absolute() and (run / form[1]).exists():
        out = replace(out, dataset=form[0] + str((run / form[1]).resolve()))
    if config.root is not None and not Path(config.root).expanduser().is_absolute() and (run / config.root).exists():
        out = replace(out, root=str((run / config.root).resolve()))
    return with_absolute_paths(out)


class RunLock:
    """``with RunLock(run_dir):`` — excludes a second training into the same run directory.

    The lock is the file ``RUN_DIR/.hiclust.lock`` created exclusively (O_EXCL) with the holder's
    process id; it is removed on exit. A lock whose process no longer runs (a killed training) is
    taken over; ``release(restore=True)`` (a start refused after taking the lock) puts it back, so a
    refused command leaves the directory as it found it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.created_dir = False
        self.taken_over: str | None = None  # the stale lock's text, when acquire() replaced one

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> "RunLock":
        """Takes the lock (creating the run directory if needed); RunDirError if it is held."""
        import os

        run_dir = self.path.parent
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"{run_dir} is a file, not a folder; choose another --out (a folder for the run)")
        self.created_dir = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _lock_pid(self.path)
                if pid is not None and _alive(pid):
                    if self.created_dir:
                        run_dir.rmdir()
                    raise RunDirError(f"another hiclust process (pid {pid}) is training into {run_dir}; wait for it, "
                                      f"or choose another --out (remove {self.path} if no such process runs)") from None
                try:
                    self.taken_over = self.path.read_text()
                except OSError:
                    self.taken_over = None
                self.path.unlink(missing_ok=True)  # left by a killed training
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RunDirError(f"could not lock {run_dir} ({self.path}); try again")

    def release(self, restore: bool = False) -> None:
        """Removes the lock, and the run directory if taking the lock created it and it stayed empty;
        ``restore``: put back the stale lock that acquire() took over (nothing changed after all)."""
        if restore and self.taken_over is not None:
            self.path.write_text(self.taken_over)
            return
        self.path.unlink(missing_ok=True)
        if self.created_dir:
            try:
                self.path.parent.rmdir()  # only when empty
            except OSError:
                pass


def _lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "x")
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit_overwrite(new_dir: str | Path, run_dir: str | Path) -> None:
    """Replaces the run in ``run_dir`` by the finished run in ``new_dir`` (each file an atomic
    rename; the old run's files the new one lacks, such as metrics.json, are removed; other files
    of ``run_dir`` are kept), then removes ``new_dir``."""
    import os

    new_dir, run_dir = Path(new_dir), Path(run_dir)
    for name in OWNED_FILES:
        if (new_dir / name).exists():
            os.replace(new_dir / name, run_dir / name)
        else:
            (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(new_dir)


def _holds_data(entry: Path, config: RunConfig) -> bool:
    """Whether ``entry`` (of a run directory) is, or holds, the data the run trains on: a folder
    that holds only the run's data is a fine place for the run."""
    form = _path_form(config.dataset)
    if form is None:
        return False
    data = Path(form[1]).expanduser().resolve()
    entry = entry.resolve()
    return data == entry or _inside(data, entry)


_SAMPLE_ROWS = 1024  # rows hashed for "sample_blake2b"


def data_fingerprint(data: Any) -> dict[str, Any]:
    """{"n", "shape", "sample_blake2b"[, "blake2b"]} of a dataset: its item count, per-item shape,
    a hash of up to 1,024 evenly spaced rows, and (data in memory) a hash of all its pixel
    (uint8) or feature (float32) bytes, read once without a copy. Data streamed from disk gets
    the sampled hash only: hashing every row would decode the whole collection once more."""
    import hashlib

    import numpy as np

    from hiclust.data.streaming import is_streamed

    x = data.features if hasattr(data, "features") else data.images
    n = int(x.shape[0])
    rows = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE_ROWS)).round().astype(np.int64))
    sample = np.ascontiguousarray(x[rows].numpy())
    out = {"n": n, "shape": [int(v) for v in x.shape[1:]],
           "sample_blake2b": hashlib.blake2b(memoryview(sample).cast("B"), digest_size=16).hexdigest()}
    if not is_streamed(x):
        a = np.ascontiguousarray(x.numpy())
        out["blake2b"] = hashlib.blake2b(memoryview(a).cast("B"), digest_size=16).hexdigest()
    return out


def check_same_data(stored: dict[str, Any] | None, data: Any, where: str) -> None:
    """Raises RunDirError unless ``data`` matches the fingerprint a run recorded (no record: no check)."""
    if not stored:
        return
    now = data_fingerprint(data)
    if stored.get("n") != now["n"]:
        why = f"{now['n']} items instead of the run's {stored.get('n')}"
    elif list(stored.get("shape", [])) != now["shape"]:
        why = f"items of shape {tuple(now['shape'])} instead of {tuple(stored.get('shape', []))}"
    elif any(key in stored and key in now and stored[key] != now[key] for key in ("blake2b", "sample_blake2b")):
        why = "the same count and shape but other content"
    else:
        return
    raise RunDirError(f"the data at {where} is not what this run was trained on ({why}); point --dataset/--root at "
                      "the run's data, or train a new run with another --out")


def library_versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn
    import torch

    import hiclust

    return {
        "hiclust": hiclust.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "numpy": numpy.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def load_config_file(path_or_preset: str) -> dict[str, Any]:
    """Reads a YAML/JSON run preset: a path, or the name of a bundled preset (``configs/NAME.yaml``)."""
    import yaml

    path = Path(path_or_preset)
    if not path.exists():
        bundled = Path(__file__).parent / "configs" / f"{path_or_preset}.yaml"
        if not bundled.exists():
            presets = sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))
            raise FileNotFoundError(f"no config file {path_or_preset!r}; bundled presets: {', '.join(presets)}")
        path = bundled
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe: no Python tags are ever run
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"--config {path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"--config {path}: not a text file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping (method, dataset, params...)")
    unknown = sorted(set(map(str, data)) - CONFIG_KEYS)
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, CONFIG_KEYS, 1)) else k
                 for k in unknown]
        raise ValueError(f"--config {path}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(sorted(CONFIG_KEYS))}")
    if "params" in data and not isinstance(data["params"], dict):
        raise ValueError(f"--config {path}: 'params' must be a mapping of parameter names to values")
    return data


# The top-level keys of a YAML preset (the estimator's parameters go under "params").
CONFIG_KEYS = frozenset({"method", "dataset", "split", "root", "params", "image_size", "strict", "eval_split",
                         "instance_split", "label_column", "id_column"})


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is not valid JSON ({e}); restore it or train a new run with another --out") from None
    if not isinstance(d, dict):
        raise RunDirError(f"{path} must hold a JSON object, got {type(d).__name__}")
    return d


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The run's configuration, its data paths made absolute (see :func:`resolved_paths`)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a hiclust run directory (no {RUN_FILE}); give the directory that "
                          "'hiclust train --out RUN_DIR' wrote (e.g. runs/NAME), not the data's")
    try:
        return resolved_paths(RunConfig.from_dict(_read_run_json(path)), run_dir)
    except RunDirError as e:
        raise RunDirError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from None


def prepare_run_dir(run_dir: str | Path, config: RunConfig, *, overwrite: bool = False, resume: bool = False,
                    write_to: str | Path | None = None, command: str = "train") -> Path:
    """Creates or checks ``run_dir`` for ``config``; writes run.json. Call only after all input
    validation passed, so that a rejected run leaves nothing behind.

    ``command``: the hiclust command that writes the run ("train", "demo"), recorded in run.json
    (the demo replaces only runs that it wrote itself, see :func:`made_by`).

    ``write_to``: another (new) directory to write the run into, e.g. the temporary sibling of an
    ``--overwrite`` that replaces ``run_dir`` only when done (:func:`commit_overwrite`); the old
    run's files are then left untouched. Data paths are still stored relative to ``run_dir``.

    Raises:
        RunDirError: the directory holds a different run (or any run, when neither resuming
            nor overwriting) and ``overwrite`` is False.
    """
    run_dir = Path(run_dir)
    existing = run_dir / RUN_FILE
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    resumed = None
    if existing.exists() and not overwrite:
        old_record = _read_run_json(existing)
        old = resolved_paths(RunConfig.from_dict(old_record), run_dir)
        if not resume:
            raise RunDirError(
                f"{run_dir} already holds a run ({old.method} on {old.dataset}); use --resume {run_dir} to continue it, "
                "--overwrite to replace it, or another --out"
            )
        if old.identity() != config.identity():
            raise RunDirError(f"{run_dir} holds a different run than the one requested; use --overwrite or another --out")
        # A resumed run keeps the date it was created; the resume is dated on its own.
        created, resumed = old_record.get("created", created), created
    elif run_dir.exists() and not existing.exists() and any(
            e for e in run_dir.iterdir() if e.name != LOCK_FILE and not _holds_data(e, config)):
        # --overwrite replaces runs only: a folder of other files is never written into
        raise RunDirError(f"{run_dir} exists and is not empty (and is not a hiclust run); choose another --out")
    target = run_dir if write_to is None else Path(write_to)
    if target != run_dir:
        if target.exists():  # left by an earlier --overwrite that was killed: hiclust's own files
            shutil.rmtree(target)
        target.mkdir(parents=True)
        record = stored_paths(config, run_dir).to_dict()
        record.update(versions=library_versions(), seed=config.params.get("seed", 0),
                      created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), command=command)
        atomic_write_text(target / RUN_FILE, json.dumps(record, indent=2, sort_keys=True))
        return target
    if overwrite and run_dir.exists():
        for name in OWNED_FILES:
            (run_dir / name).unlink(missing_ok=True)
    if run_dir.exists():
        # Temporary files of atomic writes interrupted by a kill (see checkpoint.atomic_write_bytes).
        for name in OWNED_FILES:
            for stale in run_dir.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = stored_paths(config, run_dir).to_dict()
    record["versions"] = library_versions()
    record["seed"] = config.params.get("seed", 0)
    record["created"] = created
    if resumed is not None:
        record["resumed"] = resumed
    record["command"] = command
    atomic_write_text(existing, json.dumps(record, indent=2, sort_keys=True))
    return run_dir


def made_by(run_dir: str | Path) -> str | None:
    """The command that wrote the run in ``run_dir`` ("train", "demo"; runs written before this
    was recorded: "train"), or None when ``run_dir`` holds no readable run.json."""
    try:
        record = _read_run_json(Path(run_dir) / RUN_FILE)
    except (OSError, ValueError, RunDirError):
        return None
    return record.get("command", "train") if isinstance(record, dict) else None
