"""SpaGE (Abdelaal et al. 2020), written from the published description of the algorithm.

SpaGE aligns a spatial panel with a scRNA-seq reference on their shared genes with principal vectors (the PRECISE
domain adaptation: PCA of each modality, then the pairs of directions of the two PCA subspaces that are most similar),
projects both datasets onto the reference's principal vectors and predicts each spatial cell's unmeasured genes as a
distance-weighted mean over its nearest reference cells in that space. This module is this project's own
implementation of that description (no code of the SpaGE repository is used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from .._expression import zscore


@dataclass(frozen=True)
class PrincipalVectors:
    """Principal vectors of two datasets over the same genes.

    Attributes
    ----------
    reference
        ``n_pv x n_genes``: the reference's principal vectors (orthonormal rows).
    spatial
        ``n_pv x n_genes``: the spatial data's principal vectors (orthonormal rows).
    similarity
        ``n_pv``: cosine similarity of each pair ``(reference[i], spatial[i])``, in decreasing order.
    """

    reference: np.ndarray
    spatial: np.ndarray
    similarity: np.ndarray


def principal_vectors(
    reference: ArrayLike, spatial: ArrayLike, n_pv: int, *, random_state: int = 0
) -> PrincipalVectors:
    r"""Principal vectors of two datasets with the same genes (PRECISE, as used by SpaGE).

    With :math:`P_r` and :math:`P_s` the ``n_pv x n_genes`` matrices of the first ``n_pv`` principal components
    (orthonormal rows) of the reference and of the spatial data, the singular value decomposition

    .. math::
        P_r P_s^\top = U \Sigma V^\top

    gives the principal vectors :math:`U^\top P_r` (reference) and :math:`V^\top P_s` (spatial). Pair :math:`i` has
    cosine similarity :math:`\Sigma_{ii}` (the cosine of the :math:`i`-th principal angle between the two PCA
    subspaces), in decreasing order.

    Parameters
    ----------
    reference, spatial
        ``cells x genes`` matrices over the same genes in the same order, already scaled as they should be
        compared (SpaGE z-scores each gene within each dataset).
    n_pv
        Number of principal components per dataset (and of principal vectors), at most
        ``min(n_genes, n_cells)`` of each dataset.
    random_state
        Seed of the (randomised, for large inputs) PCA solver.

    Returns
    -------
    :class:`PrincipalVectors`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 10))
    >>> pv = principal_vectors(x, x, n_pv=3)
    >>> np.allclose(pv.similarity, 1.0)  # a dataset with itself: identical subspaces
    True
    """
    ref = np.asarray(reference, dtype=np.float64)
    st = np.asarray(spatial, dtype=np.float64)
    if ref.shape[1] != st.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} genes but spatial has {st.shape[1]}; pass the same genes.")
    limit = min(ref.shape[1], ref.shape[0], st.shape[0])
    if not 1 <= n_pv <= limit:
        raise ValueError(f"n_pv must be between 1 and {limit} (genes and cells of each dataset), got {n_pv}.")
    p_ref = PCA(n_components=n_pv, random_state=random_state).fit(ref).components_
    p_st = PCA(n_components=n_pv, random_state=random_state).fit(st).components_
    u, sigma, vt = np.linalg.svd(p_ref @ p_st.T)
    return PrincipalVectors(reference=u.T @ p_ref, spatial=vt @ p_st, similarity=np.clip(sigma, 0.0, 1.0))


def _neighbour_weights(distances: np.ndarray) -> np.ndarray:
    r"""SpaGE's weights of one cell's neighbours from their cosine distances.

    Neighbours at distance :math:`\ge 1` (non-positive cosine similarity) are dropped; for the :math:`k'` that remain,
    :math:`w_i = (1 - d_i / \sum_j d_j) / (k' - 1)`, which sums to 1 and favours closer cells. One neighbour left:
    weight 1. All remaining distances 0, or no neighbour left: equal weights over the remaining (or, if none remain,
    all) neighbours.
    """
    keep = distances < 1.0
    w = np.zeros_like(distances)
    d = distances[keep]
    n = d.size
    if n == 0:
        w[:] = 1.0 / distances.size
    elif n == 1:
        w[keep] = 1.0
    elif d.sum() <= 0:
        w[keep] = 1.0 / n
    else:
        w[keep] = (1.0 - d / d.sum()) / (n - 1)
    return w


def spage_impute(
    spatial: ArrayLike,
    reference: ArrayLike,
    reference_targets: ArrayLike,
    *,
    n_pv: int | None = None,
    n_neighbors: int = 50,
    sim_threshold: float = 0.3,
    random_state: int = 0,
) -> np.ndarray:
    r"""Predict genes of spatial cells with SpaGE: principal-vector alignment, then a weighted kNN mean.

    1. Each dataset is z-scored per gene over its own cells (the shared genes only).
    2. :func:`principal_vectors` with ``n_pv`` components per dataset; the pairs whose cosine similarity exceeds
       ``sim_threshold`` are kept (at least the first one).
    3. Both datasets are projected onto the kept principal vectors of the reference: :math:`Z = X_z\,PV_r^\top`.
    4. For each spatial cell, its ``n_neighbors`` nearest reference cells in that space under the cosine distance
       :math:`d = 1 - \cos(z_{st}, z_{ref})`; neighbours with :math:`d \ge 1` are dropped and the others weighted
       :math:`w_i = (1 - d_i / \sum_j d_j) / (k' - 1)` (weights sum to 1).
    5. The prediction is :math:`\sum_i w_i\, y_i` with :math:`y_i` the neighbour's ``reference_targets`` row.

    Parameters
    ----------
    spatial
        ``cells x shared genes`` of the spatial data (values as measured; z-scored here).
    reference
        ``reference cells x shared genes`` in the same gene order (normalised, e.g. log1p(CP10k); z-scored here).
    reference_targets
        ``reference cells x genes to predict``, in the units the predictions should have (e.g. log1p(CP10k)).
    n_pv
        Principal components per dataset; default ``max(1, n_shared_genes // 2)``. Capped at
        ``min(n_shared_genes, n_cells)`` of either dataset.
    n_neighbors
        Reference neighbours per spatial cell (SpaGE: 50), capped at the number of reference cells.
    sim_threshold
        Minimum cosine similarity of a principal-vector pair to be used (SpaGE: 0.3).
    random_state
        Seed of the PCA solver.

    Returns
    -------
    ``cells x genes to predict`` array.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(600, 3))
    >>> loadings = rng.normal(size=(3, 12))
    >>> ref = latent[:400] @ loadings + 0.1 * rng.normal(size=(400, 12))
    >>> st = latent[400:] @ loadings + 0.1 * rng.normal(size=(200, 12))
    >>> target = ref[:, :2].sum(1, keepdims=True)  # a gene that is a function of the shared genes
    >>> pred = spage_impute(st, ref, target)
    >>> bool(np.corrcoef(pred[:, 0], st[:, :2].sum(1))[0, 1] > 0.8)
    True
    """
    st = np.asarray(spatial, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    targets = np.asarray(reference_targets, dtype=np.float64)
    if targets.ndim == 1:
        targets = targets[:, None]
    if st.ndim != 2 or ref.ndim != 2 or st.shape[1] != ref.shape[1]:
        raise ValueError(
            f"spatial and reference must be 2-D over the same genes; got shapes {st.shape} and {ref.shape}."
        )
    if targets.shape[0] != ref.shape[0]:
        raise ValueError(f"reference_targets has {targets.shape[0]} rows but reference has {ref.shape[0]} cells.")
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}.")
    limit = min(st.shape[1], st.shape[0], ref.shape[0])
    n_pv = max(1, st.shape[1] // 2) if n_pv is None else n_pv
    n_pv = min(n_pv, limit)

    st_z, ref_z = zscore(st), zscore(ref)
    pv = principal_vectors(ref_z, st_z, n_pv, random_state=random_state)
    n_used = max(1, int((pv.similarity > sim_threshold).sum()))
    basis = pv.reference[:n_used]
    ref_proj, st_proj = ref_z @ basis.T, st_z @ basis.T

    k = min(n_neighbors, ref.shape[0])
    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(ref_proj)
    distances, indices = nn.kneighbors(st_proj)
    weights = np.vstack([_neighbour_weights(d) for d in distances])
    # sparse cells x reference-cells weight matrix: memory linear in the number of predicted genes
    w = sparse.csr_matrix(
        (weights.ravel(), indices.ravel(), np.arange(0, weights.size + 1, k)), shape=(st.shape[0], ref.shape[0])
    )
    return np.asarray(w @ targets)
