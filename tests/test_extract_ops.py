"""Channel-preserving ops the tracer knows (issue #23): upsampling, transposed convs,
padding, functional activations and pools are traced, not held; the supernet at a
configuration still equals its export. The models here load as
``tests/test_extract_ops.py:FUNCTION``."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aows.cli import main
from aows.extract import extract, summarise_held
from aows.nn.modelnet import ModuleSupernet

HERE = str(Path(__file__).resolve())


class _UNet(nn.Module):
    """An encoder-decoder whose skip is an addition: conv -> maxpool -> conv -> up ->
    add the encoder's feature -> conv head. ``up``: how the decoder upsamples."""

    def __init__(self, up: str = "interpolate", num_classes: int = 4):
        super().__init__()
        self.up_kind = up
        self.enc = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                 nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(16, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
                                 nn.ReLU())
        if up == "transposed":
            self.up = nn.ConvTranspose2d(32, 16, 2, 2)
            self.bn_up = nn.BatchNorm2d(16)
        else:
            self.proj = nn.Conv2d(32, 16, 1)
            self.up = {"upsample": nn.Upsample(scale_factor=2, mode="bilinear"),
                       "nearest": nn.UpsamplingNearest2d(scale_factor=2),
                       "bilinear": nn.UpsamplingBilinear2d(size=(16, 16))}.get(up)
        self.dec = nn.Sequential(nn.Conv2d(16, 24, 3, 1, 1), nn.ReLU(), nn.Dropout2d(0.1))
        self.head = nn.Conv2d(24, num_classes, 1)

    def forward(self, x):
        e = self.enc(x)
        m = self.mid(self.pool(e))
        if self.up_kind == "transposed":
            u = F.relu(self.bn_up(self.up(m)))
        elif self.up_kind == "interpolate":
            u = F.interpolate(self.proj(m), scale_factor=2, mode="nearest")
        elif self.up_kind == "interpolate_size":
            u = F.interpolate(self.proj(m), size=e.shape[-2:], mode="bilinear",
                              align_corners=False)
        else:
            u = self.up(self.proj(m))
        return self.head(self.dec(u + e))


def unet(up: str = "interpolate"):
    return _UNet(up)


def unet_upsample():
    return _UNet("upsample")


def unet_transposed():
    return _UNet("transposed")


class _Padded(nn.Module):
    """Explicit padding before unpadded convs, functional activations and pools."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3)
        self.pad = nn.ReflectionPad2d(1)
        self.c2 = nn.Conv2d(16, 24, 3)
        self.zpad = nn.ZeroPad2d((1, 1, 1, 1))
        self.c3 = nn.Conv2d(24, 24, 3)
        self.c4 = nn.Conv2d(24, 32, 3, padding=1)
        self.keep = nn.Identity()
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        y = F.elu(self.c1(F.pad(x, (1, 1, 1, 1))))
        y = F.hardtanh(self.c2(self.pad(y)))
        y = F.max_pool2d(y, 2)
        y = F.softplus(self.c3(self.zpad(y)))
        y = F.avg_pool2d(F.gelu(self.keep(y)), 2)
        y = F.silu(self.c4(F.pad(y, (1, 1, 1, 1), mode="replicate")))
        y = F.dropout(F.adaptive_avg_pool2d(y, 1).flatten(1), 0.1, self.training)
        return self.fc(y)


def padded():
    return _Padded()


class _Shuffle(nn.Module):
    """A pixel shuffle (channels / r^2, resolution * r): its input width is held."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, 1, 1)
        self.c2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.ps = nn.PixelShuffle(2)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.head(self.ps(self.c2(F.gelu(self.c1(x)))))


def _equals_export(space, module, n=5, seed=0):
    """The supernet at the widest, the narrowest and random configurations computes
    what the exported plain module does."""
    torch.manual_seed(0)
    sup = ModuleSupernet(space, module=module).eval()
    x = torch.randn(2, 3, 16, 16)
    rng = np.random.default_rng(seed)
    configs = [space.widest(), space.narrowest(), *space.uniform_sample(rng, n - 2)]
    for cfg in configs:
        with torch.no_grad():
            a, b = sup(x, cfg), sup.export(cfg).eval()(x)
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), cfg
    return sup


UPS = ["interpolate", "interpolate_size", "upsample", "nearest", "bilinear", "transposed"]


