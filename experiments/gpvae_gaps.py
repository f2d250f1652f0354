r"""Beyond Kim & Pavlovic (2021): does GPVAE close the amortization gap? VAE vs SA(K) vs GPVAE, gap by gap.

Trains three models with the same architecture and recipe on the same images — in the ``cpu`` profile binarized
MNIST with a Bernoulli decoder d-200-200-784 (ELU), in the ``paper`` profile grey-level MNIST with the GPVAE paper's
fixed-σ_x Gaussian decoder and convolutional networks (:mod:`pyro_vaegap.studies.kim_pavlovic`) — with an encoder of
family

* ``VAE``: the FFG encoder (``ffg``);
* ``SA(K)``: the FFG encoder refined by K gradient steps on each datapoint's ELBO (``sa``, ``--sa-steps``);
* ``GPVAE``: the FFG encoder with linear-kernel GP noise and the moment-matched marginal (``gpvae``,
  trained on its eq. 15),

then runs :func:`pyro_vaegap.report.compute.gap_report` on the same seeded test points for each:
:math:`\log\hat p(x)` by AIS, :math:`\mathcal L[q^*_{\mathrm{FFG}}]` of the per-datapoint FFG (the
optimum all three encoders are measured against: each of them outputs a diagonal Gaussian), and
:math:`\mathcal L[q]` of the model's own amortized :math:`q` — so per model the approximation gap
:math:`\log\hat p - \mathcal L[q^*]`, the amortization gap :math:`\mathcal L[q^*] - \mathcal L[q]` and the
inference gap, with standard errors over the points, beside the training cost (median seconds per
epoch, from each run's ``log.csv``), and :math:`\mathcal L[q_0]` of the FFG encoder inside SA (before
its steps) and inside GPVAE (its base encoder, without the GP noise). The three models have different decoders (each trained with its
encoder), so their :math:`\log\hat p` differ; the gaps are per model. Differences of the gaps between
models are also given paired over the same points.

Profiles: ``cpu`` (default; 10,000 training images, dim z 20, 100 epochs at lr 3e-4, 50 test points,
AIS 20 chains × 200 steps × 5 leapfrog, IWAE and bounds with 5000 samples, local FFG optimization with
10 samples per step from the encoder's output under the paper's stopping rule, at most 4000 steps),
``paper`` (paper scale: all 50,000 images, dim z 50, 250 epochs, 1000 test points, and Cremer et al.'s
evaluation — AIS 100 × 500 × 10, 5000 samples, local optimization with 100 samples per step from the
prior, at most 50,000 steps), ``cpu_converged`` (the models of ``gpvae_table1 --profile cpu_converged``: grey-level
MNIST, the fixed-σ_x Gaussian decoder, MLP networks, all training images, dim z 10, 200 epochs, the best validation
epoch; the cpu profile's evaluation on 100 points; with ``--table-out`` and ``--sa-steps 1`` it evaluates that sweep's
own runs of seed ``--seed``, the same configs by construction, instead of training new ones) and ``--quick`` (a smoke
run whose numbers mean nothing). Single options
override the profile. Every stage is resumable: the runs keep a checkpoint per epoch, each evaluation
keeps its finished pieces in ``OUT/gaps_<model>.partial/`` and its report in ``OUT/gaps_<model>.json``.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.report.compute import gap_report
from pyro_vaegap.report.config import GapConfig
from pyro_vaegap.report.render import GapReport
from pyro_vaegap.studies.kim_pavlovic import (BINARIZED_MLP, CPU_CONVERGED, MODEL_SETTINGS, PAPER_MODEL, Spec, describe,
                                              train_config)
from pyro_vaegap.utils import ConfigError, FolderLock, set_seed

from pyro_vaegap.harness import Profiles, Setting, Progress, training_cost, make_parser, markdown_table, parse_args, run_main, save_figure, train_run, write_results

NAME = "gpvae_gaps"
#: ``cpu`` keeps the binarized-MNIST MLP setting of the committed runs; ``paper`` takes the GPVAE paper's model and
#: training settings (:data:`pyro_vaegap.studies.kim_pavlovic.PAPER_MODEL`: grey-level MNIST with the fixed-σ_x Gaussian
#: decoder, the supplement's convolutional networks, separate feature networks of width 256, the closed-form
#: expected-log term, 10% hold-out validation and the best validation epoch) with Cremer et al.'s evaluation
PROFILES = {
    "cpu": dict(BINARIZED_MLP, batch_size=100, num_train=10_000, latent_dim=20, epochs=100, lr=3e-4, num_points=50,
                eval_samples=5000, ais_chains=20, ais_steps=200, ais_leapfrog=5, local_samples=10,
                local_max_steps=4000, local_init="encoder"),
    "paper": dict(PAPER_MODEL, num_train=None, latent_dim=50, epochs=250, num_points=1000, eval_samples=5000,
                  ais_chains=100, ais_steps=500, ais_leapfrog=10, local_samples=100, local_max_steps=50_000,
                  local_init="prior"),
    # the converged Table 1 subset's VAE, SA(1) and GPVAE (gpvae_table1 --profile cpu_converged; --table-out
    # evaluates its runs) with the cpu profile's evaluation on twice the points
    "cpu_converged": dict(CPU_CONVERGED, latent_dim=10, num_points=100, eval_samples=5000, ais_chains=20,
                          ais_steps=200, ais_leapfrog=5, local_samples=10, local_max_steps=4000, local_init="encoder"),
    "quick": dict(BINARIZED_MLP, batch_size=100, num_train=300, latent_dim=3, epochs=2, lr=1e-3, num_points=4,
                  eval_samples=40, ais_chains=4, ais_steps=10, ais_leapfrog=2, local_samples=3, local_max_steps=40,
                  local_init="encoder"),
}


#: every profile setting an option of the same name overrides: name -> (type, help, choices)
SETTINGS = Profiles(PROFILES, {
    **MODEL_SETTINGS, "batch_size": Setting(int, "minibatch size"),
    "num_train": Setting(int, "training images (seeded subset)"), "latent_dim": Setting(int, "dim z"),
    "epochs": Setting(int, "training epochs"),
    "lr": Setting(float, "Adam learning rate (at 1e-3 the GPVAE objective oscillated in our runs)"),
    "num_points": Setting(int, "seeded random test points"),
    "eval_samples": Setting(int, "samples of IWAE, L[q] and L[q*] per point"),
    "ais_chains": Setting(int, "AIS chains"), "ais_steps": Setting(int, "AIS intermediate distributions"),
    "ais_leapfrog": Setting(int, "leapfrog steps per AIS transition"),
    "local_samples": Setting(int, "samples per local-optimization step"),
    "local_max_steps": Setting(int, "cap on local-optimization steps"),
    "local_init": Setting(str, "start of q*_FFG", choices=("prior", "encoder"))},
    default="cpu", help={"cpu": "binarized MNIST, MLP, 10k images, d 20, 100 epochs, 50 points, reduced AIS and "
                                "local optimization",
                         "cpu_converged": "the converged Table 1 subset's models (grey MNIST, Gaussian decoder, MLP, "
                                          "54k images, d 10, 200 epochs; see --table-out), 100 points, the cpu "
                                          "profile's evaluation",
                         "paper": "grey MNIST, Gaussian decoder, conv_kim, 54k images, d 50, 250 epochs, 1000 points, "
                                  "Cremer et al.'s evaluation"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], SETTINGS)
    p.add_argument("--data-dir", help="folder with the data set's files (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--sa-steps", type=int, default=2, help="K of SA(K)")
    p.add_argument("--table-out", default=None,
                   help="the --out folder of a gpvae_table1 sweep: evaluate its runs of VAE, SA(K) and GPVAE at this "
                        "dim z and --seed (OUT/runs/<model>_d<dim>_s<seed>, e.g. with --profile cpu_converged "
                        "--sa-steps 1) instead of training new ones; a run there with other settings is refused, a "
                        "missing or unfinished one is trained or resumed there")
    return p


def settings(args) -> dict:
    """The chosen profile's settings, with the options given on the command line in place."""
    return SETTINGS.apply(args)


