"""`aows` command line: parse, call the library, print. No logic of its own.

One module per command group owns its subparser and its commands (``space``,
``latency``, ``search``, ``train``, ``final``, ``run``); ``args`` holds what they share.
The commands import the library inside themselves, so that building the parser (``aows
--help``, a mistyped option) never waits for torch or scipy: the one exception to
importing at the top, for the start-up time of every command.
"""

from __future__ import annotations

import argparse
import os
import sys

from aows.cli import final, latency, run, search, space, train
from aows.cli.args import FINETUNE_OPTIONS, TRAIN_OPTIONS, openmp_for_training
from aows.errors import AowsError, Interrupted
from aows.log import console

__all__ = ["FINETUNE_OPTIONS", "TRAIN_OPTIONS", "build_parser", "main"]

GROUPS = (space, latency, search, train, final, run)  # in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="aows", description="Optimal channel widths of a CNN under a latency budget "
        "(AOWS, CVPR 2020).")
    sub = ap.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return ap


def _command_parser(parser: argparse.ArgumentParser,
                    argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``argv`` names, e.g. ``aows latency fit``'s."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        k = next((i for i, x in enumerate(argv) if subs and x in subs[0].choices), None)
        if k is None:
            return parser
        parser, argv = subs[0].choices[argv[k]], argv[k + 1:]


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line parsed; an unknown option is refused with the usage of the command
    it was given to (argparse's own error shows the top-level usage instead)."""
    ap = build_parser()
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        words = list(sys.argv[1:] if argv is None else argv)
        _command_parser(ap, words).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if getattr(args, "trains", False):
        openmp_for_training()
    try:
        with console():
            args.func(args)
    except Interrupted as err:
        print(f"aows: {err}", file=sys.stderr)
        return err.exit_code
    except AowsError as err:
        print(f"aows: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aows: interrupted; completed work is saved, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0

