"""The one way in from :func:`~spalstf.tl.spalstf_impute` to the model: route the options, train, impute.

:func:`fit_and_impute` takes the spatial input (prepared), the reference, the options of ``spalstf_impute`` routed by
the tables of :mod:`~spalstf.model._defaults` (:func:`route_options`) and an :class:`ImputeRequest`; everything is
checked before the model is built, so a typo never costs a training. What ``tl`` needs of the model besides the
public class and the table of defaults comes from here: the entry point, the prepared spatial input, the request
and the result, and the shared parameter docs.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import anndata as ad
import pandas as pd
from anndata import AnnData

from .._state import global_seed
from .._streaming import check_out_path
from .._validation import check_in_memory, check_nonempty, get_matrix
from ._defaults import DEFAULT_PRESET, MODEL_ARGUMENTS, PRESETS, TRAIN_ARGUMENTS, check_option, check_preset
from ._imputation import ImputationResult, ImputeRequest, fill_parameters
from ._model import SpaLSTF, check_reference_counts
from ._spatial_input import SpatialInput

__all__ = ["ImputationResult", "ImputeRequest", "SpatialInput", "fill_parameters", "fit_and_impute", "route_options"]


def _trainer_arguments() -> set[str]:
    """Keyword arguments of the Lightning trainer (through scvi-tools' ``Trainer``), where ``train`` passes the rest."""
    from lightning.pytorch import Trainer as LightningTrainer
    from scvi.train import Trainer as ScviTrainer

    names: set[str] = set()
    for init in (ScviTrainer.__init__, LightningTrainer.__init__):
        names.update(
            name
            for name, p in inspect.signature(init).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )
    return names


def route_options(options: dict[str, Any], also_valid: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``spalstf_impute``'s ``**options`` into model options and training options.

    Model options are :data:`~spalstf.model._defaults.MODEL_ARGUMENTS` (parameters of :class:`SpaLSTF`), training
    options :data:`~spalstf.model._defaults.TRAIN_ARGUMENTS` (of :meth:`SpaLSTF.train`) and the Lightning trainer's
    arguments, which ``train`` passes on. An option that none of them takes raises a `TypeError` naming it and the
    closest valid name (among these and ``also_valid``, the caller's own arguments), before anything is computed.
    """
    trainer = _trainer_arguments()
    unknown = [k for k in options if k not in MODEL_ARGUMENTS and k not in TRAIN_ARGUMENTS and k not in trainer]
    if unknown:
        valid = sorted({*MODEL_ARGUMENTS, *TRAIN_ARGUMENTS, *trainer, *also_valid})
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f". Valid options: {valid}."
        raise TypeError(f"spalstf_impute() got an unexpected keyword argument {unknown[0]!r}{hint}")
    model_options = {k: v for k, v in options.items() if k in MODEL_ARGUMENTS}
    train_options = {k: v for k, v in options.items() if k not in model_options}
    return model_options, train_options


def _diffusion_steps(model_options: dict[str, Any]) -> int:
    """The diffusion steps of the model that ``model_options`` will build (checked before training)."""
    preset = model_options.get("preset") or DEFAULT_PRESET
    check_preset(preset)
    given = model_options.get("n_diffusion_steps")
    if given is None:
        return PRESETS[preset]["n_diffusion_steps"]
    check_option("n_diffusion_steps", given)
    return given


def registration_view(adata: AnnData, layer: str | None) -> AnnData:
    """A new AnnData sharing the reference's matrix, so registration never writes into the user's object."""
    check_in_memory(adata, "adata_sc")
    X = get_matrix(adata, layer, "adata_sc", "layer_sc")
    return ad.AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names.copy()), var=adata.var.copy())


def fit_and_impute(
    spatial: SpatialInput,
    adata_sc: AnnData,
    *,
    genes: Sequence[str] | None,
    layer_sc: str | None,
    model: SpaLSTF | None,
    request: ImputeRequest,
    options: dict[str, Any],
    also_valid: Iterable[str] = (),
) -> tuple[SpaLSTF, ImputationResult]:
    """Train a model on ``adata_sc`` for ``spatial`` (or reuse ``model``) and impute as ``request`` says.

    The options are routed (:func:`route_options`) and ``request`` is checked before the model is built. Training is
    seeded with ``request.random_state``; the caller's random generators are restored afterwards. The networks are
    not trained when nothing asked for uses them (a blend without ``"network"`` and one sample): the closed-form
    blend is complete when the model is built (:meth:`SpaLSTF.skip_training`). Returns the model
    and the result of its imputation worker (the file is written but not opened when ``request.out`` is given).
    """
    check_nonempty(adata_sc, "adata_sc")
    model_options, train_options = route_options(options, also_valid)
    n_diffusion_steps = _diffusion_steps(model_options) if model is None else model.module.schedule.n_steps
    request.check(n_diffusion_steps, batch_size_name="impute_batch_size")
    if request.out is not None:
        check_out_path(request.out, request.overwrite, [spatial.adata])  # fail before training
    if model is None:
        if model_options.get("require_counts", True):  # here, where adata_sc.raw can still be named in the fix
            check_reference_counts(get_matrix(adata_sc, layer_sc, "adata_sc", "layer_sc"), adata_sc)
        reference = registration_view(adata_sc, layer_sc)
        # seeded training; the caller's generators are restored afterwards (registration draws from numpy's too)
        with global_seed(request.random_state):
            SpaLSTF.setup_anndata(reference)
            model = SpaLSTF(reference, spatial, genes=genes, st_layer=spatial.layer, **model_options)
            if "network" in model.settings["blend"] or request.n_samples > 1:
                train_options.setdefault("enable_progress_bar", request.progress_bar)
                model.train(**train_options)
            else:  # nothing asked for uses the networks: the closed-form blend is fitted already
                reason = "the blend has no network part and no diffusion draws were asked for"
                given = sorted(k for k in train_options if k != "enable_progress_bar")
                if given:
                    warnings.warn(
                        f"The training options {given} are not used: {reason}, so no network is trained. Add "
                        "'network' to blend= or ask for n_samples > 1 to train one.",
                        UserWarning,
                        stacklevel=4,
                    )
                model.skip_training(reason=reason)
    elif options:
        raise ValueError(f"Options {sorted(options)} only apply when training; `model` is already trained.")
    elif genes is not None and list(genes) != model.imputed_genes:
        raise ValueError("`genes` differs from the genes the passed `model` imputes; pass genes=None.")
    return model, model._impute(spatial, request)
