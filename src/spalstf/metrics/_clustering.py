"""Agreement between Leiden clusterings of the measured and the imputed spatial matrix."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    homogeneity_score,
    normalized_mutual_info_score,
)

from .._state import keep_torch_threads
from .._validation import validate_pair

#: Keys of the dictionary returned by :func:`clustering_metrics`, in order.
CLUSTERING_METRICS = ("ARI", "AMI", "NMI", "Homogeneity")


def _leiden_labels(x: np.ndarray, *, n_neighbors: int, n_pcs: int, resolution: float, random_state: int) -> np.ndarray:
    """Leiden labels of the cells of ``x`` (a private copy): PCA, kNN graph, Leiden."""
    import anndata as ad
    import scanpy as sc

    n_cells, n_genes = x.shape
    if _all_cells_equal(x):
        # PCA and the kNN graph are degenerate when every cell has the same profile: one cluster
        return np.zeros(n_cells, dtype=int)
    adata = ad.AnnData(x)
    n_pcs_used = min(n_pcs, min(n_genes, n_cells) - 1)
    with warnings.catch_warnings(), keep_torch_threads():  # scanpy's neighbours reset torch's thread count
        warnings.simplefilter("ignore", category=FutureWarning)
        if n_pcs_used >= 1:
            sc.pp.pca(adata, n_comps=n_pcs_used, random_state=random_state)
            sc.pp.neighbors(adata, n_neighbors=n_neighbors, n_pcs=n_pcs_used, random_state=random_state)
        else:  # a single gene: no PCA, neighbours in expression space
            sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep="X", random_state=random_state)
        sc.tl.leiden(
            adata,
            resolution=resolution,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=random_state,
        )
    return adata.obs["leiden"].to_numpy()


def _all_cells_equal(x: np.ndarray) -> bool:
    return bool((x == x[:1]).all())


def clustering_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    n_neighbors: int = 30,
    n_pcs: int = 30,
    resolution: float = 1.0,
    random_state: int = 0,
) -> dict[str, float]:
    r"""Agreement between the Leiden clusterings of the measured and of the imputed matrix.

    Each matrix is clustered the same way, on a private copy: :func:`scanpy.pp.pca` with
    ``min(n_pcs, min(n_genes, n_cells) - 1)`` components, :func:`scanpy.pp.neighbors` with ``n_neighbors`` and
    those components, and :func:`scanpy.tl.leiden` (``resolution``, ``flavor="igraph"``, ``n_iterations=2``,
    ``random_state``). Let :math:`T_c` be the labels from ``y_true`` (the reference labeling) and :math:`P_c` the
    labels from ``y_pred``; then (scikit-learn, default options, as the stDiff/SpaLSTF evaluation code):

    - ARI = ``adjusted_rand_score(T_c, P_c)`` (eq. 11); symmetric.
    - AMI = ``adjusted_mutual_info_score(T_c, P_c)``:
      :math:`(MI - E[MI]) / (\mathrm{mean}(H(T_c), H(P_c)) - E[MI])` (eq. 13); symmetric.
    - NMI = ``normalized_mutual_info_score(T_c, P_c)``: :math:`MI / \mathrm{mean}(H(T_c), H(P_c))`, the
      arithmetic mean of the entropies (scikit-learn's default and the field's code; the paper's eq. 12 writes the
      geometric mean :math:`\sqrt{H(T_c) H(P_c)}`); symmetric.
    - Homogeneity = ``homogeneity_score(T_c, P_c)`` :math:`= 1 - H(T_c \mid P_c) / H(T_c)` (eq. 14): 1 when every
      cluster of the *imputed* data contains cells of only one cluster of the *measured* data. Not symmetric.

    All four are higher-is-better with a maximum of 1. The matrices are used as given (no normalisation or
    scaling is applied), so pass both in the space in which they should be compared.

    Parameters
    ----------
    y_true
        Measured spatial expression, ``cells x genes`` (:class:`numpy.ndarray`, sparse matrix,
        :class:`pandas.DataFrame` or :class:`anndata.AnnData`). Never modified.
    y_pred
        Imputed expression of the same cells and genes (aligned by names when both carry them). Never modified.
    n_neighbors
        Size of the neighbourhood of :func:`scanpy.pp.neighbors`, capped at ``n_cells - 1``.
    n_pcs
        Principal components for the neighbour graph, capped at ``min(n_genes, n_cells) - 1`` (with a single gene
        the neighbours are computed on the expression itself).
    resolution
        Leiden resolution.
    random_state
        Seed of PCA, the neighbour search and Leiden.

    Returns
    -------
    ``{"ARI": ..., "AMI": ..., "NMI": ..., "Homogeneity": ...}`` as Python floats. A matrix in which every cell
    has the same profile is given a single cluster (ARI, AMI, NMI and homogeneity against it are then 0 unless
    the other clustering is a single cluster too).

    Raises
    ------
    ValueError
        On mismatched shapes or names, NaN or infinite values, or fewer than 3 cells.

    Examples
    --------
    >>> import numpy as np
    >>> from spalstf.metrics import clustering_metrics
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(0, 5, size=(3, 10))
    >>> x = np.repeat(centers, 40, axis=0) + rng.normal(size=(120, 10))
    >>> clustering_metrics(x, x)
    {'ARI': 1.0, 'AMI': 1.0, 'NMI': 1.0, 'Homogeneity': 1.0}
    """
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be at least 2; got {n_neighbors}.")
    if n_pcs < 1:
        raise ValueError(f"n_pcs must be at least 1; got {n_pcs}.")
    t, p, _ = validate_pair(y_true, y_pred)
    n_cells = t.shape[0]
    if n_cells < 3:
        raise ValueError(f"Clustering needs at least 3 cells; got {n_cells}.")
    params = {
        "n_neighbors": min(n_neighbors, n_cells - 1),
        "n_pcs": n_pcs,
        "resolution": resolution,
        "random_state": random_state,
    }
    labels_true = _leiden_labels(t, **params)
    labels_pred = _leiden_labels(p, **params)
    return {
        "ARI": float(adjusted_rand_score(labels_true, labels_pred)),
        "AMI": float(adjusted_mutual_info_score(labels_true, labels_pred)),
        "NMI": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "Homogeneity": float(homogeneity_score(labels_true, labels_pred)),
    }
