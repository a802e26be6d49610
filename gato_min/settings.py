"""Settings dataclasses: one help text per field, JSON round trips, command-line flags built from them.

Every group of settings (what a run trains on, `gato_min.data.training_set.DataSettings`; how it
optimizes, `gato_min.optim.TrainSettings`) is a frozen dataclass whose fields carry their own
help text. The run folder stores them as JSON, and `python -m gato_min train` builds its flags
from the same fields (`add_arguments`), so a setting is described in exactly one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing

import numpy as np


def setting(default, help: str, choices: tuple | None = None):
    """A dataclass field with its help text and allowed values (shown by the command line)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def to_dict(settings) -> dict:
    return dataclasses.asdict(settings)


def from_dict(cls, data: dict, source: str = "settings"):
    """Build `cls` from its JSON form; unknown keys are refused, lists become tuples."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{source} has unknown keys {unknown}; known keys: {sorted(known)}")
    data = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
    return cls(**data)


def check_finite(settings) -> None:
    """Refuse NaN and infinite numbers in any float field."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{type(settings).__name__}.{f.name} must be a finite number, got {value!r}")


def check_number(
    name: str, value, *, minimum: float | None = None, above: float | None = None, integer: bool = False
) -> None:
    """Refuse anything but a finite number (an int when `integer`) that is >= `minimum` and >
    `above`, naming the argument. Booleans are not numbers here."""
    kind = "an int" if integer else "a number"
    allowed = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be {kind} > {above}, got {value!r}")


def _element_type(annotation):
    """(element type, is a tuple) of a field's annotation such as `int`, `tuple[str, ...] | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return _element_type(args[0])
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True
    return annotation, False


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per field of `cls` (default None: "keep the dataclass default")."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, many = _element_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            nargs="+" if many else None,
            choices=f.metadata.get("choices"),
            default=None,
            help=f"{f.metadata.get('help', '')} (default {shown})",
        )


def from_arguments(cls, args: argparse.Namespace):
    """`cls` with the fields given on the command line, the defaults elsewhere."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return from_dict(
        cls,
        {key: list(value) if isinstance(value, list) else value for key, value in given.items()},
        "the command line",
    )
