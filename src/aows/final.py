"""The final network: a chosen configuration as a plain PyTorch model, saved so that it
is rebuilt from its configuration alone, exported to ONNX, and timed on the target.

A final-network folder holds:

- ``config.json``: ``{"aows": "final-network", "space": <space description>,
  "config": [widths...], ...}``, everything needed to build the module;
- ``weights.pt``: its ``state_dict``, tensors only (``torch.load(weights_only=True)``);
- for a model from a file, ``model.py``: a copy of that file, run to rebuild the module
  only when the user trusts it (``trust_model_code``), never a path the folder names;
- optionally ``model.onnx``.

The module is rebuilt from ``config.json`` (``build_network``) and the weights are
checked against its shapes before loading, so a weights file of another configuration is
one clear error, never a silent or partial load.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aows.catalogue import space_from_description
from aows.defaults import DEFAULT_IMPORTANCE
from aows.errors import AowsError
from aows.importance import order_channels, order_record
from aows.io import atomic_write_bytes, atomic_write_text, load_tensors
from aows.latency.backends import Target
from aows.latency.measure import Timer, input_shape, target_from_record, target_record
from aows.latency.model import LatencyModel
from aows.latency.protocol import Protocol
from aows.latency.remote import connected
from aows.model_code import copy_model_code, trusted_copy
from aows.nn import build_network
from aows.nn.bn import reestimate_bn
from aows.nn.modelnet import slice_module
from aows.nn.slimmable import SlimmableNetwork
from aows.nn.supernet import make_supernet
from aows.onnx_export import onnx_bytes
from aows.outputs import output_tensors
from aows.space import SearchSpace, SpaceError

log = logging.getLogger(__name__)


def save_final(folder: str | Path, net: nn.Module, space: SearchSpace,
               config: Sequence[int], **meta) -> Path:
    """Write ``config.json`` and ``weights.pt`` (atomically) into ``folder``, and, for a
    model from a file, a copy of that file (``model.py``, its SHA-256 in ``config.json``)
    so that the folder is self-contained: moved to another machine, it loads there."""
    folder = Path(folder)  # made by the io layer's writes (an OS error is a clear one)
    config = space.validate(config)
    code = copy_model_code(folder, space)
    if code is not None:
        meta["model_code"] = code
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(folder / "weights.pt", write=lambda f: torch.save(state, f))
    atomic_write_text(folder / "config.json", json.dumps(
        {"aows": "final-network", "version": 1, "space": space.describe(),
         "config": list(config), **meta}, indent=1))
    return folder


def read_final_config(folder: str | Path, trust_model_code: bool = False,
                      space: SearchSpace | None = None
                      ) -> tuple[SearchSpace, list[int], dict]:
    """The space, configuration and record of a final-network folder (``load_final``
    explains ``trust_model_code`` and ``space``)."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise AowsError(f"{path} does not exist: give a folder written by `aows export`") \
            from None
    except (OSError, UnicodeDecodeError) as err:
        raise AowsError(f"{path} cannot be read ({getattr(err, 'strerror', None) or err})"
                        ) from None
    except json.JSONDecodeError as err:
        raise AowsError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(obj, dict) or obj.get("aows") != "final-network":
        raise AowsError(f'{path} is not an aows final network (no "aows": "final-network")')
    try:
        desc = obj["space"]
        if space is not None:
            space.check_same(SearchSpace.from_description(desc), f"final network {folder}")
        else:
            space = space_from_description(
                desc, trust=trusted_copy(folder, desc, obj.get("model_code"),
                                         trust_model_code),
                where=f"final network {folder}")
        config = list(space.validate(obj["config"]))
    except (KeyError, TypeError, AttributeError, SpaceError) as err:
        raise AowsError(f"{path}: {err}") from None
    return space, config, obj


