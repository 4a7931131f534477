"""From raw expression to the model's space, and back.

The model sees two kinds of values, both per cell and free of the genes being imputed on the ST side:

*condition* (measured genes, both modalities)
    1. library-size normalisation to ``target_sum`` over the **measured genes only** and ``log1p`` (for spatial
       values that are not counts, e.g. in situ intensities, ``log1p`` of the values as given, see
:func:`spalstf._expression.is_count_matrix`);
    2. optional per-cell max-abs scaling into [-1, 1] (``x / max(x) * 2 - 1``; the paper's scaling), again from the
       measured genes only;
    3. per-gene alignment of each modality on its own, which removes gene-wise platform effects (detection
       efficiency, saturation, dropout rates of in situ vs. UMI data): ``"quantile"`` maps every gene through its
       own empirical quantiles onto normal scores (:class:`GeneQuantiles`), ``"zscore"`` standardises it with its
       mean and standard deviation (:class:`RunningGeneStats`). Both are fitted once, on the cells the model is
       built with, and stored, so a cell imputed later is mapped by the same function whatever other cells are
       passed with it.

*target* (imputed genes, reference only)
    ``log1p(counts / library * target_sum)`` with the library over the **measured genes** of the reference cell (the
    same genes as the condition's library, i.e. the units of a spatial cell normalised over its panel), standardised
    per gene with the reference's mean and standard deviation. The model's outputs are mapped back with those
    statistics.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy import sparse

from .._expression import log1p_normalize, output_space, to_dense
from .._streaming import iter_row_chunks, rows_per_chunk

Alignment = Literal["quantile", "zscore"]

#: Which genes form a cell's library in the model's targets and outputs (see :func:`spalstf._expression.output_space`).
TARGET_LIBRARY = "the measured (panel) genes of the cell"


def model_output_space(target_sum: float) -> str:
    """The ``output_space`` string of the model's imputed values."""
    return output_space(target_sum, TARGET_LIBRARY)


_EPS = 1e-8
#: Quantile knots kept per gene by :class:`GeneQuantiles` (the resolution of its mid-ranks).
N_QUANTILE_KNOTS = 1001
#: Cells at most used to fit the quantiles (an evenly spaced subset of larger data).
MAX_QUANTILE_CELLS = 50_000


def cell_maxabs_scale(L: np.ndarray) -> np.ndarray:
    """Per-cell scaling into [-1, 1]: each cell's maximum becomes 1, zero stays -1 (an all-zero cell gives -1)."""
    cell_max = L.max(axis=1, keepdims=True)
    scaled = np.divide(L, cell_max, out=np.zeros_like(L), where=cell_max > 0)
    return scaled * 2.0 - 1.0


def condition_values(X_measured, target_sum: float, cell_scaling: bool, normalize: bool = True) -> np.ndarray:
    """Steps 1-2 of the condition (before the per-gene alignment) from measured-gene values only, float32.

    ``normalize=False`` skips the library normalisation (``log1p`` of the values as given).
    """
    if normalize:
        L = log1p_normalize(X_measured, target_sum).astype(np.float32)
    else:
        X = X_measured.toarray() if sparse.issparse(X_measured) else np.asarray(X_measured)
        L = np.log1p(X.astype(np.float64)).astype(np.float32)
    return cell_maxabs_scale(L) if cell_scaling else L


def evenly_spaced_rows(
    n_cells: int, max_cells: int = MAX_QUANTILE_CELLS, *, single_precision: bool = False
) -> np.ndarray:
    """All ``n_cells`` rows, or ``max_cells`` evenly spaced ones (the rounded points of a linear grid).

    ``single_precision`` lays the grid in float32 (:func:`torch.linspace`), as the reference statistics of the
    closed-form blend have always been fitted: above about 4,000 rows it picks slightly different rows than the
    float64 grid, and the statistics of saved models depend on which.
    """
    if n_cells <= max_cells:
        return np.arange(n_cells)
    if single_precision:
        return torch.unique(torch.linspace(0, n_cells - 1, max_cells).round().long()).numpy()
    return np.unique(np.linspace(0, n_cells - 1, max_cells).round().astype(np.int64))


#: Fewest cells with signal that the spatial alignment is fitted on (fewer raise a ValueError naming the fix).
MIN_FIT_CELLS = 10


