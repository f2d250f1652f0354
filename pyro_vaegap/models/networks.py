r"""The neural networks inside models and guides: multilayer perceptrons and convolutional stacks.

Two architectures, chosen by name (``arch``) for a decoder (:func:`decoder_net`) and for every
family's encoder (:func:`encoder_body`):

* ``"mlp"`` — fully connected layers (Cremer et al. 2018: 784-200-200 with ELU), optionally densely
  connected (:class:`DenseMLP`);
* ``"conv"`` — the convolutional networks of Kim & Pavlovic's GPVAE (and, in shape, InfoVAE's
  DCGAN-style networks): an encoder of 3 convolutions with 4×4 kernels, stride 2 and padding 1
  (32, 64, 128 channels: the paper gives kernel size and depth, not the widths) followed by fully
  connected layers of width ``hidden``; a decoder of fully connected layers, then 3 transposed
  convolutions with 4×4 kernels back to the image;
* ``"conv_kim"`` — Kim & Pavlovic's supplement Table 6 (MNIST, OMNIGLOT) exactly as printed: encoder
  convolutions of 32, 32, 64 channels (4×4, stride 2) with LeakyReLU(0.01), then ``layers`` fully
  connected layers of width ``hidden`` (Table 6: one, 256) with LeakyReLU(0.01); decoder ``layers``
  fully connected layers of width ``hidden`` and one to the 64-channel feature map (ReLU), then
  transposed convolutions of 32, 32 and the image's channels (ReLU between). Its activations are the
  table's, so it takes ``activation="relu"`` only (anything else is refused rather than ignored).

Data stay flat, ``(..., D)`` with any leading sample/batch dimensions, as everywhere in the package;
the convolutional networks view each row as an image of :func:`image_shape` ``(C, H, W)`` in the
channel-major order that ``x.reshape(-1, C, H, W)`` gives (torchvision's and NumPy's order).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..utils import ConfigError, check_choice, check_positive_int

ACTIVATIONS = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU}
ARCHITECTURES = ("mlp", "conv", "conv_kim")
#: channels of the three convolutions of the conv encoder (the decoder mirrors them)
CONV_CHANNELS = (32, 64, 128)
#: channels of ``conv_kim`` (Kim & Pavlovic, supplement Table 6: 32, 32, 64; the decoder mirrors them)
KIM_CHANNELS = (32, 32, 64)
#: ``conv_kim``'s encoder activation (Table 6: LeakyReLU with slope 0.01)
KIM_LEAKY_SLOPE = 0.01


def _conv_spec(arch: str, activation: str):
    """``(channels, encoder activation class, decoder activation class)`` of a convolutional ``arch``."""
    if arch == "conv_kim":
        if activation != "relu":
            raise ConfigError(f"arch='conv_kim' has the paper's activations (LeakyReLU(0.01) in the encoder, ReLU "
                              f"in the decoder): give activation='relu', not {activation!r}")
        return KIM_CHANNELS, (lambda: nn.LeakyReLU(KIM_LEAKY_SLOPE)), nn.ReLU
    act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
    return CONV_CHANNELS, act, act


def mlp(sizes, activation: str = "elu", final_activation: bool = False, dense: bool = False) -> nn.Module:
    """``Linear → act → … → Linear`` over the widths in ``sizes`` (``len(sizes) - 1`` layers).

    :param dense: densely connected instead (:class:`DenseMLP`), with the same layer widths.
    """
    act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
    if dense and len(sizes) > 1:
        return DenseMLP(sizes, act, final_activation)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(act())
    return nn.Sequential(*layers)


class DenseMLP(nn.Module):
    r"""A densely connected MLP (DenseNet's connectivity; R. Yu's tutorial builds its encoder and decoder
    from such "dense blocks").

    Hidden layer :math:`i` reads the concatenation of the input and every earlier hidden output,
    :math:`h_i = \mathrm{act}(W_i[x, h_1, \dots, h_{i-1}] + b_i)` with ``sizes[i]`` units, and the output
    layer reads all of them, :math:`y = W[x, h_1, \dots, h_L] + b`. Each layer sees the raw input, so
    a deep narrow network keeps fine detail of a 2-d input (sharp density edges) that a plain MLP of
    the same widths tends to blur. Shapes: ``(..., sizes[0]) → (..., sizes[-1])``.
    """

    def __init__(self, sizes, act=nn.ReLU, final_activation: bool = False):
        super().__init__()
        self.hidden = nn.ModuleList()
        width = sizes[0]
        for h in sizes[1:-1]:
            self.hidden.append(nn.Sequential(nn.Linear(width, h), act()))
            width += h
        self.out = nn.Linear(width, sizes[-1])
        self.final = act() if final_activation else nn.Identity()

    def forward(self, x):
        for layer in self.hidden:
            x = torch.cat([x, layer(x)], dim=-1)
        return self.final(self.out(x))


def image_shape(data_dim: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of a flattened square image of ``data_dim`` values: one channel when ``data_dim`` is
    a square (784 → (1, 28, 28), 64 → (1, 8, 8)), else three (3072 → (3, 32, 32))."""
    for channels in (1, 3):
        side = math.isqrt(data_dim // channels)
        if data_dim % channels == 0 and side * side * channels == data_dim and side >= 8:
            return channels, side, side
    raise ConfigError(f"arch='conv' needs square images of at least 8×8 pixels with 1 or 3 channels; data of "
                      f"width {data_dim} is neither C·H·H with C = 1 nor with C = 3: use arch='mlp'")


def _conv_sizes(side: int, depth: int = len(CONV_CHANNELS)) -> list[int]:
    """Spatial sizes through the encoder's stride-2 convolutions (kernel 4, padding 1 halve, rounding down)."""
    sizes = [side]
    for _ in range(depth):
        sizes.append((sizes[-1] + 2 - 4) // 2 + 1)
    return sizes


class _Flat(nn.Module):
    """Applies an image network to flat rows with any leading dimensions: ``(..., D) → (..., out)``."""

    def __init__(self, net: nn.Module, in_shape: tuple):
        super().__init__()
        self.net, self.in_shape = net, tuple(in_shape)

    def forward(self, x):
        lead = x.shape[:-1]
        y = self.net(x.reshape(-1, *self.in_shape))
        return y.reshape(*lead, -1)


def conv_encoder_body(data_dim: int, hidden: int, layers: int, activation: str = "elu",
                      arch: str = "conv") -> nn.Module:
    r"""Image ``(..., D)`` → features ``(..., hidden)``: 3 convolutions (4×4, stride 2, padding 1,
    :data:`CONV_CHANNELS`, or :data:`KIM_CHANNELS` for ``arch="conv_kim"``), then ``layers`` fully connected
    layers of width ``hidden``, each followed by the activation. A family puts its own last layer (its
    "head") on these features."""
    check_positive_int("layers", layers)
    channels, act, _ = _conv_spec(arch, activation)
    c, side, _ = image_shape(data_dim)
    modules, prev = [], c
    for ch in channels:
        modules += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), act()]
        prev = ch
    modules.append(nn.Flatten())
    width = prev * _conv_sizes(side, len(channels))[-1] ** 2
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), act()]
        width = hidden
    return _Flat(nn.Sequential(*modules), (c, side, side))


