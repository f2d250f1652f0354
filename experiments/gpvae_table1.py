r"""Kim & Pavlovic (2021), Table 1: test log-likelihood of VAE, SA(K), IAF(K), HF(K), ME(M), RME(M) and GPVAE.

The 22 models of the paper's table — ``VAE`` (the FFG encoder, ``ffg``); ``SA(K)``, K ∈ {1, 2, 4, 8}
ELBO-gradient steps of size 1e-3 on the FFG encoder's output (``sa``); ``IAF(K)`` and ``HF(K)``,
K ∈ {1, 2, 4, 8} inverse-autoregressive or Householder flows on an FFG base (``iaf``, ``householder``);
``ME(M)`` and ``RME(M)``, M ∈ {2, …, 5} mixture components, trained jointly or recursively (``mixture``,
``rme``); ``GPVAE`` (``gpvae``, its eq. 15) — each at every dim z of ``--dims`` and every training seed of
``--seeds``. Every (model, dim z, seed) is one training run through :func:`pyro_vaegap.training.train` in its
own folder ``OUT/runs/<model>_d<dim>_s<seed>/``, then evaluated on seeded test points:

* :math:`\log\hat p(x)` by IWAE with 100 samples (the paper's estimator) on ``--test-points`` points,
  with the ELBO of the same draws;
* IWAE with ``--big-samples`` (5000) samples on the first ``--big-points`` of them, and optionally AIS
  (:func:`pyro_vaegap.estimators.ais.ais`) on the first ``--ais-points``.

A run's evaluation is saved in its folder (``eval.json``, atomically) as soon as it finishes: a rerun of the
same command skips finished runs, resumes interrupted trainings from their checkpoints and evaluates what
is left. The assembly writes ``results.json``, ``results.md`` and ``table1.png``: per model and dim z the
mean ± SD over seeds of the per-seed test log-likelihood (the mean of IWAE-100 over the test points), the
best model per dim z, and for every other model the two-sided two-sample t-test against the best over the
per-seed values (:func:`scipy.stats.ttest_ind`; Welch's by default, ``--ttest student`` for Student's —
which the paper used is not stated). A model whose p ≥ 0.05 is not significantly worse than the best. The
paper's Table 1 (:mod:`pyro_vaegap.report.papers`, ``kim2021:1``; grey-level MNIST, a Gaussian decoder of fixed,
unstated σ_x²) is printed beside every cell; with another data set or decoder it is another quantity, and the page
says so.

Profiles (every setting an option overrides; the model settings are :mod:`pyro_vaegap.studies.kim_pavlovic`'s):

* ``cpu`` (default) — binarized MNIST, Bernoulli decoder, MLP networks, a 3000-image training subset, 8 epochs,
  500 test points and IWAE-5000 on 10 of them, 2 seeds (the committed run: 22 models × 3 dims × 3 seeds took 44
  minutes on one CPU thread of our shared 2-core machine). Unchanged since that run, so rerunning it reuses every run.
* ``cpu_converged`` — the paper's data, decoder and training settings with MLP networks (784-256-256 and
  d-256-256-784): grey-level MNIST, σ_x² = 0.0025 (our choice; unstated by the paper), all 60,000 training
  images with a seeded 10% held out, Adam lr 5e-4, batch 128, 200 epochs, the best validation epoch evaluated,
  VAE, SA(1), IAF(1), HF(1), ME(2), RME(2) and GPVAE (separate p = 256 features, closed-form term) at dim z 10,
  seeds 0, 1, 2, all 10,000 test points. Planned, not run: its cost is measured by ``gpvae_epoch_cost``.
* ``paper`` — the same with the supplement's Table 6 networks (``conv_kim``), the 22 models, dims 10, 20, 50,
  2000 epochs, 10 seeds, IWAE-5000 on 1000 test points and AIS on 100.
* ``--quick`` — a smoke run whose numbers mean nothing.

Long sweeps can run as several commands on the same ``--out`` with disjoint ``--families`` (one per core), and a
last command with all of them assembles the table from the runs' ``eval.json``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.estimators.ais import ais
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.report import papers
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.studies.kim_pavlovic import (ALL_SPECS, BINARIZED_MLP, CPU_CONVERGED, FAMILIES,  # noqa: F401
                                              MODEL_SETTINGS,
                                              PAPER_MODEL, PAPER_SIGMA2, Spec, describe, paper_values, parse_specs,
                                              train_config)
from pyro_vaegap.utils import ConfigError, atomic_write_json, provenance, set_seed, stable_seed

from pyro_vaegap.harness import (Profiles, Setting, training_cost, Progress, make_parser, markdown_table, parse_args, run_main, save_figure, train_run,
                              write_results)

NAME = "gpvae_table1"



#: groups of the paper's finding: GPVAE against the best model of each
GROUPS = {"VAE": ("vae",), "SA": ("sa",), "flows (IAF, HF)": ("iaf", "hf"), "mixtures (ME, RME)": ("me", "rme")}

#: ``cpu``: the quick CPU sweep of binarized MNIST whose results are committed (its settings unchanged since);
#: ``paper``: the paper's protocol (``pyro_vaegap.report.papers.table_info("kim2021", "1").protocol``) but for the
#: best-of-three initializations per split and σ_x's value (not stated); ``cpu_converged``: the largest subset this
#: CPU allows (docs/gpvae.rst, the plan measured in docs/results/gpvae_epoch_cost): dim z = 10, 3 seeds, the
#: families' smallest K (M), all 54,000 training images, MLP networks (the convolutional ones cost more per epoch on
#: this CPU), trained until the epoch cap with the best validation epoch kept.
PROFILES = {
    "cpu": dict(BINARIZED_MLP, families="vae,sa,iaf,hf,me,rme,gpvae", num_train=3000, epochs=8, lr=1e-3, batch_size=100,
                num_valid=1000, dims="10,20,50", seeds="0,1", test_points=500, iwae_samples=100, big_points=10,
                big_samples=5000, ais_points=0, ais_chains=20, ais_steps=200, ais_leapfrog=5),
    "cpu_converged": dict(CPU_CONVERGED, num_valid=None, families="vae,sa1,iaf1,hf1,me2,rme2,gpvae", dims="10", seeds="0,1,2", test_points=10_000, iwae_samples=100, big_points=100,
                          big_samples=5000, ais_points=0, ais_chains=20, ais_steps=200, ais_leapfrog=5),
    "paper": dict(PAPER_MODEL, num_train=None, num_valid=None, families="vae,sa,iaf,hf,me,rme,gpvae", epochs=2000,
                  dims="10,20,50", seeds="0,1,2,3,4,5,6,7,8,9", test_points=10_000, iwae_samples=100, big_points=1000,
                  big_samples=5000, ais_points=100, ais_chains=100, ais_steps=500, ais_leapfrog=10),
    "quick": dict(BINARIZED_MLP, hidden=16, families="vae,sa,iaf,hf,me,rme,gpvae", num_train=200, epochs=1, lr=1e-3,
                  batch_size=50, num_valid=100, dims="2", seeds="0,1", test_points=20, iwae_samples=10, big_points=3, big_samples=50,
                  ais_points=2, ais_chains=3, ais_steps=5, ais_leapfrog=2),
}
#: the profiles as the harness declares them: every setting an option of the same name overrides
SETTINGS = Profiles(PROFILES, {
    **MODEL_SETTINGS,
    "families": Setting(str, "models, comma-separated: a family (all its K/M of the table) or one K, e.g. "
                             "vae,sa2,iaf,me3"),
    "num_train": Setting(int, "training images (seeded subset; 0: all)"),
    "epochs": Setting(int, "training epochs"), "lr": Setting(float, "Adam learning rate"),
    "batch_size": Setting(int, "minibatch size"),
    "num_valid": Setting(int, "validation images of the per-epoch validation ELBO (0: all)"),
    "dims": Setting(str, "dims z, comma-separated (the paper: 10,20,50)"),
    "seeds": Setting(str, "training seeds, comma-separated"),
    "test_points": Setting(int, "seeded random test points of IWAE-100"),
    "iwae_samples": Setting(int, "samples of the main IWAE estimate (the paper: 100)"),
    "big_points": Setting(int, "test points of the large IWAE (the first of the test points)"),
    "big_samples": Setting(int, "samples of the large IWAE"),
    "ais_points": Setting(int, "test points of AIS (0: no AIS)"), "ais_chains": Setting(int, "AIS chains"),
    "ais_steps": Setting(int, "AIS intermediate distributions"),
    "ais_leapfrog": Setting(int, "leapfrog steps per AIS transition")},
    default="cpu", help={"cpu": "binarized MNIST, MLP, 3000 images, 8 epochs, 2 seeds",
                         "cpu_converged": "grey MNIST, Gaussian decoder, MLP, 54,000 images, 200 epochs, best "
                                          "validation epoch, dim z 10, 3 seeds, 7 models",
                         "paper": "grey MNIST, Gaussian decoder, conv_kim, 54,000 images, 2000 epochs at lr 5e-4, "
                                  "10 seeds"})


def parse_ints(option: str, text: str, minimum: int) -> list[int]:
    """A comma-separated list of distinct integers ≥ ``minimum``, in the order given."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not allowed: expected comma-separated integers") from None
    bad = [v for v in values if v < minimum]
    if bad or not values:
        raise ConfigError(f"{option} {text!r} is not allowed: "
                          f"{'each value' if values else 'give at least one value, each'} must be >= {minimum}")
    return list(dict.fromkeys(values))


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], SETTINGS)
    p.add_argument("--data-dir", help="folder with the data set's files (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--ttest", default="welch", choices=("welch", "student"),
                   help="two-sided t-test against the best model: Welch's (unequal variances) or Student's")
    return p


