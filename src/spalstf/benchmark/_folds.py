"""Gene folds of the cross-validation the field uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import KFold


def gene_folds(genes: Sequence[str], n_folds: int = 5, random_state: int = 0) -> list[tuple[list[str], list[str]]]:
    """Split genes into ``(kept, held_out)`` pairs with ``KFold(n_folds, shuffle=True, random_state)``.

    Every gene is held out exactly once. This is the split of the SpaLSTF/stDiff benchmarks, and the one
    :func:`~spalstf.tl.cross_validate` uses over the shared genes.

    Parameters
    ----------
    genes
        Gene names, in the order the split sees them (the order changes the folds).
    n_folds
        Number of folds, between 2 and the number of genes.
    random_state
        Seed of the shuffle.

    Returns
    -------
    One ``(kept, held_out)`` pair of gene lists per fold, each in the order of ``genes``.

    Raises
    ------
    ValueError
        If ``n_folds`` is below 2 or above the number of genes.

    Examples
    --------
    >>> folds = gene_folds([f"g{i}" for i in range(10)], n_folds=5)
    >>> len(folds), len(folds[0][1])
    (5, 2)
    """
    genes = np.asarray(list(genes))
    if n_folds < 2 or n_folds > len(genes):
        raise ValueError(f"n_folds must be between 2 and the number of genes ({len(genes)}), got {n_folds}.")
    splitter = KFold(n_folds, shuffle=True, random_state=random_state)
    return [(list(genes[kept]), list(genes[held])) for kept, held in splitter.split(genes)]