def load_final(folder: str | Path, trust_model_code: bool = False,
               space: SearchSpace | None = None) -> tuple[nn.Sequential, SearchSpace, list[int]]:
    """Rebuild the network from ``config.json`` and load ``weights.pt`` into it.

    Args:
        folder: a folder ``aows export`` (or ``save_final``) wrote.
        trust_model_code: a network of a model from a file is rebuilt by running that
            code: the folder's own copy (``model.py``, checked against its SHA-256), and
            only when this is True. Built-in spaces and ``torchvision:``/``timm:`` models
            run no code of a user's.
        space: the space the network must be of, built by the caller (e.g. from the
            user's ``--model``): the network is rebuilt with it and no code of the folder
            runs.

    Returns:
        ``(network in eval mode, its space, its configuration)``.

    Raises:
        AowsError: a missing or foreign file, weights of another configuration, or model
            code that is not trusted.
    """
    space, config, _ = read_final_config(folder, trust_model_code, space)
    net = build_network(space, config)
    path = Path(folder) / "weights.pt"
    if not path.exists():
        raise AowsError(f"{path} does not exist: the folder holds a configuration but no "
                        "weights (export it again with `aows export`)")
    state = load_tensors(path, "weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise AowsError(f"{path} holds no state_dict (a mapping of names to tensors); give "
                        "the weights.pt that `aows export` wrote")
    own = net.state_dict()
    bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own]
    if bad or extra:
        k = (bad or extra)[0]
        raise AowsError(f"{path} does not fit the configuration in config.json ({k}: "
                        f"{tuple(state[k].shape) if k in state else 'missing'} vs "
                        f"{tuple(own[k].shape) if k in own else 'unexpected'}); the two "
                        "files come from different exports")
    net.load_state_dict(state)
    return net.eval(), space, config


def load_supernet(checkpoint: str | Path, space: SearchSpace) -> SlimmableNetwork:
    """The supernet of an `aows train` run folder's checkpoint."""
    return load_supernet_state(checkpoint, space)[0]


def load_supernet_state(checkpoint: str | Path, space: SearchSpace
                        ) -> tuple[SlimmableNetwork, dict]:
    """The supernet of an `aows train` run folder's checkpoint, and the training settings
    it was written with (``TrainConfig`` as a dict)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise AowsError(f"{path} does not exist: give an `aows train` run folder")
    state = load_tensors(path, "checkpoint")
    net = make_supernet(space)
    try:
        net.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError) as err:
        raise AowsError(f"{path} is not a supernet checkpoint of this space "
                        f"({str(err).splitlines()[0]}); check --space/--resolution/--data "
                        "against the training run") from None
    return net, dict(state.get("config") or {})


def export_config(supernet: SlimmableNetwork, config: Sequence[int],
                  batches: Iterable | None = None, calib_batches: int = 8) -> nn.Module:
    """The plain network of ``config``, weights sliced from the supernet.

    Args:
        supernet: the trained supernet (``load_supernet``).
        config: the widths.
        batches: (images, labels) to re-estimate the BatchNorm statistics of this
            configuration on (the shared ones of the supernet fit none of its widths
            well); None keeps the supernet's.
        calib_batches: how many of ``batches``.
    """
    calib = None if batches is None else (x for x, _ in islice(batches, calib_batches))
    return supernet.export(config, calibration=calib).eval()


def export_from_model(space, config: Sequence[int], importance: str = DEFAULT_IMPORTANCE,
                      batches: Callable[[], Iterable] | None = None, calib_batches: int = 8,
                      module: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Prune now, without a supernet: the user's module at ``config``, sliced from its own
    weights with each width's channels ordered by importance first.

    Args:
        space: a model's space (``aows.extract.model_space``).
        config: the searchable widths, in the order ``space.names`` lists them.
        importance: the channel criterion (``aows.importance.CRITERIA``); ``taylor``
            needs ``batches``.
        batches: ``batches()`` yields (images, labels) of the training data: the taylor
            criterion reads its first batches, and the BatchNorm statistics of the sliced
            network are re-estimated on ``calib_batches`` of them. None keeps the
            model's own statistics (those of its full width).
        calib_batches: batches for the BatchNorm re-estimation.
        module: the module to slice (default ``space.load_module()``); its channels are
            permuted in place.

    Returns:
        The sliced module (the user's class, eval mode) and the channel order applied
        (``aows.importance.order_record``).
    """
    if not hasattr(space, "plan"):
        raise AowsError(f"space '{space.name}' is not a model's space: export from a model "
                        "needs --model (a built-in space exports from a trained supernet, "
                        "--run)")
    config = space.validate(config)
    module = space.load_module() if module is None else module
    order = order_channels(module, space, importance, None if batches is None else batches())
    net = slice_module(module, space, config)
    if batches is not None:
        reestimate_bn(net, (x for x, _ in islice(batches(), calib_batches)))
    return net.eval(), order_record(space, order, importance)


