"""``vaegap gaps``, ``vaegap bdmc`` and ``vaegap render``: the gap report of a trained run, the BDMC sandwich of
its log p(x), and a report's table regenerated from its JSON."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from ..contract import user_model
from ..data import load_dataset, seeded_subset
from ..training.distributed import default_workers, rank_device
from ..report.compute import gap_report
from ..report.config import GapConfig
from ..report.render import GapReport
from ..harness.gap_runs import check_output_stem, evaluation_data, run_gaps
from ..runs import load_run
from ..utils import ConfigError, FileLock, check_folder, check_positive_int, provenance, resolve_device, set_seed
from .options import _config, _read_config_file


def cmd_gaps(args):
    gcfg = _config(GapConfig, args, _read_config_file(args.config))
    gcfg.check_families()  # before anything is loaded or computed
    device = rank_device(args.device)
    if args.model is not None:  # a model trained anywhere (pyro_vaegap.contract.user_model)
        return run_user_gaps(args, gcfg, device)
    if args.run is None:
        raise ConfigError("give --run (a folder written by vaegap train) or --model MODULE:FUNCTION (your own model)")
    model, guide, tcfg = load_run(args.run, device)
    out = check_output_stem(args.out or Path(args.run) / "gaps", args.overwrite)
    x, points = evaluation_data(tcfg.dataset, args.split, args.num_points, args.subset_seed, args.eval_points,
                                data_dir=args.data_dir or tcfg.data_dir, download=args.download)
    workers = default_workers(torch.get_num_threads(), device) if args.workers is None else \
        check_positive_int("--workers", args.workers)
    run_gaps(model, guide, tcfg, gcfg, x.to(device), out, progress=not args.quiet, overwrite=args.overwrite,
             points=points, split=args.split, workers=workers)


def run_user_gaps(args, gcfg, device):
    """``vaegap gaps --model``: the gap report of the user's model on a seeded subset of a data set's split."""
    user_model.check_ref(args.model)
    if args.dataset is None:
        raise ConfigError("--model needs --dataset: the data to evaluate on (e.g. binarized_mnist)")
    if args.out is None:
        raise ConfigError("--model needs --out: the output stem of the report")
    stem = check_output_stem(args.out, args.overwrite)
    model, guide = user_model.build(args.model, args.checkpoint, device)
    x = load_dataset(args.dataset, args.split, data_dir=args.data_dir, download=args.download)
    if not 1 <= args.num_points <= x.shape[0]:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{x.shape[0]} "
                          f"(the {args.split} split has {x.shape[0]} rows)")
    x = x[seeded_subset(x.shape[0], args.num_points, args.subset_seed)].to(device)
    partial = stem.with_name(stem.name + ".partial")
    t = time.time()
    rep = gap_report(model, guide, x, gcfg, family=args.family, progress=not args.quiet, checkpoint=partial)
    rep.meta.update({"user_model": args.model, "checkpoint": args.checkpoint, "dataset": args.dataset,
                     "split": args.split, "subset_seed": args.subset_seed, "wall_seconds": time.time() - t})
    paths = rep.save(stem)
    shutil.rmtree(partial, ignore_errors=True)
    print(rep.to_markdown())
    print("saved " + " and ".join(map(str, paths)))
    return rep


def cmd_render(args):
    """Regenerate a gap report's markdown table from its JSON with the current code."""
    from ..utils import atomic_write_text

    path = Path(args.report)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r}: no such file (give a STEM.json written by vaegap gaps)")
    try:
        md = GapReport.load(path).to_markdown()
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise ConfigError(f"{str(path)!r} is not a gap report written by vaegap gaps ({type(e).__name__}: {e})") from e
    if args.out:
        check_folder(Path(args.out).parent, "output folder")
        print(f"wrote {atomic_write_text(args.out, md)}")
    else:
        print(md, end="")


def cmd_bdmc(args):
    """Sandwich log p(x) of data simulated from a trained model: how tight are these AIS settings?"""
    from ..estimators.ais import bdmc
    from ..utils import atomic_write_json

    for name in ("num_points", "ais_chains", "ais_steps", "ais_leapfrog", "ais_pilot_chains"):
        check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    check_positive_int("--seed", args.seed, minimum=0)
    if not 0 < args.ais_init_step_size < float("inf"):
        raise ConfigError(f"--ais-init-step-size {args.ais_init_step_size} is not allowed: expected a finite positive "
                          "number")
    device = resolve_device(args.device)
    model, _, tcfg = load_run(args.run, device)
    target = Path(args.out or Path(args.run) / "bdmc.json")
    like = load_dataset(tcfg.dataset, "test", data_dir=args.data_dir or tcfg.data_dir, download=args.download)[:1]
    like = like.to(device)
    check_folder(target.parent, "output folder")
    with FileLock(target, "output"):  # a second bdmc into the same file is refused, not silently overwritten
        if target.exists() and not args.overwrite:
            raise ConfigError(f"{target} already holds a BDMC result: pass --overwrite to replace it, or choose "
                              "another --out")
        set_seed(args.seed)
        t = time.time()
        res = bdmc(model, args.num_points, like, num_chains=args.ais_chains, num_steps=args.ais_steps,
                   leapfrog_steps=args.ais_leapfrog, schedule=args.ais_schedule, step_size=args.ais_step_size,
                   pilot_chains=args.ais_pilot_chains, init_step_size=args.ais_init_step_size,
                   progress=not args.quiet)
        summary = res.summary()
        out = {"summary": summary,
               "per_point": {"lower": res.lower.log_px.tolist(), "upper": res.upper.log_px.tolist(),
                             "gap": res.gap.tolist(), "lower_se": res.lower.se.tolist(),
                             "upper_se": res.upper.se.tolist(), "lower_accept": res.lower.accept_rate.tolist(),
                             "upper_accept": res.upper.accept_rate.tolist()},
               "config": {k: v for k, v in vars(args).items() if k not in ("func", "debug", "overwrite", "download")},
               "meta": {**provenance(), "seconds": time.time() - t, "train_config": tcfg.to_dict()}}
        path = atomic_write_json(target, out)
    verdict = ("the sandwich holds on every point" if summary["sandwich_holds"] else
               f"FAILED: the upper bound fell below the lower bound on {summary['crossings']} of "
               f"{summary['num_points']} points (more chains or steps needed)")
    print(f"BDMC on {args.num_points} simulated points, AIS {args.ais_chains}×{args.ais_steps}×{args.ais_leapfrog} "
          f"({args.ais_schedule}, {args.ais_step_size} step sizes): lower {summary['mean_lower']:.3f}, upper "
          f"{summary['mean_upper']:.3f}; |upper − lower| mean {summary['mean_abs_gap']:.3f}, max "
          f"{summary['max_abs_gap']:.3f} nats; {verdict}; saved {path}")
