"""The SpaLSTF module: networks, diffusion schedule, loss and samplers (pure torch, no AnnData)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._defaults import check_option
from ._diffusion import Schedule
from ._network import ConditionEncoder, ContextEncoder, Denoiser, PointHead
from ._noise import gaussian

Sampler = Literal["ddim", "ddpm"]
Context = Literal["bilstm", "none"]
Attention = Literal["xca", "softmax"]

#: Elements at most of the (cells x neighbours x genes) gather of the neighbour average (64 MB in float32).
_GATHER_ELEMENTS = 2**24
#: Reference cells at most used for the statistics of the parts and the calibration (evenly spaced).
MAX_STATISTICS_CELLS = 4096

#: Lightning precision names and the reduced-precision dtype their autocast uses (``None``: full precision).
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "64": None,
    "64-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str | int = "32") -> Iterator[None]:
    """Mixed-precision context for running a :class:`SpaLSTFModule` outside Lightning (e.g. sampling).

    ``precision`` takes Lightning's names: ``"bf16-mixed"`` and ``"16-mixed"`` run the networks' matrix products in
    bfloat16 / float16 under :func:`torch.autocast`; ``"32"`` / ``"32-true"`` are a no-op. The module keeps its
    precision-sensitive parts in float32 by itself (see :func:`full_precision`), so its outputs are float32 either way.

    Parameters
    ----------
    device
        The device the module runs on (``"cuda"``, ``"cpu"``, a :class:`torch.device`).
    precision
        Lightning's precision name.

    Examples
    --------
    >>> import spalstf as sp
    >>> with sp.model.autocast("cuda", "bf16-mixed"):  # doctest: +SKIP
    ...     mean, std = model.impute(adata_st, n_samples=8)
    """
    precision = str(precision)
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {list(_AUTOCAST_DTYPES)}, got {precision!r}.")
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


def full_precision(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Switch autocast off (the float32 islands of the module: distances, ridge, loss statistics)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


class SpaLSTFModule(nn.Module):
    """Conditional diffusion over the unknown genes of one cell, around a point estimate that blends three parts.

    The condition ``c`` of a cell is its aligned measured genes (see :mod:`spalstf.model._preprocessing`). The point
    estimate of its unknown genes is a blend of three parts, each standardised per gene by its spread over the
    reference cells and averaged with equal weights:

    ``"ridge"``
        closed-form ridge regressions from ``c`` to the unknown genes, fitted on the reference for several penalties
        (``ridge_alphas``, as fractions of the number of reference cells) and averaged after standardisation;
    ``"neighbours"``
        the mean of the unknown genes of the cell's ``n_neighbors`` nearest reference cells (cosine distance in the
        condition space): the cells of its context sequence;
    ``"network"``
        the learned head ``mu(c, y)`` (:class:`~spalstf.model._network.PointHead`) on the cell and its condition
        embedding ``y`` (the BiLSTM over the context sequence), trained with MSE on the reference under Gaussian
        perturbation of ``c``.

    The blend is mapped back to the targets' units by a per-gene linear calibration fitted on the reference
    (:meth:`calibrate`). The diffusion model (XCiT denoiser, conditioned on the time step and ``y``) learns the
    distribution of the residual ``r = x0 - mu`` around the learned head; draws are ``estimate + r``, and their
    spread is the model's uncertainty.

    Gene order inside the module is ``[measured genes, imputed genes]``. The module stores the reference profiles
    (``ref_profiles``: aligned conditions and standardised targets) because a cell's context and neighbour average
    are made of its nearest reference cells.

    Every option is explicit; :class:`~spalstf.model.SpaLSTF` takes them from the table of defaults
    (:mod:`spalstf.model._defaults`).

    Parameters
    ----------
    ref_profiles
        (reference cells, genes) aligned condition (measured genes) and standardised target (imputed genes) values.
    n_measured
        Number of measured (condition) genes; the remaining columns are imputed genes.
    n_neighbors
        Nearest reference cells: the context sequence read by the BiLSTM after the cell itself, and the cells of the
        neighbour average.
    n_hidden, n_blocks, n_heads, n_tokens
        Denoiser width, number of XCiT blocks, attention heads, gene tokens per cell.
    n_lstm_hidden, n_lstm_layers
        BiLSTM size (per direction) and depth.
    n_diffusion_steps
        T of the cosine schedule.
    kl_weight
        alpha of the loss (equation 2 of the paper).
    perturbation_std
        Standard deviation of Gaussian noise added to a training cell's condition (the paper's reference
        perturbation, in the condition's units); 0 disables it.
    ridge_alphas
        Penalties of the ridge part, as fractions of the number of reference cells.
    context
        ``"bilstm"``: the condition embedding is the BiLSTM over [cell, nearest reference cells]; ``"none"``: an MLP
        of the cell alone (the ablation "without BiLSTM").
    attention
        ``"xca"`` (cross-covariance attention) or ``"softmax"`` (standard self-attention over the same tokens; the
        ablation "without XCA").
    blend
        Parts of the point estimate, a non-empty subset of ``("ridge", "neighbours", "network")``.
    """

    def __init__(
        self,
        ref_profiles: torch.Tensor,
        n_measured: int,
        *,
        n_neighbors: int,
        n_hidden: int,
        n_blocks: int,
        n_heads: int,
        n_tokens: int,
        n_lstm_hidden: int,
        n_lstm_layers: int,
        n_diffusion_steps: int,
        kl_weight: float,
        perturbation_std: float,
        ridge_alphas: tuple[float, ...],
        context: Context,
        attention: Attention,
        blend: tuple[str, ...],
    ):
        super().__init__()
        n_ref, n_genes = ref_profiles.shape
        if not 0 < n_measured < n_genes:
            raise ValueError(f"n_measured must be in (0, {n_genes}), got {n_measured}.")
        for name, value in (("context", context), ("attention", attention), ("blend", blend)):
            check_option(name, value)
        blend = tuple(blend)
        self.n_measured = n_measured
        self.n_imputed = n_genes - n_measured
        self.n_neighbors = min(n_neighbors, n_ref - 1)
        if self.n_neighbors < 1:
            raise ValueError("The reference needs at least 2 cells to build a neighbour context.")
        self.kl_weight = kl_weight
        self.perturbation_std = perturbation_std
        self.context = context
        self.blend = blend
        self.schedule = Schedule(n_diffusion_steps)
        self.register_buffer("ref_profiles", ref_profiles.float())
        mask = torch.zeros(n_genes)
        mask[:n_measured] = 1.0
        self.register_buffer("mask", mask)
        targets = self.ref_profiles[:, n_measured:]
        self.register_buffer("x0_min", targets.min(0).values)
        self.register_buffer("x0_max", targets.max(0).values)
        conditions = self.ref_profiles[:, :n_measured]
        weight, shift = ridge_ensemble(conditions, targets, [a * n_ref for a in ridge_alphas])
        self.register_buffer("ridge_weight", weight)
        self.register_buffer("ridge_shift", shift)
        # per-gene centre and spread of the neighbour and network parts, and the calibration (set by calibrate())
        for name, value in (("neighbour", 0.0), ("network", 0.0), ("calibration", 0.0)):
            self.register_buffer(f"{name}_shift", torch.full((self.n_imputed,), value))
            self.register_buffer(f"{name}_scale", torch.ones(self.n_imputed))
        if context == "bilstm":
            self.encoder = ContextEncoder(n_measured + 2, n_hidden=n_lstm_hidden, n_layers=n_lstm_layers)
        else:
            self.encoder = ConditionEncoder(n_measured, n_hidden=n_lstm_hidden)
        self.mean_head = PointHead(self.encoder.n_out, n_measured, n_hidden=n_hidden, n_out=self.n_imputed)
        self.denoiser = Denoiser(
            n_genes,
            self.encoder.n_out,
            n_hidden=n_hidden,
            n_blocks=n_blocks,
            n_heads=n_heads,
            n_tokens=n_tokens,
            attention=attention,
        )
        self.calibrate(parts=[b for b in blend if b != "network"])

    @property
    def device(self) -> torch.device:
        """Device of the module's parameters."""
        return self.mask.device

    def on_load(self, model, **kwargs) -> None:
        """Hook of scvi-tools' ``BaseModelClass.load``: nothing to rebuild, the state dict restores everything."""

    # context -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def find_neighbors(
        self, condition: torch.Tensor, exclude: torch.Tensor | None = None, chunk_size: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest reference cells of each cell by cosine distance in the condition space.

        Returns indices and cosine distances (``1 - cos``), nearest first; the result depends only on the cell and
        the reference. ``exclude`` gives, per query, a reference row left out of its context (a training cell's own
        row).
        """
        ref = F.normalize(self.ref_profiles[:, : self.n_measured], dim=1)
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

    def encode(self, condition: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Condition embedding y': the BiLSTM over [cell, nearest reference cells...] (float32).

        Each token is a cell's condition (its aligned measured genes), a query flag and the distance to the query;
        see :meth:`ContextEncoder.forward_indexed` for how the tokens are projected without being built. The
        neighbours' unknown genes are not in the tokens: they enter the estimate through the neighbour average, and
        a head that could read them would learn to copy them on the reference, where the nearest cells are nearer
        than a spatial cell's. With ``context="none"``, an MLP of the cell alone.
        """
        table = self.ref_profiles[:, : self.n_measured]
        return self.encoder.forward_indexed(condition, table, neighbors, distances).float()

    def network_estimate(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mu(c, y): the learned point head (standardised target units, float32)."""
        return self.mean_head(condition, y).float()

    def predict_noise(self, x_t: torch.Tensor, condition: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """Noise on the unknown genes predicted from noisy unknown genes ``x_t`` at step indices ``t`` (float32)."""
        x = torch.cat([condition, x_t], dim=1)
        return self.denoiser(x, self.mask, t + 1, y)[:, self.n_measured :].float()

    # the point estimate ------------------------------------------------------------------------------------------
    def _part(self, name: str, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None):
        """One part of the blend, raw (before standardisation), float32."""
        with full_precision(condition.device):
            if name == "ridge":
                return condition.float() @ self.ridge_weight
            if name == "neighbours":  # in row chunks: the gathered (cells x k x genes) tensor stays small
                table = self.ref_profiles[:, self.n_measured :]
                rows = max(1, _GATHER_ELEMENTS // max(1, neighbors.shape[1] * table.shape[1]))
                return torch.cat([table[chunk].mean(1) for chunk in neighbors.split(rows)])
        return self.network_estimate(condition, y)

    def _blend(self, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None, parts=None):
        """Mean of the standardised parts (per-gene z-units over the reference cells)."""
        parts = self.blend if parts is None else parts
        total = 0.0
        for name in parts:
            shift, scale = self._standardisation(name)
            total = total + (self._part(name, condition, neighbors, y) - shift) / scale
        return total / len(parts)

    def _standardisation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "ridge":
            return self.ridge_shift, torch.ones_like(self.ridge_shift)  # the ensemble is standardised already
        if name == "neighbours":
            return self.neighbour_shift, self.neighbour_scale
        return self.network_shift, self.network_scale

    def estimate(self, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The point estimate of the unknown genes (standardised target units): the calibrated blend."""
        return self.calibration_shift + self.calibration_scale * self._blend(condition, neighbors, y)

    @torch.no_grad()
    def calibrate(self, parts: list[str] | None = None) -> None:
        """Fit the per-gene centre and spread of each part and the linear calibration of the blend, on the reference.

        Uses at most :data:`MAX_STATISTICS_CELLS` evenly spaced reference cells, each with its neighbours searched
        without itself (as a training cell's). The calibration is the least-squares line of each target gene on the
        blend over those cells, so the estimate is in the targets' units. Called at construction (closed-form parts)
        and by :meth:`~spalstf.model.SpaLSTF.train` after training (the network part).
        """
        parts = list(self.blend) if parts is None else parts
        n_ref = self.ref_profiles.shape[0]
        rows = torch.unique(torch.linspace(0, n_ref - 1, min(n_ref, MAX_STATISTICS_CELLS)).round().long())
        rows = rows.to(self.device)
        condition = self.ref_profiles[rows, : self.n_measured]
        targets = self.ref_profiles[rows, self.n_measured :]
        was_training = self.training
        self.eval()
        neighbors, distances = self.find_neighbors(condition, exclude=rows)
        y = self.encode(condition, neighbors, distances) if "network" in parts else None
        for name in ("neighbours", "network"):
            if name in parts:
                raw = self._part(name, condition, neighbors, y)
                shift, scale = self._standardisation(name)
                shift.copy_(raw.mean(0))
                scale.copy_(raw.std(0, unbiased=False).clamp_min(1e-6))
        if parts:
            s = self._blend(condition, neighbors, y, parts)
            s_mean, t_mean = s.mean(0), targets.mean(0)
            cov = ((s - s_mean) * (targets - t_mean)).mean(0)
            slope = cov / ((s - s_mean) ** 2).mean(0).clamp_min(1e-12)
            self.calibration_scale.copy_(slope)
            self.calibration_shift.copy_(t_mean - slope * s_mean)
        self.train(was_training)

    # training ----------------------------------------------------------------------------------------------------
    def training_noise(
        self, indices: torch.Tensor, n_measured: int, n_imputed: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The random draws of one training step for the reference cells ``indices``.

        Returns the condition perturbation (``None`` when not training or ``perturbation_std == 0``), the diffusion
        step index per cell and the forward-process noise, all float32 and from torch's global generator (each DDP
        rank has its own). A subclass may key them by cell instead (the DDP test does, to compare runs exactly).
        """
        b, device = indices.shape[0], indices.device
        perturbation = None
        if self.training and self.perturbation_std > 0:
            perturbation = torch.randn(b, n_measured, device=device)
        t = torch.randint(0, self.schedule.n_steps, (b,), device=device)
        return perturbation, t, torch.randn(b, n_imputed, device=device)

    def loss(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Diffusion loss on the unknown genes plus the point-head MSE, for the reference cells ``indices``.

        Diffusion loss (equation 2 of the paper, on the residual ``r = x0 - mu``): masked noise MSE over the unknown
        genes + ``kl_weight`` * KL. Point-head loss: ``mean((mu - x0)^2)`` (reported as ``mean_mse``).

        KL term: for each unknown gene, Gaussians are fitted over the cells of the mini-batch to the predicted noise
        (q, mean m_q, variance v_q) and to the true noise (p, m_p, v_p);
        ``KL(q || p) = 0.5 * (log(v_p / v_q) + (v_q + (m_q - m_p)^2) / v_p - 1)``, averaged over genes. Under DDP the
        mini-batch is the rank's own shard of ``batch_size`` cells: each rank computes the KL on its cells and
        Lightning averages the gradients, so the KL is the mean of per-rank KLs, not the KL of the global batch (the
        two MSE terms are per-cell means and match the global batch exactly).

        Under autocast only the networks run in reduced precision; the perturbation, the schedule arithmetic, the
        neighbour search and every loss statistic are float32.
        """
        indices = indices.long().view(-1)
        profiles = self.ref_profiles[indices]
        condition = profiles[:, : self.n_measured]
        x0 = profiles[:, self.n_measured :]
        perturbation, t, noise = self.training_noise(indices, self.n_measured, self.n_imputed)
        # the context is searched from the perturbed condition, as an ST cell's is searched from its own measurement
        if perturbation is not None:
            condition = condition + self.perturbation_std * perturbation
        if self.context == "bilstm":
            y = self.encode(condition, *self.find_neighbors(condition, exclude=indices))
        else:  # the cell alone: no neighbour search on the hot path
            y = self.encoder.forward_indexed(condition, None, None, None).float()
        mu = self.network_estimate(condition, y)
        r0 = x0 - mu.detach()
        eps = self.predict_noise(self.schedule.q_sample(r0, t, noise), condition, y, t)
        with full_precision(x0.device):
            mean_mse = ((mu - x0) ** 2).mean()
            mse = ((eps - noise) ** 2).mean()
            kl = _gaussian_kl(eps, noise) if eps.shape[0] > 1 else eps.new_zeros(())
            loss = mse + self.kl_weight * kl + mean_mse
        return {"loss": loss, "mse": mse, "kl": kl, "mean_mse": mean_mse}

    # imputation --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def posterior_mean(self, condition: torch.Tensor) -> torch.Tensor:
        """The point estimate of the unknown genes (standardised units) for cells with ``condition``."""
        neighbors, distances = self.find_neighbors(condition)
        y = self.encode(condition, neighbors, distances) if "network" in self.blend else None
        return self.estimate(condition, neighbors, y)

    @torch.no_grad()
    def sample(
        self,
        condition: torch.Tensor,
        keys: np.ndarray,
        *,
        n_samples: int = 1,
        sampler: Sampler = "ddim",
        n_sampling_steps: int = 50,
        step_callback: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Draw unknown genes for cells with ``condition``; returns (n_samples, cells, unknown genes).

        Each draw is ``estimate + r`` with the residual ``r`` from the reverse diffusion (the residual of the learned
        head, whose distribution the diffusion model learned).

        Noise comes from :func:`spalstf.model._noise.gaussian` keyed by each cell's ``keys`` entry, so a cell's draw
        never depends on the other cells of the batch.
        """
        neighbors, distances = self.find_neighbors(condition)
        y = self.encode(condition, neighbors, distances)
        centre = self.estimate(condition, neighbors, y)
        b, g = condition.shape[0], self.n_imputed
        device = condition.device
        lo, hi = self.x0_min - centre, self.x0_max - centre  # residual bounds keeping draws in the reference's range
        draws = []
        T = self.schedule.n_steps
        for s in range(n_samples):
            x = gaussian(keys, stream=s * (T + 1) + T, n_genes=g).to(device)
            if sampler == "ddim":
                steps = self.schedule.ddim_timesteps(n_sampling_steps)
                for j, i in enumerate(steps):
                    t = torch.full((b,), i, device=device, dtype=torch.long)
                    eps = self.predict_noise(x, condition, y, t)
                    x0 = torch.maximum(torch.minimum(self.schedule.predict_x0(x, eps, i), hi), lo)
                    eps = (x - float(self.schedule.alpha_bar[i]) ** 0.5 * x0) / float(
                        1 - self.schedule.alpha_bar[i]
                    ) ** 0.5
                    i_prev = steps[j + 1] if j + 1 < len(steps) else -1
                    x = self.schedule.ddim_step(x, x0, eps, i_prev)
                    if step_callback is not None:
                        step_callback()
            elif sampler == "ddpm":
                for i in range(T - 1, -1, -1):
                    t = torch.full((b,), i, device=device, dtype=torch.long)
                    eps = self.predict_noise(x, condition, y, t)
                    x0 = torch.maximum(torch.minimum(self.schedule.predict_x0(x, eps, i), hi), lo)
                    noise = gaussian(keys, stream=s * (T + 1) + i, n_genes=g).to(device) if i > 0 else None
                    x = self.schedule.ddpm_step(x, x0, i, noise)
                    if step_callback is not None:
                        step_callback()
            else:  # pragma: no cover - validated by the caller
                raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}.")
            draws.append(centre + x)
        return torch.stack(draws)


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


def ridge_ensemble_weights(condition: torch.Tensor, targets: torch.Tensor, alphas) -> Iterator[torch.Tensor]:
    """Ridge coefficients ``W_a = (C^T C + a I)^-1 C^T X`` for each penalty in ``alphas`` (float64), one at a time.

    All penalties share one eigendecomposition (:func:`_ridge_basis`, primal or dual form).
    """
    evals, proj, to_weights, _, _ = _ridge_basis(condition, targets)
    for a in alphas:
        yield to_weights(proj / (evals + a)[:, None])


def ridge_ensemble(condition: torch.Tensor, targets: torch.Tensor, alphas) -> tuple[torch.Tensor, torch.Tensor]:
    """One linear map averaging ridge regressions with several penalties, each standardised by its spread.

    Each penalty's prediction ``C W_a`` is divided by its per-gene standard deviation over the reference cells (a
    strongly penalised fit predicts small values; its ranking of the cells is what it contributes), and the
    standardised predictions are averaged. The average of linear maps is linear: returns ``(W, shift)`` with
    ``mean_a (C W_a - m_a) / s_a = C W - shift`` (float32). The spreads and means come from the shared
    eigendecomposition in O(genes x imputed genes) per penalty, and the weights are formed once for all penalties:
    no (genes x genes) matrix and no per-penalty (cells x genes) prediction.
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


def _gaussian_kl(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    m_q, v_q = pred.mean(0), pred.var(0, unbiased=False) + eps
    m_p, v_p = true.mean(0), true.var(0, unbiased=False) + eps
    return (0.5 * (torch.log(v_p / v_q) + (v_q + (m_q - m_p) ** 2) / v_p - 1)).mean()
