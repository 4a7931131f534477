"""spalstf: impute unmeasured spatial genes from a scRNA-seq reference with the SpaLSTF diffusion model."""

from importlib.metadata import PackageNotFoundError, version

from . import _logging, benchmark, datasets, get, metrics, model, pl, tl

try:
    __version__ = version("spalstf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["benchmark", "datasets", "get", "metrics", "model", "pl", "tl", "__version__"]
