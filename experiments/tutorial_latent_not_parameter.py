r""""The latent vector is not a parameter" (R. Yu 2020, §5.2): two global optima of a VAE on Gaussian data.

Data :math:`x\sim\mathcal N(\mu_{gt}, \sigma_{gt}^2 I_n)`, latent :math:`z\in\mathbb R^n`. Built explicitly
(:mod:`pyro_vaegap.tutorial.latent`): the VAE that **ignores z** (:math:`q(z\mid x) = p(z)`, decoder
:math:`\mathcal N(\mu_{gt}, \sigma_{gt}^2 I)`) and the **near-deterministic** VAE
(:math:`q = \mathcal N((x-\mu_{gt})/\sigma_{gt}, \epsilon^2 I)`, decoder
:math:`\mathcal N(\sigma_{gt}z + \mu_{gt}, \sigma_{gt}^2\epsilon^2 I)`) for each ``--eps``; trained from
scratch by SVI: a **linear** decoder (``LinearGaussian`` with an affine encoder) and a **deep** one
(``GaussianVAE``, MLP mean and log-variance, FFG MLP encoder). For each model: the exact
:math:`\log p(x)` (linear-Gaussian closed form; for the deep decoder, quadrature over its 2-d latent,
``pyro_vaegap.grid``) against the data's own density, the rate :math:`\mathbb E_x
\mathrm{KL}(q(z\mid x)\|p(z))` (which optimum it is), and the gap report
(:func:`pyro_vaegap.report.compute.gap_report`: :math:`\mathcal L[q]`, the per-datum FFG optimum
:math:`\mathcal L[q^*]`, IWAE :math:`\log\hat p`, approximation and amortization gaps), with the gaps
also measured from the exact :math:`\log p(x)`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.report.compute import gap_report
from pyro_vaegap.report.config import GapConfig
from pyro_vaegap.estimators.grid import grid_posterior
from pyro_vaegap.guides.ffg import FFGEncoder
from pyro_vaegap.models import GaussianVAE, LinearGaussian
from pyro_vaegap.tutorial.fit import fit
from pyro_vaegap.tutorial.kl import analytic_kl
from pyro_vaegap.tutorial.latent import (LinearEncoder, gaussian_data, gaussian_entropy, ignore_z,
                                         near_deterministic, near_deterministic_gaps)
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import Progress, make_parser, markdown_table, parse_args, run_main, save_figure, write_results

NAME = "tutorial_latent_not_parameter"
MU_GT = (0.5, -1.0)


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--sigma-gt", type=float, default=0.7, help="standard deviation of the data (mu_gt = (0.5, -1))")
    p.add_argument("--eps", type=float, nargs="+", default=[0.3, 0.1, 0.03],
                   help="epsilons of the near-deterministic construction")
    p.add_argument("--num-train", type=int, default=5000, help="training points of the VAEs trained from scratch")
    p.add_argument("--num-points", type=int, default=100, help="test points of every evaluation")
    p.add_argument("--steps", type=int, default=3000, help="SVI steps of each VAE trained from scratch")
    p.add_argument("--hidden", type=int, default=64, help="hidden width of the deep decoder and its encoder (2 layers)")
    p.add_argument("--samples", type=int, default=1000, help="samples of IWAE and of L[q], L[q*] in the gap report")
    p.add_argument("--local-steps", type=int, default=800,
                   help="most Adam steps of the gap report's per-datum FFG optimization (50 samples per step)")
    return p


def exact_log_px(model, x):
    """Closed form for a linear-Gaussian model; otherwise quadrature of p(x, z) on a 301² grid over [-7, 7]²
    (``pyro_vaegap.grid``), with the smallest posterior standard deviation against the grid spacing (the
    quadrature is exact to far below 1e-3 nats when the spacing is at most half of it) and the posterior mass
    near the grid's edge."""
    if isinstance(model, LinearGaussian):
        return model.exact_log_marginal(x), {"method": "closed form"}
    g = grid_posterior(model, x, lim=7.0, n=301, chunk=4000)
    return g.log_px, {"method": "quadrature, 301x301 grid over [-7, 7]^2", "spacing": g.spacing,
                      "min_posterior_std": float(g.min_std.min()), "max_edge_mass": float(g.edge_mass.max())}


