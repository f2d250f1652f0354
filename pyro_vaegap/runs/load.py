r"""A trained run, loaded: its model, guide and config."""
from __future__ import annotations

from pathlib import Path

from .config import TrainConfig
from ..utils import ConfigError, resolve_device
from .checkpoint import read_checkpoint
from .folder import check_config_json

def load_run(run_dir, device=None, best: bool = False):
    """``(model, guide, config)`` of a trained run folder, in eval mode, on ``device`` (default cpu).

    With ``best`` the weights are those of the epoch with the best validation ELBO, which a run trained with
    ``keep_best`` keeps in its checkpoint (a run without them is an error naming the option).

    The config is the checkpoint's; a ``config.json`` that disagrees with it (or is missing or invalid)
    is reported on stderr (:func:`check_config_json`), never silently used or ignored."""
    from ..training.build import build_guide, build_model  # the training part builds what a run holds

    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir)
    cfg = TrainConfig.from_dict(ckpt["config"])
    check_config_json(run_dir, ckpt["config"])
    model = build_model(cfg, ckpt["data_dim"])
    guide = build_guide(cfg, model)
    if best and ckpt.get("best") is None:
        raise ConfigError(f"{run_dir} keeps no best-by-validation weights: train it with keep_best=True "
                          "(--keep-best), or load its last epoch (best=False)")
    state = ckpt["best"] if best else ckpt
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    device = resolve_device(device)
    return model.to(device).eval(), guide.to(device).eval(), cfg
