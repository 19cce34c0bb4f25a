"""Command-line flags built from :class:`~pgm_marl.config.TrainConfig`: the one place ``pgm-marl train`` and
``pgm-marl sweep`` take their ``--flag`` per field from, with the argparse types of the fields' type hints.

Every TrainConfig field is a flag (``batch_size`` -> ``--batch-size``) with the field's help text and default, so
a field added to TrainConfig is a flag of both commands without an edit here. A bool field is
``--flag/--no-flag``; an ``Optional[X]`` field also reads ``none`` (and the aliases below). Used by
:mod:`pgm_marl.cli` and :mod:`pgm_marl.sweep`; imports neither (and no torch).
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Callable, Iterable, Mapping, Optional, Tuple

from .config import TrainConfig


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low`` (one-line error naming the value and what is accepted)."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"got {text!r}; accepted: an int >= {low}")
        return value
    convert.__name__ = f"int >= {low}"
    return convert


def _optional_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "paper") else float(text)


def _optional_str(text: str) -> Optional[str]:
    return None if text.lower() == "none" else text


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() in ("none", "auto") else int(text)


_OPTIONAL_TYPES = {Optional[float]: _optional_float, Optional[str]: _optional_str, Optional[int]: _optional_int}
_OPTIONAL_METAVARS = {Optional[float]: "FLOAT|none", Optional[str]: "TEXT|none", Optional[int]: "INT|none"}


def flag_type(kind):
    """The argparse ``type`` of a TrainConfig field's type hint (``Optional[X]`` also reads none)."""
    return _OPTIONAL_TYPES.get(kind, kind)


def add_config_flags(parser: argparse.ArgumentParser, skip: Iterable[str] = (), grid: bool = False,
                     types: Optional[Mapping[str, Tuple[Callable[[str], object], str]]] = None) -> None:
    """One ``--flag`` per TrainConfig field not in ``skip``; a flag not given stays absent from the namespace.

    ``grid`` (the sweep): a non-bool flag may be given several times and collects its values in a list (one grid
    axis), a bool flag applies to every run. ``types``: ``{field: (argparse type, help suffix)}`` in place of the
    field's own type (the sweep's seed ranges).
    """
    skip, types = set(skip), dict(types or {})
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text + ("; applies to all runs" if grid else ""))
            continue
        convert, suffix = types.get(f.name, (flag_type(kind), ""))
        parser.add_argument(flag, dest=f.name, type=convert, default=argparse.SUPPRESS,
                            action="append" if grid else "store",
                            metavar=_OPTIONAL_METAVARS.get(kind, f.name.upper()),
                            help=help_text + suffix + ("; repeat for a grid axis" if grid else ""))
