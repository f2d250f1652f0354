r"""Seconds per training step of the GPVAE sweep's models, with the eager Pyro loss and the traced one.

The runs of ``gpvae_table1 --profile cpu_converged`` (grey-level MNIST, Gaussian decoder with one learned
:math:`\sigma_x^2`, MLP networks 784-256-256 and d-256-256-784, dim z 10, batch 128, Adam lr 5e-4) for the
families whose loss has its own estimator — GPVAE (eq. 15, separate p = 256 feature networks, the closed-form
expected-log term) and ME(2) — and the VAE for reference. Per family, three copies of the same initial networks
step on the same minibatches: the eager loss (:func:`pyro_vaegap.training.make_loss`) and
:class:`~pyro_vaegap.training.traced.TracedLoss`, each with torch's per-parameter Adam loop, and the traced loss
with the fused Adam that :func:`~pyro_vaegap.training.steps.make_optimizer` builds (what training runs), in
interleaved rounds (the order rotating), so that a load change on the shared machine hits all alike; the figure
is the median over the timed steps. The traced loss checks itself against the eager one at its first call (loss,
gradients, generator state) and falls back to it if they differ: the table says whether it did.

    python -m benchmarks.bench_gpvae_train_step --data-dir /work/shared/data
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import warnings

import pyro
import torch

import pyro_vaegap  # noqa: F401  (module-local Pyro params, as the package runs)
from benchmarks.bench_train_step import time_rounds
from pyro_vaegap.data import load_dataset
from pyro_vaegap.studies.kim_pavlovic import CPU_CONVERGED, Spec, train_config
from pyro_vaegap.training import make_loss, training_step
from pyro_vaegap.training.steps import make_optimizer
from pyro_vaegap.training.build import build_guide, build_model
from pyro_vaegap.training.traced import TracedLoss
from pyro_vaegap.utils import provenance_line

FAMILIES = {"VAE": Spec("vae"), "ME(2)": Spec("me", 2), "GPVAE": Spec("gpvae")}
EPOCH_IMAGES = 54_000


def variants(spec: Spec, data_dir, seed: int) -> dict:
    """``{name: (step, loss)}`` for ``eager``, ``traced`` (torch's Adam loop) and ``traced, fused`` (the library's
    optimizer), on copies of the same initial networks; each step returns the loss."""
    cfg = train_config(spec, 10, seed, CPU_CONVERGED, data_dir)  # the profile's settings are its dict
    out = {}
    for name in ("eager", "traced", "traced, fused"):
        torch.manual_seed(seed)
        model = build_model(cfg, 784)
        guide = build_guide(cfg, model)
        if hasattr(guide, "set_training_size"):
            guide.set_training_size(EPOCH_IMAGES)
        loss_fn, annealing = make_loss(cfg, model, guide)
        fn = TracedLoss(loss_fn, annealing, (model, guide)) if name != "eager" else loss_fn
        params = [*model.parameters(), *guide.parameters()]
        opt = make_optimizer(cfg, params) if name == "traced, fused" else torch.optim.Adam(params, lr=cfg.lr)
        out[name] = ((lambda x, fn=fn, opt=opt: training_step(fn, opt, x)), fn)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="directory of MNIST/raw (default: random grey-level data)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (8)")
    p.add_argument("--steps", type=int, default=10, help="steps per variant and round (10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    if args.data_dir:
        x = load_dataset("mnist_continuous", "train", data_dir=args.data_dir)[:12_800]
        source = "grey-level MNIST train (the first 12,800 images)"
    else:
        x = torch.rand(12_800, 784, generator=gen)
        source = "uniform random 12800 x 784"
    batch = CPU_CONVERGED["batch_size"]
    perm = torch.randperm(x.shape[0], generator=gen)
    batches = [x[perm[i:i + batch]] for i in range(0, x.shape[0] - batch + 1, batch)]
    print(provenance_line())
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {platform.machine()}, one thread, CPU affinity "
          f"{sorted(os.sched_getaffinity(0))}; data: {source}; batch {batch}; dim z 10")
    print(f"{args.rounds} interleaved rounds x {args.steps} steps per variant (after {args.warmup} warm-up steps); "
          f"median over the {args.rounds * args.steps} timed steps of each")
    print(f"load average (1, 5, 15 min) at start: {os.getloadavg()}")
    print()
    print("| model | parameters | eager ms / step | traced | traced, fused Adam | eager / traced | traced / fused | "
          "eager / fused | traced loss used | s / epoch: eager, traced, fused |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label in args.families:
        v = variants(FAMILIES[label], args.data_dir, args.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fallback is reported in the table from the loss itself
            steps = {k: (step, contextlib.nullcontext) for k, (step, _) in v.items()}
            times, _ = time_rounds(steps, batches, args.rounds, args.steps, args.warmup)
        med = {k: statistics.median(t) for k, t in times.items()}
        fallback = v["traced"][1].fallback or v["traced, fused"][1].fallback
        ms = {k: 1e3 * m for k, m in med.items()}
        epoch = ", ".join(f"{m * EPOCH_IMAGES / batch:.1f}" for m in med.values())
        n = sum(p.numel() for m in (v["eager"][1].model, v["eager"][1].guide) for p in m.parameters())
        print(f"| {label} | {n:,} | {ms['eager']:.1f} | {ms['traced']:.1f} | {ms['traced, fused']:.1f} | "
              f"{med['eager'] / med['traced']:.2f}x | {med['traced'] / med['traced, fused']:.2f}x | "
              f"**{med['eager'] / med['traced, fused']:.2f}x** | {'yes' if fallback is None else 'no: ' + fallback} | "
              f"{epoch} |")
    print()
    print(f"load average (1, 5, 15 min) at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
