r"""Seconds per encoder pass producing :math:`q(z\mid x)`: GPVAE's moment-matched marginal vs the plain FFG encoder.

MNIST-sized input (784), the library's MNIST encoder (Cremer et al. 2018: 784-200-200-(50+50), ELU;
``--hidden`` changes the width), :math:`d = 50`, a batch of 128, under ``torch.no_grad()`` (inference).
Timed in one process, in interleaved rounds (every round runs each variant ``--repeats`` times, the
order rotating from round to round, all on the same batch), so a load change on a shared machine hits
all alike; the figure is the median over all timed calls of each.

(a) :meth:`pyro_vaegap.guides.ffg.FFGEncoder.encode`: :math:`(\mu(x), \sigma(x))`;
(b) :meth:`pyro_vaegap.guides.gpvae.GPVAEEncoder.moments`, the same encoder weights: :math:`b, c, \psi`,
    then eq. 13 with the :math:`2d` quadratic forms :math:`\|L_j^\top\psi\|^2, \|G_j^\top\psi\|^2` from
    the Cholesky factors rebuilt on every call — what training runs;
(c) :meth:`pyro_vaegap.guides.gpvae.GPVAEEncoder.encode` without gradients — what scoring and the gap
    report run: eq. 13 with :math:`A_j = \Sigma_j + \Gamma_j` computed once per parameter state
    (:meth:`~pyro_vaegap.guides.gpvae.GPVAEEncoder.covariances`, formed by the warm-up calls), so a call
    computes :math:`d` quadratic forms :math:`\psi^\top A_j\psi` instead of :math:`2d`; checked to agree
    with (b).

Multiply-adds per row: (a) :math:`784p + p^2 + 2dp`; (b) adds :math:`2dp^2 + 2dp`; (c) adds
:math:`dp^2 + 2dp` (:math:`p` = the hidden width). The quadratic forms dominate (b) and (c) for any
:math:`p` near the input width, whatever the implementation: every entry of every :math:`\Sigma_j`
enters every row's variance.

    python -m benchmarks.bench_gpvae_inference --threads 1 [--data-dir DIR] [--hidden 200]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import pyro
import pyro.distributions as dist
import torch

import pyro_vaegap  # noqa: F401  (module-local Pyro params, as the package runs)
from pyro_vaegap.data import load_dataset
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.contract.registry import get_family
from pyro_vaegap.utils import provenance_line

BATCH, LATENT, DATA_DIM = 128, 50, 784
LABELS = {"a": "(a) FFG encoder", "b": "(b) GPVAE marginal (eq. 13), factors rebuilt per call (training)",
          "c": "(c) GPVAE marginal, Σ_j + Γ_j cached (evaluation: the library's encode without gradients)"}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build(hidden: int, seed: int):
    """The FFG encoder and a GPVAE guide carrying the same encoder weights."""
    torch.manual_seed(seed)
    model = BernoulliVAE(DATA_DIM, latent_dim=LATENT, hidden=hidden, decoder_layers=2, activation="elu")
    ffg = get_family("ffg").make_amortized(model, hidden=hidden, layers=2, activation="elu")
    gp = get_family("gpvae").make_amortized(model, hidden=hidden, layers=2, activation="elu")
    gp.base.load_state_dict(ffg.state_dict())
    return ffg.eval(), gp.eval()


def uncached_encode(gp):
    """(b): ``x ↦ (m, sqrt v)`` by :meth:`~pyro_vaegap.guides.gpvae.GPVAEEncoder.moments`, the Cholesky
    factors rebuilt and the :math:`2d` quadratic forms taken on every call, as training computes them."""
    def encode(x):
        mo = gp.moments(x)
        return mo.loc, mo.scale
    return encode


def interleaved_times(variants: dict, x, rounds: int, repeats: int, warmup: int, sync=None) -> dict:
    """Seconds of each call ``f(x)`` of every variant (name → callable): ``warmup`` untimed calls of each
    first, then ``rounds`` rounds in which every variant runs ``repeats`` timed calls, the order rotating
    by one from round to round, so a change of load on a shared machine hits all variants alike.

    :param sync: called before each clock reading (``torch.cuda.synchronize`` on a GPU, whose kernels
        run asynchronously); ``None`` on the CPU.
    :returns: name → list of ``rounds × repeats`` durations.
    """
    sync = sync or (lambda: None)
    times = {k: [] for k in variants}
    for f in variants.values():
        for _ in range(warmup):
            f(x)
    keys = list(variants)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            f = variants[k]
            for _ in range(repeats):
                sync()
                t = time.perf_counter()
                f(x)
                sync()
                times[k].append(time.perf_counter() - t)
    return times


def gaussian_draw(encode):
    """``x ↦ (z, log q(z|x))`` for a Gaussian ``q = N(encode(x))``: one reparameterized draw per row."""
    def draw(x):
        loc, scale = encode(x)
        q = dist.Normal(loc, scale, validate_args=False).to_event(1)
        z = q.rsample()
        return z, q.log_prob(z)
    return draw


def q_draw(guide):
    """``x ↦ (z, log q(z|x))``, one draw per row from an amortized guide: through its ``distribution(x)``
    when it has one (a flow: the encoder, then every transform), else from the Gaussian of its
    ``encode(x)`` (``ffg``, ``sa`` with its refinement steps, ``gpvae``'s marginal) — what using the
    encoder for inference costs, without Pyro's tracing."""
    if hasattr(guide, "distribution"):
        def draw(x):
            q = guide.distribution(x)
            z = q.rsample()
            return z, q.log_prob(z)
        return draw
    return gaussian_draw(guide.encode)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--data-dir", help="directory of binarized_mnist.npz (default: random binary data)")
    p.add_argument("--hidden", type=int, default=200, help="encoder width p (200, the library's MNIST default)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds (20)")
    p.add_argument("--repeats", type=int, default=25, help="calls per variant and round (25)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per variant first (10)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    gen = torch.Generator().manual_seed(args.seed)
    if args.data_dir:
        x = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
        x = x[torch.randperm(x.shape[0], generator=gen)[:BATCH]]
        source = "binarized MNIST test (128 random images)"
    else:
        x = torch.bernoulli(torch.full((BATCH, DATA_DIM), 0.3), generator=gen)
        source = "random binary 128 x 784"
    ffg, gp = build(args.hidden, args.seed)
    variants = {"a": ffg.encode, "b": uncached_encode(gp), "c": gp.encode}
    with torch.no_grad():
        (m_b, s_b), (m_c, s_c) = variants["b"](x), variants["c"](x)
        assert torch.allclose(m_b, m_c, rtol=1e-5, atol=1e-6) and torch.allclose(s_b, s_c, rtol=1e-4, atol=1e-6)
        times = interleaved_times(variants, x, args.rounds, args.repeats, args.warmup)
    keys = list(variants)
    med = {k: statistics.median(v) for k, v in times.items()}
    h, d = args.hidden, LATENT
    macs = {"a": DATA_DIM * h + h * h + 2 * d * h}
    macs["b"] = macs["a"] + 2 * d * h * h + 2 * d * h
    macs["c"] = macs["a"] + d * h * h + 2 * d * h

    print(provenance_line())
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {platform.machine()} ({cpu_name()}), "
          f"threads={args.threads}; load average (1, 5, 15 min) at start {tuple(round(v, 2) for v in load_start)}, "
          f"at end {tuple(round(v, 2) for v in os.getloadavg())}")
    print(f"data: {source}; batch {BATCH}; encoder {DATA_DIM}-{h}-{h}-({d}+{d}), ELU; GPVAE p = {h}, "
          f"full {h}x{h} covariances for each of the {2 * d} rows of W and U; torch.no_grad()")
    print(f"{args.rounds} interleaved rounds x {args.repeats} calls per variant (after {args.warmup} warm-up calls); "
          f"median over the {args.rounds * args.repeats} timed calls of each")
    print()
    print("| variant | median ms / pass | multiply-adds / row | ratio to (a) |")
    print("|---|---|---|---|")
    for k in keys:
        print(f"| {LABELS[k]} | {1e3 * med[k]:.3f} | {macs[k]:,} | **{med[k] / med['a']:.2f}x** |")
    print()
    print(f"(b)/(a) = {med['b'] / med['a']:.2f}   (c)/(a) = {med['c'] / med['a']:.2f}   "
          f"(goal: (c)/(a) <= 2; Kim & Pavlovic report 2.75)")


if __name__ == "__main__":
    main()
