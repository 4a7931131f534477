"""Models: :class:`SpaLSTF`."""

from ._model import SpaLSTF

__all__ = ["SpaLSTF"]
