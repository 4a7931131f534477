"""`SpaLSTF`: the user-facing model class (AnnData registration, training, imputation, save/load)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, NumericalObsField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from .._constants import INDICES_OBS_KEY
from .._expression import is_count_matrix
from .._genes import GenePlan, plan_genes
from .._logging import quiet_libraries
from .._validation import (
    check_counts,
    check_in_memory,
    check_nonempty,
    check_values,
    format_names,
    get_matrix,
)
from . import _calibration as cal
from . import _preprocessing as prep
from ._condition_mixin import ConditionMixin
from ._defaults import (
    DEFAULT_PRESET,
    MIN_MEASURED_GENES,
    MODULE_OPTIONS,
    PRESETS,
    Attention,
    Context,
    Preset,
    check_preset,
    presets_table,
    resolve,
)
from ._draws_mixin import DrawsMixin
from ._impute_mixin import ImputationMixin
from ._interval_mixin import IntervalMixin
from ._module import SpaLSTFModule
from ._preprocessing import Alignment
from ._spatial_input import SpatialInput
from ._training_mixin import TrainingMixin
from ._training_plan import SpaLSTFTrainingPlan

logger = logging.getLogger(__name__)


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


def check_reference_counts(X: Any, adata: AnnData) -> None:
    """Raise a `ValueError` when the reference values ``X`` are not counts, naming where to pass them.

    The fix names the layer arguments and, when ``adata.raw`` holds counts, ``adata.raw.to_adata()``.
    """
    where = (
        "layer_sc= of sp.tl.spalstf_impute or layer= of SpaLSTF.setup_anndata, naming the layer that holds them, "
        "e.g. 'counts'"
    )
    if adata.raw is not None and is_count_matrix(adata.raw.X):
        where += (
            "; adata.raw holds counts: pass `adata.raw.to_adata()` as the reference (check that its genes are those "
            "you mean)"
        )
    check_counts(X, "adata (reference)", where)


def _check_reference_cells(adata: AnnData, saved: dict[str, Any]) -> None:
    """Raise a `ValueError` when ``adata`` has another number of cells than the reference the model was saved with.

    The model keeps every reference cell's profile (the neighbour context), so it is loaded with the same cells.
    """
    profiles = (saved.get("model_state_dict") or {}).get("ref_profiles")
    if profiles is None:
        return
    n_trained = int(profiles.shape[0])
    if adata.n_obs != n_trained:
        raise ValueError(
            f"The model was trained on {n_trained} reference cells, but `adata` has {adata.n_obs}. The model keeps "
            "every reference cell (their profiles form the neighbour context), so pass the reference it was trained "
            "with, all its cells in the same order."
        )


class SpaLSTF(ImputationMixin, IntervalMixin, DrawsMixin, ConditionMixin, TrainingMixin, BaseModelClass):
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
        Requested genes that the panel measured are imputed and left out of the condition (a log line says so).
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
        e.g. in situ intensities that are not proportional to molecule counts), or ``"auto"``: normalise unless the
        values are clearly not counts, i.e. when at most 1% of the nonzero values on the measured genes are
        non-integer (:data:`~spalstf.model._defaults.MAX_NON_INTEGER_FRACTION`; a `UserWarning` names the fraction
        when some are). The choice made is logged and recorded as a bool in ``model.settings["normalize_st"]`` (and
        in ``uns[key]["params"]`` of :func:`~spalstf.tl.spalstf_impute`).
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
        preset: Preset = DEFAULT_PRESET,
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
            check_reference_counts(ref_X, adata)

        if gene_plan is not None:
            plan = GenePlan(tuple(gene_plan["measured"]), tuple(gene_plan["measured_st"]), tuple(gene_plan["imputed"]))
        elif adata_st is None:
            raise ValueError("Pass `adata_st` (the spatial data) to build a new SpaLSTF model.")
        else:
            spatial = SpatialInput.prepare(adata_st, st_layer, "st_layer")
            ranking = adata.var["dispersions_norm"] if "dispersions_norm" in adata.var else None
            plan = plan_genes(
                spatial.var_names,
                adata.var_names,
                genes,
                case_sensitive=case_sensitive,
                n_top_genes=n_top_genes,
                gene_ranking=ranking,
            )
            if len(plan.measured) < MIN_MEASURED_GENES:
                raise ValueError(
                    f"adata_st shares {len(plan.measured)} gene(s) with the reference to condition on "
                    f"({format_names(list(plan.measured_st))}); SpaLSTF needs at least {MIN_MEASURED_GENES}: it finds "
                    "a cell's nearest reference cells by cosine similarity over the measured genes, and over one gene "
                    "every cell with signal is equally similar. Pass a panel of two or more measured genes."
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
            st_alignment, st_normalized = self._fit_st_alignment(spatial, self.settings["normalize_st"])
            self.settings["normalize_st"] = bool(st_normalized)  # what is used, not "auto"
        else:  # restored by load_state_dict
            st_alignment = prep.alignment_placeholders(self.alignment, len(plan.measured))
            st_normalized = True
        ref_profiles, stats = self._reference_profiles(adata, plan)
        self.module = self._module_cls(
            torch.from_numpy(ref_profiles),
            len(plan.measured),
            **{k: self.settings[k] for k in MODULE_OPTIONS},
        )
        self._record_clamped_neighbours(adata.n_obs)
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

    def _record_clamped_neighbours(self, n_ref: int) -> None:
        """Record the context length the module uses (it caps ``n_neighbors`` at the reference cells but one).

        A cell's context holds other reference cells only, so at most ``n_ref - 1``; a larger request is recorded as
        used in :attr:`settings` (and so in ``uns[key]["params"]``) with a `UserWarning` saying so.
        """
        used, asked = int(self.module.n_neighbors), int(self.settings["n_neighbors"])
        if used != asked:
            warnings.warn(
                f"n_neighbors={asked} exceeds the {n_ref} reference cells less one (a cell's context holds other "
                f"reference cells only); {used} are used and recorded. Pass n_neighbors <= {used} to silence this.",
                UserWarning,
                stacklevel=3,
            )
        self.settings["n_neighbors"] = used

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
        model's order and the number of cells the model was trained on. If loading fails anyway, ``adata`` is left
        as it was (scvi-tools registers it in place).

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
            _check_reference_cells(adata, saved)
            obs_columns, uns_keys = list(adata.obs.columns), set(adata.uns.keys())
        try:
            with quiet_libraries():  # scvi-tools' "File ... already downloaded"
                model = super().load(
                    str(dir_path), adata=adata, accelerator=accelerator, device=device, prefix=prefix, **kwargs
                )
        except Exception:
            if adata is not None:  # undo scvi-tools' in-place registration
                for column in [c for c in adata.obs.columns if c not in obs_columns]:
                    del adata.obs[column]
                for key in [k for k in adata.uns.keys() if k not in uns_keys]:
                    del adata.uns[key]
            raise
        # the normalisation restored with the state ("auto" was resolved when the model was built)
        model.settings["normalize_st"] = bool(model.module.st_normalized)
        return model

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
        scvi-tools' warning that the values are not counts is not shown: :class:`SpaLSTF` checks them itself
        (``require_counts``) and names the fix. As every scvi-tools model, this adds ``adata.obs["_indices"]`` (the
        row number of each cell) and scvi-tools' registration keys in ``adata.uns``.
        :func:`spalstf.tl.spalstf_impute` registers a lightweight copy instead, so it never changes the user's
        objects.

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
        with warnings.catch_warnings():  # SpaLSTF checks the counts itself, with the fix (require_counts)
            warnings.filterwarnings("ignore", message=".*does not contain unnormalized count data")
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
