"""Sphinx configuration of the pyro_vaegap documentation.

Build (warnings are errors, as in ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# the repository root, so that the top-level ``guides`` and ``experiments`` packages import
sys.path.insert(0, str(ROOT))

import pyro_vaegap  # noqa: E402

project = "pyro_vaegap"
author = "pyro_vaegap contributors"
copyright = "2025, pyro_vaegap contributors"
release = pyro_vaegap.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",  # only emits <script> tags: the build itself needs no network
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = True
nitpicky = False

html_theme = "alabaster"
html_theme_options = {
    "description": "Approximation and amortization gaps of VAEs, with Pyro",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []

# ---------------------------------------------------------------------------------------------
# Optional pages. Other people add ``tutorial_*.rst`` and ``benchmarks.rst`` over time; the
# toctree of index.rst lists them (``tutorial_*`` as a glob), but an empty glob or a missing page
# is a warning, and this build treats warnings as errors. So, while index.rst is read, an optional
# toctree line whose pattern matches no ``.rst`` file is dropped. Nothing else is filtered.
# ---------------------------------------------------------------------------------------------
OPTIONAL_TOCTREE_ENTRIES = ("tutorial_*", "benchmarks")


def _drop_missing_optional_entries(app, docname, source):
    if docname != "index":
        return
    lines = []
    for line in source[0].splitlines(keepends=True):
        entry = line.strip()
        if entry in OPTIONAL_TOCTREE_ENTRIES and not any(DOCS.glob(entry + ".rst")):
            continue
        lines.append(line)
    source[0] = "".join(lines)


def _reread_index(app, env, added, changed, removed):
    # index.rst's toctree depends on which optional pages exist, not only on its own text
    return ["index"]


def setup(app):
    app.connect("source-read", _drop_missing_optional_entries)
    app.connect("env-get-outdated", _reread_index)
