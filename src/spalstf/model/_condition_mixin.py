"""Spatial cells to model conditions: the stored per-gene alignment applied chunk by chunk, and its fit."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from . import _preprocessing as prep
from ._spatial_input import SpatialInput


class ConditionMixin:
    """The spatial side of :class:`~spalstf.model.SpaLSTF`'s preprocessing: the aligned condition of spatial cells."""

    def _st_conditions(self, values) -> np.ndarray:
        """The aligned condition of spatial cells from their raw values of the measured genes (model order).

        Each row is mapped by the stored alignment alone, so a cell's condition does not depend on the other cells.
        """
        params = {
            name: getattr(self.module, f"st_{name}").cpu().numpy()
            for name in prep.alignment_placeholders(self.alignment, 1)
        }
        normalize = bool(self.module.st_normalized)
        values = prep.condition_values(values, self.target_sum, self.cell_scaling, normalize=normalize)
        return prep.apply_alignment(self.alignment, params, values)

    def _st_condition_chunks(
        self, spatial: SpatialInput, chunk_size: int
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(start, stop, condition, empty, library)``: the aligned condition of the spatial cells, by chunks.

        ``library`` is each cell's total over the measured genes in ``adata_st``'s own values, ``empty`` flags the
        cells where it is 0. Works for in-memory (dense or sparse) and backed AnnData; only ``chunk_size`` rows are
        read at once.
        """
        for start, stop, rows in spatial.chunks(self.gene_plan.measured_st, chunk_size):
            library = np.asarray(rows.sum(axis=1), dtype=np.float64).ravel()
            yield start, stop, self._st_conditions(rows), library == 0, library

    def _fit_st_alignment(self, spatial: SpatialInput, normalize_st: bool | str) -> tuple[dict[str, np.ndarray], bool]:
        """Fit the spatial condition's per-gene alignment on the cells with signal; returns it and the normalisation.

        One chunked pass: cells whose measured genes are all zero are counted (and excluded, with a warning), the
        values of at most :data:`~spalstf.model._preprocessing.MAX_QUANTILE_CELLS` evenly spaced cells with signal
        are kept, and whether the values are counts decides the library normalisation when ``normalize_st`` is
        ``"auto"``.
        """
        values, n_empty, counts = spatial.sample_with_signal(self.gene_plan.measured_st, prep.MAX_QUANTILE_CELLS)
        if len(values) < prep.MIN_FIT_CELLS:
            raise ValueError(
                f"adata_st has {spatial.n_obs - n_empty} cell(s) with signal on the measured genes; fitting the "
                f"spatial alignment needs at least {prep.MIN_FIT_CELLS}. Build the model with more spatial cells (it "
                "can then impute any number of cells, one alone included)."
            )
        if n_empty:
            warnings.warn(
                f"{n_empty} of {spatial.n_obs} spatial cells have no signal (all measured genes are 0); they are left "
                "out of the statistics fitted on the spatial data, and their imputation reflects no measurement.",
                UserWarning,
                stacklevel=3,
            )
        normalize = counts if normalize_st == "auto" else bool(normalize_st)
        values = prep.condition_values(values, self.target_sum, self.cell_scaling, normalize=normalize)
        return prep.fit_alignment(self.alignment, values), normalize
