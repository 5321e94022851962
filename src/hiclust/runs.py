"""Run directories: one folder per training run.

Layout of ``RUN_DIR``:
    run.json        method, dataset, resolved parameters, seed, library versions (written first)
    checkpoint.pt   training checkpoint (model, optimizer, RNG, epoch, pruning), atomic
    model.pt        final fitted model, atomic
    history.jsonl   one JSON record per epoch
    metrics.json    final metrics (when labels exist)
    tree.png        picture of the learned hierarchy
A directory holding another run is never reused silently: ``--overwrite`` is required.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiclust.checkpoint import atomic_write_text

__all__ = ["RunConfig", "RunDirError", "prepare_run_dir", "read_run_config", "library_versions", "load_config_file"]

RUN_FILE = "run.json"
OWNED_FILES = ("run.json", "checkpoint.pt", "model.pt", "history.jsonl", "metrics.json", "tree.png", "evaluation.json")


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "dataset": self.dataset, "split": self.split, "root": self.root,
            "params": self.params, "image_size": self.image_size, "strict": self.strict,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        keys = {"method", "dataset", "split", "root", "params", "image_size", "strict"}
        unknown = set(d) - keys - {"versions", "created", "seed"}
        if unknown:
            raise RunDirError(f"unknown keys in run configuration: {', '.join(sorted(unknown))}")
        return cls(**{k: d[k] for k in keys if k in d})

    def identity(self) -> dict[str, Any]:
        """The part that must match for two runs to be 'the same run': everything but the
        parameters the method declares free to change on resume (epochs, verbosity, device...)."""
        from hiclust.methods import METHODS

        free = getattr(METHODS.get(self.method), "_resume_free", frozenset({"epochs", "verbose", "device"}))
        d = self.to_dict()
        d["params"] = {k: v for k, v in self.params.items() if k not in free}
        return d


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
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping (method, dataset, params...)")
    return data


def read_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a hiclust run directory (no {RUN_FILE}); train into it with 'hiclust train --out {run_dir}'")
    return RunConfig.from_dict(json.loads(path.read_text()))


def prepare_run_dir(run_dir: str | Path, config: RunConfig, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Creates or checks ``run_dir`` for ``config``; writes run.json. Call only after all input
    validation passed, so that a rejected run leaves nothing behind.

    Raises:
        RunDirError: the directory holds a different run (or any run, when neither resuming
            nor overwriting) and ``overwrite`` is False.
    """
    run_dir = Path(run_dir)
    existing = run_dir / RUN_FILE
    if existing.exists() and not overwrite:
        old = RunConfig.from_dict(json.loads(existing.read_text()))
        if not resume:
            raise RunDirError(
                f"{run_dir} already holds a run ({old.method} on {old.dataset}); use --resume {run_dir} to continue it, "
                "--overwrite to replace it, or another --out"
            )
        if old.identity() != config.identity():
            raise RunDirError(f"{run_dir} holds a different run than the one requested; use --overwrite or another --out")
    elif run_dir.exists() and any(run_dir.iterdir()) and not overwrite and not existing.exists():
        raise RunDirError(f"{run_dir} exists and is not empty (and is not a hiclust run); choose another --out or pass --overwrite")
    if overwrite and run_dir.exists():
        for name in OWNED_FILES:
            (run_dir / name).unlink(missing_ok=True)
    if run_dir.exists():
        # Temporary files of atomic writes interrupted by a kill (see checkpoint.atomic_write_bytes).
        for name in OWNED_FILES:
            for stale in run_dir.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = config.to_dict()
    record["versions"] = library_versions()
    record["seed"] = config.params.get("seed", 0)
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_text(existing, json.dumps(record, indent=2, sort_keys=True))
    return run_dir
