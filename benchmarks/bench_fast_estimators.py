"""Eager Pyro vs traced vs compiled step functions, fp32 vs bf16 gradients, on the paper's MNIST decoder.

One process, interleaved rounds (every configuration is timed once per round, in the same order), one
thread. Measured per configuration:

* **AIS leapfrog step**: the log density and its gradient for K = 100 chains × N = 100 points (10,000
  rows of the decoder 50-200-200-784, Bernoulli likelihood), what one leapfrog step of
  :func:`pyro_vaegap.ais.ais` evaluates (:class:`pyro_vaegap.estimators.potential.AnnealingTarget`; with bf16 gradients
  an inner step evaluates the gradient only, timed here, and the last step of each trajectory adds one
  fp32 forward pass);
* **local-optimization step**: the per-datum FFG's (``--families ffg,flow``: and the auxiliary flow's) ELBO
  and parameter gradients at S = 100 for N = 100 running points (:class:`pyro_vaegap.estimators.potential.LocalStep`,
  keyed noise included; Adam excluded). FLOPs counted for the flow: the decoder's only (its own networks'
  products are not counted), so its fraction understates how busy the core is.

Printed: the median time per step over the rounds, its ratio to eager fp32, and the achieved rate of the
decoder's matrix-product FLOPs (4 · rows · (50·200 + 200·200 + 200·784), as in ``bench_gaps``) against the
dense fp32 matmul rate measured in the same run for the same shapes. Before the timings, each fast
function's one-time cost (tracing, checking, compiling) is printed.

    taskset -c 1 python -m benchmarks.bench_fast_estimators --threads 1 --rounds 5 [--run RUN_DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks.bench_gaps import MACS_PER_ROW, dense_rate
from pyro_vaegap.estimators.ais import frozen
from pyro_vaegap.contract.registry import get_family
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.estimators.potential import AnnealingTarget, LocalStep, compiler_problem
from pyro_vaegap.estimators.traces import prior_latents
from pyro_vaegap.utils import provenance_line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a `vaegap train` run folder (default: randomly initialized weights)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--modes", default="eager,traced,compiled", help="comma-separated fast modes")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated gradient precisions")
    p.add_argument("--families", default="ffg", help="comma-separated per-datum families timed in the local step "
                   "(ffg, flow)")
    p.add_argument("--stages", default="ais,local", help="comma-separated stages to time (ais, local)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(provenance_line())
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; threads={torch.get_num_threads()}; "
          f"C++ compiler: {compiler_problem() or 'found'}")
    if args.run:
        from pyro_vaegap.runs import load_run
        model, source = load_run(args.run)[0], f"trained run {args.run}"
    else:
        model, source = BernoulliVAE(784, 50, 200), "randomly initialized weights"
    model = model.float()
    N, K, S = 100, 100, 100
    x = (torch.rand(N, 784) < 0.13).float()
    print(f"# model 784-200-200-50 Bernoulli ({source}); x: {N} random binary rows (p = 0.13)")
    modes, dtypes = args.modes.split(","), args.dtypes.split(",")
    gd = {"fp32": None, "bf16": torch.bfloat16}
    rows = K * N
    flops = 4.0 * rows * MACS_PER_ROW
    with frozen(model):
        lat = prior_latents(model, x, K)
        z = torch.cat([v.reshape(K, N, -1) for v in lat.values()], -1)
        guides = {}
        for fam in args.families.split(","):
            guide = get_family(fam).make_local(model, N)
            with torch.no_grad():
                guide.loc.normal_(0, 0.5)
            guides[fam] = (guide, list(guide.local_parameters().values()))
        idx = torch.arange(N)
        stages = args.stages.split(",")
        fns = {}
        print("one-time cost (trace + check [+ compile]) and first call, seconds:")
        for mode in modes:
            for d in dtypes:
                if "ais" in stages:
                    t = AnnealingTarget(model, x, lat, fast=mode, gradient_dtype=gd[d])
                    step = t.gradients if gd[d] is not None else t  # what an inner leapfrog step evaluates
                    t0 = time.perf_counter()
                    step(z)
                    print(f"    {mode:8s} {d}: AIS leapfrog step {time.perf_counter() - t0:7.1f}")
                    fns[("AIS leapfrog step", mode, d)] = lambda step=step: step(z)
                if "local" not in stages:
                    continue
                for fam, (guide, params) in guides.items():
                    ls = LocalStep(model, guide, S, params, guide.spec.plate, fast=mode, gradient_dtype=gd[d])
                    t0 = time.perf_counter()
                    ls(x, idx, 7, 1)
                    print(f"    {mode:8s} {d}: local {fam} step {time.perf_counter() - t0:7.1f}")
                    fns[(f"local {fam} step", mode, d)] = lambda ls=ls: ls(x, idx, 7, 2)
        times = {k: [] for k in fns}
        dense = []
        for r in range(args.rounds):
            dense.append(dense_rate(rows))
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    rate = statistics.median(dense)
    print(f"dense fp32 matmul rate, same shapes, {rows} rows: {rate / 1e9:.1f} GFLOP/s (median of {args.rounds})")
    print(f"{'stage':20s} {'mode':8s} {'grad':5s} {'median ms':>10s} {'vs eager fp32':>14s} {'GFLOP/s':>8s} "
          f"{'of dense':>9s}  rounds (ms)")
    for (stage, mode, d), ts in times.items():
        med = statistics.median(ts)
        base = statistics.median(times.get((stage, "eager", "fp32"), ts))
        print(f"{stage:20s} {mode:8s} {d:5s} {med * 1e3:10.1f} {base / med:13.2f}x {flops / med / 1e9:8.1f} "
              f"{flops / med / rate:8.1%}  {' '.join(f'{t * 1e3:.0f}' for t in ts)}")
    print(f"# load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
