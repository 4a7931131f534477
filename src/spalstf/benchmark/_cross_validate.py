"""`cross_validate`: gene-fold cross-validation of SpaLSTF and peer methods on one ST / scRNA-seq pair."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._constants import SPATIAL_KEY
from .._expression import TARGET_SUM, is_count_matrix, log1p_normalize, to_dense
from .._logging import quiet_libraries
from .._memory import PeakMemory
from .._state import keep_torch_threads
from .._validation import check_nonempty, check_unique_names, check_values, get_matrix
from ..metrics import calibration_curve, clustering_metrics, gene_metrics
from ..metrics._gene import spearman_columns
from ..model._calibration import platform_values
from . import _peers
from ._folds import gene_folds
from ._peer_methods import IntervalPrediction, MethodUnavailableError
from ._result import (
    CLUSTERING_COLUMNS,
    INTERVAL_VARIANTS,
    INTERVALS_COLUMNS,
    RELIABILITY_COLUMNS,
    RESOURCES_COLUMNS,
    SCORES_COLUMNS,
    SKIPPED_PREFIX,
    CrossValidationResult,
)

logger = logging.getLogger(__name__)

#: Methods run by default (every runnable method, see :data:`spalstf.benchmark._peers.PEERS`).
DEFAULT_METHODS = ("spalstf", "gimvi", "tangram", "spage", "knn", "ridge")
#: Ground truths of :func:`cross_validate`.
TRUTHS = ("auto", "as_given", "log1p_cp10k")
Truth = Literal["auto", "as_given", "log1p_cp10k"]


# helpers ---------------------------------------------------------------------------------------------------------
def _resolve_methods(methods: Sequence[str] | str) -> list[str]:
    requested = [methods] if isinstance(methods, str) else list(methods)
    if not requested:
        raise ValueError(f"No method given; choose from {list(_peers.PEERS)}.")
    out = []
    for name in requested:
        key = str(name).lower()
        if key in _peers.NOT_RUNNABLE:
            raise ValueError(f"{_peers.NOT_RUNNABLE[key]} Valid methods: {list(_peers.PEERS)}.")
        if key not in _peers.PEERS:
            raise ValueError(f"Unknown method {name!r}; valid methods: {list(_peers.PEERS)}.")
        if key in out:
            raise ValueError(f"Method {name!r} is given twice.")
        out.append(key)
    return out


def _check_prediction(out: Any, cells: pd.Index, held: list[str]) -> tuple[pd.DataFrame, str]:
    """Align a method's output to ``cells x held``; return it and a note on genes that are missing or not finite."""
    if isinstance(out, np.ndarray) and out.shape == (len(cells), len(held)):
        out = pd.DataFrame(out, index=cells, columns=held)
    if not isinstance(out, pd.DataFrame):
        raise TypeError(f"the method returned {type(out).__name__}, expected a cells x genes pandas.DataFrame")
    if not out.index.equals(cells):
        if set(out.index) != set(cells) or out.index.has_duplicates:
            raise ValueError("the method returned a frame whose index is not the spatial cells")
        out = out.loc[cells]
    notes = []
    missing = [g for g in held if g not in out.columns]
    if missing:
        notes.append(f"no prediction for genes {missing[:10]}")
    pred = out.reindex(columns=held).apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = [g for g in held if g not in missing and not np.isfinite(pred[g].to_numpy()).all()]
    if bad:
        notes.append(f"non-finite predictions for genes {bad[:10]}")
        pred[bad] = np.nan
    return pred, "; ".join(notes)


def _score_method(method: str, truth: pd.DataFrame, pred: pd.DataFrame, fold_of: Mapping[str, int]) -> pd.DataFrame:
    ok = [g for g in truth.columns if np.isfinite(pred[g].to_numpy()).all()]
    if not ok:
        return pd.DataFrame(columns=SCORES_COLUMNS)
    wide = gene_metrics(truth[ok], pred[ok], metrics=("SPCC", "SSIM", "RMSE"))
    wide["JS"] = gene_metrics(truth[ok], pred[ok].clip(lower=0.0), metrics="JS")["JS"]
    tidy = wide.rename_axis("gene").reset_index().melt(id_vars="gene", var_name="metric", value_name="value")
    tidy.insert(0, "method", method)
    tidy.insert(1, "fold", tidy["gene"].map(fold_of).astype(int))
    return tidy[SCORES_COLUMNS]


