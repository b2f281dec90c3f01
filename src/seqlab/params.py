"""scikit-learn's estimator conventions without depending on scikit-learn.

A class that mixes in `Params` and whose ``__init__`` stores every argument unchanged under its
own name (computing nothing; derived state is built in ``fit`` or when first used) gets:

* ``get_params(deep=True)``: the constructor arguments, read from the ``__init__`` signature;
  with ``deep``, also ``name__sub`` entries for arguments that have parameters of their own;
* ``set_params(**params)``: sets them (``name__sub`` reaches into such an argument), rejects
  unknown names with a `SeqlabError` naming the valid ones, and returns ``self``;
* a scikit-learn style ``__repr__`` showing only the arguments that differ from their defaults.

That is the whole contract ``sklearn.base.clone`` and ``GridSearchCV`` rely on, so seqlab models
work with them while scikit-learn stays a test-only dependency.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Self

import numpy as np

from seqlab.errors import SeqlabError


class Params:
    """Mixin: ``get_params`` / ``set_params`` / ``__repr__`` from the ``__init__`` signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """Constructor argument names, in signature order."""
        as_type: type = cls  # mypy does not see a type[Self] as Hashable, as the cache asks
        return list(_signature_names(as_type))

    def _store(self, arguments: dict[str, Any]) -> None:
        """Store every constructor argument unchanged under its own name: call it from
        ``__init__`` with ``locals()``. This is the whole of an ``__init__`` here."""
        for name in self._param_names():
            setattr(self, name, arguments[name])

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments (and ``name__sub`` ones of nested parametrised values)."""
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self, **params: Any) -> Self:
        """Set constructor arguments by name; ``name__sub`` sets one inside a nested value."""
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise SeqlabError(f"{type(self).__name__} has no parameter {name!r}; valid "
                                  f"parameters: {', '.join(valid)}")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():  # after plain ones: `model` may have changed
            inner = getattr(self, name)
            if not hasattr(inner, "set_params"):
                raise SeqlabError(f"{type(self).__name__}.{name} has no parameters to set, got "
                                  f"{', '.join(f'{name}__{k}' for k in sub_params)}")
            inner.set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = [f"{name}={_short_repr(value)}" for name, value in self.get_params(deep=False)
                 .items() if not _is_default(value, defaults[name])]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self) -> Any:
        # Only scikit-learn >= 1.6 calls this (GridSearchCV asks for tags), so importing it
        # here keeps it out of seqlab's runtime dependencies. Same tags as BaseEstimator's.
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))


@functools.cache  # inspect.signature is slow, and models may read their parameters per step
def _signature_names(cls: type[object]) -> tuple[str, ...]:
    names = []
    for p in inspect.signature(cls.__init__).parameters.values():
        # **kwargs would hide arguments from get_params, so clone would silently drop them
        assert p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD), (
            f"{cls.__name__}.__init__ must list its arguments explicitly, not *{p.name}")
        if p.name != "self":
            names.append(p.name)
    return tuple(names)


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if default is inspect.Parameter.empty or isinstance(value, np.ndarray):
        return False  # a required argument, or an array (defaults are never arrays)
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # values whose == is not a plain bool
        return False


def _short_repr(value: Any) -> str:
    """One-line repr; arrays are summarised past a few entries."""
    if isinstance(value, np.ndarray):
        with np.printoptions(threshold=16, edgeitems=2, precision=4):
            return " ".join(repr(value).split())
    return repr(value)
