r"""Cremer, Li & Duvenaud (2018), Figure 3: training curves of log p̂ (AIS), IWAE and L[q] on train and test.

Four Bernoulli VAEs with the paper's MNIST architecture (latent 50, decoder 50-200-200-784, encoder
784-200-200, ELU; batch 100, Adam lr 1e-3, entropy annealing as in ``experiments.cremer_gaps``) are
trained with the ELBO: encoder ``ffg`` or ``flow`` (the auxiliary flow with its defaults) × training set
``full`` (all 50,000 images) or ``small`` (a seeded subset of ``--small-size`` = 1,000 images). At each
epoch of a schedule (log-spaced by default) the model *of that epoch* is evaluated on ``--num-points``
seeded training images (for ``small``, drawn from its own training images) and as many seeded test
images, per point:

* :math:`\log\hat p(x)` by AIS (:func:`pyro_vaegap.estimators.ais.ais`, frozen pilot-tuned step sizes),
* the IWAE bound :math:`\mathcal L_k` and :math:`\mathcal L[q]`, both from the same ``--iwae-samples`` draws of
  the amortized guide (:func:`pyro_vaegap.estimators.importance.importance_sample`),

and :math:`\mathcal L_\mathrm{AIS} - \mathcal L_\mathrm{IW}` (the part of the gap the encoder's proposal leaves
to AIS; the paper's measure of encoder overfitting) is reported on both subsets.

Training runs in segments (:func:`pyro_vaegap.training.train` with ``resume=True`` and ``stop_after``), each
ending at a checkpoint epoch; a segmented run equals an uninterrupted one (the checkpoint keeps every RNG
state). Each evaluation is written atomically to ``RUNS/SETTING/evals/epoch_NNNNN.json`` when it finishes
and seeded by (seed, setting, epoch), so an interrupted command resumes where it stopped and reuses the
finished evaluations unchanged; a longer ``--checkpoints`` schedule extends a finished command.
``--check-points N`` reruns AIS with ``--check-ais`` (the paper's 100 chains × 500 steps × 10 leapfrog) on
the first ``N`` training and test points at the last epoch of the ``--check-settings``, to measure how far
the cheaper AIS of the curves is from it (saved and reused the same way, as ``check_epoch_NNNNN.json``).

Profiles: ``cpu`` (default) trains 40 epochs on the full set and 1,500 on the small one (8 log-spaced
checkpoints each), 100 + 100 points, AIS 20 chains × 100 steps × 5 leapfrog, 1,000 importance samples;
``paper`` is the paper's protocol as far as it is known here (3,280 epochs on Burda et al.'s schedule,
1,000 test points, AIS 100 × 500 × 10, 5,000 samples; days on one core, not run here); ``--quick`` is a
smoke run (400 / 100 images, 2 / 4 epochs, tiny evaluation) whose numbers mean nothing::

    python -m experiments.cremer_fig3 --data-dir ../shared/data --runs docs/results/cremer_fig3/runs
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.estimators.ais import ais
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.report.render import mean_se
from pyro_vaegap.runs import CHECKPOINT, LR_SCHEDULES, TrainConfig, read_checkpoint
from pyro_vaegap.training import train
from pyro_vaegap.utils import ConfigError, atomic_write_json, check_finite, provenance, set_seed, stable_seed

from pyro_vaegap.harness import (Profiles, Progress, Setting, make_parser, markdown_table, parse_args, run_main,
                                 save_figure, write_results)

NAME = "cremer_fig3"
ENCODERS = ("ffg", "flow")
SIZES = ("full", "small")
SETTINGS = tuple(f"{e}-{s}" for s in SIZES for e in ENCODERS)
ESTIMATORS = (("ais", "log p̂ (AIS)"), ("iwae", "IWAE"), ("elbo", "L[q]"))
PROFILES = Profiles(
    profiles={
        "cpu": {"epochs": 40, "small_epochs": 1500, "num_points": 100, "ais_chains": 20, "ais_steps": 100,
                "ais_leapfrog": 5, "iwae_samples": 1000, "lr_schedule": "constant", "full_size": None,
                "small_size": 1000, "num_valid": 1000, "anneal_epochs": 20},
        "paper": {"epochs": 3280, "small_epochs": 3280, "num_points": 1000, "ais_chains": 100, "ais_steps": 500,
                  "ais_leapfrog": 10, "iwae_samples": 5000, "lr_schedule": "burda", "full_size": None,
                  "small_size": 1000, "num_valid": 1000, "anneal_epochs": 20},
        "quick": {"epochs": 2, "small_epochs": 4, "num_points": 5, "ais_chains": 3, "ais_steps": 10, "ais_leapfrog": 2,
                  "iwae_samples": 50, "lr_schedule": "constant", "full_size": 400, "small_size": 100, "num_valid": 100,
                  "anneal_epochs": 1},
    },
    settings={
        "epochs": Setting(int, "training epochs on the full set"),
        "small_epochs": Setting(int, "training epochs on the small set"),
        "small_size": Setting(int, "images of the small training set"),
        "full_size": Setting(int, "images of the full training set (None: all 50,000)"),
        "lr_schedule": Setting(str, "Adam's learning-rate schedule", choices=LR_SCHEDULES),
        "num_valid": Setting(int, "validation images of the per-epoch validation ELBO"),
        "anneal_epochs": Setting(int, "entropy-annealing warm-up epochs"),
        "num_points": Setting(int, "seeded training and as many test images"),
        "ais_chains": Setting(int, "AIS chains per point"),
        "ais_steps": Setting(int, "AIS intermediate distributions"),
        "ais_leapfrog": Setting(int, "leapfrog steps per HMC transition"),
        "iwae_samples": Setting(int, "importance samples of IWAE and L[q]"),
    },
    default="cpu", help={"cpu": "40 epochs (1500 on the small set), a CPU-sized evaluation",
                         "paper": "3280 epochs on Burda et al.'s schedule, the paper's evaluation"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.set_defaults(out="docs/results/cremer_fig3")
    p.add_argument("--data-dir", default=None, help="folder with binarized_mnist.npz (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--runs", default=None, help="folder of the training runs and their evaluations, one subfolder "
                                                "per setting (default runs/cremer_fig3_PROFILE); resumed when present")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"comma-separated settings ENCODER-SIZE ({', '.join(SETTINGS)})")
    p.add_argument("--checkpoints", default=None, help="comma-separated epochs (1..--epochs) at which the full-set "
                                                       "models are evaluated (default: --num-checkpoints log-spaced)")
    p.add_argument("--small-checkpoints", default=None, help="the same for the small set (1..--small-epochs)")
    p.add_argument("--num-checkpoints", type=int, default=8, help="log-spaced checkpoints of the default schedules")
    p.add_argument("--check-points", type=int, default=0,
                   help="AIS check: at the last epoch, rerun AIS with --check-ais on the first N training and N test "
                        "points of the settings in --check-settings (0: no check)")
    p.add_argument("--check-settings", default=None, help="settings the AIS check runs on (default: the small-set "
                                                          "ones among --settings)")
    p.add_argument("--check-ais", default="100,500,10", help="CHAINS,STEPS,LEAPFROG of the check's AIS (the paper's)")
    return p


def parse_schedule(parser, text, epochs: int, flag: str, epochs_flag: str, num: int) -> list[int]:
    """The sorted checkpoint epochs of ``text`` (comma-separated), each in ``1..epochs``; ``None``: ``num``
    log-spaced epochs from 1 to ``epochs`` (fewer where rounding merges them)."""
    if text is None:
        return sorted({int(round(e)) for e in np.geomspace(1, epochs, num)} | {epochs})
    try:
        entries = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"{flag}={text!r} is not allowed: expected comma-separated epoch numbers, e.g. 1,10,40")
    if not entries:
        parser.error(f"{flag}={text!r} is not allowed: give at least one epoch")
    for e in entries:
        if not 1 <= e <= epochs:
            parser.error(f"{flag} entry {e} is not allowed: it is outside 1..{epochs} ({epochs_flag} {epochs}); "
                         f"raise {epochs_flag} or drop the entry")
    return sorted(set(entries))


def check_args(parser, argv):
    """Parsed options with the profile's settings filled in and every value checked (``parser.error`` on a bad one)."""
    return parse_args(parser, argv, positive=("epochs", "small_epochs", "small_size", "num_checkpoints", "num_points",
                                              "ais_chains", "ais_steps", "ais_leapfrog", "iwae_samples", "num_valid",
                                              "full_size"),
                      nonneg=("anneal_epochs",), profiles=PROFILES)


