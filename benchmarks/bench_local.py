"""Local FFG optimization to convergence: every row every step (before) vs the running rows only (after).

Both optimizers run on the same model and test points in one process, interleaved in segments of
``--segment`` steps (each continues from the state the other left untouched, through
``optimize_local``'s resumable state), so that a busy machine slows both alike. "before" is the full
evaluation (one fused Adam over all rows, stopped rows restored: a guide without ``row_subsets``);
"after" evaluates only the datapoints still running, with keyed noise and a per-row Adam
(:mod:`pyro_vaegap.estimators.local`). Printed per method: total time, optimization steps, rows evaluated,
useful datapoint-steps (the sum over datapoints of the steps each took before it stopped) per
second, and the mean final windowed ELBO (the two use different noise, so they agree only to Monte
Carlo error)::

    python -m benchmarks.bench_local --threads 1 --run runs/mnist_ffg --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import time

import torch

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.estimators.local import optimize_local
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.utils import provenance_line, resolve_device


class FullFFG(LocalFFG):
    """The FFG evaluated the old way: every row at every step."""

    row_subsets = False


class _Method:
    """One optimizer's progress, advanced a segment at a time through ``optimize_local``'s state."""

    def __init__(self, name, model, guide, x, kwargs):
        self.name, self.model, self.guide, self.x, self.kwargs = name, model, guide, x, kwargs
        self.state, self.result, self.seconds = None, None, 0.0

    @property
    def done(self):
        return self.result is not None and self.state is None

    def advance(self, until):
        saved = {}
        t = time.perf_counter()
        self.result = optimize_local(self.model, self.guide, self.x, max_steps=until, state=self.state,
                                     save_state=saved.update, save_every=0.0, **self.kwargs)
        self.seconds += time.perf_counter() - t
        # a state is saved at the segment's last check only while some datapoint still runs
        self.state = saved if saved.get("step") == until else None

    def rows_evaluated(self):
        """Rows of x evaluated: N at every step before; after, each datapoint at each of its steps."""
        steps = self.result.steps
        return self.x.shape[0] * int(steps.max()) if self.name == "before" else int(steps.sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a `vaegap train` run folder (default: randomly initialized weights)")
    p.add_argument("--data-dir", help="folder with binarized_mnist.npz (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--num-points", type=int, default=100, help="seeded random test points (100)")
    p.add_argument("--samples", type=int, default=10, help="samples per step S (10; paper 100)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (1e-2; paper 1e-3)")
    p.add_argument("--check-every", type=int, default=100, help="stopping-rule window (paper 100)")
    p.add_argument("--patience", type=int, default=10, help="stopping-rule patience (paper 10)")
    p.add_argument("--max-steps", type=int, default=50_000, help="step cap (50000)")
    p.add_argument("--segment", type=int, default=500, help="steps per interleaved segment (500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test subset and the optimizations (0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (cpu)")
    args = p.parse_args(argv)
    if args.segment % args.check_every:
        p.error(f"--segment {args.segment} must be a multiple of --check-every {args.check_every}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.run:
        from pyro_vaegap.runs import load_run
        model = load_run(args.run)[0]
    else:
        model = BernoulliVAE(784, 50, 200)
    model = model.to(device)
    x = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)].to(device)
    kwargs = dict(num_samples=args.samples, lr=args.lr, check_every=args.check_every,
                  patience=args.patience)
    methods = []
    for name, cls in (("before", FullFFG), ("after", LocalFFG)):
        torch.manual_seed(args.seed)
        methods.append(_Method(name, model, cls(model, x.shape[0]).to(device), x, {**kwargs, "seed": args.seed}))
    print(provenance_line())
    print(f"threads={torch.get_num_threads()} device={device} N={x.shape[0]} S={args.samples} lr={args.lr} "
          f"check_every={args.check_every} patience={args.patience} max_steps={args.max_steps} "
          f"segment={args.segment}")
    until = 0
    while not all(m.done for m in methods) and until < args.max_steps:
        until = min(until + args.segment, args.max_steps)
        for m in methods:
            if not m.done:
                m.advance(until)
        print(f"  step {until}: " + "  ".join(f"{m.name} {m.seconds:7.1f} s, running "
                                             f"{int(m.state['running'].sum()) if m.state else 0:3d}" for m in methods),
              flush=True)
    print("| method | time (s) | steps | rows evaluated | datapoint-steps | datapoint-steps/s | mean final ELBO |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        r = m.result
        print(f"| {m.name} | {m.seconds:.1f} | {int(r.steps.max())} | {m.rows_evaluated()} | {int(r.steps.sum())} | "
              f"{int(r.steps.sum()) / m.seconds:.1f} | {float(r.best_avg.mean()):.3f} |")
    b, a = methods
    diff = a.result.best_avg - b.result.best_avg
    print(f"after/before time: {a.seconds / b.seconds:.3f}; speed-up {b.seconds / a.seconds:.2f}x; "
          f"steps per datapoint: before median {int(b.result.steps.median())} max {int(b.result.steps.max())}, "
          f"after median {int(a.result.steps.median())} max {int(a.result.steps.max())}; "
          f"final ELBO after − before: mean {float(diff.mean()):+.3f} ± {float(diff.std() / diff.numel() ** 0.5):.3f}")


if __name__ == "__main__":
    main()
