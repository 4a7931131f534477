"""The spatial data as the model reads it: validated once where it enters, then read in row chunks.

Every entry point that takes ``adata_st`` (:class:`~spalstf.model.SpaLSTF`'s constructor, ``impute``,
``calibrate_intervals`` and :func:`~spalstf.tl.spalstf_impute`) turns it into a :class:`SpatialInput` first
(:meth:`SpatialInput.prepare`): the checks that depend on the object alone (cells, unique cell names, the layer) run
there, once, and the private workers take the prepared object. The values themselves are checked chunk by chunk as
they are read (a backed matrix is never read whole).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._expression import non_integer_counts, to_dense
from .._streaming import iter_row_chunks, rows_per_chunk
from .._validation import check_nonempty, check_unique_names, check_values, get_matrix
from ._preprocessing import evenly_spaced_rows


@dataclass(frozen=True, eq=False)
class SpatialInput:
    """A validated spatial AnnData (in memory or backed) and the matrix holding its values.

    Attributes
    ----------
    adata
        The spatial AnnData, unchanged.
    layer
        The layer holding the values (``None``: ``X``).
    matrix
        ``adata.X`` or ``adata.layers[layer]`` (any AnnData matrix type; read by row chunks).
    """

    adata: AnnData
    layer: str | None
    matrix: Any

    @classmethod
    def prepare(cls, adata_st: AnnData | SpatialInput, layer: str | None, argument: str = "layer") -> SpatialInput:
        """Validate ``adata_st`` and find its values; a prepared input is returned as it is.

        Raises a `ValueError` for an object without cells or genes or with duplicated cell names (per-cell noise and
        outputs are keyed by name) or gene names (genes are found by name), and a `KeyError` naming ``argument`` when
        the layer is missing.
        """
        if isinstance(adata_st, SpatialInput):
            return adata_st
        check_nonempty(adata_st, "adata_st")
        check_unique_names(adata_st.obs_names, "adata_st", "obs")
        check_unique_names(adata_st.var_names, "adata_st", "var")
        return cls(adata_st, layer, get_matrix(adata_st, layer, "adata_st", argument))

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return self.adata.n_obs

    @property
    def obs_names(self) -> pd.Index:
        """Cell names."""
        return self.adata.obs_names

    @property
    def var_names(self) -> pd.Index:
        """Gene names."""
        return self.adata.var_names

    def columns(self, genes: Sequence[str]) -> np.ndarray:
        """Column positions of ``genes`` (all required), in their order; a `KeyError` lists the missing ones."""
        missing = [g for g in genes if g not in self.adata.var_names]
        if missing:
            hint = ""
            folded = {str(g).strip().upper() for g in self.adata.var_names}
            near = [g for g in missing if str(g).strip().upper() in folded]
            if near:
                hint = (
                    f" {len(near)} of them are in adata_st when case and surrounding whitespace are ignored (e.g. "
                    f"{near[0]!r}): rename adata_st's genes to the spelling of the panel the model was built with "
                    "(case_sensitive=False applies when a model is built, not to later imputations)."
                )
            raise KeyError(
                f"adata_st lacks {len(missing)} gene(s) the model is conditioned on: {missing[:10]}. Pass the same "
                f"gene panel the model was built with.{hint}"
            )
        return self.adata.var_names.get_indexer(list(genes))

    def chunks(self, genes: Sequence[str], chunk_size: int) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(start, stop, rows)``: the values of ``genes`` in chunks of ``chunk_size`` cells, checked as read."""
        names = list(genes)
        for start, stop, rows in iter_row_chunks(self.matrix, chunk_size, self.columns(names)):
            check_values(rows, "adata_st", names)
            yield start, stop, rows

    def sample_with_signal(
        self, genes: Sequence[str], max_cells: int, return_rows: bool = False
    ) -> tuple[np.ndarray, int, float] | tuple[np.ndarray, int, float, np.ndarray]:
        """Raw values (float64) of ``genes`` in the cells with signal among ``max_cells`` evenly spaced ones.

        One chunked pass; also returns the number of cells without signal (all ``genes`` zero) over all cells and
        the fraction of the nonzero values of ``genes`` (over all cells, or about a million evenly spaced values per
        chunk) that are not integers (0 for counts; 0 when every value is 0); with ``return_rows``, also the row
        positions of the returned cells.
        """
        sample = evenly_spaced_rows(self.n_obs, max_cells)
        kept, positions, n_empty, n_fractional, n_nonzero = [], [], 0, 0, 0
        for start, stop, rows in self.chunks(genes, rows_per_chunk(len(genes))):
            rows = to_dense(rows)
            empty = rows.sum(axis=1) == 0
            n_empty += int(empty.sum())
            fractional, nonzero = non_integer_counts(rows)
            n_fractional, n_nonzero = n_fractional + fractional, n_nonzero + nonzero
            keep = np.isin(np.arange(start, stop), sample) & ~empty
            kept.append(rows[keep])
            positions.append(np.arange(start, stop)[keep])
        result = np.concatenate(kept), n_empty, n_fractional / max(n_nonzero, 1)
        return (*result, np.concatenate(positions)) if return_rows else result


def spatial_coordinates(adata: AnnData, spatial_key: str, *, required: bool = True) -> np.ndarray | None:
    """The cells' coordinates ``adata.obsm[spatial_key]`` as a float64 (cells, 2 or 3) array.

    Missing: ``None``, or with ``required`` a `KeyError` naming the key and the fix. Coordinates that are not 2-D or
    3-D or not finite raise a `ValueError` with ``required`` (``None`` without).
    """
    if not isinstance(spatial_key, str) or spatial_key not in adata.obsm:
        if not required:
            return None
        raise KeyError(
            f"adata_st.obsm has no {spatial_key!r} (the cells' coordinates); the draws and the pooled spatial test "
            f"need them. Pass spatial_key= naming the obsm key that holds them (present: {list(adata.obsm.keys())})."
        )
    coordinates = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    usable = coordinates.ndim == 2 and coordinates.shape[1] in (2, 3) and np.isfinite(coordinates).all()
    if not required and not usable:
        return None
    if coordinates.ndim != 2 or coordinates.shape[1] not in (2, 3):
        raise ValueError(
            f"adata_st.obsm[{spatial_key!r}] must hold 2-D or 3-D coordinates (cells x 2 or 3), got shape "
            f"{coordinates.shape}."
        )
    if not np.isfinite(coordinates).all():
        bad = int((~np.isfinite(coordinates)).any(axis=1).sum())
        raise ValueError(
            f"adata_st.obsm[{spatial_key!r}] has {bad} cell(s) with NaN or infinite coordinates; every cell needs a "
            f"position for the spatial graph: drop those cells, "
            f"adata_st[np.isfinite(adata_st.obsm[{spatial_key!r}]).all(axis=1)], or give them their coordinates."
        )
    return coordinates
