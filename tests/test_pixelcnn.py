"""The gated PixelCNN decoder (models.PixelCNNVAE): autoregressive structure, no blind spot, z-conditioning, a
normalized likelihood, the estimators on it, and ``vaegap train --model pixelcnn``."""
import itertools
import json
import math

import pytest
import torch

from pyro_vaegap.ais import ais
from pyro_vaegap.cli import main
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.grid import grid_log_px
from pyro_vaegap.models import PixelCNNVAE
from pyro_vaegap.registry import get_family
from pyro_vaegap.train import load_run
from pyro_vaegap.utils import ConfigError


def small_model(side=5, latent_dim=2, layers=3, channels=4, first_kernel=3):
    torch.manual_seed(0)
    return PixelCNNVAE(side * side, latent_dim, layers=layers, channels=channels, first_kernel=first_kernel).double()


def input_gradients(model, x, z):
    """``(D, D)``: row i holds d logit_i / d x, by one backward pass over D copies of ``x`` (the rows of a
    batch are independent, so the gradient of the sum of logit i of copy i has d logit_i / d x in row i)."""
    D = x.shape[1]
    copies = x.expand(D, D).clone().requires_grad_()
    model.likelihood(z.expand(D, z.shape[-1])).logits(copies).diagonal().sum().backward()
    return copies.grad


def test_autoregressive_and_no_blind_spot():
    """Logit i has zero gradient w.r.t. pixels >= i (raster order) for every i; and, three layers deep, it
    depends on the pixel to the left and on the pixels up-left, straight up and up-right of it."""
    side, model = 5, small_model(channels=8)
    # summed over a few random inputs: a ReLU of the head may be off at one pixel for one input
    g = sum(input_gradients(model, torch.bernoulli(torch.full((1, side * side), 0.5, dtype=torch.float64)),
                            torch.randn(1, 2, dtype=torch.float64)).abs() for _ in range(4))
    assert torch.all(g.triu() == 0), "a logit depends on its own pixel or a later one"
    r, c = 2, 2
    i = r * side + c
    for rr, cc in [(r, c - 1), (r - 1, c - 1), (r - 1, c), (r - 1, c + 1), (r - 2, c + 2), (r, c - 2)]:
        assert g[i, rr * side + cc] > 0, f"logit of ({r}, {c}) ignores pixel ({rr}, {cc}): a blind spot"
    # the whole row above, within the vertical stack's reach (first kernel 3 + two 3-wide layers: ±3 columns)
    assert torch.all(g[i, (r - 1) * side:(r - 1) * side + side] > 0)


def test_z_changes_the_output():
    model = small_model()
    x = torch.bernoulli(torch.full((1, 25), 0.5, dtype=torch.float64))
    z = torch.randn(2, 2, dtype=torch.float64)
    logits = model.likelihood(z).logits(x)
    assert (logits[0] - logits[1]).abs().min() > 1e-6  # every pixel, the first one (no context) included
    assert not torch.allclose(model.likelihood(z).log_prob(x)[0], model.likelihood(z).log_prob(x)[1])


def test_likelihood_sums_to_one_over_all_images():
    """sum over the 2^9 binary 3x3 images of p(x | z) = 1 for several z (float64)."""
    model = small_model(side=3, layers=2)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64)
    for z in torch.randn(3, 2, dtype=torch.float64):
        log_total = model.likelihood(z.expand(images.shape[0], 2)).log_prob(images).logsumexp(0)
        assert abs(float(log_total.detach())) < 1e-10


def test_batch_shapes_and_sampling():
    """z (S, N, d) against x (N, D) gives (S, N); samples are binary images of the batch shape."""
    model = small_model(side=3, layers=2)
    x = torch.bernoulli(torch.full((4, 9), 0.5, dtype=torch.float64))
    z = torch.randn(3, 4, 2, dtype=torch.float64)
    lp = model.likelihood(z).log_prob(x)
    assert lp.shape == (3, 4)
    assert torch.allclose(lp[1, 2], model.likelihood(z[1, 2:3]).log_prob(x[2:3])[0])
    s = model.generate(z)
    assert s.shape == (3, 4, 9) and set(s.unique().tolist()) <= {0.0, 1.0}


def test_sampling_follows_the_conditionals():
    """Ancestral samples of a 2x2 model: the frequency of each of the 16 images matches p(x|z) within 4.5
    binomial standard errors (20,000 draws)."""
    model = small_model(side=2, layers=2)
    z = torch.randn(2, dtype=torch.float64)
    n = 20_000
    torch.manual_seed(1)
    draws = model.likelihood(z.expand(n, 2)).sample()
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    p = model.likelihood(z.expand(16, 2)).log_prob(images).exp().detach()
    freq = torch.stack([(draws == im).all(-1).double().mean() for im in images])
    se = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() < 4.5 * se + 1e-12)


def test_estimators_work_unchanged():
    """IWAE (importance_sample) and AIS on a 3x3 model with d = 2 agree with log p(x) by quadrature."""
    model = small_model(side=3, layers=2)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.bernoulli(torch.full((3, 9), 0.5, dtype=torch.float64))
    exact = grid_log_px(model, x, lim=6.0, n=49)  # spacing 0.25 on a smooth posterior of scale ~1: error ~1e-6
    guide = get_family("ffg").make_amortized(model, hidden=8).double()
    res = importance_sample(model, guide, x, num_samples=2000, sample_chunk=1000, psis=False)
    # IWAE with 2000 samples: its bias is far below its standard error for an (untrained) broad guide
    assert torch.all((res.iwae - exact).abs() < 4 * res.iwae_se + 0.02)
    assert torch.all(res.elbo <= exact + 4 * res.elbo_se)
    a = ais(model, x, num_chains=8, num_steps=20, leapfrog_steps=2, step_size=0.3)  # fixed kernels: no pilot
    assert torch.all((a.log_px - exact).abs() < 0.15)  # a short AIS run: its error is a few hundredths here


def test_bad_shapes_are_refused():
    with pytest.raises(ConfigError, match="data_dim=10"):
        PixelCNNVAE(10, 2)
    with pytest.raises(ConfigError, match="first_kernel=4"):
        PixelCNNVAE(9, 2, first_kernel=4)


def test_train_cli_pixelcnn(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--model", "pixelcnn", "--pixelcnn-layers", "2",
                 "--pixelcnn-channels", "4", "--latent-dim", "2", "--guide-options", '{"hidden": 8}',
                 "--num-train", "200", "--batch-size", "50", "--epochs", "1", "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert (cfg["model"], cfg["pixelcnn_layers"], cfg["pixelcnn_channels"]) == ("pixelcnn", 2, 4)
    model, _, _ = load_run(run)  # the checkpoint rebuilds the same network
    assert isinstance(model, PixelCNNVAE) and len(model.net.layers) == 2 and model.image_shape == (8, 8)
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and math.isfinite(float(rows[1].split(",")[2]))  # one epoch, a finite validation ELBO