def settings(args) -> dict:
    """The profile's settings with the single options given on the command line, checked."""
    s = SETTINGS.apply(args)
    for k, v in s.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (v < 0 or (v == 0 and k not in (
                "num_train", "num_valid", "ais_points", "keep_best"))):
            raise ConfigError(f"--{k.replace('_', '-')}={v} is not allowed: it must be > 0"
                              + (" (or 0: all)" if k in ("num_train", "num_valid") else ""))
    s["num_train"], s["num_valid"] = s["num_train"] or None, s["num_valid"] or None
    if s["big_points"] > s["test_points"] or s["ais_points"] > s["test_points"]:
        raise ConfigError(f"--big-points={s['big_points']} / --ais-points={s['ais_points']} are not allowed: they "
                          f"must be <= --test-points={s['test_points']} (they are its first points)")
    s["dims"], s["seeds"] = parse_ints("--dims", str(s["dims"]), 1), parse_ints("--seeds", str(s["seeds"]), 0)
    return s


def eval_settings(s: dict, seed: int) -> dict:
    """What an evaluation depends on besides the trained run (a saved one with other settings is not reused)."""
    keys = ("test_points", "iwae_samples", "big_points", "big_samples", "ais_points", "ais_chains", "ais_steps",
            "ais_leapfrog")
    return {"test_seed": seed, **{k: s[k] for k in keys}}


