r"""What one training epoch of Kim & Pavlovic's Table 1 models costs here: seconds per epoch on the full training split.

For every model of ``--families`` (the paper's Table 1 rows: VAE, SA(K), IAF(K), HF(K), ME(M), RME(M), GPVAE) and each
architecture of ``--archs`` (``mlp``: encoder and decoder 2 fully connected layers of width 256; ``conv_kim``: the
supplement's Table 6 networks), the run the GPVAE experiments would train
(:data:`pyro_vaegap.studies.kim_pavlovic.PAPER_MODEL`: grey-level MNIST, the fixed-σ_x Gaussian decoder, batch 128,
Adam lr 5e-4, GPVAE with separate p = 256 feature networks and the closed-form expected-log term) is built as
training builds it (:func:`pyro_vaegap.training.build.build_model`, ``build_guide``, ``make_loss``, the traced loss
``vaegap train`` uses) and timed, not trained to the end:

* ``--steps`` training steps on seeded minibatches of 128 of the 54,000 training images (after ``--warmup`` untimed
  ones, which include tracing the loss): the median seconds per step;
* the per-epoch validation ELBO on ``--valid-points`` of the 6,000 held-out images (:func:`pyro_vaegap.training.mean_elbo`),
  scaled to 6,000;
* seconds per epoch = 422 steps (⌈54,000 / 128⌉) × the median step + the scaled validation pass.

All in this process on ``--threads`` threads (default 1), the models one after another; the machine is shared, so
the load average before and after is recorded beside the numbers. A plan (``--plan-epochs``, ``--plan-seeds``)
turns the figures into the core-hours of training the profile ``cpu_converged`` of ``gpvae_table1`` would need.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import pyro
import torch

from pyro_vaegap.data import load_dataset
from pyro_vaegap.harness import Profiles, Progress, Setting, make_parser, markdown_table, parse_args, run_main, write_results
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.studies.kim_pavlovic import PAPER_MODEL, guide_options, model_fields, parse_specs
from pyro_vaegap.training import make_loss, mean_elbo
from pyro_vaegap.training.build import build_guide, build_model
from pyro_vaegap.training.loop import holdout_split
from pyro_vaegap.training.traced import traced_loss
from pyro_vaegap.utils import ConfigError, set_seed

NAME = "gpvae_epoch_cost"
#: the two architectures' network settings (``layers``: fully connected hidden layers of encoder and decoder)
ARCHS = {"mlp": dict(arch="mlp", hidden=256, layers=2, activation="relu"),
         "conv_kim": dict(arch="conv_kim", hidden=256, layers=1, activation="relu")}
PROFILES = {
    "cpu": dict(families="vae,sa,iaf,hf,me,rme,gpvae", archs="mlp,conv_kim", dim=10, warmup=3, steps=30,
                valid_points=1000, plan_families="vae,sa1,iaf1,hf1,me2,rme2,gpvae", plan_epochs=200, plan_seeds=3),
    "quick": dict(families="vae,gpvae", archs="mlp", dim=2, warmup=1, steps=2, valid_points=50,
                  plan_families="vae,gpvae", plan_epochs=2, plan_seeds=1),
}
SETTINGS = Profiles(PROFILES, {
    "families": Setting(str, "models of the paper's Table 1 to time (a family: all its K/M; or one, e.g. sa2)"),
    "archs": Setting(str, "architectures, comma-separated: mlp, conv_kim"), "dim": Setting(int, "dim z"),
    "warmup": Setting(int, "untimed steps first (tracing included)"), "steps": Setting(int, "timed steps"),
    "valid_points": Setting(int, "held-out images of the timed validation pass (scaled to 6,000)"),
    "plan_families": Setting(str, "models of the training plan"),
    "plan_epochs": Setting(int, "epochs per run of the plan"), "plan_seeds": Setting(int, "seeds per model of the plan")},
    default="cpu", help={"cpu": "the 22 models × mlp and conv_kim at dim z 10, 30 timed steps each"})

TRAIN_IMAGES, VALID_IMAGES = 54_000, 6_000


def time_model(cfg: TrainConfig, x_train, x_valid, warmup: int, steps: int) -> dict:
    """Median seconds per training step, and of the validation pass, of the run ``cfg`` (timed, not trained)."""
    set_seed(cfg.seed)
    model = build_model(cfg, x_train.shape[1])
    guide = build_guide(cfg, model)
    guide.set_training_size(TRAIN_IMAGES)
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=cfg.lr)
    loss_fn, annealing = make_loss(cfg, model, guide)
    step = traced_loss(loss_fn, annealing, (model, guide))
    gen = torch.Generator().manual_seed(cfg.seed)
    times, nonfinite = [], []
    # training_step's step, without its stop on a non-finite loss (and Pyro's checks of distribution
    # parameters): a model whose loss is not finite is timed all the same, and the steps where it was are recorded
    with pyro.validation_enabled(False):
        for i in range(warmup + steps):
            xb = x_train[torch.randint(x_train.shape[0], (cfg.batch_size,), generator=gen)]
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = step(xb) / xb.shape[0]
            loss.backward()
            opt.step()
            value = float(loss.detach())
            if i >= warmup:
                times.append(time.perf_counter() - t)
            if not math.isfinite(value):
                nonfinite.append(i + 1)
        t = time.perf_counter()
        mean_elbo(model, guide, x_valid, 1)
        valid = time.perf_counter() - t
    per_step = statistics.median(times)
    batches = math.ceil(TRAIN_IMAGES / cfg.batch_size)
    valid_scaled = valid * VALID_IMAGES / x_valid.shape[0]
    params = sum(p.numel() for p in (*model.parameters(), *guide.parameters()))
    return {"step_seconds": per_step, "step_seconds_all": times, "valid_seconds": valid, "nonfinite_steps": nonfinite,
            "epoch_seconds": batches * per_step + valid_scaled, "batches_per_epoch": batches, "parameters": params}


def _nonfinite_text(steps: list, s: dict) -> str:
    total = s["warmup"] + s["steps"]
    return "–" if not steps else f"{len(steps)} of {total} steps (from step {steps[0]})"


def main(argv=None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0], SETTINGS)
    parser.add_argument("--data-dir", help="folder with MNIST/raw (else $PYRO_VAEGAP_DATA)")
    args = parse_args(parser, argv)
    s = SETTINGS.apply(args)
    try:
        specs, plan_specs = parse_specs(s["families"]), parse_specs(s["plan_families"])
        archs = [a.strip() for a in s["archs"].split(",") if a.strip()]
        bad = [a for a in archs if a not in ARCHS]
        if bad or not archs:
            raise ConfigError(f"--archs {s['archs']!r} is not allowed: use {', '.join(ARCHS)}, comma-separated")
        for k in ("dim", "steps", "valid_points", "plan_epochs", "plan_seeds"):
            if s[k] <= 0:
                raise ConfigError(f"--{k.replace('_', '-')}={s[k]} is not allowed: it must be > 0")
    except ConfigError as e:
        parser.error(str(e))
    out, progress = Path(args.out), Progress(args.quiet)
    x = torch.cat([load_dataset("mnist_continuous", "train", data_dir=args.data_dir),
                   load_dataset("mnist_continuous", "valid", data_dir=args.data_dir)])
    x_train, x_held = holdout_split(x, 0.1, 0)
    x_valid = x_held[:s["valid_points"]]
    load_before = os.getloadavg()
    cells = {}
    for arch in archs:
        for sp in specs:
            st = {**PAPER_MODEL, **ARCHS[arch]}
            cfg = TrainConfig(**model_fields(st), data_dir=args.data_dir, latent_dim=s["dim"], guide=sp.family,
                              guide_options=guide_options(sp.family, st, **sp.options), epochs=1,
                              batch_size=st["batch_size"], lr=st["lr"], seed=args.seed)
            r = time_model(cfg, x_train, x_valid, s["warmup"], s["steps"])
            cells[f"{sp.label}|{arch}"] = {"model": sp.label, "arch": arch, "config": cfg.to_dict(), **r}
            progress(f"{sp.label} {arch}: {r['step_seconds'] * 1e3:.1f} ms/step, {r['epoch_seconds']:.1f} s/epoch"
                     + (f", loss not finite at steps {r['nonfinite_steps']}" if r["nonfinite_steps"] else ""))
    load_after = os.getloadavg()
    rows = [[sp.label] + [f"{cells[f'{sp.label}|{a}']['step_seconds'] * 1e3:.1f}" for a in archs]
            + [f"{cells[f'{sp.label}|{a}']['epoch_seconds']:.0f}" for a in archs]
            + [f"{cells[f'{sp.label}|{a}']['parameters'] / 1e6:.2f}" for a in archs]
            + [_nonfinite_text(cells[f"{sp.label}|{a}"]["nonfinite_steps"], s) for a in archs] for sp in specs]
    plan = {}
    for arch in archs:
        missing = [sp.label for sp in plan_specs if f"{sp.label}|{arch}" not in cells]
        if missing:
            continue
        hours = {sp.label: cells[f"{sp.label}|{arch}"]["epoch_seconds"] * s["plan_epochs"] * s["plan_seeds"] / 3600
                 for sp in plan_specs}
        plan[arch] = {"models": [sp.label for sp in plan_specs], "epochs": s["plan_epochs"], "seeds": s["plan_seeds"],
                      "core_hours_by_model": hours, "core_hours": sum(hours.values()),
                      "wall_hours_on_2_cores": sum(hours.values()) / 2}
    md = (f"Seconds per training epoch on the {TRAIN_IMAGES:,} training images (⌈{TRAIN_IMAGES:,} / 128⌉ = "
          f"{math.ceil(TRAIN_IMAGES / 128)} Adam steps of batch 128, each the median of {s['steps']} timed steps after "
          f"{s['warmup']} untimed, plus the validation ELBO on {VALID_IMAGES:,} held-out images timed on "
          f"{s['valid_points']} and scaled; a model whose training loss is not finite is timed all the same, and the "
          f"steps where it was are listed), dim z = {s['dim']}, grey-level MNIST with the fixed-σ_x Gaussian decoder, "
          f"GPVAE with separate p = 256 feature networks and the closed-form term; {torch.get_num_threads()} torch thread(s). "
          f"Architectures: " + "; ".join(f"{a} ({ARCHS[a]['layers']} fully connected layer(s) of {ARCHS[a]['hidden']}"
                                         + (", supplement Table 6's convolutions" if a == "conv_kim" else "") + ")"
                                         for a in archs)
          + f". The machine was shared: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
            f"(2 cores).\n\n")
    md += markdown_table(["model"] + [f"ms / step {a}" for a in archs] + [f"s / epoch {a}" for a in archs]
                         + [f"M params {a}" for a in archs] + [f"loss not finite {a}" for a in archs], rows)
    for arch, p in plan.items():
        md += (f"\nPlan ({arch}): {', '.join(p['models'])}, {p['seeds']} seeds × {p['epochs']} epochs each: "
               f"{p['core_hours']:.1f} core-hours of training ({p['wall_hours_on_2_cores']:.1f} h on both cores, one "
               f"run per core), not counting evaluation.\n")
    write_results(out, NAME, args, {"settings": s, "cells": cells, "plan": plan, "load_average_before": load_before,
                                    "load_average_after": load_after}, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return cells, plan


if __name__ == "__main__":
    run_main(main, None)
