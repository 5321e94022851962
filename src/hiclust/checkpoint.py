"""Checkpoints that are safe to hand around and safe to interrupt.

* Written atomically: a temporary file in the same directory, flushed and fsync'ed, then
  ``os.replace``d over the target and the directory fsync'ed. A kill at any moment leaves either
  the previous checkpoint or the new one, never a torn file; a full disk leaves the previous one.
* Loaded with ``torch.load(weights_only=True)``: only tensors, numbers, strings, lists and dicts
  are accepted, so a file crafted to run code when unpickled is refused without running it.
* The configuration travels as JSON text, never as pickled objects, with a format tag and the
  model class name so that a checkpoint of another method or shape is rejected with a clear error.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import random
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "FORMAT",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT = "hiclust-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unsafe, corrupt, or from another model."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's file mode creation mask (read by setting it and setting it back)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def _new_file_mode(path: Path) -> int:
    """The permission bits a file written at ``path`` gets: those of the file it replaces, else
    what ``open()`` would give a new file (0o666 less the user's umask), not mkstemp's 0o600."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temp file, fsync, rename). The file gets the mode
    of the file it replaces, or the one the user's umask gives a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # Whatever happened (ENOSPC, KeyboardInterrupt), the old file is untouched; drop the temp.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "the previous version was kept" if path.exists() else "nothing was written"
            raise OSError(
                exc.errno,
                f"no space left on the device while writing {path} ({len(data)} bytes); {kept}. "
                "Free disk space (or choose another --out) and resume with `hiclust train --resume RUN_DIR`",
            ) from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output_file(out: str | os.PathLike, flag: str = "--out", example: str = "tree.png",
                      replace_ok: bool = False) -> None:
    """Raises IsADirectoryError when ``out`` names an existing directory where a file is needed, and
    FileExistsError when it names an existing file that may not be replaced (``replace_ok``: the
    user passed --overwrite, or the file is the run's own output). Call it before anything is
    computed or written, temporary files included."""
    if Path(out).is_dir():
        raise IsADirectoryError(f"{flag} {out} is a directory; give a file name, e.g. {flag} {Path(out) / example}")
    if not replace_ok and Path(out).exists():
        raise FileExistsError(f"{flag} {out} already exists; choose another {flag} or pass --overwrite to replace it")


_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running",
                 "In PyTorch")


def _unpickling_detail(exc: BaseException) -> str:
    """The reason in torch's multi-line ``weights_only`` refusal ("Trying to load unsupported
    GLOBAL posix.system ...", "Unsupported operand 149"), without its advice to load unsafely."""
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not any(a in line for a in _TORCH_ADVICE):
            return line.rstrip(".")
    return type(exc).__name__


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a training run draws from, as tensors and plain numbers (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python_version": int(py_state[0]),
        "python_state": torch.tensor(py_state[1], dtype=torch.int64),
        "python_gauss": py_state[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    rest = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), rest[0], rest[1], rest[2]))
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def save_checkpoint(path: str | os.PathLike, *, model_class: str, config: dict[str, Any], state: dict[str, Any]) -> None:
    """Atomically writes a checkpoint.

    Args:
        model_class: the estimator's class name (checked on load).
        config: JSON-serializable hyperparameters (stored as JSON text).
        state: tensors, numbers, strings, lists and dicts only (model/optimizer state dicts,
            RNG states, epoch, pruning state...).
    """
    payload = {
        "format": FORMAT,
        "model_class": model_class,
        "config_json": json.dumps(config, sort_keys=True),
        "state": state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike, *, expected_class: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads a checkpoint safely; returns (config, state).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not a hiclust checkpoint, holds objects other than
            tensors and plain data (refused without being executed), is truncated, or belongs
            to another model class than ``expected_class``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the error below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data ({_unpickling_detail(exc)}); it was refused "
            "without being executed. Only load checkpoints written by hiclust (model.pt, checkpoint.pt)"
        ) from None
    except Exception as exc:  # torch.load fails in many ways on files that are not torch archives
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {detail}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hiclust checkpoint (expected format {FORMAT!r})")
    if expected_class is not None and payload["model_class"] != expected_class:
        raise CheckpointError(
            f"{path} holds a {payload['model_class']} checkpoint, not a {expected_class}; "
            f"load it with hiclust.{payload['model_class']}.load"
        )
    return json.loads(payload["config_json"]), payload["state"]