def _mean_se(v: torch.Tensor) -> dict:
    v = v.double().cpu()
    n = v.numel()
    return {"mean": float(v.mean()), "se": float(v.std() / math.sqrt(n)) if n > 1 else None, "num_points": n}


def evaluate_run(model, guide, x: torch.Tensor, es: dict, seed: int) -> dict:
    r"""IWAE (and the ELBO of the same draws) on all of ``x``, the large IWAE on its first ``big_points``, AIS on
    its first ``ais_points``: per estimate the mean over the points (nats) and its standard error."""
    set_seed(seed)
    main = importance_sample(model, guide, x, es["iwae_samples"], psis=False)
    out = {"iwae": _mean_se(main.iwae), "elbo": _mean_se(main.elbo)}
    set_seed(stable_seed(seed, "big") % 2**32)
    big = importance_sample(model, guide, x[:es["big_points"]], es["big_samples"], psis=False)
    out["iwae_big"] = {**_mean_se(big.iwae), "max_mc_se": float(big.iwae_se.max()),
                       "iwae_same_points": _mean_se(main.iwae[:es["big_points"]])["mean"]}
    if es["ais_points"]:
        set_seed(stable_seed(seed, "ais") % 2**32)
        res = ais(model, x[:es["ais_points"]], es["ais_chains"], es["ais_steps"], es["ais_leapfrog"])
        out["ais"] = _mean_se(res.log_px.detach())
    return out


def learned_sigma2(model) -> float | None:
    """The decoder's σ_x² of a model whose variance is one learned scalar (what the absolute log-likelihoods
    depend on, by about -392 log σ_x²); None for other decoders."""
    s2 = getattr(model, "sigma2", None)
    return float(s2.detach()) if torch.is_tensor(s2) and s2.numel() == 1 else None


