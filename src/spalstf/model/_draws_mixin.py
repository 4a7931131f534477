"""Multiple imputation with :class:`~spalstf.model.SpaLSTF`: calibrated draws and the tests pooled over them.

The statistics live in :mod:`spalstf.model._draws` (numpy); this mixin reads the spatial data, builds the draws'
plan (point estimate, strata, noise field) and streams over chunks of genes (and of draws, where one gene's draws on
all cells would not fit), so that no more than one chunk of draws (:data:`~spalstf.model._draws.DRAW_CHUNK_ENTRIES`
entries) is held at a time, besides the correlation fields of the chunk's draws (cells x 8 x draws, float32) and,
where one gene's draws come in runs, each test's statistics per gene and draw.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .._constants import SPATIAL_KEY
from .._streaming import check_out_path
from .._threads import with_cpu_threads
from . import _draws
from ._calibration import measurement_key
from ._defaults import IMPUTE_BATCH_SIZE, check_option
from ._imputation import fill_parameters
from ._noise import cell_keys, gene_keys
from ._spatial_input import SpatialInput, spatial_coordinates

logger = logging.getLogger(__name__)

#: Default number of draws of the pooled tests.
N_TEST_SAMPLES = 20
#: Fewest cells with signal that Moran's I is tested on (with two it is -1 whatever the values).
MIN_MORAN_CELLS = 3
#: squidpy's key of the spatial graph (``squidpy.gr.spatial_neighbors``).
CONNECTIVITY_KEY = "spatial_connectivities"
#: Columns of a differential-expression table (:meth:`DrawsMixin.differential_expression`).
DE_COLUMNS = [
    "mean1",
    "mean2",
    "mean_difference",
    "statistic",
    "df",
    "pvalue",
    "pvalue_adj",
    "fraction_missing_information",
]
#: Name of the dataset of draws in an ``out=`` file of :meth:`DrawsMixin.posterior_predictive_sample`.
DRAWS_DATASET = "draws"

#: The options of the pooled tests, documented once for the model's methods and the ``sp.tl`` wrappers.
TEST_PARAMETERS: dict[str, str] = {
    "test_samples": """\
Draws pooled (at least 2: the variance between draws is what the imputation adds).""",
    "connectivity_key": """\
Key of squidpy's spatial graph in ``adata_st.obsp`` (``squidpy.gr.spatial_neighbors``).""",
    "two_tailed": """\
Two-sided p-values (squidpy's ``two_tailed``); default: the upper tail of ``|z|``, as squidpy's ``pval_norm``.""",
    "groupby": """\
Column of ``adata_st.obs`` with the groups. Define them from measured data (clusters of the panel genes,
    regions): groups defined from imputed values would use the imputation twice.""",
    "group1": """\
Group (or list of groups) of the first set of cells.""",
    "group2": """\
Group (or list) of the second set; ``None``: every other cell with a label (cells whose label is NaN are in
    neither group).""",
}


