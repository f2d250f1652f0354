"""``vaegap train``: train a VAE into a run folder, or continue one (``--resume``); data parallel under torchrun."""
from __future__ import annotations

import shlex

from ..training.distributed import process_group, rank_device, world_from_env
from ..runs import TrainConfig, resume_config
from ..training import train
from .options import _given, _read_config_file

def cmd_train(args):
    """Train, or with ``--resume`` continue the run's own config (only ``--epochs`` may be given anew)."""
    given = _given(TrainConfig, args, _read_config_file(args.config))
    cfg = resume_config(args.run_dir, given) if args.resume else TrainConfig(**given)
    resume = f'"vaegap train --run-dir {shlex.quote(str(args.run_dir))} --resume"'
    rank, world = world_from_env()  # launched by torchrun: data-parallel training (see train())
    device = rank_device(args.device)
    with process_group(world, device):
        res = train(cfg, args.run_dir, resume=args.resume, progress=not args.quiet, download=args.download,
                    resume_hint=resume, device=device, jit=args.jit)
    if rank != 0:
        return
    last = res.log[-1] if res.log else {}
    print(f"trained {cfg.guide} VAE on {cfg.dataset}: epoch {last.get('epoch')}, train objective "
          f"{last.get('train_objective', float('nan')):.3f}, validation ELBO {last.get('valid_elbo', float('nan')):.3f} nats; "
          f"run folder {res.run_dir}")
