"""One schema for every setting: typed dataclass fields that the YAML loader and the
command line both read.

A setting is declared once, as a dataclass field made with ``setting``: its type, its
default, its help text and its range. From the same declaration,

* ``load`` turns a mapping (a YAML section) into the dataclass, reporting every unknown
  key, wrongly typed value and value out of range at once;
* ``add_options`` gives the commands their ``--options`` (type, default, help, range);
* ``from_args`` collects parsed options back into the dataclass's keyword arguments;
* ``project`` makes a section that exposes some fields of a library dataclass (the
  ``train`` section of ``aows run`` is part of ``TrainConfig``), so a default lives in
  exactly one place.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from aows.errors import AowsError

POSITIVE, NONNEGATIVE = "positive", "non-negative"


def setting(default: Any, help: str = "", *, check: str | None = None,
            choices: Sequence[str] | None = None, auto: bool = False) -> Any:
    """A dataclass field with what the loaders need to know about it.

    Args:
        default: the one default of this setting (copied for lists and dicts).
        help: one line for ``--help`` and the docs.
        check: ``POSITIVE`` (> 0; integers: at least 1) or ``NONNEGATIVE`` (>= 0).
        choices: the accepted strings.
        auto: the string "auto" is accepted too (chosen by cross-validation).
    """
    meta = {"help": help, "check": check, "choices": tuple(choices) if choices else None,
            "auto": auto}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _split_optional(tp) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return functools.reduce(operator.or_, rest), True
    return tp, False


def _kind(tp) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(typing.get_origin(tp) or tp, str(tp))


class _WrongType(ValueError):
    pass


def _convert(value: Any, tp, meta: dict) -> Any:
    """``value`` as type ``tp`` (ints given as 3.0 become 3); ValueError names the problem."""
    if meta.get("auto") and value == "auto":
        return value
    tp, optional = _split_optional(tp)
    if value is None:
        if optional:
            return None
        raise _WrongType(f"must be {_kind(tp)}, got null")
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # e.g. int | str
        for alt in typing.get_args(tp):
            try:
                return _convert(value, alt, meta)
            except _WrongType:
                pass
        kinds = " or ".join(_kind(a) for a in typing.get_args(tp))
        raise _WrongType(f"must be {kinds}, got {value!r}")
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        ok = isinstance(value, bool)
    elif origin is int:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and float(value).is_integer())
        value = int(value) if ok else value
    elif origin is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        ok = isinstance(value, list) and (item is Any or all(isinstance(v, item) for v in value))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, origin)
    if not ok:
        hint = " or 'auto'" if meta.get("auto") else ""
        raise _WrongType(f"must be {_kind(tp)}{hint}, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"must be one of {', '.join(meta['choices'])}, got {value!r}")
    check = meta.get("check")
    if check == POSITIVE and not value > 0:
        raise ValueError(("must be at least 1" if origin is int else "must be > 0")
                         + f", got {value}")
    if check == NONNEGATIVE and not value >= 0:
        raise ValueError(f"must be at least 0, got {value}")
    return value


def load(cls, values: dict | None, where: str = "config", base=None):
    """An instance of the dataclass ``cls`` from a mapping, over ``base`` (default: the
    defaults); nested dataclass fields take nested mappings.

    Raises:
        AowsError: naming ``where`` and every problem at once (unknown keys with the known
            ones, wrong types with the expected type and the default, values out of range).
    """
    problems: list[str] = []
    obj = _load(cls, values or {}, "", problems, base)
    if problems:
        raise AowsError(f"{where}: " + "; ".join(problems))
    return obj


def _load(cls, values: Any, prefix: str, problems: list, base=None):
    if not isinstance(values, dict):
        problems.append(f"'{prefix[:-1]}' is a section: give a mapping, not {values!r}")
        return base if base is not None else cls()
    hints, known = _hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            problems.append(f"unknown setting '{name}' (known here: {', '.join(known)})")
            continue
        tp, optional = _split_optional(hints[key])
        inner = None if base is None else getattr(base, key)
        if dataclasses.is_dataclass(tp):
            if value is None and optional:
                kwargs[key] = None
            elif dataclasses.is_dataclass(value):
                kwargs[key] = value
            else:
                kwargs[key] = _load(tp, value, f"{name}.", problems, inner)
            continue
        try:
            kwargs[key] = _convert(value, hints[key], dict(known[key].metadata))
        except _WrongType as err:
            problems.append(f"'{name}' {err} (default {_default(known[key])!r})")
        except ValueError as err:
            problems.append(f"'{name}' {err}")
    try:
        return (dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs))
    except (AowsError, TypeError) as err:  # the dataclass's own consistency checks
        problems.append(f"{prefix[:-1]}: {err}" if prefix else str(err))
    return base if base is not None else None


def as_dict(obj) -> dict:
    """Plain nested mappings (what ``load`` reads back to an equal object)."""
    return dataclasses.asdict(obj)


def project(name: str, source, names: Iterable[str], *extra, defaults: dict | None = None,
            helps: dict | None = None):
    """A dataclass named ``name`` holding the fields ``names`` of the dataclass ``source``
    (their types, defaults and help: one source of truth), then the ``extra`` fields
    (``(name, type, setting(...))``). ``defaults`` overrides a default, for a section
    whose context calls for another one (say why where it is used), and ``helps`` the
    help that goes with it."""
    hints, fl = _hints(source), {f.name: f for f in dataclasses.fields(source)}
    specs = []
    for n in names:
        f = fl[n]
        d = (defaults or {}).get(n, _default(f))
        meta = {k: v for k, v in f.metadata.items() if k in ("help", "check", "choices",
                                                              "auto")}
        if n in (helps or {}):
            meta["help"] = helps[n]
        specs.append((n, hints[n], setting(d, **meta)))
    return dataclasses.make_dataclass(name, specs + list(extra))


def pick(cls, obj) -> dict:
    """The fields of ``obj`` that the dataclass ``cls`` also has, as its keyword
    arguments (a section to the library object it configures)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name in names}


