"""Training of :class:`~spalstf.model.SpaLSTF` through scvi-tools' data splitter, training plan and runner."""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from scvi import settings as scvi_settings
from scvi.model._utils import parse_device_args

from .._logging import quiet_libraries
from .._threads import with_cpu_threads
from ._defaults import GRADIENT_CLIP_VAL, check_option
from ._module import check_autocast_supported

logger = logging.getLogger(__name__)


def _is_ddp(strategy) -> bool:
    """Whether a Lightning strategy (name or instance) is DDP, i.e. needs a distributed sampler."""
    if isinstance(strategy, str):
        return strategy.startswith("ddp")
    return isinstance(strategy, DDPStrategy)


def _ddp_without_buffer_broadcast(strategy):
    """Lightning's registered DDP strategy of that name, with ``broadcast_buffers=False``; anything else unchanged.

    The module's buffers are constants (reference profiles, gene statistics, ridge weights, schedule bounds), so
    DDP's per-step broadcast of buffers from rank 0 only moves the reference around; the training plan checks once
    that the ranks agree on them.
    """
    if isinstance(strategy, str) and strategy.startswith("ddp") and strategy in StrategyRegistry:
        entry = StrategyRegistry[strategy]
        if issubclass(entry["strategy"], DDPStrategy):
            return entry["strategy"](**{**entry["init_params"], "broadcast_buffers": False})
    return strategy


def _runs_on_cpu(accelerator, devices) -> bool:
    """Whether Lightning's ``accelerator`` (a name or an instance) trains on the CPU.

    ``"auto"`` is resolved as scvi-tools' runner resolves it (:func:`scvi.model._utils.parse_device_args`: a GPU
    when there is one, the CPU rather than Apple's MPS). An ``"auto"`` that cannot be resolved is left to the runner,
    which raises its own error.
    """
    if isinstance(accelerator, CPUAccelerator) or accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    try:
        with warnings.catch_warnings():  # the runner repeats them
            warnings.simplefilter("ignore")
            resolved, _, _ = parse_device_args(accelerator, devices, return_device="torch")
    except (ImportError, RuntimeError, ValueError):
        return False
    return resolved == "cpu"


