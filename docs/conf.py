"""Sphinx configuration of the pyro_vaegap documentation.

Build (warnings are errors, as in ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pyro_vaegap  # the installed package (``pip install -e .``), guides and experiments included

project = "pyro_vaegap"
author = "pyro_vaegap contributors"
copyright = "2025, pyro_vaegap contributors"
release = pyro_vaegap.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
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

# Pyro's own documentation theme (Read the Docs): a fluid content column whose code blocks and wide
# tables scroll inside the page instead of running off it
html_theme = "sphinx_rtd_theme"
html_theme_options = {"navigation_depth": 3, "collapse_navigation": False}
# MathJax 3 is served with the pages, from the copy in the sphinx-mathjax-offline package (copied into
# _static/mathjax like any static folder), not from a CDN: formulas render offline, and
# tests/test_docs.py checks that no page loads math from the network
_MATHJAX = Path(importlib.util.find_spec("sphinx-mathjax-offline").origin).parent / "static"
mathjax_path = "mathjax/tex-chtml.js"
html_static_path = ["_static", str(_MATHJAX)]
html_css_files = ["custom.css"]


def setup(app):
    # MathJax on every page, not only on pages with math in their body: the navigation sidebar shows
    # section titles with formulas (e.g. the API's) on every page, the indexes and search included
    app.set_html_assets_policy("always")
