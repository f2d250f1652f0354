"""Sphinx configuration of the pyro_vaegap documentation.

Build (warnings are errors, as in ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
from __future__ import annotations

import pyro_vaegap  # the installed package (``pip install -e .``), guides and experiments included

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
    "myst_parser",  # benchmarks.md: measured results stay plain markdown, readable on GitHub too
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

# results/ holds the JSON/markdown/PNG outputs of recorded runs: pages include or link them
exclude_patterns = ["_build", "examples", "results", "Thumbs.db", ".DS_Store"]
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
