"""Moved to :mod:`pyro_vaegap.objectives.infovae` (the objectives layer); this old name is that same module."""
import sys

from .objectives import infovae as _moved

sys.modules[__name__] = _moved
