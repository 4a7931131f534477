"""Calibrated intervals and per-gene reliability of :class:`~spalstf.model.SpaLSTF`, calibrated on the panel.

The statistics live in :mod:`spalstf.model._calibration` (numpy); this mixin reads the spatial and reference data
the calibration needs and stores the result on the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS

from .._constants import SPATIAL_KEY
from .._expression import to_dense
from .._threads import with_cpu_threads
from . import _calibration as cal
from . import _preprocessing as prep
from ._defaults import (
    N_CALIBRATION_FOLDS,
    N_CALIBRATION_REPEATS,
    N_STRATA,
    check_option,
    default_calibration_cells,
)
from ._draws import noise_statistics
from ._spatial_input import SpatialInput, spatial_coordinates


class IntervalMixin:
    """:meth:`calibrate_intervals` and :meth:`get_gene_reliability` for :class:`~spalstf.model.SpaLSTF`."""

    @with_cpu_threads
    def calibrate_intervals(
        self,
        adata_st: AnnData,
        *,
        layer: str | None = None,
        n_folds: int | None = None,
        n_repeats: int = N_CALIBRATION_REPEATS,
        n_strata: int = N_STRATA,
        max_cells: int | None = None,
        random_state: int = 0,
        spatial_key: str = SPATIAL_KEY,
    ) -> cal.IntervalCalibration:
        """Calibrate the intervals and the per-gene reliability on the measured genes of ``adata_st``.

        Inner leave-genes-out over the model's measured genes (``n_folds`` folds, the split repeated ``n_repeats`` times
        with different seeds and pooled): for each fold, a closed-form copy of the model (the ridge + neighbour blend
        with this model's preprocessing and settings, no training) is built on the other measured genes and predicts the
        fold's genes in the cells of ``adata_st`` with signal among ``max_cells`` evenly spaced ones. Its errors in the
        platform's space ``log1p(x / L * target_sum)`` (``L`` the cell's total over the measured genes) give
        split-conformal quantiles in ``n_strata`` strata of the predicted raw measurement, and two truth-free statistics
        of its predictions, paired with its real per-gene Spearman correlation, give the reliability: the statistic that
        ranks the panel genes better is mapped to each imputed gene's expected SPCC (``docs/method.md``, section
        "Uncertainty"). The imputed genes' values never enter; the cost is ``n_folds * n_repeats`` closed-form fits, not
        trainings. The result is stored as :attr:`interval_calibration_` (saved with the model) and used by every later
        :meth:`impute` with ``interval=``, whatever cells it imputes; call this method again to calibrate on other data.
        The scores come from the closed-form copies, not from the model itself: for a model whose estimate is mostly its
        network (``preset="paper"``) the intervals describe the closed-form parts' errors.

        Parameters
        ----------
        adata_st
            Spatial data with (at least) the model's measured genes; in memory or backed (read in chunks).
        layer
            Layer with the values; default: the layer the model was built with.
        n_folds
            Inner folds over the measured genes (at most their number); default 5, or the number of measured genes
            when there are fewer.
        n_repeats
            Random splits of the measured genes into ``n_folds`` folds, pooled. More splits make the reliability map
            and the score quantiles depend less on which genes happen to share a fold, at ``n_repeats`` times the
            cost. With ``n_folds`` equal to the number of measured genes (leave-one-out) every split is the same, and
            one is computed.
        n_strata
            Strata of the predicted measurement (``1``: one width per gene, the plain conformal interval).
        max_cells
            Spatial cells at most used (evenly spaced over those with signal). Default: 10,000, fewer for large
            panels so that the calibration holds at most 3,000,000 entries (cells x measured genes x ``n_repeats``;
            about 50 bytes each), but never fewer than 1,000 cells. The number used is recorded in
            ``uns[key]["interval"]["n_calibration_cells"]``.
        random_state
            Seed of the splits of the measured genes into folds.
        spatial_key
            Key of the cells' coordinates in ``adata_st.obsm``. With coordinates, the calibration also measures how
            spatially smooth (median Moran's I on a 6-nearest-neighbour graph), how shared between genes (mean
            correlation), how shared within expression clusters and how much they vary between regions of the tissue
            the panel genes' errors are, which :meth:`~spalstf.model.SpaLSTF.posterior_predictive_sample` needs;
            without them only the intervals and the reliability are calibrated.

        Returns
        -------
        The fitted :class:`~spalstf.model._calibration.IntervalCalibration`.

        Examples
        --------
        >>> model.calibrate_intervals(adata_st)  # doctest: +SKIP
        >>> model.get_gene_reliability().sort_values().tail()  # doctest: +SKIP
        """
        if n_folds is not None:
            check_option("n_calibration_folds", n_folds, "n_folds")
        check_option("n_calibration_repeats", n_repeats, "n_repeats")
        check_option("random_state", random_state)
        check_option("n_strata", n_strata)
        if max_cells is not None:
            check_option("max_calibration_cells", max_cells, "max_cells")
        spatial = SpatialInput.prepare(adata_st, layer if layer is not None else self.st_layer)
        measured_st, measured = list(self.gene_plan.measured_st), list(self.gene_plan.measured)
        if len(measured) < cal.MIN_CALIBRATION_GENES:
            raise ValueError(
                f"Intervals are calibrated on the measured genes, and the model has {len(measured)} (at least "
                f"{cal.MIN_CALIBRATION_GENES} are needed); pass interval=None."
            )
        if n_folds is None:
            n_folds = min(N_CALIBRATION_FOLDS, len(measured))
        elif n_folds > len(measured):
            raise ValueError(
                f"n_folds={n_folds} exceeds the model's {len(measured)} measured genes; pass at most {len(measured)}."
            )
        if n_folds == len(measured):
            n_repeats = 1  # leave-one-out: every split is the same
        if max_cells is None:
            max_cells = default_calibration_cells(len(measured), n_repeats)
        S, rows = self._calibration_cells(spatial, max_cells)
        R = self._reference_sample(measured)
        target_sum = self.target_sum

        # the model itself: its gene map (every measured gene) and the imputed genes' reliability statistics
        gene_map = cal.GeneMap.from_values(R, S, target_sum)
        condition = torch.from_numpy(self._st_conditions(S))
        agreement = cal.agreement_features(self.module, condition.to(self.device))

        folds = self._calibration_folds(S, R, n_folds=n_folds, n_repeats=n_repeats, random_state=random_state)
        calibration = cal.fit_interval_calibration(
            folds,
            gene_map=gene_map,
            imputed_genes=self.imputed_genes,
            imputed_agreement=agreement,
            target_sum=target_sum,
            n_strata=n_strata,
            n_cells=S.shape[0],
            n_repeats=n_repeats,
        )
        coordinates = spatial_coordinates(spatial.adata, spatial_key, required=False)
        if coordinates is not None:  # how smooth and how shared the panel's errors are: the draws' noise
            calibration.details["draws"] = noise_statistics(
                folds, calibration, coordinates[rows], condition.cpu().numpy().astype(np.float64)
            )
        st_spelling = dict(zip(measured, measured_st, strict=True))  # records name genes as adata_st does
        calibration.calibration_genes = [st_spelling[g] for g in calibration.calibration_genes]
        calibration.details["n_spatial_cells"] = int(spatial.n_obs)
        self.interval_calibration_ = calibration
        return calibration

    def _calibration_folds(
        self, S: np.ndarray, R: np.ndarray, *, n_folds: int, n_repeats: int, random_state: int
    ) -> list[cal.InnerFold]:
        """The inner folds of the calibration: closed-form blends on the other measured genes predict each fold's.

        ``S`` holds the sampled spatial cells' raw values of the measured genes (:meth:`_calibration_cells`), ``R``
        the reference sample's (:meth:`_reference_sample`). The blends are fitted on the raw counts of the reference;
        ``n_repeats`` random splits into ``n_folds`` folds, seeded by ``random_state``.
        """
        from sklearn.model_selection import RepeatedKFold

        measured = list(self.gene_plan.measured)
        reference = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)[
            :, self.adata.var_names.get_indexer(measured)
        ]
        settings = cal.ClosedFormSettings(
            alignment=self.alignment,
            target_sum=self.target_sum,
            cell_scaling=self.cell_scaling,
            normalize_st=bool(self.module.st_normalized),
            n_neighbors=self.settings["n_neighbors"],
            ridge_alphas=self.settings["ridge_alphas"],
        )
        splitter = RepeatedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=random_state)
        return [
            cal.inner_fold(reference, R, S, keep, hold, measured, settings, self.device)
            for keep, hold in splitter.split(np.arange(len(measured)))
        ]

    def get_gene_reliability(self) -> pd.Series:
        """Expected Spearman correlation of each imputed gene with what the platform would measure.

        From :meth:`calibrate_intervals` (or the first :meth:`impute` with ``interval=``); a `RuntimeError` before.

        Returns
        -------
        Series indexed by the imputed genes.

        Examples
        --------
        >>> model.get_gene_reliability().sort_values(ascending=False).head()  # doctest: +SKIP
        """
        calibration = getattr(self, "interval_calibration_", None)
        if calibration is None:
            raise RuntimeError(
                "The model has no interval calibration yet; call model.calibrate_intervals(adata_st) or "
                "model.impute(adata_st, interval=0.9) first."
            )
        return pd.Series(calibration.gene_reliability, name="gene_reliability").reindex(self.imputed_genes)

    def _calibration_cells(self, spatial: SpatialInput, max_cells: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw values (float64) of the measured genes in the sampled cells with signal, and their row positions.

        The cells with signal among ``max_cells`` evenly spaced ones.
        """
        values, _, _, rows = spatial.sample_with_signal(self.gene_plan.measured_st, max_cells, return_rows=True)
        if len(values) < prep.MIN_FIT_CELLS:
            raise ValueError(
                f"adata_st has {len(values)} sampled cell(s) with signal on the measured genes; calibrating "
                f"intervals needs at least {prep.MIN_FIT_CELLS}. Calibrate on more spatial cells."
            )
        return values, rows

    def _reference_sample(self, measured: list[str]) -> np.ndarray:
        """Raw counts (float64) of the measured genes in up to 20,000 evenly spaced reference cells."""
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        rows = prep.evenly_spaced_rows(self.adata.n_obs, cal.MAX_REFERENCE_STATISTICS_CELLS)
        pos = self.adata.var_names.get_indexer(measured)
        if sparse.issparse(X):
            return to_dense(X[rows][:, pos])
        return to_dense(np.asarray(X)[np.ix_(rows, pos)])  # never a copy of every reference gene
