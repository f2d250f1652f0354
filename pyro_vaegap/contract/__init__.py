r"""The contract between the library and a Pyro model and guide: what the estimators read, what a guide provides.

=============================================  ==================================================================
:mod:`~pyro_vaegap.contract.model`             what is read from a model's trace (data plate, observed and latent
                                               sites: :class:`ModelSpec`), how a user's callable is called, and the
                                               check of a guide's sites against the model (:func:`check_sites`)
:mod:`~pyro_vaegap.contract.guide`             what a guide provides: the base classes :class:`Guide` and
                                               :class:`LocalGuide`, a posterior :class:`Family`,
                                               :func:`check_guide`
:mod:`~pyro_vaegap.contract.registry`          where families come from: the ``guides`` folder, entry points,
                                               :func:`register_family`; :func:`get_family`
:mod:`~pyro_vaegap.contract.user_model`        a model and guide built by the user's own code and weights
                                               (``vaegap gaps --model MODULE:FUNCTION``)
=============================================  ==================================================================

The families themselves live in the top-level ``guides`` folder (installed as :mod:`pyro_vaegap.guides`).
``from pyro_vaegap.contract import inspect_model`` (the names of :mod:`~pyro_vaegap.contract.model`, this
package's name before it held the layer) keeps working.
"""
from .model import (LatentSite, ModelSpec, TracedModel, as_model, call, check_sites, inspect_model, modules_of,
                    parameters_of, quiet_frozen_modules, spec_of, state_tensors, takes, validate_data)
from .guide import Family, Guide, LocalGuide, check_guide, gaussian_output
from .registry import families, get_family, register_family

__all__ = ["LatentSite", "ModelSpec", "TracedModel", "as_model", "call", "check_sites", "inspect_model", "modules_of",
           "parameters_of", "quiet_frozen_modules", "spec_of", "state_tensors", "takes", "validate_data", "Family",
           "Guide", "LocalGuide", "check_guide", "gaussian_output", "families", "get_family", "register_family"]
