r"""Seconds per training step: Pyro SVI vs this package's ELBOModule step vs plain PyTorch.

The paper's MNIST architecture (Cremer et al. 2018): Bernoulli decoder 50-200-200-784, FFG encoder
784-200-200-(50+50), ELU, batch 100, one sample of :math:`z` per datapoint, Adam (lr 1e-3). Timed in
one process, in interleaved rounds (every round runs each variant for ``--steps`` steps, the order
rotating from round to round, all variants on the same minibatches), so that a load change on a
shared machine hits all three alike; the figure is the median over all timed steps.

(a) :class:`pyro.infer.SVI` with :class:`~pyro.infer.Trace_ELBO` and ``pyro.optim.Adam``, the
    parameters in Pyro's global parameter store (run under
    ``pyro.settings.context(module_local_params=False)`` after ``pyro.clear_param_store()``);
(b) :func:`pyro_vaegap.training.training_step` on :func:`pyro_vaegap.training.make_loss` — the code path of
    ``vaegap train`` with ``objective="elbo"``: a :class:`~pyro.infer.elbo.ELBOModule` of
    ``Trace_ELBO``, module-local parameters, one ``torch.optim.Adam``;
(c) a hand-written PyTorch step of the same networks: :math:`z = \mu + \sigma\epsilon`,
    :math:`-\frac1B\sum_n[\log p(x_n\mid z_n) + \log p(z_n) - \log q(z_n\mid x_n)]` with every constant
    (the single-sample estimate ``Trace_ELBO`` computes; :math:`\log q` in terms of :math:`\epsilon`,
    which has the same value and gradient), the same Adam;
(d) the step's matrix products alone — every layer's forward, weight-gradient and input-gradient
    products (not the data's input gradient) as plain matmuls of the same shapes — the step's FLOP
    floor on this CPU; each variant's time over (d)'s is printed as its share of the dense rate.

    python -m benchmarks.bench_train_step --threads 1 [--data-dir DIR] [--profile b]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import math
import pstats
import platform
import statistics
import time

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from torch.nn import functional as F

import pyro_vaegap  # noqa: F401  (module-local Pyro params, as the package runs)
from pyro_vaegap.utils import provenance_line
from pyro_vaegap.data import load_dataset
from pyro_vaegap.guides.ffg import MIN_SCALE
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.contract.registry import get_family
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.training import make_loss, training_step

BATCH, LATENT, HIDDEN, LR = 100, 50, 200, 1e-3
EPOCH_IMAGES = 50_000
LABELS = {"a": "(a) `pyro.infer.SVI`, global param store, `pyro.optim.Adam`",
          "b": "(b) `ELBOModule` step of `train.py`, module-local params, `torch.optim.Adam`",
          "c": "(c) plain PyTorch, same networks and estimate",
          "d": "(d) the step's matrix products alone (dense-rate floor)"}
#: (inputs, outputs) of every weight matrix: encoder 784-200-200-(50+50), decoder 50-200-200-784
SHAPES = ((784, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2 * LATENT), (LATENT, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 784))
#: FLOPs of those products per step: 2·B·a·b each for forward, weight and input gradient, less the data's
STEP_FLOPS = 2 * BATCH * (sum(3 * a * b for a, b in SHAPES) - SHAPES[0][0] * SHAPES[0][1])


def build(seed: int):
    """The paper's MNIST model and FFG encoder, initialized from ``seed``."""
    torch.manual_seed(seed)
    model = BernoulliVAE(784, latent_dim=LATENT, hidden=HIDDEN, decoder_layers=2, activation="elu")
    guide = get_family("ffg").make_amortized(model, hidden=HIDDEN, layers=2, activation="elu")
    return model, guide


def svi_step(seed: int, x0):
    """(a): ``(step, context)``; ``step`` must run inside ``context()``."""
    def context():
        return pyro.settings.context(module_local_params=False)

    with context():
        pyro.clear_param_store()
        model, guide = build(seed)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": LR}), Trace_ELBO())
        svi.step(x0)  # registers the parameters in the global store
        n_store = len(pyro.get_param_store())
    n_module = len(list(model.parameters())) + len(list(guide.parameters()))
    assert n_store == n_module, f"SVI sees {n_store} parameters of {n_module}"
    return (lambda x: svi.step(x) / x.shape[0]), context


def elbo_module_step(seed: int):
    """(b): exactly what :func:`pyro_vaegap.training.train` runs per minibatch."""
    model, guide = build(seed)
    loss_fn, _ = make_loss(TrainConfig(objective="elbo"), model, guide)
    opt = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=LR)
    return (lambda x: training_step(loss_fn, opt, x)), contextlib.nullcontext