def _fold_data(values: pd.DataFrame, kept: list[str], coords: Any) -> AnnData:
    """The spatial data a method sees in a fold: the kept genes, the cell names and coordinates, nothing else.

    No ``obs`` column goes with it: columns such as ``total_counts`` or clusters may be computed from every gene,
    the held-out ones included.
    """
    st = ad.AnnData(
        X=values[kept].to_numpy(dtype=np.float64, copy=True),
        obs=pd.DataFrame(index=values.index),
        var=pd.DataFrame(index=kept),
    )
    if coords is not None:
        st.obsm[SPATIAL_KEY] = np.array(coords, copy=True)
    return st


def _run_methods(
    names: list[str],
    method_kwargs: Mapping[str, Mapping[str, Any]],
    folds: list[tuple[list[str], list[str]]],
    spatial: pd.DataFrame,
    coords: Any,
    reference: AnnData,
    random_state: int,
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]], dict[str, dict[int, IntervalPrediction]]]:
    """Run every method on every fold: the predictions, one resources row per method and fold, and the intervals.

    The intervals map method -> fold -> :class:`~spalstf.tl.IntervalPrediction` for the methods that give them.
    """
    n_folds = len(folds)
    shared = list(spatial.columns)
    predictions: dict[str, pd.DataFrame] = {}
    resources: list[dict[str, Any]] = []
    intervals: dict[str, dict[int, IntervalPrediction]] = {}
    for method in names:
        func = _peers.PEERS[method]
        kwargs = method_kwargs.get(method, {})
        pred = pd.DataFrame(np.nan, index=spatial.index, columns=shared)
        unavailable: str | None = None
        failed: list[int] = []
        for f, (kept, held) in enumerate(folds):
            row: dict[str, Any] = {"method": method, "fold": f, "time_s": np.nan, "peak_memory_mb": np.nan}
            if unavailable is not None:
                resources.append({**row, "error": unavailable})
                continue
            st_fold = _fold_data(spatial, kept, coords)
            error = ""
            monitor = PeakMemory()
            clock = [np.nan, np.nan]
            try:
                # a method must not change the threads of the next one; Lightning's banners of gimVI are not shown
                with monitor, keep_torch_threads(), quiet_libraries():
                    clock[0] = time.perf_counter()
                    try:
                        out = func(st_fold, reference, list(held), random_state=random_state, **kwargs)
                    finally:
                        clock[1] = time.perf_counter()
                row["time_s"], row["peak_memory_mb"] = clock[1] - clock[0], monitor.peak_mb
                if isinstance(out, IntervalPrediction):
                    intervals.setdefault(method, {})[f] = out
                    out = out.mean
                values, error = _check_prediction(out, spatial.index, list(held))
                pred[held] = values.to_numpy()
            except MethodUnavailableError as err:
                unavailable = SKIPPED_PREFIX + str(err)
                error = unavailable
                row["time_s"] = row["peak_memory_mb"] = np.nan
                logger.warning("%s skipped: %s", method, err)
            except Exception as err:  # a failing method is recorded and the benchmark goes on
                row["time_s"], row["peak_memory_mb"] = clock[1] - clock[0], monitor.peak_mb
                error = f"{type(err).__name__}: {err}"
                failed.append(f)
                logger.debug("%s: traceback of fold %d", method, f, exc_info=True)  # the summary line comes below
            resources.append({**row, "error": error})
            if not error:
                logger.info(
                    "%s fold %d/%d: %.1f s, peak +%.0f MiB",
                    method,
                    f + 1,
                    n_folds,
                    row["time_s"],
                    row["peak_memory_mb"],
                )
        if failed:  # one line per method; the tracebacks are at DEBUG level
            first = next(r["error"] for r in resources if r["method"] == method and r["fold"] == failed[0])
            logger.warning(
                "%s failed on %d of %d fold(s) (%s): %s",
                method,
                len(failed),
                n_folds,
                ", ".join(map(str, failed)),
                first,
            )
        predictions[method] = pred

    return predictions, resources, intervals


