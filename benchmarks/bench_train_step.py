r"""Seconds per training step of Cremer et al.'s MNIST protocol: plain PyTorch vs the Pyro step, eager and traced.

The model and training of the two paper-protocol runs (``runs/cremer_authors_ffg`` and ``_flow``): Bernoulli
decoder 50-200-200-784, FFG encoder 784-200-200-(50+50) or the auxiliary flow guide (``flow_hidden`` 100, two
coupling steps), ELU, batch 100, one sample of :math:`z` per datapoint, entropy annealing (the guide's
log-density weighted by :math:`\lambda`; timed at :math:`\lambda` = 0.5), Adam (lr 1e-3, eps 1e-4). Each
variant steps its own copy of the same initial networks; all are timed in one process, in interleaved rounds
(every round runs each variant for ``--steps`` steps, the order rotating from round to round, all variants on
the same minibatches), so that a load change on the shared machine hits all alike; the figure is the median
over all timed steps.

(a) ``plain``: a hand-written PyTorch step of the same networks, the benchmark's reference only (no library
    code uses it): encoder, :math:`z = \mu + \sigma\epsilon` (the flow: :math:`z_0`, :math:`v_0`, the
    coupling steps of :func:`guides.flow.coupling_flow`, the reverse model), decoder,
    :math:`-\frac1B\sum_n[\log p(x_n, z_n) - \lambda\log q(z_n\mid x_n)]` with every constant (the flow: its
    auxiliary bound, every guide term weighted by :math:`\lambda` as Pyro's annealing weights every guide
    site), backward, Adam;
(b) ``pyro``: :func:`pyro_vaegap.training.training_step` on :func:`pyro_vaegap.training.make_loss`'s eager
    loss, what ``vaegap train --no-jit`` runs (and the runs above, started before the traced loss existed);
(c) ``pyro-jit``: the same step on :class:`pyro_vaegap.training.traced.TracedLoss`, what ``vaegap train``
    runs by default;
(d) ``matmul``: the step's matrix products alone (every layer's forward, weight-gradient and input-gradient
    product as plain matmuls of the same shapes; FFG only), the FLOP floor of the step on this CPU.

With ``--bf16``, (a) and (b) are timed once more under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(forward pass and loss; backward and Adam as autocast leaves them).

Before timing, each guide's first step is checked: (b) and (c) from the same seed and the same networks must
give the same loss and gradients, and (a) the same loss as (b) (a check of the reference).

    taskset -c 1 python -m benchmarks.bench_train_step --data-dir /work/shared/data [--guides ffg flow] [--bf16]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import time

import pyro
import torch
from torch.nn import functional as F

import pyro_vaegap  # noqa: F401  (module-local Pyro params, as the package runs)
from pyro_vaegap.guides.ffg import MIN_SCALE
from pyro_vaegap.guides.flow import coupling_flow
from pyro_vaegap.data import load_dataset
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.training import make_loss, training_step
from pyro_vaegap.training.build import build_guide, build_model
from pyro_vaegap.training.traced import TracedLoss
from pyro_vaegap.utils import provenance_line

BATCH, LATENT, HIDDEN, LR, EPS, FACTOR = 100, 50, 200, 1e-3, 1e-4, 0.5
EPOCH_IMAGES = 60_000
LOG_2PI = math.log(2 * math.pi)
#: (inputs, outputs) of every weight matrix of the FFG model: encoder 784-200-200-(50+50), decoder 50-200-200-784
SHAPES = ((784, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2 * LATENT), (LATENT, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 784))
STEP_FLOPS = 2 * BATCH * (sum(3 * a * b for a, b in SHAPES) - SHAPES[0][0] * SHAPES[0][1])


def config(guide: str) -> TrainConfig:
    """The runs' config (``runs/cremer_authors_*/config.json``) as far as a step is concerned."""
    return TrainConfig(dataset="binarized_mnist", model="bernoulli", latent_dim=LATENT, hidden=HIDDEN,
                       decoder_layers=2, activation="elu", guide=guide, objective="elbo", num_particles=1,
                       anneal="entropy", anneal_epochs=400, batch_size=BATCH, lr=LR, adam_eps=EPS)


def build(guide: str, seed: int):
    torch.manual_seed(seed)
    cfg = config(guide)
    model = build_model(cfg, 784)
    return cfg, model, build_guide(cfg, model)


