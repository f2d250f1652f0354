r"""InfoVAE Proposition 1 (Zhao, Song & Ermon, AAAI 2019, Fig. 1): the ELBO vs the MMD InfoVAE on two points.

Data :math:`x \in \{-1, +1\}` with equal weight, :math:`X = Z = \mathbb R`, prior :math:`\mathcal N(0, 1)`,
a Gaussian decoder :math:`p(x\mid z) = \mathcal N(\mu(z), \sigma^2(z))` with learned mean and variance
(``model="gaussian", variance="network"``; the library floors the variance at :math:`10^{-6}`) and an
FFG encoder :math:`q(z\mid x) = \mathcal N(m(x), s^2(x))`, both three-layer 200-unit ELU networks. One
model is trained with the ELBO and one with the MMD InfoVAE (:math:`\lambda = 500`, :math:`\alpha = 0`:
the ELBO minus :math:`499\,\mathrm{MMD}^2(q(z), p(z))`), both with the library's objectives and training
step (:func:`pyro_vaegap.training.make_loss`, :func:`pyro_vaegap.training.training_step`) on the same minibatches.

Proposition 1 says that the ELBO of this problem is unbounded above and that it is approached by
encoders whose two posteriors move apart and shrink (a decoder that is ever more precise at each
point's own region of z), so the aggregate posterior drifts away from the prior; the InfoVAE term keeps
:math:`q(z)` matched to the prior.

Warm start. Small random weights start both models near the collapsed stationary point
(:math:`q(z\mid x) = p(z)` for both points, a decoder :math:`\mathcal N(0, 1)` that ignores z, ELBO
:math:`-\tfrac12\log 2\pi e = -1.419`; :math:`q(z) = p(z)` makes the MMD 0). So that the MMD objective
is also tested from an informative state, both models start by default from one shared warm start,
``--warmup-steps`` of the ELBO with its KL weight rising linearly from 0 to 1 (``anneal="kl"``), after
which each objective trains for ``--steps`` steps from the same weights, optimizer state and random
stream; ``--warmup-steps 0`` starts both from the random initialization instead.

Recorded every ``--record-every`` steps: the encoder's mean and scale at :math:`x = \pm1`, the decoder's
standard deviation at each encoder mean, the ELBO (``--eval-samples`` draws per point), the mutual
information :math:`I_q(x; z)` (at most :math:`\log 2`) and the MMD² between :math:`q(z)` and the prior
(:mod:`pyro_vaegap.estimators.aggregate`). Figures: the two posteriors against the prior with the decoder's
:math:`p(x\mid z)` over z (``prop1_posteriors.png``), and the trajectories (``prop1_trajectories.png``).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from pyro_vaegap.estimators.aggregate import mutual_information, sample_aggregate
from pyro_vaegap.objectives.infovae import MMDKernel, mmd
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.training import build_guide, build_model, make_loss, mean_elbo, training_step
from pyro_vaegap.utils import module_device, set_seed

from pyro_vaegap.harness import (Profiles, Progress, Setting, json_clean, make_parser, markdown_table, run_main,
                                 save_figure, write_results)
from pyro_vaegap.studies.infovae_mnist import COLORS, LABELS, OBJECTIVES, objective_fields, parse_infovae_args

NAME = "infovae_prop1"
POINTS = (-1.0, 1.0)
COLLAPSED_ELBO = -0.5 * math.log(2 * math.pi * math.e)  #: the ELBO of q(z|x) = p(z) with the decoder N(0, 1)

#: the default profile: the settings of the committed results, minutes on one core
CPU = {"steps": 20_000, "warmup_steps": 2000, "num_train": 1000, "hidden": 200, "record_every": 250,
       "eval_samples": 2000}
#: what the quick profile changes (a smoke run whose numbers mean nothing)
QUICK = {"steps": 40, "warmup_steps": 20, "hidden": 16, "record_every": 10, "eval_samples": 100, "num_train": 200}
PROFILES = Profiles(
    profiles={"cpu": CPU, "quick": {**CPU, **QUICK}},
    settings={
        "steps": Setting(int, "Adam steps of each objective after the warm start"),
        "warmup_steps": Setting(int, "shared warm start: ELBO steps with the KL weight rising linearly from 0 to 1 (0: "
                                     "none, both objectives start from the random initialization)"),
        "num_train": Setting(int, "training points, half -1 and half +1"),
        "hidden": Setting(int, "width of the hidden layers"),
        "record_every": Setting(int, "steps between two records of the encoder"),
        "eval_samples": Setting(int, "draws per point of the ELBO, I_q and MMD records"),
    },
    default="cpu", help={"cpu": "the committed results' settings, minutes on one core"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (warm start and both objectives)")
    p.add_argument("--batch-size", type=int, default=100, help="minibatch size (the MMD is over the minibatch)")
    p.add_argument("--layers", type=int, default=3, help="hidden layers of encoder and of decoder")
    p.add_argument("--lambda", dest="lambda_", type=float, default=500.0, help="InfoVAE's lambda")
    p.add_argument("--alpha", type=float, default=0.0, help="InfoVAE's alpha")
    return p


def config(args, objective: str) -> TrainConfig:
    net = {"hidden": args.hidden, "layers": args.layers, "activation": "elu"}
    fields = ({"objective": "elbo", "anneal": "kl", "anneal_epochs": 1} if objective == "warmup"
              else objective_fields(objective, args.lambda_, args.alpha))
    return TrainConfig(dataset="two_points", model="gaussian", variance="network", latent_dim=1, hidden=args.hidden,
                       decoder_layers=args.layers, activation="elu", guide="ffg", guide_options=net,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, **fields)


@torch.no_grad()
def record(model, guide, step: int, phase: str, samples: int, gen: torch.Generator) -> dict:
    """The encoder and decoder at ``step`` (see the module docstring)."""
    x = torch.tensor(POINTS, device=module_device(guide)).unsqueeze(-1)
    loc, scale = guide.encode(x)
    dec_sd = model.likelihood(loc).base_dist.scale.squeeze(-1)
    mi = mutual_information(loc, scale, draws=samples, seed=int(torch.randint(2 ** 31, (1,), generator=gen)))
    z = sample_aggregate(loc, scale, samples // 2, gen)
    m2 = mmd(z, torch.randn(z.shape, generator=gen).to(z.device), MMDKernel("rbf", (1.0,)))
    return {"step": step, "phase": phase, "loc": loc.squeeze(-1).tolist(), "scale": scale.squeeze(-1).tolist(),
            "decoder_sd": dec_sd.tolist(), "elbo": mean_elbo(model, guide, x, samples), "mi": mi["mi"],
            "marginal_kl": mi["marginal_kl"], "mmd2": float(m2)}


def train_phase(model, guide, opt, loss_fn, annealing, x, steps, args, phase, offset, gen, log, progress):
    """``steps`` training steps on seeded minibatches of ``x``; records appended to ``log``."""
    batches = torch.Generator().manual_seed(args.seed + 1)
    for i in range(steps):
        if annealing is not None:
            annealing.factor = i / steps
        idx = torch.randint(x.shape[0], (args.batch_size,), generator=batches).to(x.device)
        training_step(loss_fn, opt, x[idx], where=f" ({phase}, step {i + 1})")
        if (i + 1) % args.record_every == 0 or i + 1 == steps:
            log.append(record(model, guide, offset + i + 1, phase, args.eval_samples, gen))
            if (i + 1) % (args.record_every * 20) == 0 or i + 1 == steps:
                r = log[-1]
                progress(f"{phase} step {offset + i + 1}: loc {r['loc'][0]:+.3f}/{r['loc'][1]:+.3f}, scale "
                         f"{r['scale'][0]:.3g}/{r['scale'][1]:.3g}, decoder sd {r['decoder_sd'][0]:.3g}/"
                         f"{r['decoder_sd'][1]:.3g}, ELBO {r['elbo']:.3f}, I {r['mi']:.3f}")


def posterior_figure(models: dict):
    import matplotlib.pyplot as plt

    models = {k: (m.cpu(), g.cpu()) for k, (m, g) in models.items()}  # drawn on the CPU, after training
    fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 7), squeeze=False)
    zmax = 3.5
    for col, (obj, (model, guide)) in enumerate(models.items()):
        with torch.no_grad():
            loc, scale = guide.encode(torch.tensor(POINTS).unsqueeze(-1))
            zmax = max(zmax, float((loc.abs() + 4 * scale).max()))
    for col, (obj, (model, guide)) in enumerate(models.items()):
        z = torch.linspace(-zmax, zmax, 2001)
        with torch.no_grad():
            loc, scale = guide.encode(torch.tensor(POINTS).unsqueeze(-1))
            ax = axes[0, col]
            ax.plot(z, torch.distributions.Normal(0.0, 1.0).log_prob(z).exp(), color="purple", label="prior p(z)")
            for k, (x, c) in enumerate(zip(POINTS, ("tab:green", "tab:red"))):
                dens = torch.distributions.Normal(loc[k, 0], scale[k, 0]).log_prob(z).exp()
                ax.plot(z, dens, color=c, label=f"q(z|x={x:+.0f}): m={loc[k, 0]:+.2f}, s={scale[k, 0]:.3g}")
            ax.set_yscale("log"), ax.set_ylim(1e-3, None), ax.set_xlabel("z"), ax.legend(fontsize=7)
            ax.set_title(f"{LABELS[obj]}: posteriors vs prior (log density)", fontsize=9)
            xs = torch.linspace(-2.5, 2.5, 301)
            lik = model.likelihood(z.unsqueeze(-1))
            img = torch.distributions.Normal(lik.base_dist.loc, lik.base_dist.scale).log_prob(xs).T  # (x, z)
            ax = axes[1, col]
            ax.imshow(img.clamp(min=-8).cpu().numpy(), origin="lower", aspect="auto", cmap="magma",
                      extent=(-zmax, zmax, -2.5, 2.5))
            ax.set_xlabel("z"), ax.set_ylabel("x")
            ax.set_title(f"{LABELS[obj]}: log p(x|z) (floored at -8)", fontsize=9)
            for k, c in enumerate(("tab:green", "tab:red")):
                ax.axvline(float(loc[k, 0]), color=c, lw=0.8, ls="--")
    fig.tight_layout()
    return fig


def trajectory_figure(logs: dict, warmup: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    panels = [("loc", "encoder mean m(x)", False), ("scale", "encoder scale s(x)", True),
              ("decoder_sd", "decoder sd at m(x)", True), ("elbo", "ELBO (nats)", False),
              ("mi", "I_q(x; z) (nats; max log 2)", False), ("mmd2", "MMD²(q(z), p(z))", False)]
    for ax, (key, title, log) in zip(axes.ravel(), panels):
        for obj, rows in logs.items():
            steps = [r["step"] for r in rows]
            if isinstance(rows[0][key], list):
                for k, ls in enumerate(("--", "-")):
                    ax.plot(steps, [r[key][k] for r in rows], ls, color=COLORS.get(obj, "gray"),
                            label=f"{LABELS.get(obj, obj)}, x={POINTS[k]:+.0f}")
            else:
                ax.plot(steps, [r[key] for r in rows], color=COLORS.get(obj, "gray"), label=LABELS.get(obj, obj))
        if warmup:
            ax.axvspan(0, warmup, color="0.9")
        if log:
            ax.set_yscale("log")
        if key == "mi":
            ax.axhline(math.log(2), color="k", lw=0.5)
        if key == "elbo":
            ax.axhline(COLLAPSED_ELBO, color="k", lw=0.5)
        ax.set_title(title, fontsize=9), ax.set_xlabel("step (grey: shared warm start)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha", "warmup_steps"),
                              positive=("steps", "lr", "batch_size", "num_train", "hidden", "layers",
                                "record_every", "eval_samples"), own_runs=False)
    if args.num_train % 2 or args.batch_size < 2:
        parser.error("--num-train must be even (half -1, half +1) and --batch-size at least 2")
    out, progress = Path(args.out), Progress(args.quiet)
    set_seed(args.seed)
    x = torch.tensor(POINTS, device=args.device).repeat(args.num_train // 2).unsqueeze(-1)
    wcfg = config(args, "warmup")
    model = build_model(wcfg, 1).to(args.device)
    guide = build_guide(wcfg, model).to(args.device)
    opt = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed + 2)
    warm_log = [record(model, guide, 0, "init", args.eval_samples, gen)]
    loss_fn, annealing = make_loss(wcfg, model, guide)
    progress(f"shared warm start: {args.warmup_steps} steps, KL weight 0 -> 1")
    if args.warmup_steps:
        train_phase(model, guide, opt, loss_fn, annealing, x, args.warmup_steps, args, "warm start", 0, gen,
                    warm_log, progress)
    logs, models, results, rows = {}, {}, {}, []
    for obj in OBJECTIVES:
        m, g = copy.deepcopy(model), copy.deepcopy(guide)
        o = torch.optim.Adam(list(m.parameters()) + list(g.parameters()), lr=args.lr)
        o.load_state_dict(opt.state_dict())
        cfg = config(args, obj)
        lf, _ = make_loss(cfg, m, g)
        set_seed(args.seed + 3)  # both objectives: the same random stream from the same weights
        gen = torch.Generator().manual_seed(args.seed + 4)
        logs[obj] = list(warm_log)
        progress(f"{LABELS[obj]}: {args.steps} steps")
        train_phase(m, g, o, lf, None, x, args.steps, args, obj, args.warmup_steps, gen, logs[obj], progress)
        models[obj] = (m.eval(), g.eval())
        final = logs[obj][-1]
        results[obj] = {"config": cfg.to_dict(), "final": final, "trajectory": logs[obj][len(warm_log):]}
        rows.append([LABELS[obj], f"{final['loc'][0]:+.3f} / {final['loc'][1]:+.3f}",
                     f"{final['scale'][0]:.3g} / {final['scale'][1]:.3g}",
                     f"{final['decoder_sd'][0]:.3g} / {final['decoder_sd'][1]:.3g}", final["elbo"], final["mi"],
                     final["marginal_kl"], final["mmd2"]])
    results["warm_start"] = {"config": wcfg.to_dict(), "trajectory": warm_log}
    results["collapsed_elbo"] = COLLAPSED_ELBO
    progress("figures")
    save_figure(posterior_figure(models), out / "prop1_posteriors.png")
    save_figure(trajectory_figure(logs, args.warmup_steps), out / "prop1_trajectories.png")
    w = warm_log[-1]
    md = (f"Two points x = ±1; {args.warmup_steps} shared warm-start steps (ELBO, KL weight 0 → 1), then "
          f"{args.steps} steps of each objective (Adam, lr {args.lr}, batch {args.batch_size}); MMD-VAE: "
          f"α = {args.alpha}, λ = {args.lambda_}. Values at the end of training, for x = −1 / +1. ELBO in nats "
          f"({args.eval_samples} draws per point; the collapsed solution has {COLLAPSED_ELBO:.3f}); I_q(x; z) ≤ "
          f"log 2 = {math.log(2):.3f}; marginal KL = KL(q(z) ‖ p(z)); MMD² of q(z) against the prior "
          "(RBF, 2σ² = 1).\n\n")
    md += markdown_table(["objective", "encoder mean", "encoder scale", "decoder sd at mean", "ELBO", "I_q(x;z)",
                          "marginal KL", "MMD²"], rows)
    md += (f"\nAfter the warm start (step {args.warmup_steps}; with 0 steps: the initialization): encoder mean {w['loc'][0]:+.3f} / {w['loc'][1]:+.3f}, "
           f"scale {w['scale'][0]:.3g} / {w['scale'][1]:.3g}, decoder sd {w['decoder_sd'][0]:.3g} / "
           f"{w['decoder_sd'][1]:.3g}, ELBO {w['elbo']:.3f}, I_q {w['mi']:.3f}.\n")
    md += "\nFigures: prop1_posteriors.png, prop1_trajectories.png\n"
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
