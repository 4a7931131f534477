"""`SpaLSTF`: the user-facing model class (AnnData registration, training, imputation, save/load)."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import anndata
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi import settings as scvi_settings
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, NumericalObsField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner
from tqdm.auto import tqdm

from .._constants import IMPUTED_KEY, INDICES_OBS_KEY
from .._expression import is_count_matrix, to_dense
from .._genes import GenePlan, plan_genes
from .._logging import quiet_libraries
from .._outputs import LOWER_LAYER, STD_LAYER, UPPER_LAYER, result_metadata
from .._streaming import H5adChunkWriter, check_out_path, iter_row_chunks, rows_per_chunk
from .._validation import (
    check_counts,
    check_in_memory,
    check_nonempty,
    check_unique_names,
    check_values,
    format_names,
    get_matrix,
)
from . import _calibration as cal
from . import _preprocessing as prep
from ._defaults import (
    IMPUTE_BATCH_SIZE,
    MODULE_OPTIONS,
    PRESETS,
    SAMPLING_STEPS,
    Preset,
    check_option,
    check_preset,
    presets_table,
    resolve,
)
from ._module import Attention, Context, Sampler, SpaLSTFModule
from ._noise import cell_keys
from ._preprocessing import Alignment
from ._training_plan import SpaLSTFTrainingPlan

logger = logging.getLogger(__name__)


def check_impute_options(
    *,
    n_samples: int,
    sampler: str,
    n_sampling_steps: int,
    batch_size: int,
    n_diffusion_steps: int | None = None,
    batch_size_name: str = "batch_size",
    interval: float | None = None,
) -> None:
    """Raise a `ValueError` naming the argument when a sampling option is out of range (before any work is done).

    When DDIM draws are made, ``n_sampling_steps`` may not exceed the model's ``n_diffusion_steps`` (when known): it
    is used as given, never clamped.
    """
    check_option("n_samples", n_samples)
    check_option("sampler", sampler)
    check_option("n_sampling_steps", n_sampling_steps)
    if n_diffusion_steps is not None and n_samples > 1 and sampler == "ddim" and n_sampling_steps > n_diffusion_steps:
        raise ValueError(
            f"n_sampling_steps must be at most the model's n_diffusion_steps ({n_diffusion_steps}), got "
            f"{n_sampling_steps}."
        )
    check_option("batch_size", batch_size, batch_size_name)
    check_option("interval", interval)


def _check_reference_genes(adata: AnnData, var_names: pd.Index) -> None:
    """Raise a `ValueError` when ``adata`` lacks the saved model's reference genes or has them in another order."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"`adata` must be the reference AnnData, got {type(adata).__name__}.")
    given = pd.Index([str(g) for g in adata.var_names])
    if given.equals(var_names):
        return
    missing = var_names.difference(given, sort=False)
    extra = given.difference(var_names, sort=False)
    if len(missing) or len(extra):
        raise ValueError(
            f"`adata` does not have the genes of the reference the model was trained on: {len(missing)} missing "
            f"({format_names(list(missing))}), {len(extra)} not in the model ({format_names(list(extra))}). Pass "
            "the reference the model was trained with."
        )
    raise ValueError(
        "`adata` has the model's reference genes in another order; pass `adata[:, genes]` with the model's order "
        "(the var_names saved with the model)."
    )


def _is_ddp(strategy) -> bool:
    """Whether a Lightning strategy (name or instance) is DDP, i.e. needs a distributed sampler."""
    if isinstance(strategy, str):
        return strategy.startswith("ddp")
    return isinstance(strategy, DDPStrategy)


def _ddp_without_buffer_broadcast(strategy):
    """Lightning's registered DDP strategy of that name, with ``broadcast_buffers=False``; anything else unchanged.

    The module's buffers are constants (reference profiles, gene statistics, ridge weights, schedule bounds), so
    DDP's per-step broadcast of buffers from rank 0 only moves the reference around; the training plan checks once
    that the ranks agree on them.
    """
    if isinstance(strategy, str) and strategy.startswith("ddp") and strategy in StrategyRegistry:
        entry = StrategyRegistry[strategy]
        if issubclass(entry["strategy"], DDPStrategy):
            return entry["strategy"](**{**entry["init_params"], "broadcast_buffers": False})
    return strategy