def models(sa_steps: int) -> dict:
    """name → :class:`~pyro_vaegap.studies.kim_pavlovic.Spec` of the three encoders (``gpvae_table1``'s rows)."""
    return {spec.label: spec for spec in (Spec("vae"), Spec("sa", sa_steps), Spec("gpvae"))}


def noise_crossing(guide, x) -> float | None:
    r"""GPVAE only: the fraction of (point, latent dimension) where :math:`|\bar s_j| < 2\sqrt{\mathrm{Var}\,h_j}`,
    i.e. where the conditional scale :math:`c_j + u_j^\top\psi` crosses zero with probability above 5 %
    (there the Monte Carlo gradient of eq. 16's :math:`\mathbb E\log(\cdot)^2` has no finite variance)."""
    if not hasattr(guide, "moments"):
        return None
    with torch.no_grad():
        mo = guide.moments(x)
    return float((mo.scale_mean.abs() < 2 * mo.var_h.sqrt()).double().mean())


def inner_encoder(guide):
    """The FFG encoder inside an SA guide (its output before the refinement steps) or a GPVAE guide (its base
    encoder N(b(x), c(x)²), without the GP noise); None for the plain VAE."""
    return getattr(guide, "encoder", None) or getattr(guide, "base", None)


def evaluate(name, model, guide, family, x, gcfg, out: Path, progress, quiet) -> GapReport:
    """The gap report of one model, from ``OUT/gaps_<name>.json`` if finished, else computed (resumable)."""
    stem = out / f"gaps_{name.replace('(', '').replace(')', '')}"
    if stem.with_suffix(".json").exists():
        rep = GapReport.load(stem.with_suffix(".json"))
        if rep.config != json.loads(json.dumps(gcfg.to_dict())) or len(rep.per_point["log_px"]) != x.shape[0]:
            raise ConfigError(f"{stem}.json holds a gap report of other evaluation settings or points: choose another "
                              "--out, or delete it to evaluate afresh")
        progress(f"{name}: gap report already in {stem}.json")
        return rep
    partial = stem.with_name(stem.name + ".partial")
    t = time.time()
    with FolderLock(partial, "evaluation checkpoint folder"):
        rep = gap_report(model, guide, x, gcfg, family=family, progress=not quiet, log=None if quiet else progress,
                         checkpoint=partial)
        rep.meta.update({"model": name, "wall_seconds": time.time() - t, "paper": None})
        rep.save(stem)
    shutil.rmtree(partial, ignore_errors=True)
    return rep


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("sa_steps",))
    s = settings(args)
    for k, v in s.items():
        if not isinstance(v, str) and v is not None and v <= 0 and k != "keep_best":
            parser.error(f"--{k.replace('_', '-')}={v} is not allowed: it must be > 0")
    out, progress = Path(args.out), Progress(args.quiet)
    x_test = load_dataset(s["dataset"], "test", data_dir=args.data_dir).to(args.device)
    if s["num_points"] > x_test.shape[0]:
        parser.error(f"--num-points={s['num_points']} is not allowed: the test split has {x_test.shape[0]} images")
    test_index = seeded_subset(x_test.shape[0], s["num_points"], args.seed)
    gcfg = GapConfig(families=("ffg",), iwae_samples=s["eval_samples"], elbo_samples=s["eval_samples"],
                     ais_chains=s["ais_chains"], ais_steps=s["ais_steps"], ais_leapfrog=s["ais_leapfrog"],
                     log_px="ais", local_samples=s["local_samples"], local_max_steps=s["local_max_steps"],
                     local_check_every=10 if args.quick else 100, local_init=s["local_init"], seed=args.seed)
    profile = "quick" if args.quick else args.profile
    reports, costs, crossing, configs, inner = {}, {}, {}, {}, {}
    for name, spec in models(args.sa_steps).items():
        family = spec.family
        cfg = train_config(spec, s["latent_dim"], args.seed, s, args.data_dir)
        run_dir = (Path(args.table_out) / "runs" / f"{spec.slug}_d{s['latent_dim']}_s{args.seed}" if args.table_out
                   else out / "runs" / f"{family}{spec.options.get('num_steps', '')}_{profile}")
        try:
            model, guide, _ = train_run(cfg, run_dir, progress, args.device)
        except ConfigError as e:
            if not args.table_out:
                raise
            raise ConfigError(f"--table-out: the run {run_dir} was trained with other settings than this "
                              f"profile's and is left as it is ({e})") from None
        configs[name], costs[name] = cfg.to_dict(), training_cost(run_dir)
        x = model.validate_data(x_test[test_index])
        crossing[name] = noise_crossing(guide, x)
        if inner_encoder(guide) is not None:
            set_seed(args.seed)
            inner[name] = importance_sample(model, inner_encoder(guide), x, s["eval_samples"], psis=False).elbo.cpu().numpy()
        reports[name] = evaluate(name, model, guide, family, x, gcfg, out, progress, args.quiet)
        progress(f"{name}: amortization gap {reports[name].summary()['amortization:ffg'][0]:.2f} nats")
    results, rows, pair_rows = summarize(reports, costs, crossing, configs, inner)
    n = s["num_points"]
    md = (f"Three models, one recipe: {s['num_train'] or 'all'} training images, dim z = {s['latent_dim']}, "
          f"{describe(s)}; ELBO (GPVAE: its eq. 15), Adam lr {s['lr']:g}, batch {s['batch_size']}, "
          f"{s['epochs']} epochs, seed {args.seed}. Gaps on the same {n} seeded test points: log p̂ by AIS "
          f"({s['ais_chains']} chains × {s['ais_steps']} steps × {s['ais_leapfrog']} leapfrog, sigmoid schedule, "
          f"frozen pilot-tuned step sizes), L[q] and L[q*_FFG] with {s['eval_samples']} samples, q*_FFG optimized "
          f"per point with {s['local_samples']} samples per step, lr 1e-3, from the {s['local_init']}, stopping rule of "
          f"Cremer et al. (check every {gcfg.local_check_every} steps, patience {gcfg.local_patience}), at most "
          f"{s['local_max_steps']} steps. Nats, mean ± standard error over the points; training seconds per epoch: "
          f"median over the epochs of each run (its training images and a validation pass).\n\n")
    md += markdown_table(["model", "log p̂ (AIS)", "L[q*_FFG]", "L[q]", "approximation gap", "amortization gap",
                          "inference gap", "s / epoch", "train min", "eval min", "local opt. stopped by rule"], rows)
    md += ("\nGaps of SA and GPVAE minus those of the VAE, paired over the same points (mean ± standard error of "
           "the per-point differences; each model has its own decoder):\n\n"
           + markdown_table(["model − VAE", "Δ approximation gap", "Δ amortization gap", "Δ inference gap",
                             "Δ L[q]", "training time per epoch ratio"], pair_rows))
    md += ("\nL[q0] of the FFG encoder inside each model — SA before its refinement steps, GPVAE's base encoder "
           "N(b(x), c(x)²) without the GP noise — and what the model's own q adds to it (paired over the points):\n\n"
           + markdown_table(["model", "L[q0] (inner FFG encoder)", "L[q]", "L[q] − L[q0]"], [
               [k, "%.2f ± %.2f" % r["inner_encoder"], "%.2f ± %.2f" % r["amortized"],
                "%+.2f ± %.2f" % r["amortized_minus_inner"]] for k, r in results["models"].items() if "inner_encoder" in r]))
    if crossing.get("GPVAE") is not None:
        md += (f"\nGPVAE: at {100 * crossing['GPVAE']:.1f} % of (test point, latent dimension) pairs the conditional "
               "scale c_j + u_jᵀψ crosses zero with probability above 5 % (|s̄_j| < 2 √Var h_j).\n")
    md += "\nPer-model reports (diagnostics, PSIS k̂, AIS acceptance): " + ", ".join(
        f"`gaps_{k.replace('(', '').replace(')', '')}.md`" for k in reports) + ".\n"
    write_results(out, NAME, args, {"settings": s, **results}, md, progress.elapsed)
    save_figure(gaps_figure(results), out / "gaps.png")
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return results


