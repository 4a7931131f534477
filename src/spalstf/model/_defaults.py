"""The one table of SpaLSTF's defaults: architecture, loss and training settings of each preset.

:class:`~spalstf.model.SpaLSTF` resolves every option it is not given from here (:func:`resolve`), the module
(:class:`~spalstf.model._module.SpaLSTFModule`) and the training plan take explicit values only, and the docstring of
the model shows :func:`presets_table`. A value that depends on the problem size is a rule (a function of the number
of model genes), written here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from .._expression import TARGET_SUM

Preset = Literal["cpu", "paper"]
#: Values of the options ``sampler``, ``context`` and ``attention``.
Sampler = Literal["ddim", "ddpm"]
Context = Literal["bilstm", "none"]
Attention = Literal["xca", "softmax"]

#: Above this many model genes the paper uses hidden 1024 and batch 512 (else 512 and 2048).
HIGH_DIM_GENES = 500
#: The published code uses KL weight 2.8 below this many model genes and 0.02 from it on.
KL_LOW_DIM_GENES = 120


def _by_size(low: Any, high: Any) -> Callable[[int], Any]:
    rule = lambda n_genes: high if n_genes > HIGH_DIM_GENES else low
    rule.__doc__ = f"{low} for <= {HIGH_DIM_GENES} model genes, else {high}"
    return rule


def _kl_rule(n_genes: int) -> float:
    return 2.8 if n_genes < KL_LOW_DIM_GENES else 0.02


_kl_rule.__doc__ = f"2.8 below {KL_LOW_DIM_GENES} model genes, else 0.02"

#: The parts the point estimate can blend (option ``blend``).
BLEND_PARTS = ("ridge", "neighbours", "network")

#: Settings shared by every preset.
_COMMON: dict[str, Any] = {
    "n_tokens": 8,
    "kl_weight": _kl_rule,
    "ridge_alphas": (0.001, 0.01, 0.1, 1.0),
    "context": "bilstm",
    "attention": "xca",
    "normalize_st": "auto",
    "target_sum": TARGET_SUM,
    "weight_decay": 0.0,
}

#: Per preset. ``"cpu"`` (default) is sized to train and impute the benchmark pairs in about a minute on one laptop
#: CPU core: a small network, a fixed budget of optimiser steps (so the time does not grow with the reference), the
#: quantile alignment and the blend of ridge, neighbour average and network as the estimate. ``"paper"`` is the
#: published configuration: hidden 512 for <= 500 genes (1024 above), batch 2048 (512), 1200 epochs, T = 1500,
#: lr 1e-4, per-cell max-abs scaling of the condition, and the network alone as the estimate.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        **_COMMON,
        "n_neighbors": 16,
        "n_hidden": 64,
        "n_blocks": 2,
        "n_heads": 4,
        "n_lstm_hidden": 64,
        "n_lstm_layers": 1,
        "n_diffusion_steps": 1000,
        "perturbation_std": 1.0,
        "blend": ("ridge", "neighbours", "network"),
        "alignment": "quantile",
        "cell_scaling": False,
        "max_epochs": None,
        "max_steps": 600,
        "batch_size": 256,
        "lr": 1e-3,
    },
    "paper": {
        **_COMMON,
        "n_neighbors": 16,
        "n_hidden": _by_size(512, 1024),
        "n_blocks": 6,
        "n_heads": 16,
        "n_lstm_hidden": 128,
        "n_lstm_layers": 2,
        "n_diffusion_steps": 1500,
        "perturbation_std": 0.5,
        "blend": ("network",),
        "alignment": "zscore",
        "cell_scaling": True,
        "max_epochs": 1200,
        "max_steps": None,
        "batch_size": _by_size(2048, 512),
        "lr": 1e-4,
    },
}

#: ``normalize_st="auto"`` treats the spatial values as counts (and library-normalises them) when at most this
#: fraction of their nonzero entries is non-integer; a few non-integer entries (a corrected or averaged value) warn,
#: naming the fraction, but do not switch the normalisation of every cell.
MAX_NON_INTEGER_FRACTION = 0.01

#: Gradient-norm clipping of training (``SpaLSTF.train(gradient_clip_val=...)`` overrides it).
GRADIENT_CLIP_VAL = 1.0

#: Defaults of imputation (:meth:`~spalstf.model.SpaLSTF.impute` and :func:`~spalstf.tl.spalstf_impute`).
SAMPLING_STEPS = 25
IMPUTE_BATCH_SIZE = 1024

#: Options of the module (network, diffusion, loss), of the preprocessing and of training.
MODULE_OPTIONS = (
    "n_neighbors",
    "n_hidden",
    "n_blocks",
    "n_heads",
    "n_tokens",
    "n_lstm_hidden",
    "n_lstm_layers",
    "n_diffusion_steps",
    "kl_weight",
    "perturbation_std",
    "ridge_alphas",
    "context",
    "attention",
    "blend",
)
PREPROCESSING_OPTIONS = ("alignment", "normalize_st", "cell_scaling", "target_sum")
TRAINING_OPTIONS = ("max_epochs", "max_steps", "batch_size", "lr", "weight_decay")

#: Fewest measured genes a model conditions on: the neighbour search is by cosine similarity over them.
MIN_MEASURED_GENES = 2

#: The preset of :class:`~spalstf.model.SpaLSTF` when none is named.
DEFAULT_PRESET: Preset = "cpu"
#: Parameters of :class:`~spalstf.model.SpaLSTF` that :func:`~spalstf.tl.spalstf_impute` takes as ``**options``
#: (the data, the layer and the genes it sets itself).
MODEL_ARGUMENTS = ("preset", "case_sensitive", "n_top_genes", "require_counts", *MODULE_OPTIONS, *PREPROCESSING_OPTIONS)
#: Parameters of :meth:`~spalstf.model.SpaLSTF.train` that :func:`~spalstf.tl.spalstf_impute` takes as ``**options``;
#: the preset's training settings but ``weight_decay`` (the preset's alone), and the device and split options. Its
#: other options go to the Lightning trainer.
TRAIN_ARGUMENTS = (
    *(name for name in TRAINING_OPTIONS if name != "weight_decay"),
    "accelerator",
    "devices",
    "train_size",
    "validation_size",
    "datasplitter_kwargs",
    "plan_kwargs",
)


# validation ------------------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float | np.floating)) and np.isfinite(float(value))


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


_POSITIVE_REAL = ((lambda v: _is_real(v) and v > 0), "a finite number > 0")
_NONNEGATIVE_REAL = ((lambda v: _is_real(v) and v >= 0), "a finite number >= 0")


def _choice(*options: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, str) and v in options), "one of " + ", ".join(repr(o) for o in options)


#: Largest seed (NumPy's global generator takes 32-bit seeds).
MAX_SEED = 2**32 - 1

#: What every option accepts: a test and its description (the error message says it).
_FLAG = ((lambda v: isinstance(v, bool | np.bool_)), "True or False")

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_neighbors": _int_at_least(1),
    "n_hidden": _int_at_least(1),
    "n_blocks": _int_at_least(1),
    "n_heads": _int_at_least(1),
    "n_tokens": _int_at_least(1),
    "n_lstm_hidden": _int_at_least(1),
    "n_lstm_layers": _int_at_least(1),
    "n_diffusion_steps": _int_at_least(2),
    "kl_weight": _NONNEGATIVE_REAL,
    "perturbation_std": _NONNEGATIVE_REAL,
    "ridge_alphas": (
        lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(_is_real(a) and a > 0 for a in v),
        "a non-empty list of finite numbers > 0",
    ),
    "context": _choice("bilstm", "none"),
    "attention": _choice("xca", "softmax"),
    "blend": (
        lambda v: (
            isinstance(v, list | tuple)
            and len(v) > 0
            and len(set(v)) == len(v)
            and all(isinstance(b, str) and b in BLEND_PARTS for b in v)
        ),
        f"a non-empty list of distinct parts among {', '.join(map(repr, BLEND_PARTS))}",
    ),
    "alignment": _choice("quantile", "zscore"),
    "normalize_st": ((lambda v: isinstance(v, bool | np.bool_) or v == "auto"), "True, False or 'auto'"),
    "cell_scaling": _FLAG,
    "target_sum": _POSITIVE_REAL,
    "weight_decay": _NONNEGATIVE_REAL,
    "max_epochs": _int_at_least(1),
    "max_steps": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "lr": _POSITIVE_REAL,
    # imputation
    "random_state": (
        lambda v: _is_int(v) and 0 <= v <= MAX_SEED,
        f"an integer between 0 and {MAX_SEED} (None is not accepted: results are always seeded, so pass the seed)",
    ),
    "n_samples": _int_at_least(1),
    "n_sampling_steps": _int_at_least(1),
    "sampler": _choice("ddim", "ddpm"),
    # intervals
    "interval": ((lambda v: v is None or (_is_real(v) and 0 < v < 1)), "None or a number strictly between 0 and 1"),
    "n_calibration_folds": _int_at_least(2),
    "n_calibration_repeats": _int_at_least(1),
    "n_strata": _int_at_least(1),
    "max_calibration_cells": _int_at_least(10),
    # outputs and tests
    "overwrite": _FLAG,
    "copy": _FLAG,
    "two_tailed": _FLAG,
}

#: Default central level of the intervals of :func:`~spalstf.tl.spalstf_impute` (``interval=``).
INTERVAL_LEVEL = 0.9

#: Default number of inner folds over the panel genes and of strata of the predicted measurement.
N_CALIBRATION_FOLDS = 5
N_STRATA = 5
#: Default number of inner splits into folds (each a different random split); the calibration pools them. One split
#: makes the reliability map depend on which panel genes happen to share a fold (``benchmarks/reliability_splits.py``).
N_CALIBRATION_REPEATS = 3
#: Spatial cells at most sampled by the calibration (evenly spaced over all cells; those without signal are dropped).
MAX_CALIBRATION_CELLS = 10_000
#: The calibration holds every inner fold's predictions until the pooled line is fitted: by default it samples at most
#: this many entries (cells x measured genes x splits), so that its memory does not grow with the panel (about 50 bytes
#: an entry), but never fewer than :data:`MIN_CALIBRATION_CELLS` cells.
MAX_CALIBRATION_ENTRIES = 3_000_000
MIN_CALIBRATION_CELLS = 1_000


def default_calibration_cells(n_measured: int, n_repeats: int) -> int:
    """Spatial cells the calibration samples by default: :data:`MAX_CALIBRATION_CELLS`, fewer for large panels.

    At most :data:`MAX_CALIBRATION_ENTRIES` entries (cells x measured genes x splits), never fewer than
    :data:`MIN_CALIBRATION_CELLS` cells.

    Examples
    --------
    >>> default_calibration_cells(67, 3), default_calibration_cells(1000, 3), default_calibration_cells(5000, 3)
    (10000, 1000, 1000)
    >>> default_calibration_cells(500, 3)
    2000
    """
    budget = MAX_CALIBRATION_ENTRIES // max(1, n_measured * n_repeats)
    return int(min(MAX_CALIBRATION_CELLS, max(MIN_CALIBRATION_CELLS, budget)))


def check_option(name: str, value: Any, argument: str | None = None) -> None:
    """Raise a `ValueError` naming ``argument`` (default ``name``) and what it accepts when ``value`` breaks its rule.

    Examples
    --------
    >>> check_option("n_hidden", 64)
    >>> check_option("n_hidden", 0)
    Traceback (most recent call last):
    ...
    ValueError: n_hidden must be an integer >= 1, got 0.
    """
    test, description = RULES[name]
    if not test(value):
        raise ValueError(f"{argument or name} must be {description}, got {value!r}.")


def check_preset(preset: str) -> None:
    """Raise a `ValueError` listing the presets when ``preset`` is not one of them."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}.")


def resolve(preset: str, n_genes: int, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of ``preset`` for a model of ``n_genes`` genes, with the non-``None`` values of ``given``.

    Raises
    ------
    ValueError
        Unknown preset (the message lists the valid ones).
    """
    check_preset(preset)
    out = {}
    for name, value in PRESETS[preset].items():
        if given.get(name) is not None:
            check_option(name, given[name])
            out[name] = given[name]
        else:
            out[name] = value(n_genes) if callable(value) else value
    return out


def _describe(value: Any) -> str:
    if callable(value):
        return value.__doc__
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(_describe(v) for v in value)
    return str(value)


def presets_table() -> str:
    """The presets as a reStructuredText list table (one row per setting), for docstrings and docs."""
    names = list(PRESETS)
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - setting"]
    lines += [f"     - ``{p}``" for p in names]
    for setting in PRESETS[names[0]]:
        lines.append(f"   * - ``{setting}``")
        lines += [f"     - {_describe(PRESETS[p][setting])}" for p in names]
    return "\n".join(lines)
