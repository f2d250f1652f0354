"""``vaegap quickstart``: a small FFG VAE on the embedded digits data and its gap table, in minutes."""
from __future__ import annotations

from pathlib import Path

from ..data import load_dataset, seeded_subset
from ..report.config import GapConfig
from ..report.render import GapReport
from ..harness.gap_runs import run_gaps
from ..runs import TrainConfig
from ..training import train
from ..utils import ConfigError, check_folder, resolve_device

def cmd_quickstart(args):
    """Train a small FFG VAE on the embedded digits data and print its gap table (≤ 5 min, 2 cores)."""
    out = Path(args.out)
    cfg = TrainConfig(dataset="digits", latent_dim=8, hidden=64, guide_options={"hidden": 64}, epochs=args.epochs,
                      batch_size=50, anneal="entropy", anneal_epochs=10, seed=args.seed)
    n_test = load_dataset("digits", "test").shape[0]
    if not 1 <= args.num_points <= n_test:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{n_test} (the digits test "
                          "split)")
    check_folder(out, "output folder")
    run_dir = out / "run"
    device = resolve_device(args.device)
    res = train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(), progress=not args.quiet,
                resume_hint="the same command", device=device)
    saved = out / "gaps.json"
    if saved.exists():  # a finished quickstart: show it rather than recompute or overwrite it
        print(GapReport.load(saved).to_markdown())
        print(f"(the saved report {saved}; delete it to recompute)")
        return
    x = load_dataset("digits", "test")
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)].to(device)
    gcfg = GapConfig(families=("ffg",), iwae_samples=2000, elbo_samples=2000, ais_chains=50, ais_steps=200,
                     ais_leapfrog=5, local_samples=10, seed=args.seed)
    run_gaps(res.model, res.guide, cfg, gcfg, x, out / "gaps", progress=not args.quiet)
