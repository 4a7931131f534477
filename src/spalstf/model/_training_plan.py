"""Lightning training plan of SpaLSTF (optimiser and the loss bookkeeping; the loss itself lives in the module)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from scvi import REGISTRY_KEYS

from ._module import SpaLSTFModule


class SpaLSTFTrainingPlan(pl.LightningModule):
    """Trains a :class:`~spalstf.model._module.SpaLSTFModule` with AdamW.

    Parameters
    ----------
    module
        The module to train.
    lr
        Learning rate.
    weight_decay
        AdamW weight decay.

    Both come from the table of defaults (:mod:`spalstf.model._defaults`) through :meth:`spalstf.model.SpaLSTF.train`.
    """

    def __init__(self, module: SpaLSTFModule, *, lr: float, weight_decay: float):
        super().__init__()
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay

    def on_fit_start(self) -> None:
        """Under DDP, check once that every rank holds the same module buffers.

        The DDP strategies built by :meth:`~spalstf.model.SpaLSTF.train` do not re-broadcast buffers each step (they
        are constants: reference profiles, gene statistics, ridge weights), so ranks that built their models from
        different data would otherwise train silently on different references.
        """
        if self.trainer.world_size <= 1:
            return
        fingerprint = torch.stack([_fingerprint(b) for b in self.module.buffers()])
        gathered = self.all_gather(fingerprint)  # (ranks, buffers, 2), the same on every rank
        if not bool((gathered == gathered[0]).all()):
            names = [n for n, _ in self.module.named_buffers()]
            differ = sorted({names[i] for i in torch.nonzero((gathered != gathered[0]).any(-1))[:, 1].tolist()})
            raise RuntimeError(
                f"DDP ranks hold different model buffers ({differ}): build the model from the same reference and "
                "spatial data on every rank."
            )

    def _step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        out = self.module.loss(batch[REGISTRY_KEYS.INDICES_KEY])
        n = batch[REGISTRY_KEYS.INDICES_KEY].shape[0]
        for name, value in out.items():
            key = f"{prefix}_{name}" if name != "loss" else f"{prefix}_loss"
            self.log(key, value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True, prog_bar=name == "loss")
        return out["loss"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a mini-batch of reference cells."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss on held-out reference cells (only when ``train_size < 1``)."""
        self._step(batch, "validation")

    def configure_optimizers(self):
        """AdamW over all module parameters."""
        return torch.optim.AdamW(self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _fingerprint(buffer: torch.Tensor) -> torch.Tensor:
    """Two float64 numbers that change with any change of a buffer's values or their order."""
    x = buffer.detach().double().flatten()
    weights = torch.arange(1, x.numel() + 1, device=x.device, dtype=torch.float64) / max(x.numel(), 1)
    return torch.stack([x.sum(), (x * weights).sum()])