def export_onnx(net: nn.Module, space: SearchSpace, path: str | Path, batch: int = 1,
                check: bool = True, rtol: float = 1e-4, inputs: int = 3) -> float | None:
    """Write ``net`` as ONNX and, with ``check``, compare it with PyTorch in ONNX Runtime.

    Args:
        net: the plain network (eval mode is set).
        space: its space (the input shape).
        path: the .onnx file (written atomically).
        batch: the exported batch size.
        check: run ``inputs`` random inputs through both.
        rtol: the largest accepted difference, relative to the largest output magnitude.

    An untrained network (random weights, BatchNorm statistics at their initial values)
    can output its classifier's bias whatever the input: its features shrink to ~1e-13
    through the layers, so comparing outputs would test only the last bias. When the
    outputs do not depend on the input, the check runs on a copy whose BatchNorm
    statistics are re-estimated on the random inputs (the same graph, other constants),
    exported the same way.

    Returns:
        The largest difference relative to its output's scale (each output tensor on its
        own); None when not checked or onnxruntime is absent.

    Raises:
        AowsError: the difference is above ``rtol`` or not finite.
    """
    shape = input_shape(space, batch)
    data = onnx_bytes(net.eval(), shape)
    path = Path(path)
    atomic_write_bytes(path, data)
    if not check:
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(shape, generator=gen) for _ in range(max(inputs, 2))]
    ref = _outputs(net, xs)
    if not _depends_on_input(np.concatenate(ref, axis=1)):
        net = _bn_recalibrated(net, xs)
        data = onnx_bytes(net, shape)
        ref = _outputs(net, xs)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    runs = [sess.run(None, {"input": x.numpy()}) for x in xs]
    rel, scale = 0.0, 0.0
    for k, r in enumerate(ref):  # each output on its own scale: a small head counts too
        got = np.stack([run[k].reshape(-1) for run in runs])
        s_k = float(np.max(np.abs(r)))
        diff = float(np.max(np.abs(got - r)))
        rel_k = diff / s_k if s_k > 0 else float(diff > 0)
        if not rel_k <= rel:
            rel, scale = rel_k, s_k
    if not rel <= rtol:
        raise AowsError(f"{path}: ONNX Runtime output differs from PyTorch by {rel:.2e} of "
                        f"the output's scale {scale:.2e} (tolerance {rtol:.0e}); the export "
                        "is not faithful")
    return rel


