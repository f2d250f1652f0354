"""The same estimators on a GPU: each CUDA result agrees with the exact answer and with the CPU result on the
same seeds. CPU and GPU draw from different random generators, so two Monte Carlo estimates agree within
their combined standard errors (z = 4, as in tests/test_linear_gaussian.py), not bit for bit; deterministic
computations (grid quadrature, a trained model's forward pass) agree to float rounding.

These tests are marked ``cuda`` and skipped where torch finds no GPU; without one, the first test checks that
asking for CUDA is a clear error, never a silent CPU run."""
import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import make_linear_gaussian
from pyro_vaegap.ais import ais
from pyro_vaegap.cli import main
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.gaps import GapConfig, gap_report
from pyro_vaegap.grid import grid_posterior
from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.local import optimize_local
from pyro_vaegap.traces import simulate
from pyro_vaegap.train import load_run
from pyro_vaegap.utils import ConfigError, resolve_device

Z = 4.0
HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
TRAIN = ["--dataset", "digits", "--epochs", "2", "--latent-dim", "2", "--hidden", "16", "--guide-options",
         '{"hidden": 16}', "--quiet"]


@pytest.mark.skipif(HAS_CUDA, reason="checks the machine without CUDA")
def test_asking_for_cuda_without_one_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="asks for CUDA, but torch finds no CUDA device"):
        resolve_device("cuda:0")
    assert main(["train", "--run-dir", str(tmp_path / "run"), *TRAIN, "--device", "cuda"]) == 2
    assert "--device 'cuda' asks for CUDA" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    for module in ("cremer_gaps", "gpvae_gaps"):  # an experiment with its own parser, and one on the shared one
        proc = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--quick", "--out", str(tmp_path / module),
                               "--device", "cuda"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "asks for CUDA" in proc.stderr, proc.stderr
        assert not (tmp_path / module).exists()
    with pytest.raises(ConfigError, match="is not a device"):
        resolve_device("gpu0")


def lg_data(device, n=8):
    model = make_linear_gaussian().to(device)
    torch.manual_seed(1)
    x, _ = simulate(model, n, torch.zeros(1, 5, dtype=torch.float64, device=device))
    return model, x


def fitted_ffg(model, x):
    g = LocalFFG(model, x.shape[0]).to(x)
    res = optimize_local(model, g, x, num_samples=100, lr=1e-2, max_steps=1500, check_every=100, patience=5)
    return g, res


@pytest.mark.cuda
@cuda
def test_local_optimization_iwae_and_ais_on_the_gpu_match_the_exact_answer_and_the_cpu():
    exact = None
    results = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model, x = lg_data(torch.device(device))
        g, res = fitted_ffg(model, x)
        assert g.loc.device.type == device and res.steps.device.type == device
        r = importance_sample(model, g, x, 5000)
        a = ais(model, x, num_chains=100, num_steps=300, leapfrog_steps=5)
        exact = model.exact_log_marginal(x).cpu()
        assert torch.all((r.iwae.cpu() - exact).abs() < Z * r.iwae_se.cpu() + 1e-3)
        assert torch.all((a.log_px.cpu() - exact).abs() < Z * a.se.cpu() + 1e-3)
        # the fitted FFG's gap is the closed-form one, within MC error and the optimizer's O(lr) jitter
        gap = exact - r.elbo.cpu()
        assert torch.all((gap - float(model.exact_ffg_gap())).abs() < Z * r.elbo_se.cpu() + 0.01)
        results[device] = (r, a)
    (rc, ac), (rg, ag) = results["cpu"], results["cuda"]
    for c, g, sc, sg in ((rc.elbo, rg.elbo, rc.elbo_se, rg.elbo_se), (ac.log_px, ag.log_px, ac.se, ag.se)):
        assert torch.all((c - g.cpu()).abs() < Z * (sc ** 2 + sg.cpu() ** 2).sqrt() + 0.01)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda")
    assert main(["train", "--run-dir", str(folder / "cpu"), *TRAIN]) == 0
    return folder


@pytest.mark.cuda
@cuda
def test_a_trained_model_computes_the_same_on_both_devices(trained_run):
    """Forward passes and the grid posterior are deterministic: equal to float32 rounding."""
    mc, gc, _ = load_run(trained_run / "cpu", "cpu")
    mg, gg, _ = load_run(trained_run / "cpu", "cuda")
    from pyro_vaegap.data import load_dataset

    x = load_dataset("digits", "test")[:16]
    for a, b in zip(gc.encode(x), gg.encode(x.cuda())):
        assert torch.allclose(a, b.cpu(), rtol=1e-4, atol=1e-5)
    pc, pg = grid_posterior(mc, x, n=101), grid_posterior(mg, x.cuda(), n=101)
    assert torch.allclose(pc.log_px, pg.log_px.cpu(), rtol=1e-5, atol=1e-4)


@pytest.mark.cuda
@cuda
def test_gap_report_and_training_on_the_gpu(trained_run):
    """``vaegap train/gaps --device cuda`` run end to end; the GPU gap report agrees with the CPU one per point
    within the combined standard errors of its Monte Carlo estimates."""
    folder = trained_run
    assert main(["train", "--run-dir", str(folder / "gpu"), *TRAIN, "--device", "cuda"]) == 0
    log = json.loads((folder / "gpu" / "config.json").read_text())
    assert log["config"]["epochs"] == 2
    args = ["--num-points", "10", "--iwae-samples", "500", "--elbo-samples", "500", "--ais-chains", "20",
            "--ais-steps", "50", "--ais-leapfrog", "3", "--local-samples", "10", "--local-max-steps", "400",
            "--local-check-every", "50", "--quiet"]
    reports = {}
    for device in ("cpu", "cuda"):
        assert main(["gaps", "--run", str(folder / "cpu"), *args, "--device", device,
                     "--out", str(folder / f"gaps_{device}")]) == 0
        reports[device] = json.loads((folder / f"gaps_{device}.json").read_text())["per_point"]
    c, g = reports["cpu"], reports["cuda"]
    for key, se in (("amortized", "amortized_se"), ("iwae", "iwae_se"), ("ais", "ais_se")):
        for a, b, sa, sb in zip(c[key], g[key], c[se], g[se]):
            assert abs(a - b) < Z * math.hypot(sa, sb) + 1e-3, (key, a, b)


@pytest.mark.cuda
@cuda
def test_gap_report_api_keeps_everything_on_the_gpu():
    model, x = lg_data(torch.device("cuda"), n=4)
    from pyro_vaegap.guides.ffg import FFGEncoder

    guide = FFGEncoder(model, hidden=8).to(x)
    rep = gap_report(model, guide, x, GapConfig(families=("ffg",), iwae_samples=200, elbo_samples=200,
                                                ais_chains=10, ais_steps=20, ais_leapfrog=2, local_samples=5,
                                                local_max_steps=200, local_check_every=50), progress=False, log=None)
    exact = model.exact_log_marginal(x).cpu().numpy()
    assert abs(float((rep.per_point["ais"] - exact).mean())) < Z * float(rep.per_point["ais_se"].mean()) + 0.05
