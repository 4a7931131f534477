"""Parameter documentation shared by the plotting functions (written once, like scanpy's ``_doc_params``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

#: The figure-output parameters every plotting function takes; ``{func}`` is replaced by the function's name.
_SHOW_SAVE = """\
show
    Call :func:`matplotlib.pyplot.show` (then ``None`` is returned unless ``return_fig``).
save
    ``True``: write ``scanpy.settings.figdir / "{func}.<scanpy.settings.file_format_figs>"``; a path: write the figure
    there (the extension picks the format).
return_fig
    Return the :class:`~matplotlib.figure.Figure`.
dpi
    Resolution of the saved figure (default: the figure's)."""

_MARKER = "{show_save}"


def show_save_doc(func: F) -> F:
    """Replace the line ``{show_save}`` of ``func``'s docstring by the shared show/save/return_fig/dpi entries.

    The block is indented like the marker line, so it fits a numpydoc ``Parameters`` section.
    """
    doc = func.__doc__ or ""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == _MARKER:
            indent = line[: len(line) - len(line.lstrip())]
            block = [indent + row if row else row for row in _SHOW_SAVE.format(func=func.__name__).splitlines()]
            func.__doc__ = "\n".join(lines[:i] + block + lines[i + 1 :])
            return func
    raise ValueError(f"{func.__name__}'s docstring has no {_MARKER} line.")  # a developer error, caught by the tests
