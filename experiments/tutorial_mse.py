r"""The MSE misconception (R. Yu 2020, §5.1): a fixed-variance ("MSE loss") VAE vs learned variances.

Three Gaussian-likelihood VAEs are trained with the ELBO on a toy set and on ``digits_continuous``
(8x8 digits scaled to [0, 1]):

* ``mse``: :math:`\sigma^2 = 1/2` fixed, so :math:`-\log p(x\mid z) = \lVert x-\mu(z)\rVert^2 + \tfrac D2\log\pi`
  (the MSE reconstruction loss);
* ``scalar``: one learned :math:`\sigma^2` shared by all D dimensions;
* ``network``: :math:`\log\sigma^2(z)` output by the decoder.

For the shared scalar variance the ELBO is maximized in :math:`\sigma^2` at

.. math::

    \sigma^{2*} = \frac1D\,\mathbb E_{x}\,\mathbb E_{q(z\mid x)}\lVert x - \mu(z)\rVert^2 \qquad\text{(eq. 43)},

the reconstruction MSE per dimension. We report the learned :math:`\sigma^2` beside the MSE measured
on the training data (where the optimum holds) and on test data, the −ELBO and NLL (IWAE) per
model, and reconstruction figures. A fixed :math:`\sigma^2` that is far from the MSE weights
reconstruction wrongly against the KL term: with :math:`\sigma^2 = 1/2` on data of scale ~0.3 the
model ignores :math:`z` and fits a blurred density.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pyro_vaegap.data import TOY_DATASETS, load_dataset
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (Progress, evaluate, make_parser, markdown_table, parse_args, run_main, save_figure,
                              train_run, write_results)

NAME = "tutorial_mse"
VARIANTS = ("mse", "scalar", "network")


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--toy", default="8gaussians", choices=TOY_DATASETS, help="toy data set")
    p.add_argument("--toy-epochs", type=int, default=20, help="epochs on the toy set")
    p.add_argument("--toy-num-train", type=int, default=50_000, help="toy training points")
    p.add_argument("--toy-hidden", type=int, default=128,
                   help="hidden width on the toy set (densely connected ReLU layers, as in tutorial_toy2d)")
    p.add_argument("--toy-layers", type=int, default=4, help="hidden layers of decoder and encoder on the toy set")
    p.add_argument("--toy-free-bits", type=float, default=0.05,
                   help="free bits per latent dimension on the toy set (0 disables; without them the "
                        "learned-variance models collapse to one Gaussian that ignores z)")
    p.add_argument("--digits-epochs", type=int, default=300, help="epochs on digits_continuous (1,197 images)")
    p.add_argument("--digits-latent", type=int, default=8, help="latent dimension for digits")
    p.add_argument("--hidden", type=int, default=100, help="hidden width on digits (2 ELU layers, decoder and encoder)")
    p.add_argument("--eval-samples", type=int, default=500, help="importance samples per test point for the NLL")
    p.add_argument("--num-test", type=int, default=300, help="test points evaluated (digits has 300)")
    return p


@torch.no_grad()
def reconstruction_mse(model, guide, x: torch.Tensor, samples: int = 20) -> float:
    r""":math:`\frac1{ND}\sum_n \mathbb E_{q(z\mid x_n)}\lVert x_n - \mu(z)\rVert^2` (Monte Carlo, ``samples`` draws)."""
    x = model.validate_data(x)
    loc, scale = guide.encode(x)
    z = loc + scale * torch.randn((samples,) + loc.shape)
    mu = model.likelihood(z).base_dist.loc
    return float(((x - mu) ** 2).mean())


def learned_sigma2(model) -> float | None:
    """The shared learned variance of a ``variance="scalar"`` model (else None)."""
    return float(model.sigma2.detach()) if model.variance == "scalar" else None


def digits_figure(models: dict, x: torch.Tensor):
    import matplotlib.pyplot as plt

    n = 10
    fig, axes = plt.subplots(1 + len(models), n, figsize=(n, 1.1 * (1 + len(models))))
    rows = [("data", x[:n])]
    with torch.no_grad():
        for v, (model, guide) in models.items():
            rows.append((v, model.likelihood(guide.encode(x[:n])[0]).base_dist.loc.clamp(0, 1)))
    for i, (label, imgs) in enumerate(rows):
        for j in range(n):
            axes[i, j].imshow(imgs[j].reshape(8, 8).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, j].axis("off")
        axes[i, 0].set_title(label, fontsize=8, loc="left")
    fig.suptitle("digits: data and reconstructions μ(z = encoder mean)")
    return fig


def toy_figure(models: dict, x: torch.Tensor, name: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(models), figsize=(3 * (1 + len(models)), 3))
    axes[0].scatter(*x.cpu().numpy().T, s=1)
    axes[0].set_title(f"{name}: data", fontsize=9)
    with torch.no_grad():
        for ax, (v, (model, guide)) in zip(axes[1:], models.items()):
            samples = model.likelihood(torch.randn(len(x), 2)).sample()
            ax.scatter(*samples.cpu().numpy().T, s=1)
            ax.set_title(f"{v}: samples of p(x)", fontsize=9)
    for ax in axes:
        ax.set_xlim(-0.8, 0.8), ax.set_ylim(-0.8, 0.8), ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, nonneg=("toy_free_bits",),
                      positive=("toy_epochs", "toy_num_train", "toy_hidden", "toy_layers", "digits_epochs",
                                "digits_latent", "hidden", "eval_samples", "num_test"))
    if args.num_test > 300:
        parser.error(f"--num-test={args.num_test} is not allowed: digits has 300 test images")
    out, progress = Path(args.out), Progress(args.quiet)
    results, rows = {}, []
    toy_net = {"hidden": args.toy_hidden, "layers": args.toy_layers, "activation": "relu", "dense": True}
    digits_net = {"hidden": args.hidden, "layers": 2, "activation": "elu", "dense": False}
    setups = [(args.toy, dict(latent_dim=2, epochs=args.toy_epochs, num_train=args.toy_num_train, batch_size=100,
                              free_bits=args.toy_free_bits, lr_schedule="cosine"), toy_net),
              ("digits_continuous", dict(latent_dim=args.digits_latent, epochs=args.digits_epochs, batch_size=50),
               digits_net)]
    for ds, training, net in setups:
        results[ds], models = {}, {}
        x_train, x_test = load_dataset(ds, "train").to(args.device), load_dataset(ds, "test")[: args.num_test].to(args.device)
        for v in VARIANTS:
            cfg = TrainConfig(dataset=ds, model="mse" if v == "mse" else "gaussian",
                              variance="fixed" if v == "mse" else v, hidden=net["hidden"],
                              decoder_layers=net["layers"], activation=net["activation"], dense=net["dense"],
                              guide_options=net, seed=args.seed, **training)
            model, guide, secs = train_run(cfg, out / "runs" / f"{ds}_{v}", progress, args.device)
            models[v] = (model, guide)
            set_seed(args.seed)
            ev = evaluate(model, guide, x_test, args.eval_samples, dims=x_test.shape[1])
            mse_train = reconstruction_mse(model, guide, x_train[: 5000])
            mse_test = reconstruction_mse(model, guide, x_test)
            s2 = learned_sigma2(model)
            results[ds][v] = {**ev, "train_seconds": secs, "sigma2": 0.5 if v == "mse" else s2,
                              "recon_mse_train": mse_train, "recon_mse_test": mse_test}
            # only the scalar model has one learned σ² (s2 is None for the others): format it only there
            sigma_text = ("0.5 (fixed)" if v == "mse" else f"{s2:.5f}" if v == "scalar" else "per z, per dim")
            rows.append([ds, v, ev["neg_elbo_nats"], ev["nll_nats"], ev["nll_bits_per_dim"], sigma_text,
                         f"{mse_train:.5f}", f"{mse_test:.5f}"])
            progress(f"{ds} {v}: NLL {ev['nll_nats']:.2f} nats, sigma2 {sigma_text}, MSE(train) {mse_train:.5f}")
        fig = (digits_figure(models, x_test) if ds.startswith("digits") else toy_figure(models, x_test, ds))
        save_figure(fig, out / f"reconstructions_{ds}.png")
    md = ("−ELBO and NLL (IWAE, k = %d) in nats per data point on held-out data (continuous data: −log of a "
          "density; bits/dim = NLL / (D ln 2)). Eq. 43: the learned shared σ² of the `scalar` model should "
          "equal its reconstruction MSE per dimension on the training data.\n\n" % args.eval_samples)
    md += markdown_table(["data", "likelihood", "−ELBO (nats)", "NLL (nats)", "NLL bits/dim", "σ²",
                          "recon MSE train", "recon MSE test"], rows)
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
