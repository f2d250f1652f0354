"""``python -m pyro_vaegap.pretrained list | export --run RUN --name NAME | verify NAME``."""
import argparse
import sys

from . import available, export, verify
from ..utils import ConfigError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pyro_vaegap.pretrained", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="names of the shipped models")
    e = sub.add_parser("export", help="ship a finished training run")
    e.add_argument("--run", required=True, help="a finished run folder written by vaegap train")
    e.add_argument("--name", required=True, help="the name users load it by")
    e.add_argument("--split", default="train", choices=("train", "valid", "test"), help="points of the check")
    e.add_argument("--num-points", type=int, default=1000, help="the first N points of --split (1000)")
    e.add_argument("--num-samples", type=int, default=100, help="ELBO draws per point (100)")
    v = sub.add_parser("verify", help="recompute a shipped model's check with other draws")
    v.add_argument("name")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(available()))
        elif args.command == "export":
            print(export(args.run, args.name, split=args.split, num_points=args.num_points,
                         num_samples=args.num_samples))
        else:
            r = verify(args.name)
            print(f"{args.name}: recorded mean ELBO {r['recorded']:.3f}, now {r['now']:.3f} "
                  f"(|difference| must be < {r['tolerance']:.3f}): {'ok' if r['ok'] else 'FAILED'}")
            return 0 if r["ok"] else 1
    except ConfigError as e:
        print(f"pretrained: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