class DrawsMixin:
    """:meth:`posterior_predictive_sample` and the tests pooled over its draws.

    :meth:`spatial_autocorr`, :meth:`differential_expression` and :meth:`rank_genes_groups`.
    """

    @with_cpu_threads
    def posterior_predictive_sample(
        self,
        adata_st: AnnData,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        batch_size: int = IMPUTE_BATCH_SIZE,
        random_state: int = 0,
        *,
        layer: str | None = None,
        spatial_key: str = SPATIAL_KEY,
        out: str | os.PathLike | None = None,
        overwrite: bool = False,
    ):
        """Calibrated draws of the imputed genes: each a plausible measurement of the cell by the spatial platform.

        Every draw lies in the platform's space of the intervals, ``log1p(x / L * target_sum)`` (``L`` the cell's
        total over the measured genes), and has the calibrated distribution of the measurement given the imputation:
        the central interval of many draws is the calibrated interval of :meth:`impute` with ``interval=``. Draws of
        neighbouring cells and of different genes are correlated as the panel genes' errors are (their Moran's I, their
        mean correlation between genes and how far it spreads from pair to pair, with a pattern drawn afresh in every
        draw, and how much and in which directions they differ between regions of the tissue, gene by gene;
        ``docs/method.md``, "Multiple imputation"), so that a draw is not smoother than a measurement, as the
        point estimate is. The model must have an interval calibration with coordinates
        (:meth:`calibrate_intervals`); a model without one is calibrated on the measured genes of ``adata_st`` first
        (never on imputed genes).

        Parameters
        ----------
        adata_st
            Spatial data with the model's measured genes and coordinates in ``obsm[spatial_key]``.
        n_samples
            Draws per cell and gene (``K``).
        gene_list
            Imputed genes to draw (default: all, in the model's order).
        batch_size
            Cells read and imputed at a time for the point estimate (the result does not depend on it).
        random_state
            Seed of the noise; each (cell, gene, draw) value is keyed by the cell's and the gene's names, so draws do
            not depend on ``batch_size``, the cells' order, ``gene_list`` or ``n_samples`` (the first ``k`` draws of
            ``n_samples=K`` are those of ``n_samples=k``). They do depend on which cells are drawn together, through
            the spatial graph, and, for cells beyond the calibration's extent, the tissue's regions (the calibration's
            regions otherwise).
        layer
            Layer of ``adata_st`` with the values; default: the layer the model was built with.
        spatial_key
            Key of the coordinates in ``adata_st.obsm``.
        out
            Path of an HDF5 file (``.h5``) to write the draws into, chunk by chunk, for outputs that do not fit in
            memory: dataset ``"draws"`` (cells, genes, ``n_samples``; float32) with ``obs_names`` and
            ``var_names`` datasets beside it. Written as ``<out>.partial`` (replaced if it exists) and renamed when
            complete; on an error or an interrupt the partial file is removed.
        overwrite
            Replace an existing ``out`` file.

        Returns
        -------
        Without ``out``: a float32 array of shape (cells, genes, ``n_samples``) (scvi-tools' axis order); NaN for
        cells without signal (their platform value is undefined). With ``out``: the ``"draws"`` dataset of the file,
        opened read-only with :mod:`h5py` (slice it to read; close it with ``dataset.file.close()``).

        Examples
        --------
        >>> draws = model.posterior_predictive_sample(
        ...     adata_st, n_samples=20, gene_list=["eve", "ftz"]
        ... )  # doctest: +SKIP
        >>> draws.shape  # cells x genes x draws  # doctest: +SKIP
        >>> on_disk = model.posterior_predictive_sample(adata_st, n_samples=50, out="draws.h5")  # doctest: +SKIP
        """
        check_option("n_samples", n_samples)
        check_option("batch_size", batch_size)
        spatial = SpatialInput.prepare(adata_st, layer if layer is not None else self.st_layer)
        out_path = None
        if out is not None:
            out_path = check_out_path(out, overwrite, [spatial.adata], suffix=".h5")
        plan, genes = self._draw_plan(spatial, gene_list, random_state, batch_size, spatial_key)
        if out_path is None:
            result = np.empty((plan.n_cells, len(genes), n_samples), dtype=np.float32)
            for columns, draws in plan.chunks(n_samples):
                result[:, columns, draws] = plan.draw(columns, draws)
            return result
        return _write_draws(out_path, plan, spatial.obs_names, genes, n_samples)

    @with_cpu_threads
    def spatial_autocorr(
        self,
        adata_st: AnnData,
        *,
        n_samples: int = N_TEST_SAMPLES,
        gene_list: Sequence[str] | None = None,
        connectivity_key: str = CONNECTIVITY_KEY,
        two_tailed: bool = False,
        random_state: int = 0,
        layer: str | None = None,
        spatial_key: str = SPATIAL_KEY,
        batch_size: int = IMPUTE_BATCH_SIZE,
    ) -> pd.DataFrame:
        """Moran's I of the imputed genes, tested with multiple imputation (pooled over ``n_samples`` draws).

        Moran's I of each draw (:meth:`posterior_predictive_sample`) on squidpy's spatial graph
        ``obsp[connectivity_key]`` (row-standardised, as ``squidpy.gr.spatial_autocorr`` does), pooled with Rubin's
        rules: the estimate is the mean over draws, its variance the normality variance of Moran's I plus
        ``(1 + 1/K)`` times the variance between draws, referred to a t distribution with Barnard and Rubin's degrees
        of freedom. The point estimate treated as data ignores the second term, which is why its tests are far too
        confident. Cells without signal are left out (with their edges). Draws are made chunk by chunk (genes, and
        runs of draws where one gene's draws would not fit) and never held all at once.

        Parameters
        ----------
        adata_st
            Spatial data with the measured genes, coordinates and squidpy's graph (``squidpy.gr.spatial_neighbors``).
        n_samples
            {test_samples}
        gene_list
            Imputed genes to test (default: all).
        connectivity_key
            {connectivity_key}
        two_tailed
            {two_tailed}
        random_state, layer, spatial_key, batch_size
            As in :meth:`posterior_predictive_sample`.

        Returns
        -------
        DataFrame indexed by gene: ``I`` (mean over draws), ``I_point`` (of the point estimate, for contrast),
        ``statistic`` (pooled z), ``df``, ``pvalue``, ``pvalue_adj`` (Benjamini-Hochberg over the genes tested) and
        ``fraction_missing_information`` (the share of the variance due to imputation), sorted by ``pvalue``.
        The test says whether a gene is spatially autocorrelated; to order genes by how much, ``I_point`` did better
        than ``I`` on the benchmark pairs, though it overstates every gene's I (``docs/benchmarks.md``).

        Examples
        --------
        >>> import squidpy as sq
        >>> sq.gr.spatial_neighbors(adata_st, coord_type="generic", n_neighs=6)  # doctest: +SKIP
        >>> model.spatial_autocorr(adata_st, n_samples=20).head()  # doctest: +SKIP
        """
        _check_test_samples(n_samples)
        check_option("two_tailed", two_tailed)
        spatial = SpatialInput.prepare(adata_st, layer if layer is not None else self.st_layer)
        connectivities = _connectivities(spatial.adata, connectivity_key)

        def with_signal(empty: np.ndarray) -> sparse.csr_matrix:
            return _graph_of_cells_with_signal(connectivities, ~empty, connectivity_key)

        plan, genes = self._draw_plan(spatial, gene_list, random_state, batch_size, spatial_key, with_signal)
        keep = ~plan.empty
        graph = _draws.MoranGraph.from_connectivities(with_signal(plan.empty))

        def moran(draws: np.ndarray) -> np.ndarray:  # (genes, draws)
            n, g, K = draws.shape
            return graph.moran(draws.transpose(0, 2, 1).reshape(n, K * g)).reshape(K, g).T

        parts = []
        for columns, morans in _per_gene_statistics(plan, n_samples, lambda draws: moran(draws[keep])):
            parts.append(pd.DataFrame(_draws.pooled_moran(morans.T, graph, two_tailed), index=genes[columns]))
        table = pd.concat(parts)
        table["I_point"] = np.concatenate(
            [graph.moran(plan.point[:, columns][keep]) for columns, draws in plan.chunks(n_samples) if draws.start == 0]
        )
        table["pvalue_adj"] = _draws.benjamini_hochberg(table["pvalue"].to_numpy())
        columns = ["I", "I_point", "statistic", "df", "pvalue", "pvalue_adj", "fraction_missing_information"]
        return table[columns].sort_values("pvalue", kind="stable")

    @with_cpu_threads
    def differential_expression(
        self,
        adata_st: AnnData,
        groupby: str,
        group1: str | Sequence[str],
        group2: str | Sequence[str] | None = None,
        *,
        n_samples: int = N_TEST_SAMPLES,
        gene_list: Sequence[str] | None = None,
        random_state: int = 0,
        layer: str | None = None,
        spatial_key: str = SPATIAL_KEY,
        batch_size: int = IMPUTE_BATCH_SIZE,
    ) -> pd.DataFrame:
        """Differential expression of the imputed genes between two groups of cells, with multiple imputation.

        For each draw (:meth:`posterior_predictive_sample`) and gene: the difference of the groups' means in the
        platform's space and its Welch variance; pooled over draws with Rubin's rules (Barnard-Rubin degrees of
        freedom, complete-data ``n1 + n2 - 2``); two-sided t-test. Cells without signal are left out. The groups
        should be defined from measured data (clusters of the panel genes, regions): groups defined from imputed
        values would reuse the imputation twice.

        Parameters
        ----------
        adata_st
            Spatial data with the measured genes and coordinates.
        groupby
            {groupby}
        group1
            {group1}
        group2
            {group2}
        n_samples
            {test_samples}
        gene_list, random_state, layer, spatial_key, batch_size
            As in :meth:`posterior_predictive_sample`.

        Returns
        -------
        DataFrame indexed by gene: ``mean1``, ``mean2``, ``mean_difference`` (``mean1 - mean2``, the log fold change
        of the platform's ``log1p`` space), ``statistic`` (pooled t), ``df``, ``pvalue``, ``pvalue_adj``
        (Benjamini-Hochberg over the genes tested) and ``fraction_missing_information``, sorted by ``pvalue``.

        Examples
        --------
        >>> adata_st.obs["half"] = np.where(adata_st.obsm["spatial"][:, 0] > 0, "right", "left")  # doctest: +SKIP
        >>> model.differential_expression(adata_st, "half", "right", n_samples=20).head()  # doctest: +SKIP
        """
        _check_test_samples(n_samples)
        spatial = SpatialInput.prepare(adata_st, layer if layer is not None else self.st_layer)
        in1, in2 = _groups(spatial.adata, groupby, group1, group2)
        names = ("group1", "group2" if group2 is not None else "group2 (every other labelled cell)")

        def testable(empty: np.ndarray) -> None:
            _sets_with_signal([(in1, in2)], [names], empty)

        plan, genes = self._draw_plan(spatial, gene_list, random_state, batch_size, spatial_key, testable)
        (table,) = _pooled_comparisons(plan, genes, [(in1, in2)], [names], n_samples)
        return table

    @with_cpu_threads
    def rank_genes_groups(
        self,
        adata_st: AnnData,
        groupby: str,
        groups: Sequence[str] | str | None = None,
        reference: str = "rest",
        *,
        n_samples: int = N_TEST_SAMPLES,
        gene_list: Sequence[str] | None = None,
        random_state: int = 0,
        layer: str | None = None,
        spatial_key: str = SPATIAL_KEY,
        batch_size: int = IMPUTE_BATCH_SIZE,
    ) -> pd.DataFrame:
        """Imputed genes that tell each group from the rest (or from ``reference``), with multiple imputation.

        :meth:`differential_expression` for every group at once, as :func:`scanpy.tl.rank_genes_groups` ranks the
        genes of each group: the same pooled t-test (Rubin's rules over ``n_samples`` draws), but the draws are made
        once and every comparison is computed from them, instead of once per call.

        Parameters
        ----------
        adata_st
            Spatial data with the measured genes and coordinates.
        groupby
            {groupby}
        groups
            Groups to test: a list, or ``None`` / ``"all"`` for every group of ``obs[groupby]`` less ``reference``
            (a group with fewer than 2 cells with signal is then left out, with a warning; one named in the list
            raises). Cells without a label (NaN) belong to no group and not to the rest.
        reference
            ``"rest"`` (each group against all other labelled cells) or one group that every other is compared with.
        n_samples
            {test_samples}
        gene_list, random_state, layer, spatial_key, batch_size
            As in :meth:`posterior_predictive_sample`.

        Returns
        -------
        DataFrame with one row per group and gene: ``group``, ``gene`` and the columns of
        :meth:`differential_expression` (``mean1`` is the group's mean, ``mean2`` the reference's; ``pvalue_adj`` is
        Benjamini-Hochberg within the group, as scanpy's), groups in the order of ``groups`` (or of the column's
        categories; numeric labels in numeric order), and within each group the genes by ``statistic``, highest
        first, as scanpy orders them (genes higher in the group first, genes lower in it last).

        Examples
        --------
        >>> markers = model.rank_genes_groups(adata_st, "leiden", n_samples=20)  # doctest: +SKIP
        >>> markers.query("group == '3' and pvalue_adj < 0.05").head()  # doctest: +SKIP
        """
        _check_test_samples(n_samples)
        spatial = SpatialInput.prepare(adata_st, layer if layer is not None else self.st_layer)
        comparisons, every = _group_comparisons(spatial.adata, groupby, groups, reference)
        names = [(name, str(reference)) for name, _ in comparisons]

        def testable(empty: np.ndarray) -> None:
            if every:
                _testable_comparisons(comparisons, empty, groupby, reference, warn=False)
            else:
                _sets_with_signal([masks for _, masks in comparisons], names, empty)

        plan, genes = self._draw_plan(spatial, gene_list, random_state, batch_size, spatial_key, testable)
        if every:  # a group of (nearly) only cells without signal cannot be tested: leave it out, and say so
            comparisons = _testable_comparisons(comparisons, plan.empty, groupby, reference)
        tables = _pooled_comparisons(
            plan,
            genes,
            [masks for _, masks in comparisons],
            [(name, str(reference)) for name, _ in comparisons],
            n_samples,
        )
        parts = [
            table.sort_values("statistic", ascending=False, kind="stable")
            .rename_axis("gene")
            .reset_index()
            .assign(group=name)
            for (name, _), table in zip(comparisons, tables, strict=True)
        ]
        table = pd.concat(parts, ignore_index=True)
        return table[["group", "gene", *DE_COLUMNS]]

    spatial_autocorr.__doc__ = fill_parameters(spatial_autocorr.__doc__, TEST_PARAMETERS)
    differential_expression.__doc__ = fill_parameters(differential_expression.__doc__, TEST_PARAMETERS)
    rank_genes_groups.__doc__ = fill_parameters(rank_genes_groups.__doc__, TEST_PARAMETERS)

    # ---------------------------------------------------------------------------------------------------- worker
    @torch.no_grad()
    def _cells_without_signal(self, spatial: SpatialInput, batch_size: int) -> np.ndarray:
        """Which cells of ``spatial`` have no signal on the measured genes (one pass over their values)."""
        return np.concatenate(
            [
                np.asarray(rows.sum(axis=1), dtype=np.float64).ravel() == 0
                for _, _, rows in spatial.chunks(self.gene_plan.measured_st, batch_size)
            ]
        )

    def _draw_plan(
        self,
        spatial: SpatialInput,
        gene_list: Sequence[str] | None,
        random_state: int,
        batch_size: int,
        spatial_key: str,
        check_cells: Callable[[np.ndarray], Any] | None = None,
    ) -> tuple[_draws.DrawPlan, pd.Index]:
        """The point estimate, strata and noise field of the cells of ``spatial`` for the genes ``gene_list``.

        ``check_cells`` is called with the cells without signal before a model without an interval calibration is
        calibrated on ``spatial``: a test those cells cannot make then fails before that work, and leaves the model
        uncalibrated.
        """
        if not self.is_trained_:
            raise RuntimeError("The model is not trained yet; call `model.train()` first.")
        check_option("random_state", random_state)
        check_option("batch_size", batch_size)
        coordinates = spatial_coordinates(spatial.adata, spatial_key)
        spatial.columns(self.gene_plan.measured_st)  # fail on missing measured genes before any work
        columns = self._gene_positions(gene_list)
        calibration = getattr(self, "interval_calibration_", None)
        if calibration is None and check_cells is not None:
            check_cells(self._cells_without_signal(spatial, batch_size))
        if calibration is None:
            logger.info("Calibrating the draws on the %d measured genes of adata_st.", len(self.measured_genes))
            calibration = self.calibrate_intervals(spatial, spatial_key=spatial_key)
        noise = calibration.details.get("draws")
        if noise is None or any(key not in noise for key in ("correlogram", "error_correlation_spread", "regional")):
            raise ValueError(
                "The model's interval calibration has no record of the panel errors' spatial structure (it was "
                "calibrated without coordinates, or by an earlier version); call "
                "model.calibrate_intervals(adata_st, spatial_key=...) on data with coordinates first."
            )
        extent = noise["regional"].get("extent")  # the calibration cells' lowest and highest coordinates
        if extent is not None and len(extent[0]) != coordinates.shape[1]:
            raise ValueError(
                f"adata_st.obsm[{spatial_key!r}] has {coordinates.shape[1]} coordinate dimension(s), the cells the "
                f"model's interval calibration was fitted on had {len(extent[0])}; pass the coordinates it was "
                "calibrated with (spatial_key), or call model.calibrate_intervals(adata_st, spatial_key=...) on these "
                "data first."
            )
        target_mean = self.module.target_mean.cpu().numpy()[columns]
        target_std = self.module.target_std.cpu().numpy()[columns]
        point = np.empty((spatial.n_obs, len(columns)), dtype=np.float32)
        strata = np.empty((spatial.n_obs, len(columns)), dtype=np.int16)
        empty = np.zeros(spatial.n_obs, dtype=bool)
        levels = noise.get("clusters", [])
        labels = [np.empty(spatial.n_obs, dtype=np.int64) for _ in levels]
        expression, expressed = np.zeros(len(columns)), np.zeros(len(columns))  # the levels' sums and counts
        self.module.eval()
        for start, stop, values, no_signal, library in self._st_condition_chunks(spatial, batch_size):
            estimate = self.module.posterior_mean(torch.from_numpy(values).to(self.device)).cpu().numpy()
            p, scale = calibration.point(estimate[:, columns], target_mean, target_std)
            keys = measurement_key(p, library, calibration.target_sum)  # strata and expression levels
            point[start:stop], strata[start:stop] = p, calibration.strata_of_keys(keys)
            empty[start:stop] = no_signal
            sums, counts = _draws.expression_level_sums(keys, library)
            expression, expressed = expression + sums, expressed + counts
            for level, out in zip(levels, labels, strict=True):
                out[start:stop] = _draws.nearest_center(values.astype(np.float64), level["centers"])
        # cells of one expression cluster share part of the noise (keys per cluster)
        clusters = []
        for i, (level, label) in enumerate(zip(levels, labels, strict=True)):
            keys = cell_keys([f"\x00cluster {i} {c}" for c in range(len(level["centers"]))], random_state)
            clusters.append((keys[label], float(level["share"])))
        # the errors' Moran's I at the spacing of these cells (those with signal, as the calibration's were)
        target = _draws.moran_target(noise, coordinates[~empty])
        shares = [share for _, share in clusters]
        field, smoothing = _draws.fit_field(
            coordinates, target, labels, shares, spatial.obs_names, int(noise["n_neighbors"])
        )
        shared = float(np.clip(noise["error_correlation"], 0.0, _draws.MAX_SHARED_NOISE))
        spread, n_fields = float(noise["error_correlation_spread"]), _draws.N_CORRELATION_FIELDS
        correlation_share = _draws.share_for_spread(spread, shared, n_fields)
        # each gene's own noise as smooth as the panel errors at its expression level
        with np.errstate(invalid="ignore", divide="ignore"):
            shifts = _draws.level_shifts(noise, expression / expressed)
        own = _draws.own_targets(target, shifts, shared, correlation_share)
        distinct = np.unique(own[shifts != 0])
        level_operators = [field.operator(lam) for lam in _draws.fit_smoothings(field, distinct, labels, shares)]
        gene_smoothing = np.where(shifts != 0, np.searchsorted(distinct, own), -1) if len(distinct) else None
        if _draws.spread_beyond_reach(spread, shared, n_fields):
            logger.warning(
                "The panel errors' correlations between genes spread by %.3f beyond chance, more than draws with %d "
                "correlation fields carry (at most %.3f); the draws spread them less than the errors do.",
                spread,
                n_fields,
                (1.0 - shared) / np.sqrt(n_fields),
            )
        correlation_fields, correlation_loadings = _draws.correlation_keys(n_fields, random_state)
        regional = noise["regional"]
        regional_shares = np.asarray(regional["shares"], dtype=np.float64)
        regional_basis, regional_keys, learnt = None, np.empty(0, np.uint64), False
        if _draws.has_regional_part(regional_shares):
            regional_basis, learnt = _draws.drawn_regional_basis(regional, coordinates, ~empty, spatial.obs_names)
        if regional_basis is not None:
            regional_keys = _draws.regional_keys(regional_basis.shape[1], random_state)
        genes = pd.Index(self.imputed_genes)[columns]
        plan = _draws.DrawPlan(
            point=point,
            scale=scale,
            strata=strata,
            empty=empty,
            table=calibration.table,
            operator=field.operator(smoothing),
            shared=shared,
            cells=cell_keys(spatial.obs_names, random_state),
            genes=gene_keys(genes),
            factor=gene_keys(["\x00shared noise"]),
            clusters=clusters,
            moran_target=target,
            correlation_share=correlation_share,
            correlation_fields=correlation_fields,
            correlation_loadings=correlation_loadings,
            gene_smoothing=gene_smoothing,
            level_operators=level_operators,
            regional_basis=regional_basis,
            regional_shares=regional_shares,
            regional_keys=regional_keys,
        )
        logger.info(
            "Draws: noise smoothing %.3g (target Moran's I %.3f; the panel errors' %.3f on the calibration's sample), "
            "shared between genes %.3f, correlations between genes spread by %.3f beyond chance (share %.3f of %d "
            "fields with random loadings), shared within expression clusters %s; the genes' own noise smoothed to "
            "Moran's I %s by expression level; a regional part over %d regions, its share per gene and draw taken from "
            "the panel genes' (median %.3f, mean %.3f), its directions %s.",
            smoothing,
            target,
            noise["error_moran"],
            plan.shared,
            noise["error_correlation_spread"],
            plan.correlation_share,
            n_fields,
            ", ".join(f"{level['share']:.3f} (k={level['k']})" for level in levels) or "none",
            ", ".join(f"{t:.3f} ({int((gene_smoothing == i).sum())} genes)" for i, t in enumerate(distinct))
            + (f", {target:.3f} (the rest)" if gene_smoothing is not None and (gene_smoothing < 0).any() else "")
            if len(distinct)
            else f"{target:.3f} (all genes)",
            0 if plan.regional_basis is None else plan.regional_basis.shape[1],
            float(np.median(regional_shares)) if len(regional_shares) else 0.0,
            float(np.mean(regional_shares)) if len(regional_shares) else 0.0,
            f"learnt from the panel errors (shrunk toward independent weights by {float(regional['shrinkage']):.2f})"
            if learnt
            else "independent (regions of the drawn cells)",
        )
        return plan, genes

    def _gene_positions(self, gene_list: Sequence[str] | None) -> np.ndarray:
        """Positions of ``gene_list`` among the imputed genes (all by default); unknown genes raise a `KeyError`."""
        imputed = pd.Index(self.imputed_genes)
        if gene_list is None:
            return np.arange(len(imputed))
        if isinstance(gene_list, str):
            raise TypeError(
                f"gene_list must be a list of gene names, got the string {gene_list!r}; pass [{gene_list!r}]."
            )
        gene_list = list(gene_list)
        if not gene_list:
            raise ValueError("gene_list is empty; pass None for every imputed gene.")
        if len(set(gene_list)) < len(gene_list):
            raise ValueError("gene_list has duplicated genes.")
        missing = [g for g in gene_list if g not in imputed]
        measured_names = {*self.gene_plan.measured, *self.gene_plan.measured_st}  # the reference's and adata_st's
        measured = [g for g in missing if g in measured_names]
        if measured:
            raise KeyError(
                f"{len(measured)} gene(s) of gene_list are measured, not imputed: {measured[:10]}; their values are "
                "in adata_st already, and the draws are of imputed genes (model.imputed_genes). Test measured genes "
                "with squidpy or scanpy on adata_st."
            )
        if missing:
            hint = difflib.get_close_matches(str(missing[0]), [str(g) for g in imputed], n=3)
            raise KeyError(
                f"{len(missing)} gene(s) of gene_list are not imputed by the model: {missing[:10]}"
                + (f" (did you mean {hint}?)" if hint else "")
                + "; model.imputed_genes lists those it imputes."
            )
        return imputed.get_indexer(gene_list)


