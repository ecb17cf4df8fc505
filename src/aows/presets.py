"""Named configurations from the paper, to time on your own target next to your search.

Table D.2 of the AOWS supplementary lists the MobileNet-v1 channel widths found in the TensorRT
experiment (paper section 7.1: V100, TensorRT, batch 64) by the greedy baseline, OWS and
AOWS, and the original MobileNet-v1 widths they are compared with. They were chosen for
*that* target: timed on yours (``aows latency benchmark --preset aows-trt``), they show
how far a search result for one target carries to another, and give a reference point
next to your own search result.

Every preset belongs to a space (here ``mobilenet_v1``: 14 searchable widths, whose
default choices are Table D.1 of the AOWS supplementary) and is one width per searchable variable.
``preset_config`` checks it against the space a command was given (any resolution and
number of classes: neither changes the width choices) and raises one ``PresetError``
when it does not fit, never rounding a width to a nearby choice.

This module imports nothing heavy, so the command line can list the names when it
builds its parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from aows.errors import AowsError
from aows.space import SearchSpace, SpaceError
from aows.spaces import SPACES


class PresetError(AowsError, ValueError):
    """A preset name is unknown or its widths do not fit the requested space."""


@dataclass(frozen=True)
class Preset:
    """A named configuration: one width per searchable variable of ``space``.

    ``space``: the built-in space it belongs to (``aows.spaces.SPACES``); ``method``: what
    found it; ``source``: where its widths are written down.
    """

    name: str
    space: str
    widths: tuple[int, ...]
    method: str
    source: str

    def describe(self) -> dict:
        return {"name": self.name, "space": self.space, "widths": list(self.widths),
                "method": self.method, "source": self.source}


_TRT = "the AOWS supplementary, Table D.2 (TensorRT optimisation, paper section 7.1)"

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("greedy-trt", "mobilenet_v1",
           (8, 24, 40, 48, 104, 128, 208, 304, 768, 360, 720, 616, 1536, 1128),
           "greedy", _TRT),
    Preset("ows-trt", "mobilenet_v1",
           (8, 32, 64, 80, 128, 232, 408, 464, 512, 512, 464, 464, 1024, 1328),
           "OWS", _TRT),
    Preset("aows-trt", "mobilenet_v1",
           (8, 16, 48, 64, 128, 256, 512, 512, 512, 512, 464, 512, 1536, 1536),
           "AOWS", _TRT),
    # the original network (Howard et al. 2017), the 1.0x widths of the space
    Preset("mobilenet-v1", "mobilenet_v1",
           (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024),
           "MobileNet-v1 1.0x", "the AOWS supplementary, Table D.2 (the original MobileNet-v1)"),
)}


def preset_names() -> list[str]:
    """The preset names, in the order of the table (argparse ``choices``)."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Args:
        name: one of ``PRESETS`` (``aows latency presets`` lists them).

    Raises:
        PresetError: an unknown name (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset '{name}'; available: {', '.join(PRESETS)}") \
            from None


def _architecture(space: SearchSpace) -> list[tuple]:
    # op, kernel and stride of every layer: the network's shape without its resolution,
    # so a preset fits its space at any --resolution but not a space file that merely
    # reuses the name
    return [(layer.op, layer.kernel, layer.stride) for layer in space.layers]


def preset_config(name: str, space: SearchSpace) -> tuple[int, ...]:
    """The widths of preset ``name`` as a configuration of ``space``.

    Args:
        name: a preset name (``PRESETS``).
        space: the space the configuration will be built, timed or predicted in; it must
            be the preset's built-in space (any resolution and classes) whose choices
            contain every width of the preset.

    Returns:
        The configuration (one width per searchable variable), validated by the space.

    Raises:
        PresetError: an unknown name, another kind of space, or a width that is not one
            of the space's choices (one message naming the preset, the space and the fix;
            a width is never rounded to a nearby choice, which would time another
            network than the paper's).
    """
    preset = get_preset(name)
    where = f"preset '{name}' ({preset.method}, the AOWS supplementary, Table D.2)"
    reference = SPACES[preset.space]()
    if (space.name != preset.space or not space.is_chain
            or space.n_searchable != len(preset.widths)
            or _architecture(space) != _architecture(reference)):
        shape = (f"a chain of {space.n_searchable} searchable layers" if space.is_chain
                 else f"a graph of {space.n_searchable} searchable width variables")
        raise PresetError(
            f"{where} is a configuration of the {preset.space} space ({len(preset.widths)} "
            f"searchable layers), but space '{space.name}' is {shape}; use it with "
            f"--space {preset.space} (or a latency model / run of that space)")
    bad = [(j, w) for j, (w, ch) in enumerate(zip(preset.widths, space.searchable_choices))
           if w not in ch]
    if bad:
        j, w = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        opts = {k: space.params.get(k) for k in ("min_width", "max_width", "levels", "divisor")}
        raise PresetError(
            f"{where} does not fit space '{space.name}' {opts}: width {w} of layer {j + 1} "
            f"is not one of its choices {list(space.searchable_choices[j])}{more}; the "
            "presets' widths are choices of the AOWS supplementary, Table D.1, the default "
            f"{preset.space} space (--min-width 0.2 --max-width 1.5 --levels 14 "
            "--divisor 8): use it with a space of those defaults (leave out the width "
            "options, or fit the latency model / train the supernet without them)")
    try:
        return space.validate(preset.widths)
    except SpaceError as err:  # the checks above cover validate's; kept as one error
        raise PresetError(f"{where}: {err}") from None
