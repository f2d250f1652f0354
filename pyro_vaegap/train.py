"""Training a VAE, as one import: re-exports of :mod:`pyro_vaegap.training` (the loop, schedules, steps, building
model and guide) and :mod:`pyro_vaegap.runs` (the config, the run folder: checkpoint, ``config.json``, resume
rules, :func:`load_run`).

``from pyro_vaegap.train import TrainConfig, train, load_run`` keeps working; new code imports from the parts.
"""
from .runs.checkpoint import CHECKPOINT, _CHECKPOINT_KEYS, _rng_state, _set_rng_state, read_checkpoint  # noqa: F401
from .runs.config import (ANNEALING, BURDA_EPOCHS, LR_SCHEDULES, MODEL_FIELDS, MODELS, OBJECTIVES,  # noqa: F401
                          TRAIN_SPLITS, VALID_SPLITS, TrainConfig)
from .runs.folder import (LOG_FIELDS, _config_json_problem, _log_csv, _write_config_json,  # noqa: F401
                          check_config_json)
from .runs.load import load_run  # noqa: F401
from .runs.resume import _check_start, _flag, _interrupted, resume_config  # noqa: F401
from .training.build import build_guide, build_model, frozen_decoder, guide_options  # noqa: F401
from .training.loop import TrainingInterrupted, TrainResult, _objective_state, load_split, train  # noqa: F401
from .training.schedules import anneal_factor, learning_rate  # noqa: F401
from .training.steps import (_sum_gradients, _world, data_parallel, make_loss, mean_elbo,  # noqa: F401
                             micro_batch_step, training_step)
