r"""Seconds per training step of the InfoVAE PixelCNN VAE (``infovae_loglik``'s authors' protocol) by PixelCNN size.

What sizes a profile that trains to convergence on this CPU: the step :func:`pyro_vaegap.training.train` runs (the
traced Pyro loss, :func:`~pyro_vaegap.training.training_step`, RMSProp, gradient clipping by value 1) of the
ELBO model and the MMD, Stein and adversarial InfoVAE models at the paper's weights, batch 100 of dynamically
binarized MNIST, dim z = 5, the conv encoder with one fully connected layer of 512, for each ``--sizes`` entry
``LAYERSxCHANNELS`` of the gated PixelCNN (the authors' 12x32 and smaller). Each configuration makes 2 warm-up
steps, then ``--steps`` timed ones; the figures are their medians of the process's CPU time (the step's own cost,
whatever else runs) and of the wall-clock time (which adds the wait for a core on the shared machine, whose load,
``os.getloadavg``, is printed beside). One torch thread.

    PYRO_VAEGAP_THREADS=1 python -m benchmarks.bench_infovae_step --data-dir /work/shared/data \
        --sizes 12x32 6x32 4x16 3x16 3x8 --out docs/results/bench_infovae_step.txt
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace

import torch

from pyro_vaegap.data import dynamic_binarize, load_dataset
from pyro_vaegap.studies.infovae_pixelcnn import AUTHORS, loglik_config
from pyro_vaegap.training import make_loss, training_step
from pyro_vaegap.training.build import build_guide, build_model
from pyro_vaegap.training.steps import make_optimizer
from pyro_vaegap.training.traced import traced_loss
from pyro_vaegap.utils import provenance_line


def step_seconds(cfg, x: torch.Tensor, steps: int) -> tuple[float, float]:
    """Median CPU seconds of this process and median wall-clock seconds of ``steps`` training steps of ``cfg``'s
    model on the batch ``x`` (after 2 warm-up steps). On a shared machine the CPU time is the cost of the step
    itself; the wall time adds the waiting for a core."""
    torch.manual_seed(0)
    model = build_model(cfg, x.shape[1])
    guide = build_guide(cfg, model)
    opt = make_optimizer(cfg, [*model.parameters(), *guide.parameters()])
    loss_fn, annealing = make_loss(cfg, model, guide)
    step = traced_loss(loss_fn, annealing, (model, guide))
    cpu, wall = [], []
    for i in range(steps + 2):
        c, t = time.process_time(), time.perf_counter()
        training_step(step, opt, x, clip_value=cfg.clip_value)
        if i >= 2:
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - t)
    return statistics.median(cpu), statistics.median(wall)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--sizes", nargs="+", default=["12x32", "6x32", "4x16", "3x16", "3x8"])
    p.add_argument("--objectives", nargs="+", default=["elbo", "mmd", "stein", "adversarial"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    grey = load_dataset("dynamic_mnist", "train", data_dir=args.data_dir)[:AUTHORS["batch_size"]]
    x = dynamic_binarize(grey, 0)
    lines = [provenance_line(), "seconds per training step (median of CPU and of wall time), batch 100, one thread; "
             f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", ""]
    print("\n".join(lines), flush=True)
    for size in args.sizes:
        layers, channels = (int(v) for v in size.split("x"))
        for obj in args.objectives:
            ns = SimpleNamespace(**{**AUTHORS, "data_dir": args.data_dir, "latent_dim": 5, "pixelcnn_layers": layers,
                                    "pixelcnn_channels": channels, "epochs": 1, "lr": 1e-3, "seed": 0,
                                    "alpha": None, "lambda_": None})
            cfg = loglik_config(ns, obj)
            cpu, wall = step_seconds(cfg, x, args.steps)
            line = (f"PixelCNN {layers:2d} layers x {channels:2d} maps, {obj:11s}: {cpu:.3f} CPU s/step "
                    f"({cpu * 500 / 60:.1f} CPU min per epoch of 50,000 images, "
                    f"{cpu * 40_000 / 3600:.1f} CPU h for the authors' 40,000 steps); "
                    f"wall {wall:.3f} s/step at load {os.getloadavg()[0]:.1f}")
            print(line, flush=True)
            lines.append(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