def adam(*modules):
    return torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR, eps=EPS)


def gaussian(h):
    loc, raw = h.split(LATENT, dim=-1)
    return loc, F.softplus(raw) + MIN_SCALE


def normal_log_prob(value, loc, scale):
    return (-0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


def plain_loss(guide_name, model, guide):
    """(a)'s loss, hand-written: ``x -> -mean[log p(x, z) - λ log q]`` (the flow: its auxiliary bound)."""
    decoder = model.decoder

    def log_joint(x, z):
        log_px = -F.softplus((1 - 2 * x) * decoder(z)).sum(-1)   # Bernoulli, exact for x in {0, 1}
        return log_px - 0.5 * z.pow(2).sum(-1) - 0.5 * LATENT * LOG_2PI

    if guide_name == "ffg":
        body, head = guide.body, guide.head

        def loss(x):
            loc, scale = gaussian(head(body(x)))
            z = loc + scale * torch.randn_like(loc)
            return -(log_joint(x, z) - FACTOR * normal_log_prob(z, loc, scale)).mean()
        return loss

    base, q_v, reverse, nets = guide.base, guide.q_v, guide.reverse, guide.nets

    def split(net):
        return lambda h: net(h).split(LATENT, dim=-1)

    steps = [(split(nets[i]), split(nets[i + 1])) for i in range(0, len(nets), 2)]

    def loss(x):
        loc, scale = gaussian(base.head(base.body(x)))
        z0 = loc + scale * torch.randn_like(loc)
        v_loc, v_scale = gaussian(q_v(z0))
        v0 = v_loc + v_scale * torch.randn_like(v_loc)
        zT, vT, log_det = coupling_flow(z0, v0, steps)
        log_q = normal_log_prob(z0, loc, scale) + normal_log_prob(v0, v_loc, v_scale) - log_det
        log_r = normal_log_prob(vT, *gaussian(reverse(zT)))
        return -(log_joint(x, zT) - FACTOR * (log_q - log_r)).mean()
    return loss


def variants(guide_name: str, seed: int, bf16: bool):
    """``{name: (step, context)}``; ``step(x)`` runs inside ``context()``."""
    out = {}
    _, model, guide = build(guide_name, seed)
    loss, opt = plain_loss(guide_name, model, guide), adam(model, guide)

    def plain(x, loss=loss, opt=opt):
        opt.zero_grad(set_to_none=True)
        value = loss(x)
        value.backward()
        opt.step()
        return float(value.detach())
    out["plain"] = plain
    for name in ("pyro", "pyro-jit"):
        cfg, model, guide = build(guide_name, seed)
        loss_fn, annealing = make_loss(cfg, model, guide)
        annealing.factor = FACTOR
        fn = TracedLoss(loss_fn, annealing, (model, guide)) if name == "pyro-jit" else loss_fn
        out[name] = (lambda x, fn=fn, opt=adam(model, guide): training_step(fn, opt, x))
    steps = {k: (v, contextlib.nullcontext) for k, v in out.items()}
    if bf16:
        for k in ("plain", "pyro"):
            fresh = variants(guide_name, seed, False)[k][0]
            steps[k + " bf16"] = (fresh, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    return steps


def matmul_step(seed: int):
    """(d): the matrix products of one FFG step, nothing else."""
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


def check_first_step(guide_name: str, seed: int, x: torch.Tensor) -> str:
    """(b) vs (c) and (a) vs (b): loss and gradients of one step from the same seed and networks."""
    results = {}
    for name in ("plain", "pyro", "pyro-jit"):
        cfg, model, guide = build(guide_name, seed)
        params = [p for m in (model, guide) for p in m.parameters()]
        torch.manual_seed(seed + 1)
        if name == "plain":
            value = plain_loss(guide_name, model, guide)(x)
        else:
            loss_fn, annealing = make_loss(cfg, model, guide)
            annealing.factor = FACTOR
            fn = TracedLoss(loss_fn, annealing, (model, guide)) if name == "pyro-jit" else loss_fn
            value = fn(x) / x.shape[0]
            if name == "pyro-jit":  # the second call replays the graph (the first traces and checks it)
                torch.manual_seed(seed + 1)
                value = fn(x) / x.shape[0]
        grads = torch.autograd.grad(value, params)
        results[name] = (float(value.detach()), grads, torch.get_rng_state())
    (lb, gb, sb), (lc, gc, sc), (la, ga, _) = results["pyro"], results["pyro-jit"], results["plain"]
    dg = max(float((a - b).abs().max()) for a, b in zip(gb, gc))
    dga = max(float((a - b).abs().max()) for a, b in zip(gb, ga))
    return (f"{guide_name}: first step from seed {seed}: loss (b) {lb:.6f}, (c) {lc:.6f}, (a) {la:.6f}; "
            f"max |grad (b) - grad (c)| = {dg:.3g}, same generator state after (b) and (c): {torch.equal(sb, sc)}; "
            f"max |grad (b) - grad (a)| = {dga:.3g}")


def time_rounds(steps: dict, batches, rounds: int, per_round: int, warmup: int):
    times = {k: [] for k in steps}
    losses = {k: [] for k in steps}
    keys = list(steps)
    for k, (step, context) in steps.items():
        for i in range(warmup):
            with context():  # entered per step: autocast's cast weights are cached until its context exits
                step(batches[i % len(batches)])
    n = 0
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            step, context = steps[k]
            for i in range(per_round):
                xb = batches[(n + i) % len(batches)]
                t = time.perf_counter()
                with context():
                    loss = step(xb)
                times[k].append(time.perf_counter() - t)
                losses[k].append(loss)
        n += per_round
    return times, losses


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--data-dir", help="directory of binarized_mnist.npz (default: random binary data)")
    p.add_argument("--guides", nargs="+", default=["ffg", "flow"], choices=["ffg", "flow"])
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (10)")
    p.add_argument("--steps", type=int, default=20, help="steps per variant and round (20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first (5)")
    p.add_argument("--bf16", action="store_true", help="also (a) and (b) under bf16 autocast")
    p.add_argument("--seed", type=int, default=0)
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

    print(provenance_line())
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {platform.machine()}, threads={args.threads}, "
          f"CPU affinity {sorted(os.sched_getaffinity(0))}; data: {source}; batch {BATCH}; decoder 50-200-200-784 "
          f"Bernoulli, ELU, entropy annealing at lambda = {FACTOR}, Adam(lr {LR}, eps {EPS})")
    print(f"{args.rounds} interleaved rounds x {args.steps} steps per variant (after {args.warmup} warm-up steps); "
          f"median over the {args.rounds * args.steps} timed steps of each")
    print(f"load average (1, 5, 15 min) at start: {os.getloadavg()}")
    for guide_name in args.guides:
        print()
        print(check_first_step(guide_name, args.seed, batches[0]))
        steps = variants(guide_name, args.seed, args.bf16)
        if guide_name == "ffg":
            steps["matmul"] = matmul_step(args.seed)
        times, losses = time_rounds(steps, batches, args.rounds, args.steps, args.warmup)
        med = {k: statistics.median(v) for k, v in times.items()}
        print()
        print(f"guide {guide_name}:")
        print()
        print("| variant | median ms / step | IQR ms | s / epoch (60,000 images) | ratio to plain |")
        print("|---|---|---|---|---|")
        for k in steps:
            q = statistics.quantiles(times[k], n=4)
            print(f"| {k} | {1e3 * med[k]:.2f} | {1e3 * q[0]:.2f}-{1e3 * q[2]:.2f} | "
                  f"{med[k] * EPOCH_IMAGES / BATCH:.2f} | **{med[k] / med['plain']:.2f}x** |")
        print()
        print(f"pyro / plain = {med['pyro'] / med['plain']:.2f}   pyro-jit / plain = {med['pyro-jit'] / med['plain']:.2f}"
              f"   pyro / pyro-jit = {med['pyro'] / med['pyro-jit']:.2f}"
              + (f"   matmul floor {STEP_FLOPS / 1e6:.1f} MFLOP at {STEP_FLOPS / med['matmul'] / 1e9:.1f} GFLOP/s"
                 if "matmul" in med else ""))
        m = args.steps
        print("training sanity (negative ELBO-type loss per datapoint, mean of the first and last timed round): "
              + ", ".join(f"{k}: {statistics.fmean(losses[k][:m]):.1f} -> {statistics.fmean(losses[k][-m:]):.1f}"
                          for k in steps if k != "matmul"))
    print()
    print(f"load average (1, 5, 15 min) at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
