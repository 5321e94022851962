"""The hierarchy as a result: pictures, per-level evaluation and a self-contained HTML explorer.

* :func:`plot_tree`, :func:`plot_contingency`, :func:`plot_level_metrics` — matplotlib pictures
  (Agg canvas, no display needed);
* :func:`hierarchy_evaluation`, :func:`format_evaluation` — metrics at every level of the tree;
* :func:`write_report` — one HTML file with the clickable tree, node images and metrics.

The command-line side (``hiclust tree | report | predict``) lives in :mod:`hiclust.report.cli`.
Names are imported on first use (PEP 562), so ``hiclust --help`` does not load matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "plot_tree": "tree_plot",
    "plot_contingency": "tree_plot",
    "plot_level_metrics": "tree_plot",
    "hierarchy_evaluation": "evaluation",
    "format_evaluation": "evaluation",
    "write_report": "html",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from hiclust.report.evaluation import format_evaluation, hierarchy_evaluation
    from hiclust.report.html import write_report
    from hiclust.report.tree_plot import plot_contingency, plot_level_metrics, plot_tree


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hiclust.report.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hiclust.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
