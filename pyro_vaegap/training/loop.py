r"""The training loop: :func:`train` a model and guide, writing (or resuming) a run folder.

Training a VAE (model + amortized guide) with Pyro's ELBOs, in Pyro's module-local idiom.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..objectives import infovae
from ..data import DYNAMIC_DATASETS, DataError, dynamic_binarize, load_dataset, seeded_subset, validate_continuous
from ..contract.registry import get_family
from ..runs.checkpoint import CHECKPOINT, _rng_state, _set_rng_state, read_checkpoint
from ..runs.folder import _config_json_problem, _log_csv, _write_config_json, check_config_json
from ..runs.resume import _check_start, _interrupted
from ..utils import (ConfigError, FolderLock, atomic_torch_save, atomic_write_text, check_folder, progress_bar,
                     resolve_device, set_seed, signals_held, stable_seed)
from .build import build_guide, build_model, frozen_decoder, guide_options
from ..runs.config import TrainConfig
from .schedules import anneal_factor, learning_rate
from .traced import traced_loss
from .steps import (_world, aggregate_mmd2, data_parallel, make_loss, make_optimizer, mean_elbo, micro_batch_step,
                    restore_optimizer, training_step)

def load_split(cfg: TrainConfig, split: str, download: bool = False) -> torch.Tensor:
    return load_dataset(cfg.dataset, split, data_dir=cfg.data_dir, download=download)


@dataclass
class TrainResult:
    model: torch.nn.Module
    guide: torch.nn.Module
    config: TrainConfig
    log: list
    run_dir: Path


class TrainingInterrupted(ConfigError):
    """Ctrl-C during a training: the message says which epochs are saved and how to resume."""


def train(cfg: TrainConfig, run_dir, *, resume: bool = False, stop_after: int | None = None,
          progress: bool = True, download: bool = False, resume_hint: str = "train(..., resume=True)",
          device=None, jit: bool = True) -> TrainResult:
    """Train ``cfg``'s model and guide, writing the run folder ``run_dir`` (locked meanwhile).

    Data parallel: called in every process of a ``torch.distributed`` process group (``torchrun
    --nproc-per-node N -m pyro_vaegap.cli train ...``), each rank computes its share of every batch's
    micro-batches (``cfg.micro_batches`` ``M``, at least the number of ranks; :func:`micro_batch_step`),
    :class:`~torch.nn.parallel.DistributedDataParallel` sums the gradients, and rank 0 alone writes the run
    folder. Every micro-batch is seeded by ``(seed, epoch, batch, micro-batch)``, so the run is the same on
    any number of ranks up to ``M`` — one process with the same ``M`` included — and a checkpoint resumes
    on a different number of ranks. Without ``micro_batches`` a run draws from one random stream, in one process.

    :param resume: continue from ``run_dir/checkpoint.pt``. Its config must equal ``cfg`` except
        for ``epochs`` (so a finished run can be extended). Without ``resume`` an existing
        checkpoint is an error: nothing saved is overwritten.
    :param stop_after: stop after this many epochs *of this call* (as an interruption would).
    :param download: let the data loader download the data set (torchvision) when it is not found.
    :param resume_hint: how the caller resumes, for the message of an interruption (Ctrl-C raises
        :class:`TrainingInterrupted`, saying which epochs are saved).
    :param device: ``cpu``, ``cuda`` or ``cuda:N`` (:func:`~pyro_vaegap.utils.resolve_device`; default cpu):
        data, model and guide live there. It is not part of the run: a run resumes on any device.
    :param jit: compute each step's loss with :class:`~pyro_vaegap.training.traced.TracedLoss` (the Pyro loss
        traced once per batch shape, checked against the eager loss at its first call, with an eager fallback
        and a warning where it cannot apply); one-process training only (not with ``micro_batches``). The same
        random numbers and gradients as the eager loss, so it is not part of the run either: a run resumes with
        or without it.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    device = resolve_device(device)
    rank, world = _world()
    if world > 1 and (cfg.micro_batches is None or cfg.micro_batches < world):
        raise ConfigError(f"training on {world} ranks needs micro_batches >= {world} (--micro-batches; it was "
                          f"{cfg.micro_batches}): each rank computes micro-batches of every batch, each seeded on "
                          "its own, so the run is the same for any number of ranks up to micro_batches")
    _check_start(run_dir, resume)  # fast answers first; checked again under the lock
    get_family(cfg.guide).check_options("amortized", guide_options(cfg))  # before any data is read
    # a resumed run's checkpoint holds the frozen decoder already: the decoder's run is read only at the start
    decoder = frozen_decoder(cfg) if cfg.decoder_from is not None and not resume else None
    saved_epoch, epoch = None, None
    try:
        set_seed(cfg.seed)
        x_train = load_split(cfg, "train", download)
        if cfg.train_split == "train+valid":
            x_train = torch.cat([x_train, load_split(cfg, "valid")])
        if cfg.valid_split == "holdout":
            if cfg.dataset in DYNAMIC_DATASETS:  # its training rows are grey levels, drawn anew at each use
                raise ConfigError(f"valid_split='holdout' holds out training rows, which in {cfg.dataset!r} are grey "
                                  "levels, not the binarized images the model scores: use valid_split='valid'")
            x_train, x_valid = holdout_split(x_train, cfg.holdout_fraction, cfg.seed)
        else:
            x_valid = load_split(cfg, cfg.valid_split)
        if cfg.num_train is not None:
            if cfg.num_train > x_train.shape[0]:
                raise ConfigError(f"num_train={cfg.num_train} exceeds the {x_train.shape[0]} training rows")
            x_train = x_train[seeded_subset(x_train.shape[0], cfg.num_train, cfg.seed)]
        infovae.check_batches(cfg, x_train.shape[0])
        if cfg.num_valid is not None:  # a cheaper per-epoch validation ELBO (many short epochs of a small set)
            if cfg.num_valid > x_valid.shape[0]:
                raise ConfigError(f"num_valid={cfg.num_valid} exceeds the {x_valid.shape[0]} validation rows")
            x_valid = x_valid[seeded_subset(x_valid.shape[0], cfg.num_valid, cfg.seed)]
        if cfg.monitor_mmd is not None and cfg.monitor_mmd > x_valid.shape[0]:
            raise ConfigError(f"monitor_mmd={cfg.monitor_mmd} exceeds the {x_valid.shape[0]} validation rows of the "
                              "per-epoch validation ELBO it is computed on")
        last_rows = x_train.shape[0] % cfg.batch_size
        if cfg.micro_batches is not None and 0 < last_rows < cfg.micro_batches:
            raise ConfigError(f"micro_batches={cfg.micro_batches}: the last batch of each epoch has only {last_rows} "
                              f"rows ({x_train.shape[0]} training rows, batch_size={cfg.batch_size}); choose at most "
                              f"{last_rows} micro-batches, or a batch size or num_train that leaves none or more rows")
        model = build_model(cfg, x_train.shape[1]).to(device)
        try:
            x_valid = model.validate_data(x_valid.to(device))
            # a dynamically binarized set trains on Bernoulli probabilities, drawn anew for every minibatch
            dynamic = cfg.dataset in DYNAMIC_DATASETS
            x_train = model.validate_data(x_train.to(device)) if not dynamic else \
                validate_continuous(x_train.to(device), name=f"{cfg.dataset} train")
            if dynamic:  # the model must take the bits drawn from these probabilities (a width check, too)
                model.validate_data(dynamic_binarize(x_train[:1], cfg.seed))
        except DataError as e:
            raise DataError(f"dataset {cfg.dataset!r} does not suit model {cfg.model!r}: {e}") from None
        guide = build_guide(cfg, model).to(device)
        guide.set_training_size(x_train.shape[0])  # a family with global latents weights their KL by 1/N
        if decoder is not None:
            model.load_state_dict(decoder)
        if cfg.decoder_from is not None:  # a fixed decoder: Adam gets only the guide's parameters
            model.requires_grad_(False)
        params = [p for p in (*model.parameters(), *guide.parameters()) if p.requires_grad]
        opt = make_optimizer(cfg, params)
        loss_fn, annealing = make_loss(cfg, model, guide)
        net = data_parallel(loss_fn, device)
        step_loss = traced_loss(loss_fn, annealing, (model, guide)) if jit and cfg.micro_batches is None else loss_fn
        shuffle = torch.Generator().manual_seed(cfg.seed)
        if rank == 0:
            check_folder(run_dir, "run folder")
        # rank 0 alone writes (and locks) the run folder; the others read its checkpoint to resume
        with FolderLock(run_dir, "run folder") if rank == 0 else nullcontext():
            _check_start(run_dir, resume)
            log, start_epoch, json_current, best = [], 0, True, None
            if resume:
                ckpt = read_checkpoint(run_dir)
                saved = TrainConfig.from_dict(ckpt["config"])
                diff = [k for k, v in saved.to_dict().items() if k != "epochs" and getattr(cfg, k) != v]
                if diff:
                    raise ConfigError(f"{', '.join(f'{k}={getattr(cfg, k)!r}' for k in diff)} "
                                      f"{'differs' if len(diff) == 1 else 'differ'} from the run's "
                                      f"{', '.join(f'{k}={getattr(saved, k)!r}' for k in diff)}; only epochs may "
                                      "change when resuming")
                if cfg.epochs < ckpt["epoch"]:
                    raise ConfigError(f"epochs={cfg.epochs} is fewer than the {ckpt['epoch']} epochs already trained "
                                      f"in {str(run_dir)!r}: give at least {ckpt['epoch']} to resume it")
                model.load_state_dict(ckpt["model"])
                guide.load_state_dict(ckpt["guide"])
                restore_optimizer(opt, ckpt["optimizer"])
                if hasattr(loss_fn.elbo, "load_state_dict"):  # an adversarial InfoVAE's critic
                    loss_fn.elbo.load_state_dict(ckpt.get("objective", {}))
                _set_rng_state(ckpt["rng"], shuffle, device)
                log, start_epoch = ckpt["log"], ckpt["epoch"]
                best = ckpt.get("best")
                saved_epoch = start_epoch
                json_current = True
                if rank == 0:
                    check_config_json(run_dir, ckpt["config"])
                    json_current = _config_json_problem(run_dir, cfg.to_dict()) is None
                    if not json_current and cfg.to_dict() == json.loads(json.dumps(ckpt["config"])):
                        _write_config_json(run_dir, cfg)  # a copy edited or lost: the checkpoint's config again
                        json_current = True
                    if not (run_dir / "log.csv").is_file() or (run_dir / "log.csv").read_text() != _log_csv(log):
                        atomic_write_text(run_dir / "log.csv", _log_csv(log))  # repairs a write cut short
            elif rank == 0:
                _write_config_json(run_dir, cfg)
            N, B = x_train.shape[0], cfg.batch_size
            batches_per_epoch = -(-N // B)
            end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
            bar = progress_bar(cfg.epochs, "training", progress and rank == 0, unit="epoch")
            try:
                bar.update(start_epoch)
                for epoch in range(start_epoch, end_epoch):
                    t0 = time.time()
                    lr = learning_rate(cfg, epoch)
                    for g in opt.param_groups:  # in place: Adam's moments survive the schedule's steps
                        g["lr"] = lr
                    perm = torch.randperm(N, generator=shuffle).to(device)
                    total, extra = 0.0, {}
                    for b in range(batches_per_epoch):
                        idx = perm[b * B:(b + 1) * B]
                        factor = anneal_factor(cfg, epoch, b, batches_per_epoch)
                        annealing.factor = factor
                        where = f" at epoch {epoch + 1}, batch {b + 1}"
                        xb = x_train[idx]
                        if dynamic:  # its own seed: the same bits on any number of ranks, and after a resume
                            xb = dynamic_binarize(xb, stable_seed(cfg.seed, "binarize", epoch, b))
                        if cfg.micro_batches is None:
                            loss = training_step(step_loss, opt, xb, where=where, clip_value=cfg.clip_value)
                        else:
                            seeds = [stable_seed(cfg.seed, "train", epoch, b, m) for m in range(cfg.micro_batches)]
                            loss = micro_batch_step(net, opt, xb, seeds, rank, world, where=where,
                                                    clip_value=cfg.clip_value)
                        total += loss * idx.numel()
                        for k, v in getattr(loss_fn.elbo, "last_log", {}).items():
                            extra[k] = extra.get(k, 0.0) + v * idx.numel()
                    if cfg.micro_batches is not None:  # its own seed: the same draws whichever rank computed the epoch
                        torch.manual_seed(stable_seed(cfg.seed, "valid", epoch))
                    row = {"epoch": epoch + 1, "train_objective": -total / N,
                           "valid_elbo": mean_elbo(model, guide, x_valid, cfg.valid_samples) if rank == 0 else None,
                           "lr": lr,
                           **({"valid_mmd2": aggregate_mmd2(model, guide, x_valid[:cfg.monitor_mmd],
                                                            stable_seed(cfg.seed, "monitor_mmd", epoch))}
                              if cfg.monitor_mmd and rank == 0 else {}),
                           "anneal_factor": factor, "seconds": round(time.time() - t0, 3),
                           **{k: v / N for k, v in extra.items()}}
                    log.append(row)
                    if rank != 0:  # rank 0 alone shows progress and writes the run folder
                        continue
                    bar.set_postfix(train=f"{row['train_objective']:.2f}", valid=f"{row['valid_elbo']:.2f}",
                                    refresh=False)
                    bar.update()
                    if cfg.keep_best and (best is None or row["valid_elbo"] > best["valid_elbo"]):
                        best = {"epoch": epoch + 1, "valid_elbo": row["valid_elbo"],
                                "model": _cpu_copy(model.state_dict()), "guide": _cpu_copy(guide.state_dict())}
                    with signals_held():  # the interruption message names the epochs the file holds
                        atomic_torch_save(ckpt_path, {"model": model.state_dict(), "guide": guide.state_dict(),
                                                      "optimizer": opt.state_dict(), "epoch": epoch + 1,
                                                      "rng": _rng_state(shuffle, device), "log": log,
                                                      "config": cfg.to_dict(), "data_dim": model.data_dim,
                                                      "objective": _objective_state(loss_fn),
                                                      **({"best": best} if cfg.keep_best else {})})
                        saved_epoch = epoch + 1
                        if not json_current:  # the copy follows the checkpoint (e.g. extended epochs)
                            _write_config_json(run_dir, cfg)
                            json_current = True
                        atomic_write_text(run_dir / "log.csv", _log_csv(log))
            finally:
                bar.close()  # a message after an error starts on a clean line
    except KeyboardInterrupt:
        if rank != 0:
            raise TrainingInterrupted("interrupted; rank 0 writes the checkpoint and says what it holds") from None
        raise TrainingInterrupted(_interrupted(run_dir, cfg, epoch, saved_epoch, resume, resume_hint)) from None
    return TrainResult(model, guide, cfg, log, run_dir)


def holdout_split(x: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, held out)``: a seeded random ``fraction`` of the rows of ``x`` (rounded, at least one row, and
    at least one left to train on) held out, the rest in their original order. The split depends on ``seed``
    only (its own stream), so every run of a seed holds out the same rows."""
    n = x.shape[0]
    if n < 2:
        raise ConfigError(f"valid_split='holdout' needs at least 2 training rows, not {n}")
    k = min(max(1, round(fraction * n)), n - 1)
    held = torch.zeros(n, dtype=torch.bool)
    held[seeded_subset(n, k, stable_seed(seed, "holdout") % 2**32)] = True
    return x[~held], x[held]


def _cpu_copy(state: dict) -> dict:
    """A detached copy of a ``state_dict`` (the best epoch's weights must not follow later steps)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _objective_state(loss_fn) -> dict:
    """What the objective must keep across a resume (an adversarial InfoVAE's critic and its optimizer)."""
    state = getattr(loss_fn.elbo, "state_dict", None)
    return state() if state is not None else {}
