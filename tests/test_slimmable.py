"""The slimmable supernet sliced to a configuration equals the plain network."""

import numpy as np
import torch

from aows.nn.bn import recalibrate_bn
from aows.nn.slimmable import SlimmableNetwork
from aows.spaces import mobilenet_v1


def _randomise_bn(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def test_sliced_supernet_equals_plain_network_with_copied_weights():
    space = mobilenet_v1(resolution=32, levels=4, classes=10)
    torch.manual_seed(0)
    net = SlimmableNetwork(space).eval()
    _randomise_bn(net)
    x = torch.randn(2, 3, 32, 32)
    rng = np.random.default_rng(0)
    for cfg in [space.narrowest(), space.widest(), *space.uniform_sample(rng, 3)]:
        plain = net.export(cfg).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x, cfg), plain(x), rtol=1e-5, atol=1e-5)
        # the exported network is a plain one of exactly the configuration's shapes
        assert plain[1][3].weight.shape[:2] == (cfg[1], cfg[0])


def test_recalibration_matches_plain_network_statistics():
    space = mobilenet_v1(resolution=32, levels=3, classes=10)
    torch.manual_seed(1)
    net = SlimmableNetwork(space)
    cfg = space.uniform_sample(np.random.default_rng(1), 1)[0]
    batches = [torch.randn(8, 3, 32, 32) for _ in range(3)]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = net.export(cfg, calibration=batches).eval()
    # export(calibration=...) works on a copy: the shared statistics are untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # reference: the plain network with the same weights, statistics from the same batches
    ref = net.export(cfg)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    ref.train()
    with torch.no_grad():
        for b in batches:
            ref(b)
    ref.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ref(x), rtol=1e-4, atol=1e-5)
    # in place, recalibration changes the supernet itself
    recalibrate_bn(net, cfg, batches)
    assert not torch.equal(before["layers.0.body.1.running_mean"],
                           net.state_dict()["layers.0.body.1.running_mean"])
