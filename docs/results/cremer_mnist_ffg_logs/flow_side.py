"""Side process: compute exactly the 'local-flow-done' piece that the Table 2 run (same code commit,
same config, same seed) would compute, so it runs on the second core in parallel with the FFG stage.
The piece is then copied into the main run's checkpoint folder."""
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
fam_name = "flow"; N = x.shape[0]
t = time.time()
torch.manual_seed(stable_seed(cfg.seed, "local", fam_name))
local = get_family(fam_name).make_local(model, N, **cfg.family_options.get(fam_name, {}))
local = local.to(dtype=x.dtype, device=x.device)
assert cfg.local_init == "prior"
res = optimize_local(model, local, x, num_samples=cfg.local_samples, lr=cfg.local_lr,
                     max_steps=cfg.local_max_steps, check_every=cfg.local_check_every,
                     patience=cfg.local_patience, progress=True, desc=f"local {fam_name}",
                     state=pieces.get(f"local-{fam_name}-state"),
                     save_state=lambda st, f=fam_name: pieces.put(f"local-{f}-state", st))
done = {"guide": local.state_dict(), "steps": res.steps, "converged": res.converged}
pieces.put(f"local-{fam_name}-done", done)
pieces.drop(f"local-{fam_name}-state")
print(f"flow local optimization: {time.time() - t:.0f} s this process", flush=True)