def fit_alignment(kind: Alignment, values: np.ndarray) -> dict[str, np.ndarray]:
    """The per-gene alignment of one modality fitted on ``values`` (cells x genes): its parameters by name.

    ``"quantile"``: ``{"knots"}`` of :class:`GeneQuantiles`; ``"zscore"``: ``{"mean", "std"}`` (ddof 0, a constant
    gene gets std 1).
    """
    if kind == "quantile":
        return {"knots": GeneQuantiles.fit(values).knots}
    if kind == "zscore":
        stats = RunningGeneStats(values.shape[1])
        stats.update(values)
        mean, std = stats.result()
        return {"mean": mean, "std": std}
    raise ValueError(f"alignment must be 'quantile' or 'zscore', got {kind!r}.")


def apply_alignment(kind: Alignment, params: dict[str, np.ndarray], values: np.ndarray) -> np.ndarray:
    """Map ``values`` (cells x genes) with a fitted alignment (float32)."""
    if kind == "quantile":
        return GeneQuantiles(params["knots"]).transform(values)
    return standardize(values, params["mean"], params["std"])


def alignment_placeholders(kind: Alignment, n_genes: int) -> dict[str, np.ndarray]:
    """Parameters of the right shapes for a model whose alignment a saved state will restore."""
    if kind == "quantile":
        return {"knots": np.zeros((n_genes, N_QUANTILE_KNOTS), np.float32)}
    return {"mean": np.zeros(n_genes, np.float32), "std": np.ones(n_genes, np.float32)}


class GeneQuantiles:
    """Per-gene empirical quantiles of one modality, mapping values to normal scores by their mid-rank.

    A value ``x`` of gene ``g`` gets ``Phi^-1(p)`` with ``p`` the mid-rank of ``x`` among the fitted cells' values of
    that gene, ``(#{v < x} + #{v <= x}) / 2n`` (ties, such as the zeros of a sparse gene, share one score), read
    from :data:`N_QUANTILE_KNOTS` quantiles and clipped to ``[0.5 / K, 1 - 0.5 / K]``. The map is monotone in each
    gene, so it keeps the order of the cells, and it is stored, so it does not depend on which cells are mapped.

    Parameters
    ----------
    knots
        (genes, K) sorted quantiles of each gene.
    """

    def __init__(self, knots: np.ndarray):
        self.knots = np.ascontiguousarray(knots, dtype=np.float32)

    @classmethod
    def fit(cls, values: np.ndarray, n_knots: int = N_QUANTILE_KNOTS) -> GeneQuantiles:
        """Quantiles of the columns of ``values`` (cells x genes); at least one cell."""
        if values.shape[0] == 0:
            raise ValueError("No cells to fit the per-gene quantiles on.")
        probs = np.linspace(0.0, 1.0, n_knots)
        return cls(np.quantile(np.asarray(values, dtype=np.float64), probs, axis=0, method="inverted_cdf").T)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Normal scores of ``values`` (cells x genes), float32."""
        knots = torch.from_numpy(self.knots)
        v = torch.from_numpy(np.ascontiguousarray(np.asarray(values, dtype=np.float32).T))
        lo = torch.searchsorted(knots, v, right=False)
        hi = torch.searchsorted(knots, v, right=True)
        k = knots.shape[1]
        p = ((lo + hi).double() / (2 * k)).clamp(0.5 / k, 1 - 0.5 / k)
        return torch.special.ndtri(p).T.float().numpy()


class RunningGeneStats:
    """Per-gene mean and standard deviation (ddof 0) accumulated over row chunks, in float64.

    Chunks are merged with the pairwise update of Chan et al. (per-chunk mean and sum of squared deviations), which
    gives the statistics of the whole matrix to float tolerance without holding it, and without the cancellation of
    a plain sum-of-squares formula. :meth:`result` gives a constant gene the standard deviation 1 (it standardises
    to 0).

    Parameters
    ----------
    n_genes
        Number of columns of the chunks.
    """

    def __init__(self, n_genes: int):
        self.n = 0
        self.mean = np.zeros(n_genes, dtype=np.float64)
        self.m2 = np.zeros(n_genes, dtype=np.float64)

    def update(self, values: np.ndarray) -> None:
        """Add the rows of ``values`` (cells x genes)."""
        k = values.shape[0]
        if k == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        chunk_mean = values.mean(axis=0)
        chunk_m2 = ((values - chunk_mean) ** 2).sum(axis=0)
        total = self.n + k
        delta = chunk_mean - self.mean
        self.mean += delta * (k / total)
        self.m2 += chunk_m2 + delta**2 * (self.n * k / total)
        self.n = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` as float32; a constant gene gets std 1 so it standardises to 0."""
        if self.n == 0:
            raise ValueError("No rows were added; the statistics of zero cells are undefined.")
        std = np.sqrt(self.m2 / self.n)
        std = np.where(std > _EPS, std, 1.0)
        return self.mean.astype(np.float32), std.astype(np.float32)


