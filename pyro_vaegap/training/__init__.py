r"""Training a VAE (model + amortized guide) with Pyro's ELBOs, in Pyro's module-local idiom.

:mod:`~pyro_vaegap.training.build` (model and
guide of a config), :mod:`~pyro_vaegap.training.schedules` (learning rate, annealing factor),
:mod:`~pyro_vaegap.training.steps` (the loss, one optimizer step, the data-parallel step),
:mod:`~pyro_vaegap.training.traced` (the loss traced once per batch shape) and
:mod:`~pyro_vaegap.training.loop` (:func:`train`). The config of a run (:class:`~pyro_vaegap.runs.config.TrainConfig`) and the run folder it writes are
:mod:`pyro_vaegap.runs`'.
"""
from ..runs.config import (ANNEALING, BURDA_EPOCHS, LR_SCHEDULES, MODEL_FIELDS, MODELS, OBJECTIVES, TRAIN_SPLITS,
                     VALID_SPLITS, TrainConfig)
from .build import build_guide, build_model, frozen_decoder, guide_options
from .schedules import anneal_factor, learning_rate
from .steps import data_parallel, make_loss, mean_elbo, micro_batch_step, training_step
from .loop import TrainingInterrupted, TrainResult, load_split, train

__all__ = ["ANNEALING", "BURDA_EPOCHS", "LR_SCHEDULES", "MODEL_FIELDS", "MODELS", "OBJECTIVES", "TRAIN_SPLITS",
           "VALID_SPLITS", "TrainConfig", "build_guide", "build_model", "frozen_decoder", "guide_options",
           "anneal_factor", "learning_rate", "data_parallel", "make_loss", "mean_elbo", "micro_batch_step",
           "training_step", "TrainingInterrupted", "TrainResult", "load_split", "train"]
