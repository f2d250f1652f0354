r"""The Σ-VAE whose ELBO tends to a normalizing flow's log-likelihood (R. Yu 2020, §3.3, eqs. 18–32).

For two invertible maps :math:`f` — a seeded affine map (Pyro's ``LowerCholeskyAffine``) and a small
Real NVP (Pyro's ``affine_coupling``) trained by maximum likelihood on a 2-D toy set — the Σ-VAE of
:mod:`pyro_vaegap.tutorial.sigma_vae` (decoder :math:`\mathcal N(f(z), \epsilon^2 I)`, encoder
:math:`\mathcal N(f^{-1}(x), \epsilon^2 J^{-1}J^{-\top})`) is built for each :math:`\epsilon` in ``--eps``.
Its ELBO is estimated by ``importance_sample`` from the Pyro model and guide; the flow's NLL is exact
(Pyro's ``TransformedDistribution``). The experiment reports :math:`-\mathrm{ELBO} - \mathrm{NLL}_f`
(nats per datapoint, mean over held-out points, Monte Carlo standard error) against :math:`\epsilon`,
the slope of a weighted log-log fit on the small :math:`\epsilon` (``--fit-max-eps-*``) beside the
predicted order 2, and for the affine map the exact gap :math:`\tfrac12\epsilon^2\mathrm{tr}(J^{-1}J^{-\top})`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyro.distributions as dist
import torch

from pyro_vaegap.data import TOY_DATASETS, load_dataset, seeded_subset
from pyro_vaegap.tutorial.sigma_vae import (affine_flow, affine_gap, base_distribution, fit_order, flow_limit_gaps,
                                            flow_log_prob, real_nvp, train_flow)
from pyro_vaegap.utils import ConfigError, set_seed

from pyro_vaegap.harness import Progress, make_parser, markdown_table, parse_args, run_main, save_figure, write_results

NAME = "tutorial_flow_limit"
ORDER = 2.0  #: the predicted order of convergence (see pyro_vaegap.tutorial.sigma_vae)


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--eps-affine", type=float, nargs="+", default=[0.3, 0.1, 0.03, 0.01],
                   help="values of epsilon (the decoder's standard deviation) for the affine flow")
    p.add_argument("--eps-nvp", type=float, nargs="+", default=[0.1, 0.03, 0.01, 0.003, 0.001, 0.0005, 0.00025],
                   help="values of epsilon for the Real NVP")
    p.add_argument("--fit-max-eps-affine", type=float, default=0.3,
                   help="fit the affine flow's log-log slope on its epsilons up to this value (its gap is exactly "
                        "quadratic: all of them)")
    p.add_argument("--fit-max-eps-nvp", type=float, default=0.001,
                   help="fit the Real NVP's slope on its epsilons up to this value: the O(eps^2) regime needs eps "
                        "times the flow's inverse Jacobian small against the scale of its nonlinearity")
    p.add_argument("--num-points", type=int, default=100, help="held-out datapoints the gap is averaged over")
    p.add_argument("--samples", type=int, default=20000,
                   help="draws from the encoder per datapoint (ELBO estimate; its relative error grows as 1/eps)")
    p.add_argument("--dataset", default="8gaussians", choices=TOY_DATASETS, help="toy data of the Real NVP")
    p.add_argument("--couplings", type=int, default=4, help="affine coupling layers of the Real NVP")
    p.add_argument("--hidden", type=int, default=32, help="width of the two hidden layers of each coupling network")
    p.add_argument("--flow-steps", type=int, default=1000, help="Adam steps of the Real NVP's maximum likelihood")
    p.add_argument("--flow-lr", type=float, default=3e-3, help="Adam learning rate of the Real NVP (cosine decay)")
    p.add_argument("--figure-only", action="store_true",
                   help="redraw OUT/flow_limit.png from OUT/results.json (no computation; the other options are "
                        "ignored: the figure shows what the results file holds)")
    return p


def render(out: Path) -> Path:
    """Redraw ``out/flow_limit.png`` from ``out/results.json`` (what :func:`main` wrote there)."""
    import json

    res = json.loads((out / "results.json").read_text())["results"]
    nan = lambda v: math.nan if v is None else v  # noqa: E731 (JSON's null is an unfitted slope)
    flows = res["flows"]
    fits = {n: (nan(f["fitted_order"]), nan(f["fitted_order_se"]), nan(f["fitted_constant"])) for n, f in flows.items()}
    fit_max = {n: f["fit_eps_max"] for n, f in flows.items()}
    return save_figure(figure(flows, fits, res["affine_exact_gap"], fit_max), out / "flow_limit.png")


def figure(curves: dict, fits: dict, affine_exact: list, fit_max: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, ((name, c), marker) in enumerate(zip(curves.items(), ("o", "s"))):
        eps, gap, se = (np.asarray(c[k]) for k in ("eps", "gap", "gap_se"))
        p, p_se, const = fits[name]
        # one colour per flow, given explicitly: the fitted line would otherwise take the next colour of the
        # cycle and look like it belonged to the other flow's points
        colour = f"C{i}"
        ax.errorbar(eps, np.where(gap > 0, gap, np.nan), yerr=2 * se, fmt=marker, ms=5, capsize=3, color=colour,
                    label=f"{name}: fitted slope {p:.3f} ± {p_se:.3f}")
        if math.isfinite(p):
            grid = np.geomspace(eps.min(), min(eps.max(), fit_max[name]), 20)
            ax.plot(grid, const * grid ** p, "-", lw=1.5, alpha=0.6, color=colour)
    eps = np.asarray(curves["affine"]["eps"])
    ax.plot(eps, affine_exact, "k:", lw=1, label=r"affine, exact $\frac{1}{2}\epsilon^2\,\mathrm{tr}(J^{-1}J^{-T})$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\epsilon$")
    ax.set_ylabel(r"$-\mathrm{ELBO} - \mathrm{NLL}_{flow}$ (nats / datapoint)")
    ax.set_title(f"Σ-VAE → flow (Yu 2020, §3.3): predicted order {ORDER:g}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("fit_max_eps_affine", "fit_max_eps_nvp", "num_points", "samples", "couplings", "hidden",
                                              "flow_steps", "flow_lr"))
    for which in ("affine", "nvp"):
        values, fit_max = getattr(args, f"eps_{which}"), getattr(args, f"fit_max_eps_{which}")
        if any(not (math.isfinite(e) and e > 0) for e in values):
            parser.error(f"--eps-{which}={values} is not allowed: every epsilon must be a finite number > 0")
        if sum(e <= fit_max for e in values) < 2:
            parser.error(f"--fit-max-eps-{which}={fit_max} leaves fewer than two epsilons to fit the slope on")
    out, progress = Path(args.out), Progress(args.quiet)
    if args.figure_only:
        if not (out / "results.json").is_file():
            parser.error(f"--figure-only: {out / 'results.json'} does not exist (run the experiment with this --out "
                         "first)")
        progress(f"figure redrawn from {out / 'results.json'}: {render(out)}")
        return None
    set_seed(args.seed)

    progress("affine flow: data drawn from the flow itself")
    affine = affine_flow(2, seed=args.seed)
    x_aff = dist.TransformedDistribution(base_distribution(2, torch.zeros(2, dtype=torch.float64)),
                                         [affine]).sample((args.num_points,))
    progress(f"Real NVP ({args.couplings} couplings, {args.hidden} hidden): {args.flow_steps} steps on {args.dataset}")
    nvp = real_nvp(2, args.couplings, args.hidden, seed=args.seed)
    x_train = load_dataset(args.dataset, "train").double()
    losses = train_flow(nvp, x_train, steps=args.flow_steps, lr=args.flow_lr, seed=args.seed)
    x_test = load_dataset(args.dataset, "test").double()
    x_nvp = x_test[seeded_subset(x_test.shape[0], args.num_points, args.seed)]
    with torch.no_grad():
        nvp_test_nll = float(-flow_log_prob(nvp, x_test).mean())

    curves, fits, rows = {}, {}, []
    fit_max = {"affine": args.fit_max_eps_affine, "Real NVP": args.fit_max_eps_nvp}
    for name, f, x, eps in (("affine", affine, x_aff, args.eps_affine), ("Real NVP", nvp, x_nvp, args.eps_nvp)):
        eps = sorted(eps, reverse=True)
        progress(f"{name}: ELBO of the Σ-VAE at eps = {eps}, {args.samples} samples × {args.num_points} points")
        set_seed(args.seed)
        c = flow_limit_gaps(f, x, eps, num_samples=args.samples)
        sel = [i for i, e in enumerate(c["eps"]) if e <= fit_max[name]]
        try:
            fits[name] = fit_order([c["eps"][i] for i in sel], [c["gap"][i] for i in sel],
                                   [c["gap_se"][i] for i in sel])
        except ConfigError:  # a gap at or below 0 (Monte Carlo noise at too few samples): no slope, said so
            progress(f"{name}: a gap in the fit range is <= 0; no slope fitted (more --samples)")
            fits[name] = (math.nan, math.nan, math.nan)
        curves[name] = c
        for e, g, se, ne in zip(c["eps"], c["gap"], c["gap_se"], c["neg_elbo"]):
            exact = affine_gap(affine, e) if name == "affine" else None
            rows.append([name, f"{e:g}", f"{ne:.5f}", f"{c['nll_flow']:.5f}", f"{g:.3e} ± {se:.1e}",
                         f"{exact:.3e}" if exact is not None else "–"])
    affine_exact = [affine_gap(affine, e) for e in curves["affine"]["eps"]]
    save_figure(figure(curves, fits, affine_exact, fit_max), out / "flow_limit.png")

    def num(v):  # JSON has no NaN: an unfitted slope is null
        return v if math.isfinite(v) else None

    results = {"predicted_order": ORDER,
               "flows": {name: {**curves[name], "fit_eps_max": fit_max[name], "fitted_order": num(fits[name][0]),
                                "fitted_order_se": num(fits[name][1]), "fitted_constant": num(fits[name][2]),
                                "order_z": num((fits[name][0] - ORDER) / fits[name][1])} for name in curves},
               "affine_exact_gap": affine_exact,
               "affine_trace_Jinv_JinvT": 2 * affine_gap(affine, 1.0),
               "real_nvp": {"train_nll_last100_nats": float(np.mean(losses[-100:])), "test_nll_nats": nvp_test_nll,
                            "test_nll_bits": nvp_test_nll / math.log(2)}}
    md = ("−ELBO of the Σ-VAE minus the flow's exact NLL, nats per datapoint (mean over the held-out points ± Monte "
          "Carlo standard error). Predicted: O(ε²) (slope 2); for the affine map exactly ½ε² tr(J⁻¹J⁻ᵀ).\n\n")
    md += markdown_table(["flow", "ε", "−ELBO", "NLL flow", "−ELBO − NLL", "exact (affine)"], rows)
    md += "\nFitted order (weighted log-log fit of the gap on ε, on the ε up to 'fit range'):\n\n"
    md += markdown_table(["flow", "fit range", "fitted slope", "s.e.", "(slope − 2)/s.e.", "predicted"],
                         [[n, f"ε ≤ {fit_max[n]:g}", f"{p:.4f}", f"{se:.4f}", f"{(p - ORDER) / se:+.2f}", f"{ORDER:g}"]
                          for n, (p, se, _) in fits.items()])
    md += (f"\nReal NVP: test NLL {nvp_test_nll:.4f} nats ({nvp_test_nll / math.log(2):.4f} bits) on all "
           f"{x_test.shape[0]} test points of {args.dataset}.\n\nFigure: flow_limit.png\n")
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
