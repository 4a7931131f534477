"""The SpaLSTF module: networks, diffusion schedule, loss and samplers (pure torch, no AnnData)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from torch import nn

from ._diffusion import Schedule
from ._network import ContextEncoder, Denoiser
from ._noise import gaussian

Sampler = Literal["ddim", "ddpm"]

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
    """Conditional diffusion over the unknown genes of one cell, around a learned point estimate.

    The unknown genes x0 of a cell are written ``x0 = mu(c) + r``: ``mu`` is a point estimate from the condition
    (a closed-form ridge regression fitted on the reference, plus a nonlinear correction read from the BiLSTM
    context, trained with MSE), and the diffusion model learns the distribution of the residual ``r`` given the
    condition. Samples are ``mu + r``; their spread is the model's uncertainty.

    Gene order inside the module is ``[measured genes, imputed genes]``. The module stores the standardised reference
    profiles (``ref_profiles``) because a cell's context is made of its nearest reference cells in measured-gene space.

    Every option is explicit; :class:`~spalstf.model.SpaLSTF` takes them from the table of defaults
    (:mod:`spalstf.model._defaults`).

    Parameters
    ----------
    ref_profiles
        (reference cells, genes) standardised condition (measured genes) and target (imputed genes) values.
    n_measured
        Number of measured (condition) genes; the remaining columns are imputed genes.
    n_neighbors
        Context length: nearest reference cells read by the BiLSTM after the cell itself.
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
        perturbation, in standardised units); 0 disables it.
    ridge_alpha
        L2 penalty of the ridge part of the point estimate.
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
        ridge_alpha: float,
    ):
        super().__init__()
        n_ref, n_genes = ref_profiles.shape
        if not 0 < n_measured < n_genes:
            raise ValueError(f"n_measured must be in (0, {n_genes}), got {n_measured}.")
        self.n_measured = n_measured
        self.n_imputed = n_genes - n_measured
        self.n_neighbors = min(n_neighbors, n_ref - 1)
        if self.n_neighbors < 1:
            raise ValueError("The reference needs at least 2 cells to build a neighbour context.")
        self.kl_weight = kl_weight
        self.perturbation_std = perturbation_std
        self.schedule = Schedule(n_diffusion_steps)
        self.register_buffer("ref_profiles", ref_profiles.float())
        mask = torch.zeros(n_genes)
        mask[:n_measured] = 1.0
        self.register_buffer("mask", mask)
        targets = self.ref_profiles[:, n_measured:]
        self.register_buffer("x0_min", targets.min(0).values)
        self.register_buffer("x0_max", targets.max(0).values)
        self.register_buffer("ridge_weight", ridge_weight(self.ref_profiles[:, :n_measured], targets, ridge_alpha))
        self.encoder = ContextEncoder(n_genes + 2, n_hidden=n_lstm_hidden, n_layers=n_lstm_layers)
        self.mean_head = nn.Sequential(
            nn.Linear(self.encoder.n_out + n_measured, n_hidden), nn.SiLU(), nn.Linear(n_hidden, self.n_imputed)
        )
        nn.init.zeros_(self.mean_head[2].weight)
        nn.init.zeros_(self.mean_head[2].bias)
        self.denoiser = Denoiser(
            n_genes, self.encoder.n_out, n_hidden=n_hidden, n_blocks=n_blocks, n_heads=n_heads, n_tokens=n_tokens
        )

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
        """Nearest reference cells of each cell in the standardised measured-gene space.

        Returns indices and root-mean-square distances, nearest first; the result depends only on the cell and the
        reference. ``exclude`` gives, per query, a reference row left out of its context (a training cell's own row).
        """
        ref = self.ref_profiles[:, : self.n_measured]
        out_idx, out_dist = [], []
        # float32 even under autocast: a reduced-precision distance matmul would reorder near neighbours
        with full_precision(ref.device):
            ref_sq = (ref**2).sum(1)
            for start in range(0, condition.shape[0], chunk_size):
                q = condition[start : start + chunk_size].to(ref)
                d2 = ((q**2).sum(1, keepdim=True) + ref_sq[None] - 2 * q @ ref.T).clamp_min(0)
                if exclude is not None:
                    rows = torch.arange(q.shape[0], device=q.device)
                    d2[rows, exclude[start : start + chunk_size]] = float("inf")
                dist, idx = torch.topk(d2, self.n_neighbors, dim=1, largest=False, sorted=True)
                out_idx.append(idx)
                out_dist.append((dist / ref.shape[1]).sqrt())
        return torch.cat(out_idx), torch.cat(out_dist)

    def encode(self, condition: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """BiLSTM over the sequence [cell, nearest reference cells...] -> condition embedding y' (float32).

        Each token is a profile over all model genes (the query cell's unknown genes are 0), a query flag and the
        distance; see :meth:`ContextEncoder.forward_indexed` for how the tokens are projected without being built.
        """
        return self.encoder.forward_indexed(condition, self.ref_profiles, neighbors, distances).float()

    def point_estimate(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mu(c): ridge prediction from the measured genes plus the learned correction from the context (float32).

        The ridge product stays in float32 under autocast (it carries most of ``mu``; it is small); only the
        correction network may run in reduced precision.
        """
        with full_precision(condition.device):
            ridge = condition.float() @ self.ridge_weight
        return ridge + self.mean_head(torch.cat([y, condition], dim=1)).float()

    def predict_noise(self, x_t: torch.Tensor, condition: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """Noise on the unknown genes predicted from noisy unknown genes ``x_t`` at step indices ``t`` (float32)."""
        x = torch.cat([condition, x_t], dim=1)
        return self.denoiser(x, self.mask, t + 1, y)[:, self.n_measured :].float()

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
        """Diffusion loss on the unknown genes plus the point-estimate MSE, for the reference cells ``indices``.

        Diffusion loss (equation 2 of the paper, on the residual ``r = x0 - mu``): masked noise MSE over the unknown
        genes + ``kl_weight`` * KL. Point-estimate loss: ``mean((mu - x0)^2)`` (reported as ``mean_mse``).

        KL term: for each unknown gene, Gaussians are fitted over the cells of the mini-batch to the predicted noise
        (q, mean m_q, variance v_q) and to the true noise (p, m_p, v_p);
        ``KL(q || p) = 0.5 * (log(v_p / v_q) + (v_q + (m_q - m_p)^2) / v_p - 1)``, averaged over genes. Under DDP the
        mini-batch is the rank's own shard of ``batch_size`` cells: each rank computes the KL on its cells and
        Lightning averages the gradients, so the KL is the mean of per-rank KLs, not the KL of the global batch (the
        two MSE terms are per-cell means and match the global batch exactly).

        Under autocast only the networks run in reduced precision; the perturbation, the schedule arithmetic, the
        neighbour search, the ridge part and every loss statistic are float32.
        """
        indices = indices.long().view(-1)
        profiles = self.ref_profiles[indices]
        condition = profiles[:, : self.n_measured]
        x0 = profiles[:, self.n_measured :]
        perturbation, t, noise = self.training_noise(indices, self.n_measured, self.n_imputed)
        # the context is searched from the perturbed condition, as an ST cell's is searched from its own measurement
        if perturbation is not None:
            condition = condition + self.perturbation_std * perturbation
        y = self.encode(condition, *self.find_neighbors(condition, exclude=indices))
        mu = self.point_estimate(condition, y)
        r0 = x0 - mu.detach()
        eps = self.predict_noise(self.schedule.q_sample(r0, t, noise), condition, y, t)
        with full_precision(x0.device):
            mean_mse = ((mu - x0) ** 2).mean()
            mse = ((eps - noise) ** 2).mean()
            kl = _gaussian_kl(eps, noise) if eps.shape[0] > 1 else eps.new_zeros(())
            loss = mse + self.kl_weight * kl + mean_mse
        return {"loss": loss, "mse": mse, "kl": kl, "mean_mse": mean_mse}

    # sampling ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def posterior_mean(self, condition: torch.Tensor) -> torch.Tensor:
        """Point estimate mu(c) of the unknown genes (standardised units) for cells with ``condition``."""
        y = self.encode(condition, *self.find_neighbors(condition))
        return self.point_estimate(condition, y)

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
        """Draw unknown genes for cells with standardised ``condition``; returns (n_samples, cells, unknown genes).

        Each draw is ``mu + r`` with the residual ``r`` from the reverse diffusion.

        Noise comes from :func:`spalstf.model._noise.gaussian` keyed by each cell's ``keys`` entry, so a cell's draw
        never depends on the other cells of the batch.
        """
        neighbors, distances = self.find_neighbors(condition)
        y = self.encode(condition, neighbors, distances)
        mu = self.point_estimate(condition, y)
        b, g = condition.shape[0], self.n_imputed
        device = condition.device
        lo, hi = self.x0_min - mu, self.x0_max - mu  # residual bounds keeping mu + r in the reference's range
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
            draws.append(mu + x)
        return torch.stack(draws)


def ridge_weight(condition: torch.Tensor, targets: torch.Tensor, alpha: float) -> torch.Tensor:
    """Closed-form ridge coefficients ``W = (C^T C + alpha I)^-1 C^T X`` (float64 solve, float32 result).

    With more condition genes than cells the identical dual form ``W = C^T (C C^T + alpha I)^-1 X`` is solved
    instead, so the Gram matrix is (cells x cells) rather than (genes x genes): with 18,000 measured genes and 3,000
    reference cells, 72 MB instead of 2.6 GB (and its LU copy), and seconds instead of minutes.
    """
    C, X = condition.double(), targets.double()
    if C.shape[1] <= C.shape[0]:
        gram = C.T @ C
        gram.diagonal().add_(alpha)
        return torch.linalg.solve(gram, C.T @ X).float()
    gram = C @ C.T
    gram.diagonal().add_(alpha)
    return (C.T @ torch.linalg.solve(gram, X)).float()


def _gaussian_kl(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    m_q, v_q = pred.mean(0), pred.var(0, unbiased=False) + eps
    m_p, v_p = true.mean(0), true.var(0, unbiased=False) + eps
    return (0.5 * (torch.log(v_p / v_q) + (v_q + (m_q - m_p) ** 2) / v_p - 1)).mean()
