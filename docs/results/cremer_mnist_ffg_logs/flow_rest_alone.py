"""Finish the flow local optimization of the datapoints still running, alone.

The batched step of optimize_local costs the same whether 100 or 1 datapoints still run (stopped rows are
computed and then restored), so the last datapoint would need ~2.8 h of CPU for at most 27,300 more steps.
This continues those datapoints from the side process's saved state (same parameters, same Adam moments and
step counts, same stopping-rule counters, same step number) as a guide of their own, then writes them back.
Only the random stream of their remaining steps differs from the batched run (noise of shape (S, 1, D) instead
of (S, 100, D)); the algorithm and its stopping rule are the same. Seeded with stable_seed(seed, 'local-rest').
"""
import sys, time, torch
from pathlib import Path
from experiments.cremer_gaps import build_parser, configs
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.gaps import Pieces, fingerprint
from pyro_vaegap.local import optimize_local
from pyro_vaegap.registry import get_family
from pyro_vaegap.train import train
from pyro_vaegap.utils import set_threads, stable_seed

args = build_parser().parse_args(sys.argv[1:])
set_threads(args.threads)
tcfg, cfg = configs(args)
x = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
res = train(tcfg, Path(args.run_dir), resume=True)
model, guide = res.model.eval(), res.guide.eval()
x = x[seeded_subset(x.shape[0], args.num_points, args.seed)]
x = model.validate_data(x)
pieces = Pieces("/work/main/runs/flow_side.partial", fingerprint(model, guide, x, cfg, tcfg.guide))
fam, N = "flow", x.shape[0]
st = pieces.get(f"local-{fam}-state")
rows = st["running"].nonzero().squeeze(-1)
print(f"state at step {st['step']}: continuing rows {rows.tolist()} alone", flush=True)
t = time.time()
full = get_family(fam).make_local(model, N, **cfg.family_options.get(fam, {})).to(dtype=x.dtype)
full.load_state_dict(st["guide"])
part = get_family(fam).make_local(model, len(rows), **cfg.family_options.get(fam, {})).to(dtype=x.dtype)
part.load_state_dict({k: v[rows] for k, v in st["guide"].items()})
opt = {"param_groups": st["optimizer"]["param_groups"],
       "state": {i: {k: (v[rows] if k != "step" else v) for k, v in s.items()}
                 for i, s in st["optimizer"]["state"].items()}}
torch.manual_seed(stable_seed(cfg.seed, "local-rest", fam))
sub = {"step": st["step"], "guide": part.state_dict(), "optimizer": opt,
       **{k: st[k][rows] for k in ("running", "steps", "best", "bad", "converged")},
       "rng": {"cpu": torch.get_rng_state(), "cuda": None}}
res = optimize_local(model, part, x[rows], num_samples=cfg.local_samples, lr=cfg.local_lr,
                     max_steps=cfg.local_max_steps, check_every=cfg.local_check_every,
                     patience=cfg.local_patience, progress=True, desc=f"local {fam} (rest)", state=sub)
merged = full.state_dict()
for k, v in part.state_dict().items():
    merged[k][rows] = v
steps, converged = st["steps"].clone(), st["converged"].clone()
steps[rows], converged[rows] = res.steps, res.converged
print(f"rows {rows.tolist()}: steps {res.steps.tolist()}, converged {res.converged.tolist()}; "
      f"{time.time() - t:.0f} s", flush=True)
pieces.put(f"local-{fam}-done-rest-alone", {"guide": merged, "steps": steps, "converged": converged})
