"""A gap evaluation in one process vs two torchrun ranks (one torch thread each), measured back to back.

Trains a small FFG VAE on the 8×8 digits once, then runs the same ``vaegap gaps`` command (chunked so
that every stage has pieces for both ranks) as one process and under ``torchrun --nproc-per-node 2``,
alternating the order over rounds, and prints each wall time, the per-round ratio, and whether the two
reports agree value for value. Run it as the machine is and say how busy it was (printed)::

    python -m benchmarks.bench_sharded_gaps --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyro_vaegap.utils import provenance_line

GAPS = ["--num-points", "16", "--iwae-samples", "1000", "--elbo-samples", "1000", "--ais-chains", "20",
        "--ais-steps", "100", "--ais-leapfrog", "5", "--ais-data-chunk", "4", "--data-chunk", "4",
        "--local-data-chunk", "4", "--local-samples", "20", "--local-max-steps", "600", "--local-check-every", "50",
        "--families", "ffg", "--threads", "1", "--quiet"]


def run(cmd, cwd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds; each runs both once (2)")
    args = p.parse_args(argv)
    print(provenance_line())
    print(f"vaegap gaps {' '.join(GAPS)}; {args.rounds} rounds")
    print(f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) at start: {os.getloadavg()}", flush=True)
    single = [sys.executable, "-m", "pyro_vaegap.cli", "gaps", "--run", "run", *GAPS]
    sharded = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "pyro_vaegap.cli", "gaps", "--run-dir", "run", *GAPS]
    times = {"1 process": [], "2 ranks": []}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pyro_vaegap.cli", "train", "--run-dir", "run", "--dataset", "digits",
                        "--epochs", "30", "--latent-dim", "8", "--hidden", "64", "--guide-options", '{"hidden": 64}',
                        "--quiet"], cwd=tmp, check=True, capture_output=True)
        for r in range(args.rounds):
            order = ["1 process", "2 ranks"] if r % 2 == 0 else ["2 ranks", "1 process"]
            for name in order:
                cmd = single if name == "1 process" else sharded
                times[name].append(run([*cmd, "--out", f"{name[0]}_{r}"], tmp))
                print(f"round {r + 1}, {name}: {times[name][-1]:.1f} s", flush=True)
        same = all(json.loads((Path(tmp) / f"1_{r}.json").read_text())["per_point"]
                   == json.loads((Path(tmp) / f"2_{r}.json").read_text())["per_point"] for r in range(args.rounds))
    print(f"load average at end: {os.getloadavg()}")
    print(f"reports identical value for value: {same}")
    print("\n| processes | wall time per run (s) | median (s) | median speed-up over 1 process |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        ratios = [b / t for t, b in zip(ts, times["1 process"])]
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in ts)} | {statistics.median(ts):.1f} | "
              f"{statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
