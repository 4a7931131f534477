"""`CrossValidationResult`: the tables of one cross-validation and the per-method summary drawn from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..metrics import accuracy_score, calibration_error
from ..model._calibration import CURVE_LEVELS

#: Per-gene metrics of :attr:`CrossValidationResult.scores`, in order.
GENE_METRICS = ("SPCC", "SSIM", "RMSE", "JS")
#: Clustering metrics of :attr:`CrossValidationResult.clustering`, in order.
CLUSTERING_METRICS = ("ARI", "AMI", "NMI", "Homogeneity")

SCORES_COLUMNS = ["method", "fold", "gene", "metric", "value"]
CLUSTERING_COLUMNS = ["method", "metric", "value"]
RESOURCES_COLUMNS = ["method", "fold", "time_s", "peak_memory_mb", "error"]
INTERVALS_COLUMNS = ["method", "variant", "level", "nominal", "coverage", "mean_width", "interval_score"]
RELIABILITY_COLUMNS = ["method", "fold", "gene", "reliability", "SPCC", "SPCC_truth"]
#: Variants of :attr:`CrossValidationResult.intervals`: the method's intervals, and one width per gene.
INTERVAL_VARIANTS = {"per_cell": ("lower", "upper"), "per_gene": ("gene_lower", "gene_upper")}
#: Prefix of ``resources.error`` for a method that could not run at all (e.g. its package is missing).
SKIPPED_PREFIX = "skipped: "


@dataclass
class CrossValidationResult:
    """Result of :func:`~spalstf.tl.cross_validate`.

    Attributes
    ----------
    scores
        Tidy per-gene scores, columns ``["method", "fold", "gene", "metric", "value"]``; ``metric`` is one of
        ``"SPCC"``, ``"SSIM"``, ``"RMSE"``, ``"JS"``. One row per method, gene and metric for every gene the method
        predicted (genes of a failed fold have no rows). ``value`` is NaN where the metric is undefined for the gene
        (e.g. SPCC of a constant prediction).
    clustering
        Columns ``["method", "metric", "value"]``, ``metric`` one of ``"ARI"``, ``"AMI"``, ``"NMI"``,
        ``"Homogeneity"``; only for methods that predicted every gene.
    resources
        One row per method and fold, columns ``["method", "fold", "time_s", "peak_memory_mb", "error"]``: wall time
        of the method's call, its peak resident-memory increase and the error
        message (``""`` when the call succeeded; starting with ``"skipped: "`` when the method could not run at all,
        in which case time and memory are NaN).
    predictions
        Method -> ``cells x shared genes`` frame (spatial cells, the shared genes in the spatial data's order); each
        gene holds its prediction from the fold in which it was held out (NaN where the method failed), in the
        method's own output units.
    folds
        The ``(kept, held_out)`` gene lists of each fold.
    truth
        The ground truth the scores use: ``"as_given"`` or ``"log1p_cp10k"`` (see :func:`cross_validate`).
    intervals
        For methods that give calibrated intervals (SpaLSTF with ``interval=``), pooled over folds, genes and cells:
        columns ``["method", "variant", "level", "nominal", "coverage", "mean_width", "interval_score"]``.
        ``variant`` ``"per_cell"`` is the method's interval, ``"per_gene"`` the same calibration with one width per
        gene (the plain conformal interval); ``level`` runs over the calibration curve's levels 0.5, 0.55, ..., 0.95
        and the method's own level, which ``nominal`` marks. The
        measured value is the platform's ``log1p(x / L * 1e4)``, ``L`` the cell's total over the fold's kept genes
        (entries of cells with ``L = 0`` are left out).
    reliability
        Columns ``["method", "fold", "gene", "reliability", "SPCC", "SPCC_truth"]``: each held-out gene's predicted
        reliability (the expected SPCC with what the platform measures) next to its real SPCC with the platform's
        value (``SPCC``, the quantity the reliability predicts) and with the ground truth of ``scores``
        (``SPCC_truth``; the same for ``truth="log1p_cp10k"`` up to the library's genes).

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> res = sp.tl.cross_validate(mdata["spatial"], mdata["rna"], methods=["knn", "ridge"], n_folds=5)
    >>> res.methods
    ['knn', 'ridge']
    >>> spcc = res.scores.query("metric == 'SPCC'")  # one row per method and held-out gene
    >>> int(spcc.groupby("method")["gene"].nunique()["ridge"])
    84
    """

    scores: pd.DataFrame
    clustering: pd.DataFrame
    resources: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    folds: list[tuple[list[str], list[str]]] = field(default_factory=list)
    truth: str = "as_given"
    intervals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INTERVALS_COLUMNS))
    reliability: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RELIABILITY_COLUMNS))

    @property
    def methods(self) -> list[str]:
        """Methods in the order they were run."""
        return list(dict.fromkeys(self.resources["method"]))

    def summary(self) -> pd.DataFrame:
        """One row per method: median gene metrics, clustering metrics, AS, total time and peak memory.

        Columns: ``SPCC``, ``SSIM``, ``RMSE``, ``JS`` (median over genes, NaN skipped), ``ARI``, ``AMI``, ``NMI``,
        ``Homogeneity``, ``AS``, ``time_s`` (sum over folds) and ``peak_memory_mb`` (maximum over folds). When a
        method gave intervals, also (NaN for the other methods) the columns of :meth:`interval_summary`:
        ``coverage``, ``mean_width`` and ``interval_score`` of the nominal level, ``calibration_error`` (mean
        absolute gap between nominal and empirical coverage over the levels 0.5-0.95),
        ``gene_width_interval_score`` (the same calibration with one width per gene), ``reliability_spearman``
        (Spearman correlation over the genes between predicted reliability and real SPCC with the platform's
        value) and ``reliability_spearman_truth`` (the same with the SPCC of ``scores``).

        ``AS`` is :func:`spalstf.metrics.accuracy_score` over the eight metrics (each method's rank among the methods,
        best = highest, divided by the number of methods, averaged over metrics). Only methods that ran on every fold
        are ranked; the others get NaN. A metric that is missing for a ranked method is left out of the ranking.

        Returns
        -------
        :class:`pandas.DataFrame` indexed by ``method`` in the order the methods were run.

        Examples
        --------
        >>> import spalstf as sp
        >>> mdata = sp.datasets.drosophila_embryo()
        >>> res = sp.tl.cross_validate(mdata["spatial"], mdata["rna"], methods=("knn", "ridge"))  # doctest: +SKIP
        >>> res.summary()[["SPCC", "AS"]]  # doctest: +SKIP
        """
        methods = self.methods
        gene = (
            self.scores.groupby(["method", "metric"])["value"].median().unstack("metric")
            if len(self.scores)
            else pd.DataFrame()
        )
        gene = gene.reindex(index=methods, columns=list(GENE_METRICS))
        clus = (
            self.clustering.set_index(["method", "metric"])["value"].unstack("metric")
            if len(self.clustering)
            else pd.DataFrame()
        )
        clus = clus.reindex(index=methods, columns=list(CLUSTERING_METRICS))
        table = pd.concat([gene, clus], axis=1).astype(float)

        grouped = self.resources.groupby("method", sort=False)
        failed = grouped["error"].apply(lambda e: bool(e.fillna("").astype(str).str.len().gt(0).any()))
        eligible = [m for m in methods if not failed.get(m, True) and table.loc[m].notna().any()]
        metric_cols = [c for c in table.columns if len(eligible) and table.loc[eligible, c].notna().all()]
        as_score = pd.Series(np.nan, index=methods, dtype=float)
        if eligible and metric_cols:
            ranked = accuracy_score(table.loc[eligible, metric_cols].rename_axis("method"))
            as_score.loc[ranked.index] = ranked.to_numpy()
        table["AS"] = as_score
        table["time_s"] = grouped["time_s"].sum(min_count=1).reindex(methods)
        table["peak_memory_mb"] = grouped["peak_memory_mb"].max().reindex(methods)
        if len(self.intervals):
            table = table.join(self.interval_summary().reindex(methods))
        table.index.name = "method"
        table.columns.name = None
        return table

    def interval_summary(self) -> pd.DataFrame:
        """Per method with intervals: coverage, width and score at the nominal level, calibration error, reliability.

        Columns ``coverage``, ``mean_width``, ``interval_score``, ``calibration_error``,
        ``gene_width_interval_score``, ``reliability_spearman`` and ``reliability_spearman_truth`` (see
        :meth:`summary`), indexed by method.

        Returns
        -------
        :class:`pandas.DataFrame`, one row per method with intervals (none when no method gave any).

        Examples
        --------
        >>> result = sp.tl.cross_validate(
        ...     adata_st, adata_sc, methods=["spalstf"], method_kwargs={"spalstf": {"interval": 0.9}}
        ... )  # doctest: +SKIP
        >>> result.interval_summary()  # doctest: +SKIP
        """
        columns = [
            "coverage",
            "mean_width",
            "interval_score",
            "calibration_error",
            "gene_width_interval_score",
            "reliability_spearman",
            "reliability_spearman_truth",
        ]
        rows = {}
        for method, table in self.intervals.groupby("method", sort=False):
            level = self.interval_levels.get(method)
            cell = table[table["variant"] == "per_cell"].set_index("level")
            gene = table[table["variant"] == "per_gene"].set_index("level")
            rel = self.reliability[self.reliability["method"] == method].dropna(subset=["reliability", "SPCC"])
            rho = rel["reliability"].corr(rel["SPCC"], method="spearman") if len(rel) > 2 else np.nan
            truth = rel.dropna(subset=["SPCC_truth"])
            rho_truth = truth["reliability"].corr(truth["SPCC_truth"], method="spearman") if len(truth) > 2 else np.nan
            on_curve = cell[np.isin(cell.index, CURVE_LEVELS)]  # the method's own level may lie off the curve
            curve = pd.DataFrame({"nominal": on_curve.index, "empirical": on_curve["coverage"].to_numpy()})
            rows[method] = {
                "coverage": cell["coverage"].get(level, np.nan),
                "mean_width": cell["mean_width"].get(level, np.nan),
                "interval_score": cell["interval_score"].get(level, np.nan),
                "calibration_error": calibration_error(curve) if len(curve) else np.nan,
                "gene_width_interval_score": gene["interval_score"].get(level, np.nan),
                "reliability_spearman": rho,
                "reliability_spearman_truth": rho_truth,
            }
        return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("method")

    @property
    def interval_levels(self) -> dict[str, float]:
        """Method -> the nominal level of its intervals (from :attr:`intervals`; the level marked ``nominal``)."""
        out = {}
        for method, table in self.intervals.groupby("method", sort=False):
            nominal = table[table["nominal"]] if "nominal" in table else table.iloc[:0]
            if len(nominal):
                out[method] = float(nominal["level"].iloc[0])
        return out