def _ms(v) -> tuple[float, float]:
    v = np.asarray(v, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan"))


def summarize(reports: dict, costs: dict, crossing: dict, configs: dict, inner: dict):
    """``(results, table rows, paired rows)`` of the finished reports."""
    keys = {"log_px": "log_px", "local_ffg": "local:ffg", "amortized": "amortized",
            "approximation_gap": "approximation:ffg", "amortization_gap": "amortization:ffg", "inference_gap": "inference"}
    results = {"models": {}}
    rows, pair_rows = [], []
    base = reports["VAE"].per_point
    for name, rep in reports.items():
        p = rep.per_point
        r = {k: _ms(p[key]) for k, key in keys.items()}
        seconds = rep.meta.get("seconds", {})
        r.update({"training": costs[name], "train_config": configs[name], "eval_seconds": float(sum(seconds.values())),
                  "eval_seconds_by_stage": seconds, "local_steps_median": float(np.median(p["steps:ffg"])),
                  "local_stopped_by_rule": int(np.sum(p["converged:ffg"])), "num_points": len(p["log_px"]),
                  "noise_crossing_fraction": crossing[name], "warnings": rep.to_dict()["warnings"]})
        if name in inner:  # L[q0] of the FFG encoder inside, and what the model's own q adds to it (paired)
            r["inner_encoder"] = _ms(inner[name])
            r["amortized_minus_inner"] = _ms(np.asarray(p["amortized"]) - inner[name])
        if "uncertainty" in p:
            r["uncertainty"] = _ms(p["uncertainty"])
        if name != "VAE":
            r["minus_vae"] = {k: _ms(np.asarray(p[key]) - np.asarray(base[key])) for k, key in keys.items()}
            d = r["minus_vae"]
            pair_rows.append([f"{name} − VAE", "%+.2f ± %.2f" % d["approximation_gap"], "%+.2f ± %.2f" % d["amortization_gap"],
                              "%+.2f ± %.2f" % d["inference_gap"], "%+.2f ± %.2f" % d["amortized"],
                              "%.2fx" % (costs[name]["median_epoch_seconds"] / costs["VAE"]["median_epoch_seconds"])])
        results["models"][name] = r
        rows.append([name] + ["%.2f ± %.2f" % r[k] for k in keys] + [
            "%.2f" % costs[name]["median_epoch_seconds"], "%.1f" % (costs[name]["total_seconds"] / 60),
            "%.1f" % (r["eval_seconds"] / 60), f"{r['local_stopped_by_rule']}/{r['num_points']}"])
    return results, rows, pair_rows


def gaps_figure(results: dict):
    import matplotlib.pyplot as plt

    names = list(results["models"])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    w = 0.38
    for i, (key, label) in enumerate((("approximation_gap", "approximation gap"), ("amortization_gap", "amortization gap"))):
        m = [results["models"][n][key][0] for n in names]
        se = [results["models"][n][key][1] for n in names]
        ax.bar(np.arange(len(names)) + (i - 0.5) * w, m, w, yerr=se, capsize=3, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("nats (mean ± s.e. over test points)")
    ax.axhline(0, color="k", lw=0.6)
    ax.legend(fontsize=8)
    ax.set_title("gaps against the per-datapoint FFG optimum q*", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_main(main, None)