def decoder_noise_fraction(model, guide, x) -> float:
    """Mean decoder variance at the encoder's mean, over datapoints and dimensions, divided by σ_gt² (1:
    the decoder alone explains the data's spread; ≈ ε²: near-deterministic)."""
    with torch.no_grad():
        loc, _ = guide.encode(x)
        return float(model.likelihood(loc).base_dist.scale.pow(2).mean())


def evaluate_model(name, model, guide, x, log_p_gt, sigma_gt, args, progress):
    progress(f"{name}: exact log p(x), rate, gap report")
    model, guide = model.double().eval(), guide.double().eval()
    log_px, how = exact_log_px(model, x)
    set_seed(args.seed)
    cfg = GapConfig(families=("ffg",), ais=False, iwae_samples=args.samples, elbo_samples=args.samples,
                    local_init="encoder", local_samples=50, local_lr=3e-3, local_max_steps=args.local_steps, seed=args.seed)
    rep = gap_report(model, guide, x, cfg, family="ffg", progress=False, log=None)
    s = rep.summary()
    per = rep.per_point
    exact = log_px.cpu().numpy()
    approx_exact, amort = exact - per["local:ffg"], per["amortization:ffg"]
    kl = analytic_kl(model, guide, x).cpu().numpy()
    out = {"exact_log_px_method": how, "nll_exact": float(-exact.mean()),
           "nll_minus_nll_gt": float((log_p_gt - exact).mean()),
           "nll_minus_nll_gt_se": float((log_p_gt - exact).std(ddof=1) / math.sqrt(len(exact))),
           "rate_nats": float(kl.mean()), "decoder_var_over_sigma_gt2": decoder_noise_fraction(model, guide, x) / sigma_gt ** 2,
           "iwae_minus_exact": float((per["iwae"] - exact).mean()),
           "gap_report": {k: {"mean": m, "se": se} for k, (m, se) in s.items()
                          if k in ("log_px", "amortized", "local:ffg", "approximation:ffg", "amortization:ffg", "inference")},
           "approximation_gap_exact": float(approx_exact.mean()),
           "approximation_gap_exact_se": float(approx_exact.std(ddof=1) / math.sqrt(len(exact))),
           "local_converged": int(np.sum(per["converged:ffg"]))}
    return out, kl