def plain_step(seed: int):
    """(c): the same networks (plain ``nn.Sequential``/``nn.Linear`` modules) without Pyro."""
    model, guide = build(seed)
    body, head, decoder = guide.body, guide.head, model.decoder
    opt = torch.optim.Adam([*body.parameters(), *head.parameters(), *decoder.parameters()], lr=LR)
    log_norm = 0.5 * LATENT * math.log(2 * math.pi)

    def step(x):
        opt.zero_grad(set_to_none=True)
        loc, raw = head(body(x)).split(LATENT, dim=-1)
        scale = F.softplus(raw) + MIN_SCALE
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_px = -F.softplus((1 - 2 * x) * decoder(z)).sum(-1)      # Bernoulli, exact for x in {0, 1}
        log_pz = -0.5 * z.pow(2).sum(-1) - log_norm
        log_qz = -0.5 * eps.pow(2).sum(-1) - scale.log().sum(-1) - log_norm
        loss = -(log_px + log_pz - log_qz).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step, contextlib.nullcontext


def dense_step(seed: int):
    """(d): the matrix products of one step, nothing else."""
    g = torch.Generator().manual_seed(seed)
    mats = [(torch.randn(BATCH, a, generator=g), torch.randn(a, b, generator=g), torch.randn(BATCH, b, generator=g))
            for a, b in SHAPES]

    def step(x):
        for i, (inp, w, grad) in enumerate(mats):
            inp @ w
            inp.T @ grad
            if i:  # the first layer's input is the data: no gradient
                grad @ w.T
        return math.nan
    return step, contextlib.nullcontext


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--data-dir", help="directory of binarized_mnist.npz (default: random binary data)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds (20)")
    p.add_argument("--steps", type=int, default=25, help="steps per variant and round (25)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first (10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", choices=sorted(LABELS), help="instead: cProfile 200 steps of one variant")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    if args.data_dir:
        x = load_dataset("binarized_mnist", "train", data_dir=args.data_dir)
        source = f"binarized MNIST train ({x.shape[0]} images)"
    else:
        x = torch.bernoulli(torch.full((10_000, 784), 0.3), generator=gen)
        source = "random binary 10000 x 784"
    perm = torch.randperm(x.shape[0], generator=gen)
    batches = [x[perm[i:i + BATCH]] for i in range(0, x.shape[0] - BATCH + 1, BATCH)]

    variants = {"a": svi_step(args.seed, batches[0]), "b": elbo_module_step(args.seed), "c": plain_step(args.seed),
                "d": dense_step(args.seed)}
    if args.profile:
        step, context = variants[args.profile]
        with context():
            for i in range(args.warmup):
                step(batches[i % len(batches)])
            prof = cProfile.Profile()
            prof.enable()
            for i in range(200):
                step(batches[i % len(batches)])
            prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return

    times = {k: [] for k in variants}
    losses = {k: [] for k in variants}
    keys = list(variants)
    n = 0
    for k, (step, context) in variants.items():
        with context():
            for i in range(args.warmup):
                step(batches[i % len(batches)])
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        start = n
        for k in order:
            step, context = variants[k]
            with context():
                for i in range(args.steps):
                    xb = batches[(start + i) % len(batches)]
                    t = time.perf_counter()
                    loss = step(xb)
                    times[k].append(time.perf_counter() - t)
                    losses[k].append(loss)
        n += args.steps

    med = {k: statistics.median(v) for k, v in times.items()}
    print(provenance_line())
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {platform.machine()}, threads={args.threads}; "
          f"data: {source}; batch {BATCH}; model 50-200-200-784 / encoder 784-200-200-(50+50), ELU")
    print(f"{args.rounds} interleaved rounds x {args.steps} steps per variant (after {args.warmup} warm-up steps); "
          f"median over the {args.rounds * args.steps} timed steps of each")
    print()
    print(f"matrix products per step: {STEP_FLOPS / 1e6:.1f} MFLOP; (d) runs them at {STEP_FLOPS / med['d'] / 1e9:.1f} "
          "GFLOP/s")
    print()
    print("| variant | median ms / step | steps / s | epochs / s (50,000 images) | ratio to (c) | share of the dense "
          "rate |")
    print("|---|---|---|---|---|---|")
    for k in keys:
        sps = 1.0 / med[k]
        print(f"| {LABELS[k]} | {1e3 * med[k]:.2f} | {sps:.1f} | {sps * BATCH / EPOCH_IMAGES:.3f} | "
              f"**{med[k] / med['c']:.2f}x** | {med['d'] / med[k]:.0%} |")
    print()
    print(f"(a)/(c) = {med['a'] / med['c']:.2f}   (b)/(c) = {med['b'] / med['c']:.2f}   "
          f"(b)/(a) = {med['b'] / med['a']:.2f}")
    m = args.steps
    print("training sanity (negative ELBO per datapoint, mean of the first and last timed round): "
          + ", ".join(f"{k}: {statistics.fmean(losses[k][:m]):.1f} -> {statistics.fmean(losses[k][-m:]):.1f}"
                      for k in "abc"))


if __name__ == "__main__":
    main()
