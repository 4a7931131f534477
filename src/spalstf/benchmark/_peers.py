"""The imputation methods :func:`spalstf.tl.cross_validate` compares, by name, and the check of their options.

Every method follows the signature described in :mod:`spalstf.benchmark`.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

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

#: The arguments :func:`spalstf.tl.cross_validate` passes to every method itself (not options).
_ARGS_SET_BY_CROSS_VALIDATE = ("adata_st", "adata_sc", "held_genes", "random_state")


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise a `TypeError` naming an option of ``method_kwargs[method]`` that the method does not take.

    Checked before any fold runs, so a typo fails at once instead of being recorded as an error of every fold. For
    ``"spalstf"`` the options are those of :func:`~spalstf.tl.spalstf_impute` and of what it routes them to; a
    method whose function takes arbitrary keywords (gimVI's training, Tangram's mapping) is checked by its library.
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


#: Methods that are known but cannot be run here, with the reason.
NOT_RUNNABLE: dict[str, str] = {
    "stdiff": (
        "stDiff is not runnable here: its only release (stdiff-sc 1.1.4) pins numpy 1.19.5, torch 1.9.0, scanpy 1.7.2 "
        "and pandas 1.1.5 (not installable on Python >= 3.11), imports timm/ray, and sets CUDA default tensors. "
        "docs/benchmarks.md compares against its published figures instead."
    ),
}