def _check_test_samples(n_samples: int) -> None:
    check_option("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError(
            f"n_samples must be at least 2 for a test pooled over draws (the variance between draws), got {n_samples}."
        )


def _connectivities(adata: AnnData, key: str) -> sparse.csr_matrix:
    """Squidpy's spatial graph ``adata.obsp[key]``, or an error naming how to build it."""
    if key not in adata.obsp:
        raise KeyError(
            f"adata_st.obsp has no {key!r}; build squidpy's spatial graph first, e.g. "
            "squidpy.gr.spatial_neighbors(adata_st, coord_type='generic', n_neighs=6), or pass connectivity_key=."
        )
    W = sparse.csr_matrix(adata.obsp[key], dtype=np.float64)
    if not np.isfinite(W.data).all():
        raise ValueError(
            f"adata_st.obsp[{key!r}] has {int((~np.isfinite(W.data)).sum())} non-finite weight(s); rebuild the graph "
            "(squidpy.gr.spatial_neighbors) or replace them."
        )
    if (W.data < 0).any():
        raise ValueError(
            f"adata_st.obsp[{key!r}] has {int((W.data < 0).sum())} negative weight(s); Moran's I needs non-negative "
            "weights: rebuild the graph (squidpy.gr.spatial_neighbors) or pass connectivity_key= of another one."
        )
    loops = int(np.count_nonzero(W.diagonal()))
    if loops:
        raise ValueError(
            f"adata_st.obsp[{key!r}] links {loops} cell(s) to themselves; Moran's I and its variance are defined "
            "for a graph without self-loops (a cell is not its own neighbour). squidpy.gr.spatial_neighbors puts them "
            "there with set_diag=True or transform='cosine'; rebuild it without them, or zero the diagonal: "
            f"W = adata_st.obsp[{key!r}].tolil(); W.setdiag(0); adata_st.obsp[{key!r}] = W.tocsr()."
        )
    return W


