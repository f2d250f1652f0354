r"""Does GPVAE's closed-form expected-log term make its training stable where the Monte Carlo one was not?

Eq. 16 of Kim & Pavlovic needs :math:`\mathbb E\log(c_j + u_j^\top\psi)^2`; the paper estimates it by
reparameterized Monte Carlo, whose gradient :math:`2/(\bar s_j + \sqrt{\mathrm{Var}h_j}\,\epsilon)` has no finite
variance where the scale's distribution reaches zero. Our GPVAE runs at lr ≥ 3e-4 swung by tens of nats
(``gpvae_gaps``, ``gpvae_uncertainty``). This experiment trains the same GPVAE twice per (learning rate, seed) —
``expected_log="monte_carlo"`` and ``"closed_form"`` (:func:`pyro_vaegap.guides.gpvae.expected_log_square`), the
same initial weights and minibatches — and compares the validation-ELBO curves (``log.csv`` of each run, all through
:func:`pyro_vaegap.harness.train_run`, resumable):

* ``setbacks``: epochs whose validation ELBO is more than ``--drop`` nats below the best so far, and the largest
  such drop;
* the best and the last validation ELBO; non-finite values (a NaN stops training with an error, recorded);
* at the end, the fraction of (validation point, latent dimension) pairs where the conditional scale crosses zero
  with probability above 5 % (:math:`|\bar s_j| < 2\sqrt{\mathrm{Var}h_j}`).

Profiles: ``cpu`` (default: the gaps experiment's CPU model — binarized MNIST, MLP 784-200-200, dim z 20, shared
features — on 2000 training images, 50 epochs of 20 steps, lr 3e-4, 5e-4 and 1e-3, seeds 0 and 1), ``features``
(``--compare gp_features``: the same model with the closed-form term, its feature maps shared with the base encoder
or two separate networks of the encoder's architecture, lr 5e-4, seeds 0 and 1) and ``--quick``.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.harness import (Profiles, Progress, Setting, make_parser, markdown_table, parse_args, run_main,
                                 save_figure, train_run, write_results)
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.studies.kim_pavlovic import BINARIZED_MLP, MODEL_SETTINGS, describe, guide_options, model_fields
from pyro_vaegap.utils import ConfigError

NAME = "gpvae_stability"
ESTIMATORS = ("monte_carlo", "closed_form")
#: what a comparison varies: setting -> (its two values, the column's name, short names of the two)
COMPARISONS = {"expected_log": (ESTIMATORS, "expected log", "MC", "CF"),
               "gp_features": (("shared", "separate"), "features", "shared", "separate")}
PROFILES = {
    "cpu": dict(BINARIZED_MLP, compare="expected_log", latent_dim=20, num_train=2000, num_valid=1000, epochs=50,
                batch_size=100, lrs="3e-4,5e-4,1e-3", seeds="0,1", drop=5.0),
    "features": dict(BINARIZED_MLP, compare="gp_features", expected_log="closed_form", latent_dim=20, num_train=2000,
                     num_valid=1000, epochs=50, batch_size=100, lrs="5e-4", seeds="0,1", drop=5.0),
    "quick": dict(BINARIZED_MLP, compare="expected_log", hidden=16, latent_dim=3, num_train=200, num_valid=100,
                  epochs=3, batch_size=50, lrs="1e-3", seeds="0", drop=5.0),
}
SETTINGS = Profiles(PROFILES, {
    **MODEL_SETTINGS,
    "compare": Setting(str, "what the two runs of a (lr, seed) differ in: expected_log (Monte Carlo vs closed form) "
                            "or gp_features (shared vs separate feature networks)", choices=tuple(COMPARISONS)),
    "latent_dim": Setting(int, "dim z"), "num_train": Setting(int, "training images (seeded subset)"),
    "num_valid": Setting(int, "validation images of the per-epoch validation ELBO"),
    "epochs": Setting(int, "training epochs"), "batch_size": Setting(int, "minibatch size"),
    "lrs": Setting(str, "Adam learning rates, comma-separated"), "seeds": Setting(str, "seeds, comma-separated"),
    "drop": Setting(float, "a setback: an epoch this many nats below the best validation ELBO so far")},
    default="cpu", help={"cpu": "binarized MNIST, MLP, dim z 20, 2000 images, 50 epochs × 20 steps, 3 lr × 2 seeds",
                         "features": "the same, shared vs separate feature networks (closed form), lr 5e-4, 2 seeds"})


def parse_list(option: str, text: str, kind):
    try:
        values = [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not allowed: expected comma-separated numbers") from None
    minimum_ok = (lambda v: v > 0) if kind is float else (lambda v: v >= 0)
    if not values or not all(minimum_ok(v) for v in values):
        raise ConfigError(f"{option} {text!r} is not allowed: give at least one value, each > 0 (seeds >= 0)")
    return list(dict.fromkeys(values))


def curve_summary(valid: list[float], drop: float) -> dict:
    """Setbacks of a validation-ELBO curve: epochs more than ``drop`` nats below the best so far, the largest
    drop below it, the best and the last value."""
    v = np.asarray(valid, dtype=float)
    best_so_far = np.maximum.accumulate(np.where(np.isfinite(v), v, -np.inf))
    below = best_so_far - v
    return {"epochs": int(v.size), "best": float(np.nanmax(v)), "best_epoch": int(np.nanargmax(v)) + 1,
            "last": float(v[-1]), "setbacks": int(np.sum(below > drop)), "max_drop": float(np.nanmax(below)),
            "non_finite": int(np.sum(~np.isfinite(v)))}


def crossing_fraction(guide, x) -> float:
    r"""Fraction of (point, dimension) with :math:`|\bar s_j| < 2\sqrt{\mathrm{Var}h_j}`."""
    with torch.no_grad():
        mo = guide.moments(x)
    return float((mo.scale_mean.abs() < 2 * mo.var_h.sqrt()).double().mean())


def main(argv=None):
    parser = make_parser(NAME, __doc__.split("\n\n")[0], SETTINGS)
    parser.add_argument("--data-dir", help="folder with the data set's files (else $PYRO_VAEGAP_DATA)")
    args = parse_args(parser, argv)
    s = SETTINGS.apply(args)
    try:
        lrs, seeds = parse_list("--lrs", s["lrs"], float), parse_list("--seeds", s["seeds"], int)
        for k in ("latent_dim", "num_train", "num_valid", "epochs", "batch_size", "drop"):
            if s[k] <= 0:
                raise ConfigError(f"--{k.replace('_', '-')}={s[k]} is not allowed: it must be > 0")
    except ConfigError as e:
        parser.error(str(e))
    out, progress = Path(args.out), Progress(args.quiet)
    x_valid_all = load_dataset(s["dataset"], "valid", data_dir=args.data_dir)
    setting = s["compare"]
    variants, column, short_a, short_b = COMPARISONS[setting]
    runs, rows = {}, []
    for lr in lrs:
        for seed in seeds:
            for est in variants:
                cfg = TrainConfig(**model_fields(s), data_dir=args.data_dir, num_train=s["num_train"],
                                  latent_dim=s["latent_dim"], guide="gpvae",
                                  guide_options=guide_options("gpvae", {**s, setting: est}), objective="elbo",
                                  epochs=s["epochs"], batch_size=s["batch_size"], lr=lr, num_valid=s["num_valid"],
                                  seed=seed)
                key = f"lr{lr:g}_s{seed}_{est}"
                what = {"lr": lr, "seed": seed, "expected_log": s["expected_log"], "gp_features": s["gp_features"],
                        setting: est}
                try:
                    model, guide, _ = train_run(cfg, out / "runs" / key, progress, args.device)
                except (ConfigError, FloatingPointError) as e:  # a diverged training: recorded, not hidden
                    runs[key] = {**what, "error": str(e)}
                    rows.append([f"{lr:g}", seed, est, "failed: " + str(e)[:80]] + [""] * 5)
                    continue
                with open(out / "runs" / key / "log.csv") as fh:
                    log = list(csv.DictReader(fh))
                valid = [float(r["valid_elbo"]) for r in log]
                summ = curve_summary(valid, s["drop"])
                x_valid = x_valid_all[seeded_subset(x_valid_all.shape[0], s["num_valid"], seed)]  # the run's own
                summ["crossing_fraction"] = crossing_fraction(guide, model.validate_data(x_valid.to(args.device)))
                summ["median_epoch_seconds"] = float(np.median([float(r["seconds"]) for r in log]))
                runs[key] = {**what, "valid_elbo": valid, **summ}
                rows.append([f"{lr:g}", seed, est.replace("_", " "), f"{summ['best']:.2f} (epoch {summ['best_epoch']})",
                             f"{summ['last']:.2f}", summ["setbacks"], f"{summ['max_drop']:.2f}",
                             f"{100 * summ['crossing_fraction']:.1f} %", f"{summ['median_epoch_seconds']:.2f}"])
                progress(f"{key}: best {summ['best']:.2f}, last {summ['last']:.2f}, {summ['setbacks']} setbacks")
    steps = math.ceil(s["num_train"] / s["batch_size"]) * s["epochs"]
    told = ("each estimate of eq. 16's expected-log term, the same initial weights" if setting == "expected_log"
            else "shared and with separate feature networks, the same initial decoder and base-encoder weights")
    md = (f"GPVAE trained with {told} and minibatches per (lr, seed): "
          f"{describe({**s, setting: 'as in the row'})}. {s['num_train']} training images, "
          f"dim z {s['latent_dim']}, batch {s['batch_size']}, {s['epochs']} epochs ({steps} Adam steps); validation "
          f"ELBO (one sample) on {s['num_valid']} validation images after each epoch. Setbacks: epochs more than "
          f"{s['drop']:g} nats below the best so far; crossing: (validation point, dimension) pairs where the scale "
          f"c_j + u_jᵀψ crosses zero with probability above 5 % after training.\n\n")
    md += markdown_table(["lr", "seed", column, "best valid ELBO", "last", "setbacks", "largest drop",
                          "crossing", "s / epoch"], rows)
    paired = []
    for lr in lrs:
        for seed in seeds:
            mc, cf = (runs[f"lr{lr:g}_s{seed}_{v}"] for v in variants)
            if "error" in mc or "error" in cf:
                continue
            paired.append([f"{lr:g}", seed, f"{cf['best'] - mc['best']:+.2f}", f"{cf['last'] - mc['last']:+.2f}",
                           f"{mc['setbacks']} → {cf['setbacks']}", f"{mc['max_drop']:.2f} → {cf['max_drop']:.2f}"])
    names = [v.replace("_", " ") for v in variants]
    first = names[0].replace("monte carlo", "Monte Carlo")
    md += f"\n{names[1].capitalize()} minus {first}, per (lr, seed):\n\n" + markdown_table(["lr", "seed", "Δ best", "Δ last", f"setbacks {short_a} → {short_b}",
                          f"largest drop {short_a} → {short_b}"], paired)
    write_results(out, NAME, args, {"settings": s, "runs": runs}, md, progress.elapsed)
    save_figure(curves_figure(runs, lrs, seeds, variants), out / "curves.png")
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return runs


def curves_figure(runs: dict, lrs, seeds, variants=ESTIMATORS):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(lrs), figsize=(3.6 * len(lrs), 3.0), squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for seed in seeds:
            for est, color in zip(variants, ("C3", "C0")):
                r = runs[f"lr{lr:g}_s{seed}_{est}"]
                if "valid_elbo" in r:
                    ax.plot(range(1, len(r["valid_elbo"]) + 1), r["valid_elbo"], color=color, lw=0.9,
                            ls="-" if seed == seeds[0] else "--", label=f"{est.replace('_', ' ')}, seed {seed}")
        ax.set_title(f"lr {lr:g}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        lo = min((min(r["valid_elbo"]) for r in runs.values() if r.get("lr") == lr and "valid_elbo" in r), default=0)
        hi = max((max(r["valid_elbo"]) for r in runs.values() if r.get("lr") == lr and "valid_elbo" in r), default=1)
        ax.set_ylim(max(lo, hi - 80), hi + 3)
    axes[0][0].set_ylabel("validation ELBO (nats)", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_main(main, None)
