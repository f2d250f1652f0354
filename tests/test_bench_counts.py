"""The FLOP bound of ``benchmarks.bench_gaps`` counts the multiply-adds of the networks it bounds: checked
against the weight matrices of the library's own decoder and flow, so a change of architecture that the
count does not follow fails here rather than silently skewing ``docs/benchmarks.md``."""
from torch import nn

from benchmarks.bench_gaps import decoder_macs, flow_macs, stage_flops
from guides.flow import FlowEncoder
from pyro_vaegap.models import BernoulliVAE


def _weight_macs(modules) -> int:
    # a Linear layer's multiply-adds per row equal its weight count
    return sum(m.weight.numel() for net in modules for m in net.modules() if isinstance(m, nn.Linear))


def test_decoder_and_flow_macs_match_the_networks():
    for layers in (0, 2, 4):
        model = BernoulliVAE(784, 50, 200, decoder_layers=layers)
        cfg = {"latent_dim": 50, "hidden": 200, "decoder_layers": layers}
        assert decoder_macs(cfg, 784) == _weight_macs([model.decoder])
    model = BernoulliVAE(784, 50, 200)
    for hidden, steps in ((100, 2), (30, 3)):
        flow = FlowEncoder(model, flow_hidden=hidden, num_steps=steps)
        assert flow_macs(50, hidden, steps) == _weight_macs(flow.flow_networks())


def test_stage_flops_counts_rows():
    """A hand count for a small report: 3 points, AIS 4 (+2 pilot) chains × 5 distributions × 2 leapfrog."""
    report = {"config": {"ais": True, "ais_chains": 4, "ais_pilot_chains": 2, "ais_step_size": "pilot",
                         "ais_steps": 5, "ais_leapfrog": 2, "iwae_samples": 7, "elbo_samples": 7,
                         "families": ["ffg", "flow"], "family_options": {"flow": {"flow_hidden": 10}},
                         "local_samples": 3},
              "meta": {"num_points": 3, "train_config": {"latent_dim": 2, "hidden": 5, "decoder_layers": 1}},
              "per_point": {"steps:ffg": [10, 20, 30], "steps:flow": [5, 5, 5]}}
    D = 2 * 5 + 5 * 4
    F = 6 * (2 * 10 + 10 * 10 + 10 * 4)
    got = stage_flops(report, data_dim=4)
    assert got["ais"] == 4 * D * 3 * 6 * 4 * 2
    assert got["local:ffg"] == 4 * D * 3 * 60
    assert got["local:flow"] == (4 * D + 6 * F) * 3 * 15
    assert got["importance"] == 2 * D * 3 * 7 * 3 + 2 * F * 3 * 7
