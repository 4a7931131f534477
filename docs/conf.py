"""Sphinx configuration of the spalstf documentation.

Build (offline, warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The tutorials are the notebooks of ``../tutorials``, copied here at build time and rendered with their stored outputs
(myst-nb does not execute them; ``tests/test_docs.py`` executes them in CI). Intersphinx reads inventories written by
``_offline_inventories.py``, so the build needs no network.
"""

from __future__ import annotations

import shutil
import sys
from datetime import date
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _offline_inventories import intersphinx_mapping as _offline_intersphinx_mapping  # noqa: E402

# -- project --------------------------------------------------------------------------------------------------------
project = "spalstf"
author = "spalstf developers"
copyright = f"{date.today().year}, {author}"
release = _version("spalstf")
version = release

# -- tutorials: copy the notebooks (with their outputs) next to the sources -----------------------------------------
_TUTORIALS_SRC = HERE.parent / "tutorials"
_TUTORIALS_DST = HERE / "tutorials"
_TUTORIALS_DST.mkdir(exist_ok=True)
for _nb in sorted(_TUTORIALS_SRC.glob("*.ipynb")):
    shutil.copy2(_nb, _TUTORIALS_DST / _nb.name)

# -- extensions -----------------------------------------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# myst / myst-nb
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # notebooks are stored with outputs; CI executes them separately
nb_merge_streams = True

# autodoc / autosummary / napoleon
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_typehints = "description"


def _package_members() -> list[str]:
    """Public names the package's own classes define, also in the mixins a class inherits them from."""
    import inspect

    import spalstf

    names = set()
    for namespace in (spalstf.model, spalstf.tl, spalstf.benchmark):
        for obj in vars(namespace).values():
            if inspect.isclass(obj) and obj.__module__.startswith("spalstf"):
                for cls in inspect.getmro(obj):
                    if cls.__module__.startswith("spalstf"):
                        names.update(name for name in vars(cls) if not name.startswith("_"))
    return sorted(names)


# the class template shows these even when a class inherits them (from its mixins), and hides other inherited members
autosummary_context = {"package_members": _package_members()}
always_document_param_types = False
typehints_defaults = "comma"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = True
napoleon_custom_sections = [("Params", "Parameters")]

# intersphinx without network: inventories are written into the build tree
intersphinx_mapping = _offline_intersphinx_mapping(HERE / "_build" / "intersphinx")
intersphinx_timeout = 1

# -- HTML -----------------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "spalstf"
html_static_path = ["_static"]
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_show_sphinx = False
