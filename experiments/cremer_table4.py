r"""Cremer, Li & Duvenaud (2018), Table 4: new encoders on a fixed decoder — does a flow help amortization?

The paper fixes the decoder of a VAE trained with an FFG encoder and trains new, smaller encoders on it:
an FFG encoder and an auxiliary-flow encoder whose base is an FFG encoder of the same size. The flow
encoder's amortization gap is the smaller one: the flow's extra parameters help the encoder *generalize
inference* to new datapoints, not only make its family richer. This command repeats that at the CPU
profile of the Table 5 / Tables 3, 6 and 10 runs (``docs/experiments.rst``)::

    python -m experiments.cremer_table4 --data-dir ../shared/data --threads 1 --out results/cremer_table4

1. **The base model**: the 784-200-200-50 FFG VAE of ``experiments.cremer_gaps`` (same options and
   defaults, here the CPU profile: 20 epochs, entropy annealing over 5), trained or resumed in
   ``OUT/base/run`` (``--run-dir``), or the finished run ``--base-run`` (not trained further).
2. **New encoders on its frozen decoder** (:attr:`pyro_vaegap.runs.TrainConfig.decoder_from`) with
   ``--small-layers`` hidden layers (1): ``ffg`` of width ``--small-hidden`` (100); ``flow``, the same FFG
   base plus the auxiliary flow's networks of width ``--encoder-flow-hidden`` (100); and, a control the
   paper does not have, ``ffg_wide``, an FFG encoder widened to at least the flow encoder's number of
   parameters (so a smaller gap of the flow is not just more parameters). Each is trained
   ``--encoder-epochs`` epochs with the plain ELBO in ``OUT/NAME/run``. No entropy annealing: it exists to keep a
   decoder that is still learning from making its posteriors easy for the encoder early on; with the
   decoder fixed there is nothing for it to protect, and a tempered objective would only delay the
   encoder's fit to the ELBO it is measured by.
3. **The gap report** of each encoder — the original one and the two new ones —
   (:func:`pyro_vaegap.harness.run_gaps`, the evaluation options of ``experiments.cremer_gaps``) on the same
   seeded test points, in ``OUT/base/gaps.{json,md}`` and ``OUT/NAME/gaps.{json,md}``. :math:`\log\hat p(x)` (AIS) and
   :math:`\mathcal L[q^*]` (optimized from the prior) belong to the decoder, so all three reports share
   them: each report computes them afresh from the same seeds, and the table says how far they agree.
4. ``OUT/results.json`` and ``OUT/results.md``: per encoder its parameters, :math:`\mathcal L[q]` and
   :math:`\mathcal L[q^*] - \mathcal L[q]` for :math:`q^*_{\mathrm{FFG}}` and :math:`q^*_{\mathrm{flow}}` — the
   amortization gap for the encoder's own family, a cross-family difference (labelled so) for the other; the paired
   difference flow − FFG encoder per test point; and whether the paper's finding holds. ``--render`` regenerates
   ``results.md`` from ``results.json`` (nothing computed).

Everything resumes: finished runs and reports are reused (a report made with other settings is an error;
``--overwrite`` recomputes the reports), an interrupted training or evaluation continues where it stopped.
The paper's Table 4 numbers are not available offline, so none are shown. ``--quick`` is a smoke run of the
whole pipeline (2 epochs on 2,000 images for every training, a tiny evaluation) whose numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.report.render import GapReport, mean_se
from pyro_vaegap.runs import MODEL_FIELDS, TrainConfig, load_run, read_checkpoint
from pyro_vaegap.training import build_guide, frozen_decoder
from pyro_vaegap.utils import ConfigError, check_folder, check_positive_int, resolve_device, set_threads

from pyro_vaegap.harness import (Parser, Profiles, Progress, Setting, markdown_table, rewrite_page, run_command, run_gaps, train_run,
                                 write_results)
from pyro_vaegap.studies import cremer

NAME = "cremer_table4"
#: the new encoders, in the table's order: name -> family. ``ffg_wide`` is a control the paper does not have: an FFG
#: encoder as large as the flow encoder (its hidden width chosen so), which tells more parameters from a flow
ENCODERS = {"ffg": "ffg", "flow": "flow", "ffg_wide": "ffg"}
#: the new encoders' training in every profile of :mod:`pyro_vaegap.studies.cremer` (chosen by its --profile and
#: --quick); quick: every training 2 epochs on 2,000 images (as cremer_gaps --quick), flow networks of width 20
_ENCODER = {"encoder_epochs": 20, "encoder_num_train": None, "encoder_flow_hidden": 100}
QUICK = {"encoder_epochs": 2, "encoder_num_train": 2000, "encoder_flow_hidden": 20}
ENCODER_PROFILES = Profiles(
    profiles={name: {**_ENCODER, **(QUICK if name == "quick" else {})} for name in cremer.PROFILES.profiles},
    settings={"encoder_epochs": Setting(int, "epochs of each new encoder"),
              "encoder_num_train": Setting(int, "training images of each new encoder (None: all)"),
              "encoder_flow_hidden": Setting(int, "width of the flow encoder's networks: q(v0|z0), the reverse model "
                                                  "and 2 coupling steps")})


def build_parser():
    """``experiments.cremer_gaps``' options (:mod:`pyro_vaegap.studies.cremer`), the CPU profile by default, and this command's own."""
    p = Parser(prog=f"python -m experiments.{NAME}", description=__doc__.split("\n")[0], error_name=NAME,
               parents=[cremer.build_parser(name=NAME, default_profile="cpu")],
               conflict_handler="resolve",  # its --out and --run-dir replaced
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=f"results/{NAME}", help="results folder: results.json, results.md, base/ and a "
                   "folder per new encoder, each with its training run (run/) and gap report (gaps.json, gaps.md)")
    p.add_argument("--run-dir", help="the base model's training run folder, resumed if present (default OUT/base/run)")
    p.add_argument("--base-run", help="take the decoder and the original encoder from this finished training run "
                                      "instead of training one (the training options above then do not apply)")
    p.add_argument("--small-hidden", type=int, default=100, help="width of the new encoders' hidden layers (ffg_wide: "
                                                                     "widened to the flow encoder's parameters)")
    p.add_argument("--small-layers", type=int, default=1, help="hidden layers of the new encoders")
    ENCODER_PROFILES.add_to(p, choose=False)
    p.add_argument("--encoders", default=",".join(ENCODERS),
                   help="comma-separated new encoders: ffg, flow, ffg_wide (an FFG with as many parameters as the flow "
                        "encoder: a control)")
    p.add_argument("--render", action="store_true",
                   help="only regenerate OUT/results.md from OUT/results.json by the current code (computes nothing)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.render:
        return run_command(NAME, lambda a: render(a.out), args, debug=args.debug)
    return run_command(NAME, run, args, debug=args.debug,
                       oom_hint="--num-points, --ais-chains or --iwae-samples (finished parts are kept: the command "
                                "resumes)")


def encoder_config(base: TrainConfig, family: str, decoder_from: Path, args, hidden: int | None = None) -> TrainConfig:
    """A new ``family`` encoder of ``--small-layers`` hidden layers of width ``hidden`` (default ``--small-hidden``),
    trained with the ELBO on the frozen decoder of ``decoder_from`` (a run of ``base``'s model)."""
    options = {"hidden": hidden or args.small_hidden, "layers": args.small_layers}
    if family == "flow":
        options["flow_hidden"] = args.encoder_flow_hidden
    return TrainConfig(**{k: getattr(base, k) for k in MODEL_FIELDS}, data_dir=args.data_dir or base.data_dir,
                       num_train=args.encoder_num_train, guide=family, guide_options=options,
                       objective="elbo", anneal="none",  # the decoder is fixed: nothing to anneal for (module doc)
                       epochs=args.encoder_epochs, batch_size=base.batch_size,
                       lr=args.lr, seed=args.seed, decoder_from=str(decoder_from))


def num_parameters(cfg: TrainConfig, model) -> int:
    """Parameters of the encoder ``cfg`` builds for ``model``."""
    return sum(p.numel() for p in build_guide(cfg, model).parameters())


def encoder_configs(base: TrainConfig, decoder_from: Path, model, args) -> dict:
    """The configs of the new encoders named by ``--encoders``; ``ffg_wide``'s hidden width is the smallest whose
    encoder has at least as many parameters as the flow encoder."""
    configs = {name: encoder_config(base, ENCODERS[name], decoder_from, args) for name in args.encoders}
    if "ffg_wide" in configs:
        target = num_parameters(encoder_config(base, "flow", decoder_from, args), model)
        lo, hi = args.small_hidden, args.small_hidden  # bisection on the width (parameters grow with it)
        while num_parameters(encoder_config(base, "ffg", decoder_from, args, hi), model) < target:
            lo, hi = hi, 2 * hi
        while lo < hi:
            mid = (lo + hi) // 2
            if num_parameters(encoder_config(base, "ffg", decoder_from, args, mid), model) < target:
                lo = mid + 1
            else:
                hi = mid
        configs["ffg_wide"] = encoder_config(base, "ffg", decoder_from, args, hi)
    return configs


def _check_options(args) -> None:
    args.encoders = tuple(e for e in args.encoders.split(",") if e)
    unknown = [e for e in args.encoders if e not in ENCODERS]
    if unknown or not args.encoders or len(set(args.encoders)) < len(args.encoders):
        raise ConfigError(f"--encoders {','.join(args.encoders)!r} is not allowed: expected distinct names among "
                          f"{', '.join(ENCODERS)}")
    for name in ("encoder_epochs", "small_hidden", "encoder_flow_hidden", "num_points"):
        check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    check_positive_int("--small-layers", args.small_layers, minimum=0)
    if args.encoder_num_train is not None:
        check_positive_int("--encoder-num-train", args.encoder_num_train)
    if args.base_run is not None and args.run_dir is not None:
        raise ConfigError(f"--base-run {args.base_run!r} and --run-dir {args.run_dir!r} exclude each other: "
                          "--base-run takes a finished model, --run-dir trains one")


def base_model(args, tcfg: TrainConfig, out: Path, device):
    """``(model, guide, config, run folder)`` of the base model: ``--base-run``, or trained (resumed) by ``tcfg``."""
    if args.base_run is None:
        run_dir = Path(args.run_dir or out / "base" / "run")
        model, guide, _ = train_run(tcfg, run_dir, Progress(args.quiet), device, download=args.download)
        return model, guide, tcfg, run_dir.resolve()
    run_dir = Path(args.base_run)
    try:
        read_checkpoint(run_dir)  # a missing or damaged run, named as the option that gave it
    except ConfigError as e:
        raise ConfigError(f"--base-run: {e}") from None
    model, guide, cfg = load_run(run_dir, device)
    if cfg.dataset != "binarized_mnist":
        raise ConfigError(f"--base-run {str(run_dir)!r} is a model of dataset {cfg.dataset!r}; Table 4 evaluates on "
                          "binarized_mnist's test split: give a run trained on binarized_mnist")
    return model, guide, cfg, run_dir.resolve()


def _json_normal(d: dict) -> dict:
    return json.loads(json.dumps(d))  # tuples become lists, as a report's JSON holds them


def report(model, guide, tcfg: TrainConfig, gcfg, x, stem: Path, overwrite: bool, workers: int = 1) -> GapReport:
    """The gap report of ``guide`` at ``stem`` (``.json``, ``.md``): reused when it is there and was made with
    these settings, else computed (and checkpointed) by :func:`~pyro_vaegap.harness.run_gaps`."""
    saved = stem.with_suffix(".json")
    if saved.exists() and not overwrite:
        rep = GapReport.load(saved)
        same = {"evaluation config": rep.config == _json_normal(gcfg.to_dict()),
                "training config": rep.meta.get("train_config") == _json_normal(tcfg.to_dict()),
                "number of test points": rep.meta.get("num_points") == x.shape[0]}
        if not all(same.values()):
            raise ConfigError(f"{saved} was made with another {' and '.join(k for k, v in same.items() if not v)}: "
                              "pass --overwrite to recompute it, or choose another --out")
        print(f"reusing the finished report {saved}")
        return rep
    check_folder(stem.parent, "output folder")
    run_gaps(model, guide, tcfg, gcfg, x, stem, overwrite=overwrite, workers=workers)
    return GapReport.load(saved)  # exactly what was saved


def _mean_se(v) -> dict:
    m, se = mean_se(np.asarray(v, dtype=float))
    return {"mean": m, "se": se if len(v) > 1 else None}  # JSON: no NaN


def _pm(d: dict) -> str:
    return f"{d['mean']:.2f} ± {d['se']:.2f}" if d["se"] is not None else f"{d['mean']:.2f}"


def summarize(reports: dict, guides: dict, runs: dict, families) -> dict:
    """The numbers of Table 4 from the reports (name → :class:`~pyro_vaegap.report.compute.GapReport`) of the encoders."""
    per = {name: rep.per_point for name, rep in reports.items()}
    first = next(iter(per.values()))
    shared = {k: float(max(np.max(np.abs(p[k] - first[k])) for p in per.values()))
              for k in ["log_px", *(f"local:{f}" for f in families)]}
    encoders = {}
    for name, rep in reports.items():
        s = {k: {"mean": m, "se": se} for k, (m, se) in rep.summary().items()}
        params = sum(p.numel() for p in guides[name].parameters())
        base = getattr(guides[name], "base", None)
        encoders[name] = {
            "family": rep.family, "parameters": params,
            "base_parameters": sum(p.numel() for p in base.parameters()) if base is not None else params,
            "elbo": s["amortized"], **{f"amortization:{f}": s[f"amortization:{f}"] for f in families},
            "psis_khat": s["psis_khat"], "run_dir": str(runs[name]), "gap_report": f"{name}/gaps.json",
            "gap_seconds": rep.meta.get("seconds")}
    paired = {}
    for a, b in (("flow", "ffg"), ("flow", "ffg_wide"), ("ffg", "original")):
        if a in per and b in per:
            paired[f"{a} - {b}"] = {"elbo": _mean_se(per[a]["amortized"] - per[b]["amortized"]),
                                    **{f"amortization:{f}": _mean_se(per[a][f"amortization:{f}"]
                                                                      - per[b][f"amortization:{f}"])
                                       for f in families}}
    decoder = {k: _mean_se(first[k]) for k in ["log_px", *(f"local:{f}" for f in families)]}
    return {"decoder": decoder, "shared_max_abs_difference": shared, "encoders": encoders, "paired": paired,
            "finding": finding(paired.get("flow - ffg"), families),
            "control": finding(paired.get("flow - ffg_wide"), families)}


def finding(diff: dict | None, families) -> dict:
    """Whether the flow encoder's amortization gap is smaller than the FFG encoder's, per q* family: ``holds``
    when the paired difference is below zero by more than 2 standard errors, ``reversed`` when above by more,
    else ``not resolved``."""
    if diff is None:
        return {}
    out = {}
    for f in families:
        d = diff[f"amortization:{f}"]
        z = d["mean"] / d["se"] if d["se"] else float("nan")
        out[f] = {"verdict": "holds" if z < -2 else "reversed" if z > 2 else "not resolved", "z": z}
    return out


def _column(f: str) -> str:
    return f"L[q*_{f.upper() if f == 'ffg' else f}] − L[q]"


def markdown(res: dict) -> str:
    """The page of the saved results ``res`` (``results.json``'s ``results``): every number is in them, so
    ``--render`` regenerates it by current code."""
    families, n = res["gap_config"]["families"], res["num_points"]
    fam = [f.upper() if f == "ffg" else f for f in families]
    rows, crossed = [], False
    for name, e in res["encoders"].items():
        size = (f"{e['parameters']:,}" if e["base_parameters"] == e["parameters"]
                else f"{e['parameters']:,} ({e['base_parameters']:,} base)")
        cells = []
        for f in families:  # another family's optimum against this encoder's q: labelled cross-family (†)
            cross = f != e["family"]
            crossed |= cross
            cells.append(_pm(e[f"amortization:{f}"]) + (" †" if cross else ""))
        rows.append([name, e["family"], e["hidden"], size, _pm(e["elbo"]), *cells])
    md = (f"Nats, mean ± standard error over {n} seeded binarized-MNIST test points. One decoder (frozen after "
          "training); 'original' is the encoder it was trained with, the others new encoders trained on it with that "
          "decoder frozen ('flow': an FFG base of the FFG encoder's size plus the flow's networks"
          + ("; 'ffg_wide': an FFG widened to the flow encoder's number of parameters" if "ffg_wide" in res["encoders"]
             else "") + "). The paper's Table 4 numbers are not available offline, so none are shown.\n\n")
    md += markdown_table(["encoder", "family", "hidden layers", "parameters", "L[q]", *map(_column, families)], rows)
    dec = res["decoder"]
    if crossed:
        differences = ", ".join(
            f"L[q*_{F}] − L[q*_{G}] = {dec[f'local:{f}']['mean'] - dec[f'local:{g}']['mean']:+.2f}"
            for (f, F), (g, G) in zip(zip(families[1:], fam[1:]), [(families[0], fam[0])] * (len(families) - 1)))
        md += ("\nIn the encoder's own family's column, L[q*] − L[q] is that encoder's amortization gap. †: "
               "cross-family — another family's optimum against the encoder's q: not an amortization gap (it adds "
               "the difference between the two families' optima, on these points on average " + differences
               + ", and need not be ≥ 0).\n")
    md += ("\nThe decoder's (shared by every report): log p̂ (AIS) " + _pm(dec["log_px"]) + ", "
           + ", ".join(f"L[q*_{F}] {_pm(dec[f'local:{f}'])}" for f, F in zip(families, fam))
           + "; the largest difference of a point's value between the reports: "
           + ", ".join(f"{k} {v:.2g}" for k, v in res["shared_max_abs_difference"].items()) + ".\n\n")
    prow = [[k, _pm(v["elbo"]), *(_pm(v[f"amortization:{f}"]) for f in families)] for k, v in res["paired"].items()]
    md += ("Paired differences per test point (mean ± s.e. over the points); the optima belong to the one decoder, so "
           "each Δ (L[q*] − L[q]) is −Δ L[q]:\n\n")
    md += markdown_table(["encoders", "Δ L[q]", *(f"Δ ({_column(f)})" for f in families)], prow)

    def verdicts(v):
        return "; ".join(f"with q*_{F}: **{v[f]['verdict']}** (paired difference {v[f]['z']:+.1f} s.e.)"
                         for f, F in zip(families, fam))

    if res["finding"]:
        md += ("\nThe paper's finding — the flow encoder has a smaller amortization gap than the FFG encoder of its "
               "base's size — read as the paired difference flow − ffg of L[q*] − L[q] for each q* family (for one "
               "of the two encoders that family is not its own: a cross-family difference; both read −Δ L[q]): "
               + verdicts(res["finding"]) + " ('holds': below zero by more than 2 s.e.; 'reversed': above by more; "
               "else 'not resolved').\n")
    if res["control"]:
        md += ("\nControl — the flow encoder against an FFG encoder with as many parameters (flow − ffg_wide), read "
               "the same way — " + verdicts(res["control"]) + ".\n")
    return md


def render(out: Path) -> None:
    """``--render``: regenerate ``OUT/results.md`` from ``OUT/results.json`` by current code (nothing computed)."""
    path = Path(out) / "results.json"
    if not path.is_file():
        raise ConfigError(f"--render: {str(path)!r} does not exist (give the --out of a finished run)")
    print(f"wrote {rewrite_page(out, markdown, reused)}")


def reused(payload: dict) -> str | None:
    """What a saved run took from earlier runs: its gap reports, when their compute time exceeds the command's."""
    seconds = sum(sum((e.get("gap_seconds") or {}).values()) for e in payload["results"]["encoders"].values())
    if seconds <= (payload.get("wall_seconds") or 0):
        return None
    return ("the trainings and gap reports finished earlier in this folder, whose compute times results.json records: "
            f"{seconds / 3600:.1f} h of gap evaluation")


def run(args):
    """Train (or reuse) the base model and the two new encoders on its frozen decoder, report, summarize."""
    t0 = time.time()
    set_threads(args.threads)
    device = resolve_device(args.device)  # before anything is loaded
    cremer.apply_profile(args)
    ENCODER_PROFILES.apply(args)
    _check_options(args)
    tcfg, gcfg = cremer.configs(args)
    gcfg.check_families()
    workers = cremer.evaluation_workers(args, device)
    out = check_folder(Path(args.out), "results folder")
    x = load_dataset("binarized_mnist", "test", data_dir=args.data_dir, download=args.download)
    if args.num_points > x.shape[0]:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{x.shape[0]}")
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)].to(device)
    model, guide, base_cfg, base_dir = base_model(args, tcfg, out, device)
    configs = encoder_configs(base_cfg, base_dir, model, args)
    for cfg in configs.values():
        frozen_decoder(cfg)  # the base run is finished and its model suits the encoders: say so before any work
    guides, runs, reports = {"original": guide}, {"original": base_dir}, {}
    for name, cfg in configs.items():
        run_dir = out / name / "run"
        enc_model, enc_guide, _ = train_run(cfg, run_dir, Progress(args.quiet), device)
        guides[name], runs[name] = enc_guide, run_dir
        reports[name] = report(enc_model, enc_guide, cfg, gcfg, x, out / name / "gaps", args.overwrite, workers)
    # the original encoder's report last: the new encoders' need only their own runs (and may run beside it)
    reports = {"original": report(model, guide, base_cfg, gcfg, x, out / "base" / "gaps", args.overwrite, workers),
               **reports}
    results = summarize(reports, guides, runs, gcfg.families)
    for name, cfg in {"original": base_cfg, **configs}.items():  # the hidden layers' widths, e.g. "100" or "200-200"
        opts = cfg.guide_options
        results["encoders"][name]["hidden"] = "-".join([str(opts.get("hidden", 200))] * opts.get("layers", 2))
    results.update({"base_train_config": base_cfg.to_dict(),
                    "encoder_train_configs": {name: c.to_dict() for name, c in configs.items()},
                    "gap_config": gcfg.to_dict(), "num_points": x.shape[0]})
    md = markdown(results)
    write_results(out, NAME, args, results, md, time.time() - t0)
    print(md)
    print(f"saved {out / 'results.json'} and {out / 'results.md'}")
    return results


if __name__ == "__main__":
    sys.exit(main())
