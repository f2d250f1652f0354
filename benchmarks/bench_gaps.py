"""Throughput of the per-datapoint machinery on the paper's MNIST model (784-200-200-50 Bernoulli VAE).

Prints, all measured in this one run:

(a) local FFG optimization throughput, datapoint-steps per second, for the batched optimizer
    (all N datapoints as one problem) versus a Python loop over datapoints, at S = 100 and S = 10;
(b) the FLOP rate achieved by a local-optimization step and by an AIS leapfrog step, as a fraction
    of the dense-matmul rate measured here for the same matrix shapes;
(c) optionally (``--gap-json``) the compute time per stage of a full gap table recorded by ``vaegap gaps``
    (summed over the processes of a resumed evaluation), and
(d) that table's FLOP bound: the matrix-product FLOPs each stage needed (from the report's settings and
    its per-datapoint step counts) at the dense-matmul rate measured in (b), i.e. the time the table
    would take on this core if every product ran at the dense rate and nothing else cost anything.

FLOPs counted: the decoder's three matrix products, 2·R·(50·200 + 200·200 + 200·784) forward for
R = samples × datapoints rows, and the same again backward (gradients flow to z only: the decoder is
frozen), so 4·R·207,800 per step. Elementwise work (ELU, log-sigmoid, Adam) is not counted, which makes
the reported fraction a lower bound on how busy the CPU is.

    python -m benchmarks.bench_gaps --threads 1 --run runs/mnist    # or without --run: random weights
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.estimators.ais import ais
from pyro_vaegap.estimators.local import optimize_local
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.utils import provenance_line

SHAPES = ((50, 200), (200, 200), (200, 784))
MACS_PER_ROW = sum(a * b for a, b in SHAPES)


def _time(fn, repeat=3):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def dense_rate(rows: int) -> float:
    """FLOP/s of plain torch matmuls with the decoder's shapes (forward + input-gradient products)."""
    mats = [(torch.randn(rows, a), torch.randn(a, b)) for a, b in SHAPES]
    grads = [torch.randn(rows, b) for _, b in SHAPES]

    def run():
        for (x, w), g in zip(mats, grads):
            x @ w
            g @ w.T
    return 4 * rows * MACS_PER_ROW / _time(run)


def decoder_macs(train_config: dict, data_dim: int) -> int:
    """Multiply-adds of one decoder pass for one row: ``latent → hidden × layers → data_dim``."""
    c = train_config
    dims = [c["latent_dim"]] + [c["hidden"]] * c["decoder_layers"] + [data_dim]
    return sum(a * b for a, b in zip(dims, dims[1:]))


def flow_macs(latent_dim: int, flow_hidden: int = 100, num_steps: int = 2) -> int:
    """Multiply-adds of the auxiliary flow's networks for one row: ``q(v0|z0)``, the reverse model and two
    per coupling step, each ``d → h → h → 2d`` (``guides/flow.py``)."""
    d, h = latent_dim, flow_hidden
    return (2 + 2 * num_steps) * (d * h + h * h + h * 2 * d)


def stage_flops(report: dict, data_dim: int = 784) -> dict[str, float]:
    r"""Matrix-product FLOPs of each stage of a finished gap report (``vaegap gaps`` JSON).

    Per row (one sample of one datapoint), with ``D`` the decoder's and ``F`` the flow's multiply-adds:
    a gradient evaluation costs ``4D`` (forward, and the input-gradient products backward: the decoder is
    frozen); the per-datum flow adds ``6F`` (forward, input- and weight-gradient products: its weights are
    the per-datum parameters); a forward-only evaluation costs ``2D`` (``+ 2F``).

    * AIS: ``N (K + K_pilot) (T - 1) L`` gradient rows (the pilot chains run the same schedule);
    * local optimization of a family: ``S Σ_n steps_n`` gradient rows (only running datapoints are evaluated);
    * importance sampling: IWAE/L[q] and each L[q*] from ``elbo_samples`` forward rows per datapoint.
    """
    c, tc, pp = report["config"], report["meta"]["train_config"], report["per_point"]
    N, dec = report["meta"]["num_points"], decoder_macs(tc, data_dim)

    def extra(family):
        if family != "flow":
            return 0
        opts = c.get("family_options", {}).get("flow", {})
        return flow_macs(tc["latent_dim"], opts.get("flow_hidden", 100), opts.get("num_steps", 2))

    flops = {}
    if c["ais"]:
        rows = N * (c["ais_chains"] + (c["ais_pilot_chains"] if c["ais_step_size"] == "pilot" else 0)) \
            * (c["ais_steps"] - 1) * c["ais_leapfrog"]
        flops["ais"] = 4.0 * dec * rows
    forward = 2.0 * dec * N * max(c["iwae_samples"], c["elbo_samples"])
    for family in c["families"]:
        flops[f"local:{family}"] = (4.0 * dec + 6.0 * extra(family)) * c["local_samples"] * sum(pp[f"steps:{family}"])
        forward += (2.0 * dec + 2.0 * extra(family)) * N * c["elbo_samples"]
    flops["importance"] = forward
    return flops


