"""Calibrated draws of imputed genes (multiple imputation) and the tests pooled over them; numpy and scipy only.

A draw of gene ``j`` in cell ``i`` is ``max(0, p_ij + s_j * Q_ij(Phi(z_ij)))``: ``p`` the calibrated point estimate in
the platform's space, ``s_j`` the gene's scale, ``Q_ij`` the quantile function of the conformal scores of the cell's
stratum (the same scores the intervals use), and ``z`` a Gaussian field with unit variance in every cell, so that each
draw has exactly the calibrated marginal distribution. ``z`` is white noise smoothed over a spatial neighbour graph
(:class:`NoiseField`), mixed with one field shared by all genes and, per draw, random combinations of a few more
fields: the panel's inner-fold errors fix how smooth (their median Moran's I, moved per gene by how the errors'
smoothness varies with the expression level) and how shared (the mean and the spread of their correlations between
genes) the noise is, and how much more each gene's errors vary between regions of the tissue than that noise does
(a share drawn per gene and draw from the panel genes' own) and in which directions (learnt from the panel errors,
shrunk toward no direction as far as half the panel genes fail to support it in the other half). The AnnData-facing side
is :class:`~spalstf.model._draws_mixin.DrawsMixin`; ``docs/method.md`` ("Multiple imputation") says why and what it
assumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse, special, stats

from ._calibration import SCORE_PROBS, ScoreTable, fold_errors, measurement_key
from ._noise import cell_keys, gene_keys, keyed_normal

#: Neighbours of each cell in the graph that shapes the noise (and on which the panel errors' Moran's I is measured).
N_NOISE_NEIGHBORS = 6
#: Terms of the smoothing series ``sum_t (lam W)^t / t!``.
SMOOTHING_TERMS = 5
#: Pairs of cells in the first (closest) bin of the errors' correlogram (:func:`correlogram`); each next bin doubles.
MIN_CORRELOGRAM_PAIRS = 100
#: Edge lengths at most that :func:`edge_correlation` averages over (evenly spaced quantiles of all of them).
MAX_EDGE_LENGTHS = 100_000
#: Largest Moran's I of the noise that :func:`moran_target` asks for.
MAX_MORAN_TARGET = 0.99
#: Largest smoothing strength searched.
MAX_SMOOTHING = 50.0
#: The shared (cross-gene) share of the noise is kept within [0, this].
MAX_SHARED_NOISE = 0.9
#: Entries (cells x genes x draws) of one chunk of draws: the working memory of the draws and pooled tests.
DRAW_CHUNK_ENTRIES = 4_000_000
#: Clusterings of the cells' measured expression (k-means, coarse then fine) whose shared errors the noise carries.
ERROR_CLUSTER_LEVELS = (6, 24)
#: Fewest calibration cells per cluster for a clustering level to be used.
MIN_CELLS_PER_CLUSTER = 20
#: Regions of the tissue (k-means centres of the cells' coordinates) over which the regional part of the noise varies
#: smoothly (:func:`regional_basis`); as many as the coarse expression clusters.
N_REGIONS = 6
#: Largest share of a gene's noise variance that the regional part may take.
MAX_REGIONAL_SHARE = 0.9
#: Weights of the independent regional weights' covariance against the one learnt from the panel errors
#: (:func:`regional_covariance`) among which :func:`split_half_shrinkage` chooses.
REGIONAL_SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Random halves of the panel genes on which :func:`split_half_shrinkage` scores its weights (each both ways round).
N_SPLIT_HALVES = 10
#: Fewest distinct panel genes for the regional covariance to be learnt (fewer: independent weights).
MIN_GENES_FOR_REGIONAL_COVARIANCE = 8
#: Fields per draw whose random gene loadings spread the noise's correlations between genes (:meth:`DrawPlan.draw`).
N_CORRELATION_FIELDS = 8
#: Probe fields of :meth:`NoiseField.fit_smoothing`.
N_PROBES = 32
#: Independent noise fields simulated on the calibration cells to measure the chance spread of correlations.
N_CHANCE_FIELDS = 48
#: Seed of those fields' random numbers (apart from the smoothing fit's probes, seeded from 0).
CHANCE_SEED = 100
#: Most bins of the genes' expression level over which the panel errors' smoothness is compared
#: (:func:`smoothness_by_level`).
MAX_SMOOTHNESS_LEVELS = 4
#: Fewest panel genes (predictions of inner folds) per such bin.
MIN_GENES_PER_LEVEL = 8


# ------------------------------------------------------------------------------------------------ graphs and Moran
def knn_graph(
    coordinates: np.ndarray, n_neighbors: int = N_NOISE_NEIGHBORS, names: Sequence[str] | None = None
) -> sparse.csr_matrix:
    """Symmetric 0/1 graph joining each cell to its ``n_neighbors`` nearest cells (as squidpy's generic kNN graph).

    With ``names`` (the cells' names), neighbours at equal distances are chosen in the order of the names, not of the
    rows, so that the graph does not depend on the cells' order (grids and duplicated coordinates have such ties).
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(coordinates)
    k = min(n_neighbors, n - 1)
    if k < 1:
        return sparse.csr_matrix((n, n))
    order = np.argsort(np.asarray(names, dtype=str), kind="stable") if names is not None else np.arange(n)
    W = NearestNeighbors(n_neighbors=k).fit(coordinates[order]).kneighbors_graph(mode="connectivity")
    W.setdiag(0)
    W = ((W + W.T) > 0).astype(np.float64)
    W.eliminate_zeros()
    back = np.argsort(order)
    return W.tocsr()[back][:, back].tocsr()


def row_standardised(W: sparse.spmatrix) -> sparse.csr_matrix:
    """``W`` with every row divided by its sum (rows without neighbours stay 0): squidpy's ``transformation=True``."""
    W = sparse.csr_matrix(W, dtype=np.float64)
    sums = np.asarray(W.sum(axis=1)).ravel()
    return (sparse.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ W).tocsr()


@dataclass(frozen=True)
class MoranGraph:
    """A row-standardised weight matrix with the moments of Moran's I under the normality assumption."""

    weights: sparse.csr_matrix
    expected: float
    variance: float

    @classmethod
    def from_connectivities(cls, W: sparse.spmatrix) -> MoranGraph:
        """Row-standardise ``W`` and compute ``E[I] = -1/(n-1)`` and ``Var[I]`` (Cliff and Ord, normality)."""
        Wr = row_standardised(W)
        n = Wr.shape[0]
        s0 = Wr.sum()
        if n < 2 or s0 <= 0:  # no edges (a single cell, or cells without neighbours): no moments
            return cls(Wr, float("nan"), float("nan"))
        sym = Wr + Wr.T
        s1 = 0.5 * sym.multiply(sym).sum()
        s2 = ((np.asarray(Wr.sum(axis=0)).ravel() + np.asarray(Wr.sum(axis=1)).ravel()) ** 2).sum()
        expected = -1.0 / (n - 1)
        variance = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n * n - 1) * s0 * s0) - expected**2
        return cls(Wr, float(expected), float(variance))

    def moran(self, X: np.ndarray) -> np.ndarray:
        """Moran's I of every column of ``X`` (cells x columns); NaN for a constant column."""
        n, s0 = self.weights.shape[0], self.weights.sum()
        if s0 <= 0:
            return np.full(np.shape(X)[1], np.nan)
        Z = np.asarray(X, np.float64) - np.asarray(X, np.float64).mean(axis=0)
        num = (Z * (self.weights @ Z)).sum(axis=0)
        den = (Z * Z).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return n / s0 * num / np.where(den > 0, den, np.nan)


