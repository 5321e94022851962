"""hiclust: contrastive hierarchical clustering (CoHiClust) and the methods it is measured against.

>>> from hiclust import CoHiClust, load_dataset
>>> data = load_dataset("digits", split="all")
>>> model = CoHiClust(n_clusters=10, depth=4, epochs=100).fit(data)   # doctest: +SKIP
>>> model.labels_, model.hierarchy_.to_linkage()                        # doctest: +SKIP

The names below are imported on first use (PEP 562), so that ``import hiclust`` and the
``hiclust`` command's ``--help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CoHiClust", "ContrastiveClustering", "DEC", "IDEC", "DeepECT", "SimCLR", "Hierarchy", "ImageDataset", "load_dataset", "METHODS",
           "EmptyClusterWarning", "__version__"]

# public name → the module that defines it
_LAZY: dict[str, str] = {
    "ImageDataset": "hiclust.data", "load_dataset": "hiclust.data", "Hierarchy": "hiclust.hierarchy",
    "EmptyClusterWarning": "hiclust.methods.base",
    **{name: "hiclust.methods" for name in ("DEC", "IDEC", "METHODS", "CoHiClust", "ContrastiveClustering",
                                             "DeepECT", "SimCLR")},
}

if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from hiclust.data import ImageDataset, load_dataset
    from hiclust.hierarchy import Hierarchy
    from hiclust.methods.base import EmptyClusterWarning
    from hiclust.methods import DEC, IDEC, METHODS, CoHiClust, ContrastiveClustering, DeepECT, SimCLR


def __getattr__(name: str) -> Any:
    """Imports ``hiclust.<name>`` on first access (then it is an ordinary module attribute)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hiclust' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
