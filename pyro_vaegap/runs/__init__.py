r"""Run folders: what a training writes and how it is read back.

A run lives in a folder: ``checkpoint.pt`` (parameters, optimizer state, epoch, every RNG state, log,
config) written atomically after every epoch, so an interrupted run resumes to exactly the result of
an uninterrupted one; ``log.csv`` (one row per epoch: objective, validation ELBO, learning rate,
annealing factor, seconds; an InfoVAE run adds its divergence estimate, see
:data:`pyro_vaegap.objectives.infovae.LOG_COLUMN`); and ``config.json`` (config, seed, package versions). The checkpoint is the
one source of truth: ``config.json`` is a readable copy of its config, rewritten when a resumed run
extends ``epochs``, never read back; :func:`~pyro_vaegap.runs.load_run` says so on stderr when the two disagree or the
copy is missing or invalid. The folder is locked (:class:`~pyro_vaegap.utils.FolderLock`) while a
training writes it, so a second training into it is refused instead of overwriting it.

:mod:`~pyro_vaegap.runs.config` (:class:`TrainConfig`, what defines a run), :mod:`~pyro_vaegap.runs.checkpoint` (``checkpoint.pt``, the RNG states), :mod:`~pyro_vaegap.runs.folder`
(``config.json`` and ``log.csv``), :mod:`~pyro_vaegap.runs.resume` (the rules of resuming) and
:mod:`~pyro_vaegap.runs.load` (:func:`load_run`).
"""
from .config import (ANNEALING, BURDA_EPOCHS, LR_SCHEDULES, MODEL_FIELDS, MODELS, OBJECTIVES, TRAIN_SPLITS,
                     VALID_SPLITS, TrainConfig)
from .checkpoint import CHECKPOINT, read_checkpoint
from .folder import LOG_FIELDS, check_config_json
from .resume import resume_config
from .load import load_run

__all__ = ["ANNEALING", "BURDA_EPOCHS", "LR_SCHEDULES", "MODEL_FIELDS", "MODELS", "OBJECTIVES", "TRAIN_SPLITS",
           "VALID_SPLITS", "TrainConfig", "CHECKPOINT", "read_checkpoint", "LOG_FIELDS", "check_config_json", "resume_config", "load_run"]
