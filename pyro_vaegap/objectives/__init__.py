r"""Training objectives: Pyro's ELBOs with annealing and free bits (:mod:`~pyro_vaegap.objectives.elbos`), and
InfoVAE (:mod:`~pyro_vaegap.objectives.infovae`; Zhao, Song & Ermon 2019).
"""
from . import infovae
from .elbos import (LN2, ScaleSites, Annealing, MeanFieldELBO, IWAE, FreeBitsELBO, CustomELBO, make_objective)

__all__ = ["infovae", "LN2", "ScaleSites", "Annealing", "MeanFieldELBO", "IWAE", "FreeBitsELBO", "CustomELBO", "make_objective"]
