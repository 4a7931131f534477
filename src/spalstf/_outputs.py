"""What an imputation writes, in memory and in an ``out=`` file, and how to read it back (the one description).

A result has the imputed values (the mean), optionally their standard deviation over diffusion draws, and one
metadata dictionary. The same names are used in both layouts:

============================  =====================================  ======================================
what                          in memory (``spalstf_impute``)         in an ``out=`` ``.h5ad`` file
============================  =====================================  ======================================
imputed values (mean)         ``adata_st.obsm[key]`` (DataFrame)     ``X`` (``obs``: cells, ``var``: genes)
standard deviation over draws ``adata_st.obsm[key + "_std"]``        ``layers["std"]``
interval bounds               ``adata_st.obsm[key + "_lower"]``,     ``layers["lower"]``, ``layers["upper"]``
                              ``adata_st.obsm[key + "_upper"]``
metadata                      ``adata_st.uns[key]``                  ``uns[key]``
============================  =====================================  ======================================

``key`` is ``key_added`` (default :data:`~spalstf._constants.IMPUTED_KEY`). The metadata, built by
:func:`result_metadata` for both layouts, holds ``params`` (every setting the model was built, trained and sampled
with, as resolved, not as typed), ``measured_genes`` (the condition, in the spatial data's spelling),
``imputed_genes``, ``output_space``, ``train_time_s``, ``impute_time_s``, ``n_cells_without_signal`` and
``cells_without_signal`` (the names of the imputed cells whose measured genes are all zero: their values reflect no
measurement, only the reference), with intervals ``interval`` (level, method, calibration genes and cells) and
``gene_reliability`` (imputed gene -> expected SPCC with what the platform measures) and, for a result written to a
file, ``out`` (its path; in the in-memory metadata
of a call with ``out=``).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData

from ._constants import LOWER_SUFFIX, STD_SUFFIX, UPPER_SUFFIX

#: Name of the standard deviation: ``obsm[key + STD_SUFFIX]`` in memory, ``layers[STD_LAYER]`` in a file.
STD_LAYER = STD_SUFFIX.lstrip("_")
#: Names of the interval bounds: ``obsm[key + LOWER_SUFFIX]`` in memory, ``layers[LOWER_LAYER]`` in a file.
LOWER_LAYER = LOWER_SUFFIX.lstrip("_")
UPPER_LAYER = UPPER_SUFFIX.lstrip("_")


def _python_scalar(value: Any) -> Any:
    """NumPy scalars (``np.float64(1e-3)``) as the Python scalar of the same value; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def _storable(value: Any) -> Any:
    """``value`` as ``.h5ad`` stores it unchanged (a scalar, or a list of scalars of one type); else ``None``."""
    value = _python_scalar(value)
    if _scalar(value):
        return value
    if isinstance(value, list | tuple) and value:
        items = [_python_scalar(v) for v in value]
        if all(_scalar(v) for v in items) and len({type(v) for v in items}) == 1:
            return items
    return None


