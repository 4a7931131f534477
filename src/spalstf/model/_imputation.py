"""What an imputation is asked for and what it gives: the options (checked in one place) and the one result type.

:class:`ImputeRequest` holds the options of :meth:`~spalstf.model.SpaLSTF.impute` and of
:func:`~spalstf.tl.spalstf_impute` (the two entry points build one each and pass it on), :class:`ImputationResult`
is what the worker returns whatever the layout (in memory or an ``out=`` file), and :class:`Imputation` /
:class:`IntervalImputation` are the named tuples :meth:`~spalstf.model.SpaLSTF.impute` returns, which unpack as
``mean, std`` and ``mean, std, lower, upper``. :data:`IMPUTE_PARAMETERS` documents the shared options once, for both
entry points' docstrings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from .._constants import IMPUTED_KEY
from ._defaults import IMPUTE_BATCH_SIZE, SAMPLING_STEPS, Sampler, check_option


class Imputation(NamedTuple):
    """Imputed values of :meth:`~spalstf.model.SpaLSTF.impute` without intervals (unpacks as ``mean, std``).

    Attributes
    ----------
    mean
        Cells x imputed genes: the posterior-mean estimate, or the mean over diffusion draws.
    std
        Cells x imputed genes: standard deviation over the draws (``None`` with one sample).

    Examples
    --------
    >>> mean, std = model.impute(adata_st)  # doctest: +SKIP
    >>> result = model.impute(adata_st, n_samples=8)  # doctest: +SKIP
    >>> result.std.mean().sort_values().tail()  # the genes with the most spread over draws  # doctest: +SKIP
    """

    mean: pd.DataFrame
    std: pd.DataFrame | None


class IntervalImputation(NamedTuple):
    """Imputed values with calibrated intervals (unpacks as ``mean, std, lower, upper``).

    Attributes
    ----------
    mean
        Cells x imputed genes, in the platform's space ``log1p(x / L * target_sum)``.
    std
        Standard deviation over the draws (``None`` with one sample).
    lower, upper
        Bounds of the central interval (NaN for cells without signal).

    Examples
    --------
    >>> mean, std, lower, upper = model.impute(adata_st, interval=0.9)  # doctest: +SKIP
    >>> result = model.impute(adata_st, interval=0.9)  # doctest: +SKIP
    >>> (result.upper - result.lower).median()  # median interval width per gene  # doctest: +SKIP
    """

    mean: pd.DataFrame
    std: pd.DataFrame | None
    lower: pd.DataFrame
    upper: pd.DataFrame


@dataclass(frozen=True)
class ImputeRequest:
    """The options of one imputation (see :data:`IMPUTE_PARAMETERS`), checked by :meth:`check` before any work.

    ``extra_levels`` (benchmarks: the calibration curve) asks for the bounds at more levels in the same pass, with a
    per-cell and a one-width-per-gene version each; ``key_added`` names the metadata in an ``out=`` file.
    """

    n_samples: int = 1
    sampler: Sampler = "ddim"
    n_sampling_steps: int = SAMPLING_STEPS
    batch_size: int = IMPUTE_BATCH_SIZE
    random_state: int = 0
    progress_bar: bool = True
    interval: float | None = None
    out: str | os.PathLike | None = None
    overwrite: bool = False
    key_added: str = IMPUTED_KEY
    extra_levels: tuple[float, ...] = ()

    def check(self, n_diffusion_steps: int | None = None, batch_size_name: str = "batch_size") -> None:
        """Raise a `ValueError` naming the argument when an option is out of range (before any work is done).

        A ``key_added`` that is not a string raises a `TypeError`.

        When DDIM draws are made, ``n_sampling_steps`` may not exceed the model's ``n_diffusion_steps`` (when known):
        it is used as given, never clamped.
        """
        if not isinstance(self.key_added, str):
            raise TypeError(
                f"key_added must be a non-empty string (the obsm/uns key of the result), got "
                f"{type(self.key_added).__name__} {self.key_added!r}."
            )
        if not self.key_added:
            raise ValueError("key_added must be a non-empty string (the obsm/uns key of the result), got ''.")
        check_option("random_state", self.random_state)
        check_option("n_samples", self.n_samples)
        check_option("sampler", self.sampler)
        check_option("n_sampling_steps", self.n_sampling_steps)
        if (
            n_diffusion_steps is not None
            and self.n_samples > 1
            and self.sampler == "ddim"
            and self.n_sampling_steps > n_diffusion_steps
        ):
            raise ValueError(
                f"n_sampling_steps must be at most the model's n_diffusion_steps ({n_diffusion_steps}), got "
                f"{self.n_sampling_steps}."
            )
        check_option("batch_size", self.batch_size, batch_size_name)
        check_option("interval", self.interval)
        if self.extra_levels and (self.interval is None or self.out is not None):
            raise ValueError("extra_levels needs interval= and an in-memory result.")
        for level in self.extra_levels:
            check_option("interval", level, "extra_levels")

    def output_names(self) -> list[Any]:
        """Names of the arrays each chunk produces: ``"mean"``, ``"std"``, the bounds and the extra levels'."""
        names: list[Any] = ["mean"]
        if self.n_samples > 1:
            names.append("std")
        if self.interval is not None:
            names += ["lower", "upper"]
        for level in self.extra_levels:
            names += [("lower", level), ("upper", level), ("gene_lower", level), ("gene_upper", level)]
        return names


