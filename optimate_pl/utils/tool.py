"""The one form of the study and data tools (``python -m optimate_pl.studies efficiency``,
``python -m optimate_pl.uncertainty.next_rpa ...``): argparse with ``--help``, and a user's mistake
in one line with exit code 2 (``--verbose-errors`` for the traceback), as the Hydra commands do."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
#: What a tool reports in one line: the user's input is missing or wrong.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)


def tool_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the flags every tool has."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--verbose-errors", action="store_true", help="show the full traceback of an error")
    return parser


def positive_int(text: str) -> int:
    """An argparse type for counts (``--top``, ``--max-sites``, ``--count``): a whole number of at least 1.

    ``--top -5`` once ranked every candidate but five (thousands of DFT runs queued by ``ids=``), ``--top 0``
    wrote an empty list: both are refused with the reason."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count: give 1 or more")
    return value


def run_tool(action: Callable[[], T], args: argparse.Namespace,
             errors: Sequence[type[BaseException]] = USER_ERRORS) -> T:
    """``action()``; an error of ``errors`` ends the tool in one line on stderr with exit code 2."""
    try:
        return action()
    except tuple(errors) as err:
        if getattr(args, "verbose_errors", False):
            raise
        message: Any = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}\n(run with --verbose-errors for the full traceback)", file=sys.stderr)
        sys.exit(2)
