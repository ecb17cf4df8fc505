"""The paper's configurations as presets (the AOWS supplementary, Table D.2): registry,
checks against a space, and --preset in latency benchmark / predict, export and measure."""

import json

import numpy as np
import pytest
import torch

from aows.catalogue import get_space
from aows.cli import main
from aows.final import load_final, save_final
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.nn import build_network
from aows.nn.supernet import make_supernet
from aows.presets import PRESETS, PresetError, get_preset, preset_config
from aows.solve import save_unaries
from aows.spaces import mobilenet_v1

# the AOWS supplementary, Table D.2, as printed there
TABLE_D2 = {
    "greedy-trt": "8, 24, 40, 48, 104, 128, 208, 304, 768, 360, 720, 616, 1536, 1128",
    "ows-trt": "8, 32, 64, 80, 128, 232, 408, 464, 512, 512, 464, 464, 1024, 1328",
    "aows-trt": "8, 16, 48, 64, 128, 256, 512, 512, 512, 512, 464, 512, 1536, 1536",
    "mobilenet-v1": "32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024",
}
FAST = ["--warmup", "1", "--rounds", "1", "--runs", "1", "--chunk", "4"]


def synthetic_model(space, **meta):
    f = flops_vector(space)
    return LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic", meta)


@pytest.mark.parametrize("resolution", [32, 224])
def test_every_preset_is_the_table_and_fits_the_default_space(resolution):
    assert list(PRESETS) == list(TABLE_D2)
    space = mobilenet_v1(resolution=resolution)
    for name, text in TABLE_D2.items():
        want = tuple(int(w) for w in text.split(","))
        p = get_preset(name)
        assert p.space == "mobilenet_v1" and len(p.widths) == 14 and p.widths == want
        assert "Table D.2" in p.source
        assert preset_config(name, space) == want


def test_mobilenet_v1_preset_is_the_spaces_1x_widths():
    assert preset_config("mobilenet-v1", mobilenet_v1()) == mobilenet_v1().base_widths


def test_a_preset_outside_its_space_is_one_clear_error():
    with pytest.raises(PresetError, match="unknown preset 'aows'.*aows-trt"):
        get_preset("aows")
    with pytest.raises(PresetError, match=r"preset 'aows-trt'.*space 'resnet18'.*"
                       r"--space mobilenet_v1"):
        preset_config("aows-trt", get_space("resnet18", resolution=64))
    # 4 levels between 0.2x and 1.5x: 1536 is a choice, 464 is not
    with pytest.raises(PresetError) as err:
        preset_config("aows-trt", mobilenet_v1(levels=4))
    msg = str(err.value)
    assert "preset 'aows-trt'" in msg and "'levels': 4" in msg and "Table D.1" in msg
    assert "--levels 14" in msg and "\n" not in msg
    # up to 1.0x: the 1.0x widths are choices, AOWS's 464 and 1536 are not
    assert preset_config("mobilenet-v1", mobilenet_v1(max_width=1.0))
    with pytest.raises(PresetError, match=r"width 464 of layer 11 .* \(and 2 more\)"):
        preset_config("aows-trt", mobilenet_v1(max_width=1.0))


