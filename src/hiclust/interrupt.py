"""Ctrl-C during training: stop at the next epoch boundary, with a checkpoint written there.

``hiclust train`` runs ``fit`` inside :func:`stop_at_epoch_boundary`. The first Ctrl-C (SIGINT)
only asks for a stop: training goes on to the end of the current epoch, where the estimator
writes a checkpoint and raises :class:`TrainingInterrupted` (see
``DeepClusterer._save_training``). A second Ctrl-C stops at once with a plain
``KeyboardInterrupt``; the last checkpoint on disk is kept (checkpoints are written atomically).

Outside that context (the library used from Python) nothing changes: Ctrl-C raises
``KeyboardInterrupt`` where it lands, and :func:`stop_requested` is always False.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["TrainingInterrupted", "stop_requested", "stop_at_epoch_boundary", "describe_progress"]

_stop = threading.Event()


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped after Ctrl-C at a point where a checkpoint was just written.

    Attributes:
        progress: the checkpoint's progress record ({"phase", "epoch"} for epoch-based phases).
    """

    def __init__(self, progress: dict[str, Any]) -> None:
        super().__init__(f"interrupted; checkpoint written {describe_progress(progress)}")
        self.progress = dict(progress)


def describe_progress(progress: dict[str, Any]) -> str:
    """Where a checkpoint stands, in words: "after epoch 3", "after pretrain epoch 2",
    "in phase cluster (step 120)"."""
    phase, epoch = progress.get("phase"), progress.get("epoch")
    if epoch is not None:
        return f"after epoch {epoch}" if phase in (None, "train") else f"after {phase} epoch {epoch}"
    step = progress.get("step")
    return f"in phase {phase}" + (f" (step {step})" if step is not None else "")


def stop_requested() -> bool:
    """Whether Ctrl-C asked the training in progress to stop at its next epoch boundary."""
    return _stop.is_set()


@contextmanager
def stop_at_epoch_boundary(notice: str = "", enabled: bool = True) -> Iterator[None]:
    """Within this block, the first SIGINT asks for a stop at the next epoch boundary (printing
    ``notice`` on stderr, if given) instead of raising; a second one raises
    ``KeyboardInterrupt`` at once. Does nothing when not ``enabled`` or off the main thread
    (signal handlers can only be installed there)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if _stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        _stop.set()
        if notice:
            print(notice, file=sys.stderr, flush=True)

    _stop.clear()
    previous = signal.signal(signal.SIGINT, on_sigint)
    if previous is None:  # a handler not installed from Python: fall back to Python's own
        previous = signal.default_int_handler
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _stop.clear()