def reference_profiles(
    X, pos: np.ndarray, n_measured: int, *, alignment: Alignment, target_sum: float, cell_scaling: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``[condition, target]`` profiles of the reference cells (aligned, standardised) and the fitted statistics.

    One chunked pass over the rows of ``X`` (raw counts, dense or sparse, in memory), reading the columns ``pos``: the
    ``n_measured`` measured genes, then the targets. It computes the condition values, the targets with the library
    over the measured genes, and running target statistics; then the condition's alignment is fitted on the cells
    with signal and applied in place, and the targets are standardised in place: besides the returned float32
    profiles only one chunk is ever dense. The chunks have :func:`~spalstf._streaming.rows_per_chunk` rows of ``X``'s
    width (the target statistics are accumulated per chunk).

    Returns the profiles and ``{"ref_<alignment parameter>": ..., "target_mean": ..., "target_std": ...}``.
    """
    n_cells, n_genes = X.shape[0], len(pos)
    n_m = n_measured
    profiles = np.empty((n_cells, n_genes), dtype=np.float32)
    has_signal = np.zeros(n_cells, dtype=bool)
    target_stats = RunningGeneStats(n_genes - n_m)
    for start, stop, rows in iter_row_chunks(X, rows_per_chunk(X.shape[1]), pos):
        rows = to_dense(rows)
        library = rows[:, :n_m].sum(axis=1)
        has_signal[start:stop] = library > 0
        target = log1p_normalize(rows[:, n_m:], target_sum, library=library).astype(np.float32)
        target_stats.update(target)
        profiles[start:stop, :n_m] = condition_values(rows[:, :n_m], target_sum, cell_scaling)
        profiles[start:stop, n_m:] = target
    fit_rows = evenly_spaced_rows(n_cells)
    fit_rows = fit_rows[has_signal[fit_rows]]
    if len(fit_rows) < MIN_FIT_CELLS:
        raise ValueError(
            f"Only {int(has_signal.sum())} reference cell(s) have counts on the measured genes; the model needs at "
            f"least {MIN_FIT_CELLS}. Check that adata_sc holds raw counts of the panel's genes."
        )
    params = fit_alignment(alignment, profiles[fit_rows, :n_m])
    for start in range(0, n_cells, rows_per_chunk(n_m)):
        stop = min(start + rows_per_chunk(n_m), n_cells)
        profiles[start:stop, :n_m] = apply_alignment(alignment, params, profiles[start:stop, :n_m])
    target_mean, target_std = target_stats.result()
    profiles[:, n_m:] -= target_mean  # in place: no second copy of the reference
    profiles[:, n_m:] /= target_std
    stats = {f"ref_{k}": v for k, v in params.items()}
    stats.update({"target_mean": target_mean, "target_std": target_std})
    return profiles, stats


def spatial_conditions(
    values: np.ndarray, *, alignment: Alignment, target_sum: float, cell_scaling: bool, normalize: bool
) -> np.ndarray:
    """Aligned conditions of spatial cells under the alignment fitted on these same cells (float32).

    ``values``: raw measured-gene values (cells with signal x genes). What a model built on these cells would
    condition them on: steps 1-2 (:func:`condition_values`, library normalisation when ``normalize``), the alignment
    fitted on all of them (:func:`fit_alignment`) and applied to each (a per-value map, so the same in any chunks).
    """
    conditioned = condition_values(values, target_sum, cell_scaling, normalize=normalize)
    return apply_alignment(alignment, fit_alignment(alignment, conditioned), conditioned)


def standardize(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(values - mean) / std`` as float32."""
    return ((values - mean) / std).astype(np.float32)
