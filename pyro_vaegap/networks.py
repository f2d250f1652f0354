"""Moved to :mod:`pyro_vaegap.models.networks` (the models layer); this old name is that same module."""
import sys

from .models import networks as _moved

sys.modules[__name__] = _moved
