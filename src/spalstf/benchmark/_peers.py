"""The imputation methods :func:`spalstf.tl.cross_validate` compares, by name, and the check of their options.

Every method follows the signature described in :mod:`spalstf.benchmark`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ._external_peers import impute_gimvi, impute_tangram
from ._peer_methods import PeerFunction, impute_knn, impute_ridge, impute_spage, impute_spalstf

#: The methods :func:`spalstf.tl.cross_validate` knows, by name (looked up at call time).
PEERS: dict[str, PeerFunction] = {
    "spalstf": impute_spalstf,
    "gimvi": impute_gimvi,
    "tangram": impute_tangram,
    "spage": impute_spage,
    "knn": impute_knn,
    "ridge": impute_ridge,
}


def _int_at_least_1(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_) and value >= 1


def _real(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and (np.isfinite(float(value)))
    )


#: What the options of the in-package peers accept (checked before any fold runs): a test and its description.
VALUE_RULES: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "knn": {"n_neighbors": (_int_at_least_1, "an integer >= 1")},
    "ridge": {"alpha": (lambda v: _real(v) and v >= 0, "a finite number >= 0")},
    "spage": {
        "n_pv": (lambda v: v is None or _int_at_least_1(v), "None or an integer >= 1"),
        "n_neighbors": (_int_at_least_1, "an integer >= 1"),
        "sim_threshold": (lambda v: _real(v) and -1 <= v <= 1, "a number between -1 and 1"),
    },
}

#: The arguments :func:`spalstf.tl.cross_validate` passes to every method itself (not options).
_ARGS_SET_BY_CROSS_VALIDATE = ("adata_st", "adata_sc", "held_genes", "random_state")


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise a `TypeError` (`ValueError`) naming an option of ``method_kwargs[method]`` it does not take (accept).

    Checked before any fold runs, so a typo or an invalid value fails at once instead of being recorded as an error
    of every fold. For ``"spalstf"`` the options are those of :func:`~spalstf.tl.spalstf_impute` and of what it
    routes them to (values checked by the rules of :data:`spalstf.model._defaults.RULES`); the in-package
    baselines' values are checked by :data:`VALUE_RULES`; a method whose function takes arbitrary keywords (gimVI's
    training, Tangram's mapping) is checked by its library.
    """
    func = PEERS[method]
    taken = [k for k in options if k in _ARGS_SET_BY_CROSS_VALIDATE]
    if taken:
        raise TypeError(f"method_kwargs[{method!r}] sets {taken}, which cross_validate sets itself; remove it.")
    if func is impute_spalstf:
        from ..model._workflow import route_options
        from ..tl._impute import spalstf_impute

        own = set(inspect.signature(spalstf_impute).parameters)
        try:
            route_options({k: v for k, v in options.items() if k not in own}, own)
        except TypeError as err:
            raise TypeError(f"method_kwargs[{method!r}]: {err}") from None
        from ..model._defaults import MODULE_OPTIONS, PREPROCESSING_OPTIONS, RULES, TRAINING_OPTIONS, check_option

        defaulted = {*MODULE_OPTIONS, *PREPROCESSING_OPTIONS, *TRAINING_OPTIONS}  # None: the preset's value
        for name, value in options.items():
            if name in RULES and not (value is None and name in defaulted):
                try:
                    check_option(name, value)
                except ValueError as err:
                    raise ValueError(f"method_kwargs[{method!r}]: {err}") from None
        return
    parameters = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    valid = sorted(set(parameters) - set(_ARGS_SET_BY_CROSS_VALIDATE))
    unknown = [k for k in options if k not in parameters]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f". Valid options: {valid}."
        raise TypeError(f"method_kwargs[{method!r}] has an unknown option {unknown[0]!r}{hint}")
    for name, (test, description) in VALUE_RULES.get(method, {}).items():
        if name in options and not test(options[name]):
            raise ValueError(f"method_kwargs[{method!r}]: {name} must be {description}, got {options[name]!r}.")


#: Methods that are known but cannot be run here, with the reason.
NOT_RUNNABLE: dict[str, str] = {
    "stdiff": (
        "stDiff is not runnable here: its only release (stdiff-sc 1.1.4) pins numpy 1.19.5, torch 1.9.0, scanpy 1.7.2 "
        "and pandas 1.1.5 (not installable on Python >= 3.11), imports timm/ray, and sets CUDA default tensors. "
        "docs/benchmarks.md compares against its published figures instead."
    ),
}
