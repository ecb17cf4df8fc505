import numpy as np
import pytest
import torch

from aows.catalogue import get_space
from aows.cli.args import parse_config
from aows.nn import build_network
from aows.space import SpaceError
from aows.spaces import mobilenet_v1

# Table D.1 of the AOWS supplementary (supplementary material of the paper).
TABLE_D1 = [
    [8, 16, 24, 32, 40, 48],
    [16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96],
    [24, 40, 48, 64, 80, 88, 104, 112, 128, 144, 152, 168, 176, 192],
    [24, 40, 48, 64, 80, 88, 104, 112, 128, 144, 152, 168, 176, 192],
    [48, 80, 104, 128, 152, 176, 208, 232, 256, 280, 304, 336, 360, 384],
    [48, 80, 104, 128, 152, 176, 208, 232, 256, 280, 304, 336, 360, 384],
    *[[104, 152, 208, 256, 304, 360, 408, 464, 512, 560, 616, 664, 720, 768]] * 6,
    [208, 304, 408, 512, 616, 720, 816, 920, 1024, 1128, 1232, 1328, 1432, 1536],
    [208, 304, 408, 512, 616, 720, 816, 920, 1024, 1128, 1232, 1328, 1432, 1536],
]


def test_mobilenet_v1_reproduces_table_d1():
    space = mobilenet_v1()
    assert [list(c) for c in space.searchable_choices] == TABLE_D1
    assert space.choices[0] == (3,) and space.choices[-1] == (1000,)
    assert space.n_layers == 15 and space.n_searchable == 14
    keys, ids = space.unknowns()
    assert len(keys) == 1612  # 1612 unknowns for this space (the paper's Section 4)
    # the five 14x14 stride-1 blocks share one table
    assert len({layer.type_key for layer in space.layers[7:12]}) == 1
    assert all(np.array_equal(ids[7], ids[k]) for k in range(8, 12))


def test_mobilenet_v1_1x_is_in_space_and_builds():
    space = mobilenet_v1(resolution=64, classes=10)
    cfg = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    net = build_network(space, cfg).eval()
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    # depthwise conv of block 1 has 32 groups, classifier maps 1024 -> 10
    assert net[1][0].groups == 32 and net[-1][-1].in_features == 1024


def test_configuration_errors_name_layer_and_allowed_widths():
    space = mobilenet_v1()
    with pytest.raises(SpaceError, match="14 searchable layers"):
        space.validate([8] * 13)
    bad = list(space.narrowest())
    bad[2] = 25
    with pytest.raises(SpaceError, match=r"width 25 of layer 3 .*allowed widths for layer 3: "
                                         r"\[24, 40"):
        space.validate(bad)
    with pytest.raises(SpaceError, match="layer 3"):
        space.indices_many([bad])
    with pytest.raises(SpaceError, match="could not read"):
        parse_config("8,x,16")


def test_parameters_and_registry():
    s = get_space("mobilenet_v1", resolution=96, levels=3, max_width=1.0)
    assert all(len(c) <= 3 for c in s.searchable_choices)
    assert s.layers[0].in_res == 96 and s.layers[-1].in_res == 3
    with pytest.raises(SpaceError, match="unknown search space"):
        get_space("resnet")
    with pytest.raises(SpaceError, match="multiple of 32"):
        mobilenet_v1(resolution=100)


def test_describe_roundtrip_and_fingerprint():
    from aows.space import SearchSpace
    a = mobilenet_v1(resolution=128)
    b = SearchSpace.from_description(a.describe())
    assert a.fingerprint() == b.fingerprint() and b.base_widths == a.base_widths
    with pytest.raises(SpaceError, match="was made for space"):
        a.check_same(mobilenet_v1(resolution=160))


def test_uniform_multipliers_include_the_base_network():
    space = mobilenet_v1()
    cfgs = dict(space.uniform_multiplier_configs())
    assert cfgs[1.0] == (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


def test_flat_api_names_the_entry_points_whatever_was_imported_before():
    """Every name of ``aows.__all__`` is the library object it names (not a submodule
    that an import elsewhere attached to the package under the same name)."""
    import importlib
    import pkgutil
    import types

    import aows
    for info in pkgutil.walk_packages(aows.__path__, "aows."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in aows.__all__:
        obj = getattr(aows, name)
        assert not isinstance(obj, types.ModuleType), name
    assert aows.search.__module__ == "aows.solve" and callable(aows.run)