def figure(rows_plot: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(rows_plot)
    y = np.arange(len(names))
    rate = [rows_plot[n]["rate_nats"] for n in names]
    ax.barh(y, rate, color="tab:blue")
    for i, n in enumerate(names):
        r = rows_plot[n]
        ax.text(max(rate) * 0.02 + rate[i], i, f"NLL − NLL_gt {r['nll_minus_nll_gt']:+.4f}; "
                f"gaps {r['approximation_gap_exact']:+.4f} / {r['gap_report']['amortization:ffg']['mean']:+.4f}",
                va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("rate E_x KL(q(z|x) || p(z)) (nats)")
    ax.set_xlim(0, max(rate) * 2.2 + 0.5)
    ax.set_title("§5.2: same likelihood, any amount of information in z\n(approximation / amortization gap, nats)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("sigma_gt", "num_train", "num_points", "steps", "hidden", "samples",
                                                            "local_steps"))
    if any(not (math.isfinite(e) and e > 0) for e in args.eps):
        parser.error(f"--eps={args.eps} is not allowed: every epsilon must be a finite number > 0")
    out, progress = Path(args.out), Progress(args.quiet)
    n, sigma = len(MU_GT), args.sigma_gt
    x_train = gaussian_data(MU_GT, sigma, args.num_train, seed=args.seed)
    x = gaussian_data(MU_GT, sigma, args.num_points, seed=args.seed + 1)
    p_gt, _ = ignore_z(MU_GT, sigma)   # its marginal is the data's density N(mu_gt, sigma_gt^2 I)
    log_p_gt = p_gt.exact_log_marginal(x).numpy()
    u_sq = ((x - torch.tensor(MU_GT, dtype=torch.float64)) / sigma).pow(2).sum(-1)

    results = {"entropy_nats": gaussian_entropy(n, sigma), "nll_gt_on_test": float(-log_p_gt.mean()), "models": {}}
    models = {"z ignored": ignore_z(MU_GT, sigma)}
    for eps in args.eps:
        models[f"near-deterministic ε={eps:g}"] = near_deterministic(MU_GT, sigma, eps)
    progress(f"training a linear and a deep VAE from scratch, {args.steps} SVI steps each")
    set_seed(args.seed)
    lin = LinearGaussian.random(n, n, seed=args.seed)
    lin_guide = LinearEncoder(lin)
    lin_losses = fit(lin, lin_guide, x_train, steps=args.steps, lr=1e-2, seed=args.seed)
    set_seed(args.seed)
    deep = GaussianVAE(n, latent_dim=n, hidden=args.hidden, decoder_layers=2, activation="elu", variance="network")
    deep_guide = FFGEncoder(deep, hidden=args.hidden, layers=2, activation="elu")
    deep_losses = fit(deep, deep_guide, x_train.float(), steps=args.steps, lr=1e-3, seed=args.seed)
    models["trained: linear decoder"] = (lin, lin_guide)
    models["trained: deep decoder"] = (deep, deep_guide)

    rows = []
    for name, (model, guide) in models.items():
        r, _ = evaluate_model(name, model, guide, x, log_p_gt, sigma, args, progress)
        if name.startswith("near"):
            eps = float(name.split("=")[1])
            pred = near_deterministic_gaps(n, eps, u_sq)
            r["predicted"] = {"nll_minus_nll_gt_mean_over_data": pred["nll_excess"],
                              "amortization_gap": float(pred["amortization"].mean()), "approximation_gap": 0.0}
        elif name == "z ignored":
            r["predicted"] = {"nll_minus_nll_gt_mean_over_data": 0.0, "amortization_gap": 0.0, "approximation_gap": 0.0}
        results["models"][name] = r
        g = r["gap_report"]
        pred = r.get("predicted", {})
        rows.append([name, f"{r['rate_nats']:.3f}", f"{r['decoder_var_over_sigma_gt2']:.4f}",
                     f"{r['nll_minus_nll_gt']:+.5f} ± {r['nll_minus_nll_gt_se']:.5f}",
                     f"{pred['nll_minus_nll_gt_mean_over_data']:.5f}" if pred else "–",
                     f"{g['log_px']['mean'] - float(np.mean(log_p_gt)) :+.4f}",
                     f"{g['approximation:ffg']['mean']:+.4f} ± {g['approximation:ffg']['se']:.4f}",
                     f"{r['approximation_gap_exact']:+.4f} ± {r['approximation_gap_exact_se']:.4f}",
                     f"{g['amortization:ffg']['mean']:+.4f} ± {g['amortization:ffg']['se']:.4f}",
                     f"{pred['amortization_gap']:.4f}" if pred else "–"])
    results["training"] = {"linear_final_loss": float(np.mean(lin_losses[-200:])),
                           "deep_final_loss": float(np.mean(deep_losses[-200:]))}
    save_figure(figure(results["models"]), out / "latent_not_parameter.png")
    md = (f"Data N(μ_gt, σ_gt² I), μ_gt = {MU_GT}, σ_gt = {sigma}, n = {n}; {args.num_points} test points; H = "
          f"{results['entropy_nats']:.4f} nats, NLL of the data's own density on them "
          f"{results['nll_gt_on_test']:.4f}. Nats per datapoint. 'rate' = mean KL(q(z|x) ‖ p(z)); 'dec. var / σ_gt²' "
          "= decoder variance at the encoder mean over σ_gt² (1: z ignored; ε²: near-deterministic). "
          "NLL − NLL_gt uses the exact log p(x) (closed form or quadrature); the gap report's log p̂ is IWAE "
          f"(k = {args.samples}); 'approx. (exact)' = exact log p(x) − L[q*_FFG]; predicted columns are the closed "
          "forms of pyro_vaegap.tutorial.latent.\n\n")
    md += markdown_table(["model", "rate", "dec. var / σ_gt²", "NLL − NLL_gt (exact)", "predicted",
                          "IWAE log p̂ − log p_gt", "approx. gap (report)", "approx. gap (exact)",
                          "amortization gap (report)", "predicted amort."], rows)
    md += "\nFigure: latent_not_parameter.png\n"
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