def run_cell(spec: Spec, dim: int, seed: int, s: dict, args, x_test, device, progress) -> dict:
    """Train (or resume) one run and evaluate it, or read its finished evaluation; the record of ``eval.json``."""
    run_dir = Path(args.out) / "runs" / f"{spec.slug}_d{dim}_s{seed}"
    cfg, es = train_config(spec, dim, seed, s, args.data_dir), eval_settings(s, args.seed)
    path = run_dir / "eval.json"
    if path.is_file():
        rec = json.loads(path.read_text())
        saved = json.loads(json.dumps(TrainConfig.from_dict(rec["train_config"]).to_dict()))  # later fields: defaults
        if rec["eval_settings"] != es or saved != json.loads(json.dumps(cfg.to_dict())):
            raise ConfigError(f"{path} holds a run of other settings: choose another --out, or delete "
                              f"{str(run_dir)!r} to train and evaluate it afresh")
        progress(f"{spec.label} d={dim} seed {seed}: finished before, IWAE-{es['iwae_samples']} "
                 f"{rec['eval']['iwae']['mean']:.2f}")
        return rec
    model, guide, _ = train_run(cfg, run_dir, progress, device)
    t = time.time()
    x = model.validate_data(x_test.to(device))
    evaluation = evaluate_run(model, guide, x, es, stable_seed(args.seed, seed) % 2**32)
    rec = {"model": spec.label, "dim": dim, "seed": seed, "train_config": cfg.to_dict(), "eval_settings": es,
           "training": training_cost(run_dir), "eval": evaluation, "eval_seconds": time.time() - t,
           "sigma2": learned_sigma2(model),
           "git": provenance()["git"]}  # reused by later sweeps: it records its own code
    atomic_write_json(path, rec)
    progress(f"{spec.label} d={dim} seed {seed}: IWAE-{es['iwae_samples']} {rec['eval']['iwae']['mean']:.2f}, "
             f"IWAE-{es['big_samples']} {rec['eval']['iwae_big']['mean']:.2f} "
             f"(train {rec['training']['total_seconds']:.0f} s, eval {rec['eval_seconds']:.0f} s)")
    return rec


