"""Calibrated intervals and per-gene reliability of imputed genes, learnt on the spatial panel (numpy, no AnnData).

What an interval is about
    The value the spatial platform would measure, ``y = log1p(x / L * target_sum)``: ``x`` a gene's measurement in a
    spatial cell (in the spatial data's own values) and ``L`` that cell's total over its measured panel genes
    (:func:`platform_values`). The model's estimate is in the reference's units, so it is first mapped into that space
    (:class:`GeneMap` and the pooled line of :class:`IntervalCalibration`).

How it is calibrated (:func:`fit_interval_calibration`; the orchestration over AnnData objects is
:meth:`spalstf.model.SpaLSTF.calibrate_intervals`)
    Inner leave-genes-out over the *measured* genes only: the panel is split into folds (the split is repeated with
    other seeds, :data:`~spalstf.model._defaults.N_CALIBRATION_REPEATS` times by default, and everything below pools
    the repeats); for each fold,
    a closed-form copy of the model (a :class:`~spalstf.model._closed_form.ClosedFormBlend`: ridge + neighbour blend,
    the same preprocessing, no training; :func:`inner_fold`) is fitted on the other panel genes and predicts the
    fold's genes in a sample of spatial cells, where they were measured. Its errors in platform space, divided by a
    per-gene scale, are the conformal scores. Split-conformal quantiles of the signed scores are taken separately in
    *strata* of the predicted raw measurement ``L * expm1(p) / target_sum`` (Mondrian conformal): an interval's width
    depends on the gene (its scale) and on the cell (its library and predicted value).
    The genes being imputed never enter the calibration.

Per-gene reliability
    For each gene, two statistics computed without its measurement (:func:`agreement_features`), each a Spearman
    correlation across the sample of spatial cells between two predictions that err differently:
    ``global_local``, the closed-form blend of the global fits against the mean of the few nearest reference cells;
    ``local_halves``, the mean of the odd-ranked nearest reference cells against that of the even-ranked ones. On the
    panel genes of the inner folds, both are paired with the real Spearman correlation between the prediction and
    the measurement; the statistic that ranks the panel genes' SPCC better is kept (the panel decides which kind of
    error dominates on this pair), and the imputed genes' values of it are mapped onto that SPCC by quantile mapping
    (:meth:`IntervalCalibration.reliability`), giving an expected SPCC per gene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._expression import log1p_normalize
from ..metrics._gene import spearman_columns
from . import _preprocessing as prep
from ._closed_form import ClosedFormBlend
from ._defaults import N_STRATA

#: Reference cells at most used for the per-gene statistics of the gene map.
MAX_REFERENCE_STATISTICS_CELLS = 20_000
#: Fewest measured genes that intervals can be calibrated on (each inner fold needs genes to predict and to use).
MIN_CALIBRATION_GENES = 4
#: Tail probabilities at which the score quantiles of each stratum are stored (0.5, 0.5005, ..., 1).
SCORE_PROBS = np.linspace(0.5, 1.0, 1001)
#: Levels of the calibration curve of the benchmarks.
CURVE_LEVELS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: The truth-free statistics of :func:`agreement_features` (columns), among which the panel picks the reliability's.
RELIABILITY_STATISTICS = ("global_local", "local_halves")
#: Method string recorded in ``uns[key]["interval"]["method"]``.
METHOD = (
    "split-conformal over inner leave-genes-out folds of the measured panel (closed-form copies of the model), "
    "signed scores in strata of the predicted raw measurement"
)


def platform_values(values: np.ndarray, library: np.ndarray, target_sum: float) -> np.ndarray:
    """``log1p(values / library * target_sum)`` (float64); NaN for cells whose library is 0 (undefined)."""
    values = np.asarray(values, dtype=np.float64)
    library = np.asarray(library, dtype=np.float64).reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log1p(values / library * target_sum)
    out[np.broadcast_to(library <= 0, out.shape)] = np.nan
    return out


def gene_moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (ddof 0) over the finite rows."""
    return np.nanmean(values, axis=0), np.nanstd(values, axis=0)


