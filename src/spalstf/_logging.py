"""The package logger, at scanpy's verbosity, and the silencing of the libraries spalstf trains with.

Messages of spalstf go through ``logging.getLogger("spalstf")`` (modules log to its children, e.g.
``"spalstf.tl._impute"``). Its one handler writes to the current ``sys.stderr`` and shows a message when its level
reaches scanpy's verbosity (``scanpy.settings.verbosity``): ``0``/``"error"`` errors only, ``1``/``"warning"`` (the
default) warnings, ``2``/``"info"`` and ``3``/``"hint"`` also information such as what ``spalstf_impute`` wrote,
``4``/``"debug"`` everything. ``logging.getLogger("spalstf").setLevel(...)`` silences further on top of that.

:func:`quiet_libraries` wraps spalstf's own calls into Lightning and scvi-tools: for their duration, the
"GPU available" / "TPU available" banners, Lightning's logger "Tip", its ``log_every_n_steps`` and data-loader hints
(:class:`~lightning.fabric.utilities.warnings.PossibleUserWarning`) and the deprecation notices of the libraries
underneath are not shown; logger levels and warning filters are restored afterwards, so nothing changes outside
these calls. Progress bars are not affected. With scanpy's verbosity at ``"debug"`` nothing is silenced.
:func:`silence_libraries` is the same silencing for the rest of a process, for the command line and the benchmark
scripts (there also :class:`UserWarning`, at every verbosity); both raise the same library loggers.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Name of the package logger (modules use its children: ``logging.getLogger(__name__)``).
LOGGER_NAME = "spalstf"
logger = logging.getLogger(LOGGER_NAME)

#: scanpy's verbosity (error, warning, info, hint, debug) as logging levels.
_VERBOSITY_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.INFO, logging.DEBUG)
#: Loggers of the libraries underneath whose information (banners, tips, "`Trainer.fit` stopped") is silenced.
_LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi")
#: Warning categories of the libraries underneath that are silenced (not addressed to spalstf's users).
_LIBRARY_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def verbosity_level() -> int:
    """The logging level of scanpy's current verbosity (``logging.WARNING`` when scanpy is not imported)."""
    scanpy = sys.modules.get("scanpy")
    if scanpy is None:
        return logging.WARNING
    verbosity = int(scanpy.settings.verbosity)
    return _VERBOSITY_LEVELS[min(max(verbosity, 0), len(_VERBOSITY_LEVELS) - 1)]


class _AtScanpyVerbosity(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= verbosity_level()


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (Jupyter and pytest replace it after import)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class sets it once; the current stderr is used instead
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


def _configure() -> None:
    """Give the package logger its handler (once): the level check is the handler's, at scanpy's verbosity."""
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    handler.addFilter(_AtScanpyVerbosity())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.DEBUG)  # records reach the handler, which applies scanpy's verbosity
    logger.propagate = False  # shown once, not again by handlers of the root logger


_configure()


def _raise_library_levels(level: int) -> dict[str, int]:
    """Raise the loggers of the libraries underneath to ``level`` where they let lower levels through.

    Returns the levels replaced (logger name -> level), for restoring them.
    """
    saved = {}
    for name in _LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        if library_logger.getEffectiveLevel() < level:
            saved[name] = library_logger.level
            library_logger.setLevel(level)
    return saved


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the banners, hints and deprecation notices of Lightning and scvi-tools inside the block.

    Logger levels are raised to ``WARNING`` only where they are lower, and restored on exit together with the
    warning filters; warnings spalstf addresses to its users (:class:`UserWarning`) still show. Does nothing at
    scanpy's verbosity ``"debug"``.
    """
    if verbosity_level() <= logging.DEBUG:
        yield
        return
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    saved = _raise_library_levels(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for category in (*_LIBRARY_WARNINGS, PossibleUserWarning):
                warnings.filterwarnings("ignore", category=category)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def silence_libraries() -> None:
    """Silence Lightning and scvi-tools, and warnings, for the rest of the process (scripts, command line).

    Unlike the silencing around spalstf's own training calls, nothing is restored: the loggers of Lightning and
    scvi-tools (``"lightning"``, ``"lightning.pytorch"``, ``"lightning.fabric"``, ``"pytorch_lightning"``,
    ``"scvi"``) show errors only (raised to ``ERROR`` where they let lower levels through), and
    :class:`UserWarning` (spalstf's own included) and :class:`FutureWarning` are not shown, at every verbosity.
    For a script whose output should hold its own results and nothing else; in a notebook or a library, leave the
    warnings on.

    Examples
    --------
    >>> import logging
    >>> import spalstf as sp
    >>> sp.benchmark.silence_libraries()  # doctest: +SKIP
    >>> logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.ERROR  # doctest: +SKIP
    True
    """
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    _raise_library_levels(logging.ERROR)
