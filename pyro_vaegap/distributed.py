"""Moved to :mod:`pyro_vaegap.training.distributed` (the training layer); this old name is that same module."""
import sys

from .training import distributed as _moved

sys.modules[__name__] = _moved