@pytest.mark.parametrize("up", UPS)
def test_encoder_decoder_widths_are_searched(up):
    """Before: the upsampling held the encoder's and the decoder's widths; now only the
    image and the output are held, and every conv's width is searched."""
    space = extract(_UNet(up), (3, 16, 16))
    held = {h["name"]: h["reasons"] for h in space.held_fixed()}
    assert set(held) == {"image", "head"}, held
    searched = {space.names[v] for v in space.searchable}
    assert searched == {"enc.0", "mid.0", "dec.0"}  # the skip ties proj/up to enc.0
    ups = [lay for lay in space.layers if lay.op in ("upsample", "deconv")]
    assert len(ups) == 1 and ups[0].in_res == 8 and ups[0].out_res == 16
    # what reads the upsampled map reads it at 16 px (the graph checks it too)
    add = next(lay for lay in space.layers if lay.op == "add")
    assert add.in_res == 16 and ups[0].name in add.inputs
    if up == "transposed":  # sliced like a conv: weight (in, out, kH, kW), BN fused
        assert ups[0].bn and space.plan[4] == ("up", "deconv", 2, 1)
        cin, cout = 24, 8
        # MACs: k^2 * c_in * c_out * in_res^2 (every input pixel scatters a k x k patch)
        assert space.layer_flops(space.layers.index(ups[0]), cin, cout) == \
            2 * 2 * cin * cout * 8 * 8
    else:
        assert ups[0].mode == {"bilinear": "bilinear", "upsample": "bilinear",
                               "interpolate_size": "bilinear"}.get(up, "nearest")
        assert space.layer_flops(space.layers.index(ups[0]), 8, 8) == 0
    sup = _equals_export(space, _UNet(up))
    if up == "transposed":
        plain = sup.export(space.narrowest())
        assert isinstance(plain.up, nn.ConvTranspose2d)
        assert plain.up.weight.shape[:2] == (space.narrowest()[1], space.narrowest()[0])


def test_padding_and_functional_ops_are_searched():
    """F.pad and padding modules, functional activations and pools keep the channels:
    nothing but the image and the classes is held, and no layer is named after fx."""
    space = extract(_Padded(), (3, 16, 16))
    assert {h["name"] for h in space.held_fixed()} == {"image", "fc"}
    assert {space.names[v] for v in space.searchable} == {"c1", "c2", "c3", "c4"}
    pads = [lay for lay in space.layers if lay.op == "pad"]
    assert [(p.in_res, p.out_res, p.mode) for p in pads] == [
        (16, 18, "constant"), (16, 18, "reflect"), (8, 10, "constant"), (4, 6, "replicate")]
    assert not any(n.startswith("op") for n in space.names)
    _equals_export(space, _Padded())


def test_pixel_shuffle_is_held_with_its_reason():
    space = extract(_Shuffle(), (3, 16, 16))
    held = {h["name"]: h["reasons"] for h in space.held_fixed()}
    assert "c2" in held and "moves channels into pixels" in held["c2"][0]
    assert "c1" in {space.names[v] for v in space.searchable}
    assert "pixel_shuffle" not in held and not any(n.startswith("op") for n in held)
    kinds = {r["kind"] for r in summarise_held(space.held_fixed())}
    assert "shuffled" in kinds
    _equals_export(space, _Shuffle(), n=3)


def test_transposed_conv_channel_order_keeps_the_function():
    """Importance ordering permutes a transposed conv's weight along its dim 1 (outputs)
    and dim 0 (inputs): at full width the permuted module computes what it did."""
    from aows.importance import order_channels
    module = _UNet("transposed").eval()
    space = extract(module, (3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = module(x)
        order = order_channels(module, space, "l1")
        after = module(x)
    assert any(not np.array_equal(p, np.arange(len(p))) for p in order.values())
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("fn", ["unet", "unet_upsample", "unet_transposed", "padded"])
def test_space_show_on_the_new_ops(fn, capsys):
    assert main(["space", "show", "--model", f"{HERE}:{fn}", "--input-shape",
                 "3,16,16"]) == 0
    assert "searchable" in capsys.readouterr().out


def test_new_ops_build_plain_and_slim():
    """The layer ops of a space file: a transposed conv's slimmable twin at (cin, cout)
    computes what the plain layer with the leading slices does; upsample and pad layers
    give the resolution the layer records."""
    from aows.nn.ops import get_op, leading_slice
    from aows.space import LayerSpec
    spec = LayerSpec("d", "deconv", 2, 2, 8, bias=True, bn=False, act="none")
    assert spec.out_res == 16
    slim = get_op("deconv").slim(spec, 8, 6)
    slim.set_width(4)
    plain = get_op("deconv").plain(spec, 5, 4)
    src = {k.removeprefix("body."): t for k, t in slim.state_dict().items()}
    plain.load_state_dict({k: leading_slice(src[k], t.shape)
                           for k, t in plain.state_dict().items()})
    x = torch.randn(2, 5, 8, 8)
    assert torch.allclose(slim(x), plain(x), atol=1e-6)
    for op, mode, out in (("upsample", "bilinear", 16), ("pad", "reflect", 11)):
        lay = LayerSpec("u", op, 1, 1, 8, size_out=out, mode=mode)
        assert get_op(op).plain(lay, 4, 4)(torch.randn(1, 4, 8, 8)).shape[-1] == out
        assert lay.type_key.endswith(f"-o{out}-{mode}")
