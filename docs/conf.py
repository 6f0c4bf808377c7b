"""Sphinx configuration of the sr2learn documentation (no network: no intersphinx)."""

import os
import warnings

import matplotlib

from sr2learn import __version__ as release

matplotlib.use("Agg")
warnings.filterwarnings("ignore", category=UserWarning, message=".*non-interactive.*")

project = "sr2learn"
author = "the sr2learn developers"
copyright = "2026, the sr2learn developers"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
html_theme = "alabaster"

here = os.path.dirname(os.path.abspath(__file__))
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(here, "..", "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # A failing example stops the build with an error: sphinx exits non-zero.
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    # No sg_execution_times.rst: a build must leave the source tree as it found it.
    "write_computation_times": False,
}


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document sr2learn's own members only: methods inherited from scikit-learn, skorch
    or torch carry docstrings that point into those projects' docs (no intersphinx)."""
    module = getattr(obj, "__module__", "") or ""
    qualname = getattr(obj, "__qualname__", "") or ""
    if module.startswith(("sklearn", "skorch", "torch")) or "RequestMethod" in qualname:
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
