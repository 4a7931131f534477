"""The SpaLSTF module: networks, diffusion schedule, loss and samplers (pure torch, no AnnData)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from ._closed_form import ClosedFormBlend, Part, check_measured, full_precision
from ._defaults import Attention, Context, Sampler, check_option
from ._diffusion import Schedule
from ._network import ConditionEncoder, ContextEncoder, Denoiser, PointHead
from ._noise import gaussian

#: Lightning precision names and the reduced-precision dtype their autocast uses (``None``: full precision).
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "64": None,
    "64-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


#: Lightning's names of the precisions that run the networks in bfloat16 (``"bf16"`` is its alias of bf16-mixed).
_BF16_PRECISIONS = frozenset({"bf16", "bf16-mixed", "bf16-true"})


@functools.cache
def _cpu_runs_bf16_lstm() -> bool:
    """Whether this CPU's oneDNN has a bfloat16 LSTM, forward and backward (CPUs without bf16 instructions may not).

    Run with gradients on whatever the caller's grad mode (``no_grad`` would make the backward fail and the answer
    wrong for the whole process) and on a forked random generator (the probe's weights do not move the caller's seed).
    """
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        lstm = torch.nn.LSTM(2, 2, bidirectional=True, batch_first=True)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out, _ = lstm(torch.zeros(1, 2, 2))
            out.float().sum().backward()
        except RuntimeError:
            return False
    return True


def check_autocast_supported(device: torch.device | str, precision: str | int) -> None:
    """Raise a :class:`RuntimeError` naming the fix if ``precision`` cannot run the networks on ``device``.

    The condition encoder is a BiLSTM, and torch runs a bfloat16 LSTM on the CPU through oneDNN, which has no such
    primitive on some CPUs (those without bfloat16 instructions): there the bfloat16 precisions (``"bf16-mixed"``,
    ``"bf16-true"``, ``"bf16"``) would fail deep inside torch ("could not create a primitive descriptor for the LSTM
    forward propagation primitive"). Checked once per process with a tiny LSTM; other devices and precisions are
    left to torch and Lightning.
    """
    if str(precision) not in _BF16_PRECISIONS or torch.device(device).type != "cpu":
        return
    if not _cpu_runs_bf16_lstm():
        raise RuntimeError(
            f"precision={str(precision)!r} cannot run on this CPU: its oneDNN has no bfloat16 LSTM (the condition "
            "encoder is a BiLSTM; CPUs without bfloat16 instructions lack it). Use precision='32' on this CPU, "
            "or a GPU."
        )


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str | int = "32") -> Iterator[None]:
    """Mixed-precision context for running a :class:`SpaLSTFModule` outside Lightning (e.g. sampling).

    ``precision`` takes Lightning's names: ``"bf16-mixed"`` and ``"16-mixed"`` run the networks' matrix products in
    bfloat16 / float16 under :func:`torch.autocast`; ``"32"`` / ``"32-true"`` are a no-op. The module keeps its
    precision-sensitive parts in float32 by itself (see :func:`full_precision`), so its outputs are float32 either way.
    ``"bf16-mixed"`` on a CPU whose oneDNN has no bfloat16 LSTM raises a :class:`RuntimeError` that says so
    (:func:`check_autocast_supported`).

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
    check_autocast_supported(device, precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


class SpaLSTFModule(ClosedFormBlend):
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

    The module is the closed-form estimator of the first two (:class:`~spalstf.model._closed_form.ClosedFormBlend`:
    reference, neighbour search, parts, blend, calibration) with the network part added to its table of parts; the
    closed-form state keeps its buffer names, which saved models restore. The blend is mapped back to the targets'
    units by a per-gene linear calibration fitted on the reference (:meth:`calibrate`: at construction for the
    closed-form parts, and by :meth:`~spalstf.model.SpaLSTF.train` after training for the network). The diffusion
    model (XCiT denoiser, conditioned on the time step and ``y``) learns the distribution of the residual
    ``r = x0 - mu`` around the learned head; draws are ``estimate + r``, and their spread is the model's uncertainty.

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
        n_genes = ref_profiles.shape[1]
        check_measured(n_measured, n_genes)
        for name, value in (("context", context), ("attention", attention), ("blend", blend)):
            check_option(name, value)
        super().__init__(ref_profiles, n_measured, n_neighbors=n_neighbors, ridge_alphas=ridge_alphas)
        self.kl_weight = kl_weight
        self.perturbation_std = perturbation_std
        self.context = context
        self.blend = tuple(blend)
        self.schedule = Schedule(n_diffusion_steps)
        mask = torch.zeros(n_genes)
        mask[:n_measured] = 1.0
        self.register_buffer("mask", mask)
        self.register_buffer("x0_min", self.targets.min(0).values)
        self.register_buffer("x0_max", self.targets.max(0).values)
        # per-gene centre and spread of the network part (set by calibrate())
        self.register_buffer("network_shift", torch.zeros(self.n_imputed))
        self.register_buffer("network_scale", torch.ones(self.n_imputed))
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
        self.calibrate(parts=[b for b in self.blend if b != "network"])

    def on_load(self, model, **kwargs) -> None:
        """Hook of scvi-tools' ``BaseModelClass.load``: nothing to rebuild, the state dict restores everything."""

    # context -----------------------------------------------------------------------------------------------------
    def encode(self, condition: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Condition embedding y': the BiLSTM over [cell, nearest reference cells...] (float32).

        Each token is a cell's condition (its aligned measured genes), a query flag and the distance to the query;
        see :meth:`ContextEncoder.forward_indexed` for how the tokens are projected without being built. The
        neighbours' unknown genes are not in the tokens: they enter the estimate through the neighbour average, and
        a head that could read them would learn to copy them on the reference, where the nearest cells are nearer
        than a spatial cell's. With ``context="none"``, an MLP of the cell alone.
        """
        return self.encoder.forward_indexed(condition, self.conditions, neighbors, distances).float()

    def network_estimate(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mu(c, y): the learned point head (standardised target units, float32)."""
        return self.mean_head(condition, y).float()

    def predict_noise(self, x_t: torch.Tensor, condition: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """Noise on the unknown genes predicted from noisy unknown genes ``x_t`` at step indices ``t`` (float32)."""
        x = torch.cat([condition, x_t], dim=1)
        return self.denoiser(x, self.mask, t + 1, y)[:, self.n_measured :].float()

    # the point estimate: the closed-form parts and the network head -------------------------------------------------
    def part_table(self) -> dict[str, Part]:
        """The closed-form parts and ``"network"``, the learned head (its standardisation is fitted by calibrate)."""
        network = Part(self._network_part, self.network_shift, self.network_scale, fitted=True)
        return {**super().part_table(), "network": network}

    def _network_part(self, condition: torch.Tensor, neighbors: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.network_estimate(condition, y)

    def _embedding(
        self, condition: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor, parts: Iterable[str]
    ) -> torch.Tensor | None:
        """The BiLSTM embedding when ``parts`` has the network head, else ``None`` (the other parts need none)."""
        return self.encode(condition, neighbors, distances) if "network" in parts else None

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


def _gaussian_kl(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    m_q, v_q = pred.mean(0), pred.var(0, unbiased=False) + eps
    m_p, v_p = true.mean(0), true.var(0, unbiased=False) + eps
    return (0.5 * (torch.log(v_p / v_q) + (v_q + (m_q - m_p) ** 2) / v_p - 1)).mean()
