"""The InfoVAE PixelCNN experiments' shared options and model (``infovae_loglik``, ``infovae_metrics``).

The PixelCNN VAE of Zhao, Song & Ermon (2019), Table 1 and Figure 6: a gated PixelCNN decoder conditioned on z,
an FFG encoder, trained with the ELBO or an InfoVAE objective (MMD, Stein, adversarial), in a ``cpu``, ``paper``
or ``quick`` profile of settings the command line may override (:func:`pixelcnn_profiles`).
"""
from __future__ import annotations

from ..harness.options import Profiles, Setting
from ..runs.config import TrainConfig

#: InfoVAE's (α, λ) of each objective in Zhao et al.'s comparison (their Table 1 and Fig. 6): MMD and Stein with
#: α = 1, λ = 1000; the adversarial autoencoder is α = 1, λ = 1 (its divergence weighs α + λ − 1 = 1)
PAPER_WEIGHTS = {"mmd": (1.0, 1000.0), "stein": (1.0, 1000.0), "adversarial": (1.0, 1.0)}
#: the weights of the earlier cpu runs: α = 0 and λ = 1000 for every divergence (kept so they stay reproducible)
UNIFORM_WEIGHTS = (0.0, 1000.0)
WEIGHTS = ("paper", "uniform")

#: the model and training options every profile of these experiments sets
PIXELCNN_SETTINGS = {
    "dataset": Setting(str, "training and test data: binarized_mnist (static) or dynamic_mnist (a fresh Bernoulli "
                            "draw of each grey image at every use; test set binarized once with a fixed seed)",
                       choices=("binarized_mnist", "dynamic_mnist")),
    "num_train": Setting(int, "training images (a seeded subset of the 50,000)"),
    "epochs": Setting(int, "training epochs"),
    "pixelcnn_layers": Setting(int, "gated PixelCNN layers of the decoder"),
    "pixelcnn_channels": Setting(int, "channels of the PixelCNN layers"),
    "encoder": Setting(str, "the FFG encoder: mlp (two ELU layers of --hidden) or conv (3 stride-2 convolutions "
                            "32-64-128, then one ELU layer of --hidden)", choices=("mlp", "conv")),
    "hidden": Setting(int, "width of the encoder's fully connected layers"),
    "optimizer": Setting(str, "adam or rmsprop (the authors' code: RMSProp)", choices=("adam", "rmsprop")),
    "clip_value": Setting(float, "clip every gradient entry to [-v, v] (the authors' code: 1; 0: no clipping)"),
    "weights": Setting(str, "InfoVAE (alpha, lambda) of the MMD, Stein and adversarial models: paper (MMD, Stein: "
                            "1, 1000; adversarial: 1, 1) or uniform (0, 1000 for all); --alpha / --lambda override",
                       choices=WEIGHTS),
    "monitor_mmd": Setting(int, "validation images of the per-epoch MMD^2(q(z), p(z)) in log.csv (0: not logged)"),
    "batch_size": Setting(int, "minibatch size (the divergences are over it)"),
    "num_valid": Setting(int, "validation images of the per-epoch validation ELBO"),
}
#: the settings the ``cpu`` and ``paper`` profiles share
COMMON = {"batch_size": 100, "num_valid": 500}
#: the settings of the earlier cpu runs (static binarization, MLP encoder, Adam, α = 0 for all)
LEGACY = {"dataset": "binarized_mnist", "encoder": "mlp", "optimizer": "adam", "clip_value": 0.0,
          "weights": "uniform", "monitor_mmd": 0}
#: the authors' protocol (Zhao et al.; their PixelCNN code): dynamic binarization, conv encoder with one
#: fully connected layer of 512, RMSProp, gradient clipping, the paper's weights, batch 100
AUTHORS = {"dataset": "dynamic_mnist", "encoder": "conv", "hidden": 512, "optimizer": "rmsprop", "clip_value": 1.0,
           "weights": "paper", "monitor_mmd": 500, "num_train": 50_000, "batch_size": 100, "num_valid": 500}


def pixelcnn_profiles(cpu: dict, paper: dict, quick: dict, settings: dict, help: dict, **more: dict) -> Profiles:
    """The ``cpu`` (default), ``paper``, ``quick`` and any ``more`` profiles of a PixelCNN experiment: its own
    ``settings`` beside :data:`PIXELCNN_SETTINGS`; ``quick`` is what the smoke run changes in ``cpu``. ``cpu`` starts
    from :data:`COMMON` and :data:`LEGACY`, ``paper`` and ``more`` from :data:`AUTHORS`."""
    cpu, paper = {**COMMON, **LEGACY, **cpu}, {**AUTHORS, **paper}
    more = {name: {**AUTHORS, **p} for name, p in more.items()}
    return Profiles(profiles={"cpu": cpu, "paper": paper, **more, "quick": {**cpu, **quick}},
                    settings={**PIXELCNN_SETTINGS, **settings}, default="cpu", help=help)