def result_metadata(
    *,
    measured_genes: list[str],
    imputed_genes: list[str],
    output_space: str,
    params: dict[str, Any],
    train_time_s: float,
    impute_time_s: float,
    cells_without_signal: list[str] = (),
    out: str | os.PathLike | None = None,
    interval: dict[str, Any] | None = None,
    gene_reliability: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The metadata dictionary of one imputation result (``uns[key]``), the same in memory and in a file.

    ``params`` keeps only values that ``.h5ad`` files store as they are: scalars and lists of scalars of one type
    (``None`` values and objects such as a Lightning strategy are left out, so that the in-memory and the written
    metadata hold the same settings).
    """
    meta: dict[str, Any] = {
        "params": {k: _storable(v) for k, v in params.items() if _storable(v) is not None},
        "measured_genes": list(measured_genes),
        "imputed_genes": list(imputed_genes),
        "output_space": output_space,
        "train_time_s": float(train_time_s),
        "impute_time_s": float(impute_time_s),
        "n_cells_without_signal": len(cells_without_signal),
        "cells_without_signal": [str(c) for c in cells_without_signal],
    }
    if interval is not None:
        meta["interval"] = interval
    if gene_reliability is not None:
        meta["gene_reliability"] = {str(g): float(v) for g, v in gene_reliability.items()}
    if out is not None:
        meta["out"] = str(out)
    return meta


def imputed_frame(adata: AnnData, key: str, what: str = "imputed values") -> pd.DataFrame:
    """``adata.obsm[key]`` as a DataFrame (cells x genes); ``KeyError`` naming ``key`` when it is missing.

    An array in ``obsm`` gets its gene names from ``adata.uns[key]["imputed_genes"]`` (for ``key + "_std"``, from
    the metadata of ``key``).
    """
    if key not in adata.obsm:
        raise KeyError(
            f"{what}: key {key!r} not found in adata.obsm (available: {list(adata.obsm.keys())}); run "
            "sp.tl.spalstf_impute first or pass the `key` it wrote (key_added)."
        )
    value = adata.obsm[key]
    if isinstance(value, pd.DataFrame):
        return value
    base = key[: -len(STD_SUFFIX)] if key.endswith(STD_SUFFIX) else key
    genes = adata.uns.get(base, {}).get("imputed_genes") if isinstance(adata.uns.get(base), dict) else None
    value = np.asarray(value)
    if genes is None or len(genes) != value.shape[1]:
        raise KeyError(
            f"adata.obsm[{key!r}] is an array without gene names and adata.uns[{base!r}]['imputed_genes'] does not "
            "name its columns; store it as a DataFrame (as sp.tl.spalstf_impute does)."
        )
    return pd.DataFrame(value, index=adata.obs_names, columns=list(genes))


#: The optional parts of a result: ``obsm`` suffix in memory and layer name in a file (also the layer names of
#: :func:`spalstf.get.imputed`).
RESULT_LAYERS: tuple[tuple[str, str], ...] = (
    (STD_SUFFIX, STD_LAYER),
    (LOWER_SUFFIX, LOWER_LAYER),
    (UPPER_SUFFIX, UPPER_LAYER),
)


class Result(NamedTuple):
    """One imputation result read back: the mean, the optional layers by file name, and the metadata."""

    mean: pd.DataFrame
    layers: dict[str, pd.DataFrame]
    metadata: dict[str, Any]


def _file_result(adata: AnnData, key: str, path: str | os.PathLike) -> Result:
    import anndata

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The result file {str(path)!r} does not exist; pass out= the path given to sp.tl.spalstf_impute(out=...)."
        )
    stored = anndata.read_h5ad(path)
    if key not in stored.uns:
        raise ValueError(
            f"{str(path)!r} has no uns[{key!r}]: it was not written by sp.tl.spalstf_impute(out=...) with "
            f"key_added={key!r} (its uns holds {sorted(stored.uns)}); pass the `key` it was written with."
        )
    if not stored.obs_names.equals(adata.obs_names):
        raise ValueError(
            f"The cells of {str(path)!r} ({stored.n_obs}) are not the cells of adata_st ({adata.n_obs}, same names in "
            "the same order): pass the spatial data the file was imputed for."
        )

    def frame(matrix) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(matrix), index=adata.obs_names.copy(), columns=stored.var_names.copy())

    layers = {layer: frame(stored.layers[layer]) for _, layer in RESULT_LAYERS if layer in stored.layers}
    return Result(frame(stored.X), layers, dict(stored.uns[key]))


def read_result(adata: AnnData, key: str, out: str | os.PathLike | None = None) -> Result:
    """Read the result stored under ``key``, from ``adata.obsm`` or from the ``out=`` file (both layouts above).

    ``out`` given: read that file. Otherwise ``adata.obsm[key]`` and its optional parts, or, when only the metadata
    is in memory (a call with ``out=``), the file named by ``adata.uns[key]["out"]``. The metadata of an in-memory
    result is ``{}`` when ``adata.uns[key]`` is missing (values stored by hand); a file must hold it.
    """
    meta = adata.uns.get(key)
    if out is None and key not in adata.obsm and isinstance(meta, dict) and "out" in meta:
        out = meta["out"]
    if out is not None:
        return _file_result(adata, key, out)
    mean = imputed_frame(adata, key)
    layers = {}
    for suffix, layer in RESULT_LAYERS:
        if key + suffix in adata.obsm:
            frame = imputed_frame(adata, key + suffix)
            if not (frame.index.equals(mean.index) and frame.columns.equals(mean.columns)):
                raise ValueError(
                    f"adata.obsm[{key + suffix!r}] does not have the cells and genes of adata.obsm[{key!r}]; they "
                    "come from different calls: run sp.tl.spalstf_impute again."
                )
            layers[layer] = frame
    return Result(mean, layers, dict(meta) if isinstance(meta, dict) else {})
