"""The closed-form estimator: ridge ensemble and neighbour average over a reference, standardised, blended, calibrated.

:class:`ClosedFormBlend` needs no training: it is fitted on the reference profiles (aligned conditions, standardised
targets) when it is built and calibrated on them by :meth:`ClosedFormBlend.calibrate`. The interval calibration fits
one per inner fold of the measured genes (:func:`spalstf.model._calibration.inner_fold`), and
:class:`~spalstf.model._module.SpaLSTFModule` is one, extended by the learned network part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._preprocessing import evenly_spaced_rows

#: The parts of the point estimate that need no training, in the order they are blended.
CLOSED_FORM_PARTS = ("ridge", "neighbours")
#: Elements at most of the (cells x neighbours x genes) gather of the neighbour average (64 MB in float32).
GATHER_ELEMENTS = 2**24
#: Reference cells at most used for the statistics of the parts and the calibration (evenly spaced).
MAX_STATISTICS_CELLS = 4096
#: Spread over the reference cells (standardised target units, where each target has spread 1) below which a part of
#: the blend is taken as constant for a gene: it cannot rank the cells, and it is left out of that gene's blend.
MIN_PART_SPREAD = 1e-3


def full_precision(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Switch autocast off (the float32 islands of the module: distances, ridge, loss statistics)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def check_measured(n_measured: int, n_genes: int) -> None:
    """Raise a `ValueError` unless ``0 < n_measured < n_genes`` (some genes condition, the others are estimated)."""
    if not 0 < n_measured < n_genes:
        raise ValueError(f"n_measured must be in (0, {n_genes}), got {n_measured}.")


class Part(NamedTuple):
    """One part of the blend: how it predicts and how it is standardised.

    Attributes
    ----------
    predict
        ``predict(condition, neighbors, y)``: the raw part (cells x unknown genes, float32) from the cells' conditions,
        their nearest reference cells and their condition embedding (``None`` when no part needs it).
    shift, scale
        Per-gene centre and spread over the reference cells; the blend averages ``(predict(...) - shift) / scale``.
    fitted
        Whether :meth:`ClosedFormBlend.calibrate` fits ``shift`` and ``scale`` (the ridge ensemble is standardised by
        construction).
    """

    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    shift: torch.Tensor
    scale: torch.Tensor
    fitted: bool


class ClosedFormBlend(nn.Module):
    """The point estimate of the unknown genes from a reference, without training: ridge fits and nearest cells.

    The reference is a table of profiles ``[condition, target]`` per cell: aligned measured genes, standardised
    unknown genes. Two parts predict a cell's unknown genes from its condition ``c``:

    ``"ridge"``
        closed-form ridge regressions from ``c`` to the unknown genes, fitted on the reference for several penalties
        (``ridge_alphas``, as fractions of the number of reference cells) and averaged after standardisation
        (:func:`ridge_ensemble`);
    ``"neighbours"``
        the mean of the unknown genes of the cell's ``n_neighbors`` nearest reference cells (cosine distance in the
        condition space).

    Each part is standardised per gene by its spread over the reference cells, the parts of :attr:`blend` are
    averaged with equal weights, and the average is mapped back to the targets' units by a per-gene line fitted on
    the reference (:meth:`calibrate`). :meth:`part_table` holds each part's prediction and standardisation; a subclass
    adds parts to it (:class:`~spalstf.model._module.SpaLSTFModule` adds its network head) and the blend and
    :meth:`calibrate` treat them alike. The buffers (reference, ridge weights, standardisations, calibration) are the
    state that a saved module restores.

    Build it, then call :meth:`calibrate` before predicting (construction fits the ridge only).

    Parameters
    ----------
    ref_profiles
        (reference cells, genes) aligned condition (measured genes) and standardised target (imputed genes) values.
    n_measured
        Number of measured (condition) genes; the remaining columns are the unknown genes.
    n_neighbors
        Nearest reference cells of the neighbour average (at most the number of reference cells minus 1).
    ridge_alphas
        Penalties of the ridge part, as fractions of the number of reference cells.

    Examples
    --------
    >>> import torch
    >>> profiles = torch.randn(50, 6)
    >>> blend = ClosedFormBlend(profiles, 4, n_neighbors=5, ridge_alphas=(0.1, 1.0))
    >>> blend.calibrate()
    >>> blend.posterior_mean(torch.randn(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(self, ref_profiles: torch.Tensor, n_measured: int, *, n_neighbors: int, ridge_alphas: Iterable[float]):
        super().__init__()
        n_ref, n_genes = ref_profiles.shape
        check_measured(n_measured, n_genes)
        self.n_measured = n_measured
        self.n_imputed = n_genes - n_measured
        self.n_neighbors = min(n_neighbors, n_ref - 1)
        if self.n_neighbors < 1:
            raise ValueError("The reference needs at least 2 cells to build a neighbour context.")
        #: The parts averaged by the estimate (a subclass may blend others).
        self.blend: tuple[str, ...] = CLOSED_FORM_PARTS
        self.register_buffer("ref_profiles", ref_profiles.float())
        weight, shift = ridge_ensemble(self.conditions, self.targets, [a * n_ref for a in ridge_alphas])
        self.register_buffer("ridge_weight", weight)
        self.register_buffer("ridge_shift", shift)
        # per-gene centre and spread of the neighbour part, and the calibration of the blend (set by calibrate())
        for name in ("neighbour", "calibration"):
            self.register_buffer(f"{name}_shift", torch.zeros(self.n_imputed))
            self.register_buffer(f"{name}_scale", torch.ones(self.n_imputed))

    @property
    def device(self) -> torch.device:
        """Device of the reference."""
        return self.ref_profiles.device

    @property
    def conditions(self) -> torch.Tensor:
        """(reference cells, measured genes) the reference's aligned conditions (a view)."""
        return self.ref_profiles[:, : self.n_measured]

    @property
    def targets(self) -> torch.Tensor:
        """(reference cells, unknown genes) the reference's standardised targets (a view)."""
        return self.ref_profiles[:, self.n_measured :]

    # neighbours --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def find_neighbors(
        self, condition: torch.Tensor, exclude: torch.Tensor | None = None, chunk_size: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest reference cells of each cell by cosine distance in the condition space.

        Returns indices and cosine distances (``1 - cos``), nearest first; the result depends only on the cell and
        the reference. ``exclude`` gives, per query, a reference row left out of its context (a training cell's own
        row).
        """
        ref = F.normalize(self.conditions, dim=1)
        out_idx, out_dist = [], []
        # float32 even under autocast: a reduced-precision similarity matmul would reorder near neighbours
        with full_precision(ref.device):
            for start in range(0, condition.shape[0], chunk_size):
                q = F.normalize(condition[start : start + chunk_size].to(ref), dim=1)
                sim = q @ ref.T
                if exclude is not None:
                    rows = torch.arange(q.shape[0], device=q.device)
                    sim[rows, exclude[start : start + chunk_size]] = -float("inf")
                top, idx = torch.topk(sim, self.n_neighbors, dim=1, largest=True, sorted=True)
                out_idx.append(idx)
                out_dist.append(1.0 - top)
        return torch.cat(out_idx), torch.cat(out_dist)

    def statistics_rows(self) -> torch.Tensor:
        """At most :data:`MAX_STATISTICS_CELLS` evenly spaced reference rows: the cells the statistics are fitted on.

        The grid is laid in float32 (:func:`~spalstf.model._preprocessing.evenly_spaced_rows` with
        ``single_precision``), as it always was, so that models keep their statistics.
        """
        rows = evenly_spaced_rows(self.ref_profiles.shape[0], MAX_STATISTICS_CELLS, single_precision=True)
        return torch.from_numpy(rows).to(self.device)

    # the parts ---------------------------------------------------------------------------------------------------
    def part_table(self) -> dict[str, Part]:
        """Each part's prediction and standardisation, by name (a subclass adds its own parts)."""
        return {
            # the ensemble is standardised already
            "ridge": Part(self._ridge, self.ridge_shift, torch.ones_like(self.ridge_shift), fitted=False),
            "neighbours": Part(self._neighbour_average, self.neighbour_shift, self.neighbour_scale, fitted=True),
        }

    def _ridge(self, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The ridge ensemble ``c W`` (float32 even under autocast)."""
        with full_precision(condition.device):
            return condition.float() @ self.ridge_weight

    def _neighbour_average(
        self, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean target of the nearest reference cells, in row chunks: the gathered (cells x k x genes) stays small."""
        with full_precision(condition.device):
            table = self.targets
            rows = max(1, GATHER_ELEMENTS // max(1, neighbors.shape[1] * table.shape[1]))
            return torch.cat([table[chunk].mean(1) for chunk in neighbors.split(rows)])

    def _embedding(
        self, condition: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor, parts: Iterable[str]
    ) -> torch.Tensor | None:
        """The condition embedding ``y`` that ``parts`` need (``None``: the closed-form parts need none)."""
        return None

    # the blend ---------------------------------------------------------------------------------------------------
    def _blend(
        self,
        condition: torch.Tensor,
        neighbors: torch.Tensor,
        y: torch.Tensor | None,
        parts: Iterable[str] | None = None,
    ) -> torch.Tensor:
        """Mean of the standardised parts (per-gene z-units over the reference cells), in the order of ``parts``."""
        parts = self.blend if parts is None else parts
        table = self.part_table()
        total = 0.0
        for name in parts:
            part = table[name]
            total = total + (part.predict(condition, neighbors, y) - part.shift) / part.scale
        return total / len(parts)

    def estimate(self, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The point estimate of the unknown genes (standardised target units): the calibrated blend."""
        return self.calibration_shift + self.calibration_scale * self._blend(condition, neighbors, y)

    @torch.no_grad()
    def posterior_mean(
        self, condition: torch.Tensor, neighbors: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The point estimate of the unknown genes (standardised units) for cells with ``condition``.

        ``neighbors`` is :meth:`find_neighbors` of ``condition`` when the caller has it already (searched here
        otherwise).
        """
        neighbors, distances = self.find_neighbors(condition) if neighbors is None else neighbors
        return self.estimate(condition, neighbors, self._embedding(condition, neighbors, distances, self.blend))

    @torch.no_grad()
    def calibrate(self, parts: list[str] | None = None) -> None:
        """Fit the per-gene centre and spread of each part and the linear calibration of the blend, on the reference.

        Uses the reference cells of :meth:`statistics_rows`, each with its neighbours searched without itself (as a
        training cell's). Only the parts in ``parts`` (default: :attr:`blend`) are fitted. The calibration is the
        least-squares line of each target gene on the blend of ``parts`` over those cells, so the estimate is in the
        targets' units.
        """
        parts = list(self.blend) if parts is None else parts
        rows = self.statistics_rows()
        condition = self.ref_profiles[rows, : self.n_measured]
        targets = self.ref_profiles[rows, self.n_measured :]
        was_training = self.training
        self.eval()
        neighbors, distances = self.find_neighbors(condition, exclude=rows)
        y = self._embedding(condition, neighbors, distances, parts)
        for name, part in self.part_table().items():
            if part.fitted and name in parts:
                shift, scale = _moments(part.predict(condition, neighbors, y))
                part.shift.copy_(shift)
                part.scale.copy_(scale)
        if parts:
            s = self._blend(condition, neighbors, y, parts)
            s_mean, t_mean = s.mean(0), targets.mean(0)
            cov = ((s - s_mean) * (targets - t_mean)).mean(0)
            slope = cov / ((s - s_mean) ** 2).mean(0).clamp_min(1e-12)
            self.calibration_scale.copy_(slope)
            self.calibration_shift.copy_(t_mean - slope * s_mean)
        self.train(was_training)

    @torch.no_grad()
    def neighbour_standardisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-gene centre and spread of the neighbour average over the reference cells.

        The fitted buffers when the neighbour part is blended; otherwise (the buffers of an unused part stay 0 and 1)
        computed as :meth:`calibrate` would fit them, without changing the buffers.
        """
        if "neighbours" in self.blend:
            return self.neighbour_shift, self.neighbour_scale
        rows = self.statistics_rows()
        condition = self.ref_profiles[rows, : self.n_measured]
        neighbors, _ = self.find_neighbors(condition, exclude=rows)
        return _moments(self._neighbour_average(condition, neighbors, None))


def _moments(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-gene mean and spread (ddof 0) of a part over the reference cells.

    A part that hardly varies over the reference cells for a gene (spread below :data:`MIN_PART_SPREAD`, in the
    targets' standardised units) cannot rank cells by that gene: its spread is set to infinity, so its standardised
    value is 0 and it adds nothing to the blend. Dividing by its tiny spread instead turned the few spatial cells
    whose neighbours differ from every reference cell's into values of 10^5 (e.g. a sparse gene whose nearest
    reference cells are all zero on the reference, and a one- or two-gene panel).
    """
    spread = raw.std(0, unbiased=False)
    return raw.mean(0), torch.where(spread < MIN_PART_SPREAD, torch.full_like(spread, float("inf")), spread)


def _ridge_basis(condition: torch.Tensor, targets: torch.Tensor):
    """The eigendecomposition every ridge penalty shares (float64), in the smaller of the primal and the dual form.

    Primal (genes <= cells): ``C^T C = V diag(l) V^T`` and ``proj = V^T C^T X``, so ``W_a = V diag(1 / (l + a)) proj``.
    Dual (more condition genes than cells, e.g. 18,000 measured genes and 3,000 reference cells: a 72 MB matrix
    instead of 2.6 GB): ``C C^T = U diag(l) U^T`` and ``proj = U^T X``, so ``W_a = C^T U diag(1 / (l + a)) proj``.
    With ``coef = diag(1 / (l + a)) proj`` in both forms, returns ``(evals, proj, to_weights, gain, mean_row)``:

    - ``to_weights(coef)`` is ``W_a`` (``V coef`` or ``C^T U coef``);
    - the squared norm of the fitted values ``C W_a`` is ``sum_i gain_i coef_i^2`` (``gain = l`` primal, ``l^2`` dual);
    - their mean over cells is ``mean_row @ coef`` (``mean(C) V`` or ``mean(C) C^T U``).
    """
    C, X = condition.double(), targets.double()
    mean_c = C.mean(0)
    if C.shape[1] <= C.shape[0]:
        evals, V = torch.linalg.eigh(C.T @ C)
        evals = evals.clamp_min(0)
        return evals, V.T @ (C.T @ X), (lambda coef: V @ coef), evals, mean_c @ V
    evals, U = torch.linalg.eigh(C @ C.T)
    evals = evals.clamp_min(0)
    return evals, U.T @ X, (lambda coef: C.T @ (U @ coef)), evals**2, (C @ mean_c) @ U


def ridge_ensemble(condition: torch.Tensor, targets: torch.Tensor, alphas) -> tuple[torch.Tensor, torch.Tensor]:
    """One linear map averaging ridge regressions with several penalties, each standardised by its spread.

    Each penalty's prediction ``C W_a`` (``W_a = (C^T C + a I)^-1 C^T X``) is divided by its per-gene standard
    deviation over the reference cells (a strongly penalised fit predicts small values; its ranking of the cells is
    what it contributes), and the standardised predictions are averaged. The average of linear maps is linear: returns
    ``(W, shift)`` with ``mean_a (C W_a - m_a) / s_a = C W - shift`` (float32). All penalties share one
    eigendecomposition (:func:`_ridge_basis`, primal or dual form); the spreads and means come from it in
    O(genes x imputed genes) per penalty, and the weights are formed once for all penalties: no (genes x genes) matrix
    and no per-penalty (cells x genes) prediction.
    """
    n = condition.shape[0]
    evals, proj, to_weights, gain, mean_row = _ridge_basis(condition, targets)
    total = torch.zeros_like(proj)
    for a in alphas:
        coef = proj / (evals + a)[:, None]
        var = ((gain[:, None] * coef**2).sum(0) / n - (mean_row @ coef) ** 2).clamp_min(1e-24)
        total += coef / var.sqrt()
    total /= len(alphas)
    return to_weights(total).float(), (mean_row @ total).float()
