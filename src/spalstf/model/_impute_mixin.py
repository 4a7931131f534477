"""Imputation of a trained :class:`~spalstf.model.SpaLSTF`: streaming over the spatial cells, in memory or to a file."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import anndata
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from tqdm.auto import tqdm

from .._outputs import LOWER_LAYER, STD_LAYER, UPPER_LAYER, result_metadata
from .._streaming import H5adChunkWriter, check_out_path
from .._threads import with_cpu_threads
from . import _preprocessing as prep
from ._defaults import IMPUTE_BATCH_SIZE, SAMPLING_STEPS, Sampler
from ._imputation import Imputation, ImputationResult, ImputeRequest, IntervalImputation, fill_parameters
from ._noise import cell_keys
from ._spatial_input import SpatialInput

logger = logging.getLogger(__name__)

#: Where each output goes in an ``out=`` file (``X`` for the mean).
_FILE_LAYERS = {"std": STD_LAYER, "lower": LOWER_LAYER, "upper": UPPER_LAYER}


def platform_space(target_sum: float) -> str:
    """The ``output_space`` string of outputs with intervals: what the spatial platform measures."""
    return (
        f"log1p(x / L * {target_sum:g}) of the spatial platform: x the value in adata_st, L the cell's total over "
        "the measured panel genes"
    )


class ImputationMixin:
    """:meth:`impute` and its worker, for :class:`~spalstf.model.SpaLSTF`."""

    @property
    def imputed_genes(self) -> list[str]:
        """Reference genes the model imputes (output columns)."""
        return list(self.gene_plan.imputed)

    @property
    def measured_genes(self) -> list[str]:
        """Reference genes the model is conditioned on (as spelled in the reference)."""
        return list(self.gene_plan.measured)

    @with_cpu_threads
    @torch.no_grad()
    def impute(
        self,
        adata_st: AnnData,
        *,
        layer: str | None = None,
        n_samples: int = 1,
        sampler: Sampler = "ddim",
        n_sampling_steps: int = SAMPLING_STEPS,
        batch_size: int = IMPUTE_BATCH_SIZE,
        random_state: int = 0,
        progress_bar: bool = True,
        interval: float | None = None,
        out: str | os.PathLike | None = None,
        overwrite: bool = False,
    ) -> Imputation | IntervalImputation | AnnData:
        """Impute the model's genes for the cells of ``adata_st``, streaming over its cells.

        The cells are processed in chunks of ``batch_size``: each chunk's rows are read from ``adata_st`` (in memory,
        dense or sparse, or backed: ``anndata.read_h5ad(path, backed="r")``), conditioned, imputed and written. With
        ``out``, the output itself goes to disk chunk by chunk and need not fit in memory either. ``adata_st`` is
        never modified. Runs with :attr:`scanpy.settings.n_jobs` CPU threads (1 unless set; restored afterwards).

        Parameters
        ----------
        adata_st
            Spatial data with (at least) the model's measured genes.
        layer
            Layer of ``adata_st`` with the expression values; default: the layer the model was built with.
        n_samples
            {n_samples}
        sampler
            {sampler}
        n_sampling_steps
            {n_sampling_steps}
        batch_size
            Cells read and imputed at a time (the working-memory bound); the result does not depend on it.
        random_state
            {random_state}
        progress_bar
            {progress_bar}
        interval
            {interval}
        out
            {out}
        overwrite
            {overwrite}

        Returns
        -------
        Without ``out``: an :class:`~spalstf.model.Imputation` ``(mean, std)``, or with ``interval`` an
        :class:`~spalstf.model.IntervalImputation` ``(mean, std, lower, upper)``: named tuples of DataFrames indexed by
        ``adata_st.obs_names`` with the imputed genes as columns; ``std`` is ``None`` when ``n_samples == 1``. With
        ``out``: the written file opened with ``anndata.read_h5ad(out, backed="r")``; ``X`` stays on disk, but
        anndata reads the layers (``std``, ``lower``, ``upper``) into memory, so for outputs whose layers do not fit,
        read the file with ``anndata.experimental.read_lazy`` or use :func:`~spalstf.tl.spalstf_impute`, which does
        not open it.

        Examples
        --------
        >>> mean, std = model.impute(adata_st, n_samples=8)  # doctest: +SKIP
        >>> mean, std, lower, upper = model.impute(adata_st, interval=0.9)  # doctest: +SKIP
        >>> model.get_gene_reliability().sort_values(ascending=False).head()  # doctest: +SKIP
        >>> big = anndata.read_h5ad("st_cells.h5ad", backed="r")  # doctest: +SKIP
        >>> result = model.impute(big, out="imputed.h5ad", batch_size=4096)  # doctest: +SKIP
        >>> result.X[:10]  # first 10 cells, read from disk  # doctest: +SKIP
        """
        request = ImputeRequest(
            n_samples=n_samples,
            sampler=sampler,
            n_sampling_steps=n_sampling_steps,
            batch_size=batch_size,
            random_state=random_state,
            progress_bar=progress_bar,
            interval=interval,
            out=out,
            overwrite=overwrite,
        )
        result = self._impute(adata_st, request, layer=layer)
        if result.path is not None:
            return anndata.read_h5ad(result.path, backed="r")
        return result.as_tuple()

    impute.__doc__ = fill_parameters(impute.__doc__)

    def _impute(
        self, adata_st: AnnData | SpatialInput, request: ImputeRequest, layer: str | None = None
    ) -> ImputationResult:
        """The worker of :meth:`impute` and :func:`~spalstf.tl.spalstf_impute`: impute, write, describe.

        ``adata_st`` is prepared here unless the caller did (``layer``: default the model's). In memory, the result
        holds the output frames; with ``request.out`` the file is written (its ``uns[request.key_added]`` holds the
        metadata too) and the result holds its path, unopened.
        """
        if not self.is_trained_:
            raise RuntimeError("The model is not trained yet; call `model.train()` first.")
        request.check(self.module.schedule.n_steps)
        if request.n_samples > 1 and not getattr(self, "networks_trained_", True):
            raise RuntimeError(
                "Diffusion draws (n_samples > 1) need the trained denoiser, and this model's networks were not trained "
                "(its blend has no network part and its training was skipped); call model.train() first."
            )
        spatial = SpatialInput.prepare(adata_st, layer if layer is not None else self.st_layer)
        spatial.columns(self.gene_plan.measured_st)  # fail on missing genes before creating any file
        out_path = check_out_path(request.out, request.overwrite, [spatial.adata]) if request.out is not None else None
        if request.interval is not None and getattr(self, "interval_calibration_", None) is None:
            logger.info("Calibrating the intervals on the %d measured genes of adata_st.", len(self.measured_genes))
            self.calibrate_intervals(spatial)
        obs_names, columns = spatial.obs_names.copy(), pd.Index(self.imputed_genes)
        names = request.output_names()
        start = time.perf_counter()
        if out_path is None:
            arrays = {name: np.empty((spatial.n_obs, len(columns)), dtype=np.float32) for name in names}

            def write(start, stop, values):
                for name, value in values.items():
                    arrays[name][start:stop] = value

            empty = self._impute_chunks(spatial, request, write)
            frames = {n: pd.DataFrame(a, index=obs_names, columns=columns, copy=False) for n, a in arrays.items()}
            return ImputationResult(self._result_metadata(request, time.perf_counter() - start, empty), frames)

        layers = [n for n in ("std", "lower", "upper") if n in names]
        with H5adChunkWriter(out_path, obs_names, columns, [_FILE_LAYERS[n] for n in layers]) as writer:

            def write(start, stop, values):
                writer.write(start, stop, values["mean"], **{_FILE_LAYERS[n]: values[n] for n in layers})

            empty = self._impute_chunks(spatial, request, write)
            metadata = self._result_metadata(request, time.perf_counter() - start, empty, out=out_path)
            writer.close(uns={request.key_added: metadata})
        return ImputationResult(metadata, path=out_path)

    def _result_metadata(
        self, request: ImputeRequest, impute_time_s: float, without_signal: list[str], out=None
    ) -> dict[str, Any]:
        """Metadata of a result: every setting as used (model, training, sampling), genes, output space, times.

        With an interval: the output space is the platform's, and the interval record and the gene reliability are
        added.
        """
        sampling = {
            "n_samples": request.n_samples,
            "sampler": request.sampler if request.n_samples > 1 else "posterior_mean",
            "n_sampling_steps": request.n_sampling_steps,
            "random_state": request.random_state,
            "impute_batch_size": request.batch_size,
            "interval": request.interval,
        }
        calibration = getattr(self, "interval_calibration_", None) if request.interval is not None else None
        return result_metadata(
            cells_without_signal=without_signal,
            measured_genes=list(self.gene_plan.measured_st),
            imputed_genes=self.imputed_genes,
            output_space=(
                prep.model_output_space(self.target_sum) if calibration is None else platform_space(self.target_sum)
            ),
            params={**self.settings, **getattr(self, "train_params_", {}), **sampling},
            train_time_s=getattr(self, "train_time_s_", float("nan")),
            impute_time_s=impute_time_s,
            out=out,
            interval=None if calibration is None else calibration.describe(request.interval),
            gene_reliability=None if calibration is None else dict(calibration.gene_reliability),
        )

    def _sampling_steps(self, request: ImputeRequest) -> int:
        """Denoiser calls per draw (the progress bar's unit)."""
        if request.n_samples == 1:
            return 1
        if request.sampler == "ddim":
            return len(self.module.schedule.ddim_timesteps(request.n_sampling_steps))
        return self.module.schedule.n_steps

    def _impute_chunks(self, spatial: SpatialInput, request: ImputeRequest, write) -> list[str]:
        """Read, condition, impute and ``write(start, stop, values)`` each chunk of ``request.batch_size`` cells.

        ``values`` maps the output names (:meth:`ImputeRequest.output_names`) to the chunk's arrays. Returns the names
        of the cells without signal (all measured genes zero).
        """
        device = self.device
        n_samples, interval = request.n_samples, request.interval
        without_signal: list[str] = []
        calibration = self.interval_calibration_ if interval is not None else None
        target_mean = self.module.target_mean.cpu().numpy()
        target_std = self.module.target_std.cpu().numpy()
        self.module.eval()
        with tqdm(
            total=self._sampling_steps(request) * n_samples * int(np.ceil(spatial.n_obs / request.batch_size)),
            desc=f"Sampling ({request.sampler})",
            disable=not request.progress_bar,
        ) as bar:
            for start, stop, values, empty, library in self._st_condition_chunks(spatial, request.batch_size):
                without_signal.extend(str(n) for n in spatial.obs_names[start:stop][empty])
                cond = torch.from_numpy(values).to(device)
                # the posterior mean is the point (one sample) and the centre of the bounds; draws alone need none
                need_estimate = n_samples == 1 or calibration is not None
                estimate = self.module.posterior_mean(cond).cpu().numpy() if need_estimate else None
                if n_samples == 1:
                    bar.update(1)
                else:
                    draws = self.module.sample(
                        cond,
                        cell_keys(spatial.obs_names[start:stop], request.random_state),
                        n_samples=n_samples,
                        sampler=request.sampler,
                        n_sampling_steps=request.n_sampling_steps,
                        step_callback=lambda: bar.update(1),
                    )
                    draws = draws.cpu().numpy().astype(np.float64)
                if calibration is not None:  # the bounds are around the posterior mean, also when draws are made
                    point, scale = calibration.point(estimate, target_mean, target_std)
                if n_samples == 1:
                    out = {
                        "mean": point
                        if calibration is not None
                        else np.maximum(estimate.astype(np.float64) * target_std + target_mean, 0.0)
                    }
                else:
                    if calibration is None:
                        draws = np.maximum(draws * target_std + target_mean, 0.0)
                    else:
                        draws = calibration.point(draws, target_mean, target_std)[0]
                    out = {"mean": draws.mean(0), "std": draws.std(0)}
                if calibration is not None:
                    out["lower"], out["upper"] = calibration.bounds(point, scale, library, interval)
                    for level in request.extra_levels:
                        out[("lower", level)], out[("upper", level)] = calibration.bounds(point, scale, library, level)
                        out[("gene_lower", level)], out[("gene_upper", level)] = calibration.bounds(
                            point, scale, library, level, per_cell=False
                        )
                write(start, stop, out)
        return without_signal
