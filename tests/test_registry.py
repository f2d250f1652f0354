"""Where families come from: the guides folder, entry points of installed distributions, and what
happens when a plug-in is broken or clashes with another."""
import math
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import pyro_vaegap.guides as guides_pkg
from pyro_vaegap import registry
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.guide import Family, check_guide
from pyro_vaegap.guides.ffg import FFGEncoder, LocalFFG
from pyro_vaegap.local import optimize_local
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = {"ffg", "fullcov", "flow", "iaf", "householder", "mixture", "sa"}


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """An extra folder on the guides package's path; the registry reloads from scratch, before and after."""
    d = tmp_path / "plugins"
    d.mkdir()
    monkeypatch.setattr(guides_pkg, "__path__", [*guides_pkg.__path__, str(d)])
    registry._reset()
    yield d
    monkeypatch.undo()
    registry._reset()
    for name, mod in list(sys.modules.items()):  # forget the plug-in modules imported from d
        if str(d) in (getattr(mod, "__file__", None) or ""):
            del sys.modules[name]


def test_built_in_families_and_unknown_name():
    assert BUILT_IN <= set(registry.families())
    with pytest.raises(ConfigError, match="unknown guide family 'nope': choose one of"):
        registry.get_family("nope")


def test_family_declaration_is_validated():
    with pytest.raises(ConfigError, match="must subclass"):
        Family("bad", amortized=int)
    with pytest.raises(ConfigError, match="needs an amortized or a local"):
        Family("empty")
    with pytest.raises(ConfigError, match="not allowed"):
        Family("has space", amortized=FFGEncoder)
    fam = Family("f", amortized=FFGEncoder, local=LocalFFG)
    fam.check_options("amortized", {"hidden": 3})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['widht'\].*allowed: \['activation', 'arch', 'dense'"):
        fam.check_options("amortized", {"widht": 3})


def test_broken_plugin_is_reported_once_and_the_others_stay_usable(plugin_dir, capsys):
    (plugin_dir / "broken_family.py").write_text("raise RuntimeError('boom')\n")
    with pytest.warns(registry.PluginWarning, match=r"guides/broken_family.py left out: RuntimeError: boom"):
        fams = registry.families()
    assert BUILT_IN <= set(fams)
    assert registry.broken_plugins() == {"guides/broken_family.py": "RuntimeError: boom"}
    with pytest.raises(ConfigError, match=r"plug-ins left out: guides/broken_family.py \(RuntimeError: boom\)"):
        registry.get_family("broken_family")
    from pyro_vaegap.cli import main

    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert "ffg" in out and "(left out) guides/broken_family.py: RuntimeError: boom" in out


def test_a_clashing_name_keeps_the_first_family(plugin_dir):
    (plugin_dir / "zz_clash.py").write_text(textwrap.dedent("""
        from pyro_vaegap.guide import Family
        from pyro_vaegap.guides.ffg import FFGEncoder
        FAMILY = Family("ffg", amortized=FFGEncoder, description="an impostor")
    """))
    with pytest.warns(registry.PluginWarning, match="family 'ffg' is already provided by guides/ffg.py"):
        assert registry.get_family("ffg").description != "an impostor"


def test_entry_point_of_an_installed_distribution(tmp_path, monkeypatch):
    """A distribution (dist-info with entry_points.txt on sys.path, as pip installs one) declares a
    module and a single Family; both are found, and the family trains and scores like a built-in."""
    site = tmp_path / "site"
    (site / "thirdparty_vae-0.1.dist-info").mkdir(parents=True)
    (site / "thirdparty_vae-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-vae\nVersion: 0.1\n")
    (site / "thirdparty_vae-0.1.dist-info" / "entry_points.txt").write_text(
        "[pyro_vaegap.guides]\nmodule_form = thirdparty_guides\nobject_form = thirdparty_guides:SECOND\n")
    (site / "thirdparty_guides.py").write_text(textwrap.dedent("""
        from pyro_vaegap.guide import Family
        from pyro_vaegap.guides.ffg import FFGEncoder, LocalFFG
        FIRST = Family("thirdparty_ffg", amortized=FFGEncoder, local=LocalFFG, description="from a module")
        SECOND = Family("thirdparty_local", local=LocalFFG, description="a single object")
    """))
    monkeypatch.syspath_prepend(str(site))
    registry._reset()
    try:
        fams = registry.families()
        assert fams["thirdparty_ffg"].description == "from a module"
        assert fams["thirdparty_local"].amortized is None
        assert not registry.broken_plugins()
    finally:
        registry._reset()
        monkeypatch.delitem(sys.modules, "thirdparty_guides", raising=False)


def test_plugin_example_from_the_docs_runs_without_other_edits(plugin_dir, tmp_path):
    """docs/examples/my_guide.py dropped into the guides folder is found by name, trains one epoch
    with the ordinary training loop, and optimizes locally and scores with the ordinary estimators."""
    shutil.copy(REPO / "docs" / "examples" / "my_guide.py", plugin_dir / "my_guide.py")
    cfg = TrainConfig(dataset="digits", guide="my_guide", epochs=1, latent_dim=4, hidden=32,
                      guide_options={"hidden": 32})
    res = train(cfg, tmp_path / "run", progress=False)
    assert math.isfinite(res.log[-1]["valid_elbo"])
    model, guide = res.model, res.guide
    x = (torch.rand(5, model.data_dim) < 0.5).float()
    check_guide(model, guide, x)
    local = registry.get_family("my_guide").make_local(model, 5)
    local.init_from_amortized(guide, x)
    check_guide(model, local, x)
    optimize_local(model, local, x, num_samples=10, max_steps=20, check_every=10)
    r = importance_sample(model, local, x, 100, psis=False)
    assert torch.isfinite(r.elbo).all()