def test_cli_lists_presets_and_refuses_unknown_names(capsys):
    assert main(["latency", "presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(TABLE_D2)
    assert main(["latency", "presets"]) == 0
    assert "8,16,48,64,128,256,512,512,512,512,464,512,1536,1536" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ex:
        main(["latency", "predict", "--latency", "x.json", "--preset", "nope"])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'nope'" in err and "aows-trt" in err and "mobilenet-v1" in err


def test_cli_predict_preset(tmp_path, capsys):
    space = mobilenet_v1(resolution=32)
    model = synthetic_model(space)
    model.save(tmp_path / "lat.json")
    assert main(["latency", "predict", "--latency", str(tmp_path / "lat.json"),
                 "--preset", "aows-trt", "--preset", "mobilenet-v1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["preset"] for r in rows] == ["aows-trt", "mobilenet-v1"]
    for r in rows:
        assert r["config"] == list(get_preset(r["preset"]).widths)
        assert r["predicted_latency_ms"] == pytest.approx(model.predict(r["config"]))
    cfg = ",".join(map(str, space.narrowest()))
    assert main(["latency", "predict", "--latency", str(tmp_path / "lat.json"), cfg,
                 "--preset", "ows-trt"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{cfg}: ") and out[1].startswith("ows-trt [8,32,64,")
    # a model of a space whose choices lack the widths: one line, exit code 2
    synthetic_model(mobilenet_v1(resolution=32, levels=4)).save(tmp_path / "l4.json")
    assert main(["latency", "predict", "--latency", str(tmp_path / "l4.json"),
                 "--preset", "aows-trt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aows: error: preset 'aows-trt'") and err.count("\n") == 1


def test_cli_benchmark_presets_labels_rows(capsys):
    # no --space: the presets' own space (mobilenet_v1), at 32 px
    assert main(["latency", "benchmark", "--resolution", "32", "--threads", "1",
                 "--preset", "mobilenet-v1", "--json", *FAST]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["preset"] == "mobilenet-v1"
    assert rows[0]["config"] == list(get_preset("mobilenet-v1").widths)
    assert rows[0]["measured_latency_ms"] > 0
    space = mobilenet_v1(resolution=32)
    cfg = ",".join(map(str, space.narrowest()))
    assert main(["latency", "benchmark", "--space", "mobilenet_v1", "--resolution", "32",
                 "--threads", "1", cfg, "--preset", "aows-trt", *FAST]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{cfg}: measured")
    assert out[1].startswith("aows-trt [8,16,48,") and "measured" in out[1]
    assert main(["latency", "benchmark", "--space", "resnet18", "--resolution", "32",
                 "--preset", "aows-trt", *FAST]) == 2
    assert "space 'resnet18'" in capsys.readouterr().err
    assert main(["latency", "benchmark", "--space", "mobilenet_v1"]) == 2
    assert "--preset NAME" in capsys.readouterr().err


def fake_run(folder, space):
    """A run folder as `aows train` leaves it (unaries + supernet checkpoint), untrained:
    export only slices the supernet's weights."""
    folder.mkdir()
    save_unaries(folder / "unaries.json", [np.zeros(len(c)) for c in space.searchable_choices],
                 space)
    torch.manual_seed(0)
    torch.save({"model": make_supernet(space).state_dict()}, folder / "checkpoint.pt")
    return folder


def test_cli_export_preset(tmp_path, capsys):
    space = mobilenet_v1(resolution=32, classes=4)
    run = fake_run(tmp_path / "run", space)
    assert main(["export", "--run", str(run), "--preset", "ows-trt",
                 "--out", str(tmp_path / "ows")]) == 0
    cfg = json.loads((tmp_path / "ows" / "config.json").read_text())
    assert cfg["config"] == list(get_preset("ows-trt").widths) and cfg["preset"] == "ows-trt"
    net, _, config = load_final(tmp_path / "ows")
    assert config == list(get_preset("ows-trt").widths)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    capsys.readouterr()
    for both in (["--config", "8,8", "--preset", "ows-trt"], []):  # exactly one of them
        with pytest.raises(SystemExit) as ex:
            main(["export", "--run", str(run), *both, "--out", str(tmp_path / "x")])
        assert ex.value.code == 2
        assert "--config" in capsys.readouterr().err
    small = fake_run(tmp_path / "small", mobilenet_v1(resolution=32, levels=3, max_width=0.5,
                                                      classes=4))
    assert main(["export", "--run", str(small), "--preset", "aows-trt",
                 "--out", str(tmp_path / "y")]) == 2
    assert "does not fit space 'mobilenet_v1'" in capsys.readouterr().err


def test_cli_measure_preset_next_to_a_final_network(tmp_path, capsys):
    space = mobilenet_v1(resolution=32, classes=4)
    proto = {"warmup": 1, "rounds": 1, "runs": 1, "chunk": 3}
    synthetic_model(space, target={"backend": "torch-cpu", "threads": 1},
                    protocol=proto).save(tmp_path / "lat.json")
    torch.manual_seed(0)
    save_final(tmp_path / "mine", build_network(space, space.narrowest()).eval(), space,
               space.narrowest())
    assert main(["measure", str(tmp_path / "mine"), "--latency", str(tmp_path / "lat.json"),
                 "--preset", "aows-trt", "--repeats", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)  # the rounds' progress went to stderr
    assert list(res["networks"]) == ["mine", "aows-trt"]
    r = res["networks"]["aows-trt"]
    assert r["measured_latency_ms"] > 0
    model = LatencyModel.load(tmp_path / "lat.json")
    assert r["predicted_latency_ms"] == pytest.approx(model.predict(get_preset("aows-trt").widths))
    # presets alone: the latency model's space
    assert main(["measure", "--latency", str(tmp_path / "lat.json"), "--preset",
                 "mobilenet-v1", "--repeats", "1"]) == 0
    assert "mobilenet-v1: predicted" in capsys.readouterr().out
    assert main(["measure", "--latency", str(tmp_path / "lat.json")]) == 2
    assert "--preset NAME" in capsys.readouterr().err
