"""The InfoVAE PixelCNN experiments' shared options and model (``infovae_loglik``, ``infovae_metrics``).

The PixelCNN VAE of Zhao, Song & Ermon (2019), Table 1 and Figure 6: a gated PixelCNN decoder conditioned on z,
an FFG encoder, trained with the ELBO or an InfoVAE objective (MMD, Stein, adversarial), in a ``cpu`` or
``paper`` profile of settings the command line may override.
"""
from __future__ import annotations

from ..runs.config import TrainConfig


def add_pixelcnn_options(p, name: str, profiles: dict, profile_help: str) -> None:
    """Options of the InfoVAE PixelCNN experiments: the profile (each integer setting of ``profiles["cpu"]``
    an option that overrides it), ``--quick``, data and run folders, InfoVAE weights and training."""
    p.add_argument("--profile", choices=tuple(profiles), default="cpu", help=profile_help)
    p.add_argument("--quick", action="store_true", help="tiny profile (seconds; its numbers mean nothing; runs under "
                                                        "OUT/runs)")
    p.add_argument("--data-dir", default=None, help="folder with binarized_mnist.npz (and mnist_test.npz for labels; "
                                                    "else $PYRO_VAEGAP_DATA, then the cache)")
    p.add_argument("--runs", default=f"runs/{name}",
                   help="folder of the training runs (one sub-folder per model; reused when finished, resumed when "
                        "interrupted)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=1000.0,
                   help="InfoVAE's lambda of the MMD, Stein and adversarial models")
    p.add_argument("--alpha", type=float, default=0.0, help="InfoVAE's alpha of those models")
    p.add_argument("--batch-size", type=int, default=100, help="minibatch size (the divergences are over it)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (constant)")
    p.add_argument("--num-valid", type=int, default=500, help="validation images of the per-epoch validation ELBO")
    for k, v in profiles["cpu"].items():
        if isinstance(v, int):
            p.add_argument(f"--{k.replace('_', '-')}", type=int, default=None,
                           help=f"default: the profile's (cpu {v}, paper {profiles['paper'][k]})")


def apply_profile(args, profiles: dict) -> None:
    """Every setting of ``args.profile`` the command line left out (``None``)."""
    for k, v in profiles[args.profile].items():
        if getattr(args, k) is None:
            setattr(args, k, v)


def loglik_config(args, objective: str) -> TrainConfig:
    """The PixelCNN VAE of ``objective`` with an FFG encoder (two ELU layers of ``--hidden``)."""
    fields = ({"objective": "elbo"} if objective == "elbo" else
              {"objective": "infovae", "alpha": args.alpha, "lambda_": args.lambda_, "divergence": objective})
    return TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir, num_train=args.num_train,
                       model="pixelcnn", latent_dim=args.latent_dim, pixelcnn_layers=args.pixelcnn_layers,
                       pixelcnn_channels=args.pixelcnn_channels, guide="ffg",
                       guide_options={"hidden": args.hidden, "layers": 2, "activation": "elu"}, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, num_valid=args.num_valid, seed=args.seed, **fields)
