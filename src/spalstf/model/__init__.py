"""Models: :class:`SpaLSTF`."""

from ._model import SpaLSTF
from ._module import autocast

__all__ = ["SpaLSTF", "autocast"]