def ttest_p(a, b, welch: bool) -> float | None:
    """Two-sided p-value of the two-sample t-test of ``a`` against ``b``; None where it is undefined (fewer
    than 2 values on a side, or no variance in either)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    p = float(ttest_ind(a, b, equal_var=not welch).pvalue)
    return None if math.isnan(p) else p


#: per-seed estimates of a cell: IWAE-100 and the ELBO on the test points, the large IWAE on its first points,
#: IWAE-100 on those same points, AIS
ESTIMATES = ("iwae", "elbo", "iwae_big", "iwae_small", "ais")


def assemble(records: list[dict], specs: list[Spec], dims: list[int], welch: bool) -> dict:
    """Per model and dim z: the per-seed values, mean ± SD, the best model, p-values against it, the finding."""
    table = {sp.label: {} for sp in specs}
    for rec in records:
        cell = table[rec["model"]].setdefault(str(rec["dim"]),
                                              {k: [] for k in ("seeds", *ESTIMATES, "train_seconds", "sigma2")})
        cell["seeds"].append(rec["seed"])
        if rec.get("sigma2") is not None:  # learned σ_x² (older eval.json files lack the key)
            cell["sigma2"].append(rec["sigma2"])
        e = rec["eval"]
        per_seed = {k: e[k]["mean"] for k in ("iwae", "elbo", "iwae_big", "ais") if k in e}
        per_seed["iwae_small"] = e["iwae_big"]["iwae_same_points"]
        for k, v in per_seed.items():
            cell[k].append(v)
        cell["train_seconds"].append(rec["training"]["total_seconds"])
    best, finding = {}, {}
    for dim in map(str, dims):
        cells = {m: c[dim] for m, c in table.items() if dim in c}
        for c in cells.values():
            for k in ESTIMATES:
                v = np.asarray(c[k], dtype=float)
                c[f"{k}_mean"] = float(v.mean()) if v.size else None
                c[f"{k}_sd"] = float(v.std(ddof=1)) if v.size > 1 else None
        if not cells:
            continue
        best[dim] = top = max(cells, key=lambda m: cells[m]["iwae_mean"])
        for m, c in cells.items():
            c["best"] = m == top
            c["p_vs_best"] = None if m == top else ttest_p(c["iwae"], cells[top]["iwae"], welch)
            c["not_worse"] = m == top or (c["p_vs_best"] is not None and c["p_vs_best"] >= 0.05)
        finding[dim] = gpvae_finding(cells, top, welch)
    return {"table": table, "best": best, "finding": finding}


def gpvae_finding(cells: dict, top: str, welch: bool) -> dict | None:
    """The paper's ranking finding at one dim z: is GPVAE best or tied-best (p ≥ 0.05 against the best), and
    GPVAE against the best model of each group (difference of means, p-value)."""
    if "GPVAE" not in cells:
        return None
    g = cells["GPVAE"]
    ranked = sorted(cells, key=lambda m: -cells[m]["iwae_mean"])
    out = {"gpvae_rank": ranked.index("GPVAE") + 1, "models": len(ranked), "best": top,
           "gpvae_best_or_tied": bool(g["not_worse"]), "against_groups": {}}
    for group, keys in GROUPS.items():
        members = [m for m in cells if any(m == FAMILIES[k][0] or m.startswith(FAMILIES[k][0] + "(") for k in keys)]
        if members:
            b = max(members, key=lambda m: cells[m]["iwae_mean"])
            out["against_groups"][group] = {"model": b, "gpvae_minus": g["iwae_mean"] - cells[b]["iwae_mean"],
                                            "p": ttest_p(g["iwae"], cells[b]["iwae"], welch)}
    return out


def _cell_text(c: dict | None) -> str:
    if c is None:
        return "not run"
    text = f"{c['iwae_mean']:.2f}" + (f" ± {c['iwae_sd']:.2f}" if c["iwae_sd"] is not None else "")
    return f"**{text}**" if c["best"] else text + (" †" if c["not_worse"] else "")


def _published(table: str, label: str, col: str):
    """The paper's entry of table ``table`` (``kim2021``) at row ``label`` and column ``col``, or None where the
    table has no such cell or prints none there."""
    info = papers.table_info("kim2021", table)
    if label not in dict(info.rows) or col not in dict(info.columns):
        return None
    e = papers.get("kim2021", table, label, col)
    return None if e.value is None else e


def paper_cell(label: str, dim: int):
    """The paper's Table 1 entry (:class:`~pyro_vaegap.report.papers.Published`) of a model and dim z, or None."""
    return _published("1", label, f"dim_z={dim}")


def paper_fc_cell(label: str, dim: int):
    """The paper's fully-connected-decoder entry (supplement Table 10, ``kim2021:10``, MNIST) of a model and dim z,
    or None: the paper's closest number to our MLP networks' (its encoder stays convolutional)."""
    return _published("10", label, f"mnist/dim_z={dim}/fc")


def _paper_text(label: str, dim: int) -> str:
    e = paper_cell(label, dim)
    return "–" if e is None else f"{e.value:.1f} ± {e.sd:.1f}"


def _paper_fc_text(label: str, dim: int) -> str:
    e = paper_fc_cell(label, dim)
    return "–" if e is None else f"{e.value:.1f}"


def _paper_note(s: dict) -> str:
    """How the paper's numbers relate to ours under the settings ``s``."""
    if s["dataset"] != "mnist_continuous" or s["model"] != "gaussian" or s["variance"] not in ("fixed", "scalar"):
        return (f"a different quantity from ours ({s['dataset']}, {s['model']} decoder): only the ranking is "
                f"comparable")
    if s["variance"] == "scalar":
        return ("ours learns σ_x² (one scalar, started at our fixed choice; footnote 2's option), the paper fixes "
                "an unstated value: absolute values agree only as far as the two σ_x² do (our learned values are in "
                "the estimates table below)")
    if s["sigma2"] != PAPER_SIGMA2:
        return f"our σ_x² = {s['sigma2']:g} (ours differs from the one we chose for the paper profile)"
    return (f"ours with σ_x² = {s['sigma2']:g}, our choice: the absolute values depend on σ_x² (by "
            f"-392 log σ_x² plus the reconstruction term), so only the ranking is comparable with certainty")


def _p_text(p) -> str:
    return "–" if p is None else f"{p:.3g}"


