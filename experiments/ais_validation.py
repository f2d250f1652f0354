"""AIS and BDMC against exact answers: linear-Gaussian models, where log p(x) is known in closed form.

For two models — 64 observed / 6 latent dimensions with a strongly correlated posterior (FFG
approximation gap 3.1 nats) and 20 observed / 10 latent dimensions (FFG gap 1.0) — and several seeds
of simulated data, it runs AIS at the paper's settings (100 chains × 500 steps × 10 leapfrog) in
three variants and reports, per variant, the error of log p̂ against the exact log p(x):

* ``pilot / sigmoid`` — the default: step sizes tuned on discarded pilot chains, then frozen;
* ``pilot / linear`` — the same on the linear β schedule of Cremer et al.'s code;
* ``online-biased / sigmoid`` — per-chain adaptation during the scored run (the old behaviour).

Reported: the mean and standard error of log p̂ − log p(x) over all points and seeds (an unbiased
estimator of p(x) gives a log-estimate at or below 0 on average), its root mean square (precision),
and the mean of the chains' w / p(x) (exactly 1 in expectation for fixed kernels). For the default
variant it also reports the paper's log p̂ = max(IWAE, AIS) per point, with IWAE-5000 from the fitted
per-datum FFG, and one BDMC run per model and seed (mean and max |upper − lower|, crossings, and
how often [lower, upper] contains the exact value)::

    python -m experiments.ais_validation            # about 15 minutes on one core
    python -m experiments.ais_validation --quick    # a smoke run with small settings

Each (model, seed, variant) result is kept in ``OUT/parts/`` as it finishes, so an interrupted run
resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from pyro_vaegap.estimators.ais import ais, bdmc
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.estimators.local import optimize_local
from pyro_vaegap.models import LinearGaussian
from pyro_vaegap.estimators.traces import simulate
from pyro_vaegap.utils import atomic_write_json, module_device, provenance, set_seed

from pyro_vaegap.harness import (Profiles, Progress, Setting, make_parser, markdown_table, parse_args, run_main,
                                 write_results)

#: name -> (data_dim, latent_dim, scale, shared, psi) of LinearGaussian.random (seed 0)
MODELS = {"lg64x6": (64, 6, 0.6, 1.5, 1.0), "lg20x10": (20, 10, 0.5, 0.0, 0.5)}
VARIANTS = {"pilot / sigmoid": ("pilot", "sigmoid"), "pilot / linear": ("pilot", "linear"),
            "online-biased / sigmoid": ("online-biased", "sigmoid")}


#: cpu (default): the committed results' settings; quick: a smoke run (1 seed, 8 points, 20 chains × 50 steps × 3)
PROFILES = Profiles(
    profiles={"cpu": {"seeds": 3, "points": 32, "chains": 100, "steps": 500, "leapfrog": 10},
              "quick": {"seeds": 1, "points": 8, "chains": 20, "steps": 50, "leapfrog": 3}},
    settings={"seeds": Setting(int, "data sets (seeds) per model"),
              "points": Setting(int, "simulated datapoints per data set"),
              "chains": Setting(int, "AIS chains per datapoint"),
              "steps": Setting(int, "AIS steps (T)"),
              "leapfrog": Setting(int, "leapfrog steps per HMC transition")},
    default="cpu", help={"cpu": "the committed results' settings"})


def build_parser():
    return make_parser("ais_validation", __doc__.split("\n")[0], profiles=PROFILES)


def model_of(name) -> LinearGaussian:
    D, d, scale, shared, psi = MODELS[name]
    return LinearGaussian.random(D, d, scale=scale, shared=shared, psi=psi, seed=0)


def data_of(model, seed, n):
    set_seed(1000 + seed)
    x, _ = simulate(model, n, torch.zeros(1, model.data_dim, dtype=torch.float64, device=module_device(model)))
    return x


def run_part(path: Path, fn):
    """``fn()``'s result, computed once and kept in ``path`` with the git state of the process that computed
    it (a rerun resumes from the parts saved; results.json lists every commit its parts came from)."""
    if path.exists():
        return json.loads(path.read_text())
    out = {**fn(), "git": provenance()["git"]}
    atomic_write_json(path, out)
    return out


def ais_part(model, x, mode, schedule, seed, kw):
    def fn():
        exact = model.exact_log_marginal(x)
        set_seed(seed)
        t = time.time()
        a = ais(model, x, schedule=schedule, step_size=mode, **kw)
        return {"err": (a.log_px - exact).tolist(), "ratio": (a.log_weights - exact).exp().mean(0).tolist(),
                "ratio_sq": (2 * (a.log_weights - exact)).exp().mean(0).tolist(), "K": a.log_weights.shape[0],
                "accept": float(a.accept_rate.mean()), "seconds": time.time() - t, "ais": a.log_px.tolist()}
    return fn


def iwae_part(model, x, seed):
    def fn():
        set_seed(seed)
        g = LocalFFG(model, x.shape[0]).to(x)
        optimize_local(model, g, x, num_samples=100, lr=1e-2, max_steps=3000, check_every=100, patience=5)
        r = importance_sample(model, g, x, 5000, psis=False)
        return {"iwae": r.iwae.tolist()}
    return fn


def bdmc_part(model, n, seed, kw):
    def fn():
        set_seed(seed)
        res = bdmc(model, n, torch.zeros(1, model.data_dim, dtype=torch.float64, device=module_device(model)), **kw)
        exact = model.exact_log_marginal(res.x)
        lo, hi = res.lower.log_px, res.upper.log_px
        return {**res.summary(), "lower_minus_exact": (lo - exact).tolist(), "upper_minus_exact": (hi - exact).tolist(),
                "bracketed": int(((lo <= exact) & (exact <= hi)).sum())}
    return fn


def mean_se(values):
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def main(argv=None):
    args = parse_args(build_parser(), argv, positive=("seeds", "points", "chains", "steps", "leapfrog"),
                      profiles=PROFILES)
    out = Path(args.out)
    parts = out / "parts"
    progress = Progress(args.quiet)
    kw = dict(num_chains=args.chains, num_steps=args.steps, leapfrog_steps=args.leapfrog)
    tag = f"K{args.chains}_T{args.steps}_L{args.leapfrog}_N{args.points}"
    results, rows, bdmc_rows, max_rows = {}, [], [], []
    for name in MODELS:
        model = model_of(name).to(args.device)
        res_m = {"ffg_gap": float(model.exact_ffg_gap()), "variants": {}}
        for label, (mode, schedule) in VARIANTS.items():
            runs = []
            for s in range(args.seeds):
                x = data_of(model, args.seed + s, args.points)
                progress(f"{name}: AIS {label}, data set {s + 1}/{args.seeds}")
                runs.append(run_part(parts / f"{name}_{mode}_{schedule}_{tag}_s{args.seed + s}.json",
                                     ais_part(model, x, mode, schedule, args.seed + s, kw)))
            err = [e for r in runs for e in r["err"]]
            ratio = [w for r in runs for w in r["ratio"]]
            # per-point mean ratio of K chains; its spread across points gives the standard error
            m, se = mean_se(err)
            rm, rse = mean_se(ratio)
            res_m["variants"][label] = {"mean_err": m, "se_err": se, "rms_err": math.sqrt(sum(e * e for e in err) / len(err)),
                                        "mean_ratio": rm, "se_ratio": rse, "accept": sum(r["accept"] for r in runs) / len(runs),
                                        "seconds": sum(r["seconds"] for r in runs), "runs": runs}
            rows.append([name, label, f"{m:+.4f} ± {se:.4f}", res_m["variants"][label]["rms_err"],
                         f"{rm:.3f} ± {rse:.3f}", res_m["variants"][label]["accept"],
                         f"{res_m['variants'][label]['seconds']:.0f}"])
        # the paper's per-point max against AIS alone, default variant
        default = res_m["variants"]["pilot / sigmoid"]["runs"]
        max_err, iwae_err = [], []
        for s, r in enumerate(default):
            x = data_of(model, args.seed + s, args.points)
            progress(f"{name}: IWAE-5000 of the fitted FFG, data set {s + 1}/{args.seeds}")
            iw = run_part(parts / f"{name}_iwae_N{args.points}_s{args.seed + s}.json", iwae_part(model, x, args.seed + s))
            exact = model.exact_log_marginal(x)
            iwae = torch.tensor(iw["iwae"], dtype=torch.float64)
            max_err += (torch.maximum(iwae, torch.tensor(r["ais"], dtype=torch.float64)) - exact).tolist()
            iwae_err += (iwae - exact).tolist()
        res_m["max_rule"] = {"max_mean_err": mean_se(max_err), "iwae_mean_err": mean_se(iwae_err)}
        max_rows.append([name, "{:+.4f} ± {:.4f}".format(*mean_se(iwae_err)),
                         "{:+.4f} ± {:.4f}".format(res_m["variants"]["pilot / sigmoid"]["mean_err"],
                                                   res_m["variants"]["pilot / sigmoid"]["se_err"]),
                         "{:+.4f} ± {:.4f}".format(*mean_se(max_err))])
        bd = []
        for s in range(args.seeds):
            progress(f"{name}: BDMC, data set {s + 1}/{args.seeds}")
            bd.append(run_part(parts / f"{name}_bdmc_{tag}_s{args.seed + s}.json",
                               bdmc_part(model, args.points, 2000 + args.seed + s, kw)))
        n = sum(b["num_points"] for b in bd)
        res_m["bdmc"] = {"runs": bd, "num_points": n,
                         "mean_abs_gap": sum(b["mean_abs_gap"] * b["num_points"] for b in bd) / n,
                         "max_abs_gap": max(b["max_abs_gap"] for b in bd),
                         "crossings": sum(b["crossings"] for b in bd),
                         "crossings_beyond_4se": sum(b["crossings_beyond_4se"] for b in bd),
                         "bracketed": sum(b["bracketed"] for b in bd)}
        b = res_m["bdmc"]
        bdmc_rows.append([name, n, b["mean_abs_gap"], b["max_abs_gap"], b["crossings"], b["crossings_beyond_4se"],
                          f"{b['bracketed']}/{n}"])
        results[name] = res_m
    md = (f"AIS {args.chains} chains × {args.steps} steps × {args.leapfrog} leapfrog; {args.seeds} data sets × "
          f"{args.points} simulated points per model. FFG approximation gaps: "
          + ", ".join(f"{k} {v['ffg_gap']:.2f} nats" for k, v in results.items()) + ".\n\n"
          "log p̂ − log p(x) (AIS; mean ± s.e. over points, RMS), and the chains' mean w / p(x):\n\n"
          + markdown_table(["model", "step sizes / schedule", "mean error", "RMS error", "mean w/p", "accept", "seconds"], rows)
          + "\nlog p̂ − log p(x) of IWAE-5000 (fitted per-datum FFG), of AIS (pilot / sigmoid), and of the paper's "
            "per-point max of the two:\n\n"
          + markdown_table(["model", "IWAE", "AIS", "max(IWAE, AIS)"], max_rows)
          + "\nBDMC (pilot / sigmoid, one frozen schedule for both directions):\n\n"
          + markdown_table(["model", "points", "mean abs(upper − lower)", "max abs(upper − lower)", "crossings",
                            "crossings beyond 4 s.e.", "exact inside [lower, upper]"], bdmc_rows))
    # a resumed run may hold parts computed by earlier code: say which
    commits = {json.dumps(json.loads(f.read_text()).get("git"), sort_keys=True) for f in parts.glob("*.json")}
    results["parts_git"] = [json.loads(c) for c in sorted(commits)]
    write_results(out, "ais_validation", args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return results


if __name__ == "__main__":
    run_main(main, None)