def _labels(adata: AnnData, groupby: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The groups of ``obs[groupby]`` as strings, which cells have no group (missing labels), and the groups present.

    The groups are in category order for a categorical column, in numeric order for a numeric one, else sorted.
    """
    if not isinstance(groupby, str):
        raise TypeError(f"groupby must be the name of one column of adata_st.obs, got {groupby!r}.")
    if groupby not in adata.obs:
        raise KeyError(f"adata_st.obs has no column {groupby!r}; columns: {list(adata.obs.columns)}.")
    column = adata.obs[groupby]
    missing = column.isna().to_numpy()
    labels = column.astype(str).to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):
        used = set(labels[~missing])
        return labels, missing, [str(c) for c in column.cat.categories if str(c) in used]
    values = pd.unique(column[~missing])
    ordered = sorted(values) if pd.api.types.is_numeric_dtype(column) else sorted(map(str, values))
    return labels, missing, [str(v) for v in ordered]


def _as_groups(value: Any) -> list[str]:
    """One group label or a list of them, as strings (labels are compared as strings)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [str(value)]
    return [str(v) for v in value]


def _groups(adata: AnnData, groupby: str, group1: Any, group2: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the two groups of cells; unknown columns or groups and overlapping groups raise.

    Cells without a label (NaN) are in neither group.
    """
    labels, missing, present = _labels(adata, groupby)

    def members(group, name):
        if np.asarray(group).dtype == bool and np.ndim(group) == 1 and len(group) > 1:
            raise TypeError(
                f"{name} takes group labels of obs[{groupby!r}], not a boolean mask of cells; put the mask in a "
                f"column, e.g. adata_st.obs['selected'] = mask, then groupby='selected', {name}='True'."
            )
        groups = _as_groups(group)
        unknown = list(dict.fromkeys(g for g in groups if g not in present))
        if unknown or not groups:
            raise ValueError(
                f"{name}: {unknown[:10] or groups} not among the groups of obs[{groupby!r}]: {present[:20]}."
            )
        return np.isin(labels, groups) & ~missing

    in1 = members(group1, "group1")
    in2 = ~in1 & ~missing if group2 is None else members(group2, "group2")
    if (in1 & in2).any():
        raise ValueError("group1 and group2 share groups; pass disjoint groups.")
    return in1, in2


def _group_comparisons(
    adata: AnnData, groupby: str, groups: Sequence[Any] | str | None, reference: Any
) -> tuple[list[tuple[str, tuple[np.ndarray, np.ndarray]]], bool]:
    """Each tested group's name with the masks of its cells and of its reference (:meth:`rank_genes_groups`).

    Also returns whether the groups were chosen here (every group: ``None`` or ``"all"``) rather than by the caller.
    Cells without a label are in no group and not in the rest.
    """
    labels, missing, present = _labels(adata, groupby)
    reference = "rest" if reference == "rest" else str(reference)
    if reference == "rest" and "rest" in present:
        raise ValueError(
            f"obs[{groupby!r}] has a group named 'rest', which reference='rest' (each group against all others) "
            "cannot tell from the rest; rename that group, or pass reference= one group."
        )
    if reference != "rest" and reference not in present:
        raise ValueError(
            f"reference={reference!r} is not among the groups of obs[{groupby!r}]: {present[:20]}; pass one of them "
            "or 'rest'."
        )
    every = groups is None or (isinstance(groups, str) and groups == "all")
    if every:
        groups = [g for g in present if g != reference]
    else:
        if isinstance(groups, str) or not isinstance(groups, Iterable):
            raise TypeError(
                f"groups must be 'all', None or a list of groups, got {groups!r}; pass [{groups!r}] for one group."
            )
        groups = [str(g) for g in groups]
        repeated = sorted({g for g in groups if groups.count(g) > 1})
        if repeated:
            raise ValueError(f"groups lists {repeated} more than once; pass each group once.")
        unknown = [g for g in groups if g not in present]
        if unknown or not groups:
            raise ValueError(f"groups: {unknown or groups} not among the groups of obs[{groupby!r}]: {present[:20]}.")
        if reference in groups:
            raise ValueError(f"groups include the reference {reference!r}; a group is not compared with itself.")
    if not groups:
        raise ValueError(f"obs[{groupby!r}] has no group to compare with {reference!r}.")
    comparisons = []
    for group in groups:
        in1 = (labels == group) & ~missing
        comparisons.append((group, (in1, ~in1 & ~missing if reference == "rest" else labels == reference)))
    return comparisons, every


def _sets_with_signal(
    comparisons: Sequence[tuple[np.ndarray, np.ndarray]], names: Sequence[tuple[str, str]], empty: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each comparison's two sets of cells less the cells without signal; a set with fewer than 2 left raises."""
    masks = []
    for pair, labels in zip(comparisons, names, strict=True):
        in1, in2 = (mask & ~empty for mask in pair)
        for mask, with_signal, name in zip(pair, (in1, in2), labels, strict=True):
            if with_signal.sum() < 2:
                raise ValueError(
                    f"{name} has {int(mask.sum())} labelled cell(s), {int(with_signal.sum())} of them with signal; a "
                    "test needs at least 2 cells with signal in each set (cells whose label is NaN are in no set)."
                )
        masks.append((in1, in2))
    return masks


def _graph_of_cells_with_signal(connectivities: Any, keep: np.ndarray, connectivity_key: str) -> Any:
    """The spatial graph among the cells ``keep`` (those with signal); too few of them, or none joined, raises."""
    if keep.sum() < MIN_MORAN_CELLS:
        raise ValueError(
            f"Moran's I needs at least {MIN_MORAN_CELLS} cells with signal on the measured genes; adata_st has "
            f"{int(keep.sum())}."
        )
    graph = connectivities[keep][:, keep]
    if graph.sum() <= 0:
        raise ValueError(
            f"adata_st.obsp[{connectivity_key!r}] joins none of the {int(keep.sum())} cells with signal on the "
            "measured genes; build squidpy's spatial graph on these cells (squidpy.gr.spatial_neighbors)."
        )
    return graph


def _testable_comparisons(
    comparisons: list[tuple[str, tuple[np.ndarray, np.ndarray]]],
    empty: np.ndarray,
    groupby: str,
    reference: str,
    warn: bool = True,
) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """The comparisons whose group and reference both have 2 cells with signal.

    The others are left out with a warning that says which side is short (``warn``); a reference group too small for
    any test, or no comparison left, raises.
    """

    def with_signal(mask: np.ndarray) -> int:
        return int((mask & ~empty).sum())

    if reference != "rest" and with_signal(comparisons[0][1][1]) < 2:
        raise ValueError(
            f"reference={reference!r} has {with_signal(comparisons[0][1][1])} cell(s) with signal in obs[{groupby!r}]; "
            "a test needs at least 2: pass another reference or 'rest'."
        )
    small = [name for name, (in1, _) in comparisons if with_signal(in1) < 2]
    small_rest = [name for name, (in1, in2) in comparisons if with_signal(in1) >= 2 and with_signal(in2) < 2]
    if small and warn:
        logger.warning("Groups %s of obs[%r] have fewer than 2 cells with signal and are not tested.", small, groupby)
    if small_rest and warn:
        logger.warning(
            "Groups %s of obs[%r] are not tested: the rest (every other labelled cell) has fewer than 2 cells with "
            "signal.",
            small_rest,
            groupby,
        )
    kept = [c for c in comparisons if c[0] not in small and c[0] not in small_rest]
    if not kept:
        raise ValueError(f"No group of obs[{groupby!r}] and its reference both have 2 cells with signal to test.")
    return kept


def _pooled_comparisons(
    plan: _draws.DrawPlan,
    genes: pd.Index,
    comparisons: Sequence[tuple[np.ndarray, np.ndarray]],
    names: Sequence[tuple[str, str]],
    n_samples: int,
) -> list[pd.DataFrame]:
    """The pooled two-group tests of every comparison (masks of its two sets of cells), from one pass of draws.

    Cells without signal are left out of both sets; a set with fewer than 2 cells left raises, naming it (``names``).
    Each table has :data:`DE_COLUMNS`, Benjamini-Hochberg within the comparison, sorted by ``pvalue``.
    """
    masks = _sets_with_signal(comparisons, names, plan.empty)
    keep = ~plan.empty
    rows = np.stack([mask[keep] for pair in masks for mask in pair])  # (2 x comparisons, cells with signal)

    def moments(draws: np.ndarray) -> np.ndarray:  # (mean and variance, sets of cells, genes, draws)
        chunk = _draws.GroupMoments.of_masks(draws[keep], rows)
        return np.stack([chunk.mean, chunk.var])

    n = rows.sum(axis=1).astype(np.float64)
    parts: list[list[pd.DataFrame]] = [[] for _ in masks]
    for columns, values in _per_gene_statistics(plan, n_samples, moments):
        chunk = _draws.GroupMoments(n, values[0], values[1])
        for c, part in enumerate(parts):
            pooled = _draws.pooled_difference_moments(chunk, chunk, 2 * c, 2 * c + 1)
            part.append(pd.DataFrame(pooled, index=genes[columns]))
    tables = []
    for part in parts:
        table = pd.concat(part)
        table["pvalue_adj"] = _draws.benjamini_hochberg(table["pvalue"].to_numpy())
        tables.append(table[DE_COLUMNS].sort_values("pvalue", kind="stable"))
    return tables


def _per_gene_statistics(plan: _draws.DrawPlan, n_samples: int, statistic: Any) -> Iterable[tuple[slice, np.ndarray]]:
    """``(columns, values)``: ``statistic`` of every draw of the genes ``columns``, ready to pool over the draws.

    ``statistic`` maps a chunk of draws (cells, genes, draws) to values (..., genes, draws). Where a chunk holds every
    draw of its genes (:meth:`~spalstf.model._draws.DrawPlan.chunks`) each chunk's values are given as they come;
    where the draws come in runs, every gene's values are gathered first and given once (``slice(None)``).
    """
    if plan.draw_step(n_samples) == n_samples:
        for columns, draws in plan.chunks(n_samples):
            yield columns, statistic(plan.draw(columns, draws))
        return
    gathered = None
    for columns, draws in plan.chunks(n_samples):
        values = statistic(plan.draw(columns, draws))
        if gathered is None:
            gathered = np.empty((*values.shape[:-2], plan.point.shape[1], n_samples))
        gathered[..., columns, draws] = values
    yield slice(None), gathered


def _write_draws(path: Path, plan: _draws.DrawPlan, obs_names: pd.Index, genes: pd.Index, n_samples: int):
    """Write the draws chunk by chunk into ``path`` (via ``<path>.partial``) and open the dataset."""
    import h5py

    partial = path.with_name(path.name + ".partial")
    try:
        with h5py.File(partial, "w") as f:
            data = f.create_dataset(
                DRAWS_DATASET,
                shape=(plan.n_cells, len(genes), n_samples),
                dtype="float32",
                chunks=(min(plan.n_cells, 4096), 1, plan.draw_step(n_samples)),
            )
            f.create_dataset("obs_names", data=np.asarray(obs_names, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("var_names", data=np.asarray(genes, dtype=object), dtype=h5py.string_dtype())
            data.attrs["axes"] = "cells, genes, draws"
            for columns, draws in plan.chunks(n_samples):
                data[:, columns, draws] = plan.draw(columns, draws).astype(np.float32)
    except BaseException:  # an error or an interrupt: leave no half-written file behind
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return h5py.File(path, "r")[DRAWS_DATASET]