def conv_decoder(latent_dim: int, data_dim: int, outputs: int, hidden: int, layers: int,
                 activation: str = "elu", arch: str = "conv") -> nn.Module:
    r"""``z`` ``(..., d)`` → ``(..., outputs · D)``: ``layers`` fully connected layers of width ``hidden``,
    a linear map to the encoder's last feature map, then 3 transposed convolutions (4×4, stride 2,
    padding 1, output padding chosen so that each restores the encoder's size) to ``outputs · C``
    channels. Output ``k`` (e.g. the mean, then the log-variance) is the ``k``-th block of ``D`` values,
    so decoders split it exactly as an MLP decoder's."""
    enc_channels, _, act = _conv_spec(arch, activation)
    c, side, _ = image_shape(data_dim)
    sizes = _conv_sizes(side, len(enc_channels))
    channels = list(reversed(enc_channels))
    modules, width = [], latent_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), act()]
        width = hidden
    modules += [nn.Linear(width, channels[0] * sizes[-1] ** 2), act(), nn.Unflatten(-1, (channels[0], sizes[-1], sizes[-1]))]
    outs = channels[1:] + [outputs * c]
    for i, (a, b) in enumerate(zip(channels, outs)):
        small, big = sizes[-1 - i], sizes[-2 - i]
        modules.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, output_padding=big - 2 * small))
        if i < len(outs) - 1:
            modules.append(act())
    return _Flat(nn.Sequential(*modules), (latent_dim,))


def encoder_body(data_dim: int, hidden: int, layers: int, activation: str = "elu", dense: bool = False,
                 arch: str = "mlp") -> tuple[nn.Module, int]:
    """``(body, width)``: the encoder network without its last layer, mapping ``(..., D)`` to features
    ``(..., width)``. Every family's amortized guide puts its head on it, so ``arch`` works for all."""
    check_choice("arch", arch, ARCHITECTURES)
    if arch != "mlp":
        if dense:
            raise ConfigError(f"dense=True is an MLP option; it cannot be combined with arch={arch!r}")
        return conv_encoder_body(data_dim, hidden, layers, activation, arch), hidden
    body = mlp([data_dim] + [hidden] * layers, activation, final_activation=True, dense=dense)
    return body, (hidden if layers > 0 else data_dim)


def decoder_net(latent_dim: int, data_dim: int, outputs: int, hidden: int, layers: int, activation: str = "elu",
                dense: bool = False, arch: str = "mlp") -> nn.Module:
    """A decoder ``(..., d) → (..., outputs · D)`` of architecture ``arch`` (see the module docstring)."""
    check_choice("arch", arch, ARCHITECTURES)
    if arch != "mlp":
        if dense:
            raise ConfigError(f"dense=True is an MLP option; it cannot be combined with arch={arch!r}")
        return conv_decoder(latent_dim, data_dim, outputs, hidden, layers, activation, arch)
    return mlp([latent_dim] + [hidden] * layers + [outputs * data_dim], activation, dense=dense)
