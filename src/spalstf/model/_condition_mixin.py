"""Spatial cells to model conditions: the stored per-gene alignment applied chunk by chunk, and its fit."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import numpy as np

from . import _preprocessing as prep
from ._defaults import MAX_NON_INTEGER_FRACTION
from ._spatial_input import SpatialInput

logger = logging.getLogger(__name__)


def resolve_normalize_st(normalize_st: bool | str, non_integer: float) -> bool:
    """Whether the spatial values are library-normalised: ``normalize_st`` itself, or for ``"auto"`` the rule.

    ``"auto"`` normalises when at most :data:`~spalstf.model._defaults.MAX_NON_INTEGER_FRACTION` of the nonzero
    values are non-integer (``non_integer``, a fraction), i.e. unless the values are clearly not counts; when some
    are non-integer but few, a `UserWarning` names the fraction. The choice is logged: at INFO level when ``"auto"``
    met non-integer values, else (plain counts, or an explicit choice) at DEBUG level;
    :func:`~spalstf.tl.spalstf_impute`'s summary line says it too.
    """
    if normalize_st != "auto":
        normalize = bool(normalize_st)
        reason = f"normalize_st={normalize_st!r}"
    else:
        normalize = non_integer <= MAX_NON_INTEGER_FRACTION
        reason = (
            f"normalize_st='auto': {non_integer:.2%} of adata_st's nonzero values on the measured genes are "
            f"non-integer ({'at most' if normalize else 'more than'} {MAX_NON_INTEGER_FRACTION:.0%}: "
            f"{'counts' if normalize else 'not counts'})"
        )
        if normalize and non_integer > 0:
            warnings.warn(
                f"{non_integer:.3%} of adata_st's nonzero values on the measured genes are non-integer; they are "
                "treated as counts (library-normalised). Pass normalize_st=False if the values are intensities "
                "that are not proportional to molecule counts, or normalize_st=True to silence this warning.",
                UserWarning,
                stacklevel=4,
            )
    how = "library-normalised over the measured genes" if normalize else "used as given (not library-normalised)"
    level = logging.INFO if normalize_st == "auto" and non_integer > 0 else logging.DEBUG
    logger.log(level, "spatial values are %s (%s).", how, reason)
    return normalize


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
        are kept, and the fraction of non-integer values decides the library normalisation when ``normalize_st`` is
        ``"auto"`` (:func:`resolve_normalize_st`).
        """
        values, n_empty, non_integer = spatial.sample_with_signal(self.gene_plan.measured_st, prep.MAX_QUANTILE_CELLS)
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
        normalize = resolve_normalize_st(normalize_st, non_integer)
        values = prep.condition_values(values, self.target_sum, self.cell_scaling, normalize=normalize)
        return prep.fit_alignment(self.alignment, values), normalize
