"""bf16 gradients in the search for q* against fp32, paired over the same MNIST points: the bound each finds, and its cost.

Issue 20's argument for reduced precision in the local optimization: any gradient may steer the search for q*;
the reported :math:`\\mathcal L[q^*]` is scored in fp32 with fresh draws, so it stays a valid bound of the fp32
model, and the price is at most a worse q*. This measures that price. For each of ``--num-points`` seeded test
points of binarized MNIST and a trained run's model, the per-datum FFG q* is found twice from the encoder's
output with the same reparameterization noise (:func:`pyro_vaegap.estimators.local.optimize_local`, ``seed``
fixed, Adam lr 1e-3, ``--samples`` draws per step, the paper's stopping rule capped at ``--max-steps``): once
with fp32 gradients, once with ``gradient_dtype="bfloat16"``. Both q* are then scored in fp32 by the same
``--score-samples`` fresh draws (:func:`pyro_vaegap.estimators.importance_sample`, seeded alike).

Printed: mean ± s.e. of :math:`\\mathcal L[q^*]` of each, their paired difference (bf16 − fp32) with its
standard error over the points, the steps each took, and the wall time of each search in this process.

    python -m benchmarks.bench_bf16_search --run RUN_DIR --data-dir DIR [--num-points 20] [--max-steps 3000]
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.estimators.local import optimize_local
from pyro_vaegap.contract.registry import get_family
from pyro_vaegap.runs import load_run
from pyro_vaegap.runs.checkpoint import read_checkpoint
from pyro_vaegap.utils import provenance_line


def search(model, encoder, x, dtype, args):
    """q* of the per-datum FFG from the encoder's output, with gradients in ``dtype``; returns (guide, result, seconds)."""
    local = get_family("ffg").make_local(model, x.shape[0])
    local.init_from_amortized(encoder, x)
    t = time.perf_counter()
    res = optimize_local(model, local, x, num_samples=args.samples, lr=1e-3, max_steps=args.max_steps,
                         seed=args.seed, gradient_dtype=dtype)
    return local, res, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a trained run folder (vaegap train), read only")
    p.add_argument("--data-dir", help="directory of binarized_mnist.npz")
    p.add_argument("--num-points", type=int, default=20)
    p.add_argument("--samples", type=int, default=100, help="draws per search step (the paper: 100)")
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--score-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start, header = os.getloadavg(), provenance_line()  # the code state the numbers come from
    model, encoder, cfg = load_run(args.run)
    epoch = read_checkpoint(args.run)["epoch"]
    x = load_dataset(cfg.dataset, "test", data_dir=args.data_dir)
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)]
    out = {}
    for name, dtype in (("fp32", None), ("bf16", "bfloat16")):
        local, res, seconds = search(model, encoder, x, dtype, args)
        torch.manual_seed(args.seed + 1)  # the same fresh draws score both
        score = importance_sample(model, local, x, num_samples=args.score_samples, psis=False)
        out[name] = dict(elbo=score.elbo, se=score.elbo_se, steps=res.steps, seconds=seconds)
    n = x.shape[0]
    diff = out["bf16"]["elbo"] - out["fp32"]["elbo"]
    print(header)
    print(f"torch threads={args.threads}; load average (1, 5, 15 min) at start {tuple(round(v, 2) for v in load_start)}, "
          f"at end {tuple(round(v, 2) for v in os.getloadavg())}")
    print(f"run {args.run} (epoch {epoch}: {cfg.dataset}, {cfg.guide}, decoder {cfg.latent_dim}-{cfg.hidden}x"
          f"{cfg.decoder_layers}); {n} seeded test points (seed {args.seed}); per-datum FFG from the encoder's output, "
          f"{args.samples} draws/step, lr 1e-3, stopping rule capped at {args.max_steps} steps; L[q*] scored in fp32 "
          f"with {args.score_samples} fresh draws (the same for both)")
    print()
    print("| search gradients | L[q*] mean ± s.e. over points | steps (median, max) | search wall time (s) |")
    print("|---|---|---|---|")
    for name in ("fp32", "bf16"):
        o = out[name]
        steps = o["steps"].double()
        print(f"| {name} | {o['elbo'].mean():.3f} ± {o['elbo'].std() / math.sqrt(n):.3f} | "
              f"{steps.median():.0f}, {steps.max():.0f} | {o['seconds']:.1f} |")
    print()
    print(f"paired L[q*] bf16 − fp32: {diff.mean():+.4f} ± {diff.std() / math.sqrt(n):.4f} nats "
          f"(min {diff.min():+.4f}, max {diff.max():+.4f}); scoring s.e. per point ≈ {out['fp32']['se'].mean():.4f}")
    print(f"search time bf16 / fp32: {out['bf16']['seconds'] / out['fp32']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
