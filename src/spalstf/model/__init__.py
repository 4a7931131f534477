"""Models: :class:`SpaLSTF`, and the named tuples its :meth:`~SpaLSTF.impute` returns."""

from ._imputation import Imputation, IntervalImputation
from ._model import SpaLSTF
from ._module import autocast

__all__ = ["Imputation", "IntervalImputation", "SpaLSTF", "autocast"]