def markdown(results: dict, specs: list[Spec], dims: list[int], s: dict, args, welch: bool) -> str:
    table, n_seeds = results["table"], len(s["seeds"])
    md = (f"Test log-likelihood (nats; higher is better): per seed the mean of IWAE-{s['iwae_samples']} "
          f"over {s['test_points']} seeded test points, then mean ± SD over the training seeds "
          f"{', '.join(map(str, s['seeds']))}. Data and model: {describe(s)}. "
          f"{s['num_train'] or 'All'} training images, {s['epochs']} epochs, Adam lr {s['lr']:g}, batch "
          f"{s['batch_size']}, the ELBO (GPVAE: its eq. 15; RME: its recursive criteria)"
          + f". **Bold**: the best model "
          f"of the column; †: not significantly worse than it (two-sided {'Welch' if welch else 'Student'} t-test "
          f"over the per-seed values, p ≥ 0.05). Paper: Kim & Pavlovic (2021) Table 1 (`kim2021:1:MODEL:dim_z=D`, "
          f"mean ± SD over 10 runs), grey-level MNIST with a Gaussian decoder of fixed but unstated σ_x², "
          f"{_paper_note(s)}; \"–\": no such cell in the paper.\n\n")
    # the fully-connected-decoder figures (supplement Table 10) beside our MLP networks, where the paper has them
    fc = {d: s["arch"] == "mlp" and any(paper_fc_cell(sp.label, d) for sp in specs) for d in dims}
    head = ["model"] + [h for d in dims for h in (f"d={d}", f"d={d} paper") + ((f"d={d} paper, FC decoder",)
                                                                                if fc[d] else ())]
    rows = [[sp.label] + [v for d in dims for v in (_cell_text(table[sp.label].get(str(d))), _paper_text(sp.label, d))
                          + ((_paper_fc_text(sp.label, d),) if fc[d] else ())] for sp in specs]
    if any(fc.values()):
        md += ("\"paper, FC decoder\": the paper's supplement Table 10 (`kim2021:10:MODEL:mnist/dim_z=D/fc`, one "
               "figure per cell), its decoder fully connected as ours, its encoder convolutional.\n\n")
    md += markdown_table(head, rows)
    md += "\nTwo-sided t-test p-values of each model against the best of its column:\n\n"
    md += markdown_table(["model"] + [f"d={d}" for d in dims], [
        [sp.label] + [("best" if c.get("best") else _p_text(c.get("p_vs_best"))) if c else "not run"
                      for c in (table[sp.label].get(str(d)) for d in dims)] for sp in specs])
    md += (f"\nIWAE-{s['big_samples']}, and IWAE-{s['iwae_samples']} beside it, on the first {s['big_points']} "
           f"test points"
           + (f", and AIS ({s['ais_chains']} chains × {s['ais_steps']} steps × {s['ais_leapfrog']} leapfrog) on the "
              f"first {s['ais_points']}" if s["ais_points"] else "")
           + " (mean ± SD over seeds), and training minutes per run (mean over seeds)"
           + (", and the learned σ_x² (mean over seeds)" if s["variance"] == "scalar" else "") + ":\n\n")
    est = [("iwae_small", f"IWAE-{s['iwae_samples']}"), ("iwae_big", f"IWAE-{s['big_samples']}")] + (
        [("ais", "AIS")] if s["ais_points"] else [])

    def ms(c, k):
        if not c or c.get(f"{k}_mean") is None:
            return "not run"
        return f"{c[f'{k}_mean']:.2f}" + (f" ± {c[f'{k}_sd']:.2f}" if c.get(f"{k}_sd") is not None else "")
    learned = s["variance"] == "scalar"

    def s2(c):
        return f"{np.mean(c['sigma2']):.5f}" if c and c.get("sigma2") else "–"
    md += markdown_table(["model"] + [f"d={d} {name}" for d in dims for _, name in est]
                         + [f"d={d} train min" for d in dims]
                         + ([f"d={d} learned σ_x²" for d in dims] if learned else []),
                         [[sp.label] + [ms(table[sp.label].get(str(d)), k) for d in dims for k, _ in est]
                          + ["%.2f" % (np.mean(c["train_seconds"]) / 60) if c else "not run"
                             for c in (table[sp.label].get(str(d)) for d in dims)]
                          + ([s2(table[sp.label].get(str(d))) for d in dims] if learned else []) for sp in specs])
    md += "\nThe paper's ranking finding (GPVAE best or tied-best), in our runs:\n\n"
    rows = []
    for d in map(str, dims):
        f = results["finding"].get(d)
        if f is None:
            rows.append([d, "GPVAE not run", "", ""])
            continue
        vs = "; ".join(f"{g}: {v['model']} {v['gpvae_minus']:+.2f} (p {_p_text(v['p'])})"
                       for g, v in f["against_groups"].items())
        rows.append([d, f"{f['gpvae_rank']} of {f['models']} (best: {f['best']})",
                     "yes" if f["gpvae_best_or_tied"] else "no", vs])
    md += markdown_table(["dim z", "GPVAE's rank", "best or tied-best", "GPVAE − best of each group (nats, p)"], rows)
    return md + (f"\n{n_seeds} seeds per cell unless a cell says otherwise (`results.json`: per-seed values). "
                 f"{results['runs']} runs; their training and evaluation took {results['run_seconds'] / 60:.1f} min "
                 f"in all (the sum over runs of each run's epochs and evaluation, from its `log.csv` and "
                 f"`eval.json`).\n")