class SpaLSTF(BaseModelClass):
    """SpaLSTF: a conditional diffusion model that imputes unmeasured spatial genes from a scRNA-seq reference.

    The model is trained on the reference (``adata``, raw counts). For each cell it learns the distribution of the
    imputed genes given the measured (spatially profiled) genes. A cell's condition is its measured genes plus a
    context sequence of its nearest reference cells in measured-gene space, read by a bidirectional LSTM; the
    denoiser is a stack of XCiT blocks (cross-covariance attention over the cell's gene tokens, local patch
    interaction, feed-forward) modulated by the diffusion step and the condition. The imputed values are a blend of
    ridge regressions, the mean of the nearest reference cells and the network's point head (``docs/method.md``);
    diffusion draws (``n_samples > 1``) give their uncertainty. Every computation is per cell, so a cell's
    imputation does not depend on which cells share its batch.

    Register the reference with :meth:`setup_anndata` first. The spatial data is passed as ``adata_st``; only its
    measured genes are used, and its per-gene alignment (fitted on its cells with signal) is stored in the model.

    Parameters
    ----------
    adata
        Reference scRNA-seq AnnData (raw counts) registered with :meth:`setup_anndata`.
    adata_st
        Spatial AnnData whose genes form the measured panel. Required to build a new model; not needed by
        :meth:`load`.
    genes
        Reference genes to impute. ``None``: reference genes absent from the ST panel, at most ``n_top_genes``,
        ranked by normalised dispersion when ``adata.var`` has a ``dispersions_norm`` column, else in reference order.
    st_layer
        Layer of ``adata_st`` with the expression values (``None``: ``adata_st.X``).
    case_sensitive
        Match gene names between modalities exactly (default) or ignoring case.
    n_top_genes
        Cap on the default number of imputed genes.
    preset
        ``"cpu"`` (default; small network, minutes on a laptop) or ``"paper"`` (the published sizes). Every option
        below that is ``None`` takes the preset's value (table in the Notes); an explicit value overrides it.
    n_neighbors
        Nearest reference cells in the context sequence.
    n_hidden, n_blocks, n_heads, n_tokens
        Denoiser width, XCiT blocks, attention heads, gene tokens per cell.
    n_lstm_hidden, n_lstm_layers
        BiLSTM hidden size per direction and number of layers (paper: 128, 2).
    n_diffusion_steps
        Steps T of the cosine schedule.
    kl_weight
        alpha of the loss (by default a rule on the number of model genes, see the table).
    perturbation_std
        Gaussian perturbation of the reference condition during training (standardised units); 0 disables it.
    ridge_alphas
        Penalties of the ridge part of the estimate, as fractions of the number of reference cells; the fits are
        averaged after standardisation.
    context
        ``"bilstm"``: the condition embedding is the bidirectional LSTM over the cell and its nearest reference
        cells; ``"none"``: an MLP of the cell alone (the paper's ablation "without BiLSTM").
    attention
        ``"xca"``: cross-covariance attention in the denoiser's blocks; ``"softmax"``: standard self-attention over
        the same gene tokens (the ablation "without XCA").
    blend
        Parts of the point estimate, averaged after per-gene standardisation and calibrated on the reference:
        ``"ridge"`` (ridge regressions from the condition), ``"neighbours"`` (mean of the nearest reference cells)
        and ``"network"`` (the learned head on the BiLSTM embedding). See ``docs/method.md``.
    alignment
        Per-gene alignment of each modality's condition: ``"quantile"`` (each gene through its own empirical
        quantiles onto normal scores) or ``"zscore"`` (mean and standard deviation). Fitted on the reference cells
        and on the spatial cells ``adata_st`` with signal (at least 10), and stored.
    normalize_st
        Library-normalise the spatial values over the measured genes (``True``), use them as given (``False``;
        e.g. in situ intensities that are not proportional to molecule counts), or ``"auto"``: normalise when they
        are non-negative integers (counts).
    cell_scaling
        Per-cell max-abs scaling of the measured genes into [-1, 1] before the alignment (the paper's scaling).
    target_sum
        Library size of the normalisation (counts per ``target_sum``).
    require_counts
        Refuse a reference that does not hold raw counts (non-integer values, e.g. log-normalised data) with a
        `ValueError` saying where to pass the counts; ``False`` accepts such values as counts.
    gene_plan
        Set by :meth:`load` (the resolved gene lists); leave ``None``.

    Notes
    -----
    Defaults of each preset (:data:`spalstf.model._defaults.PRESETS`; ``max_epochs``, ``max_steps``,
    ``batch_size``, ``lr`` and ``weight_decay`` are the defaults of :meth:`train`):

    {presets_table}

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    >>> sp.model.SpaLSTF.setup_anndata(adata_sc)
    >>> model = sp.model.SpaLSTF(adata_sc, adata_st, genes=["sna", "trn"])  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> imputed = model.impute(adata_st)  # doctest: +SKIP
    """

    __doc__ = __doc__.replace("{presets_table}", presets_table().replace("\n", "\n    "))

    _module_cls = SpaLSTFModule
    _training_plan_cls = SpaLSTFTrainingPlan
    _data_splitter_cls = DataSplitter
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: AnnData,
        adata_st: AnnData | None = None,
        *,
        genes: Sequence[str] | None = None,
        st_layer: str | None = None,
        case_sensitive: bool = True,
        n_top_genes: int | None = 2000,
        preset: Preset = "cpu",
        n_neighbors: int | None = None,
        n_hidden: int | None = None,
        n_blocks: int | None = None,
        n_heads: int | None = None,
        n_tokens: int | None = None,
        n_lstm_hidden: int | None = None,
        n_lstm_layers: int | None = None,
        n_diffusion_steps: int | None = None,
        kl_weight: float | None = None,
        perturbation_std: float | None = None,
        ridge_alphas: Sequence[float] | None = None,
        context: Context | None = None,
        attention: Attention | None = None,
        blend: Sequence[str] | None = None,
        alignment: Alignment | None = None,
        normalize_st: bool | Literal["auto"] | None = None,
        cell_scaling: bool | None = None,
        target_sum: float | None = None,
        require_counts: bool = True,
        gene_plan: dict[str, list[str]] | None = None,
    ):
        super().__init__(adata)
        check_preset(preset)
        ref_X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        check_values(ref_X, "adata (reference)", adata.var_names)
        if require_counts:
            check_counts(
                ref_X,
                "adata (reference)",
                "layer_sc= of sp.tl.spalstf_impute or layer= of SpaLSTF.setup_anndata, naming the layer that holds "
                "them, e.g. 'counts'",
            )

        if gene_plan is not None:
            plan = GenePlan(tuple(gene_plan["measured"]), tuple(gene_plan["measured_st"]), tuple(gene_plan["imputed"]))
        elif adata_st is None:
            raise ValueError("Pass `adata_st` (the spatial data) to build a new SpaLSTF model.")
        else:
            check_nonempty(adata_st, "adata_st")
            ranking = adata.var["dispersions_norm"] if "dispersions_norm" in adata.var else None
            plan = plan_genes(
                adata_st.var_names,
                adata.var_names,
                genes,
                case_sensitive=case_sensitive,
                n_top_genes=n_top_genes,
                gene_ranking=ranking,
            )
        self.gene_plan = plan
        options = dict(locals())
        given = {k: v for k, v in options.items() if k in PRESETS[preset]}
        self.settings = resolve(preset, len(plan.measured) + len(plan.imputed), given)
        self.settings["ridge_alphas"] = tuple(float(a) for a in self.settings["ridge_alphas"])
        self.settings["blend"] = tuple(self.settings["blend"])
        self.target_sum = self.settings["target_sum"]
        self.cell_scaling = self.settings["cell_scaling"]
        self.alignment = self.settings["alignment"]
        self.st_layer = st_layer

        # the spatial alignment first: its errors (too few cells with signal) come before the reference work
        if adata_st is not None:
            st_alignment, st_normalized = self._fit_st_alignment(adata_st, st_layer, self.settings["normalize_st"])
        else:  # restored by load_state_dict
            st_alignment = prep.alignment_placeholders(self.alignment, len(plan.measured))
            st_normalized = True
        ref_profiles, stats = self._reference_profiles(adata, plan)
        self.module = self._module_cls(
            torch.from_numpy(ref_profiles),
            len(plan.measured),
            **{k: self.settings[k] for k in MODULE_OPTIONS},
        )
        for name, value in stats.items():
            self.module.register_buffer(name, torch.from_numpy(value))
        for name, value in st_alignment.items():
            self.module.register_buffer(f"st_{name}", torch.from_numpy(value))
        # whether the spatial values are library-normalised (counts) or used as given; a buffer, so load restores it
        self.module.register_buffer("st_normalized", torch.tensor(st_normalized))

        self._model_summary_string = (
            f"SpaLSTF: {len(plan.measured)} measured genes -> {len(plan.imputed)} imputed genes, "
            f"{adata.n_obs} reference cells, preset={preset!r}"
        )
        self.interval_calibration_: cal.IntervalCalibration | None = None  # set by calibrate_intervals
        self.init_params_ = self._get_init_params(locals())
        self.init_params_["non_kwargs"]["gene_plan"] = {
            "measured": list(plan.measured),
            "measured_st": list(plan.measured_st),
            "imputed": list(plan.imputed),
        }

    # save / load -------------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        **kwargs: Any,
    ) -> SpaLSTF:
        """Load a model saved with :meth:`save`, with the reference it was trained on.

        Checks what scvi-tools' loader would report obscurely, before it touches ``adata``: that ``dir_path`` holds
        a saved model, that its ``model.pt`` can be read, and that ``adata`` has the model's reference genes in the
        model's order. If loading fails anyway, ``adata`` is left as it was (scvi-tools registers it in place).

        Parameters
        ----------
        dir_path
            The folder given to :meth:`save`.
        adata
            The reference (raw counts, the genes the model was trained with, in the same order). Required unless
            the model was saved with ``save_anndata=True``.
        accelerator, device
            Where to put the model (scvi-tools' options).
        prefix
            Prefix of the saved file names, as given to :meth:`save`.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load`.

        Returns
        -------
        The trained model.

        Examples
        --------
        >>> model.save("spalstf_model")  # doctest: +SKIP
        >>> model = sp.model.SpaLSTF.load("spalstf_model", adata=adata_sc)  # doctest: +SKIP
        """
        path = Path(dir_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"No saved SpaLSTF model at {str(dir_path)!r}: the folder does not exist. Pass the folder given to "
                "model.save()."
            )
        model_file = path / f"{prefix or ''}model.pt"
        if not model_file.is_file():
            raise FileNotFoundError(
                f"{str(dir_path)!r} holds no {model_file.name}; pass the folder given to model.save() (and its "
                "prefix=, if one was used)."
            )
        saved_adata = path / f"{prefix or ''}adata.h5ad"
        if adata is None and not saved_adata.exists():
            raise ValueError(
                "SpaLSTF.load needs the reference the model was trained on: pass adata=<the reference AnnData> (raw "
                "counts, the same genes), or save the model with save_anndata=True."
            )
        try:
            saved = torch.load(model_file, map_location="cpu", weights_only=False)
            var_names = pd.Index([str(g) for g in saved["var_names"]])
        except Exception as err:
            raise ValueError(
                f"{model_file} cannot be read as a saved SpaLSTF model ({type(err).__name__}: {err}). It is damaged or "
                "was not written by model.save(); save the model again."
            ) from err
        if adata is not None:
            _check_reference_genes(adata, var_names)
            obs_columns, uns_keys = list(adata.obs.columns), set(adata.uns.keys())
        try:
            with quiet_libraries():  # scvi-tools' "File ... already downloaded"
                return super().load(
                    str(dir_path), adata=adata, accelerator=accelerator, device=device, prefix=prefix, **kwargs
                )
        except Exception:
            if adata is not None:  # undo scvi-tools' in-place registration
                for column in [c for c in adata.obs.columns if c not in obs_columns]:
                    del adata.obs[column]
                for key in [k for k in adata.uns.keys() if k not in uns_keys]:
                    del adata.uns[key]
            raise

    # registration ------------------------------------------------------------------------------------------------
    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None, **kwargs) -> None:
        """Register the reference scRNA-seq AnnData.

        Parameters
        ----------
        adata
            Reference with raw counts (cells x genes).
        layer
            Layer holding the raw counts; ``None`` uses ``adata.X``.
        **kwargs
            Passed to :class:`scvi.data.AnnDataManager` registration.

        Notes
        -----
        As every scvi-tools model, this adds ``adata.obs["_indices"]`` (the row number of each cell) and scvi-tools'
        registration keys in ``adata.uns``. :func:`spalstf.tl.spalstf_impute` registers a lightweight copy instead,
        so it never changes the user's objects.

        Examples
        --------
        >>> import spalstf as sp
        >>> adata_sc = sp.datasets.drosophila_embryo()["rna"].copy()
        >>> sp.model.SpaLSTF.setup_anndata(adata_sc)  # raw counts in .X; layer="counts" for a layer
        >>> "_indices" in adata_sc.obs
        True
        """
        check_nonempty(adata, "adata")
        check_in_memory(adata, "adata")
        get_matrix(adata, layer, "adata")  # raises a KeyError naming the missing layer
        setup_method_args = cls._get_setup_method_args(**locals())
        adata.obs[INDICES_OBS_KEY] = np.arange(adata.n_obs)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            NumericalObsField(REGISTRY_KEYS.INDICES_KEY, INDICES_OBS_KEY),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    # preprocessing -----------------------------------------------------------------------------------------------
    def _reference_profiles(self, adata: AnnData, plan: GenePlan) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``[condition, target]`` profiles of the reference cells and the fitted statistics.

        :func:`~spalstf.model._preprocessing.reference_profiles` on the registered matrix, with the model's settings.
        """
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        return prep.reference_profiles(
            X,
            adata.var_names.get_indexer(list(plan.measured) + list(plan.imputed)),
            len(plan.measured),
            alignment=self.alignment,
            target_sum=self.target_sum,
            cell_scaling=self.cell_scaling,
        )

    def _st_columns(self, adata_st: AnnData) -> np.ndarray:
        """Column positions of the model's measured genes in ``adata_st`` (model order); raises if any is missing."""
        check_nonempty(adata_st, "adata_st")
        check_unique_names(adata_st.obs_names, "adata_st", "obs")  # per-cell noise and outputs are keyed by name
        missing = [g for g in self.gene_plan.measured_st if g not in adata_st.var_names]
        if missing:
            raise KeyError(
                f"adata_st lacks {len(missing)} gene(s) the model is conditioned on: {missing[:10]}. Pass the same "
                "gene panel the model was built with."
            )
        return adata_st.var_names.get_indexer(list(self.gene_plan.measured_st))

    def _st_condition_chunks(
        self, adata_st: AnnData, layer: str | None, chunk_size: int
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(start, stop, condition, empty, library)``: the aligned condition of ``adata_st`` rows, by chunks.

        ``library`` is each cell's total over the measured genes in ``adata_st``'s own values, ``empty`` flags the
        cells where it is 0. Works for in-memory (dense or sparse) and backed AnnData; only ``chunk_size`` rows are
        read at once. Each row is mapped by the stored alignment alone, so a cell's condition does not depend on the
        other cells.
        """
        pos = self._st_columns(adata_st)
        X = get_matrix(adata_st, layer, "adata_st")
        names = list(self.gene_plan.measured_st)
        normalize = bool(self.module.st_normalized)
        params = {
            name: getattr(self.module, f"st_{name}").cpu().numpy()
            for name in prep.alignment_placeholders(self.alignment, 1)
        }
        for start, stop, rows in iter_row_chunks(X, chunk_size, pos):
            check_values(rows, "adata_st", names)
            library = np.asarray(rows.sum(axis=1), dtype=np.float64).ravel()
            values = prep.condition_values(rows, self.target_sum, self.cell_scaling, normalize=normalize)
            yield start, stop, prep.apply_alignment(self.alignment, params, values), library == 0, library

    def _sampled_st_rows(self, adata_st: AnnData, layer: str | None, max_cells: int) -> tuple[np.ndarray, int, bool]:
        """Sampled raw values of the measured genes of ``adata_st``, in one chunked pass.

        Returns the values (float64) of the cells with signal among ``max_cells`` evenly spaced ones, the number of
        cells without signal (over all cells), and whether the values are counts.
        """
        pos = self._st_columns(adata_st)
        X = get_matrix(adata_st, layer, "adata_st")
        names = list(self.gene_plan.measured_st)
        sample = prep.quantile_sample_rows(adata_st.n_obs, max_cells)
        kept, n_empty, counts = [], 0, True
        for start, stop, rows in iter_row_chunks(X, rows_per_chunk(len(pos)), pos):
            check_values(rows, "adata_st", names)
            rows = to_dense(rows)
            empty = rows.sum(axis=1) == 0
            n_empty += int(empty.sum())
            counts = counts and is_count_matrix(rows)
            kept.append(rows[np.isin(np.arange(start, stop), sample) & ~empty])
        return np.concatenate(kept), n_empty, counts

    def _fit_st_alignment(
        self, adata_st: AnnData, layer: str | None, normalize_st: bool | str
    ) -> tuple[dict[str, np.ndarray], bool]:
        """Fit the spatial condition's per-gene alignment on the cells with signal; returns it and the normalisation.

        One chunked pass: cells whose measured genes are all zero are counted (and excluded, with a warning), the
        values of at most :data:`~spalstf.model._preprocessing.MAX_QUANTILE_CELLS` evenly spaced cells with signal
        are kept, and whether the values are counts decides the library normalisation when ``normalize_st`` is
        ``"auto"``.
        """
        values, n_empty, counts = self._sampled_st_rows(adata_st, layer, prep.MAX_QUANTILE_CELLS)
        if len(values) < prep.MIN_FIT_CELLS:
            raise ValueError(
                f"adata_st has {adata_st.n_obs - n_empty} cell(s) with signal on the measured genes; fitting the "
                f"spatial alignment needs at least {prep.MIN_FIT_CELLS}. Build the model with more spatial cells (it "
                "can then impute any number of cells, one alone included)."
            )
        if n_empty:
            warnings.warn(
                f"{n_empty} of {adata_st.n_obs} spatial cells have no signal (all measured genes are 0); they are left "
                "out of the statistics fitted on the spatial data, and their imputation reflects no measurement.",
                UserWarning,
                stacklevel=3,
            )
        normalize = counts if normalize_st == "auto" else bool(normalize_st)
        values = prep.condition_values(values, self.target_sum, self.cell_scaling, normalize=normalize)
        return prep.fit_alignment(self.alignment, values), normalize

    # intervals and reliability -----------------------------------------------------------------------------------
    def calibrate_intervals(
        self,
        adata_st: AnnData,
        *,
        layer: str | None = None,
        n_folds: int | None = None,
        n_repeats: int = cal.N_CALIBRATION_REPEATS,
        n_strata: int = cal.N_STRATA,
        max_cells: int | None = None,
        random_state: int = 0,
    ) -> cal.IntervalCalibration:
        """Calibrate the intervals and the per-gene reliability on the measured genes of ``adata_st``.

        Inner leave-genes-out over the model's measured genes (``n_folds`` folds, the split repeated ``n_repeats`` times
        with different seeds and pooled): for each fold, a closed-form copy of the model (the ridge + neighbour blend
        with this model's preprocessing and settings, no training) is built on the other measured genes and predicts the
        fold's genes in the cells of ``adata_st`` with signal among ``max_cells`` evenly spaced ones. Its errors in the
        platform's space ``log1p(x / L * target_sum)`` (``L`` the cell's total over the measured genes) give
        split-conformal quantiles in ``n_strata`` strata of the predicted raw measurement, and two truth-free statistics
        of its predictions, paired with its real per-gene Spearman correlation, give the reliability: the statistic that
        ranks the panel genes better is mapped to each imputed gene's expected SPCC (``docs/method.md``, section
        "Uncertainty"). The imputed genes' values never enter; the cost is ``n_folds * n_repeats`` closed-form fits, not
        trainings. The result is stored as :attr:`interval_calibration_` (saved with the model) and used by every later
        :meth:`impute` with ``interval=``, whatever cells it imputes; call this method again to calibrate on other data.
        The scores come from the closed-form copies, not from the model itself: for a model whose estimate is mostly its
        network (``preset="paper"``) the intervals describe the closed-form parts' errors.

        Parameters
        ----------
        adata_st
            Spatial data with (at least) the model's measured genes; in memory or backed (read in chunks).
        layer
            Layer with the values; default: the layer the model was built with.
        n_folds
            Inner folds over the measured genes (at most their number); default 5, or the number of measured genes
            when there are fewer.
        n_repeats
            Random splits of the measured genes into ``n_folds`` folds, pooled. More splits make the reliability map
            and the score quantiles depend less on which genes happen to share a fold, at ``n_repeats`` times the
            cost. With ``n_folds`` equal to the number of measured genes (leave-one-out) every split is the same, and
            one is computed.
        n_strata
            Strata of the predicted measurement (``1``: one width per gene, the plain conformal interval).
        max_cells
            Spatial cells at most used (evenly spaced over those with signal). Default: 10,000, fewer for large
            panels so that the calibration holds at most 3,000,000 entries (cells x measured genes x ``n_repeats``;
            about 50 bytes each), but never fewer than 1,000 cells. The number used is recorded in
            ``uns[key]["interval"]["n_calibration_cells"]``.
        random_state
            Seed of the splits of the measured genes into folds.

        Returns
        -------
        The fitted :class:`~spalstf.model._calibration.IntervalCalibration`.

        Examples
        --------
        >>> model.calibrate_intervals(adata_st)  # doctest: +SKIP
        >>> model.get_gene_reliability().sort_values().tail()  # doctest: +SKIP
        """
        from sklearn.model_selection import RepeatedKFold

        if n_folds is not None:
            check_option("n_calibration_folds", n_folds, "n_folds")
        check_option("n_calibration_repeats", n_repeats, "n_repeats")
        check_option("n_strata", n_strata)
        if max_cells is not None:
            check_option("max_calibration_cells", max_cells, "max_cells")
        layer = layer if layer is not None else self.st_layer
        measured_st, measured = list(self.gene_plan.measured_st), list(self.gene_plan.measured)
        if len(measured) < cal.MIN_CALIBRATION_GENES:
            raise ValueError(
                f"Intervals are calibrated on the measured genes, and the model has {len(measured)} (at least "
                f"{cal.MIN_CALIBRATION_GENES} are needed); pass interval=None."
            )
        if n_folds is None:
            n_folds = min(cal.N_CALIBRATION_FOLDS, len(measured))
        elif n_folds > len(measured):
            raise ValueError(
                f"n_folds={n_folds} exceeds the model's {len(measured)} measured genes; pass at most {len(measured)}."
            )
        if n_folds == len(measured):
            n_repeats = 1  # leave-one-out: every split is the same
        if max_cells is None:
            max_cells = cal.default_calibration_cells(len(measured), n_repeats)
        S = self._calibration_cells(adata_st, layer, max_cells)
        R = self._reference_sample(measured)
        target_sum = self.target_sum

        # the model itself: its gene map (every measured gene) and the imputed genes' reliability statistics
        gene_map = cal.GeneMap.from_values(R, S, target_sum)
        sample = AnnData(X=S, var=pd.DataFrame(index=measured_st))
        condition = torch.from_numpy(
            np.concatenate([c for _, _, c, _, _ in self._st_condition_chunks(sample, None, 4096)])
        )
        agreement = cal.agreement_features(self.module, condition.to(self.device))

        # the inner folds: closed-form blends on the other measured genes, fitted on the raw counts of the reference
        reference = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)[
            :, self.adata.var_names.get_indexer(measured)
        ]
        settings = cal.ClosedFormSettings(
            alignment=self.alignment,
            target_sum=target_sum,
            cell_scaling=self.cell_scaling,
            normalize_st=bool(self.module.st_normalized),
            n_neighbors=self.settings["n_neighbors"],
            ridge_alphas=self.settings["ridge_alphas"],
        )
        splitter = RepeatedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=random_state)
        folds = [
            cal.inner_fold(reference, R, S, keep, hold, measured, settings, self.device)
            for keep, hold in splitter.split(np.arange(len(measured)))
        ]
        calibration = cal.fit_interval_calibration(
            folds,
            gene_map=gene_map,
            imputed_genes=self.imputed_genes,
            imputed_agreement=agreement,
            target_sum=target_sum,
            n_strata=n_strata,
            n_cells=S.shape[0],
            n_repeats=n_repeats,
        )
        st_spelling = dict(zip(measured, measured_st, strict=True))  # records name genes as adata_st does
        calibration.calibration_genes = [st_spelling[g] for g in calibration.calibration_genes]
        calibration.details["n_spatial_cells"] = int(adata_st.n_obs)
        self.interval_calibration_ = calibration
        return calibration

    def get_gene_reliability(self) -> pd.Series:
        """Expected Spearman correlation of each imputed gene with what the platform would measure.

        From :meth:`calibrate_intervals` (or the first :meth:`impute` with ``interval=``); a `RuntimeError` before.

        Returns
        -------
        Series indexed by the imputed genes.

        Examples
        --------
        >>> model.get_gene_reliability().sort_values(ascending=False).head()  # doctest: +SKIP
        """
        calibration = getattr(self, "interval_calibration_", None)
        if calibration is None:
            raise RuntimeError(
                "The model has no interval calibration yet; call model.calibrate_intervals(adata_st) or "
                "model.impute(adata_st, interval=0.9) first."
            )
        return pd.Series(calibration.gene_reliability, name="gene_reliability").reindex(self.imputed_genes)

    def _calibration_cells(self, adata_st: AnnData, layer: str | None, max_cells: int) -> np.ndarray:
        """Raw values (float64) of the measured genes: the cells with signal among ``max_cells`` evenly spaced ones."""
        values, _, _ = self._sampled_st_rows(adata_st, layer, max_cells)
        if len(values) < prep.MIN_FIT_CELLS:
            raise ValueError(
                f"adata_st has {len(values)} sampled cell(s) with signal on the measured genes; calibrating "
                f"intervals needs at least {prep.MIN_FIT_CELLS}. Calibrate on more spatial cells."
            )
        return values

    def _reference_sample(self, measured: list[str]) -> np.ndarray:
        """Raw counts (float64) of the measured genes in up to 20,000 evenly spaced reference cells."""
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        rows = prep.quantile_sample_rows(self.adata.n_obs, cal.MAX_REFERENCE_STATISTICS_CELLS)
        pos = self.adata.var_names.get_indexer(measured)
        if sparse.issparse(X):
            return to_dense(X[rows][:, pos])
        return to_dense(np.asarray(X)[np.ix_(rows, pos)])  # never a copy of every reference gene

    # training ----------------------------------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float = 1.0,
        validation_size: float | None = None,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model on the reference cells.

        Goes through scvi-tools' :class:`~scvi.dataloaders.DataSplitter`, a Lightning training plan and
        :class:`~scvi.train.TrainRunner`, so ``accelerator``, ``devices``, ``strategy`` and ``precision`` are
        Lightning's. Losses per epoch are kept in :attr:`history` (``train_loss``, ``train_mse``, ``train_kl``,
        ``train_mean_mse``; ``validation_*`` when ``train_size < 1`` and ``check_val_every_n_epoch`` is set).

        Parameters
        ----------
        max_epochs, max_steps
            The training budget: passes over the reference, or optimiser steps (then as many epochs as the steps
            take). Default from the preset: the ``"cpu"`` preset trains a fixed number of steps, so its time does not
            grow with the number of reference cells; ``"paper"`` trains 1200 epochs. With both given, training stops
            at whichever comes first.
        batch_size
            Cells per mini-batch; default from the preset. Under DDP this is the batch **per process**: the
            optimiser step averages the gradients of ``devices`` such batches.
        lr
            AdamW learning rate; default from the preset (cpu: 1e-3, paper: 1e-4).
        accelerator, devices
            Lightning device selection (``"auto"`` picks a GPU when there is one).
        train_size, validation_size
            Fractions of reference cells for training and validation (default: all cells train).
        datasplitter_kwargs, plan_kwargs
            Extra arguments of the data splitter and of the training plan.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`, e.g. ``enable_progress_bar=False``; ``gradient_clip_val``
            defaults to 1.0. Notably:

            ``strategy``
                ``"ddp"`` (scripts), ``"ddp_spawn"``, ``"ddp_notebook"`` (Jupyter) or a
                :class:`~lightning.pytorch.strategies.DDPStrategy`: distributed data parallel training on
                ``devices`` processes. Each process gets a distinct shard of the reference cells (scvi-tools'
                :class:`~scvi.dataloaders.BatchDistributedSampler`, reshuffled every epoch) and Lightning's DDP
                averages the gradients. A DDP strategy given by name is built with ``broadcast_buffers=False``:
                the module's buffers (reference profiles, statistics, ridge weights) are constants, identical on
                every rank (checked once at the start of training), and re-broadcasting the reference every step
                would cost more than the step. ``find_unused_parameters`` is not needed: every parameter takes part
                in every loss.
            ``precision``
                ``"bf16-mixed"`` or ``"16-mixed"`` (GPU) for mixed precision; the neighbour search, the ridge part,
                the diffusion schedule, the perturbation and the loss statistics stay float32 (see
                ``docs/distributed.md``).

        Notes
        -----
        With ``strategy="ddp"`` Lightning starts the other ranks by re-running the calling script, so everything
        after ``train`` runs once per rank: guard saving and imputation with ``model.trainer.is_global_zero``.
        With ``train_size < 1`` under DDP, the train/validation split is drawn with ``scvi.settings.seed`` (0 when
        unset) so that all ranks agree on it; validation runs when ``check_val_every_n_epoch`` is set.
        :attr:`history` is filled on rank 0 only (losses are averaged over ranks). The KL term of the loss is
        computed per rank over that rank's mini-batch (see :meth:`~spalstf.model._module.SpaLSTFModule.loss`).

        Examples
        --------
        Four GPUs, one process each, 4 x 256 cells per optimiser step, bfloat16 mixed precision (in a script):

        >>> model.train(  # doctest: +SKIP
        ...     accelerator="gpu", devices=4, strategy="ddp", batch_size=256, precision="bf16-mixed"
        ... )
        >>> if model.trainer.is_global_zero:  # doctest: +SKIP
        ...     model.save("spalstf_model")

        Two CPU processes (gloo), e.g. to check a script before a GPU run:

        >>> model.train(accelerator="cpu", devices=2, strategy="ddp")  # doctest: +SKIP
        """
        for name, value in (
            ("max_epochs", max_epochs),
            ("max_steps", max_steps),
            ("batch_size", batch_size),
            ("lr", lr),
        ):
            if value is not None:
                check_option(name, value)
        batch_size = self.settings["batch_size"] if batch_size is None else batch_size
        if max_epochs is None and max_steps is None:
            max_epochs, max_steps = self.settings["max_epochs"], self.settings["max_steps"]
        if max_epochs is None:  # a budget of optimiser steps: as many epochs as it takes, then stop at the step
            steps_per_epoch = max(1, int(np.ceil(self.adata.n_obs * train_size / min(batch_size, self.adata.n_obs))))
            max_epochs = int(np.ceil(max_steps / steps_per_epoch))
        if max_steps is not None:
            trainer_kwargs["max_steps"] = max_steps
        plan_kwargs = {
            "lr": self.settings["lr"] if lr is None else lr,
            "weight_decay": self.settings["weight_decay"],
            **(plan_kwargs or {}),
        }
        trainer_kwargs.setdefault("gradient_clip_val", 1.0)
        trainer_kwargs.setdefault("enable_checkpointing", False)
        if "strategy" in trainer_kwargs:
            trainer_kwargs["strategy"] = _ddp_without_buffer_broadcast(trainer_kwargs["strategy"])
        distributed = _is_ddp(trainer_kwargs.get("strategy"))
        # With every cell in training there is nothing to split; scvi-tools' split shuffle uses its own unseeded
        # generator, so leaving it on would make training differ between runs with the same torch seed.
        split_kwargs = {
            "shuffle_set_split": train_size < 1.0 or bool(validation_size),
            "distributed_sampler": distributed,
            **(datasplitter_kwargs or {}),
        }
        splitter_args = {
            "train_size": train_size,
            "validation_size": validation_size,
            "batch_size": min(batch_size, self.adata.n_obs),
            "drop_last": False,
        }
        splitter = self._data_splitter_cls(self.adata_manager, **splitter_args, **split_kwargs)
        if split_kwargs["shuffle_set_split"] and split_kwargs.get("external_indexing") is None:
            # scvi-tools draws the split unseeded unless scvi.settings.seed is set, so the same torch seed would not
            # give the same model. Draw it here: from scvi.settings.seed when set, else from torch's seed (the
            # random_state of spalstf_impute); under DDP every rank must agree, so 0 when scvi's seed is unset.
            if scvi_settings.seed is not None:
                seed = scvi_settings.seed
            else:
                seed = 0 if distributed else torch.initial_seed() % 2**32
            perm = np.random.RandomState(seed).permutation(self.adata.n_obs)
            n_train, n_val = splitter.n_train, splitter.n_val
            split_kwargs["external_indexing"] = [perm[n_val : n_val + n_train], perm[:n_val], perm[n_val + n_train :]]
            splitter = self._data_splitter_cls(self.adata_manager, **splitter_args, **split_kwargs)
        plan = self._training_plan_cls(self.module, **plan_kwargs)
        start = time.perf_counter()
        with quiet_libraries():  # Lightning's banners, tips and hints (see spalstf._logging); progress bars stay
            runner = self._train_runner_cls(
                self,
                training_plan=plan,
                data_splitter=splitter,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )
            result = runner()
        self.module.calibrate()  # the network part's statistics and the blend's calibration, on the reference
        self.train_time_s_ = time.perf_counter() - start
        self.train_params_ = {
            "max_epochs": max_epochs,
            "max_steps": max_steps,
            "batch_size": batch_size,
            **plan_kwargs,
            "accelerator": accelerator,
            "devices": devices,
            "train_size": train_size,
            "validation_size": validation_size,
            **trainer_kwargs,
        }
        return result

    # imputation --------------------------------------------------------------------------------------------------
    @property
    def imputed_genes(self) -> list[str]:
        """Reference genes the model imputes (output columns)."""
        return list(self.gene_plan.imputed)

    @property
    def measured_genes(self) -> list[str]:
        """Reference genes the model is conditioned on (as spelled in the reference)."""
        return list(self.gene_plan.measured)

    @torch.no_grad()
    def impute(
        self,
        adata_st: AnnData,
        *,
        layer: str | None = None,
        n_samples: int = 1,
        sampler: Sampler = "ddim",
        n_sampling_steps: int = SAMPLING_STEPS,
        batch_size: int = IMPUTE_BATCH_SIZE,
        random_state: int = 0,
        progress_bar: bool = True,
        interval: float | None = None,
        out: str | os.PathLike | None = None,
        overwrite: bool = False,
    ) -> tuple[pd.DataFrame, ...] | AnnData:
        """Impute the model's genes for the cells of ``adata_st``, streaming over its cells.

        Without ``interval``, outputs are log1p-normalised expression in the reference's units,
        ``log1p(counts / library * target_sum)`` with the library over the measured genes of a reference cell: the
        standardised model outputs mapped back with the reference's per-gene mean and standard deviation, and clipped
        at 0, the smallest log1p expression. With ``interval``, every output is in the spatial platform's space,
        ``log1p(x / L * target_sum)`` with ``L`` the spatial cell's total over the measured genes (what the platform
        would measure; see :meth:`calibrate_intervals`).

        The cells are processed in chunks of ``batch_size``: each chunk's rows are read from ``adata_st`` (in memory,
        dense or sparse, or backed, ``anndata.read_h5ad(path, backed="r")``), turned into the condition, run through
        the network and written into the output, so working memory does not grow with the number of cells. With
        ``out``, the output itself goes to disk chunk by chunk and need not fit in memory either. ``adata_st`` is
        never modified.

        Parameters
        ----------
        adata_st
            Spatial data holding (at least) the measured genes of the model; in memory or backed.
        layer
            Layer of ``adata_st`` with the expression values; default: the layer the model was built with.
        n_samples
            ``1`` (default): the model's point estimate of the posterior mean, ``mu(c)``: the blend, calibrated on the
            reference, of the ridge fits, the neighbour average and the network head on the BiLSTM embedding (the method
            page of the docs); no reverse diffusion is run, so ``sampler`` is not used. ``> 1``: that many draws
            ``mu + r`` from the reverse diffusion (each started from seeded per-cell noise); their mean and their
            standard deviation (the uncertainty) are returned. A single diffusion draw is a sample of the posterior,
            not its mean, which is why it is not the default output.
        sampler
            For ``n_samples > 1``. ``"ddim"``: deterministic DDIM with ``n_sampling_steps`` steps (the noise draw is the
            only randomness); ``"ddpm"``: the paper's ancestral chain over all T steps.
        n_sampling_steps
            Steps of the DDIM sampler.
        batch_size
            Cells read and imputed at a time (the working-memory bound); the result does not depend on it.
        random_state
            Seed of the per-cell noise (keyed by cell name, so independent of batch and order).
        progress_bar
            Show a progress bar over sampling steps.
        interval
            Central level (e.g. ``0.9``) of calibrated intervals around the point estimate, or ``None`` (default).
            The first call calibrates the model on the measured genes of ``adata_st`` (:meth:`calibrate_intervals`)
            unless it was calibrated before; :meth:`get_gene_reliability` then gives the expected SPCC of every gene.
            The intervals are calibrated around the posterior-mean estimate, also when ``n_samples > 1`` (the mean
            returned is then the mean of the draws, each mapped into the platform's space). The bounds need not
            contain the point (the two sides are calibrated separately); an upper bound can be infinite where too
            few calibration scores support the level.
        out
            Path of an ``.h5ad`` file to write the result into, chunk by chunk. The file holds ``obs`` (index: the cell
            names of ``adata_st``), ``var`` (index: the imputed genes), ``X`` (float32 mean), ``layers["std"]`` (float32
            standard deviation over draws; only when ``n_samples > 1``), ``layers["lower"]`` and ``layers["upper"]``
            (the interval; only with ``interval``) and ``uns["spalstf_imputed"]`` (the metadata of
            :func:`spalstf.tl.spalstf_impute`: measured genes, settings, output space, interval and gene reliability).
            It is written as ``<out>.partial`` and renamed when complete.
        overwrite
            Replace an existing ``out`` file.

        Returns
        -------
        Without ``out``: ``(mean, std)``, or ``(mean, std, lower, upper)`` with ``interval``: DataFrames indexed by
        ``adata_st.obs_names`` with the imputed genes as columns; ``std`` is ``None`` when ``n_samples == 1``. Cells
        without signal (all measured genes zero) have NaN bounds: their platform value is undefined. With ``out``:
        the written file opened with ``anndata.read_h5ad(out, backed="r")``; ``X`` stays on disk, but anndata reads
        the layers (``std``, ``lower``, ``upper``) into memory, so for outputs whose layers do not fit, read the file
        with ``anndata.experimental.read_lazy`` or use :func:`~spalstf.tl.spalstf_impute`, which does not open it.

        Examples
        --------
        >>> mean, std = model.impute(adata_st, n_samples=8)  # doctest: +SKIP
        >>> mean, std, lower, upper = model.impute(adata_st, interval=0.9)  # doctest: +SKIP
        >>> model.get_gene_reliability().sort_values(ascending=False).head()  # doctest: +SKIP
        >>> big = anndata.read_h5ad("st_cells.h5ad", backed="r")  # doctest: +SKIP
        >>> result = model.impute(big, out="imputed.h5ad", batch_size=4096)  # doctest: +SKIP
        >>> result.X[:10]  # first 10 cells, read from disk  # doctest: +SKIP
        """
        result, _ = self._impute(
            adata_st,
            layer=layer,
            n_samples=n_samples,
            sampler=sampler,
            n_sampling_steps=n_sampling_steps,
            batch_size=batch_size,
            random_state=random_state,
            progress_bar=progress_bar,
            interval=interval,
            out=out,
            overwrite=overwrite,
        )
        if out is not None or interval is None:
            return result
        return result["mean"], result["std"], result["lower"], result["upper"]

    def _impute(
        self,
        adata_st: AnnData,
        *,
        layer: str | None,
        n_samples: int,
        sampler: Sampler,
        n_sampling_steps: int,
        batch_size: int,
        random_state: int,
        progress_bar: bool,
        out: str | os.PathLike | None,
        overwrite: bool,
        interval: float | None = None,
        extra_levels: Sequence[float] = (),
        key_added: str = IMPUTED_KEY,
        open_result: bool = True,
    ) -> tuple[tuple[pd.DataFrame, pd.DataFrame | None] | dict[str, Any] | AnnData | Path, dict[str, Any]]:
        """The worker of :meth:`impute`: the result and its metadata (:func:`spalstf._outputs.result_metadata`).

        In memory, the result is ``(mean, std)`` without ``interval``; with it, a dict with ``"mean"``, ``"std"``,
        ``"lower"``, ``"upper"`` and, for each of ``extra_levels`` (benchmarks: the calibration curve),
        ``("lower", level)``, ``("upper", level)``, ``("gene_lower", level)`` and ``("gene_upper", level)`` (the last
        two: one width per gene). With ``out``, the metadata is also written into the file's ``uns[key_added]``, and
        the result is the file opened backed, or its path with ``open_result=False`` (anndata's backed mode reads
        the layers into memory; :func:`~spalstf.tl.spalstf_impute` needs none of it).
        """
        if not self.is_trained_:
            raise RuntimeError("The model is not trained yet; call `model.train()` first.")
        check_impute_options(
            n_samples=n_samples,
            sampler=sampler,
            n_sampling_steps=n_sampling_steps,
            batch_size=batch_size,
            n_diffusion_steps=self.module.schedule.n_steps,
            interval=interval,
        )
        if extra_levels and (interval is None or out is not None):
            raise ValueError("extra_levels needs interval= and an in-memory result.")
        for level in extra_levels:
            check_option("interval", level, "extra_levels")
        layer = layer if layer is not None else self.st_layer
        self._st_columns(adata_st)  # fail on missing genes before creating any file
        get_matrix(adata_st, layer, "adata_st")
        out_path = check_out_path(out, overwrite, [adata_st]) if out is not None else None
        if interval is not None and getattr(self, "interval_calibration_", None) is None:
            logger.info("Calibrating the intervals on the %d measured genes of adata_st.", len(self.measured_genes))
            self.calibrate_intervals(adata_st, layer=layer)
        n_obs, obs_names, columns = adata_st.n_obs, adata_st.obs_names.copy(), pd.Index(self.imputed_genes)
        if n_samples == 1:
            n_steps = 1
        elif sampler == "ddim":
            n_steps = len(self.module.schedule.ddim_timesteps(n_sampling_steps))
        else:
            n_steps = self.module.schedule.n_steps
        sampling = {
            "n_samples": n_samples,
            "sampler": sampler if n_samples > 1 else "posterior_mean",
            "n_sampling_steps": n_sampling_steps,
            "random_state": random_state,
            "impute_batch_size": batch_size,
            "interval": interval,
        }
        names = ["mean"] + (["std"] if n_samples > 1 else []) + (["lower", "upper"] if interval is not None else [])
        for level in extra_levels:
            names += [("lower", level), ("upper", level), ("gene_lower", level), ("gene_upper", level)]
        start = time.perf_counter()

        def run_chunks(write) -> list[str]:
            return self._impute_chunks(
                adata_st,
                layer,
                write,
                n_samples,
                sampler,
                n_sampling_steps,
                batch_size,
                random_state,
                progress_bar,
                n_steps,
                interval,
                tuple(extra_levels),
            )

        if out_path is None:
            arrays = {name: np.empty((n_obs, len(columns)), dtype=np.float32) for name in names}

            def write(start, stop, values):
                for name, value in values.items():
                    arrays[name][start:stop] = value

            empty = run_chunks(write)
            frames = {n: pd.DataFrame(a, index=obs_names, columns=columns, copy=False) for n, a in arrays.items()}
            metadata = self._result_metadata(sampling, time.perf_counter() - start, empty, interval)
            if interval is None:
                return (frames["mean"], frames.get("std")), metadata
            frames.setdefault("std", None)
            return frames, metadata

        layers = [n for n in ("std", "lower", "upper") if n in names]
        file_layers = {"std": STD_LAYER, "lower": LOWER_LAYER, "upper": UPPER_LAYER}
        with H5adChunkWriter(out_path, obs_names, columns, [file_layers[n] for n in layers]) as writer:

            def write(start, stop, values):
                writer.write(start, stop, values["mean"], **{file_layers[n]: values[n] for n in layers})

            empty = run_chunks(write)
            metadata = self._result_metadata(sampling, time.perf_counter() - start, empty, interval, out=out_path)
            writer.close(uns={key_added: metadata})
        return (anndata.read_h5ad(out_path, backed="r") if open_result else out_path), metadata

    def _result_metadata(
        self,
        sampling: dict[str, Any],
        impute_time_s: float,
        without_signal: list[str],
        interval: float | None = None,
        out=None,
    ) -> dict[str, Any]:
        """Metadata of a result: every setting as used (model, training, sampling), genes, output space, times.

        With ``interval``: the output space is the platform's, and the interval record and the gene reliability
        are added.
        """
        calibration = getattr(self, "interval_calibration_", None) if interval is not None else None
        return result_metadata(
            cells_without_signal=without_signal,
            measured_genes=list(self.gene_plan.measured_st),
            imputed_genes=self.imputed_genes,
            output_space=(
                prep.model_output_space(self.target_sum) if calibration is None else platform_space(self.target_sum)
            ),
            params={**self.settings, **getattr(self, "train_params_", {}), **sampling},
            train_time_s=getattr(self, "train_time_s_", float("nan")),
            impute_time_s=impute_time_s,
            out=out,
            interval=None if calibration is None else calibration.describe(interval),
            gene_reliability=None if calibration is None else dict(calibration.gene_reliability),
        )

    def _impute_chunks(
        self,
        adata_st: AnnData,
        layer: str | None,
        write,
        n_samples: int,
        sampler: Sampler,
        n_sampling_steps: int,
        batch_size: int,
        random_state: int,
        progress_bar: bool,
        n_steps: int,
        interval: float | None = None,
        extra_levels: tuple[float, ...] = (),
    ) -> list[str]:
        """Read, condition, impute and ``write(start, stop, values)`` each chunk of ``batch_size`` cells.

        ``values`` maps the output names (``"mean"``, ``"std"``, ``"lower"``, ``"upper"``, the extra levels' bounds)
        to the chunk's arrays. Returns the names of the cells without signal (all measured genes zero).
        """
        device = self.device
        without_signal: list[str] = []
        calibration = self.interval_calibration_ if interval is not None else None
        target_mean = self.module.target_mean.cpu().numpy()
        target_std = self.module.target_std.cpu().numpy()
        self.module.eval()
        with tqdm(
            total=n_steps * n_samples * int(np.ceil(adata_st.n_obs / batch_size)),
            desc=f"Sampling ({sampler})",
            disable=not progress_bar,
        ) as bar:
            for start, stop, values, empty, library in self._st_condition_chunks(adata_st, layer, batch_size):
                without_signal.extend(str(n) for n in adata_st.obs_names[start:stop][empty])
                cond = torch.from_numpy(values).to(device)
                # the posterior mean is the point (one sample) and the centre of the bounds; draws alone need none
                need_estimate = n_samples == 1 or calibration is not None
                estimate = self.module.posterior_mean(cond).cpu().numpy() if need_estimate else None
                if n_samples == 1:
                    bar.update(1)
                else:
                    draws = self.module.sample(
                        cond,
                        cell_keys(adata_st.obs_names[start:stop], random_state),
                        n_samples=n_samples,
                        sampler=sampler,
                        n_sampling_steps=n_sampling_steps,
                        step_callback=lambda: bar.update(1),
                    )
                    draws = draws.cpu().numpy().astype(np.float64)
                if calibration is not None:  # the bounds are around the posterior mean, also when draws are made
                    point, scale = calibration.point(estimate, target_mean, target_std)
                if n_samples == 1:
                    out = {
                        "mean": point
                        if calibration is not None
                        else np.maximum(estimate.astype(np.float64) * target_std + target_mean, 0.0)
                    }
                else:
                    if calibration is None:
                        draws = np.maximum(draws * target_std + target_mean, 0.0)
                    else:
                        draws = calibration.point(draws, target_mean, target_std)[0]
                    out = {"mean": draws.mean(0), "std": draws.std(0)}
                if calibration is not None:
                    out["lower"], out["upper"] = calibration.bounds(point, scale, library, interval)
                    for level in extra_levels:
                        out[("lower", level)], out[("upper", level)] = calibration.bounds(point, scale, library, level)
                        out[("gene_lower", level)], out[("gene_upper", level)] = calibration.bounds(
                            point, scale, library, level, per_cell=False
                        )
                write(start, stop, out)
        return without_signal


def platform_space(target_sum: float) -> str:
    """The ``output_space`` string of outputs with intervals: what the spatial platform measures."""
    return (
        f"log1p(x / L * {target_sum:g}) of the spatial platform: x the value in adata_st, L the cell's total over "
        "the measured panel genes"
    )
