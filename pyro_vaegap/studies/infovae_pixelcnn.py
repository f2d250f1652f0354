"""The InfoVAE PixelCNN experiments' shared options and model (``infovae_loglik``, ``infovae_metrics``).

The PixelCNN VAE of Zhao, Song & Ermon (2019), Table 1 and Figure 6: a gated PixelCNN decoder conditioned on z,
an FFG encoder, trained with the ELBO or an InfoVAE objective (MMD, Stein, adversarial), in a ``cpu``, ``paper``
or ``quick`` profile of settings the command line may override (:func:`pixelcnn_profiles`).
"""
from __future__ import annotations

from ..harness.options import Profiles, Setting
from ..runs.config import TrainConfig

#: the model and training options every profile of these experiments sets
PIXELCNN_SETTINGS = {
    "num_train": Setting(int, "training images (a seeded subset of the 50,000)"),
    "epochs": Setting(int, "training epochs"),
    "pixelcnn_layers": Setting(int, "gated PixelCNN layers of the decoder"),
    "pixelcnn_channels": Setting(int, "channels of the PixelCNN layers"),
    "hidden": Setting(int, "width of the encoder's two ELU layers"),
    "batch_size": Setting(int, "minibatch size (the divergences are over it)"),
    "num_valid": Setting(int, "validation images of the per-epoch validation ELBO"),
}
#: the settings the ``cpu`` and ``paper`` profiles share
COMMON = {"batch_size": 100, "num_valid": 500}


def pixelcnn_profiles(cpu: dict, paper: dict, quick: dict, settings: dict, help: dict) -> Profiles:
    """The ``cpu`` (default), ``paper`` and ``quick`` profiles of a PixelCNN experiment: its own ``settings`` beside
    :data:`PIXELCNN_SETTINGS`; ``quick`` is what the smoke run changes in ``cpu``."""
    cpu, paper = {**COMMON, **cpu}, {**COMMON, **paper}
    return Profiles(profiles={"cpu": cpu, "paper": paper, "quick": {**cpu, **quick}},
                    settings={**PIXELCNN_SETTINGS, **settings}, default="cpu", help=help)


def add_pixelcnn_options(p, name: str) -> None:
    """Options of the InfoVAE PixelCNN experiments beside their profile's: data and run folders, InfoVAE weights and
    the learning rate (the parser's profiles come from :func:`pixelcnn_profiles`)."""
    p.add_argument("--data-dir", default=None, help="folder with binarized_mnist.npz (and mnist_test.npz for labels; "
                                                    "else $PYRO_VAEGAP_DATA, then the cache)")
    p.add_argument("--runs", default=f"runs/{name}",
                   help="folder of the training runs (one sub-folder per model; reused when finished, resumed when "
                        "interrupted)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=1000.0,
                   help="InfoVAE's lambda of the MMD, Stein and adversarial models")
    p.add_argument("--alpha", type=float, default=0.0, help="InfoVAE's alpha of those models")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (constant)")


def loglik_config(args, objective: str) -> TrainConfig:
    """The PixelCNN VAE of ``objective`` with an FFG encoder (two ELU layers of ``--hidden``)."""
    fields = ({"objective": "elbo"} if objective == "elbo" else
              {"objective": "infovae", "alpha": args.alpha, "lambda_": args.lambda_, "divergence": objective})
    return TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir, num_train=args.num_train,
                       model="pixelcnn", latent_dim=args.latent_dim, pixelcnn_layers=args.pixelcnn_layers,
                       pixelcnn_channels=args.pixelcnn_channels, guide="ffg",
                       guide_options={"hidden": args.hidden, "layers": 2, "activation": "elu"}, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, num_valid=args.num_valid, seed=args.seed, **fields)
