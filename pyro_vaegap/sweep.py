"""Moved to :mod:`pyro_vaegap.harness.sweep` (the experiment harness); this old name is that same module."""
import sys

from .harness import sweep as _moved

sys.modules[__name__] = _moved