@dataclass
class ImputationResult:
    """What the imputation worker returns, in memory or written to a file.

    Attributes
    ----------
    metadata
        The result's metadata (:func:`spalstf._outputs.result_metadata`).
    frames
        In memory: the output DataFrames by name (``"mean"``, ``"std"``, ``"lower"``, ``"upper"`` and, for each extra
        level, ``("lower", level)``, ``("upper", level)``, ``("gene_lower", level)``, ``("gene_upper", level)``);
        empty when written to a file.
    path
        The written ``.h5ad`` file (``out=``), else ``None``.
    """

    metadata: dict[str, Any]
    frames: dict[Any, pd.DataFrame] = field(default_factory=dict)
    path: Path | None = None

    def get(self, name: Any) -> pd.DataFrame | None:
        """The output ``name`` in memory, or ``None`` when it was not computed (or went to the file)."""
        return self.frames.get(name)

    def as_tuple(self) -> Imputation | IntervalImputation:
        """The in-memory outputs as :meth:`~spalstf.model.SpaLSTF.impute` returns them."""
        if "lower" in self.frames:
            return IntervalImputation(self.frames["mean"], self.get("std"), self.frames["lower"], self.frames["upper"])
        return Imputation(self.frames["mean"], self.get("std"))


#: The options both entry points take, documented once (``{name}`` fields of their docstrings).
IMPUTE_PARAMETERS: dict[str, str] = {
    "n_samples": """\
``1`` (default): the model's posterior-mean estimate, the best point prediction. ``> 1``: that many diffusion
    draws per cell (each started from seeded per-cell noise); their mean and their standard deviation (the
    uncertainty) are returned. A single diffusion draw is a sample of the posterior, not its mean, which is why it is
    not the default output.""",
    "sampler": """\
For ``n_samples > 1``. ``"ddim"``: deterministic DDIM with ``n_sampling_steps`` steps (the noise draw is the
    only randomness); ``"ddpm"``: the paper's ancestral chain over all T steps.""",
    "n_sampling_steps": """\
Steps of the DDIM sampler (at most the model's ``n_diffusion_steps``).""",
    "random_state": """\
Seed of the per-cell sampling noise (keyed by cell name, so independent of batch and order): an integer
    between 0 and 2**32 - 1. ``None`` and non-integers raise a `ValueError`: every result is seeded and
    reproducible.""",
    "interval": """\
Central level (e.g. ``0.9``) of calibrated intervals around the point estimate, or ``None`` (default). The
    model is calibrated on the measured genes of ``adata_st`` unless it was calibrated before (inner leave-genes-out
    over the panel with closed-form copies of the model, no retraining;
    :meth:`~spalstf.model.SpaLSTF.calibrate_intervals`), and every imputed gene gets an expected Spearman correlation
    with what the platform would measure (:meth:`~spalstf.model.SpaLSTF.get_gene_reliability`). The point estimate
    and the bounds are then in the platform's space ``log1p(x / L * target_sum)``; the intervals are calibrated
    around the posterior-mean estimate, also when ``n_samples > 1`` (the mean returned is then the mean of the draws,
    each mapped into that space). The bounds need not contain the point (the two sides are calibrated separately);
    an upper bound can be infinite where too few calibration scores support the level. Cells without signal (all
    measured genes zero; listed in the metadata's ``cells_without_signal``) get NaN bounds: the platform's value
    ``log1p(x / L * target_sum)`` is undefined for them (``L = 0``), and the bounds' strata need ``L``. Their point
    is still the model's estimate mapped into that space (the map needs no ``L``): a prediction from the reference
    alone, with no measurement behind it.""",
    "out": """\
Path of an ``.h5ad`` file to write the result into, chunk by chunk, so that it need not fit in memory. The
    file holds ``obs`` (index: the cell names of ``adata_st``), ``var`` (index: the imputed genes), ``X`` (float32
    mean), ``layers["std"]`` (float32 standard deviation over draws; only when ``n_samples > 1``),
    ``layers["lower"]`` and ``layers["upper"]`` (the interval; only with ``interval``) and
    ``uns["spalstf_imputed"]`` (the metadata: measured genes, settings, output space, interval and gene reliability;
    layout in :mod:`spalstf._outputs`). It is written as ``<out>.partial`` and renamed when complete.""",
    "overwrite": """\
Replace an existing ``out`` file.""",
    "progress_bar": """\
Show a progress bar over the sampling steps.""",
}


def fill_parameters(doc: str, table: dict[str, str] | None = None) -> str:
    """``doc`` with each ``{name}`` of ``table`` replaced by its text, indented as the field is.

    ``table`` defaults to :data:`IMPUTE_PARAMETERS`.
    """
    for name, text in (IMPUTE_PARAMETERS if table is None else table).items():
        field_ = "{" + name + "}"
        at = doc.find(field_)
        if at < 0:
            continue
        indent = doc[doc.rfind("\n", 0, at) + 1 : at]
        doc = doc.replace(field_, text.replace("\n    ", "\n" + indent))
    return doc
