"""Benchmark suite: gene-fold cross-validation of SpaLSTF against peer imputation methods, and what scripts need.

- :func:`cross_validate` (also :func:`spalstf.tl.cross_validate`) and its :class:`CrossValidationResult`;
  :func:`gene_folds`, the split it uses; :data:`DEFAULT_METHODS`, the methods it runs by default;
- the methods it compares, one function per method: :func:`impute_spalstf`, :func:`impute_gimvi`,
  :func:`impute_tangram`, :func:`impute_spage`, :func:`impute_knn`, :func:`impute_ridge`;
- for benchmark scripts: :func:`load_pair` (a pair, offline from pinned copies), :func:`limit_threads`,
  :func:`silence_libraries`, and the memory meter of :func:`cross_validate`, :class:`PeakMemory` and
  :func:`rss_bytes`.

Every method has the same signature::

    impute_<name>(adata_st, adata_sc, held_genes, *, random_state, **kwargs) -> pandas.DataFrame

``adata_st`` holds only the measured (kept) genes of the fold, values as the spatial source gives them in ``.X``
(and the coordinates in ``obsm["spatial"]`` when known); ``adata_sc`` is the reference with raw counts in ``.X``;
``held_genes`` are reference genes to predict. The result is a ``cells x held_genes`` frame indexed by
``adata_st.obs_names``. The functions never modify their inputs.

Shared-gene space of the simple baselines and of SpaGE: the reference is library-normalised and log-transformed,
``log1p(counts / library * 1e4)`` (library = total counts over all reference genes); the spatial values are used as
given. Predictions of held-out genes are in the reference's log1p(CP10k) units for ``knn``, ``ridge``, ``spage``,
``tangram`` and ``spalstf``; ``gimvi`` returns its normalised expression (``get_imputed_values(normalized=True)``).
"""

from .._logging import silence_libraries
from .._memory import PeakMemory, rss_bytes
from ._cross_validate import DEFAULT_METHODS, cross_validate
from ._external_peers import impute_gimvi, impute_tangram
from ._folds import gene_folds
from ._peer_methods import (
    IntervalPrediction,
    MethodUnavailableError,
    impute_knn,
    impute_ridge,
    impute_spage,
    impute_spalstf,
)
from ._result import CrossValidationResult
from ._setup import limit_threads, load_pair

__all__ = [
    "DEFAULT_METHODS",
    "CrossValidationResult",
    "IntervalPrediction",
    "MethodUnavailableError",
    "PeakMemory",
    "cross_validate",
    "gene_folds",
    "impute_gimvi",
    "impute_knn",
    "impute_ridge",
    "impute_spage",
    "impute_spalstf",
    "impute_tangram",
    "limit_threads",
    "load_pair",
    "rss_bytes",
    "silence_libraries",
]