def describe_fields(obj, prefix: str = "") -> str:
    """One line per setting of the dataclass instance ``obj``: dotted name, value, help."""
    lines = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and f.metadata.get("help") is None:
            lines.append(f"{prefix}{f.name}:")
            lines.append(describe_fields(value, prefix + "  "))
            continue
        shown = yaml.safe_dump(as_dict(value) if dataclasses.is_dataclass(value) else value,
                               default_flow_style=True, width=10**6).strip()
        shown = shown[:-3].strip() if shown.endswith("...") else shown
        lines.append(f"{prefix}{f.name}: {shown}" + (f"  # {f.metadata['help']}"
                                                    if f.metadata.get("help") else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------- command line
def _arg_type(tp, meta: dict, flag: str):
    def parse(text: str):
        value: Any = text
        base, _ = _split_optional(tp)
        if not (meta.get("auto") and text == "auto"):
            if base in (int, float):
                try:
                    value = base(text)
                except ValueError:
                    hint = " or 'auto'" if meta.get("auto") else ""
                    raise argparse.ArgumentTypeError(
                        f"'{text}' is not {'an integer' if base is int else 'a number'}{hint}"
                    ) from None
            check = meta.get("check")
            if check == POSITIVE and not value > 0:
                raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
            if check == NONNEGATIVE and not value >= 0:
                raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    parse.__name__ = flag
    return parse


def add_options(parser, cls, names: Iterable[str] | None = None, *,
                required: Iterable[str] = (), helps: dict | None = None) -> None:
    """``--option`` per field ``names`` of the dataclass ``cls`` (all by default), with
    the field's type, default, range and help; booleans become ``--x/--no-x`` (or a plain
    switch when off by default). ``helps`` replaces a help text for one command."""
    hints, fl = _hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    required = set(required)
    for n in names or list(fl):
        f, meta = fl[n], dict(fl[n].metadata)
        flag = "--" + n.replace("_", "-")
        default = _default(f)
        help_ = (helps or {}).get(n, meta.get("help", ""))
        base, _ = _split_optional(hints[n])
        if n in required:
            parser.add_argument(flag, dest=n, required=True, help=help_,
                                type=_arg_type(hints[n], meta, flag))
        elif base is bool and default is False:
            parser.add_argument(flag, dest=n, action="store_true", help=help_)
        elif base is bool:
            shown = "" if default is None else f" (default {'on' if default else 'off'})"
            parser.add_argument(flag, dest=n, action=argparse.BooleanOptionalAction,
                                default=default, help=help_ + shown)
        else:
            shown = f" (default {default})" if default is not None else ""
            parser.add_argument(flag, dest=n, default=default, help=help_ + shown,
                                choices=meta.get("choices"), type=_arg_type(hints[n], meta, flag),
                                metavar=None if meta.get("choices") else n.upper())


def from_args(cls, args: argparse.Namespace, names: Iterable[str] | None = None) -> dict:
    """The keyword arguments of ``cls`` among the parsed ``args`` (fields ``names``, by
    default every field that the parser defined)."""
    wanted = names or [f.name for f in dataclasses.fields(cls)]
    return {n: getattr(args, n) for n in wanted if hasattr(args, n)}