# ------------------------------------------------------------------------------------------------------ noise field
class NoiseField:
    """Gaussian noise smoothed over a graph, with unit variance in every cell.

    The smoothing operator is ``M = sum_{t <= T} (lam W)^t / t!`` (``W`` row-standardised, ``T`` =
    :data:`SMOOTHING_TERMS`), each row divided by its norm so that ``M e`` (``e`` white noise) is standard normal in
    every cell. ``lam = 0`` is white noise; a larger ``lam`` spreads each cell's noise over more neighbours.
    """

    def __init__(self, W: sparse.spmatrix, names: Sequence[str] | None = None):
        Wr = row_standardised(W)
        # the probes of fit_smoothing follow the cells' names, so that the fit does not depend on the cells' order
        self._rank = np.argsort(np.argsort(np.asarray(names, dtype=str), kind="stable")) if names is not None else None
        self.graph = MoranGraph.from_connectivities(W)
        powers = [sparse.identity(Wr.shape[0], format="csr")]
        for _ in range(SMOOTHING_TERMS):
            powers.append((powers[-1] @ Wr).tocsr())
        self._powers = powers
        self._probes: dict[int, list[np.ndarray]] = {}  # the probes of fit_smoothing through the powers, per count
        T = len(powers)
        self._cross = np.empty((T, T, Wr.shape[0]))  # row sums of P_s * P_t: the rows' squared norms for any lam
        for s in range(T):
            for t in range(s, T):
                self._cross[s, t] = self._cross[t, s] = np.asarray(powers[s].multiply(powers[t]).sum(axis=1)).ravel()

    def _coefficients(self, lam: float) -> np.ndarray:
        return np.array([lam**t / special.factorial(t) for t in range(len(self._powers))])

    def operator(self, lam: float) -> sparse.csr_matrix:
        """The normalised smoothing operator at strength ``lam`` (identity at 0)."""
        c = self._coefficients(lam)
        M = sum(ci * P for ci, P in zip(c, self._powers, strict=True) if ci != 0)
        norms = np.sqrt(np.einsum("s,t,stn->n", c, c, self._cross))
        return (sparse.diags(1.0 / norms) @ M).tocsr()

    def _smoothed_probes(self, n_probes: int) -> list[np.ndarray]:
        """The fixed probes (seeded from 0, in the order of the cells' names) through every power of the series.

        Kept for the next fit on this field (the fit of one more target then costs its bisection only).
        """
        if n_probes not in self._probes:
            probes = np.random.default_rng(0).standard_normal((self._powers[0].shape[0], n_probes))
            if self._rank is not None:
                probes = probes[self._rank]
            self._probes[n_probes] = [P @ probes for P in self._powers]
        return self._probes[n_probes]

    def fit_smoothing(
        self, target_moran: float, n_probes: int = N_PROBES, fixed: np.ndarray | None = None, fixed_share: float = 0.0
    ) -> float:
        """The ``lam`` whose noise has median Moran's I ``target_moran`` on this graph (bisection on fixed probes).

        ``fixed`` (cells x ``n_probes``) is a part of the noise that does not depend on ``lam`` (the shared errors of
        expression clusters), already scaled to its share ``fixed_share`` of the variance; the smoothed part gets the
        rest. A target
        at or below the noise's Moran's I at ``lam = 0`` gives 0; one beyond what the series reaches gives
        :data:`MAX_SMOOTHING`.
        """
        if self.graph.weights.nnz == 0:  # no neighbours to smooth over (a single cell): white noise
            return 0.0
        smoothed = self._smoothed_probes(n_probes)
        rest = smoothed_weight(fixed_share)

        def moran_at(lam: float) -> float:
            c = self._coefficients(lam)
            norms = np.sqrt(np.einsum("s,t,stn->n", c, c, self._cross))
            noise = rest * sum(ci * S for ci, S in zip(c, smoothed, strict=True)) / norms[:, None]
            if fixed is not None:
                noise = noise + fixed
            return float(np.nanmedian(self.graph.moran(noise)))

        if not np.isfinite(target_moran) or target_moran <= moran_at(0.0):
            return 0.0
        if target_moran >= moran_at(MAX_SMOOTHING):
            return MAX_SMOOTHING
        lo, hi = 0.0, MAX_SMOOTHING
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if moran_at(mid) < target_moran else (lo, mid)
            if hi - lo < 1e-3:
                break
        return 0.5 * (lo + hi)


def smoothed_weight(cluster_share: float) -> float:
    """Weight of the smoothed part of a unit-variance noise field whose cluster parts take ``cluster_share``."""
    return float(np.sqrt(max(1.0 - cluster_share, 0.0)))


def cluster_noise(
    n_cells: int, labels: Sequence[np.ndarray], shares: Sequence[float], n_fields: int, seed: int
) -> np.ndarray:
    """The part of ``n_fields`` independent unit-variance noise fields that cells of one expression cluster share.

    ``labels`` hold every cell's cluster at each level and ``shares`` the levels' shares of the variance: a cell gets
    ``sum_l sqrt(share_l) * v_l[label_l]`` with a standard normal value per cluster and field (level ``l`` from the
    generator seeded ``seed + l + 1``). ``n_cells`` x ``n_fields``; zeros without levels.
    """
    out = np.zeros((n_cells, n_fields))
    for i, (label, share) in enumerate(zip(labels, shares, strict=True)):
        values = np.random.default_rng(seed + i + 1).standard_normal((int(label.max()) + 1 if n_cells else 0, n_fields))
        out += np.sqrt(share) * values[label]
    return out


def fit_field(
    coordinates: np.ndarray,
    target_moran: float,
    labels: Sequence[np.ndarray],
    shares: Sequence[float],
    names: Sequence[str] | None = None,
    n_neighbors: int = N_NOISE_NEIGHBORS,
) -> tuple[NoiseField, float]:
    """The noise field of cells at ``coordinates`` and the smoothing that gives it median Moran's I ``target_moran``.

    The cluster parts (``labels``, ``shares``: :func:`cluster_noise`) take their share of the variance; the smoothing
    is fitted for the sum, on the ``n_neighbors`` graph of the cells. ``names`` (the cells' names) make the graph and
    the fit independent of the cells' order.
    """
    field = NoiseField(knn_graph(coordinates, n_neighbors, names), names)
    return field, fit_smoothings(field, [target_moran], labels, shares)[0]


def fit_smoothings(
    field: NoiseField, targets: Sequence[float], labels: Sequence[np.ndarray], shares: Sequence[float]
) -> list[float]:
    """The smoothings of ``field`` for the median Moran's I values ``targets`` (cluster parts: :func:`fit_field`)."""
    n_cells = field.graph.weights.shape[0]
    fixed = cluster_noise(n_cells, labels, shares, N_PROBES, seed=0) if len(labels) else None
    return [
        field.fit_smoothing(float(t), n_probes=N_PROBES, fixed=fixed, fixed_share=float(sum(shares))) for t in targets
    ]


# ---------------------------------------------------------------------------------------------- calibration of noise
def error_structure(
    folds: list[Any],
    coordinates: np.ndarray,
    levels: Sequence[np.ndarray] | None = None,
    genes: np.ndarray | None = None,
) -> dict[str, Any]:
    """How spatially smooth and how shared the panel's inner-fold errors are (the noise field's two settings).

    ``folds`` hold each inner fold's standardised errors ``scores`` (calibration cells x the fold's genes);
    ``coordinates`` the calibration cells' positions. Returns the median Moran's I of the errors of every predicted
    panel gene on the kNN graph of those cells, the mean correlation between the errors of genes predicted together,
    and, so that the Moran's I can be carried to cells spaced otherwise (:func:`moran_target`), the errors'
    :func:`correlogram` and its :func:`edge_correlation` on the graph of those cells. With ``levels`` (each fold's
    genes' :func:`expression_levels`) and ``genes`` (the name of every fold's every gene, concatenated), also how the
    errors' Moran's I moves with the level (:func:`smoothness_by_level`).
    """
    graph = MoranGraph.from_connectivities(knn_graph(coordinates))
    morans, correlations, weights = [], [], []
    for scores in folds:
        morans.append(graph.moran(scores))
        pairs = pair_correlations(scores)
        if len(pairs):
            correlations.append(pairs.mean())
            weights.append(len(pairs))
    moran = np.concatenate(morans)
    correlation = float(np.average(correlations, weights=weights)) if correlations else 0.0
    curve = correlogram(folds, coordinates)
    out = {
        "error_moran": float(np.nanmedian(moran)) if np.isfinite(moran).any() else 0.0,
        "error_correlation": float(correlation),
        "n_neighbors": N_NOISE_NEIGHBORS,
        "correlogram": curve,
        "edge_correlation": edge_correlation(curve, coordinates, N_NOISE_NEIGHBORS),
    }
    if levels is not None:
        out["smoothness_levels"] = smoothness_by_level(np.concatenate(list(levels)), moran, genes)
    return out