def _score_intervals(
    method: str,
    by_fold: Mapping[int, IntervalPrediction],
    folds: list[tuple[list[str], list[str]]],
    spatial: pd.DataFrame,
    scores: pd.DataFrame,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of :attr:`CrossValidationResult.intervals` and ``.reliability`` for one method, pooled over its folds.

    The measured value of a held-out gene is the platform's ``log1p(x / L * 1e4)``, ``L`` the cell's total over the
    fold's kept genes (the spatial values as given).
    """
    truth, bounds = [], {}
    level = None
    reliability = []
    spcc = scores[(scores["method"] == method) & (scores["metric"] == "SPCC")].set_index("gene")["value"]
    for f, pred in sorted(by_fold.items()):
        kept, held = folds[f]
        y = platform_values(spatial[held].to_numpy(), spatial[kept].to_numpy().sum(axis=1), TARGET_SUM)
        truth.append(y)
        level = pred.level
        pairs = {("per_cell", level): (pred.lower, pred.upper)}
        for variant, (lo_key, hi_key) in INTERVAL_VARIANTS.items():
            for kind, lev in pred.curve:
                if kind == lo_key:
                    pairs[(variant, lev)] = (pred.curve[(lo_key, lev)], pred.curve[(hi_key, lev)])
        for key, (lo, hi) in pairs.items():
            bounds.setdefault(key, []).append((lo[held].to_numpy(), hi[held].to_numpy()))
        platform_spcc = spearman_columns(pred.mean[held].to_numpy(), y)
        reliability.extend(
            {
                "method": method,
                "fold": f,
                "gene": g,
                "reliability": float(pred.reliability[g]),
                "SPCC": float(platform_spcc[j]),
                "SPCC_truth": spcc.get(g),
            }
            for j, g in enumerate(held)
        )
    y = np.concatenate(truth, axis=1)
    rows = []
    for (variant, lev), parts in sorted(bounds.items()):
        if len(parts) != len(truth):
            continue
        lo = np.concatenate([p[0] for p in parts], axis=1)
        hi = np.concatenate([p[1] for p in parts], axis=1)
        row = calibration_curve(y, {lev: (lo, hi)}).iloc[0]
        rows.append(
            {
                "method": method,
                "variant": variant,
                "level": float(lev),
                "nominal": bool(np.isclose(lev, level)),
                "coverage": float(row["empirical"]),
                "mean_width": float(row["mean_width"]),
                "interval_score": float(row["interval_score"]),
            }
        )
    return rows, reliability


# public function -------------------------------------------------------------------------------------------------
def cross_validate(
    adata_st: AnnData,
    adata_sc: AnnData,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    *,
    n_folds: int = 5,
    random_state: int = 0,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    layer_st: str | None = None,
    layer_sc: str | None = None,
    truth: Truth = "as_given",
    split_random_state: int | None = None,
    clustering_kwargs: Mapping[str, Any] | None = None,
) -> CrossValidationResult:
    r"""Cross-validate imputation methods over the genes shared by a spatial panel and a scRNA-seq reference.

    The shared genes (spatial genes also in the reference, exact names, in the spatial order) are split with
    ``KFold(n_folds, shuffle=True, random_state=split_random_state)`` (``random_state`` when it is ``None``). In
    each fold the held-out
    genes are removed from the spatial data *before* a method sees it: each method receives a new AnnData with only
    the kept genes in ``.X`` (values as in ``adata_st``), the cell names and ``obsm["spatial"]`` (no ``obs`` column,
    layer or embedding, which could carry the held-out genes), and a private copy of the reference (raw counts in
    ``.X``). It predicts the held-out genes; over the folds every shared gene is predicted exactly once.

    Methods (the settings of each are listed on the benchmarks page of the docs):

    - ``"spalstf"``: :func:`~spalstf.tl.spalstf_impute` (its defaults; override with ``method_kwargs``);
    - ``"gimvi"``: :class:`scvi.external.GIMVI` (200 epochs by default);
    - ``"tangram"``: ``tangram-sc`` (optional extra ``spalstf[peers]``; skipped with a message in
      ``resources.error`` when not installed);
    - ``"spage"``: this project's implementation of SpaGE (principal vectors + weighted kNN, k = 50);
    - ``"knn"``: mean of the 20 nearest reference cells in the z-scored shared-gene space;
    - ``"ridge"``: ridge regression (alpha 10) from the kept to the held-out genes in that space.

    stDiff cannot run here (see ``docs/benchmarks.md``); asking for it raises a :class:`ValueError` saying why.

    Scoring: every method is scored against the same ground truth (``truth``): the spatial values of ``adata_st`` as
    given, or, for counts, the field's ``log1p(counts / library * 1e4)`` with the library over the whole spatial
    panel (the truth may use every gene; a method's inputs are only the kept ones). Per gene,
    :func:`spalstf.metrics.gene_metrics` (SPCC, SSIM and RMSE on the predictions as returned; JS on the
    predictions clipped at 0, since JS turns each gene into a distribution over cells). All four are invariant to a
    positive rescaling of a gene, so methods whose outputs are in different units (log1p(CP10k), gimVI's proportions)
    are compared fairly. Clustering: :func:`spalstf.metrics.clustering_metrics` between the measured spatial matrix
    of the shared genes and the matrix in which every gene is replaced by its held-out prediction (as returned, no
    rescaling), for methods that predicted every gene.

    Resources: wall time (``time.perf_counter``) of each method call per fold, and its peak memory, the largest
    increase of the process's resident set size over its value at the start of the call (the kernel's high-water
    mark on Linux, reset at the start; elsewhere sampled every 50 ms by a background thread; see
    :class:`~spalstf.benchmark.PeakMemory`). Garbage is collected before each call (outside the timed region; the
    objects that exist when ``cross_validate`` starts are frozen with :func:`gc.freeze` meanwhile, so that these
    collections are quick). Scoring is not included. Times depend on the torch and BLAS thread settings of the
    process (``torch.set_num_threads``).

    A method that raises on a fold is recorded (``resources.error``, its predictions of that fold stay NaN) and the
    benchmark goes on; one warning line per method names its failed folds and the first error (the tracebacks are
    logged at DEBUG level). Unknown option names and invalid option values in ``method_kwargs`` raise before any
    fold runs.

    Parameters
    ----------
    adata_st
        Spatial data (cells x measured genes), non-negative values (counts or intensities). Never modified.
    adata_sc
        Reference scRNA-seq data with raw counts. Never modified.
    methods
        Method names, run in this order.
    n_folds
        Number of gene folds (between 2 and the number of shared genes).
    random_state
        Seed of every method, and of the fold split unless ``split_random_state`` is given.
    method_kwargs
        Per-method options, e.g. ``{"spalstf": {"max_epochs": 30}, "gimvi": {"max_epochs": 50},
        "tangram": {"num_epochs": 500}, "knn": {"n_neighbors": 10}}``; passed to the method's function
        ``spalstf.benchmark.impute_<name>`` (for ``"spalstf"``, to :func:`~spalstf.tl.spalstf_impute`).
    layer_st, layer_sc
        Layers holding the spatial values and the reference counts (``None``: ``.X``).
    truth
        The ground truth: ``"as_given"`` (default; the spatial values), ``"log1p_cp10k"`` (``log1p(x / library *
        1e4)``, library = the cell's total over all genes of ``adata_st``; the field's choice for counts) or
        ``"auto"``: ``"log1p_cp10k"`` when the spatial values are non-negative integers, else ``"as_given"`` (what
        ``benchmarks/cross_validate.py`` uses).
        :attr:`CrossValidationResult.truth` records which was used.
    split_random_state
        Seed of the fold split (default: ``random_state``). Fix it to repeat a benchmark over method seeds on the
        same folds.
    clustering_kwargs
        Options of :func:`~spalstf.metrics.clustering_metrics` (default: the field's ``n_neighbors=30``,
        ``n_pcs=30``, resolution 1; ``random_state`` defaults to ``random_state``).

    Returns
    -------
    :class:`CrossValidationResult` with ``scores``, ``clustering``, ``resources``, ``predictions`` and ``folds``;
    :meth:`CrossValidationResult.summary` gives the per-method table (medians, clustering metrics, AS, time,
    memory).

    Raises
    ------
    ValueError
        On an unknown method (the message lists the valid ones), fewer shared genes than folds, or invalid values.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> result = sp.tl.cross_validate(
    ...     mdata["spatial"], mdata["rna"], methods=("spage", "knn", "ridge"), n_folds=5, random_state=0
    ... )  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    >>> result.scores.head()  # doctest: +SKIP
    """
    names = _resolve_methods(methods)
    method_kwargs = {str(k).lower(): dict(v) for k, v in (method_kwargs or {}).items()}
    unknown = [k for k in method_kwargs if k not in names]
    if unknown:
        raise ValueError(f"method_kwargs has options for {unknown}, which are not among the methods {names}.")
    for method, options in method_kwargs.items():
        _peers.check_options(method, options)
    check_nonempty(adata_st, "adata_st")
    check_nonempty(adata_sc, "adata_sc")
    for adata, name in ((adata_st, "adata_st"), (adata_sc, "adata_sc")):
        check_unique_names(adata.var_names, name, "var")
        check_unique_names(adata.obs_names, name, "obs")
    X_st = get_matrix(adata_st, layer_st, "adata_st", "layer_st")
    X_sc = get_matrix(adata_sc, layer_sc, "adata_sc", "layer_sc")
    check_values(X_st, "adata_st", adata_st.var_names, "layer_st")
    check_values(X_sc, "adata_sc", adata_sc.var_names, "layer_sc")

    ref_genes = set(adata_sc.var_names)
    shared = [g for g in adata_st.var_names if g in ref_genes]
    if len(shared) < max(n_folds, 2):
        raise ValueError(
            f"adata_st and adata_sc share {len(shared)} gene name(s); cross-validation with n_folds={n_folds} needs "
            "at least that many (gene names are matched exactly)."
        )
    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {list(TRUTHS)}, got {truth!r}.")
    split_seed = random_state if split_random_state is None else split_random_state
    folds = gene_folds(shared, n_folds=n_folds, random_state=split_seed)
    fold_of = {g: f for f, (_, held) in enumerate(folds) for g in held}

    pos = adata_st.var_names.get_indexer(shared)
    values = pd.DataFrame(to_dense(X_st[:, pos]), index=adata_st.obs_names.copy(), columns=shared)
    if truth == "auto":
        truth = "log1p_cp10k" if is_count_matrix(X_st) else "as_given"
    if truth == "log1p_cp10k":
        library = np.asarray(X_st.sum(axis=1), dtype=np.float64).ravel()  # over the whole panel
        scored = pd.DataFrame(
            log1p_normalize(values.to_numpy(), TARGET_SUM, library=library), index=values.index, columns=shared
        )
    else:
        scored = values
    coords = adata_st.obsm[SPATIAL_KEY] if SPATIAL_KEY in adata_st.obsm else None
    reference = ad.AnnData(
        X=sparse.csr_matrix(X_sc, dtype=np.float32, copy=True),
        obs=adata_sc.obs.copy(),
        var=adata_sc.var.copy(),
    )

    # Freeze the objects that exist now so that PeakMemory's garbage collections only scan what the methods create.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.collect()
        gc.freeze()
    try:
        predictions, resources, intervals = _run_methods(
            names, method_kwargs, folds, values, coords, reference, random_state
        )
    finally:
        if freeze:
            gc.unfreeze()

    scores, clustering = [], []
    clus_kwargs = {"random_state": random_state, **(clustering_kwargs or {})}
    for method, pred in predictions.items():
        scores.append(_score_method(method, scored, pred, fold_of))
        if np.isfinite(pred.to_numpy()).all():
            metrics = clustering_metrics(scored, pred, **clus_kwargs)
            clustering.extend({"method": method, "metric": k, "value": v} for k, v in metrics.items())
    scores_df = pd.concat([s for s in scores if len(s)], ignore_index=True) if any(len(s) for s in scores) else None
    scores_df = scores_df if scores_df is not None else pd.DataFrame(columns=SCORES_COLUMNS)
    interval_rows, reliability_rows = [], []
    for method, by_fold in intervals.items():
        rows, rel = _score_intervals(method, by_fold, folds, values, scores_df)
        interval_rows.extend(rows)
        reliability_rows.extend(rel)
    return CrossValidationResult(
        scores=scores_df,
        clustering=pd.DataFrame(clustering, columns=CLUSTERING_COLUMNS),
        resources=pd.DataFrame(resources, columns=RESOURCES_COLUMNS),
        predictions=predictions,
        folds=[(list(k), list(h)) for k, h in folds],
        truth=truth,
        intervals=pd.DataFrame(interval_rows, columns=INTERVALS_COLUMNS),
        reliability=pd.DataFrame(reliability_rows, columns=RELIABILITY_COLUMNS),
    )
