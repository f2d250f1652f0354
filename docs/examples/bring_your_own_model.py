"""Bring your own model: Pyro's tutorial VAE, trained as the tutorial trains it, then its gap report.

The model and guide are ``pyro_vae_tutorial.VAE`` (Pyro's VAE tutorial, verbatim): nothing in it knows
pyro_vaegap, and nothing is wrapped or renamed here. Run from the repository root::

    python docs/examples/bring_your_own_model.py --out docs/results/byom

It trains the VAE with SVI + Trace_ELBO + Adam (lr 1e-3, batches of 256: the tutorial's settings) on binarized
MNIST, saves its weights (``OUT/vae.pt``, a ``state_dict``), and writes the gap report of a seeded subset of
the test split (``OUT/gaps.json``, ``OUT/gaps.md``) through the Python API. The same report from the command
line, with the saved weights::

    vaegap gaps --model docs/examples/pyro_vae_tutorial.py:VAE --checkpoint OUT/vae.pt \\
        --dataset binarized_mnist --num-points 16 --out OUT/gaps_cli --families ffg,auto_normal ...
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pyro_vae_tutorial import VAE  # noqa: E402

from pyro_vaegap.data import load_dataset, seeded_subset  # noqa: E402
from pyro_vaegap.report.compute import gap_report  # noqa: E402
from pyro_vaegap.report.config import GapConfig  # noqa: E402

#: the evaluation settings of the committed report (docs/results/byom): small enough for a CPU, stated in full
SETTINGS = dict(families=("ffg", "auto_normal"), iwae_samples=500, elbo_samples=500, sample_chunk=250,
                ais_chains=10, ais_steps=100, ais_leapfrog=5, ais_pilot_chains=4, local_samples=10, local_lr=1e-3,
                local_max_steps=4000, local_check_every=100, local_patience=3, local_init="encoder", data_chunk=16,
                ais_data_chunk=16)
#: a smoke-test version (tests/test_contract.py runs the whole script with it)
QUICK = dict(families=("ffg", "auto_normal"), iwae_samples=50, elbo_samples=50, sample_chunk=50, ais_chains=4,
             ais_steps=10, ais_leapfrog=2, ais_pilot_chains=2, local_samples=4, local_max_steps=20,
             local_check_every=10, local_patience=1, local_init="encoder", data_chunk=4, ais_data_chunk=4)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data-dir", help="folder holding binarized_mnist.npz")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (3)")
    p.add_argument("--train-points", type=int, default=10000, help="training images used (the first 10000)")
    p.add_argument("--num-points", type=int, default=16, help="test images evaluated (16, a seeded subset)")
    p.add_argument("--quick", action="store_true", help="tiny evaluation settings (a smoke test)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # ---- training, as Pyro's tutorial does it ----
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    x_train = load_dataset("binarized_mnist", "train", data_dir=args.data_dir)[:args.train_points]
    vae = VAE()  # the tutorial's defaults: z_dim=50, hidden_dim=400
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1.0e-3}), loss=Trace_ELBO())
    t0 = time.time()
    for epoch in range(args.epochs):
        perm, loss = torch.randperm(len(x_train)), 0.0
        for i in range(0, len(x_train), 256):
            loss += svi.step(x_train[perm[i:i + 256]])
        print(f"epoch {epoch + 1}: average training loss {loss / len(x_train):.2f}")
    train_seconds = time.time() - t0
    torch.save(vae.state_dict(), out / "vae.pt")

    # ---- the gap report of the model and guide, as they are ----
    x = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
    x = x[seeded_subset(len(x), args.num_points, seed=0)]
    cfg = GapConfig(**(QUICK if args.quick else SETTINGS))
    report = gap_report(vae.model, vae.guide, x, cfg, progress=False)
    report.meta.update({"command": "python docs/examples/bring_your_own_model.py " + " ".join(argv or sys.argv[1:]),
                        "training": {"epochs": args.epochs, "train_points": len(x_train), "batch_size": 256,
                                     "lr": 1e-3, "seed": 0, "seconds": train_seconds}})
    report.save(out / "gaps")
    print(report.to_markdown())
    return report


if __name__ == "__main__":
    main()