@torch.no_grad()
def _outputs(net: nn.Module, xs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Per output tensor, (inputs, values): each input's output flattened."""
    per_input = [[t.reshape(-1).numpy() for t in output_tensors(net(x))] for x in xs]
    return [np.stack([outs[k] for outs in per_input]) for k in range(len(per_input[0]))]


def _depends_on_input(outputs: np.ndarray) -> bool:
    """Whether the outputs for different inputs (first axis) differ by more than 1e-3 of
    their scale."""
    scale = float(np.max(np.abs(outputs)))
    return scale > 0 and float(np.max(np.ptp(outputs, axis=0))) > 1e-3 * scale


def _bn_recalibrated(net: nn.Module, xs: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``net`` whose BatchNorm running statistics are those of ``xs``."""
    probe = copy.deepcopy(net)
    reestimate_bn(probe, [torch.cat(list(xs))])
    return probe.eval()


def target_of(model: LatencyModel, remote=None) -> tuple[Target, Protocol]:
    """The target and protocol a latency model was measured with (from its file), reached
    through ``remote`` for a model of a remote target."""
    return (target_from_record(model.meta.get("target") or {}, remote, "the latency model"),
            Protocol.from_record(model.meta.get("protocol") or {}))


def measure_networks(nets: dict[str, nn.Module], model: LatencyModel, configs: dict,
                     repeats: int = 3, seed: int = 0, target: Target | None = None,
                     protocol: Protocol | None = None, fill: bool = True,
                     reference: str | None = None, remote=None) -> dict:
    """Time each final network (the actual modules) on the latency model's target with
    its protocol, ``repeats`` interleaved times, next to the model's anchor network, and
    compare with the prediction.

    Args:
        nets: name -> the plain module (``load_final``).
        model: the latency model the configurations were chosen with.
        configs: name -> its configuration (for the prediction); a network without one
            (None or absent: a network that is not of the space) is timed only.
        repeats: interleaved timing rounds; each network's measurement is the median.
        seed: seed of the round orders and of the filler networks.
        target, protocol: default the model's; another target or protocol is timed
            as given, without the retiming of disturbed chunks against the model's
            reference anchor (which only holds on its own target).
        fill: fill the chunk up to the protocol's chunk size (below).
        reference: the name in ``nets`` of the network the others are compared with
            (the user's original model): each other network gets its ``speedup``, the
            reference's measured latency over its own.
        remote: how to reach the model's target when it is another machine
            (``aows.latency.remote.Remote``; required then).

    Timings are drift-normalised like the model's training data (scaled by the model's
    anchor reference / this chunk's anchor), and, with ``fill``, the chunk is filled up
    to the protocol's chunk size with other networks of the space (timed, discarded):
    a chunk of 4 small networks keeps more of them in cache than the model's chunks of
    40-50 did, which would flatter the measurement. Per network: predicted, measured (median
    over repeats), raw, relative error, and the networks' own test-retest spread. The
    noise floor is the latency model's (``meta["noise_floor"]``, the NRMSE of re-timed
    held-out networks) when recorded, else that spread.
    """
    t_default, p_default = target_of(model, remote)
    target, protocol = target or t_default, protocol or p_default
    with connected(target):
        return _measure(nets, model, configs, repeats, seed, target, protocol, fill,
                        reference, t_default, p_default)


def _measure(nets, model, configs, repeats, seed, target, protocol, fill, reference,
             t_default, p_default) -> dict:
    space = model.space
    # a chunk whose anchor is over the protocol's tolerance above the model's reference
    # state was disturbed: timed again, as the model's samples were (on their target)
    same = target == t_default and protocol == p_default
    timer = Timer(space, target, protocol,
                  (model.anchor_ref_ms if same else None) or float("inf"))
    names = list(nets)
    runners = [timer.backend.prepare(nets[n].eval(), timer.shape) for n in names]
    # the model's timings were taken in chunks of protocol.chunk networks: fill the chunk
    # with other networks of the space, so caches and interleaving are as they were
    n_fill = max(0, protocol.chunk - len(runners)) if fill else 0
    fillers = [timer.prepare(c) for c in space.uniform_sample(
        np.random.default_rng([seed, 7]), n_fill)]
    ref = model.anchor_ref_ms
    scale = 1e3 / target.batch_size
    log.info(f"timing {len(names)} network{'s' * (len(names) > 1)} ({', '.join(names)}) in "
             f"{repeats} interleaved rounds on {target.backend}"
             + (f", beside {n_fill} other networks of the space, timed and discarded: the "
                f"latency model's chunks held {protocol.chunk} networks, and a chunk of "
                "fewer keeps more of them in cache" if n_fill else ""))
    raw, norm = [], []
    start = time.perf_counter()
    for r in range(repeats):
        secs, anchor = timer.run(runners + fillers, np.random.default_rng([seed, r]))
        ms = secs[:len(runners)] * scale
        raw.append(ms)
        a = None if anchor is None else anchor * scale
        norm.append(ms * ref / a if (ref is not None and a) else ms)
        took = time.perf_counter() - start
        left = f", about {took / (r + 1) * (repeats - r - 1):.0f} s left" \
            if r + 1 < repeats else ""
        log.info(f"timing round {r + 1}/{repeats} ({took:.0f} s{left}): " + ", ".join(
            f"{n} {v:.3f} ms" for n, v in zip(names, norm[-1])))
    raw, norm = np.array(raw), np.array(norm)
    measured = np.median(norm, axis=0)
    spread = float(np.sqrt(np.mean((norm / measured - 1) ** 2))) if repeats > 1 else None
    floor = model.meta.get("noise_floor")
    floor_src = "latency model's held-out re-timing (NRMSE)"
    if floor is None:
        floor, floor_src = spread, "re-timing of these networks (RMS)"
    out = {"target": target_record(target, timer.backend),
           "protocol": protocol.asdict(), "repeats": repeats, "fillers": n_fill,
           "noise_floor": floor, "noise_floor_source": floor_src, "retest_spread": spread,
           "normalised": ref is not None, "networks": {}}
    if timer.timer.lowered is not None:  # slower as a whole than the model's reference
        out["slower_than_reference"] = timer.timer.lowered / timer.timer.given_min
    for k, n in enumerate(names):
        rec = {"measured_latency_ms": float(measured[k]),
               "measured_raw_ms": float(np.median(raw[:, k]))}
        if configs.get(n) is None:  # not a network of the space (another tool's)
            rec["params"] = int(sum(p.numel() for p in nets[n].parameters()))
        else:
            pred = model.predict(configs[n])
            err = float(measured[k] / pred - 1)
            rec.update(predicted_latency_ms=pred, relative_error=err,
                       within_noise_floor=None if floor is None else bool(abs(err) <= floor),
                       **size_of(nets[n], space, configs[n]))
        out["networks"][n] = rec
    if reference is not None:
        ref_ms = out["networks"][reference]["measured_latency_ms"]
        out["reference"] = reference
        for n, r in out["networks"].items():
            if n != reference:
                r["speedup"] = ref_ms / r["measured_latency_ms"]
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return out


def size_of(net: nn.Module, space: SearchSpace, config: Sequence[int]) -> dict:
    """Parameters (of the module) and multiply-accumulates per image (of the space's
    layers at ``config``)."""
    return {"params": int(sum(p.numel() for p in net.parameters())),
            "macs": float(space.flops(config))}


def describe_measurement(m: dict) -> str:
    floor = m["noise_floor"]
    lines = []
    for n, r in m["networks"].items():
        if "predicted_latency_ms" not in r:
            lines.append(f"{n}: measured {r['measured_latency_ms']:.3f} ms")
            continue
        verdict = ("" if floor is None else
                   " (within the noise floor)" if r["within_noise_floor"] else
                   f" ({100 * (abs(r['relative_error']) - floor):.1f} points beyond the "
                   "noise floor)")
        size = (f"; {r['params'] / 1e6:.3f} M parameters, {r['macs'] / 1e6:.1f} MMACs"
                if "params" in r else "")
        speed = (f"; {r['speedup']:.2f}x the speed of {m['reference']}"
                 if "speedup" in r else "")
        lines.append(f"{n}: predicted {r['predicted_latency_ms']:.3f} ms, measured "
                     f"{r['measured_latency_ms']:.3f} ms ({100 * r['relative_error']:+.1f} %)"
                     + verdict + size + speed)
    if floor is not None:
        lines.append(f"noise floor {100 * floor:.1f} % ({m['noise_floor_source']})")
    if m.get("slower_than_reference"):
        lines.append(f"the machine ran {m['slower_than_reference']:.2f}x slower than when the "
                     "latency model's samples were timed (its anchor network); the timings "
                     "are drift-normalised by it, which corrects that only in part")
    return "\n".join(lines)