def local_throughput(model, x, S, steps):
    """Datapoint-steps/s: batched over all rows of x, and looping over the rows one at a time."""
    N = x.shape[0]

    def batched():
        optimize_local(model, LocalFFG(model, N), x, num_samples=S, max_steps=steps)

    def looped():
        for n in range(N):
            optimize_local(model, LocalFFG(model, 1), x[n:n + 1], num_samples=S, max_steps=steps)

    tb, tl = _time(batched, 1), _time(looped, 1)
    return N * steps / tb, N * steps / tl, tb / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a `vaegap train` run folder (default: randomly initialized weights)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--num-points", type=int, default=100, help="datapoints N (100)")
    p.add_argument("--steps", type=int, default=20, help="optimization steps timed per setting (20)")
    p.add_argument("--gap-json", help="a gap report JSON whose recorded wall time is printed as (c)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.run:
        from pyro_vaegap.runs import load_run
        model = load_run(args.run)[0]
    else:
        model = BernoulliVAE(784, 50, 200)
    x = (torch.rand(args.num_points, 784) < 0.13).float()
    print(provenance_line())
    print(f"threads={torch.get_num_threads()}  N={args.num_points}  model 784-200-200-50")
    print("(a) local FFG optimization, datapoint-steps/s")
    step_time = {}
    for S in (100, 10):
        b, l, st = local_throughput(model, x, S, args.steps)
        step_time[S] = st
        print(f"    S={S:3d}: batched {b:9.1f}   loop {l:9.1f}   batched/loop = {b / l:6.1f}x")
    print("(b) achieved FLOP rate / dense-matmul rate for the same shapes")
    for S in (100, 10):
        rows = S * args.num_points
        achieved = 4 * rows * MACS_PER_ROW / step_time[S]
        dense = dense_rate(rows)
        print(f"    local opt S={S:3d} (rows {rows:6d}): {achieved / 1e9:6.1f} GFLOP/s of {dense / 1e9:6.1f} "
              f"= {achieved / dense:5.1%}")
    K, T, L = 100, 6, 10
    # a fixed step size: the T - 1 transitions of the scored chains alone, without a pilot run
    t = _time(lambda: ais(model, x, num_chains=K, num_steps=T, leapfrog_steps=L, step_size=0.05), 1)
    rows, leapfrogs = K * args.num_points, (T - 1) * L
    achieved = 4 * rows * MACS_PER_ROW * leapfrogs / t
    dense = dense_rate(rows)
    print(f"    AIS leapfrog (K={K}, rows {rows}): {achieved / 1e9:6.1f} GFLOP/s of {dense / 1e9:6.1f} "
          f"= {achieved / dense:5.1%}  ({t / leapfrogs * 1e3:.0f} ms per leapfrog step)")
    if args.gap_json:
        rep = json.load(open(args.gap_json))
        secs = rep["meta"]["seconds"]
        print(f"(c) full gap table, {rep['meta']['num_points']} points: compute {sum(secs.values()) / 60:.1f} min "
              + ", ".join(f"{k} {v / 60:.1f} min" for k, v in secs.items()))
        flops = stage_flops(rep)
        rate = dense_rate(args.num_points * 100)  # the shapes of a 100-sample step, as in (b)
        print(f"(d) FLOP bound of that table at the dense rate {rate / 1e9:.1f} GFLOP/s: "
              f"{sum(flops.values()) / rate / 60:.1f} min = "
              + ", ".join(f"{k} {v / 1e12:.2f} TFLOP = {v / rate / 60:.1f} min" for k, v in flops.items()))


if __name__ == "__main__":
    main()
