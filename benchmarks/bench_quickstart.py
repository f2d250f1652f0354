"""`vaegap quickstart` wall time with 1 and with 2 torch threads, measured back to back.

Each round runs the whole quickstart (training from scratch and the gap table) once per thread count,
alternating which goes first, in a fresh output folder, as a separate process; the printed table
gives each run's wall time and the per-round ratio. Run it as the machine is (another job on it, or
idle) and say which::

    python -m benchmarks.bench_quickstart --rounds 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyro_vaegap.utils import provenance_line


def run_once(threads: int, epochs: int, folder: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pyro_vaegap.cli", "quickstart", "--threads", str(threads),
                    "--epochs", str(epochs), "--out", str(folder), "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds; each runs both thread counts once (2)")
    p.add_argument("--threads", default="1,2", help="thread counts to compare (1,2)")
    p.add_argument("--epochs", type=int, default=100, help="quickstart training epochs (100, its default)")
    args = p.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    print(provenance_line())
    print(f"vaegap quickstart --epochs {args.epochs}, {args.rounds} rounds, thread counts {counts}")
    # how busy the machine was is part of the result: the thread count that wins depends on it
    print(f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) at start: {os.getloadavg()}", flush=True)
    times = {c: [] for c in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = counts if r % 2 == 0 else counts[::-1]
            for c in order:
                times[c].append(run_once(c, args.epochs, Path(tmp) / f"r{r}_t{c}"))
                print(f"round {r + 1}, {c} thread(s): {times[c][-1]:.1f} s", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    base = counts[0]
    print("\n| threads | wall time per run (s) | median (s) | median ratio to {} thread(s) |".format(base))
    print("|---|---|---|---|")
    for c in counts:
        ratios = [t / b for t, b in zip(times[c], times[base])]
        print(f"| {c} | {', '.join(f'{t:.1f}' for t in times[c])} | {statistics.median(times[c]):.1f} | "
              f"{statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
