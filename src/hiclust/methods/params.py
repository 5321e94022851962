"""Hyperparameters declared once.

Each estimator lists its parameters as :class:`Param` declarations. From that one list come

* validation: ``_parameter_constraints`` in scikit-learn's format, checked by
  ``BaseEstimator._validate_params`` before anything is built (``InvalidParameterError``, a
  ``ValueError``);
* the docs: the numpydoc ``Parameters`` section appended to the class docstring
  (``name : type, default=…``);
* resume: the parameters that may differ between a checkpoint and the run resuming it;
* the command line: one ``--flag`` per parameter, with its type, choices and help text.

>>> from numbers import Integral
>>> p = Param(Interval(Integral, 1, None, closed="left"), "Number of clusters K.")
>>> describe_constraints(p.constraints)
'int'
>>> flag_name("n_clusters", p)
'--n-clusters'
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from sklearn.utils._param_validation import Interval, InvalidParameterError, Options
from sklearn.utils._param_validation import StrOptions as _SklearnStrOptions

__all__ = [
    "Param", "RegistryOptions", "Interval", "StrOptions", "Options", "InvalidParameterError", "Integral", "Real",
    "describe_constraints", "flag_name", "numpydoc_parameters", "install_parameters",
]


@dataclass(frozen=True)
class Param:
    """One hyperparameter.

    Attributes:
        constraints: one scikit-learn constraint or a list of them (``Interval``,
            ``StrOptions``, a type such as ``nn.Module``, ``None``, ``"boolean"``...).
        doc: what it is, in one or a few sentences (units, the reference value).
        resume: "free" when a run may be resumed with another value (it changes no result
            already computed, e.g. ``verbose``; ``epochs`` to train longer), else "fixed".
        flag: the command-line flag; None derives ``--name-with-dashes``; "" for no flag.
    """

    constraints: Any
    doc: str
    resume: str = "fixed"
    flag: str | None = None
    choices: tuple[str, ...] = field(default=())

    def constraint_list(self) -> list[Any]:
        return list(self.constraints) if isinstance(self.constraints, list) else [self.constraints]


class StrOptions(_SklearnStrOptions):
    """scikit-learn's StrOptions, its choices listed sorted in messages (a set's order changes
    from run to run).

    >>> str(StrOptions({"b", "c", "a"}))
    "a str among {'a', 'b', 'c'}"
    """

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(o) for o in sorted(self.options)) + "}"


class RegistryOptions(StrOptions):
    """The names of a live registry plus a few fixed ones (e.g. 'auto' + ``hiclust.nn.BACKBONES``):
    a name registered after import (``register_backbone``) is valid at once, and messages list the
    choices sorted.

    >>> registry = {"b": 1}
    >>> c = RegistryOptions({"auto"}, registry)
    >>> registry["a"] = 2
    >>> c.is_satisfied_by("a"), str(c)
    (True, "a str among {'a', 'auto', 'b'}")
    """

    def __init__(self, fixed: set[str], registry: dict[str, Any]) -> None:
        self._registry = registry
        super().__init__(set(fixed))

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(o) for o in sorted(self.options)) + "}"

    @property
    def options(self) -> set[str]:  # type: ignore[override]
        return self._fixed | set(self._registry)

    @options.setter
    def options(self, value: set[str]) -> None:
        self._fixed = set(value)


def describe_constraints(constraints: Any) -> str:
    """The numpydoc type of a constraint list: 'int', 'float', "{'a', 'b'}", 'str or None'..."""
    items = constraints if isinstance(constraints, list) else [constraints]
    parts: list[str] = []
    for c in items:
        if c is None:
            parts.append("None")
        elif isinstance(c, Interval):
            parts.append("int" if c.type is Integral else "float")
        elif isinstance(c, StrOptions):
            parts.append("{" + ", ".join(repr(o) for o in sorted(c.options)) + "}")
        elif c == "boolean":
            parts.append("bool")
        elif isinstance(c, type):
            parts.append(c.__name__ if c.__module__ == "builtins" else f"{c.__module__.split('.')[0]}.{c.__name__}"
                         .replace("torch.Module", "nn.Module"))
        elif c == "array-like":
            parts.append("array-like")
        else:
            parts.append(str(c))
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    return " or ".join(seen)


def flag_name(name: str, param: Param) -> str:
    """The command-line flag of parameter ``name`` ("" when it has none)."""
    if param.flag is not None:
        return param.flag
    return "--" + name.replace("_", "-")


def numpydoc_parameters(params: dict[str, Param], init: Any) -> str:
    """The numpydoc ``Parameters`` section for ``params`` with defaults read from ``init``."""
    signature = inspect.signature(init)
    lines = ["Parameters", "----------"]
    for name, param in params.items():
        default = signature.parameters[name].default
        lines.append(f"{name} : {describe_constraints(param.constraints)}, default={default!r}")
        lines.extend(textwrap.wrap(param.doc, 92, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


def install_parameters(cls: type) -> None:
    """Derives ``_parameter_constraints``, ``_resume_free`` and the docstring's Parameters section
    of ``cls`` from its ``_params`` declarations. Every ``__init__`` argument must be declared."""
    params: dict[str, Param] = cls._params
    signature = inspect.signature(cls.__init__)
    names = [n for n in signature.parameters if n != "self"]
    missing = [n for n in names if n not in params]
    extra = [n for n in params if n not in names]
    if missing or extra:
        raise TypeError(f"{cls.__name__}: parameters not declared in _params: {missing}; declared but not in __init__: {extra}")
    cls._params = {n: params[n] for n in names}  # constructor order, for the docs and the CLI
    cls._parameter_constraints = {n: p.constraint_list() for n, p in cls._params.items()}
    cls._resume_free = frozenset(n for n, p in cls._params.items() if p.resume == "free")
    doc = inspect.cleandoc(cls.__doc__ or cls.__name__)
    marker = "{parameters}"
    section = numpydoc_parameters(cls._params, cls.__init__)
    cls.__doc__ = doc.replace(marker, section) if marker in doc else f"{doc}\n\n{section}"