@dataclass
class GeneMap:
    """Per-gene mean and spread in platform space predicted from the gene's reference statistics.

    Two lines fitted across the panel genes, which both modalities measured: platform mean on reference mean, and
    platform standard deviation on reference standard deviation (both in ``log1p`` panel-library units). A gene the
    platform never measured gets the mean and spread its reference statistics predict; the spread is floored at a
    tenth of the panel genes' median.
    """

    mean_coef: tuple[float, float]
    scale_coef: tuple[float, float]
    scale_floor: float

    @classmethod
    def fit(cls, ref_mean, ref_std, st_mean, st_std) -> GeneMap:
        """Fit the two lines (least squares; a slope of 0 when the panel genes' reference statistics are all equal)."""

        def line(x, y) -> tuple[float, float]:
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if np.ptp(x) <= 1e-12:
                return float(y.mean()), 0.0
            slope, intercept = np.polyfit(x, y, 1)
            return float(intercept), float(slope)

        floor = 0.1 * float(np.median(st_std)) if np.median(st_std) > 0 else 1e-3
        return cls(line(ref_mean, st_mean), line(ref_std, st_std), max(floor, 1e-6))

    @classmethod
    def from_values(cls, R: np.ndarray, S: np.ndarray, target_sum: float) -> GeneMap:
        """The map fitted on the panel genes' raw values: reference counts ``R``, spatial values ``S`` (cells x genes).

        The reference statistics are those of the model's targets (``log1p`` normalised over the panel genes), the
        spatial ones those of :func:`platform_values`.
        """
        ref_mean, ref_std = gene_moments(log1p_normalize(R, target_sum))
        st_mean, st_std = gene_moments(platform_values(S, S.sum(axis=1), target_sum))
        return cls.fit(ref_mean, ref_std, st_mean, st_std)

    def apply(self, ref_mean, ref_std) -> tuple[np.ndarray, np.ndarray]:
        """Predicted platform mean and spread of genes with these reference statistics."""
        mean = self.mean_coef[0] + self.mean_coef[1] * np.asarray(ref_mean, np.float64)
        scale = self.scale_coef[0] + self.scale_coef[1] * np.asarray(ref_std, np.float64)
        return mean, np.maximum(scale, self.scale_floor)


@dataclass
class InnerFold:
    """What one inner fold of the calibration gives: predictions of measured genes from the other measured genes.

    Attributes
    ----------
    genes
        The fold's predicted panel genes.
    estimate
        (cells, genes) the standardised estimate of the fold's closed-form blend.
    platform_mean, platform_scale
        (genes,) the gene map of the fold (fitted on its other panel genes) applied to the genes.
    measured
        (cells, genes) their platform values (NaN where undefined).
    library
        (cells,) the cells' library over the fold's other panel genes.
    agreement
        (genes, statistics) :func:`agreement_features` of that blend.
    cells
        Which of the sampled spatial cells the fold predicts (those with signal on its panel genes); ``None``: all.
    """

    genes: list[str]
    estimate: np.ndarray
    platform_mean: np.ndarray
    platform_scale: np.ndarray
    measured: np.ndarray
    library: np.ndarray
    agreement: np.ndarray
    cells: np.ndarray | None = None


