"""`training_history`: loss curves of a trained SpaLSTF model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .._validation import format_names
from ._docs import show_save_doc
from ._utils import SavePath, check_ax, finish, new_figure

#: Titles of the terms the training plan logs (``train_<term>`` / ``validation_<term>`` in ``model.history``).
TERM_TITLES = {
    "loss": "total loss",
    "mse": "diffusion noise MSE",
    "kl": "KL term",
    "mean_mse": "posterior-mean MSE",
}
_SPLITS = (("train", "train", "C0"), ("validation", "validation", "C1"))


def _history(model: Any) -> dict[str, pd.DataFrame]:
    history = getattr(model, "history", None)
    if history is None or len(history) == 0 or all(len(v) == 0 for v in history.values()):
        raise RuntimeError(
            "The model has no training history (it is not trained yet); call `model.train()` first, or pass a model "
            "returned by a training run."
        )
    return history


@show_save_doc
def training_history(
    model: Any,
    terms: str | Sequence[str] = ("loss", "mse", "kl", "mean_mse"),
    *,
    log_y: bool | None = None,
    panel_size: tuple[float, float] = (3.2, 2.6),
    ax: Axes | None = None,
    show: bool = True,
    save: SavePath = None,
    return_fig: bool = False,
    dpi: float | None = None,
) -> Figure | Axes | list[Axes] | None:
    """Loss curves of a trained :class:`~spalstf.model.SpaLSTF`, one panel per loss term, epochs on x.

    The training plan logs, per epoch, the total loss (``loss`` = ``mse`` + ``kl_weight`` * ``kl`` + ``mean_mse``),
    the diffusion's noise-prediction MSE (``mse``), its KL term (``kl``) and the MSE of the posterior-mean estimate
    (``mean_mse``), on the training cells and, when the model was trained with a validation split, on the validation
    cells (a second line).

    Parameters
    ----------
    model
        A trained model, or any object whose ``history`` is a dict of DataFrames indexed by epoch, keyed
        ``train_<term>`` (and optionally ``validation_<term>``), as scvi-tools models keep it.
    terms
        Loss terms to draw, one panel each.
    log_y
        Logarithmic y axes: ``None`` (default) per panel, when the term is positive and spans more than a factor of
        10 (the first epochs would otherwise flatten the rest of the curve); ``True``/``False`` for all panels.
    panel_size
        Size of one panel in inches.
    ax
        Axes to draw into; only with a single term.
    {show_save}

    Returns
    -------
    The figure if ``return_fig``; else ``None`` if ``show``; else the list of axes (the Axes when ``ax`` was given).

    Raises
    ------
    RuntimeError
        If the model has no history (untrained).
    KeyError
        If a term was not logged (the error names it and the logged terms).

    Notes
    -----
    Reads ``model.history["train_<term>"]`` and ``model.history["validation_<term>"]``.

    Examples
    --------
    >>> import spalstf as sp
    >>> mdata = sp.datasets.drosophila_embryo()
    >>> adata_sc = mdata["rna"]
    >>> sp.model.SpaLSTF.setup_anndata(adata_sc)
    >>> model = sp.model.SpaLSTF(adata_sc, mdata["spatial"], n_top_genes=50)  # doctest: +SKIP
    >>> model.train(max_epochs=20)  # doctest: +SKIP
    >>> sp.pl.training_history(model)  # doctest: +SKIP
    """
    history = _history(model)
    terms = [terms] if isinstance(terms, str) else list(terms)
    if not terms:
        raise ValueError("`terms` is empty; pass at least one loss term.")
    logged = sorted({k.split("_", 1)[1] for k in history if k.startswith("train_")})
    missing = [t for t in terms if f"train_{t}" not in history]
    if missing:
        raise KeyError(f"Loss term(s) {format_names(missing)} not in model.history; logged terms: {logged}.")
    check_ax(ax, len(terms), "training_history")

    fig, ax = new_figure((panel_size[0] * len(terms), panel_size[1]), ax)
    axes = [ax] if ax is not None else list(np.atleast_1d(fig.subplots(1, len(terms))))
    for term, term_ax in zip(terms, axes, strict=True):
        for split, label, color in _SPLITS:
            frame = history.get(f"{split}_{term}")
            if frame is None or len(frame) == 0:
                continue
            series = frame.iloc[:, 0] if isinstance(frame, pd.DataFrame) else pd.Series(frame)
            epochs = np.asarray(series.index, dtype=float)
            term_ax.plot(
                epochs, series.to_numpy(dtype=float), label=label, color=color, marker="." if len(series) < 30 else None
            )
        term_ax.set_title(TERM_TITLES.get(term, term))
        term_ax.set_xlabel("epoch")
        values = np.concatenate([line.get_ydata() for line in term_ax.get_lines()])
        values = values[np.isfinite(values)]
        use_log = log_y
        if use_log is None:
            use_log = values.size > 0 and values.min() > 0 and values.max() / values.min() > 10
        if use_log and values.size and values.min() > 0:
            term_ax.set_yscale("log")
            plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, not 5 x 10^-1
            term_ax.yaxis.set_major_formatter(plain)
            term_ax.yaxis.set_minor_formatter(plain if values.max() / values.min() < 10 else NullFormatter())
        term_ax.grid(alpha=0.3)
        if len(term_ax.get_lines()) > 1:
            term_ax.legend(fontsize="small")
    return finish(
        fig,
        ax if ax is not None else axes,
        func="training_history",
        show=show,
        save=save,
        return_fig=return_fig,
        dpi=dpi,
    )