def expression_levels(keys: np.ndarray, library: np.ndarray) -> np.ndarray:
    """Each gene's expression level: the mean over cells of ``log1p`` of its predicted raw measurement.

    ``keys`` (cells x genes) are the entries' :func:`~spalstf.model._calibration.measurement_key` (from the
    platform-space point estimate and ``library``, the cells' totals over the panel): unlike the platform value, they
    do not depend on which genes make up the library, so the inner folds' genes (predicted from part of the panel) and
    the imputed genes (from all of it) are on one scale. Cells without signal are left out.
    """
    sums, counts = expression_level_sums(keys, library)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def expression_level_sums(keys: np.ndarray, library: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per gene, the sum of :func:`expression_levels`' values over the cells with signal and their number.

    Sums of chunks of cells add up to the whole's (their ratio is the level).
    """
    keys = np.where(np.asarray(library).reshape(-1, 1) > 0, keys, np.nan)
    finite = np.isfinite(keys)
    return np.where(finite, keys, 0.0).sum(axis=0), finite.sum(axis=0)


def smoothness_by_level(levels: np.ndarray, morans: np.ndarray, genes: np.ndarray | None = None) -> dict[str, Any]:
    """How the panel errors' Moran's I moves with the genes' :func:`expression_levels`, where that predicts it.

    An error is the imputation's missed biology, spatially smooth, plus the measurement's own noise, white and larger
    against the signal the fewer molecules a gene has: on count platforms the errors of lowly expressed genes are the
    roughest. The panel genes (one value per inner-fold prediction) are split at quantiles of their level into at most
    :data:`MAX_SMOOTHNESS_LEVELS` bins of at least :data:`MIN_GENES_PER_LEVEL` genes; each bin's ``shift`` is its
    median Moran's I less the median of all genes (the noise's common target), and ``edges`` are the levels between
    bins.

    Whether the bins are used is decided on the panel genes alone, by cross-validation over ``genes`` (each value's
    gene, so that the repeats of one gene stay together; default: every value its own gene): in 5 folds of the genes,
    each held-out gene's Moran's I is predicted by its bin (fitted on the other genes) and by the other genes' median;
    the bins are kept only if their mean absolute error is lower. Otherwise, as with too few genes for two bins, one
    bin and no shift. ``cv_error`` records both errors (bins, median), NaN when not computed.
    """
    ok = np.isfinite(levels) & np.isfinite(morans)
    levels, morans = np.asarray(levels, np.float64)[ok], np.asarray(morans, np.float64)[ok]
    genes = np.arange(len(ok))[ok] if genes is None else np.asarray(genes)[ok]
    flat = {"edges": [], "shift": [0.0], "cv_error": [float("nan"), float("nan")]}

    def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        n_bins = min(MAX_SMOOTHNESS_LEVELS, len(x) // MIN_GENES_PER_LEVEL)
        if n_bins < 2:
            return None
        edges = np.unique(np.quantile(x, np.arange(1, n_bins) / n_bins))  # tied levels: fewer, non-empty bins
        bins = np.searchsorted(edges, x, side="right")
        n_bins = len(edges) + 1  # at least 2: one edge is left however the levels tie
        median = float(np.median(y))
        shift = np.array([np.median(y[bins == b]) - median if (bins == b).any() else 0.0 for b in range(n_bins)])
        return edges, shift, median

    full = fit(levels, morans)
    if full is None:
        return flat
    names = np.unique(genes)
    fold_of = dict(zip(names, np.arange(len(names)) % 5, strict=True))
    held = np.array([fold_of[g] for g in genes])
    errors_bins, errors_flat = [], []
    for f in range(min(5, len(names))):
        train, test = held != f, held == f
        part = fit(levels[train], morans[train])
        if part is None or not test.any():
            return flat
        edges, shift, median = part
        predicted = median + shift[np.searchsorted(edges, levels[test], side="right")]
        errors_bins.append(np.abs(morans[test] - predicted))
        errors_flat.append(np.abs(morans[test] - median))
    cv = [float(np.mean(np.concatenate(errors_bins))), float(np.mean(np.concatenate(errors_flat)))]
    if not cv[0] < cv[1]:
        return {**flat, "cv_error": cv}
    edges, shift, _ = full
    return {"edges": edges.tolist(), "shift": shift.tolist(), "cv_error": cv}


def level_shifts(statistics: dict[str, Any], levels: np.ndarray) -> np.ndarray:
    """Per gene, how far its errors' Moran's I sits from the panel's median at its expression level.

    The :func:`smoothness_by_level` bin that each of ``levels`` falls in (the end bins beyond the panel genes' range);
    0 for every gene when the calibration has no such record (an earlier version) or a gene's level is undefined.
    """
    record = statistics.get("smoothness_levels")
    levels = np.asarray(levels, np.float64)
    if not record or len(record["shift"]) < 2:
        return np.zeros(len(levels))
    shifts = np.asarray(record["shift"], np.float64)[
        np.searchsorted(record["edges"], np.nan_to_num(levels), side="right")
    ]
    return np.where(np.isfinite(levels), shifts, 0.0)


def edge_lengths(coordinates: np.ndarray, n_neighbors: int = N_NOISE_NEIGHBORS) -> np.ndarray:
    """Distances from every cell to its ``n_neighbors`` nearest cells (flat): the edges of the kNN graph."""
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, len(coordinates) - 1)
    if k < 1:
        return np.empty(0)
    distances, _ = NearestNeighbors(n_neighbors=k).fit(coordinates).kneighbors()
    return distances.ravel()


def correlogram(errors: list[np.ndarray], coordinates: np.ndarray) -> dict[str, list[float]]:
    """How the errors' correlation between two cells falls with their distance (up to 1.5 edge lengths).

    The pairs of cells closer than 1.5 times the median of :func:`edge_lengths` are split by distance into bins of
    about :data:`MIN_CORRELOGRAM_PAIRS`, twice as many, four times as many ... pairs from the closest (pairs at equal
    distances stay in one bin); in each, the
    median over genes of the mean product of the two cells' standardised errors. A sample of cells has pairs closer
    than its own edges, so this reaches the distances between neighbours of a denser set of cells (all cells of a
    section larger than the calibration's sample). Returns the bins' median ``distance`` and ``correlation``.
    """
    from scipy.spatial import cKDTree

    lengths = edge_lengths(coordinates)
    if not len(lengths):
        return {"distance": [], "correlation": []}
    reach = 1.5 * float(np.median(lengths))
    pairs = cKDTree(coordinates).query_pairs(reach, output_type="ndarray")
    if len(pairs) < MIN_CORRELOGRAM_PAIRS:
        return {"distance": [], "correlation": []}
    distance = np.linalg.norm(coordinates[pairs[:, 0]] - coordinates[pairs[:, 1]], axis=1)
    order = np.argsort(distance, kind="stable")
    standardised = []
    for E in errors:
        sd = E.std(axis=0)
        standardised.append((E[:, sd > 0] - E[:, sd > 0].mean(axis=0)) / sd[sd > 0])
    Z = np.hstack(standardised)
    distances, correlations = [], []
    # bins of doubling counts from the closest pairs: fine where a denser graph's edges fall, coarse further out;
    # a bin never splits pairs at the same distance (lattices), so the bins do not depend on the order of the pairs
    ordered = distance[order]
    ends = MIN_CORRELOGRAM_PAIRS * (2 ** np.arange(1, int(np.log2(len(pairs) / MIN_CORRELOGRAM_PAIRS + 1)) + 1) - 1)
    ends = np.unique(np.searchsorted(ordered, ordered[np.minimum(ends, len(pairs)) - 1], side="right"))
    ends = np.append(ends[ends < len(pairs) - MIN_CORRELOGRAM_PAIRS], len(pairs))
    step = max(1, DRAW_CHUNK_ENTRIES // max(Z.shape[1], 1))
    for rows in np.split(order, ends[:-1]):
        total = np.zeros(Z.shape[1])
        for chunk in range(0, len(rows), step):  # the products of a chunk of pairs at a time
            a, b = pairs[rows[chunk : chunk + step], 0], pairs[rows[chunk : chunk + step], 1]
            total += (Z[a] * Z[b]).sum(axis=0)
        distances.append(float(np.median(distance[rows])))
        correlations.append((total / len(rows)).tolist())
    return {"distance": distances, "correlation": correlations}


def edge_correlation(curve: dict[str, list[float]], coordinates: np.ndarray, n_neighbors: int) -> float:
    """The mean over the kNN graph's edges of the :func:`correlogram` at their length (interpolated, held at its ends).

    About the Moran's I of the errors on that graph. NaN without a correlogram.
    """
    correlation = np.asarray(curve["correlation"], dtype=np.float64)
    if len(curve["distance"]) < 2 or correlation.size == 0:
        return float("nan")
    lengths = np.sort(edge_lengths(coordinates, n_neighbors))  # sorted: the same for any order of the cells
    if not len(lengths):
        return float("nan")
    if len(lengths) > MAX_EDGE_LENGTHS:  # evenly spaced quantiles of the lengths
        lengths = lengths[np.linspace(0, len(lengths) - 1, MAX_EDGE_LENGTHS).round().astype(np.int64)]
    # per gene, the correlation at every edge's length averaged over the edges; then the median over genes
    per_gene = [np.interp(lengths, curve["distance"], column).mean() for column in correlation.T]
    return float(np.median(per_gene))


def moran_target(statistics: dict[str, Any], coordinates: np.ndarray) -> float:
    """The panel errors' Moran's I carried to the kNN graph of ``coordinates`` (cells with signal): the noise's target.

    The errors' Moran's I was measured on the calibration sample's graph. Other cells may be spaced otherwise: all
    cells of a section larger than the sample (at most 10,000 cells) have closer neighbours, and the errors are more
    alike between them than the sample's graph shows. The target moves by the difference between the errors'
    :func:`edge_correlation` on the two graphs (the correlogram read at the lengths of each graph's edges), within
    ``[0,`` :data:`MAX_MORAN_TARGET` ``]``: the calibration's own cells keep the measured value, and cells spaced
    almost alike get almost the same target.
    """
    target = float(statistics["error_moran"])
    there = float(statistics["edge_correlation"])
    here = edge_correlation(statistics["correlogram"], coordinates, int(statistics["n_neighbors"]))
    if not (np.isfinite(here) and np.isfinite(there)) or here == there:
        return target
    return float(np.clip(target + here - there, 0.0, MAX_MORAN_TARGET))


def fit_kmeans(values: np.ndarray, k: int) -> Any:
    """scikit-learn's k-means of the rows of ``values`` into ``k`` clusters (3 starts, seed 0), on one thread.

    With more threads its centres may differ in the last bits from run to run, and so would everything fitted on them.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return KMeans(n_clusters=k, n_init=3, random_state=0).fit(values)


def error_clusters(
    errors: list[np.ndarray], conditions: np.ndarray, levels: Sequence[int] = ERROR_CLUSTER_LEVELS
) -> list[dict[str, Any]]:
    """Errors shared by cells of similar measured expression: k-means levels and their share of the error variance.

    ``conditions`` are the calibration cells' measured genes as the model sees them (cells x measured genes);
    ``errors`` each inner fold's standardised errors on those cells. For each level ``k`` (coarse to fine; a level
    with fewer than :data:`MIN_CELLS_PER_CLUSTER` cells per cluster is skipped) the cells are clustered and the share of
    every panel gene's error variance that the cluster means explain is computed (less its chance share
    ``(k - 1) / n``); the median over genes is the level's cumulative share. Each returned level holds its ``centers``
    (to place new cells) and the ``share`` it adds beyond the coarser levels.
    """
    n = len(conditions)
    out, explained = [], 0.0
    for k in levels:
        if n < k * MIN_CELLS_PER_CLUSTER:
            continue
        km = fit_kmeans(conditions, k)
        labels, counts = km.labels_, np.bincount(km.labels_, minlength=k)
        shares = []
        for E in errors:
            centred = E - E.mean(axis=0)
            total = (centred**2).sum(axis=0)
            means = np.zeros((k, E.shape[1]))
            np.add.at(means, labels, centred)
            means /= np.maximum(counts, 1)[:, None]
            between = (counts[:, None] * means**2).sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                shares.append(between / total - (k - 1) / n)
        share = float(np.clip(np.nanmedian(np.concatenate(shares)), 0.0, 1.0))
        out.append({"k": int(k), "centers": km.cluster_centers_.copy(), "share": max(share - explained, 0.0)})
        explained = max(explained, share)
    return out


def region_centres(
    coordinates: np.ndarray, names: Sequence[str] | None = None, n_regions: int = N_REGIONS
) -> tuple[np.ndarray, float] | None:
    """The tissue's regions: k-means centres of the coordinates, and the median distance between neighbouring centres.

    With ``names`` (the cells' names) the centres are found with the cells in the order of their names, so they do not
    depend on the cells' order (:func:`fit_kmeans`).
    ``None`` with fewer than two distinct positions.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    k = min(n_regions, len(np.unique(coordinates, axis=0)))
    if k < 2:
        return None
    order = np.arange(len(coordinates)) if names is None else np.argsort(np.asarray(names, dtype=str), kind="stable")
    centres = fit_kmeans(coordinates[order], k).cluster_centers_
    distances = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(axis=-1))
    np.fill_diagonal(distances, np.inf)
    width = float(np.median(distances.min(axis=1)))
    return (centres, width) if np.isfinite(width) and width > 0 else None


def regional_basis(
    coordinates: np.ndarray, centres: np.ndarray, width: float, mixing: np.ndarray | None = None
) -> np.ndarray:
    """Smooth functions of position over the tissue's regions: cells x regions, every row of unit norm.

    A Gaussian bump of standard deviation ``width`` at each of ``centres`` (:func:`region_centres`). ``basis @ w``
    with standard normal ``w`` is a field with unit variance in every cell that varies over the scale of the regions
    (a tissue's halves, its layers), coarser than any smoothing over neighbours; cells much closer together than
    ``width`` get nearly the same value. The bumps overlap, so most of such a field is about constant over a section
    (two thirds to three quarters of its variance on the benchmark pairs with 6 regions) and the rest varies between
    the regions. With ``mixing`` ((regions + 1) x regions, :func:`regional_mixing`) each row ``b`` (scaled to unit
    norm) becomes ``b @ mixing[:-1] + mixing[-1]``, scaled to unit norm again: ``basis @ w`` then varies between cells
    in the directions learnt from the panel errors (the identity over a zero row gives the plain bumps).
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    squared = ((coordinates[:, None] - centres[None]) ** 2).sum(axis=-1) / (2.0 * width * width)
    bumps = np.exp(-(squared - squared.min(axis=1, keepdims=True)))  # each row scaled by its largest bump: no underflow
    bumps /= np.sqrt((bumps**2).sum(axis=1, keepdims=True))
    if mixing is None:
        return bumps
    mixing = np.asarray(mixing, dtype=np.float64)
    bumps = bumps @ mixing[:-1] + mixing[-1]
    return bumps / np.sqrt((bumps**2).sum(axis=1, keepdims=True))


def drawn_regional_basis(
    record: dict[str, Any], coordinates: np.ndarray, signal: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray | None, bool]:
    """The :func:`regional_basis` of the drawn cells at ``coordinates`` from a calibration's regional ``record``.

    Cells within the calibration's extent (widened by the regions' width on every side; those with ``signal``
    decide) get the calibration's regions and the mixing learnt there (:func:`regional_covariance`), so the part
    varies in the directions the panel errors did. Cells elsewhere (another section), and records of earlier versions
    without a mixing, get regions of their own (those of the cells with signal, ``names`` making them independent of
    the cells' order) with independent weights, never narrower than the calibration's: a tile of a section drawn
    alone then gets a part about constant over it, as it is within the section. Returns the basis (``None``
    without regions) and whether it is the calibration's (with its learnt mixing).
    """
    width = float(record["width"])
    if "mixing" in record and signal.any():
        low, high = (np.asarray(bound, dtype=np.float64) for bound in record["extent"])
        cells = np.asarray(coordinates, dtype=np.float64)[signal]
        if ((cells >= low - width) & (cells <= high + width)).all():
            mixing = np.asarray(record["mixing"])
            return regional_basis(coordinates, np.asarray(record["centres"]), width, mixing), True
    regions = region_centres(coordinates[signal], np.asarray(names)[signal], int(record["n_regions"]))
    if regions is None:
        return None, False
    centres, own_width = regions
    return regional_basis(coordinates, centres, max(own_width, width)), False


def has_regional_part(shares: np.ndarray) -> bool:
    """Whether any of the regional ``shares`` is above 0 (else the draws get no regional part)."""
    return len(shares) > 0 and float(np.max(shares)) > 0


def regional_keys(n_regions: int, random_state: int) -> np.ndarray:
    """Noise keys of the regional part: one for the share each (gene, draw) takes, one per region's weights."""
    return cell_keys(["\x00regional share", *(f"\x00region {r}" for r in range(n_regions))], random_state)


def regional_r2(values: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Share of each column's variance that a least-squares fit on ``basis`` (with an intercept) explains."""
    design = np.column_stack([np.ones(len(basis)), basis])
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    centred = values - values.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ((values - design @ coefficients) ** 2).sum(axis=0) / (centred**2).sum(axis=0)


def regional_shares(
    errors: Sequence[np.ndarray],
    cells: Sequence[np.ndarray | None],
    fields: np.ndarray,
    coordinates: np.ndarray,
    genes: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """How much more of each panel gene's errors varies between regions than the noise law's fields do, and how.

    ``errors`` (each inner fold's, calibration cells x the fold's genes) with ``cells`` (each fold's cells with signal,
    the rows its errors are measured on), and ``fields`` (cells x fields of the draws' law without a regional part,
    :func:`chance_fields`) on the calibration cells at ``coordinates``, whose regions (:func:`region_centres`) give the
    :func:`regional_basis`. A gene's share is ``(R2_g - R2_law) / (1 - R2_law)``, clipped to
    [0, :data:`MAX_REGIONAL_SHARE`]: ``R2_g`` the part of its errors' variance the regions explain on its fold's
    cells, ``R2_law`` the fields' mean on the same cells. Genes differ widely here (on osmFISH most panel genes need
    little and a few much), and nothing known without the measurement says which, so the draws take a share at
    random from these, per gene and draw (:meth:`DrawPlan.noise`). Returns the sorted ``shares`` with ``n_regions``,
    the regions' ``centres`` and ``width`` (the draws use these regions), the folds' mean ``law_r2`` and the errors'
    median ``error_r2``, the coordinates' ``extent`` (lowest and highest per axis), and in which directions over the
    regions the errors vary: the weights' ``mixing`` and its ``shrinkage`` (:func:`regional_covariance`, with
    ``genes``, each fold's genes' names); no shares without regions.
    """
    regions = region_centres(coordinates, n_regions=N_REGIONS)
    if regions is None:
        return {"n_regions": 0, "width": float("nan"), "shares": [], "law_r2": float("nan"), "error_r2": float("nan")}
    basis = regional_basis(coordinates, *regions)
    explained, shares, laws = [], [], []
    for scores, fold_cells in zip(errors, cells, strict=True):
        rows = slice(None) if fold_cells is None else fold_cells
        law = float(np.nanmean(regional_r2(fields[rows], basis[rows])))
        r2 = regional_r2(scores[rows], basis[rows])
        r2 = r2[np.isfinite(r2)]
        explained.append(r2)
        laws.append(law)
        if np.isfinite(law) and law < 1:
            shares.append(np.clip((r2 - law) / (1.0 - law), 0.0, MAX_REGIONAL_SHARE))
    explained_all = np.concatenate(explained) if explained else np.zeros(0)
    coordinates = np.asarray(coordinates, dtype=np.float64)
    return {
        "n_regions": int(basis.shape[1]),
        "centres": regions[0].tolist(),
        "width": regions[1],
        "extent": [coordinates.min(axis=0).tolist(), coordinates.max(axis=0).tolist()],
        "shares": np.sort(np.concatenate(shares)).tolist() if shares else [],
        "law_r2": float(np.mean(laws)) if laws else float("nan"),
        "error_r2": float(np.median(explained_all)) if len(explained_all) else float("nan"),
        **regional_covariance(errors, cells, fields, basis, genes),
    }


def centred_span(basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The span of ``basis``'s columns centred over its rows: ``U``, ``S``, ``Vt`` of its thin SVD, null part dropped.

    At most one direction fewer than the columns is kept (the smallest goes), so that one direction of the weights
    is free for the part about constant over the cells (:func:`regional_mixing`).

    ``U`` (rows x k) is orthonormal, ``S`` (k,) and ``Vt`` (k x columns) map a weight vector ``w`` to the
    coordinates ``S * (Vt @ w)`` of the field ``basis @ w`` (less its mean) in ``U``.
    """
    centred = basis - basis.mean(axis=0)
    U, S, Vt = np.linalg.svd(centred, full_matrices=False)
    k = int(np.sum(S > 1e-6 * S[0])) if len(S) and S[0] > 0 else 0
    k = min(k, basis.shape[1] - 1)  # one direction of the weights is left for the part about constant over the cells
    return U[:, :k], S[:k], Vt[:k]


def span_coordinates(values: np.ndarray, span: np.ndarray, rows: Any) -> np.ndarray:
    """Least-squares coordinates (columns x k) of the finite columns of ``values``, centred over ``rows``, in ``span``.

    ``span`` (cells x k) is read on ``rows`` only.
    """
    part = values[rows]
    part = part[:, np.isfinite(part).all(axis=0)]
    return np.linalg.lstsq(span[rows], part - part.mean(axis=0), rcond=None)[0].T


def regional_covariance(
    errors: Sequence[np.ndarray],
    cells: Sequence[np.ndarray | None],
    fields: np.ndarray,
    basis: np.ndarray,
    genes: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """In which directions over the regions the panel errors vary beyond the law's fields: the regional part's mixing.

    The errors and the fields (:func:`regional_shares`' arguments; ``basis`` the calibration cells'
    :func:`regional_basis`) are projected on the :func:`centred_span` of the bumps. The errors' covariance there less
    the fields' (clipped to be positive semi-definite) is the direction the errors vary in (a tissue's length more
    than its width, say); it is learnt from a few dozen genes, so it is shrunk toward the covariance of independent
    weights, ``S**2``, by a weight (:data:`REGIONAL_SHRINKAGE_GRID`) that half of the panel genes support in the
    other half (:func:`split_half_shrinkage`). The result, scaled to the independent weights' between-cell
    variance, is carried by the :func:`regional_mixing`. Returns ``mixing`` and ``shrinkage`` (1: all the
    independent weights'; without ``genes``, or with fewer than :data:`MIN_GENES_FOR_REGIONAL_COVARIANCE` genes,
    ``mixing`` gives the plain bumps).
    """
    R = basis.shape[1]
    identity = {"mixing": np.vstack([np.eye(R), np.zeros(R)]).tolist(), "shrinkage": 1.0}
    U, S, Vt = centred_span(basis)
    if genes is None or len(S) == 0:
        return identity
    coordinates, names, law = [], [], np.zeros((len(S), len(S)))
    for scores, fold_cells, fold_genes in zip(errors, cells, genes, strict=True):
        rows = slice(None) if fold_cells is None else fold_cells
        coordinates.append(span_coordinates(scores, U, rows))
        names.append(np.asarray(fold_genes, dtype=str)[np.isfinite(scores[rows]).all(axis=0)])
        field_coordinates = span_coordinates(fields, U, rows)
        law += field_coordinates.T @ field_coordinates / len(field_coordinates) / len(errors)
    A, names = np.concatenate(coordinates), np.concatenate(names)
    if len(np.unique(names)) < MIN_GENES_FOR_REGIONAL_COVARIANCE:
        return identity
    independent = np.diag(S**2)
    learnt = excess_covariance(A, law)
    if np.trace(learnt) <= 0:
        return identity
    shrinkage = split_half_shrinkage(A, names, law, independent)
    between = np.trace(independent)  # the independent weights' between-cell variance, summed over the cells
    target = shrunk_shape(learnt, independent, shrinkage) * between
    return {"mixing": regional_mixing(basis, S, Vt, target), "shrinkage": float(shrinkage)}


def excess_covariance(A: np.ndarray, law: np.ndarray) -> np.ndarray:
    """The covariance of the rows of ``A`` (mean 0) less ``law``, with negative eigenvalues set to 0."""
    return positive_part(A.T @ A / len(A) - law)


def shrunk_shape(learnt: np.ndarray, independent: np.ndarray, weight: float) -> np.ndarray:
    """``learnt`` and ``independent``, each scaled to trace 1, mixed with ``weight`` on ``independent`` (trace 1)."""
    return (1 - weight) * learnt / np.trace(learnt) + weight * independent / np.trace(independent)


def regional_mixing(basis: np.ndarray, S: np.ndarray, Vt: np.ndarray, target: np.ndarray) -> list[list[float]]:
    """The :func:`regional_basis` mixing whose field has covariance ``target`` in the centred span, plus a constant.

    ``basis`` (calibration cells x regions) has the :func:`centred_span` ``U S Vt``; the mixed rows are
    ``(b - mean) @ M + c * n`` with ``M = Vt.T diag(1/S) target**0.5 Vt``, so that the field's departures from its
    mean over the cells have coordinates of covariance ``target`` in ``U``, and, on a direction ``n`` of the weights
    that ``M`` does not use, a constant ``c`` drawn apart with the variance that independent weights' field has about
    constant over the section, ``1 - trace(S**2) / cells``.
    """
    R = basis.shape[1]
    mean = basis.mean(axis=0)
    M = Vt.T @ (symmetric_root(target) / S[:, None]) @ Vt
    _, _, directions = np.linalg.svd(np.vstack([Vt, np.zeros((1, R))]))  # rows past len(S): directions M does not use
    constant = np.sqrt(max(1.0 - float((S**2).sum()) / len(basis), 0.0)) * directions[len(S)]
    return np.vstack([M, constant - mean @ M]).tolist()


def positive_part(matrix: np.ndarray) -> np.ndarray:
    """A symmetric ``matrix`` with its negative eigenvalues set to 0."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * np.clip(values, 0.0, None)) @ vectors.T


def symmetric_root(matrix: np.ndarray) -> np.ndarray:
    """The positive semi-definite square root of a symmetric positive semi-definite ``matrix``."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def profile_likelihood(A: np.ndarray, law: np.ndarray, shape: np.ndarray) -> float:
    """Log-likelihood of the rows of ``A`` under ``N(0, s * shape + law)``, each row at its own best scale ``s``.

    Each gene's errors vary between regions by its own amount (its share), so the scale is profiled per gene over a
    grid (0 and 60 values from 1e-3 to 1e3 of the largest whitened eigenvalue); only the direction ``shape`` is shared.
    """
    values, vectors = np.linalg.eigh(law)
    whiten = (vectors / np.sqrt(np.clip(values, 1e-12 * max(values.max(), 1e-300), None))) @ vectors.T
    d, Q = np.linalg.eigh(whiten @ shape @ whiten)
    d = np.clip(d, 0.0, None)
    Y = (A @ whiten @ Q) ** 2
    scales = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 60)]) / max(float(d.max()), 1e-12)
    per_scale = np.stack([-(np.log1p(s * d)[None] + Y / (1.0 + s * d)[None]).sum(axis=1) for s in scales])
    return float(0.5 * per_scale.max(axis=0).sum())


def split_half_shrinkage(A: np.ndarray, names: np.ndarray, law: np.ndarray, independent: np.ndarray) -> float:
    """The weight of ``independent`` against the learnt covariance that half the panel genes support in the other.

    ``A`` holds the errors' coordinates (one row per panel gene and fold, ``names`` their genes), ``law`` the fields'
    covariance. For :data:`N_SPLIT_HALVES` random halves of the distinct genes (seeded 0, 1, ...), the covariance is
    learnt from one half (as :func:`regional_covariance`) and each grid weight's mix is scored by the other half's
    :func:`profile_likelihood`, both ways round. The weight chosen is the largest (the closest to independent
    weights) whose score is not below the best one's by more than one standard error of their difference over the
    splits: the learnt direction is used only as far as the panel clearly supports it (with a few dozen genes it may
    not carry over to the imputed ones).
    """
    grid = np.asarray(REGIONAL_SHRINKAGE_GRID, dtype=np.float64)
    unique = np.unique(names)
    scores = []
    for repeat in range(N_SPLIT_HALVES):
        half = np.isin(names, np.random.default_rng(repeat).permutation(unique)[: len(unique) // 2])
        for train, test in ((half, ~half), (~half, half)):
            learnt = excess_covariance(A[train], law)
            if np.trace(learnt) <= 0:
                learnt = independent
            scores.append([profile_likelihood(A[test], law, shrunk_shape(learnt, independent, w)) for w in grid])
    scores = np.asarray(scores)
    difference = scores - scores[:, [int(np.argmax(scores.sum(axis=0)))]]
    standard_error = difference.std(axis=0, ddof=1) / np.sqrt(len(difference))
    return float(grid[np.flatnonzero(difference.mean(axis=0) + standard_error >= 0)[-1]])


def noise_statistics(folds: list[Any], calibration: Any, coordinates: np.ndarray, conditions: np.ndarray) -> dict:
    """The draws' noise settings from a calibration's inner folds.

    :func:`error_structure` and :func:`error_clusters`, the ``error_correlation_spread`` (:func:`correlation_spread`)
    against fields of the draws' law on the calibration cells (:func:`chance_fields`), and against the same fields the
    genes' excess variation between regions (:func:`regional_shares`, under ``"regional"``).

    ``folds`` are the calibration's :class:`~spalstf.model._calibration.InnerFold` objects, ``calibration`` the fitted
    :class:`~spalstf.model._calibration.IntervalCalibration` (its point map gives the errors); ``coordinates`` and
    ``conditions`` describe its sampled cells. The errors are measured as the noise is made: as the normal scores
    of the conformal scores in their strata (:func:`normal_scores`), the ``z`` that :meth:`DrawPlan.draw` maps
    through the score quantiles; a heavy-tailed score distribution makes the scores themselves less smooth and less
    correlated than their normal scores, and noise fitted to the former would come out too rough. A fold leaves out
    cells without signal on its panel genes: their errors count as 0.
    """
    errors, levels = [], []
    for fold in folds:
        point, scores = fold_errors(fold, calibration.shift, calibration.slope)
        keys = measurement_key(point, fold.library, calibration.target_sum)
        full = np.zeros((len(conditions), len(fold.genes)))
        full[fold.cells] = np.nan_to_num(normal_scores(scores, calibration.strata_of_keys(keys), calibration.table))
        errors.append(full)
        levels.append(expression_levels(keys, fold.library))
    genes = np.concatenate([np.asarray(fold.genes, dtype=str) for fold in folds]) if folds else np.empty(0, str)
    statistics = error_structure(errors, coordinates, levels, genes)
    statistics["clusters"] = error_clusters(errors, conditions)
    fields = chance_fields(statistics, coordinates, conditions)
    statistics.update(correlation_spread(errors, fields, folds))
    statistics["regional"] = regional_shares(
        errors, [fold.cells for fold in folds], fields, coordinates, [fold.genes for fold in folds]
    )
    return statistics


def chance_fields(statistics: dict[str, Any], coordinates: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """:data:`N_CHANCE_FIELDS` independent noise fields of the draws' law on the calibration cells (cells x fields).

    The law of :meth:`DrawPlan.draw` before its correlation part: smoothed to the errors' Moran's I, with the
    expression clusters' parts (``statistics`` from :func:`error_structure` and :func:`error_clusters`) and the part
    common to all genes. Their random numbers are their own (seeded apart from the fit's probes).
    """
    labels = [nearest_center(conditions, level["centers"]) for level in statistics["clusters"]]
    shares = [level["share"] for level in statistics["clusters"]]
    field, smoothing = fit_field(coordinates, statistics["error_moran"], labels, shares)
    operator, weight, rng = field.operator(smoothing), smoothed_weight(sum(shares)), np.random.default_rng(CHANCE_SEED)
    fields = weight * (operator @ rng.standard_normal((len(coordinates), N_CHANCE_FIELDS)))
    fields += cluster_noise(len(coordinates), labels, shares, N_CHANCE_FIELDS, seed=CHANCE_SEED)
    shared = float(np.clip(statistics["error_correlation"], 0.0, MAX_SHARED_NOISE))
    common = weight * (operator @ rng.standard_normal(len(coordinates)))
    common += cluster_noise(len(coordinates), labels, shares, 1, seed=CHANCE_SEED + len(shares) + 1)[:, 0]
    return np.sqrt(shared) * common[:, None] + np.sqrt(1.0 - shared) * fields


def pair_correlations(values: np.ndarray) -> np.ndarray:
    """Correlations between every two columns of ``values`` (the finite ones, flat)."""
    if values.shape[1] < 2:
        return np.empty(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.corrcoef(values, rowvar=False)
    pairs = C[np.triu_indices_from(C, k=1)]
    return pairs[np.isfinite(pairs)]


def correlation_spread(
    errors: list[np.ndarray], chance: np.ndarray, folds: Sequence[Any] | None = None
) -> dict[str, float]:
    """How much the errors' correlations between genes spread beyond chance (a standard deviation).

    ``errors`` hold each inner fold's errors on the calibration cells (the genes of a fold were predicted together);
    ``chance`` noise fields of the draws' law on the same cells (cells x fields; :func:`chance_fields`); ``folds``
    (optional, the inner folds) say which cells each fold's errors cover (the others are 0 there), and the chance
    fields are compared fold by fold on the same cells. Two independent smooth fields are correlated by chance, the
    more the smoother and the fewer the cells; the variance of the errors' pair
    correlations less that of ``chance``'s is what the errors share gene by gene (a pair's sign and size that no
    statistic of the panel predicts), which the draws carry with random loadings (:meth:`DrawPlan.draw`).

    Returns ``error_correlation_spread`` (that excess; 0 when the errors spread no more than chance, or with fewer
    than two pairs) and, for the record, the standard deviations ``error_correlation_sd`` and
    ``chance_correlation_sd`` it compares.
    """
    pairs = np.concatenate([pair_correlations(E) for E in errors]) if errors else np.empty(0)
    masks = [getattr(f, "cells", None) for f in folds] if folds is not None else [None]
    by_chance = np.concatenate(
        [pair_correlations(chance if m is None else np.where(m[:, None], chance, 0.0)) for m in masks]
    )
    record = {
        "error_correlation_sd": float(pairs.std()) if len(pairs) else float("nan"),
        "chance_correlation_sd": float(by_chance.std()) if len(by_chance) else float("nan"),
        "error_correlation_spread": 0.0,
    }
    if len(pairs) >= 2 and len(by_chance) >= 2:
        record["error_correlation_spread"] = float(np.sqrt(max(pairs.var() - by_chance.var(), 0.0)))
    return record


def share_for_spread(spread: float, shared: float, n_fields: int = N_CORRELATION_FIELDS) -> float:
    """The :attr:`DrawPlan.correlation_share` whose noise spreads correlations between genes by ``spread``.

    The random loadings on ``n_fields`` fields correlate two genes' own noise by ``v`` times a cosine of standard
    deviation ``1 / sqrt(n_fields)``, and the share ``shared`` common to all genes scales that by ``1 - shared``; at
    most 1 (:func:`spread_beyond_reach` says when the cap binds). 0 for a spread that is not positive or not finite.
    """
    if not np.isfinite(spread) or spread <= 0:
        return 0.0
    return float(min(1.0, spread * np.sqrt(n_fields) / max(1.0 - shared, 1e-12)))


def spread_beyond_reach(spread: float, shared: float, n_fields: int = N_CORRELATION_FIELDS) -> bool:
    """Whether the draws cannot spread correlations between genes by ``spread`` (:func:`share_for_spread` capped)."""
    return bool(np.isfinite(spread) and spread * np.sqrt(n_fields) > max(1.0 - shared, 1e-12))


def own_targets(target: float, shifts: np.ndarray, shared: float, correlation_share: float) -> np.ndarray:
    """Per gene, the Moran's I of its own noise field that puts its whole noise ``shifts`` away from ``target``.

    A gene's noise is its own field, of variance ``(1 - shared) (1 - correlation_share)``, plus the common and the
    correlation fields, of the common law (Moran's I ``target``); the Moran's I of a sum of independent fields is about
    their variance-weighted mean, so the own field moves by ``shifts`` over its share (within ``[0,``
    :data:`MAX_MORAN_TARGET` ``]``).
    """
    own = max((1.0 - shared) * (1.0 - correlation_share), 1e-12)
    return np.clip(target + np.asarray(shifts, np.float64) / own, 0.0, MAX_MORAN_TARGET)


def correlation_keys(n_fields: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise keys of the ``n_fields`` correlation fields and of their loadings (the loadings' keys carry the seed)."""
    names = range(n_fields)
    return gene_keys([f"\x00correlation field {f}" for f in names]), cell_keys(
        [f"\x00correlation loading {f}" for f in names], random_state
    )


def nearest_center(conditions: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``centers`` for every row of ``conditions`` (Euclidean)."""
    d = (conditions**2).sum(axis=1)[:, None] - 2 * conditions @ centers.T + (centers**2).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


# ------------------------------------------------------------------------------------------------------------ draws
def normal_scores(scores: np.ndarray, strata: np.ndarray, table: ScoreTable) -> np.ndarray:
    """The standard normal quantile of each signed score's probability in its stratum (``z`` of the draws).

    :func:`score_quantiles`' inverse composed with ``Phi``: ``score_quantiles(table, strata, Phi(normal_scores(r)))``
    is ``r``.

    Probabilities are kept within half a step of :data:`~spalstf.model._calibration.SCORE_PROBS` from 0 and 1 (the
    table's resolution; about 3.5 standard deviations). NaN scores stay NaN.
    """
    scores = np.asarray(scores, np.float64)
    strata = np.broadcast_to(strata, scores.shape)
    u = np.full(scores.shape, np.nan)
    for s in np.unique(strata):
        here = (strata == s) & np.isfinite(scores)
        r = scores[here]
        upper = r >= table.upper[s, 0]
        u_here = np.empty(len(r))
        u_here[upper] = _probability(r[upper], table.upper[s])
        u_here[~upper] = 1.0 - _probability(-r[~upper], table.lower[s])
        u[here] = u_here
    margin = 0.5 * (SCORE_PROBS[1] - SCORE_PROBS[0])
    return special.ndtri(np.clip(u, margin, 1.0 - margin))


def _probability(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The probability of each value among ``quantiles`` (non-decreasing, at :data:`SCORE_PROBS`), interpolated.

    A value that a stretch of equal quantiles takes (tied scores, as many exact zeros) gets the middle of the stretch,
    so that tied scores get the mean of their probabilities and their normal scores stay centred.
    """
    right = np.interp(values, quantiles, SCORE_PROBS)
    left = -np.interp(-values, -quantiles[::-1], -SCORE_PROBS[::-1])
    return 0.5 * (left + right)


def score_quantiles(table: ScoreTable, strata: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The signed conformal score at probability ``u`` in each entry's stratum (``strata`` broadcast against ``u``)."""
    strata = np.broadcast_to(strata, u.shape)
    out = np.empty(u.shape)
    upper = u >= 0.5
    for s in np.unique(strata):
        here = strata == s
        hi, lo = here & upper, here & ~upper
        out[hi] = np.interp(u[hi], SCORE_PROBS, table.upper[s])
        out[lo] = -np.interp(1.0 - u[lo], SCORE_PROBS, table.lower[s])
    return out


def draw_range(draws: int | slice) -> tuple[int, int]:
    """``(first, count)`` of the draws asked for: ``n`` is draws ``0 .. n-1``, a slice ``start:stop`` those draws."""
    if isinstance(draws, slice):
        return draws.start or 0, draws.stop - (draws.start or 0)
    return 0, int(draws)


@dataclass
class DrawPlan:
    """Everything needed to draw the imputed genes of a set of cells, chunk by chunk (:meth:`chunks`).

    Attributes
    ----------
    point
        (cells, genes) calibrated point estimate in the platform's space (float32, as the imputation's output).
    scale
        (genes,) the genes' scale in that space.
    strata
        (cells, genes) stratum of each entry in ``table``.
    empty
        (cells,) cells without signal (their draws are NaN, as their bounds are).
    table
        The calibration's conformal score quantiles per stratum.
    operator
        Normalised smoothing operator over the cells (:meth:`NoiseField.operator`).
    shared
        Share of the noise variance common to all genes.
    cells, genes
        Noise keys (:func:`~spalstf.model._noise.cell_keys`, :func:`~spalstf.model._noise.gene_keys`).
    factor
        Noise key of the shared field.
    clusters
        For each expression-cluster level: every cell's cluster key (cells of a cluster share that part of the
        noise) and the level's share of the variance; the smoothed part has the rest.
    moran_target
        The median Moran's I the noise was fitted to (:func:`moran_target`), for the record.
    correlation_share
        Share of each gene's own noise (the part not common to all genes) made of :data:`N_CORRELATION_FIELDS` fields
        with random loadings, different in every draw: how far the noise's correlations between genes spread.
    correlation_fields, correlation_loadings
        Noise keys of those fields and of their loadings (the loadings' keys carry the seed).
    gene_smoothing, level_operators
        Per gene (``gene_smoothing``, (genes,)), which of ``level_operators`` smooths the gene's own noise, so that
        its errors' smoothness at the gene's expression level is met (:func:`smoothness_by_level`); -1 (and the
        default ``None``, for every gene) is ``operator``. The shared and correlation fields always use ``operator``.
    regional_basis, regional_shares, regional_keys
        The cells' :func:`regional_basis` (cells x regions; ``None``: no regional part), the panel genes' excess
        regional shares (:func:`regional_shares`) from which each (gene, draw) takes one at random, and the noise
        keys of that choice and of the regions' weights (1 + regions keys, carrying the seed).
    """

    point: np.ndarray
    scale: np.ndarray
    strata: np.ndarray
    empty: np.ndarray
    table: ScoreTable
    operator: sparse.csr_matrix
    shared: float
    cells: np.ndarray
    genes: np.ndarray
    factor: np.ndarray
    clusters: list[tuple[np.ndarray, float]] = field(default_factory=list)
    moran_target: float = float("nan")
    correlation_share: float = 0.0
    correlation_fields: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    correlation_loadings: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    gene_smoothing: np.ndarray | None = None
    level_operators: list[sparse.csr_matrix] = field(default_factory=list)
    regional_basis: np.ndarray | None = None
    regional_shares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    regional_keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    _correlation_cache: tuple[tuple[int, int], np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.correlation_share > 0 and (len(self.correlation_fields) == 0 or len(self.correlation_loadings) == 0):
            raise ValueError("A DrawPlan with a correlation_share needs correlation_fields and correlation_loadings.")
        if len(self.correlation_fields) != len(self.correlation_loadings):
            raise ValueError("correlation_fields and correlation_loadings must have one key per field each.")
        if self.gene_smoothing is not None and (
            len(self.gene_smoothing) != len(self.genes)
            or np.max(self.gene_smoothing, initial=-1) >= len(self.level_operators)
            or np.min(self.gene_smoothing, initial=-1) < -1
        ):
            raise ValueError("gene_smoothing needs one entry per gene, each -1 or a position in level_operators.")
        self.regional_shares = np.sort(np.asarray(self.regional_shares, dtype=np.float64))
        if self.regional_basis is not None and len(self.regional_keys) != 1 + self.regional_basis.shape[1]:
            raise ValueError("regional_keys needs one key for the shares and one per column of regional_basis.")
        if self.regional_basis is not None and self.regional_basis.shape[0] != self.n_cells:
            raise ValueError("regional_basis needs one row per cell of point.")

    @property
    def n_cells(self) -> int:
        return self.point.shape[0]

    def draw_step(self, n_samples: int) -> int:
        """Draws per chunk: all ``n_samples`` where one gene's draws hold at most :data:`DRAW_CHUNK_ENTRIES` entries."""
        return max(1, min(n_samples, DRAW_CHUNK_ENTRIES // max(self.n_cells, 1)))

    def chunks(self, n_samples: int) -> list[tuple[slice, slice]]:
        """``(genes, draws)`` slices whose draws hold about :data:`DRAW_CHUNK_ENTRIES` entries each.

        Chunks hold every draw of a few genes; where one gene's ``n_samples`` draws on all cells would hold more,
        they hold runs of :meth:`draw_step` draws (run by run, so that each run's correlation fields are made once).
        """
        n_genes, step = self.point.shape[1], self.draw_step(n_samples)
        genes_step = max(1, DRAW_CHUNK_ENTRIES // max(self.n_cells * step, 1))
        return [
            (slice(g, min(g + genes_step, n_genes)), slice(k, min(k + step, n_samples)))
            for k in range(0, n_samples, step)
            for g in range(0, n_genes, genes_step)
        ]

    def _field(self, genes: np.ndarray, draws: int | slice, smoothing: np.ndarray | None = None) -> np.ndarray:
        """Unit-variance noise of the gene keys ``genes``: cluster parts plus the smoothed part, (cells, genes, K).

        ``draws`` is a number of draws from the first or a slice of them (:func:`draw_range`); ``smoothing`` gives
        each gene's entry of :attr:`gene_smoothing` (default: ``operator`` for every gene).
        """
        first, n_samples = draw_range(draws)
        n, g = self.n_cells, len(genes)
        white = keyed_normal(self.cells, genes, first, n_samples)
        weight = smoothed_weight(sum(share for _, share in self.clusters))
        if smoothing is None or (np.asarray(smoothing) < 0).all():  # one smoothing for all: one product, no copies
            z = weight * (self.operator @ white.reshape(n, g * n_samples)).reshape(n, g, n_samples)
        else:
            z = np.empty((n, g, n_samples))
            for level in np.unique(smoothing):
                columns = np.flatnonzero(smoothing == level)
                operator = self.operator if level < 0 else self.level_operators[level]
                smoothed = operator @ white[:, columns].reshape(n, len(columns) * n_samples)
                z[:, columns] = weight * smoothed.reshape(n, len(columns), n_samples)
        for keys, share in self.clusters:
            z += np.sqrt(share) * keyed_normal(keys, genes, first, n_samples)
        return z

    def _correlated(self, genes: np.ndarray, draws: int | slice) -> np.ndarray:
        """Unit-variance noise of the gene keys ``genes`` correlated between genes at random, (cells, genes, K).

        Every draw combines the same fields (``correlation_fields``, of the law of :meth:`_field`) with loadings drawn
        per (field, gene, draw) and scaled to unit norm per gene: two genes' noise is correlated by the cosine of
        their loadings, which spreads around 0 with standard deviation ``1 / sqrt(number of fields)``. The fields are
        made once per run of draws, one at a time (the working memory of a one-gene chunk), and kept (cells x
        fields x K, float32: 32 bytes per cell and draw for 8 fields).
        """
        first, n_samples = draw_range(draws)
        if self._correlation_cache is None or self._correlation_cache[0] != (first, n_samples):
            fields = np.empty((self.n_cells, len(self.correlation_fields), n_samples), dtype=np.float32)
            for f in range(len(self.correlation_fields)):
                fields[:, f] = self._field(self.correlation_fields[f : f + 1], slice(first, first + n_samples))[:, 0]
            self._correlation_cache = ((first, n_samples), fields)
        loadings = keyed_normal(self.correlation_loadings, genes, first, n_samples)  # (fields, genes, K)
        loadings /= np.sqrt((loadings**2).sum(axis=0, keepdims=True))
        return np.einsum("fgk,nfk->ngk", loadings, self._correlation_cache[1])

    def noise(self, columns: slice, draws: int | slice) -> np.ndarray:
        """The standard normal noise ``z`` of the genes ``columns``, (cells, genes, draws).

        ``draws``: a number of draws from the first, or a slice of them; a draw is the same whichever are asked for.

        The gene's own field (smoothed as :attr:`gene_smoothing` says), mixed with the randomly loaded correlation
        fields (``correlation_share``), then with the field common to all genes (``shared``), then with a regional part
        (:meth:`_with_regional`): unit variance in every entry.
        """
        genes = self.genes[columns]
        z = self._field(genes, draws, None if self.gene_smoothing is None else self.gene_smoothing[columns])
        if self.correlation_share > 0:
            v = self.correlation_share
            z = np.sqrt(1.0 - v) * z + np.sqrt(v) * self._correlated(genes, draws)
        if self.shared > 0:
            z = np.sqrt(self.shared) * self._field(self.factor, draws) + np.sqrt(1.0 - self.shared) * z
        if self.regional_basis is not None and has_regional_part(self.regional_shares):
            z = self._with_regional(z, genes, draws)
        return z

    def _with_regional(self, z: np.ndarray, genes: np.ndarray, draws: int | slice) -> np.ndarray:
        """``z`` with a regional part of a share taken at random per (gene, draw) from :attr:`regional_shares`.

        The part is ``regional_basis @ w`` with standard normal weights per (region, gene, draw): unit variance in every
        cell, so the entry keeps unit variance. A gene whose errors vary much between regions in one draw and little in
        another is what the panel shows and cannot be told apart beforehand; the pooled tests see that spread.
        """
        shares = self.regional_shares
        first, n_samples = draw_range(draws)
        u = special.ndtr(keyed_normal(self.regional_keys[:1], genes, first, n_samples)[0])  # (genes, K), uniform
        share = shares[np.minimum((u * len(shares)).astype(np.int64), len(shares) - 1)]
        weights = keyed_normal(self.regional_keys[1:], genes, first, n_samples)  # (regions, genes, K)
        regional = np.einsum("nr,rgk->ngk", self.regional_basis, weights)
        return np.sqrt(1.0 - share)[None] * z + np.sqrt(share)[None] * regional

    def draw(self, columns: slice, draws: int | slice) -> np.ndarray:
        """Draws of the genes ``columns``: (cells, genes, draws), float64 (:meth:`noise` through the scores).

        ``draws``: a number of draws from the first, or a slice of them (:meth:`chunks`).
        """
        z = self.noise(columns, draws)
        q = score_quantiles(self.table, self.strata[:, columns, None], special.ndtr(z))
        point = self.point[:, columns, None].astype(np.float64)
        draws = np.maximum(point + self.scale[columns][None, :, None] * q, 0.0)
        draws[self.empty] = np.nan
        return draws


# ----------------------------------------------------------------------------------------------------- pooled tests
def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN."""
    p = np.asarray(p, np.float64)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok])
    return out


def rubin(
    estimates: np.ndarray, within: np.ndarray, complete_df: np.ndarray | float = np.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rubin's rules over draws (axis 0): pooled estimate, total variance, degrees of freedom, missing information.

    ``within`` is each draw's sampling variance (same shape as ``estimates``, or one row); the total variance is
    ``W + (1 + 1/K) B`` with ``W`` its mean and ``B`` the variance of the estimates over the ``K`` draws. The degrees
    of freedom are Barnard and Rubin's (1999) small-sample ones for complete-data degrees of freedom ``complete_df``
    (``inf``: Rubin's 1987 formula); the fraction of missing information is ``(1 + 1/K) B / T``.
    """
    K = estimates.shape[0]
    q = estimates.mean(axis=0)
    W = np.broadcast_to(within, estimates.shape).mean(axis=0)
    B = estimates.var(axis=0, ddof=1) if K > 1 else np.zeros_like(q)
    T = W + (1.0 + 1.0 / K) * B
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(T > 0, (1.0 + 1.0 / K) * B / T, 0.0)
        df_m = np.where(lam > 0, (K - 1) / lam**2, np.inf)
        nu = np.broadcast_to(np.asarray(complete_df, np.float64), q.shape)
        df_obs = np.where(np.isinf(nu), np.inf, (nu + 1) / (nu + 3) * nu * (1 - lam))
        df = 1.0 / (1.0 / df_m + 1.0 / df_obs)
    return q, T, df, lam


def pooled_moran(morans: np.ndarray, graph: MoranGraph, two_tailed: bool = False) -> dict[str, np.ndarray]:
    """Moran's I pooled over draws (rows of ``morans``) with Rubin's rules and the normality variance as ``W``.

    The p-value follows squidpy's ``pval_norm``: the upper tail of ``|z|`` (doubled with ``two_tailed``), here of a t
    distribution with the pooled degrees of freedom.
    """
    q, T, df, lam = rubin(morans, np.full(morans.shape[1], graph.variance))
    statistic = (q - graph.expected) / np.sqrt(T)
    p = stats.t.sf(np.abs(statistic), df) * (2 if two_tailed else 1)
    return {"I": q, "statistic": statistic, "df": df, "pvalue": np.minimum(p, 1.0), "fraction_missing_information": lam}


@dataclass(frozen=True)
class GroupMoments:
    """Cell counts, means and variances (``ddof=1``) of groups of cells: ``n`` (groups,), ``mean`` and ``var``.

    The latter two are (groups, ...); the two-group tests (:func:`welch_moments`,
    :func:`pooled_difference_moments`) need only these.
    """

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> GroupMoments:
        """The moments of one group: ``x`` is (cells, ...)."""
        return cls(np.array([x.shape[0]]), x.mean(axis=0)[None], x.var(axis=0, ddof=1)[None])

    @classmethod
    def of_masks(cls, values: np.ndarray, masks: np.ndarray, rows: int = 16) -> GroupMoments:
        """The moments of every group of cells in ``masks`` (groups, cells) over ``values`` (cells, ...; finite).

        Sums of the values and of their squares are taken for ``rows`` groups at a time by one matrix product, around
        the values' mean over all cells (so the variances do not lose digits), instead of copying each group's
        values: the cost of many groups is a few passes over the values, not one copy per group.
        """
        shape = values.shape[1:]
        X = values.reshape(values.shape[0], -1)
        shift = X.mean(axis=0)
        X = X - shift
        squares = X * X
        n = masks.sum(axis=1).astype(np.float64)
        sums, total = np.empty((len(masks), X.shape[1])), np.empty((len(masks), X.shape[1]))
        for start in range(0, len(masks), rows):
            M = masks[start : start + rows].astype(np.float64)
            sums[start : start + rows], total[start : start + rows] = M @ X, M @ squares
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = sums / n[:, None]
            var = np.maximum(total - sums * mean, 0.0) / (n - 1)[:, None]
        return cls(n, (mean + shift).reshape(len(masks), *shape), var.reshape(len(masks), *shape))


def welch(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean difference, its variance and the complete-data degrees of freedom ``n1 + n2 - 2``, over axis 0."""
    return welch_moments(GroupMoments.of(x1), GroupMoments.of(x2))


def welch_moments(a: GroupMoments, b: GroupMoments, i: int = 0, j: int = 0) -> tuple[np.ndarray, ...]:
    """:func:`welch` from the moments of group ``i`` of ``a`` and group ``j`` of ``b``."""
    d = a.mean[i] - b.mean[j]
    v = a.var[i] / a.n[i] + b.var[j] / b.n[j]
    return d, v, np.full(d.shape, a.n[i] + b.n[j] - 2.0)


def pooled_difference(x1: np.ndarray, x2: np.ndarray) -> dict[str, np.ndarray]:
    """Two-group Welch-variance t-test pooled over draws: ``x1`` and ``x2`` are (cells, genes, draws) of each group."""
    return pooled_difference_moments(GroupMoments.of(x1), GroupMoments.of(x2))


def pooled_difference_moments(a: GroupMoments, b: GroupMoments, i: int = 0, j: int = 0) -> dict[str, np.ndarray]:
    """:func:`pooled_difference` from the moments (genes, draws) of group ``i`` of ``a`` and group ``j`` of ``b``."""
    d, v, nu = welch_moments(a, b, i, j)  # (genes, draws)
    q, T, df, lam = rubin(d.T, v.T, nu[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = q / np.sqrt(T)
    p = np.where(T > 0, 2 * stats.t.sf(np.abs(statistic), df), np.where(q == 0, 1.0, 0.0))
    return {
        "mean1": a.mean[i].mean(axis=-1),
        "mean2": b.mean[j].mean(axis=-1),
        "mean_difference": q,
        "statistic": statistic,
        "df": df,
        "pvalue": p,
        "fraction_missing_information": lam,
    }
