"""`spalstf_impute`: the one-call imputation users run."""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import pandas as pd
from anndata import AnnData

from .._constants import IMPUTED_KEY, LOWER_SUFFIX, SPATIAL_KEY, STD_SUFFIX, UPPER_SUFFIX
from .._spatialdata import import_spatialdata, is_spatialdata, resolve_table
from .._state import global_seed
from .._streaming import check_out_path
from .._validation import check_in_memory, check_nonempty, get_matrix
from ..model import SpaLSTF
from ..model._defaults import (
    IMPUTE_BATCH_SIZE,
    PRESETS,
    SAMPLING_STEPS,
    check_option,
    check_preset,
)
from ..model._model import check_impute_options
from ..model._module import Sampler
from ..model._spatial_input import SpatialInput

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger(__name__)

#: Arguments of ``SpaLSTF.__init__`` that ``spalstf_impute`` sets itself (the rest are model options).
_MODEL_ARGS_SET_HERE = frozenset({"self", "adata", "adata_st", "genes", "st_layer", "gene_plan"})
#: Arguments of ``SpaLSTF.train`` that are not options (the rest are training options).
_TRAIN_ARGS_SET_HERE = frozenset({"self", "trainer_kwargs"})


def _named_parameters(func, exclude: frozenset[str] = frozenset()) -> list[str]:
    return [
        name
        for name, p in inspect.signature(func).parameters.items()
        if name not in exclude and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def _route_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``**options`` into model options and training options by the signatures that take them.

    Model options are the parameters of :class:`~spalstf.model.SpaLSTF`, training options those of
    :meth:`~spalstf.model.SpaLSTF.train` and of the Lightning trainer it passes the rest to. An option that none of
    them takes raises a `TypeError` naming it and the closest valid name, before anything is computed.
    """
    from lightning.pytorch import Trainer as LightningTrainer
    from scvi.train import Trainer as ScviTrainer

    model_names = _named_parameters(SpaLSTF.__init__, _MODEL_ARGS_SET_HERE)
    train_names = _named_parameters(SpaLSTF.train, _TRAIN_ARGS_SET_HERE)
    trainer_names = _named_parameters(ScviTrainer.__init__, frozenset({"self"})) + _named_parameters(
        LightningTrainer.__init__, frozenset({"self"})
    )
    unknown = [k for k in options if k not in {*model_names, *train_names, *trainer_names}]
    if unknown:
        valid = sorted({*model_names, *train_names, *trainer_names, *_named_parameters(spalstf_impute)})
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f". Valid options: {valid}."
        raise TypeError(f"spalstf_impute() got an unexpected keyword argument {unknown[0]!r}{hint}")
    model_options = {k: v for k, v in options.items() if k in model_names}
    train_options = {k: v for k, v in options.items() if k not in model_options}
    return model_options, train_options


def _diffusion_steps(model: SpaLSTF | None, model_options: dict[str, Any]) -> int:
    """The diffusion steps of ``model``, or of the model that ``model_options`` will build (checked before training)."""
    if model is not None:
        return model.module.schedule.n_steps
    preset = model_options.get("preset") or inspect.signature(SpaLSTF.__init__).parameters["preset"].default
    check_preset(preset)
    given = model_options.get("n_diffusion_steps")
    if given is None:
        return PRESETS[preset]["n_diffusion_steps"]
    check_option("n_diffusion_steps", given)
    return given


def _registration_view(adata: AnnData, layer: str | None) -> AnnData:
    """A new AnnData sharing the reference's matrix, so registration never writes into the user's object."""
    check_in_memory(adata, "adata_sc")
    X = get_matrix(adata, layer, "adata_sc", "layer_sc")
    return ad.AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names.copy()), var=adata.var.copy())


def _impute_table(call: dict[str, Any]) -> Any:
    """``spalstf_impute`` on a SpatialData object: the same call on the AnnData of its table ``table_key``.

    The table is imputed in place (or in a deep copy of the object with ``copy=True``); its region and instance keys
    and every element stay as they are. The table annotating a region is what places the cells in space, so
    ``require_spatial`` does not ask for ``obsm["spatial"]`` in it.
    """
    sdata, options = call.pop("adata_st"), call.pop("options")
    table_key, copy = call.pop("table_key"), call.pop("copy")
    if copy:
        sdata = import_spatialdata().deepcopy(sdata)
    _, table, _ = resolve_table(sdata, table_key)
    call["require_spatial"] = False
    spalstf_impute(table, **call, copy=False, **options)
    return sdata if copy else None


def spalstf_impute(
    adata_st: AnnData | SpatialData,
    adata_sc: AnnData,
    genes: Sequence[str] | None = None,
    *,
    key_added: str = IMPUTED_KEY,
    layer_st: str | None = None,
    layer_sc: str | None = None,
    n_samples: int = 1,
    sampler: Sampler = "ddim",
    n_sampling_steps: int = SAMPLING_STEPS,
    random_state: int = 0,
    impute_batch_size: int = IMPUTE_BATCH_SIZE,
    interval: float | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    model: SpaLSTF | None = None,
    require_spatial: bool = True,
    table_key: str | None = None,
    copy: bool = False,
    progress_bar: bool = True,
    **options: Any,
) -> AnnData | SpatialData | None:
    """Impute genes of a spatial panel from a scRNA-seq reference with SpaLSTF.

    Trains a :class:`~spalstf.model.SpaLSTF` on ``adata_sc`` conditioned on the genes ``adata_st`` measured (or reuses
    ``model``), then imputes ``genes`` for every spatial cell. Only the documented keys below are written; nothing else
    of either input changes.

    ``adata_st`` may be backed (``anndata.read_h5ad(path, backed="r")``): its cells are read ``impute_batch_size``
    rows at a time, for the model's statistics and for imputation. The results still go to the in-memory ``obsm`` /
    ``uns`` of the AnnData object, never into its backing file; for outputs too large for memory pass ``out``.

    Parameters
    ----------
    adata_st
        Spatial data (cells x measured genes); raw counts or non-negative intensities. Coordinates in
        ``obsm["spatial"]``. Or a :class:`spatialdata.SpatialData` object: its table ``table_key`` is imputed and
        the keys below are written into that table (region and instance keys and every element unchanged).
    adata_sc
        Reference scRNA-seq data with raw counts.
    genes
        Genes to impute. ``None``: reference genes the panel lacks, at most ``n_top_genes`` (default 2000) ranked by
        ``adata_sc.var["dispersions_norm"]`` when present, else in reference order.
    key_added
        Key of the outputs in ``adata_st.obsm`` and ``adata_st.uns``.
    layer_st, layer_sc
        Layers holding the expression of each modality (``None``: ``.X``).
    n_samples
        ``1``: the model's posterior-mean estimate; ``> 1``: mean and standard deviation over that many diffusion
        draws (see :meth:`spalstf.model.SpaLSTF.impute`).
    sampler
        ``"ddim"`` (fast, deterministic path per draw) or ``"ddpm"`` (the paper's full chain); used when
        ``n_samples > 1``.
    n_sampling_steps
        Steps of the DDIM sampler.
    random_state
        Seed of training and of the per-cell sampling noise.
    impute_batch_size
        Spatial cells read and imputed at a time (bounds the working memory; the result does not depend on it).
    interval
        Central level of calibrated intervals, e.g. ``0.9`` (:data:`~spalstf.model._defaults.INTERVAL_LEVEL`), or
        ``None`` (default) for none. With a level, the model is calibrated on the measured genes of ``adata_st``
        (inner leave-genes-out over the panel with closed-form copies of the model, no retraining;
        :meth:`~spalstf.model.SpaLSTF.calibrate_intervals`; a passed ``model`` that was calibrated before keeps its
        calibration), the expected SPCC of every imputed gene is written to
        ``uns[key_added]["gene_reliability"]``, and the point estimate and the bounds are in the platform's space
        (below).
    out
        Path of an ``.h5ad`` file to write the imputed values into, chunk by chunk, instead of ``obsm`` (see
        :meth:`~spalstf.model.SpaLSTF.impute` for its layout: ``X`` mean, ``layers["std"]``, ``obs`` = cells,
        ``var`` = imputed genes). ``obsm[key_added]`` is then not written; ``uns[key_added]["out"]`` holds the path.
    overwrite
        Replace an existing ``out`` file.
    model
        A trained model to reuse (its genes are imputed and ``genes`` must be ``None`` or equal to them).
    require_spatial
        Raise if ``adata_st.obsm["spatial"]`` is missing (the plots and spatial statistics need it). With a
        SpatialData object the table must annotate a region (its shapes or labels place the cells) instead.
    table_key
        With a SpatialData object: the table of the spatial cells (``None``: its only table). Not used with an
        AnnData.
    copy
        Return a modified copy of ``adata_st`` instead of writing into it (of a SpatialData object: a deep copy,
        elements included).
    progress_bar
        Show progress bars for training and sampling.
    **options
        Model options (``preset``, ``n_hidden``, ``n_neighbors``, ``case_sensitive``, ``n_top_genes``, ...; the
        parameters of :class:`~spalstf.model.SpaLSTF`) and training options (``max_epochs``, ``batch_size``, ``lr``,
        ``accelerator``, ``devices``, ...; the parameters of :meth:`~spalstf.model.SpaLSTF.train` and of the
        Lightning trainer). Each goes to the one that takes it; a name none of them takes raises a `TypeError`
        naming the closest valid one, before any work is done.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes to ``adata_st`` (with a SpatialData object: to its
    table ``table_key``):

    ``obsm[key_added]``
        :class:`pandas.DataFrame` (index ``obs_names``, columns the imputed genes). With ``interval``: the value
        the spatial platform would measure, ``log1p(x / L * target_sum)``, ``x`` in ``adata_st``'s own values and
        ``L`` the cell's total over the measured genes (``target_sum`` 10,000 unless given). Without:
        log1p-normalised expression in the reference's units, ``log1p(counts / library *
        target_sum)`` with the library over the measured genes. ``uns[key_added]["output_space"]`` says which. Not
        written when ``out`` is given (a stale one is removed).
    ``obsm[key_added + "_lower"]``, ``obsm[key_added + "_upper"]``
        Bounds of the central ``interval`` (same index and columns; with ``interval`` and no ``out``). NaN for cells
        whose measured genes are all zero (their platform value is undefined).
    ``obsm[key_added + "_std"]``
        Per-cell, per-gene standard deviation over draws (only when ``n_samples > 1`` and no ``out``).
    ``uns[key_added]``
        ``params`` (every setting of the model, its training and the sampling, as used), ``measured_genes`` (genes
        used as the condition, as spelled in ``adata_st``), ``imputed_genes``, ``output_space``, ``train_time_s``,
        ``impute_time_s``, ``n_cells_without_signal`` and ``cells_without_signal`` (spatial cells whose measured genes
        are all zero: left out of every statistic fitted on the spatial data, imputed from a zero condition), with
        ``interval`` ``interval`` (level, method, calibration genes and cells) and ``gene_reliability`` (imputed gene
        -> expected Spearman correlation between the imputation and what the platform would measure) and, with
        ``out``, ``out`` (the path of the written file, which holds the same metadata in its ``uns[key_added]``). The
        two layouts are described together in :mod:`spalstf._outputs`.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> sp.tl.spalstf_impute(adata_st, adata_sc, n_top_genes=100)  # doctest: +SKIP
    >>> adata_st.obsm["spalstf_imputed"].shape  # doctest: +SKIP
    (3039, 100)
    >>> sp.tl.spalstf_impute(adata_st, adata_sc, n_top_genes=100, interval=0.9)  # doctest: +SKIP
    >>> reliability = pd.Series(adata_st.uns["spalstf_imputed"]["gene_reliability"])  # doctest: +SKIP
    >>> trusted = reliability[reliability > 0.5].index  # genes expected to correlate > 0.5  # doctest: +SKIP

    A spatial dataset too large for memory, results written to disk:

    >>> import anndata
    >>> big = anndata.read_h5ad("st_cells.h5ad", backed="r")  # doctest: +SKIP
    >>> sp.tl.spalstf_impute(big, adata_sc, out="imputed.h5ad", require_spatial=False)  # doctest: +SKIP
    >>> anndata.read_h5ad("imputed.h5ad", backed="r").X[:5]  # doctest: +SKIP

    A SpatialData object (e.g. from a spatialdata-io reader), imputed in its table:

    >>> sdata = sp.datasets.drosophila_embryo(as_spatialdata=True)
    >>> sp.tl.spalstf_impute(sdata, sdata.tables["rna"], table_key="table", n_top_genes=100)  # doctest: +SKIP
    >>> sdata.tables["table"].obsm["spalstf_imputed"].shape  # doctest: +SKIP
    (3039, 100)
    """
    if is_spatialdata(adata_st):  # the same call on the AnnData of the table (all arguments, as given)
        return _impute_table(dict(locals()))
    if table_key is not None:
        raise ValueError("table_key is for a SpatialData object; adata_st is an AnnData, so pass no table_key.")
    arguments = {k: v for k, v in locals().items() if k not in ("options", "table_key")}
    adata, _, _ = _spalstf_impute(**arguments, **options)
    return adata if copy else None


def _spalstf_impute(
    adata_st: AnnData,
    adata_sc: AnnData,
    genes: Sequence[str] | None,
    *,
    key_added: str,
    layer_st: str | None,
    layer_sc: str | None,
    n_samples: int,
    sampler: Sampler,
    n_sampling_steps: int,
    random_state: int,
    impute_batch_size: int,
    interval: float | None,
    out: str | os.PathLike | None,
    overwrite: bool,
    model: SpaLSTF | None,
    require_spatial: bool,
    copy: bool,
    progress_bar: bool,
    extra_levels: Sequence[float] = (),
    **options: Any,
) -> tuple[AnnData, SpaLSTF, Any]:
    """The worker of :func:`spalstf_impute`: the AnnData written into, the model and the raw result of its ``_impute``.

    ``extra_levels`` (benchmarks) also computes the bounds at those levels (see ``SpaLSTF._impute``); they are
    returned in the result, not written.
    """
    spatial = SpatialInput.prepare(adata_st, layer_st, "layer_st")
    check_nonempty(adata_sc, "adata_sc")
    if require_spatial and SPATIAL_KEY not in adata_st.obsm:
        raise KeyError(
            f"adata_st.obsm[{SPATIAL_KEY!r}] is missing: store the cell coordinates there, or pass "
            "require_spatial=False to impute without them."
        )
    model_options, train_options = _route_options(options)
    check_impute_options(
        n_samples=n_samples,
        sampler=sampler,
        n_sampling_steps=n_sampling_steps,
        batch_size=impute_batch_size,
        n_diffusion_steps=_diffusion_steps(model, model_options),
        batch_size_name="impute_batch_size",
        interval=interval,
    )
    if copy and adata_st.isbacked:
        raise ValueError(
            "copy=True needs an in-memory adata_st, but it is backed; pass copy=False (results go to the object's "
            "in-memory obsm/uns, not its file), load it with `adata_st.to_memory()`, or pass out='imputed.h5ad'."
        )
    if out is not None:
        check_out_path(out, overwrite, [adata_st])  # fail before training

    if model is None:
        reference = _registration_view(adata_sc, layer_sc)
        # seeded training; the caller's generators are restored afterwards (registration draws from numpy's too)
        with global_seed(random_state):
            SpaLSTF.setup_anndata(reference)
            model = SpaLSTF(reference, spatial, genes=genes, st_layer=layer_st, **model_options)
            train_options.setdefault("enable_progress_bar", progress_bar)
            model.train(**train_options)
    else:
        if options:
            raise ValueError(f"Options {sorted(options)} only apply when training; `model` is already trained.")
        if genes is not None and list(genes) != model.imputed_genes:
            raise ValueError("`genes` differs from the genes the passed `model` imputes; pass genes=None.")
    result, metadata = model._impute(
        spatial,
        layer=layer_st,
        n_samples=n_samples,
        sampler=sampler,
        n_sampling_steps=n_sampling_steps,
        batch_size=impute_batch_size,
        random_state=random_state,
        progress_bar=progress_bar,
        out=out,
        overwrite=overwrite,
        interval=interval,
        extra_levels=extra_levels,
        key_added=key_added,
        open_result=False,  # the file is not read back (anndata's backed mode would load its layers)
    )
    adata = adata_st.copy() if copy else adata_st
    _write_result(adata, key_added, result, metadata, to_file=out is not None)
    written = f"{out} and uns[{key_added!r}]" if out is not None else f"obsm[{key_added!r}] and uns[{key_added!r}]"
    logger.info(
        "imputed %d genes of %d cells from %d measured genes (training %.1f s, imputation %.1f s): %s",
        len(metadata["imputed_genes"]),
        adata.n_obs,
        len(metadata["measured_genes"]),
        metadata["train_time_s"],
        metadata["impute_time_s"],
        written,
    )
    return adata, model, result


def _write_result(adata: AnnData, key: str, result, metadata: dict[str, Any], *, to_file: bool) -> None:
    """Write the documented keys (layout: :mod:`spalstf._outputs`); drop stale ones an earlier call left."""
    mean = std = lower = upper = None
    if to_file:
        pass  # the values are in the file; only the metadata goes into uns
    elif isinstance(result, dict):
        mean, std, lower, upper = result["mean"], result["std"], result["lower"], result["upper"]
    else:
        mean, std = result
    outputs = ((key, mean), (key + STD_SUFFIX, std), (key + LOWER_SUFFIX, lower), (key + UPPER_SUFFIX, upper))
    for obsm_key, values in outputs:
        if values is not None:
            adata.obsm[obsm_key] = values
        elif obsm_key in adata.obsm:
            del adata.obsm[obsm_key]  # from an earlier call; it would not match this result
    adata.uns[key] = metadata