@dataclass
class ScoreTable:
    """Quantiles of the signed conformal scores in each stratum (rows), at :data:`SCORE_PROBS`."""

    upper: np.ndarray
    lower: np.ndarray
    counts: np.ndarray

    @classmethod
    def fit(cls, scores: np.ndarray, strata: np.ndarray, n_strata: int) -> ScoreTable:
        upper = np.empty((n_strata, len(SCORE_PROBS)))
        lower = np.empty_like(upper)
        counts = np.zeros(n_strata, dtype=np.int64)
        for s in range(n_strata):
            r = scores[strata == s]
            if len(r) == 0:  # an empty stratum (ties at an edge): the pooled scores stand in
                r = scores
            counts[s] = len(r)
            upper[s] = np.quantile(r, SCORE_PROBS, method="inverted_cdf")
            lower[s] = np.quantile(-r, SCORE_PROBS, method="inverted_cdf")
        return cls(upper, lower, counts)

    def quantiles(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Per stratum, the conformal quantiles of the lower and the upper score at a central ``level``.

        Each tail gets ``(1 - level) / 2``; the finite-sample rank ``ceil((n + 1) p) / n`` is used, read at the first
        stored probability at or above it (conservative), and a stratum too small for it gets an infinite bound.
        """
        tail = 1.0 - (1.0 - level) / 2.0
        lo, hi = np.empty(len(self.counts)), np.empty(len(self.counts))
        for s, n in enumerate(self.counts):
            prob = math.ceil((n + 1) * tail - 1e-9) / n
            if prob > 1.0:
                lo[s] = hi[s] = np.inf
            else:
                k = min(int(np.searchsorted(SCORE_PROBS, prob - 1e-12)), len(SCORE_PROBS) - 1)
                lo[s], hi[s] = self.lower[s, k], self.upper[s, k]
        return lo, hi


@dataclass
class IntervalCalibration:
    """The fitted calibration of a model: point map, strata, score tables, reliability map (see the module docs).

    Stored on the model as ``interval_calibration_`` (saved and loaded with it).
    """

    gene_map: GeneMap
    shift: float
    slope: float
    target_sum: float
    edges: np.ndarray
    table: ScoreTable
    gene_table: ScoreTable
    agreement_knots: np.ndarray
    spcc_knots: np.ndarray
    gene_reliability: dict[str, float]
    calibration_genes: list[str]
    n_cells: int
    n_folds: int
    details: dict[str, Any] = field(default_factory=dict)

    # the point in platform space ---------------------------------------------------------------------------------
    def point(
        self, estimate: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray, gene_map: GeneMap | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Platform-space point ``max(0, m + s * (shift + slope * estimate))`` and the genes' scale ``s``.

        ``estimate`` is the model's standardised estimate (cells x genes); ``ref_mean``/``ref_std`` the genes'
        reference statistics in panel-library ``log1p`` units.
        """
        mean, scale = (gene_map or self.gene_map).apply(ref_mean, ref_std)
        p = mean + scale * (self.shift + self.slope * np.asarray(estimate, np.float64))
        return np.maximum(p, 0.0), scale

    def strata(self, point: np.ndarray, library: np.ndarray) -> np.ndarray:
        """Stratum of each entry: where ``log1p(L * expm1(p) / target_sum)`` falls among the fitted edges."""
        return self.strata_of_keys(measurement_key(point, library, self.target_sum))

    def strata_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """:meth:`strata` from the entries' :func:`measurement_key` values (when the caller needs them too)."""
        return np.searchsorted(self.edges, keys)

    def bounds(
        self, point: np.ndarray, scale: np.ndarray, library: np.ndarray, level: float, *, per_cell: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bound of the central ``level`` interval (cells x genes, float64).

        ``per_cell=False`` uses one width per gene (the scores pooled over strata): the plain conformal interval the
        benchmarks compare with. The lower bound is at least 0 (the smallest value of the space) and the upper bound
        at least the lower one; the interval need not contain the point (its two sides are calibrated separately). An
        upper bound is infinite where a stratum has too few scores for the level. Cells whose library is 0 get NaN
        bounds (their platform value is undefined).
        """
        library = np.asarray(library, np.float64).ravel()
        if per_cell:
            lo_q, hi_q = self.table.quantiles(level)
            s = self.strata(point, library)
            lo_q, hi_q = lo_q[s], hi_q[s]
        else:
            lo_q, hi_q = self.gene_table.quantiles(level)
            lo_q, hi_q = lo_q[0], hi_q[0]
        lower = np.maximum(point - lo_q * scale, 0.0)
        upper = np.maximum(point + hi_q * scale, lower)
        empty = library <= 0
        lower[empty] = np.nan
        upper[empty] = np.nan
        return lower, upper

    # reliability -------------------------------------------------------------------------------------------------
    def reliability(self, agreement: np.ndarray) -> np.ndarray:
        """Expected SPCC of genes with this agreement: the quantile map of the panel genes' (agreement, SPCC).

        ``agreement`` holds the genes' values of the chosen statistic (``details["reliability_statistic"]``). Beyond
        the panel genes' range the map goes on along the straight line through its end knots, clipped to [-1, 1], so
        that genes outside the range keep their order instead of tying at the lowest or highest panel SPCC. An
        undefined agreement (NaN, from a calibration saved by an earlier version) counts as no agreement (0), as
        :func:`agreement_features` now gives it.
        """
        a = np.nan_to_num(np.asarray(agreement, np.float64), nan=0.0)
        x, y = self.agreement_knots, self.spcc_knots
        out = np.interp(a, x, y)
        if len(x) > 1 and x[-1] > x[0]:
            slope = (y[-1] - y[0]) / (x[-1] - x[0])
            below, above = a < x[0], a > x[-1]
            out[below] = y[0] + slope * (a[below] - x[0])
            out[above] = y[-1] + slope * (a[above] - x[-1])
        return np.clip(out, -1.0, 1.0)

    def describe(self, level: float) -> dict[str, Any]:
        """The ``uns[key]["interval"]`` record: level, method, what it was calibrated on."""
        return {
            "level": float(level),
            "method": METHOD,
            "n_calibration_genes": len(self.calibration_genes),
            "calibration_genes": list(self.calibration_genes),
            "n_calibration_cells": int(self.n_cells),
            "n_spatial_cells": int(self.details.get("n_spatial_cells", self.n_cells)),
            "n_folds": int(self.n_folds),
            "n_repeats": int(self.details.get("n_repeats", 1)),
            "n_strata": len(self.edges) + 1,
            "point_map": {"shift": float(self.shift), "slope": float(self.slope)},
            "reliability": {
                # a calibration saved by an earlier version used the mean of two global-vs-local agreements
                "statistic": self.details.get("reliability_statistic", "mean of ridge and blend vs local (earlier)"),
                "panel_spearman": dict(self.details.get("statistic_spearman", {})),
            },
            "leakage": "only the measured genes of the spatial data; never the genes being imputed",
        }


def measurement_key(point: np.ndarray, library: np.ndarray, target_sum: float) -> np.ndarray:
    """``log1p(L * expm1(p) / target_sum)``: the predicted raw measurement of each entry (its stratum key)."""
    library = np.asarray(library, np.float64).reshape(-1, 1)
    return np.log1p(np.maximum(library, 0.0) * np.expm1(point) / target_sum)


def fold_errors(fold: InnerFold, shift: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """A fold's platform-space point under the point map ``(shift, slope)`` and its signed scores (cells x genes).

    The score of an entry is ``(measured - point) / scale``: what the intervals' quantiles and the draws'
    noise (:mod:`spalstf.model._draws`) are fitted on. NaN where the measurement is undefined.
    """
    point = np.maximum(fold.platform_mean + fold.platform_scale * (shift + slope * fold.estimate), 0.0)
    return point, (fold.measured - point) / fold.platform_scale


def fit_interval_calibration(
    folds: list[InnerFold],
    *,
    gene_map: GeneMap,
    imputed_genes: list[str],
    imputed_agreement: np.ndarray,
    target_sum: float,
    n_strata: int = N_STRATA,
    n_cells: int,
    n_repeats: int = 1,
) -> IntervalCalibration:
    """Fit the point map, the strata and score tables, and the reliability map from the inner folds.

    ``gene_map`` is the map fitted on every measured gene (used for the imputed genes); each fold carries the map of
    its own panel genes. ``imputed_agreement`` gives the imputed genes' :func:`agreement_features` (genes x
    :data:`RELIABILITY_STATISTICS`). ``folds`` holds the folds of ``n_repeats`` splits of the panel (so each panel gene
    is predicted ``n_repeats`` times); the scores, the choice of the reliability statistic and the (statistic, SPCC)
    pairs of its map are pooled over them.
    """
    # the pooled line from the standardised estimate to the standardised platform value
    z, e = [], []
    for f in folds:
        ok = np.isfinite(f.measured)
        z.append(((f.measured - f.platform_mean) / f.platform_scale)[ok])
        e.append(np.broadcast_to(f.estimate, f.measured.shape)[ok])
    z, e = np.concatenate(z), np.concatenate(e)
    if len(z) < 10:
        raise ValueError("Too few measured values to calibrate intervals on (fewer than 10 finite entries).")
    if np.ptp(e) > 0:
        slope, shift = np.polyfit(e, z, 1)
    else:
        slope, shift = 0.0, float(z.mean())
    slope, shift = max(float(slope), 0.0), float(shift)  # a negative slope would reverse the cells' order

    scores, keys, spcc, agreement = [], [], [], []
    for f in folds:
        point, fold_scores = fold_errors(f, shift, slope)
        ok = np.isfinite(f.measured)
        scores.append(fold_scores[ok])
        keys.append(measurement_key(point, f.library, target_sum)[ok])
        spcc.append(spearman_columns(point, f.measured))
        agreement.append(f.agreement)
    scores, keys = np.concatenate(scores), np.concatenate(keys)
    edges = np.unique(np.quantile(keys, np.arange(1, n_strata) / n_strata)) if n_strata > 1 else np.zeros(0)
    spcc, agreement = np.concatenate(spcc), np.concatenate(agreement)
    # the statistic that ranks the panel genes' real SPCC best (pooled over the inner folds and splits)
    ranking = {}
    for j, name in enumerate(RELIABILITY_STATISTICS):
        ok = np.isfinite(spcc) & np.isfinite(agreement[:, j])
        ranking[name] = float(spearman_columns(agreement[ok, j, None], spcc[ok, None])[0]) if ok.sum() > 2 else np.nan
    column = int(np.argmax([-np.inf if np.isnan(v) else v for v in ranking.values()]))
    agreement = agreement[:, column]
    ok = np.isfinite(spcc) & np.isfinite(agreement)
    if ok.sum() < 2:
        raise ValueError("Too few panel genes with a defined Spearman correlation to calibrate the reliability.")
    predicted = [g for f in folds for g in f.genes]
    calibration_genes = list(dict.fromkeys(predicted))  # each panel gene once, in the order first predicted
    panel_spcc = pd.Series(spcc, index=predicted).groupby(level=0, sort=False).mean()
    cal = IntervalCalibration(
        gene_map=gene_map,
        shift=float(shift),
        slope=slope,
        target_sum=float(target_sum),
        edges=edges,
        table=ScoreTable.fit(scores, np.searchsorted(edges, keys), len(edges) + 1),
        gene_table=ScoreTable.fit(scores, np.zeros(len(scores), dtype=np.int64), 1),
        agreement_knots=np.sort(agreement[ok]),
        spcc_knots=np.sort(spcc[ok]),
        gene_reliability={},
        calibration_genes=calibration_genes,
        n_cells=n_cells,
        n_folds=len(folds) // n_repeats,
        details={
            "panel_spcc": {g: float(panel_spcc[g]) for g in calibration_genes},
            "n_repeats": int(n_repeats),
            "reliability_statistic": RELIABILITY_STATISTICS[column],
            "statistic_spearman": ranking,
        },
    )
    expected = cal.reliability(np.asarray(imputed_agreement)[:, column])
    cal.gene_reliability = {str(g): float(v) for g, v in zip(imputed_genes, expected, strict=True)}
    return cal


@torch.no_grad()
def agreement_features(
    blend: ClosedFormBlend,
    condition: torch.Tensor,
    *,
    neighbors: torch.Tensor | None = None,
    gene_chunk: int = 256,
    cell_chunk: int = 1024,
) -> np.ndarray:
    """Per unknown gene of ``blend``: the truth-free reliability statistics over the cells of ``condition``.

    Columns in the order of :data:`RELIABILITY_STATISTICS`, each a Spearman correlation across the cells (0 where one
    side is constant over the cells, e.g. a gene that is zero in every nearby reference cell: no rank agreement):

    ``global_local``
        the ridge + neighbour blend (each part standardised as in ``blend``, equal weights) against the mean of the
        ``max(1, n_neighbors // 4)`` nearest reference cells alone. A gene that the condition determines gets the
        same ranking of cells from the global fits and from a handful of nearby reference cells; a gene it does not
        determine gets a noisy local average that disagrees.
    ``local_halves``
        the mean of the odd-ranked against that of the even-ranked of the ``n_neighbors`` nearest reference cells:
        how reproducible the neighbourhood's value of the gene is, whatever the global fit says.

    Only the closed-form parts are used (with the neighbour part standardised as
    :meth:`~spalstf.model._closed_form.ClosedFormBlend.neighbour_standardisation` gives it, also when ``blend`` does
    not blend it), so a model and the closed-form blends of its inner folds compute them alike. ``neighbors`` are the
    cells' nearest reference cells (:meth:`~spalstf.model._closed_form.ClosedFormBlend.find_neighbors`) when the
    caller has searched them already. Computed in chunks of
    genes and cells (memory bounded by the chunk sizes), the parts' sum in float64: only the ranks matter. Leaves
    ``blend`` in eval mode.
    """
    blend.eval()
    if neighbors is None:
        neighbors, _ = blend.find_neighbors(condition)
    k_local = max(1, blend.n_neighbors // 4)
    table = blend.targets
    nb_shift, nb_scale = (x.cpu().numpy() for x in blend.neighbour_standardisation())
    ridge_shift = blend.ridge_shift.cpu().numpy()
    out = np.empty((blend.n_imputed, len(RELIABILITY_STATISTICS)))
    for g0 in range(0, blend.n_imputed, gene_chunk):
        genes = slice(g0, min(g0 + gene_chunk, blend.n_imputed))
        ridge, nb_all, nb_local, odd, even = [], [], [], [], []
        for c0 in range(0, condition.shape[0], cell_chunk):
            c = condition[c0 : c0 + cell_chunk]
            nb = neighbors[c0 : c0 + cell_chunk]
            values = table[:, genes][nb]  # cells x neighbours x genes
            ridge.append((c.float() @ blend.ridge_weight[:, genes]).cpu().numpy())
            nb_all.append(values.mean(1).cpu().numpy())
            nb_local.append(values[:, :k_local].mean(1).cpu().numpy())
            even.append(values[:, 0::2].mean(1).cpu().numpy())
            odd.append(values[:, 1::2].mean(1).cpu().numpy() if values.shape[1] > 1 else even[-1])
        ridge, nb_all, nb_local, odd, even = (
            np.concatenate(x).astype(np.float64) for x in (ridge, nb_all, nb_local, odd, even)
        )
        global_fit = (ridge - ridge_shift[genes]) + (nb_all - nb_shift[genes]) / nb_scale[genes]
        out[genes, 0] = spearman_columns(global_fit, nb_local)
        out[genes, 1] = spearman_columns(odd, even)
    # a side constant over the cells (the gene is zero in every nearby reference cell) ranks nothing: no agreement
    return np.nan_to_num(out, nan=0.0)


@dataclass(frozen=True)
class ClosedFormSettings:
    """How the inner folds build their closed-form blends: the model's preprocessing and closed-form options.

    Attributes
    ----------
    alignment, target_sum, cell_scaling
        The model's per-gene alignment, library size and per-cell scaling of the condition.
    normalize_st
        Whether the spatial values are library-normalised (the model's ``st_normalized``).
    n_neighbors, ridge_alphas
        The model's neighbour count and ridge penalties (as given, before the blend caps the neighbours).
    """

    alignment: str
    target_sum: float
    cell_scaling: bool
    normalize_st: bool
    n_neighbors: int
    ridge_alphas: tuple[float, ...]


def inner_fold(
    reference,
    R: np.ndarray,
    S: np.ndarray,
    keep: np.ndarray,
    hold: np.ndarray,
    genes: list[str],
    settings: ClosedFormSettings,
    device: torch.device | str = "cpu",
) -> InnerFold:
    """One inner fold: a closed-form blend on the ``keep`` measured genes predicts the ``hold`` ones.

    The blend is what a model built on the ``keep`` genes as its panel, imputing the ``hold`` genes, would have as
    its closed-form parts (ridge + neighbour average, no network): its reference profiles come from
    :func:`~spalstf.model._preprocessing.reference_profiles` and the spatial cells' conditions from
    :func:`~spalstf.model._preprocessing.spatial_conditions` (the alignment fitted on the cells with signal on the
    ``keep`` genes), with the model's ``settings``. It is fitted and calibrated on the CPU and predicts on ``device``.

    Parameters
    ----------
    reference
        Raw counts of the measured genes (columns in the order of ``genes``) in every reference cell.
    R
        Raw counts of the measured genes in the sampled reference cells of the gene map.
    S
        Raw values of the measured genes in the sampled spatial cells.
    keep, hold
        Column positions of the fold's panel genes and of the genes it predicts.
    genes
        Names of the measured genes.
    settings
        The model's preprocessing and closed-form options.
    device
        Where the blend predicts.
    """
    library = S[:, keep].sum(axis=1)
    cells = library > 0
    if cells.sum() < prep.MIN_FIT_CELLS:
        raise ValueError(
            f"An inner fold has {int(cells.sum())} sampled spatial cell(s) with signal on its panel genes; calibrating "
            f"intervals needs at least {prep.MIN_FIT_CELLS}. Calibrate on more spatial cells."
        )
    kept_values = S[cells][:, keep]
    profiles, stats = prep.reference_profiles(
        reference,
        np.concatenate([keep, hold]),
        len(keep),
        alignment=settings.alignment,
        target_sum=settings.target_sum,
        cell_scaling=settings.cell_scaling,
    )
    blend = ClosedFormBlend(
        torch.from_numpy(profiles), len(keep), n_neighbors=settings.n_neighbors, ridge_alphas=settings.ridge_alphas
    )
    blend.calibrate()
    blend.to(device)
    condition = prep.spatial_conditions(
        kept_values,
        alignment=settings.alignment,
        target_sum=settings.target_sum,
        cell_scaling=settings.cell_scaling,
        normalize=settings.normalize_st,
    )
    condition = torch.from_numpy(condition).to(device)
    neighbors = blend.find_neighbors(condition)  # one search for the estimate and the agreement statistics
    platform_mean, platform_scale = GeneMap.from_values(R[:, keep], kept_values, settings.target_sum).apply(
        stats["target_mean"], stats["target_std"]
    )
    return InnerFold(
        genes=[genes[i] for i in hold],
        estimate=blend.posterior_mean(condition, neighbors).cpu().numpy().astype(np.float64),
        platform_mean=platform_mean,
        platform_scale=platform_scale,
        measured=platform_values(S[cells][:, hold], library[cells], settings.target_sum),
        library=library[cells],
        agreement=agreement_features(blend, condition, neighbors=neighbors[0]),
        cells=cells,
    )
