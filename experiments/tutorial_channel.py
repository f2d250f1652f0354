r"""The regularization term as the capacity of a noisy Gaussian channel (R. Yu 2020, §4.3, eqs. 35–38).

Two Gaussian VAEs with an isotropic encoder :math:`q(z\mid x) = \mathcal N(\mu(x), N(x) I_d)` (the
``isotropic`` guide family) are trained with the ELBO on ``digits_continuous``: one with a free
variance, one with the tutorial's power constraint :math:`N(x) = 1 - P(x)`,
:math:`P(x) = \lVert\mu(x)\rVert^2/d` (``power_constraint=True``). On the test images, per datapoint and
in float64, :func:`pyro_vaegap.tutorial.channel.channel_terms` reads off the Pyro traces the KL term
:math:`L_\mathrm{reg}(x)` (``torch``'s closed form between the guide's and the model's distributions),
the channel capacity :math:`-\tfrac d2\log N(x)` and the power :math:`P(x)`. The tutorial's identity
:math:`L_\mathrm{reg} = -\tfrac d2\log N` holds for a datapoint iff :math:`P + N = 1` there, and for the
mean over datapoints iff the mean of :math:`P + N` is 1; in general
:math:`L_\mathrm{reg} + \tfrac d2\log N = \tfrac d2(P + N - 1)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.data import load_dataset
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.tutorial.channel import channel_terms

from pyro_vaegap.harness import (Progress, evaluate, make_parser, markdown_table, parse_args, run_main, save_figure,
                              train_run, write_results)

NAME = "tutorial_channel"
ENCODERS = {"free": False, "power-constrained": True}


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=150, help="training epochs of each VAE on digits_continuous")
    p.add_argument("--latent-dim", type=int, default=8, help="d, the latent dimension (uses of the channel)")
    p.add_argument("--hidden", type=int, default=100, help="hidden width (2 ELU layers, decoder and encoder)")
    p.add_argument("--eval-samples", type=int, default=200, help="importance samples per test point (−ELBO, NLL)")
    return p


def figure(terms: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(terms), figsize=(4.6 * len(terms), 4.2), squeeze=False)
    for ax, (name, t) in zip(axes[0], terms.items()):
        cap, kl = np.asarray(t["capacity"]), np.asarray(t["kl"])
        pn = np.asarray(t["power"]) + np.asarray(t["noise"])
        sc = ax.scatter(cap, kl, c=pn, s=8, cmap="coolwarm", vmin=min(pn.min(), 2 - pn.max()),
                        vmax=max(pn.max(), 2 - pn.min()))
        lim = [min(cap.min(), kl.min()), max(cap.max(), kl.max())]
        ax.plot(lim, lim, "k--", lw=1, label=r"$L_{reg} = -\frac{d}{2}\log N$")
        ax.set_xlabel(r"$-\frac{d}{2}\log N(x)$ (nats)")
        ax.set_ylabel(r"$L_{reg}(x) = KL(q(z|x)\,\|\,p(z))$ (nats)")
        ax.set_title(f"{name} encoder: mean P+N = {pn.mean():.3f}", fontsize=10)
        fig.colorbar(sc, ax=ax, label="P(x) + N(x)")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("epochs", "latent_dim", "hidden", "eval_samples"))
    out, progress = Path(args.out), Progress(args.quiet)
    x_test = load_dataset("digits_continuous", "test").to(args.device)
    results, terms, rows = {}, {}, []
    for name, constrained in ENCODERS.items():
        net = {"hidden": args.hidden, "layers": 2, "activation": "elu", "power_constraint": constrained}
        cfg = TrainConfig(dataset="digits_continuous", model="gaussian", variance="diagonal",
                          latent_dim=args.latent_dim, hidden=args.hidden, guide="isotropic", guide_options=net,
                          epochs=args.epochs, batch_size=100, lr=1e-3, seed=args.seed)
        model, guide, secs = train_run(cfg, out / "runs" / name, progress, args.device)
        torch.manual_seed(args.seed)
        ev = evaluate(model, guide, x_test, args.eval_samples)
        model, guide = model.double(), guide.double()   # the identity is checked to float64 precision
        t = {k: (v.cpu().numpy() if torch.is_tensor(v) else v) for k, v in
             channel_terms(model, guide, x_test.double()).items()}
        d = t["d"]
        resid = t["kl"] - t["capacity"]
        general = resid - t["excess"]
        pn = t["power"] + t["noise"]
        terms[name] = {k: np.asarray(v).tolist() for k, v in t.items() if k != "d"}
        results[name] = {
            "train_seconds": secs, "d": d, "neg_elbo_nats": ev["neg_elbo_nats"], "nll_nats": ev["nll_nats"],
            "mean_kl_nats": float(t["kl"].mean()), "mean_capacity_nats": float(t["capacity"].mean()),
            "mean_power_plus_noise": float(pn.mean()), "min_power_plus_noise": float(pn.min()),
            "max_power_plus_noise": float(pn.max()),
            "max_abs_kl_minus_capacity": float(np.abs(resid).max()),
            "mean_kl_minus_capacity": float(resid.mean()),
            "max_abs_general_identity_residual": float(np.abs(general).max()),
            "per_point": terms[name]}
        rows.append([name, d, f"{pn.mean():.4f} [{pn.min():.3f}, {pn.max():.3f}]", f"{t['kl'].mean():.4f}",
                     f"{t['capacity'].mean():.4f}", f"{np.abs(resid).max():.2e}", f"{resid.mean():+.4f}",
                     f"{np.abs(general).max():.1e}", f"{ev['neg_elbo_nats']:.2f}", f"{ev['nll_nats']:.2f}"])
        progress(f"{name}: mean P+N {pn.mean():.4f}, max |L_reg + d/2 log N| {np.abs(resid).max():.2e}")
    save_figure(figure(terms), out / "channel.png")
    md = (f"Per test image of digits_continuous ({x_test.shape[0]}), float64: L_reg = KL(q(z|x) ‖ p(z)) from the "
          "traces, capacity = −d/2 log N(x), P = ‖μ‖²/d. The general identity is L_reg + d/2 log N = d/2 (P + N − 1); "
          "the tutorial's eq. 38 is its case P + N = 1.\n\n")
    md += markdown_table(["encoder", "d", "P + N: mean [min, max]", "mean L_reg", "mean −d/2 log N",
                          "max abs(L_reg + d/2 log N)", "mean (L_reg + d/2 log N)", "max abs(general residual)",
                          "−ELBO", "NLL"], rows)
    md += "\n(−ELBO and NLL in nats per image, test set, IWAE k = {}.) Figure: channel.png\n".format(args.eval_samples)
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