def add_pixelcnn_options(p, name: str) -> None:
    """Options of the InfoVAE PixelCNN experiments beside their profile's: data and run folders, InfoVAE weights and
    the learning rate (the parser's profiles come from :func:`pixelcnn_profiles`)."""
    p.add_argument("--data-dir", default=None, help="folder with binarized_mnist.npz, MNIST/raw (dynamic_mnist) and "
                                                    "mnist_test.npz for labels (else $PYRO_VAEGAP_DATA, then the cache)")
    p.add_argument("--runs", default=f"runs/{name}",
                   help="folder of the training runs (one sub-folder per model; reused when finished, resumed when "
                        "interrupted)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=None,
                   help="InfoVAE's lambda of every MMD, Stein and adversarial model (default: the profile's --weights)")
    p.add_argument("--alpha", type=float, default=None,
                   help="InfoVAE's alpha of every MMD, Stein and adversarial model (default: the profile's --weights)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (constant)")


def infovae_weights(args, objective: str) -> tuple[float, float]:
    """``(alpha, lambda)`` of ``objective``: the profile's ``--weights`` (:data:`PAPER_WEIGHTS` or
    :data:`UNIFORM_WEIGHTS`), each replaced by ``--alpha`` / ``--lambda`` when given."""
    alpha, lambda_ = PAPER_WEIGHTS[objective] if args.weights == "paper" else UNIFORM_WEIGHTS
    return (alpha if args.alpha is None else args.alpha), (lambda_ if args.lambda_ is None else args.lambda_)


def loglik_config(args, objective: str) -> TrainConfig:
    """The PixelCNN VAE of ``objective`` with an FFG encoder (``--encoder``: an ELU MLP 784-hidden-hidden, or the
    conv encoder with one fully connected layer of ``--hidden``)."""
    if objective == "elbo":
        fields = {"objective": "elbo"}
    else:
        alpha, lambda_ = infovae_weights(args, objective)
        fields = {"objective": "infovae", "alpha": alpha, "lambda_": lambda_, "divergence": objective}
    encoder = ({"hidden": args.hidden, "layers": 2, "activation": "elu"} if args.encoder == "mlp" else
               {"arch": "conv", "hidden": args.hidden, "layers": 1, "activation": "elu"})
    extra = {}  # only the options that differ from TrainConfig's defaults: an earlier run's config stays equal
    if args.optimizer != "adam":
        extra["optimizer"] = args.optimizer
    if args.clip_value:
        extra["clip_value"] = float(args.clip_value)
    if args.monitor_mmd:
        extra["monitor_mmd"] = args.monitor_mmd
    return TrainConfig(dataset=args.dataset, data_dir=args.data_dir, num_train=args.num_train,
                       model="pixelcnn", latent_dim=args.latent_dim, pixelcnn_layers=args.pixelcnn_layers,
                       pixelcnn_channels=args.pixelcnn_channels, guide="ffg", guide_options=encoder,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, num_valid=args.num_valid,
                       seed=args.seed, **fields, **extra)


def protocol_text(args) -> str:
    """One paragraph naming the data, training and network settings of ``args`` (for a results page)."""
    data = ("dynamically binarized MNIST (a fresh Bernoulli draw of every grey image at every use; the test set "
            "binarized once with the fixed seed DYNAMIC_EVAL_SEED = 20190127 + 1)" if args.dataset == "dynamic_mnist"
            else "statically binarized MNIST (binarized_mnist.npz)")
    opt = ("RMSProp (smoothing 0.9)" if args.optimizer == "rmsprop" else "Adam") + f" lr {args.lr}"
    clip = f", gradients clipped to ±{args.clip_value:g} entrywise" if args.clip_value else ""
    enc = (f"FFG encoder 784-{args.hidden}-{args.hidden} (ELU)" if args.encoder == "mlp" else
           f"FFG conv encoder (3 stride-2 4×4 convolutions 32-64-128, then FC {args.hidden}, ELU)")
    w = {o: infovae_weights(args, o) for o in PAPER_WEIGHTS}
    weights = "; ".join(f"{o}: α = {a:g}, λ = {lam:g}" for o, (a, lam) in w.items())
    return (f"{data}; {args.num_train} training images, {args.epochs} epochs of batch {args.batch_size} "
            f"({args.epochs * -(-args.num_train // args.batch_size)} steps), {opt}{clip}; gated PixelCNN decoder of "
            f"{args.pixelcnn_layers} layers × {args.pixelcnn_channels} maps (first kernel 7, then 3); {enc}; "
            f"InfoVAE weights ({args.weights}): {weights}.")