def train_config(setting: str, args) -> TrainConfig:
    """The training run of ``setting`` (``ENCODER-SIZE``)."""
    encoder, size = setting.split("-")
    small = size == "small"
    return TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir,
                       num_train=args.small_size if small else args.full_size,
                       model="bernoulli", latent_dim=50, hidden=200, decoder_layers=2, activation="elu", guide=encoder,
                       objective="elbo", anneal="entropy" if args.anneal_epochs else "none",
                       anneal_epochs=args.anneal_epochs, epochs=args.small_epochs if small else args.epochs,
                       batch_size=100, lr=1e-3, lr_schedule=args.lr_schedule, num_valid=args.num_valid,
                       seed=args.seed)


def training_images(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The images :func:`pyro_vaegap.training.train` trains ``cfg`` on (its seeded ``num_train`` subset, or all)
    and their rows in the training split."""
    x = load_dataset(cfg.dataset, "train", data_dir=cfg.data_dir)
    rows = torch.arange(x.shape[0]) if cfg.num_train is None else seeded_subset(x.shape[0], cfg.num_train, cfg.seed)
    return x[rows], rows


def advance(cfg: TrainConfig, run_dir: Path, epoch: int, device):
    """``(model, guide)`` trained to exactly ``epoch``: the run in ``run_dir`` resumed (or started) and stopped
    there, in eval mode."""
    done = read_checkpoint(run_dir)["epoch"] if (run_dir / CHECKPOINT).exists() else 0
    if done > epoch:
        raise ConfigError(f"{run_dir} is trained to epoch {done}, past checkpoint epoch {epoch} whose evaluation is "
                          f"missing; the model of epoch {epoch} is gone: drop epoch {epoch} from the schedule, or "
                          "delete the run folder to train it again")
    res = train(cfg, run_dir, resume=done > 0, stop_after=epoch - done, progress=False,
                resume_hint="the same command", device=device)
    assert res.log[-1]["epoch"] == epoch, "train() stopped at another epoch than asked"
    return res.model.eval(), res.guide.eval(), res.log[-1]


def evaluate(model, guide, x_train: torch.Tensor, x_test: torch.Tensor, args, seed: int) -> dict:
    r"""Per-point AIS :math:`\log\hat p(x)`, IWAE and :math:`\mathcal L[q]` (with standard errors) of both subsets.

    The two subsets go through each estimator together, as one batch of ``2n`` points."""
    x = model.validate_data(torch.cat([x_train, x_test]))
    n = x_train.shape[0]
    set_seed(seed % 2 ** 32)  # numpy's legacy seeding takes 32 bits
    a = ais(model, x, args.ais_chains, args.ais_steps, args.ais_leapfrog)
    check_finite("AIS log p̂", a.log_px)
    r = importance_sample(model, guide, x, args.iwae_samples, psis=False)
    per = {"ais": a.log_px, "ais_se": a.se, "ais_accept": a.accept_rate, "iwae": r.iwae, "iwae_se": r.iwae_se,
           "elbo": r.elbo, "elbo_se": r.elbo_se}
    return {split: {k: v[sl].tolist() for k, v in per.items()}
            for split, sl in (("train", slice(0, n)), ("test", slice(n, 2 * n)))}


def eval_config(args) -> dict:
    """What an evaluation depends on besides the model: a saved one is reused only when this matches."""
    return {k: getattr(args, k) for k in ("num_points", "ais_chains", "ais_steps", "ais_leapfrog", "iwae_samples",
                                          "seed")} | {"ais_schedule": "sigmoid", "ais_step_size": "pilot"}


def saved_or_made(path: Path, want: dict, make, progress, label: str) -> dict:
    """The record at ``path`` when it was made with the options ``want``, else ``make()`` written there atomically
    (so a rerun reuses every finished record unchanged). A saved record made with other options is an error."""
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec["eval_config"] != want:
            raise ConfigError(f"{path} was evaluated with {rec['eval_config']}, these options ask for {want}: "
                              "use another --runs folder, or delete its evals/ to evaluate again")
        progress(f"{label}: evaluated before, reused")
        return rec
    rec = {"eval_config": want, **make(), "git": provenance()["git"]}  # a record may outlive its results.json
    atomic_write_json(path, rec)
    return rec


def run_setting(setting: str, args, x_test: torch.Tensor, schedule: list[int], runs: Path, progress) -> dict:
    """Train ``setting`` through ``schedule``, evaluating at each epoch (reusing the evaluations saved before),
    and for a setting of ``--check-settings`` compare AIS with the check's settings at the last epoch."""
    cfg = train_config(setting, args)
    run_dir = runs / setting
    x_pool, pool_rows = training_images(cfg)
    pick = seeded_subset(x_pool.shape[0], args.num_points, stable_seed(args.seed, "train points"))
    x_train = x_pool[pick]
    x_train, x_test = x_train.to(args.device), x_test.to(args.device)

    def make_eval(epoch):
        t = time.time()
        model, guide, log_row = advance(cfg, run_dir, epoch, args.device)
        t_train = time.time() - t
        progress(f"{setting}: trained to epoch {epoch} ({t_train:.0f} s); evaluating")
        t = time.time()
        rec = {"setting": setting, "epoch": epoch, "train_log": log_row,
               **evaluate(model, guide, x_train, x_test, args, stable_seed(args.seed, "eval", setting, epoch))}
        rec["seconds"] = {"train_segment": round(t_train, 1), "evaluation": round(time.time() - t, 1)}
        progress(f"{setting}: epoch {epoch}: test log p̂ {np.mean(rec['test']['ais']):.2f}, "
                 f"train log p̂ {np.mean(rec['train']['ais']):.2f} ({rec['seconds']['evaluation']:.0f} s)")
        return rec

    want = eval_config(args)
    evals = [saved_or_made(run_dir / "evals" / f"epoch_{e:05d}.json", want, lambda e=e: make_eval(e), progress,
                           f"{setting}: epoch {e}") for e in schedule]
    out = {"config": asdict(cfg), "schedule": schedule, "evals": evals, "train_rows": pool_rows[pick].tolist()}
    if args.check_points and setting in args.check_settings:
        last, n = schedule[-1], args.check_points

        def make_check():
            model = advance(cfg, run_dir, last, args.device)[0]
            progress(f"{setting}: AIS check at epoch {last} ({n} + {n} points, {args.check_ais})")
            t = time.time()
            chains, steps, leapfrog = args.check_ais
            set_seed(stable_seed(args.seed, "check", setting, last) % 2 ** 32)
            a = ais(model, model.validate_data(torch.cat([x_train[:n], x_test[:n]])), chains, steps, leapfrog)
            check_finite("AIS log p̂ of the check", a.log_px)
            return {"setting": setting, "epoch": last, "train": {"ais": a.log_px[:n].tolist(), "ais_se": a.se[:n].tolist()},
                    "test": {"ais": a.log_px[n:].tolist(), "ais_se": a.se[n:].tolist()},
                    "seconds": round(time.time() - t, 1)}

        check_want = {"points": n, "ais": list(args.check_ais), "seed": args.seed}
        out["check"] = saved_or_made(run_dir / "evals" / f"check_epoch_{last:05d}.json", check_want, make_check,
                                     progress, f"{setting}: AIS check")
    return out


def summarize(rec: dict) -> dict:
    """Means ± standard errors over points (the data's sampling error) of every estimator and of the gaps
    AIS − IWAE and IWAE − L[q], per subset."""
    out = {"epoch": rec["epoch"]}
    for split in ("train", "test"):
        d = {k: np.asarray(rec[split][k]) for k in ("ais", "iwae", "elbo")}
        for k, v in (*d.items(), ("ais_minus_iwae", d["ais"] - d["iwae"]), ("iwae_minus_elbo", d["iwae"] - d["elbo"])):
            out[f"{split}_{k}"], out[f"{split}_{k}_se"] = mean_se(v)
    return out


def paired_change(a: dict, b: dict, split: str, key: str) -> tuple[float, float]:
    """Mean ± s.e. over the (same) points of ``key`` at evaluation ``b`` minus at ``a`` (``key``: an estimator, or
    ``ais_minus_iwae`` / ``iwae_minus_elbo``)."""
    def values(rec):
        d = {k: np.asarray(rec[split][k]) for k in ("ais", "iwae", "elbo")}
        return {"ais_minus_iwae": d["ais"] - d["iwae"], "iwae_minus_elbo": d["iwae"] - d["elbo"]}.get(key, d.get(key))
    return mean_se(values(b) - values(a))


def findings(results: dict) -> dict:
    r"""The paper's three qualitative findings, tested on these runs (changes are paired over the same points;
    "beyond noise" means more than two standard errors).

    For each small-set run, ``peak`` is the checkpoint where the mean test log p̂ is highest and ``last`` the
    final one: (i) overfitting of the generative model — test log p̂ falls from ``peak`` to ``last`` while
    training log p̂ rises; (ii) encoder overfitting — the test :math:`\mathcal L_\mathrm{AIS} - \mathcal
    L_\mathrm{IW}` grows from ``peak`` (or from the first checkpoint where ``peak`` is the first) to ``last``
    by more than the training one; (iii) for every run, the final IWAE − L[q] on test minus on train
    (independent points: the two standard errors combine)."""
    out = {}
    for setting, res in results.items():
        evals = res["evals"]
        if len(evals) < 2:
            continue
        last = evals[-1]
        f = {}
        if setting.endswith("small"):
            peak = max(evals, key=lambda r: np.mean(r["test"]["ais"]))
            start = peak if peak is not last else evals[0]
            f["peak_epoch"], f["start_epoch"], f["last_epoch"] = peak["epoch"], start["epoch"], last["epoch"]
            f["test_ais_change"] = paired_change(start, last, "test", "ais")
            f["train_ais_change"] = paired_change(start, last, "train", "ais")
            f["generative_overfitting"] = bool(f["test_ais_change"][0] + 2 * f["test_ais_change"][1] < 0 <
                                               f["train_ais_change"][0] - 2 * f["train_ais_change"][1])
            f["test_ais_minus_iwae_change"] = paired_change(start, last, "test", "ais_minus_iwae")
            f["train_ais_minus_iwae_change"] = paired_change(start, last, "train", "ais_minus_iwae")
            (dt, st), (dtr, str_) = f["test_ais_minus_iwae_change"], f["train_ais_minus_iwae_change"]
            f["encoder_overfitting"] = bool(dt - 2 * st > 0 and dt - dtr > 2 * math.hypot(st, str_))
        if "check" in res:
            check, n = res["check"], res["check"]["eval_config"]["points"]
            f["check_epoch"], f["check_ais"], f["check_points"] = check["epoch"], check["eval_config"]["ais"], n
            for split in ("train", "test"):
                f[f"check_minus_ours_{split}"] = mean_se(np.asarray(check[split]["ais"]) -
                                                         np.asarray(last[split]["ais"][:n]))
        s = summarize(last)
        diff = s["test_iwae_minus_elbo"] - s["train_iwae_minus_elbo"]
        f["last_iwae_minus_elbo_test_minus_train"] = (diff, math.hypot(s["test_iwae_minus_elbo_se"],
                                                                       s["train_iwae_minus_elbo_se"]))
        out[setting] = f
    return out


def figure(results: dict):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    colors = {"ais": "tab:blue", "iwae": "tab:orange", "elbo": "tab:green"}
    for setting, res in results.items():
        encoder, size = setting.split("-")
        ax = axes[SIZES.index(size), ENCODERS.index(encoder)]
        rows = [summarize(r) for r in res["evals"]]
        epochs = [r["epoch"] for r in rows]
        for key, label in ESTIMATORS:
            for split, style in (("train", "-"), ("test", "--")):
                ax.plot(epochs, [r[f"{split}_{key}"] for r in rows], style, color=colors[key], marker=".",
                        label=f"{label}, {split}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter()), ax.xaxis.set_minor_formatter(NullFormatter())
        # the first epochs are far below the rest: the axis starts at the lowest value from the second
        # quarter of the schedule on (the table lists every value)
        later = [r[f"{sp}_{k}"] for r in rows[len(rows) // 4:] for sp in ("train", "test") for k, _ in ESTIMATORS]
        top = max(r[f"{sp}_{k}"] for r in rows for sp in ("train", "test") for k, _ in ESTIMATORS)
        margin = 0.05 * (top - min(later)) + 1e-6
        ax.set_ylim(min(later) - margin, top + margin)
        n = res["config"]["num_train"] or 50_000
        ax.set_title(f"{encoder.upper() if encoder == 'ffg' else 'flow'} encoder, {n:,} training images", fontsize=9)
        ax.set_xlabel("epoch"), ax.set_ylabel("nats per image")
        ax.grid(alpha=0.3)
    for ax in axes.flat:
        if not ax.lines:
            ax.set_visible(False)
    handles, labels = next(ax for ax in axes.flat if ax.lines).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Training curves (train solid, test dashed); means over the evaluated points; the y-axes start at the "
                 "lowest value after the first quarter of the checkpoints", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig


def tables(results: dict) -> str:
    md = ""
    for setting, res in results.items():
        n = res["config"]["num_train"] or 50_000
        # a bold line, not a heading: the docs include this file into a page with its own headings
        md += f"\n**{setting}**: {setting.split('-')[0]} encoder, {n:,} training images\n\n"
        rows = []
        for rec in res["evals"]:
            s = summarize(rec)
            rows.append([s["epoch"]] + [f"{s[f'{sp}_{k}']:.2f}" for k in ("ais", "iwae", "elbo") for sp in ("train", "test")]
                        + [f"{s[f'{sp}_{k}']:.2f} ± {s[f'{sp}_{k}_se']:.2f}" for k in ("ais_minus_iwae", "iwae_minus_elbo")
                           for sp in ("train", "test")]
                        + [f"{rec['train_log']['train_objective']:.2f}"])
        md += markdown_table(["epoch", "log p̂ train", "log p̂ test", "IWAE train", "IWAE test", "L[q] train",
                              "L[q] test", "AIS−IW train", "AIS−IW test", "IW−L[q] train", "IW−L[q] test",
                              "training objective"], rows)
    return md


def findings_text(found: dict) -> str:
    def pm(t):
        return f"{t[0]:+.2f} ± {t[1]:.2f}"
    lines = []
    for setting, f in found.items():
        if "peak_epoch" in f:
            lines.append(
                f"- {setting}: test log p̂ peaks at epoch {f['peak_epoch']}; from epoch {f['start_epoch']} to "
                f"{f['last_epoch']} test log p̂ changes by {pm(f['test_ais_change'])}, train log p̂ by "
                f"{pm(f['train_ais_change'])} → (i) generative-model overfitting "
                f"{'HOLDS' if f['generative_overfitting'] else 'does not hold'}; AIS − IWAE changes by "
                f"{pm(f['test_ais_minus_iwae_change'])} on test and {pm(f['train_ais_minus_iwae_change'])} on train → "
                f"(ii) encoder overfitting {'HOLDS' if f['encoder_overfitting'] else 'does not hold'}.")
        lines.append(f"- {setting}: (iii) final IWAE − L[q], test minus train: "
                     f"{pm(f['last_iwae_minus_elbo_test_minus_train'])}.")
        if "check_epoch" in f:
            chains, steps, leapfrog = f["check_ais"]
            lines.append(f"- {setting}: AIS check at epoch {f['check_epoch']}: AIS {chains} × {steps} × {leapfrog} "
                         f"minus ours on the first {f['check_points']} points: train {pm(f['check_minus_ours_train'])}, "
                         f"test {pm(f['check_minus_ours_test'])}.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = build_parser()
    args = check_args(parser, argv)
    out, progress = Path(args.out), Progress(args.quiet)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    for s in settings:
        if s not in SETTINGS:
            parser.error(f"--settings entry {s!r} is not allowed: choose from {', '.join(SETTINGS)}")
    schedules = {"full": parse_schedule(parser, args.checkpoints, args.epochs, "--checkpoints", "--epochs",
                                        args.num_checkpoints),
                 "small": parse_schedule(parser, args.small_checkpoints, args.small_epochs, "--small-checkpoints",
                                         "--small-epochs", args.num_checkpoints)}
    args.check_settings = ([s for s in settings if s.endswith("-small")] if args.check_settings is None else
                           [s.strip() for s in args.check_settings.split(",") if s.strip()])
    for s in args.check_settings if args.check_points else ():
        if s not in settings:
            parser.error(f"--check-settings entry {s!r} is not allowed: it is not among --settings {args.settings}")
    try:
        args.check_ais = tuple(int(v) for v in args.check_ais.split(","))
    except ValueError:
        args.check_ais = ()
    if len(args.check_ais) != 3 or min(args.check_ais) < 1:
        parser.error("--check-ais is not allowed as given: expected three positive integers CHAINS,STEPS,LEAPFROG, "
                     "e.g. 100,500,10")
    if not 0 <= args.check_points <= args.num_points:
        parser.error(f"--check-points={args.check_points} is not allowed: it must be in 0..--num-points "
                     f"({args.num_points})")
    if args.small_size < args.num_points:
        parser.error(f"--num-points={args.num_points} is not allowed: the small training set has only "
                     f"--small-size={args.small_size} images to draw the training points from")
    profile = args.profile
    runs = Path(args.runs or f"runs/{NAME}_{profile}")
    x_all = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
    if args.num_points > x_all.shape[0]:
        parser.error(f"--num-points={args.num_points} is not allowed: the test split has {x_all.shape[0]} images")
    test_rows = seeded_subset(x_all.shape[0], args.num_points, stable_seed(args.seed, "test points"))
    x_test = x_all[test_rows]
    results = {}
    for s in settings:
        results[s] = run_setting(s, args, x_test, schedules[s.split("-")[1]], runs, progress)
    found = findings(results)
    save_figure(figure(results), out / "fig3.png")
    payload = {"profile": profile, "test_rows": test_rows.tolist(),
               "settings": {s: {"config": r["config"], "schedule": r["schedule"], "train_rows": r["train_rows"],
                                                   "summary": [summarize(e) for e in r["evals"]],
                                                   "evaluation_seconds": [e["seconds"] for e in r["evals"]],
                                                   "check": r.get("check")}
                                               for s, r in results.items()},
               "findings": found, "evaluations": f"{runs}/SETTING/evals/epoch_NNNNN.json (per point)"}
    md = (f"Profile {profile}. Bernoulli VAE, latent 50, decoder 50-200-200-784, encoder 784-200-200 (ELU), ELBO with "
          f"entropy annealing over {args.anneal_epochs} epochs, batch 100, lr 1e-3. Evaluated at each listed epoch on "
          f"{args.num_points} seeded training images (of the run's own training set) and {args.num_points} seeded "
          f"test images: log p̂ by AIS ({args.ais_chains} chains × {args.ais_steps} steps × {args.ais_leapfrog} "
          f"leapfrog, pilot-tuned frozen step sizes), IWAE and L[q] from {args.iwae_samples} samples of the encoder. "
          "Means over points in nats; AIS−IW and IW−L[q] with their standard errors over points.\n")
    md += tables(results)
    md += "\nFindings (paired changes over the same points, mean ± s.e.; 'holds' means beyond 2 s.e.):\n\n"
    md += findings_text(found) + "\nFigure: fig3.png\n"
    write_results(out, NAME, args, payload, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return payload


if __name__ == "__main__":
    run_main(main, None)