class TrainingMixin:
    """:meth:`train` for :class:`~spalstf.model.SpaLSTF`.

    The classes of the data splitter, training plan and runner are the model's ``_data_splitter_cls``,
    ``_training_plan_cls`` and ``_train_runner_cls``.
    """

    @with_cpu_threads
    def train(
        self,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float = 1.0,
        validation_size: float | None = None,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model on the reference cells.

        Runs with :attr:`scanpy.settings.n_jobs` CPU threads (1 unless set; torch's count is restored afterwards;
        :mod:`spalstf._threads`).

        Goes through scvi-tools' :class:`~scvi.dataloaders.DataSplitter`, a Lightning training plan and
        :class:`~scvi.train.TrainRunner`, so ``accelerator``, ``devices``, ``strategy`` and ``precision`` are
        Lightning's. Losses per epoch are kept in :attr:`history` (``train_loss``, ``train_mse``, ``train_kl``,
        ``train_mean_mse``; ``validation_*`` when ``train_size < 1`` and ``check_val_every_n_epoch`` is set).

        Parameters
        ----------
        max_epochs, max_steps
            The training budget: passes over the reference, or optimiser steps (then as many epochs as the steps
            take). Default from the preset: the ``"cpu"`` preset trains a fixed number of steps, so its time does not
            grow with the number of reference cells; ``"paper"`` trains 1200 epochs. With both given, training stops
            at whichever comes first.
        batch_size
            Cells per mini-batch; default from the preset. Under DDP this is the batch **per process**: the
            optimiser step averages the gradients of ``devices`` such batches.
        lr
            AdamW learning rate; default from the preset (cpu: 1e-3, paper: 1e-4).
        accelerator, devices
            Lightning device selection (``"auto"`` picks a GPU when there is one).
        train_size, validation_size
            Fractions of reference cells for training and validation (default: all cells train).
        datasplitter_kwargs, plan_kwargs
            Extra arguments of the data splitter and of the training plan.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`, e.g. ``enable_progress_bar=False``; ``gradient_clip_val``
            defaults to :data:`~spalstf.model._defaults.GRADIENT_CLIP_VAL` (1.0). Notably:

            ``strategy``
                ``"ddp"`` (scripts), ``"ddp_spawn"``, ``"ddp_notebook"`` (Jupyter) or a
                :class:`~lightning.pytorch.strategies.DDPStrategy`: distributed data parallel training on
                ``devices`` processes. Each process gets a distinct shard of the reference cells (scvi-tools'
                :class:`~scvi.dataloaders.BatchDistributedSampler`, reshuffled every epoch) and Lightning's DDP
                averages the gradients. A DDP strategy given by name is built with ``broadcast_buffers=False``:
                the module's buffers (reference profiles, statistics, ridge weights) are constants, identical on
                every rank (checked once at the start of training), and re-broadcasting the reference every step
                would cost more than the step. ``find_unused_parameters`` is not needed: every parameter takes part
                in every loss.
            ``precision``
                ``"bf16-mixed"`` or ``"16-mixed"`` (GPU) for mixed precision; the neighbour search, the ridge part,
                the diffusion schedule, the perturbation and the loss statistics stay float32 (see
                ``docs/distributed.md``). ``"bf16-mixed"`` on a CPU whose oneDNN has no bfloat16 LSTM (CPUs
                without bfloat16 instructions) raises a :class:`RuntimeError` before training: use ``"32"`` there.

        Notes
        -----
        With ``strategy="ddp"`` Lightning starts the other ranks by re-running the calling script, so everything
        after ``train`` runs once per rank: guard saving and imputation with ``model.trainer.is_global_zero``.
        With ``train_size < 1`` under DDP, the train/validation split is drawn with ``scvi.settings.seed`` (0 when
        unset) so that all ranks agree on it; validation runs when ``check_val_every_n_epoch`` is set.
        :attr:`history` is filled on rank 0 only (losses are averaged over ranks). The KL term of the loss is
        computed per rank over that rank's mini-batch (see :meth:`~spalstf.model._module.SpaLSTFModule.loss`).

        Examples
        --------
        Four GPUs, one process each, 4 x 256 cells per optimiser step, bfloat16 mixed precision (in a script):

        >>> model.train(  # doctest: +SKIP
        ...     accelerator="gpu", devices=4, strategy="ddp", batch_size=256, precision="bf16-mixed"
        ... )
        >>> if model.trainer.is_global_zero:  # doctest: +SKIP
        ...     model.save("spalstf_model")

        Two CPU processes (gloo), e.g. to check a script before a GPU run:

        >>> model.train(accelerator="cpu", devices=2, strategy="ddp")  # doctest: +SKIP
        """
        for name, value in (
            ("max_epochs", max_epochs),
            ("max_steps", max_steps),
            ("batch_size", batch_size),
            ("lr", lr),
        ):
            if value is not None:
                check_option(name, value)
        if "precision" in trainer_kwargs and _runs_on_cpu(accelerator, devices):
            check_autocast_supported("cpu", trainer_kwargs["precision"])
        batch_size = self.settings["batch_size"] if batch_size is None else batch_size
        if max_epochs is None and max_steps is None:
            max_epochs, max_steps = self.settings["max_epochs"], self.settings["max_steps"]
        if max_epochs is None:  # a budget of optimiser steps: as many epochs as it takes, then stop at the step
            steps_per_epoch = max(1, int(np.ceil(self.adata.n_obs * train_size / min(batch_size, self.adata.n_obs))))
            max_epochs = int(np.ceil(max_steps / steps_per_epoch))
        if max_steps is not None:
            trainer_kwargs["max_steps"] = max_steps
        plan_kwargs = {
            "lr": self.settings["lr"] if lr is None else lr,
            "weight_decay": self.settings["weight_decay"],
            **(plan_kwargs or {}),
        }
        trainer_kwargs.setdefault("gradient_clip_val", GRADIENT_CLIP_VAL)
        trainer_kwargs.setdefault("enable_checkpointing", False)
        if "strategy" in trainer_kwargs:
            trainer_kwargs["strategy"] = _ddp_without_buffer_broadcast(trainer_kwargs["strategy"])
        distributed = _is_ddp(trainer_kwargs.get("strategy"))
        # With every cell in training there is nothing to split; scvi-tools' split shuffle uses its own unseeded
        # generator, so leaving it on would make training differ between runs with the same torch seed.
        split_kwargs = {
            "shuffle_set_split": train_size < 1.0 or bool(validation_size),
            "distributed_sampler": distributed,
            **(datasplitter_kwargs or {}),
        }
        splitter_args = {
            "train_size": train_size,
            "validation_size": validation_size,
            "batch_size": min(batch_size, self.adata.n_obs),
            "drop_last": False,
        }
        splitter = self._data_splitter_cls(self.adata_manager, **splitter_args, **split_kwargs)
        if split_kwargs["shuffle_set_split"] and split_kwargs.get("external_indexing") is None:
            # scvi-tools draws the split unseeded unless scvi.settings.seed is set, so the same torch seed would not
            # give the same model. Draw it here: from scvi.settings.seed when set, else from torch's seed (the
            # random_state of spalstf_impute); under DDP every rank must agree, so 0 when scvi's seed is unset.
            if scvi_settings.seed is not None:
                seed = scvi_settings.seed
            else:
                seed = 0 if distributed else torch.initial_seed() % 2**32
            perm = np.random.RandomState(seed).permutation(self.adata.n_obs)
            n_train, n_val = splitter.n_train, splitter.n_val
            split_kwargs["external_indexing"] = [perm[n_val : n_val + n_train], perm[:n_val], perm[n_val + n_train :]]
            splitter = self._data_splitter_cls(self.adata_manager, **splitter_args, **split_kwargs)
        plan = self._training_plan_cls(self.module, **plan_kwargs)
        start = time.perf_counter()
        with quiet_libraries():  # Lightning's banners, tips and hints (see spalstf._logging); progress bars stay
            runner = self._train_runner_cls(
                self,
                training_plan=plan,
                data_splitter=splitter,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )
            result = runner()
        self.module.calibrate()  # the network part's statistics and the blend's calibration, on the reference
        self.train_time_s_ = time.perf_counter() - start
        self.networks_trained_ = True
        self.train_params_ = {
            "max_epochs": max_epochs,
            "max_steps": max_steps,
            "batch_size": batch_size,
            **plan_kwargs,
            "accelerator": accelerator,
            "devices": devices,
            "train_size": train_size,
            "validation_size": validation_size,
            **trainer_kwargs,
        }
        return result

    def skip_training(self, reason: str) -> None:
        """Mark the model ready to impute without training its networks.

        For a model whose blend has no ``"network"`` part the point estimate is the closed-form blend, fitted when
        the model is built, so training would change nothing it returns. Diffusion draws need the trained denoiser:
        :meth:`impute` refuses ``n_samples > 1`` until :meth:`train` has run. ``reason`` is logged and recorded in
        ``train_params_`` (``uns[key]["params"]["training"]``).

        Parameters
        ----------
        reason
            Why no training is needed.

        Examples
        --------
        >>> model = sp.model.SpaLSTF(adata_sc, adata_st, blend=("ridge", "neighbours"))  # doctest: +SKIP
        >>> model.skip_training("the closed-form blend is all I need")  # doctest: +SKIP
        >>> mean, _ = model.impute(adata_st)  # doctest: +SKIP
        """
        if "network" in self.settings["blend"]:
            raise ValueError(
                f"The blend {self.settings['blend']} uses the network part, which must be trained; call model.train()."
            )
        logger.info("Networks not trained: %s.", reason)
        self.is_trained_ = True
        self.networks_trained_ = False
        self.train_time_s_ = 0.0
        self.train_params_ = {"training": f"skipped: {reason}"}