def table_figure(results: dict, specs: list[Spec], dims: list[int]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dims), figsize=(3.2 * len(dims) + 1.2, 0.22 * len(specs) + 1.4), sharey=True,
                             squeeze=False)
    labels = [sp.label for sp in specs]
    for ax, d in zip(axes[0], dims):
        for i, m in enumerate(labels):
            c = results["table"][m].get(str(d))
            if c is None:
                continue
            color = "C3" if c["best"] else ("C1" if c["not_worse"] else "C0")
            ax.errorbar(c["iwae_mean"], i, xerr=c["iwae_sd"] or 0, fmt="o", ms=3, color=color, capsize=2)
            ax.plot(c["iwae"], [i] * len(c["iwae"]), "x", ms=3, color=color, alpha=0.5)
        ax.set_title(f"dim z = {d}", fontsize=9)
        ax.set_xlabel("test log-likelihood (nats)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    fig.suptitle("mean ± SD over seeds (x: seeds); red: best, orange: not significantly worse (p ≥ 0.05)",
                 fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        s = settings(args)
        specs = parse_specs(s["families"])
        device = args.device  # resolved by parse_args
    except ConfigError as e:
        parser.error(str(e))
    out, progress = Path(args.out), Progress(args.quiet)
    x_all = load_dataset(s["dataset"], "test", data_dir=args.data_dir)
    if s["test_points"] > x_all.shape[0]:
        parser.error(f"--test-points={s['test_points']} is not allowed: the test split has {x_all.shape[0]} rows")
    x_test = x_all[seeded_subset(x_all.shape[0], s["test_points"], args.seed)]
    # seed by seed: a sweep stopped early leaves whole seeds of the table (rerun with fewer --seeds to assemble)
    cells = [(sp, d, seed) for seed in s["seeds"] for d in s["dims"] for sp in specs]
    records = []
    for i, (sp, d, seed) in enumerate(cells, 1):
        progress(f"[{i}/{len(cells)}] {sp.label}, dim z {d}, seed {seed}")
        records.append(run_cell(sp, d, seed, s, args, x_test, device, progress))
    welch = args.ttest == "welch"
    # the runs' own time, whichever invocations made them (a rerun that only assembles takes seconds)
    run_seconds = sum(r["training"]["total_seconds"] + r["eval_seconds"] for r in records)
    results = {"settings": s, "device": str(device), "ttest": "welch" if welch else "student",
               "models": [sp.label for sp in specs],
               "paper": {sp.label: {str(d): (None if (e := paper_cell(sp.label, d)) is None else
                                             {"id": e.id, "value": e.value, "sd": e.sd}) for d in s["dims"]}
                         for sp in specs},
               "paper_fc": {sp.label: {str(d): (None if (e := paper_fc_cell(sp.label, d)) is None else
                                                {"id": e.id, "value": e.value}) for d in s["dims"]} for sp in specs},
               "runs": len(records),
               "run_seconds": run_seconds, **assemble(records, specs, s["dims"], welch)}
    md = markdown(results, specs, s["dims"], s, args, welch)
    write_results(out, NAME, args, results, md, progress.elapsed)
    save_figure(table_figure(results, specs, s["dims"]), out / "table1.png")
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return results


if __name__ == "__main__":
    run_main(main, None)
