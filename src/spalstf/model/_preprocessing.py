"""From raw expression to the model's space, and back.

The model sees two kinds of values, both per cell and free of the genes being imputed on the ST side:

*condition* (measured genes, both modalities)
    1. library-size normalisation to ``target_sum`` over the **measured genes only** and ``log1p``;
    2. optional per-cell max-abs scaling into [-1, 1] (``x / max(x) * 2 - 1``; the paper's scaling), again from the
       measured genes only;
    3. per-gene standardisation with the mean and standard deviation of *that modality's* cells, which removes
       gene-wise platform effects (in situ intensities vs. UMI counts).

*target* (imputed genes, reference only)
    ``log1p`` of counts normalised to ``target_sum`` over all genes of the model (measured + imputed), standardised
    per gene with the reference's mean and standard deviation. The model's outputs are mapped back with those
    statistics, so imputed values are **log1p-normalised expression in the reference's units**
    (``log1p(counts / library * target_sum)``).
"""

from __future__ import annotations

import numpy as np

from .._expression import log1p_normalize, output_space

#: Which genes form a cell's library in the model's targets and outputs (see :func:`spalstf._expression.output_space`).
TARGET_LIBRARY = "the model's genes (measured + imputed) in the reference"


def model_output_space(target_sum: float) -> str:
    """The ``output_space`` string of the model's imputed values."""
    return output_space(target_sum, TARGET_LIBRARY)


_EPS = 1e-8


def cell_maxabs_scale(L: np.ndarray) -> np.ndarray:
    """Per-cell scaling into [-1, 1]: each cell's maximum becomes 1, zero stays -1 (an all-zero cell gives -1)."""
    cell_max = L.max(axis=1, keepdims=True)
    scaled = np.divide(L, cell_max, out=np.zeros_like(L), where=cell_max > 0)
    return scaled * 2.0 - 1.0


def condition_values(X_measured, target_sum: float, cell_scaling: bool) -> np.ndarray:
    """Steps 1-2 of the condition (before per-gene standardisation) from measured-gene values only."""
    L = log1p_normalize(X_measured, target_sum).astype(np.float32)
    return cell_maxabs_scale(L) if cell_scaling else L


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


def standardize(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(values - mean) / std`` as float32."""
    return ((values - mean) / std).astype(np.float32)
